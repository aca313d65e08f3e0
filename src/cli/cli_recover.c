/*
 * cli_recover — `fleetkeeper recover SERVER [--follow]`: through the
 * daemon's control socket when a daemon runs (its events then reach the
 * daemon's log stream and metrics), in this process otherwise. --follow
 * prints the run's stored events as they arrive (follow.h), until
 * recover_complete or recover_failed. Exit 0 when every service was redeployed, 1 when not
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
		cJSON_AddNumberToObject(o, "run_id", cJSON_IsNumber(run_id) ? run_id->valuedouble : 0);
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

int cli_cmd_recover(const cli_ctx *ctx)
{
	const char *server = NULL;
	bool want_follow = false;
	config *cfg = NULL;

	if (cli_parse_name_follow(ctx, "recover", "SERVER", &server, &want_follow) != 0)
		return EXIT_USAGE;
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	char request[512], err[512], *reply = NULL;
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "recover");
	cJSON_AddStringToObject(req, "server", server);
	cJSON_PrintPreallocated(req, request, sizeof request, false);
	cJSON_Delete(req);
	int crc = control_request(cfg->control_socket, request, &reply, err, sizeof err);
	if (crc == 0) {
		rc = through_daemon(ctx, cfg, reply, want_follow);
	} else if (crc == CONTROL_NO_DAEMON) {
		fprintf(stderr,
		        "fleetkeeper: no daemon is running (%s); recovering %s in this process\n",
		        err, server);
		rc = cli_setup_logging(cfg);
		if (rc == EXIT_OK)
			rc = recovery_run_local(cfg, server, "cli") == 0 ? EXIT_OK : EXIT_FAILED;
		log_shutdown();
	} else {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		rc = EXIT_FAILED;
	}
	free(reply);
	config_unref(cfg);
	return rc;
}
