/*
 * cli_servers — `fleetkeeper servers`: the fleet as the store knows it, and
 * the operator's controls over one server (docs/servers.md).
 *
 *   servers [--json]                          every server
 *   servers show SERVER [--json]              one server, with its services and
 *                                             its availability and response
 *                                             times over 24 h, 7 d, 30 d
 *   servers set-status SERVER STATUS --reason TEXT
 *   servers forget SERVER                     remove it (its incidents stay)
 *   servers maintenance SERVER --for DURATION [--from ISO8601] [--reason TEXT]
 *   servers maintenance SERVER --end
 *
 * The changes are written to the store directly (the daemon need not run)
 * and recorded as an event in the store (`fleetkeeper trace ID` shows it),
 * with who (the login name) and why; the command prints what it did and the
 * event's correlation id.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "clock.h"
#include "duration.h"
#include "events.h"
#include "health_history.h"
#include "log.h"
#include "maintenance.h"
#include "runtime.h"
#include "servers.h"
#include "table.h"

#define SERVERS_LOGGER "cli.servers"

static const char *const operator_statuses[] = {
        "discovered", "pending_setup", "provisioning", "force_rebuild", "ready",          "in_use",
        "error",      "maintenance",   "reserved",     "missing",       "decommissioned",
};

typedef struct {
	const cli_ctx *ctx;
	config *cfg;
	store *st;
	double now;
	bool show; /* `servers show`: with the health history */
} servers_cmd;

/* ---- the audit event ---- */

/* Store one event line under a fresh correlation id (into cid). */
static int audit(servers_cmd *c, const char *event, const log_field *fields, size_t n, char *cid,
                 size_t cap)
{
	char line[4096], ts[40];
	int64_t usec = clock_wall_usec();
	snprintf(cid, cap, "op_servers_%lld_%04x", (long long)(usec / 1000000),
	         (unsigned)(usec & 0xffff));
	log_bind(LOG_STR("correlation_id", cid));
	size_t len = log_render_json(line, sizeof line, usec, LOG_INFO, SERVERS_LOGGER, event,
	                             fields, n);
	log_unbind("correlation_id");
	if (len >= sizeof line)
		return -1;
	log_format_timestamp(ts, sizeof ts, usec);
	event_record rec = {.unix_time = (double)usec / 1e6,
	                    .timestamp = ts,
	                    .level = "info",
	                    .logger = SERVERS_LOGGER,
	                    .event = event,
	                    .correlation_id = cid,
	                    .json = line};
	return events_insert(c->st, &rec, 1);
}

/* ---- the listing ---- */

static const char *health_of(const server_view *v)
{
	if (v->last_health_check <= 0)
		return "unchecked";
	return v->consecutive_failures == 0 ? "healthy" : "unhealthy";
}

static void format_time(double t, char *buf, size_t cap)
{
	if (t <= 0)
		snprintf(buf, cap, "-");
	else
		log_format_timestamp(buf, cap, (int64_t)llround(t * 1e6));
}

/* The maintenance a server is in now: a stored window or a [maintenance.*]
 * rule of the configuration. */
static double maintenance_until(servers_cmd *c, const server_view *v, char *source, size_t cap)
{
	maintenance_state m;
	if (maintenance_state_at(c->st, c->cfg->maintenance, c->cfg->nmaintenance, v->id, v->handle,
	                         c->now, &m) != STORE_OK ||
	    !m.active)
		return 0;
	snprintf(source, cap, "%s", m.source);
	return m.until;
}

static cJSON *view_json(servers_cmd *c, const server_view *v)
{
	char source[80] = "";
	double until = maintenance_until(c, v, source, sizeof source);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "handle", v->handle);
	if (v->ip)
		cJSON_AddStringToObject(o, "ip", v->ip);
	else
		cJSON_AddNullToObject(o, "ip");
	cJSON_AddNumberToObject(o, "port", v->port);
	cJSON_AddStringToObject(o, "status", v->status);
	cJSON_AddStringToObject(o, "health", health_of(v));
	cJSON_AddBoolToObject(o, "managed", v->managed);
	cJSON_AddNumberToObject(o, "consecutive_failures", v->consecutive_failures);
	if (v->last_health_check > 0)
		cJSON_AddNumberToObject(o, "last_health_check", v->last_health_check);
	else
		cJSON_AddNullToObject(o, "last_health_check");
	if (v->response_time_ms >= 0)
		cJSON_AddNumberToObject(o, "response_time_ms", v->response_time_ms);
	else
		cJSON_AddNullToObject(o, "response_time_ms");
	if (v->open_incident)
		cJSON_AddNumberToObject(o, "open_incident", (double)v->open_incident);
	else
		cJSON_AddNullToObject(o, "open_incident");
	if (until > 0) {
		cJSON_AddNumberToObject(o, "maintenance_until", until);
		cJSON_AddStringToObject(o, "maintenance_source", source);
	} else {
		cJSON_AddNullToObject(o, "maintenance_until");
	}
	if (v->previous_status)
		cJSON_AddStringToObject(o, "previous_status", v->previous_status);
	if (v->provider)
		cJSON_AddStringToObject(o, "provider", v->provider);
	return o;
}

typedef struct {
	servers_cmd *c;
	table *t;
	int rows;
	int64_t id; /* of the last row */
} list_out;

/* ---- `servers show`: availability and response times (health_history) ---- */

static const struct {
	const char *name;
	double seconds;
} history_windows[] = {{"24h", 86400}, {"7d", 7 * 86400}, {"30d", 30 * 86400}};

#define NWINDOWS (sizeof history_windows / sizeof history_windows[0])

static cJSON *summary_json(const health_summary *h)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "checks", (double)h->checks);
	cJSON_AddNumberToObject(o, "failures", (double)h->failures);
	if (h->checks > 0)
		cJSON_AddNumberToObject(o, "availability",
		                        1.0 - (double)h->failures / (double)h->checks);
	else
		cJSON_AddNullToObject(o, "availability");
	if (h->rt_avg_ms >= 0) {
		cJSON_AddNumberToObject(o, "response_avg_ms", h->rt_avg_ms);
		cJSON_AddNumberToObject(o, "response_min_ms", (double)h->rt_min_ms);
		cJSON_AddNumberToObject(o, "response_max_ms", (double)h->rt_max_ms);
	}
	return o;
}

static void summary_cells(const health_summary *h, char *checks, char *avail, char *resp,
                          size_t cap)
{
	snprintf(checks, cap, "%lld (%lld failed)", (long long)h->checks, (long long)h->failures);
	if (h->checks > 0)
		snprintf(avail, cap, "%.3f%%",
		         100.0 * (1.0 - (double)h->failures / (double)h->checks));
	else
		snprintf(avail, cap, "-");
	if (h->rt_avg_ms >= 0)
		snprintf(resp, cap, "%.0f / %lld / %lld ms", h->rt_avg_ms, (long long)h->rt_min_ms,
		         (long long)h->rt_max_ms);
	else
		snprintf(resp, cap, "-");
}

/* The server's health history over 24 h, 7 d and 30 d: a table, or (json)
 * into o as "history". -1 on a store error (said). */
static int show_history(servers_cmd *c, int64_t id, cJSON *o)
{
	health_summary h[NWINDOWS];
	for (size_t i = 0; i < NWINDOWS; i++) {
		if (health_history_summarize(c->st, id, c->now - history_windows[i].seconds,
		                             &h[i]) != STORE_OK) {
			fprintf(stderr, "fleetkeeper: %s: %s\n", c->cfg->db_path,
			        store_errmsg(c->st));
			return -1;
		}
	}
	if (o) {
		cJSON *hist = cJSON_AddObjectToObject(o, "history");
		for (size_t i = 0; i < NWINDOWS; i++)
			cJSON_AddItemToObject(hist, history_windows[i].name, summary_json(&h[i]));
		return 0;
	}
	table *t = table_new(4, "HISTORY", "CHECKS", "AVAILABILITY", "RESPONSE AVG / MIN / MAX");
	for (size_t i = 0; i < NWINDOWS; i++) {
		char checks[64], avail[64], resp[64];
		summary_cells(&h[i], checks, avail, resp, sizeof checks);
		table_add(t, history_windows[i].name, checks, avail, resp);
	}
	printf("\n");
	table_print(t, stdout);
	table_free(t);
	return 0;
}

static int list_row(void *ctx, const server_view *v)
{
	list_out *o = ctx;
	o->rows++;
	o->id = v->id;
	if (o->c->ctx->json && o->c->show) {
		cJSON *j = view_json(o->c, v);
		if (show_history(o->c, v->id, j) != 0) {
			cJSON_Delete(j);
			return -1;
		}
		return cli_print_json(j) == 0 ? 0 : -1;
	}
	if (o->c->ctx->json)
		return cli_print_json(view_json(o->c, v)) == 0 ? 0 : -1;
	char addr[300], fails[16], last[40], resp[32], inc[32] = "-", maint[40] = "-", src[80];
	snprintf(addr, sizeof addr, "%s:%d", v->ip ? v->ip : "?", v->port);
	snprintf(fails, sizeof fails, "%d", v->consecutive_failures);
	format_time(v->last_health_check, last, sizeof last);
	if (v->response_time_ms >= 0)
		snprintf(resp, sizeof resp, "%.0f ms", v->response_time_ms);
	else
		snprintf(resp, sizeof resp, "-");
	if (v->open_incident)
		snprintf(inc, sizeof inc, "%lld %s", (long long)v->open_incident,
		         v->open_incident_type ? v->open_incident_type : "");
	double until = maintenance_until(o->c, v, src, sizeof src);
	if (until > 0)
		format_time(until, maint, sizeof maint);
	table_add(o->t, v->handle, addr, v->status, health_of(v), fails, last, resp, inc, maint);
	return 0;
}

static int servers_list(servers_cmd *c, const char *handle)
{
	list_out o = {c, NULL, 0, 0};
	if (!c->ctx->json)
		o.t = table_new(9, "SERVER", "ADDRESS", "STATUS", "HEALTH", "FAILURES",
		                "LAST CHECK", "RESPONSE", "INCIDENT", "MAINTENANCE UNTIL");
	int rc = servers_view_each(c->st, handle, c->now, list_row, &o);
	if (rc < 0)
		fprintf(stderr, "fleetkeeper: %s: %s\n", c->cfg->db_path, store_errmsg(c->st));
	if (o.t && rc >= 0 && (o.rows > 0 || !handle))
		table_print(o.t, stdout);
	table_free(o.t);
	if (o.t && rc >= 0 && handle && o.rows > 0 && show_history(c, o.id, NULL) != 0)
		return EXIT_FAILED;
	if (rc >= 0 && handle && o.rows == 0) {
		fprintf(stderr, "fleetkeeper: no server '%s' (see `fleetkeeper servers`)\n",
		        handle);
		return EXIT_FAILED;
	}
	return rc < 0 ? EXIT_FAILED : EXIT_OK;
}

/* ---- one server ---- */

static int first_view(void *ctx, const server_view *v)
{
	server_view *out = ctx;
	out->id = v->id;
	out->status = v->status ? strdup(v->status) : NULL;
	return 1;
}

/* The server's id and status (malloc'd into *status); EXIT_FAILED with a
 * message when there is none. */
static int find_server(servers_cmd *c, const char *handle, int64_t *id, char **status)
{
	server_view v = {0};
	int rc = servers_view_each(c->st, handle, c->now, first_view, &v);
	if (rc < 0) {
		fprintf(stderr, "fleetkeeper: %s: %s\n", c->cfg->db_path, store_errmsg(c->st));
		return EXIT_FAILED;
	}
	if (rc == 0) {
		fprintf(stderr, "fleetkeeper: no server '%s' (see `fleetkeeper servers`)\n",
		        handle);
		return EXIT_FAILED;
	}
	*id = v.id;
	*status = (char *)v.status;
	return EXIT_OK;
}

static bool status_known(const char *s)
{
	for (size_t i = 0; i < sizeof operator_statuses / sizeof operator_statuses[0]; i++)
		if (strcmp(s, operator_statuses[i]) == 0)
			return true;
	return false;
}

static int done(servers_cmd *c, const char *what, const char *handle, const char *cid)
{
	if (c->ctx->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "server", handle);
		cJSON_AddStringToObject(o, "done", what);
		cJSON_AddStringToObject(o, "correlation_id", cid);
		return cli_print_json(o) == 0 ? EXIT_OK : EXIT_FAILED;
	}
	printf("%s: %s (recorded: fleetkeeper trace %s)\n", handle, what, cid);
	return EXIT_OK;
}

static int store_failed(servers_cmd *c)
{
	store_tx_rollback(c->st);
	fprintf(stderr, "fleetkeeper: %s: %s\n", c->cfg->db_path, store_errmsg(c->st));
	return EXIT_FAILED;
}

static int set_status(servers_cmd *c, const char *handle, const char *status, const char *reason)
{
	int64_t id;
	char *old = NULL, err[512], cid[64], what[160];
	int rc = find_server(c, handle, &id, &old);
	if (rc != EXIT_OK)
		return rc;
	log_field f[] = {LOG_STR("server_handle", handle), LOG_STR("previous_status", old),
	                 LOG_STR("status", status), LOG_STR("reason", reason),
	                 LOG_STR("by", cli_operator_name())};
	if (store_tx_begin(c->st) != STORE_OK ||
	    servers_set_status(c->st, id, status, c->now, err, sizeof err) != STORE_OK ||
	    audit(c, "server_status_set", f, 5, cid, sizeof cid) != STORE_OK ||
	    store_tx_commit(c->st) != STORE_OK) {
		free(old);
		return store_failed(c);
	}
	snprintf(what, sizeof what, "status %s -> %s", old ? old : "?", status);
	free(old);
	return done(c, what, handle, cid);
}

static int forget(servers_cmd *c, const char *handle)
{
	int64_t id;
	char *old = NULL, cid[64];
	int rc = find_server(c, handle, &id, &old);
	if (rc != EXIT_OK)
		return rc;
	log_field f[] = {LOG_STR("server_handle", handle), LOG_STR("status", old),
	                 LOG_STR("by", cli_operator_name())};
	bool ok = store_tx_begin(c->st) == STORE_OK && servers_forget(c->st, id) == STORE_OK &&
	          audit(c, "server_forgotten", f, 3, cid, sizeof cid) == STORE_OK &&
	          store_tx_commit(c->st) == STORE_OK;
	free(old); /* after the event that quotes it */
	if (!ok)
		return store_failed(c);
	return done(c, "forgotten (its services and maintenance windows with it)", handle, cid);
}

/* ---- maintenance ---- */

typedef struct {
	const char *duration, *from, *reason;
	bool end;
} maintenance_args;

static int maintenance_start_cmd(servers_cmd *c, const char *handle, const maintenance_args *a)
{
	int64_t id, ms = 0, from = (int64_t)c->now, window = 0;
	char *old = NULL, err[256] = "", cid[64], what[200], until_s[40];
	if (duration_parse(a->duration, &ms, err, sizeof err) != 0) {
		cli_usage_error("servers maintenance: --for: %s", err);
		return EXIT_USAGE;
	}
	if (ms < 60000) {
		cli_usage_error("servers maintenance: --for: at least 1m, got '%s'", a->duration);
		return EXIT_USAGE;
	}
	const tz *zone = NULL;
	if (a->from && (tz_load(NULL, &zone, err, sizeof err) != 0 ||
	                tz_parse_iso8601(a->from, zone, &from) != 0)) {
		cli_usage_error("servers maintenance: --from: expected an ISO 8601 time such as "
		                "2026-12-24T22:00 or 2026-12-24T22:00:00+01:00, got '%s'",
		                a->from);
		return EXIT_USAGE;
	}
	int rc = find_server(c, handle, &id, &old);
	if (rc != EXIT_OK)
		return rc;
	free(old);
	double until = (double)from + (double)ms / 1000.0;
	bool now = from <= (int64_t)c->now;
	format_time(until, until_s, sizeof until_s);
	log_field f[] = {LOG_STR("server_handle", handle),
	                 LOG_DBL("starts_at", (double)from),
	                 LOG_DBL("until", until),
	                 LOG_STR("reason", a->reason),
	                 LOG_STR("by", cli_operator_name()),
	                 LOG_STR("source", "cli")};
	if (store_tx_begin(c->st) != STORE_OK ||
	    maintenance_window_add(c->st, id, (double)from, until, a->reason, cli_operator_name(),
	                           c->now, &window) != STORE_OK ||
	    (now && maintenance_note(c->st, id, true, NULL) != STORE_OK) ||
	    audit(c, now ? "maintenance_started" : "maintenance_scheduled", f, 6, cid,
	          sizeof cid) != STORE_OK ||
	    store_tx_commit(c->st) != STORE_OK)
		return store_failed(c);
	snprintf(what, sizeof what, "%s maintenance until %s (window %lld)",
	         now ? "in" : "scheduled", until_s, (long long)window);
	return done(c, what, handle, cid);
}

static int maintenance_end_cmd(servers_cmd *c, const char *handle)
{
	int64_t id, ended = 0;
	char *old = NULL, cid[64];
	int rc = find_server(c, handle, &id, &old);
	if (rc != EXIT_OK)
		return rc;
	free(old);
	log_field f[] = {LOG_STR("server_handle", handle), LOG_STR("by", cli_operator_name()),
	                 LOG_STR("source", "cli")};
	if (store_tx_begin(c->st) != STORE_OK ||
	    maintenance_window_end(c->st, id, c->now, &ended) != STORE_OK ||
	    maintenance_note(c->st, id, false, NULL) != STORE_OK ||
	    (ended > 0 && audit(c, "maintenance_ended", f, 3, cid, sizeof cid) != STORE_OK) ||
	    store_tx_commit(c->st) != STORE_OK)
		return store_failed(c);
	if (ended == 0) {
		printf("%s: no maintenance window to end\n", handle);
		return EXIT_OK;
	}
	return done(c, "maintenance ended", handle, cid);
}

static int parse_maintenance(const cli_ctx *ctx, maintenance_args *a)
{
	for (int i = 2; i < ctx->argc; i++) {
		const char *k = ctx->argv[i];
		bool has_value = i + 1 < ctx->argc;
		if (strcmp(k, "--end") == 0)
			a->end = true;
		else if (strcmp(k, "--for") == 0 && has_value)
			a->duration = ctx->argv[++i];
		else if (strcmp(k, "--from") == 0 && has_value)
			a->from = ctx->argv[++i];
		else if (strcmp(k, "--reason") == 0 && has_value)
			a->reason = ctx->argv[++i];
		else {
			cli_usage_error("servers maintenance: unexpected argument '%s'", k);
			return -1;
		}
	}
	if (a->end == (a->duration != NULL) || (a->end && (a->from || a->reason))) {
		cli_usage_error("servers maintenance SERVER: expects --for DURATION [--from TIME]"
		                " [--reason TEXT], or --end");
		return -1;
	}
	return 0;
}

/* ---- arguments ---- */

static const char *option_value(const cli_ctx *ctx, int from, const char *name)
{
	for (int i = from; i + 1 < ctx->argc; i++)
		if (strcmp(ctx->argv[i], name) == 0)
			return ctx->argv[i + 1];
	return NULL;
}

static int usage(const char *msg)
{
	cli_usage_error("servers: %s (servers [show SERVER | set-status SERVER STATUS --reason "
	                "TEXT | forget SERVER | maintenance SERVER --for DURATION | --end])",
	                msg);
	return EXIT_USAGE;
}

static int check_args(const cli_ctx *ctx, const char *sub)
{
	int n = ctx->argc;
	if (strcmp(sub, "list") == 0)
		return n <= 1 ? EXIT_OK : usage("list takes no arguments");
	if (strcmp(sub, "show") == 0 || strcmp(sub, "forget") == 0)
		return n == 2 ? EXIT_OK : usage("expects one SERVER");
	if (strcmp(sub, "set-status") == 0) {
		const char *reason = option_value(ctx, 3, "--reason");
		if (n != 5 || !reason || strcmp(ctx->argv[3], "--reason") != 0 || !reason[0])
			return usage("set-status SERVER STATUS --reason TEXT");
		if (!status_known(ctx->argv[2])) {
			cli_usage_error(
			        "servers set-status: unknown status '%s' (one of: discovered, "
			        "pending_setup, provisioning, force_rebuild, ready, in_use, "
			        "error, maintenance, reserved, missing, decommissioned)",
			        ctx->argv[2]);
			return EXIT_USAGE;
		}
		return EXIT_OK;
	}
	if (strcmp(sub, "maintenance") == 0)
		return n >= 3 ? EXIT_OK : usage("maintenance SERVER --for DURATION | --end");
	char msg[128];
	snprintf(msg, sizeof msg, "unknown subcommand '%.60s'", sub);
	return usage(msg);
}

static int run_sub(servers_cmd *c, const char *sub, const maintenance_args *m)
{
	const cli_ctx *ctx = c->ctx;
	if (strcmp(sub, "list") == 0)
		return servers_list(c, NULL);
	if (strcmp(sub, "show") == 0) {
		c->show = true;
		return servers_list(c, ctx->argv[1]);
	}
	if (strcmp(sub, "forget") == 0)
		return forget(c, ctx->argv[1]);
	if (strcmp(sub, "set-status") == 0)
		return set_status(c, ctx->argv[1], ctx->argv[2], ctx->argv[4]);
	return m->end ? maintenance_end_cmd(c, ctx->argv[1])
	              : maintenance_start_cmd(c, ctx->argv[1], m);
}

int cli_cmd_servers(const cli_ctx *ctx)
{
	const char *sub = ctx->argc > 0 ? ctx->argv[0] : "list";
	maintenance_args m = {0};
	int rc = check_args(ctx, sub);
	if (rc == EXIT_OK && strcmp(sub, "maintenance") == 0 && parse_maintenance(ctx, &m) != 0)
		rc = EXIT_USAGE;
	if (rc != EXIT_OK)
		return rc;
	servers_cmd c = {.ctx = ctx, .now = clock_wall()};
	char err[1024] = "";
	/* looking survives a broken file; changing needs a valid one */
	bool writes = strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0;
	rc = writes ? cli_load_config(ctx, &c.cfg) : cli_load_config_lenient(ctx, &c.cfg);
	if (rc != EXIT_OK)
		return rc;
	int code = writes ? (runtime_mkdirs(c.cfg->state_dir) == 0
	                             ? store_open(&c.st, c.cfg->db_path, err, sizeof err)
	                             : STORE_ERROR)
	                  : store_open_readonly(&c.st, c.cfg->db_path, err, sizeof err);
	if (code != STORE_OK) {
		if (!writes && code == STORE_NOTFOUND && strcmp(sub, "list") == 0) {
			if (!ctx->json)
				printf("no servers yet (no state store at %s)\n", c.cfg->db_path);
			rc = EXIT_OK;
		} else {
			fprintf(stderr, "fleetkeeper: %s\n",
			        code == STORE_ERROR && !err[0] ? c.cfg->state_dir : err);
			rc = EXIT_FAILED;
		}
	} else {
		rc = run_sub(&c, sub, &m);
	}
	store_close(c.st);
	config_unref(c.cfg);
	return rc;
}
