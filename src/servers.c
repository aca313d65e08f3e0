/*
 * servers — the servers table: lookups, health check bookkeeping, the
 * provisioning claim and the status changes of the server's side of an
 * incident; see servers.h.
 *
 * Invariants:
 *  1. Counters are written as the caller computed them with
 *     servers_debounce; this module never decides health.
 *  2. The status changes (servers_mark_unreachable, servers_restore_previous,
 *     servers_end_recovery, servers_set_status) never begin a transaction:
 *     they are steps of the caller's (incidents.c, provisioner.c), which
 *     writes the incident and its notification with them.
 *  3. Opening an incident keeps the status the server had in
 *     previous_status; restoring it happens only while the server is still
 *     in error (an operator who moved it meanwhile wins).
 *  4. A server is claimed for provisioning by one guarded UPDATE, so two
 *     runs (or processes) never both claim it.
 */
#include "servers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "incidents.h"

void server_row_free(server_row *r)
{
	free(r->handle);
	free(r->ip);
	free(r->ssh_user);
	free(r->status);
	free(r->previous_status);
	*r = (server_row){0};
}

void server_list_free(server_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		server_row_free(&list->rows[i]);
	free(list->rows);
	list->rows = NULL;
	list->count = 0;
}

/* Columns id, handle, ip, port, ssh_user, status from column 0 on. */
static int read_row(store_stmt *q, server_row *r)
{
	*r = (server_row){
	        .id = store_col_int64(q, 0),
	        .handle = store_col_dup(q, 1),
	        .ip = store_col_dup(q, 2),
	        .port = store_col_null(q, 3) ? 22 : store_col_int(q, 3),
	        .ssh_user = store_col_dup(q, 4),
	        .status = store_col_dup(q, 5),
	};
	if (r->port <= 0)
		r->port = 22;
	return r->handle && r->status ? 0 : -1;
}

/* Append the row read_row reads; extra columns are the caller's. */
static server_row *append_row(server_list *out, store_stmt *q)
{
	server_row *rows = realloc(out->rows, (out->count + 1) * sizeof *rows);
	if (rows == NULL)
		return NULL;
	out->rows = rows;
	server_row *r = &rows[out->count++];
	if (read_row(q, r) != 0)
		return NULL; /* the row is freed with the list */
	return r;
}

/* Step q to the end, appending each row; fn (may be NULL) reads the
 * columns after status. Frees out on failure. */
static int collect_rows(store *s, store_stmt *q, server_list *out,
                        void (*fn)(store_stmt *q, server_row *r), const char *what, char *err,
                        size_t errlen)
{
	int rc;
	while ((rc = store_step(q)) == STORE_ROW) {
		server_row *r = append_row(out, q);
		if (r == NULL) {
			rc = store_set_error(s, STORE_ERROR, "out of memory");
			break;
		}
		if (fn)
			fn(q, r);
	}
	store_stmt_done(q);
	if (rc == STORE_DONE)
		return STORE_OK;
	server_list_free(out);
	return store_fail(s, rc, what, err, errlen);
}

static void read_check_columns(store_stmt *q, server_row *r)
{
	r->consecutive_failures = store_col_int(q, 6);
	r->consecutive_successes = store_col_int(q, 7);
	r->open_incident = store_col_int64(q, 8);
	r->open_provisioning = store_col_int64(q, 9);
}

int servers_list_for_check(store *s, const char *const *statuses, server_list *out, char *err,
                           size_t errlen)
{
	static const char sql[] =
	        "SELECT s.id, s.handle, s.ip, s.port, s.ssh_user, s.status,"
	        " s.consecutive_failures, s.consecutive_successes,"
	        " (SELECT max(i.id) FROM incidents i WHERE i.server_id = s.id "
	        "AND " INCIDENTS_OPEN_UNREACHABLE "),"
	        " (SELECT max(i.id) FROM incidents i WHERE i.server_id = s.id "
	        "AND " INCIDENTS_OPEN_PROVISIONING ")"
	        " FROM servers s WHERE s.is_managed = 1 AND (s.status IN (SELECT value FROM"
	        " json_each(?1)) OR EXISTS (SELECT 1 FROM incidents i WHERE i.server_id = s.id"
	        " AND i.type IN ('server_unreachable', 'provisioning_failed') AND i." INCIDENTS_OPEN
	        ")) ORDER BY s.handle";
	store_stmt *q = NULL;
	cJSON *list = cJSON_CreateArray();
	char *json = NULL;
	int rc;

	*out = (server_list){0};
	for (size_t i = 0; list && statuses && statuses[i]; i++)
		cJSON_AddItemToArray(list, cJSON_CreateString(statuses[i]));
	json = list ? cJSON_PrintUnformatted(list) : NULL;
	cJSON_Delete(list);
	if (json == NULL) {
		snprintf(err, errlen, "list servers: out of memory");
		return STORE_ERROR;
	}
	rc = store_prepare(s, sql, &q);
	if (rc == STORE_OK) {
		store_bind_text(q, 1, json);
		rc = collect_rows(s, q, out, read_check_columns, "list servers", err, errlen);
	} else {
		rc = store_fail(s, rc, "list servers", err, errlen);
	}
	free(json);
	return rc;
}

int servers_find(store *s, const char *handle, server_list *out, bool *is_managed, char *err,
                 size_t errlen)
{
	static const char sql[] = "SELECT id, handle, ip, port, ssh_user, status, is_managed"
	                          " FROM servers WHERE handle = ?1";
	store_stmt *q = NULL;
	int rc = store_prepare(s, sql, &q);

	*out = (server_list){0};
	if (rc != STORE_OK)
		return store_fail(s, rc, "find server", err, errlen);
	store_bind_text(q, 1, handle);
	rc = store_step(q);
	if (rc == STORE_ROW && append_row(out, q) == NULL)
		rc = store_set_error(s, STORE_ERROR, "out of memory");
	if (rc == STORE_ROW && is_managed)
		*is_managed = store_col_int(q, 6) != 0;
	store_stmt_done(q);
	if (rc == STORE_ROW)
		return STORE_OK;
	server_list_free(out);
	if (rc == STORE_DONE) {
		snprintf(err, errlen, "no server '%s'", handle);
		return STORE_NOTFOUND;
	}
	return store_fail(s, rc, "find server", err, errlen);
}

int servers_get(store *s, int64_t id, server_row *out, char *err, size_t errlen)
{
	static const char sql[] = "SELECT id, handle, ip, port, ssh_user, status, previous_status"
	                          " FROM servers WHERE id = ?1";
	store_stmt *q = NULL;
	int rc = store_prepare(s, sql, &q);

	*out = (server_row){0};
	if (rc != STORE_OK)
		return store_fail(s, rc, "get server", err, errlen);
	store_bind_int64(q, 1, id);
	rc = store_step(q);
	if (rc == STORE_ROW) {
		int bad = read_row(q, out);
		out->previous_status = store_col_dup(q, 6);
		if (bad)
			rc = store_set_error(s, STORE_ERROR, "out of memory");
	}
	store_stmt_done(q);
	if (rc == STORE_ROW)
		return STORE_OK;
	server_row_free(out);
	if (rc == STORE_DONE) {
		snprintf(err, errlen, "server %lld not found", (long long)id);
		return STORE_NOTFOUND;
	}
	return store_fail(s, rc, "get server", err, errlen);
}

int servers_count_by_status(store *s, servers_count_cb cb, void *ctx)
{
	static const char sql[] =
	        "SELECT status, count(*) FROM servers GROUP BY status ORDER BY status";
	store_stmt *q = NULL;
	int rc = store_prepare(s, sql, &q);
	if (rc != STORE_OK)
		return rc;
	while ((rc = store_step(q)) == STORE_ROW) {
		int stop = cb(ctx, store_col_text(q, 0), store_col_int64(q, 1));
		if (stop) {
			rc = stop;
			break;
		}
	}
	store_stmt_done(q);
	return rc == STORE_DONE ? STORE_OK : rc;
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

/* ---- updates of one server: ?1 is its id, ?2 the time ---- */

/* Prepare sql with ?1 = id and ?2 = now bound, for the caller's further
 * bindings when it returns STORE_OK. */
static int update_prepare(store *s, const char *sql, int64_t id, double now, store_stmt **q)
{
	int rc = store_prepare(s, sql, q);
	if (rc == STORE_OK) {
		store_bind_int64(*q, 1, id);
		store_bind_double(*q, 2, now);
	}
	return rc;
}

/* Step q when rc (update_prepare's) is STORE_OK, give it back; *changes
 * (may be NULL) gets the rows changed. */
static int update_finish(store *s, store_stmt *q, int rc, int64_t *changes, const char *what,
                         char *err, size_t errlen)
{
	if (rc == STORE_OK)
		rc = store_step_done(q);
	if (rc == STORE_OK && changes)
		*changes = store_changes(s);
	store_stmt_done(q);
	return rc == STORE_OK ? STORE_OK : store_fail(s, rc, what, err, errlen);
}

int servers_record_check(store *s, int64_t server_id, double now, double response_ms,
                         const health_counters *c, char *err, size_t errlen)
{
	static const char sql[] =
	        "UPDATE servers SET last_health_check = ?2, response_time_ms = ?3,"
	        " consecutive_failures = ?4, consecutive_successes = ?5, updated_at = ?2"
	        " WHERE id = ?1";
	store_stmt *q = NULL;
	int rc = update_prepare(s, sql, server_id, now, &q);
	if (rc == STORE_OK) {
		if (response_ms >= 0)
			store_bind_double(q, 3, response_ms);
		else
			store_bind_null(q, 3);
		store_bind_int64(q, 4, c->failures);
		store_bind_int64(q, 5, c->successes);
	}
	return update_finish(s, q, rc, NULL, "record health check", err, errlen);
}

/* ---- status changes, inside the caller's transaction (invariant 2) ---- */

int servers_mark_unreachable(store *s, int64_t id, double now, char *err, size_t errlen)
{
	static const char sql[] = "UPDATE servers SET previous_status = status, status = 'error',"
	                          " updated_at = ?2 WHERE id = ?1 AND status <> 'error'";
	store_stmt *q = NULL;
	int rc = update_prepare(s, sql, id, now, &q);
	return update_finish(s, q, rc, NULL, "mark server unreachable", err, errlen);
}

int servers_restore_previous(store *s, int64_t id, double now, char *err, size_t errlen)
{
	static const char sql[] =
	        "UPDATE servers SET status = coalesce(previous_status, 'ready'),"
	        " previous_status = NULL, updated_at = ?2 WHERE id = ?1 AND status = 'error'";
	store_stmt *q = NULL;
	int rc = update_prepare(s, sql, id, now, &q);
	return update_finish(s, q, rc, NULL, "restore server status", err, errlen);
}

int servers_end_recovery(store *s, int64_t id, bool ok, int services_count, double now, char *err,
                         size_t errlen)
{
	static const char recovered[] =
	        "UPDATE servers SET status = CASE WHEN previous_status IN ('ready', 'in_use')"
	        " THEN previous_status WHEN ?3 > 0 THEN 'in_use' ELSE 'ready' END,"
	        " consecutive_failures = 0, updated_at = ?2 WHERE id = ?1"
	        " AND status IN ('error', 'provisioning', 'ready')";
	static const char failed[] =
	        "UPDATE servers SET status = 'error', updated_at = ?2 WHERE id = ?1";
	store_stmt *q = NULL;
	int rc = update_prepare(s, ok ? recovered : failed, id, now, &q);
	if (rc == STORE_OK && ok)
		store_bind_int64(q, 3, services_count);
	return update_finish(s, q, rc, NULL, "end recovery", err, errlen);
}

int servers_set_status(store *s, int64_t id, const char *status, double now, char *err,
                       size_t errlen)
{
	static const char sql[] = "UPDATE servers SET status = ?3, updated_at = ?2 WHERE id = ?1";
	store_stmt *q = NULL;
	int rc = update_prepare(s, sql, id, now, &q);
	if (rc == STORE_OK)
		store_bind_text(q, 3, status);
	return update_finish(s, q, rc, NULL, "set server status", err, errlen);
}

int servers_forget_previous(store *s, int64_t id, double now, char *err, size_t errlen)
{
	static const char sql[] =
	        "UPDATE servers SET previous_status = NULL, updated_at = ?2 WHERE id = ?1";
	store_stmt *q = NULL;
	int rc = update_prepare(s, sql, id, now, &q);
	return update_finish(s, q, rc, NULL, "forget previous status", err, errlen);
}

int servers_reset_failures(store *s, int64_t id, double now, char *err, size_t errlen)
{
	static const char sql[] =
	        "UPDATE servers SET consecutive_failures = 0, updated_at = ?2 WHERE id = ?1";
	store_stmt *q = NULL;
	int rc = update_prepare(s, sql, id, now, &q);
	return update_finish(s, q, rc, NULL, "reset failures", err, errlen);
}

/* ---- provisioning (invariant 4) ---- */

int servers_list_due_provisioning(store *s, double now, double timeout_sec, double cooldown_sec,
                                  server_list *out, char *err, size_t errlen)
{
	static const char sql[] =
	        "SELECT id, handle, ip, port, ssh_user, status FROM servers WHERE is_managed = 1"
	        " AND ((status IN ('pending_setup', 'force_rebuild') AND"
	        "  (provisioning_started_at IS NULL OR provisioning_started_at <= ?1 - ?3))"
	        " OR (status = 'provisioning' AND"
	        "  (provisioning_started_at IS NULL OR provisioning_started_at <= ?1 - ?2)))"
	        " ORDER BY handle";
	store_stmt *q = NULL;
	int rc = store_prepare(s, sql, &q);

	*out = (server_list){0};
	if (rc != STORE_OK)
		return store_fail(s, rc, "list servers due", err, errlen);
	store_bind_double(q, 1, now);
	store_bind_double(q, 2, timeout_sec);
	store_bind_double(q, 3, cooldown_sec);
	return collect_rows(s, q, out, NULL, "list servers due", err, errlen);
}

int servers_claim_provisioning(store *s, int64_t id, bool force, double now, double timeout_sec,
                               double cooldown_sec, bool *claimed, char *err, size_t errlen)
{
	static const char sql[] =
	        "UPDATE servers SET status = 'provisioning', provisioning_started_at = ?2,"
	        " provisioning_attempts = provisioning_attempts + 1, updated_at = ?2"
	        " WHERE id = ?1 AND (?3 <> 0 OR status IN ('pending_setup', 'force_rebuild',"
	        " 'provisioning')) AND (status != 'provisioning' OR provisioning_started_at IS NULL"
	        " OR provisioning_started_at <= ?2 - ?4) AND (?5 <> 0 OR provisioning_started_at "
	        "IS NULL"
	        " OR provisioning_started_at <= ?2 - ?6)";
	store_stmt *q = NULL;
	int64_t changes = 0;
	int rc = update_prepare(s, sql, id, now, &q);
	if (rc == STORE_OK) {
		store_bind_int64(q, 3, force);
		store_bind_double(q, 4, timeout_sec);
		store_bind_int64(q, 5, cooldown_sec <= 0);
		store_bind_double(q, 6, cooldown_sec);
	}
	rc = update_finish(s, q, rc, &changes, "claim server", err, errlen);
	*claimed = rc == STORE_OK && changes == 1;
	return rc;
}

int servers_health_each(store *s, servers_health_cb cb, void *ctx)
{
	static const char sql[] = "SELECT handle, consecutive_failures, response_time_ms"
	                          " FROM servers WHERE last_health_check IS NOT NULL"
	                          " AND status <> 'decommissioned' ORDER BY handle";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st), ret = 0;
	if (rc != STORE_OK)
		return rc;
	while ((rc = store_step(st)) == STORE_ROW)
		if ((ret = cb(ctx, store_col_text(st, 0), store_col_int(st, 1),
		              store_col_double(st, 2, -1))) != 0)
			break;
	store_stmt_done(st);
	return rc < 0 ? rc : ret;
}

/* ---- the operator's view ---- */

int servers_view_each(store *s, const char *handle, double now, server_view_cb cb, void *ctx)
{
	static const char sql[] =
	        "SELECT s.id, s.handle, s.ip, s.port, s.status, s.previous_status, s.provider,"
	        " s.is_managed, s.consecutive_failures, s.consecutive_successes,"
	        " s.last_health_check, s.response_time_ms, s.maintenance_active,"
	        " (SELECT id FROM incidents WHERE server_id = s.id AND resolved_at IS NULL"
	        "  AND " INCIDENTS_OPEN " ORDER BY id DESC LIMIT 1),"
	        " (SELECT type FROM incidents WHERE server_id = s.id AND resolved_at IS NULL"
	        "  AND " INCIDENTS_OPEN " ORDER BY id DESC LIMIT 1),"
	        " (SELECT max(ends_at) FROM maintenance_windows WHERE server_id = s.id"
	        "  AND starts_at <= ?2 AND ends_at > ?2 AND (ended_at IS NULL OR ended_at > ?2))"
	        " FROM servers s WHERE CAST(?1 AS TEXT) IS NULL OR s.handle = ?1 ORDER BY s.handle";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st), ret = 0;
	if (rc != STORE_OK)
		return rc;
	store_bind_text(st, 1, handle);
	store_bind_double(st, 2, now);
	while ((rc = store_step(st)) == STORE_ROW) {
		server_view v = {
		        .id = store_col_int64(st, 0),
		        .handle = store_col_text(st, 1),
		        .ip = store_col_text(st, 2),
		        .port = store_col_null(st, 3) ? 22 : store_col_int(st, 3),
		        .status = store_col_text(st, 4),
		        .previous_status = store_col_text(st, 5),
		        .provider = store_col_text(st, 6),
		        .managed = store_col_int(st, 7) != 0,
		        .consecutive_failures = store_col_int(st, 8),
		        .consecutive_successes = store_col_int(st, 9),
		        .last_health_check = store_col_double(st, 10, 0),
		        .response_time_ms = store_col_double(st, 11, -1),
		        .maintenance_recorded = store_col_int(st, 12) != 0,
		        .open_incident = store_col_null(st, 13) ? 0 : store_col_int64(st, 13),
		        .open_incident_type = store_col_text(st, 14),
		        .maintenance_until = store_col_double(st, 15, 0),
		};
		if ((ret = cb(ctx, &v)) != 0)
			break;
	}
	store_stmt_done(st);
	return rc < 0 ? rc : ret;
}

int servers_forget(store *s, int64_t id)
{
	static const char sql[] = "DELETE FROM servers WHERE id = ?1";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(st, 1, id);
	rc = store_step_done(st);
	store_stmt_done(st);
	if (rc == STORE_OK && store_changes(s) == 0)
		return store_set_error(s, STORE_NOTFOUND, "no server with id %lld", (long long)id);
	return rc;
}

/* ---- server_sync: servers from providers and inventories ---- */

static const char SQL_SYNC_LOAD[] =
        "SELECT s.id, s.handle, s.ip, s.ssh_user, s.provider, s.provider_id, s.status,"
        " s.previous_status, s.labels, s.details, COALESCE(s.port, 22), s.is_managed,"
        " EXISTS (SELECT 1 FROM incidents i WHERE i.server_id = s.id AND i.type IN"
        " ('server_unreachable', 'provisioning_failed') AND i." INCIDENTS_OPEN ")"
        " FROM servers s ORDER BY s.id";
static const char SQL_SYNC_INSERT[] =
        "INSERT INTO servers(handle, ip, port, ssh_user, provider, provider_id, status,"
        " is_managed, labels, last_seen_at, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10) RETURNING id";
static const char SQL_SYNC_UPDATE[] =
        "UPDATE servers SET handle = ?1, ip = ?2, port = ?3, ssh_user = ?4, provider = ?5,"
        " provider_id = ?6, status = ?7, is_managed = ?8, labels = ?9, previous_status = ?12,"
        " missing_since = NULL, last_seen_at = ?10, updated_at = ?10 WHERE id = ?11";
static const char SQL_SYNC_SEEN[] = "UPDATE servers SET last_seen_at = ?2 WHERE id = ?1";
static const char SQL_SYNC_MISSING[] =
        "UPDATE servers SET status = 'missing', previous_status = ?2, missing_since = ?3,"
        " updated_at = ?3 WHERE id = ?1";
static const char SQL_SYNC_DETAILS[] =
        "UPDATE servers SET details = ?2, updated_at = ?3 WHERE handle = ?1";
static const char SQL_SYNC_TRIGGERS[] =
        "SELECT handle, ip, status FROM servers WHERE is_managed = 1"
        " AND status IN ('pending_setup', 'force_rebuild') ORDER BY handle";

static void sync_row_free(server_sync_row *r)
{
	free(r->handle);
	free(r->ip);
	free(r->ssh_user);
	free(r->provider);
	free(r->provider_id);
	free(r->status);
	free(r->previous_status);
	free(r->labels);
	free(r->details);
}

void server_sync_rows_free(server_sync_rows *l)
{
	for (size_t i = 0; i < l->count; i++)
		sync_row_free(&l->rows[i]);
	free(l->rows);
	*l = (server_sync_rows){0};
}

static server_sync_row sync_row_read(store_stmt *st)
{
	return (server_sync_row){.id = store_col_int64(st, 0),
	                         .handle = store_col_dup(st, 1),
	                         .ip = store_col_dup(st, 2),
	                         .ssh_user = store_col_dup(st, 3),
	                         .provider = store_col_dup(st, 4),
	                         .provider_id = store_col_dup(st, 5),
	                         .status = store_col_dup(st, 6),
	                         .previous_status = store_col_dup(st, 7),
	                         .labels = store_col_dup(st, 8),
	                         .details = store_col_dup(st, 9),
	                         .port = store_col_int(st, 10),
	                         .managed = store_col_int(st, 11) != 0,
	                         .open_incident = store_col_int(st, 12) != 0};
}

/* Room for one more row: 0, or -1 when out of memory. */
static int sync_rows_reserve(server_sync_rows *out, size_t *cap)
{
	if (out->count < *cap)
		return 0;
	size_t n = *cap ? *cap * 2 : 64;
	server_sync_row *rows = realloc(out->rows, n * sizeof *rows);
	if (rows == NULL)
		return -1;
	out->rows = rows;
	*cap = n;
	return 0;
}

int servers_sync_load(store *s, server_sync_rows *out)
{
	store_stmt *st;
	size_t cap = 0;

	*out = (server_sync_rows){0};
	int rc = store_prepare(s, SQL_SYNC_LOAD, &st);
	while (rc == STORE_OK && (rc = store_step(st)) == STORE_ROW) {
		rc = sync_rows_reserve(out, &cap) == 0
		             ? STORE_OK
		             : store_set_error(s, STORE_ERROR, "servers: out of memory");
		if (rc == STORE_OK)
			out->rows[out->count++] = sync_row_read(st);
	}
	store_stmt_done(st);
	if (rc == STORE_DONE)
		return STORE_OK;
	server_sync_rows_free(out);
	return rc;
}

/* ?1..?9 of SQL_SYNC_INSERT and SQL_SYNC_UPDATE, ?10 now. */
static void sync_bind_listed(store_stmt *st, const server_listed *p, const char *status,
                             bool managed, double now)
{
	store_bind_text(st, 1, p->handle);
	store_bind_text(st, 2, p->ip);
	store_bind_int64(st, 3, p->port);
	store_bind_text(st, 4, p->ssh_user);
	store_bind_text(st, 5, p->provider);
	store_bind_text(st, 6, p->provider_id);
	store_bind_text(st, 7, status);
	store_bind_int64(st, 8, managed);
	store_bind_text(st, 9, p->labels);
	store_bind_double(st, 10, now);
}

int servers_sync_insert(store *s, const server_listed *p, const char *status, bool managed,
                        double now, int64_t *id)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_SYNC_INSERT, &st);
	if (rc == STORE_OK) {
		sync_bind_listed(st, p, status, managed, now);
		rc = store_step(st);
	}
	if (rc == STORE_ROW && id)
		*id = store_col_int64(st, 0);
	store_stmt_done(st);
	return rc == STORE_ROW ? STORE_OK : rc;
}

int servers_sync_update(store *s, int64_t id, const server_listed *p, const char *status,
                        const char *previous, bool managed, double now)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_SYNC_UPDATE, &st);
	if (rc == STORE_OK) {
		sync_bind_listed(st, p, status, managed, now);
		store_bind_int64(st, 11, id);
		store_bind_text(st, 12, previous);
		rc = store_step_done(st);
	}
	store_stmt_done(st);
	return rc;
}

int servers_sync_seen(store *s, int64_t id, double now)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_SYNC_SEEN, &st);
	if (rc == STORE_OK) {
		store_bind_int64(st, 1, id);
		store_bind_double(st, 2, now);
		rc = store_step_done(st);
	}
	store_stmt_done(st);
	return rc;
}

int servers_sync_mark_missing(store *s, int64_t id, const char *previous, double now)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_SYNC_MISSING, &st);
	if (rc == STORE_OK) {
		store_bind_int64(st, 1, id);
		store_bind_text(st, 2, previous);
		store_bind_double(st, 3, now);
		rc = store_step_done(st);
	}
	store_stmt_done(st);
	return rc;
}

int servers_sync_set_details(store *s, const char *handle, const char *details, double now)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_SYNC_DETAILS, &st);
	if (rc == STORE_OK) {
		store_bind_text(st, 1, handle);
		store_bind_text(st, 2, details);
		store_bind_double(st, 3, now);
		rc = store_step_done(st);
	}
	store_stmt_done(st);
	return rc;
}

int servers_sync_triggers(store *s, server_trigger_cb cb, void *ctx)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_SYNC_TRIGGERS, &st);
	while (rc == STORE_OK && (rc = store_step(st)) == STORE_ROW)
		rc = cb(ctx, store_col_text(st, 0), store_col_text(st, 1), store_col_text(st, 2));
	store_stmt_done(st);
	return rc;
}
