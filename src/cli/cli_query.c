/*
 * cli_query — the commands that read state: status (live from the daemon
 * when it runs, else from the store and the configuration), runs, incidents
 * and trace. Tables by default, JSON lines with --json. `incidents ack` and
 * `incidents close` are dispatched to cli_incidents.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "clock.h"
#include "control.h"
#include "log.h"
#include "store.h"
#include "events.h"
#include "incidents.h"
#include "runs.h"
#include "table.h"

static void format_time(double t, char *buf, size_t cap)
{
	if (t <= 0) {
		snprintf(buf, cap, "-");
		return;
	}
	log_format_timestamp(buf, cap, (int64_t)llround(t * 1e6));
	buf[19] = '\0'; /* seconds are enough in a table */
}

/* The configuration (leniently: a file with errors still names the state
 * directory, see cli_load_config_lenient) and the store, read-only. */
static int open_store(const cli_ctx *ctx, config **cfg, store **st)
{
	char err[512];
	int rc = cli_load_config_lenient(ctx, cfg);
	if (rc != EXIT_OK)
		return rc;
	if (store_open_readonly(st, (*cfg)->db_path, err, sizeof err) != 0) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		config_unref(*cfg);
		*cfg = NULL;
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

/* ---- runs ---- */

typedef struct {
	const cli_ctx *ctx;
	table *t;
} run_list;

/* `runs`: the list and the configuration, for each task's retries. */
typedef struct {
	run_list out;
	const config *cfg;
} run_view;

/* The last attempt a run of this task may have (retries + 1 in the
 * configuration as it is now), 0 when the task is not configured (removed,
 * or a file with errors). The row keeps only its own attempt. */
static int run_attempts(const run_view *v, const run_row *r)
{
	const task_config *tc = config_task(v->cfg, r->task);
	if (tc == NULL)
		return 0;
	return tc->retries + 1 > r->attempt ? tc->retries + 1 : r->attempt;
}

static cJSON *run_json(const run_row *r, int attempts)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "run_id", (double)r->id);
	cJSON_AddStringToObject(o, "task", r->task);
	cJSON_AddStringToObject(o, "trigger", r->trigger);
	cJSON_AddNumberToObject(o, "attempt", r->attempt);
	if (attempts > 0)
		cJSON_AddNumberToObject(o, "attempts", attempts);
	else
		cJSON_AddNullToObject(o, "attempts");
	cJSON_AddStringToObject(o, "status", run_status_name(r->status));
	cJSON_AddStringToObject(o, "correlation_id", r->correlation_id);
	cJSON_AddNumberToObject(o, "started_at", r->started_at);
	if (r->finished_at > 0)
		cJSON_AddNumberToObject(o, "finished_at", r->finished_at);
	else
		cJSON_AddNullToObject(o, "finished_at");
	if (r->duration_sec >= 0)
		cJSON_AddNumberToObject(o, "duration_sec", r->duration_sec);
	else
		cJSON_AddNullToObject(o, "duration_sec");
	if (r->exit_code >= 0)
		cJSON_AddNumberToObject(o, "exit_code", r->exit_code);
	else
		cJSON_AddNullToObject(o, "exit_code");
	cJSON_AddItemToObject(o, "error",
	                      r->error ? cJSON_CreateString(r->error) : cJSON_CreateNull());
	cJSON_AddItemToObject(o, "error_type",
	                      r->error_type ? cJSON_CreateString(r->error_type)
	                                    : cJSON_CreateNull());
	bool skipped = r->status == RUN_SKIPPED && r->error;
	cJSON_AddItemToObject(o, "reason",
	                      skipped ? cJSON_CreateString(r->error) : cJSON_CreateNull());
	cJSON *items = r->items_json ? cJSON_Parse(r->items_json) : NULL;
	cJSON_AddItemToObject(o, "items", items ? items : cJSON_CreateObject());
	return o;
}

static int add_run(void *arg, const run_row *r)
{
	run_view *v = arg;
	run_list *l = &v->out;
	char id[24], started[40], dur[32], attempt[32];
	int attempts = run_attempts(v, r);
	if (l->ctx->json) {
		cli_print_json(run_json(r, attempts));
		return 0;
	}
	snprintf(id, sizeof id, "%lld", (long long)r->id);
	if (attempts > 0)
		snprintf(attempt, sizeof attempt, "%d/%d", r->attempt, attempts);
	else
		snprintf(attempt, sizeof attempt, "%d", r->attempt);
	format_time(r->started_at, started, sizeof started);
	if (r->duration_sec >= 0)
		snprintf(dur, sizeof dur, "%.3f", r->duration_sec);
	else
		snprintf(dur, sizeof dur, "-");
	/* A skipped run's row keeps its reason (no_servers, still_running) as
	 * the error, with no error_type: that is what the column shows then. */
	const char *why = r->status == RUN_SKIPPED ? r->error : r->error_type;
	table_add(l->t, id, r->task, run_status_name(r->status), r->trigger, attempt, started, dur,
	          why, r->correlation_id);
	return 0;
}

int cli_cmd_runs(const cli_ctx *ctx)
{
	const char *task = NULL;
	long limit = 20;
	for (int i = 0; i < ctx->argc; i++) {
		if (strcmp(ctx->argv[i], "--task") == 0 && i + 1 < ctx->argc) {
			task = ctx->argv[++i];
		} else if (strcmp(ctx->argv[i], "--limit") == 0 && i + 1 < ctx->argc) {
			if (config_parse_int(ctx->argv[++i], 1, 1000000, &limit) != 0) {
				cli_usage_error(
				        "--limit: expected a number from 1 to 1000000, got '%s'",
				        ctx->argv[i]);
				return EXIT_USAGE;
			}
		} else {
			cli_usage_error("runs: unexpected argument '%s'", ctx->argv[i]);
			return EXIT_USAGE;
		}
	}
	config *cfg = NULL;
	store *st = NULL;
	int rc = open_store(ctx, &cfg, &st);
	if (rc != EXIT_OK)
		return rc;
	run_view v = {{ctx, ctx->json
	                            ? NULL
	                            : table_new(9, "RUN", "TASK", "STATUS", "TRIGGER", "ATTEMPT",
	                                        "STARTED", "DURATION", "ERROR", "CORRELATION_ID")},
	              cfg};
	if (runs_list(st, task, (int)limit, add_run, &v) < 0) {
		fprintf(stderr, "fleetkeeper: %s\n", store_errmsg(st));
		rc = EXIT_FAILED;
	}
	table_print(v.out.t, stdout);
	table_free(v.out.t);
	store_close(st);
	config_unref(cfg);
	return rc;
}

/* ---- incidents ---- */

static cJSON *str_or_null(const char *v)
{
	return v ? cJSON_CreateString(v) : cJSON_CreateNull();
}

static cJSON *time_or_null(double t)
{
	return t > 0 ? cJSON_CreateNumber(t) : cJSON_CreateNull();
}

static cJSON *incident_json(const incident_row *r)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "incident_id", (double)r->id);
	cJSON_AddItemToObject(o, "server_handle", str_or_null(r->server_handle));
	cJSON_AddStringToObject(o, "type", r->type);
	cJSON_AddStringToObject(o, "status", r->status);
	cJSON_AddNumberToObject(o, "detected_at", r->detected_at);
	cJSON_AddItemToObject(o, "resolved_at", time_or_null(r->resolved_at));
	cJSON_AddItemToObject(o, "resolution", str_or_null(r->resolution));
	cJSON_AddItemToObject(o, "resolution_reason", str_or_null(r->resolution_reason));
	cJSON_AddBoolToObject(o, "acknowledged", r->acknowledged_at > 0);
	cJSON_AddItemToObject(o, "acknowledged_at", time_or_null(r->acknowledged_at));
	cJSON_AddItemToObject(o, "acknowledged_by", str_or_null(r->acknowledged_by));
	cJSON_AddItemToObject(o, "ack_reason", str_or_null(r->ack_reason));
	cJSON_AddItemToObject(o, "correlation_id", str_or_null(r->correlation_id));
	return o;
}

static int add_incident(void *arg, const incident_row *r)
{
	run_list *l = arg;
	char id[24], detected[40], resolved[40], ack[160];
	if (l->ctx->json) {
		cli_print_json(incident_json(r));
		return 0;
	}
	snprintf(id, sizeof id, "%lld", (long long)r->id);
	format_time(r->detected_at, detected, sizeof detected);
	format_time(r->resolved_at, resolved, sizeof resolved);
	if (r->acknowledged_at > 0)
		snprintf(ack, sizeof ack, "%s", r->acknowledged_by ? r->acknowledged_by : "yes");
	else
		snprintf(ack, sizeof ack, "-");
	table_add(l->t, id, r->server_handle, r->type, r->status, ack, detected, resolved,
	          r->resolution, r->correlation_id);
	return 0;
}

static int list_incidents(const cli_ctx *ctx)
{
	bool open_only = false;
	for (int i = 0; i < ctx->argc; i++) {
		if (strcmp(ctx->argv[i], "--open") != 0) {
			cli_usage_error("incidents: unexpected argument '%s'", ctx->argv[i]);
			return EXIT_USAGE;
		}
		open_only = true;
	}
	config *cfg = NULL;
	store *st = NULL;
	int rc = open_store(ctx, &cfg, &st);
	if (rc != EXIT_OK)
		return rc;
	run_list l = {ctx,
	              ctx->json ? NULL
	                        : table_new(9, "ID", "SERVER", "TYPE", "STATUS", "ACK", "DETECTED",
	                                    "RESOLVED", "RESOLUTION", "CORRELATION_ID")};
	if (incidents_list(st, open_only, add_incident, &l) < 0) {
		fprintf(stderr, "fleetkeeper: %s\n", store_errmsg(st));
		rc = EXIT_FAILED;
	}
	table_print(l.t, stdout);
	table_free(l.t);
	store_close(st);
	config_unref(cfg);
	return rc;
}

/* incidents [--open] | ack ID [--reason T] | close ID --reason T */
int cli_cmd_incidents(const cli_ctx *ctx)
{
	if (ctx->argc > 0 && strcmp(ctx->argv[0], "ack") == 0)
		return cli_incidents_ack(ctx);
	if (ctx->argc > 0 && strcmp(ctx->argv[0], "close") == 0)
		return cli_incidents_close(ctx);
	return list_incidents(ctx);
}

/* ---- trace ---- */

static int print_line(void *arg, int64_t id, const char *json)
{
	size_t *count = arg;
	(void)id;
	(*count)++;
	printf("%s\n", json);
	return 0;
}

int cli_cmd_trace(const cli_ctx *ctx)
{
	if (ctx->argc != 1 || ctx->argv[0][0] == '\0') {
		cli_usage_error("trace needs exactly one CORRELATION_ID");
		return EXIT_USAGE;
	}
	config *cfg = NULL;
	store *st = NULL;
	size_t count = 0;
	int rc = open_store(ctx, &cfg, &st);
	if (rc != EXIT_OK)
		return rc;
	if (events_trace(st, ctx->argv[0], 0, print_line, &count) < 0) {
		fprintf(stderr, "fleetkeeper: %s\n", store_errmsg(st));
		rc = EXIT_FAILED;
	} else if (count == 0) {
		fprintf(stderr, "fleetkeeper: no events with correlation_id '%s'\n", ctx->argv[0]);
		rc = EXIT_FAILED;
	}
	store_close(st);
	config_unref(cfg);
	return rc;
}
