/*
 * proc_supervisor — the small process between the daemon and a command, so
 * that no descendant of a run outlives the daemon (see proc.h). It is a fork
 * of the (multi-threaded) daemon, so until it exits it makes
 * async-signal-safe calls only: no malloc, no stdio, no locks. It starts the
 * command with vfork, which runs no atfork handlers and copies no page
 * tables.
 *
 * Its life:
 * 1. Leave the daemon's process group (a killpg of the daemon's group must
 *    not take it down), become a child subreaper (every orphaned descendant
 *    of the command — double-forked and setsid'd ones too — is reparented to
 *    it), put /dev/null on 0, 1, 2 (it must not hold the daemon's stdout or
 *    stderr open) and close every fd but its socket, /dev/null and the two
 *    output pipes. All signals stay blocked (the daemon forked with them
 *    blocked): SIGCHLD is read from a signalfd, and nothing else reaches it.
 * 2. Start the command: its own process group, PR_SET_PDEATHSIG(SIGKILL)
 *    (its parent is this single-threaded process, so the thread caveat of
 *    PDEATHSIG does not apply), default signal dispositions, an empty mask.
 *    A failure before exec comes back on a CLOEXEC report pipe and is
 *    forwarded as SUP_FAILED; otherwise SUP_STARTED with the command's pid.
 *    The output pipes are then closed here: only the command holds them.
 * 3. Watch SIGCHLD and the socket. When the command exits, send SUP_EXITED
 *    with its status but do NOT reap it: as a zombie it keeps its pid, hence
 *    the group id the daemon signals, from being reused. Other children
 *    (reparented orphans) are reaped as they exit.
 * 4. EOF on the socket — the daemon finished the run (it shut its end for
 *    writing), or died (kill -9 included: the kernel closes its fds) —
 *    means: SIGKILL the command's group, then every child of ours, reap,
 *    and repeat until none is left (each death reparents that process's
 *    children to us). Every process reaped there that our SIGKILL ended,
 *    the command aside, counts as an orphan killed; SUP_CLEANED tells the
 *    daemon how many (a dead daemon does not hear it). Then exit 0.
 *    Children are listed from /proc/thread-self/children; without it only
 *    the command's group is killed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "proc_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime.h" /* runtime_child_nofile */

/* What the command writes on the report pipe when it cannot exec. */
typedef struct {
	int stage;
	int err;
} child_report;

static int fd_lift(int fd)
{
	return fd > 2 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static void close_from(int first, int last, long max_fd)
{
	if (first > last)
		return;
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)first, (unsigned)last, 0u) == 0)
		return;
#endif
	for (long fd = first; fd <= last && fd < max_fd; fd++)
		close((int)fd);
}

/* Close every fd above 2 but those in keep[] (distinct, each > 2). */
static void close_except(int *keep, int n, long max_fd)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	int from = 3;
	for (int i = 0; i < n; i++) {
		close_from(from, keep[i] - 1, max_fd);
		from = keep[i] + 1;
	}
	close_from(from, INT_MAX, max_fd);
}

/* ---- the command, between vfork and execve ---- */

static void __attribute__((noreturn)) child_fail(int fd, int stage, int err)
{
	child_report r = {.stage = stage, .err = err};
	ssize_t n = write(fd, &r, sizeof r);
	(void)n;
	_exit(127);
}

static void child_setup_fds(const child_plan *p, int report)
{
	int in = fd_lift(p->devnull), out = fd_lift(p->out_w), err = fd_lift(p->err_w);
	if (in < 0 || out < 0 || err < 0)
		child_fail(report, STAGE_SETUP, errno);
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		child_fail(report, STAGE_SETUP, errno);
	close_from(3, report - 1, p->max_fd);
	close_from(report + 1, INT_MAX, p->max_fd);
}

static void __attribute__((noreturn)) child_exec(const child_plan *p)
{
	int report = p->report_w; /* > 2: created after 0, 1, 2 were filled */
	setpgid(0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != p->parent)
		_exit(127);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &p->dfl, NULL); /* glibc-reserved ones fail: fine */
	child_setup_fds(p, report);
	if (p->cwd && chdir(p->cwd) != 0)
		child_fail(report, STAGE_CHDIR, errno);
	runtime_child_nofile(); /* the soft RLIMIT_NOFILE the daemon started with */
	sigprocmask(SIG_SETMASK, &p->empty, NULL);
	execve(p->path, p->argv, p->envp);
	child_fail(report, STAGE_EXEC, errno);
}

/* ---- the supervisor ---- */

static void sup_send(int fd, int kind, int a, int b)
{
	sup_msg m = {.kind = kind, .a = a, .b = b};
	while (send(fd, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

static void __attribute__((noreturn)) sup_fail(int fd, int stage, int err)
{
	sup_send(fd, SUP_FAILED, stage, err);
	_exit(127);
}

/* Call fn(pid, cmd) for each child of ours; -1 without the /proc file. */
static int children_each(void (*fn)(pid_t, pid_t), pid_t cmd)
{
	char buf[512];
	long v = 0;
	bool digits = false;
	int fd = open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] >= '0' && buf[i] <= '9') {
				v = v * 10 + (buf[i] - '0');
				digits = true;
			} else if (digits) {
				fn((pid_t)v, cmd);
				v = 0;
				digits = false;
			}
		}
	}
	if (digits)
		fn((pid_t)v, cmd);
	close(fd);
	return 0;
}

static void reap_orphan(pid_t pid, pid_t cmd)
{
	if (pid != cmd)
		waitpid(pid, NULL, WNOHANG);
}

static void kill_child(pid_t pid, pid_t cmd)
{
	(void)cmd;
	kill(pid, SIGKILL);
}

/* 0, 1, 2 on /dev/null; keep only the fds the supervisor needs. */
static void sup_fds(child_plan *c)
{
	c->sup_fd = fd_lift(c->sup_fd);
	if (c->sup_fd < 0)
		_exit(127);
	c->devnull = fd_lift(c->devnull);
	c->out_w = fd_lift(c->out_w);
	c->err_w = fd_lift(c->err_w);
	if (c->devnull < 0 || c->out_w < 0 || c->err_w < 0)
		sup_fail(c->sup_fd, STAGE_SUPERVISOR, errno);
	if (dup2(c->devnull, 0) < 0 || dup2(c->devnull, 1) < 0 || dup2(c->devnull, 2) < 0)
		sup_fail(c->sup_fd, STAGE_SUPERVISOR, errno);
	int keep[4] = {c->sup_fd, c->devnull, c->out_w, c->err_w};
	close_except(keep, 4, c->max_fd);
}

static int report_read(int fd, child_report *r)
{
	size_t got = 0;
	while (got < sizeof *r) {
		ssize_t n = read(fd, (char *)r + got, sizeof *r - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got == sizeof *r ? -1 : 0;
}

/* Start the command; returns its pid once it has exec'd (else exits). */
static pid_t sup_start(child_plan *c)
{
	int rep[2];
	child_report r;
	if (pipe2(rep, O_CLOEXEC) != 0)
		sup_fail(c->sup_fd, STAGE_SUPERVISOR, errno);
	c->report_w = rep[1];
	c->parent = getpid();
	pid_t pid = vfork();
	if (pid == 0)
		child_exec(c);
	int e = errno;
	close(rep[1]);
	close(c->devnull);
	close(c->out_w);
	close(c->err_w);
	if (pid < 0)
		sup_fail(c->sup_fd, STAGE_SUPERVISOR, e);
	setpgid(pid, pid); /* the command does it too; whoever is first wins */
	if (report_read(rep[0], &r) != 0) {
		waitpid(pid, NULL, 0);
		sup_fail(c->sup_fd, r.stage, r.err);
	}
	close(rep[0]);
	sup_send(c->sup_fd, SUP_STARTED, pid, 0);
	return pid;
}

/* Report the command's exit once it is a zombie (left unreaped). */
static bool sup_check_exit(int sock, pid_t cmd)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_PID, (id_t)cmd, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid != cmd)
		return false;
	if (si.si_code == CLD_EXITED)
		sup_send(sock, SUP_EXITED, si.si_status, 0);
	else
		sup_send(sock, SUP_EXITED, 128 + si.si_status, si.si_status);
	return true;
}

static bool sup_socket_closed(int sock)
{
	char b[16];
	ssize_t n = recv(sock, b, sizeof b, MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

static void sup_drain(int sfd)
{
	struct signalfd_siginfo si[8];
	while (read(sfd, si, sizeof si) > 0)
		;
}

static void sup_watch(int sock, int sfd, pid_t cmd)
{
	bool reported = false;
	for (;;) {
		struct pollfd pfd[2] = {{.fd = sock, .events = POLLIN},
		                        {.fd = sfd, .events = POLLIN}};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (pfd[1].revents) {
			sup_drain(sfd);
			if (!reported)
				reported = sup_check_exit(sock, cmd);
			children_each(reap_orphan, cmd);
		}
		if (pfd[0].revents && sup_socket_closed(sock))
			return;
	}
}

/* 1 if pid, reaped with status st, was a leftover our SIGKILL ended. */
static int killed_orphan(pid_t pid, int st, pid_t cmd)
{
	return pid > 0 && pid != cmd && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
}

/* Kill and reap every descendant; without the children list, only the
 * command's group. Returns how many leftovers were killed. */
static int sup_cleanup(pid_t cmd)
{
	int killed = 0, st = 0;
	pid_t p;
	kill(-cmd, SIGKILL);
	for (;;) {
		if (children_each(kill_child, cmd) != 0) {
			kill(cmd, SIGKILL);
			waitpid(cmd, NULL, 0);
			while ((p = waitpid(-1, &st, WNOHANG)) > 0)
				killed += killed_orphan(p, st, cmd);
			return killed;
		}
		p = waitpid(-1, &st, 0);
		if (p < 0 && errno != EINTR)
			return killed; /* ECHILD: nobody left */
		killed += killed_orphan(p, st, cmd);
	}
}

void proc_supervise(const child_plan *plan)
{
	child_plan c = *plan;
	sigset_t chld;
	setpgid(0, 0);
	prctl(PR_SET_NAME, "fk-supervisor");
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	sigaction(SIGCHLD, &c.dfl, NULL); /* never SIG_IGN: zombies must stay */
	sup_fds(&c);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		sup_fail(c.sup_fd, STAGE_SUPERVISOR, errno);
	pid_t cmd = sup_start(&c);
	sup_watch(c.sup_fd, sfd, cmd);
	sup_send(c.sup_fd, SUP_CLEANED, sup_cleanup(cmd), 0);
	_exit(0);
}
