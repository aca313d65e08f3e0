/*
 * duration — "90s", "5m", "1h30m", "500ms", "2d", or a bare number of
 * seconds, into milliseconds. Used by the configuration and by "@every".
 */
#ifndef FK_DURATION_H
#define FK_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* 0 on success; -1 with a reason in err (e.g. "unknown unit 'x'"). Negative,
 * empty and overflowing values are errors. */
int duration_parse(const char *text, int64_t *out_ms, char *err, size_t errlen);

/* Shortest form: "1h30m", "90s" -> "1m30s", "250ms". buf of 32 is enough. */
void duration_format(int64_t ms, char *buf, size_t cap);

#endif
