/*
 * cli_ansible — `fleetkeeper ansible PLAYBOOK --server HANDLE [-e KEY=VALUE
 * | -e @FILE ...]`: one playbook against one known server, in this
 * process, with user, port and key from the server record and [ssh].
 * -e @FILE merges a JSON object (the way to pass a secret: never on the
 * command line). Exit 0 when the run succeeded, 1 when it failed, 2 on a
 * usage error, an unknown server or a playbook that does not exist.
 *
 * The playbook runs through the runner as the run of a synthetic task
 * named "ansible" (as `recover` does): a task_runs row with trigger cli
 * (so `runs` lists it), ansible_start / ansible_complete | ansible_failed
 * around ansible's own events, one correlation id.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ansible.h"
#include "cli.h"
#include "clock.h"
#include "log.h"
#include "runner.h"
#include "runtime.h"
#include "servers.h"

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

/* ---- the synthetic task ---- */

typedef struct {
	ansible_spec spec;
	ansible_result res;
} ansible_job;

static const char *const ansible_items[] = {"ok_count",          "changed_count", "failed_count",
                                            "unreachable_count", "skipped_count", NULL};

static size_t ansible_start_fields(task_run *run, log_field *out, size_t cap)
{
	const ansible_job *job = run->task->params;
	if (cap < 2)
		return 0;
	out[0] = LOG_STR("playbook", job->spec.playbook);
	out[1] = LOG_STR("server_handle", job->spec.server_handle);
	return 2;
}

static task_result ansible_task_run(task_run *run)
{
	ansible_job *job = run->task->params;
	const ansible_result *r = &job->res;
	job->spec.correlation_id = run->correlation_id;
	job->spec.cancel_fd = run->cancel_fd;
	ansible_run(&job->spec, &job->res);
	task_run_count(run, "ok_count", r->ok);
	task_run_count(run, "changed_count", r->changed);
	task_run_count(run, "failed_count", r->failed);
	task_run_count(run, "unreachable_count", r->unreachable);
	task_run_count(run, "skipped_count", r->skipped);
	run->exit_code = r->exit_code;
	if (ansible_result_ok(r))
		return TASK_OK;
	if (r->error[0])
		return task_run_fail(run, r->error_type[0] ? r->error_type : "ansible", "%s",
		                     r->error);
	return task_run_fail(run, r->timed_out ? "timeout" : "playbook_failed",
	                     "ansible-playbook exited %d (%d failed, %d unreachable)", r->exit_code,
	                     r->failed, r->unreachable);
}

static const task_type ansible_task_type = {
        .name = "ansible",
        .logger = ANSIBLE_LOGGER,
        .items = ansible_items,
        .start_fields = ansible_start_fields,
        .run = ansible_task_run,
};

static int run_task(config *cfg, store *st, ansible_job *job)
{
	task_config tc = {.name = (char *)"ansible",
	                  .type = &ansible_task_type,
	                  .enabled = true,
	                  .params = job};
	run_request req = {0};
	run_control ctl = {.cancel_fd = -1};
	char err[512];
	int rc = EXIT_FAILED;

	if (run_control_init(&ctl) != 0) {
		fprintf(stderr, "fleetkeeper: cannot create an eventfd\n");
		return EXIT_FAILED;
	}
	if (runner_prepare(&req, cfg, &tc, "cli", st, err, sizeof err) == 0)
		rc = runner_execute(&req, st, &ctl) == RUN_SUCCESS ? EXIT_OK : EXIT_FAILED;
	else
		fprintf(stderr, "fleetkeeper: %s\n", err);
	run_request_release(&req);
	run_control_destroy(&ctl);
	return rc;
}

/* ---- the command ---- */

static int run_one(config *cfg, store *st, const char *playbook, const char *server, cJSON *extra)
{
	ansible_settings set;
	ansible_job job = {0};
	ansible_spec *spec = &job.spec;
	server_list srv = {0};
	char err[512], kh[4096], path[PATH_MAX];
	cJSON *it;

	if (servers_find(st, server, &srv, NULL, err, sizeof err) != 0) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		return EXIT_USAGE;
	}
	ansible_settings_load(cfg, &set);
	cJSON *vars = ansible_base_vars(&set, err, sizeof err);
	int rc = EXIT_USAGE;
	if (vars == NULL || ansible_spec_for_server(spec, cfg, &set, &srv.rows[0], kh, sizeof kh,
	                                            err, sizeof err) != 0) {
		fprintf(stderr, "fleetkeeper: %s: %s\n", cfg->path, err);
		goto out;
	}
	while ((it = extra->child) != NULL) {
		cJSON_DetachItemViaPointer(extra, it);
		cJSON_DeleteItemFromObjectCaseSensitive(vars, it->string);
		cJSON_AddItemToObject(vars, it->string, it);
	}
	spec->playbook = playbook;
	spec->extra_vars = vars;
	if (ansible_playbook_resolve(spec, path, sizeof path) != 0) {
		fprintf(stderr, "fleetkeeper: ansible: playbook %s not found in %s\n", playbook,
		        spec->playbook_dir ? spec->playbook_dir : "playbooks");
		goto out; /* a usage error: no run */
	}
	rc = run_task(cfg, st, &job);
out:
	cJSON_Delete(vars);
	server_list_free(&srv);
	return rc;
}

int cli_cmd_ansible(const cli_ctx *ctx)
{
	const char *playbook = NULL, *server = NULL;
	config *cfg = NULL;
	runtime rt;
	char err[512];
	cJSON *vars = cJSON_CreateObject();

	int rc = parse_args(ctx, &playbook, &server, vars) == 0 ? EXIT_OK : EXIT_USAGE;
	if (rc == EXIT_OK)
		rc = cli_load_config(ctx, &cfg);
	if (rc == EXIT_OK && (rc = cli_setup_logging(cfg)) == EXIT_OK) {
		if (runtime_open(&rt, cfg, false, err, sizeof err) == 0) {
			rc = run_one(cfg, rt.st, playbook, server, vars);
			runtime_close(&rt);
		} else {
			fprintf(stderr, "fleetkeeper: %s\n", err);
			rc = EXIT_FAILED;
		}
		log_shutdown();
	}
	if (cfg)
		config_unref(cfg);
	cJSON_Delete(vars);
	return rc;
}
