/*
 * spread — the fixed fire offset of `[daemon] spread` (docs/scheduling.md,
 * "Spread"), as systemd's RandomizedDelaySec with FixedRandomDelay=yes: a
 * task that has no `jitter` of its own fires at its nominal times plus an
 * offset in [0, spread) derived from its name alone, so the offset is the
 * same at every fire, after every restart and on every machine, and a fleet
 * of tasks due at the top of the minute spreads evenly over the window.
 *
 * The offset is FNV-1a (64 bit) of the name, mixed by SplitMix64's
 * finalizer (FNV-1a alone keeps names that differ in their last character
 * close together in the low bits), reduced modulo the window in
 * milliseconds.
 *
 * Pure: no clock, no state, no allocation; callable from any thread. No
 * errors: a spread of 0 or less gives 0.
 */
#ifndef FK_SPREAD_H
#define FK_SPREAD_H

#include <stdint.h>

/* The offset in milliseconds of task `name` within a window of spread_ms:
 * 0 <= offset < spread_ms (0 when spread_ms <= 0). */
int64_t spread_offset_ms(const char *name, int64_t spread_ms);

/* The fixed delay the daemon adds to every fire of a task: its spread
 * offset, or 0 when the task has a jitter of its own (jitter_ms > 0), which
 * then draws a random delay for each fire instead. */
int64_t spread_task_offset_ms(const char *name, int64_t jitter_ms, int64_t spread_ms);

#endif
