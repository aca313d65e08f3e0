/*
 * incidents — see incidents.h. Invariants:
 *
 *  1. At most one open server_unreachable incident per server: the look
 *     for an open one and the insert are in one transaction (store_tx_begin
 *     takes the write lock at once, so two processes cannot both open one).
 *  2. Every transition is one transaction with the server's status change
 *     (servers.c) and its outbox row: a failed step, the notification
 *     included, rolls all of it back.
 *  3. A recovery moves its incidents to recovering before it works and to
 *     resolved | failed after, in two transactions, so a crash in between
 *     leaves them open (recovering), never resolved.
 *  4. The SQL of the incidents table is here and nowhere else (the one
 *     exception, INCIDENTS_OPEN_UNREACHABLE, is a condition other queries
 *     join on).
 */
#include "incidents.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "log.h"

static const char SQL_OPEN_UNREACHABLE[] =
        "SELECT max(id) FROM incidents WHERE server_id = ?1 AND " INCIDENTS_OPEN_UNREACHABLE;
static const char SQL_INSERT[] =
        "INSERT INTO incidents (server_id, type, status, detected_at, correlation_id, details,"
        " updated_at) VALUES (?1, ?2, 'detected', ?3, ?4, ?5, ?3) RETURNING id";
static const char SQL_CLOSE_UNREACHABLE[] =
        "UPDATE incidents SET status = 'resolved', resolved_at = ?2, updated_at = ?2"
        " WHERE server_id = ?1 AND " INCIDENTS_OPEN_UNREACHABLE;
static const char SQL_DETECTED[] =
        "SELECT detected_at, correlation_id FROM incidents WHERE id = ?1";
static const char SQL_OPEN_OF_SERVER[] =
        "SELECT id FROM incidents WHERE server_id = ?1 AND resolved_at IS NULL"
        " AND status <> 'resolved' ORDER BY id";
static const char SQL_RECOVERING[] =
        "UPDATE incidents SET status = 'recovering', updated_at = ?2 WHERE id = ?1";
static const char SQL_RESOLVE[] =
        "UPDATE incidents SET status = 'resolved', resolved_at = ?2, updated_at = ?2 WHERE id = ?1";
static const char SQL_FAIL[] =
        "UPDATE incidents SET status = 'failed', updated_at = ?2 WHERE id = ?1";
static const char SQL_LIST[] =
        "SELECT i.id, s.handle, i.type, i.status, i.detected_at, i.resolved_at,"
        " i.correlation_id, i.details FROM incidents i"
        " LEFT JOIN servers s ON s.id = i.server_id"
        " WHERE ?1 = 0 OR i.status IN ('detected', 'recovering')"
        " ORDER BY i.detected_at DESC, i.id DESC";
static const char SQL_OPEN_COUNT[] =
        "SELECT count(*) FROM incidents WHERE status IN ('detected', 'recovering')";

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

/* The open server_unreachable incident of the server, 0 if none. */
static int open_unreachable_id(store *s, int64_t server_id, int64_t *id, const char *what,
                               char *err, size_t errlen)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, SQL_OPEN_UNREACHABLE, &q);
	*id = 0;
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, server_id);
		rc = store_step(q);
		if (rc == STORE_ROW) {
			*id = store_col_int64(q, 0);
			rc = STORE_OK;
		}
	}
	store_stmt_done(q);
	return rc == STORE_OK ? STORE_OK : store_fail(s, rc, what, err, errlen);
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

/* ---- close: server_unreachable ---- */

/* The server_recovered notification, from the incident and the server as
 * they are now, inside the transaction. */
static int note_recovered(store *s, const server_row *srv, int64_t incident_id, double now,
                          char *err, size_t errlen)
{
	store_stmt *q = NULL;
	double detected = now;
	char *incident_cid = NULL;
	int rc = store_prepare(s, SQL_DETECTED, &q);
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, incident_id);
		rc = store_step(q);
		if (rc == STORE_ROW) {
			detected = store_col_double(q, 0, now);
			incident_cid = store_col_dup(q, 1);
		}
	}
	store_stmt_done(q);
	if (rc < 0)
		return store_fail(s, rc, "close incident", err, errlen);
	if (rc == STORE_DONE)
		return STORE_OK; /* gone meanwhile: nothing to tell */

	double outage = now - detected;
	notify_note n;
	notify_note_init(&n, NOTIFY_SERVER_RECOVERED, LOG_INFO, log_bound_str("correlation_id"));
	notify_note_title(&n, "Server %s recovered", srv->handle);
	notify_note_line(&n, "Incident %lld resolved after %.0f s; the server is %s again.",
	                 (long long)incident_id, outage, srv->status);
	notify_field_str(&n, "server_handle", srv->handle);
	notify_field_str(&n, "ip", srv->ip && *srv->ip ? srv->ip : NULL);
	notify_field_int(&n, "incident_id", incident_id);
	notify_field_str(&n, "status", srv->status);
	notify_field_int(&n, "outage_sec", (int64_t)(outage + 0.5));
	notify_field_str(&n, "incident_correlation_id",
	                 incident_cid && *incident_cid ? incident_cid : NULL);
	rc = notify_add(s, &n, now, NULL, err, errlen);
	notify_note_free(&n);
	free(incident_cid);
	return rc;
}

static int close_unreachable_steps(store *s, int64_t server_id, double now, int64_t *incident_id,
                                   char *restored, size_t cap, char *err, size_t errlen)
{
	server_row srv;
	int rc = open_unreachable_id(s, server_id, incident_id, "close incident", err, errlen);
	if (rc == STORE_OK && *incident_id)
		rc = update_id_now(s, SQL_CLOSE_UNREACHABLE, server_id, now, "close incident", err,
		                   errlen);
	if (rc == STORE_OK && *incident_id)
		rc = servers_restore_previous(s, server_id, now, err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = servers_get(s, server_id, &srv, err, errlen);
	if (rc == STORE_NOTFOUND) { /* nothing to restore or tell */
		copy_out(restored, cap, NULL);
		return STORE_OK;
	}
	if (rc != STORE_OK)
		return rc;
	copy_out(restored, cap, srv.status);
	if (*incident_id)
		rc = note_recovered(s, &srv, *incident_id, now, err, errlen);
	server_row_free(&srv);
	return rc;
}

int incidents_close_unreachable(store *s, int64_t server_id, double now, int64_t *incident_id,
                                char *restored, size_t cap, char *err, size_t errlen)
{
	*incident_id = 0;
	int rc = tx_begin(s, "close incident", err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = close_unreachable_steps(s, server_id, now, incident_id, restored, cap, err, errlen);
	rc = tx_end(s, rc, "close incident", err, errlen);
	if (rc != STORE_OK)
		*incident_id = 0;
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

int incidents_open_provisioning_failed(store *s, const server_row *srv, const char *error,
                                       const char *correlation_id, double now, char *err,
                                       size_t errlen)
{
	cJSON *d = cJSON_CreateObject();
	char *details = NULL;
	int64_t id = 0;

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
		rc = insert_incident(s, srv->id, "provisioning_failed", now,
		                     correlation_id ? correlation_id : "", details, &id,
		                     "open incident", err, errlen);
		if (rc == STORE_OK)
			rc = note_provisioning_failed(s, srv, error, correlation_id, now, err,
			                              errlen);
		rc = tx_end(s, rc, "open incident", err, errlen);
	}
	free(details);
	return rc;
}

/* ---- recovering, resolve, fail ---- */

static int open_ids(store *s, int64_t server_id, int64_t *ids, size_t cap, size_t *n, char *err,
                    size_t errlen)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, SQL_OPEN_OF_SERVER, &q);
	if (rc == STORE_OK) {
		store_bind_int64(q, 1, server_id);
		while (*n < cap && (rc = store_step(q)) == STORE_ROW)
			ids[(*n)++] = store_col_int64(q, 0);
		if (rc == STORE_ROW)
			rc = STORE_DONE; /* more than cap: the first cap */
	}
	store_stmt_done(q);
	return rc == STORE_DONE ? STORE_OK : store_fail(s, rc, "begin recovery", err, errlen);
}

int incidents_begin_recovery(store *s, int64_t server_id, double now, int64_t *ids, size_t cap,
                             size_t *n, char *err, size_t errlen)
{
	*n = 0;
	int rc = tx_begin(s, "begin recovery", err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = open_ids(s, server_id, ids, cap, n, err, errlen);
	for (size_t i = 0; rc == STORE_OK && i < *n; i++)
		rc = update_id_now(s, SQL_RECOVERING, ids[i], now, "begin recovery", err, errlen);
	rc = tx_end(s, rc, "begin recovery", err, errlen);
	if (rc != STORE_OK)
		*n = 0;
	return rc;
}

int incidents_end_recovery(store *s, int64_t server_id, const int64_t *ids, size_t n, bool ok,
                           int services_count, double now, const notify_note *note, char *err,
                           size_t errlen)
{
	int rc = tx_begin(s, "end recovery", err, errlen);
	if (rc != STORE_OK)
		return rc;
	for (size_t i = 0; rc == STORE_OK && i < n; i++)
		rc = update_id_now(s, ok ? SQL_RESOLVE : SQL_FAIL, ids[i], now, "end recovery", err,
		                   errlen);
	if (rc == STORE_OK && (ok || n > 0))
		rc = servers_end_recovery(s, server_id, ok, services_count, now, err, errlen);
	if (rc == STORE_OK)
		rc = notify_add(s, note, now, NULL, err, errlen);
	return tx_end(s, rc, "end recovery", err, errlen);
}

/* ---- listings ---- */

int incidents_list(store *s, bool open_only, incident_cb cb, void *ctx)
{
	store_stmt *q = NULL;
	int rc = store_prepare(s, SQL_LIST, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(q, 1, open_only ? 1 : 0);
	while ((rc = store_step(q)) == STORE_ROW) {
		incident_row r = {
		        .id = store_col_int64(q, 0),
		        .server_handle = store_col_text(q, 1),
		        .type = store_col_text(q, 2),
		        .status = store_col_text(q, 3),
		        .detected_at = store_col_double(q, 4, 0),
		        .resolved_at = store_col_double(q, 5, 0),
		        .correlation_id = store_col_text(q, 6),
		        .details = store_col_text(q, 7),
		};
		int stop = cb(ctx, &r);
		if (stop) {
			rc = stop;
			break;
		}
	}
	store_stmt_done(q);
	return rc == STORE_DONE ? STORE_OK : rc;
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
