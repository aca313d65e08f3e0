/*
 * daemon_control — the daemon's answers to control-socket requests: ping,
 * status (live state of every task), trigger (run a task now), recover and
 * ansible (recovery.h, ansible_run.h: runs on threads of their own). Runs on
 * the loop thread, so it reads the slots directly. Messages that quote a
 * request cut it on a UTF-8 boundary (control.c checks every reply too).
 *
 * In a cluster (docs/cluster.md, "Requests from any node"): a standby
 * forwards trigger and recover to the leader through the store
 * (cluster_requests.h) and answers at once with "forwarded": true, the
 * request's id and the run's correlation_id (the caller waits for the
 * leader's reply in the store); the leader serves forwarded requests with
 * the same trigger_reply and recovery_control_request as local ones
 * (daemon_requests_serve). A standby's status has no live task state:
 * each task's last run comes from the store, and "live" says so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ansible_run.h"
#include "clock.h"
#include "cluster_requests.h"
#include "daemon_internal.h"
#include "log.h"
#include "recovery.h"
#include "runs.h"
#include "servers.h"
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

/* What the configuration says of a task: the head of both status rows. */
static cJSON *slot_config_json(const task_slot *s)
{
	cJSON *t = cJSON_CreateObject();
	cJSON_AddStringToObject(t, "name", s->name);
	cJSON_AddStringToObject(t, "type", s->cfg->type->name);
	cJSON_AddBoolToObject(t, "enabled", s->cfg->enabled);
	if (s->cfg->schedule_expr)
		cJSON_AddStringToObject(t, "schedule", s->cfg->schedule_expr);
	else
		cJSON_AddNullToObject(t, "schedule");
	return t;
}

static cJSON *slot_status(const daemon_state *d, const task_slot *s)
{
	cJSON *t = slot_config_json(s);
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

/* A standby's task rows: the configuration and each task's last stored run
 * (the leader's, on the shared store); nothing live. */
static cJSON *stored_slot_status(const task_slot *s)
{
	cJSON *t = slot_config_json(s);
	cJSON_AddBoolToObject(t, "running", false);
	cJSON_AddBoolToObject(t, "queued", false);
	cJSON_AddNullToObject(t, "last_status");
	cJSON_AddNullToObject(t, "last_finished_at");
	cJSON_AddNullToObject(t, "next_run");
	cJSON_AddBoolToObject(t, "live", false);
	return t;
}

static int stored_last_run(void *ctx, const run_row *row)
{
	cJSON *t;
	cJSON_ArrayForEach(t, (cJSON *)ctx)
	{
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
		if (!cJSON_IsString(name) || strcmp(name->valuestring, row->task) != 0)
			continue;
		bool running = row->status == RUN_RUNNING;
		cJSON_ReplaceItemInObject(t, "running", cJSON_CreateBool(running));
		cJSON_ReplaceItemInObject(t, "last_status",
		                          cJSON_CreateString(run_status_name(row->status)));
		cJSON_AddNumberToObject(t, "last_run_id", (double)row->id);
		if (running)
			cJSON_AddStringToObject(t, "correlation_id", row->correlation_id);
		cJSON_DeleteItemFromObject(t, "last_finished_at");
		add_time(t, "last_finished_at", row->finished_at);
	}
	return 0;
}

static void standby_tasks(daemon_state *d, cJSON *r)
{
	cJSON *tasks = cJSON_AddArrayToObject(r, "tasks");
	for (size_t i = 0; i < d->cfg->ntasks; i++) {
		const task_slot *s = daemon_slot_find(d, d->cfg->tasks[i].name);
		if (s)
			cJSON_AddItemToArray(tasks, stored_slot_status(s));
	}
	char leader[128] = "";
	cluster_leader_name(d->cluster, leader, sizeof leader);
	char note[256];
	snprintf(note, sizeof note,
	         "standby: the leader (%s) runs the tasks; their state here is the last stored "
	         "run of each",
	         leader[0] ? leader : "none known");
	cJSON_AddStringToObject(r, "note", note);
	if (runs_last_per_task(d->rt.st, stored_last_run, tasks) != STORE_OK)
		cJSON_AddStringToObject(r, "store_error", store_errmsg(d->rt.st));
}

/* A standby in a PostgreSQL cluster: it forwards and shows stored state. */
static bool is_standby(const daemon_state *d)
{
	return d->cfg->store_postgresql && !d->leading;
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
	daemon_cluster_status(d, dm);
	cJSON_AddBoolToObject(r, "live", !is_standby(d));
	if (is_standby(d)) {
		standby_tasks(d, r);
	} else {
		cJSON *tasks = cJSON_AddArrayToObject(r, "tasks");
		for (size_t i = 0; i < d->cfg->ntasks; i++) {
			const task_slot *s = daemon_slot_find(d, d->cfg->tasks[i].name);
			if (s)
				cJSON_AddItemToArray(tasks, slot_status(d, s));
		}
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

/* ---- requests from any node (cluster_requests.h) ---- */

static char *store_error_reply(const char *what, store *st)
{
	char msg[512];
	snprintf(msg, sizeof msg, "%s: %s", what, store_errmsg(st));
	cJSON *r = cJSON_CreateObject();
	cJSON_AddFalseToObject(r, "ok");
	cJSON_AddStringToObject(r, "error", msg);
	cJSON_AddStringToObject(r, "error_type", "store");
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

/* What a forwarded request names (a configured task, a known server): the
 * same refusals as the leader's, at once. NULL when it may go. */
static char *forward_check(daemon_state *d, bool trigger, const char *name)
{
	char msg[256], err[512];
	if (trigger) {
		if (daemon_slot_find(d, name))
			return NULL;
		snprintf(msg, sizeof msg, "unknown task '%.*s'", (int)utf8_prefix(name, 128), name);
		return control_error_reply(msg);
	}
	server_list srv = {0};
	if (servers_find(d->rt.st, name, &srv, NULL, err, sizeof err) != 0)
		return control_error_reply(err);
	server_list_free(&srv);
	return NULL;
}

/* A standby's trigger or recover: a request row for the leader, answered
 * at once; the caller waits for the leader's reply (cluster_request_wait).
 * Its event names the run as run_correlation_id, not correlation_id: this
 * daemon's event writer stores it at its own pace, so as a run's event it
 * could reach a follower after the leader's terminal one. */
static char *forward_request(daemon_state *d, const char *kind, const cJSON *request)
{
	bool trigger = strcmp(kind, "trigger") == 0;
	const char *key = trigger ? "task" : "server";
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(request, key);
	const cJSON *cid = cJSON_GetObjectItemCaseSensitive(request, "correlation_id");
	char made[RUNNER_CORRELATION_MAX], leader[128] = "";
	int64_t id = 0;

	if (!cJSON_IsString(name) || !*name->valuestring)
		return control_error_reply(trigger ? "trigger needs \"task\""
		                                   : "recover needs \"server\"");
	if (cid && !(cJSON_IsString(cid) && runner_correlation_id_valid(cid->valuestring)))
		return control_error_reply("\"correlation_id\": 1 to 64 of A-Z a-z 0-9 . _ : -");
	char *refused = forward_check(d, trigger, name->valuestring);
	if (refused)
		return refused;
	if (cid == NULL)
		runner_new_correlation_id(trigger ? name->valuestring : "recover", clock_wall(),
		                          made, sizeof made);
	const char *run_cid = cid ? cid->valuestring : made;
	cJSON *body = cJSON_Duplicate(request, true);
	cJSON_DeleteItemFromObject(body, "correlation_id");
	cJSON_AddStringToObject(body, "correlation_id", run_cid);
	char *text = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	int rc = text ? cluster_request_send(d->rt.st, kind, text, cluster_instance(d->cluster),
	                                     clock_wall(), &id)
	              : STORE_ERROR;
	free(text);
	if (rc != STORE_OK)
		return store_error_reply("cannot forward the request to the leader", d->rt.st);
	bool known = cluster_leader_name(d->cluster, leader, sizeof leader) == 0 && leader[0];
	log_info(DAEMON_LOGGER, "cluster_request_forwarded", LOG_INT("request_id", id),
	         LOG_STR("kind", kind), LOG_STR(key, name->valuestring),
	         known ? LOG_STR("leader", leader) : LOG_NULL("leader"),
	         LOG_STR("run_correlation_id", run_cid));
	cJSON *r = cJSON_CreateObject();
	cJSON_AddTrueToObject(r, "ok");
	cJSON_AddTrueToObject(r, "forwarded");
	if (known)
		cJSON_AddStringToObject(r, "forwarded_to", leader);
	else
		cJSON_AddNullToObject(r, "forwarded_to");
	cJSON_AddNumberToObject(r, "request_id", (double)id);
	cJSON_AddStringToObject(r, key, name->valuestring);
	cJSON_AddStringToObject(r, "correlation_id", run_cid);
	cJSON_AddNumberToObject(r, "expires_in_sec",
	                        (double)cluster_request_ttl_ms(d->cfg) / 1000.0);
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

/* One claimed request, through the functions of a local one. Logged once
 * the reply is stored, after the run began: run_correlation_id, so that a
 * follower of the run never sees it after the run's terminal event. */
static void serve_one(daemon_state *d, int64_t id, const char *kind, const char *body,
                      const char *from)
{
	cJSON *req = cJSON_Parse(body);
	char *reply;
	if (!cJSON_IsObject(req))
		reply = control_error_reply("malformed forwarded request");
	else if (strcmp(kind, "trigger") == 0)
		reply = trigger_reply(d, req);
	else if (strcmp(kind, "recover") == 0)
		reply = recovery_control_request(d->cfg, d->rt.st, req);
	else
		reply = control_error_reply("unknown forwarded request kind");
	cJSON *r = reply ? cJSON_Parse(reply) : NULL;
	bool ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok"));
	const cJSON *cid = cJSON_GetObjectItemCaseSensitive(r, "correlation_id");
	if (!cJSON_IsString(cid))
		cid = cJSON_GetObjectItemCaseSensitive(req, "correlation_id");
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(r, "error");
	int rc = cluster_request_finish(d->rt.st, id, reply ? reply : "{\"ok\": false}", ok,
	                                clock_wall());
	log_emit(ok ? LOG_INFO : LOG_WARNING, DAEMON_LOGGER, "cluster_request_served",
	         LOG_INT("request_id", id), LOG_STR("kind", kind), LOG_STR("from_instance", from),
	         LOG_BOOL("ok", ok),
	         cJSON_IsString(cid) ? LOG_STR("run_correlation_id", cid->valuestring)
	                             : LOG_NULL("run_correlation_id"),
	         cJSON_IsString(error) ? LOG_STR("error", error->valuestring) : LOG_NULL("error"),
	         rc == STORE_OK ? LOG_NULL("store_error")
	                        : LOG_STR("store_error", store_errmsg(d->rt.st)),
	         LOG_END);
	cJSON_Delete(r);
	cJSON_Delete(req);
	free(reply);
}

void daemon_requests_serve(daemon_state *d)
{
	int64_t id, expired = 0;
	char *kind, *body, *from;
	int i;

	cluster_listener_ack(d->requests);
	if (d->stopping || !d->leading)
		return; /* left queued: the next leader serves them */
	double now = clock_wall();
	double not_before = now - (double)cluster_request_ttl_ms(d->cfg) / 1000.0;
	int rc = cluster_requests_expire(d->rt.st, now, not_before, &expired);
	if (rc == STORE_OK && expired > 0)
		log_warning(DAEMON_LOGGER, "cluster_requests_expired", LOG_INT("count", expired),
		            LOG_STR("reason", "no leader took them in time"));
	for (i = 0; rc == STORE_OK && i < CLUSTER_REQUEST_BATCH; i++) {
		rc = cluster_request_claim(d->rt.st, now, not_before, &id, &kind, &body, &from);
		if (rc == STORE_OK)
			serve_one(d, id, kind, body, from ? from : "");
		free(kind);
		free(body);
		free(from);
	}
	if (rc == STORE_OK) /* a full batch: the rest at the next wakeup */
		cluster_listener_kick(d->requests);
	else if (rc != STORE_NOTFOUND && rc != STORE_UNAVAILABLE)
		log_error(DAEMON_LOGGER, "cluster_request_failed",
		          LOG_ERR(store_errmsg(d->rt.st), "store"));
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
	if ((strcmp(cmd, "trigger") == 0 || strcmp(cmd, "recover") == 0) && is_standby(d))
		return forward_request(d, cmd, request);
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
