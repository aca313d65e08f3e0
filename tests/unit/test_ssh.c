/* Unit tests: ssh — stage and error kinds without a server (resolve,
 * refused, silent listener at the deadline, cancel), the stage deadlines
 * ([ssh] connect_timeout, handshake_timeout), attempts above the descriptor
 * limit (EMFILE waits, never fails), and, when run as root
 * with OpenSSH installed, 1,000 attempts in-process against a loopback sshd
 * with the descriptor count compared before and after (memory: ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "ssh.h"
/* The core reaches ssh.h (through ssh_options.h): no libssh2 header. */
#ifdef LIBSSH2_H
#error "ssh.h must not include <libssh2.h>; only src/net/*.c and known_hosts.h may"
#endif

/* A listening loopback socket that never accepts: TCP connects, SSH never
 * speaks. */
static int silent_listener(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(fd, 128), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static int closed_port(void)
{
	int port;
	close(silent_listener(&port));
	return port;
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static ssh_options base(const char *host, int port, int64_t timeout_ms)
{
	ssh_options o;
	ssh_options_default(&o);
	o.host = host;
	o.port = port;
	o.timeout_ms = timeout_ms;
	o.policy = HOSTKEY_POLICY_OFF;
	return o;
}

static void test_policy_names(void **state)
{
	hostkey_policy p;
	(void)state;
	assert_int_equal(hostkey_policy_parse("strict", &p), 0);
	assert_int_equal(p, HOSTKEY_POLICY_STRICT);
	assert_int_equal(hostkey_policy_parse("accept-new", &p), 0);
	assert_int_equal(p, HOSTKEY_POLICY_ACCEPT_NEW);
	assert_int_equal(hostkey_policy_parse("off", &p), 0);
	assert_int_equal(p, HOSTKEY_POLICY_OFF);
	assert_int_equal(hostkey_policy_parse("yes", &p), -1);
	assert_int_equal(hostkey_policy_parse(NULL, &p), -1);
	assert_string_equal(hostkey_policy_name(HOSTKEY_POLICY_ACCEPT_NEW), "accept-new");
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(ssh_stage_name(SSH_STAGE_RESOLVE), "resolve");
	assert_string_equal(ssh_stage_name(SSH_STAGE_HOSTKEY), "hostkey");
	assert_string_equal(ssh_stage_name(SSH_STAGE_EXEC), "exec");
	assert_string_equal(ssh_error_name(SSH_ERR_CONNECT_REFUSED), "connect_refused");
	assert_string_equal(ssh_error_name(SSH_ERR_HOSTKEY_MISMATCH), "hostkey_mismatch");
	assert_string_equal(ssh_error_name(SSH_ERR_AUTH), "auth_failed");
	assert_string_equal(ssh_error_name(SSH_ERR_TIMEOUT), "timeout");
	assert_null(ssh_error_name(SSH_OK));
}

/* [ssh] from a file: the stage deadlines and their defaults. */
static int options_from_text(const char *text, ssh_options *o, char *err, size_t errlen)
{
	char path[] = "/tmp/fk_test_ssh_conf_XXXXXX";
	int fd = mkstemp(path);
	config *cfg = NULL;
	config_errors errs = {0};
	int rc = -2;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	ssh_options_default(o);
	if (config_load(&cfg, path, &errs) == 0)
		rc = ssh_options_from_config(o, config_section_find(cfg, "ssh"), err, errlen);
	else if (errs.count > 0)
		snprintf(err, errlen, "%s", errs.lines[0]);
	config_errors_free(&errs);
	if (cfg)
		config_unref(cfg);
	unlink(path);
	return rc;
}

static void test_options_stage_deadlines(void **state)
{
	ssh_options o;
	char err[256] = "";
	(void)state;

	assert_int_equal(options_from_text("[ssh]\nuser = u\n", &o, err, sizeof err), 0);
	assert_int_equal(o.timeout_ms, SSH_DEFAULT_TIMEOUT_MS);
	assert_int_equal(o.connect_timeout_ms, 5000);
	assert_int_equal(o.handshake_timeout_ms, 5000);
	assert_int_equal(options_from_text("[ssh]\ntimeout = 30s\nconnect_timeout = 1500ms\n"
	                                   "handshake_timeout = 2s\n",
	                                   &o, err, sizeof err),
	                 0);
	assert_int_equal(o.timeout_ms, 30000);
	assert_int_equal(o.connect_timeout_ms, 1500);
	assert_int_equal(o.handshake_timeout_ms, 2000);
	/* a bad value is refused, naming the key */
	assert_int_not_equal(
	        options_from_text("[ssh]\nconnect_timeout = soon\n", &o, err, sizeof err), 0);
	assert_non_null(strstr(err, "connect_timeout"));
}

/* connect_timeout: a port whose listen queue is full never completes the
 * TCP connect; the attempt fails at the connect deadline, not the whole. */
static void test_connect_deadline_before_whole(void **state)
{
	int port, fill = -1;
	int lfd = silent_listener(&port);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ssh_options o = base("127.0.0.1", port, 5000);
	ssh_result r;
	(void)state;

	assert_int_equal(listen(lfd, 0), 0); /* a queue of one ... */
	for (int i = 0; i < 2; i++) {        /* ... filled, then one more in SYN_SENT */
		fill = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		connect(fill, (struct sockaddr *)&sa, sizeof sa);
	}
	o.connect_timeout_ms = 300;
	int64_t t0 = clock_mono_ms();
	ssh_test(&o, -1, &r);
	int64_t took = clock_mono_ms() - t0;
	assert_int_equal(r.error, SSH_ERR_CONNECT_TIMEOUT);
	assert_int_equal(r.stage, SSH_STAGE_CONNECT);
	assert_non_null(strstr(r.message, "connect_timeout"));
	assert_true(took >= 290 && took < 2000);
	close(lfd);
}

/* handshake_timeout: TCP connects, SSH never speaks. */
static void test_handshake_deadline_before_whole(void **state)
{
	int port;
	int lfd = silent_listener(&port);
	ssh_options o = base("127.0.0.1", port, 5000);
	ssh_result r;
	(void)state;

	o.handshake_timeout_ms = 300;
	ssh_test(&o, -1, &r);
	assert_int_equal(r.error, SSH_ERR_TIMEOUT);
	assert_int_equal(r.stage, SSH_STAGE_HANDSHAKE);
	assert_non_null(strstr(r.message, "handshake_timeout"));
	assert_true(r.duration_ms >= 290 && r.duration_ms < 2000);
	close(lfd);
}

/* More attempts than free descriptors: socket() fails with EMFILE, the
 * attempt waits for another to end and is never failed for it. */
static void test_emfile_waits_for_a_descriptor(void **state)
{
	enum { N = 40, HELD = 48, SPARE = 8 };
	int port, held[HELD];
	int lfd = silent_listener(&port);
	ssh_options o[N];
	ssh_result r[N];
	struct rlimit old, low;
	(void)state;

	for (int i = 0; i < HELD; i++)
		held[i] = dup(lfd); /* so that the reserve is not all free */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)(count_fds() + SPARE);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_true(ssh_concurrency_limit() > SPARE); /* more than will open */
	for (int i = 0; i < N; i++)
		o[i] = base("127.0.0.1", port, 100);
	assert_int_equal(ssh_run_many(o, N, N, 0, -1, r), 0);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	for (int i = 0; i < N; i++)
		if (r[i].error != SSH_ERR_TIMEOUT)
			fail_msg("attempt %d: %s (%s)", i, ssh_error_name(r[i].error),
			         r[i].message);
	for (int i = 0; i < HELD; i++)
		close(held[i]);
	close(lfd);
}

static void test_concurrency_limit_follows_rlimit(void **state)
{
	struct rlimit old, low;
	(void)state;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = 1024;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(ssh_concurrency_limit(), 1024 - 128);
	low.rlim_cur = 64;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(ssh_concurrency_limit(), 32);
	low.rlim_cur = 20;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(ssh_concurrency_limit(), 1);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

static void test_resolve_failed(void **state)
{
	ssh_options o = base("no-such-host.invalid", 22, 2000);
	ssh_result r;
	(void)state;
	assert_int_equal(ssh_test(&o, -1, &r), 0);
	assert_false(r.success);
	assert_int_equal(r.stage, SSH_STAGE_RESOLVE);
	assert_int_equal(r.error, SSH_ERR_RESOLVE);
	assert_int_equal(r.exit_status, -1);
}

static void test_connect_refused(void **state)
{
	ssh_options o = base("127.0.0.1", closed_port(), 2000);
	ssh_result r;
	(void)state;
	ssh_test(&o, -1, &r);
	assert_int_equal(r.stage, SSH_STAGE_CONNECT);
	assert_int_equal(r.error, SSH_ERR_CONNECT_REFUSED);
	assert_string_equal(r.message, "connection refused");
}

static void test_silent_listener_fails_at_deadline(void **state)
{
	int port, lfd = silent_listener(&port);
	ssh_options o = base("127.0.0.1", port, 500);
	ssh_result r;
	(void)state;
	int64_t t0 = clock_mono_ms();
	ssh_test(&o, -1, &r);
	int64_t wall = clock_mono_ms() - t0;
	close(lfd);
	assert_int_equal(r.stage, SSH_STAGE_HANDSHAKE);
	assert_int_equal(r.error, SSH_ERR_TIMEOUT);
	assert_in_range(r.duration_ms, 500, 550);
	assert_in_range(wall, 500, 550);
}

static void test_many_silent_share_one_deadline(void **state)
{
	int port, lfd = silent_listener(&port);
	ssh_options o[24];
	ssh_result r[24];
	(void)state;
	for (int i = 0; i < 24; i++)
		o[i] = base("127.0.0.1", port, 400);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(ssh_run_many(o, 24, 24, 0, -1, r), 0);
	int64_t wall = clock_mono_ms() - t0;
	close(lfd);
	for (int i = 0; i < 24; i++) {
		assert_int_equal(r[i].error, SSH_ERR_TIMEOUT);
		assert_in_range(r[i].duration_ms, 400, 440);
	}
	assert_in_range(wall, 400, 480); /* in parallel, not 24 x 400 ms */
}

static void test_cancel_ends_promptly(void **state)
{
	int port, lfd = silent_listener(&port);
	int efd = eventfd(0, EFD_CLOEXEC);
	ssh_options o[4];
	ssh_result r[4];
	uint64_t one = 1;
	(void)state;
	for (int i = 0; i < 4; i++)
		o[i] = base("127.0.0.1", port, 30000);
	assert_int_equal(write(efd, &one, sizeof one), (ssize_t)sizeof one);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(ssh_run_many(o, 4, 2, 0, efd, r), SSH_ERR_CANCELLED);
	assert_true(clock_mono_ms() - t0 < 1000);
	for (int i = 0; i < 4; i++) {
		assert_false(r[i].success);
		assert_int_equal(r[i].error, SSH_ERR_CANCELLED);
	}
	close(efd);
	close(lfd);
}

/* ---- against a real sshd ---- */

typedef struct {
	char dir[64];
	pid_t pid;
	int port;
	char key[128];
	char kh[128];
} sshd_fixture;

static int run_cmd(const char *fmt, const char *arg)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, fmt, arg, arg);
	return system(cmd);
}

static bool port_accepts(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                         .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

static int sshd_setup(void **state)
{
	sshd_fixture *f = calloc(1, sizeof *f);
	char conf[256];
	FILE *fp;

	*state = f;
	if (geteuid() != 0 || access("/usr/sbin/sshd", X_OK) != 0 ||
	    access("/usr/bin/ssh-keygen", X_OK) != 0)
		return 0; /* the tests skip */
	snprintf(f->dir, sizeof f->dir, "/tmp/fk_ssh_XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	if (run_cmd("ssh-keygen -q -t ed25519 -N '' -f %s/host >/dev/null 2>&1 </dev/null%.0s",
	            f->dir) != 0 ||
	    run_cmd("ssh-keygen -q -t ed25519 -N '' -f %s/client >/dev/null 2>&1 </dev/null%.0s",
	            f->dir) != 0 ||
	    run_cmd("cp %s/client.pub %s/authorized_keys", f->dir) != 0)
		return -1;
	snprintf(f->key, sizeof f->key, "%s/client", f->dir);
	snprintf(f->kh, sizeof f->kh, "%s/known_hosts", f->dir);
	f->port = closed_port();
	snprintf(conf, sizeof conf, "%s/sshd_config", f->dir);
	fp = fopen(conf, "w");
	fprintf(fp,
	        "ListenAddress 127.0.0.1:%d\nHostKey %s/host\nPidFile %s/sshd.pid\n"
	        "AuthorizedKeysFile %s/authorized_keys\nUsePAM no\nStrictModes no\n"
	        "PermitRootLogin yes\nPasswordAuthentication no\nMaxStartups 2000\n"
	        "UseDNS no\nLogLevel ERROR\nSetEnv HOME=%s\n",
	        f->port, f->dir, f->dir, f->dir, f->dir);
	fclose(fp);
	run_cmd("mkdir -p /run/sshd%.0s", "");
	f->pid = fork();
	if (f->pid == 0) {
		execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", conf, (char *)NULL);
		_exit(127);
	}
	int64_t end = clock_mono_ms() + 30000;
	while (!port_accepts(f->port)) {
		if (clock_mono_ms() > end || waitpid(f->pid, NULL, WNOHANG) != 0)
			return -1;
		poll(NULL, 0, 20); /* bounded wait for the port, with a deadline */
	}
	return 0;
}

static int sshd_teardown(void **state)
{
	sshd_fixture *f = *state;
	if (f->pid > 0) {
		kill(f->pid, SIGTERM);
		waitpid(f->pid, NULL, 0);
	}
	if (f->dir[0])
		run_cmd("rm -rf '%s'%.0s", f->dir);
	free(f);
	return 0;
}

static ssh_options sshd_options(const sshd_fixture *f)
{
	ssh_options o = base("127.0.0.1", f->port, 20000);
	o.key_file = f->key;
	o.known_hosts = f->kh;
	o.policy = HOSTKEY_POLICY_ACCEPT_NEW;
	return o;
}

static void test_sshd_exec_output(void **state)
{
	sshd_fixture *f = *state;
	ssh_result r;
	if (f->pid <= 0)
		skip();
	ssh_options o = sshd_options(f);
	o.command = "printf 'line one\\nline two\\n'; exit 0";
	ssh_test(&o, -1, &r);
	assert_true(r.success);
	assert_int_equal(r.stage, SSH_STAGE_EXEC);
	assert_int_equal(r.exit_status, 0);
	assert_string_equal(r.output, "line one");
	o.command = "echo out; exit 4";
	ssh_test(&o, -1, &r);
	assert_false(r.success);
	assert_int_equal(r.error, SSH_ERR_COMMAND);
	assert_int_equal(r.exit_status, 4);
	assert_string_equal(r.output, "out");
}

/* The handshake gate: silent servers listed first hold no place, so the
 * answering ones behind them (one place for all) all succeed. */
static void test_sshd_gate_silent_servers_hold_no_place(void **state)
{
	sshd_fixture *f = *state;
	ssh_options o[16];
	ssh_result r[16];
	if (f->pid <= 0)
		skip();
	int port, lfd = silent_listener(&port);
	for (int i = 0; i < 16; i++) {
		o[i] = sshd_options(f);
		o[i].timeout_ms = 8000;
		if (i < 6)
			o[i].port = port;
	}
	assert_int_equal(ssh_run_many(o, 16, 16, 1, -1, r), 0);
	close(lfd);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(r[i].error, SSH_ERR_TIMEOUT);
		assert_non_null(strstr(r[i].message, "sent no SSH banner"));
	}
	for (int i = 6; i < 16; i++) {
		if (!r[i].success)
			fail_msg("attempt %d: %s", i, r[i].message);
	}
}

/* One place, four servers that each take 1 s with a deadline of 2.5 s:
 * they go one after the other (in the order their banners came), the last
 * one waits about 3 s for its place, longer than its deadline, and still
 * passes: the wait is this machine's, reported as gate_wait_ms and left
 * out of the duration. With four places all four go together. */
static void test_sshd_gate_serves_in_order(void **state)
{
	sshd_fixture *f = *state;
	ssh_options o[4];
	ssh_result r[4];
	if (f->pid <= 0)
		skip();
	for (int i = 0; i < 4; i++) {
		o[i] = sshd_options(f);
		o[i].command = "sleep 1";
		o[i].timeout_ms = 2500;
	}
	int64_t t0 = clock_mono_ms();
	assert_int_equal(ssh_run_many(o, 4, 4, 1, -1, r), 0);
	assert_true(clock_mono_ms() - t0 >= 4000); /* one after the other */
	int64_t longest_wait = 0;
	for (int i = 0; i < 4; i++) {
		if (!r[i].success)
			fail_msg("attempt %d with one place: %s", i, r[i].message);
		assert_in_range(r[i].duration_ms, 1000, 2499);
		if (r[i].gate_wait_ms > longest_wait)
			longest_wait = r[i].gate_wait_ms;
	}
	assert_true(longest_wait >= 2500);

	t0 = clock_mono_ms();
	assert_int_equal(ssh_run_many(o, 4, 4, 4, -1, r), 0);
	for (int i = 0; i < 4; i++) {
		if (!r[i].success)
			fail_msg("attempt %d with four places: %s", i, r[i].message);
		assert_int_equal(r[i].gate_wait_ms, 0);
	}
	assert_true(clock_mono_ms() - t0 < 3000); /* together; one by one is >= 4 s */
}

/* The fingerprint `ssh-keygen -lf` prints for the sshd's host key. */
static void keygen_fingerprint(const sshd_fixture *f, char *out, size_t cap)
{
	char cmd[512], line[512] = "";
	snprintf(cmd, sizeof cmd, "ssh-keygen -lf %s/host.pub", f->dir);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof line, p));
	pclose(p);
	char *fp = strchr(line, ' ');
	assert_non_null(fp);
	snprintf(out, cap, "%.*s", (int)strcspn(fp + 1, " \n"), fp + 1);
}

/* known-hosts scan: the handshake only, never the (here unreadable) key. */
static void test_sshd_hostkey_only(void **state)
{
	sshd_fixture *f = *state;
	char kh[300], want[128];
	ssh_result r;
	if (f->pid <= 0)
		skip();
	keygen_fingerprint(f, want, sizeof want);
	snprintf(kh, sizeof kh, "%s/kh_scan", f->dir);
	ssh_options o = sshd_options(f);
	o.known_hosts = kh;
	o.key_file = "/nonexistent/key";
	o.hostkey_only = true;
	o.policy = HOSTKEY_POLICY_STRICT;
	ssh_test(&o, -1, &r);
	assert_int_equal(r.error, SSH_ERR_HOSTKEY_UNKNOWN);
	assert_int_equal(r.stage, SSH_STAGE_HOSTKEY);
	assert_string_equal(r.key_type, "ssh-ed25519");
	assert_string_equal(r.fingerprint, want);
	assert_non_null(strstr(r.message, want));
	o.policy = HOSTKEY_POLICY_ACCEPT_NEW;
	ssh_test(&o, -1, &r);
	assert_true(r.success);
	assert_true(r.hostkey_added);
	assert_int_equal(r.stage, SSH_STAGE_HOSTKEY);
	assert_int_equal(r.exit_status, -1);
	o.policy = HOSTKEY_POLICY_STRICT;
	ssh_test(&o, -1, &r);
	assert_true(r.success);
	assert_false(r.hostkey_added);
	assert_string_equal(r.fingerprint, want);
}

static void test_sshd_no_fd_leak_over_1000_attempts(void **state)
{
	sshd_fixture *f = *state;
	const char *env = getenv("FK_SSH_LEAK_ITERATIONS");
	size_t n = env ? (size_t)atol(env) : 1000;
	int sport, lfd;
	if (f->pid <= 0)
		skip();
	lfd = silent_listener(&sport);
	int refused = closed_port();
	ssh_options *o = calloc(n, sizeof *o);
	ssh_result *r = calloc(n, sizeof *r);
	ssh_result one;

	/* warm-up (accept-new writes the file) before counting */
	ssh_options w = sshd_options(f);
	ssh_test(&w, -1, &one);
	assert_true(one.success);
	int before = count_fds();
	for (size_t i = 0; i < n; i++) {
		o[i] = sshd_options(f);
		if (i % 20 == 7)
			o[i].port = refused;
		if (i % 20 == 13) {
			o[i].port = sport;
			o[i].timeout_ms = 200;
		}
		if (i % 50 == 21)
			o[i].key_file = "/nonexistent/key";
	}
	assert_int_equal(ssh_run_many(o, n, 16, 0, -1, r), 0);
	for (size_t i = 0; i < n; i++) {
		ssh_error want = i % 20 == 7    ? SSH_ERR_CONNECT_REFUSED
		                 : i % 20 == 13 ? SSH_ERR_TIMEOUT
		                 : i % 50 == 21 ? SSH_ERR_CREDENTIALS
		                                : SSH_OK;
		if (r[i].error != want)
			fail_msg("attempt %zu: %s (%s), wanted %s", i, ssh_error_name(r[i].error),
			         r[i].message, ssh_error_name(want));
	}
	for (int i = 0; i < 20; i++) { /* and one at a time */
		ssh_test(&o[i], -1, &one);
		assert_int_equal(one.error, r[i].error);
	}
	assert_int_equal(count_fds(), before);
	close(lfd);
	free(o);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_policy_names),
	        cmocka_unit_test(test_names),
	        cmocka_unit_test(test_resolve_failed),
	        cmocka_unit_test(test_connect_refused),
	        cmocka_unit_test(test_silent_listener_fails_at_deadline),
	        cmocka_unit_test(test_many_silent_share_one_deadline),
	        cmocka_unit_test(test_cancel_ends_promptly),
	        cmocka_unit_test(test_options_stage_deadlines),
	        cmocka_unit_test(test_connect_deadline_before_whole),
	        cmocka_unit_test(test_handshake_deadline_before_whole),
	        cmocka_unit_test(test_emfile_waits_for_a_descriptor),
	        cmocka_unit_test(test_concurrency_limit_follows_rlimit),
	};
	const struct CMUnitTest sshd_tests[] = {
	        cmocka_unit_test(test_sshd_exec_output),
	        cmocka_unit_test(test_sshd_hostkey_only),
	        cmocka_unit_test(test_sshd_gate_silent_servers_hold_no_place),
	        cmocka_unit_test(test_sshd_gate_serves_in_order),
	        cmocka_unit_test(test_sshd_no_fd_leak_over_1000_attempts),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	return rc + cmocka_run_group_tests(sshd_tests, sshd_setup, sshd_teardown);
}
