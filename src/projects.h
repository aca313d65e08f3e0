/*
 * projects — the projects table (store.c, docs/state-store.md): every
 * statement that reads or writes a project, as github_sync uses them.
 *
 * A project is linked to a GitHub repository by github_repo_id, or not yet
 * linked (github_repo_id NULL, matched by name). Its status is active,
 * archived or missing; missing_count counts the complete listings in a row
 * that did not have it, and projects_count_missing is the one place that
 * decides when that makes it missing.
 *
 * Threads: any thread, with its own store connection. Transactions are the
 * caller's (store_tx_begin/commit or store_tx): nothing here begins or
 * commits, so a sync applies a whole listing or nothing.
 *
 * Errors: 0 or a negative store_error, the message in store_errmsg(s);
 * nothing is logged here. Strings passed in are borrowed for the call;
 * rows handed out are owned by the caller (project_list_free).
 */
#ifndef FK_PROJECTS_H
#define FK_PROJECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct {
	int64_t id;
	int64_t repo_id; /* github_repo_id, 0 if not linked */
	char *name, *full_name, *status, *default_branch, *clone_url, *html_url, *description;
	long missing_count;
} project_row;

typedef struct {
	project_row *rows;
	size_t count;
} project_list;

void project_list_free(project_list *l);

/* What a listing says about one repository (strings borrowed, NULL for
 * none; status "active" or "archived"). */
typedef struct {
	int64_t repo_id;
	const char *name, *full_name, *status, *default_branch, *clone_url, *html_url, *description;
} project_listed;

/* Every project, ordered by github_repo_id (unlinked ones, as 0, first),
 * then id. On error *out is empty. */
int projects_list(store *s, project_list *out);

/* The names of the unlinked projects, in id order: cb(ctx, name) with name
 * borrowed; a non-zero return stops and is returned. */
typedef int (*project_name_cb)(void *ctx, const char *name);
int projects_unlinked_names(store *s, project_name_cb cb, void *ctx);

/* A new project from r, last synced now; *id (may be NULL) gets its id. */
int projects_insert(store *s, const project_listed *r, double now, int64_t *id);
/* Project id becomes what r says (linked to r->repo_id, renamed if r's
 * name differs, missing_count reset), last synced now. */
int projects_update(store *s, int64_t id, const project_listed *r, double now);

/* One more complete listing without project id: missing_count + 1, and at
 * threshold or more the status becomes missing. *attempt gets the new
 * count, *marked whether the project is missing now. STORE_NOTFOUND if
 * there is no such project. */
int projects_count_missing(store *s, int64_t id, long threshold, double now, long *attempt,
                           bool *marked);

/* The spec and README (NULL: none) read from the mirror of the project
 * linked to repo_id; written only when one of them changed. */
int projects_set_spec(store *s, int64_t repo_id, const char *spec, const char *readme, double now);

#endif
