/*
 * eventsink — stores every emitted event in the events table without making
 * the emitting thread wait on SQLite.
 *
 * log_set_sink(eventsink_log_sink, sink) hands each rendered event to
 * eventsink_log_sink, which copies it into a bounded in-memory queue under a
 * short mutex and returns. The queue is bounded twice: by events (default
 * 100000) and by bytes (default 16 MiB of copied events, so long output
 * lines cannot take the memory). A writer thread with its own store
 * connection takes the queue and inserts it in transactions of at most 2000
 * events or 1 MiB: at once when that much is queued, otherwise at the latest
 * one flush interval (default 250 ms) after the first queued event.
 *
 * Crash bound (kill -9): what is lost is what was not committed, i.e. the
 * events of the last flush interval (250 ms) when the writer keeps up. A
 * thread that runs a task (eventsink_thread_paced) is held back while the
 * writer is healthy and more than 2 MiB or 10000 events are queued, so a
 * chatty task cannot run ahead of the store: what is at risk stays under
 * about 3 MiB / 12000 events plus the last 250 ms. Threads that are not
 * paced (the loop, the HTTP thread) never wait.
 *
 * Drops: when the queue is full the event is dropped and counted: in
 * eventsink_dropped, fleetkeeper_events_dropped_total, per correlation id
 * (eventsink_run_dropped_take, which the runner asks at a run's end), and
 * in an events_dropped event once the queue drains. When a write fails
 * (disk full, read-only) the batch is kept, one store_write_failed event
 * goes to stdout only, the writer retries with backoff, and the writer's
 * state is published to metrics (fleetkeeper_store_write_errors_total,
 * the store check of /healthz) until a write succeeds again. Memory held
 * by a large queue is given back to the system once it drains.
 *
 * Threads: eventsink_log_sink from any thread; start, flush, stop from the
 * thread that owns the sink; the _take and _paced functions are
 * process-wide (at most one sink is registered with log_set_sink).
 * Errors: start returns 0 or -1 with err set; flush -1 on failure or
 * timeout. The writer reports on stdout itself (never through log_emit).
 * Ownership: the sink owns its copies of the events; start's *out is freed
 * by stop.
 */
#ifndef FK_EVENTSINK_H
#define FK_EVENTSINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef struct eventsink eventsink;

#define EVENTSINK_DEFAULT_MAX_QUEUED 100000
#define EVENTSINK_DEFAULT_MAX_BYTES  (16u << 20)

typedef struct {
	size_t max_queued;         /* default 100000 events */
	size_t max_bytes;          /* default 16 MiB of queued event copies */
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
/* Bytes held by the queue and the writer's batch right now. */
size_t eventsink_queued_bytes(eventsink *sink);

/* Events with this correlation id dropped so far (queue full or out of
 * memory), and forget them: the runner asks once at the end of a run.
 * Process-wide, for at most 64 correlation ids at a time (the oldest is
 * forgotten first). NULL: 0. */
uint64_t eventsink_run_dropped_take(const char *correlation_id);

/* Mark the calling thread as one that may be held back while the queue is
 * over its pacing mark and the writer is healthy (at most 1 s per event):
 * the runner sets it for the duration of a run. Thread-local. */
void eventsink_thread_paced(bool paced);

/* The log_sink_fn to register with log_set_sink; ctx is the eventsink. */
void eventsink_log_sink(void *ctx, const log_record *rec);

#endif
