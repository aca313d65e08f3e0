/*
 * proc — run a child process in its own process group and read its output
 * line by line, with cancellation; no process of a run outlives the run or
 * the daemon.
 *
 * The command is started through a small supervisor process (a fork of the
 * daemon, a child subreaper, see proc_supervisor.c) and gets a new process
 * group (so the whole group — grandchildren included — can be signalled),
 * stdin from /dev/null, and stdout/stderr on pipes. When cancel_fd becomes
 * readable, the group gets SIGTERM and, after kill_grace_ms, SIGKILL;
 * proc_run returns only once the command has exited and the pipes are
 * closed (or the group is killed). When the run ends, whatever it left
 * behind (background processes, daemonized ones) is SIGKILLed; when the
 * daemon dies, even by SIGKILL, the supervisor kills every descendant.
 */
#ifndef FK_PROC_H
#define FK_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { PROC_STDOUT = 1, PROC_STDERR = 2 };

/* One output line without its newline (a last line without one too). Lines
 * longer than PROC_MAX_LINE are split. line[len] is '\0'. */
typedef void (*proc_line_fn)(void *ctx, int stream, const char *line, size_t len);
#define PROC_MAX_LINE 8192

typedef struct {
	const char *const *argv; /* argv[0] is the program (execvp) */
	const char *const
	        *env_add; /* "KEY=VALUE" added to the environment, NULL-terminated, may be NULL */
	const char *cwd;  /* NULL: inherit */
	int cancel_fd;    /* -1: never cancelled */
	int64_t kill_grace_ms; /* SIGTERM -> SIGKILL; default 5000 when 0 */
	proc_line_fn on_line;  /* may be NULL: output discarded */
	void *ctx;
} proc_spec;

typedef struct {
	int pid;         /* the command (not the supervisor) */
	int exit_code;   /* 0..255 when exited, 128+signal when killed */
	int term_signal; /* 0 if it exited */
	bool cancelled;  /* cancel_fd fired */
	bool killed;     /* needed SIGKILL after the grace */
} proc_result;

/* 0 once the child ran and was reaped (whatever its status); -1 if it could
 * not be started (err says why: fork, pipe, exec of a missing program). */
int proc_run(const proc_spec *spec, proc_result *out, char *err, size_t errlen);

#endif
