/*
 * schedule — when a task fires: cron expressions with Vixie cron / cronie
 * semantics, or fixed intervals ("@every 90s").
 *
 * Cron: 5 fields (minute hour day-of-month month day-of-week) with *, ranges,
 * steps, lists, month and weekday names, 0 and 7 both Sunday, and the
 * @yearly @annually @monthly @weekly @daily @midnight @hourly shorthands.
 * When both day-of-month and day-of-week are restricted, a day matches
 * either; a field that starts with '*' counts as unrestricted (cronie).
 *
 * Daylight saving (see docs/scheduling.md): a fire time that falls into a
 * skipped hour fires once, at the instant of the jump; a fire time in a
 * repeated hour fires once, at its first occurrence — except for schedules
 * whose hour field is unrestricted, which follow elapsed time (Vixie cron's
 * "wildcard jobs"). Intervals do not depend on the wall clock at all.
 *
 * Pure: no clock is read, time is passed in. A parsed schedule is a value;
 * the zone pointer is borrowed from tz's process-wide cache.
 */
#ifndef FK_SCHEDULE_H
#define FK_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tz.h"

typedef enum { SCHEDULE_CRON, SCHEDULE_INTERVAL } schedule_kind;

typedef struct {
	schedule_kind kind;
	int64_t interval_ms; /* SCHEDULE_INTERVAL */
	uint64_t minutes;    /* bit n: minute n */
	uint32_t hours;      /* bit n: hour n */
	uint32_t mdays;      /* bit n: day n (1..31) */
	uint16_t months;     /* bit n: month n (1..12) */
	uint8_t wdays;       /* bit n: weekday n (0 Sunday .. 6) */
	bool dom_restricted; /* day-of-month field did not start with '*' */
	bool dow_restricted;
	bool hour_restricted;
} schedule;

/* Parse expr. On error returns -1 and err names the field and why, e.g.
 * "hour: value 24 out of range 0-23". */
int schedule_parse(schedule *out, const char *expr, char *err, size_t errlen);

/*
 * The first fire time strictly after `after` (unix seconds) in zone, or -1 if
 * the schedule can never fire (e.g. "0 0 30 2 *": February 30th; the parser
 * accepts it like cron does, `next` reports that it never fires).
 * For intervals: after + interval (rounded up to whole seconds).
 */
int64_t schedule_next(const schedule *s, const tz *zone, int64_t after);

/* True if the schedule can ever fire (checked once at configuration time). */
bool schedule_can_fire(const schedule *s);

#endif
