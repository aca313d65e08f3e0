/*
 * cli_status — `fleetkeeper status`: every task's state (live from the
 * daemon's control socket when it runs, else the last stored run and the
 * next fire time computed from the configuration), servers by status and
 * open incidents.
 *
 * When the request fails, daemon.lock tells "not running" (exit 0, stored
 * state) from "not answering" (a process holds the lock: stopped, too many
 * clients, socket unreadable; exit 1 with the reason, stored state shown).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "clock.h"
#include "control.h"
#include "incidents.h"
#include "log.h"
#include "store.h"
#include "runs.h"
#include "servers.h"
#include "spread.h"
#include "table.h"

static const char *json_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
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

/* Task rows from the stored state: the last run of each task. With a
 * configuration that has errors (degraded: no tasks), the stored tasks
 * themselves are the rows (add_missing). */
typedef struct {
	cJSON *tasks;
	bool add_missing;
} stored_ctx;

static cJSON *stored_task(cJSON *tasks, const char *name)
{
	cJSON *t = cJSON_CreateObject();
	cJSON_AddStringToObject(t, "name", name);
	cJSON_AddNullToObject(t, "schedule");
	cJSON_AddBoolToObject(t, "running", false);
	cJSON_AddNullToObject(t, "last_status");
	cJSON_AddNullToObject(t, "next_run");
	cJSON_AddItemToArray(tasks, t);
	return t;
}

static int add_last_run(void *arg, const run_row *r)
{
	stored_ctx *sc = arg;
	cJSON *t, *found = NULL;
	cJSON_ArrayForEach(t, sc->tasks)
	{
		const char *name = json_str(t, "name");
		if (name && strcmp(name, r->task) == 0)
			found = t;
	}
	if (found == NULL && sc->add_missing)
		found = stored_task(sc->tasks, r->task);
	if (found == NULL)
		return 0;
	cJSON_ReplaceItemInObject(found, "last_status",
	                          cJSON_CreateString(run_status_name(r->status)));
	cJSON_AddNumberToObject(found, "last_run_id", (double)r->id);
	add_time(found, "last_finished_at", r->finished_at);
	return 0;
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
		/* the daemon fires at each nominal time plus the task's fixed
		 * spread offset: a fire due now-offset is still to come */
		int64_t offset_ms = spread_task_offset_ms(tc->name, tc->jitter_ms, cfg->spread_ms);
		int64_t nominal =
		        cron ? schedule_next(&tc->sched, tc->zone, now - offset_ms / 1000) : 0;
		add_time(t, "next_run", cron ? (double)nominal + (double)offset_ms / 1000.0 : 0);
		cJSON_AddItemToArray(tasks, t);
	}
	return tasks;
}

/* What is known of the daemon when its status cannot be had live. */
typedef struct {
	const char *state; /* running, not_running, not_answering, unknown */
	long pid;          /* the lock holder, 0 if none or not known */
	char why[512];     /* why the request failed */
	char lock_err[256];
} daemon_probe;

/* The daemon's live status; NULL with p->why (and *rc, the request's code)
 * when it cannot be had, a refusal ("too many clients") included. */
static cJSON *live_status(const config *cfg, daemon_probe *p, int *rc)
{
	char *reply = NULL;
	*rc = control_request(cfg->control_socket, "{\"cmd\": \"status\"}", &reply, p->why,
	                      sizeof p->why);
	if (*rc != 0)
		return NULL;
	cJSON *r = cJSON_Parse(reply);
	free(reply);
	*rc = -1;
	if (r == NULL) {
		snprintf(p->why, sizeof p->why, "the daemon's reply is not JSON");
		return NULL;
	}
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok"))) {
		const char *e = json_str(r, "error");
		snprintf(p->why, sizeof p->why, "the daemon refused: %s",
		         e ? e : "no reason given");
		cJSON_Delete(r);
		return NULL;
	}
	*rc = 0;
	return r;
}

/*
 * Does a process hold daemon.lock? Read from /proc/locks (holder pid,
 * device and inode of every flock) rather than by trying the lock: a probe
 * would make a daemon that starts at that instant refuse to start.
 * 1 held (*pid set), 0 free (no lock file or no holder), -1 cannot tell.
 */
static int daemon_lock_holder(const config *cfg, long *pid, char *err, size_t errlen)
{
	char path[4096], line[256], kind[16], mode[16], access[16];
	struct stat sb;
	snprintf(path, sizeof path, "%s/daemon.lock", cfg->state_dir);
	if (stat(path, &sb) != 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		snprintf(err, errlen, "%s/daemon.lock: %s", cfg->state_dir, strerror(errno));
		return -1;
	}
	FILE *f = fopen("/proc/locks", "re");
	if (f == NULL) {
		snprintf(err, errlen, "/proc/locks: %s", strerror(errno));
		return -1;
	}
	int held = 0;
	unsigned maj, min;
	unsigned long ino;
	while (!held && fgets(line, sizeof line, f)) {
		held = sscanf(line, "%*d: %15s %15s %15s %ld %x:%x:%lu", kind, mode, access, pid,
		              &maj, &min, &ino) == 7 &&
		       strcmp(kind, "FLOCK") == 0 && ino == (unsigned long)sb.st_ino &&
		       maj == major(sb.st_dev) && min == minor(sb.st_dev);
	}
	fclose(f);
	return held;
}

/* The request failed (rc): is a daemon there that does not answer? */
static void probe_daemon(const config *cfg, daemon_probe *p, int rc)
{
	int held = daemon_lock_holder(cfg, &p->pid, p->lock_err, sizeof p->lock_err);
	if (held == 1)
		p->state = "not_answering";
	else if (held == 0 || rc == CONTROL_NO_DAEMON)
		p->state = "not_running";
	else
		p->state = "unknown";
	if (held != 1)
		p->pid = 0;
}

static void add_probe(cJSON *status, const daemon_probe *p)
{
	cJSON_AddStringToObject(status, "daemon_state", p->state);
	if (strcmp(p->state, "not_running") == 0)
		return;
	cJSON_AddStringToObject(status, "daemon_error", p->why);
	if (p->pid > 0)
		cJSON_AddNumberToObject(status, "daemon_pid", (double)p->pid);
	if (p->lock_err[0])
		cJSON_AddStringToObject(status, "daemon_lock_error", p->lock_err);
}

/* One line on stderr when a daemon may be there but does not answer. */
static bool report_unanswered(const daemon_probe *p)
{
	if (strcmp(p->state, "not_answering") == 0)
		fprintf(stderr,
		        "fleetkeeper: status: the daemon (pid %ld) holds daemon.lock but "
		        "does not answer: %s\n",
		        p->pid, p->why);
	else if (strcmp(p->state, "unknown") == 0)
		fprintf(stderr,
		        "fleetkeeper: status: no answer (%s) and cannot tell whether a "
		        "daemon runs: %s\n",
		        p->why, p->lock_err);
	else
		return false;
	return true;
}

static int add_count(void *arg, const char *name, int64_t count)
{
	cJSON_AddNumberToObject((cJSON *)arg, name, (double)count);
	return 0;
}

static void add_store_state(cJSON *status, store *st, bool live, bool degraded)
{
	cJSON *servers = cJSON_AddObjectToObject(status, "servers");
	int64_t open = 0;
	if (st == NULL)
		return;
	servers_count_by_status(st, add_count, servers);
	incidents_open_count(st, &open);
	cJSON_AddNumberToObject(status, "incidents_open", (double)open);
	if (!live) {
		stored_ctx sc = {cJSON_GetObjectItemCaseSensitive(status, "tasks"), degraded};
		runs_last_per_task(st, add_last_run, &sc);
	}
}

/* The header line when the status is the stored one: why. */
static void print_daemon_absent(const cJSON *status)
{
	const char *state = json_str(status, "daemon_state");
	const char *why = json_str(status, "daemon_error");
	const cJSON *pid = cJSON_GetObjectItemCaseSensitive(status, "daemon_pid");
	if (state && strcmp(state, "not_answering") == 0)
		printf("daemon: not answering (pid %ld holds the lock): %s\n(stored state)\n\n",
		       cJSON_IsNumber(pid) ? (long)pid->valuedouble : 0L, why ? why : "?");
	else if (state && strcmp(state, "unknown") == 0)
		printf("daemon: unknown (%s; %s)\n(stored state)\n\n", why ? why : "?",
		       json_str(status, "daemon_lock_error"));
	else
		printf("daemon: not running (stored state)\n\n");
}

static void print_table(const cJSON *status)
{
	const cJSON *dm = cJSON_GetObjectItemCaseSensitive(status, "daemon");
	if (cJSON_IsObject(dm))
		printf("daemon: running (pid %d, since %s)\n\n",
		       (int)cJSON_GetObjectItemCaseSensitive(dm, "pid")->valuedouble,
		       json_str(dm, "started_at") ? json_str(dm, "started_at") : "?");
	else
		print_daemon_absent(status);
	/* in a cluster: the role, and on a standby where its task state comes from */
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(dm, "cluster")))
		printf("cluster: %s %s, leader %s%s\n\n", json_str(dm, "role"),
		       json_str(dm, "instance"),
		       json_str(dm, "leader") ? json_str(dm, "leader") : "none known",
		       cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(status, "live"))
		               ? " (tasks: the last stored runs; the leader has the live state)"
		               : "");
	/* LAST: the last run's status; LAST_RUN: when it finished (its id is
	 * in --json, last_run_id, for `runs`). */
	table *t = table_new(6, "TASK", "SCHEDULE", "RUNNING", "LAST", "LAST_RUN", "NEXT_RUN");
	const cJSON *task;
	cJSON_ArrayForEach(task, cJSON_GetObjectItemCaseSensitive(status, "tasks"))
	{
		bool running = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(task, "running"));
		table_add(t, json_str(task, "name"), json_str(task, "schedule"),
		          running ? "yes" : "no", json_str(task, "last_status"),
		          json_str(task, "last_finished_at"), json_str(task, "next_run"));
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
	int rc = cli_load_config_lenient(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	daemon_probe probe = {.state = "running"};
	int req_rc;
	cJSON *status = live_status(cfg, &probe, &req_rc);
	bool live = status != NULL;
	if (!live) {
		probe_daemon(cfg, &probe, req_rc);
		status = cJSON_CreateObject();
		cJSON_AddNullToObject(status, "daemon");
		cJSON_AddItemToObject(status, "tasks", tasks_from_config(cfg));
	}
	add_probe(status, &probe);
	if (store_open_readonly(&st, cfg->db_path, err, sizeof err) != 0)
		st = NULL;
	add_store_state(status, st, live, cfg->degraded);
	if (ctx->json) {
		cJSON_DeleteItemFromObject(status, "ok");
		cli_print_json(status);
	} else {
		print_table(status);
		cJSON_Delete(status);
	}
	store_close(st);
	config_unref(cfg);
	return report_unanswered(&probe) ? EXIT_FAILED : EXIT_OK;
}
