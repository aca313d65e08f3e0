/*
 * services — see services.h. A service row is keyed by (server_id, name),
 * so adding a service twice updates it. Every statement goes through the
 * store API, so a full or read-only store comes back as STORE_FULL or
 * STORE_READONLY like anywhere else.
 */
#include "services.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

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

int services_add(store *s, const service_row *svc, char *err, size_t errlen)
{
	static const char sql[] =
	        "INSERT INTO services(server_id, name, git_repo, ref, port, start_command, env,"
	        " created_at, updated_at)"
	        " SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8 FROM servers WHERE handle = ?1"
	        " ON CONFLICT(server_id, name) DO UPDATE SET git_repo = excluded.git_repo,"
	        " ref = excluded.ref, port = excluded.port, start_command = excluded.start_command,"
	        " env = excluded.env, updated_at = excluded.updated_at";
	store_stmt *q = NULL;
	int rc = store_prepare(s, sql, &q);
	if (rc == STORE_OK) {
		store_bind_text(q, 1, svc->server_handle);
		store_bind_text(q, 2, svc->name);
		store_bind_text(q, 3, svc->git_repo);
		store_bind_text(q, 4, svc->ref);
		if (svc->port > 0)
			store_bind_int64(q, 5, svc->port);
		else
			store_bind_null(q, 5);
		store_bind_text(q, 6, svc->start_command);
		store_bind_text(q, 7, svc->env);
		store_bind_double(q, 8, clock_wall());
		rc = store_step_done(q);
	}
	store_stmt_done(q);
	if (rc != STORE_OK)
		return store_fail(s, rc, "add service", err, errlen);
	if (store_changes(s) == 0) {
		snprintf(err, errlen, "no server '%s'", svc->server_handle);
		return STORE_NOTFOUND;
	}
	return STORE_OK;
}

static int append_service(service_list *out, store_stmt *q)
{
	service_row *rows = realloc(out->rows, (out->count + 1) * sizeof *rows);
	if (rows == NULL)
		return -1;
	out->rows = rows;
	service_row *r = &rows[out->count++];
	*r = (service_row){
	        .id = store_col_int64(q, 0),
	        .server_handle = store_col_dup(q, 1),
	        .name = store_col_dup(q, 2),
	        .git_repo = store_col_dup(q, 3),
	        .ref = store_col_dup(q, 4),
	        .port = store_col_int(q, 5),
	        .start_command = store_col_dup(q, 6),
	        .env = store_col_dup(q, 7),
	};
	return r->server_handle && r->name ? 0 : -1;
}

int services_list(store *s, const char *server_handle, service_list *out, char *err, size_t errlen)
{
	static const char sql[] =
	        "SELECT v.id, s.handle, v.name, v.git_repo, v.ref, v.port, v.start_command, v.env"
	        " FROM services v JOIN servers s ON s.id = v.server_id"
	        " WHERE CAST(?1 AS TEXT) IS NULL OR s.handle = ?1 ORDER BY s.handle, v.name";
	store_stmt *q = NULL;
	int rc = store_prepare(s, sql, &q);

	*out = (service_list){0};
	if (rc == STORE_OK) {
		store_bind_text(q, 1, server_handle);
		while ((rc = store_step(q)) == STORE_ROW)
			if (append_service(out, q) != 0) {
				rc = store_set_error(s, STORE_ERROR, "out of memory");
				break;
			}
	}
	store_stmt_done(q);
	if (rc == STORE_DONE)
		return STORE_OK;
	service_list_free(out);
	return store_fail(s, rc, "list services", err, errlen);
}

int services_remove(store *s, const char *server_handle, const char *name, char *err, size_t errlen)
{
	static const char sql[] = "DELETE FROM services WHERE name = ?2 AND server_id ="
	                          " (SELECT id FROM servers WHERE handle = ?1)";
	store_stmt *q = NULL;
	int rc = store_prepare(s, sql, &q);
	if (rc == STORE_OK) {
		store_bind_text(q, 1, server_handle);
		store_bind_text(q, 2, name);
		rc = store_step_done(q);
	}
	store_stmt_done(q);
	if (rc != STORE_OK)
		return store_fail(s, rc, "remove service", err, errlen);
	if (store_changes(s) == 0) {
		snprintf(err, errlen, "no service '%s' on server '%s'", name, server_handle);
		return STORE_NOTFOUND;
	}
	return STORE_OK;
}
