/*
 * proc — see proc.h. The daemon side of a run; proc_supervisor.c is the
 * supervisor side. How a run goes, and the invariants kept:
 *
 * 1. Everything the supervisor and the command need (resolved program path,
 *    full envp, fds, the default signal action) is prepared here before
 *    fork: in a multi-threaded process the child may only make
 *    async-signal-safe calls, so it never allocates, never calls setenv or
 *    execvp.
 * 2. All signals are blocked in the forking thread around fork, so the
 *    supervisor never runs one of the daemon's handlers; it keeps them
 *    blocked, and the command resets every disposition to SIG_DFL and
 *    empties its mask before execve.
 * 3. Every fd created here is O_CLOEXEC; the supervisor closes all but the
 *    ones it needs and the command all but 0, 1, 2 and its report pipe
 *    (close_range, else a loop), so nothing leaks in either direction even
 *    when other threads fork at the same time.
 * 4. The supervisor's first message on the socket is SUP_STARTED (the
 *    command exec'd) or SUP_FAILED {stage, errno}; then SUP_EXITED with the
 *    command's status once it has exited.
 * 5. The supervisor keeps the exited command unreaped until we shut our
 *    end of the socket: the zombie keeps its pid, hence the process group
 *    id, from being reused, so kill(-cmd) never reaches a stranger. We send
 *    no signal after that.
 * 6. The watch loop ends once the command has exited AND either both pipes
 *    are at EOF, or drain_ms passed since it exited, or the grace expired and
 *    the group got SIGKILL. So a command that exited normally while a
 *    background grandchild still holds the pipes is waited for (its output
 *    is read) until EOF, for drain_ms at most: a child that daemonized and
 *    kept stdout open cannot keep the run `running` (or make it end
 *    `timeout` after the command exited 0). A cancel that comes once the
 *    command has exited only ends the drain: the run keeps the command's
 *    status. A process that left the group (setsid) and holds the pipes
 *    cannot make a cancelled run hang past the grace.
 * 7. At the end we shut our end of the socket for writing: the supervisor
 *    SIGKILLs everything left of the run (the group, and every orphan
 *    reparented to it — it is a child subreaper), reaps it all, sends
 *    SUP_CLEANED with how many it killed (orphans_killed) and exits; we
 *    read to its EOF and reap it. The same EOF reaches it when the daemon
 *    dies, SIGKILL included, so no descendant of a run survives the daemon.
 *
 * Lines are delivered NUL-terminated (line[len] == '\0') with their length
 * (a NUL byte of the output stays in the line); a line ending in "\r\n"
 * loses the '\r'. Per stream at most limit + 2 bytes of a line are held:
 * a longer line is split (on_line) or cut (on_cut_line, the rest counted
 * and discarded up to its newline). out->killed means the grace expired and
 * SIGKILL was sent to the group.
 *
 * The child's environment is built from environ filtered by the allowlist
 * (env_fixed and the proc_env_pass list) plus env_add, so a secret in the
 * daemon's environment reaches no child unless it is listed.
 *
 * Caveats: nobody else in the process may reap with waitpid(-1) or set
 * SIGCHLD to SIG_IGN. The environment is read from environ, so no thread may
 * call setenv while a run is being started. PATH is searched in the parent
 * with the child's PATH (env_add wins); relative PATH entries are relative
 * to the daemon's directory, not cwd. A supervisor killed from outside
 * (SIGKILL to it alone) takes only the command with it (PDEATHSIG); the
 * run then ends without signalling its group again.
 *
 * Thread-safe: any number of threads may call proc_run. The one global is
 * the pass_env list, replaced whole under pass_lock and read under it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "proc_internal.h"

extern char **environ;

#define PROC_GRACE_DEFAULT 5000
#define PROC_DEFAULT_PATH  "/usr/local/bin:/usr/bin:/bin"
#define PROC_READ_CHUNK    16384
#define PROC_MIN_LINE      4 /* room for one UTF-8 character */
#define PROC_MAX_CUT       ((size_t)1 << 30)

typedef struct {
	int fd; /* -1 once at EOF */
	int stream;
	size_t len;
	bool cutting;   /* cut mode: buf holds the head of a longer line */
	bool last_cr;   /* cutting: the last byte discarded was '\r' */
	size_t dropped; /* cutting: bytes of the line discarded so far */
	char *buf;      /* cap + 1 bytes: +1 for the NUL after a line */
} proc_stream;

typedef struct {
	const proc_spec *spec;
	proc_result *res;
	pid_t sup;      /* the supervisor: our child */
	pid_t cmd;      /* the command: the supervisor's child, its group leader */
	int sock;       /* our end of the supervisor socket; -1 once at EOF */
	bool sup_lost;  /* the supervisor died before the run was over */
	bool have_exit; /* SUP_EXITED received */
	int cancel_fd;
	int64_t grace_ms;
	int64_t term_at;
	bool exited;
	bool group_killed;
	bool cancel_seen; /* cancel_fd fired (no need to poll it again) */
	int64_t drain_ms;
	int64_t drain_at; /* when the command was seen to exit */
	bool cut;         /* lines are cut at limit (else split at limit) */
	size_t limit;     /* PROC_MAX_LINE, or spec->max_line */
	size_t cap;       /* limit + 2: a full line plus "\r\n" */
	proc_stream out, err;
	char chunk[PROC_READ_CHUNK];
} proc_watch;

static void set_err(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void set_errno_err(char *err, size_t errlen, const char *what, const char *name, int e)
{
	char buf[128];
	const char *msg = strerror_r(e, buf, sizeof buf);
	if (name)
		set_err(err, errlen, "%s '%s': %s", what, name, msg);
	else
		set_err(err, errlen, "%s: %s", what, msg);
}

/* ---- the child's environment ---- */

/* The daemon's variables every child inherits; "X*" is a prefix. */
static const char *const env_fixed[] = {
        "PATH",
        "HOME",
        "LANG",
        "LC_*",
        "TZ",
        "USER",
        "LOGNAME",
        "SHELL",
        "TMPDIR",
        "SSH_AUTH_SOCK",
        "FLEETKEEPER_CORRELATION_ID",
        NULL,
};

static pthread_mutex_t pass_lock = PTHREAD_MUTEX_INITIALIZER;
static char **pass_names; /* NULL-terminated, or NULL: none */

static bool env_pattern_match(const char *pattern, const char *key, size_t keylen)
{
	size_t n = strlen(pattern);
	if (n > 0 && pattern[n - 1] == '*')
		return keylen >= n - 1 && memcmp(key, pattern, n - 1) == 0;
	return n == keylen && memcmp(key, pattern, n) == 0;
}

static bool env_listed(const char *const *list, const char *key, size_t keylen)
{
	for (size_t i = 0; list && list[i]; i++)
		if (env_pattern_match(list[i], key, keylen))
			return true;
	return false;
}

bool proc_env_inherited(const char *name, const char *const *pass)
{
	size_t n = strlen(name);
	return env_listed(env_fixed, name, n) || env_listed(pass, name, n);
}

static void names_free(char **names)
{
	for (size_t i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
}

int proc_env_pass(const char *const *names)
{
	size_t n = 0;
	while (names && names[n])
		n++;
	char **copy = n ? calloc(n + 1, sizeof *copy) : NULL;
	if (n && copy == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if ((copy[i] = strdup(names[i])) == NULL) {
			names_free(copy);
			return -1;
		}
	}
	pthread_mutex_lock(&pass_lock);
	char **old = pass_names;
	pass_names = copy;
	pthread_mutex_unlock(&pass_lock);
	names_free(old);
	return 0;
}

/* ---- in the parent, before fork ---- */

static size_t env_key_len(const char *entry)
{
	const char *eq = strchr(entry, '=');
	return eq ? (size_t)(eq - entry) : strlen(entry);
}

static bool env_same_key(const char *a, const char *b)
{
	size_t la = env_key_len(a);
	return la == env_key_len(b) && memcmp(a, b, la) == 0;
}

static bool env_overridden(const char *entry, const char *const *add, size_t from)
{
	for (size_t i = from; add && add[i]; i++)
		if (env_same_key(entry, add[i]))
			return true;
	return false;
}

/* Whether the daemon's entry "KEY=VALUE" goes to the child: listed, and
 * not replaced by env_add. Called with pass_lock held. */
static bool env_inherit(const char *entry, const char *const *add)
{
	size_t n = env_key_len(entry);
	if (!env_listed(env_fixed, entry, n) &&
	    !env_listed((const char *const *)pass_names, entry, n))
		return false;
	return !env_overridden(entry, add, 0);
}

/* The allowlisted part of environ with env_add applied (an added key
 * replaces an inherited one; the last of duplicate added keys wins). The
 * strings are borrowed. */
static char **env_build(const char *const *add, char *err, size_t errlen)
{
	size_t n = 0, m = 0, k = 0;
	while (environ && environ[n])
		n++;
	for (; add && add[m]; m++) {
		if (strchr(add[m], '=') == NULL || add[m][0] == '=') {
			set_err(err, errlen, "invalid environment entry '%s'", add[m]);
			return NULL;
		}
	}
	char **envp = malloc((n + m + 1) * sizeof *envp);
	if (envp == NULL) {
		set_errno_err(err, errlen, "cannot build the environment", NULL, ENOMEM);
		return NULL;
	}
	pthread_mutex_lock(&pass_lock);
	for (size_t i = 0; i < n && environ[i]; i++) /* an unsetenv may shrink it */
		if (env_inherit(environ[i], add))
			envp[k++] = environ[i];
	pthread_mutex_unlock(&pass_lock);
	for (size_t i = 0; i < m; i++)
		if (!env_overridden(add[i], add, i + 1))
			envp[k++] = (char *)add[i];
	envp[k] = NULL;
	return envp;
}

static const char *env_path(char *const *envp)
{
	for (size_t i = 0; envp[i]; i++)
		if (strncmp(envp[i], "PATH=", 5) == 0)
			return envp[i] + 5;
	return PROC_DEFAULT_PATH;
}

static bool path_executable(const char *path, int *err)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return false;
	if (S_ISREG(st.st_mode) && access(path, X_OK) == 0)
		return true;
	*err = EACCES;
	return false;
}

/* The file execvp would run, malloc'd in *out; 0 or an errno value. A name
 * with a '/' is used as is (execve reports what is wrong with it). */
static int path_resolve(const char *prog, const char *pathvar, char **out)
{
	int e = ENOENT;
	if (prog[0] == '\0')
		return ENOENT;
	if (strchr(prog, '/')) {
		*out = strdup(prog);
		return *out ? 0 : ENOMEM;
	}
	for (const char *p = pathvar;; p++) {
		const char *end = strchrnul(p, ':');
		int dlen = (int)(end - p);
		char *cand = NULL;
		if (asprintf(&cand, "%.*s/%s", dlen ? dlen : 1, dlen ? p : ".", prog) < 0)
			return ENOMEM;
		if (path_executable(cand, &e)) {
			*out = cand;
			return 0;
		}
		free(cand);
		if (*end == '\0')
			return e;
		p = end;
	}
}

/* ---- starting ---- */

/* Fork the supervisor with every signal blocked in this thread (see
 * invariant 2); it keeps them blocked. */
static pid_t spawn_fork(const child_plan *plan)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = fork();
	if (pid == 0)
		proc_supervise(plan);
	int saved = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = saved;
	return pid;
}

static void fd_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* One message from the supervisor: 1, 0 at EOF (it exited), -1 on EINTR /
 * EAGAIN. */
static int sup_recv(int fd, sup_msg *m, bool block)
{
	ssize_t n = recv(fd, m, sizeof *m, block ? 0 : MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return -1;
	if (n != (ssize_t)sizeof *m)
		return 0; /* EOF, an error, or a runt: the supervisor is gone */
	return 1;
}

static void report_format(const sup_msg *m, const proc_spec *spec, char *err, size_t errlen)
{
	if (m->a == STAGE_CHDIR)
		set_errno_err(err, errlen, "cannot change directory to", spec->cwd, m->b);
	else if (m->a == STAGE_EXEC)
		set_errno_err(err, errlen, "cannot run", spec->argv[0], m->b);
	else if (m->a == STAGE_SUPERVISOR)
		set_errno_err(err, errlen, "cannot start the supervisor for", spec->argv[0], m->b);
	else
		set_errno_err(err, errlen, "cannot set up the child for", spec->argv[0], m->b);
}

/* ---- output ----
 * Reads go to w->chunk and are fed into the stream's buffer, which holds at
 * most cap bytes of the current line. A line longer than limit is split
 * into limit-sized pieces (split mode, !w->cut), or its first limit bytes
 * are kept and the rest is counted and discarded up to its newline (cut
 * mode), so one line costs at most cap bytes whatever its length. */

static void stream_deliver(const proc_watch *w, proc_stream *s, char *line, size_t len)
{
	char saved = line[len];
	line[len] = '\0';
	if (w->spec->on_line)
		w->spec->on_line(w->spec->ctx, s->stream, line, len);
	line[len] = saved;
}

/* The length of line[0..len) without a UTF-8 sequence its end cuts. */
static size_t utf8_whole(const char *line, size_t len)
{
	for (size_t back = 1; back <= 3 && back <= len; back++) {
		unsigned char c = (unsigned char)line[len - back];
		if ((c & 0xc0) == 0x80)
			continue; /* a continuation byte: look further back */
		size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		return need > back ? len - back : len;
	}
	return len;
}

/* Cut mode: a line of len bytes (without its newline) of which more than
 * limit may have been seen; extra bytes were discarded before. */
static void stream_deliver_cut(const proc_watch *w, proc_stream *s, char *line, size_t len,
                               size_t extra)
{
	size_t keep = len;
	if (len > w->limit || extra > 0)
		keep = utf8_whole(line, len < w->limit ? len : w->limit);
	char saved = line[keep];
	line[keep] = '\0';
	if (w->spec->on_cut_line)
		w->spec->on_cut_line(w->spec->ctx, s->stream, line, keep, len - keep + extra);
	line[keep] = saved;
}

/* Cut mode, the buffer full without a newline: keep the head, discard the
 * rest of the line as it comes. */
static void stream_cut_begin(const proc_watch *w, proc_stream *s)
{
	s->cutting = true;
	s->dropped = s->len - w->limit;
	s->last_cr = s->buf[s->len - 1] == '\r';
	s->len = w->limit;
}

/* Deliver every complete line in the buffer (and a forced split or cut
 * when the buffer is full without a newline); keep the rest at the front. */
static void stream_lines(const proc_watch *w, proc_stream *s)
{
	size_t start = 0;
	while (start < s->len) {
		char *line = s->buf + start;
		size_t avail = s->len - start;
		char *nl = memchr(line, '\n', avail);
		if (nl == NULL && avail < w->cap)
			break;
		if (nl == NULL && w->cut) { /* full: start is 0 */
			stream_cut_begin(w, s);
			return;
		}
		size_t len = nl ? (size_t)(nl - line) : avail;
		if (nl && len > 0 && line[len - 1] == '\r')
			len--;
		if (len > w->limit && !w->cut) {
			stream_deliver(w, s, line, w->limit);
			start += w->limit;
			continue;
		}
		if (w->cut)
			stream_deliver_cut(w, s, line, len, 0);
		else
			stream_deliver(w, s, line, len);
		start = (size_t)(nl - s->buf) + 1;
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
}

/* Cutting: discard up to the newline; then deliver the head. Returns the
 * bytes of p consumed. */
static size_t stream_skip(const proc_watch *w, proc_stream *s, const char *p, size_t n)
{
	const char *nl = memchr(p, '\n', n);
	if (nl == NULL) {
		s->dropped += n;
		s->last_cr = p[n - 1] == '\r';
		return n;
	}
	size_t k = (size_t)(nl - p);
	bool cr = k > 0 ? p[k - 1] == '\r' : s->last_cr;
	s->dropped += k - (cr ? 1 : 0); /* the '\r' of "\r\n" is no content */
	stream_deliver_cut(w, s, s->buf, s->len, s->dropped);
	s->cutting = false;
	s->len = s->dropped = 0;
	return k + 1;
}

/* Append what fits into the buffer and deliver its lines. */
static size_t stream_fill(const proc_watch *w, proc_stream *s, const char *p, size_t n)
{
	size_t k = w->cap - s->len;
	if (k > n)
		k = n;
	memcpy(s->buf + s->len, p, k);
	s->len += k;
	stream_lines(w, s);
	return k;
}

static void stream_feed(const proc_watch *w, proc_stream *s, const char *p, size_t n)
{
	while (n > 0) {
		size_t k = s->cutting ? stream_skip(w, s, p, n) : stream_fill(w, s, p, n);
		p += k;
		n -= k;
	}
}

/* EOF (or giving up on the pipe): the last line, even without newline. */
static void stream_finish(const proc_watch *w, proc_stream *s)
{
	size_t start = 0;
	if (s->cutting) {
		stream_deliver_cut(w, s, s->buf, s->len, s->dropped);
	} else if (w->cut) {
		if (s->len > 0)
			stream_deliver_cut(w, s, s->buf, s->len, 0);
	} else {
		while (s->len - start > w->limit) {
			stream_deliver(w, s, s->buf + start, w->limit);
			start += w->limit;
		}
		if (s->len > start)
			stream_deliver(w, s, s->buf + start, s->len - start);
	}
	s->len = s->dropped = 0;
	s->cutting = false;
	fd_close(&s->fd);
}

static void stream_read(proc_watch *w, proc_stream *s)
{
	ssize_t n = read(s->fd, w->chunk, sizeof w->chunk);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		stream_finish(w, s);
		return;
	}
	stream_feed(w, s, w->chunk, (size_t)n);
}

/* ---- the watch loop ---- */

/* The command's group and the command itself (in case it left its group).
 * Safe from pid reuse: the supervisor keeps the command unreaped until we
 * close the socket (invariant 5); if the supervisor died, we do not know. */
static void watch_signal(const proc_watch *w, int sig)
{
	if (w->sup_lost)
		return;
	kill(-w->cmd, sig);
	kill(w->cmd, sig);
}

/* The command gone, a cancel only ends the drain: the run keeps the
 * command's own status. */
static void watch_cancel(proc_watch *w)
{
	w->cancel_seen = true;
	if (w->exited) {
		w->drain_at = clock_mono_ms() - w->drain_ms;
		return;
	}
	w->res->cancelled = true;
	w->term_at = clock_mono_ms();
	watch_signal(w, SIGTERM);
}

static void watch_exited(proc_watch *w)
{
	if (!w->exited)
		w->drain_at = clock_mono_ms();
	w->exited = true;
}

static void watch_escalate(proc_watch *w)
{
	if (!w->res->cancelled || w->group_killed)
		return;
	if (clock_mono_ms() - w->term_at < w->grace_ms)
		return;
	watch_signal(w, SIGKILL);
	w->group_killed = true;
	w->res->killed = true;
}

/* A message (or EOF) from the supervisor: the command's exit status. */
static void watch_supervisor(proc_watch *w)
{
	sup_msg m;
	int rc = sup_recv(w->sock, &m, false);
	if (rc < 0)
		return;
	if (rc == 0) {
		watch_exited(w);
		w->sup_lost = !w->have_exit;
		fd_close(&w->sock);
		return;
	}
	if (m.kind == SUP_EXITED && !w->have_exit) {
		w->have_exit = true;
		watch_exited(w);
		w->res->exit_code = m.a;
		w->res->term_signal = m.b;
	}
}

static bool watch_pipes_open(const proc_watch *w)
{
	return w->out.fd >= 0 || w->err.fd >= 0;
}

/* Milliseconds until the drain ends (0: over), -1 if none is running. */
static int64_t watch_drain_left(const proc_watch *w)
{
	if (!w->exited || !watch_pipes_open(w))
		return -1;
	int64_t t = w->drain_at + w->drain_ms - clock_mono_ms();
	return t > 0 ? t : 0;
}

static bool watch_done(const proc_watch *w)
{
	return w->exited && (!watch_pipes_open(w) || w->group_killed || watch_drain_left(w) == 0);
}

static int watch_timeout(const proc_watch *w)
{
	int64_t t = watch_drain_left(w);
	if (w->res->cancelled && !w->group_killed) {
		int64_t g = w->term_at + w->grace_ms - clock_mono_ms();
		if (g < 0)
			g = 0;
		if (t < 0 || g < t)
			t = g;
	}
	return (int)(t > INT_MAX ? INT_MAX : t);
}

static void watch_step(proc_watch *w)
{
	struct pollfd pfd[4];
	proc_stream *streams[2] = {&w->out, &w->err};
	nfds_t n = 0;
	for (int i = 0; i < 2; i++)
		if (streams[i]->fd >= 0)
			pfd[n++] = (struct pollfd){.fd = streams[i]->fd, .events = POLLIN};
	bool watch_cancel_fd = w->cancel_fd >= 0 && !w->cancel_seen;
	if (watch_cancel_fd)
		pfd[n++] = (struct pollfd){.fd = w->cancel_fd, .events = POLLIN};
	if (w->sock >= 0)
		pfd[n++] = (struct pollfd){.fd = w->sock, .events = POLLIN};

	int rc = poll(pfd, n, watch_timeout(w));
	if (rc < 0 && errno != EINTR) {
		/* Cannot wait any more: end the run hard rather than spin. */
		watch_signal(w, SIGKILL);
		w->group_killed = true;
		watch_exited(w);
		return;
	}
	for (nfds_t i = 0; rc > 0 && i < n; i++) {
		if (pfd[i].revents == 0)
			continue;
		if (pfd[i].fd == w->cancel_fd && watch_cancel_fd)
			watch_cancel(w);
		else if (pfd[i].fd == w->out.fd)
			stream_read(w, &w->out);
		else if (pfd[i].fd == w->err.fd)
			stream_read(w, &w->err);
		else if (pfd[i].fd == w->sock)
			watch_supervisor(w);
	}
	watch_escalate(w);
}

/* Shutting our end for writing tells the supervisor to kill whatever is
 * left of the run, say how many it killed and exit; read to its EOF. */
static void watch_collect(proc_watch *w)
{
	sup_msg m;
	int rc;
	if (w->sock < 0)
		return;
	shutdown(w->sock, SHUT_WR);
	while ((rc = sup_recv(w->sock, &m, true)) != 0) {
		if (rc < 0)
			continue;
		if (m.kind == SUP_CLEANED)
			w->res->orphans_killed = m.a;
		else if (m.kind == SUP_EXITED && !w->have_exit) {
			w->have_exit = true;
			w->res->exit_code = m.a;
			w->res->term_signal = m.b;
		}
	}
	fd_close(&w->sock);
}

/* The supervisor's own status stands in for a command status it never
 * sent (it was killed). */
static void watch_finish(proc_watch *w)
{
	int status = 0;
	w->res->drain_expired = w->exited && watch_pipes_open(w) && !w->group_killed;
	if (w->out.fd >= 0)
		stream_finish(w, &w->out);
	if (w->err.fd >= 0)
		stream_finish(w, &w->err);
	if (w->res->cancelled)
		watch_signal(w, SIGKILL); /* whatever is left of the group */
	watch_collect(w);
	while (waitpid(w->sup, &status, 0) < 0 && errno == EINTR)
		;
	if (w->have_exit)
		return;
	if (WIFSIGNALED(status)) {
		w->res->term_signal = WTERMSIG(status);
		w->res->exit_code = 128 + WTERMSIG(status);
	} else {
		w->res->exit_code = WEXITSTATUS(status);
	}
}

/* ---- proc_run ---- */

static int watch_buffers(proc_watch *w, const proc_spec *spec, char *err, size_t errlen)
{
	w->cut = spec->max_line > 0;
	w->limit = w->cut ? spec->max_line : PROC_MAX_LINE;
	if (w->limit < PROC_MIN_LINE)
		w->limit = PROC_MIN_LINE;
	if (w->limit > PROC_MAX_CUT)
		w->limit = PROC_MAX_CUT;
	w->cap = w->limit + 2;
	w->out.buf = malloc(w->cap + 1);
	w->err.buf = malloc(w->cap + 1);
	if (w->out.buf == NULL || w->err.buf == NULL) {
		set_errno_err(err, errlen, "cannot run", spec->argv[0], ENOMEM);
		return -1;
	}
	return 0;
}

typedef struct {
	int out[2], err[2], sock[2];
	int devnull;
} proc_fds;

static int fds_open(proc_fds *f, char *err, size_t errlen)
{
	if (pipe2(f->out, O_CLOEXEC) != 0 || pipe2(f->err, O_CLOEXEC) != 0) {
		set_errno_err(err, errlen, "cannot create a pipe", NULL, errno);
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->sock) != 0) {
		set_errno_err(err, errlen, "cannot create a socket pair", NULL, errno);
		return -1;
	}
	f->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (f->devnull < 0) {
		set_errno_err(err, errlen, "cannot open", "/dev/null", errno);
		return -1;
	}
	return 0;
}

static void fds_close_child_ends(proc_fds *f)
{
	fd_close(&f->out[1]);
	fd_close(&f->err[1]);
	fd_close(&f->sock[1]);
	fd_close(&f->devnull);
}

static void fds_close_all(proc_fds *f)
{
	fds_close_child_ends(f);
	fd_close(&f->out[0]);
	fd_close(&f->err[0]);
	fd_close(&f->sock[0]);
}

static void plan_init(child_plan *p, const proc_spec *spec, const proc_fds *f)
{
	long max = sysconf(_SC_OPEN_MAX);
	memset(p, 0, sizeof *p);
	p->argv = (char *const *)spec->argv;
	p->cwd = spec->cwd;
	p->devnull = f->devnull;
	p->out_w = f->out[1];
	p->err_w = f->err[1];
	p->sup_fd = f->sock[1];
	p->report_w = -1;
	p->max_fd = max > 0 ? max : 65536;
	p->dfl.sa_handler = SIG_DFL;
	sigemptyset(&p->dfl.sa_mask);
	sigemptyset(&p->empty);
}

/* The supervisor's first message: the command started (its pid), or why
 * it could not; on failure the supervisor has exited and is reaped. */
static int proc_handshake(const proc_spec *spec, proc_fds *f, proc_watch *w, char *err,
                          size_t errlen)
{
	sup_msg m = {0};
	int rc;
	while ((rc = sup_recv(f->sock[0], &m, true)) < 0)
		;
	if (rc == 1 && m.kind == SUP_STARTED) {
		w->cmd = m.a;
		w->res->pid = m.a;
		return 0;
	}
	if (rc == 1 && m.kind == SUP_FAILED)
		report_format(&m, spec, err, errlen);
	else
		set_err(err, errlen, "cannot start the supervisor for '%s'", spec->argv[0]);
	fd_close(&f->sock[0]);
	while (waitpid(w->sup, NULL, 0) < 0 && errno == EINTR)
		;
	return -1;
}

/* Start the supervisor and the command; on success the fds are moved into
 * w. */
static int proc_start(const proc_spec *spec, proc_fds *f, proc_watch *w, char *err, size_t errlen)
{
	child_plan plan;
	char *path = NULL;
	int rc = -1;
	char **envp = env_build(spec->env_add, err, errlen);
	if (envp == NULL)
		return -1;
	int e = path_resolve(spec->argv[0], env_path(envp), &path);
	if (e != 0) {
		set_errno_err(err, errlen, "cannot run", spec->argv[0], e);
		goto out;
	}
	if (fds_open(f, err, errlen) != 0)
		goto out;
	plan_init(&plan, spec, f);
	plan.path = path;
	plan.envp = envp;
	pid_t pid = spawn_fork(&plan);
	if (pid < 0) {
		set_errno_err(err, errlen, "cannot fork", NULL, errno);
		goto out;
	}
	fds_close_child_ends(f);
	w->sup = pid;
	if (proc_handshake(spec, f, w, err, errlen) != 0)
		goto out;
	w->out.fd = f->out[0];
	w->err.fd = f->err[0];
	w->sock = f->sock[0];
	f->out[0] = f->err[0] = f->sock[0] = -1;
	rc = 0;
out:
	free(path);
	free(envp);
	return rc;
}

int proc_run(const proc_spec *spec, proc_result *out, char *err, size_t errlen)
{
	proc_fds f = {{-1, -1}, {-1, -1}, {-1, -1}, -1};
	int rc = -1;
	memset(out, 0, sizeof *out);
	out->exit_code = -1;
	if (spec == NULL || spec->argv == NULL || spec->argv[0] == NULL) {
		set_err(err, errlen, "no program to run");
		return -1;
	}
	proc_watch *w = calloc(1, sizeof *w);
	if (w == NULL) {
		set_errno_err(err, errlen, "cannot run", spec->argv[0], ENOMEM);
		return -1;
	}
	w->spec = spec;
	w->res = out;
	w->sock = w->out.fd = w->err.fd = -1;
	w->out.stream = PROC_STDOUT;
	w->err.stream = PROC_STDERR;
	w->cancel_fd = spec->cancel_fd;
	w->grace_ms = spec->kill_grace_ms > 0 ? spec->kill_grace_ms : PROC_GRACE_DEFAULT;
	w->drain_ms = spec->drain_ms > 0 ? spec->drain_ms : PROC_DRAIN_DEFAULT;
	if (watch_buffers(w, spec, err, errlen) != 0 || proc_start(spec, &f, w, err, errlen) != 0)
		goto out;
	while (!watch_done(w))
		watch_step(w);
	watch_finish(w);
	rc = 0;
out:
	fds_close_all(&f);
	free(w->out.buf);
	free(w->err.buf);
	free(w);
	return rc;
}
