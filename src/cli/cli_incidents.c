/*
 * cli_incidents — the operator's hands on one incident (docs/servers.md,
 * "Incidents"):
 *
 *   incidents ack ID [--reason TEXT]   acknowledged: it stays open, the
 *                                      notifications of its problem stop
 *   incidents close ID --reason TEXT   resolved by the operator (resolution
 *                                      closed); the server's status before
 *                                      the incident comes back
 *
 * Both run in this process, daemon or not: the transition is one
 * transaction of incidents.c on the shared store. Each is recorded as an
 * event (incident_acknowledged, incident_closed) with who did it and why,
 * under the incident's correlation_id, so `trace` shows it with the rest
 * of the incident's history.
 *
 * Exit 0 done (acknowledging an acknowledged incident again is done);
 * 1 no such incident, or it is not open, with one line on stderr; 2 a
 * usage error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "incidents.h"
#include "log.h"
#include "runtime.h"

#define LOGGER "cli.incidents"

typedef struct {
	const char *verb; /* ack, close */
	int64_t id;
	const char *reason; /* NULL if none */
} incident_args;

/* What the event says about the incident besides its id. */
typedef struct {
	char handle[128];
	char type[32];
	char correlation_id[128];
} incident_info;

static int parse_id(const char *verb, const char *arg, int64_t *id)
{
	char *end = NULL;
	long long v = strtoll(arg, &end, 10);
	if (arg[0] < '0' || arg[0] > '9' || *end != '\0' || v <= 0) {
		cli_usage_error("incidents %s: ID must be a positive number, got '%s'", verb, arg);
		return -1;
	}
	*id = (int64_t)v;
	return 0;
}

/* argv: VERB ID [--reason TEXT]; close needs the reason. */
static int parse_args(const cli_ctx *ctx, incident_args *a)
{
	bool have_id = false, need_reason = strcmp(a->verb, "close") == 0;
	for (int i = 1; i < ctx->argc; i++) {
		const char *arg = ctx->argv[i];
		if (strcmp(arg, "--reason") == 0) {
			if (i + 1 >= ctx->argc || ctx->argv[i + 1][0] == '\0') {
				cli_usage_error("incidents %s: --reason needs a text", a->verb);
				return -1;
			}
			a->reason = ctx->argv[++i];
		} else if (!have_id && arg[0] != '-') {
			if (parse_id(a->verb, arg, &a->id) != 0)
				return -1;
			have_id = true;
		} else {
			cli_usage_error("incidents %s: unexpected argument '%s'", a->verb, arg);
			return -1;
		}
	}
	if (!have_id || (need_reason && a->reason == NULL)) {
		cli_usage_error("usage: incidents %s ID %s", a->verb,
		                need_reason ? "--reason TEXT" : "[--reason TEXT]");
		return -1;
	}
	return 0;
}

static int copy_info(void *ctx, const incident_row *r)
{
	incident_info *info = ctx;
	snprintf(info->handle, sizeof info->handle, "%s", r->server_handle ? r->server_handle : "");
	snprintf(info->type, sizeof info->type, "%s", r->type ? r->type : "");
	snprintf(info->correlation_id, sizeof info->correlation_id, "%s",
	         r->correlation_id ? r->correlation_id : "");
	return 0;
}

static void log_done(const incident_args *a, const incident_info *info, const char *who,
                     bool already, const char *restored)
{
	if (info->correlation_id[0])
		log_bind(LOG_STR("correlation_id", info->correlation_id));
	if (strcmp(a->verb, "ack") == 0)
		log_info(LOGGER, "incident_acknowledged", LOG_INT("incident_id", a->id),
		         LOG_STR("server_handle", info->handle[0] ? info->handle : NULL),
		         LOG_STR("incident_type", info->type), LOG_STR("acknowledged_by", who),
		         LOG_STR("reason", a->reason), LOG_BOOL("already", already));
	else
		log_info(LOGGER, "incident_closed", LOG_INT("incident_id", a->id),
		         LOG_STR("server_handle", info->handle[0] ? info->handle : NULL),
		         LOG_STR("incident_type", info->type), LOG_STR("closed_by", who),
		         LOG_STR("reason", a->reason), LOG_STR("resolution", "closed"),
		         LOG_STR("status", restored[0] ? restored : NULL));
	log_unbind("correlation_id");
}

/* The transition on rt's store; the exit status. */
static int apply(runtime *rt, const incident_args *a)
{
	incident_info info = {0};
	const char *who = cli_operator_name();
	char err[512], restored[32] = "";
	bool already = false;
	int rc = incidents_get(rt->st, a->id, copy_info, &info);

	if (rc == STORE_OK && strcmp(a->verb, "ack") == 0)
		rc = incidents_ack(rt->st, a->id, who, a->reason, clock_wall(), &already, err,
		                   sizeof err);
	else if (rc == STORE_OK)
		rc = incidents_close(rt->st, a->id, a->reason, clock_wall(), restored,
		                     sizeof restored, err, sizeof err);
	else
		snprintf(err, sizeof err, "%s",
		         rc == STORE_NOTFOUND ? "no such incident" : store_errmsg(rt->st));
	if (rc == STORE_NOTFOUND) {
		fprintf(stderr,
		        "fleetkeeper: no incident %" PRId64 " (see 'fleetkeeper incidents')\n",
		        a->id);
		return EXIT_FAILED;
	}
	if (rc != STORE_OK) {
		fprintf(stderr, "fleetkeeper: incidents %s %" PRId64 ": %s\n", a->verb, a->id, err);
		return EXIT_FAILED;
	}
	log_done(a, &info, who, already, restored);
	return EXIT_OK;
}

static int incident_command(const cli_ctx *ctx, const char *verb)
{
	incident_args a = {.verb = verb};
	config *cfg = NULL;
	runtime rt;
	char err[512];

	if (parse_args(ctx, &a) != 0)
		return EXIT_USAGE;
	int rc = cli_load_config(ctx, &cfg);
	if (rc == EXIT_OK && (rc = cli_setup_logging(cfg)) == EXIT_OK) {
		if (runtime_open(&rt, cfg, false, err, sizeof err) == 0) {
			rc = apply(&rt, &a);
			runtime_close(&rt);
		} else {
			fprintf(stderr, "fleetkeeper: %s\n", err);
			rc = EXIT_FAILED;
		}
		log_shutdown();
	}
	config_unref(cfg);
	return rc;
}

int cli_incidents_ack(const cli_ctx *ctx)
{
	return incident_command(ctx, "ack");
}

int cli_incidents_close(const cli_ctx *ctx)
{
	return incident_command(ctx, "close");
}
