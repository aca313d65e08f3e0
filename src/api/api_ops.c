/*
 * api_ops — the operations of the HTTP API (scope operate):
 *
 *   trigger, recover      to the daemon's control socket, as `fleetkeeper
 *                         trigger` and `recover` do (daemon_control.c,
 *                         recovery.c), with the request's X-Correlation-ID
 *                         as the run's correlation_id
 *   maintenance, incident ack/close, services
 *                         on the API's store connection through the domain
 *                         modules, as the CLI's commands do, each recorded
 *                         as an event (by "api:<token name>")
 *
 * Every body is a JSON object parsed with cJSON, its fields checked by
 * type and size; unknown fields are refused (400 invalid_body).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "api_internal.h"
#include "clock.h"
#include "duration.h"
#include "incidents.h"
#include "log.h"
#include "maintenance.h"
#include "servers.h"
#include "services.h"
#include "utf8.h"

#define REASON_MAX 512
#define FIELD_MAX  1024

/* ---- bodies ---- */

cJSON *api_body_object(api_req *rq, api_resp *rs)
{
	if (rq->body == NULL || rq->body_len == 0 || strspn(rq->body, " \t\r\n") == rq->body_len)
		return cJSON_CreateObject();
	if (strlen(rq->body) != rq->body_len || !utf8_valid(rq->body)) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_json",
		                "the body must be UTF-8 text without NUL bytes");
		return NULL;
	}
	const char *end = NULL;
	cJSON *o = cJSON_ParseWithOpts(rq->body, &end, true);
	if (o == NULL || !cJSON_IsObject(o)) {
		cJSON_Delete(o);
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_json",
		                "the body must be one JSON object");
		return NULL;
	}
	return o;
}

/* Only the fields in allowed (comma-separated names). */
static bool fields_known(api_resp *rs, const cJSON *o, const char *const *allowed)
{
	const cJSON *f;
	cJSON_ArrayForEach(f, o)
	{
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = strcmp(*a, f->string) == 0;
		if (!ok) {
			api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_body",
			                "unknown field '%.64s'", f->string);
			return false;
		}
	}
	return true;
}

/* An optional string field of at most max bytes: 0 (NULL when absent),
 * -1 with rs filled. */
static int opt_string(api_resp *rs, const cJSON *o, const char *key, size_t max, const char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	*out = NULL;
	if (v == NULL || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v) || strlen(v->valuestring) > max || !v->valuestring[0]) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_body",
		                "%s: a non-empty string of at most %zu bytes", key, max);
		return -1;
	}
	*out = v->valuestring;
	return 0;
}

static void who(const api_req *rq, char *buf, size_t cap)
{
	snprintf(buf, cap, "api:%s", rq->token ? rq->token->name : "anonymous");
}

/* ---- through the control socket ---- */

static unsigned control_status_code(const cJSON *r)
{
	const cJSON *et = cJSON_GetObjectItem(r, "error_type");
	const cJSON *err = cJSON_GetObjectItem(r, "error");
	const char *t = cJSON_IsString(et) ? et->valuestring : "";
	const char *e = cJSON_IsString(err) ? err->valuestring : "";
	if (strcmp(t, "already_running") == 0 || strcmp(t, "retry_pending") == 0 ||
	    strcmp(t, "queue_full") == 0 || strcmp(t, "already_recovering") == 0)
		return MHD_HTTP_CONFLICT;
	if (strncmp(e, "unknown task", 12) == 0 || strncmp(e, "no server", 9) == 0)
		return MHD_HTTP_NOT_FOUND;
	if (strstr(e, "shutting down"))
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

static const char *control_error_type(const cJSON *r, unsigned code)
{
	const cJSON *et = cJSON_GetObjectItem(r, "error_type");
	if (cJSON_IsString(et))
		return et->valuestring;
	return code == MHD_HTTP_NOT_FOUND             ? "not_found"
	       : code == MHD_HTTP_SERVICE_UNAVAILABLE ? "daemon_stopping"
	                                              : "internal";
}

/* Send req (consumed), answer 202 with the reply or map its error. */
static void control_op(api_req *rq, api_resp *rs, cJSON *req)
{
	char err[256] = "", *text = cJSON_PrintUnformatted(req);
	unsigned code = MHD_HTTP_SERVICE_UNAVAILABLE;
	cJSON_Delete(req);
	cJSON *r = text ? api_control(rq->a, text, &code, err, sizeof err) : NULL;
	free(text);
	if (r == NULL) {
		api_reply_error(rs, code, "daemon_unavailable", "the daemon does not answer: %s",
		                err);
		return;
	}
	if (!cJSON_IsTrue(cJSON_GetObjectItem(r, "ok"))) {
		code = control_status_code(r);
		const cJSON *e = cJSON_GetObjectItem(r, "error");
		api_reply_error(rs, code, control_error_type(r, code), "%s",
		                cJSON_IsString(e) ? e->valuestring : "failed");
		cJSON_Delete(r);
		return;
	}
	cJSON_DeleteItemFromObject(r, "ok");
	const cJSON *cid = cJSON_GetObjectItem(r, "correlation_id");
	if (cJSON_IsString(cid))
		snprintf(rs->correlation_id, sizeof rs->correlation_id, "%s", cid->valuestring);
	api_reply_json(rs, MHD_HTTP_ACCEPTED, r);
}

void api_op_trigger(api_req *rq, api_resp *rs, const char *task)
{
	static const char *const allowed[] = {NULL};
	cJSON *body = api_body_object(rq, rs);
	if (body == NULL)
		return;
	bool ok = fields_known(rs, body, allowed);
	cJSON_Delete(body);
	if (!ok)
		return;
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "trigger");
	cJSON_AddStringToObject(req, "task", task);
	if (rq->given_cid)
		cJSON_AddStringToObject(req, "correlation_id", rq->given_cid);
	control_op(rq, rs, req);
}

/* The server's id and whether it exists: 1 found, 0 not (404 filled), -1
 * store error (filled). */
static int first_id(void *ctx, const server_view *v)
{
	*(int64_t *)ctx = v->id;
	return 1;
}

static int server_id(api_resp *rs, store *st, const char *handle, int64_t *id)
{
	*id = 0;
	int rc = servers_view_each(st, handle, clock_wall(), first_id, id);
	if (rc < 0) {
		api_reply_error(rs, MHD_HTTP_SERVICE_UNAVAILABLE, "store", "%s", store_errmsg(st));
		return -1;
	}
	if (rc == 0)
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no server '%s'", handle);
	return rc == 0 ? 0 : 1;
}

/* The store for an operation, or NULL with rs filled. */
static store *op_store(api_req *rq, api_resp *rs)
{
	char err[256];
	store *st = api_store_take(rq->a, err, sizeof err);
	if (st == NULL)
		api_reply_error(rs, MHD_HTTP_SERVICE_UNAVAILABLE, "store", "%s", err);
	return st;
}

void api_op_recover(api_req *rq, api_resp *rs, const char *handle)
{
	static const char *const allowed[] = {"reprovision", NULL};
	int64_t id;
	cJSON *body = api_body_object(rq, rs);
	if (body == NULL || !fields_known(rs, body, allowed)) {
		cJSON_Delete(body);
		return;
	}
	const cJSON *rp = cJSON_GetObjectItem(body, "reprovision");
	if (rp && !cJSON_IsBool(rp)) {
		cJSON_Delete(body);
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_body",
		                "reprovision: true or false");
		return;
	}
	bool reprovision = cJSON_IsTrue(rp);
	cJSON_Delete(body);
	store *st = op_store(rq, rs);
	if (st == NULL)
		return;
	int found = server_id(rs, st, handle, &id);
	api_store_give(rq->a, st);
	if (found != 1)
		return;
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "recover");
	cJSON_AddStringToObject(req, "server", handle);
	cJSON_AddBoolToObject(req, "reprovision", reprovision);
	if (rq->given_cid)
		cJSON_AddStringToObject(req, "correlation_id", rq->given_cid);
	control_op(rq, rs, req);
}

/* ---- the store's operations ---- */

/* The correlation id of an operation: the caller's, or op_api_<time>_<n>. */
static void op_cid(api_req *rq, api_resp *rs)
{
	if (rq->given_cid)
		return; /* already in rs->correlation_id */
	int64_t usec = clock_wall_usec();
	snprintf(rs->correlation_id, sizeof rs->correlation_id, "op_api_%lld_%04x",
	         (long long)(usec / 1000000), (unsigned)(usec & 0xffff));
}

static void maintenance_start(api_req *rq, api_resp *rs, store *st, int64_t id, const char *handle)
{
	static const char *const allowed[] = {"duration", "reason", NULL};
	char err[256], by[96];
	int64_t ms = 0, window = 0;
	const char *dur = NULL, *reason = NULL;
	cJSON *body = api_body_object(rq, rs);
	if (body == NULL || !fields_known(rs, body, allowed) ||
	    opt_string(rs, body, "duration", 32, &dur) != 0 ||
	    opt_string(rs, body, "reason", REASON_MAX, &reason) != 0)
		goto out;
	if (dur == NULL || duration_parse(dur, &ms, err, sizeof err) != 0 || ms < 60000) {
		api_reply_error(
		        rs, MHD_HTTP_BAD_REQUEST, "invalid_body",
		        "duration: a duration of at least 1m (\"90m\", \"2h\") is required");
		goto out;
	}
	double now = clock_wall(), until = now + (double)ms / 1000.0;
	who(rq, by, sizeof by);
	if (store_tx_begin(st) != STORE_OK ||
	    maintenance_window_add(st, id, now, until, reason, by, now, &window) != STORE_OK ||
	    maintenance_note(st, id, true, NULL) != STORE_OK || store_tx_commit(st) != STORE_OK) {
		store_tx_rollback(st);
		api_reply_error(rs, MHD_HTTP_SERVICE_UNAVAILABLE, "store", "%s", store_errmsg(st));
		goto out;
	}
	op_cid(rq, rs);
	log_bind(LOG_STR("correlation_id", rs->correlation_id));
	log_info(API_LOGGER, "maintenance_started", LOG_STR("server_handle", handle),
	         LOG_DBL("starts_at", now), LOG_DBL("until", until), LOG_STR("reason", reason),
	         LOG_STR("by", by), LOG_STR("source", "api"), LOG_INT("window_id", window));
	log_unbind("correlation_id");
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "server", handle);
	cJSON_AddNumberToObject(o, "window_id", (double)window);
	cJSON_AddNumberToObject(o, "until", until);
	cJSON_AddStringToObject(o, "correlation_id", rs->correlation_id);
	api_reply_json(rs, MHD_HTTP_CREATED, o);
out:
	cJSON_Delete(body);
}

static void maintenance_end(api_req *rq, api_resp *rs, store *st, int64_t id, const char *handle)
{
	int64_t ended = 0;
	char by[96];
	double now = clock_wall();
	if (store_tx_begin(st) != STORE_OK ||
	    maintenance_window_end(st, id, now, &ended) != STORE_OK ||
	    maintenance_note(st, id, false, NULL) != STORE_OK || store_tx_commit(st) != STORE_OK) {
		store_tx_rollback(st);
		api_reply_error(rs, MHD_HTTP_SERVICE_UNAVAILABLE, "store", "%s", store_errmsg(st));
		return;
	}
	who(rq, by, sizeof by);
	op_cid(rq, rs);
	if (ended > 0) {
		log_bind(LOG_STR("correlation_id", rs->correlation_id));
		log_info(API_LOGGER, "maintenance_ended", LOG_STR("server_handle", handle),
		         LOG_STR("by", by), LOG_STR("source", "api"), LOG_INT("windows", ended));
		log_unbind("correlation_id");
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "server", handle);
	cJSON_AddNumberToObject(o, "windows_ended", (double)ended);
	cJSON_AddStringToObject(o, "correlation_id", rs->correlation_id);
	api_reply_json(rs, MHD_HTTP_OK, o);
}

void api_op_maintenance(api_req *rq, api_resp *rs, const char *handle, bool start)
{
	int64_t id;
	store *st = op_store(rq, rs);
	if (st == NULL)
		return;
	if (server_id(rs, st, handle, &id) == 1) {
		if (start)
			maintenance_start(rq, rs, st, id, handle);
		else
			maintenance_end(rq, rs, st, id, handle);
	}
	api_store_give(rq->a, st);
}

/* ---- incidents ---- */

typedef struct {
	char handle[128], type[32], cid[128];
} incident_info;

static int copy_info(void *ctx, const incident_row *r)
{
	incident_info *i = ctx;
	snprintf(i->handle, sizeof i->handle, "%s", r->server_handle ? r->server_handle : "");
	snprintf(i->type, sizeof i->type, "%s", r->type ? r->type : "");
	snprintf(i->cid, sizeof i->cid, "%s", r->correlation_id ? r->correlation_id : "");
	return 0;
}

static void incident_logged(const incident_info *info, int64_t id, bool close, const char *by,
                            const char *reason, bool already, const char *restored)
{
	if (info->cid[0])
		log_bind(LOG_STR("correlation_id", info->cid));
	if (!close)
		log_info(API_LOGGER, "incident_acknowledged", LOG_INT("incident_id", id),
		         LOG_STR("server_handle", info->handle[0] ? info->handle : NULL),
		         LOG_STR("incident_type", info->type), LOG_STR("acknowledged_by", by),
		         LOG_STR("reason", reason), LOG_BOOL("already", already));
	else
		log_info(API_LOGGER, "incident_closed", LOG_INT("incident_id", id),
		         LOG_STR("server_handle", info->handle[0] ? info->handle : NULL),
		         LOG_STR("incident_type", info->type), LOG_STR("closed_by", by),
		         LOG_STR("reason", reason), LOG_STR("resolution", "closed"),
		         LOG_STR("status", restored[0] ? restored : NULL));
	log_unbind("correlation_id");
}

static void incident_apply(api_req *rq, api_resp *rs, store *st, int64_t id, bool close,
                           const char *reason)
{
	incident_info info = {0};
	char err[512] = "", restored[32] = "", by[96];
	bool already = false;
	double now = clock_wall();
	who(rq, by, sizeof by);
	int rc = incidents_get(st, id, copy_info, &info);
	if (rc == STORE_OK && !close)
		rc = incidents_ack(st, id, by, reason, now, &already, err, sizeof err);
	else if (rc == STORE_OK)
		rc = incidents_close(st, id, reason, now, restored, sizeof restored, err,
		                     sizeof err);
	if (rc == STORE_NOTFOUND) {
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no incident %lld",
		                (long long)id);
		return;
	}
	if (rc == INCIDENTS_NOT_OPEN) {
		api_reply_error(rs, MHD_HTTP_CONFLICT, "not_open", "incident %lld is not open",
		                (long long)id);
		return;
	}
	if (rc != STORE_OK) {
		api_reply_error(rs, MHD_HTTP_SERVICE_UNAVAILABLE, "store", "%s",
		                err[0] ? err : store_errmsg(st));
		return;
	}
	incident_logged(&info, id, close, by, reason, already, restored);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "incident_id", (double)id);
	cJSON_AddStringToObject(o, "done", close ? "closed" : "acknowledged");
	cJSON_AddBoolToObject(o, "already", already);
	if (close && restored[0])
		cJSON_AddStringToObject(o, "server_status", restored);
	if (info.cid[0])
		cJSON_AddStringToObject(o, "correlation_id", info.cid);
	api_reply_json(rs, MHD_HTTP_OK, o);
}

void api_op_incident(api_req *rq, api_resp *rs, int64_t id, bool close)
{
	static const char *const allowed[] = {"reason", NULL};
	const char *reason = NULL;
	cJSON *body = api_body_object(rq, rs);
	if (body == NULL || !fields_known(rs, body, allowed) ||
	    opt_string(rs, body, "reason", REASON_MAX, &reason) != 0)
		goto out;
	if (close && reason == NULL) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_body",
		                "reason: closing an incident needs a reason");
		goto out;
	}
	store *st = op_store(rq, rs);
	if (st) {
		incident_apply(rq, rs, st, id, close, reason);
		api_store_give(rq->a, st);
	}
out:
	cJSON_Delete(body);
}

/* ---- services ---- */

/* env: an object of strings, printed back into *out (to free). */
static int env_text(api_resp *rs, const cJSON *env, char **out)
{
	const cJSON *e;
	*out = NULL;
	if (env == NULL || cJSON_IsNull(env))
		return 0;
	if (!cJSON_IsObject(env)) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_body",
		                "env: an object of strings");
		return -1;
	}
	cJSON_ArrayForEach(e, env)
	{
		if (!cJSON_IsString(e) || !e->string[0] || strlen(e->valuestring) > FIELD_MAX) {
			api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_body",
			                "env: an object of strings");
			return -1;
		}
	}
	*out = cJSON_PrintUnformatted(env);
	return 0;
}

static int service_from_body(api_resp *rs, const cJSON *body, service_row *svc, char **env)
{
	static const char *const allowed[] = {"repo", "ref", "port", "start", "env", NULL};
	const char *repo, *ref, *start;
	if (!fields_known(rs, body, allowed) || opt_string(rs, body, "repo", FIELD_MAX, &repo) ||
	    opt_string(rs, body, "ref", 256, &ref) ||
	    opt_string(rs, body, "start", FIELD_MAX, &start))
		return -1;
	if (repo == NULL) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_body", "repo is required");
		return -1;
	}
	const cJSON *port = cJSON_GetObjectItem(body, "port");
	if (port && !cJSON_IsNull(port) &&
	    (!cJSON_IsNumber(port) || port->valuedouble != (double)port->valueint ||
	     port->valueint < 1 || port->valueint > 65535)) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_body", "port: 1 to 65535");
		return -1;
	}
	svc->git_repo = (char *)repo;
	svc->ref = (char *)ref;
	svc->start_command = (char *)start;
	svc->port = port && cJSON_IsNumber(port) ? port->valueint : 0;
	return env_text(rs, cJSON_GetObjectItem(body, "env"), env);
}

void api_op_service_put(api_req *rq, api_resp *rs, const char *handle, const char *name)
{
	service_row svc = {.server_handle = (char *)handle, .name = (char *)name};
	char err[512], *env = NULL, by[96];
	cJSON *body = api_body_object(rq, rs);
	if (body == NULL || service_from_body(rs, body, &svc, &env) != 0)
		goto out;
	svc.env = env;
	store *st = op_store(rq, rs);
	if (st == NULL)
		goto out;
	int rc = services_add(st, &svc, err, sizeof err);
	api_store_give(rq->a, st);
	if (rc == STORE_NOTFOUND) {
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no server '%s'", handle);
		goto out;
	}
	if (rc != STORE_OK) {
		api_reply_error(rs, MHD_HTTP_SERVICE_UNAVAILABLE, "store", "%s", err);
		goto out;
	}
	who(rq, by, sizeof by);
	op_cid(rq, rs);
	log_bind(LOG_STR("correlation_id", rs->correlation_id));
	log_info(API_LOGGER, "service_saved", LOG_STR("server_handle", handle),
	         LOG_STR("service", name), LOG_STR("repo", svc.git_repo), LOG_STR("by", by));
	log_unbind("correlation_id");
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "server", handle);
	cJSON_AddStringToObject(o, "name", name);
	cJSON_AddStringToObject(o, "done", "saved");
	api_reply_json(rs, MHD_HTTP_OK, o);
out:
	free(env);
	cJSON_Delete(body);
}

void api_op_service_rm(api_req *rq, api_resp *rs, const char *handle, const char *name)
{
	char err[512], by[96];
	store *st = op_store(rq, rs);
	if (st == NULL)
		return;
	int rc = services_remove(st, handle, name, err, sizeof err);
	api_store_give(rq->a, st);
	if (rc == STORE_NOTFOUND) {
		api_reply_error(rs, MHD_HTTP_NOT_FOUND, "not_found", "no service '%s' on '%s'",
		                name, handle);
		return;
	}
	if (rc != STORE_OK) {
		api_reply_error(rs, MHD_HTTP_SERVICE_UNAVAILABLE, "store", "%s", err);
		return;
	}
	who(rq, by, sizeof by);
	op_cid(rq, rs);
	log_bind(LOG_STR("correlation_id", rs->correlation_id));
	log_info(API_LOGGER, "service_removed", LOG_STR("server_handle", handle),
	         LOG_STR("service", name), LOG_STR("by", by));
	log_unbind("correlation_id");
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "server", handle);
	cJSON_AddStringToObject(o, "name", name);
	cJSON_AddStringToObject(o, "done", "removed");
	api_reply_json(rs, MHD_HTTP_OK, o);
}
