/*
 * looptimer — a wheel timer with a callback, for the loop thread's own
 * timers (task fire times, run timeouts, control client idle timeouts, ...).
 * The loop takes each expired wheel_timer and calls looptimer_fire.
 */
#ifndef FK_LOOPTIMER_H
#define FK_LOOPTIMER_H

#include "wheel.h"

typedef struct looptimer looptimer;
typedef void (*looptimer_fn)(looptimer *t);

struct looptimer {
	wheel_timer wt; /* first: the wheel links through it */
	looptimer_fn fire;
};

static inline void looptimer_init(looptimer *t, looptimer_fn fire)
{
	wheel_timer_init(&t->wt);
	t->fire = fire;
}

static inline void looptimer_fire(wheel_timer *wt)
{
	looptimer *t = wheel_container_of(wt, looptimer, wt);
	t->fire(t);
}

#endif
