/*
 * wheel — a hierarchical timer wheel (after wahern/timeout and the Linux
 * kernel's timer wheel).
 *
 * WHEEL_LEVELS levels of 64 slots each, with a 64-bit occupied-slot bitmap
 * per level so that the next expiry is found with count-trailing-zeros
 * instead of a scan. Millisecond ticks, 64-bit absolute expiries. Timers are
 * embedded in their owner (get it back with container_of), so adding never
 * allocates; add and cancel are O(1). The wheel never reads a clock: the
 * caller passes "now" in, which makes it deterministic to test.
 *
 * Threads: a wheel and its timers belong to one thread (the loop).
 */
#ifndef FK_WHEEL_H
#define FK_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WHEEL_BITS   6
#define WHEEL_SLOTS  (1u << WHEEL_BITS) /* 64 */
#define WHEEL_LEVELS 6                  /* 64^6 ms (~2.2 years); later ones wait on the top level */

typedef struct wheel_timer {
	struct wheel_timer *next;
	struct wheel_timer **pprev; /* NULL when not pending */
	uint64_t expires;           /* absolute, ms */
} wheel_timer;

typedef struct {
	uint64_t now;
	uint64_t pending[WHEEL_LEVELS]; /* occupied-slot bitmaps */
	wheel_timer *slots[WHEEL_LEVELS][WHEEL_SLOTS];
	wheel_timer *expired; /* due, not yet taken */
	wheel_timer **expired_tail;
} wheel;

#define wheel_container_of(ptr, type, member)                                                      \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

void wheel_init(wheel *w, uint64_t now);
void wheel_timer_init(wheel_timer *t);
bool wheel_timer_pending(const wheel_timer *t);

/* Arm t to expire at absolute time `expires` (re-arms if pending). An expiry
 * at or before now is due at the next wheel_update. */
void wheel_add(wheel *w, wheel_timer *t, uint64_t expires);
/* Disarm; harmless if not pending. */
void wheel_cancel(wheel *w, wheel_timer *t);

/* Advance to now (never backwards): every timer with expires <= now moves to
 * the expired list. */
void wheel_update(wheel *w, uint64_t now);
/* Take one expired timer (no longer pending), or NULL. The timers one
 * wheel_update expired come out in expiry order (ties in no set order),
 * also after a late update that took whole slots of upper levels at once;
 * they follow those expired before, and a timer added already due comes
 * after every timer due at that moment. */
wheel_timer *wheel_get_expired(wheel *w);
/* The timer wheel_get_expired would return next, left in place; or NULL. */
wheel_timer *wheel_peek_expired(wheel *w);
/* Milliseconds from now until the next expiry: 0 if one is due,
 * UINT64_MAX if nothing is armed. May be early (never late) for timers on
 * upper levels: the caller then just calls wheel_update again. */
uint64_t wheel_timeout(const wheel *w);

#endif
