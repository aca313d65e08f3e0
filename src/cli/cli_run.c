/*
 * cli_run — the commands that run tasks: run (the daemon), once, and
 * trigger (through the daemon's control socket, or in this process when no
 * daemon runs), with --follow. A standby daemon forwards the trigger to the
 * leader: the leader's reply is waited for in the store (follow_forwarded).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "clock.h"
#include "control.h"
#include "daemon.h"
#include "follow.h"
#include "log.h"
#include "pool.h"
#include "runner.h"
#include "runtime.h"
#include "runs.h"

/* ---- one run in this process ---- */

typedef struct {
	run_request req;
	run_control ctl;
	run_status status;
} local_run;

static void local_run_work(void *arg, store *st)
{
	local_run *lr = arg;
	lr->status = runner_execute(&lr->req, st, &lr->ctl);
}

static int block_stop_signals(sigset_t *old)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, old);
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Wait for the worker; cancel on timeout (timeout) or SIGINT/SIGTERM
 * (interrupted). */
static void wait_local_run(local_run *lr, pool *p, int sig_fd, int64_t timeout_ms)
{
	int64_t deadline = timeout_ms > 0 ? clock_mono_ms() + timeout_ms : -1;
	for (;;) {
		struct pollfd fds[2] = {{pool_done_fd(p), POLLIN, 0}, {sig_fd, POLLIN, 0}};
		int wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - clock_mono_ms();
			wait = left < 0 ? 0 : (int)left;
		}
		int n = poll(fds, sig_fd >= 0 ? 2 : 1, wait);
		if (n < 0 && errno != EINTR)
			break;
		if (pool_take_done(p) != NULL)
			return;
		if (n > 0 && sig_fd >= 0 && (fds[1].revents & POLLIN)) {
			struct signalfd_siginfo si;
			ssize_t r = read(sig_fd, &si, sizeof si);
			(void)r;
			run_control_cancel(&lr->ctl, RUN_CANCEL_SHUTDOWN);
		}
		if (deadline >= 0 && clock_mono_ms() >= deadline) {
			log_warning("core.runner", "task_timeout",
			            LOG_STR("task", lr->req.task->name),
			            LOG_DBL("timeout_sec", (double)timeout_ms / 1000.0));
			run_control_cancel(&lr->ctl, RUN_CANCEL_TIMEOUT);
			deadline = -1;
		}
	}
}

static int run_in_process(config *cfg, const task_config *task, const char *trigger)
{
	runtime rt;
	char err[512];
	local_run lr = {0};
	pool *p = NULL;
	sigset_t old;
	int rc = EXIT_FAILED;

	/* Before any thread starts, so that every thread inherits the mask. */
	int sig_fd = block_stop_signals(&old);
	if (runtime_open(&rt, cfg, false, err, sizeof err) != 0) {
		log_error("core.cli", "startup_failed", LOG_ERR(err, "state_dir"));
		if (sig_fd >= 0)
			close(sig_fd);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return EXIT_FAILED;
	}
	if (runner_prepare(&lr.req, cfg, task, trigger, rt.st, err, sizeof err) != 0) {
		log_error("core.cli", "task_run_store_failed", LOG_ERR(err, "store"));
		goto out;
	}
	if (run_control_init(&lr.ctl) != 0 ||
	    pool_start(&p, 1, cfg->db_path, err, sizeof err) != 0 ||
	    pool_submit(p, local_run_work, &lr) != 0) {
		log_error("core.cli", "startup_failed",
		          LOG_ERR("cannot start a worker thread", "resources"));
		goto out;
	}
	wait_local_run(&lr, p, sig_fd, task->timeout_ms);
	rc = lr.status == RUN_SUCCESS || lr.status == RUN_SKIPPED ? EXIT_OK : EXIT_FAILED;
out:
	pool_stop(p);
	run_control_destroy(&lr.ctl);
	run_request_release(&lr.req);
	if (sig_fd >= 0)
		close(sig_fd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	runtime_close(&rt);
	return rc;
}

static const task_config *find_task_or_complain(const config *cfg, const char *name)
{
	const task_config *task = config_task(cfg, name);
	if (task)
		return task;
	fprintf(stderr, "fleetkeeper: unknown task '%s' (configured in %s:", name, cfg->path);
	for (size_t i = 0; i < cfg->ntasks; i++)
		fprintf(stderr, " %s", cfg->tasks[i].name);
	fprintf(stderr, "%s)\n", cfg->ntasks ? "" : " none");
	return NULL;
}

int cli_cmd_once(const cli_ctx *ctx)
{
	config *cfg = NULL;
	if (ctx->argc != 1) {
		cli_usage_error("once needs exactly one TASK");
		return EXIT_USAGE;
	}
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	const task_config *task = find_task_or_complain(cfg, ctx->argv[0]);
	if (task == NULL) {
		config_unref(cfg);
		return EXIT_USAGE;
	}
	rc = cli_setup_logging(cfg);
	if (rc == EXIT_OK)
		rc = run_in_process(cfg, task, "cli");
	log_shutdown();
	config_unref(cfg);
	return rc;
}

int cli_cmd_run(const cli_ctx *ctx)
{
	config *cfg = NULL;
	if (ctx->argc != 0) {
		cli_usage_error("run takes no arguments, got '%s'", ctx->argv[0]);
		return EXIT_USAGE;
	}
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	rc = cli_setup_logging(cfg);
	if (rc == EXIT_OK)
		rc = daemon_run(cfg);
	log_shutdown();
	config_unref(cfg);
	return rc;
}

/* ---- trigger ---- */

static int print_trigger_reply(const cli_ctx *ctx, cJSON *reply, int64_t *run_id, char *cid,
                               size_t cidlen)
{
	cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
	if (!cJSON_IsTrue(ok)) {
		cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
		fprintf(stderr, "fleetkeeper: daemon refused: %s\n",
		        cJSON_IsString(e) ? e->valuestring : "unknown error");
		return EXIT_FAILED;
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "queued"))) {
		if (!ctx->json) {
			printf("queued: the task is running; it runs again once that run ends\n");
			return EXIT_OK;
		}
		cJSON *o = cJSON_CreateObject();
		cJSON_AddBoolToObject(o, "queued", true);
		return cli_print_json(o) == 0 ? EXIT_OK : EXIT_FAILED;
	}
	cJSON *id = cJSON_GetObjectItemCaseSensitive(reply, "run_id");
	cJSON *c = cJSON_GetObjectItemCaseSensitive(reply, "correlation_id");
	if (!cJSON_IsNumber(id) || !cJSON_IsString(c)) {
		fprintf(stderr, "fleetkeeper: malformed reply from the daemon\n");
		return EXIT_FAILED;
	}
	*run_id = (int64_t)id->valuedouble;
	snprintf(cid, cidlen, "%s", c->valuestring);
	int rc = EXIT_OK;
	if (ctx->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "run_id", (double)*run_id);
		cJSON_AddStringToObject(o, "correlation_id", cid);
		if (cli_print_json(o) != 0)
			rc = EXIT_FAILED;
	} else {
		printf("run_id=%lld correlation_id=%s\n", (long long)*run_id, cid);
	}
	fflush(stdout);
	return rc;
}

static int trigger_through_daemon(const cli_ctx *ctx, config *cfg, const char *task, bool follow,
                                  const char *reply_text)
{
	cJSON *reply = cJSON_Parse(reply_text);
	int64_t run_id = 0;
	char cid[RUNNER_CORRELATION_MAX];
	if (reply == NULL) {
		fprintf(stderr, "fleetkeeper: malformed reply from the daemon\n");
		return EXIT_FAILED;
	}
	bool queued = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "queued"));
	int rc = print_trigger_reply(ctx, reply, &run_id, cid, sizeof cid);
	cJSON_Delete(reply);
	if (rc != EXIT_OK || !follow || queued)
		return rc;
	return follow_run(cfg, task, run_id, cid);
}

int cli_cmd_trigger(const cli_ctx *ctx)
{
	config *cfg = NULL;
	const char *name = NULL;
	bool follow = false;

	if (cli_parse_name_follow(ctx, "trigger", "TASK", &name, &follow) != 0)
		return EXIT_USAGE;
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	const task_config *task = find_task_or_complain(cfg, name);
	if (task == NULL) {
		config_unref(cfg);
		return EXIT_USAGE;
	}
	char *reply = NULL;
	char err[512];
	char request[256];
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "trigger");
	cJSON_AddStringToObject(req, "task", name);
	cJSON_PrintPreallocated(req, request, sizeof request, false);
	cJSON_Delete(req);
	int crc = control_request(cfg->control_socket, request, &reply, err, sizeof err);
	if (crc == 0 && follow_forwarded(cfg, &reply) != 0) {
		rc = EXIT_FAILED;
	} else if (crc == 0) {
		rc = trigger_through_daemon(ctx, cfg, name, follow, reply);
	} else if (crc == CONTROL_NO_DAEMON) {
		fprintf(stderr,
		        "fleetkeeper: no daemon is running (%s); running %s in this process\n", err,
		        name);
		rc = cli_setup_logging(cfg);
		if (rc == EXIT_OK)
			rc = run_in_process(cfg, task, "manual");
		log_shutdown();
	} else {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		rc = EXIT_FAILED;
	}
	free(reply);
	config_unref(cfg);
	return rc;
}
