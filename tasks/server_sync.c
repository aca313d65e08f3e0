/*
 * server_sync — servers from [provider.time4vps] (the provider API) and
 * [provider.inventory] (an Ansible inventory) into the servers table.
 *
 * One run, per configured provider: list its servers; only a complete
 * listing is applied, in one transaction:
 *
 *   new server            -> the provider's initial_status (ready for an
 *                            inventory, pending_setup for Time4VPS;
 *                            providers_initial_status), managed
 *                            (managed_server_discovered, a server_discovered
 *                            notification)
 *   new ghost server      -> reserved, not managed (ghost_server_discovered)
 *   listed, was missing   -> its status before it went missing, or error
 *                            while an incident of it is open (server_reappeared)
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
 * fatal. Finally, when a provision task is configured (something
 * consumes them: providers_provisioning_configured), every managed server
 * in pending_setup or force_rebuild is published as a provisioning trigger
 * (provisioning_trigger_published); the provisioning task picks such
 * servers from the store by status.
 *
 * previous_status while missing: the status to come back to. A server in
 * error with an open incident keeps the incident's previous status there
 * (so that resolving the incident still restores what the server was
 * before it), and comes back in error.
 *
 * Invariants: a provider whose listing failed changes no row of its own,
 * and the run then fails (after the other providers were applied); rows
 * are matched by handle, and a row of another provider is never marked
 * missing by this one. Credentials are read per run and wiped after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "http.h"
#include "inventory.h"
#include "log.h"
#include "notify_text.h"
#include "providers.h"
#include "servers.h"
#include "sync_common.h"
#include "task.h"

static const char *const server_sync_items[] = {"servers_discovered", "servers_updated",
                                                "servers_missing",    "details_updated",
                                                "triggers_published", NULL};

typedef struct {
	task_run *run;
	const char *provider; /* "time4vps", "inventory" */
	const config_section *sec;
	server_sync_rows rows; /* loaded in the listing's transaction */
	bool *seen;            /* per row: listed in this run */
	const provider_list *listing;
	const char *initial; /* the status of new managed servers */
	bool provisioning;   /* a provision task is configured */
	double now;
	char err[512]; /* why a notification could not be added */
} srv_sync;

/* ---- rows ---- */

static void rows_free(srv_sync *s)
{
	server_sync_rows_free(&s->rows);
	free(s->seen);
	s->seen = NULL;
}

static int rows_load(srv_sync *s)
{
	int rc = servers_sync_load(s->run->store, &s->rows);
	if (rc == STORE_OK && s->rows.count) {
		s->seen = calloc(s->rows.count, sizeof *s->seen);
		if (s->seen == NULL)
			rc = store_set_error(s->run->store, STORE_ERROR, "servers: out of memory");
	}
	return rc;
}

static server_sync_row *row_find(srv_sync *s, const char *handle)
{
	for (size_t i = 0; i < s->rows.count; i++)
		if (s->rows.rows[i].handle && strcmp(s->rows.rows[i].handle, handle) == 0)
			return &s->rows.rows[i];
	return NULL;
}

static bool *seen_of(srv_sync *s, const server_sync_row *r)
{
	return &s->seen[r - s->rows.rows];
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

static server_listed listed_of(const srv_sync *s, const provider_server *p)
{
	return (server_listed){.handle = p->handle,
	                       .ip = p->ip,
	                       .ssh_user = p->ssh_user,
	                       .provider = s->provider,
	                       .provider_id = p->provider_id,
	                       .labels = p->labels,
	                       .port = p->port};
}

/* server_discovered / server_missing in the listing's transaction. */
static int notify_server(srv_sync *s, const char *kind, const char *handle, const char *ip,
                         const char *previous)
{
	bool missing = strcmp(kind, NOTIFY_SERVER_MISSING) == 0;
	notify_note n;

	notify_note_init(&n, kind, missing ? LOG_WARNING : LOG_INFO, s->run->correlation_id);
	if (missing) {
		notify_note_title(&n, "Server %s is missing from %s", handle, s->provider);
		notify_note_line(&n, "The %s listing no longer has it; it was %s, now missing.",
		                 s->provider, previous ? previous : "unknown");
	} else {
		bool next = s->provisioning && strcmp(s->initial, "pending_setup") == 0;
		notify_note_title(&n, "New managed server %s discovered", handle);
		notify_note_line(&n, "Found in %s at %s; status %s%s.", s->provider,
		                 ip ? ip : "an unknown address", s->initial,
		                 next ? " (provisioning next)" : "");
	}
	notify_field_str(&n, "server_handle", handle);
	notify_field_str(&n, "ip", ip);
	notify_field_str(&n, "provider", s->provider);
	notify_field_str(&n, missing ? "previous_status" : "status",
	                 missing ? previous : s->initial);
	int rc = notify_add(s->run->store, &n, s->now, NULL, s->err, sizeof s->err);
	notify_note_free(&n);
	return rc;
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
		         LOG_STR("server_ip", p->ip), LOG_STR("status", s->initial));
	task_run_count(s->run, "servers_discovered", 1);
	server_listed l = listed_of(s, p);
	int rc = servers_sync_insert(s->run->store, &l, ghost ? "reserved" : s->initial, !ghost,
	                             s->now, NULL);
	if (rc == 0 && !ghost)
		rc = notify_server(s, NOTIFY_SERVER_DISCOVERED, p->handle, p->ip, NULL);
	return rc;
}

static int update(srv_sync *s, const server_sync_row *r, const provider_server *p, bool ghost)
{
	const char *status = r->status, *previous = r->previous_status;
	bool managed = r->managed && !ghost;

	if (r->status && strcmp(r->status, "missing") == 0) {
		if (r->open_incident) { /* the outage goes on; previous is the incident's */
			status = "error";
		} else {
			status = previous && strcmp(previous, "missing") != 0
			                 ? previous
			                 : (ghost ? "reserved" : s->initial);
			previous = NULL;
		}
		log_info(s->run->logger, "server_reappeared", LOG_STR("server_handle", p->handle),
		         LOG_STR("server_ip", p->ip), LOG_STR("status", status));
	}
	if (ghost && r->managed)
		status = "reserved";
	bool changed = sync_str_differs(r->ip, p->ip) || r->port != p->port ||
	               sync_str_differs(r->ssh_user, p->ssh_user) ||
	               sync_str_differs(r->provider, s->provider) ||
	               sync_str_differs(r->provider_id, p->provider_id) ||
	               sync_str_differs(r->labels, p->labels) ||
	               sync_str_differs(r->status, status) || managed != r->managed;
	if (!changed)
		return servers_sync_seen(s->run->store, r->id, s->now);
	task_run_count(s->run, "servers_updated", 1);
	server_listed l = listed_of(s, p);
	return servers_sync_update(s->run->store, r->id, &l, status, previous, managed, s->now);
}

static int mark_missing(srv_sync *s, const server_sync_row *r)
{
	log_warning(s->run->logger, "server_missing_from_provider",
	            LOG_STR("server_handle", r->handle), LOG_STR("server_ip", r->ip),
	            LOG_STR("previous_status", r->status), LOG_STR("provider", s->provider));
	task_run_count(s->run, "servers_missing", 1);
	/* in error with an open incident: keep the status before the incident */
	bool keep = r->open_incident && !sync_str_differs(r->status, "error");
	int rc = servers_sync_mark_missing(s->run->store, r->id,
	                                   keep ? r->previous_status : r->status, s->now);
	if (rc == 0 && r->managed)
		rc = notify_server(s, NOTIFY_SERVER_MISSING, r->handle, r->ip, r->status);
	return rc;
}

/* The listing against the servers, inside one transaction (store_tx). */
static int apply_locked(store *st, void *arg)
{
	srv_sync *s = arg;
	const provider_list *l = s->listing;
	int rc = rows_load(s);

	(void)st;
	for (size_t i = 0; rc == 0 && i < l->count; i++) {
		const provider_server *p = &l->items[i];
		server_sync_row *r = row_find(s, p->handle);
		if (r && *seen_of(s, r))
			continue; /* listed twice */
		if (r)
			*seen_of(s, r) = true;
		rc = r ? update(s, r, p, is_ghost(s, p)) : discover(s, p, is_ghost(s, p));
	}
	for (size_t i = 0; rc == 0 && i < s->rows.count; i++) {
		const server_sync_row *r = &s->rows.rows[i];
		if (!s->seen[i] && r->provider && strcmp(r->provider, s->provider) == 0 &&
		    sync_str_differs(r->status, "missing") &&
		    sync_str_differs(r->status, "decommissioned"))
			rc = mark_missing(s, r);
	}
	return rc;
}

static int apply_listing(srv_sync *s, const provider_list *l)
{
	s->listing = l;
	int rc = store_tx(s->run->store, apply_locked, s);
	if (rc != 0)
		log_error(s->run->logger, "server_sync_store_failed",
		          LOG_STR("provider", s->provider),
		          LOG_STR("error", s->err[0] ? s->err : store_errmsg(s->run->store)));
	return rc;
}

/* ---- providers ---- */

/* The listed servers whose details are older than details_interval. */
static t4v_details *details_due(srv_sync *s, const provider_list *l, provider_server **srv,
                                size_t *n)
{
	double interval =
	        (double)sync_key_duration_ms(s->sec, "details_interval", 6 * 3600000) / 1000;
	t4v_details *items = l->count ? calloc(l->count, sizeof *items) : NULL;

	*n = 0;
	for (size_t i = 0; items && i < l->count; i++) {
		const server_sync_row *r = row_find(s, l->items[i].handle);
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
		} else if (servers_sync_set_details(s->run->store, srv[i]->handle, items[i].details,
		                                    s->now) == STORE_OK) {
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

static int publish_trigger(void *ctx, const char *handle, const char *ip, const char *status)
{
	task_run *run = ctx;
	log_info(run->logger, "provisioning_trigger_published", LOG_STR("server_handle", handle),
	         LOG_STR("server_ip", ip), LOG_STR("status", status));
	task_run_count(run, "triggers_published", 1);
	return 0;
}

/* Only when a provision task consumes them. Best effort, as the
 * provisioning task reads the store itself: a store error only ends the
 * announcements early. */
static void publish_triggers(task_run *run)
{
	if (providers_provisioning_configured(run->cfg))
		(void)servers_sync_triggers(run->store, publish_trigger, run);
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
		              .provisioning = providers_provisioning_configured(run->cfg),
		              .now = clock_wall()};
		if (s.sec == NULL)
			continue;
		s.initial = providers_initial_status(s.sec, s.provider);
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
