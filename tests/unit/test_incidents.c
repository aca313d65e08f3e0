/* Unit tests: incidents — every transition (open, close, recovering,
 * resolve, fail, provisioning_failed, the operator's ack and close), each
 * with its notification in one transaction, the one definition of open,
 * the listings, and the error paths of the modules that drive
 * them: provisioner.c (a failed step rolls the final status back) and
 * recovery.c (a store failure comes back with its code, an inline recovery
 * returns its result). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "incidents.h"
#include "provisioner.h"
#include "recovery.h"
#include "temp_store.h"

typedef temp_store fixture;

#define FAIL_OUTBOX                                                                                \
	"CREATE TRIGGER no_notes BEFORE INSERT ON notifications"                                   \
	" BEGIN SELECT RAISE(ABORT, 'outbox unavailable'); END"

static void exec_ok(store *st, const char *sql)
{
	if (store_exec(st, sql) != STORE_OK)
		fail_msg("%s: %s", sql, store_errmsg(st));
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	if (f == NULL || temp_store_open(f, "incidents") != 0)
		return -1;
	exec_ok(f->st, "INSERT INTO servers (id, handle, ip, port, status, is_managed, created_at,"
	               " updated_at) VALUES"
	               " (1, 'a', '10.0.0.1', 22, 'ready', 1, 0, 0),"
	               " (2, 'b', '10.0.0.2', 2222, 'in_use', 1, 0, 0),"
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
	static char buf[256];
	store_stmt *q = NULL;
	assert_int_equal(store_prepare(st, sql, &q), STORE_OK);
	const char *t = store_step(q) == STORE_ROW ? store_col_text(q, 0) : NULL;
	snprintf(buf, sizeof buf, "%s", t ? t : "(null)");
	store_stmt_done(q);
	return buf;
}

/* ---- server_unreachable: open and close ---- */

static void test_incident_once_per_outage(void **state)
{
	fixture *f = *state;
	int64_t id = 0, id2 = 0, resolved[4] = {0};
	size_t n = 0;
	bool created = false;
	char prev[32], restored[32], err[256];

	assert_int_equal(incidents_open_unreachable(f->st, 2, 100, "run_x", "{}", &id, &created,
	                                            prev, sizeof prev, err, sizeof err),
	                 0);
	assert_true(created);
	assert_true(id > 0);
	assert_string_equal(prev, "in_use");
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 2"), "error");
	assert_string_equal(text_query(f->st, "SELECT previous_status FROM servers WHERE id = 2"),
	                    "in_use");
	assert_string_equal(text_query(f->st, "SELECT correlation_id FROM incidents"), "run_x");

	/* again while open: the same incident, nothing new, status kept */
	assert_int_equal(incidents_open_unreachable(f->st, 2, 200, "run_y", "{}", &id2, &created,
	                                            prev, sizeof prev, err, sizeof err),
	                 0);
	assert_false(created);
	assert_int_equal(id2, id);
	assert_string_equal(prev, "in_use");
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM incidents"), 1);

	assert_int_equal(incidents_resolve_healthy(f->st, 2, 300, resolved, 4, &n, restored,
	                                           sizeof restored, err, sizeof err),
	                 0);
	assert_int_equal(n, 1);
	assert_int_equal(resolved[0], id);
	assert_string_equal(restored, "in_use");
	assert_int_equal(int_query(f->st, "SELECT resolved_at FROM incidents"), 300);
	assert_string_equal(text_query(f->st, "SELECT status FROM incidents"), "resolved");
	assert_string_equal(text_query(f->st, "SELECT resolution FROM incidents"), "recovered");
	assert_string_equal(text_query(f->st, "SELECT previous_status FROM servers WHERE id = 2"),
	                    "(null)");

	/* a new outage is a new incident */
	assert_int_equal(incidents_open_unreachable(f->st, 2, 400, "run_z", NULL, &id2, &created,
	                                            NULL, 0, err, sizeof err),
	                 0);
	assert_true(created);
	assert_true(id2 != id);
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM incidents"), 2);
}

static void test_resolve_respects_operator(void **state)
{
	fixture *f = *state;
	int64_t id = 0, resolved[4] = {0};
	size_t n = 0;
	bool created = false;
	char restored[32], err[256];

	assert_int_equal(incidents_open_unreachable(f->st, 1, 100, "c", NULL, &id, &created, NULL,
	                                            0, err, sizeof err),
	                 0);
	exec_ok(f->st, "UPDATE servers SET status = 'maintenance' WHERE id = 1");
	assert_int_equal(incidents_resolve_healthy(f->st, 1, 200, resolved, 4, &n, restored,
	                                           sizeof restored, err, sizeof err),
	                 0);
	assert_int_equal(n, 1);
	assert_int_equal(resolved[0], id);
	assert_string_equal(restored, "maintenance");

	/* nothing open: an error status from elsewhere is not touched */
	assert_int_equal(incidents_resolve_healthy(f->st, 5, 300, resolved, 4, &n, restored,
	                                           sizeof restored, err, sizeof err),
	                 0);
	assert_int_equal(n, 0);
	assert_string_equal(restored, "error");
}

static void test_open_unknown_server(void **state)
{
	fixture *f = *state;
	int64_t id = 0;
	bool created = true;
	char err[256];
	assert_int_equal(incidents_open_unreachable(f->st, 99, 1, "c", NULL, &id, &created, NULL, 0,
	                                            err, sizeof err),
	                 STORE_NOTFOUND);
	assert_false(created);
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM incidents"), 0);
}

/* ---- listings ---- */

typedef struct {
	int n;
	int64_t ids[8];
	char handle[8][16];
	char status[8][16];
	double resolved_at[8];
} incident_list;

static int collect_incident(void *ctx, const incident_row *r)
{
	incident_list *l = ctx;
	int i = l->n++;
	l->ids[i] = r->id;
	snprintf(l->handle[i], sizeof l->handle[i], "%s",
	         r->server_handle ? r->server_handle : "-");
	snprintf(l->status[i], sizeof l->status[i], "%s", r->status);
	l->resolved_at[i] = r->resolved_at;
	return 0;
}

static void test_list_and_open_count(void **state)
{
	fixture *f = *state;
	incident_list l = {0};
	int64_t open = -1;

	exec_ok(f->st, "INSERT INTO servers (id, handle, status, created_at, updated_at)"
	               " VALUES (4, 'old', 'decommissioned', 1, 1)");
	exec_ok(f->st, "INSERT INTO incidents (id, server_id, type, status, detected_at,"
	               " resolved_at) VALUES (1, 1, 'server_unreachable', 'resolved', 100, 150),"
	               " (2, 5, 'service_down', 'detected', 300, NULL),"
	               " (3, 4, 'server_unreachable', 'recovering', 200, NULL),"
	               " (4, 5, 'provisioning_failed', 'failed', 250, 260)");
	exec_ok(f->st, "DELETE FROM servers WHERE id = 4"); /* incident 3 keeps a NULL server */

	assert_int_equal(incidents_list(f->st, false, collect_incident, &l), STORE_OK);
	assert_int_equal(l.n, 4);
	assert_int_equal(l.ids[0], 2); /* newest first */
	assert_string_equal(l.handle[0], "e");
	assert_true(l.resolved_at[0] == 0);
	assert_int_equal(l.ids[1], 4);
	assert_int_equal(l.ids[2], 3);
	assert_string_equal(l.handle[2], "-");
	assert_int_equal(l.ids[3], 1);
	assert_string_equal(l.handle[3], "a");
	assert_true(l.resolved_at[3] == 150);

	/* open: detected, recovering and failed (a failed recovery does not
	 * end the outage; the failed one used to drop out of --open, the
	 * status count and the metric) */
	memset(&l, 0, sizeof l);
	assert_int_equal(incidents_list(f->st, true, collect_incident, &l), STORE_OK);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.ids[0], 2);
	assert_string_equal(l.status[0], "detected");
	assert_int_equal(l.ids[1], 4);
	assert_string_equal(l.status[1], "failed");
	assert_int_equal(l.ids[2], 3);
	assert_string_equal(l.status[2], "recovering");

	assert_int_equal(incidents_open_count(f->st, &open), STORE_OK);
	assert_int_equal(open, 3);
}

/* ---- recovering, resolve, fail ---- */

static void note_for(notify_note *n)
{
	notify_note_init(n, NOTIFY_RECOVERY_FINISHED, LOG_INFO, "run_recover_1");
	notify_note_title(n, "Recovery of b");
}

/* ---- the operator: ack and close ---- */

static int64_t open_b(fixture *f, double at)
{
	int64_t id = 0;
	bool created = false;
	char err[256];
	assert_int_equal(incidents_open_unreachable(f->st, 2, at, "run_hc", NULL, &id, &created,
	                                            NULL, 0, err, sizeof err),
	                 STORE_OK);
	assert_true(created);
	return id;
}

static int64_t count_kind(fixture *f, const char *kind)
{
	store_stmt *q = NULL;
	int64_t n = -1;
	assert_int_equal(
	        store_prepare(f->st, "SELECT count(*) FROM notifications WHERE kind = ?1", &q),
	        STORE_OK);
	store_bind_text(q, 1, kind);
	if (store_step(q) == STORE_ROW)
		n = store_col_int64(q, 0);
	store_stmt_done(q);
	return n;
}

static void test_ack_keeps_open_and_silences(void **state)
{
	fixture *f = *state;
	int64_t id = open_b(f, 100), ids[4], open = 0;
	size_t n = 0;
	bool already = true;
	char err[256];
	notify_note note;

	assert_int_equal(
	        incidents_ack(f->st, id, "alice", "looking at it", 110, &already, err, sizeof err),
	        STORE_OK);
	assert_false(already);
	assert_string_equal(text_query(f->st, "SELECT status || ' ' || acknowledged_by || ' '"
	                                      " || ack_reason FROM incidents"),
	                    "detected alice looking at it");
	assert_int_equal(int_query(f->st, "SELECT acknowledged_at FROM incidents"), 110);
	assert_int_equal(incidents_open_count(f->st, &open), STORE_OK);
	assert_int_equal(open, 1); /* it stays open */

	/* again: the first acknowledgement stays */
	assert_int_equal(incidents_ack(f->st, id, "bob", NULL, 120, &already, err, sizeof err),
	                 STORE_OK);
	assert_true(already);
	assert_string_equal(text_query(f->st, "SELECT acknowledged_by FROM incidents"), "alice");

	/* a failed recovery of it is not notified; a successful one is */
	int64_t before = count_kind(f, NOTIFY_RECOVERY_FINISHED);
	assert_int_equal(incidents_begin_recovery(f->st, 2, 130, ids, 4, &n, err, sizeof err),
	                 STORE_OK);
	note_for(&note);
	assert_int_equal(
	        incidents_end_recovery(f->st, 2, ids, n, false, 1, 140, &note, err, sizeof err),
	        STORE_OK);
	assert_int_equal(count_kind(f, NOTIFY_RECOVERY_FINISHED), before);
	assert_string_equal(text_query(f->st, "SELECT status FROM incidents"), "failed");
	assert_int_equal(incidents_begin_recovery(f->st, 2, 150, ids, 4, &n, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(
	        incidents_end_recovery(f->st, 2, ids, n, true, 1, 160, &note, err, sizeof err),
	        STORE_OK);
	notify_note_free(&note);
	assert_int_equal(count_kind(f, NOTIFY_RECOVERY_FINISHED), before + 1);

	/* resolved: not open any more */
	assert_int_equal(incidents_ack(f->st, id, "alice", NULL, 170, &already, err, sizeof err),
	                 INCIDENTS_NOT_OPEN);
	assert_non_null(strstr(err, "not open"));
	assert_int_equal(incidents_ack(f->st, 999, "alice", NULL, 170, &already, err, sizeof err),
	                 STORE_NOTFOUND);
	assert_string_equal(err, "no incident 999");
}

static void test_close_restores_previous_status(void **state)
{
	fixture *f = *state;
	int64_t id = open_b(f, 100), open = -1;
	char restored[32], err[256];

	exec_ok(f->st, "UPDATE servers SET consecutive_failures = 7 WHERE id = 2");
	assert_int_equal(incidents_close(f->st, id, "false alarm: firewall test", 200, restored,
	                                 sizeof restored, err, sizeof err),
	                 STORE_OK);
	assert_string_equal(restored, "in_use");
	assert_string_equal(text_query(f->st, "SELECT status || ' ' || resolution || ' ' ||"
	                                      " resolution_reason FROM incidents"),
	                    "resolved closed false alarm: firewall test");
	assert_int_equal(int_query(f->st, "SELECT resolved_at FROM incidents"), 200);
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 2"), "in_use");
	assert_int_equal(int_query(f->st, "SELECT consecutive_failures FROM servers WHERE id = 2"),
	                 0);
	assert_int_equal(incidents_open_count(f->st, &open), STORE_OK);
	assert_int_equal(open, 0);
	assert_int_equal(incidents_close(f->st, id, "again", 210, restored, sizeof restored, err,
	                                 sizeof err),
	                 INCIDENTS_NOT_OPEN);
	assert_int_equal(
	        incidents_close(f->st, 12345, "x", 210, restored, sizeof restored, err, sizeof err),
	        STORE_NOTFOUND);

	/* another incident still open: the server stays in error */
	int64_t second = open_b(f, 300);
	exec_ok(f->st, "INSERT INTO incidents (server_id, type, status, detected_at)"
	               " VALUES (2, 'service_down', 'detected', 301)");
	assert_int_equal(incidents_close(f->st, second, "known", 310, restored, sizeof restored,
	                                 err, sizeof err),
	                 STORE_OK);
	assert_string_equal(restored, "error");
}

/* ---- provisioning_failed: one per server, resolved by health ---- */

static void test_provisioning_failed_once_and_acked(void **state)
{
	fixture *f = *state;
	server_row a = {.id = 1, .handle = "a", .ip = "10.0.0.1", .status = "error"};
	bool already = false;
	char err[256];

	exec_ok(f->st, "UPDATE servers SET status = 'error', previous_status = 'missing'"
	               " WHERE id = 1");
	assert_int_equal(
	        incidents_open_provisioning_failed(f->st, &a, "first", "c1", 100, err, sizeof err),
	        STORE_OK);
	/* a stale previous status would come back later: cleared */
	assert_string_equal(text_query(f->st, "SELECT previous_status FROM servers WHERE id = 1"),
	                    "(null)");
	assert_int_equal(
	        incidents_open_provisioning_failed(f->st, &a, "second", "c2", 110, err, sizeof err),
	        STORE_OK);
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM incidents"), 1);
	assert_string_equal(text_query(f->st, "SELECT details FROM incidents"),
	                    "{\"error\":\"second\"}");
	assert_int_equal(count_kind(f, NOTIFY_PROVISIONING_FAILED), 2);

	int64_t id = int_query(f->st, "SELECT id FROM incidents");
	assert_int_equal(incidents_ack(f->st, id, "ops", NULL, 120, &already, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(
	        incidents_open_provisioning_failed(f->st, &a, "third", "c3", 130, err, sizeof err),
	        STORE_OK);
	assert_int_equal(count_kind(f, NOTIFY_PROVISIONING_FAILED), 2); /* silenced */
	assert_string_equal(text_query(f->st, "SELECT details FROM incidents"),
	                    "{\"error\":\"third\"}");
}

/* A provisioning_failed incident used to stay open after the server was
 * healthy again (nothing resolved it; health_check did not even check a
 * server in error without an unreachable incident). */
static void test_provisioning_failed_resolved_when_healthy(void **state)
{
	fixture *f = *state;
	server_row a = {.id = 1, .handle = "a", .ip = "10.0.0.1", .status = "error"};
	static const char *const statuses[] = {"ready", "in_use", NULL};
	server_list list = {0};
	int64_t ids[4];
	size_t n = 0;
	char restored[32], err[256];

	exec_ok(f->st, "UPDATE servers SET status = 'error' WHERE id = 1");
	assert_int_equal(
	        incidents_open_provisioning_failed(f->st, &a, "boom", "c1", 100, err, sizeof err),
	        STORE_OK);
	int64_t id = int_query(f->st, "SELECT id FROM incidents");

	/* checked although in error, marked with its incident */
	assert_int_equal(servers_list_for_check(f->st, statuses, &list, err, sizeof err), STORE_OK);
	assert_int_equal(list.count, 2); /* a (error, provisioning_failed) and b (in_use) */
	assert_string_equal(list.rows[0].handle, "a");
	assert_int_equal(list.rows[0].open_provisioning, id);
	assert_int_equal(list.rows[0].open_incident, 0);
	server_list_free(&list);

	assert_int_equal(incidents_resolve_healthy(f->st, 1, 200, ids, 4, &n, restored,
	                                           sizeof restored, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], id);
	assert_string_equal(restored, "ready");
	assert_string_equal(text_query(f->st, "SELECT status || ' ' || resolution FROM incidents"),
	                    "resolved recovered");
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 1"), "ready");
	assert_non_null(strstr(text_query(f->st, "SELECT fields FROM notifications"
	                                         " WHERE kind = 'server_recovered'"),
	                       "\"incident_type\":\"provisioning_failed\""));
}

static void test_recovery_transitions(void **state)
{
	fixture *f = *state;
	int64_t id = 0, ids[4];
	size_t n = 9;
	bool created = false;
	char err[256];
	notify_note note;

	assert_int_equal(incidents_open_unreachable(f->st, 2, 100, "run_hc", NULL, &id, &created,
	                                            NULL, 0, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(incidents_begin_recovery(f->st, 2, 110, ids, 4, &n, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], id);
	assert_string_equal(text_query(f->st, "SELECT status FROM incidents"), "recovering");

	/* fail: the incident stays open (failed), the server in error */
	note_for(&note);
	assert_int_equal(
	        incidents_end_recovery(f->st, 2, ids, n, false, 1, 120, &note, err, sizeof err),
	        STORE_OK);
	assert_string_equal(text_query(f->st, "SELECT status FROM incidents"), "failed");
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 2"), "error");

	/* again: failed -> recovering -> resolved, the server back to in_use */
	assert_int_equal(incidents_begin_recovery(f->st, 2, 130, ids, 4, &n, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(
	        incidents_end_recovery(f->st, 2, ids, n, true, 1, 140, &note, err, sizeof err),
	        STORE_OK);
	notify_note_free(&note);
	assert_string_equal(text_query(f->st, "SELECT status FROM incidents"), "resolved");
	assert_string_equal(text_query(f->st, "SELECT resolution FROM incidents"), "recovery");
	assert_int_equal(int_query(f->st, "SELECT resolved_at FROM incidents"), 140);
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 2"), "in_use");
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM notifications"
	                                  " WHERE kind = 'recovery_finished'"),
	                 2);

	/* nothing open: nothing to begin */
	assert_int_equal(incidents_begin_recovery(f->st, 2, 150, ids, 4, &n, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(n, 0);
}

/* A failed outbox insert rolls the end back: still recovering. */
static void test_end_recovery_rolls_back(void **state)
{
	fixture *f = *state;
	int64_t id = 0, ids[4];
	size_t n = 0;
	bool created = false;
	char err[256] = "";
	notify_note note;

	assert_int_equal(incidents_open_unreachable(f->st, 2, 100, "run_hc", NULL, &id, &created,
	                                            NULL, 0, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(incidents_begin_recovery(f->st, 2, 110, ids, 4, &n, err, sizeof err),
	                 STORE_OK);
	exec_ok(f->st, FAIL_OUTBOX);
	note_for(&note);
	assert_true(incidents_end_recovery(f->st, 2, ids, n, true, 1, 120, &note, err, sizeof err) <
	            0);
	notify_note_free(&note);
	assert_non_null(strstr(err, "outbox unavailable"));
	assert_string_equal(text_query(f->st, "SELECT status FROM incidents"), "recovering");
	assert_string_equal(text_query(f->st, "SELECT resolved_at FROM incidents"), "(null)");
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 2"), "error");
}

/* ---- provisioning_failed, through the provisioner ---- */

/* A config whose state_dir is the fixture's (so its db is the fixture's
 * store) and whose playbooks cannot be found: every provisioning fails
 * at once, without a process. */
static config *failing_config(fixture *f)
{
	char path[256];
	config *cfg = NULL;
	config_errors errs = {0};

	snprintf(path, sizeof path, "%s/fleetkeeper.conf", f->dir);
	FILE *out = fopen(path, "w");
	assert_non_null(out);
	fprintf(out, "[daemon]\nstate_dir = %s\n[ansible]\nplaybook_dir = %s/none\n", f->dir,
	        f->dir);
	fclose(out);
	if (config_load(&cfg, path, &errs) != 0)
		fail_msg("config_load failed");
	config_errors_free(&errs);
	return cfg;
}

static provision_outcome provision_a(fixture *f, config *cfg, char *err, size_t errlen)
{
	provision_policy p;
	server_row srv = {
	        .id = 1, .handle = "a", .ip = "127.0.0.1", .port = 1, .status = "pending_setup"};
	provision_policy_default(&p);
	exec_ok(f->st, "UPDATE servers SET status = 'pending_setup', provisioning_started_at = NULL"
	               " WHERE id = 1");
	return provision_server(cfg, f->st, &srv, &p, false, -1, err, errlen);
}

static void test_provisioning_failed(void **state)
{
	fixture *f = *state;
	config *cfg = failing_config(f);
	char err[512];

	assert_int_equal(provision_a(f, cfg, err, sizeof err), PROVISION_FAILED);
	assert_non_null(strstr(err, "provision_access"));
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 1"), "error");
	assert_string_equal(text_query(f->st, "SELECT type || ' ' || status FROM incidents"),
	                    "provisioning_failed detected");
	assert_non_null(strstr(text_query(f->st, "SELECT details FROM incidents"),
	                       "{\"error\":\"provision_access: "));
	assert_string_equal(text_query(f->st, "SELECT kind FROM notifications"),
	                    "provisioning_failed");
	config_unref(cfg);
}

/* The final status used to be committed without its incident when the
 * incident's statement could not be prepared. Now nothing is written: the
 * server stays in provisioning (retried after provisioning_timeout). */
static void test_provisioning_failure_rolls_back(void **state)
{
	fixture *f = *state;
	config *cfg = failing_config(f);
	char err[512];

	exec_ok(f->st, "ALTER TABLE incidents RENAME TO incidents_gone");
	assert_int_equal(provision_a(f, cfg, err, sizeof err), PROVISION_FAILED);
	assert_non_null(strstr(err, "no such table: incidents"));
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 1"),
	                    "provisioning");
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM notifications"), 0);
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM incidents_gone"), 0);

	/* a failed outbox insert likewise */
	exec_ok(f->st, "ALTER TABLE incidents_gone RENAME TO incidents");
	exec_ok(f->st, FAIL_OUTBOX);
	assert_int_equal(provision_a(f, cfg, err, sizeof err), PROVISION_FAILED);
	assert_non_null(strstr(err, "outbox unavailable"));
	assert_string_equal(text_query(f->st, "SELECT status FROM servers WHERE id = 1"),
	                    "provisioning");
	assert_int_equal(int_query(f->st, "SELECT count(*) FROM incidents"), 0);
	config_unref(cfg);
}

/* ---- recovery's results ---- */

/* Server b unmanaged on a closed port with one service: its recovery
 * fails fast (SSH refused, nothing reprovisioned). (A server without
 * services is a no-op: recovery.c, test_recover.py.) */
static void unreachable_b(fixture *f)
{
	exec_ok(f->st, "UPDATE servers SET ip = '127.0.0.1', port = 1, is_managed = 0,"
	               " status = 'error', previous_status = 'in_use' WHERE id = 2");
	exec_ok(f->st, "INSERT INTO services (server_id, name, git_repo, created_at, updated_at)"
	               " VALUES (2, 'web', 'file:///nonexistent.git', 1, 1)");
	exec_ok(f->st, "INSERT INTO incidents (server_id, type, status, detected_at)"
	               " VALUES (2, 'server_unreachable', 'detected', 1)");
}

/* recovery_sequence returns a store failure with its code (it used to be
 * logged there as recovery_store_failed and returned as -1, which the
 * recover run reported again as not_found). */
static void test_recovery_store_failure_returned(void **state)
{
	fixture *f = *state;
	config *cfg = failing_config(f);
	recovery_counts c;
	char err[512] = "";

	assert_int_equal(recovery_sequence(cfg, f->st, "nope", false, -1, &c, err, sizeof err),
	                 STORE_NOTFOUND);
	assert_string_equal(err, "no server 'nope'");
	unreachable_b(f);
	exec_ok(f->st, FAIL_OUTBOX);
	int rc = recovery_sequence(cfg, f->st, "b", false, -1, &c, err, sizeof err);
	assert_true(rc < 0 && rc != STORE_NOTFOUND);
	assert_non_null(strstr(err, "outbox unavailable"));
	assert_int_equal(c.fail_count, 1);
	assert_string_equal(text_query(f->st, "SELECT status FROM incidents"), "recovering");
	config_unref(cfg);
}

/* An inline auto_recover (no daemon) returns the recovery's result; it
 * used to be dropped. */
static void test_inline_recovery_result(void **state)
{
	fixture *f = *state;
	config *cfg = failing_config(f);
	task_config tc = {.name = (char *)"health_check"};
	task_run run = {.cfg = cfg,
	                .task = &tc,
	                .store = f->st,
	                .cancel_fd = -1,
	                .logger = "tasks.health_check"};
	recovery_counts c;
	char err[512] = "";

	unreachable_b(f);
	assert_int_equal(recovery_request_auto(&run, 1, "b", &c, err, sizeof err), 1);
	assert_int_equal(c.fail_count, 1);
	assert_non_null(strstr(err, "recovery of b"));
	assert_string_equal(text_query(f->st, "SELECT status FROM incidents"), "failed");
	config_unref(cfg);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(test_incident_once_per_outage),
	        T(test_resolve_respects_operator),
	        T(test_open_unknown_server),
	        T(test_list_and_open_count),
	        T(test_recovery_transitions),
	        T(test_end_recovery_rolls_back),
	        T(test_ack_keeps_open_and_silences),
	        T(test_close_restores_previous_status),
	        T(test_provisioning_failed_once_and_acked),
	        T(test_provisioning_failed_resolved_when_healthy),
	        T(test_provisioning_failed),
	        T(test_provisioning_failure_rolls_back),
	        T(test_recovery_store_failure_returned),
	        T(test_inline_recovery_result),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
