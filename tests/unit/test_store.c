/* Unit tests: the SQLite state store (schema, migrations, runs, events,
 * scheduler state, incidents, error mapping). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store.h"
#include "events.h"
#include "runs.h"

typedef struct {
	char dir[64];
	char path[128];
	store *st;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/fk_store_XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char cmd[128];
	store_close(f->st);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static store *open_ok(fixture *f)
{
	char err[256] = "";
	int rc = store_open(&f->st, f->path, err, sizeof err);
	if (rc != STORE_OK)
		fail_msg("store_open: %d %s", rc, err);
	return f->st;
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

/* ---- schema and migrations ---- */

static void test_fresh_schema(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	const char *tables[] = {"servers",   "projects", "services",   "incidents",
	                        "task_runs", "events",   "task_state", "http_cache"};
	char sql[160];

	assert_int_equal(store_schema_version(st), STORE_SCHEMA_VERSION);
	assert_int_equal(query_int(st, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
		snprintf(sql, sizeof sql,
		         "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='%s'",
		         tables[i]);
		assert_int_equal(query_int(st, sql), 1);
	}
	assert_int_equal(query_int(st, "SELECT count(*) FROM sqlite_master WHERE type='index'"
	                               " AND name IN ('events_correlation','events_time',"
	                               "'task_runs_task','task_runs_status')"),
	                 4);
	assert_int_equal(query_int(st, "PRAGMA foreign_keys"), 1);
	assert_int_equal(query_int(st, "PRAGMA synchronous"), 1); /* NORMAL */
	store_stmt *q = NULL;
	assert_int_equal(store_prepare(st, "PRAGMA journal_mode", &q), STORE_OK);
	assert_int_equal(store_step(q), STORE_ROW);
	assert_string_equal(store_col_text(q, 0), "wal");
	store_stmt_done(q);

	/* Opening again is a no-op migration. */
	store *again = NULL;
	char err[256];
	assert_int_equal(store_open(&again, f->path, err, sizeof err), STORE_OK);
	assert_int_equal(store_schema_version(again), STORE_SCHEMA_VERSION);
	store_close(again);
}

static void test_migration_from_v1(void **state)
{
	fixture *f = *state;
	char err[256] = "";
	store *old = NULL;

	assert_int_equal(store_open_at_version(&old, f->path, 1, err, sizeof err), STORE_OK);
	assert_int_equal(store_schema_version(old), 1);
	assert_int_equal(
	        query_int(old, "SELECT count(*) FROM sqlite_master WHERE name='task_state'"), 0);
	/* A v1 row, written as v1 did (runs_start writes attempt, a v5 column). */
	exec_ok(old, "INSERT INTO task_runs (task, trigger, status, correlation_id, started_at)"
	             " VALUES ('github_sync', 'schedule', 'running', 'cid-1', 100.5)");
	exec_ok(old, "INSERT INTO servers (handle, ip, status, created_at, updated_at)"
	             " VALUES ('web-1', '10.0.0.1', 'ready', 1, 1)");
	/* v2 API on a v1 database fails cleanly. */
	double last = -1;
	assert_int_equal(runs_last_fire_get(old, "x", &last), STORE_ERROR);
	assert_non_null(strstr(store_errmsg(old), "task_state"));
	store_close(old);

	store *st = open_ok(f);
	assert_int_equal(store_schema_version(st), STORE_SCHEMA_VERSION);
	assert_int_equal(query_int(st, "SELECT count(*) FROM task_runs WHERE id = 1"
	                               " AND task = 'github_sync' AND status = 'running'"),
	                 1);
	assert_int_equal(query_int(st, "SELECT port FROM servers WHERE handle = 'web-1'"), 22);
	assert_int_equal(runs_last_fire_set(st, "github_sync", 200.25), STORE_OK);
	assert_int_equal(runs_last_fire_get(st, "github_sync", &last), STORE_OK);
	assert_true(last == 200.25);
}

static void test_bad_version_argument(void **state)
{
	fixture *f = *state;
	char err[256] = "";
	store *st = (store *)f; /* must be reset to NULL */
	assert_int_equal(
	        store_open_at_version(&st, f->path, STORE_SCHEMA_VERSION + 1, err, sizeof err),
	        STORE_ERROR);
	assert_null(st);
	assert_non_null(strstr(err, f->path));
}

static void test_too_new(void **state)
{
	fixture *f = *state;
	char err[256] = "";
	store *st = open_ok(f);
	exec_ok(st, "PRAGMA user_version = 99");
	store_close(st);
	f->st = NULL;

	assert_int_equal(store_open(&st, f->path, err, sizeof err), STORE_TOONEW);
	assert_null(st);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "99"));
	char version[16];
	snprintf(version, sizeof version, "(%d)", STORE_SCHEMA_VERSION);
	assert_non_null(strstr(err, version));

	err[0] = '\0';
	assert_int_equal(store_open_readonly(&st, f->path, err, sizeof err), STORE_TOONEW);
	assert_null(st);
	assert_non_null(strstr(err, "99"));

	/* The newer database was not touched. */
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	sqlite3_stmt *q = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 99);
	sqlite3_finalize(q);
	sqlite3_close(db);
}

static void *open_concurrently(void *arg)
{
	const char *path = arg;
	store *st = NULL;
	char err[256];
	intptr_t rc = store_open(&st, path, err, sizeof err);
	if (rc == STORE_OK && store_schema_version(st) != STORE_SCHEMA_VERSION)
		rc = 1000;
	store_close(st);
	return (void *)rc;
}

static void test_concurrent_create(void **state)
{
	fixture *f = *state;
	pthread_t th[6];
	for (int i = 0; i < 6; i++)
		assert_int_equal(pthread_create(&th[i], NULL, open_concurrently, f->path), 0);
	for (int i = 0; i < 6; i++) {
		void *ret = NULL;
		pthread_join(th[i], &ret);
		assert_int_equal((intptr_t)ret, STORE_OK);
	}
	store *st = open_ok(f);
	assert_int_equal(query_int(st, "SELECT count(*) FROM sqlite_master WHERE type='table'"
	                               " AND name='servers'"),
	                 1);
}

static void test_check_constraints(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	exec_ok(st, "INSERT INTO servers (handle, created_at, updated_at) VALUES ('a', 1, 1)");
	assert_int_equal(query_int(st, "SELECT count(*) FROM servers WHERE status='discovered'"),
	                 1);
	assert_int_equal(store_exec(st,
	                            "INSERT INTO servers (handle, status, created_at, updated_at)"
	                            " VALUES ('b', 'broken', 1, 1)"),
	                 STORE_ERROR);
	assert_int_equal(store_exec(st, "UPDATE servers SET status = 'up'"), STORE_ERROR);
	assert_int_equal(store_exec(st,
	                            "INSERT INTO task_runs (task, trigger, status, correlation_id,"
	                            " started_at) VALUES ('t', 'cli', 'done', 'c', 1)"),
	                 STORE_ERROR);
	assert_int_equal(store_exec(st, "INSERT INTO incidents (type, detected_at)"
	                                " VALUES ('meteor', 1)"),
	                 STORE_ERROR);
	assert_int_equal(store_exec(st, "INSERT INTO incidents (type, status, detected_at)"
	                                " VALUES ('service_down', 'open', 1)"),
	                 STORE_ERROR);
	assert_int_equal(store_exec(st,
	                            "INSERT INTO projects (name, status, created_at, updated_at)"
	                            " VALUES ('p', 'gone', 1, 1)"),
	                 STORE_ERROR);
	/* Foreign keys are on: a service needs its server; deleting cascades. */
	assert_int_equal(store_exec(st,
	                            "INSERT INTO services (server_id, name, created_at, updated_at)"
	                            " VALUES (999, 'api', 1, 1)"),
	                 STORE_ERROR);
	exec_ok(st, "INSERT INTO services (server_id, name, created_at, updated_at)"
	            " VALUES (1, 'api', 1, 1)");
	exec_ok(st, "DELETE FROM servers WHERE id = 1");
	assert_int_equal(query_int(st, "SELECT count(*) FROM services"), 0);
}

/* ---- runs ---- */

typedef struct {
	int n;
	int64_t ids[16];
	run_status status[16];
	char task[16][32];
	char error[16][64];
	double finished_at[16];
	double duration[16];
	int exit_code[16];
	bool error_type_null[16];
	bool items_null[16];
	int attempt[16];
	int stop_after;
} run_list;

static int collect_run(void *ctx, const run_row *r)
{
	run_list *l = ctx;
	int i = l->n++;
	l->ids[i] = r->id;
	l->status[i] = r->status;
	snprintf(l->task[i], sizeof l->task[i], "%s", r->task);
	snprintf(l->error[i], sizeof l->error[i], "%s", r->error ? r->error : "(null)");
	l->finished_at[i] = r->finished_at;
	l->duration[i] = r->duration_sec;
	l->exit_code[i] = r->exit_code;
	l->error_type_null[i] = r->error_type == NULL;
	l->items_null[i] = r->items_json == NULL;
	l->attempt[i] = r->attempt;
	return l->stop_after && l->n >= l->stop_after ? 7 : 0;
}

static void test_run_lifecycle(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	int64_t a = 0, b = 0;
	run_list l = {0};

	assert_int_equal(runs_start(st, "github_sync", "schedule", "cid-a", 1000, &a), STORE_OK);
	assert_int_equal(runs_start(st, "backup", "manual", "cid-b", 1001, &b), STORE_OK);
	assert_true(b > a);

	assert_int_equal(runs_get(st, a, collect_run, &l), STORE_OK);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.status[0], RUN_RUNNING);
	assert_true(l.finished_at[0] == 0);
	assert_true(l.duration[0] == -1);
	assert_int_equal(l.exit_code[0], -1);
	assert_string_equal(l.error[0], "(null)");

	assert_int_equal(runs_finish(st, a, RUN_SUCCESS, 1002.5, 2.5, -1, NULL, NULL,
	                             "{\"repos_synced\": 12}"),
	                 STORE_OK);
	assert_int_equal(
	        runs_finish(st, b, RUN_FAILED, 1003, 2, 3, "exit status 3", "exit_code", NULL),
	        STORE_OK);
	assert_int_equal(runs_finish(st, 9999, RUN_FAILED, 1, 1, 1, NULL, NULL, NULL),
	                 STORE_NOTFOUND);
	assert_int_equal(query_int(st, "SELECT count(*) FROM task_runs WHERE id = 1 AND"
	                               " items = '{\"repos_synced\": 12}' AND exit_code IS NULL"),
	                 1);

	memset(&l, 0, sizeof l);
	assert_int_equal(runs_list(st, NULL, 0, collect_run, &l), STORE_OK);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.ids[0], b); /* newest first */
	assert_int_equal(l.status[0], RUN_FAILED);
	assert_int_equal(l.exit_code[0], 3);
	assert_string_equal(l.error[0], "exit status 3");
	assert_true(l.items_null[0]);
	assert_int_equal(l.ids[1], a);
	assert_int_equal(l.status[1], RUN_SUCCESS);
	assert_true(l.finished_at[1] == 1002.5);
	assert_true(l.duration[1] == 2.5);
	assert_false(l.items_null[1]);

	memset(&l, 0, sizeof l);
	assert_int_equal(runs_list(st, "github_sync", 10, collect_run, &l), STORE_OK);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.ids[0], a);

	memset(&l, 0, sizeof l);
	assert_int_equal(runs_get(st, 4242, collect_run, &l), STORE_NOTFOUND);
	assert_int_equal(l.n, 0);
}

static void test_runs_limit_and_stop(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	int64_t id;
	run_list l = {0};
	for (int i = 0; i < 5; i++)
		assert_int_equal(runs_start(st, "t", "cli", "c", i, &id), STORE_OK);
	assert_int_equal(runs_list(st, NULL, 3, collect_run, &l), STORE_OK);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.ids[0], 5);
	assert_int_equal(l.ids[2], 3);

	/* A callback's non-zero return stops and is passed on; the cached
	 * statement is reset, so the next call starts over. */
	memset(&l, 0, sizeof l);
	l.stop_after = 2;
	assert_int_equal(runs_list(st, NULL, 0, collect_run, &l), 7);
	assert_int_equal(l.n, 2);
	memset(&l, 0, sizeof l);
	assert_int_equal(runs_list(st, NULL, 0, collect_run, &l), STORE_OK);
	assert_int_equal(l.n, 5);
}

static void test_last_per_task(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	int64_t id;
	run_list l = {0};
	assert_int_equal(runs_start(st, "beta", "cli", "c1", 1, &id), STORE_OK);
	assert_int_equal(runs_start(st, "alpha", "cli", "c2", 2, &id), STORE_OK);
	assert_int_equal(runs_start(st, "beta", "cli", "c3", 3, &id), STORE_OK);
	assert_int_equal(runs_skipped(st, "alpha", "schedule", "c4", 4, "still_running", &id),
	                 STORE_OK);
	assert_int_equal(runs_last_per_task(st, collect_run, &l), STORE_OK);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.task[0], "alpha");
	assert_int_equal(l.ids[0], 4);
	assert_int_equal(l.status[0], RUN_SKIPPED);
	assert_string_equal(l.task[1], "beta");
	assert_int_equal(l.ids[1], 3);
}

static void test_skipped_row(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	int64_t id = 0;
	run_list l = {0};
	assert_int_equal(runs_skipped(st, "backup", "schedule", "cid-s", 500, "still_running", &id),
	                 STORE_OK);
	assert_int_equal(id, 1);
	assert_int_equal(runs_get(st, id, collect_run, &l), STORE_OK);
	assert_int_equal(l.status[0], RUN_SKIPPED);
	assert_string_equal(l.error[0], "still_running");
	assert_true(l.error_type_null[0]);
	assert_true(l.finished_at[0] == 500);
	assert_true(l.duration[0] == 0);
	assert_int_equal(l.exit_code[0], -1);
}

static void test_mark_interrupted(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	int64_t r1, r2, r3;
	int count = -1;
	run_list l = {0};

	assert_int_equal(runs_start(st, "a", "cli", "c1", 100, &r1), STORE_OK);
	assert_int_equal(runs_start(st, "b", "cli", "c2", 110, &r2), STORE_OK);
	assert_int_equal(runs_start(st, "c", "cli", "c3", 120, &r3), STORE_OK);
	assert_int_equal(runs_finish(st, r2, RUN_SUCCESS, 111, 1, 0, NULL, NULL, NULL), STORE_OK);

	assert_int_equal(runs_mark_interrupted(st, 150, &count), STORE_OK);
	assert_int_equal(count, 2);
	assert_int_equal(runs_list(st, NULL, 0, collect_run, &l), STORE_OK);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.status[0], RUN_INTERRUPTED); /* r3 */
	assert_true(l.finished_at[0] == 150);
	assert_true(l.duration[0] == 30);
	assert_string_equal(l.error[0], "daemon stopped before the run finished");
	assert_int_equal(l.status[1], RUN_SUCCESS); /* r2 untouched */
	assert_string_equal(l.error[1], "(null)");
	assert_int_equal(l.status[2], RUN_INTERRUPTED); /* r1 */
	assert_true(l.duration[2] == 50);
	assert_int_equal(query_int(st, "SELECT count(*) FROM task_runs WHERE"
	                               " error_type = 'interrupted'"),
	                 2);

	assert_int_equal(runs_mark_interrupted(st, 160, &count), STORE_OK);
	assert_int_equal(count, 0);
}

/* A retry row: its attempt and the first run's correlation_id. */
static void test_run_attempts(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	int64_t first, retry;
	run_list l = {0};

	assert_int_equal(runs_start(st, "t", "start", "cid-r", 10, &first), STORE_OK);
	assert_int_equal(runs_start_attempt(st, "t", "retry", "cid-r", 2, 20, &retry), STORE_OK);
	assert_int_equal(runs_list(st, "t", 0, collect_run, &l), STORE_OK);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.ids[0], retry);
	assert_int_equal(l.attempt[0], 2);
	assert_int_equal(l.attempt[1], 1);
	assert_int_equal(query_int(st, "SELECT count(DISTINCT correlation_id) FROM task_runs"), 1);
}

static void finished(store *st, const char *task, const char *cid, int attempt, run_status status,
                     double at)
{
	int64_t id;
	assert_int_equal(runs_start_attempt(st, task, attempt > 1 ? "retry" : "schedule", cid,
	                                    attempt, at, &id),
	                 STORE_OK);
	assert_int_equal(runs_finish(st, id, status, at + 1, 1, -1, NULL, NULL, NULL), STORE_OK);
}

static int streak(store *st, const char *task, int limit)
{
	int n = -1;
	assert_int_equal(runs_failure_streak(st, task, limit, &n), STORE_OK);
	return n;
}

/* A run and its retries are one entry of a streak, judged by its last
 * attempt. */
static void test_failure_streak_groups_retries(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	int64_t id;

	assert_int_equal(streak(st, "t", 5), 0);
	finished(st, "t", "a", 1, RUN_FAILED, 10);
	finished(st, "t", "a", 2, RUN_FAILED, 20);
	finished(st, "t", "a", 3, RUN_TIMEOUT, 30);
	assert_int_equal(streak(st, "t", 5), 1); /* three failed rows, one run */
	finished(st, "t", "b", 1, RUN_FAILED, 40);
	finished(st, "t", "b", 2, RUN_SUCCESS, 50);
	assert_int_equal(streak(st, "t", 5), 0); /* its retry succeeded */
	finished(st, "t", "c", 1, RUN_FAILED, 60);
	assert_int_equal(streak(st, "t", 5), 1);
	/* skipped and interrupted rows neither count nor break it */
	assert_int_equal(runs_skipped(st, "t", "schedule", "s", 65, "retry_pending", &id),
	                 STORE_OK);
	finished(st, "t", "c", 2, RUN_INTERRUPTED, 70);
	assert_int_equal(streak(st, "t", 5), 1);
	finished(st, "t", "d", 1, RUN_FAILED, 80);
	finished(st, "t", "d", 2, RUN_FAILED, 90);
	assert_int_equal(streak(st, "t", 5), 2);
	assert_int_equal(streak(st, "t", 1), 1); /* at most limit */
	assert_int_equal(streak(st, "other", 5), 0);
}

static void test_run_status_names(void **state)
{
	(void)state;
	const char *names[] = {"running", "success", "failed", "timeout", "skipped", "interrupted"};
	for (int i = 0; i < 6; i++) {
		run_status st = RUN_RUNNING;
		assert_string_equal(run_status_name((run_status)i), names[i]);
		assert_int_equal(run_status_parse(names[i], &st), 0);
		assert_int_equal(st, i);
	}
	run_status st = RUN_SUCCESS;
	assert_int_equal(run_status_parse("Running", &st), -1);
	assert_int_equal(run_status_parse("", &st), -1);
	assert_int_equal(run_status_parse(NULL, &st), -1);
	assert_int_equal(st, RUN_SUCCESS);
}

/* ---- events ---- */

static event_record make_event(double t, const char *cid, const char *json)
{
	return (event_record){.unix_time = t,
	                      .timestamp = "2025-01-01T00:00:00.000000+00:00",
	                      .level = "info",
	                      .logger = "test",
	                      .event = "thing_happened",
	                      .correlation_id = cid,
	                      .task = cid ? "t" : NULL,
	                      .run_id = cid ? 7 : 0,
	                      .json = json};
}

typedef struct {
	int n;
	int64_t ids[16];
	char lines[16][32];
} event_list;

static int collect_event(void *ctx, int64_t id, const char *json)
{
	event_list *l = ctx;
	l->ids[l->n] = id;
	snprintf(l->lines[l->n], sizeof l->lines[0], "%s", json);
	l->n++;
	return 0;
}

static void test_events_trace(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	event_record ev[] = {
	        make_event(1, "cid-x", "{\"n\":1}"), make_event(2, "cid-y", "{\"n\":2}"),
	        make_event(3, "cid-x", "{\"n\":3}"), make_event(4, NULL, "{\"n\":4}"),
	        make_event(5, "cid-x", "{\"n\":5}"),
	};
	event_list l = {0};

	assert_int_equal(events_insert(st, ev, 5), STORE_OK);
	assert_int_equal(events_insert(st, ev, 0), STORE_OK);
	assert_int_equal(events_trace(st, "cid-x", 0, collect_event, &l), STORE_OK);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.ids[0], 1);
	assert_int_equal(l.ids[1], 3);
	assert_int_equal(l.ids[2], 5);
	assert_string_equal(l.lines[0], "{\"n\":1}");
	assert_string_equal(l.lines[2], "{\"n\":5}");

	memset(&l, 0, sizeof l);
	assert_int_equal(events_trace(st, "cid-x", 3, collect_event, &l), STORE_OK);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.ids[0], 5);

	memset(&l, 0, sizeof l);
	assert_int_equal(events_trace(st, "nope", 0, collect_event, &l), STORE_OK);
	assert_int_equal(l.n, 0);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events WHERE run_id IS NULL"), 1);
	assert_int_equal(query_int(st, "SELECT run_id FROM events WHERE id = 1"), 7);
}

static void test_events_insert_is_atomic(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	event_record ev[3] = {make_event(1, "c", "{}"), make_event(2, "c", "{}"),
	                      make_event(3, "c", "{}")};
	ev[2].event = NULL; /* NOT NULL constraint */
	assert_int_equal(events_insert(st, ev, 3), STORE_ERROR);
	assert_non_null(strstr(store_errmsg(st), "insert events"));
	assert_non_null(strstr(store_errmsg(st), "NOT NULL"));
	assert_int_equal(query_int(st, "SELECT count(*) FROM events"), 0);
	/* The connection is usable afterwards (no transaction left open). */
	assert_int_equal(events_insert(st, ev, 2), STORE_OK);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events"), 2);
}

/* 70 events: two statements of 32 rows and 6 of one, in order. */
static void test_events_insert_in_batches(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	enum { N = 70 };
	event_record ev[N];
	char lines[N][16];
	for (int i = 0; i < N; i++) {
		snprintf(lines[i], sizeof lines[i], "{\"n\":%d}", i);
		ev[i] = make_event(i + 1, i % 2 ? "odd" : "even", lines[i]);
	}
	assert_int_equal(events_insert(st, ev, N), STORE_OK);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events"), N);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events WHERE correlation_id = 'odd'"),
	                 N / 2);
	/* ids follow the order given, across the batches */
	assert_int_equal(query_int(st, "SELECT count(*) FROM events WHERE line ="
	                               " '{\"n\":' || (id - 1) || '}'"),
	                 N);
	ev[40].event = NULL; /* in the second batch: nothing of the call stays */
	assert_int_equal(events_insert(st, ev, N), STORE_ERROR);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events"), N);
}

/* Both tables, one batch each (large enough for these rows). */
static int prune(store *st, double cutoff, int64_t *ne, int64_t *nr)
{
	int code = events_prune(st, cutoff, 100, ne);
	if (code == STORE_OK)
		code = runs_prune(st, cutoff, 100, nr);
	return code;
}

static void test_prune(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	event_record ev[] = {make_event(100, "c", "{}"), make_event(199.9, "c", "{}"),
	                     make_event(200, "c", "{}"), make_event(300, "c", "{}")};
	int64_t old_done, old_running, new_done, old_skipped, ne = -1, nr = -1;

	assert_int_equal(events_insert(st, ev, 4), STORE_OK);
	assert_int_equal(runs_start(st, "t", "cli", "c", 10, &old_done), STORE_OK);
	assert_int_equal(runs_finish(st, old_done, RUN_SUCCESS, 20, 10, 0, NULL, NULL, NULL),
	                 STORE_OK);
	assert_int_equal(runs_start(st, "t", "cli", "c", 10, &old_running), STORE_OK);
	assert_int_equal(runs_start(st, "t", "cli", "c", 150, &new_done), STORE_OK);
	assert_int_equal(runs_finish(st, new_done, RUN_FAILED, 250, 100, 1, "x", "y", NULL),
	                 STORE_OK);
	assert_int_equal(runs_skipped(st, "t", "cli", "c", 50, "still_running", &old_skipped),
	                 STORE_OK);

	assert_int_equal(prune(st, 200, &ne, &nr), STORE_OK);
	assert_int_equal(ne, 2);
	assert_int_equal(nr, 2);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events WHERE unix_time >= 200"), 2);
	assert_int_equal(query_int(st, "SELECT count(*) FROM events"), 2);
	assert_int_equal(query_int(st, "SELECT count(*) FROM task_runs"), 2);
	char sql[128];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM task_runs WHERE id IN (%lld, %lld)",
	         (long long)old_running, (long long)new_done);
	assert_int_equal(query_int(st, sql), 2);

	assert_int_equal(prune(st, 200, &ne, &nr), STORE_OK);
	assert_int_equal(ne, 0);
	assert_int_equal(nr, 0);
}

/* ---- scheduler state ---- */

static void test_last_fire(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	double v = -1;
	assert_int_equal(runs_last_fire_get(st, "github_sync", &v), STORE_OK);
	assert_true(v == 0);
	assert_int_equal(runs_last_fire_set(st, "github_sync", 1735167345.5), STORE_OK);
	assert_int_equal(runs_last_fire_set(st, "backup", 10), STORE_OK);
	assert_int_equal(runs_last_fire_set(st, "github_sync", 1735167405.25), STORE_OK);
	assert_int_equal(runs_last_fire_get(st, "github_sync", &v), STORE_OK);
	assert_true(v == 1735167405.25);
	assert_int_equal(runs_last_fire_get(st, "backup", &v), STORE_OK);
	assert_true(v == 10);
	assert_int_equal(query_int(st, "SELECT count(*) FROM task_state"), 2);
	assert_int_equal(query_int(st, "SELECT count(*) FROM task_state WHERE updated_at > 1e9"),
	                 2);
}

/* ---- opening: errors ---- */

static void test_readonly_missing(void **state)
{
	fixture *f = *state;
	char err[256] = "";
	store *st = NULL;
	assert_int_equal(store_open_readonly(&st, f->path, err, sizeof err), STORE_NOTFOUND);
	assert_null(st);
	assert_non_null(strstr(err, f->path));
	assert_int_equal(access(f->path, F_OK), -1); /* not created */
}

static void test_readonly_reads(void **state)
{
	fixture *f = *state;
	char err[256] = "";
	int64_t id;
	store *rw = open_ok(f);
	assert_int_equal(runs_start(rw, "t", "cli", "c", 1, &id), STORE_OK);

	store *ro = NULL;
	run_list l = {0};
	assert_int_equal(store_open_readonly(&ro, f->path, err, sizeof err), STORE_OK);
	assert_int_equal(runs_list(ro, NULL, 0, collect_run, &l), STORE_OK);
	assert_int_equal(l.n, 1);
	assert_int_equal(runs_start(ro, "t", "cli", "c", 2, &id), STORE_READONLY);
	assert_non_null(strstr(store_errmsg(ro), "insert task_runs"));
	/* A row written after the read-only open is visible (WAL). */
	assert_int_equal(runs_start(rw, "t", "cli", "c", 3, &id), STORE_OK);
	memset(&l, 0, sizeof l);
	assert_int_equal(runs_list(ro, NULL, 0, collect_run, &l), STORE_OK);
	assert_int_equal(l.n, 2);
	store_close(ro);
}

static void test_not_a_database(void **state)
{
	fixture *f = *state;
	char err[256] = "";
	char junk[4096];
	store *st = NULL;
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (char)(i * 7 + 13);
	FILE *fp = fopen(f->path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(junk, 1, sizeof junk, fp), sizeof junk);
	fclose(fp);

	assert_int_equal(store_open(&st, f->path, err, sizeof err), STORE_CORRUPT);
	assert_null(st);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "not a database"));

	err[0] = '\0';
	assert_int_equal(store_open_readonly(&st, f->path, err, sizeof err), STORE_CORRUPT);
	assert_null(st);
	assert_non_null(strstr(err, f->path));
}

static void test_missing_directory(void **state)
{
	fixture *f = *state;
	char err[256] = "";
	char path[192];
	store *st = NULL;
	snprintf(path, sizeof path, "%s/no/such/dir/state.db", f->dir);
	int rc = store_open(&st, path, err, sizeof err);
	assert_int_equal(rc, STORE_NOTFOUND);
	assert_null(st);
	assert_non_null(strstr(err, path));
}

static void test_busy(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	sqlite3 *other = NULL;
	int64_t id;
	assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	store_set_busy_timeout(st, 1); /* do not wait 5 s in a unit test */
	assert_int_equal(runs_start(st, "t", "cli", "c", 1, &id), STORE_BUSY);
	event_record ev = make_event(1, "c", "{}");
	assert_int_equal(events_insert(st, &ev, 1), STORE_BUSY);
	assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(events_insert(st, &ev, 1), STORE_OK);
	assert_int_equal(runs_start(st, "t", "cli", "c", 1, &id), STORE_OK);
}

/* ---- statements and transactions (the API every module uses) ---- */

static int64_t count_kv(store *st)
{
	static const char sql[] = "SELECT count(*) FROM kv";
	store_stmt *q;
	int64_t n = -1;
	assert_int_equal(store_prepare(st, sql, &q), STORE_OK);
	if (store_step(q) == STORE_ROW)
		n = store_col_int64(q, 0);
	store_stmt_done(q);
	return n;
}

static int insert_kv(store *st, const char *k, const char *v)
{
	static const char sql[] = "INSERT INTO kv (k, v) VALUES (?1, ?2)";
	store_stmt *q;
	int code = store_prepare(st, sql, &q);
	if (code != STORE_OK)
		return code;
	store_bind_text(q, 1, k);
	store_bind_text(q, 2, v);
	code = store_step_done(q);
	store_stmt_done(q);
	return code;
}

static void test_statements(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	assert_int_equal(store_exec(st, "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT, n INTEGER,"
	                                " d REAL)"),
	                 STORE_OK);
	assert_int_equal(insert_kv(st, "a", "x"), STORE_OK);
	assert_int_equal(store_changes(st), 1);
	assert_int_equal(insert_kv(st, "b", NULL), STORE_OK);
	/* a constraint failure is mapped, with the statement named */
	assert_int_equal(insert_kv(st, "a", "y"), STORE_ERROR);
	assert_non_null(strstr(store_errmsg(st), "insert kv"));
	assert_non_null(strstr(store_errmsg(st), "UNIQUE"));

	static const char sel[] = "SELECT k, v, n, d FROM kv ORDER BY k";
	store_stmt *q;
	assert_int_equal(store_prepare(st, sel, &q), STORE_OK);
	assert_int_equal(store_step(q), STORE_ROW);
	char *k = store_col_dup(q, 0);
	assert_string_equal(k, "a");
	free(k);
	assert_false(store_col_null(q, 1));
	assert_int_equal(store_col_int64(q, 2), 0);
	assert_true(store_col_double(q, 3, -1) == -1);
	assert_int_equal(store_step(q), STORE_ROW);
	assert_true(store_col_null(q, 1));
	assert_null(store_col_text(q, 1));
	assert_null(store_col_dup(q, 1));
	assert_int_equal(store_step(q), STORE_DONE);
	store_stmt_done(q);

	/* the same text prepared again is the cached statement */
	store_stmt *again;
	assert_int_equal(store_prepare(st, sel, &again), STORE_OK);
	assert_ptr_equal(again, q);
	store_stmt_done(again);
	store_stmt_done(NULL);

	/* a buffer reused for other text is not mistaken for the cached one */
	char buf[64];
	snprintf(buf, sizeof buf, "SELECT 1");
	assert_int_equal(store_prepare(st, buf, &q), STORE_OK);
	assert_int_equal(store_step(q), STORE_ROW);
	assert_int_equal(store_col_int(q, 0), 1);
	store_stmt_done(q);
	snprintf(buf, sizeof buf, "SELECT 2");
	assert_int_equal(store_prepare(st, buf, &q), STORE_OK);
	assert_int_equal(store_step(q), STORE_ROW);
	assert_int_equal(store_col_int(q, 0), 2);
	store_stmt_done(q);

	/* bad SQL, two statements, and a bind out of range are errors, not crashes */
	assert_int_equal(store_prepare(st, "SELEC nothing", &q), STORE_ERROR);
	assert_null(q);
	assert_int_equal(store_exec(st, "SELECT 1; SELECT 2"), STORE_ERROR);
	assert_non_null(strstr(store_errmsg(st), "more than one statement"));
	assert_int_equal(store_prepare(st, "SELECT ?1", &q), STORE_OK);
	store_bind_int64(q, 5, 1);
	assert_int_equal(store_step(q), STORE_ERROR);
	store_stmt_done(q);
	assert_int_equal(store_prepare(st, "SELECT ?1", &q), STORE_OK);
	store_bind_int64(q, 1, 7);
	assert_int_equal(store_step(q), STORE_ROW); /* the failed bind was cleared */
	assert_int_equal(store_col_int(q, 0), 7);
	store_stmt_done(q);
}

static int tx_body(store *st, void *arg)
{
	int code = insert_kv(st, "in-tx", "1");
	return code != STORE_OK ? code : *(int *)arg;
}

static void test_transactions(void **state)
{
	fixture *f = *state;
	store *st = open_ok(f);
	assert_int_equal(store_exec(st, "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)"), STORE_OK);

	/* commit and rollback */
	assert_int_equal(store_tx_begin(st), STORE_OK);
	assert_int_equal(insert_kv(st, "a", "1"), STORE_OK);
	assert_int_equal(store_tx_commit(st), STORE_OK);
	assert_int_equal(store_tx_begin(st), STORE_OK);
	assert_int_equal(insert_kv(st, "b", "1"), STORE_OK);
	store_tx_rollback(st);
	assert_int_equal(count_kv(st), 1);
	store_tx_rollback(st); /* outside a transaction: nothing happens */
	assert_int_equal(store_tx_commit(st), STORE_ERROR);

	/* nested: an inner pair only counts */
	assert_int_equal(store_tx_begin(st), STORE_OK);
	assert_int_equal(store_tx_begin(st), STORE_OK);
	assert_int_equal(insert_kv(st, "c", "1"), STORE_OK);
	assert_int_equal(store_tx_commit(st), STORE_OK);
	assert_int_equal(insert_kv(st, "d", "1"), STORE_OK);
	assert_int_equal(store_tx_commit(st), STORE_OK);
	assert_int_equal(count_kv(st), 3);

	/* nested: an inner rollback dooms the outer commit */
	assert_int_equal(store_tx_begin(st), STORE_OK);
	assert_int_equal(insert_kv(st, "e", "1"), STORE_OK);
	assert_int_equal(store_tx_begin(st), STORE_OK);
	store_tx_rollback(st);
	assert_int_equal(store_tx_commit(st), STORE_ERROR);
	assert_int_equal(count_kv(st), 3);

	/* store_tx: committed on 0, rolled back and passed on otherwise */
	int ok = 0, no = 42;
	assert_int_equal(store_tx(st, tx_body, &no), 42);
	assert_int_equal(count_kv(st), 3);
	assert_int_equal(store_tx(st, tx_body, &ok), STORE_OK);
	assert_int_equal(count_kv(st), 4);

	/* the write probe: fine alone, busy while another connection writes */
	assert_int_equal(store_write_probe(st), STORE_OK);
	store *other = NULL;
	char err[256];
	assert_int_equal(store_open(&other, f->path, err, sizeof err), STORE_OK);
	assert_int_equal(store_tx_begin(other), STORE_OK);
	store_set_busy_timeout(st, 1);
	assert_int_equal(store_write_probe(st), STORE_BUSY);
	assert_int_equal(store_tx_begin(st), STORE_BUSY);
	store_tx_rollback(other);
	store_close(other);
	assert_int_equal(store_write_probe(st), STORE_OK);
	assert_int_equal(count_kv(st), 4);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_fresh_schema),
	        T(test_migration_from_v1),
	        T(test_bad_version_argument),
	        T(test_too_new),
	        T(test_concurrent_create),
	        T(test_check_constraints),
	        T(test_run_lifecycle),
	        T(test_runs_limit_and_stop),
	        T(test_last_per_task),
	        T(test_skipped_row),
	        T(test_mark_interrupted),
	        T(test_run_attempts),
	        T(test_failure_streak_groups_retries),
	        T(test_run_status_names),
	        T(test_events_trace),
	        T(test_events_insert_is_atomic),
	        T(test_events_insert_in_batches),
	        T(test_prune),
	        T(test_last_fire),
	        T(test_readonly_missing),
	        T(test_readonly_reads),
	        T(test_not_a_database),
	        T(test_missing_directory),
	        T(test_busy),
	        T(test_statements),
	        T(test_transactions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
