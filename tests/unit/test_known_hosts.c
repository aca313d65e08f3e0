/* Unit tests: known_hosts lookups (plain, [host]:port, hashed, other key
 * types), accept-new appends (once, under concurrency, no rewrite), host
 * key fingerprints as ssh-keygen -l prints them, forget (plain, name
 * lists, hashed; everything else kept byte for byte) and an append that
 * waited for the lock while a forget replaced the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "known_hosts.h"
#include "ssh_options.h"

/* Two real ed25519 public keys and one ecdsa key, base64 as in .pub files. */
#define KEY_A "AAAAC3NzaC1lZDI1NTE5AAAAIP+ulKk4qeaNmgNxt6QaIUVqdMcA2BweDB9/AkX/cmWE"
#define KEY_B "AAAAC3NzaC1lZDI1NTE5AAAAIOygoS3Z5J+hglksqkRLhiwcNMIibRXzVW5Qh7SVE8bu"
#define KEY_E                                                                                      \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEcRiZpkGfqeSfAr3FoBcJxBIz9yCcAO4yZ4" \
	"mW6Uq6LilzhTEhOk8ICFVgJTgFubzUXWW69sBOAqusuzAmXG2ok="

typedef struct {
	char dir[64];
	char path[128];
	LIBSSH2_SESSION *session;
	unsigned char a[256], b[256];
	size_t alen, blen;
} fixture;

static int b64val(int c)
{
	const char *t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(t, c) : NULL;
	return p ? (int)(p - t) : -1;
}

static size_t b64decode(const char *in, unsigned char *out)
{
	size_t n = 0;
	unsigned acc = 0;
	int bits = 0;
	for (; *in && *in != '='; in++) {
		acc = (acc << 6) | (unsigned)b64val(*in);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return n;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/fk_kh_XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/known_hosts", f->dir);
	libssh2_init(0);
	f->session = libssh2_session_init();
	f->alen = b64decode(KEY_A, f->a);
	f->blen = b64decode(KEY_B, f->b);
	*state = f;
	return f->session ? 0 : -1;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char cmd[128];
	libssh2_session_free(f->session);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	int rc = system(cmd);
	free(f);
	return rc == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static char *read_file(const char *path)
{
	static char buf[8192];
	FILE *fp = fopen(path, "r");
	size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
	if (fp)
		fclose(fp);
	buf[n] = '\0';
	return buf;
}

static known_hosts_status check(fixture *f, const char *host, int port, const unsigned char *key,
                                size_t len, int type)
{
	known_hosts *kh = NULL;
	char err[256];
	int skipped = -1;
	assert_int_equal(known_hosts_load(&kh, f->session, f->path, &skipped, err, sizeof err), 0);
	known_hosts_status st = known_hosts_check(kh, host, port, (const char *)key, len, type);
	known_hosts_free(kh);
	return st;
}

static void test_names(void **state)
{
	char buf[64];
	(void)state;
	known_hosts_name(buf, sizeof buf, "10.0.0.1", 22);
	assert_string_equal(buf, "10.0.0.1");
	known_hosts_name(buf, sizeof buf, "10.0.0.1", 2222);
	assert_string_equal(buf, "[10.0.0.1]:2222");
}

static void test_missing_file_is_unknown(void **state)
{
	fixture *f = *state;
	assert_int_equal(check(f, "h", 22, f->a, f->alen, LIBSSH2_HOSTKEY_TYPE_ED25519),
	                 KNOWN_HOSTS_UNKNOWN);
}

static void test_plain_and_port_entries(void **state)
{
	fixture *f = *state;
	write_file(f->path, "# comment\n\nweb1,10.0.0.1 ssh-ed25519 " KEY_A " c\n"
	                    "[10.0.0.1]:2222 ssh-ed25519 " KEY_B "\n"
	                    "@cert-authority *.example ssh-ed25519 " KEY_B "\n");
	int type = LIBSSH2_HOSTKEY_TYPE_ED25519;
	assert_int_equal(check(f, "web1", 22, f->a, f->alen, type), KNOWN_HOSTS_MATCH);
	assert_int_equal(check(f, "10.0.0.1", 22, f->a, f->alen, type), KNOWN_HOSTS_MATCH);
	assert_int_equal(check(f, "10.0.0.1", 22, f->b, f->blen, type), KNOWN_HOSTS_MISMATCH);
	/* port 2222 is its own entry, as in OpenSSH; not the port 22 one */
	assert_int_equal(check(f, "10.0.0.1", 2222, f->b, f->blen, type), KNOWN_HOSTS_MATCH);
	assert_int_equal(check(f, "10.0.0.1", 2222, f->a, f->alen, type), KNOWN_HOSTS_MISMATCH);
	assert_int_equal(check(f, "web1", 2222, f->a, f->alen, type), KNOWN_HOSTS_UNKNOWN);
	assert_int_equal(check(f, "other", 22, f->a, f->alen, type), KNOWN_HOSTS_UNKNOWN);
}

static void test_other_key_type_is_mismatch(void **state)
{
	fixture *f = *state;
	unsigned char e[256];
	size_t elen = b64decode(KEY_E, e);
	char types[128];
	known_hosts *kh = NULL;
	char err[128];

	write_file(f->path, "host1 ssh-ed25519 " KEY_A "\n");
	assert_int_equal(check(f, "host1", 22, e, elen, LIBSSH2_HOSTKEY_TYPE_ECDSA_256),
	                 KNOWN_HOSTS_MISMATCH);
	assert_int_equal(known_hosts_load(&kh, f->session, f->path, NULL, err, sizeof err), 0);
	assert_int_equal(known_hosts_types(kh, "host1", 22, types, sizeof types), 1);
	assert_string_equal(types, "ssh-ed25519");
	assert_int_equal(known_hosts_types(kh, "host2", 22, types, sizeof types), 0);
	assert_string_equal(types, "");
	known_hosts_free(kh);
}

static void test_hashed_entry(void **state)
{
	fixture *f = *state;
	char cmd[512];
	int type = LIBSSH2_HOSTKEY_TYPE_ED25519;

	if (access("/usr/bin/ssh-keygen", X_OK) != 0)
		skip();
	write_file(f->path, "[127.0.0.9]:2200 ssh-ed25519 " KEY_A "\n");
	snprintf(cmd, sizeof cmd, "/usr/bin/ssh-keygen -q -H -f '%s' >/dev/null 2>&1", f->path);
	assert_int_equal(system(cmd), 0);
	assert_memory_equal(read_file(f->path), "|1|", 3);
	assert_int_equal(check(f, "127.0.0.9", 2200, f->a, f->alen, type), KNOWN_HOSTS_MATCH);
	assert_int_equal(check(f, "127.0.0.9", 2200, f->b, f->blen, type), KNOWN_HOSTS_MISMATCH);
	assert_int_equal(check(f, "127.0.0.9", 22, f->a, f->alen, type), KNOWN_HOSTS_UNKNOWN);
}

static void test_add_appends_once(void **state)
{
	fixture *f = *state;
	char err[256];
	int type = LIBSSH2_HOSTKEY_TYPE_ED25519;

	write_file(f->path, "# keep me\nold ssh-ed25519 " KEY_B); /* no final newline */
	assert_int_equal(known_hosts_add(f->session, f->path, "127.0.0.5", 2022, (char *)f->a,
	                                 f->alen, type, err, sizeof err),
	                 0);
	assert_int_equal(known_hosts_add(f->session, f->path, "127.0.0.5", 2022, (char *)f->a,
	                                 f->alen, type, err, sizeof err),
	                 0);
	assert_string_equal(read_file(f->path), "# keep me\nold ssh-ed25519 " KEY_B "\n"
	                                        "[127.0.0.5]:2022 ssh-ed25519 " KEY_A "\n");
	assert_int_equal(known_hosts_add(f->session, f->path, "127.0.0.5", 2022, (char *)f->b,
	                                 f->blen, type, err, sizeof err),
	                 KNOWN_HOSTS_ECHANGED);
	assert_int_equal(known_hosts_add(f->session, f->path, "bad host", 22, (char *)f->b, f->blen,
	                                 type, err, sizeof err),
	                 KNOWN_HOSTS_EINVAL);
	assert_int_equal(check(f, "127.0.0.5", 2022, f->a, f->alen, type), KNOWN_HOSTS_MATCH);
}

static void test_add_creates_file_and_directory(void **state)
{
	fixture *f = *state;
	char path[160], err[256];
	snprintf(path, sizeof path, "%s/sub/kh", f->dir);
	assert_int_equal(known_hosts_add(f->session, path, "host9", 22, (char *)f->a, f->alen,
	                                 LIBSSH2_HOSTKEY_TYPE_ED25519, err, sizeof err),
	                 0);
	assert_string_equal(read_file(path), "host9 ssh-ed25519 " KEY_A "\n");
}

typedef struct {
	fixture *f;
	int rc;
} adder;

static void *add_thread(void *arg)
{
	adder *a = arg;
	char err[256];
	LIBSSH2_SESSION *s = libssh2_session_init();
	a->rc = known_hosts_add(s, a->f->path, "127.0.0.7", 22, (char *)a->f->a, a->f->alen,
	                        LIBSSH2_HOSTKEY_TYPE_ED25519, err, sizeof err);
	libssh2_session_free(s);
	return NULL;
}

static void test_concurrent_adds_record_once(void **state)
{
	fixture *f = *state;
	pthread_t t[8];
	adder a[8];
	for (int i = 0; i < 8; i++) {
		a[i] = (adder){f, -99};
		pthread_create(&t[i], NULL, add_thread, &a[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].rc, 0);
	}
	assert_string_equal(read_file(f->path), "127.0.0.7 ssh-ed25519 " KEY_A "\n");
}

/* The fingerprints `ssh-keygen -lf` prints for KEY_A and KEY_E. */
#define FP_A "SHA256:7i4iDGwCYHULKVxqrFGyRmKhQ9quJDzMj+3MTrvozew"
#define FP_E "SHA256:UXJxIxrRV9wZZpMlvHv3gankXL9pCbTFQ7TdWbnURbQ"

static void test_fingerprint_as_ssh_keygen_prints_it(void **state)
{
	unsigned char blob[256];
	char fp[64];
	(void)state;
	size_t n = b64decode(KEY_A, blob);
	known_hosts_fingerprint((const char *)blob, n, fp, sizeof fp);
	assert_string_equal(fp, FP_A); /* no '=' padding */
	n = b64decode(KEY_E, blob);
	known_hosts_fingerprint((const char *)blob, n, fp, sizeof fp);
	assert_string_equal(fp, FP_E);
	assert_int_equal(strlen(fp), 50);
	assert_string_equal(known_hosts_key_type_name(LIBSSH2_HOSTKEY_TYPE_ED25519), "ssh-ed25519");
	assert_string_equal(known_hosts_key_type_name(LIBSSH2_HOSTKEY_TYPE_RSA), "ssh-rsa");
	assert_string_equal(known_hosts_key_type_name(LIBSSH2_HOSTKEY_TYPE_ECDSA_256),
	                    "ecdsa-sha2-nistp256");
	assert_string_equal(known_hosts_key_type_name(999), "unknown");
}

static void test_hostkey_hints(void **state)
{
	char hint[256], addr[64];
	(void)state;
	assert_true(ssh_hostkey_hint(SSH_ERR_HOSTKEY_UNKNOWN, "vps-1", hint, sizeof hint));
	assert_string_equal(hint, "fleetkeeper known-hosts scan vps-1 --accept");
	assert_true(ssh_hostkey_hint(SSH_ERR_HOSTKEY_MISMATCH, "vps-1", hint, sizeof hint));
	assert_string_equal(hint,
	                    "if the server was rebuilt: fleetkeeper known-hosts forget vps-1, "
	                    "then fleetkeeper known-hosts scan vps-1 --accept");
	assert_false(ssh_hostkey_hint(SSH_ERR_AUTH, "vps-1", hint, sizeof hint));
	assert_string_equal(hint, "");
	ssh_target_address(addr, sizeof addr, "127.0.0.1", 2222);
	assert_string_equal(addr, "127.0.0.1:2222");
	ssh_target_address(addr, sizeof addr, "::1", 0);
	assert_string_equal(addr, "[::1]:22");
}

static int forget(fixture *f, const char *host, int port)
{
	char err[256];
	int removed = -1;
	assert_int_equal(known_hosts_forget(f->path, host, port, &removed, err, sizeof err), 0);
	return removed;
}

static void test_forget_keeps_every_other_line(void **state)
{
	fixture *f = *state;
	struct stat st;
	int type = LIBSSH2_HOSTKEY_TYPE_ED25519;

	write_file(f->path, "# keep: [127.0.0.5]:2022 in a comment\n"
	                    "[127.0.0.5]:2022 ssh-ed25519 " KEY_A "\n"
	                    "127.0.0.5 ssh-ed25519 " KEY_B "\n"
	                    "web1,[127.0.0.5]:2022 ssh-ed25519 " KEY_A " list\r\n"
	                    "[127.0.0.5]:20222 ssh-ed25519 " KEY_A "\n"
	                    "@revoked [127.0.0.5]:2022 ssh-ed25519 " KEY_B "\n"
	                    "[127.0.0.*]:2022 ssh-ed25519 " KEY_B "\n"
	                    "  \n"
	                    "not an entry\n"
	                    "[127.0.0.5]:2022 ssh-ed25519 " KEY_B); /* no final newline */
	chmod(f->path, 0640);
	assert_int_equal(forget(f, "127.0.0.5", 2022), 3);
	assert_string_equal(read_file(f->path), "# keep: [127.0.0.5]:2022 in a comment\n"
	                                        "127.0.0.5 ssh-ed25519 " KEY_B "\n"
	                                        "[127.0.0.5]:20222 ssh-ed25519 " KEY_A "\n"
	                                        "@revoked [127.0.0.5]:2022 ssh-ed25519 " KEY_B "\n"
	                                        "[127.0.0.*]:2022 ssh-ed25519 " KEY_B "\n"
	                                        "  \n"
	                                        "not an entry\n");
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(check(f, "127.0.0.5", 2022, f->a, f->alen, type), KNOWN_HOSTS_UNKNOWN);
	assert_int_equal(check(f, "127.0.0.5", 22, f->b, f->blen, type), KNOWN_HOSTS_MATCH);
	/* again: nothing left to remove, the file untouched */
	assert_int_equal(forget(f, "127.0.0.5", 2022), 0);
	/* port 22 is the plain name, case does not matter */
	write_file(f->path, "WEB1 ssh-ed25519 " KEY_A "\n");
	assert_int_equal(forget(f, "web1", 22), 1);
	assert_string_equal(read_file(f->path), "");
}

static void test_forget_hashed_entries(void **state)
{
	fixture *f = *state;
	char cmd[512];

	if (access("/usr/bin/ssh-keygen", X_OK) != 0)
		skip();
	write_file(f->path, "[127.0.0.9]:2200 ssh-ed25519 " KEY_A "\n"
	                    "[127.0.0.9]:2201 ssh-ed25519 " KEY_B "\n");
	snprintf(cmd, sizeof cmd, "/usr/bin/ssh-keygen -q -H -f '%s' >/dev/null 2>&1", f->path);
	assert_int_equal(system(cmd), 0);
	assert_memory_equal(read_file(f->path), "|1|", 3);
	assert_int_equal(forget(f, "127.0.0.9", 2200), 1);
	assert_int_equal(check(f, "127.0.0.9", 2200, f->a, f->alen, LIBSSH2_HOSTKEY_TYPE_ED25519),
	                 KNOWN_HOSTS_UNKNOWN);
	assert_int_equal(check(f, "127.0.0.9", 2201, f->b, f->blen, LIBSSH2_HOSTKEY_TYPE_ED25519),
	                 KNOWN_HOSTS_MATCH);
}

static void test_forget_missing_file_and_bad_names(void **state)
{
	fixture *f = *state;
	char err[256];
	int removed = -1;
	assert_int_equal(forget(f, "127.0.0.5", 22), 0);
	assert_int_equal(access(f->path, F_OK), -1); /* not created */
	assert_int_equal(known_hosts_forget(f->path, "*", 22, &removed, err, sizeof err),
	                 KNOWN_HOSTS_EINVAL);
	assert_int_equal(known_hosts_forget(f->path, "a b", 22, &removed, err, sizeof err),
	                 KNOWN_HOSTS_EINVAL);
}

/* An append that waited for the flock while the file was replaced (as a
 * forget replaces it) goes into the new file, not the unlinked old one. */
static void test_add_after_replace_goes_to_the_new_file(void **state)
{
	fixture *f = *state;
	char tmp[160];
	pthread_t t;
	adder a = {f, -99};

	write_file(f->path, "old ssh-ed25519 " KEY_B "\n");
	int fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	pthread_create(&t, NULL, add_thread, &a);
	usleep(200 * 1000); /* the adder opens the old file and waits for its lock */
	snprintf(tmp, sizeof tmp, "%s.new", f->path);
	write_file(tmp, "# replaced\n");
	assert_int_equal(rename(tmp, f->path), 0);
	close(fd); /* releases the lock on the old file */
	pthread_join(t, NULL);
	assert_int_equal(a.rc, 0);
	assert_string_equal(read_file(f->path), "# replaced\n127.0.0.7 ssh-ed25519 " KEY_A "\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_names),
	        cmocka_unit_test_setup_teardown(test_missing_file_is_unknown, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_plain_and_port_entries, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_other_key_type_is_mismatch, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_hashed_entry, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_add_appends_once, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_add_creates_file_and_directory, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_concurrent_adds_record_once, setup, teardown),
	        cmocka_unit_test(test_fingerprint_as_ssh_keygen_prints_it),
	        cmocka_unit_test(test_hostkey_hints),
	        cmocka_unit_test_setup_teardown(test_forget_keeps_every_other_line, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_forget_hashed_entries, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_forget_missing_file_and_bad_names, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_add_after_replace_goes_to_the_new_file, setup,
	                                        teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
