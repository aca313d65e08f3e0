/* Unit tests: time zones (TZif reading, POSIX TZ rules, civil conversions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tz.h"

/* Unix seconds of a UTC civil time. */
static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
	return tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
}

static const tz *load(const char *name)
{
	const tz *z = NULL;
	char err[256] = "";
	if (tz_load(name, &z, err, sizeof err) != 0)
		fail_msg("tz_load(%s): %s", name ? name : "(local)", err);
	return z;
}

static void load_fails(const char *name, const char *message)
{
	const tz *z = NULL;
	char err[256] = "";
	assert_int_equal(tz_load(name, &z, err, sizeof err), -1);
	assert_string_equal(err, message);
}

static void test_days(void **state)
{
	(void)state;
	int y, m, d;
	assert_int_equal(tz_days_from_civil(1970, 1, 1), 0);
	assert_int_equal(tz_days_from_civil(1969, 12, 31), -1);
	assert_int_equal(tz_days_from_civil(2000, 3, 1), 11017);
	assert_int_equal(tz_days_from_civil(2000, 2, 29), 11016);
	assert_int_equal(tz_days_from_civil(1900, 3, 1), -25508);
	assert_int_equal(utc(2026, 3, 29, 1, 0, 0), 1774746000);
	for (int64_t days = -800000; days <= 800000; days += 997) {
		tz_civil_from_days(days, &y, &m, &d);
		assert_int_equal(tz_days_from_civil(y, m, d), days);
	}
	tz_civil_from_days(11016, &y, &m, &d);
	assert_int_equal(y, 2000);
	assert_int_equal(m, 2);
	assert_int_equal(d, 29);
	tz_civil_from_days(-1, &y, &m, &d);
	assert_int_equal(y, 1969);
	assert_int_equal(m, 12);
	assert_int_equal(d, 31);
}

static void test_offsets(void **state)
{
	(void)state;
	const tz *berlin = load("Europe/Berlin");
	const tz *ny = load("America/New_York");
	const tz *u = load("UTC");

	assert_string_equal(tz_name(berlin), "Europe/Berlin");
	assert_int_equal(tz_offset_at(berlin, utc(2026, 1, 15, 12, 0, 0)), 3600);
	assert_int_equal(tz_offset_at(berlin, utc(2026, 7, 15, 12, 0, 0)), 7200);
	assert_int_equal(tz_offset_at(berlin, 1774746000 - 1), 3600);
	assert_int_equal(tz_offset_at(berlin, 1774746000), 7200);
	assert_int_equal(tz_offset_at(berlin, 1792890000 - 1), 7200);
	assert_int_equal(tz_offset_at(berlin, 1792890000), 3600);
	assert_int_equal(tz_offset_at(ny, utc(2026, 1, 15, 12, 0, 0)), -18000);
	assert_int_equal(tz_offset_at(ny, utc(2026, 7, 15, 12, 0, 0)), -14400);
	assert_int_equal(tz_offset_at(ny, utc(2026, 3, 8, 7, 0, 0) - 1), -18000);
	assert_int_equal(tz_offset_at(ny, utc(2026, 3, 8, 7, 0, 0)), -14400);
	assert_int_equal(tz_offset_at(ny, utc(2026, 11, 1, 6, 0, 0) - 1), -14400);
	assert_int_equal(tz_offset_at(ny, utc(2026, 11, 1, 6, 0, 0)), -18000);
	assert_int_equal(tz_offset_at(u, utc(2026, 7, 15, 12, 0, 0)), 0);
	/* Berlin local mean time before 1893 (type 0 of the file). */
	assert_int_equal(tz_offset_at(berlin, utc(1850, 1, 1, 0, 0, 0)), 3208);
}

/* Past the last transition of the table the footer rule applies. */
static void test_footer_rule(void **state)
{
	(void)state;
	const tz *berlin = load("Europe/Berlin");
	const tz *ny = load("America/New_York");

	assert_int_equal(tz_offset_at(berlin, 2216250000 - 1), 3600); /* 2040-03-25 */
	assert_int_equal(tz_offset_at(berlin, 2216250000), 7200);
	assert_int_equal(tz_offset_at(berlin, 2234998800 - 1), 7200); /* 2040-10-28 */
	assert_int_equal(tz_offset_at(berlin, 2234998800), 3600);
	assert_int_equal(tz_offset_at(ny, 2372914800 - 1), -18000); /* 2045-03-12 */
	assert_int_equal(tz_offset_at(ny, 2372914800), -14400);
	assert_int_equal(tz_offset_at(ny, 2393474400 - 1), -14400); /* 2045-11-05 */
	assert_int_equal(tz_offset_at(ny, 2393474400), -18000);
	assert_int_equal(tz_offset_at(berlin, utc(2300, 7, 1, 0, 0, 0)), 7200);

	tz_civil c;
	tz_to_civil(berlin, utc(2040, 7, 1, 10, 20, 30), &c);
	assert_int_equal(c.year, 2040);
	assert_int_equal(c.month, 7);
	assert_int_equal(c.day, 1);
	assert_int_equal(c.hour, 12);
	assert_int_equal(c.minute, 20);
	assert_int_equal(c.second, 30);
}

static void check_from_civil(const tz *z, tz_civil c, int want_n, int64_t want1, int64_t want2)
{
	int64_t a = -1, b = -1;
	assert_int_equal(tz_from_civil(z, &c, &a, &b), want_n);
	assert_int_equal(a, want1);
	if (want_n == 2)
		assert_int_equal(b, want2);
}

static void test_from_civil(void **state)
{
	(void)state;
	const tz *berlin = load("Europe/Berlin");
	const tz *ny = load("America/New_York");
	const tz *u = load("Etc/UTC");

	check_from_civil(berlin, (tz_civil){2026, 1, 15, 12, 0, 0}, 1, utc(2026, 1, 15, 11, 0, 0),
	                 0);
	check_from_civil(berlin, (tz_civil){2026, 7, 15, 12, 0, 0}, 1, utc(2026, 7, 15, 10, 0, 0),
	                 0);
	/* Gap: 02:00-03:00 does not exist, the first valid instant is 03:00 CEST. */
	check_from_civil(berlin, (tz_civil){2026, 3, 29, 2, 30, 0}, 0, 1774746000, 0);
	check_from_civil(berlin, (tz_civil){2026, 3, 29, 2, 0, 0}, 0, 1774746000, 0);
	check_from_civil(berlin, (tz_civil){2026, 3, 29, 3, 0, 0}, 1, 1774746000, 0);
	check_from_civil(berlin, (tz_civil){2026, 3, 29, 1, 59, 59}, 1, 1774746000 - 1, 0);
	/* Repeated: 02:00-03:00 happens twice. */
	check_from_civil(berlin, (tz_civil){2026, 10, 25, 2, 30, 0}, 2, utc(2026, 10, 25, 0, 30, 0),
	                 utc(2026, 10, 25, 1, 30, 0));
	check_from_civil(berlin, (tz_civil){2026, 10, 25, 3, 0, 0}, 1, utc(2026, 10, 25, 2, 0, 0),
	                 0);
	check_from_civil(ny, (tz_civil){2026, 3, 8, 2, 15, 0}, 0, utc(2026, 3, 8, 7, 0, 0), 0);
	check_from_civil(ny, (tz_civil){2026, 11, 1, 1, 30, 0}, 2, utc(2026, 11, 1, 5, 30, 0),
	                 utc(2026, 11, 1, 6, 30, 0));
	check_from_civil(u, (tz_civil){2026, 3, 29, 2, 30, 0}, 1, utc(2026, 3, 29, 2, 30, 0), 0);
	/* Footer rule years. */
	check_from_civil(berlin, (tz_civil){2040, 3, 25, 2, 30, 0}, 0, 2216250000, 0);
	check_from_civil(berlin, (tz_civil){2040, 10, 28, 2, 30, 0}, 2, 2234998800 - 1800,
	                 2234998800 + 1800);
}

static void test_bad_names(void **state)
{
	(void)state;
	load_fails("Mars/Base", "unknown time zone 'Mars/Base'");
	load_fails("../etc/passwd", "invalid time zone name '../etc/passwd'");
	load_fails("Europe/../../etc/passwd", "invalid time zone name 'Europe/../../etc/passwd'");
	load_fails("/etc/localtime", "invalid time zone name '/etc/localtime'");
	load_fails("Europe/Berlin;rm -rf", "invalid time zone name 'Europe/Berlin;rm -rf'");
	load_fails("Europe/Berlin\n", "invalid time zone name 'Europe/Berlin\n'");
	/* A directory is not a zone. */
	const tz *z;
	char err[256];
	assert_int_equal(tz_load("Europe", &z, err, sizeof err), -1);
}

static void test_cache(void **state)
{
	(void)state;
	const tz *a = load("Europe/Berlin");
	const tz *b = load("Europe/Berlin");
	assert_ptr_equal(a, b);
}

/* A scratch directory for TZDIR, removed by the test. */
static char *make_dir(void)
{
	static char path[64];
	snprintf(path, sizeof path, "/tmp/fk_test_tz_XXXXXX");
	assert_non_null(mkdtemp(path));
	return path;
}

static void put32(unsigned char **p, uint32_t v)
{
	(*p)[0] = (unsigned char)(v >> 24);
	(*p)[1] = (unsigned char)(v >> 16);
	(*p)[2] = (unsigned char)(v >> 8);
	(*p)[3] = (unsigned char)v;
	*p += 4;
}

/* A version 1 TZif file: +1h until 1000000000, +3h from then on. */
static void write_v1(const char *path)
{
	unsigned char buf[256] = {0}, *p = buf;
	memcpy(p, "TZif", 4);
	p += 20;      /* version 0 and reserved */
	put32(&p, 0); /* isutcnt */
	put32(&p, 0); /* isstdcnt */
	put32(&p, 0); /* leapcnt */
	put32(&p, 1); /* timecnt */
	put32(&p, 2); /* typecnt */
	put32(&p, 8); /* charcnt */
	put32(&p, 1000000000);
	*p++ = 1;
	put32(&p, 3600);
	*p++ = 0;
	*p++ = 0;
	put32(&p, 10800);
	*p++ = 0;
	*p++ = 4;
	memcpy(p, "AAA\0BBB\0", 8);
	p += 8;
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, (size_t)(p - buf), f), (size_t)(p - buf));
	fclose(f);
}

static void test_tzdir_and_v1(void **state)
{
	(void)state;
	char *dir = make_dir();
	char path[128];
	snprintf(path, sizeof path, "%s/Test_V1", dir);
	write_v1(path);
	char bad[128];
	snprintf(bad, sizeof bad, "%s/Broken", dir);
	FILE *f = fopen(bad, "w");
	assert_non_null(f);
	fputs("not a zone file\n", f);
	fclose(f);

	setenv("TZDIR", dir, 1);
	const tz *v1 = load("Test_V1");
	load_fails("Asia/Tokyo", "unknown time zone 'Asia/Tokyo'");
	const tz *zone;
	char err[256];
	assert_int_equal(tz_load("Broken", &zone, err, sizeof err), -1);
	assert_non_null(strstr(err, "not a valid TZif file"));
	/* UTC is built in. */
	assert_int_equal(tz_offset_at(load("UTC"), 0), 0);
	assert_int_equal(tz_offset_at(load("Etc/UTC"), 0), 0);
	unsetenv("TZDIR");

	assert_int_equal(tz_offset_at(v1, 999999999), 3600);
	assert_int_equal(tz_offset_at(v1, 1000000000), 10800);
	assert_int_equal(tz_offset_at(v1, -5000000000), 3600);
	assert_int_equal(tz_offset_at(load("Asia/Tokyo"), 0), 32400); /* not cached as missing */

	assert_int_equal(unlink(path), 0);
	assert_int_equal(unlink(bad), 0);
	assert_int_equal(rmdir(dir), 0);
}

static const tz *load_local_with(const char *tzenv)
{
	setenv("TZ", tzenv, 1);
	const tz *z = load(NULL);
	unsetenv("TZ");
	return z;
}

static void test_local_and_posix(void **state)
{
	(void)state;
	const tz *z = load_local_with("CET-1CEST,M3.5.0,M10.5.0/3");
	assert_string_equal(tz_name(z), "CET-1CEST,M3.5.0,M10.5.0/3");
	assert_int_equal(tz_offset_at(z, 1774746000 - 1), 3600);
	assert_int_equal(tz_offset_at(z, 1774746000), 7200);
	assert_int_equal(tz_offset_at(z, 1792890000 - 1), 7200);
	assert_int_equal(tz_offset_at(z, 1792890000), 3600);

	z = load_local_with("EST5EDT,M3.2.0,M11.1.0");
	assert_int_equal(tz_offset_at(z, utc(2026, 3, 8, 7, 0, 0) - 1), -18000);
	assert_int_equal(tz_offset_at(z, utc(2026, 3, 8, 7, 0, 0)), -14400);
	assert_int_equal(tz_offset_at(z, utc(2026, 11, 1, 6, 0, 0)), -18000);

	z = load_local_with("<+03>-3");
	assert_int_equal(tz_offset_at(z, 0), 10800);
	z = load_local_with("<-0330>3:30");
	assert_int_equal(tz_offset_at(z, 0), -12600);

	/* Jn never counts Feb 29: J60 is March 1st. n counts it: 59 is Feb 29 in 2024. */
	z = load_local_with("AAA0BBB,J60/0,J300/0");
	assert_int_equal(tz_offset_at(z, utc(2024, 3, 1, 0, 0, 0) - 1), 0);
	assert_int_equal(tz_offset_at(z, utc(2024, 3, 1, 0, 0, 0)), 3600);
	z = load_local_with("AAA0BBB,59/0,300/0");
	assert_int_equal(tz_offset_at(z, utc(2024, 2, 29, 0, 0, 0) - 1), 0);
	assert_int_equal(tz_offset_at(z, utc(2024, 2, 29, 0, 0, 0)), 3600);
	assert_int_equal(tz_offset_at(z, utc(2025, 3, 1, 0, 0, 0) - 1), 0);
	assert_int_equal(tz_offset_at(z, utc(2025, 3, 1, 0, 0, 0)), 3600);

	/* Southern hemisphere: DST across the new year. */
	z = load_local_with("AEST-10AEDT,M10.1.0,M4.1.0/3");
	assert_int_equal(tz_offset_at(z, utc(2026, 1, 15, 0, 0, 0)), 39600);
	assert_int_equal(tz_offset_at(z, utc(2026, 7, 15, 0, 0, 0)), 36000);

	z = load_local_with(":Europe/Berlin");
	assert_string_equal(tz_name(z), "Europe/Berlin");
	z = load_local_with("America/New_York");
	assert_int_equal(tz_offset_at(z, utc(2026, 1, 15, 0, 0, 0)), -18000);
	z = load_local_with("");
	assert_int_equal(tz_offset_at(z, 0), 0);

	setenv("TZ", "Mars/Base", 1);
	load_fails(NULL, "unknown time zone 'Mars/Base'");
	unsetenv("TZ");
	z = load(NULL); /* /etc/localtime or UTC: whatever it is, it loads */
	assert_non_null(tz_name(z));
}

int main(void)
{
	unsetenv("TZDIR");
	unsetenv("TZ");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_days),         cmocka_unit_test(test_offsets),
	        cmocka_unit_test(test_footer_rule),  cmocka_unit_test(test_from_civil),
	        cmocka_unit_test(test_bad_names),    cmocka_unit_test(test_cache),
	        cmocka_unit_test(test_tzdir_and_v1), cmocka_unit_test(test_local_and_posix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
