/*
 * bench_wheel — the timer wheel against a binary min-heap timer queue (the
 * libuv approach: array-based heap, each timer stores its heap index so that
 * cancel is O(log n)), in the same run and on the same expiries.
 *
 * 1,000,000 timers, expiries uniform in [1 ms, 1 h], fixed seed.
 *  (a) add all, then cancel all: ns per add, per cancel and per add+cancel
 *      pair; cancel in add order and in a shuffled order.
 *  (b) add all, then expire all, each structure with its natural loop:
 *      wheel: now += max(1, wheel_timeout); wheel_update; take all expired.
 *      heap:  now = min; pop while min <= now.
 *      ns per timer for the expire phase and for add + expire.
 * The heap keeps a copy of each key in its array, so comparisons never touch
 * the timers: a stronger baseline than comparing through timer pointers.
 * Each figure is the median of RUNS runs. Output: `name: value unit` lines,
 * then one JSON line {"bench":"wheel",...}.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "wheel.h"

#define NTIMERS    1000000
#define RUNS       5
#define MAX_EXPIRY (3600ULL * 1000)

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

typedef struct {
	uint64_t *exp;
	uint32_t *perm; /* shuffled cancel order */
	wheel_timer *wt;
	htimer *ht;
	heap h;
	wheel *w;
	uint64_t late; /* OR of (expires ^ now) when taken: must stay 0 */
} bench;

enum { M_ADD, M_CANCEL, M_CANCEL_RND, M_EXPIRE, M_COUNT };

/* per-op ns for add, cancel (add order), cancel (shuffled), expire */
static void run_wheel(bench *b, double out[M_COUNT])
{
	double t0, t1;
	wheel_init(b->w, 0);
	for (int i = 0; i < NTIMERS; i++)
		wheel_timer_init(&b->wt[i]);
	t0 = bench_now_ns();
	for (int i = 0; i < NTIMERS; i++)
		wheel_add(b->w, &b->wt[i], b->exp[i]);
	t1 = bench_now_ns();
	out[M_ADD] = (t1 - t0) / NTIMERS;
	for (int i = 0; i < NTIMERS; i++)
		wheel_cancel(b->w, &b->wt[i]);
	out[M_CANCEL] = (bench_now_ns() - t1) / NTIMERS;

	for (int i = 0; i < NTIMERS; i++)
		wheel_add(b->w, &b->wt[i], b->exp[i]);
	t0 = bench_now_ns();
	for (int i = 0; i < NTIMERS; i++)
		wheel_cancel(b->w, &b->wt[b->perm[i]]);
	out[M_CANCEL_RND] = (bench_now_ns() - t0) / NTIMERS;

	for (int i = 0; i < NTIMERS; i++)
		wheel_add(b->w, &b->wt[i], b->exp[i]);
	t0 = bench_now_ns();
	uint64_t taken = 0, now = 0, to;
	while ((to = wheel_timeout(b->w)) != UINT64_MAX) {
		now += to ? to : 1;
		wheel_update(b->w, now);
		wheel_timer *t;
		while ((t = wheel_get_expired(b->w)) != NULL) {
			b->late |= t->expires ^ now;
			taken++;
		}
	}
	out[M_EXPIRE] = (bench_now_ns() - t0) / NTIMERS;
	if (taken != NTIMERS || b->late)
		abort(); /* lost a timer, or took one early or late */
}

static void run_heap(bench *b, double out[M_COUNT])
{
	double t0, t1;
	b->h.n = 0;
	t0 = bench_now_ns();
	for (int i = 0; i < NTIMERS; i++)
		heap_add(&b->h, &b->ht[i], b->exp[i]);
	t1 = bench_now_ns();
	out[M_ADD] = (t1 - t0) / NTIMERS;
	for (int i = 0; i < NTIMERS; i++)
		heap_remove(&b->h, &b->ht[i]);
	out[M_CANCEL] = (bench_now_ns() - t1) / NTIMERS;

	for (int i = 0; i < NTIMERS; i++)
		heap_add(&b->h, &b->ht[i], b->exp[i]);
	t0 = bench_now_ns();
	for (int i = 0; i < NTIMERS; i++)
		heap_remove(&b->h, &b->ht[b->perm[i]]);
	out[M_CANCEL_RND] = (bench_now_ns() - t0) / NTIMERS;

	for (int i = 0; i < NTIMERS; i++)
		heap_add(&b->h, &b->ht[i], b->exp[i]);
	t0 = bench_now_ns();
	uint64_t taken = 0, prev = 0;
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
	out[M_EXPIRE] = (bench_now_ns() - t0) / NTIMERS;
	if (taken != NTIMERS || b->late)
		abort(); /* lost a timer, or took one early or late */
}

static int bench_alloc(bench *b)
{
	b->exp = malloc(NTIMERS * sizeof *b->exp);
	b->perm = malloc(NTIMERS * sizeof *b->perm);
	b->wt = malloc(NTIMERS * sizeof *b->wt);
	b->ht = malloc(NTIMERS * sizeof *b->ht);
	b->h.a = malloc(NTIMERS * sizeof *b->h.a);
	b->w = malloc(sizeof *b->w);
	if (!b->exp || !b->perm || !b->wt || !b->ht || !b->h.a || !b->w)
		return -1;
	for (uint32_t i = 0; i < NTIMERS; i++) {
		b->exp[i] = 1 + rng_next() % MAX_EXPIRY;
		b->perm[i] = i;
		b->ht[i].index = UINT32_MAX;
	}
	for (uint32_t i = NTIMERS - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(rng_next() % (i + 1));
		uint32_t tmp = b->perm[i];
		b->perm[i] = b->perm[j];
		b->perm[j] = tmp;
	}
	return 0;
}

static void bench_free(bench *b)
{
	free(b->exp);
	free(b->perm);
	free(b->wt);
	free(b->ht);
	free(b->h.a);
	free(b->w);
}

static void print_pair(const char *what, double wv, double hv)
{
	printf("wheel_%s: %.2f ns/op\n", what, wv);
	printf("heap_%s: %.2f ns/op\n", what, hv);
	printf("speedup_%s: %.2f x\n", what, hv / wv);
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	bench b = {0};
	double wr[M_COUNT][RUNS], hr[M_COUNT][RUNS], wm[M_COUNT], hm[M_COUNT];
	if (bench_alloc(&b) != 0) {
		fprintf(stderr, "bench_wheel: out of memory\n");
		bench_free(&b);
		return 1;
	}
	for (int r = 0; r < RUNS; r++) {
		double w[M_COUNT], h[M_COUNT];
		run_wheel(&b, w);
		run_heap(&b, h);
		for (int m = 0; m < M_COUNT; m++) {
			wr[m][r] = w[m];
			hr[m][r] = h[m];
		}
	}
	for (int m = 0; m < M_COUNT; m++) {
		wm[m] = bench_median(wr[m], (size_t)(RUNS));
		hm[m] = bench_median(hr[m], (size_t)(RUNS));
	}
	double w_ac = wm[M_ADD] + wm[M_CANCEL], h_ac = hm[M_ADD] + hm[M_CANCEL];
	double w_acr = wm[M_ADD] + wm[M_CANCEL_RND], h_acr = hm[M_ADD] + hm[M_CANCEL_RND];
	double w_ae = wm[M_ADD] + wm[M_EXPIRE], h_ae = hm[M_ADD] + hm[M_EXPIRE];
	printf("timers: %d count\n", NTIMERS);
	printf("runs: %d count\n", RUNS);
	print_pair("add", wm[M_ADD], hm[M_ADD]);
	print_pair("cancel", wm[M_CANCEL], hm[M_CANCEL]);
	print_pair("add_cancel", w_ac, h_ac);
	print_pair("cancel_shuffled", wm[M_CANCEL_RND], hm[M_CANCEL_RND]);
	print_pair("add_cancel_shuffled", w_acr, h_acr);
	print_pair("expire", wm[M_EXPIRE], hm[M_EXPIRE]);
	print_pair("add_expire", w_ae, h_ae);
	printf("{\"bench\":\"wheel\",\"timers\":%d,\"runs\":%d,"
	       "\"wheel_add_ns\":%.2f,\"heap_add_ns\":%.2f,"
	       "\"wheel_cancel_ns\":%.2f,\"heap_cancel_ns\":%.2f,"
	       "\"wheel_add_cancel_ns\":%.2f,\"heap_add_cancel_ns\":%.2f,\"add_cancel_speedup\":%."
	       "2f,"
	       "\"wheel_add_cancel_shuffled_ns\":%.2f,\"heap_add_cancel_shuffled_ns\":%.2f,"
	       "\"add_cancel_shuffled_speedup\":%.2f,"
	       "\"wheel_expire_ns\":%.2f,\"heap_expire_ns\":%.2f,\"expire_speedup\":%.2f,"
	       "\"wheel_add_expire_ns\":%.2f,\"heap_add_expire_ns\":%.2f,\"add_expire_speedup\":%."
	       "2f}\n",
	       NTIMERS, RUNS, wm[M_ADD], hm[M_ADD], wm[M_CANCEL], hm[M_CANCEL], w_ac, h_ac,
	       h_ac / w_ac, w_acr, h_acr, h_acr / w_acr, wm[M_EXPIRE], hm[M_EXPIRE],
	       hm[M_EXPIRE] / wm[M_EXPIRE], w_ae, h_ae, h_ae / w_ae);
	bench_free(&b);
	return 0;
}
