/*
 * eventsink — the events table writer; see eventsink.h and
 * docs/state-store.md.
 *
 * Emitting threads call eventsink_log_sink, which copies the record into one
 * malloc'd node (outside the lock) and appends it to a linked list under the
 * mutex. The writer thread owns its own store connection and is the only
 * thread that touches SQLite here. Invariants:
 *
 *  1. The mutex is held only for list and counter updates, never across
 *     SQLite calls, malloc of a record, or write(2).
 *  2. queued + inflight <= max_queued and queued_bytes + inflight_bytes <=
 *     max_bytes: a record that would exceed either is dropped and counted,
 *     in total and per correlation id (inflight is the batch the writer
 *     holds, kept across failed attempts).
 *  3. Records get consecutive sequence numbers in enqueue order and are
 *     committed in that order; committed_seq is the last one committed, so
 *     a flush waits for committed_seq >= the sequence number it saw.
 *  4. A failed batch is kept and retried after a backoff (100 ms doubling
 *     to 5 s); a flush request cuts the backoff short once. Once stop is
 *     requested, a batch that failed is not retried again (the stop's own
 *     flush made the last attempt) and the first failure ends the writer:
 *     stop never waits forever; what could not be stored is counted as
 *     dropped and reported on stdout.
 *  5. store_write_failed and events_dropped lines go straight to fd 1 with
 *     write(2), never through log_emit (which would come back here).
 *  6. Only a paced thread (a run's) ever waits in eventsink_log_sink, and
 *     only while the writer is healthy (failing is false), not stopping,
 *     and the last pacing wait did not time out since the last commit: a
 *     failing or stalled store never holds a task back.
 *  7. After a spell with more than TRIM_AFTER_BYTES queued, the writer
 *     gives the freed memory back (malloc_trim) once the queue is empty.
 */
#include "eventsink.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "metrics.h"
#include "store.h"
#include "events.h"

#define DEFAULT_FLUSH_MS  250
#define BATCH_MAX         2000
#define BATCH_BYTES       (1u << 20)
#define PACE_EVENTS       10000
#define PACE_BYTES        (2u << 20)
#define PACE_WAIT_MS      1000
#define TRIM_AFTER_BYTES  (4u << 20)
#define RUN_DROPS_SLOTS   64
#define RUN_CID_MAX       128
#define BACKOFF_MIN_MS    100
#define BACKOFF_MAX_MS    5000
#define FAILURE_REPORT_MS 10000
#define STOP_FLUSH_MS     5000

/* One queued event: the header, then its strings in the same block. */
typedef struct ev_node {
	struct ev_node *next;
	size_t size; /* of the whole block */
	uint64_t seq;
	int64_t enq_ms;  /* monotonic */
	event_record ev; /* strings point into data */
	char data[];
} ev_node;

typedef struct {
	ev_node *head, *tail;
	size_t n;
	size_t bytes;
	uint64_t last_seq;
} ev_batch;

struct eventsink {
	pthread_mutex_t mu;
	pthread_cond_t work; /* the writer waits on it */
	pthread_cond_t done; /* flushers wait on it */
	pthread_t thread;
	store *st; /* the writer's own connection */
	size_t max_queued;
	size_t max_bytes;
	int64_t flush_ms;

	/* Guarded by mu. */
	ev_node *head, *tail;
	size_t queued;          /* in the list */
	size_t inflight;        /* in the writer's batch */
	size_t queued_bytes;    /* of the list */
	size_t inflight_bytes;  /* of the writer's batch */
	size_t peak_bytes;      /* most held since the last trim */
	bool failing;           /* the last write failed */
	uint64_t pace_stalled;  /* committed_seq when a pacing wait timed out, + 1 */
	uint64_t next_seq;      /* last sequence number handed out */
	uint64_t committed_seq; /* last sequence number committed */
	uint64_t flush_upto;    /* highest sequence number a flush waits for */
	uint64_t flush_req;     /* bumped by each flush that has to wait */
	uint64_t flush_seen;    /* the flush_req the writer last acted on */
	uint64_t fail_gen;      /* bumped by each failed write */
	bool stopping;
	uint64_t dropped_unreported;

	/* Writer thread only. */
	event_record *events; /* BATCH_MAX, reused */
	int64_t backoff_ms;
	int64_t retry_at_ms;
	int64_t last_report_ms;
	bool reported_once;

	_Atomic uint64_t dropped;
	_Atomic uint64_t stored;
};

static void deadline_ts(struct timespec *ts, int64_t mono_ms)
{
	ts->tv_sec = (time_t)(mono_ms / 1000);
	ts->tv_nsec = (long)(mono_ms % 1000) * 1000000L;
}

/* ---- nodes ---- */

static size_t str_size(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

/* Copy s (n - 1 bytes and a NUL) to *p and advance *p; NULL stays NULL. */
static const char *put_str(char **p, const char *s, size_t n)
{
	if (!s)
		return NULL;
	char *dst = *p;
	memcpy(dst, s, n - 1);
	dst[n - 1] = '\0';
	*p += n;
	return dst;
}

static ev_node *node_new(const log_record *rec)
{
	const char *level = log_level_name(rec->level);
	const char *json = rec->json ? rec->json : "";
	size_t json_n = (rec->json ? rec->json_len : 0) + 1;
	size_t lens[6] = {str_size(rec->timestamp),      str_size(level),
	                  str_size(rec->logger),         str_size(rec->event),
	                  str_size(rec->correlation_id), str_size(rec->task)};
	size_t total = json_n;
	for (int i = 0; i < 6; i++)
		total += lens[i];
	ev_node *n = malloc(sizeof *n + total);
	if (!n)
		return NULL;
	char *p = n->data;
	n->next = NULL;
	n->size = sizeof *n + total;
	n->ev.unix_time = rec->unix_time;
	n->ev.run_id = rec->run_id;
	n->ev.json = put_str(&p, json, json_n);
	n->ev.timestamp = put_str(&p, rec->timestamp, lens[0]);
	n->ev.level = put_str(&p, level, lens[1]);
	n->ev.logger = put_str(&p, rec->logger, lens[2]);
	n->ev.event = put_str(&p, rec->event, lens[3]);
	n->ev.correlation_id = put_str(&p, rec->correlation_id, lens[4]);
	n->ev.task = put_str(&p, rec->task, lens[5]);
	return n;
}

static void nodes_free(ev_node *n)
{
	while (n) {
		ev_node *next = n->next;
		free(n);
		n = next;
	}
}

/* ---- drops per correlation id (process-wide) ---- */

typedef struct {
	char cid[RUN_CID_MAX];
	uint64_t count;
} run_drops;

static pthread_mutex_t run_drops_mu = PTHREAD_MUTEX_INITIALIZER;
static run_drops run_drops_tab[RUN_DROPS_SLOTS]; /* guarded by run_drops_mu */
static size_t run_drops_next;                    /* the slot to reuse next */

static void run_drop_count(const char *cid)
{
	if (!cid || !cid[0] || strlen(cid) >= RUN_CID_MAX)
		return;
	pthread_mutex_lock(&run_drops_mu);
	run_drops *slot = NULL;
	for (size_t i = 0; i < RUN_DROPS_SLOTS && !slot; i++)
		if (run_drops_tab[i].count > 0 && strcmp(run_drops_tab[i].cid, cid) == 0)
			slot = &run_drops_tab[i];
	if (!slot) {
		slot = &run_drops_tab[run_drops_next];
		run_drops_next = (run_drops_next + 1) % RUN_DROPS_SLOTS;
		snprintf(slot->cid, sizeof slot->cid, "%s", cid);
		slot->count = 0;
	}
	slot->count++;
	pthread_mutex_unlock(&run_drops_mu);
}

uint64_t eventsink_run_dropped_take(const char *correlation_id)
{
	uint64_t n = 0;
	if (!correlation_id)
		return 0;
	pthread_mutex_lock(&run_drops_mu);
	for (size_t i = 0; i < RUN_DROPS_SLOTS; i++) {
		run_drops *d = &run_drops_tab[i];
		if (d->count > 0 && strcmp(d->cid, correlation_id) == 0) {
			n += d->count;
			d->count = 0;
		}
	}
	pthread_mutex_unlock(&run_drops_mu);
	return n;
}

/* ---- enqueue (any thread) ---- */

static _Thread_local bool thread_paced;

void eventsink_thread_paced(bool paced)
{
	thread_paced = paced;
}

static size_t half_capacity(const eventsink *k)
{
	return k->max_queued / 2 ? k->max_queued / 2 : 1;
}

/* With mu held: is a full batch waiting (write now, whatever the interval)? */
static bool batch_due(const eventsink *k)
{
	size_t events = BATCH_MAX < half_capacity(k) ? BATCH_MAX : half_capacity(k);
	size_t bytes = BATCH_BYTES < k->max_bytes / 2 ? BATCH_BYTES : k->max_bytes / 2;
	return k->queued >= events || k->queued_bytes >= bytes;
}

static bool over_bounds(const eventsink *k, size_t size)
{
	return k->queued + k->inflight >= k->max_queued ||
	       k->queued_bytes + k->inflight_bytes + size > k->max_bytes;
}

/* With mu held. */
static void count_drop(eventsink *k, const log_record *rec)
{
	atomic_fetch_add(&k->dropped, 1);
	metrics_events_dropped(1);
	run_drop_count(rec->correlation_id);
	k->dropped_unreported++;
}

static bool over_pace(const eventsink *k)
{
	return k->queued + k->inflight >= PACE_EVENTS ||
	       k->queued_bytes + k->inflight_bytes >= PACE_BYTES;
}

/* With mu held, on a paced thread: wait (bounded) while the queue is over
 * its pacing mark and the writer is healthy. A wait that times out stops
 * pacing until the writer commits again (invariant 6). */
static void pace(eventsink *k)
{
	if (!over_pace(k) || k->failing || k->stopping || k->pace_stalled == k->committed_seq + 1)
		return;
	struct timespec ts;
	deadline_ts(&ts, clock_mono_ms() + PACE_WAIT_MS);
	pthread_cond_signal(&k->work);
	while (over_pace(k) && !k->failing && !k->stopping) {
		if (pthread_cond_timedwait(&k->done, &k->mu, &ts) == ETIMEDOUT) {
			k->pace_stalled = k->committed_seq + 1;
			return;
		}
	}
}

void eventsink_log_sink(void *ctx, const log_record *rec)
{
	eventsink *k = ctx;
	if (!k || !rec)
		return;
	metrics_event_logged(rec->level);
	ev_node *n = node_new(rec);
	if (!n) {
		pthread_mutex_lock(&k->mu);
		count_drop(k, rec);
		pthread_mutex_unlock(&k->mu);
		return;
	}
	n->enq_ms = clock_mono_ms();
	pthread_mutex_lock(&k->mu);
	if (k->stopping || over_bounds(k, n->size)) {
		count_drop(k, rec);
		pthread_mutex_unlock(&k->mu);
		free(n);
		return;
	}
	bool was_due = batch_due(k);
	n->seq = ++k->next_seq;
	if (k->tail)
		k->tail->next = n;
	else
		k->head = n;
	k->tail = n;
	k->queued++;
	k->queued_bytes += n->size;
	if (k->queued_bytes + k->inflight_bytes > k->peak_bytes)
		k->peak_bytes = k->queued_bytes + k->inflight_bytes;
	/* Wake the writer when it must start its interval clock or write now. */
	if (k->queued == 1 || (!was_due && batch_due(k)))
		pthread_cond_signal(&k->work);
	if (thread_paced)
		pace(k);
	pthread_mutex_unlock(&k->mu);
}

/* ---- direct reports on stdout ---- */

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		buf += w;
		len -= (size_t)w;
	}
}

/* Render one event as a JSON line; with rec non-NULL also fill a event_record
 * whose strings point into buf and ts. Returns the length, 0 if too long. */
static size_t render_report(char *buf, size_t cap, char *ts, size_t tscap, log_level level,
                            const char *event, const log_field *fields, size_t nfields,
                            event_record *ev)
{
	int64_t now = clock_wall_usec();
	size_t len = log_render_json(buf, cap - 1, now, level, "store", event, fields, nfields);
	if (len >= cap - 1)
		return 0;
	log_format_timestamp(ts, tscap, now);
	*ev = (event_record){.unix_time = (double)now / 1e6,
	                     .timestamp = ts,
	                     .level = log_level_name(level),
	                     .logger = "store",
	                     .event = event,
	                     .json = buf};
	return len;
}

static void emit_line(char *buf, size_t len)
{
	buf[len] = '\n';
	write_all(STDOUT_FILENO, buf, len + 1);
	buf[len] = '\0';
}

static const char *error_type_of(int code)
{
	switch (code) {
	case STORE_FULL:
		return "disk_full";
	case STORE_READONLY:
		return "read_only";
	case STORE_BUSY:
		return "busy";
	default:
		return "error";
	}
}

static void report_failure(eventsink *k, int code, size_t queued)
{
	char buf[2048], ts[40];
	event_record ev;
	log_field f[] = {LOG_ERR(store_errmsg(k->st), error_type_of(code)),
	                 LOG_INT("queued", queued)};
	size_t len = render_report(buf, sizeof buf, ts, sizeof ts, LOG_ERROR, "store_write_failed",
	                           f, 3, &ev);
	if (len > 0)
		emit_line(buf, len);
}

/* Returns 0 if the events_dropped event was stored. */
static int report_dropped(eventsink *k, uint64_t count, bool store_it)
{
	char buf[512], ts[40];
	event_record ev;
	log_field f[] = {
	        LOG_INT("count", count),
	        LOG_STR("reason", "event queue full (events or bytes) or store unavailable")};
	size_t len = render_report(buf, sizeof buf, ts, sizeof ts, LOG_WARNING, "events_dropped", f,
	                           2, &ev);
	if (len == 0)
		return 0;
	emit_line(buf, len);
	if (!store_it || events_insert(k->st, &ev, 1) != STORE_OK)
		return -1;
	return 0;
}

/* ---- the writer thread ---- */

/* With mu held: is there a batch to write right now? If not, *wait_until
 * is when to look again (-1: only when signalled). */
static bool writer_ready(eventsink *k, const ev_batch *b, int64_t now, int64_t *wait_until)
{
	*wait_until = -1;
	if (b->n > 0) {          /* retrying a failed batch: a new flush cuts the backoff */
		if (k->stopping) /* the stop's flush made the last attempt */
			return false;
		if (k->flush_req != k->flush_seen || now >= k->retry_at_ms)
			return true;
		*wait_until = k->retry_at_ms;
		return false;
	}
	if (k->queued == 0)
		return false;
	if (k->stopping || k->flush_upto > k->committed_seq || batch_due(k))
		return true;
	int64_t due = k->head->enq_ms + k->flush_ms;
	if (now >= due)
		return true;
	*wait_until = due;
	return false;
}

/* With mu held: wait until there is work. False when the writer should end. */
static bool writer_wait(eventsink *k, const ev_batch *b)
{
	for (;;) {
		int64_t until;
		if (writer_ready(k, b, clock_mono_ms(), &until))
			return true;
		if (k->stopping)
			return false;
		if (until < 0) {
			pthread_cond_wait(&k->work, &k->mu);
		} else {
			struct timespec ts;
			deadline_ts(&ts, until);
			pthread_cond_timedwait(&k->work, &k->mu, &ts);
		}
	}
}

/* With mu held: move up to BATCH_MAX nodes from the queue to b. */
static void take_batch(eventsink *k, ev_batch *b)
{
	ev_node *n = k->head;
	b->head = n;
	b->n = 0;
	b->bytes = 0;
	while (n && b->n < BATCH_MAX && (b->n == 0 || b->bytes + n->size <= BATCH_BYTES)) {
		b->tail = n;
		b->last_seq = n->seq;
		b->n++;
		b->bytes += n->size;
		n = n->next;
	}
	b->tail->next = NULL;
	k->head = n;
	if (!n)
		k->tail = NULL;
	k->queued -= b->n;
	k->queued_bytes -= b->bytes;
	k->inflight = b->n;
	k->inflight_bytes = b->bytes;
}

static int write_batch(eventsink *k, const ev_batch *b)
{
	size_t i = 0;
	for (ev_node *n = b->head; n; n = n->next)
		k->events[i++] = n->ev;
	return events_insert(k->st, k->events, b->n);
}

/* mu is held on entry and exit: after a spell with a large queue, give
 * the freed memory back once the queue is empty (invariant 7). */
static void trim_if_drained(eventsink *k)
{
	if (k->queued != 0 || k->inflight != 0 || k->peak_bytes < TRIM_AFTER_BYTES)
		return;
	k->peak_bytes = 0;
	pthread_mutex_unlock(&k->mu);
	malloc_trim(0);
	pthread_mutex_lock(&k->mu);
}

/* mu is held on entry and exit. committed_seq moves only after the
 * events_dropped report, so a flush that returns sees it stored. */
static void on_success(eventsink *k, ev_batch *b)
{
	ev_node *nodes = b->head;
	uint64_t last = b->last_seq;
	size_t n = b->n;
	uint64_t dropped = k->queued == 0 ? k->dropped_unreported : 0;
	k->dropped_unreported -= dropped;
	*b = (ev_batch){0};
	pthread_mutex_unlock(&k->mu);
	atomic_fetch_add(&k->stored, n);
	nodes_free(nodes);
	bool unreported = dropped > 0 && report_dropped(k, dropped, true) != 0;
	pthread_mutex_lock(&k->mu);
	if (unreported)
		k->dropped_unreported += dropped;
	k->committed_seq = last;
	k->inflight = 0;
	k->inflight_bytes = 0;
	k->backoff_ms = 0;
	if (k->failing) {
		k->failing = false;
		metrics_store_writer_state(true, NULL);
	}
	pthread_cond_broadcast(&k->done);
	trim_if_drained(k);
}

/* mu is held on entry and exit. */
static void on_failure(eventsink *k, int code)
{
	int64_t now = clock_mono_ms();
	k->fail_gen++;
	k->failing = true;
	metrics_store_write_error();
	metrics_store_writer_state(false, store_errmsg(k->st));
	k->backoff_ms = k->backoff_ms ? k->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (k->backoff_ms > BACKOFF_MAX_MS)
		k->backoff_ms = BACKOFF_MAX_MS;
	k->retry_at_ms = now + k->backoff_ms;
	pthread_cond_broadcast(&k->done);
	if (k->reported_once && now - k->last_report_ms < FAILURE_REPORT_MS)
		return;
	k->reported_once = true;
	k->last_report_ms = now;
	size_t queued = k->queued + k->inflight;
	pthread_mutex_unlock(&k->mu);
	report_failure(k, code, queued);
	pthread_mutex_lock(&k->mu);
}

/* mu is held on entry and exit: drop whatever is left when the writer ends
 * after a failure during stop. */
static void drop_leftovers(eventsink *k, ev_batch *b)
{
	uint64_t count = b->n + k->queued + k->dropped_unreported;
	nodes_free(b->head);
	nodes_free(k->head);
	atomic_fetch_add(&k->dropped, b->n + k->queued);
	metrics_events_dropped(b->n + k->queued);
	*b = (ev_batch){0};
	k->head = k->tail = NULL;
	k->queued = k->inflight = 0;
	k->queued_bytes = k->inflight_bytes = 0;
	k->dropped_unreported = 0;
	if (count == 0)
		return;
	pthread_mutex_unlock(&k->mu);
	report_dropped(k, count, false);
	pthread_mutex_lock(&k->mu);
}

static void *writer_main(void *arg)
{
	eventsink *k = arg;
	ev_batch b = {0};
	pthread_mutex_lock(&k->mu);
	while (writer_wait(k, &b)) {
		if (b.n == 0)
			take_batch(k, &b);
		k->flush_seen = k->flush_req;
		pthread_mutex_unlock(&k->mu);
		int code = write_batch(k, &b);
		pthread_mutex_lock(&k->mu);
		if (code == STORE_OK) {
			on_success(k, &b);
			continue;
		}
		on_failure(k, code);
		if (k->stopping)
			break;
	}
	drop_leftovers(k, &b);
	pthread_cond_broadcast(&k->done);
	pthread_mutex_unlock(&k->mu);
	return NULL;
}

/* ---- life cycle ---- */

static int init_sync(eventsink *k)
{
	pthread_condattr_t attr;
	if (pthread_condattr_init(&attr) != 0)
		return -1;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	int rc = pthread_mutex_init(&k->mu, NULL);
	if (rc == 0 && (rc = pthread_cond_init(&k->work, &attr)) != 0)
		pthread_mutex_destroy(&k->mu);
	if (rc == 0 && (rc = pthread_cond_init(&k->done, &attr)) != 0) {
		pthread_cond_destroy(&k->work);
		pthread_mutex_destroy(&k->mu);
	}
	pthread_condattr_destroy(&attr);
	return rc == 0 ? 0 : -1;
}

int eventsink_start(eventsink **out, const char *db_path, const eventsink_options *opts, char *err,
                    size_t errlen)
{
	*out = NULL;
	eventsink *k = calloc(1, sizeof *k);
	if (!k || !(k->events = calloc(BATCH_MAX, sizeof *k->events)))
		goto oom;
	k->max_queued = opts && opts->max_queued ? opts->max_queued : EVENTSINK_DEFAULT_MAX_QUEUED;
	k->max_bytes = opts && opts->max_bytes ? opts->max_bytes : EVENTSINK_DEFAULT_MAX_BYTES;
	k->flush_ms =
	        opts && opts->flush_interval_ms > 0 ? opts->flush_interval_ms : DEFAULT_FLUSH_MS;
	if (store_open(&k->st, db_path, err, errlen) != STORE_OK)
		goto fail;
	if (init_sync(k) != 0)
		goto oom;
	metrics_store_writer_state(true, NULL);
	if (pthread_create(&k->thread, NULL, writer_main, k) != 0) {
		pthread_cond_destroy(&k->done);
		pthread_cond_destroy(&k->work);
		pthread_mutex_destroy(&k->mu);
		snprintf(err, errlen, "cannot start the event writer thread");
		goto fail;
	}
	*out = k;
	return 0;
oom:
	snprintf(err, errlen, "event writer: out of memory");
fail:
	if (k) {
		store_close(k->st);
		free(k->events);
	}
	free(k);
	return -1;
}

int eventsink_flush(eventsink *k, int64_t timeout_ms)
{
	struct timespec ts;
	int ret = 0;
	deadline_ts(&ts, clock_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0));
	pthread_mutex_lock(&k->mu);
	uint64_t target = k->next_seq;
	uint64_t gen = k->fail_gen;
	if (k->committed_seq < target) {
		if (k->flush_upto < target)
			k->flush_upto = target;
		k->flush_req++;
		pthread_cond_signal(&k->work);
	}
	while (k->committed_seq < target) {
		if (k->fail_gen != gen ||
		    pthread_cond_timedwait(&k->done, &k->mu, &ts) == ETIMEDOUT) {
			ret = k->committed_seq >= target ? 0 : -1;
			break;
		}
	}
	pthread_mutex_unlock(&k->mu);
	return ret;
}

void eventsink_stop(eventsink *k)
{
	if (!k)
		return;
	eventsink_flush(k, STOP_FLUSH_MS);
	pthread_mutex_lock(&k->mu);
	k->stopping = true;
	pthread_cond_signal(&k->work);
	pthread_cond_broadcast(&k->done); /* paced threads stop waiting */
	pthread_mutex_unlock(&k->mu);
	pthread_join(k->thread, NULL);
	store_close(k->st);
	pthread_cond_destroy(&k->done);
	pthread_cond_destroy(&k->work);
	pthread_mutex_destroy(&k->mu);
	free(k->events);
	free(k);
}

uint64_t eventsink_dropped(const eventsink *k)
{
	return k ? atomic_load(&k->dropped) : 0;
}

uint64_t eventsink_stored(const eventsink *k)
{
	return k ? atomic_load(&k->stored) : 0;
}

size_t eventsink_queued_bytes(eventsink *k)
{
	if (!k)
		return 0;
	pthread_mutex_lock(&k->mu);
	size_t n = k->queued_bytes + k->inflight_bytes;
	pthread_mutex_unlock(&k->mu);
	return n;
}
