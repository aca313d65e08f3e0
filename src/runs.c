/*
 * runs — see runs.h.
 *
 * Invariant: a row inserted as running is finished by runs_finish (the
 * runner does it for every run) or, after a crash, by
 * runs_mark_interrupted at the next start of a process holding runs.lock
 * exclusively (docs/architecture.md, invariant 4).
 */
#include "runs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

/* runs_set_instance: written once before any other thread starts; the
 * copy lives as long as the process (a reload frees the configuration). */
static char *local_instance;

void runs_set_instance(const char *instance)
{
	free(local_instance);
	local_instance = instance ? strdup(instance) : NULL;
}

#define INTERRUPTED_ERROR "daemon stopped before the run finished"
#define RUN_COLS                                                                                   \
	"id, task, trigger, status, correlation_id, started_at, finished_at, duration_sec,"        \
	" exit_code, error, error_type, items, attempt"

static const char *const run_status_names[] = {
        [RUN_RUNNING] = "running", [RUN_SUCCESS] = "success", [RUN_FAILED] = "failed",
        [RUN_TIMEOUT] = "timeout", [RUN_SKIPPED] = "skipped", [RUN_INTERRUPTED] = "interrupted",
};
#define RUN_STATUS_COUNT (sizeof run_status_names / sizeof run_status_names[0])

const char *run_status_name(run_status st)
{
	if ((unsigned)st >= RUN_STATUS_COUNT)
		return "unknown";
	return run_status_names[st];
}

int run_status_parse(const char *name, run_status *out)
{
	for (size_t i = 0; name && i < RUN_STATUS_COUNT; i++) {
		if (strcmp(name, run_status_names[i]) == 0) {
			*out = (run_status)i;
			return 0;
		}
	}
	return -1;
}

int runs_start(store *s, const char *task, const char *trigger, const char *correlation_id,
               double started_at, int64_t *out_run_id)
{
	return runs_start_attempt(s, task, trigger, correlation_id, 1, started_at, out_run_id);
}

/* ?1..?6 of both run-start inserts. */
static void bind_run_start(store_stmt *st, const char *task, const char *trigger,
                           const char *correlation_id, int attempt, double started_at,
                           const char *instance)
{
	store_bind_text(st, 1, task);
	store_bind_text(st, 2, trigger);
	store_bind_text(st, 3, correlation_id);
	store_bind_double(st, 4, started_at);
	store_bind_int64(st, 5, attempt > 0 ? attempt : 1);
	store_bind_text(st, 6, instance);
}

int runs_start_attempt(store *s, const char *task, const char *trigger, const char *correlation_id,
                       int attempt, double started_at, int64_t *out_run_id)
{
	static const char sql[] = "INSERT INTO task_runs (task, trigger, status, correlation_id,"
	                          " started_at, attempt, instance)"
	                          " VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6) RETURNING id";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	bind_run_start(st, task, trigger, correlation_id, attempt, started_at, local_instance);
	return store_step_id(st, out_run_id);
}

int runs_start_fenced(store *s, const runs_fence *f, const char *task, const char *trigger,
                      const char *correlation_id, int attempt, double started_at,
                      int64_t *out_run_id)
{
	/* The leadership check and the insert are one statement inside the
	 * caller's transaction (on PostgreSQL a write transaction holds the
	 * store's advisory lock, so it cannot interleave with a takeover). */
	static const char sql[] =
	        "INSERT INTO task_runs (task, trigger, status, correlation_id, started_at, attempt,"
	        " instance, scheduled_for)"
	        " SELECT ?1, ?2, 'running', ?3, ?4, ?5, ?6, ?8"
	        " WHERE EXISTS (SELECT 1 FROM cluster_leader WHERE id = 1 AND term = ?7"
	        " AND instance = ?6)"
	        " ON CONFLICT (task, scheduled_for, attempt) WHERE scheduled_for IS NOT NULL"
	        " DO NOTHING RETURNING id";
	store_stmt *st;
	*out_run_id = 0;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	bind_run_start(st, task, trigger, correlation_id, attempt, started_at, f->instance);
	store_bind_int64(st, 7, f->term);
	if (f->scheduled_for > 0)
		store_bind_double(st, 8, f->scheduled_for);
	else
		store_bind_null(st, 8);
	int rc = store_step(st);
	if (rc == STORE_ROW)
		*out_run_id = store_col_int64(st, 0);
	store_stmt_done(st);
	return rc < 0 ? rc : STORE_OK;
}

int runs_interrupt_failover(store *s, const char *me, double live_since, double fresh_since,
                            int lock_class, double now, int *count)
{
	static const char sql[] =
	        "UPDATE task_runs SET status = 'interrupted', interrupted_by = 'failover',"
	        " finished_at = ?2, duration_sec = CASE WHEN ?2 > started_at THEN ?2 - started_at"
	        " ELSE 0 END, error = 'the daemon that ran it stopped answering (failover)',"
	        " error_type = 'interrupted'"
	        " WHERE status = 'running' AND instance IS NOT NULL AND instance <> ?1"
	        " AND NOT EXISTS (SELECT 1 FROM cluster_members m"
	        " WHERE m.instance = task_runs.instance AND m.heartbeat_at >= ?3"
	        " AND m.started_at <= task_runs.started_at AND (m.heartbeat_at >= ?4"
	        " OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory'"
	        " AND l.granted AND l.classid = ?5 AND l.objsubid = 2"
	        " AND CAST(l.objid AS BIGINT) = (CAST(hashtext(m.instance) AS BIGINT)"
	        " & 4294967295))))";
	store_stmt *st;
	*count = 0;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_text(st, 1, me);
	store_bind_double(st, 2, now);
	store_bind_double(st, 3, live_since);
	store_bind_double(st, 4, fresh_since);
	store_bind_int64(st, 5, lock_class);
	code = store_step_done(st);
	store_stmt_done(st);
	if (code == STORE_OK)
		*count = (int)store_changes(s);
	return code;
}

int runs_running_elsewhere(store *s, const char *me, void (*cb)(void *ctx, const char *task),
                           void *ctx)
{
	static const char sql[] = "SELECT DISTINCT task FROM task_runs WHERE status = 'running'"
	                          " AND instance IS NOT NULL AND instance <> ?1";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_text(st, 1, me);
	int rc;
	while ((rc = store_step(st)) == STORE_ROW)
		cb(ctx, store_col_text(st, 0));
	store_stmt_done(st);
	return rc < 0 ? rc : STORE_OK;
}

int runs_interrupted_by(store *s, int64_t run_id, char *out, size_t cap)
{
	static const char sql[] = "SELECT interrupted_by FROM task_runs WHERE id = ?1";
	store_stmt *st;
	if (cap)
		out[0] = '\0';
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_int64(st, 1, run_id);
	int rc = store_step(st);
	if (rc == STORE_ROW && store_col_text(st, 0) && cap)
		snprintf(out, cap, "%s", store_col_text(st, 0));
	store_stmt_done(st);
	if (rc == STORE_DONE)
		return store_set_error(s, STORE_NOTFOUND, "no run %lld", (long long)run_id);
	return rc < 0 ? rc : STORE_OK;
}

int runs_finish(store *s, int64_t run_id, run_status status, double finished_at,
                double duration_sec, int exit_code, const char *error, const char *error_type,
                const char *items_json)
{
	static const char sql[] =
	        "UPDATE task_runs SET status = ?2, finished_at = ?3, duration_sec = ?4,"
	        " exit_code = ?5, error = ?6, error_type = ?7, items = ?8"
	        " WHERE id = ?1 AND interrupted_by IS NULL";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_int64(st, 1, run_id);
	store_bind_text(st, 2, run_status_name(status));
	store_bind_double(st, 3, finished_at);
	store_bind_double(st, 4, duration_sec);
	if (exit_code >= 0)
		store_bind_int64(st, 5, exit_code);
	store_bind_text(st, 6, error);
	store_bind_text(st, 7, error_type);
	store_bind_text(st, 8, items_json);
	code = store_step_done(st);
	store_stmt_done(st);
	if (code == STORE_OK && store_changes(s) == 0)
		return store_set_error(s, STORE_NOTFOUND, "update task_runs: no run %lld",
		                       (long long)run_id);
	return code;
}

int runs_skipped(store *s, const char *task, const char *trigger, const char *correlation_id,
                 double at, const char *reason, int64_t *out_run_id)
{
	static const char sql[] =
	        "INSERT INTO task_runs (task, trigger, status, correlation_id, started_at,"
	        " finished_at, duration_sec, error) VALUES (?1, ?2, 'skipped', ?3, ?4, ?4, 0, ?5)"
	        " RETURNING id";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_text(st, 1, task);
	store_bind_text(st, 2, trigger);
	store_bind_text(st, 3, correlation_id);
	store_bind_double(st, 4, at);
	store_bind_text(st, 5, reason);
	return store_step_id(st, out_run_id);
}

int runs_mark_interrupted(store *s, double now, int *count)
{
	static const char sql[] =
	        "UPDATE task_runs SET status = 'interrupted', finished_at = ?1,"
	        " duration_sec = CASE WHEN ?1 > started_at THEN ?1 - started_at ELSE 0 END,"
	        " error = ?2,"
	        " error_type = 'interrupted' WHERE status = 'running'";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code == STORE_OK) {
		store_bind_double(st, 1, now);
		store_bind_text(st, 2, INTERRUPTED_ERROR);
		code = store_step_done(st);
	}
	store_stmt_done(st);
	if (count)
		*count = code == STORE_OK ? (int)store_changes(s) : 0;
	return code;
}

static void read_run_row(store_stmt *st, run_row *r)
{
	r->id = store_col_int64(st, 0);
	r->task = store_col_text(st, 1);
	r->trigger = store_col_text(st, 2);
	if (run_status_parse(store_col_text(st, 3), &r->status) != 0)
		r->status = RUN_FAILED; /* unreachable: CHECK constraint */
	r->correlation_id = store_col_text(st, 4);
	r->started_at = store_col_double(st, 5, 0);
	r->finished_at = store_col_double(st, 6, 0);
	r->duration_sec = store_col_double(st, 7, -1);
	r->exit_code = store_col_null(st, 8) ? -1 : store_col_int(st, 8);
	r->error = store_col_text(st, 9);
	r->error_type = store_col_text(st, 10);
	r->items_json = store_col_text(st, 11);
	r->attempt = store_col_int(st, 12);
}

/* Hand every row of st to cb; *rows (may be NULL) gets how many were read.
 * The statement is given back. */
static int each_run(store_stmt *st, run_row_cb cb, void *ctx, int64_t *rows)
{
	int rc, ret = 0;
	int64_t n = 0;
	while ((rc = store_step(st)) == STORE_ROW) {
		run_row r;
		read_run_row(st, &r);
		n++;
		if ((ret = cb(ctx, &r)) != 0)
			break;
	}
	store_stmt_done(st);
	if (rows)
		*rows = n;
	return rc < 0 ? rc : ret;
}

int runs_get(store *s, int64_t run_id, run_row_cb cb, void *ctx)
{
	static const char sql[] = "SELECT " RUN_COLS " FROM task_runs WHERE id = ?1";
	store_stmt *st;
	int64_t rows = 0;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_int64(st, 1, run_id);
	code = each_run(st, cb, ctx, &rows);
	if (code == STORE_OK && rows == 0)
		return store_set_error(s, STORE_NOTFOUND, "no run %lld", (long long)run_id);
	return code;
}

int runs_list(store *s, const char *task, int limit, run_row_cb cb, void *ctx)
{
	/* two statements, so that one task's listing walks the index
	 * task_runs(task, id) instead of every run kept */
	static const char all_sql[] = "SELECT " RUN_COLS " FROM task_runs"
	                              " ORDER BY id DESC LIMIT ?1";
	static const char task_sql[] = "SELECT " RUN_COLS " FROM task_runs"
	                               " WHERE task = ?1 ORDER BY id DESC LIMIT ?2";
	store_stmt *st;
	int code = store_prepare(s, task ? task_sql : all_sql, &st);
	if (code != STORE_OK)
		return code;
	if (task)
		store_bind_text(st, 1, task);
	store_bind_int64(st, task ? 2 : 1, limit > 0 ? limit : -1);
	return each_run(st, cb, ctx, NULL);
}

int runs_query(store *s, const runs_filter *f, run_row_cb cb, void *ctx)
{
	static const char sql[] = "SELECT " RUN_COLS " FROM task_runs"
	                          " WHERE (CAST(?1 AS TEXT) IS NULL OR task = ?1)"
	                          " AND (CAST(?2 AS TEXT) IS NULL OR status = ?2)"
	                          " AND (CAST(?3 AS TEXT) IS NULL OR correlation_id = ?3)"
	                          " AND (?4 = 0 OR id < ?4) ORDER BY id DESC LIMIT ?5";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	if (f->task)
		store_bind_text(st, 1, f->task);
	if (f->has_status)
		store_bind_text(st, 2, run_status_name(f->status));
	if (f->correlation_id)
		store_bind_text(st, 3, f->correlation_id);
	store_bind_int64(st, 4, f->before_id);
	store_bind_int64(st, 5, f->limit > 0 ? f->limit : -1);
	return each_run(st, cb, ctx, NULL);
}

int runs_last_per_task(store *s, run_row_cb cb, void *ctx)
{
	static const char sql[] = "SELECT " RUN_COLS " FROM task_runs WHERE id IN"
	                          " (SELECT max(id) FROM task_runs GROUP BY task) ORDER BY task";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	return code == STORE_OK ? each_run(st, cb, ctx, NULL) : code;
}

int runs_prune(store *s, double cutoff, size_t max_rows, int64_t *deleted)
{
	/* A running row has no finished_at, so the index task_runs_finished
	 * never yields one; the status test says so anyway. */
	static const char sql[] =
	        "DELETE FROM task_runs WHERE id IN (SELECT id FROM task_runs"
	        " WHERE finished_at < ?1 AND status <> 'running' ORDER BY finished_at LIMIT ?2)";
	store_stmt *st;
	*deleted = 0;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_double(st, 1, cutoff);
	store_bind_int64(st, 2, (int64_t)max_rows);
	code = store_step_done(st);
	store_stmt_done(st);
	if (code == STORE_OK)
		*deleted = store_changes(s);
	return code;
}

int runs_last_fire_get(store *s, const char *task, double *out)
{
	static const char sql[] = "SELECT last_fire_at FROM task_state WHERE task = ?1";
	store_stmt *st;
	*out = 0;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_text(st, 1, task);
	int rc = store_step(st);
	if (rc == STORE_ROW)
		*out = store_col_double(st, 0, 0);
	store_stmt_done(st);
	return rc < 0 ? rc : STORE_OK;
}

int runs_last_fire_set(store *s, const char *task, double fire_time)
{
	static const char sql[] =
	        "INSERT INTO task_state (task, last_fire_at, updated_at) VALUES (?1, ?2, ?3)"
	        " ON CONFLICT (task) DO UPDATE SET last_fire_at = excluded.last_fire_at,"
	        " updated_at = excluded.updated_at";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_text(st, 1, task);
	store_bind_double(st, 2, fire_time);
	store_bind_double(st, 3, clock_wall());
	code = store_step_done(st);
	store_stmt_done(st);
	return code;
}

int runs_failure_streak(store *s, const char *task, int limit, int *out)
{
	/* The newest row with a verdict of each correlation_id: a run, or the
	 * last of its retries (retry rows are inserted after the run's). */
	static const char sql[] =
	        "SELECT CASE WHEN status IN ('failed', 'timeout') THEN 1 ELSE 0 END"
	        " FROM task_runs WHERE id IN (SELECT max(id) FROM task_runs WHERE task = ?1"
	        " AND status IN ('success', 'failed', 'timeout') GROUP BY correlation_id)"
	        " ORDER BY finished_at DESC, id DESC LIMIT ?2";
	store_stmt *st;
	*out = 0;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_text(st, 1, task);
	store_bind_int64(st, 2, limit);
	while ((rc = store_step(st)) == STORE_ROW && store_col_int(st, 0))
		(*out)++;
	store_stmt_done(st);
	return rc < 0 ? rc : STORE_OK;
}
