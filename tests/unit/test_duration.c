/* Unit tests: duration parsing and formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "duration.h"

static int64_t parse_ok(const char *s)
{
	int64_t ms = -1;
	char err[128] = "";
	assert_int_equal(duration_parse(s, &ms, err, sizeof err), 0);
	return ms;
}

static void parse_fails(const char *s, const char *needle)
{
	int64_t ms = 0;
	char err[128] = "";
	assert_int_equal(duration_parse(s, &ms, err, sizeof err), -1);
	assert_non_null(strstr(err, needle));
}

static void test_units(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("90s"), 90000);
	assert_int_equal(parse_ok("5m"), 300000);
	assert_int_equal(parse_ok("1h30m"), 5400000);
	assert_int_equal(parse_ok("250ms"), 250);
	assert_int_equal(parse_ok("2d"), 172800000);
	assert_int_equal(parse_ok("30"), 30000);
	assert_int_equal(parse_ok(" 10s "), 10000);
	assert_int_equal(parse_ok("0s"), 0);
	assert_int_equal(parse_ok("1min"), 60000);
}

static void test_errors(void **state)
{
	(void)state;
	parse_fails("", "empty");
	parse_fails("   ", "empty");
	parse_fails("5x", "unknown unit 'x'");
	parse_fails("-5s", "bad duration");
	parse_fails("s", "bad duration");
	parse_fails("1h 30m", "bad duration");
	parse_fails("99999999999999999999s", "too large");
	parse_fails("1h30", "without unit");
}

/* Issue 15: "@every 106751991d" and "jitter = 99999999999d" were accepted
 * (and shown as year 0000); every duration is now at most 3650 days. */
static void test_maximum(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("3650d"), DURATION_MAX_MS);
	assert_int_equal(parse_ok("3649d23h59m59s999ms"), DURATION_MAX_MS - 1);
	assert_int_equal(parse_ok("315360000"), DURATION_MAX_MS);
	parse_fails("3650d1ms", "too large (at most 3650d");
	parse_fails("3651d", "too large (at most 3650d");
	parse_fails("315360001", "too large");
	parse_fails("106751991d", "duration '106751991d' is too large");
	parse_fails("99999999999d", "too large");
	parse_fails("9223372036854775807ms", "too large");
	parse_fails("3000d3000d", "too large");
}

static void test_format(void **state)
{
	char buf[32];
	(void)state;
	duration_format(5400000, buf, sizeof buf);
	assert_string_equal(buf, "1h30m");
	duration_format(90000, buf, sizeof buf);
	assert_string_equal(buf, "1m30s");
	duration_format(250, buf, sizeof buf);
	assert_string_equal(buf, "250ms");
	duration_format(0, buf, sizeof buf);
	assert_string_equal(buf, "0s");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_units),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_maximum),
	        cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
