/*
 * wheel — hierarchical timer wheel (see wheel.h).
 *
 * Level L (0..5) has 64 slots of 2^(6L) ms each; slot digit s at level L is
 * bits [6L, 6L+6) of a time. A slot is "processed" when the wheel's clock
 * next enters a time whose level-L digit is s at a 2^(6L) boundary; call that
 * moment P(L, s). Processing re-places every timer in the slot against the
 * new clock: it goes to the expired list if due, else to a lower level.
 *
 * Placement: the level is the highest 6-bit group in which now and expires
 * differ, level = (fls(now ^ expires) - 1) / 6, and the slot is the expiry's
 * digit there. Then P(L, s) is expires with its low 6L bits cleared: never
 * after the expiry, exact at level 0. An expiry in a later 2^36 block (xor
 * level >= 6) goes to the top level: to its own digit when at most 64 top
 * units ahead (P is again its truncated expiry), otherwise to the slot of
 * now's own digit, which is processed after a full turn (2^36 ms) and
 * re-places the timer — the overflow case.
 *
 * A slot is one list. (It used to be four "lanes" walked in lockstep with
 * prefetches; bench_wheel showed they do not pay at the sizes a daemon has,
 * 10 to 50,000 timers: README, "Performance".)
 *
 * Invariants:
 *  1. Every timer in slot (L, s) has expires >= P(L, s) > now.
 *  2. pending[L] bit s is set iff slot (L, s) is non-empty.
 *  3. A timer is pending (pprev != NULL) iff it is in exactly one slot list
 *     or on the expired list; pprev points at the previous link (a slot
 *     head, w->expired, or the previous timer's next).
 *  4. expired_tail points at the last next field of the expired list (or at
 *     w->expired when it is empty). Hence the wheel must not be moved
 *     (copied) after wheel_init.
 *
 * wheel_add with expires <= now appends straight to the expired list, so
 * wheel_get_expired returns it without waiting for a wheel_update.
 *
 * What one wheel_update expires is taken in expiry order (the daemon
 * dispatches fires in fire-time order). Level 0 fills the list in order,
 * but a late update processes whole slots of upper levels, whose lists are
 * in no particular order: the update then sorts the part it appended (a
 * merge sort; in the common case the check costs one comparison per
 * timer). Everything already on the list expired before it, so the whole
 * list stays in order, except for timers added already due, which queue
 * behind. The wheel
 * owns no memory: timers belong to their owners, who must cancel a pending
 * timer before freeing it.
 */
#include "wheel.h"

#define WHEEL_MASK ((uint64_t)WHEEL_SLOTS - 1)
#define WHEEL_TOP  (WHEEL_LEVELS - 1)

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

void wheel_init(wheel *w, uint64_t now)
{
	*w = (wheel){.now = now};
	w->expired_tail = &w->expired;
}

void wheel_timer_init(wheel_timer *t)
{
	*t = (wheel_timer){0};
}

bool wheel_timer_pending(const wheel_timer *t)
{
	return t->pprev != NULL;
}

static void expired_append(wheel *w, wheel_timer *t)
{
	t->next = NULL;
	t->pprev = w->expired_tail;
	*w->expired_tail = t;
	w->expired_tail = &t->next;
}

static void slot_push(wheel *w, wheel_timer *t, unsigned level, unsigned slot)
{
	wheel_timer **head = &w->slots[level][slot];
	t->next = *head;
	if (t->next)
		t->next->pprev = &t->next;
	t->pprev = head;
	*head = t;
	w->pending[level] |= (uint64_t)1 << slot;
}

/* Put t (not linked anywhere) where it belongs relative to w->now. */
static void place(wheel *w, wheel_timer *t)
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

/* The last timer of a list was unlinked: if pprev is a slot head (not a
 * timer's next field nor the expired list), that slot is now empty. */
static void slot_maybe_emptied(wheel *w, wheel_timer **pprev)
{
	uintptr_t off = (uintptr_t)pprev - (uintptr_t)&w->slots[0][0];
	if (off >= sizeof w->slots)
		return;
	size_t idx = off / sizeof(wheel_timer *);
	w->pending[idx / WHEEL_SLOTS] &= ~((uint64_t)1 << (idx % WHEEL_SLOTS));
}

/* Unlink a pending t; keeps invariants 2 and 4. */
static void unlink_timer(wheel *w, wheel_timer *t)
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

void wheel_add(wheel *w, wheel_timer *t, uint64_t expires)
{
	if (t->pprev)
		unlink_timer(w, t);
	t->expires = expires;
	place(w, t);
}

void wheel_cancel(wheel *w, wheel_timer *t)
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

/* Detach one slot and re-place its timers against w->now. */
static void slot_process(wheel *w, unsigned level, unsigned slot)
{
	wheel_timer *t = w->slots[level][slot];
	w->slots[level][slot] = NULL;
	w->pending[level] &= ~((uint64_t)1 << slot);
	while (t) {
		wheel_timer *next = t->next;
		place(w, t);
		t = next;
	}
}

/* Stable merge of two lists sorted by expiry (next links only). */
static wheel_timer *merge(wheel_timer *a, wheel_timer *b)
{
	wheel_timer *head = NULL, **tail = &head;
	while (a && b) {
		wheel_timer **take = b->expires < a->expires ? &b : &a;
		*tail = *take;
		*take = (*take)->next;
		tail = &(*tail)->next;
	}
	*tail = a ? a : b;
	return head;
}

static wheel_timer *merge_sort(wheel_timer *h)
{
	if (h == NULL || h->next == NULL)
		return h;
	wheel_timer *slow = h, *fast = h->next;
	while (fast && fast->next) {
		slow = slow->next;
		fast = fast->next->next;
	}
	wheel_timer *second = slow->next;
	slow->next = NULL;
	return merge(merge_sort(h), merge_sort(second));
}

/* Sort the end of the expired list from the link `from` on by expiry, and
 * relink pprev and the tail (invariants 3 and 4). */
static void expired_sort_from(wheel *w, wheel_timer **from)
{
	bool sorted = true;
	for (wheel_timer *t = *from; t && t->next && sorted; t = t->next)
		sorted = t->expires <= t->next->expires;
	if (sorted)
		return;
	*from = merge_sort(*from);
	wheel_timer **pprev = from;
	for (wheel_timer *t = *from; t; t = t->next) {
		t->pprev = pprev;
		pprev = &t->next;
	}
	w->expired_tail = pprev;
}

/*
 * Levels are processed bottom-up, each level's due slots in clock order, so
 * level 0 fills the expired list in expiry order. A timer cascading down from
 * level L lands in a lower level already processed; it is placed against the
 * new clock, so it is correct there and is not visited twice.
 */
void wheel_update(wheel *w, uint64_t now)
{
	uint64_t old = w->now;
	if (now <= old)
		return;
	w->now = now;
	wheel_timer **appended = w->expired_tail;
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
	expired_sort_from(w, appended);
}

wheel_timer *wheel_peek_expired(wheel *w)
{
	return w->expired;
}

wheel_timer *wheel_get_expired(wheel *w)
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
static uint64_t level_timeout(const wheel *w, unsigned level)
{
	unsigned shift = level * WHEEL_BITS;
	unsigned first = digit(w->now, level) + 1;
	uint64_t dist = (uint64_t)__builtin_ctzll(rotr64(w->pending[level], first)) + 1;
	uint64_t below = w->now & (((uint64_t)1 << shift) - 1);
	return (dist << shift) - below;
}

uint64_t wheel_timeout(const wheel *w)
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
