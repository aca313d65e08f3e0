/*
 * events — the events table: every log line of a run, as the event writer
 * (eventsink.c) stores it, read back by trace and --follow.
 *
 * Threads: any, each with its own store connection (in the daemon, the
 * event writer's).
 * Errors: 0 or a negative store_error with the message in store_errmsg();
 * nothing is logged here.
 * Ownership: the strings of an event_record are borrowed for the call; the
 * json handed to a trace callback is borrowed for the callback.
 */
#ifndef FK_EVENTS_H
#define FK_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct {
	double unix_time;
	const char *timestamp;
	const char *level;
	const char *logger;
	const char *event;
	const char *correlation_id; /* may be NULL */
	const char *task;           /* may be NULL */
	int64_t run_id;             /* 0 if none */
	const char *json;
} event_record;

/* All rows in one transaction: all stored or none. */
int events_insert(store *s, const event_record *events, size_t n);

typedef int (*event_line_cb)(void *ctx, int64_t id, const char *json);
/* Events of one correlation id with id > after_id, in order; a callback
 * returns 0 to go on, non-zero to stop (that value is then returned). */
int events_trace(store *s, const char *correlation_id, int64_t after_id, event_line_cb cb,
                 void *ctx);

/* Delete at most max_rows of the events older than cutoff (unix seconds),
 * oldest first, in one statement (one short transaction unless the caller
 * holds one); *deleted gets how many: fewer than max_rows means none is
 * left. Callers loop, releasing the store between batches (retention.h). */
int events_prune(store *s, double cutoff, size_t max_rows, int64_t *deleted);

#endif
