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
 */
#ifndef FK_RUNTIME_H
#define FK_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "eventsink.h"
#include "store.h"

typedef struct {
	config *cfg; /* borrowed */
	store *st;   /* the calling thread's connection */
	eventsink *sink;
	int daemon_lock_fd;
	int runs_lock_fd;
} runtime;

enum { RUNTIME_LOCKED = -10 };

/* as_daemon: take daemon.lock or fail with RUNTIME_LOCKED and a message
 * naming the other daemon's pid. Errors name the path at fault. */
int runtime_open(runtime *rt, config *cfg, bool as_daemon, char *err, size_t errlen);
/* Flush the events, stop the writer, close, unlock. */
void runtime_close(runtime *rt);

/* Create a directory and its parents (mode 0700 for new ones). */
int runtime_mkdirs(const char *path);

#endif
