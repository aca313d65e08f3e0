/* Unit tests: servers — the debounce, the servers to check, check results,
 * and server_unreachable incidents (one per outage, restore on resolve). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "servers.h"
#include "temp_store.h"

typedef temp_store fixture;

static void exec_ok(store *st, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(store_db(st), sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	if (f == NULL || temp_store_open(f, "servers") != 0)
		return -1;
	exec_ok(f->st, "INSERT INTO servers (id, handle, ip, port, status, is_managed, created_at,"
	               " updated_at) VALUES"
	               " (1, 'a', '10.0.0.1', 22, 'ready', 1, 0, 0),"
	               " (2, 'b', '10.0.0.2', 2222, 'in_use', 1, 0, 0),"
	               " (3, 'c', NULL, NULL, 'maintenance', 1, 0, 0),"
	               " (4, 'd', '10.0.0.4', 22, 'ready', 0, 0, 0),"
	               " (5, 'e', '10.0.0.5', 22, 'error', 1, 0, 0)");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	int rc = temp_store_remove(f);
	free(f);
	return rc;
}

static int64_t int_query(store *st, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -1;
	assert_int_equal(sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static const char *text_query(store *st, const char *sql)
{
	static char buf[128];
	sqlite3_stmt *s = NULL;
	buf[0] = '\0';
	assert_int_equal(sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
		snprintf(buf, sizeof buf, "%s", (const char *)sqlite3_column_text(s, 0));
	else
		snprintf(buf, sizeof buf, "(null)");
	sqlite3_finalize(s);
	return buf;
}

static void test_debounce(void **state)
{
	health_counters c = {0};
	(void)state;
	/* failure_threshold 2, success_threshold 2 */
	assert_int_equal(servers_debounce(&c, false, 2, 2), HEALTH_STEADY);
	assert_int_equal(c.failures, 1);
	assert_int_equal(servers_debounce(&c, true, 2, 2), HEALTH_STEADY); /* blip */
	assert_int_equal(c.failures, 0);
	assert_int_equal(servers_debounce(&c, false, 2, 2), HEALTH_STEADY);
	assert_int_equal(servers_debounce(&c, false, 2, 2), HEALTH_BECAME_UNHEALTHY);
	assert_true(c.unhealthy);
	assert_int_equal(servers_debounce(&c, false, 2, 2), HEALTH_STEADY); /* still down */
	assert_int_equal(c.failures, 3);
	assert_int_equal(servers_debounce(&c, true, 2, 2), HEALTH_STEADY);
	assert_int_equal(servers_debounce(&c, false, 2, 2), HEALTH_STEADY);
	assert_int_equal(servers_debounce(&c, true, 2, 2), HEALTH_STEADY);
	assert_int_equal(servers_debounce(&c, true, 2, 2), HEALTH_BECAME_HEALTHY);
	assert_false(c.unhealthy);
	assert_int_equal(c.successes, 2);
	/* threshold 1 is the seed's behaviour */
	health_counters d = {0};
	assert_int_equal(servers_debounce(&d, false, 1, 1), HEALTH_BECAME_UNHEALTHY);
	assert_int_equal(servers_debounce(&d, true, 1, 1), HEALTH_BECAME_HEALTHY);
	/* thresholds below 1 act as 1 */
	health_counters e = {0};
	assert_int_equal(servers_debounce(&e, false, 0, 0), HEALTH_BECAME_UNHEALTHY);
}

static void test_list_for_check(void **state)
{
	fixture *f = *state;
	static const char *const st[] = {"ready", "in_use", NULL};
	server_list l;
	char err[256];

	assert_int_equal(servers_list_for_check(f->st, st, &l, err, sizeof err), 0);
	assert_int_equal(l.count, 2); /* not the unmanaged d, not e in error */
	assert_string_equal(l.rows[0].handle, "a");
	assert_int_equal(l.rows[0].port, 22);
	assert_string_equal(l.rows[1].handle, "b");
	assert_int_equal(l.rows[1].port, 2222);
	assert_string_equal(l.rows[1].ip, "10.0.0.2");
	assert_int_equal(l.rows[1].open_incident, 0);
	server_list_free(&l);

	/* an open incident keeps a server in the list whatever its status */
	exec_ok(f->st, "INSERT INTO incidents (id, server_id, type, status, detected_at)"
	               " VALUES (7, 5, 'server_unreachable', 'failed', 1)");
	assert_int_equal(servers_list_for_check(f->st, st, &l, err, sizeof err), 0);
	assert_int_equal(l.count, 3);
	assert_string_equal(l.rows[2].handle, "e");
	assert_int_equal(l.rows[2].open_incident, 7);
	server_list_free(&l);

	static const char *const maint[] = {"maintenance", NULL};
	assert_int_equal(servers_list_for_check(f->st, maint, &l, err, sizeof err), 0);
	assert_int_equal(l.count, 2);
	assert_string_equal(l.rows[0].handle, "c");
	assert_null(l.rows[0].ip);
	assert_int_equal(l.rows[0].port, 22);
	server_list_free(&l);
}

static void test_record_check(void **state)
{
	fixture *f = *state;
	health_counters c = {.failures = 3, .successes = 0};
	char err[256];

	assert_int_equal(servers_record_check(f->st, 1, 1000.5, 42.0, &c, err, sizeof err), 0);
	assert_int_equal(int_query(f->st, "SELECT consecutive_failures FROM servers WHERE id = 1"),
	                 3);
	assert_int_equal(int_query(f->st, "SELECT response_time_ms FROM servers WHERE id = 1"), 42);
	assert_string_equal(text_query(f->st, "SELECT last_health_check FROM servers WHERE id = 1"),
	                    "1000.5");
	assert_int_equal(servers_record_check(f->st, 1, 1001, -1, &c, err, sizeof err), 0);
	assert_string_equal(text_query(f->st, "SELECT response_time_ms FROM servers WHERE id = 1"),
	                    "(null)");
}

static void test_incident_once_per_outage(void **state)
{
	fixture *f = *state;
	int64_t id = 0, id2 = 0, resolved = 0;
	bool created = false;
	char prev[32], restored[32], err[256];

	assert_int_equal(servers_incident_open(f->st, 2, 100, "run_x", "{}", &id, &created, prev,
	                                       sizeof prev, err, sizeof err),
	                 0);
	assert_true(created);
	assert_true(id > 0);
	assert_string_equal(prev, "in_use");
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 2"), "error");
	assert_string_equal(text_query(f->st, "SELECT previous_status FROM servers WHERE id = 2"),
	                    "in_use");
	assert_string_equal(text_query(f->st, "SELECT correlation_id FROM incidents"), "run_x");

	/* again while open: the same incident, nothing new, status kept */
	assert_int_equal(servers_incident_open(f->st, 2, 200, "run_y", "{}", &id2, &created, prev,
	                                       sizeof prev, err, sizeof err),
	                 0);
	assert_false(created);
	assert_int_equal(id2, id);
	assert_string_equal(prev, "in_use");
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM incidents"), 1);

	assert_int_equal(servers_incident_resolve(f->st, 2, 300, &resolved, restored,
	                                          sizeof restored, err, sizeof err),
	                 0);
	assert_int_equal(resolved, id);
	assert_string_equal(restored, "in_use");
	assert_int_equal(int_query(f->st, "SELECT resolved_at FROM incidents"), 300);
	assert_string_equal(text_query(f->st, "SELECT status FROM incidents"), "resolved");
	assert_string_equal(text_query(f->st, "SELECT previous_status FROM servers WHERE id = 2"),
	                    "(null)");

	/* a new outage is a new incident */
	assert_int_equal(servers_incident_open(f->st, 2, 400, "run_z", NULL, &id2, &created, NULL,
	                                       0, err, sizeof err),
	                 0);
	assert_true(created);
	assert_true(id2 != id);
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM incidents"), 2);
}

static void test_resolve_respects_operator(void **state)
{
	fixture *f = *state;
	int64_t id = 0, resolved = 0;
	bool created = false;
	char restored[32], err[256];

	assert_int_equal(servers_incident_open(f->st, 1, 100, "c", NULL, &id, &created, NULL, 0,
	                                       err, sizeof err),
	                 0);
	exec_ok(f->st, "UPDATE servers SET status = 'maintenance' WHERE id = 1");
	assert_int_equal(servers_incident_resolve(f->st, 1, 200, &resolved, restored,
	                                          sizeof restored, err, sizeof err),
	                 0);
	assert_int_equal(resolved, id);
	assert_string_equal(restored, "maintenance");

	/* nothing open: an error status from elsewhere is not touched */
	assert_int_equal(servers_incident_resolve(f->st, 5, 300, &resolved, restored,
	                                          sizeof restored, err, sizeof err),
	                 0);
	assert_int_equal(resolved, 0);
	assert_string_equal(restored, "error");
}

static void test_open_unknown_server(void **state)
{
	fixture *f = *state;
	int64_t id = 0;
	bool created = true;
	char err[256];
	assert_int_equal(servers_incident_open(f->st, 99, 1, "c", NULL, &id, &created, NULL, 0, err,
	                                       sizeof err),
	                 STORE_NOTFOUND);
	assert_false(created);
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM incidents"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_debounce),
	        cmocka_unit_test_setup_teardown(test_list_for_check, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_record_check, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_incident_once_per_outage, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_resolve_respects_operator, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_open_unknown_server, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
