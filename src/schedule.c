/*
 * schedule — cron expressions and intervals (see schedule.h and
 * docs/scheduling.md for the rules).
 *
 * A cron schedule is five bitmasks. schedule_next works in two layers:
 *
 *  1. civil_next: the first matching civil (wall-clock) minute at or after a
 *     given civil time, found by stepping month -> day -> hour -> minute with
 *     ctz on the masks shifted past the current value, carrying over; never
 *     minute by minute. Bounded by one 400-year Gregorian cycle, in which
 *     every possible (month, day, weekday) combination occurs.
 *  2. cron_next: maps civil minutes to instants with tz_from_civil and
 *     applies the DST rules: in a gap, hour-restricted schedules fire once at
 *     the transition, others skip; in a repeated hour, hour-restricted
 *     schedules fire at the first occurrence only, others at both.
 *
 * Invariants: schedule_next(s, z, t) > t, the result is the smallest fire
 * instant greater than t (so chaining next never repeats or skips a fire
 * time), and is a whole minute unless it is a DST transition instant that
 * is not one. Pure functions: no clock is read, no memory is allocated.
 */
#include "schedule.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "duration.h"

#define SECS_PER_DAY 86400
/* Every fall-back is shorter than this; also the lookahead for one. */
#define DST_WINDOW   (4 * 3600)
#define YEAR_HORIZON 400
/* Instants beyond about +-100,000 years are not scheduled. */
#define TIME_LIMIT ((int64_t)3155760000000)
/* "No such time": instants may be negative (before 1970). */
#define NONE INT64_MIN

typedef struct {
	const char *name; /* for error messages */
	int lo, hi;
	const char *const *names; /* 3-letter names for lo.., or NULL */
} field_spec;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const field_spec fields[5] = {
        {"minute", 0, 59, NULL},           {"hour", 0, 23, NULL},
        {"day-of-month", 1, 31, NULL},     {"month", 1, 12, month_names},
        {"day-of-week", 0, 7, wday_names},
};

/* ---- parsing ---- */

/* A number or a name of the field; returns the end or NULL (err set). */
static const char *parse_value(const field_spec *f, const char *p, int *out, char *err,
                               size_t errlen)
{
	if (isdigit((unsigned char)*p)) {
		long v = 0;
		while (isdigit((unsigned char)*p)) {
			if (v < 1000)
				v = v * 10 + (*p - '0');
			p++;
		}
		if (v < f->lo || v > f->hi) {
			snprintf(err, errlen, "%s: value %ld out of range %d-%d", f->name, v, f->lo,
			         f->hi);
			return NULL;
		}
		*out = (int)v;
		return p;
	}
	const char *start = p;
	while (isalpha((unsigned char)*p))
		p++;
	size_t len = (size_t)(p - start);
	if (len == 0) {
		snprintf(err, errlen, "%s: expected a number at '%.20s'", f->name, start);
		return NULL;
	}
	for (int i = 0; f->names && f->names[i]; i++) {
		if (len == 3 && strncasecmp(start, f->names[i], 3) == 0) {
			*out = f->lo + i;
			return p;
		}
	}
	if (f->names)
		snprintf(err, errlen, "%s: unknown name '%.*s'", f->name, (int)len, start);
	else
		snprintf(err, errlen, "%s: bad value '%.*s' (names are not allowed here)", f->name,
		         (int)len, start);
	return NULL;
}

static const char *parse_step(const field_spec *f, const char *p, int *step, char *err,
                              size_t errlen)
{
	const char *start = p;
	long v = 0;
	while (isdigit((unsigned char)*p)) {
		if (v < 1000)
			v = v * 10 + (*p - '0');
		p++;
	}
	if (p == start || v == 0 || v > f->hi - f->lo + 1 || (*p && *p != ',')) {
		const char *end = start + strcspn(start, ",");
		snprintf(err, errlen, "%s: bad step '%.*s'", f->name, (int)(end - start), start);
		return NULL;
	}
	*step = (int)v;
	return p;
}

/* One list element: *, *\/n, a, a-b, a-b/n, a/n (= a-max/n). */
static const char *parse_element(const field_spec *f, const char *p, uint64_t *mask, char *err,
                                 size_t errlen)
{
	int lo = f->lo, hi = f->hi, step = 1;
	bool single = false;

	if (*p == '*') {
		p++;
	} else {
		if (!(p = parse_value(f, p, &lo, err, errlen)))
			return NULL;
		if (*p == '-') {
			if (!(p = parse_value(f, p + 1, &hi, err, errlen)))
				return NULL;
			if (hi < lo) {
				snprintf(err, errlen, "%s: bad range %d-%d (start after end)",
				         f->name, lo, hi);
				return NULL;
			}
		} else if (*p != '/') {
			single = true;
		}
	}
	if (*p == '/' && !(p = parse_step(f, p + 1, &step, err, errlen)))
		return NULL;
	if (*p != '\0' && *p != ',') {
		snprintf(err, errlen, "%s: unexpected '%c'", f->name, *p);
		return NULL;
	}
	if (single)
		hi = lo;
	for (int v = lo; v <= hi; v += step)
		*mask |= (uint64_t)1 << v;
	return p;
}

/* A whole field (NUL-terminated copy) into mask. */
static int parse_field(const field_spec *f, const char *text, uint64_t *mask, char *err,
                       size_t errlen)
{
	const char *p = text;
	*mask = 0;
	for (;;) {
		if (*p == ',' || *p == '\0') {
			snprintf(err, errlen, "%s: empty list element in '%s'", f->name, text);
			return -1;
		}
		if (!(p = parse_element(f, p, mask, err, errlen)))
			return -1;
		if (*p == '\0')
			return 0;
		p++; /* ',' */
	}
}

static int parse_interval(schedule *out, const char *arg, char *err, size_t errlen)
{
	char derr[160];
	int64_t ms;
	while (isspace((unsigned char)*arg))
		arg++;
	if (*arg == '\0') {
		snprintf(err, errlen, "@every: missing duration (e.g. @every 90s)");
		return -1;
	}
	if (duration_parse(arg, &ms, derr, sizeof derr) != 0) {
		snprintf(err, errlen, "@every: %s", derr);
		return -1;
	}
	if (ms < 1000) {
		snprintf(err, errlen, "@every: interval must be at least 1s");
		return -1;
	}
	memset(out, 0, sizeof *out);
	out->kind = SCHEDULE_INTERVAL;
	out->interval_ms = ms;
	return 0;
}

static int parse_cron(schedule *out, const char *expr, char *err, size_t errlen);

static int parse_shorthand(schedule *out, const char *expr, char *err, size_t errlen)
{
	static const struct {
		const char *name, *cron;
	} shorts[] = {
	        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
	        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
	        {"@hourly", "0 * * * *"},
	};
	size_t len = strcspn(expr, " \t\r\n\v\f");
	const char *rest = expr + len;

	if (len == 6 && strncasecmp(expr, "@every", 6) == 0)
		return parse_interval(out, rest, err, errlen);
	while (isspace((unsigned char)*rest))
		rest++;
	for (size_t i = 0; i < sizeof shorts / sizeof shorts[0]; i++) {
		if (strlen(shorts[i].name) == len && strncasecmp(expr, shorts[i].name, len) == 0) {
			if (*rest) {
				snprintf(err, errlen, "%s takes no arguments", shorts[i].name);
				return -1;
			}
			return parse_cron(out, shorts[i].cron, err, errlen);
		}
	}
	snprintf(err, errlen, "unknown shorthand '%.*s'", (int)(len > 40 ? 40 : len), expr);
	return -1;
}

/* Split expr into exactly 5 whitespace-separated fields. */
static int split_fields(const char *expr, char buf[5][128], char *err, size_t errlen)
{
	const char *p = expr;
	int n = 0;
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		size_t len = strcspn(p, " \t\r\n\v\f");
		if (n < 5) {
			if (len >= 128) {
				snprintf(err, errlen, "%s: field too long", fields[n].name);
				return -1;
			}
			memcpy(buf[n], p, len);
			buf[n][len] = '\0';
		}
		n++;
		p += len;
	}
	if (n != 5) {
		snprintf(err, errlen, "expected 5 fields, got %d", n);
		return -1;
	}
	return 0;
}

static int parse_cron(schedule *out, const char *expr, char *err, size_t errlen)
{
	char text[5][128];
	uint64_t m[5];
	if (split_fields(expr, text, err, errlen) != 0)
		return -1;
	for (int i = 0; i < 5; i++)
		if (parse_field(&fields[i], text[i], &m[i], err, errlen) != 0)
			return -1;
	memset(out, 0, sizeof *out);
	out->kind = SCHEDULE_CRON;
	out->minutes = m[0];
	out->hours = (uint32_t)m[1];
	out->mdays = (uint32_t)m[2];
	out->months = (uint16_t)m[3];
	out->wdays = (uint8_t)((m[4] | (m[4] >> 7)) & 0x7f); /* 7 is Sunday too */
	out->hour_restricted = text[1][0] != '*';
	out->dom_restricted = text[2][0] != '*';
	out->dow_restricted = text[4][0] != '*';
	return 0;
}

int schedule_parse(schedule *out, const char *expr, char *err, size_t errlen)
{
	const char *p = expr;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0') {
		snprintf(err, errlen, "empty schedule");
		return -1;
	}
	if (*p == '@')
		return parse_shorthand(out, p, err, errlen);
	return parse_cron(out, p, err, errlen);
}

/* ---- civil search ---- */

static bool leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && leap_year(y) ? 29 : mdays[m - 1];
}

/* Days since 1970-01-01 of the first of a month (as tz_days_from_civil,
 * here so that it inlines into the search loop). */
static int64_t month_start(int y, int m)
{
	int64_t yy = (int64_t)y - (m <= 2);
	int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
	int64_t yoe = yy - era * 400;
	int64_t doy = (153 * ((m + 9) % 12) + 2) / 5;
	return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* Bit d (1..31) set for the days of month y-m that match the day fields;
 * *d1 is the day number of the 1st. */
static uint32_t day_mask(const schedule *s, int y, int m, int64_t *d1out)
{
	int64_t d1 = month_start(y, m);
	*d1out = d1;
	unsigned w1 = (unsigned)(((d1 + 4) % 7 + 7) % 7); /* weekday of the 1st */
	unsigned w = s->wdays;
	uint32_t week = ((w >> w1) | (w << (7 - w1))) & 0x7f; /* bit k: day 1+k */
	uint32_t dow = (week | week << 7 | week << 14 | week << 21 | week << 28) << 1;
	uint32_t valid = (uint32_t)((((uint64_t)1 << month_days(y, m)) - 1) << 1);
	uint32_t days =
	        s->dom_restricted && s->dow_restricted ? (s->mdays | dow) : (s->mdays & dow);
	return days & valid;
}

static uint64_t bits_from(uint64_t mask, int from)
{
	return from >= 64 ? 0 : mask & (~(uint64_t)0 << from);
}

/* The first matching civil minute at or after local seconds `local`, as
 * local seconds, or NONE if there is none within the horizon. */
static int64_t civil_next(const schedule *s, int64_t local)
{
	int64_t days = local / SECS_PER_DAY - (local % SECS_PER_DAY < 0);
	int mins = ((int)(local - days * SECS_PER_DAY) + 59) / 60; /* round seconds up */
	int y, m, d, h = mins / 60, mi = mins % 60;
	uint64_t b;
	int64_t d1;

	tz_civil_from_days(days, &y, &m, &d);
	int y_end = y + YEAR_HORIZON;
	for (;;) {
		if (h >= 24) {
			d++;
			h = mi = 0;
		}
		if (!(s->months >> m & 1)) {
			b = bits_from(s->months, m + 1);
			if (!b) {
				if (++y > y_end)
					return NONE;
				b = s->months;
			}
			m = __builtin_ctzll(b);
			d = 1;
			h = mi = 0;
		}
		b = bits_from(day_mask(s, y, m, &d1), d);
		if (!b) {
			if (++m > 12) {
				m = 1;
				if (++y > y_end)
					return NONE;
			}
			d = 1;
			h = mi = 0;
			continue;
		}
		if ((int)__builtin_ctzll(b) != d) {
			d = __builtin_ctzll(b);
			h = mi = 0;
		}
		b = bits_from(s->hours, h);
		if (!b) {
			h = 24;
			continue;
		}
		if ((int)__builtin_ctzll(b) != h) {
			h = __builtin_ctzll(b);
			mi = 0;
		}
		b = bits_from(s->minutes, mi);
		if (!b) {
			h++;
			mi = 0;
			continue;
		}
		mi = __builtin_ctzll(b);
		return (d1 + d - 1) * SECS_PER_DAY + h * 3600 + mi * 60;
	}
}

/* ---- mapping to instants (DST) ---- */

static void civil_of_local(int64_t local, tz_civil *c)
{
	int64_t days = local / SECS_PER_DAY - (local % SECS_PER_DAY < 0);
	int secs = (int)(local - days * SECS_PER_DAY);
	tz_civil_from_days(days, &c->year, &c->month, &c->day);
	c->hour = secs / 3600;
	c->minute = secs / 60 % 60;
	c->second = secs % 60;
}

/* The earliest fire instant >= t0 that civil minute `local` yields, or NONE. */
static int64_t fire_instant(const schedule *s, const tz *zone, int64_t local, int64_t t0)
{
	tz_civil c;
	int64_t a, b;
	civil_of_local(local, &c);
	int n = tz_from_civil(zone, &c, &a, &b);
	if (n == 0) /* skipped: fire at the jump, if the hour was asked for */
		return s->hour_restricted && a >= t0 ? a : NONE;
	if (a >= t0)
		return a;
	if (n == 2 && !s->hour_restricted && b >= t0)
		return b;
	return NONE;
}

/* The first instant in (t0, t0 + DST_WINDOW] at which the offset has
 * dropped below o0 (a fall-back), given that it has by t0 + DST_WINDOW. */
static int64_t fall_back_at(const tz *zone, int64_t t0, int32_t o0)
{
	int64_t lo = t0, hi = t0 + DST_WINDOW;
	while (hi - lo > 1) {
		int64_t mid = lo + (hi - lo) / 2;
		if (tz_offset_at(zone, mid) < o0)
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/* Where civil search must start so that no fire instant >= t0 is missed:
 * the civil time at t0; or the start of the gap if t0 is the instant of a
 * spring-forward (the skipped minutes fire at t0); or earlier if a
 * fall-back follows shortly (the repeated minutes occur again). */
static int64_t civil_start(const tz *zone, int64_t t0, int32_t *o0out)
{
	int32_t o0 = *o0out = tz_offset_at(zone, t0);
	int32_t o1 = tz_offset_at(zone, t0 + DST_WINDOW);
	int32_t oprev = tz_offset_at(zone, t0 - 1);
	int64_t start = t0 + (oprev < o0 ? oprev : o0);
	if (o1 >= o0)
		return start;
	int64_t fb = fall_back_at(zone, t0, o0);
	int64_t after_fb = fb + tz_offset_at(zone, fb);
	return after_fb < start ? after_fb : start;
}

static int64_t cron_next(const schedule *s, const tz *zone, int64_t t0)
{
	int32_t o0;
	int64_t local = civil_start(zone, t0, &o0);
	int64_t best = NONE, best_local = 0;
	int64_t m = civil_next(s, local);

	/* The common case: m has the offset of t0 and no fall-back precedes
	 * it closely, so it occurs once (or first) and nothing comes earlier. */
	int64_t f = m - o0;
	if (m != NONE && f >= t0 && tz_offset_at(zone, f) == o0 &&
	    tz_offset_at(zone, f - DST_WINDOW) == o0)
		return f;
	for (;; m = civil_next(s, local)) {
		if (m == NONE || (best != NONE && m > best_local + DST_WINDOW))
			break;
		f = fire_instant(s, zone, m, t0);
		if (f != NONE && best == NONE) {
			/* Without a fall-back just before it, nothing with a later
			 * civil time can come earlier: done (the common case). */
			if (tz_offset_at(zone, f - DST_WINDOW) <= tz_offset_at(zone, f))
				return f;
			best = f;
			best_local = m;
		} else if (f != NONE && f < best) {
			best = f;
		} else if (f == NONE && best == NONE) {
			tz_civil c;
			int64_t a, b;
			civil_of_local(m, &c);
			/* An unrestricted schedule in a gap: resume at the jump. */
			if (tz_from_civil(zone, &c, &a, &b) == 0 && a >= t0) {
				int64_t jump = a + tz_offset_at(zone, a);
				local = jump > m ? jump : m + 60;
				continue;
			}
		}
		local = m + 60;
	}
	return best == NONE ? -1 : best;
}

int64_t schedule_next(const schedule *s, const tz *zone, int64_t after)
{
	if (after < -TIME_LIMIT || after > TIME_LIMIT)
		return -1;
	if (s->kind == SCHEDULE_INTERVAL)
		return after + (s->interval_ms + 999) / 1000;
	if (!schedule_can_fire(s))
		return -1;
	int64_t t0 = (after / 60 - (after % 60 < 0)) * 60 + 60; /* next whole minute */
	return cron_next(s, zone, t0);
}

bool schedule_can_fire(const schedule *s)
{
	if (s->kind == SCHEDULE_INTERVAL)
		return s->interval_ms > 0;
	if (!s->minutes || !s->hours || !s->months || !s->mdays || !s->wdays)
		return false;
	if (s->dom_restricted && s->dow_restricted)
		return true; /* any weekday occurs in every month */
	for (int m = 1; m <= 12; m++) {
		int max = m == 2 ? 29 : month_days(2001, m);
		if ((s->months >> m & 1) && (s->mdays & (uint32_t)(((uint64_t)1 << (max + 1)) - 2)))
			return true;
	}
	return false;
}
