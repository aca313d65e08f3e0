/*
 * follow — print a run's events as they reach the store, for `trigger
 * --follow` and `recover --follow`. Reading them back from the store by
 * correlation_id works the same for a daemon's runs and in-process ones, and
 * leaves the daemon nothing to buffer for slow clients.
 */
#include "follow.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "store.h"
#include "events.h"
#include "runs.h"

typedef struct {
	int64_t last_id;
	char terminal[3][192]; /* "event": "<task>_complete" and the others */
	bool saw_terminal;
} follow_state;

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
