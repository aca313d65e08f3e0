/*
 * clock — the only place that reads clocks. Monotonic time drives intervals,
 * timeouts and the timer wheel; wall-clock time drives cron and timestamps.
 * Every other module takes time as an argument.
 */
#ifndef FK_CLOCK_H
#define FK_CLOCK_H

#include <stdint.h>

int64_t clock_mono_ms(void);   /* CLOCK_MONOTONIC, milliseconds */
int64_t clock_wall_usec(void); /* CLOCK_REALTIME, microseconds since the epoch */
double clock_wall(void);       /* CLOCK_REALTIME, seconds since the epoch */

#endif
