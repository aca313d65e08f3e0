/*
 * command — run an operator-written shell command line as a task.
 *
 *   [task.nightly_backup]
 *   type = command
 *   command = /usr/local/bin/backup.sh --full   ; required, run as SHELL -c COMMAND
 *   workdir = /srv/backup                      ; optional, else the daemon's directory
 *   shell = /bin/bash                          ; optional, default /bin/sh
 *   env = BACKUP_TARGET=s3 RETRIES=3           ; optional KEY=VALUE pairs, space separated
 *   kill_grace = 10s                           ; SIGTERM -> SIGKILL on cancel, default 5s
 *   max_line_bytes = 4096                      ; cut longer output lines, default [daemon]'s
 *   output_drain = 1s                          ; after the shell exits, default [daemon]'s
 *
 * env values cannot contain spaces (there is no quoting); use an env file
 * read by the command for anything richer. The child also gets
 * FLEETKEEPER_CORRELATION_ID, FLEETKEEPER_TASK and FLEETKEEPER_RUN_ID, and
 * of the daemon's own environment only what proc.h lists (the fixed names
 * and [daemon] pass_env): never a secret named by a *_env key.
 *
 * Events: command_start (command), one command_output (stream, line) per
 * output line, command_complete (exit_code, duration_sec, orphans_killed)
 * whenever the child ran — also when it failed or was cancelled. A line
 * longer than max_line_bytes is cut there: its command_output carries
 * truncated: true and bytes_dropped (the rest of the line, read and
 * discarded), and the run counts it in the item lines_truncated. A NUL byte
 * in a line is kept, escaped (\u0000). The command line is logged as
 * written: it is operator configuration, so secrets belong in env files or
 * the environment, not on the command line. Output lines are logged at info
 * level on both streams; the stream field says which one (many tools write
 * progress to stderr, so stderr is no warning by itself).
 *
 * kill_grace = 0 means SIGKILL right after SIGTERM.
 *
 * Once the shell has exited, whatever it left behind may hold its stdout or
 * stderr for output_drain more (a daemonized child that kept them): then the
 * run ends with the shell's status, and every process left of the run is
 * killed and counted (orphans_killed, also an item of the run when not 0).
 * output_drain = 0 ends the run as soon as the shell exits.
 *
 * Outcome: exit 0 is success; otherwise the run fails with error_type
 * exit_status, signal, timeout / cancelled (run cancelled: the process group
 * got SIGTERM, then SIGKILL after kill_grace) or exec_failed (could not start).
 *
 * Params are immutable once config_finish accepted them; run() only reads
 * them, so runs of the same config may execute concurrently.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "duration.h"
#include "log.h"
#include "proc.h"
#include "task.h"

#define COMMAND_ENV_MAX       64
#define COMMAND_GRACE_DEFAULT 5000

typedef struct {
	char *command;
	char *workdir;
	char *shell;
	char **env; /* "KEY=VALUE", NULL-terminated, NULL when none */
	int64_t kill_grace_ms;
	int max_line_bytes;      /* 0: [daemon] max_line_bytes */
	int64_t output_drain_ms; /* -1: [daemon] output_drain */
} command_params;

/* lines_truncated and orphans_killed are reported only when not 0. */
static const char *const command_items[] = {"lines_output", NULL};

static void env_free(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

static bool env_valid_pair(const char *pair, size_t len)
{
	const char *eq = memchr(pair, '=', len);
	if (eq == NULL || eq == pair || !(isalpha((unsigned char)pair[0]) || pair[0] == '_'))
		return false;
	for (const char *p = pair; p < eq; p++)
		if (!isalnum((unsigned char)*p) && *p != '_')
			return false;
	return true;
}

/* "A=1 B=2" into a NULL-terminated array; -1 with a message. */
static int env_parse(const char *value, char ***out, char *err, size_t errlen)
{
	char **env = calloc(COMMAND_ENV_MAX + 1, sizeof *env);
	size_t n = 0;
	if (env == NULL)
		goto oom;
	for (const char *p = value; *p;) {
		size_t len = strcspn(p, " \t");
		if (len == 0) {
			p++;
			continue;
		}
		if (n == COMMAND_ENV_MAX) {
			snprintf(err, errlen, "more than %d env entries", COMMAND_ENV_MAX);
			goto fail;
		}
		if (!env_valid_pair(p, len)) {
			snprintf(err, errlen, "env: expected KEY=VALUE, got '%.*s'", (int)len, p);
			goto fail;
		}
		if ((env[n++] = strndup(p, len)) == NULL)
			goto oom;
		p += len;
	}
	*out = env;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	env_free(env);
	return -1;
}

static int set_string(char **slot, const char *value, const char *key, char *err, size_t errlen)
{
	if (value[0] == '\0') {
		snprintf(err, errlen, "%s must not be empty", key);
		return -1;
	}
	char *copy = strdup(value);
	if (copy == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	free(*slot);
	*slot = copy;
	return 0;
}

static int set_line_bytes(command_params *p, const char *value, char *err, size_t errlen)
{
	long n;
	if (config_parse_int(value, CONFIG_LINE_BYTES_MIN, CONFIG_LINE_BYTES_MAX, &n) != 0) {
		snprintf(err, errlen, "max_line_bytes: expected an integer from %d to %d, got '%s'",
		         CONFIG_LINE_BYTES_MIN, CONFIG_LINE_BYTES_MAX, value);
		return -1;
	}
	p->max_line_bytes = (int)n;
	return 0;
}

static command_params *params_get(void **params)
{
	command_params *p = *params;
	if (p == NULL) {
		p = calloc(1, sizeof *p);
		if (p) {
			p->kill_grace_ms = COMMAND_GRACE_DEFAULT;
			p->output_drain_ms = -1;
		}
		*params = p;
	}
	return p;
}

static int command_config_key(void **params, const char *key, const char *value, char *err,
                              size_t errlen)
{
	command_params *p = params_get(params);
	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (strcmp(key, "command") == 0)
		return set_string(&p->command, value, key, err, errlen);
	if (strcmp(key, "workdir") == 0)
		return set_string(&p->workdir, value, key, err, errlen);
	if (strcmp(key, "shell") == 0)
		return set_string(&p->shell, value, key, err, errlen);
	if (strcmp(key, "kill_grace") == 0)
		return duration_parse(value, &p->kill_grace_ms, err, errlen);
	if (strcmp(key, "output_drain") == 0)
		return duration_parse(value, &p->output_drain_ms, err, errlen);
	if (strcmp(key, "max_line_bytes") == 0)
		return set_line_bytes(p, value, err, errlen);
	if (strcmp(key, "env") == 0) {
		char **env = NULL;
		if (env_parse(value, &env, err, errlen) != 0)
			return -1;
		env_free(p->env);
		p->env = env;
		return 0;
	}
	snprintf(err, errlen, "unknown key '%s'", key);
	return -1;
}

static int command_config_finish(void **params, const config_section *sec, char *err, size_t errlen)
{
	command_params *p = params_get(params);
	(void)sec;
	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (p->command == NULL) {
		snprintf(err, errlen, "command is required");
		return -1;
	}
	if (p->shell == NULL && (p->shell = strdup("/bin/sh")) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static void command_config_free(void *params)
{
	command_params *p = params;
	if (p == NULL)
		return;
	free(p->command);
	free(p->workdir);
	free(p->shell);
	env_free(p->env);
	free(p);
}

/* ---- running ---- */

/* proc delivers line[len] == '\0'; NUL bytes inside it are kept (STRN). */
static void command_on_line(void *ctx, int stream, const char *line, size_t len, size_t dropped)
{
	task_run *run = ctx;
	const char *name = stream == PROC_STDERR ? "stderr" : "stdout";
	if (dropped == 0)
		log_info(run->logger, "command_output", LOG_STR("stream", name),
		         LOG_STRN("line", line, len));
	else
		log_info(run->logger, "command_output", LOG_STR("stream", name),
		         LOG_STRN("line", line, len), LOG_BOOL("truncated", true),
		         LOG_INT("bytes_dropped", dropped));
	task_run_count(run, "lines_output", 1);
	if (dropped > 0)
		task_run_count(run, "lines_truncated", 1);
}

/* FLEETKEEPER_* then the configured env; strings live in bufs. */
static void command_env(const task_run *run, const command_params *p, char bufs[3][160],
                        const char **env)
{
	size_t n = 0;
	snprintf(bufs[0], sizeof bufs[0], "FLEETKEEPER_CORRELATION_ID=%s",
	         run->correlation_id ? run->correlation_id : "");
	snprintf(bufs[1], sizeof bufs[1], "FLEETKEEPER_TASK=%s", run->task->name);
	snprintf(bufs[2], sizeof bufs[2], "FLEETKEEPER_RUN_ID=%lld", (long long)run->run_id);
	for (; n < 3; n++)
		env[n] = bufs[n];
	for (size_t i = 0; p->env && p->env[i]; i++)
		env[n++] = p->env[i];
	env[n] = NULL;
}

/* The task's max_line_bytes, else [daemon]'s. */
static size_t command_max_line(const task_run *run, const command_params *p)
{
	int n = p->max_line_bytes ? p->max_line_bytes : run->cfg->max_line_bytes;
	return (size_t)(n > 0 ? n : CONFIG_LINE_BYTES_MAX);
}

static task_result command_outcome(task_run *run, const proc_result *res)
{
	if (res->cancelled) {
		bool timeout = task_run_cancel_reason(run) == RUN_CANCEL_TIMEOUT;
		return task_run_fail(run, timeout ? "timeout" : "cancelled", "command %s%s",
		                     timeout ? "timed out" : "was cancelled",
		                     res->killed ? " (killed after the grace period)" : "");
	}
	if (res->term_signal != 0)
		return task_run_fail(run, "signal", "command killed by signal %d",
		                     res->term_signal);
	if (res->exit_code != 0)
		return task_run_fail(run, "exit_status", "command exited with status %d",
		                     res->exit_code);
	return TASK_OK;
}

static task_result command_run(task_run *run)
{
	const command_params *p = run->task->params;
	const char *argv[] = {p->shell, "-c", p->command, NULL};
	const char *env[3 + COMMAND_ENV_MAX + 1];
	char bufs[3][160];
	char err[512] = "";
	proc_result res;

	command_env(run, p, bufs, env);
	log_info(run->logger, "command_start", LOG_STR("command", p->command));
	int64_t drain = p->output_drain_ms >= 0 ? p->output_drain_ms : run->cfg->output_drain_ms;
	proc_spec spec = {
	        .argv = argv,
	        .env_add = env,
	        .cwd = p->workdir,
	        .cancel_fd = run->cancel_fd,
	        .kill_grace_ms = p->kill_grace_ms > 0 ? p->kill_grace_ms : 1,
	        .max_line = command_max_line(run, p),
	        .on_cut_line = command_on_line,
	        .drain_ms = drain > 0 ? drain : 1,
	        .ctx = run,
	};
	int64_t started = clock_mono_ms();
	if (proc_run(&spec, &res, err, sizeof err) != 0)
		return task_run_fail(run, "exec_failed", "%s", err);
	double secs = (double)(clock_mono_ms() - started) / 1000.0;
	log_info(run->logger, "command_complete", LOG_INT("exit_code", res.exit_code),
	         LOG_DBL("duration_sec", secs), LOG_INT("orphans_killed", res.orphans_killed));
	if (res.orphans_killed > 0)
		task_run_count(run, "orphans_killed", res.orphans_killed);
	run->exit_code = res.exit_code;
	return command_outcome(run, &res);
}

extern const task_type task_type_command; /* referenced by tasks/registry.c */

static const config_key_doc command_keys[] = {
        {"command", "required"},
        {"workdir", "the daemon's working directory"},
        {"shell", "/bin/sh"},
        {"env", "none"},
        {"kill_grace", "5s"},
        {"max_line_bytes", "[daemon] max_line_bytes"},
        {"output_drain", "[daemon] output_drain"},
        {NULL, NULL},
};

const task_type task_type_command = {
        .name = "command",
        .logger = "tasks.command",
        .items = command_items,
        .keys = command_keys,
        .config_key = command_config_key,
        .config_finish = command_config_finish,
        .config_free = command_config_free,
        .run = command_run,
};
