/*
 * cli_ansible — `fleetkeeper ansible PLAYBOOK --server HANDLE [-e KEY=VALUE
 * | -e @FILE ...]`: one playbook against one known server (in the daemon
 * when one runs), with user, port and key from the server record and [ssh].
 * -e @FILE merges a JSON object (the way to pass a secret: never on the
 * command line). Exit 0 when the run succeeded, 1 when it failed, 2 on a
 * usage error, an unknown server or a playbook that does not exist.
 *
 * The playbook runs as the run of the synthetic task "ansible"
 * (ansible_run.h): a task_runs row with trigger cli (so `runs` lists it),
 * ansible_start / ansible_complete | ansible_failed around ansible's own
 * events, one correlation id. When a daemon runs, the daemon runs it
 * ({"cmd": "ansible"} on the control socket, extra vars included: its
 * metrics count the run) and this process prints the run's events from
 * the store as they arrive (follow.h); otherwise it runs in this process.
 * Usage errors are found here before the daemon is asked.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ansible_run.h"
#include "cli.h"
#include "control.h"
#include "follow.h"
#include "log.h"
#include "runtime.h"

static int merge_file(cJSON *vars, const char *path)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t cap = 0;
	cJSON *obj = NULL, *it;
	if (f) {
		if (getdelim(&text, &cap, '\0', f) > 0)
			obj = cJSON_Parse(text);
		fclose(f);
	}
	free(text);
	if (!cJSON_IsObject(obj)) {
		cJSON_Delete(obj);
		cli_usage_error("-e @%s: unreadable or not a JSON object", path);
		return -1;
	}
	while ((it = obj->child) != NULL) {
		cJSON_DetachItemViaPointer(obj, it);
		cJSON_DeleteItemFromObjectCaseSensitive(vars, it->string);
		cJSON_AddItemToObject(vars, it->string, it);
	}
	cJSON_Delete(obj);
	return 0;
}

static int add_var(cJSON *vars, const char *arg)
{
	if (arg[0] == '@')
		return merge_file(vars, arg + 1);
	const char *eq = strchr(arg, '=');
	if (eq == NULL || eq == arg) {
		cli_usage_error("-e expects KEY=VALUE or @FILE, got '%s'", arg);
		return -1;
	}
	char key[256];
	snprintf(key, sizeof key, "%.*s", (int)(eq - arg), arg);
	cJSON_DeleteItemFromObjectCaseSensitive(vars, key);
	cJSON_AddStringToObject(vars, key, eq + 1);
	return 0;
}

static int parse_args(const cli_ctx *ctx, const char **playbook, const char **server, cJSON *vars)
{
	for (int i = 0; i < ctx->argc; i++) {
		const char *a = ctx->argv[i];
		if ((strcmp(a, "--server") == 0 || strcmp(a, "-e") == 0) && i + 1 >= ctx->argc) {
			cli_usage_error("%s needs a value", a);
			return -1;
		}
		if (strcmp(a, "--server") == 0)
			*server = ctx->argv[++i];
		else if (strcmp(a, "-e") == 0) {
			if (add_var(vars, ctx->argv[++i]) != 0)
				return -1;
		} else if (*playbook == NULL && a[0] != '-')
			*playbook = a;
		else {
			cli_usage_error("ansible: unexpected argument '%s'", a);
			return -1;
		}
	}
	if (*playbook == NULL || *server == NULL) {
		cli_usage_error("usage: ansible PLAYBOOK --server HANDLE [-e KEY=VALUE ...]");
		return -1;
	}
	return 0;
}

/* ---- through the daemon ---- */

/* The daemon's reply: follow the run's events (exit 0 when it succeeded,
 * 1 when not), or say why it was refused (2 for an unknown server or
 * playbook, as in this process). */
static int through_daemon(const config *cfg, const char *reply_text)
{
	cJSON *reply = cJSON_Parse(reply_text);
	const cJSON *cid = cJSON_GetObjectItemCaseSensitive(reply, "correlation_id");
	const cJSON *run_id = cJSON_GetObjectItemCaseSensitive(reply, "run_id");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(reply, "error_type");
	int rc = EXIT_FAILED;

	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")) || !cJSON_IsString(cid) ||
	    !cJSON_IsNumber(run_id)) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
		fprintf(stderr, "fleetkeeper: %s\n",
		        cJSON_IsString(e) ? e->valuestring : "malformed reply from the daemon");
		if (cJSON_IsString(type) && strcmp(type->valuestring, "usage") == 0)
			rc = EXIT_USAGE;
	} else {
		fprintf(stderr,
		        "fleetkeeper: running through the daemon (run_id %lld, "
		        "correlation_id %s)\n",
		        (long long)run_id->valuedouble, cid->valuestring);
		rc = follow_run(cfg, "ansible", (int64_t)run_id->valuedouble, cid->valuestring);
	}
	cJSON_Delete(reply);
	return rc;
}

/* The request line (it holds the extra vars, secrets included: it goes
 * over the 0600 control socket only and is wiped after use). A playbook
 * path is made absolute here: the daemon's working directory is not ours. */
static char *daemon_request(const char *playbook, const char *server, cJSON *extra)
{
	char abs[PATH_MAX];
	if (strchr(playbook, '/') && realpath(playbook, abs))
		playbook = abs;
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "ansible");
	cJSON_AddStringToObject(req, "playbook", playbook);
	cJSON_AddStringToObject(req, "server", server);
	cJSON_AddItemReferenceToObject(req, "extra_vars", extra);
	char *text = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	return text;
}

/* ---- in this process ---- */

static int run_local(config *cfg, const char *playbook, const char *server, const cJSON *extra)
{
	runtime rt;
	ansible_job *job = NULL;
	char err[768];
	int rc = cli_setup_logging(cfg);

	if (rc != EXIT_OK)
		return rc;
	if (runtime_open(&rt, cfg, false, err, sizeof err) == 0) {
		int jrc = ansible_job_create(&job, cfg, rt.st, playbook, server, extra, "cli", err,
		                             sizeof err);
		if (jrc == 0)
			rc = ansible_job_execute(job, rt.st) == RUN_SUCCESS ? EXIT_OK : EXIT_FAILED;
		else {
			fprintf(stderr, "fleetkeeper: %s\n", err);
			rc = jrc == ANSIBLE_JOB_USAGE ? EXIT_USAGE : EXIT_FAILED;
		}
		ansible_job_free(job);
		runtime_close(&rt);
	} else {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		rc = EXIT_FAILED;
	}
	log_shutdown();
	return rc;
}

/* ---- the command ---- */

static int run_one(config *cfg, const char *playbook, const char *server, cJSON *extra)
{
	char err[512], *reply = NULL;
	char *request = daemon_request(playbook, server, extra);
	int rc = EXIT_FAILED;

	if (request == NULL) {
		fprintf(stderr, "fleetkeeper: out of memory\n");
		return EXIT_FAILED;
	}
	if (strlen(request) >= CONTROL_MAX_REQUEST) {
		fprintf(stderr, "fleetkeeper: -e: the extra vars are too large for the daemon\n");
		explicit_bzero(request, strlen(request));
		free(request);
		return EXIT_USAGE;
	}
	int crc = control_request(cfg->control_socket, request, &reply, err, sizeof err);
	explicit_bzero(request, strlen(request));
	free(request);
	if (crc == 0)
		rc = through_daemon(cfg, reply);
	else if (crc == CONTROL_NO_DAEMON)
		rc = run_local(cfg, playbook, server, extra);
	else
		fprintf(stderr, "fleetkeeper: %s\n", err);
	free(reply);
	return rc;
}

int cli_cmd_ansible(const cli_ctx *ctx)
{
	const char *playbook = NULL, *server = NULL;
	config *cfg = NULL;
	cJSON *vars = cJSON_CreateObject();

	int rc = parse_args(ctx, &playbook, &server, vars) == 0 ? EXIT_OK : EXIT_USAGE;
	if (rc == EXIT_OK)
		rc = cli_load_config(ctx, &cfg);
	if (rc == EXIT_OK)
		rc = run_one(cfg, playbook, server, vars);
	if (cfg)
		config_unref(cfg);
	cJSON_Delete(vars);
	return rc;
}
