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
 * closed, drain_ms after the command exited if something it left behind
 * still holds them (a daemonized child that kept stdout), or once the group
 * is killed. When the run ends, whatever it left behind (background
 * processes, daemonized ones) is SIGKILLed and counted (orphans_killed);
 * when the daemon dies, even by SIGKILL, the supervisor kills every
 * descendant.
 *
 * The command gets a built environment, never the daemon's whole one: of
 * the daemon's variables only PATH, HOME, LANG, LC_*, TZ, USER, LOGNAME,
 * SHELL, TMPDIR, SSH_AUTH_SOCK, FLEETKEEPER_CORRELATION_ID and the names
 * given to proc_env_pass ([daemon] pass_env), then spec->env_add on top
 * (the task's own env keys, ANSIBLE_* set by the runner). Secrets named by
 * `*_env` keys are in none of these (config.h).
 *
 * Threads: proc_run from any number of threads; proc_env_pass from any
 * thread (the list is copied and swapped under a lock). Errors: 0 or -1
 * with a message in err.
 */
#ifndef FK_PROC_H
#define FK_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { PROC_STDOUT = 1, PROC_STDERR = 2 };

/* One output line without its newline (a last line without one too). Lines
 * longer than PROC_MAX_LINE are split. line[len] is '\0'; the line may hold
 * NUL bytes of its own (len counts them). */
typedef void (*proc_line_fn)(void *ctx, int stream, const char *line, size_t len);
#define PROC_MAX_LINE 8192

/* One output line cut at spec->max_line bytes: line holds its first len
 * bytes (len <= max_line; a UTF-8 character the cut would split is left out
 * whole), and dropped more bytes of it were read and discarded up to its
 * newline (0: the whole line). line[len] is '\0'; NUL bytes as above. */
typedef void (*proc_cut_line_fn)(void *ctx, int stream, const char *line, size_t len,
                                 size_t dropped);
#define PROC_DRAIN_DEFAULT 5000
typedef struct {
	const char *const *argv; /* argv[0] is the program (execvp) */
	const char *const
	        *env_add; /* "KEY=VALUE" set for the child (wins), NULL-terminated, may be NULL */
	const char *cwd;  /* NULL: inherit */
	int cancel_fd;    /* -1: never cancelled */
	int64_t kill_grace_ms; /* SIGTERM -> SIGKILL; default 5000 when 0 */
	proc_line_fn on_line;  /* may be NULL: output discarded */
	/* 0: lines longer than PROC_MAX_LINE are split, on_line gets them;
	 * else every line is cut at max_line bytes (at least 4) and delivered
	 * to on_cut_line instead (NULL: discarded). */
	size_t max_line;
	proc_cut_line_fn on_cut_line;
	/* Once the command has exited, how long what it left behind may keep
	 * its output pipes open before the run ends anyway; 0: 5000. */
	int64_t drain_ms;
	void *ctx;
} proc_spec;

typedef struct {
	int pid;            /* the command (not the supervisor) */
	int exit_code;      /* 0..255 when exited, 128+signal when killed */
	int term_signal;    /* 0 if it exited */
	bool cancelled;     /* cancel_fd fired */
	bool killed;        /* needed SIGKILL after the grace */
	bool drain_expired; /* the command exited, its pipes stayed open drain_ms */
	int orphans_killed; /* processes left of the run that were SIGKILLed at its end */
} proc_result;

/* The extra variables every later child inherits from the daemon's
 * environment: names, or prefixes ending in '*' ("ANSIBLE_*"; "*" alone
 * passes everything). Copied; replaces the previous list; NULL or an empty
 * list: none. 0, or -1 out of memory (the previous list stays). */
int proc_env_pass(const char *const *names);

/* True if a child would inherit the daemon's variable `name`, with pass as
 * the pass_env list (NULL: none). */
bool proc_env_inherited(const char *name, const char *const *pass);

/* 0 once the child ran and was reaped (whatever its status); -1 if it could
 * not be started (err says why: fork, pipe, exec of a missing program). */
int proc_run(const proc_spec *spec, proc_result *out, char *err, size_t errlen);

#endif
