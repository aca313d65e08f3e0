/*
 * cli_status — `fleetkeeper status`: every task's state (live from the
 * daemon's control socket when it runs, else the last stored run and the
 * next fire time computed from the configuration), servers by status and
 * open incidents.
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
#include "table.h"

static const char *json_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Task rows from the stored state: the last run of each task. */
typedef struct {
	cJSON *tasks;
} stored_ctx;

static int add_last_run(void *arg, const store_run_row *r)
{
	stored_ctx *sc = arg;
	cJSON *t;
	cJSON_ArrayForEach(t, sc->tasks)
	{
		const char *name = json_str(t, "name");
		if (name && strcmp(name, r->task) == 0) {
			cJSON_ReplaceItemInObject(t, "last_status",
			                          cJSON_CreateString(run_status_name(r->status)));
			cJSON_AddNumberToObject(t, "last_run_id", (double)r->id);
		}
	}
	return 0;
}

static void add_time(cJSON *o, const char *key, double t)
{
	char buf[40];
	if (t <= 0) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	log_format_timestamp(buf, sizeof buf, (int64_t)llround(t * 1e6));
	cJSON_AddStringToObject(o, key, buf);
}

static cJSON *tasks_from_config(const config *cfg)
{
	cJSON *tasks = cJSON_CreateArray();
	int64_t now = (int64_t)clock_wall();
	for (size_t i = 0; i < cfg->ntasks; i++) {
		const task_config *tc = &cfg->tasks[i];
		cJSON *t = cJSON_CreateObject();
		cJSON_AddStringToObject(t, "name", tc->name);
		cJSON_AddBoolToObject(t, "enabled", tc->enabled);
		cJSON_AddItemToObject(t, "schedule",
		                      tc->schedule_expr ? cJSON_CreateString(tc->schedule_expr)
		                                        : cJSON_CreateNull());
		cJSON_AddBoolToObject(t, "running", false);
		cJSON_AddNullToObject(t, "last_status");
		bool cron = tc->schedule_expr && tc->sched.kind == SCHEDULE_CRON && tc->enabled;
		add_time(t, "next_run",
		         cron ? (double)schedule_next(&tc->sched, tc->zone, now) : 0);
		cJSON_AddItemToArray(tasks, t);
	}
	return tasks;
}

static cJSON *live_status(const config *cfg)
{
	char *reply = NULL;
	char err[256];
	if (control_request(cfg->control_socket, "{\"cmd\": \"status\"}", &reply, err,
	                    sizeof err) != 0)
		return NULL;
	cJSON *r = cJSON_Parse(reply);
	free(reply);
	if (r && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok"))) {
		cJSON_Delete(r);
		return NULL;
	}
	return r;
}

static int add_count(void *arg, const char *name, int64_t count)
{
	cJSON_AddNumberToObject((cJSON *)arg, name, (double)count);
	return 0;
}

static void add_store_state(cJSON *status, store *st, bool live)
{
	cJSON *servers = cJSON_AddObjectToObject(status, "servers");
	int64_t open = 0;
	if (st == NULL)
		return;
	store_servers_count_by_status(st, add_count, servers);
	store_incidents_open_count(st, &open);
	cJSON_AddNumberToObject(status, "incidents_open", (double)open);
	if (!live) {
		stored_ctx sc = {cJSON_GetObjectItemCaseSensitive(status, "tasks")};
		store_runs_last_per_task(st, add_last_run, &sc);
	}
}

static void print_table(const cJSON *status)
{
	const cJSON *dm = cJSON_GetObjectItemCaseSensitive(status, "daemon");
	if (cJSON_IsObject(dm))
		printf("daemon: running (pid %d, since %s)\n\n",
		       (int)cJSON_GetObjectItemCaseSensitive(dm, "pid")->valuedouble,
		       json_str(dm, "started_at") ? json_str(dm, "started_at") : "?");
	else
		printf("daemon: not running (stored state)\n\n");
	table *t = table_new(6, "TASK", "SCHEDULE", "RUNNING", "LAST", "LAST_RUN", "NEXT_RUN");
	const cJSON *task;
	cJSON_ArrayForEach(task, cJSON_GetObjectItemCaseSensitive(status, "tasks"))
	{
		char last_id[24] = "-";
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(task, "last_run_id");
		if (cJSON_IsNumber(id))
			snprintf(last_id, sizeof last_id, "%lld", (long long)id->valuedouble);
		bool running = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(task, "running"));
		table_add(t, json_str(task, "name"), json_str(task, "schedule"),
		          running ? "yes" : "no", json_str(task, "last_status"), last_id,
		          json_str(task, "next_run"));
	}
	table_print(t, stdout);
	table_free(t);
	const cJSON *servers = cJSON_GetObjectItemCaseSensitive(status, "servers");
	const cJSON *s;
	printf("\nservers:");
	if (cJSON_GetArraySize(servers) == 0)
		printf(" none");
	cJSON_ArrayForEach(s, servers) printf(" %s=%d", s->string, (int)s->valuedouble);
	const cJSON *open = cJSON_GetObjectItemCaseSensitive(status, "incidents_open");
	printf("\nopen incidents: %d\n", cJSON_IsNumber(open) ? (int)open->valuedouble : 0);
}

int cli_cmd_status(const cli_ctx *ctx)
{
	config *cfg = NULL;
	store *st = NULL;
	char err[512];
	if (ctx->argc != 0) {
		cli_usage_error("status takes no arguments, got '%s'", ctx->argv[0]);
		return EXIT_USAGE;
	}
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	cJSON *status = live_status(cfg);
	bool live = status != NULL;
	if (!live) {
		status = cJSON_CreateObject();
		cJSON_AddNullToObject(status, "daemon");
		cJSON_AddItemToObject(status, "tasks", tasks_from_config(cfg));
	}
	if (store_open_readonly(&st, cfg->db_path, err, sizeof err) != 0)
		st = NULL;
	add_store_state(status, st, live);
	if (ctx->json) {
		cJSON_DeleteItemFromObject(status, "ok");
		char *s = cJSON_PrintUnformatted(status);
		printf("%s\n", s);
		free(s);
	} else {
		print_table(status);
	}
	cJSON_Delete(status);
	store_close(st);
	config_unref(cfg);
	return EXIT_OK;
}
