/*
 * cli_next — `fleetkeeper next TASK|EXPR [-n N] [--from ISO8601] [--tz ZONE]`:
 * the next N fire times strictly after --from (default now), one ISO 8601
 * timestamp with UTC offset a line, in the task's zone (or --tz, or local).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "schedule.h"
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

static int read_digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (*(*p)++ - '0');
	}
	*out = v;
	return 0;
}

/* 2026-02-30 is no date (tz_days_from_civil would make it March 2nd). */
static bool date_exists(int year, int month, int day)
{
	int y, m, d;
	tz_civil_from_days(tz_days_from_civil(year, month, day), &y, &m, &d);
	return d == day;
}

/* YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|±HH:MM|±HHMM]; without an offset the
 * time is civil time in zone. */
static int parse_iso8601(const char *s, const tz *zone, int64_t *out)
{
	tz_civil c = {0};
	const char *p = s;
	int oh = 0, om = 0, sign = 0;

	if (read_digits(&p, 4, &c.year) || *p++ != '-' || read_digits(&p, 2, &c.month) ||
	    *p++ != '-' || read_digits(&p, 2, &c.day))
		return -1;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (read_digits(&p, 2, &c.hour) || *p++ != ':' || read_digits(&p, 2, &c.minute))
			return -1;
		if (*p == ':' && (p++, read_digits(&p, 2, &c.second)))
			return -1;
		if (*p == '.' || *p == ',')
			for (p++; isdigit((unsigned char)*p); p++)
				;
	}
	if (*p == 'Z' || *p == 'z') {
		sign = 1;
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (read_digits(&p, 2, &oh))
			return -1;
		if (*p == ':')
			p++;
		if (read_digits(&p, 2, &om))
			return -1;
	}
	if (*p != '\0' || c.month < 1 || c.month > 12 || c.day < 1 || c.day > 31 || c.hour > 23 ||
	    c.minute > 59 || c.second > 60 || oh > 23 || om > 59 ||
	    !date_exists(c.year, c.month, c.day))
		return -1;
	if (sign != 0) {
		int64_t days = tz_days_from_civil(c.year, c.month, c.day);
		*out = days * 86400 + c.hour * 3600 + c.minute * 60 + c.second -
		       sign * (oh * 3600 + om * 60);
		return 0;
	}
	int64_t first, second;
	tz_from_civil(zone, &c, &first, &second);
	*out = first;
	return 0;
}

static void print_time(const tz *zone, int64_t t)
{
	tz_civil c;
	int32_t off = tz_offset_at(zone, t);
	int32_t a = off < 0 ? -off : off;
	tz_to_civil(zone, t, &c);
	printf("%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d\n", c.year, c.month, c.day, c.hour,
	       c.minute, c.second, off < 0 ? '-' : '+', a / 3600, (a / 60) % 60);
}

/* The schedule and zone of a task of the configuration. */
static int task_schedule(const cli_ctx *ctx, const char *name, schedule *s, const tz **zone)
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
	char err[256];

	if (parse_args(ctx, &a) != 0)
		return EXIT_USAGE;
	if (looks_like_expression(a.target)) {
		if (schedule_parse(&s, a.target, err, sizeof err) != 0) {
			cli_usage_error("invalid schedule '%s': %s", a.target, err);
			return EXIT_USAGE;
		}
	} else {
		int rc = task_schedule(ctx, a.target, &s, &zone);
		if (rc != EXIT_OK)
			return rc;
	}
	if ((a.zone || zone == NULL) && tz_load(a.zone, &zone, err, sizeof err) != 0) {
		cli_usage_error("--tz: %s", err);
		return EXIT_USAGE;
	}
	int64_t t = (int64_t)clock_wall();
	if (a.from && parse_iso8601(a.from, zone, &t) != 0) {
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
	for (long i = 0; i < a.count; i++) {
		t = schedule_next(&s, zone, t);
		if (t < 0)
			break;
		print_time(zone, t);
	}
	return EXIT_OK;
}
