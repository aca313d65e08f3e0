/*
 * follow — print a run's events as they reach the store, for `trigger
 * --follow` and `recover --follow`. Reading them back from the store by
 * correlation_id works the same for a daemon's runs and in-process ones, and
 * leaves the daemon nothing to buffer for slow clients.
 *
 * The store keeps each event as its JSON line; in the console log format
 * ([log] format, LOG_FORMAT, which wins) each line is parsed and rendered
 * again with log_render_console, so a follower reads what the log would
 * have shown it. A line that does not parse is printed as it is.
 */
#include "follow.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "clock.h"
#include "cluster_requests.h"
#include "events.h"
#include "log.h"
#include "runs.h"
#include "store.h"
#include "tz.h"

#define FOLLOW_MAX_FIELDS 64

typedef struct {
	int64_t last_id;
	char terminal[3][192]; /* "event": "<task>_complete" and the others */
	bool saw_terminal;
	bool console; /* render as console lines */
	bool color;
} follow_state;

/* The log format the CLI would log in: [log] format, then LOG_FORMAT. */
static void follow_format(const config *cfg, follow_state *fs)
{
	log_options opts;
	const char *bad = NULL;
	log_options_default(&opts);
	if (cfg->log_format)
		log_format_parse(cfg->log_format, &opts.format);
	log_options_from_env(&opts, &bad); /* a bad value is ignored, as when logging */
	fs->console = opts.format == LOG_FORMAT_CONSOLE;
	fs->color = opts.color > 0 || (opts.color < 0 && isatty(STDOUT_FILENO));
}

/* "2025-12-26T02:03:45.123456+02:00" -> microseconds since the epoch;
 * false when it is not such a timestamp with an offset. */
static bool parse_timestamp(const char *ts, int64_t *usec)
{
	int64_t sec, frac = 0;
	int digits = 0;
	if (ts == NULL || strlen(ts) < 11 || strpbrk(ts + 10, "+-Zz") == NULL ||
	    tz_parse_iso8601(ts, NULL, &sec) != 0)
		return false;
	const char *dot = strchr(ts, '.');
	for (const char *p = dot ? dot + 1 : ""; isdigit((unsigned char)*p) && digits < 6; p++) {
		frac = frac * 10 + (*p - '0');
		digits++;
	}
	for (; dot && digits < 6; digits++)
		frac *= 10;
	*usec = sec * 1000000 + frac;
	return true;
}

/* One field of a stored event; raw (malloc'd, freed by the caller) for
 * objects and arrays. */
static log_field json_field(const cJSON *it, char **raw)
{
	*raw = NULL;
	if (cJSON_IsString(it))
		return LOG_STR(it->string, it->valuestring);
	if (cJSON_IsBool(it))
		return LOG_BOOL(it->string, cJSON_IsTrue(it));
	if (cJSON_IsNull(it))
		return LOG_NULL(it->string);
	if (cJSON_IsNumber(it) && it->valuedouble == (double)(int64_t)it->valuedouble)
		return LOG_INT(it->string, (int64_t)it->valuedouble);
	if (cJSON_IsNumber(it))
		return LOG_DBL(it->string, it->valuedouble);
	*raw = cJSON_PrintUnformatted(it);
	return LOG_RAW(it->string, *raw ? *raw : "null");
}

static bool reserved_key(const char *k)
{
	static const char *const keys[] = {"timestamp", "level", "logger", "event", "service"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strcmp(k, keys[i]) == 0)
			return true;
	return false;
}

static const char *str_item(const cJSON *o, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* The stored JSON line as a console line; false when it does not parse. */
static bool print_console(const follow_state *fs, const char *json)
{
	cJSON *o = cJSON_Parse(json);
	log_field f[FOLLOW_MAX_FIELDS];
	char *raw[FOLLOW_MAX_FIELDS];
	size_t n = 0;
	log_level level = LOG_INFO;
	int64_t usec = 0;

	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return false;
	}
	log_level_parse(str_item(o, "level"), &level);
	if (!parse_timestamp(str_item(o, "timestamp"), &usec))
		usec = (int64_t)(clock_wall() * 1e6);
	const cJSON *it;
	cJSON_ArrayForEach(it, o)
	{
		if (n < FOLLOW_MAX_FIELDS && it->string && !reserved_key(it->string)) {
			f[n] = json_field(it, &raw[n]);
			n++;
		}
	}
	const char *logger = str_item(o, "logger"), *event = str_item(o, "event");
	char small[1024];
	size_t len = log_render_console(small, sizeof small, usec, level, logger, event, f, n,
	                                fs->color);
	char *line = len < sizeof small ? small : malloc(len + 1);
	if (line != small && line)
		log_render_console(line, len + 1, usec, level, logger, event, f, n, fs->color);
	printf("%s\n", line ? line : small);
	if (line != small)
		free(line);
	for (size_t i = 0; i < n; i++)
		free(raw[i]);
	cJSON_Delete(o);
	return true;
}

static void follow_state_init(follow_state *fs, const char *task)
{
	static const char *const suffix[] = {"complete", "failed", "skipped"};
	memset(fs, 0, sizeof *fs);
	for (int i = 0; i < 3; i++)
		snprintf(fs->terminal[i], sizeof fs->terminal[i], "\"event\": \"%.128s_%s\"", task,
		         suffix[i]);
}

static int print_event(void *ctx, int64_t id, const char *json)
{
	follow_state *fs = ctx;
	fs->last_id = id;
	for (int i = 0; i < 3; i++)
		fs->saw_terminal |= strstr(json, fs->terminal[i]) != NULL;
	if (!fs->console || !print_console(fs, json))
		printf("%s\n", json);
	return 0;
}

typedef struct {
	bool found;
	run_status status;
} run_probe;

static int probe_run(void *ctx, const run_row *row)
{
	run_probe *p = ctx;
	p->found = true;
	p->status = row->status;
	return 0;
}

static void pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Print the run's stored events as they arrive, until the run has finished
 * and its terminal event was stored (the writer commits at least every
 * 250 ms), or, if that event never comes (the daemon died), 5 s after the
 * last event. */
int follow_run(const config *cfg, const char *task, int64_t run_id, const char *correlation_id)
{
	store *st = NULL;
	char err[512];
	follow_state fs;
	run_probe probe = {0};
	int64_t finished_at = -1;

	follow_state_init(&fs, task);
	follow_format(cfg, &fs);
	if (store_open_readonly(&st, cfg->db_path, err, sizeof err) != 0) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		return EXIT_FAILED;
	}
	int64_t quiet_since = clock_mono_ms();
	for (;;) {
		int64_t before = fs.last_id;
		events_trace(st, correlation_id, fs.last_id, print_event, &fs);
		fflush(stdout);
		if (finished_at < 0) {
			probe.found = false;
			runs_get(st, run_id, probe_run, &probe);
			if (probe.found && probe.status != RUN_RUNNING)
				finished_at = clock_mono_ms();
		}
		if (fs.last_id != before)
			quiet_since = clock_mono_ms();
		if (finished_at >= 0 && (fs.saw_terminal || clock_mono_ms() - quiet_since > 5000))
			break;
		pause_ms(100);
	}
	store_close(st);
	return probe.status == RUN_SUCCESS || probe.status == RUN_SKIPPED ? EXIT_OK : EXIT_FAILED;
}

int follow_forwarded(const config *cfg, char **reply)
{
	char err[512], *leader_reply = NULL;
	cJSON *r = cJSON_Parse(*reply);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "request_id");
	const cJSON *to = cJSON_GetObjectItemCaseSensitive(r, "forwarded_to");
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "forwarded")) ||
	    !cJSON_IsNumber(id)) {
		cJSON_Delete(r);
		return 0;
	}
	int64_t request_id = (int64_t)id->valuedouble;
	fprintf(stderr,
	        "fleetkeeper: this daemon is a standby: forwarded to the leader %s (request "
	        "%lld)\n",
	        cJSON_IsString(to) ? to->valuestring : "(none known yet: the next one)",
	        (long long)request_id);
	cJSON_Delete(r);
	int rc = cluster_request_wait(cfg, request_id, cluster_request_ttl_ms(cfg) + 2000,
	                              &leader_reply, err, sizeof err);
	if (rc != 0) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		return -1;
	}
	free(*reply);
	*reply = leader_reply;
	return 0;
}
