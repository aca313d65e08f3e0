/*
 * wheel_lanes — src/wheel.c as it was with lanes, for bench_wheel only (see
 * wheel_lanes.h). A slot is WHEEL_LANES independent lists (slots[L][s] is
 * lane 0, lanes[L][s][] the others); a timer's lane is a hash of its
 * address; processing a slot walks the lanes in lockstep with prefetches,
 * so a cascade of many scattered timers keeps several cache misses in
 * flight. Invariants as in src/wheel.c, with "slot" read as "some lane of
 * the slot".
 */
#include "wheel_lanes.h"

#define WHEEL_MASK ((uint64_t)WHEEL_SLOTS - 1)
#define WHEEL_TOP  (WHEEL_LEVELS - 1)
#define LANE_BITS  2

_Static_assert(WHEEL_LANES == 1 << LANE_BITS, "WHEEL_LANES must be 2^LANE_BITS");

static inline uint64_t rotr64(uint64_t v, unsigned n)
{
	n &= 63;
	return n ? (v >> n) | (v << (64 - n)) : v;
}

static inline uint64_t rotl64(uint64_t v, unsigned n)
{
	n &= 63;
	return n ? (v << n) | (v >> (64 - n)) : v;
}

static inline unsigned digit(uint64_t t, unsigned level)
{
	return (unsigned)((t >> (level * WHEEL_BITS)) & WHEEL_MASK);
}

void lanes_wheel_init(lanes_wheel *w, uint64_t now)
{
	*w = (lanes_wheel){.now = now};
	w->expired_tail = &w->expired;
}

static void expired_append(lanes_wheel *w, wheel_timer *t)
{
	t->next = NULL;
	t->pprev = w->expired_tail;
	*w->expired_tail = t;
	w->expired_tail = &t->next;
}

/* Lane of a timer: a multiplicative hash of its address (balanced, no state). */
static inline unsigned lane_of(const wheel_timer *t)
{
	return (unsigned)(((uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ULL) >> (64 - LANE_BITS));
}

/* Head of one lane of a slot, selected without a branch (the lane is random). */
static inline wheel_timer **head_of(lanes_wheel *w, unsigned level, unsigned slot, unsigned lane)
{
	uintptr_t lane0 = (uintptr_t)&w->slots[level][slot];
	uintptr_t other = (uintptr_t)&w->lanes[level][slot][0] + (lane - 1) * sizeof(wheel_timer *);
	uintptr_t pick = (uintptr_t)0 - (lane != 0);
	return (wheel_timer **)((lane0 & ~pick) | (other & pick));
}

static void slot_push(lanes_wheel *w, wheel_timer *t, unsigned level, unsigned slot)
{
	wheel_timer **head = head_of(w, level, slot, lane_of(t));
	t->next = *head;
	if (t->next)
		t->next->pprev = &t->next;
	t->pprev = head;
	*head = t;
	w->pending[level] |= (uint64_t)1 << slot;
}

/* Put t (not linked anywhere) where it belongs relative to w->now. */
static void place(lanes_wheel *w, wheel_timer *t)
{
	uint64_t now = w->now, exp = t->expires;
	if (exp <= now) {
		expired_append(w, t);
		return;
	}
	unsigned level = (unsigned)(63 - __builtin_clzll(now ^ exp)) / WHEEL_BITS;
	if (level < WHEEL_LEVELS) {
		slot_push(w, t, level, digit(exp, level));
		return;
	}
	unsigned shift = WHEEL_TOP * WHEEL_BITS;
	uint64_t ahead = (exp >> shift) - (now >> shift);
	slot_push(w, t, WHEEL_TOP, digit(ahead <= WHEEL_SLOTS ? exp : now, WHEEL_TOP));
}

static bool slot_empty(const lanes_wheel *w, unsigned level, unsigned slot)
{
	if (w->slots[level][slot])
		return false;
	for (unsigned i = 0; i < WHEEL_LANES - 1; i++)
		if (w->lanes[level][slot][i])
			return false;
	return true;
}

/* The last timer of a lane was unlinked: if pprev is a lane head (not a
 * timer's next field nor the expired list), find its slot and clear the
 * slot's pending bit when all its lanes are empty. */
static void slot_maybe_emptied(lanes_wheel *w, wheel_timer **pprev)
{
	size_t idx;
	uintptr_t off = (uintptr_t)pprev - (uintptr_t)&w->slots[0][0];
	if (off < sizeof w->slots) {
		idx = off / sizeof(wheel_timer *);
	} else {
		off = (uintptr_t)pprev - (uintptr_t)&w->lanes[0][0][0];
		if (off >= sizeof w->lanes)
			return;
		idx = off / sizeof(wheel_timer *) / (WHEEL_LANES - 1);
	}
	unsigned level = (unsigned)(idx / WHEEL_SLOTS), slot = (unsigned)(idx % WHEEL_SLOTS);
	if (slot_empty(w, level, slot))
		w->pending[level] &= ~((uint64_t)1 << slot);
}

/* Unlink a pending t; keeps invariants 2 and 4. */
static void unlink_timer(lanes_wheel *w, wheel_timer *t)
{
	wheel_timer **pprev = t->pprev;
	if (w->expired_tail == &t->next)
		w->expired_tail = pprev;
	*pprev = t->next;
	if (t->next) {
		t->next->pprev = pprev;
	} else {
		slot_maybe_emptied(w, pprev);
	}
	t->next = NULL;
	t->pprev = NULL;
}

void lanes_wheel_add(lanes_wheel *w, wheel_timer *t, uint64_t expires)
{
	if (t->pprev)
		unlink_timer(w, t);
	t->expires = expires;
	place(w, t);
}

void lanes_wheel_cancel(lanes_wheel *w, wheel_timer *t)
{
	if (t->pprev)
		unlink_timer(w, t);
}

/* Slots of one level whose P falls in (old, new]: digits old+1 .. old+n. */
static uint64_t due_mask(uint64_t old, uint64_t now, unsigned level)
{
	unsigned shift = level * WHEEL_BITS;
	uint64_t n = (now >> shift) - (old >> shift);
	if (n >= WHEEL_SLOTS)
		return ~(uint64_t)0;
	uint64_t run = ((uint64_t)1 << n) - 1;
	return rotl64(run, digit(old, level) + 1);
}

/*
 * Detach one slot and re-place its timers against w->now. The lanes are
 * walked in lockstep, prefetching each lane's next timer, so that up to
 * WHEEL_LANES cache misses are in flight instead of one: walking a long
 * list of scattered timers is otherwise bound by memory latency.
 */
static void slot_process(lanes_wheel *w, unsigned level, unsigned slot)
{
	wheel_timer *cur[WHEEL_LANES];
	unsigned live = 0;
	for (unsigned i = 0; i < WHEEL_LANES; i++) {
		wheel_timer **head = head_of(w, level, slot, i);
		cur[i] = *head;
		*head = NULL;
		live |= (cur[i] != NULL) << i;
	}
	w->pending[level] &= ~((uint64_t)1 << slot);
	while (live) {
		for (unsigned i = 0; i < WHEEL_LANES; i++) {
			wheel_timer *t = cur[i];
			if (!t)
				continue;
			cur[i] = t->next;
			if (cur[i])
				__builtin_prefetch(cur[i], 1);
			else
				live &= ~(1u << i);
			place(w, t);
		}
	}
}

/*
 * Levels are processed bottom-up, each level's due slots in clock order, so
 * level 0 fills the expired list in expiry order. A timer cascading down from
 * level L lands in a lower level already processed; it is placed against the
 * new clock, so it is correct there and is not visited twice.
 */
void lanes_wheel_update(lanes_wheel *w, uint64_t now)
{
	uint64_t old = w->now;
	if (now <= old)
		return;
	w->now = now;
	for (unsigned level = 0; level < WHEEL_LEVELS; level++) {
		unsigned shift = level * WHEEL_BITS;
		if ((now >> shift) == (old >> shift))
			break; /* higher levels have not moved either */
		uint64_t due = w->pending[level] & due_mask(old, now, level);
		unsigned first = digit(old, level) + 1;
		uint64_t rot = rotr64(due, first);
		while (rot) {
			unsigned slot = (first + (unsigned)__builtin_ctzll(rot)) & WHEEL_MASK;
			rot &= rot - 1;
			slot_process(w, level, slot);
		}
	}
}

wheel_timer *lanes_wheel_get_expired(lanes_wheel *w)
{
	wheel_timer *t = w->expired;
	if (!t)
		return NULL;
	w->expired = t->next;
	if (t->next)
		t->next->pprev = &w->expired;
	else
		w->expired_tail = &w->expired;
	t->next = NULL;
	t->pprev = NULL;
	return t;
}

/* Time until the first occupied slot of a level is processed (invariant 1:
 * never after any of its timers' expiries). */
static uint64_t level_timeout(const lanes_wheel *w, unsigned level)
{
	unsigned shift = level * WHEEL_BITS;
	unsigned first = digit(w->now, level) + 1;
	uint64_t dist = (uint64_t)__builtin_ctzll(rotr64(w->pending[level], first)) + 1;
	uint64_t below = w->now & (((uint64_t)1 << shift) - 1);
	return (dist << shift) - below;
}

uint64_t lanes_wheel_timeout(const lanes_wheel *w)
{
	if (w->expired)
		return 0;
	uint64_t best = UINT64_MAX;
	for (unsigned level = 0; level < WHEEL_LEVELS; level++) {
		if (!w->pending[level])
			continue;
		uint64_t t = level_timeout(w, level);
		if (t < best)
			best = t;
	}
	return best;
}
