/*
 * duration — "90s", "5m", "1h30m", "500ms", "2d", or a bare number of
 * seconds, into milliseconds. Used by the configuration and by "@every".
 * Pure functions, any thread; errors are returned with a message in err.
 *
 * Every duration is at most DURATION_MAX_MS (3650 days, about 10 years):
 * intervals, timeouts, jitter and graces past that are mistakes (an
 * "@every 106751991d" overflowed the fire-time arithmetic and was shown as
 * year 0000), and the limit keeps now + interval + jitter far inside int64
 * milliseconds and time_t.
 */
#ifndef FK_DURATION_H
#define FK_DURATION_H

#include <stddef.h>
#include <stdint.h>

#define DURATION_MAX_DAYS 3650
#define DURATION_MAX_MS   ((int64_t)DURATION_MAX_DAYS * 86400000)

/* 0 on success; -1 with a reason in err (e.g. "unknown unit 'x'"). Negative,
 * empty and overflowing values, and values past DURATION_MAX_MS, are errors. */
int duration_parse(const char *text, int64_t *out_ms, char *err, size_t errlen);

/* Shortest form: "1h30m", "90s" -> "1m30s", "250ms". buf of 32 is enough. */
void duration_format(int64_t ms, char *buf, size_t cap);

#endif
