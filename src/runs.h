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
/* STORE_NOTFOUND if there is no run run_id, or if a failover took it
 * over (interrupted_by set: its status stays interrupted). */
int runs_finish(store *s, int64_t run_id, run_status status, double finished_at,
                double duration_sec, int exit_code, const char *error, const char *error_type,
                const char *items_json);
/* A run that never started (overlap skip): one finished row. */
int runs_skipped(store *s, const char *task, const char *trigger, const char *correlation_id,
                 double at, const char *reason, int64_t *out_run_id);
/* Runs left running by a crash become interrupted; *count gets how many.
 * On PostgreSQL (several daemons share the table) only this process's
 * instance's rows (runs_set_instance), none if it has no instance. */
int runs_mark_interrupted(store *s, double now, int *count);

/* The instance name ([cluster] instance) this process writes into the rows
 * it inserts (task_runs.instance); set once by the daemon before any store
 * is opened. NULL (the default, CLI processes): rows carry no instance. */
void runs_set_instance(const char *instance);

/* A fenced run row (cluster.h): inserted only while cluster_leader still
 * holds (term, instance), and at most once per (task, scheduled_for,
 * attempt) when scheduled_for > 0 (a scheduled fire's nominal time; 0: a
 * manual run, no key). *out_run_id gets 0 when the row was not inserted:
 * the fence fell or the fire was already taken; STORE_OK then too. */
typedef struct {
	const char *instance;
	int64_t term;
	double scheduled_for; /* unix s, 0 none */
} runs_fence;
int runs_start_fenced(store *s, const runs_fence *f, const char *task, const char *trigger,
                      const char *correlation_id, int attempt, double started_at,
                      int64_t *out_run_id);
/* PostgreSQL, in the new leader's takeover transaction: running rows of
 * other instances that are not alive become interrupted with
 * interrupted_by = 'failover'; *count gets how many. Alive: a
 * cluster_members heartbeat since live_since from the start that wrote the
 * row, and either a heartbeat since fresh_since or a session holding the
 * instance's advisory lock (lock_class, hashtext(instance)): a killed
 * daemon's lock goes with its connection. */
int runs_interrupt_failover(store *s, const char *me, double live_since, double fresh_since,
                            int lock_class, double now, int *count);
/* The tasks with a running row of an instance other than me (one call of
 * cb each, task borrowed for the call). */
int runs_running_elsewhere(store *s, const char *me, void (*cb)(void *ctx, const char *task),
                           void *ctx);
/* interrupted_by of run run_id into out ("" when none); STORE_NOTFOUND if
 * there is no such run. */
int runs_interrupted_by(store *s, int64_t run_id, char *out, size_t cap);

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
