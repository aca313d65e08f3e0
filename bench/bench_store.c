/*
 * bench_store — the store half of bench/store_growth.sh (issue 16): builds
 * a store of SERVERS servers checked every 60 s over DAYS simulated days
 * through the real write paths, and measures the prune.
 *
 *   bench_store build DB SERVERS DAYS    (env RAW_HOURS=48, FAIL_PERMILLE=1)
 *   bench_store prune DB                 the retention job as the daemon
 *                                        runs it, with a writer inserting
 *   bench_store prune-unbatched DB       baseline: the same deletes in one
 *                                        transaction, same writer
 *
 * The clock is fast-forwarded: every write gets the simulated time of its
 * check, ending now, so that the prune's real cutoffs apply. What is
 * written, per simulated minute: a health_check run (runs_start/finish,
 * _start and _complete events, one event per failed check — FAIL_PERMILLE
 * of the servers), and health_history_record of one sample per server for
 * the last RAW_HOURS; for the hours before, one health_history_record of
 * every server per hour (the same path at a coarser cadence), downsampled
 * at the end as the daemon's prune leaves them (hourly rows, no samples).
 * Other tasks: server_sync every 5 min, provision_check every 10 min,
 * github_sync every 15 min (a run and two events each). State changes:
 * 1% of the servers a day go unreachable for ~30 min (incident opened and
 * resolved, an event and a notification each way).
 *
 * Prints `name: value unit` lines and one JSON line.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "clock.h"
#include "events.h"
#include "health_history.h"
#include "incidents.h"
#include "outbox.h"
#include "retention.h"
#include "runs.h"
#include "servers.h"
#include "store.h"

#define DAY 86400.0

static void die(const char *what, store *st)
{
	fprintf(stderr, "bench_store: %s: %s\n", what, st ? store_errmsg(st) : "");
	exit(1);
}

static store *open_store(const char *path)
{
	char err[512];
	store *st = NULL;
	if (store_open(&st, path, err, sizeof err) != STORE_OK) {
		fprintf(stderr, "bench_store: %s\n", err);
		exit(1);
	}
	return st;
}

static long env_long(const char *name, long def)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 10) : def;
}

/* ---- build ---- */

typedef struct {
	store *st;
	int64_t *ids;
	long servers;
	long fail_permille;
	int64_t runs, events, samples, incidents;
	unsigned rng;
} builder;

static unsigned next_rand(builder *b)
{
	b->rng = b->rng * 1103515245u + 12345u;
	return (b->rng >> 8) & 0xffffff;
}

static void add_servers(builder *b, double now)
{
	char handle[32], ip[32];
	if (store_tx_begin(b->st) != STORE_OK)
		die("begin", b->st);
	for (long i = 0; i < b->servers; i++) {
		snprintf(handle, sizeof handle, "srv-%05ld", i);
		snprintf(ip, sizeof ip, "10.%ld.%ld.%ld", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		server_listed p = {.handle = handle,
		                   .ip = ip,
		                   .ssh_user = "root",
		                   .provider = "static",
		                   .port = 22};
		if (servers_sync_insert(b->st, &p, "ready", true, now, &b->ids[i]) != STORE_OK)
			die("servers_sync_insert", b->st);
	}
	if (store_tx_commit(b->st) != STORE_OK)
		die("commit", b->st);
}

/* The JSON line of an event as the log writes it (about this long). */
static void event_at(event_record *e, char *line, size_t cap, double t, const char *event,
                     const char *cid, const char *task, int64_t run_id, const char *extra)
{
	time_t secs = (time_t)t;
	struct tm tm;
	gmtime_r(&secs, &tm);
	static char ts[40];
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S.000000+00:00", &tm);
	snprintf(line, cap,
	         "{\"timestamp\": \"%s\", \"level\": \"info\", \"logger\": \"fleetkeeper.tasks\","
	         " \"event\": \"%s\", \"service\": \"scheduler\", \"correlation_id\": \"%s\","
	         " \"task\": \"%s\", \"run_id\": %" PRId64 "%s}",
	         ts, event, cid, task, run_id, extra);
	*e = (event_record){.unix_time = t,
	                    .timestamp = ts,
	                    .level = "info",
	                    .logger = "fleetkeeper.tasks",
	                    .event = event,
	                    .correlation_id = cid,
	                    .task = task,
	                    .run_id = run_id,
	                    .json = line};
}

static void one_run(builder *b, double t, const char *task, int failed)
{
	char cid[64], start[1024], done[1024];
	int64_t id = 0;
	snprintf(cid, sizeof cid, "%s-%.0f", task, t);
	if (runs_start(b->st, task, "schedule", cid, t, &id) != STORE_OK)
		die("runs_start", b->st);
	char evname[64], evname2[64], extra[256];
	snprintf(evname, sizeof evname, "%s_start", task);
	snprintf(evname2, sizeof evname2, "%s_complete", task);
	snprintf(extra, sizeof extra,
	         ", \"servers_checked\": %ld, \"servers_failed\": %d, \"duration_sec\": 2.51,"
	         " \"cpu_sec\": 0.41, \"healthy\": %ld",
	         b->servers, failed, b->servers - failed);
	event_record ev[2];
	event_at(&ev[0], start, sizeof start, t, evname, cid, task, id, "");
	event_at(&ev[1], done, sizeof done, t + 2.5, evname2, cid, task, id, extra);
	if (events_insert(b->st, ev, 2) != STORE_OK)
		die("events_insert", b->st);
	b->events += 2;
	if (runs_finish(b->st, id, RUN_SUCCESS, t + 2.5, 2.5, 0, NULL, NULL,
	                "{\"servers_checked\": 10000}") != STORE_OK)
		die("runs_finish", b->st);
	b->runs++;
}

/* The failed checks of one run: one event each (the server, stage, error). */
static void failure_events(builder *b, double t, int failed)
{
	char cid[64], lines[16][1024], extra[256];
	event_record ev[16];
	snprintf(cid, sizeof cid, "health_check-%.0f", t);
	for (int i = 0; i < failed && i < 16; i++) {
		long srv = (long)(next_rand(b) % (unsigned)b->servers);
		snprintf(extra, sizeof extra,
		         ", \"server\": \"srv-%05ld\", \"stage\": \"connect\", \"error_type\": "
		         "\"timeout\", \"error\": \"connect timed out after 5 s\", "
		         "\"consecutive_failures\": 1",
		         srv);
		event_at(&ev[i], lines[i], sizeof lines[i], t + 1, "server_health_check_failed",
		         cid, "health_check", 0, extra);
	}
	int n = failed < 16 ? failed : 16;
	if (n > 0 && events_insert(b->st, ev, (size_t)n) != STORE_OK)
		die("events_insert", b->st);
	b->events += n;
}

static void record_all(builder *b, double t, health_sample *hs)
{
	for (long i = 0; i < b->servers; i++) {
		bool ok = next_rand(b) % 1000 >= (unsigned)b->fail_permille;
		hs[i] = (health_sample){.server_id = b->ids[i],
		                        .at = t + (double)(i % 50) * 0.05,
		                        .healthy = ok,
		                        .stage = ok ? 'e' : 'c',
		                        .response_ms = ok ? 20 + next_rand(b) % 200 : 5000,
		                        .error = ok ? 0 : 'T'};
	}
	if (health_history_record(b->st, hs, (size_t)b->servers) != STORE_OK)
		die("health_history_record", b->st);
	b->samples += b->servers;
}

/* 1% of the servers a day: unreachable, then recovered 30 minutes later. */
static void state_changes(builder *b, double t)
{
	char err[256], prev[32], cid[64];
	int64_t iid, ids[4];
	bool created;
	size_t n;
	double per_minute = (double)b->servers * 0.01 / 1440.0;
	double frac = per_minute - (double)(long)per_minute;
	long count = (long)per_minute + ((double)(next_rand(b) % 1000) < frac * 1000 ? 1 : 0);
	for (long k = 0; k < count; k++) {
		long srv = (long)(next_rand(b) % (unsigned)b->servers);
		snprintf(cid, sizeof cid, "health_check-%.0f", t);
		if (incidents_open_unreachable(b->st, b->ids[srv], t, cid,
		                               "{\"error\": \"timeout\"}", &iid, &created, prev,
		                               sizeof prev, err, sizeof err) != STORE_OK)
			die(err, b->st);
		if (incidents_resolve_healthy(b->st, b->ids[srv], t + 1800, ids, 4, &n, NULL, 0,
		                              err, sizeof err) != STORE_OK)
			die(err, b->st);
		char l1[1024], l2[1024], extra[128];
		event_record ev[2];
		snprintf(extra, sizeof extra,
		         ", \"server\": \"srv-%05ld\", \"incident_id\": %" PRId64, srv, iid);
		event_at(&ev[0], l1, sizeof l1, t, "server_unreachable", cid, "health_check", 0,
		         extra);
		event_at(&ev[1], l2, sizeof l2, t + 1800, "server_recovered", cid, "health_check",
		         0, extra);
		if (events_insert(b->st, ev, 2) != STORE_OK)
			die("events_insert", b->st);
		b->events += 2;
		b->incidents++;
	}
}

static void downsample_all(store *st, double before)
{
	size_t done;
	do {
		if (health_history_downsample(st, before, 5000, &done) != STORE_OK)
			die("downsample", st);
	} while (done == 5000);
}

static int cmd_build(const char *path, long servers, long days)
{
	long raw_hours = env_long("RAW_HOURS", 48);
	builder b = {.st = open_store(path),
	             .servers = servers,
	             .fail_permille = env_long("FAIL_PERMILLE", 1),
	             .rng = 42};
	b.ids = calloc((size_t)servers, sizeof *b.ids);
	health_sample *hs = calloc((size_t)servers, sizeof *hs);
	double end = clock_wall(), start = end - (double)days * DAY;
	start -= (double)((int64_t)start % 3600); /* on the hour */
	double raw_from = end - (double)raw_hours * 3600.0;
	double t0 = bench_now_ns(), hh_ns = 0;
	add_servers(&b, start);
	int64_t minutes = (int64_t)((end - start) / 60.0);
	for (int64_t m = 0; m < minutes; m++) {
		double t = start + (double)m * 60.0;
		int failed = (int)(servers * b.fail_permille / 1000);
		one_run(&b, t, "health_check", failed);
		failure_events(&b, t, failed);
		double h0 = bench_now_ns();
		if (t >= raw_from || m % 60 == 0)
			record_all(&b, t, hs);
		hh_ns += bench_now_ns() - h0;
		if (m % 5 == 0)
			one_run(&b, t + 5, "server_sync", 0);
		if (m % 10 == 3)
			one_run(&b, t + 7, "provision_check", 0);
		if (m % 15 == 1)
			one_run(&b, t + 9, "github_sync", 0);
		state_changes(&b, t);
	}
	double d0 = bench_now_ns();
	downsample_all(b.st, raw_from); /* as the hourly prune leaves them */
	double ds_sec = (bench_now_ns() - d0) / 1e9;
	/* the servers' own last check, as health_check writes it */
	if (store_tx_begin(b.st) != STORE_OK)
		die("begin", b.st);
	health_counters hc = {0};
	char err[256];
	for (long i = 0; i < servers; i++)
		if (servers_record_check(b.st, b.ids[i], end, 20.0 + (double)(i % 200), &hc, err,
		                         sizeof err) != STORE_OK)
			die(err, b.st);
	if (store_tx_commit(b.st) != STORE_OK || store_checkpoint(b.st) != STORE_OK)
		die("commit", b.st);
	double secs = (bench_now_ns() - t0) / 1e9;
	printf("build_servers: %ld\nbuild_days: %ld\nbuild_runs: %" PRId64 " runs\n"
	       "build_events: %" PRId64 " events\nbuild_samples: %" PRId64 " samples\n"
	       "build_incidents: %" PRId64 " incidents\nbuild_time: %.1f s\n"
	       "build_health_record_time: %.1f s\nbuild_downsample_time: %.1f s\n",
	       servers, days, b.runs, b.events, b.samples, b.incidents, secs, hh_ns / 1e9, ds_sec);
	printf("{\"bench\": \"store_build\", \"servers\": %ld, \"days\": %ld, \"runs\": %" PRId64
	       ", \"events\": %" PRId64 ", \"samples\": %" PRId64 ", \"incidents\": %" PRId64
	       ", \"build_sec\": %.1f}\n",
	       servers, days, b.runs, b.events, b.samples, b.incidents, secs);
	store_close(b.st);
	free(b.ids);
	free(hs);
	return 0;
}

/* ---- prune, with a writer ---- */

typedef struct {
	const char *path;
	atomic_bool stop;
	double max_wait_ms; /* longest events_insert of the writer */
	int64_t inserts;
} writer;

/* What the event writer does: a small batch of events every 20 ms. */
static void *writer_main(void *arg)
{
	writer *w = arg;
	store *st = open_store(w->path);
	char lines[20][1024];
	event_record ev[20];
	while (!atomic_load(&w->stop)) {
		double now = clock_wall();
		for (int i = 0; i < 20; i++)
			event_at(&ev[i], lines[i], sizeof lines[i], now, "bench_event",
			         "bench-writer", "bench", 0, "");
		double t0 = bench_now_ns();
		if (events_insert(st, ev, 20) != STORE_OK)
			die("writer events_insert", st);
		double ms = (bench_now_ns() - t0) / 1e6;
		if (ms > w->max_wait_ms)
			w->max_wait_ms = ms;
		w->inserts++;
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	store_close(st);
	return NULL;
}

static long file_bytes(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static retention_cutoffs bench_cutoffs(void)
{
	return retention_cutoffs_for(clock_wall(), (int)env_long("RETENTION_DAYS", 30),
	                             (int)env_long("HISTORY_DAYS", 30),
	                             (int)env_long("RAW_HOURS", 48));
}

static void sleep_ms(double ms)
{
	struct timespec ts = {(time_t)(ms / 1000),
	                      (long)((ms - (double)(long)(ms / 1000) * 1000) * 1e6)};
	nanosleep(&ts, NULL);
}

static int cmd_prune(const char *path, bool batched)
{
	store *st = open_store(path);
	writer w = {.path = path};
	pthread_t th;
	pthread_create(&th, NULL, writer_main, &w);
	sleep_ms(200);
	retention_cutoffs cut = bench_cutoffs();
	retention_job job;
	retention_begin(&job, &cut);
	double t0 = bench_now_ns();
	int rc;
	if (batched) {
		/* as daemon.c's prune_tick: one batch, then a gap of
		 * max(25 ms, the batch's time) */
		while ((rc = retention_step(&job, st)) > 0)
			sleep_ms(job.last_batch_ms > 25 ? job.last_batch_ms : 25);
		if (rc < 0)
			die("retention_step", st);
		store_checkpoint(st);
	} else {
		/* baseline: everything in one transaction (the old prune) */
		if (store_tx_begin(st) != STORE_OK)
			die("begin", st);
		while ((rc = retention_step(&job, st)) > 0 && job.kind < RETENTION_VACUUM)
			;
		if (rc < 0 || store_tx_commit(st) != STORE_OK)
			die("prune", st);
		job.longest_batch_ms = (bench_now_ns() - t0) / 1e6;
	}
	double total = (bench_now_ns() - t0) / 1e9;
	sleep_ms(100);
	atomic_store(&w.stop, true);
	pthread_join(th, NULL);
	const char *name = batched ? "prune" : "prune_unbatched";
	printf("%s_events_deleted: %" PRId64 "\n%s_runs_deleted: %" PRId64 "\n"
	       "%s_notifications_deleted: %" PRId64 "\n%s_health_hours_deleted: %" PRId64 "\n"
	       "%s_health_hours_downsampled: %" PRId64 "\n%s_vacuum_pages: %" PRId64 "\n"
	       "%s_batches: %" PRId64 "\n%s_longest_batch: %.1f ms\n%s_total: %.2f s\n"
	       "%s_writer_max_wait: %.1f ms\n%s_writer_inserts: %" PRId64 "\n"
	       "%s_file_after: %ld bytes\n",
	       name, job.count[RETENTION_EVENTS], name, job.count[RETENTION_RUNS], name,
	       job.count[RETENTION_NOTIFICATIONS], name, job.count[RETENTION_HEALTH_DELETED], name,
	       job.count[RETENTION_HEALTH_DOWNSAMPLED], name, job.count[RETENTION_VACUUM], name,
	       job.batches, name, job.longest_batch_ms, name, total, name, w.max_wait_ms, name,
	       w.inserts, name, file_bytes(path));
	printf("{\"bench\": \"store_%s\", \"longest_batch_ms\": %.1f, \"writer_max_wait_ms\": %.1f,"
	       " \"batches\": %" PRId64 ", \"total_sec\": %.2f, \"events_deleted\": %" PRId64
	       ", \"health_hours_deleted\": %" PRId64 ", \"health_hours_downsampled\": %" PRId64
	       "}\n",
	       name, job.longest_batch_ms, w.max_wait_ms, job.batches, total,
	       job.count[RETENTION_EVENTS], job.count[RETENTION_HEALTH_DELETED],
	       job.count[RETENTION_HEALTH_DOWNSAMPLED]);
	store_close(st);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "build") == 0)
		return cmd_build(argv[2], strtol(argv[3], NULL, 10), strtol(argv[4], NULL, 10));
	if (argc == 3 && strcmp(argv[1], "prune") == 0)
		return cmd_prune(argv[2], true);
	if (argc == 3 && strcmp(argv[1], "prune-unbatched") == 0)
		return cmd_prune(argv[2], false);
	fprintf(stderr,
	        "usage: bench_store build DB SERVERS DAYS | prune DB | prune-unbatched DB\n");
	return 2;
}
