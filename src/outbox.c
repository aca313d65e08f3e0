/*
 * outbox — every statement on notifications, notification_deliveries and
 * notifier_cursor (schema v4, store.c).
 *
 * Writers call outbox_add inside the transaction of the state change the
 * notification reports; this module never begins or commits, so a rolled
 * back change leaves no notification behind and a committed one always has
 * its row. Rows are immutable once written: delivery state lives in
 * notification_deliveries, which only the sender changes (through the
 * delivery functions here, in its own transactions).
 */
#include "outbox.h"

#include <stdio.h>

#define ROW_COLUMNS                                                                                \
	"n.id, n.created_at, n.kind, n.level, n.title, n.body, n.correlation_id, n.fields"
#define PENDING "('queued', 'sending', 'failed')"
#define DELIVERIES_JOIN                                                                            \
	" FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id"

int outbox_add(store *s, const outbox_message *m, double now, int64_t *out_id, char *err,
               size_t errlen)
{
	static const char sql[] = "INSERT INTO notifications (created_at, kind, level, title, body,"
	                          " correlation_id, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
	                          " RETURNING id";
	if (!m->kind || !m->title) {
		snprintf(err, errlen, "outbox: a notification needs a kind and a title");
		return STORE_ERROR;
	}
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code == STORE_OK) {
		store_bind_double(st, 1, now);
		store_bind_text(st, 2, m->kind);
		store_bind_text(st, 3, log_level_name(m->level));
		store_bind_text(st, 4, m->title);
		store_bind_text(st, 5, m->body);
		store_bind_text(st, 6, m->correlation_id);
		store_bind_text(st, 7, m->fields_json);
		code = store_step(st);
	}
	if (code == STORE_ROW && out_id)
		*out_id = store_col_int64(st, 0);
	store_stmt_done(st);
	if (code == STORE_ROW || code == STORE_DONE)
		return STORE_OK;
	return store_fail(s, code, NULL, err, errlen);
}

/* ---- reading rows ---- */

static void read_row(store_stmt *st, outbox_row *row)
{
	log_level level = LOG_INFO;
	const char *lvl = store_col_text(st, 3);
	if (lvl)
		log_level_parse(lvl, &level);
	*row = (outbox_row){
	        .id = store_col_int64(st, 0),
	        .created_at = store_col_double(st, 1, 0),
	        .kind = store_col_text(st, 2),
	        .level = level,
	        .title = store_col_text(st, 4),
	        .body = store_col_text(st, 5),
	        .correlation_id = store_col_text(st, 6),
	        .fields_json = store_col_text(st, 7),
	};
}

/* Step st (prepared with ROW_COLUMNS first, bound) to the end, handing each
 * row to cb, and give it back. *seen (may be NULL) counts the rows. Returns
 * STORE_OK, cb's non-zero value, or a store error. */
static int each_row(store_stmt *st, outbox_cb cb, void *ctx, int *seen)
{
	int rc, stop = 0;
	while (stop == 0 && (rc = store_step(st)) == STORE_ROW) {
		outbox_row row;
		read_row(st, &row);
		if (seen)
			(*seen)++;
		stop = cb(ctx, &row);
	}
	store_stmt_done(st);
	return stop ? stop : rc;
}

static int read_failed(store *s, int code, char *err, size_t errlen)
{
	return code < 0 ? store_fail(s, code, "outbox read", err, errlen) : code;
}

int outbox_list_after(store *s, int64_t after_id, int limit, outbox_cb cb, void *ctx, char *err,
                      size_t errlen)
{
	static const char sql[] = "SELECT " ROW_COLUMNS " FROM notifications n WHERE n.id > ?1"
	                          " ORDER BY n.id LIMIT ?2";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code == STORE_OK) {
		store_bind_int64(st, 1, after_id);
		store_bind_int64(st, 2, limit > 0 ? limit : -1);
		code = each_row(st, cb, ctx, NULL);
	}
	return read_failed(s, code, err, errlen);
}

int outbox_get(store *s, int64_t id, outbox_cb cb, void *ctx, char *err, size_t errlen)
{
	static const char sql[] = "SELECT " ROW_COLUMNS " FROM notifications n WHERE n.id = ?1";
	store_stmt *st;
	int seen = 0;
	int code = store_prepare(s, sql, &st);
	if (code == STORE_OK) {
		store_bind_int64(st, 1, id);
		code = each_row(st, cb, ctx, &seen);
	}
	if (code == STORE_OK && seen == 0) {
		snprintf(err, errlen, "outbox: no notification %lld", (long long)id);
		return STORE_NOTFOUND;
	}
	return read_failed(s, code, err, errlen);
}

/* The one integer of a one-row query with ?1 bound to text (NULL: none). */
static int select_int64(store *s, const char *sql, const char *text, int64_t *out)
{
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code == STORE_OK) {
		if (text)
			store_bind_text(st, 1, text);
		code = store_step(st);
	}
	if (code == STORE_ROW)
		*out = store_col_int64(st, 0);
	store_stmt_done(st);
	if (code == STORE_DONE)
		return store_set_error(s, STORE_NOTFOUND, "outbox: no row");
	return code == STORE_ROW ? STORE_OK : code;
}

int outbox_last_id(store *s, int64_t *out, char *err, size_t errlen)
{
	static const char sql[] = "SELECT coalesce(max(id), 0) FROM notifications";
	return read_failed(s, select_int64(s, sql, NULL, out), err, errlen);
}

/* Step a statement of no rows that was prepared and bound (code: the
 * result of that) and give it back; *changes (may be NULL) gets the rows
 * it changed. */
static int finish_stmt(store *s, int code, store_stmt *st, int64_t *changes)
{
	if (code == STORE_OK)
		code = store_step_done(st);
	store_stmt_done(st);
	if (changes)
		*changes = code == STORE_OK ? store_changes(s) : 0;
	return code;
}

/* ---- the notifier's cursor ---- */

int outbox_cursor_init(store *s, const char *notifier, int64_t *out)
{
	/* WHERE true: an upsert after INSERT ... SELECT needs a WHERE clause
	 * (SQLite's parser), and PostgreSQL accepts it. */
	static const char ins[] = "INSERT INTO notifier_cursor (notifier, last_id)"
	                          " SELECT ?1, coalesce(max(id), 0) FROM notifications WHERE true"
	                          " ON CONFLICT (notifier) DO NOTHING";
	static const char sel[] = "SELECT last_id FROM notifier_cursor WHERE notifier = ?1";
	store_stmt *st;
	int code = store_prepare(s, ins, &st);
	if (code == STORE_OK)
		store_bind_text(st, 1, notifier);
	code = finish_stmt(s, code, st, NULL);
	return code == STORE_OK ? select_int64(s, sel, notifier, out) : code;
}

int outbox_cursor_set(store *s, const char *notifier, int64_t last_id)
{
	static const char sql[] = "UPDATE notifier_cursor SET last_id = ?2 WHERE notifier = ?1";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code == STORE_OK) {
		store_bind_text(st, 1, notifier);
		store_bind_int64(st, 2, last_id);
	}
	return finish_stmt(s, code, st, NULL);
}

/* ---- deliveries ---- */

/* Prepare a delivery statement and bind ?1 notifier, ?2 a notification
 * id and ?3 a time; the caller binds the rest and calls finish_stmt. */
static int delivery_prepare(store *s, const char *sql, const char *notifier, int64_t id, double t,
                            store_stmt **st)
{
	int code = store_prepare(s, sql, st);
	if (code == STORE_OK) {
		store_bind_text(*st, 1, notifier);
		store_bind_int64(*st, 2, id);
		store_bind_double(*st, 3, t);
	}
	return code;
}

static int run_delivery_sql(store *s, const char *sql, const char *notifier, int64_t id, double t,
                            int64_t *changes)
{
	store_stmt *st = NULL;
	int code = delivery_prepare(s, sql, notifier, id, t, &st);
	return finish_stmt(s, code, st, changes);
}

int outbox_delivery_add(store *s, const char *notifier, int64_t id, double now)
{
	static const char sql[] = "INSERT INTO notification_deliveries (notifier, notification_id,"
	                          " state, updated_at) VALUES (?1, ?2, 'queued', ?3)"
	                          " ON CONFLICT (notifier, notification_id) DO NOTHING";
	return run_delivery_sql(s, sql, notifier, id, now, NULL);
}

int outbox_fold_upto(store *s, const char *notifier, int64_t upto_id, double now, int64_t *count)
{
	static const char sql[] = "UPDATE notification_deliveries SET state = 'folded',"
	                          " updated_at = ?3 WHERE notifier = ?1 AND state IN " PENDING
	                          " AND notification_id <= ?2";
	return run_delivery_sql(s, sql, notifier, upto_id, now, count);
}

int outbox_deliveries_between(store *s, const char *notifier, int64_t after_id, int64_t upto_id,
                              outbox_cb cb, void *ctx)
{
	static const char sql[] = "SELECT " ROW_COLUMNS DELIVERIES_JOIN " WHERE d.notifier = ?1"
	                          " AND d.notification_id > ?2 AND d.notification_id <= ?3"
	                          " ORDER BY n.id";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_text(st, 1, notifier);
	store_bind_int64(st, 2, after_id);
	store_bind_int64(st, 3, upto_id);
	return each_row(st, cb, ctx, NULL);
}

int outbox_pending_list(store *s, const char *notifier, outbox_cb cb, void *ctx)
{
	static const char sql[] = "SELECT " ROW_COLUMNS DELIVERIES_JOIN " WHERE d.notifier = ?1"
	                          " AND d.state IN " PENDING " ORDER BY n.id";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_text(st, 1, notifier);
	return each_row(st, cb, ctx, NULL);
}

int outbox_pending_head(store *s, const char *notifier, outbox_head *out)
{
	static const char sql[] =
	        "SELECT notification_id, attempts, progress, next_attempt_at,"
	        " (SELECT count(*) FROM notification_deliveries WHERE notifier = ?1"
	        " AND state IN " PENDING ") FROM notification_deliveries WHERE notifier = ?1"
	        " AND state IN " PENDING " ORDER BY notification_id LIMIT 1";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code == STORE_OK) {
		store_bind_text(st, 1, notifier);
		code = store_step(st);
	}
	if (code == STORE_ROW)
		*out = (outbox_head){.id = store_col_int64(st, 0),
		                     .attempts = store_col_int(st, 1),
		                     .progress = store_col_int(st, 2),
		                     .next_attempt_at = store_col_double(st, 3, 0),
		                     .pending = store_col_int(st, 4)};
	store_stmt_done(st);
	if (code == STORE_DONE)
		return STORE_NOTFOUND;
	return code == STORE_ROW ? STORE_OK : code;
}

/* ---- one delivery's state ---- */

#define WHERE_DELIVERY " WHERE notifier = ?1 AND notification_id = ?2"

int outbox_mark_attempt(store *s, const char *notifier, int64_t id, double now)
{
	static const char sql[] = "UPDATE notification_deliveries SET state = 'sending',"
	                          " attempts = attempts + 1, updated_at = ?3" WHERE_DELIVERY;
	return run_delivery_sql(s, sql, notifier, id, now, NULL);
}

int outbox_mark_sent(store *s, const char *notifier, int64_t id, double now)
{
	static const char sql[] = "UPDATE notification_deliveries SET state = 'sent',"
	                          " last_error = NULL, updated_at = ?3" WHERE_DELIVERY;
	return run_delivery_sql(s, sql, notifier, id, now, NULL);
}

int outbox_mark_progress(store *s, const char *notifier, int64_t id, int progress, double now)
{
	static const char sql[] = "UPDATE notification_deliveries SET progress = ?4,"
	                          " updated_at = ?3" WHERE_DELIVERY;
	store_stmt *st = NULL;
	int code = delivery_prepare(s, sql, notifier, id, now, &st);
	if (code == STORE_OK)
		store_bind_int64(st, 4, progress);
	return finish_stmt(s, code, st, NULL);
}

int outbox_mark_failed(store *s, const char *notifier, int64_t id, double next_attempt_at,
                       const char *error, double now)
{
	static const char sql[] = "UPDATE notification_deliveries SET state = 'failed',"
	                          " next_attempt_at = ?4, last_error = ?5,"
	                          " updated_at = ?3" WHERE_DELIVERY;
	store_stmt *st = NULL;
	int code = delivery_prepare(s, sql, notifier, id, now, &st);
	if (code == STORE_OK) {
		store_bind_double(st, 4, next_attempt_at);
		store_bind_text(st, 5, error);
	}
	return finish_stmt(s, code, st, NULL);
}

/* ---- dropping, the rate window, retention ---- */

typedef struct {
	store *s;
	const char *notifier;
	double now;
	outbox_cb cb;
	void *ctx;
} drop_ctx;

static int drop_one(void *ctx, const outbox_row *row)
{
	static const char sql[] = "UPDATE notification_deliveries SET state = 'dropped',"
	                          " updated_at = ?3" WHERE_DELIVERY;
	drop_ctx *d = ctx;
	int code = run_delivery_sql(d->s, sql, d->notifier, row->id, d->now, NULL);
	return code != STORE_OK ? code : d->cb(d->ctx, row);
}

int outbox_drop_older(store *s, const char *notifier, double cutoff, double now, outbox_cb cb,
                      void *ctx)
{
	static const char sql[] = "SELECT " ROW_COLUMNS DELIVERIES_JOIN " WHERE d.notifier = ?1"
	                          " AND d.state IN " PENDING " AND n.created_at < ?2"
	                          " ORDER BY n.id";
	drop_ctx d = {.s = s, .notifier = notifier, .now = now, .cb = cb, .ctx = ctx};
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_text(st, 1, notifier);
	store_bind_double(st, 2, cutoff);
	return each_row(st, drop_one, &d, NULL);
}

int outbox_sent_since(store *s, const char *notifier, double since, outbox_time_cb cb, void *ctx)
{
	static const char sql[] = "SELECT updated_at FROM notification_deliveries"
	                          " WHERE notifier = ?1 AND state = 'sent' AND updated_at > ?2"
	                          " ORDER BY updated_at";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_text(st, 1, notifier);
	store_bind_double(st, 2, since);
	int stop = 0;
	while (stop == 0 && (code = store_step(st)) == STORE_ROW)
		stop = cb(ctx, store_col_double(st, 0, 0));
	store_stmt_done(st);
	return stop ? stop : code;
}

int outbox_prune(store *s, double cutoff, size_t max_rows, int64_t *deleted)
{
	static const char sql[] =
	        "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications"
	        " WHERE created_at < ?1 AND id < (SELECT max(id) FROM notifications)"
	        " ORDER BY created_at LIMIT ?2)";
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code == STORE_OK) {
		store_bind_double(st, 1, cutoff);
		store_bind_int64(st, 2, (int64_t)max_rows);
	}
	return finish_stmt(s, code, st, deleted);
}
