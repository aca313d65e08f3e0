/*
 * cli_next — `fleetkeeper next TASK|EXPR [-n N] [--from ISO8601] [--tz ZONE]
 * [--json]`: the next N fire times strictly after --from (default now), one
 * ISO 8601 timestamp with UTC offset a line, in the task's zone (or --tz, or
 * local); with --json one {"next_run": ISO, "unix": seconds} a line.
 *
 * An interval task (`@every`) counts from the daemon's start or its last
 * fire, not from the wall clock: without --from, when a daemon answers, the
 * first time is the daemon's own next run of the task (its status) and the
 * rest follow it by the interval, so `next` and `status` agree. Without a
 * daemon the times are from now (what a daemon started now would do), and
 * stderr says so.
 *
 * A task without a jitter of its own fires at its nominal times plus its
 * fixed [daemon] spread offset (spread.h): the times printed include it
 * (with milliseconds when it has a fraction of a second), as the daemon's
 * status does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "clock.h"
#include "control.h"
#include "schedule.h"
#include "spread.h"
#include "tz.h"

typedef struct {
	const char *target;
	long count;
	const char *from;
	const char *zone;
} next_args;

static int parse_args(const cli_ctx *ctx, next_args *a)
{
	a->count = 5;
	for (int i = 0; i < ctx->argc; i++) {
		const char *arg = ctx->argv[i];
		bool has_value = i + 1 < ctx->argc;
		if (strcmp(arg, "-n") == 0 && has_value) {
			if (config_parse_int(ctx->argv[++i], 1, 100000, &a->count) != 0) {
				cli_usage_error("-n: expected a number from 1 to 100000, got '%s'",
				                ctx->argv[i]);
				return -1;
			}
		} else if (strcmp(arg, "--from") == 0 && has_value) {
			a->from = ctx->argv[++i];
		} else if (strcmp(arg, "--tz") == 0 && has_value) {
			a->zone = ctx->argv[++i];
		} else if (a->target == NULL && (arg[0] != '-' || arg[1] == '\0')) {
			a->target = arg;
		} else {
			cli_usage_error("next: unexpected argument '%s'", arg);
			return -1;
		}
	}
	if (a->target == NULL) {
		cli_usage_error("next needs a TASK or a schedule expression");
		return -1;
	}
	return 0;
}

/* t: unix s; ms: milliseconds past it, printed when with_ms (a spread
 * offset). */
static void print_time(const cli_ctx *ctx, const tz *zone, int64_t t, int ms, bool with_ms)
{
	tz_civil c;
	char buf[64], frac[8] = "";
	int32_t off = tz_offset_at(zone, t);
	int32_t a = off < 0 ? -off : off;
	tz_to_civil(zone, t, &c);
	if (with_ms)
		snprintf(frac, sizeof frac, ".%03d", ms);
	snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d%s%c%02d:%02d", c.year, c.month,
	         c.day, c.hour, c.minute, c.second, frac, off < 0 ? '-' : '+', a / 3600,
	         (a / 60) % 60);
	if (!ctx->json) {
		printf("%s\n", buf);
		return;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "next_run", buf);
	cJSON_AddNumberToObject(o, "unix", (double)t + (double)ms / 1000.0);
	cli_print_json(o);
}

/* The milliseconds of an ISO 8601 time's fraction ("...:05.250+00:00"). */
static int64_t iso_millis(const char *iso)
{
	const char *dot = strchr(iso, '.');
	int64_t ms = 0;
	for (int i = 1; i <= 3; i++)
		ms = ms * 10 + (dot && dot[i] >= '0' && dot[i] <= '9' ? dot[i] - '0' : 0);
	return ms;
}

/* The running daemon's next run of task name (unix ms, from its status);
 * 0 if it has none, -1 if no daemon answers. */
static int64_t daemon_next_run(const config *cfg, const char *name, const tz *zone)
{
	char *reply = NULL, err[256];
	int64_t t = 0;
	if (control_request(cfg->control_socket, "{\"cmd\": \"status\"}", &reply, err,
	                    sizeof err) != 0)
		return -1;
	cJSON *r = cJSON_Parse(reply);
	free(reply);
	const cJSON *task;
	cJSON_ArrayForEach(task, cJSON_GetObjectItemCaseSensitive(r, "tasks"))
	{
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(task, "name");
		const cJSON *next = cJSON_GetObjectItemCaseSensitive(task, "next_run");
		if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0 &&
		    cJSON_IsString(next)) {
			/* it carries its offset; zone only in case it does not */
			if (tz_parse_iso8601(next->valuestring, zone, &t) != 0)
				t = 0;
			else
				t = t * 1000 + iso_millis(next->valuestring);
		}
	}
	cJSON_Delete(r);
	return t;
}

/* The schedule, zone and spread offset (ms) of a task of the
 * configuration; *daemon_next the daemon's next run of an interval task in
 * unix ms (0: none, or not asked). */
static int task_schedule(const cli_ctx *ctx, const char *name, bool ask_daemon, schedule *s,
                         const tz **zone, int64_t *offset_ms, int64_t *daemon_next)
{
	config *cfg = NULL;
	int rc = cli_load_config(ctx, &cfg);
	if (rc != EXIT_OK)
		return rc;
	const task_config *tc = config_task(cfg, name);
	if (tc == NULL || tc->schedule_expr == NULL) {
		cli_usage_error(tc ? "task '%s' has no schedule"
		                   : "'%s' is neither a task of the configuration nor a schedule "
		                     "expression",
		                name);
		config_unref(cfg);
		return EXIT_USAGE;
	}
	*s = tc->sched;
	*zone = tc->zone; /* zones live for the whole process */
	*offset_ms = spread_task_offset_ms(tc->name, tc->jitter_ms, cfg->spread_ms);
	if (ask_daemon && s->kind == SCHEDULE_INTERVAL) {
		*daemon_next = daemon_next_run(cfg, name, tc->zone);
		if (*daemon_next <= 0)
			fprintf(stderr,
			        "fleetkeeper: %s: times from now (an interval counts from the "
			        "daemon's start or the task's last fire)\n",
			        *daemon_next < 0 ? "no daemon answers"
			                         : "the daemon has no next run of this task");
	}
	config_unref(cfg);
	return EXIT_OK;
}

static bool looks_like_expression(const char *s)
{
	return s[0] == '@' || strchr(s, ' ') != NULL || strchr(s, '\t') != NULL;
}

int cli_cmd_next(const cli_ctx *ctx)
{
	next_args a = {0};
	schedule s;
	const tz *zone = NULL;
	int64_t daemon_next = 0, offset_ms = 0;
	char err[256];

	if (parse_args(ctx, &a) != 0)
		return EXIT_USAGE;
	if (looks_like_expression(a.target)) {
		if (schedule_parse(&s, a.target, err, sizeof err) != 0) {
			cli_usage_error("invalid schedule '%s': %s", a.target, err);
			return EXIT_USAGE;
		}
	} else {
		int rc = task_schedule(ctx, a.target, a.from == NULL, &s, &zone, &offset_ms,
		                       &daemon_next);
		if (rc != EXIT_OK)
			return rc;
	}
	if ((a.zone || zone == NULL) && tz_load(a.zone, &zone, err, sizeof err) != 0) {
		cli_usage_error("--tz: %s", err);
		return EXIT_USAGE;
	}
	int64_t t = (int64_t)clock_wall();
	if (a.from && tz_parse_iso8601(a.from, zone, &t) != 0) {
		cli_usage_error("--from: expected an ISO 8601 time such as "
		                "2026-03-29T01:30:00+01:00, got '%s'",
		                a.from);
		return EXIT_USAGE;
	}
	if (t < 0) { /* schedule_next cannot tell a fire time before 1970 from none */
		cli_usage_error("--from: times before 1970 are not supported, got '%s'", a.from);
		return EXIT_USAGE;
	}
	if (!schedule_can_fire(&s)) {
		cli_usage_error("schedule '%s' can never fire (no such date)", a.target);
		return EXIT_USAGE;
	}
	/* Nominal times n with n + offset after --from: counted from --from -
	 * offset. An interval the daemon runs follows its next run, which
	 * already holds the offset. */
	int64_t from_ms = t * 1000 - offset_ms;
	t = from_ms / 1000 - (from_ms % 1000 < 0);
	for (long i = 0; i < a.count; i++) {
		int64_t at_ms = daemon_next + i * s.interval_ms;
		if (daemon_next <= 0) {
			if ((t = schedule_next(&s, zone, t)) < 0)
				break;
			at_ms = t * 1000 + offset_ms;
		}
		print_time(ctx, zone, at_ms / 1000, (int)(at_ms % 1000), offset_ms != 0);
	}
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
}
