/* Unit tests: the batching event writer (eventsink). A store that the writer
 * cannot write is simulated by another connection holding the write lock
 * (store_tx_begin): deterministic, and it works as root (where chmod would
 * not block writes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "clock.h"
#include "eventsink.h"
#include "metrics.h"
#include "store.h"

typedef struct {
	char dir[64];
	char path[128];
	char out_path[128];
	eventsink *sink;
	store *locker;
	int saved_stdout;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/fk_sink_XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
	snprintf(f->out_path, sizeof f->out_path, "%s/stdout.txt", f->dir);
	f->saved_stdout = -1;
	*state = f;
	return 0;
}

static void capture_stop(fixture *f)
{
	if (f->saved_stdout < 0)
		return;
	fflush(stdout);
	dup2(f->saved_stdout, STDOUT_FILENO);
	close(f->saved_stdout);
	f->saved_stdout = -1;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char cmd[128];
	capture_stop(f);
	if (f->locker) {
		store_tx_rollback(f->locker);
		store_close(f->locker);
	}
	eventsink_stop(f->sink);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* The writer's stdout lines go to a file while a test needs to read them. */
static void capture_start(fixture *f)
{
	fflush(stdout);
	f->saved_stdout = dup(STDOUT_FILENO);
	FILE *fp = fopen(f->out_path, "w");
	assert_non_null(fp);
	dup2(fileno(fp), STDOUT_FILENO);
	fclose(fp);
}

static void start_sink_bytes(fixture *f, size_t max_queued, size_t max_bytes, int64_t flush_ms)
{
	char err[256] = "";
	eventsink_options o = {
	        .max_queued = max_queued, .max_bytes = max_bytes, .flush_interval_ms = flush_ms};
	if (eventsink_start(&f->sink, f->path, &o, err, sizeof err) != 0)
		fail_msg("eventsink_start: %s", err);
}

static void start_sink(fixture *f, size_t max_queued, int64_t flush_ms)
{
	start_sink_bytes(f, max_queued, 0, flush_ms);
}

static void lock_db(fixture *f)
{
	char err[256];
	assert_int_equal(store_open(&f->locker, f->path, err, sizeof err), STORE_OK);
	assert_int_equal(store_tx_begin(f->locker), STORE_OK);
}

static void unlock_db(fixture *f)
{
	assert_int_equal(store_tx_commit(f->locker), STORE_OK);
	store_close(f->locker);
	f->locker = NULL;
}

static void emit(eventsink *sink, const char *event, const char *cid, int thread, int i)
{
	char json[160];
	int len = snprintf(
	        json, sizeof json,
	        "{\"timestamp\": \"2025-01-01T00:00:00.000000+00:00\", \"level\": \"info\","
	        " \"event\": \"%s\", \"thread\": %d, \"i\": %d}",
	        event, thread, i);
	log_record rec = {.unix_time = 1735689600.0 + i,
	                  .timestamp = "2025-01-01T00:00:00.000000+00:00",
	                  .level = LOG_INFO,
	                  .logger = "test",
	                  .event = event,
	                  .correlation_id = cid,
	                  .task = cid ? "t" : NULL,
	                  .run_id = cid ? 42 : 0,
	                  .json = json,
	                  .json_len = (size_t)len};
	eventsink_log_sink(sink, &rec);
}

/* A read-only connection of its own, as another process would read. */
static store *reader(fixture *f)
{
	char err[256];
	store *st = NULL;
	if (store_open_readonly(&st, f->path, err, sizeof err) != STORE_OK)
		fail_msg("store_open_readonly: %s", err);
	return st;
}

/* The count of a "SELECT count(*) FROM events ..." with ?1 bound to param
 * (NULL: no parameter). */
static int64_t count_rows(fixture *f, const char *sql, const char *param)
{
	store *st = reader(f);
	store_stmt *q = NULL;
	int64_t n = -1;
	assert_int_equal(store_prepare(st, sql, &q), STORE_OK);
	if (param)
		store_bind_text(q, 1, param);
	if (store_step(q) == STORE_ROW)
		n = store_col_int64(q, 0);
	store_stmt_done(q);
	store_close(st);
	return n;
}

#define ALL_EVENTS "SELECT count(*) FROM events"

/* The stored line of the first event with this name, parsed. */
static cJSON *stored_line(fixture *f, const char *event)
{
	store *st = reader(f);
	store_stmt *q = NULL;
	cJSON *j = NULL;
	assert_int_equal(
	        store_prepare(st, "SELECT line FROM events WHERE event = ?1 ORDER BY id", &q),
	        STORE_OK);
	store_bind_text(q, 1, event);
	if (store_step(q) == STORE_ROW)
		j = cJSON_Parse(store_col_text(q, 0));
	store_stmt_done(q);
	store_close(st);
	return j;
}

/* Lines written to the captured stdout whose "event" is event. */
static int captured_lines(fixture *f, const char *event, cJSON **first)
{
	char line[4096];
	int n = 0;
	FILE *fp = fopen(f->out_path, "r");
	assert_non_null(fp);
	while (fgets(line, sizeof line, fp)) {
		cJSON *j = cJSON_Parse(line);
		assert_non_null(j); /* every line is one JSON object */
		cJSON *ev = cJSON_GetObjectItem(j, "event");
		if (cJSON_IsString(ev) && strcmp(ev->valuestring, event) == 0 && n++ == 0 &&
		    first) {
			*first = j;
			continue;
		}
		cJSON_Delete(j);
	}
	fclose(fp);
	return n;
}

/* ---- many threads ---- */

#define THREADS    4
#define PER_THREAD 2500

typedef struct {
	eventsink *sink;
	int thread;
	int64_t usec;
} producer;

static void *produce(void *arg)
{
	producer *p = arg;
	char cid[16];
	snprintf(cid, sizeof cid, "thr-%d", p->thread);
	int64_t t0 = clock_wall_usec();
	for (int i = 0; i < PER_THREAD; i++)
		emit(p->sink, "tick", cid, p->thread, i);
	p->usec = clock_wall_usec() - t0;
	return NULL;
}

static void check_thread_order(fixture *f, int thread)
{
	store *st = reader(f);
	store_stmt *q = NULL;
	char cid[16];
	int expect = 0;
	snprintf(cid, sizeof cid, "thr-%d", thread);
	assert_int_equal(store_prepare(st,
	                               "SELECT line, run_id, task FROM events"
	                               " WHERE correlation_id = ?1 ORDER BY id",
	                               &q),
	                 STORE_OK);
	store_bind_text(q, 1, cid);
	while (store_step(q) == STORE_ROW) {
		cJSON *j = cJSON_Parse(store_col_text(q, 0));
		assert_non_null(j);
		assert_int_equal(cJSON_GetObjectItem(j, "thread")->valueint, thread);
		assert_int_equal(cJSON_GetObjectItem(j, "i")->valueint, expect);
		assert_int_equal(store_col_int(q, 1), 42);
		assert_string_equal(store_col_text(q, 2), "t");
		cJSON_Delete(j);
		expect++;
	}
	assert_int_equal(expect, PER_THREAD);
	store_stmt_done(q);
	store_close(st);
}

static void test_many_threads(void **state)
{
	fixture *f = *state;
	pthread_t th[THREADS];
	producer p[THREADS];
	start_sink(f, 0, 0); /* defaults: 100000 queued, 250 ms */

	int64_t t0 = clock_wall_usec();
	for (int i = 0; i < THREADS; i++) {
		p[i] = (producer){.sink = f->sink, .thread = i};
		assert_int_equal(pthread_create(&th[i], NULL, produce, &p[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(eventsink_flush(f->sink, 30000), 0);
	int64_t elapsed = clock_wall_usec() - t0;

	assert_int_equal(count_rows(f, ALL_EVENTS, NULL), THREADS * PER_THREAD);
	assert_int_equal(eventsink_stored(f->sink), THREADS * PER_THREAD);
	assert_int_equal(eventsink_dropped(f->sink), 0);
	for (int i = 0; i < THREADS; i++)
		check_thread_order(f, i);
	assert_int_equal(count_rows(f,
	                            ALL_EVENTS
	                            " WHERE level = 'info' AND logger = 'test'"
	                            " AND event = 'tick'"
	                            " AND timestamp = '2025-01-01T00:00:00.000000+00:00'",
	                            NULL),
	                 THREADS * PER_THREAD);

	int64_t emit_usec = 0;
	for (int i = 0; i < THREADS; i++)
		emit_usec += p[i].usec;
	print_message("eventsink: %d events from %d threads stored in %.1f ms: %.0f events/s;"
	              " emit %.2f us/event\n",
	              THREADS * PER_THREAD, THREADS, (double)elapsed / 1e3,
	              THREADS * PER_THREAD / ((double)elapsed / 1e6),
	              (double)emit_usec / (THREADS * PER_THREAD));
}

/* Sustained throughput with one producer: 200k events, nothing dropped. */
static void test_throughput(void **state)
{
	fixture *f = *state;
	const int n = 200000;
	start_sink_bytes(f, (size_t)n, (size_t)1 << 30, 0); /* neither bound is reached */
	int64_t t0 = clock_wall_usec();
	for (int i = 0; i < n; i++)
		emit(f->sink, "tick", "bulk", 0, i);
	int64_t emitted = clock_wall_usec() - t0;
	assert_int_equal(eventsink_flush(f->sink, 60000), 0);
	int64_t elapsed = clock_wall_usec() - t0;
	assert_int_equal(eventsink_stored(f->sink), n);
	assert_int_equal(count_rows(f, ALL_EVENTS, NULL), n);
	print_message("eventsink: %d events stored in %.1f ms: %.0f events/s;"
	              " emit %.2f us/event\n",
	              n, (double)elapsed / 1e3, n / ((double)elapsed / 1e6), (double)emitted / n);
}

/* ---- flush, stop, interval ---- */

static void test_flush_empty(void **state)
{
	fixture *f = *state;
	start_sink(f, 10, 60000);
	assert_int_equal(eventsink_flush(f->sink, 0), 0);
	assert_int_equal(eventsink_flush(f->sink, 1000), 0);
}

static void test_flush_timeout(void **state)
{
	fixture *f = *state;
	start_sink(f, 100, 60000);
	lock_db(f);
	emit(f->sink, "tick", "c", 0, 0);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(eventsink_flush(f->sink, 200), -1);
	int64_t waited = clock_mono_ms() - t0;
	assert_true(waited >= 200);
	assert_true(waited < 4000); /* the timeout, not the writer's 5 s busy wait */
	assert_int_equal(eventsink_stored(f->sink), 0);
	unlock_db(f);
	assert_int_equal(eventsink_flush(f->sink, 20000), 0);
	assert_int_equal(count_rows(f, ALL_EVENTS, NULL), 1);
}

static void test_stop_flushes(void **state)
{
	fixture *f = *state;
	start_sink(f, 1000, 60000); /* neither the interval nor half capacity */
	for (int i = 0; i < 300; i++)
		emit(f->sink, "tick", "c", 0, i);
	eventsink_stop(f->sink);
	f->sink = NULL;
	assert_int_equal(count_rows(f, ALL_EVENTS, NULL), 300);
}

static void test_interval_commits(void **state)
{
	fixture *f = *state;
	start_sink(f, 1000, 50);
	emit(f->sink, "tick", "c", 0, 0);
	/* No flush: the writer commits on its own within the interval. */
	int64_t deadline = clock_mono_ms() + 10000;
	while (eventsink_stored(f->sink) == 0 && clock_mono_ms() < deadline) {
		struct timespec ts = {0, 5000000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(eventsink_stored(f->sink), 1);
	assert_int_equal(count_rows(f, ALL_EVENTS, NULL), 1);
}

/* ---- failures ---- */

static void test_dropped_when_full(void **state)
{
	fixture *f = *state;
	start_sink(f, 4, 60000);
	lock_db(f); /* nothing can be committed: queued + in flight stays <= 4 */
	for (int i = 0; i < 10; i++)
		emit(f->sink, "tick", "c", 0, i);
	assert_int_equal(eventsink_dropped(f->sink), 6);
	capture_start(f);
	unlock_db(f);
	assert_int_equal(eventsink_flush(f->sink, 20000), 0);
	capture_stop(f);

	assert_int_equal(eventsink_stored(f->sink), 4);
	assert_int_equal(count_rows(f, ALL_EVENTS " WHERE event = ?1", "tick"), 4);
	for (int i = 0; i < 4; i++) { /* the first four were kept */
		char pattern[64];
		snprintf(pattern, sizeof pattern, "%%\"i\": %d}", i);
		assert_int_equal(count_rows(f, ALL_EVENTS " WHERE line LIKE ?1", pattern), 1);
	}
	assert_int_equal(count_rows(f,
	                            ALL_EVENTS " WHERE event = 'events_dropped'"
	                                       " AND level = 'warning' AND logger = 'store'",
	                            NULL),
	                 1);
	cJSON *j = stored_line(f, "events_dropped");
	assert_non_null(j);
	assert_int_equal(cJSON_GetObjectItem(j, "count")->valueint, 6);
	cJSON_Delete(j);
	j = NULL;
	assert_int_equal(captured_lines(f, "events_dropped", &j), 1);
	assert_int_equal(cJSON_GetObjectItem(j, "count")->valueint, 6);
	cJSON_Delete(j);
	assert_int_equal(captured_lines(f, "store_write_failed", NULL), 0);

	/* Reported once: more events go through without a second report. */
	emit(f->sink, "tick", "c", 0, 10);
	assert_int_equal(eventsink_flush(f->sink, 20000), 0);
	assert_int_equal(count_rows(f, ALL_EVENTS " WHERE event = ?1", "events_dropped"), 1);
}

static void test_failed_write_is_kept(void **state)
{
	fixture *f = *state;
	start_sink(f, 1000, 60000);
	lock_db(f);
	capture_start(f);
	for (int i = 0; i < 50; i++)
		emit(f->sink, "tick", "c", 0, i);
	/* The writer gives up after its 5 s busy timeout and says so. */
	int64_t t0 = clock_mono_ms();
	assert_int_equal(eventsink_flush(f->sink, 30000), -1);
	assert_true(clock_mono_ms() - t0 < 25000); /* a reported failure, not the timeout */
	assert_int_equal(eventsink_stored(f->sink), 0);
	unlock_db(f);
	assert_int_equal(eventsink_flush(f->sink, 30000), 0);
	capture_stop(f);

	assert_int_equal(eventsink_stored(f->sink), 50);
	assert_int_equal(eventsink_dropped(f->sink), 0);
	assert_int_equal(count_rows(f, ALL_EVENTS " WHERE event = ?1", "tick"), 50);
	assert_int_equal(count_rows(f, ALL_EVENTS " WHERE event = ?1", "events_dropped"), 0);

	cJSON *j = NULL;
	assert_int_equal(captured_lines(f, "store_write_failed", &j), 1);
	assert_string_equal(cJSON_GetObjectItem(j, "level")->valuestring, "error");
	assert_string_equal(cJSON_GetObjectItem(j, "logger")->valuestring, "store");
	assert_string_equal(cJSON_GetObjectItem(j, "error_type")->valuestring, "busy");
	assert_non_null(strstr(cJSON_GetObjectItem(j, "error")->valuestring, "locked"));
	assert_int_equal(cJSON_GetObjectItem(j, "queued")->valueint, 50);
	assert_non_null(cJSON_GetObjectItem(j, "timestamp"));
	cJSON_Delete(j);
}

static void test_stop_is_bounded(void **state)
{
	fixture *f = *state;
	start_sink(f, 1000, 60000);
	lock_db(f);
	capture_start(f);
	for (int i = 0; i < 5; i++)
		emit(f->sink, "tick", "c", 0, i);
	int64_t t0 = clock_mono_ms();
	eventsink_stop(f->sink);
	f->sink = NULL;
	int64_t waited = clock_mono_ms() - t0;
	capture_stop(f);
	assert_true(waited < 12000);
	unlock_db(f);
	assert_int_equal(count_rows(f, ALL_EVENTS, NULL), 0);
	cJSON *j = NULL;
	assert_int_equal(captured_lines(f, "store_write_failed", NULL), 1);
	assert_int_equal(captured_lines(f, "events_dropped", &j), 1);
	assert_int_equal(cJSON_GetObjectItem(j, "count")->valueint, 5);
	cJSON_Delete(j);
}

/* An event with a line of len bytes (the size of a long output line). */
static void emit_long(eventsink *sink, const char *cid, size_t len)
{
	char *json = malloc(len + 64);
	int n = snprintf(json, len + 64, "{\"event\": \"long\", \"line\": \"");
	memset(json + n, 'x', len);
	snprintf(json + n + len, 8, "\"}");
	log_record rec = {.unix_time = 1735689600.0,
	                  .timestamp = "2025-01-01T00:00:00.000000+00:00",
	                  .level = LOG_INFO,
	                  .logger = "test",
	                  .event = "long",
	                  .correlation_id = cid,
	                  .json = json,
	                  .json_len = strlen(json)};
	eventsink_log_sink(sink, &rec);
	free(json);
}

/* The queue is bounded in bytes too: with the store refusing writes, long
 * lines fill 64 KiB, then they are dropped, counted per correlation id
 * and in fleetkeeper_events_dropped_total. */
static void test_dropped_when_bytes_full(void **state)
{
	fixture *f = *state;
	metrics_reset();
	start_sink_bytes(f, 100000, 64 * 1024, 60000);
	lock_db(f);
	for (int i = 0; i < 40; i++)
		emit_long(f->sink, i % 2 ? "run-a" : "run-b", 4000);
	assert_true(eventsink_queued_bytes(f->sink) <= 64 * 1024);
	uint64_t dropped = eventsink_dropped(f->sink);
	assert_true(dropped >= 40 - 16 && dropped < 40); /* 15 fit, whatever the headers */
	assert_int_equal(eventsink_run_dropped_take("run-a") + eventsink_run_dropped_take("run-b"),
	                 dropped);
	assert_int_equal(eventsink_run_dropped_take("run-a"), 0); /* taken */
	metrics_buf b = {0};
	metrics_render(&b, NULL);
	char want[96];
	snprintf(want, sizeof want, "fleetkeeper_events_dropped_total %llu\n",
	         (unsigned long long)dropped);
	assert_non_null(strstr(b.data, want));
	metrics_buf_free(&b);
	capture_start(f);
	unlock_db(f);
	assert_int_equal(eventsink_flush(f->sink, 20000), 0);
	capture_stop(f);
	assert_int_equal(count_rows(f, ALL_EVENTS " WHERE event = ?1", "long"), 40 - (int)dropped);
	assert_int_equal(eventsink_queued_bytes(f->sink), 0);
}

static void test_run_drops_by_correlation_id(void **state)
{
	fixture *f = *state;
	start_sink(f, 2, 60000);
	lock_db(f);
	emit(f->sink, "tick", "run-x", 0, 0);
	emit(f->sink, "tick", "run-x", 0, 1);
	for (int i = 0; i < 3; i++)
		emit(f->sink, "tick", "run-x", 0, 2 + i);
	for (int i = 0; i < 2; i++)
		emit(f->sink, "tick", "run-y", 0, i);
	emit(f->sink, "tick", NULL, 0, 9); /* no correlation id: counted in total only */
	assert_int_equal(eventsink_dropped(f->sink), 6);
	assert_int_equal(eventsink_run_dropped_take("run-y"), 2);
	assert_int_equal(eventsink_run_dropped_take("run-x"), 3);
	assert_int_equal(eventsink_run_dropped_take("run-x"), 0);
	assert_int_equal(eventsink_run_dropped_take(NULL), 0);
	/* More correlation ids than slots: the oldest are forgotten, never mixed. */
	for (int i = 0; i < 100; i++) {
		char cid[32];
		snprintf(cid, sizeof cid, "many-%d", i);
		emit(f->sink, "tick", cid, 0, i);
	}
	assert_int_equal(eventsink_run_dropped_take("many-0"), 0);
	assert_int_equal(eventsink_run_dropped_take("many-99"), 1);
	capture_start(f);
	unlock_db(f);
	assert_int_equal(eventsink_flush(f->sink, 20000), 0);
	capture_stop(f);
}

/* The writer's outcome reaches metrics: failing (and the error counter)
 * while a write fails, ok again after the next successful write. */
static void test_writer_state_published(void **state)
{
	fixture *f = *state;
	char why[256] = "";
	metrics_reset();
	start_sink(f, 1000, 60000);
	assert_false(metrics_store_writer_failing(why, sizeof why));
	lock_db(f);
	capture_start(f);
	emit(f->sink, "tick", "c", 0, 0);
	assert_int_equal(eventsink_flush(f->sink, 30000), -1);
	assert_true(metrics_store_writer_failing(why, sizeof why));
	assert_non_null(strstr(why, "locked"));
	metrics_buf b = {0};
	metrics_render(&b, NULL);
	assert_non_null(strstr(b.data, "fleetkeeper_store_write_failing 1\n"));
	assert_null(strstr(b.data, "fleetkeeper_store_write_errors_total 0\n"));
	metrics_buf_free(&b);
	unlock_db(f);
	assert_int_equal(eventsink_flush(f->sink, 30000), 0);
	capture_stop(f);
	assert_false(metrics_store_writer_failing(why, sizeof why));
	metrics_render(&b, NULL);
	assert_non_null(strstr(b.data, "fleetkeeper_store_write_failing 0\n"));
	metrics_buf_free(&b);
}

typedef struct {
	eventsink *sink;
	int n;
	size_t max_bytes_seen;
	int64_t ms;
} paced_producer;

static void *produce_paced(void *arg)
{
	paced_producer *p = arg;
	int64_t t0 = clock_mono_ms();
	eventsink_thread_paced(true);
	for (int i = 0; i < p->n; i++) {
		emit_long(p->sink, "paced", 300);
		size_t held = eventsink_queued_bytes(p->sink);
		if (held > p->max_bytes_seen)
			p->max_bytes_seen = held;
	}
	eventsink_thread_paced(false);
	p->ms = clock_mono_ms() - t0;
	return NULL;
}

static paced_producer run_paced(eventsink *sink, int n)
{
	pthread_t th;
	paced_producer p = {.sink = sink, .n = n};
	assert_int_equal(pthread_create(&th, NULL, produce_paced, &p), 0);
	pthread_join(th, NULL);
	return p;
}

/* A paced thread (a run's) never runs more than about 2 MiB ahead of a
 * healthy writer: that is what a kill -9 can lose. */
static void test_paced_thread_stays_close_to_the_writer(void **state)
{
	fixture *f = *state;
	start_sink(f, 0, 0);
	paced_producer p = run_paced(f->sink, 60000); /* ~25 MB of events */
	assert_int_equal(eventsink_dropped(f->sink), 0);
	assert_true(p.max_bytes_seen <= (size_t)3 << 20);
	assert_int_equal(eventsink_flush(f->sink, 30000), 0);
	assert_int_equal(count_rows(f, ALL_EVENTS, NULL), 60000);
	print_message("eventsink: paced, at most %zu bytes held\n", p.max_bytes_seen);
}

/* ... but a store that does not take writes never holds it back for long:
 * one pacing wait of at most 1 s, then none until a commit. */
static void test_paced_thread_not_held_by_a_stuck_store(void **state)
{
	fixture *f = *state;
	start_sink(f, 0, 0);
	lock_db(f);
	capture_start(f);
	paced_producer p = run_paced(f->sink, 20000); /* ~8 MB: queued, none dropped */
	assert_true(p.ms < 3000);
	assert_int_equal(eventsink_dropped(f->sink), 0);
	unlock_db(f);
	assert_int_equal(eventsink_flush(f->sink, 30000), 0);
	capture_stop(f);
	assert_int_equal(count_rows(f, ALL_EVENTS, NULL), 20000);
}

static void test_start_fails_on_bad_path(void **state)
{
	fixture *f = *state;
	char err[256] = "";
	char path[192];
	eventsink *sink = (eventsink *)f;
	snprintf(path, sizeof path, "%s/missing/state.db", f->dir);
	assert_int_equal(eventsink_start(&sink, path, NULL, err, sizeof err), -1);
	assert_null(sink);
	assert_non_null(strstr(err, path));
	eventsink_stop(NULL);
	assert_int_equal(eventsink_dropped(NULL), 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_many_threads),
	        T(test_throughput),
	        T(test_flush_empty),
	        T(test_flush_timeout),
	        T(test_stop_flushes),
	        T(test_interval_commits),
	        T(test_dropped_when_full),
	        T(test_failed_write_is_kept),
	        T(test_stop_is_bounded),
	        T(test_start_fails_on_bad_path),
	        T(test_dropped_when_bytes_full),
	        T(test_run_drops_by_correlation_id),
	        T(test_writer_state_published),
	        T(test_paced_thread_stays_close_to_the_writer),
	        T(test_paced_thread_not_held_by_a_stuck_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
