/* Unit tests: child processes, output lines, cancellation, fds, signals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "proc.h"

#define MAX_LINES 64

/* Lines collected by on_line, per stream; optionally wakes a canceller on
 * the first line. */
typedef struct {
	char *lines[3][MAX_LINES];
	size_t count[3];
	bool nul_ok; /* every line had line[len] == '\0' */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool seen;
} collector;

static void collector_init(collector *c)
{
	memset(c, 0, sizeof *c);
	c->nul_ok = true;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
}

static void collector_free(collector *c)
{
	for (int s = 0; s < 3; s++)
		for (size_t i = 0; i < c->count[s]; i++)
			free(c->lines[s][i]);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
}

static void on_line(void *ctx, int stream, const char *line, size_t len)
{
	collector *c = ctx;
	assert_true(stream == PROC_STDOUT || stream == PROC_STDERR);
	if (line[len] != '\0' || strlen(line) != len)
		c->nul_ok = false;
	if (c->count[stream] < MAX_LINES)
		c->lines[stream][c->count[stream]++] = strndup(line, len);
	pthread_mutex_lock(&c->mu);
	c->seen = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static proc_spec sh_spec(const char **argv, const char *cmd, collector *c)
{
	argv[0] = "sh";
	argv[1] = "-c";
	argv[2] = cmd;
	argv[3] = NULL;
	return (proc_spec){.argv = argv, .cancel_fd = -1, .on_line = on_line, .ctx = c};
}

/* Run `sh -c cmd`, expecting it to start. */
static void run_sh(const char *cmd, collector *c, proc_result *res)
{
	const char *argv[4];
	char err[256] = "";
	proc_spec spec = sh_spec(argv, cmd, c);
	assert_int_equal(proc_run(&spec, res, err, sizeof err), 0);
	assert_string_equal(err, "");
	assert_true(res->pid > 0);
	assert_true(c->nul_ok);
}

static void test_stdout_stderr(void **state)
{
	collector c;
	proc_result res;
	(void)state;
	collector_init(&c);
	run_sh("echo out1; echo err1 >&2; echo out2; echo err2 >&2", &c, &res);
	assert_int_equal(res.exit_code, 0);
	assert_int_equal(res.term_signal, 0);
	assert_false(res.cancelled);
	assert_false(res.killed);
	assert_int_equal(c.count[PROC_STDOUT], 2);
	assert_int_equal(c.count[PROC_STDERR], 2);
	assert_string_equal(c.lines[PROC_STDOUT][0], "out1");
	assert_string_equal(c.lines[PROC_STDOUT][1], "out2");
	assert_string_equal(c.lines[PROC_STDERR][0], "err1");
	assert_string_equal(c.lines[PROC_STDERR][1], "err2");
	collector_free(&c);
}

static void test_exit_codes(void **state)
{
	collector c;
	proc_result res;
	(void)state;
	collector_init(&c);
	run_sh("exit 0", &c, &res);
	assert_int_equal(res.exit_code, 0);
	run_sh("exit 3", &c, &res);
	assert_int_equal(res.exit_code, 3);
	assert_int_equal(res.term_signal, 0);
	run_sh("kill -KILL $$", &c, &res);
	assert_int_equal(res.exit_code, 128 + SIGKILL);
	assert_int_equal(res.term_signal, SIGKILL);
	assert_false(res.cancelled);
	assert_false(res.killed);
	collector_free(&c);
}

static void test_no_callback(void **state)
{
	const char *argv[] = {"sh", "-c", "echo discarded; exit 5", NULL};
	proc_spec spec = {.argv = argv, .cancel_fd = -1};
	proc_result res;
	char err[64] = "";
	(void)state;
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), 0);
	assert_int_equal(res.exit_code, 5);
}

static void start_fails(const char *const *argv, const char *const *env, const char *cwd,
                        const char *expect)
{
	proc_spec spec = {.argv = argv, .env_add = env, .cwd = cwd, .cancel_fd = -1};
	proc_result res;
	char err[256] = "";
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), -1);
	assert_string_equal(err, expect);
}

static void test_missing_program(void **state)
{
	(void)state;
	const char *a1[] = {"fk-no-such-program-xyz", NULL};
	start_fails(a1, NULL, NULL,
	            "cannot run 'fk-no-such-program-xyz': No such file or directory");
	const char *a2[] = {"/nonexistent/fk-prog", "arg", NULL};
	start_fails(a2, NULL, NULL, "cannot run '/nonexistent/fk-prog': No such file or directory");
	/* The child's PATH (env_add) is the one searched. */
	const char *a3[] = {"sh", "-c", "true", NULL};
	const char *env[] = {"PATH=/nonexistent", NULL};
	start_fails(a3, env, NULL, "cannot run 'sh': No such file or directory");
	start_fails(a3, NULL, "/nonexistent/dir",
	            "cannot change directory to '/nonexistent/dir': No such file or directory");
	const char *bad[] = {"NOEQUALS", NULL};
	start_fails(a3, bad, NULL, "invalid environment entry 'NOEQUALS'");
}

static void test_long_line(void **state)
{
	collector c;
	proc_result res;
	(void)state;
	collector_init(&c);
	run_sh("head -c 20000 /dev/zero | tr '\\0' a; echo; echo next", &c, &res);
	assert_int_equal(res.exit_code, 0);
	assert_int_equal(c.count[PROC_STDOUT], 4);
	assert_int_equal(strlen(c.lines[PROC_STDOUT][0]), PROC_MAX_LINE);
	assert_int_equal(strlen(c.lines[PROC_STDOUT][1]), PROC_MAX_LINE);
	assert_int_equal(strlen(c.lines[PROC_STDOUT][2]), 20000 - 2 * PROC_MAX_LINE);
	assert_string_equal(c.lines[PROC_STDOUT][3], "next");
	for (int i = 0; i < 3; i++)
		assert_int_equal(strspn(c.lines[PROC_STDOUT][i], "a"),
		                 strlen(c.lines[PROC_STDOUT][i]));
	collector_free(&c);
}

static void test_line_exactly_max(void **state)
{
	collector c;
	proc_result res;
	char cmd[160];
	(void)state;
	collector_init(&c);
	/* PROC_MAX_LINE bytes then "\n", then the same with "\r\n": one line each. */
	snprintf(cmd, sizeof cmd,
	         "head -c %d /dev/zero | tr '\\0' b; echo; head -c %d /dev/zero | tr '\\0' c;"
	         " printf '\\r\\n'",
	         PROC_MAX_LINE, PROC_MAX_LINE);
	run_sh(cmd, &c, &res);
	assert_int_equal(c.count[PROC_STDOUT], 2);
	assert_int_equal(strlen(c.lines[PROC_STDOUT][0]), PROC_MAX_LINE);
	assert_int_equal(strlen(c.lines[PROC_STDOUT][1]), PROC_MAX_LINE);
	assert_int_equal(c.lines[PROC_STDOUT][1][0], 'c');
	collector_free(&c);
}

static void test_final_line_and_crlf(void **state)
{
	collector c;
	proc_result res;
	(void)state;
	collector_init(&c);
	run_sh("printf 'a\\r\\n\\nb\\r\\n'; printf 'one\\ntwo'; printf 'e1\\ne2' >&2", &c, &res);
	assert_int_equal(c.count[PROC_STDOUT], 5);
	assert_string_equal(c.lines[PROC_STDOUT][0], "a");
	assert_string_equal(c.lines[PROC_STDOUT][1], "");
	assert_string_equal(c.lines[PROC_STDOUT][2], "b");
	assert_string_equal(c.lines[PROC_STDOUT][3], "one");
	assert_string_equal(c.lines[PROC_STDOUT][4], "two");
	assert_int_equal(c.count[PROC_STDERR], 2);
	assert_string_equal(c.lines[PROC_STDERR][1], "e2");
	collector_free(&c);
}

/* ---- cut lines, NUL bytes (issue 15) ---- */

/* Lines as on_cut_line delivers them: bytes (NULs kept), lengths, drops. */
typedef struct {
	char *lines[3][MAX_LINES];
	size_t len[3][MAX_LINES];
	size_t dropped[3][MAX_LINES];
	size_t count[3];
	bool nul_ok; /* every line had line[len] == '\0' */
} cut_collector;

static void on_cut(void *ctx, int stream, const char *line, size_t len, size_t dropped)
{
	cut_collector *c = ctx;
	size_t i = c->count[stream];
	if (line[len] != '\0')
		c->nul_ok = false;
	if (i == MAX_LINES)
		return;
	c->lines[stream][i] = malloc(len + 1);
	memcpy(c->lines[stream][i], line, len + 1);
	c->len[stream][i] = len;
	c->dropped[stream][i] = dropped;
	c->count[stream]++;
}

static void cut_free(cut_collector *c)
{
	for (int s = 0; s < 3; s++)
		for (size_t i = 0; i < c->count[s]; i++)
			free(c->lines[s][i]);
}

/* `sh -c cmd` with lines cut at max_line. */
static void run_cut(const char *cmd, size_t max_line, cut_collector *c, proc_result *res)
{
	const char *argv[] = {"sh", "-c", cmd, NULL};
	char err[256] = "";
	memset(c, 0, sizeof *c);
	c->nul_ok = true;
	proc_spec spec = {.argv = argv,
	                  .cancel_fd = -1,
	                  .max_line = max_line,
	                  .on_cut_line = on_cut,
	                  .ctx = c};
	assert_int_equal(proc_run(&spec, res, err, sizeof err), 0);
	assert_true(c->nul_ok);
}

static void assert_cut(const cut_collector *c, size_t i, const char *want, size_t len,
                       size_t dropped)
{
	assert_true(i < c->count[PROC_STDOUT]);
	assert_int_equal(c->len[PROC_STDOUT][i], len);
	assert_memory_equal(c->lines[PROC_STDOUT][i], want, len);
	assert_int_equal(c->dropped[PROC_STDOUT][i], dropped);
}

/* A line longer than max_line is one line: its head and how much was
 * dropped; the next line is whole. Before: split into PROC_MAX_LINE pieces,
 * so a 10 MiB line became 1280 events. */
static void test_cut_long_line(void **state)
{
	cut_collector c;
	proc_result res;
	char a100[101];
	(void)state;
	memset(a100, 'a', 100);
	a100[100] = '\0';
	run_cut("head -c 1000000 /dev/zero | tr '\\0' a; echo; echo next;"
	        " head -c 102 /dev/zero | tr '\\0' b; printf '\\r\\n';"
	        " head -c 5000 /dev/zero | tr '\\0' c",
	        100, &c, &res);
	assert_int_equal(res.exit_code, 0);
	assert_int_equal(c.count[PROC_STDOUT], 4);
	assert_cut(&c, 0, a100, 100, 1000000 - 100);
	assert_cut(&c, 1, "next", 4, 0);
	memset(a100, 'b', 100);
	assert_cut(&c, 2, a100, 100, 2); /* the '\r' of "\r\n" is not counted */
	memset(a100, 'c', 100);
	assert_cut(&c, 3, a100, 100, 4900); /* the last line, without newline */
	cut_free(&c);

	/* exactly max_line, with "\n" and with "\r\n": whole */
	run_cut("printf 'abcd\\nefgh\\r\\nijklm\\n'", 4, &c, &res);
	assert_int_equal(c.count[PROC_STDOUT], 3);
	assert_cut(&c, 0, "abcd", 4, 0);
	assert_cut(&c, 1, "efgh", 4, 0);
	assert_cut(&c, 2, "ijkl", 4, 1);
	cut_free(&c);
}

/* The cut never splits a UTF-8 character: the whole character goes. */
static void test_cut_utf8_boundary(void **state)
{
	cut_collector c;
	proc_result res;
	(void)state;
	run_cut("printf 'abcd\\303\\251f\\n'", 5, &c, &res); /* "abcdéf": é is 2 bytes */
	assert_cut(&c, 0, "abcd", 4, 3);
	cut_free(&c);
	run_cut("printf 'ab\\342\\202\\254\\n'", 4, &c, &res); /* "ab€": € is 3 bytes */
	assert_cut(&c, 0, "ab", 2, 3);
	cut_free(&c);
}

static void on_line_bytes(void *ctx, int stream, const char *line, size_t len)
{
	on_cut(ctx, stream, line, len, 0);
}

/* A NUL byte is part of the line (len counts it), in both modes. */
static void test_nul_byte_in_line(void **state)
{
	cut_collector c;
	proc_result res;
	const char *argv[] = {"sh", "-c", "printf 'a\\000b\\n\\000\\n'", NULL};
	char err[256] = "";
	(void)state;
	memset(&c, 0, sizeof c);
	c.nul_ok = true;
	proc_spec spec = {.argv = argv, .cancel_fd = -1, .on_line = on_line_bytes, .ctx = &c};
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), 0);
	assert_int_equal(c.count[PROC_STDOUT], 2);
	assert_cut(&c, 0, "a\0b", 3, 0);
	assert_cut(&c, 1, "\0", 1, 0);
	cut_free(&c);
	run_cut("printf 'a\\000b\\n'", 100, &c, &res);
	assert_cut(&c, 0, "a\0b", 3, 0);
	cut_free(&c);
}

static void test_stdin_devnull(void **state)
{
	collector c;
	proc_result res;
	(void)state;
	collector_init(&c);
	run_sh("cat; readlink /proc/self/fd/0", &c, &res);
	assert_int_equal(res.exit_code, 0);
	assert_int_equal(c.count[PROC_STDOUT], 1);
	assert_string_equal(c.lines[PROC_STDOUT][0], "/dev/null");
	collector_free(&c);
}

/* ---- cancellation ---- */

typedef struct {
	collector *c;
	int efd;
	int64_t cancelled_at;
} canceller;

/* Waits for the first output line, then cancels through the eventfd. */
static void *cancel_thread(void *arg)
{
	canceller *k = arg;
	uint64_t one = 1;
	pthread_mutex_lock(&k->c->mu);
	while (!k->c->seen)
		pthread_cond_wait(&k->c->cv, &k->c->mu);
	pthread_mutex_unlock(&k->c->mu);
	k->cancelled_at = clock_mono_ms();
	assert_int_equal(write(k->efd, &one, sizeof one), sizeof one);
	return NULL;
}

/* Run cmd, cancelled after its first line; returns proc_run's duration. */
static int64_t run_cancelled(const char *cmd, int64_t grace, collector *c, proc_result *res,
                             int64_t *since_cancel)
{
	const char *argv[4];
	char err[256] = "";
	pthread_t th;
	canceller k = {.c = c, .efd = eventfd(0, EFD_CLOEXEC)};
	proc_spec spec = sh_spec(argv, cmd, c);
	assert_true(k.efd >= 0);
	spec.cancel_fd = k.efd;
	spec.kill_grace_ms = grace;
	assert_int_equal(pthread_create(&th, NULL, cancel_thread, &k), 0);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(proc_run(&spec, res, err, sizeof err), 0);
	int64_t t1 = clock_mono_ms();
	pthread_join(th, NULL);
	close(k.efd);
	*since_cancel = t1 - k.cancelled_at;
	return t1 - t0;
}

/* Gone, or a zombie waiting for a reaper that is not us. */
static bool pid_gone(pid_t pid)
{
	char path[64], buf[512];
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return true;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

static void assert_gone_within(pid_t pid, int64_t ms)
{
	int64_t deadline = clock_mono_ms() + ms;
	while (!pid_gone(pid)) {
		assert_true(clock_mono_ms() < deadline);
		poll(NULL, 0, 10);
	}
}

static void test_cancel_kills_group(void **state)
{
	collector c;
	proc_result res;
	int64_t since;
	(void)state;
	collector_init(&c);
	int64_t took = run_cancelled("sleep 30 & echo $!; sleep 30; wait", 500, &c, &res, &since);
	assert_true(took < 2000);
	assert_true(res.cancelled);
	assert_false(res.killed);
	assert_int_equal(res.term_signal, SIGTERM);
	assert_int_equal(res.exit_code, 128 + SIGTERM);
	assert_int_equal(c.count[PROC_STDOUT], 1);
	pid_t grandchild = (pid_t)atoi(c.lines[PROC_STDOUT][0]);
	assert_true(grandchild > 1);
	assert_gone_within(grandchild, 2000);
	assert_gone_within(res.pid, 2000);
	collector_free(&c);
}

static void test_cancel_term_ignored(void **state)
{
	collector c;
	proc_result res;
	int64_t since;
	(void)state;
	collector_init(&c);
	int64_t took = run_cancelled("trap '' TERM; echo ready; while :; do sleep 0.1; done", 300,
	                             &c, &res, &since);
	assert_true(took < 2000);
	assert_true(since >= 300);
	assert_true(res.cancelled);
	assert_true(res.killed);
	assert_int_equal(res.term_signal, SIGKILL);
	assert_int_equal(res.exit_code, 128 + SIGKILL);
	assert_string_equal(c.lines[PROC_STDOUT][0], "ready");
	collector_free(&c);
}

/* A process that left the group (setsid) and holds the pipes cannot keep a
 * cancelled run alive past the grace. It prints its pid once it has left. */
static void test_cancel_escaped_holder(void **state)
{
	collector c;
	proc_result res;
	int64_t since;
	(void)state;
	collector_init(&c);
	int64_t took =
	        run_cancelled("setsid sh -c 'echo $$; exec sleep 5' & wait", 300, &c, &res, &since);
	assert_true(took < 2000);
	assert_true(since >= 300);
	assert_true(res.cancelled);
	assert_true(res.killed); /* the grace expired with the pipes still open */
	assert_int_equal(res.term_signal, SIGTERM);
	pid_t escaped = (pid_t)atoi(c.lines[PROC_STDOUT][0]);
	assert_true(escaped > 1);
	kill(escaped, SIGKILL);
	collector_free(&c);
}

/* Not cancelled: a background grandchild holding the pipes is read to EOF. */
static void test_grandchild_output_read(void **state)
{
	collector c;
	proc_result res;
	(void)state;
	collector_init(&c);
	run_sh("(sleep 0.3; echo late) & echo early; exit 2", &c, &res);
	assert_int_equal(res.exit_code, 2);
	assert_int_equal(c.count[PROC_STDOUT], 2);
	assert_string_equal(c.lines[PROC_STDOUT][0], "early");
	assert_string_equal(c.lines[PROC_STDOUT][1], "late");
	collector_free(&c);
}

/* The child closes its output and goes on: its exit is still waited for. */
static void test_child_outlives_pipes(void **state)
{
	collector c;
	proc_result res;
	(void)state;
	collector_init(&c);
	run_sh("echo x; exec >&- 2>&-; sleep 0.3; exit 4", &c, &res);
	assert_int_equal(res.exit_code, 4);
	assert_int_equal(c.count[PROC_STDOUT], 1);
	collector_free(&c);
}

/* In the helper process: hand the child's pid to the test, then die. */
static void on_line_then_die(void *ctx, int stream, const char *line, size_t len)
{
	ssize_t n = write(*(const int *)ctx, line, len);
	(void)stream;
	_exit(n == (ssize_t)len ? 0 : 1);
}

/* The child dies with the process that started it (PR_SET_PDEATHSIG). */
static void test_parent_death(void **state)
{
	int p[2], status = -1;
	char buf[32] = "";
	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t helper = fork();
	assert_true(helper >= 0);
	if (helper == 0) {
		const char *argv[] = {"sh", "-c", "echo $$; exec sleep 30", NULL};
		proc_spec spec = {
		        .argv = argv, .cancel_fd = -1, .on_line = on_line_then_die, .ctx = &p[1]};
		proc_result res;
		char err[128];
		close(p[0]);
		proc_run(&spec, &res, err, sizeof err);
		_exit(2); /* never reached when the child printed its pid */
	}
	close(p[1]);
	ssize_t n = read(p[0], buf, sizeof buf - 1);
	close(p[0]);
	assert_true(n > 0);
	assert_int_equal(waitpid(helper, &status, 0), helper);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	pid_t victim = (pid_t)atoi(buf);
	assert_true(victim > 1);
	assert_gone_within(victim, 2000);
}

/* ---- no process of a run outlives the run or its daemon ---- */

#define MAX_PIDS 8

/* In the helper process: collect `want` lines (one pid each), hand them to
 * the test, then wait to be killed. */
typedef struct {
	int fd;
	int want, got;
	char buf[256];
	size_t len;
} pid_relay;

static void on_line_relay_then_pause(void *ctx, int stream, const char *line, size_t len)
{
	pid_relay *r = ctx;
	(void)stream;
	if (r->len + len + 1 < sizeof r->buf) {
		memcpy(r->buf + r->len, line, len);
		r->len += len;
		r->buf[r->len++] = ' ';
	}
	if (++r->got < r->want)
		return;
	ssize_t n = write(r->fd, r->buf, r->len);
	(void)n;
	close(r->fd);
	for (;;)
		pause();
}

static int parse_pids(char *buf, pid_t *pids)
{
	int n = 0;
	for (char *tok = strtok(buf, " "); tok && n < MAX_PIDS; tok = strtok(NULL, " "))
		pids[n++] = (pid_t)atoi(tok);
	return n;
}

/* A "daemon" (a forked helper) runs cmd, which prints `want` pids; the
 * helper is SIGKILLed once it has them all: every one must die. */
static void kill9_daemon_and_check(const char *cmd, int want)
{
	int p[2], status = -1;
	char buf[256] = "";
	pid_t pids[MAX_PIDS];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t helper = fork();
	assert_true(helper >= 0);
	if (helper == 0) {
		const char *argv[] = {"sh", "-c", cmd, NULL};
		pid_relay r = {.fd = p[1], .want = want};
		proc_spec spec = {.argv = argv,
		                  .cancel_fd = -1,
		                  .on_line = on_line_relay_then_pause,
		                  .ctx = &r};
		proc_result res;
		char err[128];
		close(p[0]);
		proc_run(&spec, &res, err, sizeof err);
		_exit(2); /* never reached when the pids were printed */
	}
	close(p[1]);
	size_t got = 0;
	for (ssize_t n; (n = read(p[0], buf + got, sizeof buf - 1 - got)) > 0;)
		got += (size_t)n;
	close(p[0]);
	buf[got] = '\0';
	assert_int_equal(kill(helper, SIGKILL), 0);
	assert_int_equal(waitpid(helper, &status, 0), helper);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(parse_pids(buf, pids), want);
	for (int i = 0; i < want; i++) {
		assert_true(pids[i] > 1);
		assert_gone_within(pids[i], 5000);
	}
}

/* Background grandchildren in the command's group die with the daemon. */
static void test_daemon_kill9_kills_grandchildren(void **state)
{
	(void)state;
	kill9_daemon_and_check("sleep 30 & echo $!; sleep 31 & echo $!; echo $$; wait", 3);
}

/* So do descendants that left the group (setsid) or were orphaned by a
 * double fork: the supervisor is their subreaper. */
static void test_daemon_kill9_kills_escaped_descendants(void **state)
{
	(void)state;
	kill9_daemon_and_check("setsid sh -c 'echo $$; exec sleep 32' &"
	                       " sh -c 'sleep 33 & echo $!'; echo $$; wait",
	                       3);
}

/* A run that ended normally leaves nothing behind: processes that closed
 * their output and went on (detached ones too) are killed at its end. */
static void test_run_end_kills_leftovers(void **state)
{
	collector c;
	proc_result res;
	(void)state;
	collector_init(&c);
	run_sh("sleep 35 >/dev/null 2>&1 & echo $!;"
	       " setsid sh -c 'sleep 34 >/dev/null 2>&1 & echo $!'; exit 6",
	       &c, &res);
	assert_int_equal(res.exit_code, 6);
	assert_int_equal(res.orphans_killed, 2);
	assert_false(res.drain_expired);
	assert_int_equal(c.count[PROC_STDOUT], 2);
	for (int i = 0; i < 2; i++) {
		pid_t pid = (pid_t)atoi(c.lines[PROC_STDOUT][i]);
		assert_true(pid > 1);
		assert_gone_within(pid, 2000);
	}
	collector_free(&c);
}

/* A child that daemonized and kept stdout open: once the command has
 * exited the run waits drain_ms, no more, keeps the command's status and
 * kills (and counts) the leftover. Before: proc_run waited for the pipe's
 * EOF, i.e. for ever. */
static void test_drain_daemonized_holder(void **state)
{
	collector c;
	proc_result res;
	const char *argv[4];
	char err[256] = "";
	(void)state;
	collector_init(&c);
	proc_spec spec = sh_spec(argv, "(sleep 1000 & echo $!); echo done", &c);
	spec.drain_ms = 300;
	int64_t t0 = clock_mono_ms();
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), 0);
	int64_t took = clock_mono_ms() - t0;
	assert_true(took >= 300);
	assert_true(took < 3000);
	assert_int_equal(res.exit_code, 0);
	assert_false(res.cancelled);
	assert_true(res.drain_expired);
	assert_int_equal(res.orphans_killed, 1);
	assert_int_equal(c.count[PROC_STDOUT], 2);
	assert_string_equal(c.lines[PROC_STDOUT][1], "done");
	assert_gone_within((pid_t)atoi(c.lines[PROC_STDOUT][0]), 2000);
	collector_free(&c);
}

typedef struct {
	int efd;
	int64_t after_ms;
} late_cancel;

static void *late_cancel_thread(void *arg)
{
	late_cancel *k = arg;
	uint64_t one = 1;
	poll(NULL, 0, (int)k->after_ms);
	assert_int_equal(write(k->efd, &one, sizeof one), sizeof one);
	return NULL;
}

/* A cancel during the drain ends it; the run keeps the command's status
 * (before: `timeout` although the command had exited). */
static void test_cancel_during_drain_keeps_status(void **state)
{
	collector c;
	proc_result res;
	const char *argv[4];
	char err[256] = "";
	pthread_t th;
	late_cancel k = {.efd = eventfd(0, EFD_CLOEXEC), .after_ms = 400};
	(void)state;
	collector_init(&c);
	assert_true(k.efd >= 0);
	proc_spec spec = sh_spec(argv, "(sleep 1000 &); exit 3", &c);
	spec.drain_ms = 20000;
	spec.cancel_fd = k.efd;
	assert_int_equal(pthread_create(&th, NULL, late_cancel_thread, &k), 0);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), 0);
	assert_true(clock_mono_ms() - t0 < 5000);
	pthread_join(th, NULL);
	close(k.efd);
	assert_int_equal(res.exit_code, 3);
	assert_false(res.cancelled);
	assert_false(res.killed);
	assert_true(res.drain_expired);
	assert_int_equal(res.orphans_killed, 1);
	collector_free(&c);
}

/* The supervisor is reaped and its command's status is what proc_run
 * reports (exit codes and signals, including a core-dumping one). */
static void test_status_through_supervisor(void **state)
{
	collector c;
	proc_result res;
	(void)state;
	collector_init(&c);
	run_sh("kill -SEGV $$", &c, &res);
	assert_int_equal(res.term_signal, SIGSEGV);
	assert_int_equal(res.exit_code, 128 + SIGSEGV);
	run_sh("echo $$; exit 255", &c, &res);
	assert_int_equal(res.exit_code, 255);
	assert_int_equal(res.pid, atoi(c.lines[PROC_STDOUT][0])); /* the command's pid */
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);         /* no child left behind */
	assert_int_equal(errno, ECHILD);
	collector_free(&c);
}

/* ---- environment, directory, fds, signals ---- */

static void test_env_add(void **state)
{
	const char *argv[4];
	const char *env[] = {"FK_PROC_A=hello world", "FK_PROC_OVERRIDE=new", NULL};
	collector c;
	proc_result res;
	char err[128] = "";
	(void)state;
	collector_init(&c);
	setenv("FK_PROC_OVERRIDE", "old", 1);
	proc_spec spec = sh_spec(argv,
	                         "echo \"$FK_PROC_A\"; echo \"$FK_PROC_OVERRIDE\";"
	                         " env | grep -c '^FK_PROC_OVERRIDE='",
	                         &c);
	spec.env_add = env;
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), 0);
	unsetenv("FK_PROC_OVERRIDE");
	assert_int_equal(c.count[PROC_STDOUT], 3);
	assert_string_equal(c.lines[PROC_STDOUT][0], "hello world");
	assert_string_equal(c.lines[PROC_STDOUT][1], "new");
	assert_string_equal(c.lines[PROC_STDOUT][2], "1");
	collector_free(&c);
}

/* Issue 15: a child got the daemon's whole environment, token_env secrets
 * included. Now only the allowlist, the pass_env names and env_add. */
static void test_env_built(void **state)
{
	const char *argv[4];
	const char *env[] = {"FK_PROC_OWN=task", NULL};
	const char *pass[] = {"FK_PROC_PASS", "FK_PFX_*", NULL};
	collector c;
	proc_result res;
	char err[128] = "";
	(void)state;
	collector_init(&c);
	setenv("FK_PROC_SECRET", "hunter2", 1);
	setenv("FK_PROC_PASS", "p", 1);
	setenv("FK_PFX_ONE", "1", 1);
	setenv("LC_FKTEST", "lc", 1);
	char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
	setenv("HOME", "/fk-home", 1);
	assert_int_equal(proc_env_pass(pass), 0);
	proc_spec spec = sh_spec(argv, "env | grep -E '^(FK_|LC_FKTEST|HOME=|PATH=)' | sort", &c);
	spec.env_add = env;
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), 0);
	assert_int_equal(res.exit_code, 0);
	assert_int_equal(c.count[PROC_STDOUT], 6);
	assert_string_equal(c.lines[PROC_STDOUT][0], "FK_PFX_ONE=1");
	assert_string_equal(c.lines[PROC_STDOUT][1], "FK_PROC_OWN=task");
	assert_string_equal(c.lines[PROC_STDOUT][2], "FK_PROC_PASS=p");
	assert_string_equal(c.lines[PROC_STDOUT][3], "HOME=/fk-home");
	assert_string_equal(c.lines[PROC_STDOUT][4], "LC_FKTEST=lc");
	assert_int_equal(strncmp(c.lines[PROC_STDOUT][5], "PATH=", 5), 0);
	collector_free(&c);

	/* the list is replaced, not added to; NULL: only the fixed names */
	assert_int_equal(proc_env_pass(NULL), 0);
	collector_init(&c);
	spec = sh_spec(argv, "env | grep -c '^FK_' ; true", &c);
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), 0);
	assert_string_equal(c.lines[PROC_STDOUT][0], "0");
	collector_free(&c);

	assert_true(proc_env_inherited("PATH", NULL));
	assert_true(proc_env_inherited("LC_ALL", NULL));
	assert_true(proc_env_inherited("FLEETKEEPER_CORRELATION_ID", NULL));
	assert_false(proc_env_inherited("FK_PROC_SECRET", NULL));
	assert_false(proc_env_inherited("PATHX", NULL));
	assert_true(proc_env_inherited("FK_PFX_TWO", pass));
	assert_false(proc_env_inherited("FK_PFX", pass));
	const char *all[] = {"*", NULL};
	assert_true(proc_env_inherited("ANYTHING", all));
	unsetenv("FK_PROC_SECRET");
	unsetenv("FK_PROC_PASS");
	unsetenv("FK_PFX_ONE");
	unsetenv("LC_FKTEST");
	if (home)
		setenv("HOME", home, 1);
	else
		unsetenv("HOME");
	free(home);
}

static void test_cwd(void **state)
{
	char dir[] = "/tmp/fk_proc_XXXXXX", real[PATH_MAX], script[PATH_MAX], plain[PATH_MAX];
	const char *argv[4];
	collector c;
	proc_result res;
	char err[PATH_MAX + 64] = "";
	(void)state;
	collector_init(&c);
	assert_non_null(mkdtemp(dir));
	assert_non_null(realpath(dir, real));
	snprintf(script, sizeof script, "%s/s.sh", dir);
	snprintf(plain, sizeof plain, "%s/plain", dir);
	FILE *f = fopen(script, "w");
	assert_non_null(f);
	fputs("#!/bin/sh\necho script-ran\n", f);
	fclose(f);
	assert_int_equal(chmod(script, 0755), 0);
	f = fopen(plain, "w");
	assert_non_null(f);
	fclose(f);

	proc_spec spec = sh_spec(argv, "pwd", &c);
	spec.cwd = dir;
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), 0);
	assert_string_equal(c.lines[PROC_STDOUT][0], real);

	const char *rel[] = {"./s.sh", NULL};
	spec.argv = rel;
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), 0);
	assert_string_equal(c.lines[PROC_STDOUT][1], "script-ran");

	const char *noexec[] = {plain, NULL};
	char expect[PATH_MAX + 64];
	snprintf(expect, sizeof expect, "cannot run '%s': Permission denied", plain);
	start_fails(noexec, NULL, NULL, expect);

	unlink(script);
	unlink(plain);
	assert_int_equal(rmdir(dir), 0);
	collector_free(&c);
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void test_no_fd_leak(void **state)
{
	const char *ok[] = {"true", NULL};
	const char *missing[] = {"fk-no-such-program-xyz", NULL};
	const char *env[] = {"FK_X=1", NULL};
	proc_result res;
	char err[128];
	(void)state;
	int before = count_fds();
	for (int i = 0; i < 200; i++) {
		proc_spec spec = {
		        .argv = i % 10 == 9 ? missing : ok, .env_add = env, .cancel_fd = -1};
		int rc = proc_run(&spec, &res, err, sizeof err);
		assert_int_equal(rc, i % 10 == 9 ? -1 : 0);
	}
	int bad_cwd_rc;
	{
		proc_spec spec = {.argv = ok, .cwd = "/nonexistent", .cancel_fd = -1};
		bad_cwd_rc = proc_run(&spec, &res, err, sizeof err);
	}
	assert_int_equal(bad_cwd_rc, -1);
	assert_int_equal(count_fds(), before);
}

static void test_child_sees_no_extra_fds(void **state)
{
	const char *argv[] = {"ls", "/proc/self/fd", NULL};
	collector c;
	proc_result res;
	char err[128] = "";
	int p[2];
	(void)state;
	collector_init(&c);
	/* Inheritable fds in the parent must not reach the child. */
	int leak = open("/dev/null", O_RDONLY);
	assert_true(leak >= 0);
	assert_int_equal(pipe(p), 0);
	proc_spec spec = {.argv = argv, .cancel_fd = -1, .on_line = on_line, .ctx = &c};
	assert_int_equal(proc_run(&spec, &res, err, sizeof err), 0);
	close(leak);
	close(p[0]);
	close(p[1]);
	assert_int_equal(res.exit_code, 0);
	assert_int_equal(c.count[PROC_STDOUT], 4);
	assert_string_equal(c.lines[PROC_STDOUT][0], "0");
	assert_string_equal(c.lines[PROC_STDOUT][1], "1");
	assert_string_equal(c.lines[PROC_STDOUT][2], "2");
	assert_string_equal(c.lines[PROC_STDOUT][3], "3"); /* ls's own directory fd */
	collector_free(&c);
}

static void test_child_signal_state(void **state)
{
	const char *argv[] = {"grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status", NULL};
	collector c;
	proc_result res;
	char err[128] = "";
	sigset_t block, old;
	(void)state;
	collector_init(&c);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
	proc_spec spec = {.argv = argv, .cancel_fd = -1, .on_line = on_line, .ctx = &c};
	int rc = proc_run(&spec, &res, err, sizeof err);
	signal(SIGPIPE, old_pipe);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(c.count[PROC_STDOUT], 2);
	assert_string_equal(c.lines[PROC_STDOUT][0], "SigBlk:\t0000000000000000");
	assert_string_equal(c.lines[PROC_STDOUT][1], "SigIgn:\t0000000000000000");
	collector_free(&c);
}

/* ---- threads ---- */

typedef struct {
	int id;
	int failures;
} worker_arg;

static void *worker(void *arg)
{
	worker_arg *a = arg;
	for (int i = 0; i < 25; i++) {
		char cmd[64], want[32];
		const char *argv[4];
		collector c;
		proc_result res;
		char err[128];
		collector_init(&c);
		snprintf(cmd, sizeof cmd, "echo w%d-%d; echo e%d >&2; exit %d", a->id, i, i, i % 7);
		snprintf(want, sizeof want, "w%d-%d", a->id, i);
		proc_spec spec = sh_spec(argv, cmd, &c);
		if (proc_run(&spec, &res, err, sizeof err) != 0 || res.exit_code != i % 7 ||
		    c.count[PROC_STDOUT] != 1 || strcmp(c.lines[PROC_STDOUT][0], want) != 0 ||
		    c.count[PROC_STDERR] != 1)
			a->failures++;
		collector_free(&c);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	pthread_t th[4];
	worker_arg args[4];
	(void)state;
	for (int i = 0; i < 4; i++) {
		args[i] = (worker_arg){.id = i};
		assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].failures, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_stdout_stderr),
	        cmocka_unit_test(test_exit_codes),
	        cmocka_unit_test(test_no_callback),
	        cmocka_unit_test(test_missing_program),
	        cmocka_unit_test(test_long_line),
	        cmocka_unit_test(test_line_exactly_max),
	        cmocka_unit_test(test_final_line_and_crlf),
	        cmocka_unit_test(test_cut_long_line),
	        cmocka_unit_test(test_cut_utf8_boundary),
	        cmocka_unit_test(test_nul_byte_in_line),
	        cmocka_unit_test(test_stdin_devnull),
	        cmocka_unit_test(test_cancel_kills_group),
	        cmocka_unit_test(test_cancel_term_ignored),
	        cmocka_unit_test(test_cancel_escaped_holder),
	        cmocka_unit_test(test_grandchild_output_read),
	        cmocka_unit_test(test_child_outlives_pipes),
	        cmocka_unit_test(test_parent_death),
	        cmocka_unit_test(test_daemon_kill9_kills_grandchildren),
	        cmocka_unit_test(test_daemon_kill9_kills_escaped_descendants),
	        cmocka_unit_test(test_run_end_kills_leftovers),
	        cmocka_unit_test(test_drain_daemonized_holder),
	        cmocka_unit_test(test_cancel_during_drain_keeps_status),
	        cmocka_unit_test(test_status_through_supervisor),
	        cmocka_unit_test(test_env_add),
	        cmocka_unit_test(test_env_built),
	        cmocka_unit_test(test_cwd),
	        cmocka_unit_test(test_no_fd_leak),
	        cmocka_unit_test(test_child_sees_no_extra_fds),
	        cmocka_unit_test(test_child_signal_state),
	        cmocka_unit_test(test_concurrent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
