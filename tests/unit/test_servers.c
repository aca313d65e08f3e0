/* Unit tests: servers — the debounce, the servers to check, check results,
 * the lookups and counts; and services (services.c), whose errors keep the
 * store's mapping (a read-only or full store). Incidents: test_incidents.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "servers.h"
#include "services.h"
#include "temp_store.h"

typedef temp_store fixture;

static void exec_ok(store *st, const char *sql)
{
	if (store_exec(st, sql) != STORE_OK)
		fail_msg("%s: %s", sql, store_errmsg(st));
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

/* The first column of the first row of sql (a static string). */
static int64_t int_query(store *st, const char *sql)
{
	store_stmt *q = NULL;
	int64_t v = -1;
	assert_int_equal(store_prepare(st, sql, &q), STORE_OK);
	if (store_step(q) == STORE_ROW)
		v = store_col_int64(q, 0);
	store_stmt_done(q);
	return v;
}

static const char *text_query(store *st, const char *sql)
{
	static char buf[128];
	store_stmt *q = NULL;
	assert_int_equal(store_prepare(st, sql, &q), STORE_OK);
	const char *t = store_step(q) == STORE_ROW ? store_col_text(q, 0) : NULL;
	snprintf(buf, sizeof buf, "%s", t ? t : "(null)");
	store_stmt_done(q);
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

static void test_find_and_get(void **state)
{
	fixture *f = *state;
	server_list l;
	server_row r;
	bool managed = true;
	char err[256];

	assert_int_equal(servers_find(f->st, "d", &l, &managed, err, sizeof err), STORE_OK);
	assert_int_equal(l.count, 1);
	assert_int_equal(l.rows[0].id, 4);
	assert_string_equal(l.rows[0].ip, "10.0.0.4");
	assert_false(managed);
	server_list_free(&l);
	assert_int_equal(servers_find(f->st, "c", &l, NULL, err, sizeof err), STORE_OK);
	assert_int_equal(l.rows[0].port, 22); /* NULL port */
	server_list_free(&l);
	assert_int_equal(servers_find(f->st, "zz", &l, NULL, err, sizeof err), STORE_NOTFOUND);
	assert_string_equal(err, "no server 'zz'");
	assert_int_equal(l.count, 0);

	exec_ok(f->st, "UPDATE servers SET previous_status = 'in_use' WHERE id = 5");
	assert_int_equal(servers_get(f->st, 5, &r, err, sizeof err), STORE_OK);
	assert_string_equal(r.handle, "e");
	assert_string_equal(r.status, "error");
	assert_string_equal(r.previous_status, "in_use");
	server_row_free(&r);
	assert_int_equal(servers_get(f->st, 99, &r, err, sizeof err), STORE_NOTFOUND);
}

typedef struct {
	int n;
	char names[8][16];
	int64_t counts[8];
} count_list;

static int collect_count(void *ctx, const char *name, int64_t count)
{
	count_list *l = ctx;
	snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
	l->counts[l->n++] = count;
	return 0;
}

static void test_count_by_status(void **state)
{
	fixture *f = *state;
	count_list c = {0};
	assert_int_equal(servers_count_by_status(f->st, collect_count, &c), STORE_OK);
	assert_int_equal(c.n, 4);
	assert_string_equal(c.names[0], "error");
	assert_string_equal(c.names[1], "in_use");
	assert_string_equal(c.names[2], "maintenance");
	assert_string_equal(c.names[3], "ready");
	assert_int_equal(c.counts[3], 2);
}

static void test_provisioning_claim(void **state)
{
	fixture *f = *state;
	server_list l;
	bool claimed = false;
	char err[256];

	exec_ok(f->st, "UPDATE servers SET status = 'pending_setup' WHERE id IN (1, 4)");
	assert_int_equal(servers_list_due_provisioning(f->st, 1000, 1800, 300, &l, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(l.count, 1); /* d is not managed */
	assert_string_equal(l.rows[0].handle, "a");
	server_list_free(&l);
	assert_int_equal(servers_claim_provisioning(f->st, 1, false, 1000, 1800, 300, &claimed, err,
	                                            sizeof err),
	                 STORE_OK);
	assert_true(claimed);
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 1"),
	                    "provisioning");
	/* within the timeout: neither due nor claimable again */
	assert_int_equal(servers_claim_provisioning(f->st, 1, false, 1001, 1800, 300, &claimed, err,
	                                            sizeof err),
	                 STORE_OK);
	assert_false(claimed);
	assert_int_equal(servers_list_due_provisioning(f->st, 1001, 1800, 300, &l, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(l.count, 0);
	/* force (incident recovery) without cooldown claims an in_use server */
	assert_int_equal(servers_claim_provisioning(f->st, 2, true, 1001, 1800, 0, &claimed, err,
	                                            sizeof err),
	                 STORE_OK);
	assert_true(claimed);
	assert_int_equal(int_query(f->st, "SELECT provisioning_attempts FROM servers WHERE id = 2"),
	                 1);
}

/* ---- services ---- */

static void test_services(void **state)
{
	fixture *f = *state;
	service_list l;
	char err[256];
	service_row svc = {.server_handle = "a",
	                   .name = "web",
	                   .git_repo = "file:///r.git",
	                   .port = 8080,
	                   .env = "{\"K\": \"v\"}"};

	assert_int_equal(services_add(f->st, &svc, err, sizeof err), STORE_OK);
	svc.ref = "v2"; /* again: an update */
	assert_int_equal(services_add(f->st, &svc, err, sizeof err), STORE_OK);
	svc.server_handle = "zz";
	assert_int_equal(services_add(f->st, &svc, err, sizeof err), STORE_NOTFOUND);
	assert_int_equal(services_list(f->st, NULL, &l, err, sizeof err), STORE_OK);
	assert_int_equal(l.count, 1);
	assert_string_equal(l.rows[0].server_handle, "a");
	assert_string_equal(l.rows[0].ref, "v2");
	assert_int_equal(l.rows[0].port, 8080);
	assert_null(l.rows[0].start_command);
	service_list_free(&l);
	assert_int_equal(services_list(f->st, "b", &l, err, sizeof err), STORE_OK);
	assert_int_equal(l.count, 0);
	assert_int_equal(services_remove(f->st, "a", "web", err, sizeof err), STORE_OK);
	assert_int_equal(services_remove(f->st, "a", "web", err, sizeof err), STORE_NOTFOUND);
}

/* services.c used to map every error but busy to STORE_ERROR, so a
 * read-only store came back as a generic error. */
static void test_services_readonly_store(void **state)
{
	fixture *f = *state;
	store *ro = NULL;
	char err[256] = "";
	service_row svc = {.server_handle = "a", .name = "web", .git_repo = "r"};

	assert_int_equal(store_open_readonly(&ro, f->path, err, sizeof err), STORE_OK);
	assert_int_equal(services_add(ro, &svc, err, sizeof err), STORE_READONLY);
	assert_non_null(strstr(err, "readonly"));
	assert_int_equal(services_remove(ro, "a", "web", err, sizeof err), STORE_READONLY);
	store_close(ro);
}

/* ... and a full disk (the page limit standing in for it) as STORE_FULL. */
static void test_services_full_store(void **state)
{
	fixture *f = *state;
	char err[256] = "", *env = malloc(256 * 1024);
	service_row svc = {.server_handle = "a", .name = "web", .git_repo = "r", .env = env};

	assert_non_null(env);
	memset(env, 'x', 256 * 1024 - 1);
	env[256 * 1024 - 1] = '\0';
	int64_t pages = int_query(f->st, "PRAGMA page_count");
	assert_true(pages > 0);
	exec_ok(f->st, "PRAGMA max_page_count = 1"); /* clamps to the current size */
	assert_int_equal(services_add(f->st, &svc, err, sizeof err), STORE_FULL);
	assert_non_null(strstr(err, "full"));
	free(env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_debounce),
	        cmocka_unit_test_setup_teardown(test_list_for_check, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_record_check, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_find_and_get, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_count_by_status, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_provisioning_claim, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_services, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_services_readonly_store, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_services_full_store, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
