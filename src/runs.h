/*
 * runs — the task_runs table (one row per run, SPEC §5) and task_state (the
 * scheduler's last fire time per task), through the store's statements.
 *
 * Threads: any, each with its own store connection.
 * Errors: 0 or a negative store_error with the message in store_errmsg();
 * nothing is logged here.
 * Ownership: strings in a run_row are borrowed for the duration of the
 * callback; a callback returns 0 to go on, non-zero to stop (that value is
 * then returned).
 */
#ifndef FK_RUNS_H
#define FK_RUNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef enum {
	RUN_RUNNING,
	RUN_SUCCESS,
	RUN_FAILED,
	RUN_TIMEOUT,
	RUN_SKIPPED,
	RUN_INTERRUPTED,
} run_status;

const char *run_status_name(run_status st);
int run_status_parse(const char *name, run_status *out);

typedef struct {
	int64_t id;
	const char *task;
	const char *trigger; /* schedule, manual, catchup, start, cli, retry */
	int attempt;         /* 1, or 2.. for the retries of a run (trigger retry) */
	run_status status;
	const char *correlation_id;
	double started_at;   /* unix seconds */
	double finished_at;  /* 0 while running */
	double duration_sec; /* -1 while running */
	int exit_code;       /* -1 if none */
	const char *error;   /* NULL if none */
	const char *error_type;
	const char *items_json; /* {"repos_synced": 12, ...} or NULL */
} run_row;

typedef int (*run_row_cb)(void *ctx, const run_row *row);

int runs_start(store *s, const char *task, const char *trigger, const char *correlation_id,
               double started_at, int64_t *out_run_id);
/* runs_start of a given attempt: a retry (attempt > 1) shares the
 * correlation_id of the run it retries. */
int runs_start_attempt(store *s, const char *task, const char *trigger, const char *correlation_id,
                       int attempt, double started_at, int64_t *out_run_id);
/* STORE_NOTFOUND if there is no run run_id. */
int runs_finish(store *s, int64_t run_id, run_status status, double finished_at,
                double duration_sec, int exit_code, const char *error, const char *error_type,
                const char *items_json);
/* A run that never started (overlap skip): one finished row. */
int runs_skipped(store *s, const char *task, const char *trigger, const char *correlation_id,
                 double at, const char *reason, int64_t *out_run_id);
/* Runs left running by a crash become interrupted; *count gets how many. */
int runs_mark_interrupted(store *s, double now, int *count);

/* STORE_NOTFOUND if there is no run run_id. */
int runs_get(store *s, int64_t run_id, run_row_cb cb, void *ctx);
/* Newest first; task NULL for all; limit <= 0 for no limit. */
int runs_list(store *s, const char *task, int limit, run_row_cb cb, void *ctx);
/* The newest run of each task that has one, by task name. */
int runs_last_per_task(store *s, run_row_cb cb, void *ctx);
/* Newest first, each filter optional (NULL, has_status false, before_id 0:
 * any): the HTTP API's listing and its paging (before_id: runs older than
 * that id). limit <= 0: no limit. */
typedef struct {
	const char *task;
	bool has_status;
	run_status status;
	const char *correlation_id;
	int64_t before_id;
	int limit;
} runs_filter;
int runs_query(store *s, const runs_filter *f, run_row_cb cb, void *ctx);

/* The length of the task's current failure streak, at most limit. A run
 * and its retries (the rows sharing a correlation_id) count as one, judged
 * by the newest of them with a verdict (success, failed, timeout): those
 * runs, newest first, are counted while they failed. Skipped and
 * interrupted rows neither count nor break a streak. */
int runs_failure_streak(store *s, const char *task, int limit, int *out);

/* Delete at most max_rows of the finished runs that finished before cutoff
 * (unix seconds), oldest first, in one statement; *deleted gets how many
 * (fewer than max_rows: none is left). See events_prune. */
int runs_prune(store *s, double cutoff, size_t max_rows, int64_t *deleted);

/* The last fire time the scheduler acted on (unix seconds), 0 if none. */
int runs_last_fire_get(store *s, const char *task, double *out);
int runs_last_fire_set(store *s, const char *task, double fire_time);

#endif
