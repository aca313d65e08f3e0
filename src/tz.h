/*
 * tz — IANA time zones read from the system zoneinfo (TZif v1/v2/v3 files,
 * including the POSIX TZ footer for instants past the last transition), so
 * that cron schedules can be computed in any zone without touching the
 * process-wide TZ variable. Loaded zones are cached for the life of the
 * process and immutable: a const tz * may be shared between threads.
 */
#ifndef FK_TZ_H
#define FK_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct tz tz;

/* A civil (wall-clock) time in some zone, proleptic Gregorian. */
typedef struct {
	int year;   /* e.g. 2026 */
	int month;  /* 1..12 */
	int day;    /* 1..31 */
	int hour;   /* 0..23 */
	int minute; /* 0..59 */
	int second; /* 0..59 */
} tz_civil;

/* name: an IANA name ("Europe/Berlin"), "UTC", or NULL/"" for the local
 * zone (TZ environment variable, else /etc/localtime, else UTC).
 * Thread-safe. 0, or -1 with a reason in err naming the zone. */
int tz_load(const char *name, const tz **out, char *err, size_t errlen);
const char *tz_name(const tz *zone);

/* UTC offset in seconds east of Greenwich at instant t (unix seconds). */
int32_t tz_offset_at(const tz *zone, int64_t t);
/* The civil time at instant t. */
void tz_to_civil(const tz *zone, int64_t t, tz_civil *out);

/*
 * The instants at which civil time c occurs in the zone:
 *  returns 1: one instant, in *first;
 *  returns 2: a repeated (fall-back) time: *first earlier, *second later;
 *  returns 0: a skipped (spring-forward) time: *first is the instant of the
 *             transition that skipped it (the first valid instant after it).
 */
int tz_from_civil(const tz *zone, const tz_civil *c, int64_t *first, int64_t *second);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
int64_t tz_days_from_civil(int year, int month, int day);
/* YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|+HH:MM|+HHMM]; without an offset the
 * time is civil time in zone (the earlier instant of an ambiguous one).
 * 0, or -1 for anything else, impossible dates (2026-02-30) included. */
int tz_parse_iso8601(const char *s, const tz *zone, int64_t *out);
void tz_civil_from_days(int64_t days, int *year, int *month, int *day);

#endif
