/* Unit tests: the store's retention (batched prunes, retention.c), the
 * space given back by incremental vacuum, the v5 -> v6 migration, and the
 * query plans of the queries that must stay fast on a big store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "events.h"
#include "health_history.h"
#include "incidents.h"
#include "maintenance.h"
#include "outbox.h"
#include "retention.h"
#include "runs.h"
#include "servers.h"
#include "store.h"
#include "temp_store.h"

static int setup(void **state)
{
	temp_store *t = calloc(1, sizeof *t);
	if (!t || temp_store_open(t, "retention") != 0)
		return -1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	temp_store *t = *state;
	int rc = temp_store_remove(t);
	free(t);
	return rc;
}

static void exec_ok(store *st, const char *sql)
{
	if (store_exec(st, sql) != STORE_OK)
		fail_msg("%s: %s", sql, store_errmsg(st));
}

static int64_t query_int(store *st, const char *sql)
{
	store_stmt *q = NULL;
	int64_t v = -12345;
	assert_int_equal(store_prepare(st, sql, &q), STORE_OK);
	if (store_step(q) == STORE_ROW)
		v = store_col_int64(q, 0);
	store_stmt_done(q);
	return v;
}

/* n events at unix times from t0 on (one per 0.001 s), lines of ~pad bytes. */
static void add_events(store *st, int n, double t0, const char *cid, size_t pad)
{
	char *line = malloc(pad + 16);
	memset(line, 'x', pad);
	line[pad] = '\0';
	event_record *ev = calloc((size_t)n, sizeof *ev);
	for (int i = 0; i < n; i++)
		ev[i] = (event_record){.unix_time = t0 + i * 0.001,
		                       .timestamp = "2025-01-01T00:00:00.000000+00:00",
		                       .level = "info",
		                       .logger = "test",
		                       .event = "thing_happened",
		                       .correlation_id = cid,
		                       .task = "t",
		                       .json = line};
	assert_int_equal(events_insert(st, ev, (size_t)n), STORE_OK);
	free(ev);
	free(line);
}

static int run_job(store *st, const retention_cutoffs *cut, retention_job *job)
{
	int rc, steps = 0;
	retention_begin(job, cut);
	while ((rc = retention_step(job, st)) > 0)
		assert_true(++steps < 100000);
	return rc;
}

/* ---- batched prune ---- */

static void test_batched_prune_old_and_new(void **state)
{
	temp_store *t = *state;
	store *st = t->st;
	const int old_n = 2 * RETENTION_BATCH_ROWS + 500;
	add_events(st, old_n, 100, "old", 10); /* 100 .. 104.5 */
	add_events(st, 300, 1000, "new", 10);  /* after the cutoff */
	exec_ok(st, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 4100)"
	            " INSERT INTO task_runs (task, trigger, status, correlation_id, started_at,"
	            " finished_at, duration_sec) SELECT 't', 'schedule', 'success', 'c' || i, 10,"
	            " 10 + i * 0.01, 1 FROM c");
	exec_ok(st, "INSERT INTO task_runs (task, trigger, status, correlation_id, started_at)"
	            " VALUES ('t', 'schedule', 'running', 'still', 5)");
	exec_ok(st, "INSERT INTO task_runs (task, trigger, status, correlation_id, started_at,"
	            " finished_at) VALUES ('t', 'schedule', 'failed', 'fresh', 900, 1001)");
	exec_ok(st, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2500)"
	            " INSERT INTO notifications (created_at, kind, level, title)"
	            " SELECT 50 + i * 0.01, 'k', 'info', 'n' FROM c");
	exec_ok(st, "INSERT INTO notification_deliveries (notifier, notification_id, state,"
	            " updated_at) SELECT 'wh', id, 'sent', 60 FROM notifications");

	retention_cutoffs cut = {.events_before = 500, .raw_before = 500, .history_before = 500};
	retention_job job;
	assert_int_equal(run_job(st, &cut, &job), 0);
	assert_true(retention_done(&job));
	assert_int_equal(job.count[RETENTION_EVENTS], old_n);
	assert_int_equal(job.count[RETENTION_RUNS], 4100);
	assert_int_equal(job.count[RETENTION_NOTIFICATIONS], 2499); /* the newest stays */
	/* events: 3 batches (2000, 2000, 500); runs 3; notifications 2; and
	 * the others one each at least */
	assert_true(job.batches >= 3 + 3 + 2 + 3);
	assert_true(job.longest_batch_ms > 0);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events WHERE unix_time < 500"), 0);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events WHERE correlation_id = 'new'"),
	                 300);
	assert_int_equal(query_int(st, "SELECT count(*) FROM task_runs"), 2);
	assert_int_equal(query_int(st, "SELECT count(*) FROM task_runs WHERE correlation_id IN"
	                               " ('still', 'fresh')"),
	                 2);
	assert_int_equal(query_int(st, "SELECT count(*) FROM notifications"), 1);
	assert_int_equal(query_int(st, "SELECT count(*) FROM notification_deliveries"), 1);

	/* again: nothing left, one batch per kind */
	assert_int_equal(run_job(st, &cut, &job), 0);
	for (int k = 0; k < RETENTION_VACUUM; k++)
		assert_int_equal(job.count[k], 0);
	assert_int_equal(job.batches, RETENTION_DONE);
}

/* One batch deletes at most its allowance, the oldest first. */
static void test_prune_batch_limit(void **state)
{
	temp_store *t = *state;
	store *st = t->st;
	int64_t n = -1;
	add_events(st, 50, 100, "a", 4);
	assert_int_equal(events_prune(st, 1000, 20, &n), STORE_OK);
	assert_int_equal(n, 20);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events WHERE unix_time < 100.0195"),
	                 0);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events"), 30);
	assert_int_equal(events_prune(st, 100.040, 20, &n), STORE_OK);
	assert_int_equal(n, 20);
	assert_int_equal(events_prune(st, 100.040, 20, &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events"), 10);
}

/* ---- space ---- */

static long file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void test_new_store_is_incremental_and_shrinks(void **state)
{
	temp_store *t = *state;
	store *st = t->st;
	store_space sp;
	assert_int_equal(store_space_get(st, &sp), STORE_OK);
	assert_int_equal(sp.auto_vacuum, STORE_AUTO_VACUUM_INCREMENTAL);

	add_events(st, 6000, 100, "old", 1000); /* about 6 MB */
	add_events(st, 10, 1000, "new", 10);
	assert_int_equal(store_checkpoint(st), STORE_OK);
	long before = file_size(t->path);
	store_space full;
	assert_int_equal(store_space_get(st, &full), STORE_OK);
	assert_true(before > 5000000);

	retention_cutoffs cut = {.events_before = 500, .raw_before = 500, .history_before = 500};
	retention_job job;
	assert_int_equal(run_job(st, &cut, &job), 0);
	assert_int_equal(job.count[RETENTION_EVENTS], 6000);
	assert_true(job.count[RETENTION_VACUUM] > 1000);
	assert_int_equal(store_space_get(st, &sp), STORE_OK);
	assert_int_equal(sp.freelist_count, 0);
	assert_true(sp.page_count < full.page_count / 10);
	assert_int_equal(store_checkpoint(st), STORE_OK);
	long after = file_size(t->path);
	assert_true(after < before / 10);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events"), 10);
}

/* ---- migration ---- */

static void test_migration_from_v5_keeps_rows(void **state)
{
	temp_store *t = *state;
	char path[160], err[256];
	snprintf(path, sizeof path, "%s/v5.db", t->dir);
	/* a store made before v6: WAL first, so auto_vacuum stays NONE */
	sqlite3 *raw = NULL;
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(raw);
	store *st = NULL;
	assert_int_equal(store_open_at_version(&st, path, 5, err, sizeof err), STORE_OK);
	assert_int_equal(store_schema_version(st), 5);
	exec_ok(st, "INSERT INTO servers (handle, created_at, updated_at) VALUES ('web-1', 1, 1)");
	add_events(st, 40, 100, "c", 10);
	/* a v5 row (runs_start writes v7's columns) */
	exec_ok(st, "INSERT INTO task_runs (task, trigger, status, correlation_id, started_at)"
	            " VALUES ('t', 'cli', 'running', 'c', 10)");
	store_close(st);

	assert_int_equal(store_open(&st, path, err, sizeof err), STORE_OK);
	assert_int_equal(store_schema_version(st), STORE_SCHEMA_VERSION);
	assert_int_equal(query_int(st, "SELECT count(*) FROM servers WHERE handle = 'web-1'"), 1);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events"), 40);
	assert_int_equal(query_int(st, "SELECT count(*) FROM task_runs"), 1);
	assert_int_equal(query_int(st, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND"
	                               " name IN ('task_runs_finished', 'notifications_created',"
	                               " 'notification_deliveries_notification',"
	                               " 'health_history_hour')"),
	                 4);
	store_space sp;
	assert_int_equal(store_space_get(st, &sp), STORE_OK);
	assert_int_equal(sp.auto_vacuum, STORE_AUTO_VACUUM_NONE);
	/* store vacuum converts it, rows kept */
	assert_int_equal(store_vacuum(st), STORE_OK);
	assert_int_equal(store_space_get(st, &sp), STORE_OK);
	assert_int_equal(sp.auto_vacuum, STORE_AUTO_VACUUM_INCREMENTAL);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events"), 40);
	store_close(st);
}

/* ---- query plans ---- */

typedef struct {
	char bad[4096]; /* plan lines that walk a big table without an index */
	char all[16384];
	int lines;
} plans;

/* The tables that grow with the fleet and the days (aliases too). servers
 * (one row per server) is listed whole by `servers` and the scrape, so it
 * may be scanned. */
static const char *const big_tables[] = {
        "events",    "task_runs", "notifications", "notification_deliveries", "health_history",
        "incidents", "i"};

static bool is_big(const char *name)
{
	for (size_t i = 0; i < sizeof big_tables / sizeof big_tables[0]; i++)
		if (strcmp(name, big_tables[i]) == 0)
			return true;
	return false;
}

/* runs_list: newest first by id, stopping at the limit, so `runs --limit
 * 50` reads 50 rows (`runs --task` has its own statement on
 * task_runs(task, id); see docs/state-store.md, Indexes). */
static bool allowed_scan(const char *sql, const char *line)
{
	return strcmp(line, "SCAN task_runs") == 0 && strstr(sql, "ORDER BY id DESC LIMIT");
}

/* A bare SCAN (every row, no index) of a big table, or a sort of one. */
static bool bad_line(const char *sql, const char *line)
{
	char name[64];
	if (strstr(line, "USE TEMP B-TREE")) { /* a sort: bad when a big table is in it */
		for (size_t i = 0; i + 1 < sizeof big_tables / sizeof big_tables[0]; i++)
			if (strstr(sql, big_tables[i]))
				return true;
		return false;
	}
	if (sscanf(line, "SCAN %63s", name) != 1 || !is_big(name))
		return false;
	return !strstr(line, " USING ") && !allowed_scan(sql, line);
}

static void note_plan(void *ctx, const char *sql, const char *line)
{
	plans *p = ctx;
	size_t used = strlen(p->all);
	p->lines++;
	snprintf(p->all + used, sizeof p->all - used, "%s\n", line);
	if (getenv("FK_TEST_PLANS"))
		fprintf(stderr, "%.70s\n    %s\n", sql, line);
	if (bad_line(sql, line)) {
		used = strlen(p->bad);
		snprintf(p->bad + used, sizeof p->bad - used, "%.60s: %s\n", sql, line);
	}
}

static int any_run(void *ctx, const run_row *r)
{
	(void)ctx, (void)r;
	return 0;
}
static int any_line(void *ctx, int64_t id, const char *json)
{
	(void)ctx, (void)id, (void)json;
	return 0;
}
static int any_view(void *ctx, const server_view *v)
{
	(void)ctx, (void)v;
	return 0;
}
static int any_incident(void *ctx, const incident_row *r)
{
	(void)ctx, (void)r;
	return 0;
}
static int any_count(void *ctx, const char *status, int64_t n)
{
	(void)ctx, (void)status, (void)n;
	return 0;
}
static int any_health(void *ctx, const char *handle, int failures, double rt)
{
	(void)ctx, (void)handle, (void)failures, (void)rt;
	return 0;
}

static void test_key_queries_use_indexes(void **state)
{
	temp_store *t = *state;
	store *st = t->st;
	static plans p;
	int64_t n = 0;
	store_set_plan_cb(st, note_plan, &p);
	/* trace and --follow */
	assert_int_equal(events_trace(st, "cid", 0, any_line, NULL), STORE_OK);
	/* runs --limit 50, runs --task */
	assert_int_equal(runs_list(st, NULL, 50, any_run, NULL), STORE_OK);
	assert_int_equal(runs_list(st, "github_sync", 50, any_run, NULL), STORE_OK);
	/* servers, incidents --open, the scrape */
	assert_int_equal(servers_view_each(st, NULL, 1000, any_view, NULL), STORE_OK);
	assert_int_equal(incidents_open_count(st, &n), STORE_OK);
	assert_int_equal(servers_count_by_status(st, any_count, NULL), STORE_OK);
	assert_int_equal(servers_health_each(st, any_health, NULL), STORE_OK);
	assert_int_equal(maintenance_count_active(st, &n), STORE_OK);
	/* the prunes */
	assert_int_equal(events_prune(st, 1, 10, &n), STORE_OK);
	assert_int_equal(runs_prune(st, 1, 10, &n), STORE_OK);
	assert_int_equal(outbox_prune(st, 1, 10, &n), STORE_OK);
	size_t done = 0;
	assert_int_equal(health_history_downsample(st, 1e9, 10, &done), STORE_OK);
	assert_int_equal(health_history_prune(st, 1, 10, &done), STORE_OK);
	assert_int_equal(incidents_list(st, true, any_incident, NULL), STORE_OK);
	store_set_plan_cb(st, NULL, NULL);
	assert_true(p.lines >= 10);
	if (p.bad[0])
		fail_msg("full scans of big tables:\n%s", p.bad);
	/* and the index each one needs */
	const char *expected[] = {
	        "SEARCH events USING INDEX events_correlation (correlation_id=? AND id>?)",
	        "SEARCH incidents USING INDEX incidents_server (server_id=?)",
	        "SEARCH maintenance_windows USING INDEX maintenance_windows_server",
	        "SEARCH incidents USING COVERING INDEX incidents_status (status=?)",
	        "SCAN i USING INDEX incidents_detected",
	        "SEARCH events USING COVERING INDEX events_time (unix_time<?)",
	        "SEARCH task_runs USING INDEX task_runs_finished (finished_at<?)",
	        "SEARCH notifications USING COVERING INDEX notifications_created (created_at<?)",
	        "SEARCH notification_deliveries USING COVERING INDEX"
	        " notification_deliveries_notification (notification_id=?)",
	        "SEARCH health_history USING INDEX health_history_raw (hour<?)",
	        "SEARCH health_history USING COVERING INDEX health_history_hour (hour<?)",
	};
	for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
		if (!strstr(p.all, expected[i]))
			fail_msg("no plan line '%s' in:\n%s", expected[i], p.all);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_batched_prune_old_and_new),
	        T(test_prune_batch_limit),
	        T(test_new_store_is_incremental_and_shrinks),
	        T(test_migration_from_v5_keeps_rows),
	        T(test_key_queries_use_indexes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
