/*
 * runner — the one path every task run goes through, whatever its type and
 * whoever asked for it (schedule, manual trigger, catch-up, start, CLI):
 *
 *   runner_prepare    correlation id (a retry's: its first attempt's) +
 *                     task_runs row with its attempt (status running; when
 *                     the store refuses it, the row is written at the end)
 *   runner_execute    bind correlation_id/task/run_id into the thread's log
 *                     context, <task>_start, the type's run(), then
 *                     <task>_complete (duration_sec + item counts) or
 *                     <task>_failed (error, error_type, duration_sec) or
 *                     <task>_skipped (reason); the task_runs row finished
 *                     with the matching status; context cleared. Events of
 *                     the run the event queue dropped are counted in the
 *                     items as events_dropped (only when > 0), so both the
 *                     row and the terminal event carry it. The run's thread
 *                     is paced by the event writer (eventsink_thread_paced)
 *                     meanwhile.
 *
 * A run is cancelled through its run_control (timeout or shutdown): the
 * eventfd becomes readable and the task's run() returns; the row then gets
 * status timeout or interrupted.
 *
 * Threads: prepare on any thread with that thread's store; execute on the
 * thread that runs the task, with that thread's store. run_control may be
 * cancelled from any thread.
 */
#ifndef FK_RUNNER_H
#define FK_RUNNER_H

#include <stdint.h>

#include "config.h"
#include "store.h"
#include "runs.h"
#include "task.h"

typedef struct {
	int cancel_fd; /* eventfd, created by run_control_init */
	int reason;    /* run_cancel_reason, atomic */
} run_control;

int run_control_init(run_control *ctl);
void run_control_destroy(run_control *ctl);
/* The first reason wins; later calls do nothing. Async-signal-safe. */
void run_control_cancel(run_control *ctl, run_cancel_reason reason);

#define RUNNER_CORRELATION_MAX 96

typedef struct {
	config *cfg;             /* one reference, owned by the request */
	const task_config *task; /* borrowed from cfg */
	char trigger[16];
	char correlation_id[RUNNER_CORRELATION_MAX];
	int64_t run_id;
	double queued_at;
	int attempt;  /* 1, or 2.. for a retry */
	int attempts; /* the last attempt there may be (retries + 1); 1 if never retried */
	/* A scheduled fire (trigger schedule): its fire time (nominal time plus
	 * the spread offset or jitter, unix s) and the seconds from it to the
	 * committed task_runs row, both set by the daemon; fire_at 0 otherwise.
	 * With fire_at, <task>_start carries fire_time, dispatch_latency_sec
	 * and start_latency_sec, and runner_execute observes the start latency
	 * (metrics_dispatch_latency). */
	double fire_at;
	double dispatch_latency;
	double scheduled_for; /* the row's nominal fire time, 0 none */
} run_request;

/* Which attempt of a run a request is (runner_prepare_attempt). */
typedef struct {
	const char *correlation_id; /* the first attempt's; NULL for a new one */
	int attempt;                /* 1.. */
	int attempts;               /* retries + 1 where a failure is retried, else 1 */
	/* The daemon's runs are fenced (cluster.h, runs_start_fenced): with
	 * fence_instance set the row is inserted only under that leadership
	 * term, once per (task, scheduled_for, attempt) when scheduled_for >
	 * 0 (the nominal fire time of a scheduled or catch-up run). NULL: an
	 * unfenced row (the CLI's runs). */
	const char *fence_instance;
	int64_t fence_term;
	double scheduled_for;
} run_attempt;

/* correlation id "run_<task>_<unix>_<4 hex>" */
void runner_new_correlation_id(const char *task, double now, char *buf, size_t cap);
/* A correlation id given by a caller (X-Correlation-ID, a control request):
 * 1 to RUNNER_CORRELATION_GIVEN_MAX of [A-Za-z0-9._:-]. */
#define RUNNER_CORRELATION_GIVEN_MAX 64
bool runner_correlation_id_valid(const char *s);

/* Fill req (taking a reference on cfg) and insert the running row. When
 * the store refuses the row, the run still goes ahead: run_id is 0,
 * task_run_unrecorded is logged and runner_execute inserts the row at the
 * end if it can. Returns 0; err is kept for callers that may fail later. */
int runner_prepare(run_request *req, config *cfg, const task_config *task, const char *trigger,
                   store *st, char *err, size_t errlen);
/* runner_prepare of one attempt of a run that may be retried (the daemon's
 * runs): at NULL is attempt 1 of 1, which is what runner_prepare does. A
 * failed or timed-out attempt before the last is not counted for
 * failure_alert_after: the run and its retries count once, when the last
 * attempt ends (see runs_failure_streak). */
/* A fenced attempt whose row was not inserted returns RUNNER_NOT_STARTED
 * (the fence fell, or the fire was taken) or, on PostgreSQL, when the store
 * failed, RUNNER_UNRECORDABLE (a run that cannot be recorded does not start
 * there); err says why and req holds nothing then. */
int runner_prepare_attempt(run_request *req, config *cfg, const task_config *task,
                           const char *trigger, const run_attempt *at, store *st, char *err,
                           size_t errlen);
#define RUNNER_NOT_STARTED  1 /* fenced, or the fire was taken */
#define RUNNER_UNRECORDABLE 2 /* PostgreSQL: the store failed */
void run_request_release(run_request *req);

/* Execute a prepared run. Returns its final status. */
run_status runner_execute(run_request *req, store *st, run_control *ctl);

/* A field of the run's <task>_complete / _failed event that item counts
 * (integers, also kept in the row) cannot carry, e.g. health_check's
 * cpu_sec. name must be a static string; at most RUNNER_MAX_FIELDS per
 * run (more are dropped); only from the run's thread, during run(). */
#define RUNNER_MAX_FIELDS 4
void runner_report_dbl(task_run *run, const char *name, double value);

/* Record an overlap skip: task_skipped event and a skipped row. */
void runner_record_skip(config *cfg, const task_config *task, const char *trigger,
                        const char *reason, store *st);

#endif
