/*
 * github_sync — the repositories of [github] org (and/or user), or those a
 * GitHub App's installation can see, into the projects table.
 *
 * Authentication: a token (token_file / token_env) for GET
 * /orgs/ORG/repos and /users/USER/repos, or a GitHub App (app_id,
 * private_key_file, installation_id or the installation found for org /
 * user; github_app.h) for GET /installation/repositories with an
 * installation token. The installation token is made fresh before every
 * request (cached in memory until GITHUB_APP_RENEW_MARGIN before it
 * expires), and a 401 is answered once per run by a renewed token and the
 * same request again; a token that cannot be had fails the run with the
 * github_app_token_failed event's error_type (jwt_rejected, ...) before
 * anything is applied.
 *
 * One run: (1) list every page of every listing (100 per page by
 * default) into memory — each page is a conditional request when the
 * http_cache holds its ETag and compact body, and a 304 replays that body;
 * (2) only when every page of every listing arrived and parsed (a complete
 * listing), apply it in one transaction; (3) with mirror_dir, mirror each
 * active repository and read its spec and README.
 *
 * Invariants:
 *  - An incomplete listing (network error after retries, 5xx, 4xx, rate
 *    limit, bad JSON on any page, a next link to another host) changes no
 *    project: the run fails before step 2.
 *  - A row is written only when something about it changed, so a sync of an
 *    unchanged organization (all 304) writes nothing (last_synced_at is the
 *    time of the last change).
 *  - Projects are matched by github_repo_id, then by name among rows not yet
 *    linked to a repository (project_linked_to_github). An unlinked row
 *    whose name is not listed is looked up by name (GET /repos/OWNER/NAME,
 *    at most MAX_LOOKUPS per run): a repository renamed since answers 301
 *    to /repositories/ID, and if that id is listed the row is linked to it
 *    and renamed rather than a duplicate discovered.
 *  - A linked project absent from a complete listing counts one attempt
 *    (missing_count); at missing_threshold it becomes missing, with a
 *    project_missing notification in the same transaction (a failed outbox
 *    insert fails the listing like any store error). Listed again, the
 *    count is reset and a missing project recovers.
 *  - The token (or installation token) is only handed to the HTTP client
 *    and libgit2's credential callback; it is never logged or put into an
 *    error.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "github.h"
#include "github_app.h"
#include "http.h"
#include "http_cache.h"
#include "log.h"
#include "mirror.h"
#include "notify_text.h"
#include "projects.h"
#include "sync_common.h"
#include "task.h"

#define MAX_PAGES   100000
#define MAX_LOOKUPS 50 /* unlinked projects looked up by name per run */

static const char *const github_sync_items[] = {"repos_synced", "repos_discovered", "repos_missing",
                                                "repos_fetched", NULL};

/* An unlinked project whose name GitHub now serves as a listed repository
 * under another name (a rename: GET /repos/OWNER/OLD answered 301). */
typedef struct {
	char *name; /* the project's (old) name, owned */
	int64_t repo_id;
} rename_alias;

typedef struct {
	task_run *run;
	const config_section *gh;
	const char *api_url;
	long threshold;
	long per_page;
	char *token; /* with a token: it; with an app: NULL (see tok) */
	bool app;    /* authenticating as a GitHub App */
	github_app_config appcfg;
	github_app_token tok; /* with an app: the token the client sends */
	bool renewed;         /* a 401 was answered with a renewed token */
	http_client *http;
	github_repo_list repos;
	rename_alias *aliases;
	size_t naliases;
	project_list projects; /* loaded in the listing's transaction */
	bool *seen;            /* per row of projects: listed in this run */
	double now;
	char err[512]; /* why a notification could not be added */
} gh_sync;

/* ---- listing ---- */

/* "scheme://host:port/" of url (no userinfo expected), for the same-origin
 * check of next links. */
static size_t origin_len(const char *url)
{
	const char *p = strstr(url, "://");
	if (p == NULL)
		return 0;
	const char *slash = strchr(p + 3, '/');
	return slash ? (size_t)(slash - url) : strlen(url);
}

static bool same_origin(const char *a, const char *b)
{
	size_t n = origin_len(a);
	return n > 0 && n == origin_len(b) && strncmp(a, b, n) == 0;
}

static task_result rate_limited(gh_sync *g, const http_response *r, const char *err)
{
	log_warning(g->run->logger, "github_rate_limited", LOG_INT("reset_at", r->rl_reset));
	return task_run_fail(g->run, "github_rate_limited", "%s", err);
}

/* ---- the GitHub App's installation token ---- */

#define API_FAILED (-100) /* api_get: the token step failed the run */

/* With an app: an installation token fresh now into g->tok (the cached
 * one or a new one; rejected: the one just refused with a 401), which the
 * client sends from now on. Logs github_app_token_issued or
 * github_app_token_failed. A github_app_error, message in err. */
static int app_token_refresh(gh_sync *g, const char *rejected, char *err, size_t errlen)
{
	github_app_token t;
	char when[32];
	int rc = github_app_token_get(&g->appcfg, rejected, (int64_t)clock_wall(), &t, err, errlen);
	if (rc == GITHUB_APP_OK && (g->tok.token == NULL || strcmp(g->tok.token, t.token) != 0) &&
	    http_client_set_bearer(g->http, t.token) != HTTP_OK) {
		github_app_token_clear(&t);
		snprintf(err, errlen, "out of memory");
		rc = GITHUB_APP_ERR_INTERNAL;
	}
	if (rc != GITHUB_APP_OK) {
		log_warning(g->run->logger, "github_app_token_failed", LOG_STR("error", err),
		            LOG_STR("error_type", github_app_error_type(rc)));
		return rc;
	}
	if (t.issued) {
		github_app_format_time(t.expires_at, when, sizeof when);
		log_info(g->run->logger, "github_app_token_issued", LOG_STR("expires_at", when),
		         LOG_INT("installation_id", t.installation_id));
	}
	github_app_token_clear(&g->tok);
	g->tok = t;
	return GITHUB_APP_OK;
}

/* app_token_refresh for a request: TASK_OK, or the run failed with the
 * token's error_type (jwt_rejected, installation_not_found, ...). */
static int app_token_ready(gh_sync *g, const char *rejected)
{
	char err[768];
	int rc = app_token_refresh(g, rejected, err, sizeof err);
	if (rc == GITHUB_APP_OK)
		return TASK_OK;
	return task_run_fail(g->run, github_app_error_type(rc), "GitHub App token: %s", err);
}

/* http_get for the sync. With an app the token is made fresh first, and
 * the first 401 of the run is answered with a renewed token and the same
 * request again. http_get's code, or API_FAILED (the run failed; r is
 * empty but may be freed). */
static int api_get(gh_sync *g, const char *url, const char *etag, http_response *r, char *err,
                   size_t errlen)
{
	const char *rejected = NULL;
	*r = (http_response){.rl_remaining = -1, .retry_after = -1};
	for (;;) {
		if (g->app && app_token_ready(g, rejected) != TASK_OK)
			return API_FAILED;
		int rc = http_get(g->http, url, etag, r, err, errlen);
		if (!g->app || g->renewed || rc != HTTP_OK || r->status != 401)
			return rc;
		g->renewed = true;
		log_info(g->run->logger, "github_app_token_rejected", LOG_STR("url", url),
		         LOG_INT("installation_id", g->tok.installation_id));
		http_response_free(r);
		rejected = g->tok.token;
	}
}

/* ---- listing ---- */

/* One page: 0 with *next set (malloc'd or NULL), or a task_result != OK. */
static int fetch_page(gh_sync *g, const char *url, char **next)
{
	char *etag = NULL, *cached = NULL, err[512];
	http_response r;
	size_t before = g->repos.count;
	int result = TASK_FAILED;

	*next = NULL;
	http_cache_get(g->run->store, url, &etag, &cached);
	int rc = api_get(g, url, cached ? etag : NULL, &r, err, sizeof err);
	if (rc == API_FAILED) {
		/* failed by app_token_ready */
	} else if (rc == HTTP_ERR_RATE_LIMITED) {
		rate_limited(g, &r, err);
	} else if (rc == HTTP_ERR_CANCELLED) {
		task_run_fail(g->run, "cancelled", "github_sync cancelled");
	} else if (rc != HTTP_OK) {
		task_run_fail(g->run, "github_incomplete_listing", "incomplete listing: %s", err);
	} else if (r.status == 304 && cached) {
		if (github_parse_compact(cached, &g->repos, next, err, sizeof err) == 0)
			result = TASK_OK;
		else
			task_run_fail(g->run, "github_incomplete_listing", "%s: %s", url, err);
	} else if (r.status == 200) {
		if ((g->app ? github_parse_installation_page
		            : github_parse_page)(r.body, r.len, &g->repos, err, sizeof err) != 0) {
			task_run_fail(g->run, "github_incomplete_listing",
			              "incomplete listing: %s: %s", url, err);
		} else {
			*next = r.next_url;
			r.next_url = NULL;
			if (r.etag) {
				char *compact = github_page_compact(&g->repos, before, *next);
				if (compact)
					http_cache_put(g->run->store, url, r.etag, r.last_modified,
					               compact, clock_wall());
				free(compact);
			}
			result = TASK_OK;
		}
	} else {
		task_run_fail(g->run, "github_incomplete_listing",
		              "incomplete listing: %s: HTTP %ld", url, r.status);
	}
	http_response_free(&r);
	free(etag);
	free(cached);
	return result;
}

/* Every page from {api_url}/{path}?per_page=N on. */
static int fetch_listing(gh_sync *g, const char *path)
{
	char *url = NULL;
	int rc = TASK_OK;
	if (asprintf(&url, "%s/%s?per_page=%ld", g->api_url, path, g->per_page) < 0)
		return task_run_fail(g->run, "internal", "out of memory");
	for (int pages = 0; url && rc == TASK_OK; pages++) {
		char *next = NULL;
		if (pages == MAX_PAGES) {
			rc = task_run_fail(g->run, "github_incomplete_listing",
			                   "more than %d pages", MAX_PAGES);
			break;
		}
		rc = fetch_page(g, url, &next);
		if (rc == TASK_OK && next && !same_origin(next, g->api_url)) {
			rc = task_run_fail(g->run, "github_incomplete_listing",
			                   "next page link leaves the API host");
			free(next);
			next = NULL;
		}
		free(url);
		url = next;
	}
	free(url);
	return rc;
}

/* ---- renamed repositories ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool repo_listed(const gh_sync *g, int64_t id)
{
	for (size_t i = 0; i < g->repos.count; i++)
		if (g->repos.items[i].id == id)
			return true;
	return false;
}

static const char *alias_of(const gh_sync *g, int64_t repo_id)
{
	for (size_t i = 0; i < g->naliases; i++)
		if (g->aliases[i].repo_id == repo_id)
			return g->aliases[i].name;
	return NULL;
}

/* What unlinked_unlisted gathers from the unlinked projects. */
typedef struct {
	const char **listed; /* the listed names, sorted */
	size_t nlisted;
	char **names; /* up to MAX_LOOKUPS, malloc'd */
	size_t n;
	long skipped;
} unlisted_names;

static int gather_unlisted(void *ctx, const char *name)
{
	unlisted_names *u = ctx;
	if (!mirror_name_ok(name) ||
	    bsearch(&name, u->listed, u->nlisted, sizeof *u->listed, cmp_str))
		return 0;
	if (u->n == MAX_LOOKUPS)
		u->skipped++;
	else if ((u->names[u->n] = strdup(name)) != NULL)
		u->n++;
	return 0;
}

/* Into names (malloc'd, up to MAX_LOOKUPS): the unlinked projects whose
 * name no listed repository has and could be a repository name. 0, or a
 * store_error (message in store_errmsg). */
static int unlinked_unlisted(gh_sync *g, char **names, size_t *n)
{
	unlisted_names u = {.listed = malloc((g->repos.count + 1) * sizeof *u.listed),
	                    .nlisted = g->repos.count,
	                    .names = names};
	int rc = STORE_ERROR;

	if (u.listed) {
		for (size_t i = 0; i < g->repos.count; i++)
			u.listed[i] = g->repos.items[i].name;
		qsort(u.listed, u.nlisted, sizeof *u.listed, cmp_str);
		rc = projects_unlinked_names(g->run->store, gather_unlisted, &u);
	}
	free(u.listed);
	*n = u.n;
	if (u.skipped)
		log_info(g->run->logger, "github_rename_lookups_limited",
		         LOG_INT("looked_up", MAX_LOOKUPS), LOG_INT("skipped", u.skipped));
	return rc;
}

/* GET {api_url}/repos/OWNER/NAME; a renamed repository answers 301 to
 * /repositories/ID, which http_get follows. *id: the repository's id, 0 if
 * there is none (404 and any other final 4xx). TASK_OK or a failed run. */
static int lookup_repo(gh_sync *g, const char *owner, const char *name, int64_t *id)
{
	char url[1024], err[512];
	http_response r;
	github_repo_list one = {0};
	int result = TASK_OK;

	*id = 0;
	snprintf(url, sizeof url, "%s/repos/%s/%s", g->api_url, owner, name);
	int rc = api_get(g, url, NULL, &r, err, sizeof err);
	if (rc == API_FAILED)
		result = TASK_FAILED;
	else if (rc == HTTP_ERR_RATE_LIMITED)
		result = rate_limited(g, &r, err);
	else if (rc == HTTP_ERR_CANCELLED)
		result = task_run_fail(g->run, "cancelled", "github_sync cancelled");
	else if (rc != HTTP_OK)
		result = task_run_fail(g->run, "github_incomplete_listing", "looking up %s: %s",
		                       name, err);
	else if (r.status == 200 && github_parse_repo(r.body, r.len, &one, err, sizeof err) != 0)
		result = task_run_fail(g->run, "github_incomplete_listing", "%s: %s", url, err);
	else if (r.status == 200)
		*id = one.items[0].id;
	http_response_free(&r);
	github_repo_list_free(&one);
	return result;
}

/* A project linked by name (github_repo_id NULL) whose repository was
 * renamed before it was linked is not in the listing under that name:
 * GitHub answers the old name with a 301 to the repository. When that
 * repository is listed, the project will be linked to it (and take its new
 * name) instead of a duplicate project being discovered. A failed lookup
 * fails the run before anything is applied. */
static int resolve_renames(gh_sync *g)
{
	const char *owners[] = {sync_key_str(g->gh, "org", NULL),
	                        sync_key_str(g->gh, "user", NULL)};
	char *names[MAX_LOOKUPS];
	size_t n = 0;
	int rc = TASK_OK;

	if (unlinked_unlisted(g, names, &n) != 0)
		rc = task_run_fail(g->run, "store_error", "projects: %s",
		                   store_errmsg(g->run->store));
	g->aliases = n ? calloc(n, sizeof *g->aliases) : NULL;
	for (size_t i = 0; i < n && g->aliases && rc == TASK_OK; i++) {
		int64_t id = 0;
		for (size_t o = 0; o < 2 && id == 0 && rc == TASK_OK; o++)
			if (owners[o] && mirror_name_ok(owners[o]))
				rc = lookup_repo(g, owners[o], names[i], &id);
		if (rc == TASK_OK && id && repo_listed(g, id) && alias_of(g, id) == NULL) {
			g->aliases[g->naliases++] = (rename_alias){.name = names[i], .repo_id = id};
			names[i] = NULL;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	return rc;
}

/* ---- store ---- */

static int row_cmp(const void *a, const void *b)
{
	const project_row *x = a, *y = b;
	return (x->repo_id > y->repo_id) - (x->repo_id < y->repo_id);
}

/* The projects as they are inside the listing's transaction, ordered by
 * repository id (unlinked ones first), none seen yet. */
static int projects_load(gh_sync *g)
{
	int rc = projects_list(g->run->store, &g->projects);
	if (rc == STORE_OK && g->projects.count) {
		g->seen = calloc(g->projects.count, sizeof *g->seen);
		if (g->seen == NULL)
			rc = store_set_error(g->run->store, STORE_ERROR, "projects: out of memory");
	}
	return rc;
}

static void projects_free(gh_sync *g)
{
	project_list_free(&g->projects);
	free(g->seen);
	g->seen = NULL;
}

static project_row *project_by_repo(gh_sync *g, int64_t repo_id)
{
	project_row key = {.repo_id = repo_id};
	if (g->projects.count == 0)
		return NULL;
	return bsearch(&key, g->projects.rows, g->projects.count, sizeof key, row_cmp);
}

static bool *seen_of(gh_sync *g, const project_row *p)
{
	return &g->seen[p - g->projects.rows];
}

static project_row *project_unlinked_by_name(gh_sync *g, const char *name)
{
	for (size_t i = 0; i < g->projects.count && g->projects.rows[i].repo_id == 0; i++)
		if (!g->seen[i] && g->projects.rows[i].name &&
		    strcmp(g->projects.rows[i].name, name) == 0)
			return &g->projects.rows[i];
	return NULL;
}

static project_listed listed_of(const github_repo *r)
{
	return (project_listed){.repo_id = r->id,
	                        .name = r->name,
	                        .full_name = r->full_name,
	                        .status = r->archived ? "archived" : "active",
	                        .default_branch = r->default_branch,
	                        .clone_url = r->clone_url,
	                        .html_url = r->html_url,
	                        .description = r->description};
}

static bool project_changed(const project_row *p, const project_listed *r)
{
	return p->repo_id != r->repo_id || sync_str_differs(p->name, r->name) ||
	       sync_str_differs(p->full_name, r->full_name) ||
	       sync_str_differs(p->default_branch, r->default_branch) ||
	       sync_str_differs(p->clone_url, r->clone_url) ||
	       sync_str_differs(p->html_url, r->html_url) ||
	       sync_str_differs(p->description, r->description) ||
	       sync_str_differs(p->status, r->status) || p->missing_count != 0;
}

static int apply_repo(gh_sync *g, const github_repo *r)
{
	const char *L = g->run->logger;
	project_listed l = listed_of(r);
	project_row *p = project_by_repo(g, r->id);

	task_run_count(g->run, "repos_synced", 1);
	if (p == NULL && (p = project_unlinked_by_name(g, r->name)) != NULL)
		log_info(L, "project_linked_to_github", LOG_STR("project_name", r->name),
		         LOG_INT("github_repo_id", r->id));
	const char *old = p == NULL ? alias_of(g, r->id) : NULL;
	if (old && (p = project_unlinked_by_name(g, old)) != NULL)
		log_info(L, "project_linked_to_github", LOG_STR("project_name", r->name),
		         LOG_INT("github_repo_id", r->id), LOG_STR("previous_name", old));
	if (p == NULL) {
		log_info(L, "github_project_discovered", LOG_STR("project_name", r->name),
		         LOG_INT("github_repo_id", r->id), LOG_BOOL("archived", r->archived));
		task_run_count(g->run, "repos_discovered", 1);
		return projects_insert(g->run->store, &l, g->now, NULL);
	}
	*seen_of(g, p) = true;
	if (!project_changed(p, &l))
		return 0;
	if (p->status && strcmp(p->status, "missing") == 0)
		log_info(L, "project_recovered", LOG_STR("project_name", r->name),
		         LOG_INT("github_repo_id", r->id),
		         LOG_INT("missing_count", p->missing_count));
	if (p->name && strcmp(p->name, r->name) != 0 && p->repo_id == r->id)
		log_info(L, "project_renamed", LOG_STR("project_name", r->name),
		         LOG_STR("previous_name", p->name), LOG_INT("github_repo_id", r->id));
	return projects_update(g->run->store, p->id, &l, g->now);
}

static int notify_missing(gh_sync *g, const project_row *p, long attempt)
{
	notify_note n;

	notify_note_init(&n, NOTIFY_PROJECT_MISSING, LOG_CRITICAL, g->run->correlation_id);
	notify_note_title(&n, "Project %s is missing from GitHub", p->name ? p->name : "?");
	notify_note_line(&n,
	                 "Repository %s (id %lld) was absent from %ld complete listings"
	                 " in a row; the project is marked missing.",
	                 p->full_name ? p->full_name : (p->name ? p->name : "?"),
	                 (long long)p->repo_id, attempt);
	notify_field_str(&n, "project_name", p->name);
	notify_field_str(&n, "full_name", p->full_name);
	notify_field_int(&n, "github_repo_id", p->repo_id);
	notify_field_int(&n, "missing_count", attempt);
	notify_field_str(&n, "previous_status", p->status);
	int rc = notify_add(g->run->store, &n, g->now, NULL, g->err, sizeof g->err);
	notify_note_free(&n);
	return rc;
}

static int apply_missing(gh_sync *g, const project_row *p)
{
	const char *L = g->run->logger;
	long attempt = 0;
	bool marked = false;

	task_run_count(g->run, "repos_missing", 1);
	int rc = projects_count_missing(g->run->store, p->id, g->threshold, g->now, &attempt,
	                                &marked);
	if (rc != STORE_OK)
		return rc;
	log_warning(L, "project_missing_from_github", LOG_STR("project_name", p->name),
	            LOG_INT("github_repo_id", p->repo_id), LOG_INT("attempt", attempt),
	            LOG_INT("threshold", g->threshold));
	if (!marked)
		return STORE_OK;
	log_warning(L, "project_marked_missing", LOG_STR("project_name", p->name),
	            LOG_INT("github_repo_id", p->repo_id), LOG_INT("attempt", attempt));
	return notify_missing(g, p, attempt);
}

static int repo_cmp(const void *a, const void *b)
{
	const github_repo *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

/* The listing against the projects, inside one transaction (store_tx). */
static int apply_locked(store *st, void *arg)
{
	gh_sync *g = arg;
	int rc = projects_load(g);

	(void)st;
	if (g->repos.count > 1)
		qsort(g->repos.items, g->repos.count, sizeof *g->repos.items, repo_cmp);
	for (size_t i = 0; rc == 0 && i < g->repos.count; i++)
		if (i == 0 || g->repos.items[i].id != g->repos.items[i - 1].id)
			rc = apply_repo(g, &g->repos.items[i]);
	for (size_t i = 0; rc == 0 && i < g->projects.count; i++) {
		const project_row *p = &g->projects.rows[i];
		if (p->repo_id && !g->seen[i] && sync_str_differs(p->status, "missing"))
			rc = apply_missing(g, p);
	}
	return rc;
}

static int apply_listing(gh_sync *g)
{
	int rc = store_tx(g->run->store, apply_locked, g);
	if (rc != 0)
		task_run_fail(g->run, "store_error", "projects: %s",
		              g->err[0] ? g->err : store_errmsg(g->run->store));
	return rc;
}

/* ---- mirroring ---- */

/* Before each mirror: the token, with an app a fresh installation token.
 * false ends the mirroring, not the run (the listing is applied already);
 * github_app_token_failed said why. */
static bool mirror_token(gh_sync *g, const char **token)
{
	char err[768];
	if (g->app && app_token_refresh(g, NULL, err, sizeof err) != GITHUB_APP_OK)
		return false;
	*token = g->app ? g->tok.token : g->token;
	return true;
}

static void mirror_all(gh_sync *g, const char *dir)
{
	char err[512];
	const char *token = NULL;
	mirror_init();
	for (size_t i = 0; i < g->repos.count && !task_run_cancelled(g->run); i++) {
		const github_repo *r = &g->repos.items[i];
		mirror_result m = {0};
		if (r->archived || r->clone_url == NULL ||
		    (i > 0 && r->id == g->repos.items[i - 1].id))
			continue;
		if (!mirror_token(g, &token))
			break;
		if (mirror_sync(dir, r->name, r->clone_url, token, r->default_branch,
		                g->run->cancel_fd, &m, err, sizeof err) != 0) {
			log_warning(g->run->logger, "github_mirror_failed",
			            LOG_STR("project_name", r->name), LOG_STR("error", err));
			continue;
		}
		task_run_count(g->run, "repos_fetched", 1);
		log_info(g->run->logger, "github_repo_mirrored", LOG_STR("project_name", r->name),
		         LOG_BOOL("cloned", m.cloned), LOG_BOOL("has_spec", m.spec != NULL),
		         LOG_BOOL("has_readme", m.readme != NULL));
		if (projects_set_spec(g->run->store, r->id, m.spec, m.readme, g->now) != STORE_OK)
			log_error(g->run->logger, "github_store_failed",
			          LOG_STR("project_name", r->name),
			          LOG_STR("error", store_errmsg(g->run->store)));
		mirror_result_free(&m);
	}
	mirror_shutdown();
}

/* ---- the run ---- */

static http_client *client_for(gh_sync *g)
{
	char ua[160];
	snprintf(ua, sizeof ua, "fleetkeeper/%s", FK_VERSION);
	http_options o = {
	        .user_agent = sync_key_str(g->gh, "user_agent", ua),
	        .timeout_ms = sync_key_duration_ms(g->gh, "timeout", 30000),
	        .max_retries = 3,
	        .cancel_fd = g->run->cancel_fd,
	        .bearer_token = g->token,
	        .accept = "application/vnd.github+json",
	};
	return http_client_new(&o);
}

static int sync_listings(gh_sync *g)
{
	const char *org = sync_key_str(g->gh, "org", NULL);
	const char *user = sync_key_str(g->gh, "user", NULL);
	char path[512];
	int rc = TASK_OK;

	if (g->app)
		return fetch_listing(g, "installation/repositories");
	if (org == NULL && user == NULL)
		return task_run_fail(g->run, "config", "[github] needs org or user");
	if (org) {
		snprintf(path, sizeof path, "orgs/%s/repos", org);
		rc = fetch_listing(g, path);
	}
	if (rc == TASK_OK && user) {
		snprintf(path, sizeof path, "users/%s/repos", user);
		rc = fetch_listing(g, path);
	}
	return rc;
}

/* [github] app_id and its keys (validated by config.c) into g->appcfg. */
static bool app_configured(gh_sync *g, const char *user_agent)
{
	const char *inst = sync_key_str(g->gh, "installation_id", NULL);
	long id = 0;
	if (sync_key_str(g->gh, "app_id", NULL) == NULL)
		return false;
	if (inst)
		config_parse_int(inst, 1, LONG_MAX, &id);
	g->appcfg = (github_app_config){
	        .api_url = g->api_url,
	        .app_id = sync_key_str(g->gh, "app_id", NULL),
	        .private_key_file = sync_key_str(g->gh, "private_key_file", ""),
	        .installation_id = id,
	        .account = sync_key_str(g->gh, "org", sync_key_str(g->gh, "user", NULL)),
	        .user_agent = user_agent,
	        .timeout_ms = sync_key_duration_ms(g->gh, "timeout", 30000),
	        .cancel_fd = g->run->cancel_fd,
	};
	return true;
}

static task_result github_sync_run(task_run *run)
{
	gh_sync g = {.run = run, .gh = config_section_find(run->cfg, "github")};
	task_result res;
	char ua[160];

	snprintf(ua, sizeof ua, "fleetkeeper/%s", FK_VERSION);
	g.api_url = sync_key_str(g.gh, "api_url", "https://api.github.com");
	g.app = app_configured(&g, sync_key_str(g.gh, "user_agent", ua));
	if (!g.app && (g.token = sync_secret_read(g.gh, "token")) == NULL)
		return task_run_skip(run, "no_credentials");
	g.threshold = sync_key_int(g.gh, "missing_threshold", 3);
	g.per_page = sync_key_int(g.gh, "per_page", 100);
	g.http = client_for(&g);
	if (g.http == NULL) {
		res = task_run_fail(run, "internal", "cannot create an HTTP client");
		goto out;
	}
	res = sync_listings(&g);
	if (res == TASK_OK)
		res = resolve_renames(&g);
	const http_stats *hs = http_client_stats(g.http);
	log_info(run->logger, "github_listing_fetched", LOG_BOOL("complete", res == TASK_OK),
	         LOG_INT("repos", g.repos.count), LOG_INT("requests", hs->requests),
	         LOG_INT("not_modified", hs->not_modified), LOG_INT("retries", hs->retries));
	if (res != TASK_OK)
		goto out;
	g.now = clock_wall();
	if (apply_listing(&g) != 0) {
		res = TASK_FAILED;
		goto out;
	}
	const char *dir = sync_key_str(g.gh, "mirror_dir", NULL);
	if (dir)
		mirror_all(&g, dir);
	res = TASK_OK;
out:
	projects_free(&g);
	for (size_t i = 0; i < g.naliases; i++)
		free(g.aliases[i].name);
	free(g.aliases);
	github_repo_list_free(&g.repos);
	http_client_free(g.http);
	sync_secret_free(g.token);
	github_app_token_clear(&g.tok);
	return res;
}

static size_t github_sync_start_fields(task_run *run, log_field *out, size_t cap)
{
	const config_section *gh = config_section_find(run->cfg, "github");
	const char *org = sync_key_str(gh, "org", NULL);
	if (cap < 1)
		return 0;
	out[0] = LOG_STR("org_name", org ? org : sync_key_str(gh, "user", NULL));
	return 1;
}

const task_type task_type_github_sync = {
        .name = "github_sync",
        .logger = "tasks.github_sync",
        .items = github_sync_items,
        .start_fields = github_sync_start_fields,
        .run = github_sync_run,
};
