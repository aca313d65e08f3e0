/*
 * runtime — what every command that runs tasks needs around it: the state
 * directory, the locks, the main store connection and the event writer.
 *
 * Locks (flock, in the state directory):
 *  daemon.lock  exclusive, held by the daemon for its lifetime; a second
 *               daemon on the same state directory is refused.
 *  runs.lock    shared, held by every process that may own running task_runs
 *               rows (the daemon, `once`, in-process `trigger`). A process
 *               that gets it exclusively knows nobody owns a running row, so
 *               rows still marked running were left by a crash and become
 *               interrupted.
 *
 * Descriptors: runtime_open raises the soft RLIMIT_NOFILE to the hard limit
 * (the SSH loop keeps one socket per check in flight, ssh.h) and keeps the
 * original soft limit, which runtime_child_nofile gives back to a child
 * between fork and exec: programs that use select() break with descriptors
 * above 1024.
 */
#ifndef FK_RUNTIME_H
#define FK_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>

#include "config.h"
#include "eventsink.h"
#include "store.h"

typedef struct {
	config *cfg; /* borrowed */
	store *st;   /* the calling thread's connection */
	eventsink *sink;
	int daemon_lock_fd;
	int runs_lock_fd;
	rlim_t nofile_soft; /* RLIMIT_NOFILE after runtime_raise_nofile */
	rlim_t nofile_hard;
} runtime;

enum { RUNTIME_LOCKED = -10 };

/* as_daemon: take daemon.lock or fail with RUNTIME_LOCKED and a message
 * naming the other daemon's pid. Errors name the path at fault. */
int runtime_open(runtime *rt, config *cfg, bool as_daemon, char *err, size_t errlen);
/* Flush the events, stop the writer, close, unlock. */
void runtime_close(runtime *rt);

/* Raise the soft RLIMIT_NOFILE to the hard limit (once per process; the
 * first call remembers the original soft limit for runtime_child_nofile).
 * *soft and *hard (either may be NULL) get the limits now in force. 0, or
 * -1 if getrlimit failed; a refused raise keeps the old soft limit. */
int runtime_raise_nofile(rlim_t *soft, rlim_t *hard);

/* Give the calling process the soft RLIMIT_NOFILE it had before
 * runtime_raise_nofile (no-op if it was never raised). Async-signal-safe:
 * for a child between fork (or vfork) and exec. */
void runtime_child_nofile(void);

/* Create a directory and its parents (mode 0700 for new ones). */
int runtime_mkdirs(const char *path);

#endif
