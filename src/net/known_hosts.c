/*
 * known_hosts — OpenSSH known_hosts lookups and accept-new appends; see
 * known_hosts.h.
 *
 * Invariants:
 *  1. The file is never rewritten, only appended to, so comments, markers
 *     and entries libssh2 cannot parse survive our writes untouched.
 *  2. An append happens only under the process mutex and an exclusive flock
 *     on the file, after re-reading it under that lock.
 *  3. A host known under another key type than the one presented counts as
 *     a mismatch, never as unknown: accept-new cannot be bypassed by a
 *     server that offers a different key type.
 */
#include "known_hosts.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct known_hosts {
	LIBSSH2_KNOWNHOSTS *list;
};

static pthread_mutex_t add_lock = PTHREAD_MUTEX_INITIALIZER;

/* libssh2 host key types, their known_hosts key bits and method names. */
static const struct {
	int type;
	int bits;
	const char *methods;
} key_types[] = {
        {LIBSSH2_HOSTKEY_TYPE_ED25519, LIBSSH2_KNOWNHOST_KEY_ED25519, "ssh-ed25519"},
        {LIBSSH2_HOSTKEY_TYPE_ECDSA_256, LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ecdsa-sha2-nistp256"},
        {LIBSSH2_HOSTKEY_TYPE_ECDSA_384, LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ecdsa-sha2-nistp384"},
        {LIBSSH2_HOSTKEY_TYPE_ECDSA_521, LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ecdsa-sha2-nistp521"},
        {LIBSSH2_HOSTKEY_TYPE_RSA, LIBSSH2_KNOWNHOST_KEY_SSHRSA,
         "rsa-sha2-512,rsa-sha2-256,ssh-rsa"},
        {LIBSSH2_HOSTKEY_TYPE_DSS, LIBSSH2_KNOWNHOST_KEY_SSHDSS, "ssh-dss"},
};
#define KEY_TYPE_COUNT (sizeof key_types / sizeof key_types[0])

void known_hosts_name(char *buf, size_t cap, const char *host, int port)
{
	if (port <= 0 || port == 22)
		snprintf(buf, cap, "%s", host);
	else
		snprintf(buf, cap, "[%s]:%d", host, port);
}

static int key_bits(int type)
{
	for (size_t i = 0; i < KEY_TYPE_COUNT; i++)
		if (key_types[i].type == type)
			return key_types[i].bits;
	return -1;
}

static bool line_is_blank(const char *line)
{
	line += strspn(line, " \t\r\n");
	return *line == '\0' || *line == '#';
}

static int read_entries(known_hosts *kh, FILE *f, int *skipped)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int bad = 0;

	while ((len = getline(&line, &cap, f)) > 0) {
		if (line_is_blank(line))
			continue;
		if (libssh2_knownhost_readline(kh->list, line, (size_t)len,
		                               LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0)
			bad++;
	}
	free(line);
	if (skipped)
		*skipped = bad;
	return ferror(f) ? -1 : 0;
}

int known_hosts_load(known_hosts **out, LIBSSH2_SESSION *session, const char *path, int *skipped,
                     char *err, size_t errlen)
{
	known_hosts *kh = calloc(1, sizeof *kh);
	FILE *f = NULL;

	*out = NULL;
	if (skipped)
		*skipped = 0;
	if (kh == NULL || (kh->list = libssh2_knownhost_init(session)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	f = fopen(path, "re");
	if (f == NULL && errno != ENOENT) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	if (f && read_entries(kh, f, skipped) != 0) {
		snprintf(err, errlen, "cannot read %s", path);
		goto fail;
	}
	if (f)
		fclose(f);
	*out = kh;
	return KNOWN_HOSTS_OK;
fail:
	if (f)
		fclose(f);
	known_hosts_free(kh);
	return KNOWN_HOSTS_EIO;
}

void known_hosts_free(known_hosts *kh)
{
	if (kh == NULL)
		return;
	if (kh->list)
		libssh2_knownhost_free(kh->list);
	free(kh);
}

/* True if name has an entry with key type bits (whatever the key). A
 * base64 key of "-" can never match, so a known name answers MISMATCH. */
static bool type_known(known_hosts *kh, const char *name, int bits)
{
	int mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_BASE64 | bits;
	return libssh2_knownhost_checkp(kh->list, name, -1, "-", 1, mask, NULL) ==
	       LIBSSH2_KNOWNHOST_CHECK_MISMATCH;
}

int known_hosts_types(known_hosts *kh, const char *host, int port, char *buf, size_t cap)
{
	char name[300];
	int n = 0;
	size_t used = 0;

	known_hosts_name(name, sizeof name, host, port);
	if (cap > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < KEY_TYPE_COUNT; i++) {
		if (!type_known(kh, name, key_types[i].bits))
			continue;
		int w = snprintf(buf + used, used < cap ? cap - used : 0, "%s%s", n ? "," : "",
		                 key_types[i].methods);
		if (w > 0 && used + (size_t)w < cap)
			used += (size_t)w;
		n++;
	}
	return n;
}

known_hosts_status known_hosts_check(known_hosts *kh, const char *host, int port, const char *key,
                                     size_t keylen, int type)
{
	char name[300];
	char other[256];
	int bits = key_bits(type);

	if (bits < 0)
		return KNOWN_HOSTS_MISMATCH; /* invariant 3: fail closed */
	known_hosts_name(name, sizeof name, host, port);
	int rc = libssh2_knownhost_checkp(
	        kh->list, name, -1, key, keylen,
	        LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | bits, NULL);
	if (rc == LIBSSH2_KNOWNHOST_CHECK_MATCH)
		return KNOWN_HOSTS_MATCH;
	if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND &&
	    known_hosts_types(kh, host, port, other, sizeof other) == 0)
		return KNOWN_HOSTS_UNKNOWN;
	return KNOWN_HOSTS_MISMATCH;
}

static void make_parent_dir(const char *path)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return;
	*slash = '\0';
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return; /* open() reports the real error */
}

/* The entry as one OpenSSH line, newline-terminated. */
static int format_line(known_hosts *kh, const char *host, int port, const char *key, size_t keylen,
                       int bits, char *line, size_t cap, size_t *len)
{
	struct libssh2_knownhost *entry = NULL;
	char name[300];

	known_hosts_name(name, sizeof name, host, port);
	if (libssh2_knownhost_addc(kh->list, name, NULL, key, keylen, NULL, 0,
	                           LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
	                                   bits,
	                           &entry) != 0)
		return -1;
	if (libssh2_knownhost_writeline(kh->list, entry, line, cap - 1, len,
	                                LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0)
		return -1;
	if (*len == 0 || line[*len - 1] != '\n')
		line[(*len)++] = '\n';
	line[*len] = '\0';
	return 0;
}

static bool ends_with_newline(int fd)
{
	struct stat st;
	char c = '\n';
	if (fstat(fd, &st) != 0 || st.st_size == 0)
		return true;
	if (pread(fd, &c, 1, st.st_size - 1) != 1)
		return true;
	return c == '\n';
}

/* Under the lock: re-read, compare, append. */
static int add_locked(LIBSSH2_SESSION *session, int fd, const char *path, const char *host,
                      int port, const char *key, size_t keylen, int bits, int type, char *err,
                      size_t errlen)
{
	known_hosts *kh = NULL;
	char line[16384];
	size_t len = 0;
	int rc = known_hosts_load(&kh, session, path, NULL, err, errlen);

	if (rc != KNOWN_HOSTS_OK)
		return rc;
	known_hosts_status st = known_hosts_check(kh, host, port, key, keylen, type);
	if (st == KNOWN_HOSTS_MISMATCH) {
		snprintf(err, errlen, "%s: host recorded meanwhile with another key", path);
		rc = KNOWN_HOSTS_ECHANGED;
	} else if (st == KNOWN_HOSTS_UNKNOWN) {
		rc = KNOWN_HOSTS_EIO;
		if (format_line(kh, host, port, key, keylen, bits, line, sizeof line, &len) != 0)
			snprintf(err, errlen, "cannot format the known_hosts entry");
		else if (!ends_with_newline(fd) && write(fd, "\n", 1) != 1)
			snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		else if (write(fd, line, len) != (ssize_t)len)
			snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		else
			rc = KNOWN_HOSTS_OK;
	}
	known_hosts_free(kh);
	return rc;
}

int known_hosts_add(LIBSSH2_SESSION *session, const char *path, const char *host, int port,
                    const char *key, size_t keylen, int type, char *err, size_t errlen)
{
	int bits = key_bits(type);
	int rc;

	if (bits < 0 || host == NULL || *host == '\0' || strpbrk(host, " \t\r\n,#")) {
		snprintf(err, errlen, "cannot record this host key");
		return KNOWN_HOSTS_EINVAL;
	}
	pthread_mutex_lock(&add_lock);
	make_parent_dir(path);
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		rc = KNOWN_HOSTS_EIO;
	} else if (flock(fd, LOCK_EX) != 0) {
		snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
		rc = KNOWN_HOSTS_EIO;
	} else {
		rc = add_locked(session, fd, path, host, port, key, keylen, bits, type, err,
		                errlen);
	}
	if (fd >= 0)
		close(fd); /* releases the flock */
	pthread_mutex_unlock(&add_lock);
	return rc;
}
