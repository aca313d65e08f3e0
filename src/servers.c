/*
 * servers — health check bookkeeping and server_unreachable incidents; see
 * servers.h.
 *
 * Invariants:
 *  1. At most one open server_unreachable incident per server: the check
 *     and the insert happen in one BEGIN IMMEDIATE transaction.
 *  2. Opening an incident moves the server to error and keeps the status it
 *     had in previous_status, in the same transaction; resolving restores
 *     it only while the server is still in error (an operator who moved it
 *     meanwhile wins).
 *  3. Counters are written as the caller computed them with
 *     servers_debounce; this module never decides health.
 *  4. Opening an incident adds a server_unreachable notification and
 *     resolving one a server_recovered notification (notify_text.h) in the
 *     same transaction: a failed outbox insert rolls the change back.
 */
#include "servers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "notify_text.h"

#define OPEN_INCIDENT "type = 'server_unreachable' AND resolved_at IS NULL AND status <> 'resolved'"

static int fail(sqlite3 *db, int rc, const char *what, char *err, size_t errlen)
{
	return store_sqlite_error(db, rc, what, err, errlen);
}

static char *dup_col(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	return t ? strdup((const char *)t) : NULL;
}

void server_list_free(server_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		free(list->rows[i].handle);
		free(list->rows[i].ip);
		free(list->rows[i].ssh_user);
		free(list->rows[i].status);
	}
	free(list->rows);
	list->rows = NULL;
	list->count = 0;
}

static int append_row(server_list *out, sqlite3_stmt *st)
{
	server_row *rows = realloc(out->rows, (out->count + 1) * sizeof *rows);
	if (rows == NULL)
		return -1;
	out->rows = rows;
	server_row *r = &rows[out->count++];
	*r = (server_row){
	        .id = sqlite3_column_int64(st, 0),
	        .handle = dup_col(st, 1),
	        .ip = dup_col(st, 2),
	        .port = sqlite3_column_type(st, 3) == SQLITE_NULL ? 22 : sqlite3_column_int(st, 3),
	        .ssh_user = dup_col(st, 4),
	        .status = dup_col(st, 5),
	        .consecutive_failures = sqlite3_column_int(st, 6),
	        .consecutive_successes = sqlite3_column_int(st, 7),
	        .open_incident = sqlite3_column_int64(st, 8),
	};
	if (r->port <= 0)
		r->port = 22;
	return r->handle && r->status ? 0 : -1;
}

int servers_list_for_check(store *s, const char *const *statuses, server_list *out, char *err,
                           size_t errlen)
{
	static const char sql[] =
	        "SELECT s.id, s.handle, s.ip, s.port, s.ssh_user, s.status,"
	        " s.consecutive_failures, s.consecutive_successes,"
	        " (SELECT max(i.id) FROM incidents i WHERE i.server_id = s.id AND " OPEN_INCIDENT
	        ")"
	        " FROM servers s WHERE s.is_managed = 1 AND (s.status IN (SELECT value FROM"
	        " json_each(?1)) OR EXISTS (SELECT 1 FROM incidents i WHERE i.server_id = s.id"
	        " AND " OPEN_INCIDENT ")) ORDER BY s.handle";
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	char list[1024] = "[";
	size_t used = 1;
	int rc;

	*out = (server_list){0};
	for (size_t i = 0; statuses && statuses[i]; i++)
		used += (size_t)snprintf(list + used, used < sizeof list ? sizeof list - used : 0,
		                         "%s\"%s\"", i ? "," : "", statuses[i]);
	if (used + 2 > sizeof list) {
		snprintf(err, errlen, "too many statuses");
		return STORE_ERROR;
	}
	strcat(list, "]");
	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, "list servers", err, errlen);
	sqlite3_bind_text(st, 1, list, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (append_row(out, st) != 0) {
			snprintf(err, errlen, "list servers: out of memory");
			sqlite3_finalize(st);
			server_list_free(out);
			return STORE_ERROR;
		}
	}
	if (rc != SQLITE_DONE) {
		rc = fail(db, rc, "list servers", err, errlen);
		server_list_free(out);
	} else {
		rc = STORE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

health_transition servers_debounce(health_counters *c, bool passed, int failure_threshold,
                                   int success_threshold)
{
	if (failure_threshold < 1)
		failure_threshold = 1;
	if (success_threshold < 1)
		success_threshold = 1;
	if (passed) {
		c->failures = 0;
		c->successes++;
		if (c->unhealthy && c->successes >= success_threshold) {
			c->unhealthy = false;
			return HEALTH_BECAME_HEALTHY;
		}
		return HEALTH_STEADY;
	}
	c->successes = 0;
	c->failures++;
	if (!c->unhealthy && c->failures >= failure_threshold) {
		c->unhealthy = true;
		return HEALTH_BECAME_UNHEALTHY;
	}
	return HEALTH_STEADY;
}

int servers_record_check(store *s, int64_t server_id, double now, double response_ms,
                         const health_counters *c, char *err, size_t errlen)
{
	static const char sql[] =
	        "UPDATE servers SET last_health_check = ?2, response_time_ms = ?3,"
	        " consecutive_failures = ?4, consecutive_successes = ?5, updated_at = ?2"
	        " WHERE id = ?1";
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return fail(db, rc, "record health check", err, errlen);
	sqlite3_bind_int64(st, 1, server_id);
	sqlite3_bind_double(st, 2, now);
	if (response_ms >= 0)
		sqlite3_bind_double(st, 3, response_ms);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_int(st, 4, c->failures);
	sqlite3_bind_int(st, 5, c->successes);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? STORE_OK : fail(db, rc, "record health check", err, errlen);
	sqlite3_finalize(st);
	return rc;
}

/* ---- transactions ---- */

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? STORE_OK : fail(db, rc, sql, err, errlen);
}

/* Prepare sql, bind int64 a and b (b only if the statement has ?2), step
 * once. Returns SQLITE_ROW/SQLITE_DONE with *st left for reading, or an
 * error code (then *st is finalized). */
static int step_one(sqlite3 *db, sqlite3_stmt **st, const char *sql, int64_t a, double b)
{
	int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_int64(*st, 1, a);
	if (sqlite3_bind_parameter_count(*st) >= 2)
		sqlite3_bind_double(*st, 2, b);
	rc = sqlite3_step(*st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		sqlite3_finalize(*st);
		*st = NULL;
	}
	return rc;
}

static void copy_text(sqlite3_stmt *st, int col, char *buf, size_t cap, const char *fallback)
{
	const unsigned char *t = st ? sqlite3_column_text(st, col) : NULL;
	if (buf && cap)
		snprintf(buf, cap, "%s", t ? (const char *)t : fallback);
}

/* The server_unreachable notification of a new incident; details is the
 * caller's JSON (stage, error_type, error, failures), copied into fields. */
static int note_unreachable(store *s, const char *handle, const char *ip, int64_t incident_id,
                            const char *previous, const char *correlation_id, const char *details,
                            double now, char *err, size_t errlen)
{
	notify_note n;
	cJSON *d = details ? cJSON_Parse(details) : NULL;
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(d, "error");
	const cJSON *stage = cJSON_GetObjectItemCaseSensitive(d, "stage");

	notify_note_init(&n, NOTIFY_SERVER_UNREACHABLE, LOG_CRITICAL, correlation_id);
	notify_note_title(&n, "Server %s is unreachable", handle);
	notify_note_line(&n, "Incident %lld opened; the server was %s and is now in error.",
	                 (long long)incident_id, previous && *previous ? previous : "unknown");
	if (cJSON_IsString(stage))
		notify_note_line(&n, "Failed at stage %s%s%s", stage->valuestring,
		                 cJSON_IsString(error) ? ": " : "",
		                 cJSON_IsString(error) ? error->valuestring : "");
	notify_field_str(&n, "server_handle", handle);
	notify_field_str(&n, "ip", ip);
	notify_field_int(&n, "incident_id", incident_id);
	notify_field_str(&n, "previous_status", previous);
	for (const cJSON *it = d && cJSON_IsObject(d) ? d->child : NULL; it && n.fields;
	     it = it->next)
		if (!cJSON_HasObjectItem(n.fields, it->string))
			cJSON_AddItemToObject(n.fields, it->string, cJSON_Duplicate(it, true));
	int rc = notify_add(s, &n, now, NULL, err, errlen);
	notify_note_free(&n);
	cJSON_Delete(d);
	return rc;
}

static int open_locked(store *s, int64_t server_id, double now, const char *correlation_id,
                       const char *details, int64_t *incident_id, bool *created, char *previous,
                       size_t cap, char *err, size_t errlen)
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	char handle[128], ip[64], before[32];
	int rc = step_one(
	        db, &st,
	        "SELECT (SELECT max(id) FROM incidents WHERE server_id = ?1 AND " OPEN_INCIDENT
	        "), status, previous_status, handle, ip FROM servers WHERE id = ?1",
	        server_id, 0);
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(st);
		snprintf(err, errlen, "open incident: server %lld not found", (long long)server_id);
		return rc == SQLITE_DONE ? STORE_NOTFOUND
		                         : fail(db, rc, "open incident", err, errlen);
	}
	*incident_id = sqlite3_column_int64(st, 0);
	if (*incident_id) { /* invariant 1 */
		copy_text(st, 2, previous, cap, "");
		sqlite3_finalize(st);
		return STORE_OK;
	}
	copy_text(st, 1, previous, cap, "");
	copy_text(st, 1, before, sizeof before, "");
	copy_text(st, 3, handle, sizeof handle, "");
	copy_text(st, 4, ip, sizeof ip, "");
	sqlite3_finalize(st);
	rc = sqlite3_prepare_v2(db,
	                        "INSERT INTO incidents (server_id, type, status, detected_at,"
	                        " correlation_id, details, updated_at)"
	                        " VALUES (?1, 'server_unreachable', 'detected', ?2, ?3, ?4, ?2)",
	                        -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, "open incident", err, errlen);
	sqlite3_bind_int64(st, 1, server_id);
	sqlite3_bind_double(st, 2, now);
	sqlite3_bind_text(st, 3, correlation_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, details, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(db, rc, "open incident", err, errlen);
	*incident_id = sqlite3_last_insert_rowid(db);
	*created = true;
	rc = step_one(db, &st,
	              "UPDATE servers SET previous_status = status, status = 'error',"
	              " updated_at = ?2 WHERE id = ?1 AND status <> 'error'",
	              server_id, now);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(db, rc, "open incident", err, errlen);
	return note_unreachable(s, handle, ip[0] ? ip : NULL, *incident_id, before, correlation_id,
	                        details, now, err, errlen);
}

int servers_incident_open(store *s, int64_t server_id, double now, const char *correlation_id,
                          const char *details, int64_t *incident_id, bool *created, char *previous,
                          size_t cap, char *err, size_t errlen)
{
	sqlite3 *db = store_db(s);
	*incident_id = 0;
	*created = false;
	int rc = exec_sql(db, "BEGIN IMMEDIATE", err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = open_locked(s, server_id, now, correlation_id, details, incident_id, created, previous,
	                 cap, err, errlen);
	if (rc == STORE_OK)
		rc = exec_sql(db, "COMMIT", err, errlen);
	if (rc != STORE_OK) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		*created = false;
	}
	return rc;
}

/* The server_recovered notification of a resolved incident: read the
 * incident and the server as they are now, inside the transaction. */
static int note_recovered(store *s, int64_t server_id, int64_t incident_id, double now, char *err,
                          size_t errlen)
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	char handle[128], ip[64], status[32], incident_cid[128];
	int rc = step_one(db, &st,
	                  "SELECT s.handle, s.ip, s.status, i.detected_at, i.correlation_id"
	                  " FROM servers s JOIN incidents i ON i.server_id = s.id"
	                  " WHERE s.id = ?1 AND i.id = ?2",
	                  server_id, (double)incident_id);
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(st);
		return rc == SQLITE_DONE ? STORE_OK : fail(db, rc, "resolve incident", err, errlen);
	}
	copy_text(st, 0, handle, sizeof handle, "");
	copy_text(st, 1, ip, sizeof ip, "");
	copy_text(st, 2, status, sizeof status, "");
	copy_text(st, 4, incident_cid, sizeof incident_cid, "");
	double outage = now - sqlite3_column_double(st, 3);
	sqlite3_finalize(st);

	notify_note n;
	notify_note_init(&n, NOTIFY_SERVER_RECOVERED, LOG_INFO, log_bound_str("correlation_id"));
	notify_note_title(&n, "Server %s recovered", handle);
	notify_note_line(&n, "Incident %lld resolved after %.0f s; the server is %s again.",
	                 (long long)incident_id, outage, status);
	notify_field_str(&n, "server_handle", handle);
	notify_field_str(&n, "ip", ip[0] ? ip : NULL);
	notify_field_int(&n, "incident_id", incident_id);
	notify_field_str(&n, "status", status);
	notify_field_int(&n, "outage_sec", (int64_t)(outage + 0.5));
	notify_field_str(&n, "incident_correlation_id", incident_cid[0] ? incident_cid : NULL);
	rc = notify_add(s, &n, now, NULL, err, errlen);
	notify_note_free(&n);
	return rc;
}

static int resolve_locked(store *s, int64_t server_id, double now, int64_t *incident_id,
                          char *restored, size_t cap, char *err, size_t errlen)
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	int rc = step_one(db, &st,
	                  "SELECT max(id) FROM incidents WHERE server_id = ?1 AND " OPEN_INCIDENT,
	                  server_id, 0);
	if (rc != SQLITE_ROW)
		return fail(db, rc, "resolve incident", err, errlen);
	*incident_id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (*incident_id) {
		rc = step_one(db, &st,
		              "UPDATE incidents SET status = 'resolved', resolved_at = ?2,"
		              " updated_at = ?2 WHERE server_id = ?1 AND " OPEN_INCIDENT,
		              server_id, now);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return fail(db, rc, "resolve incident", err, errlen);
	}
	if (*incident_id == 0) { /* not ours to restore */
		rc = step_one(db, &st, "SELECT status FROM servers WHERE id = ?1", server_id, 0);
		copy_text(rc == SQLITE_ROW ? st : NULL, 0, restored, cap, "");
		sqlite3_finalize(st);
		return STORE_OK;
	}
	rc = step_one(db, &st,
	              "UPDATE servers SET status = coalesce(previous_status, 'ready'),"
	              " previous_status = NULL, updated_at = ?2 WHERE id = ?1 AND status = 'error'",
	              server_id, now);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(db, rc, "resolve incident", err, errlen);
	rc = step_one(db, &st, "SELECT status FROM servers WHERE id = ?1", server_id, 0);
	copy_text(rc == SQLITE_ROW ? st : NULL, 0, restored, cap, "");
	sqlite3_finalize(st);
	return note_recovered(s, server_id, *incident_id, now, err, errlen);
}

int servers_incident_resolve(store *s, int64_t server_id, double now, int64_t *incident_id,
                             char *restored, size_t cap, char *err, size_t errlen)
{
	sqlite3 *db = store_db(s);
	*incident_id = 0;
	int rc = exec_sql(db, "BEGIN IMMEDIATE", err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = resolve_locked(s, server_id, now, incident_id, restored, cap, err, errlen);
	if (rc == STORE_OK)
		rc = exec_sql(db, "COMMIT", err, errlen);
	if (rc != STORE_OK) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		*incident_id = 0;
	}
	return rc;
}
