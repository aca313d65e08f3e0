/*
 * wheel_lanes — the benchmark's copy of the timer wheel as it was with
 * "lanes" (each slot split into WHEEL_LANES chains walked in lockstep with
 * prefetches), kept only so that bench_wheel can measure src/wheel.c against
 * it in the same run. Same algorithm and API as wheel.h, prefixed lanes_;
 * timers are the same wheel_timer. Not part of fleetkeeper.
 */
#ifndef FK_WHEEL_LANES_H
#define FK_WHEEL_LANES_H

#include "wheel.h"

#define WHEEL_LANES 4 /* chains per slot */

typedef struct {
	uint64_t now;
	uint64_t pending[WHEEL_LEVELS]; /* occupied-slot bitmaps */
	wheel_timer *slots[WHEEL_LEVELS][WHEEL_SLOTS];
	wheel_timer *expired; /* due, not yet taken */
	wheel_timer **expired_tail;
	/* a slot is WHEEL_LANES chains walked in parallel when it is
	 * processed; slots[l][s] is lane 0, these are lanes 1.. */
	wheel_timer *lanes[WHEEL_LEVELS][WHEEL_SLOTS][WHEEL_LANES - 1];
} lanes_wheel;

void lanes_wheel_init(lanes_wheel *w, uint64_t now);
void lanes_wheel_add(lanes_wheel *w, wheel_timer *t, uint64_t expires);
void lanes_wheel_cancel(lanes_wheel *w, wheel_timer *t);
void lanes_wheel_update(lanes_wheel *w, uint64_t now);
wheel_timer *lanes_wheel_get_expired(lanes_wheel *w);
uint64_t lanes_wheel_timeout(const lanes_wheel *w);

#endif
