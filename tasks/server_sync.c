/*
 * server_sync — servers from [provider.time4vps] (the provider API) and
 * [provider.inventory] (an Ansible inventory) into the servers table.
 *
 * One run, per configured provider: list its servers; only a complete
 * listing is applied, in one transaction:
 *
 *   new server            -> pending_setup, managed (managed_server_discovered,
 *                            a server_discovered notification)
 *   new ghost server      -> reserved, not managed (ghost_server_discovered)
 *   listed, was missing   -> its status before it went missing (server_reappeared)
 *   listed, now a ghost   -> reserved, not managed
 *   not listed any more   -> missing, missing_since set (server_missing_from_provider;
 *                            a server_missing notification if managed)
 *
 * Notifications are added in the listing's transaction (notify_text.h): a
 * failed outbox insert rolls the whole listing back like any store error.
 *
 * A ghost is a server whose handle, provider name (domain) or address is
 * in the provider's ghost_servers list. Time4VPS details are refreshed
 * when older than details_interval (default 6h), T4V_DETAILS_PARALLEL
 * requests in flight at once; a failed detail request is logged, not
 * fatal. Finally every managed server in pending_setup or
 * force_rebuild is published as a provisioning trigger
 * (provisioning_trigger_published); the provisioning task picks such
 * servers from the store by status.
 *
 * Invariants: a provider whose listing failed changes no row of its own,
 * and the run then fails (after the other providers were applied); rows
 * are matched by handle, and a row of another provider is never marked
 * missing by this one. Credentials are read per run and wiped after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "http.h"
#include "inventory.h"
#include "log.h"
#include "notify_text.h"
#include "providers.h"
#include "sync_common.h"
#include "task.h"

static const char *const server_sync_items[] = {"servers_discovered", "servers_updated",
                                                "servers_missing",    "details_updated",
                                                "triggers_published", NULL};

typedef struct {
	int64_t id;
	char *handle, *ip, *ssh_user, *provider, *provider_id, *status, *previous_status, *labels;
	char *details;
	int port;
	bool managed;
	bool seen;
} srv_row;

typedef struct {
	task_run *run;
	const char *provider; /* "time4vps", "inventory" */
	const config_section *sec;
	srv_row *rows;
	size_t nrows;
	double now;
} srv_sync;

/* ---- rows ---- */

static char *col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *v = sqlite3_column_text(st, i);
	return v ? strdup((const char *)v) : NULL;
}

static void rows_free(srv_sync *s)
{
	for (size_t i = 0; i < s->nrows; i++) {
		srv_row *r = &s->rows[i];
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
	free(s->rows);
	s->rows = NULL;
	s->nrows = 0;
}

static int rows_load(srv_sync *s)
{
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	const char *sql = "SELECT id, handle, ip, ssh_user, provider, provider_id, status,"
	                  " previous_status, labels, details, COALESCE(port, 22), is_managed"
	                  " FROM servers";
	if (sqlite3_prepare_v2(store_db(s->run->store), sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (s->nrows == cap) {
			cap = cap ? cap * 2 : 64;
			srv_row *n = realloc(s->rows, cap * sizeof *n);
			if (n == NULL)
				break;
			s->rows = n;
		}
		s->rows[s->nrows++] = (srv_row){.id = sqlite3_column_int64(st, 0),
		                                .handle = col_dup(st, 1),
		                                .ip = col_dup(st, 2),
		                                .ssh_user = col_dup(st, 3),
		                                .provider = col_dup(st, 4),
		                                .provider_id = col_dup(st, 5),
		                                .status = col_dup(st, 6),
		                                .previous_status = col_dup(st, 7),
		                                .labels = col_dup(st, 8),
		                                .details = col_dup(st, 9),
		                                .port = sqlite3_column_int(st, 10),
		                                .managed = sqlite3_column_int(st, 11) != 0};
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static srv_row *row_find(srv_sync *s, const char *handle)
{
	for (size_t i = 0; i < s->nrows; i++)
		if (s->rows[i].handle && strcmp(s->rows[i].handle, handle) == 0)
			return &s->rows[i];
	return NULL;
}

static bool str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

static bool is_ghost(const srv_sync *s, const provider_server *p)
{
	const char *list = sync_key_str(s->sec, "ghost_servers", NULL);
	if (list == NULL)
		return false;
	return sync_list_contains(list, p->handle) || (p->ip && sync_list_contains(list, p->ip)) ||
	       (p->name && sync_list_contains(list, p->name));
}

/* ---- writes ---- */

static int exec_server(srv_sync *s, const char *sql, const provider_server *p, int64_t id,
                       const char *status, const char *previous, bool managed)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s->run->store), sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	for (int i = 1; i <= sqlite3_bind_parameter_count(st); i++) {
		const char *n = sqlite3_bind_parameter_name(st, i);
		if (n == NULL)
			continue;
		if (strcmp(n, ":id") == 0)
			sqlite3_bind_int64(st, i, id);
		else if (strcmp(n, ":status") == 0)
			sqlite3_bind_text(st, i, status, -1, SQLITE_STATIC);
		else if (strcmp(n, ":previous") == 0)
			sqlite3_bind_text(st, i, previous, -1, SQLITE_STATIC);
		else if (strcmp(n, ":managed") == 0)
			sqlite3_bind_int(st, i, managed);
		else if (strcmp(n, ":now") == 0)
			sqlite3_bind_double(st, i, s->now);
		else if (strcmp(n, ":provider") == 0)
			sqlite3_bind_text(st, i, s->provider, -1, SQLITE_STATIC);
		else if (p && strcmp(n, ":handle") == 0)
			sqlite3_bind_text(st, i, p->handle, -1, SQLITE_STATIC);
		else if (p && strcmp(n, ":ip") == 0)
			sqlite3_bind_text(st, i, p->ip, -1, SQLITE_STATIC);
		else if (p && strcmp(n, ":port") == 0)
			sqlite3_bind_int(st, i, p->port);
		else if (p && strcmp(n, ":user") == 0)
			sqlite3_bind_text(st, i, p->ssh_user, -1, SQLITE_STATIC);
		else if (p && strcmp(n, ":provider_id") == 0)
			sqlite3_bind_text(st, i, p->provider_id, -1, SQLITE_STATIC);
		else if (p && strcmp(n, ":labels") == 0)
			sqlite3_bind_text(st, i, p->labels, -1, SQLITE_STATIC);
	}
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static const char SQL_INSERT[] =
        "INSERT INTO servers(handle, ip, port, ssh_user, provider, provider_id, status,"
        " is_managed, labels, last_seen_at, created_at, updated_at) VALUES (:handle, :ip, :port,"
        " :user, :provider, :provider_id, :status, :managed, :labels, :now, :now, :now)";
static const char SQL_UPDATE[] =
        "UPDATE servers SET ip = :ip, port = :port, ssh_user = :user, provider = :provider,"
        " provider_id = :provider_id, labels = :labels, status = :status,"
        " previous_status = :previous, is_managed = :managed, missing_since = NULL,"
        " last_seen_at = :now, updated_at = :now WHERE id = :id";
static const char SQL_SEEN[] = "UPDATE servers SET last_seen_at = :now WHERE id = :id";
static const char SQL_MISSING[] =
        "UPDATE servers SET status = 'missing', previous_status = :previous,"
        " missing_since = :now, updated_at = :now WHERE id = :id";

/* server_discovered / server_missing in the listing's transaction. */
static int notify_server(srv_sync *s, const char *kind, const char *handle, const char *ip,
                         const char *previous)
{
	bool missing = strcmp(kind, NOTIFY_SERVER_MISSING) == 0;
	notify_note n;
	char err[256];

	notify_note_init(&n, kind, missing ? LOG_WARNING : LOG_INFO, s->run->correlation_id);
	if (missing) {
		notify_note_title(&n, "Server %s is missing from %s", handle, s->provider);
		notify_note_line(&n, "The %s listing no longer has it; it was %s, now missing.",
		                 s->provider, previous ? previous : "unknown");
	} else {
		notify_note_title(&n, "New managed server %s discovered", handle);
		notify_note_line(&n, "Found in %s at %s; status pending_setup (provisioning next).",
		                 s->provider, ip ? ip : "an unknown address");
	}
	notify_field_str(&n, "server_handle", handle);
	notify_field_str(&n, "ip", ip);
	notify_field_str(&n, "provider", s->provider);
	notify_field_str(&n, missing ? "previous_status" : "status",
	                 missing ? previous : "pending_setup");
	int rc = notify_add(s->run->store, &n, s->now, NULL, err, sizeof err);
	notify_note_free(&n);
	return rc == 0 ? 0 : -1;
}

static int discover(srv_sync *s, const provider_server *p, bool ghost)
{
	const char *L = s->run->logger;
	log_info(L, "server_discovered", LOG_STR("server_handle", p->handle),
	         LOG_STR("server_ip", p->ip), LOG_BOOL("is_ghost", ghost),
	         LOG_STR("provider", s->provider));
	if (ghost)
		log_info(L, "ghost_server_discovered", LOG_STR("server_handle", p->handle),
		         LOG_STR("server_ip", p->ip));
	else
		log_info(L, "managed_server_discovered", LOG_STR("server_handle", p->handle),
		         LOG_STR("server_ip", p->ip), LOG_STR("status", "pending_setup"));
	task_run_count(s->run, "servers_discovered", 1);
	int rc = exec_server(s, SQL_INSERT, p, 0, ghost ? "reserved" : "pending_setup", NULL,
	                     !ghost);
	if (rc == 0 && !ghost)
		rc = notify_server(s, NOTIFY_SERVER_DISCOVERED, p->handle, p->ip, NULL);
	return rc;
}

static int update(srv_sync *s, srv_row *r, const provider_server *p, bool ghost)
{
	const char *status = r->status, *previous = r->previous_status;
	bool managed = r->managed && !ghost;

	if (r->status && strcmp(r->status, "missing") == 0) {
		status = previous && strcmp(previous, "missing") != 0
		                 ? previous
		                 : (ghost ? "reserved" : "pending_setup");
		previous = "missing";
		log_info(s->run->logger, "server_reappeared", LOG_STR("server_handle", p->handle),
		         LOG_STR("server_ip", p->ip), LOG_STR("status", status));
	}
	if (ghost && r->managed)
		status = "reserved";
	bool changed =
	        str_differs(r->ip, p->ip) || r->port != p->port ||
	        str_differs(r->ssh_user, p->ssh_user) || str_differs(r->provider, s->provider) ||
	        str_differs(r->provider_id, p->provider_id) || str_differs(r->labels, p->labels) ||
	        str_differs(r->status, status) || managed != r->managed;
	if (!changed)
		return exec_server(s, SQL_SEEN, NULL, r->id, NULL, NULL, false);
	task_run_count(s->run, "servers_updated", 1);
	return exec_server(s, SQL_UPDATE, p, r->id, status, previous, managed);
}

static int mark_missing(srv_sync *s, srv_row *r)
{
	log_warning(s->run->logger, "server_missing_from_provider",
	            LOG_STR("server_handle", r->handle), LOG_STR("server_ip", r->ip),
	            LOG_STR("previous_status", r->status), LOG_STR("provider", s->provider));
	task_run_count(s->run, "servers_missing", 1);
	int rc = exec_server(s, SQL_MISSING, NULL, r->id, NULL, r->status, false);
	if (rc == 0 && r->managed)
		rc = notify_server(s, NOTIFY_SERVER_MISSING, r->handle, r->ip, r->status);
	return rc;
}

static int apply_listing(srv_sync *s, const provider_list *l)
{
	sqlite3 *db = store_db(s->run->store);
	int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
	if (rc == 0)
		rc = rows_load(s);
	for (size_t i = 0; rc == 0 && i < l->count; i++) {
		const provider_server *p = &l->items[i];
		srv_row *r = row_find(s, p->handle);
		if (r && r->seen)
			continue; /* listed twice */
		if (r)
			r->seen = true;
		rc = r ? update(s, r, p, is_ghost(s, p)) : discover(s, p, is_ghost(s, p));
	}
	for (size_t i = 0; rc == 0 && i < s->nrows; i++) {
		srv_row *r = &s->rows[i];
		if (!r->seen && r->provider && strcmp(r->provider, s->provider) == 0 &&
		    str_differs(r->status, "missing") && str_differs(r->status, "decommissioned"))
			rc = mark_missing(s, r);
	}
	if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = -1;
	if (rc != 0) {
		log_error(s->run->logger, "server_sync_store_failed",
		          LOG_STR("provider", s->provider), LOG_STR("error", sqlite3_errmsg(db)));
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	}
	return rc;
}

/* ---- providers ---- */

static int store_details(srv_sync *s, const char *handle, const char *details)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s->run->store),
	                       "UPDATE servers SET details = ?, updated_at = ? WHERE handle = ?",
	                       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, details, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 2, s->now);
	sqlite3_bind_text(st, 3, handle, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* The listed servers whose details are older than details_interval. */
static t4v_details *details_due(srv_sync *s, const provider_list *l, provider_server **srv,
                                size_t *n)
{
	double interval =
	        (double)sync_key_duration_ms(s->sec, "details_interval", 6 * 3600000) / 1000;
	t4v_details *items = l->count ? calloc(l->count, sizeof *items) : NULL;

	*n = 0;
	for (size_t i = 0; items && i < l->count; i++) {
		const srv_row *r = row_find(s, l->items[i].handle);
		if (r && s->now - providers_details_fetched_at(r->details) < interval)
			continue;
		srv[*n] = &l->items[i];
		items[(*n)++].id = l->items[i].provider_id;
	}
	return items;
}

/* Details of the due servers, T4V_DETAILS_PARALLEL requests at a time; a
 * failed request is logged per server and not fatal. */
static void refresh_details(srv_sync *s, http_client *c, const char *api, const provider_list *l)
{
	provider_server **srv = l->count ? calloc(l->count, sizeof *srv) : NULL;
	size_t n = 0;
	t4v_details *items = srv ? details_due(s, l, srv, &n) : NULL;

	bool cancelled = n > 0 && providers_time4vps_details_many(c, api, items, n, s->now) != 0 &&
	                 task_run_cancelled(s->run);
	for (size_t i = 0; i < n; i++) {
		if (items[i].details == NULL) {
			if (!cancelled)
				log_warning(s->run->logger, "server_details_failed",
				            LOG_STR("server_handle", srv[i]->handle),
				            LOG_STR("error", items[i].err));
		} else if (store_details(s, srv[i]->handle, items[i].details) == 0) {
			task_run_count(s->run, "details_updated", 1);
		}
		free(items[i].details);
	}
	free(items);
	free(srv);
}

/* 0 if the listing was complete (and applied), -1 otherwise (err set). */
static int sync_time4vps(srv_sync *s, char *err, size_t errlen)
{
	const char *api = sync_key_str(s->sec, "api_url", "https://billing.time4vps.com/api");
	char *user = NULL, *pass = NULL, ua[64];
	provider_list l = {0};
	int rc = providers_read_credentials(sync_key_str(s->sec, "credentials_file", NULL), &user,
	                                    &pass, err, errlen);
	if (rc != 0)
		return -1;
	snprintf(ua, sizeof ua, "fleetkeeper/%s", FK_VERSION);
	http_options o = {.user_agent = ua,
	                  .timeout_ms = sync_key_duration_ms(s->sec, "timeout", 30000),
	                  .max_retries = 3,
	                  .cancel_fd = s->run->cancel_fd,
	                  .basic_user = user,
	                  .basic_pass = pass};
	http_client *c = http_client_new(&o);
	rc = c ? providers_time4vps_list(c, api, &l, err, errlen) : -1;
	if (rc == 0)
		rc = apply_listing(s, &l);
	if (rc == 0)
		refresh_details(s, c, api, &l);
	rows_free(s);
	provider_list_free(&l);
	http_client_free(c);
	free(user);
	sync_secret_free(pass);
	return rc;
}

static int sync_inventory(srv_sync *s, char *err, size_t errlen)
{
	provider_list l = {0};
	const char *file = sync_key_str(s->sec, "file", NULL);
	if (file == NULL) {
		snprintf(err, errlen, "[provider.inventory] needs file");
		return -1;
	}
	int rc = inventory_load(file, s->run->cancel_fd, &l, err, errlen);
	if (rc == 0)
		rc = apply_listing(s, &l);
	rows_free(s);
	provider_list_free(&l);
	return rc;
}

static void publish_triggers(task_run *run)
{
	sqlite3_stmt *st = NULL;
	const char *sql = "SELECT handle, ip, status FROM servers WHERE is_managed = 1"
	                  " AND status IN ('pending_setup', 'force_rebuild') ORDER BY handle";
	if (sqlite3_prepare_v2(store_db(run->store), sql, -1, &st, NULL) != SQLITE_OK)
		return;
	while (sqlite3_step(st) == SQLITE_ROW) {
		log_info(run->logger, "provisioning_trigger_published",
		         LOG_STR("server_handle", (const char *)sqlite3_column_text(st, 0)),
		         LOG_STR("server_ip", (const char *)sqlite3_column_text(st, 1)),
		         LOG_STR("status", (const char *)sqlite3_column_text(st, 2)));
		task_run_count(run, "triggers_published", 1);
	}
	sqlite3_finalize(st);
}

static const char *const provider_names[] = {"time4vps", "inventory", NULL};

static task_result server_sync_run(task_run *run)
{
	char err[768], failed[1024] = "";
	int nproviders = 0, nfailed = 0;

	for (size_t i = 0; provider_names[i]; i++) {
		char name[64];
		snprintf(name, sizeof name, "provider.%s", provider_names[i]);
		srv_sync s = {.run = run,
		              .provider = provider_names[i],
		              .sec = config_section_find(run->cfg, name),
		              .now = sync_now()};
		if (s.sec == NULL)
			continue;
		nproviders++;
		err[0] = '\0';
		int rc = i == 0 ? sync_time4vps(&s, err, sizeof err)
		                : sync_inventory(&s, err, sizeof err);
		if (rc != 0) {
			nfailed++;
			log_error(run->logger, "server_sync_provider_failed",
			          LOG_STR("provider", s.provider),
			          LOG_STR("error", err[0] ? err : "store error"));
			snprintf(failed + strlen(failed), sizeof failed - strlen(failed),
			         "%s%s: %s", failed[0] ? "; " : "", s.provider,
			         err[0] ? err : "store error");
		}
	}
	if (nproviders == 0)
		return task_run_skip(run, "no_providers");
	publish_triggers(run);
	if (nfailed)
		return task_run_fail(run, "provider_incomplete_listing", "%s", failed);
	return TASK_OK;
}

static size_t server_sync_start_fields(task_run *run, log_field *out, size_t cap)
{
	static const char *const lists[] = {"", "time4vps", "inventory", "time4vps,inventory"};
	size_t mask = 0;
	for (size_t i = 0; provider_names[i]; i++) {
		char name[64];
		snprintf(name, sizeof name, "provider.%s", provider_names[i]);
		if (config_section_find(run->cfg, name))
			mask |= (size_t)1 << i;
	}
	if (cap < 1)
		return 0;
	out[0] = LOG_STR("providers", lists[mask]);
	return 1;
}

const task_type task_type_server_sync = {
        .name = "server_sync",
        .logger = "tasks.server_sync",
        .items = server_sync_items,
        .start_fields = server_sync_start_fields,
        .run = server_sync_run,
};
