/* Unit tests: cron and interval schedules, DST rules, and a randomized
 * cross-check of schedule_next against a brute-force minute scan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schedule.h"
#include "tz.h"

static int64_t utc(int y, int mo, int d, int h, int mi)
{
	return tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

static const tz *zone(const char *name)
{
	const tz *z = NULL;
	char err[256] = "";
	if (tz_load(name, &z, err, sizeof err) != 0)
		fail_msg("tz_load(%s): %s", name, err);
	return z;
}

static schedule parse(const char *expr)
{
	schedule s;
	char err[256] = "";
	if (schedule_parse(&s, expr, err, sizeof err) != 0)
		fail_msg("schedule_parse(%s): %s", expr, err);
	return s;
}

static void parse_fails(const char *expr, const char *message)
{
	schedule s;
	char err[256] = "";
	if (schedule_parse(&s, expr, err, sizeof err) != -1)
		fail_msg("'%s' parsed", expr);
	assert_string_equal(err, message);
}

/* The fire times of expr after `after`, chained, compared with want[]
 * (UTC instants, terminated by 0). */
static void expect_fires(const char *expr, const char *zname, int64_t after, const int64_t *want)
{
	schedule s = parse(expr);
	const tz *z = zone(zname);
	int64_t t = after;
	for (int i = 0; want[i] != 0; i++) {
		int64_t got = schedule_next(&s, z, t);
		if (got != want[i]) {
			tz_civil c;
			tz_to_civil(z, got, &c);
			fail_msg("%s in %s, fire %d after %lld: got %lld (%04d-%02d-%02d %02d:%02d "
			         "local), want %lld",
			         expr, zname, i, (long long)t, (long long)got, c.year, c.month,
			         c.day, c.hour, c.minute, (long long)want[i]);
		}
		t = got;
	}
}

#define FIRES(expr, zname, after, ...)                                                             \
	do {                                                                                       \
		const int64_t want_[] = {__VA_ARGS__, 0};                                          \
		expect_fires(expr, zname, after, want_);                                           \
	} while (0)

/* ---- parsing ---- */

static void test_parse_forms(void **state)
{
	(void)state;
	schedule s = parse("*/15 9-17 1,15 jan-mar,DEC mon-fri");
	assert_int_equal(s.kind, SCHEDULE_CRON);
	assert_true(s.minutes == ((1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45)));
	assert_int_equal(s.hours, 0x3fe00);
	assert_int_equal(s.mdays, (1u << 1) | (1u << 15));
	assert_int_equal(s.months, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 12));
	assert_int_equal(s.wdays, 0x3e);
	assert_true(s.dom_restricted);
	assert_true(s.dow_restricted);
	assert_true(s.hour_restricted);

	s = parse("  5 4 * * sun  ");
	assert_true(s.minutes == 1ull << 5);
	assert_int_equal(s.hours, 1u << 4);
	assert_int_equal(s.mdays, 0xfffffffe);
	assert_int_equal(s.months, 0x1ffe);
	assert_int_equal(s.wdays, 1);
	assert_false(s.dom_restricted);
	assert_true(s.dow_restricted);

	s = parse("0\t0,12\t1\t*/2\t*"); /* any whitespace separates */
	assert_int_equal(s.hours, (1u << 0) | (1u << 12));
	assert_int_equal(s.months,
	                 (1u << 1) | (1u << 3) | (1u << 5) | (1u << 7) | (1u << 9) | (1u << 11));
	s = parse("23 0-20/2 * * *");
	assert_int_equal(s.hours, 0x155555);
	s = parse("10/20 5/6 * * *"); /* a/n means a-max/n */
	assert_true(s.minutes == ((1ull << 10) | (1ull << 30) | (1ull << 50)));
	assert_int_equal(s.hours, (1u << 5) | (1u << 11) | (1u << 17) | (1u << 23));
	assert_false(parse("0 */2 * * *").hour_restricted);
	s = parse("0 0 * * 7");
	assert_int_equal(s.wdays, 1);
	s = parse("0 0 * * 0");
	assert_int_equal(s.wdays, 1);
	s = parse("0 0 * * 5-7");
	assert_int_equal(s.wdays, (1u << 5) | (1u << 6) | 1u);
}

static void test_parse_names(void **state)
{
	(void)state;
	schedule s = parse("0 0 * JAN,feb,Mar,apr,may,jun,jul,aug,sep,oct,nov,dec *");
	assert_int_equal(s.months, 0x1ffe);
	s = parse("0 0 * * sun,MON,tue,wed,thu,fri,sat");
	assert_int_equal(s.wdays, 0x7f);
	s = parse("0 0 * jun-aug/2 mon-wed/2");
	assert_int_equal(s.months, (1u << 6) | (1u << 8));
	assert_int_equal(s.wdays, (1u << 1) | (1u << 3));
}

static void test_shorthands(void **state)
{
	(void)state;
	const struct {
		const char *a, *b;
	} same[] = {
	        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
	        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
	        {"@hourly", "0 * * * *"}, {" @DAILY ", "0 0 * * *"},
	};
	for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
		schedule a = parse(same[i].a), b = parse(same[i].b);
		assert_memory_equal(&a, &b, sizeof a);
	}
	schedule s = parse("@every 90s");
	assert_int_equal(s.kind, SCHEDULE_INTERVAL);
	assert_int_equal(s.interval_ms, 90000);
	s = parse("@every 1h30m");
	assert_int_equal(s.interval_ms, 5400000);
	s = parse("@every 1500ms");
	assert_int_equal(s.interval_ms, 1500);
	assert_true(schedule_can_fire(&s));
}

static void test_parse_errors(void **state)
{
	(void)state;
	parse_fails("60 * * * *", "minute: value 60 out of range 0-59");
	parse_fails("* 24 * * *", "hour: value 24 out of range 0-23");
	parse_fails("* * 0 * *", "day-of-month: value 0 out of range 1-31");
	parse_fails("* * 32 * *", "day-of-month: value 32 out of range 1-31");
	parse_fails("* * * 13 *", "month: value 13 out of range 1-12");
	parse_fails("* * * 0 *", "month: value 0 out of range 1-12");
	parse_fails("* * * * 8", "day-of-week: value 8 out of range 0-7");
	parse_fails("* 0/0 * * *", "hour: bad step '0'");
	parse_fails("*/0 * * * *", "minute: bad step '0'");
	parse_fails("*/ * * * *", "minute: bad step ''");
	parse_fails("*/61 * * * *", "minute: bad step '61'");
	parse_fails("* * */x * *", "day-of-month: bad step 'x'");
	parse_fails("* * * *", "expected 5 fields, got 4");
	parse_fails("* * * * * *", "expected 5 fields, got 6");
	parse_fails("", "empty schedule");
	parse_fails("   ", "empty schedule");
	parse_fails("* * * * fooday", "day-of-week: unknown name 'fooday'");
	parse_fails("* * * foo *", "month: unknown name 'foo'");
	parse_fails("* * * * mon-xyz", "day-of-week: unknown name 'xyz'");
	parse_fails("mon * * * *", "minute: bad value 'mon' (names are not allowed here)");
	parse_fails("@fortnightly", "unknown shorthand '@fortnightly'");
	parse_fails("@reboot", "unknown shorthand '@reboot'");
	parse_fails("@daily 5", "@daily takes no arguments");
	parse_fails("5-3 * * * *", "minute: bad range 5-3 (start after end)");
	parse_fails("1,,2 * * * *", "minute: empty list element in '1,,2'");
	parse_fails("1, * * * *", "minute: empty list element in '1,'");
	parse_fails("* 1-2-3 * * *", "hour: unexpected '-'");
	parse_fails("* * * * 1x", "day-of-week: unexpected 'x'");
	parse_fails("* * -1 * *", "day-of-month: expected a number at '-1'");
	parse_fails("@every", "@every: missing duration (e.g. @every 90s)");
	parse_fails("@every 500ms", "@every: interval must be at least 1s");
	parse_fails("@every 0s", "@every: interval must be at least 1s");
	parse_fails("@every 5x", "@every: unknown unit 'x' in duration '5x' (use ms, s, m, h, d)");
	parse_fails("0 0 * * sat-sun", "day-of-week: bad range 6-0 (start after end)");
}

/* ---- fire times ---- */

static void test_next_basic(void **state)
{
	(void)state;
	int64_t t = utc(2026, 1, 14, 10, 7); /* a Wednesday */
	FIRES("*/5 * * * *", "UTC", t, t + 180, t + 480, t + 780);
	FIRES("*/5 * * * *", "UTC", t + 179, t + 180); /* strictly after, whole minutes */
	FIRES("*/5 * * * *", "UTC", t + 180, t + 480);
	FIRES("* * * * *", "UTC", t + 1, t + 60);
	FIRES("* * * * *", "UTC", t - 1, t);
	FIRES("0 * * * *", "UTC", t, utc(2026, 1, 14, 11, 0), utc(2026, 1, 14, 12, 0));
	FIRES("30 2 * * *", "UTC", t, utc(2026, 1, 15, 2, 30), utc(2026, 1, 16, 2, 30));
	FIRES("0 9-17 * * 1-5", "UTC", utc(2026, 1, 16, 17, 0), utc(2026, 1, 19, 9, 0),
	      utc(2026, 1, 19, 10, 0));
	FIRES("0 0 * * 0", "UTC", t, utc(2026, 1, 18, 0, 0), utc(2026, 1, 25, 0, 0));
	FIRES("0 0 * * 7", "UTC", t, utc(2026, 1, 18, 0, 0), utc(2026, 1, 25, 0, 0));
	FIRES("0 0 * * sun", "UTC", t, utc(2026, 1, 18, 0, 0));
	FIRES("@weekly", "UTC", t, utc(2026, 1, 18, 0, 0));
	FIRES("@monthly", "UTC", t, utc(2026, 2, 1, 0, 0), utc(2026, 3, 1, 0, 0));
	FIRES("@yearly", "UTC", t, utc(2027, 1, 1, 0, 0), utc(2028, 1, 1, 0, 0));
	FIRES("@daily", "UTC", t, utc(2026, 1, 15, 0, 0));
	FIRES("@hourly", "UTC", t, utc(2026, 1, 14, 11, 0));
	FIRES("0 0,12 1 */2 *", "UTC", t, utc(2026, 3, 1, 0, 0), utc(2026, 3, 1, 12, 0),
	      utc(2026, 5, 1, 0, 0));
	FIRES("0 0 1 1 *", "Europe/Berlin", t, utc(2026, 12, 31, 23, 0));
}

static void test_next_rollovers(void **state)
{
	(void)state;
	/* Month ends and the year end. */
	FIRES("0 0 31 * *", "UTC", utc(2026, 1, 31, 0, 0), utc(2026, 3, 31, 0, 0),
	      utc(2026, 5, 31, 0, 0), utc(2026, 7, 31, 0, 0), utc(2026, 8, 31, 0, 0));
	FIRES("59 23 * * *", "UTC", utc(2026, 12, 31, 12, 0), utc(2026, 12, 31, 23, 59),
	      utc(2027, 1, 1, 23, 59));
	FIRES("* * * * *", "UTC", utc(2026, 12, 31, 23, 59), utc(2027, 1, 1, 0, 0));
	FIRES("0 0 30 * *", "UTC", utc(2026, 1, 30, 0, 0), utc(2026, 3, 30, 0, 0));
	FIRES("0 12 28-31 2 *", "UTC", utc(2027, 2, 28, 12, 0), utc(2028, 2, 28, 12, 0),
	      utc(2028, 2, 29, 12, 0), utc(2029, 2, 28, 12, 0));
	FIRES("15 14 1 * *", "UTC", utc(2026, 12, 1, 14, 15), utc(2027, 1, 1, 14, 15));
	/* Before 1970 too. */
	FIRES("0 0 1 1 *", "UTC", utc(1950, 6, 1, 0, 0), utc(1951, 1, 1, 0, 0));
	FIRES("*/5 * * * *", "UTC", -601, -600, -300);
	schedule s = parse("*/5 * * * *");
	assert_int_equal(schedule_next(&s, zone("UTC"), -1), 0);
}

static void test_leap_years(void **state)
{
	(void)state;
	FIRES("0 0 29 2 *", "UTC", utc(2025, 1, 1, 0, 0), utc(2028, 2, 29, 0, 0),
	      utc(2032, 2, 29, 0, 0));
	FIRES("0 0 29 2 *", "UTC", utc(2096, 3, 1, 0, 0), utc(2104, 2, 29, 0, 0));
	/* Feb 29 that is also a Sunday (both restricted would be OR: use *). */
	FIRES("0 0 29 2 */7", "UTC", utc(2026, 1, 1, 0, 0), utc(2032, 2, 29, 0, 0));
	schedule s = parse("0 0 29 2 *");
	assert_true(schedule_can_fire(&s));
}

static void test_impossible(void **state)
{
	(void)state;
	const char *never[] = {"0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 feb *",
	                       "0 0 31 4,6 */2"};
	for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
		schedule s = parse(never[i]);
		assert_false(schedule_can_fire(&s));
		assert_int_equal(schedule_next(&s, zone("UTC"), utc(2026, 1, 1, 0, 0)), -1);
	}
	const char *ok[] = {"0 0 31 4,5 *", "0 0 30 2 mon", "0 0 29 2 *", "0 0 31 * *"};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		schedule s = parse(ok[i]);
		assert_true(schedule_can_fire(&s));
		assert_true(schedule_next(&s, zone("UTC"), utc(2026, 1, 1, 0, 0)) > 0);
	}
	/* "0 0 30 2 mon": both restricted, so every Monday in February. */
	FIRES("0 0 30 2 mon", "UTC", utc(2026, 1, 1, 0, 0), utc(2026, 2, 2, 0, 0));
}

/* Both day fields restricted: either matches. A field starting with '*'
 * (even "*\/2") is unrestricted: both must match. */
static void test_day_rule(void **state)
{
	(void)state;
	/* 2026-02-01 is a Sunday. 13th or Friday: */
	FIRES("0 0 13 * 5", "UTC", utc(2026, 2, 1, 0, 0), utc(2026, 2, 6, 0, 0),
	      utc(2026, 2, 13, 0, 0), utc(2026, 2, 20, 0, 0), utc(2026, 2, 27, 0, 0),
	      utc(2026, 3, 6, 0, 0), utc(2026, 3, 13, 0, 0));
	/* 1st-7th or Monday. */
	FIRES("0 0 1-7 * mon", "UTC", utc(2026, 2, 6, 12, 0), utc(2026, 2, 7, 0, 0),
	      utc(2026, 2, 9, 0, 0), utc(2026, 2, 16, 0, 0));
	/* dom "*\/2" is unrestricted: odd days that are Mondays. */
	FIRES("0 0 */2 * mon", "UTC", utc(2026, 2, 1, 0, 0), utc(2026, 2, 9, 0, 0),
	      utc(2026, 2, 23, 0, 0), utc(2026, 3, 9, 0, 0));
	/* dow "*\/2" (0,2,4,6) is unrestricted: the 10th if it is Sun/Tue/Thu/Sat. */
	FIRES("0 0 10 * */2", "UTC", utc(2026, 1, 1, 0, 0), utc(2026, 1, 10, 0, 0),
	      utc(2026, 2, 10, 0, 0), utc(2026, 3, 10, 0, 0), utc(2026, 5, 10, 0, 0));
	/* dom "*" and dow restricted: only the weekday. */
	FIRES("0 0 * * 1", "UTC", utc(2026, 2, 1, 0, 0), utc(2026, 2, 2, 0, 0));
	/* Sunday as 0 and as 7 with the OR rule. */
	FIRES("0 0 15 * 7", "UTC", utc(2026, 2, 1, 0, 0), utc(2026, 2, 8, 0, 0),
	      utc(2026, 2, 15, 0, 0), utc(2026, 2, 22, 0, 0));
	FIRES("0 0 15 * 0", "UTC", utc(2026, 2, 1, 0, 0), utc(2026, 2, 8, 0, 0));
}

static void test_intervals(void **state)
{
	(void)state;
	schedule s = parse("@every 1h");
	int64_t t = utc(2026, 3, 29, 0, 30);
	/* Elapsed time whatever the zone: no DST effect. */
	assert_int_equal(schedule_next(&s, zone("Europe/Berlin"), t), t + 3600);
	assert_int_equal(schedule_next(&s, zone("America/New_York"), t + 17), t + 3617);
	assert_int_equal(schedule_next(&s, zone("Europe/Berlin"), utc(2026, 10, 25, 0, 30)),
	                 utc(2026, 10, 25, 1, 30));
	s = parse("@every 1500ms");
	assert_int_equal(schedule_next(&s, zone("UTC"), 1000), 1002);
	s = parse("@every 90s");
	assert_int_equal(schedule_next(&s, zone("UTC"), 1000), 1090);
}

/* Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z);
 * 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z). */
static void test_dst_berlin(void **state)
{
	(void)state;
	const char *b = "Europe/Berlin";
	/* Fixed time in the gap: once, at the jump; then normally. */
	FIRES("30 2 * * *", b, utc(2026, 3, 27, 12, 0), utc(2026, 3, 28, 1, 30),
	      utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30));
	FIRES("30 2 * * *", b, utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1, 0));
	FIRES("30 2 * * *", b, utc(2026, 3, 29, 1, 0) - 1, utc(2026, 3, 29, 1, 0));
	FIRES("30 2 * * *", b, utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30));
	FIRES("0,30 2 * * *", b, utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 1, 0),
	      utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 0, 30));
	FIRES("* 2 * * *", b, utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 1, 0),
	      utc(2026, 3, 30, 0, 0));
	/* Fixed time in the repeated hour: first occurrence only. */
	FIRES("30 2 * * *", b, utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 0, 30),
	      utc(2026, 10, 26, 1, 30));
	FIRES("30 2 * * *", b, utc(2026, 10, 25, 0, 45), utc(2026, 10, 26, 1, 30));
	/* Hourly (hour unrestricted): elapsed time. */
	FIRES("0 * * * *", b, utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 0, 0),
	      utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0));
	FIRES("0 * * * *", b, utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0, 0),
	      utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 2, 0));
	FIRES("0 * * * *", b, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 0));
	FIRES("*/15 * * * *", b, utc(2026, 3, 29, 0, 40), utc(2026, 3, 29, 0, 45),
	      utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 15));
	FIRES("*/15 * * * *", b, utc(2026, 10, 25, 0, 40), utc(2026, 10, 25, 0, 45),
	      utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 15), utc(2026, 10, 25, 1, 30));
	/* "*\/2" hour counts as unrestricted: 02:00 fires twice in autumn. */
	FIRES("0 */2 * * *", b, utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0, 0),
	      utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 3, 0));
	/* Beyond 2037 (footer rule): the same rules. */
	FIRES("30 2 * * *", b, utc(2040, 3, 24, 12, 0), utc(2040, 3, 25, 1, 0),
	      utc(2040, 3, 26, 0, 30));
	FIRES("30 2 * * *", b, utc(2040, 10, 27, 12, 0), utc(2040, 10, 28, 0, 30),
	      utc(2040, 10, 29, 1, 30));
}

/* New York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z);
 * 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z). */
static void test_dst_new_york(void **state)
{
	(void)state;
	const char *ny = "America/New_York";
	FIRES("30 2 * * *", ny, utc(2026, 3, 7, 12, 0), utc(2026, 3, 8, 7, 0),
	      utc(2026, 3, 9, 6, 30));
	FIRES("30 2 * * *", ny, utc(2026, 10, 31, 12, 0), utc(2026, 11, 1, 7, 30),
	      utc(2026, 11, 2, 7, 30));
	FIRES("30 1 * * *", ny, utc(2026, 10, 31, 12, 0), utc(2026, 11, 1, 5, 30),
	      utc(2026, 11, 2, 6, 30));
	FIRES("0 * * * *", ny, utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 0),
	      utc(2026, 3, 8, 8, 0));
	FIRES("0 * * * *", ny, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 5, 0),
	      utc(2026, 11, 1, 6, 0), utc(2026, 11, 1, 7, 0));
	FIRES("*/15 * * * *", ny, utc(2026, 3, 8, 6, 40), utc(2026, 3, 8, 6, 45),
	      utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 7, 15));
	FIRES("*/15 * * * *", ny, utc(2026, 11, 1, 5, 40), utc(2026, 11, 1, 5, 45),
	      utc(2026, 11, 1, 6, 0), utc(2026, 11, 1, 6, 15));
	schedule s = parse("@every 1h");
	assert_int_equal(schedule_next(&s, zone(ny), utc(2026, 11, 1, 5, 30)),
	                 utc(2026, 11, 1, 6, 30));
}

/* The local wall-clock time of instant t, as HHMM. */
static int local_hhmm(const tz *z, int64_t t)
{
	tz_civil c;
	tz_to_civil(z, t, &c);
	return c.hour * 100 + c.minute;
}

/* Intervals through New York's changes, as test_intervals does for Berlin:
 * elapsed time, so chained fires stay exactly one interval apart while the
 * wall clock jumps an hour forward (2026-03-08 07:00Z, 02:00 EST -> 03:00
 * EDT) or back (2026-11-01 06:00Z, 02:00 EDT -> 01:00 EST) between them. */
static void test_intervals_ny(void **state)
{
	(void)state;
	const char *ny = "America/New_York";
	const tz *z = zone(ny);
	int64_t jump = utc(2026, 3, 8, 7, 0);

	FIRES("@every 1h", ny, jump - 1800, jump + 1800, jump + 5400, jump + 9000);
	assert_int_equal(local_hhmm(z, jump - 1800), 130);      /* 01:30 EST */
	assert_int_equal(local_hhmm(z, jump + 1800), 330);      /* 03:30 EDT, one hour later */
	FIRES("@every 1h", ny, jump - 3600, jump, jump + 3600); /* from 01:00: 03:00 EDT */
	FIRES("@every 90s", ny, jump - 120, jump - 30, jump + 60, jump + 150, jump + 240);
	assert_int_equal(local_hhmm(z, jump - 30), 159); /* 01:59:30 EST */
	assert_int_equal(local_hhmm(z, jump + 60), 301); /* 03:01:00 EDT, 90 s later */
	FIRES("@every 5m", ny, jump - 600, jump - 300, jump, jump + 300, jump + 600);
	assert_int_equal(local_hhmm(z, jump - 300), 155);
	assert_int_equal(local_hhmm(z, jump), 300);
	FIRES("@every 90s", ny, jump + 17, jump + 107, jump + 197); /* off the minute: kept */

	int64_t back = utc(2026, 11, 1, 6, 0); /* 02:00 EDT -> 01:00 EST */
	FIRES("@every 5m", ny, back - 600, back - 300, back, back + 300);
	assert_int_equal(local_hhmm(z, back - 300), 155); /* 01:55 EDT */
	assert_int_equal(local_hhmm(z, back), 100);       /* 01:00 EST, 5 min later */
	FIRES("@every 90s", ny, back - 60, back + 30, back + 120);
	FIRES("@every 1h", ny, back - 3600, back, back + 3600);
	assert_int_equal(local_hhmm(z, back - 3600), 100); /* 01:00 EDT */
	assert_int_equal(local_hhmm(z, back), 100);        /* 01:00 EST: the same wall time */
}

/* ---- randomized cross-check ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static void rand_element(char *out, size_t cap, int lo, int hi)
{
	int a = lo + (int)rnd((uint32_t)(hi - lo + 1));
	int b = a + (int)rnd((uint32_t)(hi - a + 1));
	int step = 1 + (int)rnd(6);
	switch (rnd(6)) {
	case 0:
		snprintf(out, cap, "*/%d", step);
		break;
	case 1:
		snprintf(out, cap, "%d-%d", a, b);
		break;
	case 2:
		snprintf(out, cap, "%d-%d/%d", a, b, step);
		break;
	case 3:
		snprintf(out, cap, "%d/%d", a, step);
		break;
	default:
		snprintf(out, cap, "%d", a);
	}
}

static void rand_field(char *out, size_t cap, int lo, int hi, int star_pct)
{
	if ((int)rnd(100) < star_pct) {
		snprintf(out, cap, "*");
		return;
	}
	int n = 1 + (int)rnd(3);
	size_t len = 0;
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		char el[32];
		rand_element(el, sizeof el, lo, hi);
		len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", el);
	}
}

static void rand_expr(char *out, size_t cap)
{
	char f[5][96];
	rand_field(f[0], sizeof f[0], 0, 59, 10);
	rand_field(f[1], sizeof f[1], 0, 23, 35);
	rand_field(f[2], sizeof f[2], 1, 31, 60);
	rand_field(f[3], sizeof f[3], 1, 12, 60);
	rand_field(f[4], sizeof f[4], 0, 7, 60);
	snprintf(out, cap, "%s %s %s %s %s", f[0], f[1], f[2], f[3], f[4]);
}

static bool ref_day_matches(const schedule *s, const tz_civil *c)
{
	int64_t days = tz_days_from_civil(c->year, c->month, c->day);
	int wday = (int)(((days + 4) % 7 + 7) % 7);
	bool dom = s->mdays >> c->day & 1, dow = s->wdays >> wday & 1;
	if (!(s->months >> c->month & 1))
		return false;
	return s->dom_restricted && s->dow_restricted ? (dom || dow) : (dom && dow);
}

static bool ref_matches(const schedule *s, const tz_civil *c)
{
	return ref_day_matches(s, c) && (s->hours >> c->hour & 1) && (s->minutes >> c->minute & 1);
}

/* Is instant t a fire time? The DST rules stated directly. */
static bool ref_fires(const schedule *s, const tz *z, int64_t t)
{
	tz_civil c;
	int32_t off = tz_offset_at(z, t), before = tz_offset_at(z, t - 1);
	tz_to_civil(z, t, &c);
	if (before < off && s->hour_restricted) {
		/* A spring-forward at t: any skipped civil minute fires now. */
		for (int64_t l = t + before; l < t + off; l += 60) {
			tz_civil g;
			tz_to_civil(zone("UTC"), l, &g);
			if (ref_matches(s, &g))
				return true;
		}
	}
	if (!ref_matches(s, &c))
		return false;
	int32_t earlier = tz_offset_at(z, t - 86400);
	bool second = earlier > off && tz_offset_at(z, t - (earlier - off)) == earlier;
	return !(second && s->hour_restricted);
}

/* Scan forward minute by minute (skipping non-matching days and hours
 * conservatively) for at most `years`. */
static int64_t ref_next(const schedule *s, const tz *z, int64_t after, int years)
{
	int64_t t = (after / 60 - (after % 60 < 0)) * 60 + 60;
	int64_t end = t + (int64_t)years * 366 * 86400;
	while (t < end) {
		tz_civil c;
		if (ref_fires(s, z, t))
			return t;
		tz_to_civil(z, t, &c);
		int64_t step = 60;
		if (!ref_day_matches(s, &c)) {
			int64_t rest = 86400 - (c.hour * 3600 + c.minute * 60) - 3600;
			step = rest > 60 ? rest : 60;
		} else if (!(s->hours >> c.hour & 1)) {
			step = (60 - c.minute) * 60;
		}
		t += step;
	}
	return -2;
}

static void cross_check(const char *zname, int cases, const int64_t *anchors, int nanchors)
{
	const tz *z = zone(zname);
	int compared = 0;
	for (int i = 0; i < cases; i++) {
		char expr[512];
		schedule s;
		char err[256];
		rand_expr(expr, sizeof expr);
		if (schedule_parse(&s, expr, err, sizeof err) != 0)
			fail_msg("random '%s' did not parse: %s", expr, err);
		int64_t t = anchors[rnd((uint32_t)nanchors)] + (int64_t)rnd(3 * 86400) - 86400 -
		            (int64_t)rnd(2) * rnd(86400 * 60);
		if (!schedule_can_fire(&s)) {
			assert_int_equal(schedule_next(&s, z, t), -1);
			continue;
		}
		for (int k = 0; k < 3; k++) {
			int64_t want = ref_next(&s, z, t, 3);
			if (want == -2)
				break; /* too rare for the reference to reach */
			int64_t got = schedule_next(&s, z, t);
			if (got != want)
				fail_msg("'%s' in %s after %lld: got %lld, want %lld", expr, zname,
				         (long long)t, (long long)got, (long long)want);
			compared++;
			t = got;
		}
	}
	assert_true(compared > cases);
}

static void test_random_utc(void **state)
{
	(void)state;
	const int64_t anchors[] = {utc(2026, 1, 1, 0, 0), utc(2027, 12, 31, 23, 0),
	                           utc(2028, 2, 28, 12, 0), utc(1999, 12, 31, 0, 0),
	                           utc(2100, 2, 27, 0, 0)};
	cross_check("UTC", 2500, anchors, 5);
}

static void test_random_berlin(void **state)
{
	(void)state;
	const int64_t anchors[] = {utc(2026, 3, 29, 1, 0), utc(2026, 10, 25, 1, 0),
	                           utc(2026, 3, 29, 1, 0), utc(2026, 10, 25, 1, 0),
	                           utc(2041, 3, 31, 1, 0), utc(2041, 10, 27, 1, 0),
	                           utc(2026, 6, 1, 0, 0),  utc(2026, 12, 31, 12, 0)};
	cross_check("Europe/Berlin", 2500, anchors, 8);
}

static void test_random_new_york(void **state)
{
	(void)state;
	const int64_t anchors[] = {utc(2026, 3, 8, 7, 0), utc(2026, 11, 1, 6, 0)};
	cross_check("America/New_York", 1000, anchors, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_forms),   cmocka_unit_test(test_parse_names),
	        cmocka_unit_test(test_shorthands),    cmocka_unit_test(test_parse_errors),
	        cmocka_unit_test(test_next_basic),    cmocka_unit_test(test_next_rollovers),
	        cmocka_unit_test(test_leap_years),    cmocka_unit_test(test_impossible),
	        cmocka_unit_test(test_day_rule),      cmocka_unit_test(test_intervals),
	        cmocka_unit_test(test_dst_berlin),    cmocka_unit_test(test_dst_new_york),
	        cmocka_unit_test(test_intervals_ny),  cmocka_unit_test(test_random_utc),
	        cmocka_unit_test(test_random_berlin), cmocka_unit_test(test_random_new_york),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
