/*
 * api_routes — the endpoints of /api/v1 that read, the status page's
 * files, and the routing of every path (docs/api.md has the table).
 *
 * Path parameters are checked before anything reads them: ids are positive
 * integers of at most 18 digits, names (tasks, servers, services) 1 to 128
 * of [A-Za-z0-9._-], correlation ids as X-Correlation-ID. A path that
 * matches no route is 404 not_found; a known path with another method 405
 * method_not_allowed (with Allow).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "api_internal.h"
#include "clock.h"
#include "events.h"
#include "incidents.h"
#include "runner.h"
#include "runs.h"
#include "servers.h"
#include "services.h"

#define MAX_SEGS     8
#define NAME_MAX_LEN 128
#define RUNS_DEFAULT 50
#define RUNS_MAX     500

/* ---- replies ---- */

void api_reply_json(api_resp *rs, unsigned status, cJSON *obj)
{
	rs->status = status;
	rs->body = obj ? cJSON_PrintUnformatted(obj) : NULL;
	cJSON_Delete(obj);
	if (rs->body == NULL) {
		rs->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		rs->body = strdup("{\"error\": \"out of memory\", \"error_type\": \"internal\"}");
	}
	rs->content_type = "application/json";
}

void api_reply_error(api_resp *rs, unsigned status, const char *error_type, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "error", msg);
	cJSON_AddStringToObject(o, "error_type", error_type);
	free(rs->body);
	api_reply_json(rs, status, o);
}

const char *api_query(const api_req *rq, const char *key)
{
	return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
}

static void add_time(cJSON *o, const char *key, double t)
{
	char buf[40];
	if (t <= 0) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	time_t s = (time_t)t;
	struct tm tm;
	gmtime_r(&s, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
	cJSON_AddStringToObject(o, key, buf);
}

static void add_str(cJSON *o, const char *key, const char *v)
{
	if (v)
		cJSON_AddStringToObject(o, key, v);
	else
		cJSON_AddNullToObject(o, key);
}

static bool need(api_req *rq, api_resp *rs, api_scope scope)
{
	api_scope have = rq->token ? rq->token->scope : SCOPE_READ; /* anonymous: public read */
	if (have >= scope)
		return true;
	api_reply_error(rs, MHD_HTTP_FORBIDDEN, "forbidden", "this needs a token of scope %s",
	                api_scope_name(scope));
	return false;
}

static void store_failed(api_resp *rs, const char *what)
{
	api_reply_error(rs, MHD_HTTP_SERVICE_UNAVAILABLE, "store", "%s", what);
}

/* ---- parameters ---- */

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= NAME_MAX_LEN &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyz"
	                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static bool id_ok(const char *s, int64_t *out)
{
	size_t n = strlen(s);
	if (n == 0 || n > 18 || strspn(s, "0123456789") != n || s[0] == '0')
		return false;
	*out = strtoll(s, NULL, 10);
	return true;
}

static bool int_param(api_req *rq, api_resp *rs, const char *key, long min, long max, long *out)
{
	const char *v = api_query(rq, key);
	char *end = NULL;
	if (v == NULL)
		return true;
	long n = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || n < min || n > max) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
		                "%s: an integer from %ld to %ld expected", key, min, max);
		return false;
	}
	*out = n;
	return true;
}

/* ---- runs ---- */

static cJSON *run_json(const run_row *r)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "id", (double)r->id);
	cJSON_AddStringToObject(o, "task", r->task);
	add_str(o, "trigger", r->trigger);
	cJSON_AddNumberToObject(o, "attempt", r->attempt);
	cJSON_AddStringToObject(o, "status", run_status_name(r->status));
	add_str(o, "correlation_id", r->correlation_id);
	add_time(o, "started_at", r->started_at);
	add_time(o, "finished_at", r->finished_at);
	if (r->duration_sec >= 0)
		cJSON_AddNumberToObject(o, "duration_sec", r->duration_sec);
	else
		cJSON_AddNullToObject(o, "duration_sec");
	if (r->exit_code >= 0)
		cJSON_AddNumberToObject(o, "exit_code", r->exit_code);
	else
		cJSON_AddNullToObject(o, "exit_code");
	add_str(o, "error", r->error);
	add_str(o, "error_type", r->error_type);
	cJSON *items = r->items_json ? cJSON_Parse(r->items_json) : NULL;
	if (items)
		cJSON_AddItemToObject(o, "items", items);
	else
		cJSON_AddNullToObject(o, "items");
	return o;
}

static int collect_run(void *ctx, const run_row *r)
{
	cJSON_AddItemToArray(ctx, run_json(r));
	return 0;
}

static int query_runs(api_req *rq, api_resp *rs, const runs_filter *f, cJSON *arr)
{
	char err[256];
	store *st = api_store_take(rq->a, err, sizeof err);
	if (st == NULL) {
		store_failed(rs, err);
		return -1;
	}
	int rc = runs_query(st, f, collect_run, arr);
	if (rc < 0)
		store_failed(rs, store_errmsg(st));
	api_store_give(rq->a, st);
	return rc < 0 ? -1 : 0;
}

static void get_runs(api_req *rq, api_resp *rs)
{
	runs_filter f = {.limit = RUNS_DEFAULT};
	long limit = RUNS_DEFAULT, before = 0;
	const char *task = api_query(rq, "task"), *status = api_query(rq, "status");
	const char *cid = api_query(rq, "correlation_id");
	if (!int_param(rq, rs, "limit", 1, RUNS_MAX, &limit) ||
	    !int_param(rq, rs, "before", 1, 0x7fffffffL, &before))
		return;
	if ((task && !name_ok(task)) || (cid && !runner_correlation_id_valid(cid))) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
		                task && !name_ok(task)
		                        ? "task: 1 to 128 of A-Z a-z 0-9 . _ -"
		                        : "correlation_id: 1 to 64 of A-Z a-z 0-9 . _ : -");
		return;
	}
	if (status && run_status_parse(status, &f.status) != 0) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
		                "status: one of running, success, failed, timeout, skipped, "
		                "interrupted");
		return;
	}
	f.has_status = status != NULL;
	f.task = task;
	f.correlation_id = cid;
	f.before_id = before;
	f.limit = (int)limit + 1; /* one more: is there a next page? */
	cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "runs");
	if (query_runs(rq, rs, &f, arr) != 0) {
		cJSON_Delete(o);
		return;
	}
	int n = cJSON_GetArraySize(arr);
	if (n > limit) {
		cJSON_DeleteItemFromArray(arr, n - 1);
		cJSON *last = cJSON_GetArrayItem(arr, n - 2);
		cJSON_AddNumberToObject(o, "next_before",
		                        cJSON_GetObjectItem(last, "id")->valuedouble);
	} else {
		cJSON_AddNullToObject(o, "next_before");
	}
	api_reply_json(rs, MHD_HTTP_OK, o);
}

static int copy_run(void *ctx, const run_row *r)
{
	*(cJSON **)ctx = run_json(r);
	return 1;
}

/* The run as JSON, or NULL with rs filled (404, 503). */
static cJSON *load_run(api_req *rq, api_resp *rs, int64_t id)
{
	char err[256];
	cJSON *run = NULL;
	store *st = api_store_take(rq->a, err, sizeof err);
	if (st == NULL) {
		store_failed(rs, err);
		return NULL;
	}
	int rc = runs_get(st, id, copy_run, &run);
	if (rc < 0 && rc != STORE_NOTFOUND)
		store_failed(rs, store_errmsg(st));
	api_store_give(rq->a, st);
	if (run == NULL && (rc == STORE_NOTFOUND || rc >= 0))
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no run %lld", (long long)id);
	return run;
}

static int collect_event(void *ctx, int64_t id, const char *json)
{
	cJSON *e = cJSON_Parse(json);
	if (e == NULL)
		e = cJSON_CreateString(json);
	else
		cJSON_AddNumberToObject(e, "event_id", (double)id);
	cJSON_AddItemToArray(ctx, e);
	return 0;
}

/* The events of a correlation id into arr: 0, or -1 with rs filled. */
static int load_events(api_req *rq, api_resp *rs, const char *cid, cJSON *arr)
{
	char err[256];
	store *st = api_store_take(rq->a, err, sizeof err);
	if (st == NULL) {
		store_failed(rs, err);
		return -1;
	}
	int rc = events_trace(st, cid, 0, collect_event, arr);
	if (rc < 0)
		store_failed(rs, store_errmsg(st));
	api_store_give(rq->a, st);
	return rc < 0 ? -1 : 0;
}

static void get_run(api_req *rq, api_resp *rs, int64_t id)
{
	cJSON *run = load_run(rq, rs, id);
	if (run)
		api_reply_json(rs, MHD_HTTP_OK, run);
}

static void get_run_events(api_req *rq, api_resp *rs, int64_t id)
{
	const char *follow = api_query(rq, "follow");
	cJSON *run = load_run(rq, rs, id);
	if (run == NULL)
		return;
	const cJSON *cid = cJSON_GetObjectItem(run, "correlation_id");
	if (follow && strcmp(follow, "1") == 0) {
		rs->stream = true;
		rs->status = MHD_HTTP_OK;
		rs->stream_run_id = id;
		snprintf(rs->stream_cid, sizeof rs->stream_cid, "%s",
		         cJSON_IsString(cid) ? cid->valuestring : "");
		cJSON_Delete(run);
		return;
	}
	if (follow && strcmp(follow, "0") != 0) {
		cJSON_Delete(run);
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "follow: 0 or 1");
		return;
	}
	cJSON *arr = cJSON_AddArrayToObject(run, "events");
	if (cJSON_IsString(cid) && load_events(rq, rs, cid->valuestring, arr) != 0) {
		cJSON_Delete(run);
		return;
	}
	api_reply_json(rs, MHD_HTTP_OK, run);
}

static void get_trace(api_req *rq, api_resp *rs, const char *cid)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "correlation_id", cid);
	cJSON *runs = cJSON_AddArrayToObject(o, "runs");
	runs_filter f = {.correlation_id = cid, .limit = RUNS_MAX};
	if (query_runs(rq, rs, &f, runs) != 0 ||
	    load_events(rq, rs, cid, cJSON_AddArrayToObject(o, "events")) != 0) {
		cJSON_Delete(o);
		return;
	}
	if (cJSON_GetArraySize(runs) == 0 &&
	    cJSON_GetArraySize(cJSON_GetObjectItem(o, "events")) == 0) {
		cJSON_Delete(o);
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "nothing recorded for %s",
		                cid);
		return;
	}
	api_reply_json(rs, MHD_HTTP_OK, o);
}

/* ---- tasks and status (the daemon's live state) ---- */

/* The control status reply, or NULL with rs filled. */
static cJSON *live_status(api_req *rq, api_resp *rs)
{
	char err[256] = "";
	unsigned code = MHD_HTTP_SERVICE_UNAVAILABLE;
	cJSON *r = api_control_status(rq->a, &code, err, sizeof err);
	if (r == NULL)
		api_reply_error(rs, code, "daemon_unavailable", "the daemon does not answer: %s",
		                err);
	return r;
}

static void get_status(api_req *rq, api_resp *rs)
{
	cJSON *r = live_status(rq, rs);
	if (r == NULL)
		return;
	cJSON_DeleteItemFromObject(r, "ok");
	cJSON *info = cJSON_AddObjectToObject(r, "api");
	add_str(info, "token", rq->token ? rq->token->name : NULL);
	cJSON_AddStringToObject(info, "scope",
	                        api_scope_name(rq->token ? rq->token->scope : SCOPE_READ));
	api_reply_json(rs, MHD_HTTP_OK, r);
}

static void get_tasks(api_req *rq, api_resp *rs)
{
	cJSON *r = live_status(rq, rs);
	if (r == NULL)
		return;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddItemToObject(o, "tasks", cJSON_DetachItemFromObject(r, "tasks"));
	cJSON_Delete(r);
	api_reply_json(rs, MHD_HTTP_OK, o);
}

/* The task's live state (detached from the status reply), or NULL. */
static cJSON *find_task(cJSON *status, const char *name)
{
	cJSON *tasks = cJSON_GetObjectItem(status, "tasks"), *t;
	int i = 0;
	cJSON_ArrayForEach(t, tasks)
	{
		const cJSON *n = cJSON_GetObjectItem(t, "name");
		if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
			return cJSON_DetachItemFromArray(tasks, i);
		i++;
	}
	return NULL;
}

static void get_task(api_req *rq, api_resp *rs, const char *name)
{
	cJSON *r = live_status(rq, rs);
	if (r == NULL)
		return;
	cJSON *t = find_task(r, name);
	cJSON_Delete(r);
	if (t == NULL) {
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no task '%s'", name);
		return;
	}
	runs_filter f = {.task = name, .limit = 20};
	if (query_runs(rq, rs, &f, cJSON_AddArrayToObject(t, "recent_runs")) != 0) {
		cJSON_Delete(t);
		return;
	}
	api_reply_json(rs, MHD_HTTP_OK, t);
}

/* ---- servers, incidents, services ---- */

typedef struct {
	cJSON *arr;
} view_ctx;

static int collect_server(void *ctx, const server_view *v)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "id", (double)v->id);
	cJSON_AddStringToObject(o, "handle", v->handle);
	add_str(o, "ip", v->ip);
	cJSON_AddNumberToObject(o, "port", v->port);
	add_str(o, "status", v->status);
	add_str(o, "previous_status", v->previous_status);
	add_str(o, "provider", v->provider);
	cJSON_AddBoolToObject(o, "managed", v->managed);
	cJSON_AddStringToObject(o, "health",
	                        v->last_health_check <= 0     ? "unknown"
	                        : v->consecutive_failures > 0 ? "failing"
	                                                      : "healthy");
	cJSON_AddNumberToObject(o, "consecutive_failures", v->consecutive_failures);
	add_time(o, "last_health_check", v->last_health_check);
	if (v->response_time_ms >= 0)
		cJSON_AddNumberToObject(o, "response_time_ms", v->response_time_ms);
	else
		cJSON_AddNullToObject(o, "response_time_ms");
	if (v->open_incident) {
		cJSON_AddNumberToObject(o, "open_incident", (double)v->open_incident);
		add_str(o, "open_incident_type", v->open_incident_type);
	} else {
		cJSON_AddNullToObject(o, "open_incident");
	}
	cJSON_AddBoolToObject(o, "in_maintenance",
	                      v->maintenance_recorded || v->maintenance_until > 0);
	add_time(o, "maintenance_until", v->maintenance_until);
	cJSON_AddItemToArray(((view_ctx *)ctx)->arr, o);
	return 0;
}

/* Servers (handle NULL: all) into arr: 0, or -1 with rs filled. */
static int load_servers(api_req *rq, api_resp *rs, const char *handle, cJSON *arr)
{
	char err[256];
	view_ctx vc = {arr};
	store *st = api_store_take(rq->a, err, sizeof err);
	if (st == NULL) {
		store_failed(rs, err);
		return -1;
	}
	int rc = servers_view_each(st, handle, clock_wall(), collect_server, &vc);
	if (rc < 0)
		store_failed(rs, store_errmsg(st));
	api_store_give(rq->a, st);
	return rc < 0 ? -1 : 0;
}

static int collect_incident(void *ctx, const incident_row *r)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "id", (double)r->id);
	add_str(o, "server", r->server_handle);
	add_str(o, "type", r->type);
	add_str(o, "status", r->status);
	add_time(o, "detected_at", r->detected_at);
	add_time(o, "resolved_at", r->resolved_at);
	add_str(o, "correlation_id", r->correlation_id);
	cJSON *details = r->details ? cJSON_Parse(r->details) : NULL;
	if (details)
		cJSON_AddItemToObject(o, "details", details);
	else
		add_str(o, "details", r->details);
	add_time(o, "acknowledged_at", r->acknowledged_at);
	add_str(o, "acknowledged_by", r->acknowledged_by);
	add_str(o, "ack_reason", r->ack_reason);
	add_str(o, "resolution", r->resolution);
	add_str(o, "resolution_reason", r->resolution_reason);
	cJSON_AddItemToArray(ctx, o);
	return 0;
}

static int load_incidents(api_req *rq, api_resp *rs, bool open_only, cJSON *arr)
{
	char err[256];
	store *st = api_store_take(rq->a, err, sizeof err);
	if (st == NULL) {
		store_failed(rs, err);
		return -1;
	}
	int rc = incidents_list(st, open_only, collect_incident, arr);
	if (rc < 0)
		store_failed(rs, store_errmsg(st));
	api_store_give(rq->a, st);
	return rc < 0 ? -1 : 0;
}

static cJSON *service_json(const service_row *s)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "server", s->server_handle);
	cJSON_AddStringToObject(o, "name", s->name);
	add_str(o, "repo", s->git_repo);
	add_str(o, "ref", s->ref);
	if (s->port > 0)
		cJSON_AddNumberToObject(o, "port", s->port);
	else
		cJSON_AddNullToObject(o, "port");
	add_str(o, "start", s->start_command);
	cJSON *names = cJSON_AddArrayToObject(o, "env_names"); /* never the values */
	cJSON *env = s->env ? cJSON_Parse(s->env) : NULL, *e;
	cJSON_ArrayForEach(e, env) cJSON_AddItemToArray(names, cJSON_CreateString(e->string));
	cJSON_Delete(env);
	return o;
}

static int load_services(api_req *rq, api_resp *rs, const char *handle, cJSON *arr)
{
	char err[512];
	service_list l = {0};
	store *st = api_store_take(rq->a, err, sizeof err);
	if (st == NULL) {
		store_failed(rs, err);
		return -1;
	}
	int rc = services_list(st, handle, &l, err, sizeof err);
	api_store_give(rq->a, st);
	if (rc < 0) {
		store_failed(rs, err);
		return -1;
	}
	for (size_t i = 0; i < l.count; i++)
		cJSON_AddItemToArray(arr, service_json(&l.rows[i]));
	service_list_free(&l);
	return 0;
}

static void get_servers(api_req *rq, api_resp *rs)
{
	cJSON *o = cJSON_CreateObject();
	if (load_servers(rq, rs, NULL, cJSON_AddArrayToObject(o, "servers")) != 0) {
		cJSON_Delete(o);
		return;
	}
	api_reply_json(rs, MHD_HTTP_OK, o);
}

static void get_server(api_req *rq, api_resp *rs, const char *handle)
{
	cJSON *arr = cJSON_CreateArray();
	if (load_servers(rq, rs, handle, arr) != 0) {
		cJSON_Delete(arr);
		return;
	}
	cJSON *o = cJSON_DetachItemFromArray(arr, 0);
	cJSON_Delete(arr);
	if (o == NULL) {
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no server '%s'", handle);
		return;
	}
	if (load_services(rq, rs, handle, cJSON_AddArrayToObject(o, "services")) != 0) {
		cJSON_Delete(o);
		return;
	}
	api_reply_json(rs, MHD_HTTP_OK, o);
}

static void get_incidents(api_req *rq, api_resp *rs)
{
	const char *open = api_query(rq, "open");
	if (open && strcmp(open, "0") != 0 && strcmp(open, "1") != 0) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "open: 0 or 1");
		return;
	}
	cJSON *o = cJSON_CreateObject();
	if (load_incidents(rq, rs, open && open[0] == '1',
	                   cJSON_AddArrayToObject(o, "incidents")) != 0) {
		cJSON_Delete(o);
		return;
	}
	api_reply_json(rs, MHD_HTTP_OK, o);
}

static void get_services(api_req *rq, api_resp *rs)
{
	const char *server = api_query(rq, "server");
	if (server && !name_ok(server)) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
		                "server: 1 to 128 of A-Z a-z 0-9 . _ -");
		return;
	}
	cJSON *o = cJSON_CreateObject();
	if (load_services(rq, rs, server, cJSON_AddArrayToObject(o, "services")) != 0) {
		cJSON_Delete(o);
		return;
	}
	api_reply_json(rs, MHD_HTTP_OK, o);
}

/* The status page's one call: tasks (with their recent durations), servers,
 * open incidents, recent runs, and what the caller may do. */
static void get_overview(api_req *rq, api_resp *rs)
{
	cJSON *r = live_status(rq, rs);
	if (r == NULL)
		return;
	cJSON *o = cJSON_CreateObject(), *t;
	cJSON *tasks = cJSON_DetachItemFromObject(r, "tasks");
	cJSON_AddItemToObject(o, "daemon", cJSON_DetachItemFromObject(r, "daemon"));
	cJSON_AddItemToObject(o, "tasks", tasks);
	cJSON_Delete(r);
	bool ok = true;
	cJSON_ArrayForEach(t, tasks)
	{
		runs_filter f = {.task = cJSON_GetObjectItem(t, "name")->valuestring, .limit = 20};
		ok = ok && query_runs(rq, rs, &f, cJSON_AddArrayToObject(t, "recent_runs")) == 0;
	}
	runs_filter recent = {.limit = 20};
	ok = ok && load_servers(rq, rs, NULL, cJSON_AddArrayToObject(o, "servers")) == 0 &&
	     load_incidents(rq, rs, true, cJSON_AddArrayToObject(o, "incidents")) == 0 &&
	     query_runs(rq, rs, &recent, cJSON_AddArrayToObject(o, "runs")) == 0;
	if (!ok) {
		cJSON_Delete(o);
		return;
	}
	api_scope scope = rq->token ? rq->token->scope : SCOPE_NONE;
	cJSON_AddBoolToObject(o, "can_operate", scope >= SCOPE_OPERATE);
	cJSON_AddBoolToObject(o, "can_read", scope >= SCOPE_READ);
	api_reply_json(rs, MHD_HTTP_OK, o);
}

static void get_healthz(api_req *rq, api_resp *rs)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "status", "ok");
	cJSON_AddBoolToObject(o, "public_status", rq->a->public_status); /* for the page */
	api_reply_json(rs, MHD_HTTP_OK, o);
}

static void get_file(api_resp *rs, const char *data, size_t len, const char *type)
{
	rs->status = MHD_HTTP_OK;
	rs->body = malloc(len + 1);
	if (rs->body) {
		memcpy(rs->body, data, len);
		rs->body[len] = '\0';
	}
	rs->content_type = type;
}

/* ---- routing ---- */

typedef struct {
	char buf[1024];
	char *seg[MAX_SEGS];
	int n;
} segments;

/* "/api/v1/runs/7" into api, v1, runs, 7. -1 for an empty segment, a
 * trailing slash, too many segments or too long a path. */
static int split(const char *path, segments *s)
{
	size_t len = strlen(path);
	s->n = 0;
	if (len >= sizeof s->buf || path[0] != '/')
		return -1;
	memcpy(s->buf, path, len + 1);
	if (len == 1)
		return 0;
	for (char *p = s->buf + 1;;) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		if (*p == '\0' || s->n == MAX_SEGS)
			return -1;
		s->seg[s->n++] = p;
		if (!slash)
			return 0;
		p = slash + 1;
	}
}

static bool is(const char *method, const char *m)
{
	return strcmp(method, m) == 0 || (strcmp(m, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

static void bad_param(api_resp *rs, const char *what)
{
	api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "%s", what);
}

static void not_allowed(api_resp *rs, const char *allow)
{
	rs->allow = allow;
	api_reply_error(rs, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
	                "use %s on this path", allow);
}

#define NAME_RULE "1 to 128 of A-Z a-z 0-9 . _ -"

/* /api/v1/tasks... */
static void route_tasks(api_req *rq, api_resp *rs, segments *s)
{
	const char *m = rq->method;
	if (s->n == 3) {
		rs->route = "/api/v1/tasks";
		if (!is(m, "GET")) {
			not_allowed(rs, "GET");
			return;
		}
		if (need(rq, rs, SCOPE_READ))
			get_tasks(rq, rs);
		return;
	}
	if (!name_ok(s->seg[3])) {
		bad_param(rs, "task name: " NAME_RULE);
		return;
	}
	if (s->n == 4) {
		rs->route = "/api/v1/tasks/{name}";
		if (!is(m, "GET")) {
			not_allowed(rs, "GET");
			return;
		}
		if (need(rq, rs, SCOPE_READ))
			get_task(rq, rs, s->seg[3]);
		return;
	}
	if (s->n == 5 && strcmp(s->seg[4], "trigger") == 0) {
		rs->route = "/api/v1/tasks/{name}/trigger";
		if (!is(m, "POST")) {
			not_allowed(rs, "POST");
			return;
		}
		if (need(rq, rs, SCOPE_OPERATE))
			api_op_trigger(rq, rs, s->seg[3]);
		return;
	}
	api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no such path");
}

static void route_runs(api_req *rq, api_resp *rs, segments *s)
{
	int64_t id;
	if (s->n == 3) {
		rs->route = "/api/v1/runs";
		if (!is(rq->method, "GET")) {
			not_allowed(rs, "GET");
			return;
		}
		if (need(rq, rs, SCOPE_READ))
			get_runs(rq, rs);
		return;
	}
	if (!id_ok(s->seg[3], &id)) {
		bad_param(rs, "run id: a positive integer");
		return;
	}
	bool events = s->n == 5 && strcmp(s->seg[4], "events") == 0;
	if (s->n > 5 || (s->n == 5 && !events)) {
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no such path");
		return;
	}
	rs->route = events ? "/api/v1/runs/{id}/events" : "/api/v1/runs/{id}";
	if (!is(rq->method, "GET")) {
		not_allowed(rs, "GET");
		return;
	}
	if (!need(rq, rs, SCOPE_READ))
		return;
	if (events)
		get_run_events(rq, rs, id);
	else
		get_run(rq, rs, id);
}

static void route_server_sub(api_req *rq, api_resp *rs, segments *s, const char *handle)
{
	const char *m = rq->method, *sub = s->seg[4];
	if (s->n == 5 && strcmp(sub, "recover") == 0) {
		rs->route = "/api/v1/servers/{handle}/recover";
		if (!is(m, "POST")) {
			not_allowed(rs, "POST");
			return;
		}
		if (need(rq, rs, SCOPE_OPERATE))
			api_op_recover(rq, rs, handle);
		return;
	}
	if (s->n == 5 && strcmp(sub, "maintenance") == 0) {
		rs->route = "/api/v1/servers/{handle}/maintenance";
		if (!is(m, "POST") && !is(m, "DELETE")) {
			not_allowed(rs, "POST, DELETE");
			return;
		}
		if (need(rq, rs, SCOPE_OPERATE))
			api_op_maintenance(rq, rs, handle, is(m, "POST"));
		return;
	}
	if (s->n == 6 && strcmp(sub, "services") == 0) {
		if (!name_ok(s->seg[5])) {
			bad_param(rs, "service name: " NAME_RULE);
			return;
		}
		rs->route = "/api/v1/servers/{handle}/services/{name}";
		if (!is(m, "PUT") && !is(m, "DELETE")) {
			not_allowed(rs, "PUT, DELETE");
			return;
		}
		if (!need(rq, rs, SCOPE_OPERATE))
			return;
		if (is(m, "PUT"))
			api_op_service_put(rq, rs, handle, s->seg[5]);
		else
			api_op_service_rm(rq, rs, handle, s->seg[5]);
		return;
	}
	api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no such path");
}

static void route_servers(api_req *rq, api_resp *rs, segments *s)
{
	if (s->n == 3) {
		rs->route = "/api/v1/servers";
		if (!is(rq->method, "GET")) {
			not_allowed(rs, "GET");
			return;
		}
		if (need(rq, rs, SCOPE_READ))
			get_servers(rq, rs);
		return;
	}
	if (!name_ok(s->seg[3])) {
		bad_param(rs, "server handle: " NAME_RULE);
		return;
	}
	if (s->n > 4) {
		route_server_sub(rq, rs, s, s->seg[3]);
		return;
	}
	rs->route = "/api/v1/servers/{handle}";
	if (!is(rq->method, "GET")) {
		not_allowed(rs, "GET");
		return;
	}
	if (need(rq, rs, SCOPE_READ))
		get_server(rq, rs, s->seg[3]);
}

static void route_incidents(api_req *rq, api_resp *rs, segments *s)
{
	int64_t id;
	if (s->n == 3) {
		rs->route = "/api/v1/incidents";
		if (!is(rq->method, "GET")) {
			not_allowed(rs, "GET");
			return;
		}
		if (need(rq, rs, SCOPE_READ))
			get_incidents(rq, rs);
		return;
	}
	if (!id_ok(s->seg[3], &id)) {
		bad_param(rs, "incident id: a positive integer");
		return;
	}
	bool ack = s->n == 5 && strcmp(s->seg[4], "ack") == 0;
	bool close = s->n == 5 && strcmp(s->seg[4], "close") == 0;
	if (!ack && !close) {
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no such path");
		return;
	}
	rs->route = ack ? "/api/v1/incidents/{id}/ack" : "/api/v1/incidents/{id}/close";
	if (!is(rq->method, "POST")) {
		not_allowed(rs, "POST");
		return;
	}
	if (need(rq, rs, SCOPE_OPERATE))
		api_op_incident(rq, rs, id, close);
}

/* A route of one segment after /api/v1 with GET only. */
static void route_simple(api_req *rq, api_resp *rs, const char *route,
                         void (*fn)(api_req *, api_resp *))
{
	rs->route = route;
	if (!is(rq->method, "GET")) {
		not_allowed(rs, "GET");
		return;
	}
	if (need(rq, rs, SCOPE_READ))
		fn(rq, rs);
}

static void route_v1(api_req *rq, api_resp *rs, segments *s)
{
	const char *what = s->seg[2];
	if (strcmp(what, "tasks") == 0) {
		route_tasks(rq, rs, s);
		return;
	}
	if (strcmp(what, "runs") == 0) {
		route_runs(rq, rs, s);
		return;
	}
	if (strcmp(what, "servers") == 0) {
		route_servers(rq, rs, s);
		return;
	}
	if (strcmp(what, "incidents") == 0) {
		route_incidents(rq, rs, s);
		return;
	}
	if (s->n == 3 && strcmp(what, "status") == 0) {
		route_simple(rq, rs, "/api/v1/status", get_status);
		return;
	}
	if (s->n == 3 && strcmp(what, "services") == 0) {
		route_simple(rq, rs, "/api/v1/services", get_services);
		return;
	}
	if (s->n == 3 && strcmp(what, "overview") == 0) {
		route_simple(rq, rs, "/api/v1/overview", get_overview);
		return;
	}
	if (s->n == 4 && strcmp(what, "traces") == 0) {
		rs->route = "/api/v1/traces/{correlation_id}";
		if (!runner_correlation_id_valid(s->seg[3])) {
			bad_param(rs, "correlation id: 1 to 64 of A-Z a-z 0-9 . _ : -");
			return;
		}
		if (!is(rq->method, "GET")) {
			not_allowed(rs, "GET");
			return;
		}
		if (need(rq, rs, SCOPE_READ))
			get_trace(rq, rs, s->seg[3]);
		return;
	}
	api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no such path");
}

void api_route(api_req *rq, api_resp *rs)
{
	segments s;
	const char *p = rq->path;
	if (strcmp(p, "/healthz") == 0 || strcmp(p, "/") == 0 || strcmp(p, "/app.js") == 0 ||
	    strcmp(p, "/app.css") == 0) {
		rs->route = p;
		if (!is(rq->method, "GET")) {
			not_allowed(rs, "GET");
			return;
		}
		if (p[1] == 'h') {
			get_healthz(rq, rs);
			return;
		}
		if (p[1] == '\0') {
			get_file(rs, api_page_html, api_page_html_len, "text/html; charset=utf-8");
			return;
		}
		if (strcmp(p, "/app.js") == 0) {
			get_file(rs, api_page_js, api_page_js_len,
			         "text/javascript; charset=utf-8");
			return;
		}
		get_file(rs, api_page_css, api_page_css_len, "text/css; charset=utf-8");
		return;
	}
	if (split(p, &s) != 0 || s.n < 3 || strcmp(s.seg[0], "api") != 0 ||
	    strcmp(s.seg[1], "v1") != 0) {
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no such path");
		return;
	}
	route_v1(rq, rs, &s);
}
