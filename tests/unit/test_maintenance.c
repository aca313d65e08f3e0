/* Unit tests: maintenance windows (stored and recurring) and the state
 * health_check records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "maintenance.h"
#include "temp_store.h"

static int setup(void **state)
{
	return temp_store_setup(state, "maint",
	                        "INSERT INTO servers (handle, created_at, updated_at)"
	                        " VALUES ('web-1', 1, 1)");
}

static int teardown(void **state)
{
	return temp_store_teardown(state);
}

static void test_stored_window(void **state)
{
	store *st = ((temp_store *)*state)->st;
	maintenance_state m;
	int64_t id = 0, ended = -1;
	assert_int_equal(maintenance_state_at(st, NULL, 0, 1, "web-1", 100, &m), STORE_OK);
	assert_false(m.active);
	assert_int_equal(maintenance_window_add(st, 1, 1000, 4600, "kernel", "ops", 900, &id),
	                 STORE_OK);
	assert_true(id > 0);
	/* before, inside (both ends), after */
	assert_int_equal(maintenance_state_at(st, NULL, 0, 1, "web-1", 999, &m), STORE_OK);
	assert_false(m.active);
	assert_int_equal(maintenance_state_at(st, NULL, 0, 1, "web-1", 1000, &m), STORE_OK);
	assert_true(m.active);
	assert_true(m.until == 4600);
	assert_string_equal(m.reason, "kernel");
	assert_non_null(strstr(m.source, "window"));
	assert_int_equal(maintenance_state_at(st, NULL, 0, 1, "web-1", 4600, &m), STORE_OK);
	assert_false(m.active);
	/* ended early: not active from then on, still active before */
	assert_int_equal(maintenance_window_end(st, 1, 2000, &ended), STORE_OK);
	assert_int_equal(ended, 1);
	assert_int_equal(maintenance_state_at(st, NULL, 0, 1, "web-1", 2500, &m), STORE_OK);
	assert_false(m.active);
	assert_int_equal(maintenance_state_at(st, NULL, 0, 1, "web-1", 1500, &m), STORE_OK);
	assert_true(m.active);
	/* a window ending before its start is refused by the schema */
	assert_int_equal(maintenance_window_add(st, 1, 10, 5, NULL, NULL, 1, NULL), STORE_ERROR);
	/* unknown server: the foreign key */
	assert_int_equal(maintenance_window_add(st, 99, 10, 50, NULL, NULL, 1, NULL), STORE_ERROR);
}

static maintenance_rule nightly(char **globs, size_t n)
{
	maintenance_rule r = {.name = "nightly",
	                      .servers = globs,
	                      .nservers = n,
	                      .duration = 3600,
	                      .reason = "backups"};
	char err[128];
	assert_int_equal(tz_load("UTC", &r.zone, err, sizeof err), 0);
	assert_int_equal(schedule_parse(&r.when, "0 2 * * *", err, sizeof err), 0);
	return r;
}

static void test_recurring_rule(void **state)
{
	(void)state;
	char *globs[] = {"web-*", "db-1", NULL};
	maintenance_rule r = nightly(globs, 2);
	double day = 1795824000; /* 2026-11-28T00:00:00Z */
	double until = 0;
	assert_false(maintenance_rule_covers(&r, "web-1", day + 2 * 3600 - 1, NULL));
	assert_true(maintenance_rule_covers(&r, "web-1", day + 2 * 3600, &until));
	assert_true(until == day + 3 * 3600);
	assert_true(maintenance_rule_covers(&r, "db-1", day + 2 * 3600 + 3599, NULL));
	assert_false(maintenance_rule_covers(&r, "web-1", day + 3 * 3600, NULL));
	assert_false(maintenance_rule_covers(&r, "db-2", day + 2 * 3600 + 10, NULL));
	assert_false(maintenance_rule_covers(&r, "api-web-1", day + 2 * 3600 + 10, NULL));
}

static void test_state_combines_rules_and_windows(void **state)
{
	store *st = ((temp_store *)*state)->st;
	char *globs[] = {"web-*", NULL};
	maintenance_rule r = nightly(globs, 1);
	double day = 1795824000, t = day + 2 * 3600 + 60;
	maintenance_state m;
	assert_int_equal(maintenance_state_at(st, &r, 1, 1, "web-1", t, &m), STORE_OK);
	assert_true(m.active);
	assert_string_equal(m.source, "rule nightly");
	assert_string_equal(m.reason, "backups");
	/* a stored window that ends later wins */
	assert_int_equal(maintenance_window_add(st, 1, t - 60, t + 7200, "upgrade", NULL, t, NULL),
	                 STORE_OK);
	assert_int_equal(maintenance_state_at(st, &r, 1, 1, "web-1", t, &m), STORE_OK);
	assert_true(m.until == t + 7200);
	assert_string_equal(m.reason, "upgrade");
}

static void test_note_and_count(void **state)
{
	store *st = ((temp_store *)*state)->st;
	bool changed = false;
	int64_t n = -1;
	assert_int_equal(maintenance_note(st, 1, false, &changed), STORE_OK);
	assert_false(changed);
	assert_int_equal(maintenance_note(st, 1, true, &changed), STORE_OK);
	assert_true(changed);
	assert_int_equal(maintenance_note(st, 1, true, &changed), STORE_OK);
	assert_false(changed);
	assert_int_equal(maintenance_count_active(st, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(maintenance_note(st, 1, false, &changed), STORE_OK);
	assert_true(changed);
	assert_int_equal(maintenance_count_active(st, &n), STORE_OK);
	assert_int_equal(n, 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_stored_window),
	        T(test_recurring_rule),
	        T(test_state_combines_rules_and_windows),
	        T(test_note_and_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
