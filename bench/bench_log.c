/*
 * bench_log — cost of one structured event: an event with 10 typed fields
 * plus three bound fields (correlation_id, task, run_id), rendered as JSON
 * and written with write(2) to /dev/null through log_emit. N events per run,
 * RUNS runs, median ns/event. Then the structlog baseline
 * (bench/structlog_baseline.py, run with /usr/bin/python3) and the ratio.
 *
 * bench_log_scalar is the same program with src/log.c compiled with
 * -DLOG_CLASSIFY_SCALAR (the byte classifier's scalar path instead of SSE2,
 * src/log_classify.h): bench/run.sh runs both, so that whether the SSE2 path
 * pays is measured in the same run. It skips the structlog baseline.
 * bench_log itself also times the two classifier paths alone on the strings
 * of the benchmark's event (min of CLASSIFY_RUNS runs), the figure least
 * moved by other work on the machine.
 *
 * Usage: bench_log [SOURCE_ROOT]   (else $FK_SOURCE_ROOT, else ".")
 */
#include "bench_util.h"
#include "log.h"
#include "log_classify.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N    200000
#define RUNS 7

#ifdef LOG_CLASSIFY_SCALAR
#define BENCH_NAME     "log_scalar"
#define BENCH_BASELINE 0 /* bench_log runs structlog */
#else
#define BENCH_NAME     "log"
#define BENCH_BASELINE 1
#endif

static void emit_one(void)
{
	log_info("tasks.health_check", "server_health_check", LOG_STR("server_handle", "srv-eu-01"),
	         LOG_STR("server_ip", "10.0.3.17"), LOG_STR("status", "healthy"),
	         LOG_STR("stage", "http"), LOG_INT("response_time_ms", 123), LOG_INT("attempt", 2),
	         LOG_INT("http_status", 200), LOG_DBL("duration_sec", 0.84),
	         LOG_DBL("load_avg", 1.25), LOG_BOOL("is_ghost", false));
}

static double run_once(void)
{
	double t0 = bench_now_ns();
	for (int i = 0; i < N; i++)
		emit_one();
	return (bench_now_ns() - t0) / N;
}

/* The floor under any logger that writes each line with one write(2): a
 * bare write of a line of the same length to the same /dev/null. */
static double write_floor_once(int fd, const char *line, size_t len)
{
	double t0 = bench_now_ns();
	for (int i = 0; i < N; i++) {
		if (write(fd, line, len) < 0)
			return -1;
	}
	return (bench_now_ns() - t0) / N;
}

static double bench_write_floor(int fd, size_t len)
{
	char line[1024];
	if (len >= sizeof line)
		len = sizeof line - 1;
	memset(line, 'x', len);
	line[len - 1] = '\n';
	double r[RUNS];
	write_floor_once(fd, line, len);
	for (int i = 0; i < RUNS; i++)
		r[i] = write_floor_once(fd, line, len);
	return bench_median(r, RUNS);
}

#define CLASSIFY_RUNS 50
#define CLASSIFY_N    20000

/* The strings one event of emit_one and bind_context classifies. */
static const char *const event_strings[] = {
        "tasks.health_check",
        "server_health_check",
        "server_handle",
        "srv-eu-01",
        "server_ip",
        "10.0.3.17",
        "status",
        "healthy",
        "stage",
        "http",
        "response_time_ms",
        "attempt",
        "http_status",
        "duration_sec",
        "load_avg",
        "is_ghost",
        "correlation_id",
        "run_health_check_1735167345_a1b2",
        "task",
        "health_check",
        "run_id",
        "info",
};
#define NSTRINGS (sizeof event_strings / sizeof event_strings[0])

/* ns per event of one classifier path (scalar or not), min of the runs. */
static double bench_classify_path(bool scalar)
{
	size_t len[NSTRINGS];
	volatile unsigned sink = 0;
	double best = -1;
	for (size_t i = 0; i < NSTRINGS; i++)
		len[i] = strlen(event_strings[i]);
	for (int r = 0; r < CLASSIFY_RUNS; r++) {
		unsigned acc = 0;
		double t0 = bench_now_ns();
		for (int k = 0; k < CLASSIFY_N; k++) {
			for (size_t i = 0; i < NSTRINGS; i++) {
				const char *str = event_strings[i];
				__asm__ volatile("" : "+r"(str)); /* no hoisting out of the loop */
#if defined(__SSE2__)
				acc += scalar ? log_classify_scalar(str, len[i])
				              : log_classify_sse2(str, len[i]);
#else
				acc += log_classify_scalar(str, len[i]);
#endif
			}
		}
		double ns = (bench_now_ns() - t0) / CLASSIFY_N;
		sink = acc;
		if (best < 0 || ns < best)
			best = ns;
	}
	(void)sink;
	return best;
}

static void bind_context(void)
{
	log_bind(LOG_STR("correlation_id", "run_health_check_1735167345_a1b2"));
	log_bind(LOG_STR("task", "health_check"));
	log_bind(LOG_INT("run_id", 42));
}

/* Length of the benchmark's line, rendered once into a pipe. */
static size_t bench_line_length(void)
{
	int p[2];
	if (pipe(p) != 0)
		return 350;
	log_options opts;
	log_options_default(&opts);
	opts.fd = p[1];
	opts.color = 0;
	size_t len = 350;
	if (log_init(&opts) == 0) {
		bind_context();
		emit_one();
		log_shutdown();
		char buf[2048];
		ssize_t n = read(p[0], buf, sizeof buf);
		if (n > 0)
			len = (size_t)n;
	}
	close(p[0]);
	close(p[1]);
	return len;
}

static double bench_ours(void)
{
	double r[RUNS];
	run_once(); /* warm up */
	for (int i = 0; i < RUNS; i++)
		r[i] = run_once();
	return bench_median(r, RUNS);
}

/* Runs the Python baseline: the median ns/event of the seed-like
 * configuration (returned) and of the lean one (*lean); -1 if it could not
 * run. */
static double bench_structlog(const char *root, double *lean)
{
	char script[4096];
	snprintf(script, sizeof script, "%s/bench/structlog_baseline.py", root);
	if (access("/usr/bin/python3", X_OK) != 0 || access(script, R_OK) != 0)
		return -1;
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' 2>/dev/null", script);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	char line[512];
	double ns = -1;
	*lean = -1;
	while (fgets(line, sizeof line, p)) {
		if (strncmp(line, "structlog_ns_per_event:", 23) == 0)
			ns = strtod(line + 23, NULL);
		else if (strncmp(line, "structlog_print_ns_per_event:", 29) == 0)
			*lean = strtod(line + 29, NULL);
	}
	int st = pclose(p);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	return ns > 0 ? ns : -1;
}

int main(int argc, char **argv)
{
	const char *root = argc > 1 ? argv[1] : getenv("FK_SOURCE_ROOT");
	if (!root || !*root)
		root = ".";
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		perror("/dev/null");
		return 1;
	}
	size_t line_len = bench_line_length();
	double floor_ns = bench_write_floor(fd, line_len);
	log_options opts;
	log_options_default(&opts);
	opts.fd = fd;
	opts.color = 0;
	if (log_init(&opts) != 0) {
		fprintf(stderr, "bench_log: log_init failed\n");
		return 1;
	}
	bind_context();

	double ours = bench_ours();
	log_clear_context();
	log_shutdown();
	close(fd);
	printf("log_ns_per_event: %.1f ns\n", ours);
	double cls_vec = bench_classify_path(false), cls_scalar = bench_classify_path(true);
	printf("classify_ns_per_event: %.1f ns (SSE2 path), %.1f ns (scalar path), %zu strings\n",
	       cls_vec, cls_scalar, NSTRINGS);
	printf("write_floor_ns: %.1f ns (one bare write(2) of the same %zu-byte line)\n", floor_ns,
	       line_len);

	double lean = -1;
	double base = BENCH_BASELINE ? bench_structlog(root, &lean) : -1;
	if (base < 0) {
		printf("structlog baseline: skipped\n");
		printf("{\"bench\":\"" BENCH_NAME "\",\"ns_per_event\":%.1f,"
		       "\"structlog_ns_per_event\":null,\"ratio\":null,\"write_floor_ns\":%.1f,"
		       "\"classify_sse2_ns\":%.1f,\"classify_scalar_ns\":%.1f}\n",
		       ours, floor_ns, cls_vec, cls_scalar);
		return 0;
	}
	double ratio = base / ours;
	printf("structlog_ns_per_event: %.0f ns (seed setup: stdlib logging, one write per "
	       "event)\n",
	       base);
	printf("ratio: %.1f x\n", ratio);
	printf("floor_ratio: %.1f x (the most any one-write-per-line logger could reach)\n",
	       base / floor_ns);
	printf("structlog_print_ns_per_event: %.0f ns (lean PrintLogger, buffered)\n", lean);
	printf("ratio_print: %.1f x\n", lean > 0 ? lean / ours : 0.0);
	printf("{\"bench\":\"log\",\"ns_per_event\":%.1f,\"structlog_ns_per_event\":%.0f,"
	       "\"ratio\":%.1f,\"structlog_print_ns_per_event\":%.0f,\"ratio_print\":%.1f,"
	       "\"write_floor_ns\":%.1f,\"floor_ratio\":%.1f,\"classify_sse2_ns\":%.1f,"
	       "\"classify_scalar_ns\":%.1f}\n",
	       ours, base, ratio, lean, lean > 0 ? lean / ours : 0.0, floor_ns, base / floor_ns,
	       cls_vec, cls_scalar);
	return 0;
}
