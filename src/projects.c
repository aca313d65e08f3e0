/*
 * projects — the projects table; see projects.h.
 *
 * Invariants:
 *  1. missing_count and the move to missing change in one statement
 *     (projects_count_missing), so the count and the status never disagree.
 *  2. projects_update always resets missing_count: a listed project is not
 *     missing, whatever its count was.
 *  3. projects_set_spec writes only when the spec or README changed, so an
 *     unchanged mirror moves no updated_at.
 */
#include "projects.h"

#include <stdlib.h>
#include <string.h>

static const char SQL_LIST[] =
        "SELECT id, COALESCE(github_repo_id, 0), name, full_name, status, default_branch,"
        " clone_url, html_url, description, missing_count FROM projects"
        " ORDER BY COALESCE(github_repo_id, 0), id";
static const char SQL_UNLINKED[] =
        "SELECT name FROM projects WHERE github_repo_id IS NULL ORDER BY id";
static const char SQL_INSERT[] =
        "INSERT INTO projects(name, github_repo_id, full_name, status, default_branch, clone_url,"
        " html_url, description, last_synced_at, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?9) RETURNING id";
static const char SQL_UPDATE[] =
        "UPDATE projects SET name = ?2, github_repo_id = ?3, full_name = ?4, status = ?5,"
        " missing_count = 0, default_branch = ?6, clone_url = ?7, html_url = ?8,"
        " description = ?9, last_synced_at = ?10, updated_at = ?10 WHERE id = ?1";
static const char SQL_COUNT_MISSING[] =
        "UPDATE projects SET missing_count = missing_count + 1,"
        " status = CASE WHEN missing_count + 1 >= ?2 THEN 'missing' ELSE status END,"
        " updated_at = ?3 WHERE id = ?1 RETURNING missing_count, status";
static const char SQL_SET_SPEC[] =
        "UPDATE projects SET spec = ?2, readme = ?3, updated_at = ?4 WHERE github_repo_id = ?1"
        " AND (spec IS DISTINCT FROM ?2 OR readme IS DISTINCT FROM ?3)";

static void row_free(project_row *p)
{
	free(p->name);
	free(p->full_name);
	free(p->status);
	free(p->default_branch);
	free(p->clone_url);
	free(p->html_url);
	free(p->description);
}

void project_list_free(project_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		row_free(&l->rows[i]);
	free(l->rows);
	*l = (project_list){0};
}

static project_row row_read(store_stmt *st)
{
	return (project_row){.id = store_col_int64(st, 0),
	                     .repo_id = store_col_int64(st, 1),
	                     .name = store_col_dup(st, 2),
	                     .full_name = store_col_dup(st, 3),
	                     .status = store_col_dup(st, 4),
	                     .default_branch = store_col_dup(st, 5),
	                     .clone_url = store_col_dup(st, 6),
	                     .html_url = store_col_dup(st, 7),
	                     .description = store_col_dup(st, 8),
	                     .missing_count = store_col_int(st, 9)};
}

/* Room for one more row in out: 0, or -1 when out of memory. */
static int list_reserve(project_list *out, size_t *cap)
{
	if (out->count < *cap)
		return 0;
	size_t n = *cap ? *cap * 2 : 256;
	project_row *rows = realloc(out->rows, n * sizeof *rows);
	if (rows == NULL)
		return -1;
	out->rows = rows;
	*cap = n;
	return 0;
}

int projects_list(store *s, project_list *out)
{
	store_stmt *st;
	size_t cap = 0;

	*out = (project_list){0};
	int rc = store_prepare(s, SQL_LIST, &st);
	while (rc == STORE_OK && (rc = store_step(st)) == STORE_ROW) {
		rc = list_reserve(out, &cap) == 0
		             ? STORE_OK
		             : store_set_error(s, STORE_ERROR, "projects: out of memory");
		if (rc == STORE_OK)
			out->rows[out->count++] = row_read(st);
	}
	store_stmt_done(st);
	if (rc == STORE_DONE)
		return STORE_OK;
	project_list_free(out);
	return rc;
}

int projects_unlinked_names(store *s, project_name_cb cb, void *ctx)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_UNLINKED, &st);
	while (rc == STORE_OK && (rc = store_step(st)) == STORE_ROW)
		rc = cb(ctx, store_col_text(st, 0));
	store_stmt_done(st);
	return rc;
}

static void bind_listed(store_stmt *st, int first, const project_listed *r)
{
	store_bind_text(st, first, r->name);
	store_bind_int64(st, first + 1, r->repo_id);
	store_bind_text(st, first + 2, r->full_name);
	store_bind_text(st, first + 3, r->status);
	store_bind_text(st, first + 4, r->default_branch);
	store_bind_text(st, first + 5, r->clone_url);
	store_bind_text(st, first + 6, r->html_url);
	store_bind_text(st, first + 7, r->description);
}

int projects_insert(store *s, const project_listed *r, double now, int64_t *id)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_INSERT, &st);
	if (rc == STORE_OK) {
		bind_listed(st, 1, r);
		store_bind_double(st, 9, now);
		rc = store_step(st);
	}
	if (rc == STORE_ROW && id)
		*id = store_col_int64(st, 0);
	store_stmt_done(st);
	return rc == STORE_ROW ? STORE_OK : rc;
}

int projects_update(store *s, int64_t id, const project_listed *r, double now)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_UPDATE, &st);
	if (rc == STORE_OK) {
		store_bind_int64(st, 1, id);
		bind_listed(st, 2, r);
		store_bind_double(st, 10, now);
		rc = store_step_done(st);
	}
	store_stmt_done(st);
	return rc;
}

int projects_count_missing(store *s, int64_t id, long threshold, double now, long *attempt,
                           bool *marked)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_COUNT_MISSING, &st);
	if (rc == STORE_OK) {
		store_bind_int64(st, 1, id);
		store_bind_int64(st, 2, threshold);
		store_bind_double(st, 3, now);
		rc = store_step(st);
	}
	if (rc == STORE_ROW) {
		const char *status = store_col_text(st, 1);
		*attempt = store_col_int(st, 0);
		*marked = status && strcmp(status, "missing") == 0;
	}
	store_stmt_done(st);
	if (rc == STORE_DONE)
		return store_set_error(s, STORE_NOTFOUND, "no project %lld", (long long)id);
	return rc == STORE_ROW ? STORE_OK : rc;
}

int projects_set_spec(store *s, int64_t repo_id, const char *spec, const char *readme, double now)
{
	store_stmt *st;
	int rc = store_prepare(s, SQL_SET_SPEC, &st);
	if (rc == STORE_OK) {
		store_bind_int64(st, 1, repo_id);
		store_bind_text(st, 2, spec);
		store_bind_text(st, 3, readme);
		store_bind_double(st, 4, now);
		rc = store_step_done(st);
	}
	store_stmt_done(st);
	return rc;
}
