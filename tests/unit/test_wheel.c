/* Unit tests: hierarchical timer wheel (exact expiry, cancel, re-add, level
 * boundaries, far future, wheel_timeout bounds, and a randomized comparison
 * against a sorted-array reference). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wheel.h"

typedef struct {
	wheel_timer wt;
	int id;
	int fired;         /* times taken from the expired list */
	uint64_t fired_at; /* wheel now when last taken */
} item;

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	/* splitmix64: fixed seed, reproducible */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
	return n ? rng_next() % n : 0;
}

static item *item_of(wheel_timer *t)
{
	return wheel_container_of(t, item, wt);
}

static void items_init(item *it, int n)
{
	for (int i = 0; i < n; i++) {
		wheel_timer_init(&it[i].wt);
		it[i].id = i;
		it[i].fired = 0;
		it[i].fired_at = 0;
	}
}

/* Take everything expired; returns how many. */
static int drain(wheel *w)
{
	int n = 0;
	wheel_timer *t;
	while ((t = wheel_get_expired(w)) != NULL) {
		assert_false(wheel_timer_pending(t));
		assert_true(t->expires <= w->now);
		item_of(t)->fired++;
		item_of(t)->fired_at = w->now;
		n++;
	}
	return n;
}

static void test_init_empty(void **state)
{
	(void)state;
	wheel w;
	wheel_init(&w, 777);
	assert_int_equal(w.now, 777);
	assert_true(wheel_timeout(&w) == UINT64_MAX);
	assert_null(wheel_get_expired(&w));
	wheel_update(&w, 1000000);
	assert_null(wheel_get_expired(&w));
	assert_true(wheel_timeout(&w) == UINT64_MAX);

	wheel_timer t;
	wheel_timer_init(&t);
	assert_false(wheel_timer_pending(&t));
	wheel_cancel(&w, &t); /* harmless when not pending */
	assert_false(wheel_timer_pending(&t));
}

/* Each timer is expired by wheel_update(e) and not by wheel_update(e - 1). */
static void check_exact_steps(uint64_t start, const uint64_t *deltas, int n)
{
	wheel w;
	item it[64];
	assert_true(n <= 64);
	wheel_init(&w, start);
	items_init(it, n);
	for (int i = 0; i < n; i++)
		wheel_add(&w, &it[i].wt, start + deltas[i]);
	for (int i = 0; i < n; i++) {
		uint64_t e = start + deltas[i];
		wheel_update(&w, e - 1);
		assert_int_equal(drain(&w), 0);
		assert_true(wheel_timeout(&w) >= 1);
		assert_true(wheel_timeout(&w) <= 1); /* never late */
		wheel_update(&w, e);
		assert_int_equal(drain(&w), 1);
		assert_int_equal(it[i].fired, 1);
		assert_true(it[i].fired_at == e);
	}
	assert_true(wheel_timeout(&w) == UINT64_MAX);
}

/* Advance only as far as wheel_timeout says: every timer must be taken at
 * exactly its expiry (timeout is never late), in a bounded number of steps. */
static void check_natural_loop(uint64_t start, const uint64_t *deltas, int n)
{
	wheel w;
	item it[64];
	assert_true(n <= 64);
	wheel_init(&w, start);
	items_init(it, n);
	for (int i = 0; i < n; i++)
		wheel_add(&w, &it[i].wt, start + deltas[i]);
	int taken = 0, steps = 0;
	while (taken < n) {
		uint64_t to = wheel_timeout(&w);
		assert_true(to != UINT64_MAX);
		wheel_update(&w, w.now + (to ? to : 1));
		taken += drain(&w);
		assert_true(++steps < 100000);
	}
	for (int i = 0; i < n; i++) {
		assert_int_equal(it[i].fired, 1);
		assert_true(it[i].fired_at == start + deltas[i]);
	}
	assert_true(wheel_timeout(&w) == UINT64_MAX);
}

static const uint64_t boundary_deltas[] = {
        1,
        2,
        62,
        63,
        64,
        65,
        127,
        128,
        4095,
        4096,
        4097,
        262143,
        262144,
        262145,
        (1ULL << 24) - 1,
        1ULL << 24,
        (1ULL << 24) + 1,
        (1ULL << 30) - 1,
        1ULL << 30,
        (1ULL << 30) + 1,
        (1ULL << 36) - 1,
        1ULL << 36,
        (1ULL << 36) + 1,
        (1ULL << 36) + (1ULL << 30),
        (1ULL << 37) + 12345,
        1ULL << 40,
        (1ULL << 40) + 1,
};

#define NBOUND ((int)(sizeof boundary_deltas / sizeof boundary_deltas[0]))

static void test_exact_boundaries(void **state)
{
	(void)state;
	const uint64_t starts[] = {0, 1, 63, 4095, 123456789, (1ULL << 36) - 3, (1ULL << 42) + 7};
	for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
		check_exact_steps(starts[s], boundary_deltas, NBOUND);
		check_natural_loop(starts[s], boundary_deltas, NBOUND);
	}
}

static void test_basic_order(void **state)
{
	(void)state;
	wheel w;
	item it[4];
	wheel_init(&w, 1000);
	items_init(it, 4);
	wheel_add(&w, &it[0].wt, 1010);
	wheel_add(&w, &it[1].wt, 1005);
	wheel_add(&w, &it[2].wt, 1010);
	wheel_add(&w, &it[3].wt, 1100);
	assert_true(wheel_timer_pending(&it[0].wt));
	assert_true(wheel_timeout(&w) == 5);
	wheel_update(&w, 1004);
	assert_int_equal(drain(&w), 0);
	wheel_update(&w, 1010); /* jump over 1005 and onto 1010 */
	wheel_timer *a = wheel_get_expired(&w);
	assert_ptr_equal(a, &it[1].wt); /* level 0 fills in expiry order */
	assert_int_equal(drain(&w), 2);
	assert_int_equal(it[0].fired + it[1].fired + it[2].fired, 2);
	assert_false(wheel_timer_pending(&it[0].wt));
	assert_true(wheel_timer_pending(&it[3].wt));
	wheel_update(&w, 1099);
	assert_int_equal(drain(&w), 0);
	wheel_update(&w, 1100);
	assert_int_equal(drain(&w), 1);
	assert_int_equal(it[3].fired, 1);
}

static void test_cancel(void **state)
{
	(void)state;
	wheel w;
	item it[3];
	wheel_init(&w, 0);
	items_init(it, 3);
	for (int i = 0; i < 3; i++)
		wheel_add(&w, &it[i].wt, 500); /* same slot */
	wheel_cancel(&w, &it[1].wt);
	assert_false(wheel_timer_pending(&it[1].wt));
	wheel_cancel(&w, &it[1].wt); /* twice is harmless */
	wheel_update(&w, 500);
	assert_int_equal(drain(&w), 2);
	assert_int_equal(it[1].fired, 0);

	/* cancelling the last timer of a slot clears its bit: nothing armed */
	wheel_add(&w, &it[0].wt, 600);
	wheel_add(&w, &it[1].wt, 100000);
	assert_true(wheel_timeout(&w) <= 100);
	wheel_cancel(&w, &it[0].wt);
	assert_true(wheel_timeout(&w) > 100);
	wheel_cancel(&w, &it[1].wt);
	assert_true(wheel_timeout(&w) == UINT64_MAX);
	for (int l = 0; l < WHEEL_LEVELS; l++)
		assert_true(w.pending[l] == 0);
	wheel_update(&w, 200000);
	assert_int_equal(drain(&w), 0);
}

/* Many timers in one slot (spread over its lanes): the slot stays armed
 * until its last timer is cancelled, whatever the order. */
static void test_cancel_many_same_slot(void **state)
{
	(void)state;
	enum { N = 40 };
	wheel w;
	item it[N];
	int order[N];
	rng_state = 7;
	for (uint64_t exp = 500; exp <= 500 + (1ULL << 20); exp += 1ULL << 20) {
		wheel_init(&w, 0);
		items_init(it, N);
		for (int i = 0; i < N; i++) {
			wheel_add(&w, &it[i].wt, exp);
			order[i] = i;
		}
		uint64_t to = wheel_timeout(&w);
		for (int i = N - 1; i > 0; i--) {
			int j = (int)rng_below((uint64_t)i + 1), tmp = order[i];
			order[i] = order[j];
			order[j] = tmp;
		}
		for (int i = 0; i < N; i++) {
			assert_true(wheel_timeout(&w) == to);
			wheel_cancel(&w, &it[order[i]].wt);
		}
		assert_true(wheel_timeout(&w) == UINT64_MAX);
		wheel_update(&w, exp);
		assert_int_equal(drain(&w), 0);
	}
}

/* Cancel head, tail and middle of the expired list before they are taken. */
static void test_cancel_expired(void **state)
{
	(void)state;
	wheel w;
	item it[5];
	wheel_init(&w, 10);
	items_init(it, 5);
	for (int i = 0; i < 5; i++)
		wheel_add(&w, &it[i].wt, 20 + (uint64_t)i);
	wheel_update(&w, 30);
	assert_true(wheel_timeout(&w) == 0);
	wheel_cancel(&w, &it[4].wt); /* tail */
	wheel_cancel(&w, &it[0].wt); /* head */
	wheel_cancel(&w, &it[2].wt); /* middle */
	assert_false(wheel_timer_pending(&it[4].wt));
	/* the tail must still be right: append after the cancels */
	wheel_add(&w, &it[4].wt, 5); /* in the past: straight to expired */
	assert_ptr_equal(wheel_get_expired(&w), &it[1].wt);
	assert_ptr_equal(wheel_get_expired(&w), &it[3].wt);
	assert_ptr_equal(wheel_get_expired(&w), &it[4].wt);
	assert_null(wheel_get_expired(&w));
	assert_true(wheel_timeout(&w) == UINT64_MAX);

	/* cancel the only expired timer, then the list is usable again */
	wheel_add(&w, &it[0].wt, 30);
	wheel_cancel(&w, &it[0].wt);
	assert_true(wheel_timeout(&w) == UINT64_MAX);
	wheel_add(&w, &it[1].wt, 1);
	assert_ptr_equal(wheel_get_expired(&w), &it[1].wt);
	assert_null(wheel_get_expired(&w));
}

static void test_add_past(void **state)
{
	(void)state;
	wheel w;
	item it[2];
	wheel_init(&w, 1000);
	items_init(it, 2);
	wheel_add(&w, &it[0].wt, 1000); /* at now */
	wheel_add(&w, &it[1].wt, 3);    /* before now */
	assert_true(wheel_timeout(&w) == 0);
	wheel_update(&w, 1000); /* same now: nothing moves, both stay due */
	assert_ptr_equal(wheel_get_expired(&w), &it[0].wt);
	assert_ptr_equal(wheel_get_expired(&w), &it[1].wt);
	assert_null(wheel_get_expired(&w));
	wheel_update(&w, 999); /* backwards: ignored */
	assert_true(w.now == 1000);
}

static void test_readd(void **state)
{
	(void)state;
	wheel w;
	item it[2];
	wheel_init(&w, 0);
	items_init(it, 2);
	/* re-arming a pending timer moves it */
	wheel_add(&w, &it[0].wt, 5000);
	wheel_add(&w, &it[0].wt, 7);
	assert_true(wheel_timeout(&w) == 7);
	wheel_update(&w, 7);
	assert_int_equal(drain(&w), 1);
	wheel_update(&w, 10000);
	assert_int_equal(drain(&w), 0);

	/* re-arming from inside expiry processing: a periodic timer plus a
	 * one-shot re-armed at "now" (due again in the same drain loop) */
	wheel_add(&w, &it[0].wt, w.now + 37);
	wheel_add(&w, &it[1].wt, w.now + 100);
	int periods = 0, again = 0;
	while (periods < 200) {
		wheel_update(&w, w.now + wheel_timeout(&w));
		wheel_timer *t;
		while ((t = wheel_get_expired(&w)) != NULL) {
			assert_true(t->expires == w.now || t == &it[1].wt);
			if (t == &it[0].wt) {
				periods++;
				wheel_add(&w, t, t->expires + 37);
			} else if (again++ == 0) {
				wheel_add(&w, t, w.now);
			}
		}
	}
	assert_true(w.now == 10000 + 200 * 37);
	assert_int_equal(again, 2);
	assert_true(wheel_timer_pending(&it[0].wt));
	assert_false(wheel_timer_pending(&it[1].wt));
}

static void test_timeout_bounds(void **state)
{
	(void)state;
	wheel w;
	item it[3];
	wheel_init(&w, 0);
	items_init(it, 3);
	wheel_add(&w, &it[0].wt, 100); /* level 1: may be early */
	uint64_t to = wheel_timeout(&w);
	assert_true(to >= 1 && to <= 100);
	assert_true(to == 64); /* the slot boundary */
	wheel_update(&w, to);
	assert_int_equal(drain(&w), 0);
	assert_true(wheel_timeout(&w) == 36); /* now on level 0: exact */
	wheel_add(&w, &it[1].wt, 80);
	assert_true(wheel_timeout(&w) == 16);
	wheel_add(&w, &it[2].wt, 64);
	assert_true(wheel_timeout(&w) == 0);
	assert_ptr_equal(wheel_get_expired(&w), &it[2].wt);
	assert_true(wheel_timeout(&w) == 16);
	wheel_cancel(&w, &it[1].wt);
	assert_true(wheel_timeout(&w) == 36);
	wheel_cancel(&w, &it[0].wt);
	assert_true(wheel_timeout(&w) == UINT64_MAX);

	/* far future: bounded by the true expiry and never zero */
	wheel_add(&w, &it[0].wt, (1ULL << 40) + 64);
	to = wheel_timeout(&w);
	assert_true(to >= 1 && to <= (1ULL << 40));
	wheel_cancel(&w, &it[0].wt);

	/* beyond one top-level turn: parked for a full turn (2^36 ms from the
	 * current top-level slot), not re-examined sooner */
	wheel_add(&w, &it[0].wt, (1ULL << 40) + 5 * (1ULL << 30));
	assert_true(wheel_timeout(&w) == (1ULL << 36) - w.now);
}

static void test_far_future(void **state)
{
	(void)state;
	wheel w;
	item it[3];
	uint64_t start = 5;
	wheel_init(&w, start);
	items_init(it, 3);
	wheel_add(&w, &it[0].wt, 1ULL << 40);
	wheel_add(&w, &it[1].wt, (1ULL << 40) + 1);
	wheel_add(&w, &it[2].wt, UINT64_MAX / 2);
	int steps = 0;
	while (it[0].fired + it[1].fired == 0) {
		uint64_t to = wheel_timeout(&w);
		assert_true(to >= 1);
		assert_true(w.now + to <= (1ULL << 40));
		wheel_update(&w, w.now + to);
		drain(&w);
		assert_true(++steps < 200);
	}
	assert_int_equal(it[0].fired, 1);
	assert_true(it[0].fired_at == 1ULL << 40);
	assert_int_equal(it[1].fired, 0);
	assert_true(wheel_timeout(&w) == 1);
	/* a big jump past both: one update does it */
	wheel_update(&w, UINT64_MAX / 2 + 10);
	assert_int_equal(drain(&w), 2);
	assert_true(wheel_timeout(&w) == UINT64_MAX);
}

static void test_big_jumps(void **state)
{
	(void)state;
	enum { N = 2000 };
	static item it[N];
	wheel w;
	rng_state = 42;
	wheel_init(&w, 1000);
	items_init(it, N);
	for (int i = 0; i < N; i++)
		wheel_add(&w, &it[i].wt, 1000 + 1 + rng_below(1ULL << (rng_below(40) + 1)));
	const uint64_t jumps[] = {1000 + 63,         1000 + 4096,      1ULL << 20,
	                          (1ULL << 31) + 17, (1ULL << 36) + 5, 1ULL << 41};
	for (size_t j = 0; j < sizeof jumps / sizeof jumps[0]; j++) {
		wheel_update(&w, jumps[j]);
		drain(&w);
		for (int i = 0; i < N; i++) {
			bool due = it[i].wt.expires <= jumps[j];
			assert_int_equal(it[i].fired, due ? 1 : 0);
			assert_int_equal(wheel_timer_pending(&it[i].wt), !due);
		}
	}
	assert_true(wheel_timeout(&w) == UINT64_MAX);
}

/* ---- randomized comparison against a sorted-array reference ---- */

enum { RN = 600 };

typedef struct {
	uint64_t exp;
	int id;
} ref_entry;

typedef struct {
	ref_entry e[RN];
	int n;
} ref_queue;

static int ref_find(const ref_queue *q, int id, uint64_t exp)
{
	int lo = 0, hi = q->n;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (q->e[mid].exp < exp)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (int i = lo; i < q->n && q->e[i].exp == exp; i++)
		if (q->e[i].id == id)
			return i;
	return -1;
}

static void ref_remove(ref_queue *q, int id, uint64_t exp)
{
	int i = ref_find(q, id, exp);
	assert_true(i >= 0);
	memmove(&q->e[i], &q->e[i + 1], (size_t)(q->n - i - 1) * sizeof q->e[0]);
	q->n--;
}

static void ref_insert(ref_queue *q, int id, uint64_t exp)
{
	int i = q->n;
	while (i > 0 && q->e[i - 1].exp > exp) {
		q->e[i] = q->e[i - 1];
		i--;
	}
	q->e[i] = (ref_entry){exp, id};
	q->n++;
}

typedef struct {
	wheel w;
	item it[RN];
	bool armed[RN]; /* the reference's view of pending */
	ref_queue q;
} model;

static uint64_t random_delay(void)
{
	switch (rng_below(10)) {
	case 0:
		return 0;
	case 1:
	case 2:
	case 3:
		return rng_below(70);
	case 4:
	case 5:
		return rng_below(5000);
	case 6:
		return rng_below(300000);
	case 7:
		return rng_below(1ULL << 26);
	case 8:
		return rng_below(1ULL << 32);
	default:
		return rng_below(1ULL << rng_below(42));
	}
}

static uint64_t random_step(void)
{
	switch (rng_below(12)) {
	case 0:
		return 0;
	case 1:
	case 2:
	case 3:
	case 4:
		return 1 + rng_below(3);
	case 5:
	case 6:
		return rng_below(100);
	case 7:
		return rng_below(5000);
	case 8:
		return rng_below(400000);
	case 9:
		return rng_below(1ULL << 28);
	case 10:
		return rng_below(1ULL << 36);
	default:
		return rng_below(1ULL << 38);
	}
}

static void model_arm(model *m, int id, uint64_t exp)
{
	if (m->armed[id])
		ref_remove(&m->q, id, m->it[id].wt.expires);
	wheel_add(&m->w, &m->it[id].wt, exp);
	ref_insert(&m->q, id, exp);
	m->armed[id] = true;
}

static void model_cancel(model *m, int id)
{
	if (m->armed[id])
		ref_remove(&m->q, id, m->it[id].wt.expires);
	wheel_cancel(&m->w, &m->it[id].wt);
	m->armed[id] = false;
}

static void model_add_random(model *m)
{
	int id = (int)rng_below(RN);
	uint64_t now = m->w.now, d = random_delay();
	uint64_t exp = rng_below(20) == 0 ? (now > d ? now - d : 0) : now + d;
	model_arm(m, id, exp);
}

/* Drain and compare with the reference's due prefix; expired timers may be
 * re-armed from inside the drain loop (always into the future here). */
static void model_check_expired(model *m)
{
	static bool due[RN];
	uint64_t now = m->w.now;
	int ndue = 0;
	while (ndue < m->q.n && m->q.e[ndue].exp <= now) {
		due[m->q.e[ndue].id] = true;
		m->armed[m->q.e[ndue].id] = false;
		ndue++;
	}
	memmove(&m->q.e[0], &m->q.e[ndue], (size_t)(m->q.n - ndue) * sizeof m->q.e[0]);
	m->q.n -= ndue;
	int got = 0;
	wheel_timer *t;
	while ((t = wheel_get_expired(&m->w)) != NULL) {
		int id = item_of(t)->id;
		assert_false(wheel_timer_pending(t));
		assert_true(due[id]);
		due[id] = false;
		got++;
		if (rng_below(4) == 0)
			model_arm(m, id, now + 1 + random_delay());
	}
	assert_int_equal(got, ndue);
}

static void model_check_timeout(model *m)
{
	uint64_t to = wheel_timeout(&m->w);
	if (m->q.n == 0) {
		assert_true(to == UINT64_MAX);
		return;
	}
	uint64_t truth = m->q.e[0].exp - m->w.now;
	assert_true(to >= 1);
	assert_true(to <= truth);
	if (truth < 64 - (m->w.now & 63))
		assert_true(to == truth); /* same level-0 turn: exact */
}

static void model_advance(model *m)
{
	uint64_t to = wheel_timeout(&m->w);
	uint64_t step = rng_below(3) == 0 && to != UINT64_MAX ? to : random_step();
	wheel_update(&m->w, m->w.now + step);
	/* cancel some due-but-not-taken timers before they are taken */
	int ncancel = (int)rng_below(3);
	for (int i = 0; i < ncancel && m->q.n > 0; i++) {
		int k = (int)rng_below((uint64_t)m->q.n);
		if (m->q.e[k].exp <= m->w.now)
			model_cancel(m, m->q.e[k].id);
	}
	model_check_expired(m);
	model_check_timeout(m);
	for (int id = 0; id < RN; id++)
		assert_int_equal(wheel_timer_pending(&m->it[id].wt), m->armed[id]);
}

static void run_random(uint64_t seed, uint64_t start, int ops)
{
	model *m = calloc(1, sizeof *m);
	assert_non_null(m);
	rng_state = seed;
	wheel_init(&m->w, start);
	items_init(m->it, RN);
	for (int op = 0; op < ops; op++) {
		uint64_t r = rng_below(100);
		if (r < 45)
			model_add_random(m);
		else if (r < 60)
			model_cancel(m, (int)rng_below(RN));
		else
			model_advance(m);
	}
	free(m);
}

/* A late wakeup takes whole slots of upper levels at once: their timers
 * still come out in expiry order, as the daemon dispatches fires in
 * fire-time order (daemon_tasks.c); a timer added already due queues
 * behind them. */
static void test_expired_in_expiry_order(void **state)
{
	(void)state;
	enum { N = 200 };
	static item it[N];
	wheel w;
	wheel_init(&w, 0);
	items_init(it, N);
	/* ascending and descending runs, and ties, over levels 1 and 2 */
	for (int i = 0; i < N; i++) {
		uint64_t e = 100 + (uint64_t)(i % 2 ? i * 37 : (N - i) * 53) % 9000 / 4 * 4;
		wheel_add(&w, &it[i].wt, e);
	}
	wheel_update(&w, 20000); /* one late update: everything is due */
	wheel_timer early;
	wheel_timer_init(&early);
	wheel_add(&w, &early, 50); /* due, and earlier than all of them */
	assert_ptr_equal(wheel_peek_expired(&w), wheel_peek_expired(&w));
	uint64_t last = 0;
	int n = 0;
	wheel_timer *t;
	while ((t = wheel_get_expired(&w)) != NULL && t != &early) {
		assert_true(t->expires >= last);
		last = t->expires;
		n++;
	}
	assert_int_equal(n, N);
	assert_ptr_equal(t, &early);
	assert_null(wheel_get_expired(&w));
	/* a second late update sorts only what it appends */
	for (int i = 0; i < N; i++)
		wheel_add(&w, &it[i].wt, 20000 + 4096 + (uint64_t)(N - i));
	wheel_update(&w, 40000);
	last = 0;
	n = 0;
	while ((t = wheel_get_expired(&w)) != NULL) {
		assert_true(t->expires >= last);
		last = t->expires;
		n++;
	}
	assert_int_equal(n, N);
}

static void test_random_vs_reference(void **state)
{
	(void)state;
	run_random(0x5eed0001, 0, 100000);
	run_random(0x5eed0002, (1ULL << 36) - 100000, 100000);
	run_random(0x5eed0003, (1ULL << 45) + 98765, 100000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_init_empty),
	        cmocka_unit_test(test_basic_order),
	        cmocka_unit_test(test_exact_boundaries),
	        cmocka_unit_test(test_cancel),
	        cmocka_unit_test(test_cancel_many_same_slot),
	        cmocka_unit_test(test_cancel_expired),
	        cmocka_unit_test(test_add_past),
	        cmocka_unit_test(test_readd),
	        cmocka_unit_test(test_timeout_bounds),
	        cmocka_unit_test(test_far_future),
	        cmocka_unit_test(test_big_jumps),
	        cmocka_unit_test(test_expired_in_expiry_order),
	        cmocka_unit_test(test_random_vs_reference),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
