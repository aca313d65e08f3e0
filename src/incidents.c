/*
 * incidents — see incidents.h. Invariants:
 *
 *  1. At most one open incident per server and type (server_unreachable,
 *     provisioning_failed): the look for an open one and the insert are in
 *     one transaction (store_tx_begin takes the write lock at once, so two
 *     processes cannot both open one).
 *  2. Every transition is one transaction with the server's status change
 *     (servers.c) and its outbox row: a failed step, the notification
 *     included, rolls all of it back.
 *  3. A recovery moves its incidents to recovering before it works and to
 *     resolved | failed after, in two transactions, so a crash in between
 *     leaves them open (recovering), never resolved.
 *  4. The SQL of the incidents table is here and nowhere else (the one
 *     exception, INCIDENTS_OPEN and its two forms, is a condition other
 *     queries join on).
 *  5. Open is INCIDENTS_OPEN everywhere (detected, recovering, failed);
 *     every resolution sets status resolved, resolved_at and resolution
 *     together, so an incident is never half resolved.
 *  6. A notification about an incident's problem is added only while it
 *     is not acknowledged (problem_acked); its resolution always is.
 */
#include "incidents.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "log.h"

static const char SQL_OPEN_UNREACHABLE[] =
        "SELECT max(id) FROM incidents WHERE server_id = ?1 AND " INCIDENTS_OPEN_UNREACHABLE;
static const char SQL_OPEN_PROVISIONING[] =
        "SELECT max(id) FROM incidents WHERE server_id = ?1 AND " INCIDENTS_OPEN_PROVISIONING;
static const char SQL_INSERT[] =
        "INSERT INTO incidents (server_id, type, status, detected_at, correlation_id, details,"
        " updated_at) VALUES (?1, ?2, 'detected', ?3, ?4, ?5, ?3) RETURNING id";
static const char SQL_SET_DETAILS[] =
        "UPDATE incidents SET details = ?3, updated_at = ?2 WHERE id = ?1";
static const char SQL_DETECTED[] =
        "SELECT detected_at, correlation_id, type FROM incidents WHERE id = ?1";
static const char SQL_OPEN_OF_SERVER[] =
        "SELECT id FROM incidents WHERE server_id = ?1 AND " INCIDENTS_OPEN " ORDER BY id";
static const char SQL_HEALTH_ENDS[] =
        "SELECT id FROM incidents WHERE server_id = ?1 AND type IN ('server_unreachable',"
        " 'provisioning_failed') AND " INCIDENTS_OPEN " ORDER BY id";
static const char SQL_OTHERS_OPEN[] =
        "SELECT count(*) FROM incidents WHERE server_id = ?1 AND id <> ?2 AND " INCIDENTS_OPEN;
static const char SQL_PROBLEM_ACKED[] =
        "SELECT count(*) FROM incidents WHERE server_id = ?1 AND type = ?2"
        " AND acknowledged_at IS NOT NULL AND " INCIDENTS_OPEN;
static const char SQL_ACKED[] = "SELECT acknowledged_at IS NOT NULL FROM incidents WHERE id = ?1";
static const char SQL_RECOVERING[] =
        "UPDATE incidents SET status = 'recovering', updated_at = ?2 WHERE id = ?1";
static const char SQL_RESOLVE[] =
        "UPDATE incidents SET status = 'resolved', resolved_at = ?2, updated_at = ?2,"
        " resolution = ?3, resolution_reason = ?4 WHERE id = ?1 AND " INCIDENTS_OPEN;
static const char SQL_FAIL[] = "UPDATE incidents SET status = 'failed', updated_at = ?2"
                               " WHERE id = ?1 AND " INCIDENTS_OPEN;
static const char SQL_ACK[] =
        "UPDATE incidents SET acknowledged_at = ?2, acknowledged_by = ?3, ack_reason = ?4,"
        " updated_at = ?2 WHERE id = ?1 AND acknowledged_at IS NULL";
static const char SQL_STATE[] =
        "SELECT server_id, " INCIDENTS_OPEN ", acknowledged_at IS NOT NULL FROM incidents"
        " WHERE id = ?1";
#define SQL_LIST_COLUMNS                                                                           \
	"SELECT i.id, s.handle, i.type, i.status, i.detected_at, i.resolved_at,"                   \
	" i.correlation_id, i.details, i.acknowledged_at, i.acknowledged_by, i.ack_reason,"        \
	" i.resolution, i.resolution_reason FROM incidents i"                                      \
	" LEFT JOIN servers s ON s.id = i.server_id"
static const char SQL_LIST[] = SQL_LIST_COLUMNS " WHERE ?1 = 0 OR i." INCIDENTS_OPEN
                                                " ORDER BY i.detected_at DESC, i.id DESC";
static const char SQL_GET[] = SQL_LIST_COLUMNS " WHERE i.id = ?1";
static const char SQL_OPEN_COUNT[] = "SELECT count(*) FROM incidents WHERE " INCIDENTS_OPEN;

/* ---- small steps ---- */

static int tx_begin(store *s, const char *what, char *err, size_t errlen)
{
	int rc = store_tx_begin(s);
	return rc == STORE_OK ? STORE_OK : store_fail(s, rc, what, err, errlen);
}

/* Commit when rc is STORE_OK, else roll back; rc or the commit's error. */
static int tx_end(store *s, int rc, const char *what, char *err, size_t errlen)
{
	if (rc != STORE_OK) {
		store_tx_rollback(s);
		return rc;
	}
	rc = store_tx_commit(s);
	return rc == STORE_OK ? STORE_OK : store_fail(s, rc, what, err, errlen);
}

/* Step sql with ?1 = id and ?2 = now. */
static int update_id_now(store *s, const char *sql, int64_t id, double now, const char *what,
                         char *err, size_t errlen)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, sql, &q);
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, id);
		store_bind_double(q, 2, now);
		rc = store_step_done(q);
	}
	store_stmt_done(q);
	return rc == STORE_OK ? STORE_OK : store_fail(s, rc, what, err, errlen);
}

/* The parameters of a one-number query: ?1 = a and, when the statement
 * has a ?2, b (text when b_text is not NULL, else the integer b). */
typedef struct {
	int64_t a;
	bool has_b;
	int64_t b;
	const char *b_text;
} query_args;

#define ARGS1(x)         ((query_args){.a = (x)})
#define ARGS2(x, y)      ((query_args){.a = (x), .has_b = true, .b = (y)})
#define ARGS2_TEXT(x, y) ((query_args){.a = (x), .has_b = true, .b_text = (y)})

/* The first column of sql's first row (0 if none or NULL). */
static int query_int(store *s, const char *sql, query_args p, int64_t *out, const char *what,
                     char *err, size_t errlen)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, sql, &q);
	*out = 0;
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, p.a);
		if (p.has_b && p.b_text)
			store_bind_text(q, 2, p.b_text);
		else if (p.has_b)
			store_bind_int64(q, 2, p.b);
		rc = store_step(q);
		if (rc == STORE_ROW) {
			*out = store_col_int64(q, 0);
			rc = STORE_OK;
		}
	}
	store_stmt_done(q);
	return rc == STORE_OK ? STORE_OK : store_fail(s, rc, what, err, errlen);
}

/* The open server_unreachable incident of the server, 0 if none. */
static int open_unreachable_id(store *s, int64_t server_id, int64_t *id, const char *what,
                               char *err, size_t errlen)
{
	return query_int(s, SQL_OPEN_UNREACHABLE, ARGS1(server_id), id, what, err, errlen);
}

/* Invariant 6: an open acknowledged incident of this type on the server
 * silences the notifications of its problem. */
static int problem_acked(store *s, int64_t server_id, const char *type, bool *acked,
                         const char *what, char *err, size_t errlen)
{
	int64_t n = 0;
	int rc =
	        query_int(s, SQL_PROBLEM_ACKED, ARGS2_TEXT(server_id, type), &n, what, err, errlen);
	*acked = n > 0;
	return rc;
}

/* Resolve incident id (if still open) with resolution and reason. */
static int resolve_one(store *s, int64_t id, double now, const char *resolution, const char *reason,
                       const char *what, char *err, size_t errlen)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, SQL_RESOLVE, &q);
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, id);
		store_bind_double(q, 2, now);
		store_bind_text(q, 3, resolution);
		store_bind_text(q, 4, reason);
		rc = store_step_done(q);
	}
	store_stmt_done(q);
	return rc == STORE_OK ? STORE_OK : store_fail(s, rc, what, err, errlen);
}

/* The ids of sql's rows (?1 = server_id) in order, at most cap. */
static int collect_ids(store *s, const char *sql, int64_t server_id, int64_t *ids, size_t cap,
                       size_t *n, const char *what, char *err, size_t errlen)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, sql, &q);
	*n = 0;
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, server_id);
		while (*n < cap && (rc = store_step(q)) == STORE_ROW)
			ids[(*n)++] = store_col_int64(q, 0);
		if (rc == STORE_ROW)
			rc = STORE_DONE; /* more than cap: the first cap */
	}
	store_stmt_done(q);
	return rc == STORE_DONE ? STORE_OK : store_fail(s, rc, what, err, errlen);
}

/* The server's status comes back after its incident except_id ended, if
 * no other incident of it is open (and it is still in error). */
static int restore_if_last(store *s, int64_t server_id, int64_t except_id, double now,
                           const char *what, char *err, size_t errlen)
{
	int64_t others = 0;
	int rc = query_int(s, SQL_OTHERS_OPEN, ARGS2(server_id, except_id), &others, what, err,
	                   errlen);
	if (rc == STORE_OK && others == 0)
		rc = servers_restore_previous(s, server_id, now, err, errlen);
	return rc;
}

static int insert_incident(store *s, int64_t server_id, const char *type, double now,
                           const char *correlation_id, const char *details, int64_t *id,
                           const char *what, char *err, size_t errlen)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, SQL_INSERT, &q);
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, server_id);
		store_bind_text(q, 2, type);
		store_bind_double(q, 3, now);
		store_bind_text(q, 4, correlation_id);
		store_bind_text(q, 5, details);
		rc = store_step(q);
		if (rc == STORE_ROW) {
			*id = store_col_int64(q, 0);
			rc = STORE_OK;
		} else if (rc == STORE_DONE) {
			rc = store_set_error(s, STORE_ERROR, "insert incident: no id returned");
		}
	}
	store_stmt_done(q);
	return rc == STORE_OK ? STORE_OK : store_fail(s, rc, what, err, errlen);
}

static void copy_out(char *buf, size_t cap, const char *value)
{
	if (buf && cap)
		snprintf(buf, cap, "%s", value ? value : "");
}

/* ---- open: server_unreachable ---- */

/* The server_unreachable notification of a new incident; details is the
 * caller's JSON (stage, error_type, error, failures), copied into fields. */
static int note_unreachable(store *s, const server_row *srv, int64_t incident_id,
                            const char *correlation_id, const char *details, double now, char *err,
                            size_t errlen)
{
	notify_note n;
	cJSON *d = details ? cJSON_Parse(details) : NULL;
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(d, "error");
	const cJSON *stage = cJSON_GetObjectItemCaseSensitive(d, "stage");
	const char *previous = srv->status && *srv->status ? srv->status : "unknown";

	notify_note_init(&n, NOTIFY_SERVER_UNREACHABLE, LOG_CRITICAL, correlation_id);
	notify_note_title(&n, "Server %s is unreachable", srv->handle);
	notify_note_line(&n, "Incident %lld opened; the server was %s and is now in error.",
	                 (long long)incident_id, previous);
	if (cJSON_IsString(stage))
		notify_note_line(&n, "Failed at stage %s%s%s", stage->valuestring,
		                 cJSON_IsString(error) ? ": " : "",
		                 cJSON_IsString(error) ? error->valuestring : "");
	notify_field_str(&n, "server_handle", srv->handle);
	notify_field_str(&n, "ip", srv->ip && *srv->ip ? srv->ip : NULL);
	notify_field_int(&n, "incident_id", incident_id);
	notify_field_str(&n, "previous_status", srv->status);
	for (const cJSON *it = cJSON_IsObject(d) ? d->child : NULL; it && n.fields; it = it->next)
		if (!cJSON_HasObjectItem(n.fields, it->string))
			cJSON_AddItemToObject(n.fields, it->string, cJSON_Duplicate(it, true));
	int rc = notify_add(s, &n, now, NULL, err, errlen);
	notify_note_free(&n);
	cJSON_Delete(d);
	return rc;
}

static int open_unreachable_steps(store *s, int64_t server_id, double now,
                                  const char *correlation_id, const char *details,
                                  int64_t *incident_id, bool *created, char *previous, size_t cap,
                                  char *err, size_t errlen)
{
	server_row srv;
	int rc = open_unreachable_id(s, server_id, incident_id, "open incident", err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = servers_get(s, server_id, &srv, err, errlen);
	if (rc != STORE_OK)
		return rc;
	if (*incident_id) { /* invariant 1: one per outage */
		copy_out(previous, cap, srv.previous_status);
		server_row_free(&srv);
		return STORE_OK;
	}
	copy_out(previous, cap, srv.status);
	rc = insert_incident(s, server_id, "server_unreachable", now, correlation_id, details,
	                     incident_id, "open incident", err, errlen);
	if (rc == STORE_OK)
		rc = servers_mark_unreachable(s, server_id, now, err, errlen);
	if (rc == STORE_OK)
		rc = note_unreachable(s, &srv, *incident_id, correlation_id, details, now, err,
		                      errlen);
	*created = rc == STORE_OK;
	server_row_free(&srv);
	return rc;
}

int incidents_open_unreachable(store *s, int64_t server_id, double now, const char *correlation_id,
                               const char *details, int64_t *incident_id, bool *created,
                               char *previous, size_t cap, char *err, size_t errlen)
{
	*incident_id = 0;
	*created = false;
	int rc = tx_begin(s, "open incident", err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = open_unreachable_steps(s, server_id, now, correlation_id, details, incident_id,
	                            created, previous, cap, err, errlen);
	rc = tx_end(s, rc, "open incident", err, errlen);
	if (rc != STORE_OK)
		*created = false;
	return rc;
}

/* ---- resolve: a health check passes ---- */

/* The server_recovered notification of incident_id, from the incident and
 * the server as they are now, inside the transaction. */
static int note_recovered(store *s, const server_row *srv, int64_t incident_id, double now,
                          char *err, size_t errlen)
{
	store_stmt *q = NULL;
	double detected = now;
	char *incident_cid = NULL, *type = NULL;
	int rc = store_prepare(s, SQL_DETECTED, &q);
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, incident_id);
		rc = store_step(q);
		if (rc == STORE_ROW) {
			detected = store_col_double(q, 0, now);
			incident_cid = store_col_dup(q, 1);
			type = store_col_dup(q, 2);
		}
	}
	store_stmt_done(q);
	if (rc < 0)
		return store_fail(s, rc, "resolve incident", err, errlen);
	if (rc == STORE_DONE)
		return STORE_OK; /* gone meanwhile: nothing to tell */

	double outage = now - detected;
	notify_note n;
	notify_note_init(&n, NOTIFY_SERVER_RECOVERED, LOG_INFO, log_bound_str("correlation_id"));
	notify_note_title(&n, "Server %s recovered", srv->handle);
	notify_note_line(&n, "Incident %lld (%s) resolved after %.0f s; the server is %s again.",
	                 (long long)incident_id, type ? type : "unknown", outage, srv->status);
	notify_field_str(&n, "server_handle", srv->handle);
	notify_field_str(&n, "ip", srv->ip && *srv->ip ? srv->ip : NULL);
	notify_field_int(&n, "incident_id", incident_id);
	notify_field_str(&n, "incident_type", type);
	notify_field_str(&n, "status", srv->status);
	notify_field_int(&n, "outage_sec", (int64_t)(outage + 0.5));
	notify_field_str(&n, "incident_correlation_id",
	                 incident_cid && *incident_cid ? incident_cid : NULL);
	rc = notify_add(s, &n, now, NULL, err, errlen);
	notify_note_free(&n);
	free(incident_cid);
	free(type);
	return rc;
}

static int resolve_healthy_steps(store *s, int64_t server_id, double now, int64_t *ids, size_t cap,
                                 size_t *n, char *restored, size_t rcap, char *err, size_t errlen)
{
	static const char what[] = "resolve incident";
	server_row srv;
	int rc = collect_ids(s, SQL_HEALTH_ENDS, server_id, ids, cap, n, what, err, errlen);
	for (size_t i = 0; rc == STORE_OK && i < *n; i++)
		rc = resolve_one(s, ids[i], now, "recovered", NULL, what, err, errlen);
	if (rc == STORE_OK && *n)
		rc = restore_if_last(s, server_id, 0, now, what, err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = servers_get(s, server_id, &srv, err, errlen);
	if (rc == STORE_NOTFOUND) { /* nothing to restore or tell */
		copy_out(restored, rcap, NULL);
		return STORE_OK;
	}
	if (rc != STORE_OK)
		return rc;
	copy_out(restored, rcap, srv.status);
	for (size_t i = 0; rc == STORE_OK && i < *n; i++)
		rc = note_recovered(s, &srv, ids[i], now, err, errlen);
	server_row_free(&srv);
	return rc;
}

int incidents_resolve_healthy(store *s, int64_t server_id, double now, int64_t *ids, size_t cap,
                              size_t *n, char *restored, size_t rcap, char *err, size_t errlen)
{
	*n = 0;
	int rc = tx_begin(s, "resolve incident", err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = resolve_healthy_steps(s, server_id, now, ids, cap, n, restored, rcap, err, errlen);
	rc = tx_end(s, rc, "resolve incident", err, errlen);
	if (rc != STORE_OK)
		*n = 0;
	return rc;
}

/* ---- open: provisioning_failed ---- */

static int note_provisioning_failed(store *s, const server_row *srv, const char *error,
                                    const char *correlation_id, double now, char *err,
                                    size_t errlen)
{
	notify_note n;
	notify_note_init(&n, NOTIFY_PROVISIONING_FAILED, LOG_ERROR, correlation_id);
	notify_note_title(&n, "Provisioning of %s failed", srv->handle);
	notify_note_line(&n, "The server is in error with a provisioning_failed incident.");
	notify_note_line(&n, "%s", error ? error : "unknown error");
	notify_field_str(&n, "server_handle", srv->handle);
	notify_field_str(&n, "ip", srv->ip);
	notify_field_str(&n, "error", error);
	int rc = notify_add(s, &n, now, NULL, err, errlen);
	notify_note_free(&n);
	return rc;
}

static int set_details(store *s, int64_t id, const char *details, double now, const char *what,
                       char *err, size_t errlen)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, SQL_SET_DETAILS, &q);
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, id);
		store_bind_double(q, 2, now);
		store_bind_text(q, 3, details);
		rc = store_step_done(q);
	}
	store_stmt_done(q);
	return rc == STORE_OK ? STORE_OK : store_fail(s, rc, what, err, errlen);
}

/* One open provisioning_failed incident per server: a new one, or the open
 * one with the new details; its notification unless acknowledged. */
static int provisioning_failed_steps(store *s, const server_row *srv, const char *error,
                                     const char *details, const char *correlation_id, double now,
                                     char *err, size_t errlen)
{
	static const char what[] = "open incident";
	int64_t id = 0, others = 0;
	bool acked = false;
	int rc = query_int(s, SQL_OPEN_PROVISIONING, ARGS1(srv->id), &id, what, err, errlen);
	if (rc == STORE_OK && id)
		rc = set_details(s, id, details, now, what, err, errlen);
	else if (rc == STORE_OK)
		rc = insert_incident(s, srv->id, "provisioning_failed", now,
		                     correlation_id ? correlation_id : "", details, &id, what, err,
		                     errlen);
	if (rc == STORE_OK)
		rc = query_int(s, SQL_OTHERS_OPEN, ARGS2(srv->id, id), &others, what, err, errlen);
	if (rc == STORE_OK && others == 0) /* a passing check makes it ready */
		rc = servers_forget_previous(s, srv->id, now, err, errlen);
	if (rc == STORE_OK)
		rc = problem_acked(s, srv->id, "provisioning_failed", &acked, what, err, errlen);
	if (rc == STORE_OK && !acked)
		rc = note_provisioning_failed(s, srv, error, correlation_id, now, err, errlen);
	return rc;
}

int incidents_open_provisioning_failed(store *s, const server_row *srv, const char *error,
                                       const char *correlation_id, double now, char *err,
                                       size_t errlen)
{
	cJSON *d = cJSON_CreateObject();
	char *details = NULL;

	if (d && (error ? cJSON_AddStringToObject(d, "error", error)
	                : cJSON_AddNullToObject(d, "error")))
		details = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	if (details == NULL) {
		snprintf(err, errlen, "open incident: out of memory");
		return STORE_ERROR;
	}
	int rc = tx_begin(s, "open incident", err, errlen);
	if (rc == STORE_OK) {
		rc = provisioning_failed_steps(s, srv, error, details, correlation_id, now, err,
		                               errlen);
		rc = tx_end(s, rc, "open incident", err, errlen);
	}
	free(details);
	return rc;
}

/* ---- recovering, resolve, fail ---- */

int incidents_begin_recovery(store *s, int64_t server_id, double now, int64_t *ids, size_t cap,
                             size_t *n, char *err, size_t errlen)
{
	*n = 0;
	int rc = tx_begin(s, "begin recovery", err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = collect_ids(s, SQL_OPEN_OF_SERVER, server_id, ids, cap, n, "begin recovery", err,
	                 errlen);
	for (size_t i = 0; rc == STORE_OK && i < *n; i++)
		rc = update_id_now(s, SQL_RECOVERING, ids[i], now, "begin recovery", err, errlen);
	rc = tx_end(s, rc, "begin recovery", err, errlen);
	if (rc != STORE_OK)
		*n = 0;
	return rc;
}

/* Invariant 6: a failed recovery of acknowledged incidents only is not
 * told again. */
static int all_acked(store *s, const int64_t *ids, size_t n, bool *acked, char *err, size_t errlen)
{
	int rc = STORE_OK;
	*acked = n > 0;
	for (size_t i = 0; rc == STORE_OK && *acked && i < n; i++) {
		int64_t one = 0;
		rc = query_int(s, SQL_ACKED, ARGS1(ids[i]), &one, "end recovery", err, errlen);
		*acked = one != 0;
	}
	return rc;
}

int incidents_end_recovery(store *s, int64_t server_id, const int64_t *ids, size_t n, bool ok,
                           int services_count, double now, const notify_note *note, char *err,
                           size_t errlen)
{
	bool silent = false;
	int rc = tx_begin(s, "end recovery", err, errlen);
	if (rc != STORE_OK)
		return rc;
	for (size_t i = 0; rc == STORE_OK && i < n; i++)
		rc = ok ? resolve_one(s, ids[i], now, "recovery", NULL, "end recovery", err, errlen)
		        : update_id_now(s, SQL_FAIL, ids[i], now, "end recovery", err, errlen);
	if (rc == STORE_OK && (ok || n > 0))
		rc = servers_end_recovery(s, server_id, ok, services_count, now, err, errlen);
	if (rc == STORE_OK && !ok)
		rc = all_acked(s, ids, n, &silent, err, errlen);
	if (rc == STORE_OK && !silent)
		rc = notify_add(s, note, now, NULL, err, errlen);
	return tx_end(s, rc, "end recovery", err, errlen);
}

/* ---- the operator ---- */

/* The incident's server (0 if the row is gone), whether it is open and
 * whether it is acknowledged; STORE_NOTFOUND "no incident N". */
static int incident_state(store *s, int64_t id, int64_t *server_id, bool *open, bool *acked,
                          const char *what, char *err, size_t errlen)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, SQL_STATE, &q);
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, id);
		rc = store_step(q);
		if (rc == STORE_ROW) {
			*server_id = store_col_int64(q, 0);
			*open = store_col_int(q, 1) != 0;
			*acked = store_col_int(q, 2) != 0;
		}
	}
	store_stmt_done(q);
	if (rc == STORE_ROW)
		return STORE_OK;
	if (rc == STORE_DONE) {
		snprintf(err, errlen, "no incident %lld", (long long)id);
		return STORE_NOTFOUND;
	}
	return store_fail(s, rc, what, err, errlen);
}

static int not_open(int64_t id, char *err, size_t errlen)
{
	snprintf(err, errlen, "incident %lld is not open (resolved already)", (long long)id);
	return INCIDENTS_NOT_OPEN;
}

static int ack_steps(store *s, int64_t id, const char *who, const char *reason, double now,
                     bool *already, char *err, size_t errlen)
{
	static const char what[] = "acknowledge incident";
	int64_t server_id = 0;
	bool open = false;
	int rc = incident_state(s, id, &server_id, &open, already, what, err, errlen);
	if (rc != STORE_OK)
		return rc;
	if (!open)
		return not_open(id, err, errlen);
	if (*already)
		return STORE_OK;
	store_stmt *q = NULL;
	rc = store_prepare(s, SQL_ACK, &q);
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, id);
		store_bind_double(q, 2, now);
		store_bind_text(q, 3, who);
		store_bind_text(q, 4, reason);
		rc = store_step_done(q);
	}
	store_stmt_done(q);
	return rc == STORE_OK ? STORE_OK : store_fail(s, rc, what, err, errlen);
}

int incidents_ack(store *s, int64_t id, const char *who, const char *reason, double now,
                  bool *already, char *err, size_t errlen)
{
	*already = false;
	int rc = tx_begin(s, "acknowledge incident", err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = ack_steps(s, id, who, reason, now, already, err, errlen);
	return tx_end(s, rc, "acknowledge incident", err, errlen);
}

static int close_steps(store *s, int64_t id, const char *reason, double now, char *restored,
                       size_t cap, char *err, size_t errlen)
{
	static const char what[] = "close incident";
	int64_t server_id = 0;
	bool open = false, acked = false;
	server_row srv;
	int rc = incident_state(s, id, &server_id, &open, &acked, what, err, errlen);
	if (rc != STORE_OK)
		return rc;
	if (!open)
		return not_open(id, err, errlen);
	rc = resolve_one(s, id, now, "closed", reason, what, err, errlen);
	if (rc == STORE_OK && server_id)
		rc = restore_if_last(s, server_id, id, now, what, err, errlen);
	if (rc == STORE_OK && server_id) /* a new outage counts from 0 */
		rc = servers_reset_failures(s, server_id, now, err, errlen);
	if (rc == STORE_OK && server_id &&
	    (rc = servers_get(s, server_id, &srv, err, errlen)) == STORE_OK) {
		copy_out(restored, cap, srv.status);
		server_row_free(&srv);
	}
	return rc == STORE_NOTFOUND ? STORE_OK : rc; /* the server row is gone */
}

int incidents_close(store *s, int64_t id, const char *reason, double now, char *restored,
                    size_t cap, char *err, size_t errlen)
{
	copy_out(restored, cap, NULL);
	int rc = tx_begin(s, "close incident", err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = close_steps(s, id, reason, now, restored, cap, err, errlen);
	return tx_end(s, rc, "close incident", err, errlen);
}

/* ---- listings ---- */

static incident_row row_read(store_stmt *q)
{
	return (incident_row){
	        .id = store_col_int64(q, 0),
	        .server_handle = store_col_text(q, 1),
	        .type = store_col_text(q, 2),
	        .status = store_col_text(q, 3),
	        .detected_at = store_col_double(q, 4, 0),
	        .resolved_at = store_col_double(q, 5, 0),
	        .correlation_id = store_col_text(q, 6),
	        .details = store_col_text(q, 7),
	        .acknowledged_at = store_col_double(q, 8, 0),
	        .acknowledged_by = store_col_text(q, 9),
	        .ack_reason = store_col_text(q, 10),
	        .resolution = store_col_text(q, 11),
	        .resolution_reason = store_col_text(q, 12),
	};
}

/* Every row of q (?1 bound) to cb. */
static int list_rows(store_stmt *q, incident_cb cb, void *ctx, size_t *count)
{
	int rc;
	while ((rc = store_step(q)) == STORE_ROW) {
		incident_row r = row_read(q);
		(*count)++;
		int stop = cb(ctx, &r);
		if (stop) {
			rc = stop;
			break;
		}
	}
	store_stmt_done(q);
	return rc == STORE_DONE ? STORE_OK : rc;
}

int incidents_list(store *s, bool open_only, incident_cb cb, void *ctx)
{
	store_stmt *q = NULL;
	size_t count = 0;
	int rc = store_prepare(s, SQL_LIST, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(q, 1, open_only ? 1 : 0);
	return list_rows(q, cb, ctx, &count);
}

int incidents_get(store *s, int64_t id, incident_cb cb, void *ctx)
{
	store_stmt *q = NULL;
	size_t count = 0;
	int rc = store_prepare(s, SQL_GET, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(q, 1, id);
	rc = list_rows(q, cb, ctx, &count);
	if (rc == STORE_OK && count == 0)
		return store_set_error(s, STORE_NOTFOUND, "no such incident");
	return rc;
}

int incidents_open_count(store *s, int64_t *out)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, SQL_OPEN_COUNT, &q);
	*out = 0;
	if (rc == STORE_OK) {
		rc = store_step(q);
		if (rc == STORE_ROW) {
			*out = store_col_int64(q, 0);
			rc = STORE_OK;
		}
	}
	store_stmt_done(q);
	return rc;
}
