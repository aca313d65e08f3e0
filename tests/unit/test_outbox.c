/* Unit tests: outbox (add, list_after, get, last_id; a rolled back
 * transaction leaves no row; the delivery rows of the sender), notify_text
 * (the shape of a note's row) and the incident notifications of
 * incidents.c (added with the change, and a failed outbox insert rolls the
 * change back), in a real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "incidents.h"
#include "notify_text.h"
#include "outbox.h"
#include "temp_store.h"

typedef temp_store fixture;

static void exec_ok(store *st, const char *sql)
{
	if (store_exec(st, sql) != STORE_OK)
		fail_msg("%s: %s", sql, store_errmsg(st));
}

static int64_t count_rows(store *st, const char *sql)
{
	store_stmt *q = NULL;
	assert_int_equal(store_prepare(st, sql, &q), STORE_OK);
	assert_int_equal(store_step(q), STORE_ROW);
	int64_t n = store_col_int64(q, 0);
	store_stmt_done(q);
	return n;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	if (f == NULL || temp_store_open(f, "outbox") != 0)
		return -1;
	exec_ok(f->st, "INSERT INTO servers (id, handle, ip, port, status, is_managed, created_at,"
	               " updated_at) VALUES (1, 'web-1', '10.0.0.1', 22, 'in_use', 1, 0, 0)");
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

/* Rows seen by a callback, copied. */
typedef struct {
	int n;
	int64_t ids[8];
	char kinds[8][32];
	char levels[8][16];
	char cids[8][64];
	char bodies[8][256];
	char fields[8][512];
	char titles[8][256];
} seen_rows;

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "(null)");
}

static int collect(void *ctx, const outbox_row *row)
{
	seen_rows *s = ctx;
	if (s->n == 8)
		return 1;
	s->ids[s->n] = row->id;
	copy(s->kinds[s->n], sizeof s->kinds[0], row->kind);
	copy(s->levels[s->n], sizeof s->levels[0], log_level_name(row->level));
	copy(s->cids[s->n], sizeof s->cids[0], row->correlation_id);
	copy(s->bodies[s->n], sizeof s->bodies[0], row->body);
	copy(s->fields[s->n], sizeof s->fields[0], row->fields_json);
	copy(s->titles[s->n], sizeof s->titles[0], row->title);
	s->n++;
	return 0;
}

static void add_one(store *st, const char *kind, log_level level, int64_t *id)
{
	char err[256];
	outbox_message m = {.kind = kind, .level = level, .title = "t", .correlation_id = "run_x"};
	assert_int_equal(outbox_add(st, &m, 100.0, id, err, sizeof err), STORE_OK);
}

static void test_add_list_get_last(void **state)
{
	fixture *f = *state;
	char err[256];
	int64_t last = -1, a = 0, b = 0, c = 0;
	seen_rows s = {0};

	assert_int_equal(outbox_last_id(f->st, &last, err, sizeof err), STORE_OK);
	assert_int_equal(last, 0);
	add_one(f->st, "server_unreachable", LOG_CRITICAL, &a);
	add_one(f->st, "server_recovered", LOG_INFO, &b);
	outbox_message full = {.kind = "task_failing",
	                       .level = LOG_ERROR,
	                       .title = "Task x failed 3 runs in a row",
	                       .body = "line 1\nline 2",
	                       .correlation_id = NULL,
	                       .fields_json = "{\"streak\": 3}"};
	assert_int_equal(outbox_add(f->st, &full, 101.0, &c, err, sizeof err), STORE_OK);
	assert_true(a < b && b < c);
	assert_int_equal(outbox_last_id(f->st, &last, err, sizeof err), STORE_OK);
	assert_int_equal(last, c);

	assert_int_equal(outbox_list_after(f->st, a, 0, collect, &s, err, sizeof err), STORE_OK);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.ids[0], b);
	assert_string_equal(s.kinds[0], "server_recovered");
	assert_string_equal(s.levels[0], "info");
	assert_string_equal(s.cids[0], "run_x");
	assert_string_equal(s.bodies[0], "(null)");
	assert_string_equal(s.kinds[1], "task_failing");
	assert_string_equal(s.levels[1], "error");
	assert_string_equal(s.cids[1], "(null)");
	assert_string_equal(s.bodies[1], "line 1\nline 2");
	assert_string_equal(s.fields[1], "{\"streak\": 3}");

	memset(&s, 0, sizeof s);
	assert_int_equal(outbox_list_after(f->st, 0, 1, collect, &s, err, sizeof err), STORE_OK);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.ids[0], a);
	assert_string_equal(s.levels[0], "critical");

	memset(&s, 0, sizeof s);
	assert_int_equal(outbox_get(f->st, c, collect, &s, err, sizeof err), STORE_OK);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.titles[0], "Task x failed 3 runs in a row");
	assert_int_equal(outbox_get(f->st, c + 10, collect, &s, err, sizeof err), STORE_NOTFOUND);
}

/* ---- the sender's delivery rows ---- */

static int64_t delivery_state_count(store *st, const char *state)
{
	static const char sql[] = "SELECT count(*) FROM notification_deliveries WHERE state = ?1";
	store_stmt *q = NULL;
	assert_int_equal(store_prepare(st, sql, &q), STORE_OK);
	store_bind_text(q, 1, state);
	assert_int_equal(store_step(q), STORE_ROW);
	int64_t n = store_col_int64(q, 0);
	store_stmt_done(q);
	return n;
}

static int note_time(void *ctx, double at)
{
	double *last = ctx;
	*last = at;
	return 0;
}

static void test_cursor_starts_at_newest(void **state)
{
	fixture *f = *state;
	int64_t a = 0, b = 0, cursor = -1;

	add_one(f->st, "server_missing", LOG_WARNING, &a);
	assert_int_equal(outbox_cursor_init(f->st, "tg", &cursor), STORE_OK);
	assert_int_equal(cursor, a); /* a new notifier replays nothing */
	add_one(f->st, "server_missing", LOG_WARNING, &b);
	assert_int_equal(outbox_cursor_init(f->st, "tg", &cursor), STORE_OK);
	assert_int_equal(cursor, a); /* an existing cursor stays */
	assert_int_equal(outbox_cursor_set(f->st, "tg", b), STORE_OK);
	assert_int_equal(outbox_cursor_init(f->st, "tg", &cursor), STORE_OK);
	assert_int_equal(cursor, b);
	assert_int_equal(outbox_cursor_init(f->st, "slack", &cursor), STORE_OK);
	assert_int_equal(cursor, b);
}

static void test_delivery_states(void **state)
{
	fixture *f = *state;
	int64_t id[4] = {0};
	outbox_head h = {0};
	seen_rows s = {0};
	double sent_at = 0;

	for (int i = 0; i < 4; i++)
		add_one(f->st, "server_missing", LOG_WARNING, &id[i]);
	assert_int_equal(outbox_pending_head(f->st, "tg", &h), STORE_NOTFOUND);
	for (int i = 0; i < 4; i++)
		assert_int_equal(outbox_delivery_add(f->st, "tg", id[i], 10.0), STORE_OK);
	assert_int_equal(outbox_delivery_add(f->st, "tg", id[0], 11.0), STORE_OK); /* no second */
	assert_int_equal(delivery_state_count(f->st, "queued"), 4);
	assert_int_equal(outbox_deliveries_between(f->st, "tg", id[0], id[2], collect, &s),
	                 STORE_OK);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.ids[0], id[1]);

	/* The attempt before the request, then sent. */
	assert_int_equal(outbox_pending_head(f->st, "tg", &h), STORE_OK);
	assert_int_equal(h.id, id[0]);
	assert_int_equal(h.pending, 4);
	assert_int_equal(outbox_mark_attempt(f->st, "tg", id[0], 20.0), STORE_OK);
	assert_int_equal(outbox_mark_progress(f->st, "tg", id[0], 1, 21.0), STORE_OK);
	assert_int_equal(outbox_pending_head(f->st, "tg", &h), STORE_OK);
	assert_int_equal(h.id, id[0]); /* sending is still pending: a crash sends it again */
	assert_int_equal(h.attempts, 1);
	assert_int_equal(h.progress, 1);
	assert_int_equal(outbox_mark_sent(f->st, "tg", id[0], 22.0), STORE_OK);
	assert_int_equal(outbox_sent_since(f->st, "tg", 21.5, note_time, &sent_at), STORE_OK);
	assert_true(sent_at == 22.0);

	/* A failure waits for its retry time. */
	assert_int_equal(outbox_mark_attempt(f->st, "tg", id[1], 23.0), STORE_OK);
	assert_int_equal(outbox_mark_failed(f->st, "tg", id[1], 30.0, "HTTP 502", 24.0), STORE_OK);
	assert_int_equal(outbox_pending_head(f->st, "tg", &h), STORE_OK);
	assert_int_equal(h.id, id[1]);
	assert_true(h.next_attempt_at == 30.0);
	assert_int_equal(h.pending, 3);

	/* Too old: dropped, each reported once. */
	memset(&s, 0, sizeof s);
	assert_int_equal(outbox_drop_older(f->st, "tg", 50.0, 40.0, collect, &s), STORE_OK);
	assert_int_equal(s.n, 0); /* created at 100 */
	assert_int_equal(outbox_drop_older(f->st, "tg", 101.0, 40.0, collect, &s), STORE_OK);
	assert_int_equal(s.n, 3);
	assert_int_equal(delivery_state_count(f->st, "dropped"), 3);
	assert_int_equal(outbox_pending_head(f->st, "tg", &h), STORE_NOTFOUND);
}

static void test_fold_and_prune(void **state)
{
	fixture *f = *state;
	int64_t id[3] = {0}, folded = 0, deleted = -1;
	seen_rows s = {0};

	for (int i = 0; i < 3; i++) {
		add_one(f->st, "server_missing", LOG_WARNING, &id[i]);
		assert_int_equal(outbox_delivery_add(f->st, "tg", id[i], 10.0), STORE_OK);
	}
	assert_int_equal(outbox_pending_list(f->st, "tg", collect, &s), STORE_OK);
	assert_int_equal(s.n, 3);
	assert_int_equal(outbox_fold_upto(f->st, "tg", id[1], 20.0, &folded), STORE_OK);
	assert_int_equal(folded, 2);
	assert_int_equal(delivery_state_count(f->st, "folded"), 2);

	/* Retention keeps the newest row, so ids never go back. */
	assert_int_equal(outbox_prune(f->st, 1000.0, 100, &deleted), STORE_OK);
	assert_int_equal(deleted, 2);
	assert_int_equal(count_rows(f->st, "SELECT count(*) FROM notification_deliveries"), 1);
	int64_t last = 0;
	char err[256];
	assert_int_equal(outbox_last_id(f->st, &last, err, sizeof err), STORE_OK);
	assert_int_equal(last, id[2]);
}

static void test_needs_kind_and_title(void **state)
{
	fixture *f = *state;
	char err[256] = "";
	outbox_message m = {.kind = "server_missing", .level = LOG_WARNING};
	assert_int_equal(outbox_add(f->st, &m, 1.0, NULL, err, sizeof err), STORE_ERROR);
	assert_non_null(strstr(err, "title"));
	assert_int_equal(count_rows(f->st, "SELECT count(*) FROM notifications"), 0);
}

static void test_rollback_leaves_no_row(void **state)
{
	fixture *f = *state;
	int64_t id = 0, last = -1;
	char err[256];

	assert_int_equal(store_tx_begin(f->st), STORE_OK);
	exec_ok(f->st, "UPDATE servers SET status = 'error' WHERE id = 1");
	add_one(f->st, "server_unreachable", LOG_CRITICAL, &id);
	assert_true(id > 0);
	store_tx_rollback(f->st);
	assert_int_equal(count_rows(f->st, "SELECT count(*) FROM notifications"), 0);
	assert_int_equal(outbox_last_id(f->st, &last, err, sizeof err), STORE_OK);
	assert_int_equal(last, 0);
	assert_int_equal(count_rows(f->st, "SELECT count(*) FROM servers WHERE status = 'in_use'"),
	                 1);

	/* Committed: the change and the row together. */
	assert_int_equal(store_tx_begin(f->st), STORE_OK);
	exec_ok(f->st, "UPDATE servers SET status = 'error' WHERE id = 1");
	add_one(f->st, "server_unreachable", LOG_CRITICAL, &id);
	assert_int_equal(store_tx_commit(f->st), STORE_OK);
	assert_int_equal(count_rows(f->st, "SELECT count(*) FROM notifications"), 1);
}

static void test_note_shape(void **state)
{
	fixture *f = *state;
	char err[256], big[600];
	int64_t id = 0;
	notify_note n;
	seen_rows s = {0};

	notify_note_init(&n, NOTIFY_SERVER_MISSING, LOG_WARNING, "run_server_sync_1_abcd");
	notify_note_title(&n, "Server %s is\nmissing", "web-\"1\"");
	notify_note_line(&n, "first %d", 1);
	notify_note_line(&n, "second");
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	for (int i = 0; i < 5; i++)
		notify_note_line(&n, "%s", big); /* the body is bounded */
	notify_field_str(&n, "server_handle", "web-\"1\"");
	notify_field_str(&n, "ip", NULL);
	notify_field_int(&n, "count", 3);
	assert_int_equal(notify_add(f->st, &n, 5.0, &id, err, sizeof err), STORE_OK);
	notify_note_free(&n);
	assert_int_equal(outbox_get(f->st, id, collect, &s, err, sizeof err), STORE_OK);
	assert_string_equal(s.kinds[0], "server_missing");
	assert_string_equal(s.levels[0], "warning");
	assert_string_equal(s.titles[0], "Server web-\"1\" is missing");
	assert_string_equal(s.cids[0], "run_server_sync_1_abcd");
	assert_string_equal(s.fields[0],
	                    "{\"server_handle\":\"web-\\\"1\\\"\",\"ip\":null,\"count\":3}");
	assert_int_equal(strncmp(s.bodies[0], "first 1\nsecond\nxxx", 18), 0);
	assert_true(count_rows(f->st, "SELECT max(length(body)) FROM notifications") <
	            NOTIFY_BODY_MAX);
}

static void test_incident_notes(void **state)
{
	fixture *f = *state;
	char err[256], prev[32], restored[32];
	int64_t id = 0, resolved = 0;
	size_t nresolved = 0;
	bool created = false;
	seen_rows s = {0};

	assert_int_equal(
	        incidents_open_unreachable(f->st, 1, 100, "run_hc_1",
	                                   "{\"stage\": \"connect\", \"error\": \"refused\"}", &id,
	                                   &created, prev, sizeof prev, err, sizeof err),
	        STORE_OK);
	assert_true(created);
	/* Already open: no second notification. */
	assert_int_equal(incidents_open_unreachable(f->st, 1, 150, "run_hc_2", "{}", &id, &created,
	                                            prev, sizeof prev, err, sizeof err),
	                 STORE_OK);
	assert_false(created);
	assert_int_equal(incidents_resolve_healthy(f->st, 1, 200, &resolved, 1, &nresolved,
	                                           restored, sizeof restored, err, sizeof err),
	                 STORE_OK);
	assert_int_equal(nresolved, 1);
	assert_int_equal(resolved, id);
	assert_int_equal(outbox_list_after(f->st, 0, 0, collect, &s, err, sizeof err), STORE_OK);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.kinds[0], "server_unreachable");
	assert_string_equal(s.levels[0], "critical");
	assert_string_equal(s.cids[0], "run_hc_1");
	assert_string_equal(s.titles[0], "Server web-1 is unreachable");
	assert_non_null(strstr(s.fields[0], "\"server_handle\":\"web-1\""));
	assert_non_null(strstr(s.fields[0], "\"previous_status\":\"in_use\""));
	assert_non_null(strstr(s.fields[0], "\"error\":\"refused\""));
	assert_non_null(strstr(s.bodies[0], "connect: refused"));
	assert_string_equal(s.kinds[1], "server_recovered");
	assert_string_equal(s.levels[1], "info");
	assert_non_null(strstr(s.fields[1], "\"status\":\"in_use\""));
	assert_non_null(strstr(s.fields[1], "\"outage_sec\":100"));
	assert_non_null(strstr(s.fields[1], "\"incident_correlation_id\":\"run_hc_1\""));
}

/* A failing outbox insert (a trigger standing in for a full disk) fails
 * the incident: no incident, the status unchanged, no notification. */
static void test_outbox_failure_rolls_back(void **state)
{
	fixture *f = *state;
	char err[256] = "", prev[32];
	int64_t id = 0;
	bool created = true;

	exec_ok(f->st, "CREATE TRIGGER no_notes BEFORE INSERT ON notifications"
	               " BEGIN SELECT RAISE(ABORT, 'outbox unavailable'); END");
	assert_int_not_equal(incidents_open_unreachable(f->st, 1, 100, "run_hc_1", "{}", &id,
	                                                &created, prev, sizeof prev, err,
	                                                sizeof err),
	                     STORE_OK);
	assert_false(created);
	assert_non_null(strstr(err, "outbox unavailable"));
	assert_int_equal(count_rows(f->st, "SELECT count(*) FROM incidents"), 0);
	assert_int_equal(count_rows(f->st, "SELECT count(*) FROM servers WHERE status = 'in_use'"
	                                   " AND previous_status IS NULL"),
	                 1);
	assert_int_equal(count_rows(f->st, "SELECT count(*) FROM notifications"), 0);

	/* Resolve: the incident stays open when its notification cannot be added. */
	exec_ok(f->st, "DROP TRIGGER no_notes");
	assert_int_equal(incidents_open_unreachable(f->st, 1, 100, "run_hc_1", "{}", &id, &created,
	                                            prev, sizeof prev, err, sizeof err),
	                 STORE_OK);
	exec_ok(f->st, "CREATE TRIGGER no_notes BEFORE INSERT ON notifications"
	               " BEGIN SELECT RAISE(ABORT, 'outbox unavailable'); END");
	int64_t resolved = -1;
	size_t nresolved = 9;
	char restored[32];
	assert_int_not_equal(incidents_resolve_healthy(f->st, 1, 200, &resolved, 1, &nresolved,
	                                               restored, sizeof restored, err, sizeof err),
	                     STORE_OK);
	assert_int_equal(nresolved, 0);
	assert_int_equal(
	        count_rows(f->st, "SELECT count(*) FROM incidents WHERE resolved_at IS NULL"), 1);
	assert_int_equal(count_rows(f->st, "SELECT count(*) FROM servers WHERE status = 'error'"),
	                 1);
	assert_int_equal(count_rows(f->st, "SELECT count(*) FROM notifications"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_add_list_get_last, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_cursor_starts_at_newest, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_delivery_states, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_fold_and_prune, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_needs_kind_and_title, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rollback_leaves_no_row, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_note_shape, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_incident_notes, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_outbox_failure_rolls_back, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
