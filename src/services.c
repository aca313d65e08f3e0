/*
 * services — see services.h. Plain SQL through store_db(); a service row
 * is keyed by (server_id, name), so adding a service twice updates it.
 */
#include "services.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

static char *dup_col(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	return t ? strdup((const char *)t) : NULL;
}

static int fail(sqlite3 *db, int rc, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", sqlite3_errmsg(db));
	return rc == SQLITE_BUSY ? STORE_BUSY : STORE_ERROR;
}

void service_list_free(service_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		service_row *r = &list->rows[i];
		free(r->server_handle);
		free(r->name);
		free(r->git_repo);
		free(r->ref);
		free(r->start_command);
		free(r->env);
	}
	free(list->rows);
	list->rows = NULL;
	list->count = 0;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

int services_add(store *s, const service_row *svc, char *err, size_t errlen)
{
	static const char sql[] =
	        "INSERT INTO services(server_id, name, git_repo, ref, port, start_command, env,"
	        " created_at, updated_at)"
	        " SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8 FROM servers WHERE handle = ?1"
	        " ON CONFLICT(server_id, name) DO UPDATE SET git_repo = excluded.git_repo,"
	        " ref = excluded.ref, port = excluded.port, start_command = excluded.start_command,"
	        " env = excluded.env, updated_at = excluded.updated_at";
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, err, errlen);
	sqlite3_bind_text(st, 1, svc->server_handle, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, svc->name, -1, SQLITE_TRANSIENT);
	bind_text_or_null(st, 3, svc->git_repo);
	bind_text_or_null(st, 4, svc->ref);
	if (svc->port > 0)
		sqlite3_bind_int(st, 5, svc->port);
	else
		sqlite3_bind_null(st, 5);
	bind_text_or_null(st, 6, svc->start_command);
	bind_text_or_null(st, 7, svc->env);
	sqlite3_bind_double(st, 8, clock_wall());
	rc = sqlite3_step(st);
	int out = rc == SQLITE_DONE ? 0 : fail(db, rc, err, errlen);
	if (out == 0 && sqlite3_changes(db) == 0) {
		snprintf(err, errlen, "no server '%s'", svc->server_handle);
		out = STORE_NOTFOUND;
	}
	sqlite3_finalize(st);
	return out;
}

static int append_service(service_list *out, sqlite3_stmt *st)
{
	service_row *rows = realloc(out->rows, (out->count + 1) * sizeof *rows);
	if (rows == NULL)
		return -1;
	out->rows = rows;
	rows[out->count++] = (service_row){
	        .id = sqlite3_column_int64(st, 0),
	        .server_handle = dup_col(st, 1),
	        .name = dup_col(st, 2),
	        .git_repo = dup_col(st, 3),
	        .ref = dup_col(st, 4),
	        .port = sqlite3_column_int(st, 5),
	        .start_command = dup_col(st, 6),
	        .env = dup_col(st, 7),
	};
	return 0;
}

int services_list(store *s, const char *server_handle, service_list *out, char *err, size_t errlen)
{
	static const char sql[] =
	        "SELECT v.id, s.handle, v.name, v.git_repo, v.ref, v.port, v.start_command, v.env"
	        " FROM services v JOIN servers s ON s.id = v.server_id"
	        " WHERE ?1 IS NULL OR s.handle = ?1 ORDER BY s.handle, v.name";
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	memset(out, 0, sizeof *out);
	if (rc != SQLITE_OK)
		return fail(db, rc, err, errlen);
	bind_text_or_null(st, 1, server_handle);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (append_service(out, st) != 0) {
			rc = SQLITE_NOMEM;
			break;
		}
	int ret = rc == SQLITE_DONE ? 0 : fail(db, rc, err, errlen);
	sqlite3_finalize(st);
	if (ret != 0)
		service_list_free(out);
	return ret;
}

int services_remove(store *s, const char *server_handle, const char *name, char *err, size_t errlen)
{
	static const char sql[] = "DELETE FROM services WHERE name = ?2 AND server_id ="
	                          " (SELECT id FROM servers WHERE handle = ?1)";
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, err, errlen);
	sqlite3_bind_text(st, 1, server_handle, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	int ret = rc == SQLITE_DONE ? 0 : fail(db, rc, err, errlen);
	if (ret == 0 && sqlite3_changes(db) == 0) {
		snprintf(err, errlen, "no service '%s' on server '%s'", name, server_handle);
		ret = STORE_NOTFOUND;
	}
	sqlite3_finalize(st);
	return ret;
}

int services_server_find(store *s, const char *handle, server_list *out, bool *is_managed,
                         char *err, size_t errlen)
{
	static const char sql[] = "SELECT id, handle, ip, port, ssh_user, status, is_managed"
	                          " FROM servers WHERE handle = ?1";
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	memset(out, 0, sizeof *out);
	if (rc != SQLITE_OK)
		return fail(db, rc, err, errlen);
	sqlite3_bind_text(st, 1, handle, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	int ret = STORE_NOTFOUND;
	if (rc == SQLITE_ROW && (out->rows = calloc(1, sizeof *out->rows)) != NULL) {
		server_row *r = out->rows;
		out->count = 1;
		r->id = sqlite3_column_int64(st, 0);
		r->handle = dup_col(st, 1);
		r->ip = dup_col(st, 2);
		r->port =
		        sqlite3_column_type(st, 3) == SQLITE_NULL ? 22 : sqlite3_column_int(st, 3);
		r->ssh_user = dup_col(st, 4);
		r->status = dup_col(st, 5);
		if (is_managed)
			*is_managed = sqlite3_column_int(st, 6) != 0;
		ret = 0;
	} else if (rc == SQLITE_DONE) {
		snprintf(err, errlen, "no server '%s'", handle);
	} else {
		ret = fail(db, rc, err, errlen);
	}
	sqlite3_finalize(st);
	return ret;
}
