/*
 * bench_wheel — the timer wheel (src/wheel.c) against, in the same run and
 * on the same expiries:
 *  - the wheel as it was with lanes (bench/wheel_lanes.c: each slot four
 *    chains walked in lockstep with prefetches), to see whether lanes pay;
 *  - a binary min-heap timer queue (the libuv approach: array-based heap,
 *    each timer stores its heap index so that cancel is O(log n)). The heap
 *    keeps a copy of each key in its array, so comparisons never touch the
 *    timers: a stronger baseline than comparing through timer pointers.
 *
 * At 10, 100, 1,000, 10,000 and 50,000 timers (the sizes a daemon has) and
 * at 1,000,000; expiries uniform in [1 ms, 1 h] from now, fixed seed. Three
 * patterns, in ns per timer:
 *  add_cancel           add all, then cancel all in add order
 *  add_cancel_shuffled  add all, then cancel all in a shuffled order
 *  add_expire           add all, then expire all with each structure's
 *                       natural loop (wheel: now += max(1, timeout); update;
 *                       take all expired. heap: now = min; pop while <= now)
 * Small sizes repeat the pattern (on the same, never re-initialised
 * structure, expiries offset by its clock) until about WORK timers were
 * handled. Each figure is the median of RUNS runs. Output: `name: value
 * unit` lines, then one JSON line {"bench":"wheel",...} per size.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "wheel.h"
#include "wheel_lanes.h"

#define MAX_TIMERS 1000000
#define WORK       400000 /* timers handled per measurement, at least */
#define RUNS       5
#define MAX_EXPIRY (3600ULL * 1000)

static const uint32_t sizes[] = {10, 100, 1000, 10000, 50000, 1000000};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* ---- baseline: array-based binary min-heap ---- */

typedef struct {
	uint64_t expires;
	uint32_t index; /* position in the heap array, UINT32_MAX if not armed */
} htimer;

typedef struct {
	uint64_t key; /* copy of expires: compares never touch the timer */
	htimer *t;
} hentry;

typedef struct {
	hentry *a;
	uint32_t n;
} heap;

static void heap_set(heap *h, uint32_t i, hentry e)
{
	h->a[i] = e;
	e.t->index = i;
}

static void heap_sift_up(heap *h, uint32_t i, hentry e)
{
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (h->a[p].key <= e.key)
			break;
		heap_set(h, i, h->a[p]);
		i = p;
	}
	heap_set(h, i, e);
}

static void heap_sift_down(heap *h, uint32_t i, hentry e)
{
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->a[c + 1].key < h->a[c].key)
			c++;
		if (e.key <= h->a[c].key)
			break;
		heap_set(h, i, h->a[c]);
		i = c;
	}
	heap_set(h, i, e);
}

static void heap_add(heap *h, htimer *t, uint64_t expires)
{
	t->expires = expires;
	heap_sift_up(h, h->n++, (hentry){expires, t});
}

static void heap_remove(heap *h, htimer *t)
{
	uint32_t i = t->index;
	if (i == UINT32_MAX)
		return;
	t->index = UINT32_MAX;
	hentry last = h->a[--h->n];
	if (i == h->n)
		return;
	if (i > 0 && h->a[(i - 1) / 2].key > last.key)
		heap_sift_up(h, i, last);
	else
		heap_sift_down(h, i, last);
}

/* ---- harness ---- */

static uint64_t rng_state = 0x77686565ULL;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

enum { P_ADD_CANCEL, P_ADD_CANCEL_RND, P_ADD_EXPIRE, P_COUNT };
static const char *const pattern_names[P_COUNT] = {"add_cancel", "add_cancel_shuffled",
                                                   "add_expire"};
enum { I_WHEEL, I_LANES, I_HEAP, I_COUNT };
static const char *const impl_names[I_COUNT] = {"wheel", "lanes", "heap"};

typedef struct {
	uint64_t *exp;  /* offsets from the structure's clock, in [1, MAX_EXPIRY] */
	uint32_t *perm; /* shuffled cancel order of the current size */
	wheel_timer *wt;
	htimer *ht;
	heap h;
	wheel *w;
	lanes_wheel *lw;
	uint32_t n, reps;
	uint64_t late; /* OR of (expires ^ now) when taken: must stay 0 */
} bench;

/* The wheel benchmark, once per wheel type (same code, same loop). */
#define WHEEL_PATTERN(fn, W, add, cancel, update, timeout, get_expired)                            \
	static double fn(bench *b, W *w, int pattern)                                              \
	{                                                                                          \
		uint32_t n = b->n;                                                                 \
		double t0 = bench_now_ns();                                                        \
		for (uint32_t r = 0; r < b->reps; r++) {                                           \
			uint64_t base = w->now, taken = 0, now = base, to;                         \
			for (uint32_t i = 0; i < n; i++)                                           \
				add(w, &b->wt[i], base + b->exp[i]);                               \
			if (pattern == P_ADD_CANCEL) {                                             \
				for (uint32_t i = 0; i < n; i++)                                   \
					cancel(w, &b->wt[i]);                                      \
				continue;                                                          \
			}                                                                          \
			if (pattern == P_ADD_CANCEL_RND) {                                         \
				for (uint32_t i = 0; i < n; i++)                                   \
					cancel(w, &b->wt[b->perm[i]]);                             \
				continue;                                                          \
			}                                                                          \
			while ((to = timeout(w)) != UINT64_MAX) {                                  \
				now += to ? to : 1;                                                \
				update(w, now);                                                    \
				wheel_timer *t;                                                    \
				while ((t = get_expired(w)) != NULL) {                             \
					b->late |= t->expires ^ now;                               \
					taken++;                                                   \
				}                                                                  \
			}                                                                          \
			if (taken != n || b->late)                                                 \
				abort(); /* lost a timer, or took one early or late */             \
		}                                                                                  \
		return (bench_now_ns() - t0) / ((double)n * b->reps);                              \
	}

WHEEL_PATTERN(run_wheel, wheel, wheel_add, wheel_cancel, wheel_update, wheel_timeout,
              wheel_get_expired)
WHEEL_PATTERN(run_lanes, lanes_wheel, lanes_wheel_add, lanes_wheel_cancel, lanes_wheel_update,
              lanes_wheel_timeout, lanes_wheel_get_expired)

static double run_heap(bench *b, int pattern)
{
	uint32_t n = b->n;
	static uint64_t clock_now; /* the heap's clock, carried over like the wheels' */
	double t0 = bench_now_ns();
	for (uint32_t r = 0; r < b->reps; r++) {
		uint64_t base = clock_now, taken = 0, prev = base;
		for (uint32_t i = 0; i < n; i++)
			heap_add(&b->h, &b->ht[i], base + b->exp[i]);
		if (pattern != P_ADD_EXPIRE) {
			for (uint32_t i = 0; i < n; i++)
				heap_remove(&b->h,
				            &b->ht[pattern == P_ADD_CANCEL ? i : b->perm[i]]);
			continue;
		}
		while (b->h.n > 0) {
			uint64_t now = b->h.a[0].key;
			while (b->h.n > 0 && b->h.a[0].key <= now) {
				htimer *t = b->h.a[0].t;
				heap_remove(&b->h, t);
				b->late |= t->expires ^ now;
				taken++;
			}
			if (now < prev)
				abort();
			prev = now;
		}
		clock_now = prev;
		if (taken != n || b->late)
			abort(); /* lost a timer, or took one early or late */
	}
	return (bench_now_ns() - t0) / ((double)n * b->reps);
}

static double run_one(bench *b, int impl, int pattern)
{
	switch (impl) {
	case I_WHEEL:
		return run_wheel(b, b->w, pattern);
	case I_LANES:
		return run_lanes(b, b->lw, pattern);
	default:
		return run_heap(b, pattern);
	}
}

static int bench_alloc(bench *b)
{
	b->exp = malloc(MAX_TIMERS * sizeof *b->exp);
	b->perm = malloc(MAX_TIMERS * sizeof *b->perm);
	b->wt = malloc(MAX_TIMERS * sizeof *b->wt);
	b->ht = malloc(MAX_TIMERS * sizeof *b->ht);
	b->h.a = malloc(MAX_TIMERS * sizeof *b->h.a);
	b->w = malloc(sizeof *b->w);
	b->lw = malloc(sizeof *b->lw);
	if (!b->exp || !b->perm || !b->wt || !b->ht || !b->h.a || !b->w || !b->lw)
		return -1;
	for (uint32_t i = 0; i < MAX_TIMERS; i++) {
		b->exp[i] = 1 + rng_next() % MAX_EXPIRY;
		wheel_timer_init(&b->wt[i]);
		b->ht[i].index = UINT32_MAX;
	}
	wheel_init(b->w, 0);
	lanes_wheel_init(b->lw, 0);
	return 0;
}

/* The first n timers, a fresh shuffle of them, and the repetitions. */
static void bench_size(bench *b, uint32_t n)
{
	b->n = n;
	b->reps = n >= WORK ? 1 : (WORK + n - 1) / n;
	for (uint32_t i = 0; i < n; i++)
		b->perm[i] = i;
	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(rng_next() % (i + 1));
		uint32_t tmp = b->perm[i];
		b->perm[i] = b->perm[j];
		b->perm[j] = tmp;
	}
}

static void bench_free(bench *b)
{
	free(b->exp);
	free(b->perm);
	free(b->wt);
	free(b->ht);
	free(b->h.a);
	free(b->w);
	free(b->lw);
}

/* Medians of RUNS runs, the three structures interleaved in each run. */
static void measure(bench *b, double med[I_COUNT][P_COUNT])
{
	double v[I_COUNT][P_COUNT][RUNS];
	for (int r = 0; r < RUNS; r++)
		for (int p = 0; p < P_COUNT; p++)
			for (int i = 0; i < I_COUNT; i++)
				v[i][p][r] = run_one(b, i, p);
	for (int i = 0; i < I_COUNT; i++)
		for (int p = 0; p < P_COUNT; p++)
			med[i][p] = bench_median(v[i][p], RUNS);
}

static void report(uint32_t n, double m[I_COUNT][P_COUNT])
{
	printf("timers: %u count\n", n);
	for (int p = 0; p < P_COUNT; p++) {
		for (int i = 0; i < I_COUNT; i++)
			printf("%s_%s: %.2f ns/timer\n", impl_names[i], pattern_names[p], m[i][p]);
		printf("lanes_vs_wheel_%s: %.2f x (above 1: lanes pay)\n", pattern_names[p],
		       m[I_WHEEL][p] / m[I_LANES][p]);
		printf("speedup_%s: %.2f x (heap / wheel)\n", pattern_names[p],
		       m[I_HEAP][p] / m[I_WHEEL][p]);
	}
	printf("{\"bench\":\"wheel\",\"timers\":%u,\"runs\":%d", n, RUNS);
	for (int p = 0; p < P_COUNT; p++) {
		for (int i = 0; i < I_COUNT; i++)
			printf(",\"%s_%s_ns\":%.2f", impl_names[i], pattern_names[p], m[i][p]);
		printf(",\"%s_speedup\":%.2f,\"%s_lanes_gain\":%.2f", pattern_names[p],
		       m[I_HEAP][p] / m[I_WHEEL][p], pattern_names[p],
		       m[I_WHEEL][p] / m[I_LANES][p]);
	}
	printf("}\n");
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	bench b = {0};
	if (bench_alloc(&b) != 0) {
		fprintf(stderr, "bench_wheel: out of memory\n");
		bench_free(&b);
		return 1;
	}
	printf("runs: %d count\n", RUNS);
	for (size_t s = 0; s < NSIZES; s++) {
		double m[I_COUNT][P_COUNT];
		bench_size(&b, sizes[s]);
		measure(&b, m);
		report(sizes[s], m);
		fflush(stdout);
	}
	bench_free(&b);
	return 0;
}
