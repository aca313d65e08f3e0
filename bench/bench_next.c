/*
 * bench_next — ns per schedule_next for typical cron expressions in UTC,
 * chained (each next starts from the previous fire time), against croniter
 * (bench/croniter_baseline.py, Debian python3-croniter) in the same run.
 * Also compares the first five fire times of every expression with
 * croniter's and reports each difference (croniter applies the OR day rule
 * to fields like "*\/2", cron does not).
 *
 *   bench_next [SOURCE_ROOT]   (default: $FK_SOURCE_ROOT, else ".")
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "schedule.h"
#include "tz.h"

#define ITERATIONS    10000
#define RUNS          7
#define PY_ITERATIONS 2000
#define NFIRES        5
#define START         ((int64_t)1767225600) /* 2026-01-01T00:00:00Z */

static const char *const exprs[] = {
        "*/5 * * * *",   "0 * * * *",       "30 2 * * *",
        "0 0 * * 0",     "0 9-17 * * 1-5",  "*/15 9-17 * * mon-fri",
        "0 0 1 * *",     "0 0 1 1 *",       "5 4 * * sun",
        "0 22 * * 1-5",  "23 0-20/2 * * *", "0 0,12 1 */2 *",
        "0 4 8-14 * *",  "0 0 29 2 *",      "15 14 1 * *",
        "0 */6 * * *",   "@hourly",         "@daily",
        "@weekly",       "@monthly",        "0 0 13 * 5",
        "* * * * *",     "0 12 * * */2",    "30 8 1-7 * mon",
        "0 0 */2 * mon", /* cron: odd days that are Mondays; croniter: either */
};
#define NEXPR (sizeof exprs / sizeof exprs[0])

typedef struct {
	double ours_ns;
	double py_ns; /* < 0: not measured */
	int64_t ours[NFIRES];
	int64_t py[NFIRES];
	bool py_ok;
} result;

static volatile int64_t sink;

static double measure(const schedule *s, const tz *zone)
{
	double runs[RUNS];
	for (int r = 0; r < RUNS; r++) {
		int64_t t = START;
		double t0 = bench_now_ns();
		for (int i = 0; i < ITERATIONS; i++)
			t = schedule_next(s, zone, t);
		runs[r] = (bench_now_ns() - t0) / ITERATIONS;
		sink = t;
	}
	return bench_median(runs, RUNS);
}

/* Runs the croniter script over all expressions; fills py_* fields. */
static int run_baseline(const char *root, result *res)
{
	char cmd[4096];
	size_t len =
	        (size_t)snprintf(cmd, sizeof cmd,
	                         "/usr/bin/python3 '%s/bench/croniter_baseline.py' --start %lld "
	                         "--iterations %d",
	                         root, (long long)START, PY_ITERATIONS);
	for (size_t i = 0; i < NEXPR && len < sizeof cmd; i++)
		len += (size_t)snprintf(cmd + len, sizeof cmd - len, " '%s'", exprs[i]);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	char line[1024];
	size_t i = 0;
	while (i < NEXPR && fgets(line, sizeof line, p)) {
		char *tab = strchr(line, '\t');
		result *r = &res[i++];
		if (!tab || strncmp(tab + 1, "error", 5) == 0)
			continue;
		char *q = tab + 1;
		r->py_ns = strtod(q, &q);
		for (int k = 0; k < NFIRES; k++)
			r->py[k] = strtoll(q, &q, 10);
		r->py_ok = true;
	}
	return pclose(p) == 0 && i == NEXPR ? 0 : -1;
}

static void print_fires(const char *who, const int64_t *t)
{
	printf("    %-9s", who);
	for (int k = 0; k < NFIRES; k++) {
		time_t tt = (time_t)t[k];
		struct tm tm;
		char buf[32];
		gmtime_r(&tt, &tm);
		strftime(buf, sizeof buf, "%Y-%m-%dT%H:%MZ", &tm);
		printf(" %s", buf);
	}
	printf("\n");
}

static int compare_fires(const result *res)
{
	int mismatches = 0;
	for (size_t i = 0; i < NEXPR; i++) {
		if (!res[i].py_ok || memcmp(res[i].ours, res[i].py, sizeof res[i].ours) == 0)
			continue;
		mismatches++;
		printf("mismatch vs croniter for '%s' (first %d fire times):\n", exprs[i], NFIRES);
		print_fires("ours", res[i].ours);
		print_fires("croniter", res[i].py);
	}
	return mismatches;
}

int main(int argc, char **argv)
{
	const char *root = argc > 1 ? argv[1] : getenv("FK_SOURCE_ROOT");
	const tz *utc;
	char err[256];
	result res[NEXPR];
	double ours[NEXPR], py[NEXPR], worst = 0;
	size_t npy = 0;

	if (!root || !*root)
		root = ".";
	if (tz_load("UTC", &utc, err, sizeof err) != 0) {
		fprintf(stderr, "bench_next: %s\n", err);
		return 1;
	}
	memset(res, 0, sizeof res);
	for (size_t i = 0; i < NEXPR; i++) {
		schedule s;
		if (schedule_parse(&s, exprs[i], err, sizeof err) != 0) {
			fprintf(stderr, "bench_next: '%s': %s\n", exprs[i], err);
			return 1;
		}
		int64_t t = START;
		for (int k = 0; k < NFIRES; k++)
			res[i].ours[k] = t = schedule_next(&s, utc, t);
		res[i].ours_ns = ours[i] = measure(&s, utc);
		res[i].py_ns = -1;
		if (ours[i] > worst)
			worst = ours[i];
	}
	/* The same expressions in a DST zone, for information. */
	const tz *berlin;
	double bl[NEXPR];
	size_t nbl = 0;
	if (tz_load("Europe/Berlin", &berlin, err, sizeof err) == 0) {
		for (size_t i = 0; i < NEXPR; i++) {
			schedule s;
			if (schedule_parse(&s, exprs[i], err, sizeof err) == 0)
				bl[nbl++] = measure(&s, berlin);
		}
	}
	bool have_py = run_baseline(root, res) == 0;
	if (!have_py)
		printf("note: croniter baseline failed (is python3-croniter installed?)\n");

	for (size_t i = 0; i < NEXPR; i++) {
		printf("next_ns[%s]: %.1f ns", exprs[i], res[i].ours_ns);
		if (res[i].py_ok) {
			printf("  (croniter %.0f ns, ratio %.0fx)", res[i].py_ns,
			       res[i].py_ns / res[i].ours_ns);
			py[npy++] = res[i].py_ns;
		}
		printf("\n");
	}
	int mismatches = compare_fires(res);
	double ours_med = bench_median(ours, NEXPR);
	double py_med = npy ? bench_median(py, npy) : 0;
	printf("next_ns_median: %.1f ns\n", ours_med);
	printf("next_ns_worst: %.1f ns\n", worst);
	if (npy) {
		printf("croniter_ns_median: %.0f ns\n", py_med);
		printf("speedup_vs_croniter: %.0f x\n", py_med / ours_med);
	}
	printf("croniter_mismatches: %d expressions\n", mismatches);
	double bl_med = nbl ? bench_median(bl, nbl) : 0;
	if (nbl)
		printf("next_ns_median_europe_berlin: %.1f ns\n", bl_med);

	printf("{\"bench\":\"next\",\"expressions\":%zu,\"iterations\":%d,\"runs\":%d,"
	       "\"ns_per_next_median\":%.1f,\"ns_per_next_worst\":%.1f,",
	       NEXPR, ITERATIONS, RUNS, ours_med, worst);
	if (npy)
		printf("\"croniter_ns_per_next_median\":%.0f,\"speedup\":%.1f,", py_med,
		       py_med / ours_med);
	else
		printf("\"croniter_ns_per_next_median\":null,\"speedup\":null,");
	printf("\"ns_per_next_median_europe_berlin\":%.1f,", bl_med);
	printf("\"croniter_mismatches\":%d,\"goal_ns\":300,\"goal_speedup\":200,\"per_expr\":[",
	       mismatches);
	for (size_t i = 0; i < NEXPR; i++)
		printf("%s{\"expr\":\"%s\",\"ns\":%.1f,\"croniter_ns\":%.0f}", i ? "," : "",
		       exprs[i], res[i].ours_ns, res[i].py_ok ? res[i].py_ns : -1.0);
	printf("]}\n");
	return 0;
}
