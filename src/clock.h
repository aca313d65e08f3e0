/*
 * clock — the only place that reads clocks. Monotonic time drives intervals,
 * timeouts and the timer wheel; wall-clock time drives cron and timestamps.
 * Every other module takes time as an argument.
 */
#ifndef FK_CLOCK_H
#define FK_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

int64_t clock_mono_ms(void);   /* CLOCK_MONOTONIC, milliseconds */
int64_t clock_mono_usec(void); /* CLOCK_MONOTONIC, microseconds */
int64_t clock_wall_usec(void); /* CLOCK_REALTIME, microseconds since the epoch */
double clock_wall(void);       /* CLOCK_REALTIME, seconds since the epoch */

/* CLOCK_REALTIME minus CLOCK_MONOTONIC in milliseconds: constant while
 * nobody sets the wall clock (NTP slewing moves it by at most 0.5 ms/s). */
int64_t clock_wall_offset_ms(void);
/* Whether the offset moved from `before` to `after` over `elapsed_ms` of
 * monotonic time by more than slewing explains: 1 s plus 1 ms per second. */
bool clock_offset_stepped(int64_t before, int64_t after, int64_t elapsed_ms);

#endif
