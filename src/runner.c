/*
 * runner — see runner.h. The invariant kept here: a task_runs row that this
 * module inserted as running is always finished by runner_execute (or, if the
 * process dies, turned into interrupted at the next start by the store), and
 * every event between <task>_start and its terminal event carries the run's
 * correlation_id, task and run_id.
 *
 * task_failing (failure_alert_after = N > 0): a run that ends failed or
 * timeout is finished in one transaction with the streak check; when its
 * task's last N runs with a verdict (success, failed, timeout; skipped and
 * interrupted runs neither count nor break a streak) all failed and the one
 * before them did not (or there is none), a task_failing notification is
 * added in that transaction: once per streak, never half. With retries a
 * run and its retries are one entry of the streak (runs_failure_streak
 * groups them by correlation_id), checked only when the last attempt
 * (req->attempts) ends: an attempt the daemon will retry is no verdict.
 */
#include "runner.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "clock.h"
#include "eventsink.h"
#include "log.h"
#include "metrics.h"
#include "notify_text.h"
#include "runs.h"

#define RUNNER_LOGGER "core.runner"
/* How long a finished run waits for an unreachable PostgreSQL to record
 * its row (finish_row). */
#define FINISH_WAIT_PG_MS (90 * 1000)

int run_control_init(run_control *ctl)
{
	ctl->reason = RUN_CANCEL_NONE;
	ctl->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return ctl->cancel_fd < 0 ? -1 : 0;
}

void run_control_destroy(run_control *ctl)
{
	if (ctl->cancel_fd >= 0)
		close(ctl->cancel_fd);
	ctl->cancel_fd = -1;
}

void run_control_cancel(run_control *ctl, run_cancel_reason reason)
{
	int expected = RUN_CANCEL_NONE;
	if (!__atomic_compare_exchange_n(&ctl->reason, &expected, (int)reason, false,
	                                 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		return;
	uint64_t one = 1;
	ssize_t n = write(ctl->cancel_fd, &one, sizeof one);
	(void)n;
}

/* ---- the task-facing API of task.h ---- */

void task_run_count(task_run *run, const char *name, int64_t delta)
{
	for (size_t i = 0; i < run->nitems; i++) {
		if (strcmp(run->items[i].name, name) == 0) {
			run->items[i].value += delta;
			return;
		}
	}
	if (run->nitems < TASK_MAX_ITEMS) {
		run->items[run->nitems].name = name;
		run->items[run->nitems].value = delta;
		run->nitems++;
	}
}

task_result task_run_fail(task_run *run, const char *error_type, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(run->error, sizeof run->error, fmt, ap);
	va_end(ap);
	snprintf(run->error_type, sizeof run->error_type, "%s", error_type);
	return TASK_FAILED;
}

task_result task_run_skip(task_run *run, const char *reason)
{
	snprintf(run->skip_reason, sizeof run->skip_reason, "%s", reason);
	return TASK_SKIPPED;
}

run_cancel_reason task_run_cancel_reason(const task_run *run)
{
	const run_control *ctl = run->control;
	if (ctl == NULL)
		return RUN_CANCEL_NONE;
	return (run_cancel_reason)__atomic_load_n(&ctl->reason, __ATOMIC_SEQ_CST);
}

bool task_run_cancelled(const task_run *run)
{
	return task_run_cancel_reason(run) != RUN_CANCEL_NONE;
}

/* ---- preparing a run ---- */

void runner_new_correlation_id(const char *task, double now, char *buf, size_t cap)
{
	uint16_t rnd = 0;
	if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
		rnd = (uint16_t)(clock_mono_ms() ^ (int64_t)getpid());
	snprintf(buf, cap, "run_%.48s_%lld_%04x", task, (long long)now, rnd);
}

bool runner_correlation_id_valid(const char *s)
{
	size_t n = 0;
	if (s == NULL)
		return false;
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' || c == ':';
		if (!ok || n >= RUNNER_CORRELATION_GIVEN_MAX)
			return false;
	}
	return n > 0;
}

int runner_prepare(run_request *req, config *cfg, const task_config *task, const char *trigger,
                   store *st, char *err, size_t errlen)
{
	return runner_prepare_attempt(req, cfg, task, trigger, NULL, st, err, errlen);
}

int runner_prepare_attempt(run_request *req, config *cfg, const task_config *task,
                           const char *trigger, const run_attempt *at, store *st, char *err,
                           size_t errlen)
{
	memset(req, 0, sizeof *req);
	req->queued_at = clock_wall();
	snprintf(req->trigger, sizeof req->trigger, "%s", trigger);
	req->attempt = at ? at->attempt : 1;
	req->attempts = at && at->attempts > req->attempt ? at->attempts : req->attempt;
	if (at && at->correlation_id)
		snprintf(req->correlation_id, sizeof req->correlation_id, "%s", at->correlation_id);
	else
		runner_new_correlation_id(task->name, req->queued_at, req->correlation_id,
		                          sizeof req->correlation_id);
	int rc;
	if (at && at->fence_instance) {
		runs_fence f = {.instance = at->fence_instance,
		                .term = at->fence_term,
		                .scheduled_for = at->scheduled_for};
		req->scheduled_for = at->scheduled_for;
		rc = runs_start_fenced(st, &f, task->name, req->trigger, req->correlation_id,
		                       req->attempt, req->queued_at, &req->run_id);
		if (rc == STORE_OK && req->run_id == 0) {
			snprintf(err, errlen, "fenced: not the leader of term %lld, or fire taken",
			         (long long)at->fence_term);
			return RUNNER_NOT_STARTED;
		}
		if (rc != STORE_OK && store_is_pg(st)) {
			metrics_store_write_error();
			store_fail(st, rc, "the run's row", err, errlen);
			req->run_id = 0;
			return RUNNER_UNRECORDABLE;
		}
	} else {
		rc = runs_start_attempt(st, task->name, req->trigger, req->correlation_id,
		                        req->attempt, req->queued_at, &req->run_id);
	}
	if (rc != STORE_OK) {
		/* The store is a dependency like any other: the run goes ahead and
		 * its row is written when it finishes (finish_row), or its terminal
		 * event is the record if the store still refuses. */
		req->run_id = 0;
		metrics_store_write_error();
		log_warning(RUNNER_LOGGER, "task_run_unrecorded", LOG_STR("task", task->name),
		            LOG_STR("correlation_id", req->correlation_id),
		            LOG_ERR(store_errmsg(st), "store"));
	}
	req->cfg = config_ref(cfg);
	req->task = task;
	return 0;
}

void run_request_release(run_request *req)
{
	if (req->cfg)
		config_unref(req->cfg);
	req->cfg = NULL;
	req->task = NULL;
}

void runner_record_skip(config *cfg, const task_config *task, const char *trigger,
                        const char *reason, store *st)
{
	char cid[RUNNER_CORRELATION_MAX];
	int64_t run_id = 0;
	double now = clock_wall();

	(void)cfg;
	runner_new_correlation_id(task->name, now, cid, sizeof cid);
	int rc = runs_skipped(st, task->name, trigger, cid, now, reason, &run_id);
	metrics_run_skipped(task->name);
	log_info(RUNNER_LOGGER, "task_skipped", LOG_STR("task", task->name),
	         LOG_STR("reason", reason), LOG_STR("trigger", trigger),
	         LOG_STR("correlation_id", cid), LOG_INT("run_id", run_id));
	if (rc != STORE_OK) {
		metrics_store_write_error();
		log_error(RUNNER_LOGGER, "task_run_store_failed", LOG_STR("task", task->name),
		          LOG_ERR(store_errmsg(st), "store"));
	}
}

/* ---- executing a run ---- */

static run_status outcome_status(task_result r, const task_run *run)
{
	if (r == TASK_OK)
		return RUN_SUCCESS;
	if (r == TASK_SKIPPED)
		return RUN_SKIPPED;
	switch (task_run_cancel_reason(run)) {
	case RUN_CANCEL_TIMEOUT:
		return RUN_TIMEOUT;
	case RUN_CANCEL_SHUTDOWN:
		return RUN_INTERRUPTED;
	default:
		return RUN_FAILED;
	}
}

/* {"lines_output": 3, ...}: item names are identifiers chosen by the code. */
static void items_json(const task_run *run, char *buf, size_t cap)
{
	size_t len = (size_t)snprintf(buf, cap, "{");
	for (size_t i = 0; i < run->nitems && len < cap; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\": %lld", i ? ", " : "",
		                        run->items[i].name, (long long)run->items[i].value);
	if (len < cap)
		snprintf(buf + len, cap - len, "}");
}

/* Items declared by the type are always reported, 0 when not reached. */
static void declare_items(task_run *run, const task_type *type)
{
	for (const char *const *it = type->items; it && *it; it++)
		task_run_count(run, *it, 0);
}

/* runner_report_dbl's fields of the run on this thread. */
struct report_field {
	const char *name;
	double value;
};
static _Thread_local struct report_field report_fields[RUNNER_MAX_FIELDS];
static _Thread_local size_t nreport_fields;

void runner_report_dbl(task_run *run, const char *name, double value)
{
	(void)run;
	if (nreport_fields < RUNNER_MAX_FIELDS)
		report_fields[nreport_fields++] = (struct report_field){name, value};
}

static void log_terminal_event(const task_run *run, run_status status, double duration)
{
	log_field fields[TASK_MAX_ITEMS + RUNNER_MAX_FIELDS + 6];
	size_t n = 0;
	char event[160];
	const char *suffix = status == RUN_SUCCESS   ? "complete"
	                     : status == RUN_SKIPPED ? "skipped"
	                                             : "failed";

	snprintf(event, sizeof event, "%s_%s", run->task->name, suffix);
	if (status == RUN_SKIPPED)
		fields[n++] = LOG_STR("reason", run->skip_reason);
	for (size_t i = 0; i < run->nitems; i++)
		fields[n++] = LOG_INT(run->items[i].name, run->items[i].value);
	if (status != RUN_SUCCESS && status != RUN_SKIPPED) {
		fields[n++] = LOG_STR("status", run_status_name(status));
		fields[n++] = LOG_STR("error", run->error[0] ? run->error : "task failed");
		fields[n++] = LOG_STR("error_type", run->error_type[0] ? run->error_type : "error");
	}
	if (run->exit_code >= 0)
		fields[n++] = LOG_INT("exit_code", run->exit_code);
	fields[n++] = LOG_DBL("duration_sec", duration);
	for (size_t i = 0; i < nreport_fields; i++)
		fields[n++] = LOG_DBL(report_fields[i].name, report_fields[i].value);
	nreport_fields = 0;
	/* A run a clean shutdown interrupted did nothing wrong: a warning. */
	log_level level = status == RUN_SUCCESS || status == RUN_SKIPPED ? LOG_INFO
	                  : status == RUN_INTERRUPTED                    ? LOG_WARNING
	                                                                 : LOG_ERROR;
	log_emitv(level, run->logger, event, fields, n);
}

/* ---- task_failing ---- */

static int note_failing(const task_run *run, run_status status, int streak, const char *error,
                        const char *error_type, double now, char *err, size_t errlen)
{
	notify_note n;
	notify_note_init(&n, NOTIFY_TASK_FAILING, LOG_ERROR, run->correlation_id);
	notify_note_title(&n, "Task %s failed %d runs in a row", run->task->name, streak);
	notify_note_line(&n, "The last run (%s) ended %s: %s", run->correlation_id,
	                 run_status_name(status), error);
	notify_field_str(&n, "task", run->task->name);
	notify_field_int(&n, "streak", streak);
	notify_field_int(&n, "run_id", run->run_id);
	notify_field_str(&n, "status", run_status_name(status));
	notify_field_str(&n, "error", error);
	notify_field_str(&n, "error_type", error_type);
	int rc = notify_add(run->store, &n, now, NULL, err, errlen);
	notify_note_free(&n);
	return rc;
}

/* The finish row, the streak check and task_failing in one transaction. */
static int finish_alerting(const task_run *run, run_status status, double duration,
                           const char *error, const char *error_type, const char *items, char *err,
                           size_t errlen)
{
	store *st = run->store;
	int alert_after = run->task->failure_alert_after;
	double now = clock_wall();
	int streak = 0;
	int rc = store_tx_begin(st);
	if (rc == STORE_OK)
		rc = runs_finish(st, run->run_id, status, now, duration, run->exit_code, error,
		                 error_type, items);
	if (rc == STORE_OK)
		rc = runs_failure_streak(st, run->task->name, alert_after + 1, &streak);
	if (rc != STORE_OK)
		store_fail(st, rc, NULL, err, errlen);
	else if (streak == alert_after)
		rc = note_failing(run, status, streak, error, error_type, now, err, errlen);
	if (rc != STORE_OK) {
		store_tx_rollback(st);
		return rc;
	}
	rc = store_tx_commit(st);
	return rc == STORE_OK ? rc : store_fail(st, rc, NULL, err, errlen);
}

/* A run that started without its row (the store refused it): insert the
 * row now, so finish_row can finish it like any other. */
static void record_late(task_run *run, const run_request *req)
{
	int rc = STORE_ERROR;
	for (int attempt = 0; attempt < 3 && rc != STORE_OK; attempt++)
		rc = runs_start_attempt(run->store, run->task->name, run->trigger,
		                        run->correlation_id, req->attempt, req->queued_at,
		                        &run->run_id);
	if (rc != STORE_OK)
		run->run_id = 0;
}

static void finish_row(task_run *run, run_status status, double duration, const run_request *req)
{
	char items[1024];
	const char *error = NULL, *error_type = NULL;

	items_json(run, items, sizeof items);
	if (status == RUN_SKIPPED) {
		error = run->skip_reason;
	} else if (status != RUN_SUCCESS) {
		error = run->error[0] ? run->error : "task failed";
		error_type = run->error_type[0] ? run->error_type : "error";
	}
	int rc = STORE_ERROR;
	char err[512] = "";
	/* An attempt that will be retried is not a verdict yet: the run and its
	 * retries are judged once, at the last attempt (runs_failure_streak). */
	bool alerting = run->task->failure_alert_after > 0 &&
	                (status == RUN_FAILED || status == RUN_TIMEOUT) &&
	                req->attempt >= req->attempts;
	if (run->run_id == 0)
		record_late(run, req);
	/* On PostgreSQL a lost connection is waited out (the next use
	 * reconnects): a row left running would keep the task busy for the
	 * cluster's other instances (cluster.h). */
	int64_t give_up_ms = clock_mono_ms() + (store_is_pg(run->store) ? FINISH_WAIT_PG_MS : 0);
	useconds_t pause_us = 100000;
	for (int attempt = 0; run->run_id != 0 && rc != STORE_OK && rc != STORE_NOTFOUND &&
	                      (attempt < 3 || clock_mono_ms() < give_up_ms);
	     attempt++) {
		if (attempt >= 3) {
			usleep(pause_us);
			pause_us = pause_us < 2000000 ? pause_us * 2 : pause_us;
		}
		rc = alerting ? finish_alerting(run, status, duration, error, error_type, items,
		                                err, sizeof err)
		              : runs_finish(run->store, run->run_id, status, clock_wall(), duration,
		                            run->exit_code, error, error_type, items);
	}
	if (rc == STORE_NOTFOUND && run->run_id != 0) {
		/* A failover took the row over (cluster.h): it stays interrupted;
		 * this run's outcome is in its events. */
		log_warning(RUNNER_LOGGER, "task_run_fenced",
		            LOG_STR("status", run_status_name(status)),
		            LOG_STR("reason", "the row was taken over by a failover"));
		return;
	}
	if (rc != STORE_OK)
		metrics_store_write_error();
	if (run->run_id == 0)
		log_error(
		        RUNNER_LOGGER, "task_run_store_failed",
		        LOG_STR("status", run_status_name(status)),
		        LOG_ERR("the store refused the run's row; this run's events are its record",
		                "store"));
	else if (rc != STORE_OK)
		log_error(RUNNER_LOGGER, "task_run_store_failed",
		          LOG_ERR(alerting ? err : store_errmsg(run->store), "store"));
}

run_status runner_execute(run_request *req, store *st, run_control *ctl)
{
	const task_type *type = req->task->type;
	task_run run;
	char event[160];

	memset(&run, 0, sizeof run);
	run.cfg = req->cfg;
	run.task = req->task;
	run.trigger = req->trigger;
	run.correlation_id = req->correlation_id;
	run.run_id = req->run_id;
	run.store = st;
	run.cancel_fd = ctl ? ctl->cancel_fd : -1;
	run.control = ctl;
	run.logger = type->logger;
	run.exit_code = -1;
	declare_items(&run, type);
	nreport_fields = 0;

	log_clear_context();
	eventsink_thread_paced(true);
	log_bind(LOG_STR("correlation_id", req->correlation_id));
	log_bind(LOG_STR("task", req->task->name));
	log_bind(LOG_INT("run_id", req->run_id));

	int64_t started = clock_mono_ms();
	snprintf(event, sizeof event, "%s_start", req->task->name);
	log_field start[16];
	size_t nstart = 0;
	char fire_time[40];
	start[nstart++] = LOG_STR("type", type->name);
	start[nstart++] = LOG_STR("trigger", req->trigger);
	start[nstart++] = LOG_INT("attempt", req->attempt);
	if (req->fire_at > 0) { /* the dispatch latency of a scheduled fire */
		double start_latency = clock_wall() - req->fire_at;
		log_format_timestamp(fire_time, sizeof fire_time,
		                     (int64_t)llround(req->fire_at * 1e6));
		start[nstart++] = LOG_STR("fire_time", fire_time);
		start[nstart++] = LOG_DBL("dispatch_latency_sec", req->dispatch_latency);
		start[nstart++] = LOG_DBL("start_latency_sec", start_latency);
		metrics_dispatch_latency(METRICS_DISPATCH_START, start_latency);
	}
	if (type->start_fields)
		nstart += type->start_fields(&run, start + nstart, 10);
	log_emitv(LOG_INFO, run.logger, event, start, nstart);
	metrics_run_started(req->task);

	task_result result = type->run(&run);
	double duration = (double)(clock_mono_ms() - started) / 1000.0;
	run_status status = outcome_status(result, &run);
	/* Events of this run the queue had no room for (disk full, a flood):
	 * the row's items and the terminal event say how many. */
	uint64_t dropped = eventsink_run_dropped_take(req->correlation_id);
	if (dropped > 0)
		task_run_count(&run, "events_dropped", (int64_t)dropped);

	/* The row first: whoever sees the terminal event finds the row final. */
	finish_row(&run, status, duration, req);
	req->run_id = run.run_id; /* a late-recorded row has its id only now */
	metrics_run_finished(&run, status, duration);
	log_terminal_event(&run, status, duration);
	log_clear_context();
	eventsink_thread_paced(false);
	return status;
}
