/*
 * daemon_control — the daemon's answers to control-socket requests: ping,
 * status (live state of every task), trigger (run a task now), recover and
 * ansible (recovery.h, ansible_run.h: runs on threads of their own). Runs on
 * the loop thread, so it reads the slots directly. Messages that quote a
 * request cut it on a UTF-8 boundary (control.c checks every reply too).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ansible_run.h"
#include "clock.h"
#include "daemon_internal.h"
#include "log.h"
#include "recovery.h"
#include "runs.h"
#include "utf8.h"

static void add_time(cJSON *obj, const char *key, double unix_time)
{
	char buf[40];
	if (unix_time <= 0) {
		cJSON_AddNullToObject(obj, key);
		return;
	}
	daemon_format_time(unix_time, buf, sizeof buf);
	cJSON_AddStringToObject(obj, key, buf);
}

static cJSON *slot_status(const daemon_state *d, const task_slot *s)
{
	cJSON *t = cJSON_CreateObject();
	cJSON_AddStringToObject(t, "name", s->name);
	cJSON_AddStringToObject(t, "type", s->cfg->type->name);
	cJSON_AddBoolToObject(t, "enabled", s->cfg->enabled);
	if (s->cfg->schedule_expr)
		cJSON_AddStringToObject(t, "schedule", s->cfg->schedule_expr);
	else
		cJSON_AddNullToObject(t, "schedule");
	cJSON_AddBoolToObject(t, "running", s->running != NULL);
	if (s->running) {
		cJSON_AddNumberToObject(t, "run_id", (double)s->running->req.run_id);
		cJSON_AddStringToObject(t, "correlation_id", s->running->req.correlation_id);
	}
	cJSON_AddBoolToObject(t, "queued", s->pending);
	if (s->retry_pending) {
		cJSON_AddNumberToObject(t, "retry_attempt", s->retry_attempt);
		cJSON_AddNumberToObject(t, "retry_attempts", s->retry_attempts);
		cJSON_AddStringToObject(t, "retry_correlation_id", s->retry_correlation_id);
	}
	add_time(t, "retry_at", daemon_slot_retry_at(s));
	if (s->has_last) {
		cJSON_AddStringToObject(t, "last_status", run_status_name(s->last_status));
		cJSON_AddNumberToObject(t, "last_run_id", (double)s->last_run_id);
	} else {
		cJSON_AddNullToObject(t, "last_status");
	}
	add_time(t, "last_finished_at", s->has_last ? s->last_finished_at : 0);
	add_time(t, "next_run", daemon_slot_next_run(d, s));
	cJSON_AddNumberToObject(t, "runs_started", (double)s->runs_started);
	return t;
}

static char *status_reply(daemon_state *d)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddTrueToObject(r, "ok");
	cJSON *dm = cJSON_AddObjectToObject(r, "daemon");
	cJSON_AddNumberToObject(dm, "pid", getpid());
	cJSON_AddStringToObject(dm, "version", FK_VERSION);
	add_time(dm, "started_at", d->started_at);
	cJSON_AddNumberToObject(dm, "uptime_sec", clock_wall() - d->started_at);
	cJSON_AddStringToObject(dm, "state_dir", d->cfg->state_dir);
	cJSON_AddNumberToObject(dm, "workers", d->cfg->max_concurrent_tasks);
	cJSON_AddNumberToObject(dm, "running", (double)daemon_jobs_running(d));
	cJSON_AddBoolToObject(dm, "stopping", d->stopping);
	cJSON *tasks = cJSON_AddArrayToObject(r, "tasks");
	for (size_t i = 0; i < d->cfg->ntasks; i++) {
		const task_slot *s = daemon_slot_find(d, d->cfg->tasks[i].name);
		if (s)
			cJSON_AddItemToArray(tasks, slot_status(d, s));
	}
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

static char *busy_reply(const task_slot *s)
{
	char msg[256];
	snprintf(msg, sizeof msg, "task %s is already running (run_id %lld, correlation_id %s)",
	         s->name, (long long)s->running->req.run_id, s->running->req.correlation_id);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddFalseToObject(r, "ok");
	cJSON_AddStringToObject(r, "error", msg);
	cJSON_AddStringToObject(r, "error_type", "already_running");
	cJSON_AddNumberToObject(r, "running_run_id", (double)s->running->req.run_id);
	cJSON_AddStringToObject(r, "running_correlation_id", s->running->req.correlation_id);
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

/* overlap = skip and a failed run's retry waits: refused like a busy run. */
static char *retry_pending_reply(const task_slot *s)
{
	char msg[320], when[40];
	daemon_format_time(daemon_slot_retry_at(s), when, sizeof when);
	snprintf(msg, sizeof msg,
	         "task %s has a retry pending (attempt %d of %d at %s, correlation_id %s)", s->name,
	         s->retry_attempt, s->retry_attempts, when, s->retry_correlation_id);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddFalseToObject(r, "ok");
	cJSON_AddStringToObject(r, "error", msg);
	cJSON_AddStringToObject(r, "error_type", "retry_pending");
	cJSON_AddStringToObject(r, "retry_correlation_id", s->retry_correlation_id);
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

static char *trigger_reply(daemon_state *d, const cJSON *request)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(request, "task");
	const cJSON *cid = cJSON_GetObjectItemCaseSensitive(request, "correlation_id");
	char msg[256];
	if (!cJSON_IsString(name))
		return control_error_reply("trigger needs \"task\"");
	if (cid && !(cJSON_IsString(cid) && runner_correlation_id_valid(cid->valuestring)))
		return control_error_reply("\"correlation_id\": 1 to 64 of A-Z a-z 0-9 . _ : -");
	task_slot *s = daemon_slot_find(d, name->valuestring);
	if (s == NULL) {
		snprintf(msg, sizeof msg, "unknown task '%.*s'",
		         (int)utf8_prefix(name->valuestring, 128), name->valuestring);
		return control_error_reply(msg);
	}
	if (d->stopping)
		return control_error_reply("the daemon is shutting down");
	if (s->running && s->cfg->overlap == OVERLAP_SKIP)
		return busy_reply(s);
	if (s->retry_pending && s->cfg->overlap == OVERLAP_SKIP)
		return retry_pending_reply(s);
	bool queue_full = (s->running || s->retry_pending) && s->pending;
	bool queued = false;
	job *j = daemon_dispatch_as(d, s, "manual", cid ? cid->valuestring : NULL, &queued);
	cJSON *r = cJSON_CreateObject();
	if (j) {
		cJSON_AddTrueToObject(r, "ok");
		cJSON_AddStringToObject(r, "task", s->name);
		cJSON_AddNumberToObject(r, "run_id", (double)j->req.run_id);
		cJSON_AddStringToObject(r, "correlation_id", j->req.correlation_id);
	} else if (queued) {
		cJSON_AddTrueToObject(r, "ok");
		cJSON_AddStringToObject(r, "task", s->name);
		cJSON_AddTrueToObject(r, "queued");
	} else if (queue_full) {
		cJSON_AddFalseToObject(r, "ok");
		cJSON_AddStringToObject(r, "error",
		                        "the task is running and one run is already queued");
		cJSON_AddStringToObject(r, "error_type", "queue_full");
	} else {
		cJSON_AddFalseToObject(r, "ok");
		cJSON_AddStringToObject(r, "error",
		                        "the run could not be started (see the daemon's log)");
	}
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

char *daemon_control_handle(void *ctx, const cJSON *request)
{
	daemon_state *d = ctx;
	const char *cmd = cJSON_GetObjectItemCaseSensitive(request, "cmd")->valuestring;
	char msg[160];

	if (strcmp(cmd, "ping") == 0)
		return strdup("{\"ok\": true}");
	if (strcmp(cmd, "status") == 0)
		return status_reply(d);
	if (strcmp(cmd, "trigger") == 0)
		return trigger_reply(d, request);
	if (strcmp(cmd, "recover") == 0)
		return recovery_control_request(d->cfg, d->rt.st, request);
	if (strcmp(cmd, "ansible") == 0)
		return d->stopping ? control_error_reply("the daemon is shutting down")
		                   : ansible_run_control_request(d->cfg, d->rt.st, request);
	snprintf(msg, sizeof msg,
	         "unknown cmd '%.*s' (known: ping, status, trigger, recover, ansible)",
	         (int)utf8_prefix(cmd, 64), cmd);
	return control_error_reply(msg);
}
