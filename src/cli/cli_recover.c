/*
 * cli_recover — `fleetkeeper recover SERVER [--reprovision] [--follow]`:
 * through the daemon's control socket when a daemon runs (its events then
 * reach the daemon's log stream and metrics), in this process otherwise.
 * --reprovision: an unreachable managed server is reprovisioned before the
 * redeployment (never after a host-key failure); without it (and without
 * [recovery] reprovision = true) recovery only redeploys. --follow prints
 * the run's stored events as they arrive (follow.h, in the log format),
 * until recover_complete, recover_failed or recover_skipped (a standby
 * forwards the request to the leader, whose reply is waited for in the
 * store: follow_forwarded). Exit 0 when
 * every service was redeployed or none is recorded (a no-op), 1 when not
 * (or "already recovering"), 2 on a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "clock.h"
#include "control.h"
#include "follow.h"
#include "log.h"
#include "recovery.h"
#include "runner.h"

static int through_daemon(const cli_ctx *ctx, const config *cfg, const char *reply_text,
                          bool want_follow)
{
	cJSON *reply = cJSON_Parse(reply_text);
	const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
	const cJSON *cid = cJSON_GetObjectItemCaseSensitive(reply, "correlation_id");
	const cJSON *run_id = cJSON_GetObjectItemCaseSensitive(reply, "run_id");
	int rc = EXIT_FAILED;

	if (!cJSON_IsTrue(ok) || !cJSON_IsString(cid)) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
		fprintf(stderr, "fleetkeeper: daemon refused: %s\n",
		        cJSON_IsString(e) ? e->valuestring : "malformed reply");
		goto out;
	}
	if (ctx->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "run_id",
		                        cJSON_IsNumber(run_id) ? run_id->valuedouble : 0);
		cJSON_AddStringToObject(o, "correlation_id", cid->valuestring);
		cli_print_json(o);
	} else {
		printf("run_id=%lld correlation_id=%s\n",
		       (long long)(cJSON_IsNumber(run_id) ? run_id->valuedouble : 0),
		       cid->valuestring);
	}
	fflush(stdout);
	rc = want_follow ? follow_run(cfg, "recover",
	                              cJSON_IsNumber(run_id) ? (int64_t)run_id->valuedouble : 0,
	                              cid->valuestring)
	                 : EXIT_OK;
out:
	cJSON_Delete(reply);
	return rc;
}

/* SERVER [--reprovision] [--follow|-f]; -1 after a usage error. */
static int parse_args(const cli_ctx *ctx, const char **server, bool *reprovision, bool *follow)
{
	for (int i = 0; i < ctx->argc; i++) {
		const char *arg = ctx->argv[i];
		if (strcmp(arg, "--reprovision") == 0) {
			*reprovision = true;
		} else if (strcmp(arg, "--follow") == 0 || strcmp(arg, "-f") == 0) {
			*follow = true;
		} else if (*server == NULL && arg[0] != '-' && arg[0] != '\0') {
			*server = arg;
		} else {
			cli_usage_error("recover: unexpected argument '%s'", arg);
			return -1;
		}
	}
	if (*server == NULL) {
		cli_usage_error("recover needs a SERVER");
		return -1;
	}
	return 0;
}

int cli_cmd_recover(const cli_ctx *ctx)
{
	const char *server = NULL;
	bool want_follow = false, reprovision = false;
	config *cfg = NULL;

	if (parse_args(ctx, &server, &reprovision, &want_follow) != 0)
		return EXIT_USAGE;
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	char request[512], err[512], *reply = NULL;
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "recover");
	cJSON_AddStringToObject(req, "server", server);
	if (reprovision)
		cJSON_AddTrueToObject(req, "reprovision");
	cJSON_PrintPreallocated(req, request, sizeof request, false);
	cJSON_Delete(req);
	int crc = control_request(cfg->control_socket, request, &reply, err, sizeof err);
	if (crc == 0 && follow_forwarded(cfg, &reply) != 0) {
		rc = EXIT_FAILED;
	} else if (crc == 0) {
		rc = through_daemon(ctx, cfg, reply, want_follow);
	} else if (crc == CONTROL_NO_DAEMON) {
		fprintf(stderr,
		        "fleetkeeper: no daemon is running (%s); recovering %s in this process\n",
		        err, server);
		rc = cli_setup_logging(cfg);
		if (rc == EXIT_OK)
			rc = recovery_run_local(cfg, server, reprovision, "cli") == 0 ? EXIT_OK
			                                                              : EXIT_FAILED;
		log_shutdown();
	} else {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		rc = EXIT_FAILED;
	}
	free(reply);
	config_unref(cfg);
	return rc;
}
