/* Unit tests: the fixed per-task fire offset of [daemon] spread (range,
 * pinned values so that offsets stay stable across releases, uniformity of
 * 1,000 names over the window, jitter wins). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "spread.h"

static void test_no_spread_is_zero(void **state)
{
	(void)state;
	assert_int_equal(spread_offset_ms("hello", 0), 0);
	assert_int_equal(spread_offset_ms("hello", -5), 0);
	assert_int_equal(spread_offset_ms(NULL, 30000), 0);
}

/* The offsets are part of the interface: an operator's fires stay where
 * they were after an upgrade. These values are FNV-1a + SplitMix64's
 * finalizer, modulo the window (also computed by tests/integration/
 * test_dispatch.py, independently). */
static void test_pinned_values(void **state)
{
	(void)state;
	assert_int_equal(spread_offset_ms("hello", 30000), 27007);
	assert_int_equal(spread_offset_ms("t0000", 30000), 18726);
	assert_int_equal(spread_offset_ms("t0001", 30000), 26779);
	assert_int_equal(spread_offset_ms("", 30000), 16203);
	assert_int_equal(spread_offset_ms("a", 1000), 736);
}

static void test_deterministic_and_in_window(void **state)
{
	(void)state;
	char name[32];
	const int64_t windows[] = {1, 2, 999, 1000, 30000, 3600000, INT64_C(86400000) * 365};
	for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
		for (int i = 0; i < 1000; i++) {
			snprintf(name, sizeof name, "task-%d", i);
			int64_t a = spread_offset_ms(name, windows[w]);
			assert_true(a >= 0 && a < windows[w]);
			assert_int_equal(a, spread_offset_ms(name, windows[w]));
		}
	}
}

/* 1,000 names that differ only in their digits, over 30 s: every tenth of
 * the window gets close to its share (binomial, n = 1000, p = 0.1: mean
 * 100, sd 9.5), and no second of it is empty or holds more than twice its
 * share. */
static void test_uniform_over_the_window(void **state)
{
	(void)state;
	int tenth[10] = {0}, second[30] = {0};
	char name[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof name, "t%04d", i);
		int64_t off = spread_offset_ms(name, 30000);
		tenth[off / 3000]++;
		second[off / 1000]++;
	}
	for (int i = 0; i < 10; i++) {
		assert_in_range(tenth[i], 70, 130);
	}
	for (int i = 0; i < 30; i++) {
		assert_in_range(second[i], 1, 66);
	}
}

static void test_jitter_wins(void **state)
{
	(void)state;
	assert_int_equal(spread_task_offset_ms("hello", 5000, 30000), 0);
	assert_int_equal(spread_task_offset_ms("hello", 0, 30000), 27007);
	assert_int_equal(spread_task_offset_ms("hello", 0, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_no_spread_is_zero),
	        cmocka_unit_test(test_pinned_values),
	        cmocka_unit_test(test_deterministic_and_in_window),
	        cmocka_unit_test(test_uniform_over_the_window),
	        cmocka_unit_test(test_jitter_wins),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
