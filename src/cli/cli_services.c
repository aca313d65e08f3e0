/*
 * cli_services — `fleetkeeper services add|list|rm`: the services deployed
 * on each server, which recovery redeploys.
 *
 *   services add SERVER NAME --repo URL [--ref REF] [--port N]
 *                [--start CMD] [--env KEY=VALUE ...] [--json]
 *   services list [SERVER] [--json]
 *   services rm SERVER NAME [--json]
 *
 * add and rm say what they did on stdout: one line ("added service NAME on
 * SERVER: ...", "updated ...", "removed ..."), or with --json one object
 * {"action": "added" | "updated" | "removed", "server", "name", ...}. Env
 * values are never printed, only their names.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "runtime.h"
#include "services.h"
#include "table.h"

static int open_rw(const cli_ctx *ctx, config **cfg, store **st)
{
	char err[512] = "";
	int rc = cli_load_config(ctx, cfg);
	if (rc != EXIT_OK)
		return rc;
	if (runtime_mkdirs((*cfg)->state_dir) != 0 ||
	    store_open(st, (*cfg)->db_path, err, sizeof err) != 0) {
		fprintf(stderr, "fleetkeeper: %s: cannot open the store%s%s\n", (*cfg)->db_path,
		        err[0] ? ": " : "", err);
		config_unref(*cfg);
		*cfg = NULL;
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

static int add_env(cJSON *env, const char *kv)
{
	const char *eq = strchr(kv, '=');
	char key[256];
	if (eq == NULL || eq == kv) {
		cli_usage_error("--env expects KEY=VALUE, got '%s'", kv);
		return -1;
	}
	snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
	cJSON_DeleteItemFromObjectCaseSensitive(env, key);
	cJSON_AddStringToObject(env, key, eq + 1);
	return 0;
}

static int parse_add(const cli_ctx *ctx, service_row *svc, cJSON *env)
{
	int pos = 0;
	for (int i = 1; i < ctx->argc; i++) {
		const char *a = ctx->argv[i];
		bool opt = a[0] == '-' && a[1] == '-';
		if (opt && i + 1 >= ctx->argc) {
			cli_usage_error("services add: %s needs a value", a);
			return -1;
		}
		if (strcmp(a, "--repo") == 0)
			svc->git_repo = ctx->argv[++i];
		else if (strcmp(a, "--ref") == 0)
			svc->ref = ctx->argv[++i];
		else if (strcmp(a, "--start") == 0)
			svc->start_command = ctx->argv[++i];
		else if (strcmp(a, "--port") == 0) {
			long port;
			if (config_parse_int(ctx->argv[++i], 1, 65535, &port) != 0) {
				cli_usage_error("services add: --port must be 1..65535");
				return -1;
			}
			svc->port = (int)port;
		} else if (strcmp(a, "--env") == 0) {
			if (add_env(env, ctx->argv[++i]) != 0)
				return -1;
		} else if (!opt && pos < 2) {
			*(pos++ == 0 ? &svc->server_handle : &svc->name) = ctx->argv[i];
		} else {
			cli_usage_error("services add: unexpected argument '%s'", a);
			return -1;
		}
	}
	if (svc->server_handle == NULL || svc->name == NULL || svc->git_repo == NULL) {
		cli_usage_error("usage: services add SERVER NAME --repo URL [--ref REF] [--port N] "
		                "[--start CMD] [--env KEY=VALUE ...]");
		return -1;
	}
	return 0;
}

/* A service as JSON (action first when given); env values left out. */
static cJSON *service_json(const char *action, const service_row *r)
{
	cJSON *o = cJSON_CreateObject();
	if (action)
		cJSON_AddStringToObject(o, "action", action);
	cJSON_AddStringToObject(o, "server", r->server_handle);
	cJSON_AddStringToObject(o, "name", r->name);
	cJSON_AddStringToObject(o, "git_repo", r->git_repo ? r->git_repo : "");
	if (r->ref)
		cJSON_AddStringToObject(o, "ref", r->ref);
	else
		cJSON_AddNullToObject(o, "ref");
	cJSON_AddNumberToObject(o, "port", r->port);
	if (r->start_command)
		cJSON_AddStringToObject(o, "start_command", r->start_command);
	else
		cJSON_AddNullToObject(o, "start_command");
	/* env values may be secrets: only their names are listed */
	cJSON *keys = cJSON_AddArrayToObject(o, "env_keys"),
	      *env = cJSON_Parse(r->env ? r->env : "{}"), *it;
	cJSON_ArrayForEach(it, env) cJSON_AddItemToArray(keys, cJSON_CreateString(it->string));
	cJSON_Delete(env);
	return o;
}

/* Whether SERVER already has a service NAME (for the message only). */
static bool service_exists(store *st, const char *server, const char *name)
{
	service_list list;
	char err[512];
	bool found = false;
	if (services_list(st, server, &list, err, sizeof err) != 0)
		return false;
	for (size_t i = 0; i < list.count && !found; i++)
		found = strcmp(list.rows[i].name, name) == 0;
	service_list_free(&list);
	return found;
}

/* "added service NAME on SERVER: repo URL, ref REF, port N, env KEYS". */
static void print_added(const cli_ctx *ctx, const char *action, const service_row *svc,
                        const cJSON *env)
{
	if (ctx->json) {
		cli_print_json(service_json(action, svc));
		return;
	}
	printf("%s service %s on %s: repo %s, ref %s", action, svc->name, svc->server_handle,
	       svc->git_repo, svc->ref && *svc->ref ? svc->ref : "HEAD");
	if (svc->port)
		printf(", port %d", svc->port);
	const cJSON *it;
	bool first = true;
	cJSON_ArrayForEach(it, env)
	{
		printf("%s%s", first ? ", env " : " ", it->string);
		first = false;
	}
	printf("\n");
}

static int cmd_add(const cli_ctx *ctx)
{
	service_row svc = {0};
	cJSON *env = cJSON_CreateObject();
	config *cfg = NULL;
	store *st = NULL;
	char err[512];
	int rc = parse_add(ctx, &svc, env) == 0 ? EXIT_OK : EXIT_USAGE;

	if (rc == EXIT_OK && (rc = open_rw(ctx, &cfg, &st)) == EXIT_OK) {
		char *env_text = env->child ? cJSON_PrintUnformatted(env) : NULL;
		svc.env = env_text;
		bool existed = service_exists(st, svc.server_handle, svc.name);
		int s = services_add(st, &svc, err, sizeof err);
		if (s != 0) {
			fprintf(stderr, "fleetkeeper: %s\n", err);
			rc = s == STORE_NOTFOUND ? EXIT_USAGE : EXIT_FAILED;
		} else {
			print_added(ctx, existed ? "updated" : "added", &svc, env);
		}
		free(env_text);
		store_close(st);
		config_unref(cfg);
	}
	cJSON_Delete(env);
	return rc;
}

static int cmd_list(const cli_ctx *ctx)
{
	config *cfg = NULL;
	store *st = NULL;
	service_list list;
	char err[512], port[16];

	if (ctx->argc > 2) {
		cli_usage_error("usage: services list [SERVER] [--json]");
		return EXIT_USAGE;
	}
	int rc = open_rw(ctx, &cfg, &st);
	if (rc != EXIT_OK)
		return rc;
	if (services_list(st, ctx->argc == 2 ? ctx->argv[1] : NULL, &list, err, sizeof err) != 0) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		rc = EXIT_FAILED;
	} else {
		table *t = ctx->json ? NULL
		                     : table_new(6, "SERVER", "NAME", "REPOSITORY", "REF", "PORT",
		                                 "START");
		for (size_t i = 0; i < list.count; i++) {
			const service_row *r = &list.rows[i];
			snprintf(port, sizeof port, "%d", r->port);
			if (t)
				table_add(t, r->server_handle, r->name, r->git_repo, r->ref,
				          r->port ? port : NULL, r->start_command);
			else
				cli_print_json(service_json(NULL, r));
		}
		if (t) {
			table_print(t, stdout);
			table_free(t);
		}
		service_list_free(&list);
	}
	store_close(st);
	config_unref(cfg);
	return rc;
}

static int cmd_rm(const cli_ctx *ctx)
{
	config *cfg = NULL;
	store *st = NULL;
	char err[512];
	if (ctx->argc != 3) {
		cli_usage_error("usage: services rm SERVER NAME [--json]");
		return EXIT_USAGE;
	}
	int rc = open_rw(ctx, &cfg, &st);
	if (rc != EXIT_OK)
		return rc;
	if (services_remove(st, ctx->argv[1], ctx->argv[2], err, sizeof err) != 0) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		rc = EXIT_FAILED;
	} else if (ctx->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "action", "removed");
		cJSON_AddStringToObject(o, "server", ctx->argv[1]);
		cJSON_AddStringToObject(o, "name", ctx->argv[2]);
		cli_print_json(o);
	} else {
		printf("removed service %s from %s\n", ctx->argv[2], ctx->argv[1]);
	}
	store_close(st);
	config_unref(cfg);
	return rc;
}

int cli_cmd_services(const cli_ctx *ctx)
{
	const char *sub = ctx->argc > 0 ? ctx->argv[0] : "";
	if (strcmp(sub, "add") == 0)
		return cmd_add(ctx);
	if (strcmp(sub, "list") == 0)
		return cmd_list(ctx);
	if (strcmp(sub, "rm") == 0)
		return cmd_rm(ctx);
	cli_usage_error("services needs add, list or rm");
	return EXIT_USAGE;
}
