/*
 * bench_spawn — the cost of starting a command through proc_run (a
 * supervisor process, its own process group, output pipes read line by
 * line) against the bare minimum in the same run: posix_spawn + waitpid of
 * the same program with nothing captured. Interleaved rounds, medians.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "clock.h"
#include "proc.h"

#define ROUNDS 7
#define SPAWNS 200

extern char **environ;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[n / 2];
}

static void count_line(void *ctx, int stream, const char *line, size_t len)
{
	(void)stream, (void)line, (void)len;
	(*(int *)ctx)++;
}

/* Microseconds per spawn through proc_run; -1 on failure. */
static double round_proc(const char *const *argv)
{
	int lines = 0;
	char err[256];
	int64_t t0 = clock_wall_usec();
	for (int i = 0; i < SPAWNS; i++) {
		proc_spec s = {.argv = argv, .cancel_fd = -1, .on_line = count_line, .ctx = &lines};
		proc_result r;
		if (proc_run(&s, &r, err, sizeof err) != 0 || r.exit_code != 0) {
			fprintf(stderr, "bench_spawn: proc_run: %s\n", err);
			return -1;
		}
	}
	return (double)(clock_wall_usec() - t0) / SPAWNS;
}

/* Microseconds per spawn through posix_spawnp + waitpid; -1 on failure. */
static double round_bare(const char *const *argv)
{
	int64_t t0 = clock_wall_usec();
	for (int i = 0; i < SPAWNS; i++) {
		pid_t pid;
		int status;
		if (posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv, environ) != 0 ||
		    waitpid(pid, &status, 0) != pid || status != 0) {
			fprintf(stderr, "bench_spawn: posix_spawnp failed\n");
			return -1;
		}
	}
	return (double)(clock_wall_usec() - t0) / SPAWNS;
}

int main(void)
{
	const char *const argv[] = {"true", NULL};
	double p[ROUNDS], b[ROUNDS];
	for (int r = 0; r < ROUNDS; r++) {
		b[r] = round_bare(argv);
		p[r] = round_proc(argv);
		if (b[r] < 0 || p[r] < 0)
			return 1;
	}
	double pm = median(p, ROUNDS), bm = median(b, ROUNDS);
	printf("proc_run (supervised): %.1f us/spawn\n", pm);
	printf("posix_spawn+waitpid: %.1f us/spawn\n", bm);
	printf("overhead: %.1f us/spawn (%.2f x)\n", pm - bm, pm / bm);
	printf("{\"bench\":\"spawn\",\"spawns\":%d,\"rounds\":%d,\"proc_run_us\":%.1f,"
	       "\"posix_spawn_us\":%.1f,\"overhead_us\":%.1f,\"ratio\":%.2f}\n",
	       SPAWNS, ROUNDS, pm, bm, pm - bm, pm / bm);
	return 0;
}
