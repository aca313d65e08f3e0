/*
 * eventsink — stores every emitted event in the events table without making
 * the emitting thread wait on SQLite.
 *
 * log_set_sink(eventsink_log_sink, sink) hands each rendered event to
 * eventsink_log_sink, which copies it into a bounded in-memory queue under a
 * short mutex and returns. A writer thread with its own store connection
 * takes the queue and inserts it in one transaction, at the latest every
 * flush interval (default 250 ms: at most that much is at risk on a crash).
 * When the queue is full the event is dropped and counted (events_dropped is
 * logged once the queue drains). When a write fails (disk full, read-only)
 * the batch is kept, one store_write_failed event goes to stdout only, and
 * the writer retries with backoff; new events beyond the bound are dropped
 * and counted.
 */
#ifndef FK_EVENTSINK_H
#define FK_EVENTSINK_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef struct eventsink eventsink;

typedef struct {
	size_t max_queued;         /* default 100000 events */
	int64_t flush_interval_ms; /* default 250 */
} eventsink_options;

/* Opens its own connection to db_path and starts the writer thread. */
int eventsink_start(eventsink **out, const char *db_path, const eventsink_options *opts, char *err,
                    size_t errlen);
/* Blocks until every event queued before the call is committed, or the
 * writer reports a failure (returns -1), or timeout_ms passes (-1). */
int eventsink_flush(eventsink *sink, int64_t timeout_ms);
/* Flushes (bounded wait), stops and frees. NULL is fine. */
void eventsink_stop(eventsink *sink);

uint64_t eventsink_dropped(const eventsink *sink);
uint64_t eventsink_stored(const eventsink *sink);

/* The log_sink_fn to register with log_set_sink; ctx is the eventsink. */
void eventsink_log_sink(void *ctx, const log_record *rec);

#endif
