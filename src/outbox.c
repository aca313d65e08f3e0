/*
 * outbox — rows of the notifications table (schema v4, store.c).
 *
 * Writers call outbox_add inside the transaction of the state change the
 * notification reports; this module never begins or commits, so a rolled
 * back change leaves no notification behind and a committed one always has
 * its row. Rows are immutable once written: delivery state lives in
 * notification_deliveries, owned by the sender.
 */
#include "outbox.h"

#include <stdio.h>

#include <sqlite3.h>

#define ROW_COLUMNS "id, created_at, kind, level, title, body, correlation_id, fields"

static int fail(sqlite3 *db, int rc, const char *what, char *err, size_t errlen)
{
	return store_sqlite_error(db, rc, what, err, errlen);
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

int outbox_add(store *s, const outbox_message *m, double now, int64_t *out_id, char *err,
               size_t errlen)
{
	if (!m->kind || !m->title) {
		snprintf(err, errlen, "outbox: a notification needs a kind and a title");
		return STORE_ERROR;
	}
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
	        db,
	        "INSERT INTO notifications (created_at, kind, level, title, body,"
	        " correlation_id, fields) VALUES (?, ?, ?, ?, ?, ?, ?)",
	        -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, "outbox insert", err, errlen);
	sqlite3_bind_double(st, 1, now);
	sqlite3_bind_text(st, 2, m->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, log_level_name(m->level), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, m->title, -1, SQLITE_STATIC);
	bind_text_or_null(st, 5, m->body);
	bind_text_or_null(st, 6, m->correlation_id);
	bind_text_or_null(st, 7, m->fields_json);
	rc = sqlite3_step(st);
	int ret = rc == SQLITE_DONE ? STORE_OK : fail(db, rc, "outbox insert", err, errlen);
	sqlite3_finalize(st);
	if (ret == STORE_OK && out_id)
		*out_id = sqlite3_last_insert_rowid(db);
	return ret;
}

static const char *column_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

/* Step st to the end, handing each row to cb. */
static int each_row(sqlite3 *db, sqlite3_stmt *st, outbox_cb cb, void *ctx, int *seen, char *err,
                    size_t errlen)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		log_level level = LOG_INFO;
		const char *lvl = column_text(st, 3);
		if (lvl)
			log_level_parse(lvl, &level);
		outbox_row row = {
		        .id = sqlite3_column_int64(st, 0),
		        .created_at = sqlite3_column_double(st, 1),
		        .kind = column_text(st, 2),
		        .level = level,
		        .title = column_text(st, 4),
		        .body = column_text(st, 5),
		        .correlation_id = column_text(st, 6),
		        .fields_json = column_text(st, 7),
		};
		(*seen)++;
		int stop = cb(ctx, &row);
		if (stop)
			return stop;
	}
	return rc == SQLITE_DONE ? STORE_OK : fail(db, rc, "outbox read", err, errlen);
}

int outbox_list_after(store *s, int64_t after_id, int limit, outbox_cb cb, void *ctx, char *err,
                      size_t errlen)
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db,
	                            "SELECT " ROW_COLUMNS " FROM notifications WHERE id > ?"
	                            " ORDER BY id LIMIT ?",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, "outbox read", err, errlen);
	sqlite3_bind_int64(st, 1, after_id);
	sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
	int seen = 0;
	int ret = each_row(db, st, cb, ctx, &seen, err, errlen);
	sqlite3_finalize(st);
	return ret;
}

int outbox_get(store *s, int64_t id, outbox_cb cb, void *ctx, char *err, size_t errlen)
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT " ROW_COLUMNS " FROM notifications WHERE id = ?",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, "outbox read", err, errlen);
	sqlite3_bind_int64(st, 1, id);
	int seen = 0;
	int ret = each_row(db, st, cb, ctx, &seen, err, errlen);
	sqlite3_finalize(st);
	if (ret == STORE_OK && seen == 0) {
		snprintf(err, errlen, "outbox: no notification %lld", (long long)id);
		return STORE_NOTFOUND;
	}
	return ret;
}

int outbox_last_id(store *s, int64_t *out, char *err, size_t errlen)
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) FROM notifications", -1, &st,
	                            NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, "outbox read", err, errlen);
	rc = sqlite3_step(st);
	int ret = STORE_OK;
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else
		ret = fail(db, rc, "outbox read", err, errlen);
	sqlite3_finalize(st);
	return ret;
}
