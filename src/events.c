/* events — see events.h. */
#include "events.h"

#include <stdio.h>

static const char insert_sql[] =
        "INSERT INTO events (unix_time, timestamp, level, logger, event, correlation_id, task,"
        " run_id, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

static int insert_one(store_stmt *st, const event_record *e)
{
	store_bind_double(st, 1, e->unix_time);
	store_bind_text(st, 2, e->timestamp);
	store_bind_text(st, 3, e->level);
	store_bind_text(st, 4, e->logger);
	store_bind_text(st, 5, e->event);
	store_bind_text(st, 6, e->correlation_id);
	store_bind_text(st, 7, e->task);
	if (e->run_id != 0)
		store_bind_int64(st, 8, e->run_id);
	else
		store_bind_null(st, 8);
	store_bind_text(st, 9, e->json);
	int code = store_step_done(st);
	store_stmt_done(st);
	return code;
}

int events_insert(store *s, const event_record *events, size_t n)
{
	if (n == 0)
		return STORE_OK;
	store_stmt *st;
	int code = store_prepare(s, insert_sql, &st);
	if (code == STORE_OK)
		code = store_tx_begin(s);
	for (size_t i = 0; code == STORE_OK && i < n; i++)
		code = insert_one(st, &events[i]);
	if (code == STORE_OK && (code = store_tx_commit(s)) == STORE_OK)
		return STORE_OK;
	store_tx_rollback(s);
	char why[400];
	snprintf(why, sizeof why, "%s", store_errmsg(s));
	return store_set_error(s, code, "commit events: %s", why);
}

int events_trace(store *s, const char *correlation_id, int64_t after_id, event_line_cb cb,
                 void *ctx)
{
	static const char sql[] =
	        "SELECT id, line FROM events WHERE correlation_id = ?1 AND id > ?2 ORDER BY id";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_text(st, 1, correlation_id);
	store_bind_int64(st, 2, after_id);
	int ret = STORE_OK;
	while ((rc = store_step(st)) == STORE_ROW) {
		ret = cb(ctx, store_col_int64(st, 0), store_col_text(st, 1));
		if (ret != 0)
			break;
	}
	store_stmt_done(st);
	return rc < 0 ? rc : ret;
}

int events_prune(store *s, double cutoff, size_t max_rows, int64_t *deleted)
{
	/* The oldest first, by the events_time index; a subquery with LIMIT
	 * instead of DELETE ... LIMIT, which PostgreSQL lacks. */
	static const char sql[] = "DELETE FROM events WHERE id IN (SELECT id FROM events"
	                          " WHERE unix_time < ?1 ORDER BY unix_time LIMIT ?2)";
	store_stmt *st;
	*deleted = 0;
	int code = store_prepare(s, sql, &st);
	if (code != STORE_OK)
		return code;
	store_bind_double(st, 1, cutoff);
	store_bind_int64(st, 2, (int64_t)max_rows);
	code = store_step_done(st);
	store_stmt_done(st);
	if (code == STORE_OK)
		*deleted = store_changes(s);
	return code;
}
