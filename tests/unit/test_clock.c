/* Unit tests: clock — the wall-minus-monotonic offset and what counts as a
 * step of the wall clock (slewing must not, a set clock must). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "clock.h"

static void test_steps(void **state)
{
	(void)state;
	/* A jump of hours either way, right after the last check. */
	assert_true(clock_offset_stepped(0, 3 * 3600 * 1000, 0));
	assert_true(clock_offset_stepped(0, -600 * 1000, 2000));
	/* Just over 1 s plus 1 ms per second elapsed. */
	assert_true(clock_offset_stepped(5000, 6001, 0));
	assert_true(clock_offset_stepped(5000, 3999 - 10, 10000));
}

static void test_not_steps(void **state)
{
	(void)state;
	assert_false(clock_offset_stepped(0, 0, 0));
	assert_false(clock_offset_stepped(0, 1000, 0));
	assert_false(clock_offset_stepped(0, -1000, 0));
	/* NTP slews at most 0.5 ms/s: an hour of it is 1.8 s, tolerated. */
	assert_false(clock_offset_stepped(0, 1800, 3600 * 1000));
	assert_false(clock_offset_stepped(0, -1800, 3600 * 1000));
	/* A negative elapsed time (never happens) gives no extra tolerance. */
	assert_true(clock_offset_stepped(0, 1001, -5000));
}

static void test_offset_is_stable(void **state)
{
	(void)state;
	int64_t a = clock_wall_offset_ms();
	int64_t b = clock_wall_offset_ms();
	/* Nobody sets the clock between two reads here (within rounding). */
	assert_false(clock_offset_stepped(a, b, 0));
	assert_true(a > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_steps),
	        cmocka_unit_test(test_not_steps),
	        cmocka_unit_test(test_offset_is_stable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
