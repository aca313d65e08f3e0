/*
 * recovery_lock — see recovery_lock.h. The SQL of recovery_locks.
 */
#include "recovery_lock.h"

#include <stdio.h>
#include <string.h>

static const char sql_take[] =
        "INSERT INTO recovery_locks(server, instance, correlation_id, taken_at, expires_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5)"
        " ON CONFLICT (server) DO UPDATE SET instance = excluded.instance,"
        "  correlation_id = excluded.correlation_id, taken_at = excluded.taken_at,"
        "  expires_at = excluded.expires_at"
        " WHERE recovery_locks.expires_at < ?4"
        "  OR (?6 <> 0 AND recovery_locks.instance = ?2)"
        "  OR (recovery_locks.taken_at < ?7 AND NOT EXISTS (SELECT 1 FROM task_runs r"
        "   WHERE r.status = 'running' AND r.correlation_id = recovery_locks.correlation_id))";
static const char sql_holder[] =
        "SELECT instance, correlation_id, expires_at FROM recovery_locks WHERE server = ?1";
static const char sql_renew[] =
        "UPDATE recovery_locks SET expires_at = ?3 WHERE server = ?1 AND instance = ?2";
static const char sql_release[] = "DELETE FROM recovery_locks WHERE server = ?1 AND instance = ?2";

static int read_holder(store *st, const char *server, recovery_lock_holder *h)
{
	store_stmt *q;
	memset(h, 0, sizeof *h);
	int rc = store_prepare(st, sql_holder, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_text(q, 1, server);
	rc = store_step(q);
	if (rc == STORE_ROW) {
		const char *inst = store_col_text(q, 0), *cid = store_col_text(q, 1);
		snprintf(h->instance, sizeof h->instance, "%s", inst ? inst : "");
		snprintf(h->correlation_id, sizeof h->correlation_id, "%s", cid ? cid : "");
		h->expires_at = store_col_double(q, 2, 0);
		rc = STORE_OK;
	} else if (rc == STORE_DONE) {
		rc = STORE_OK; /* released meanwhile: an empty holder */
	}
	store_stmt_done(q);
	return rc;
}

int recovery_lock_take(store *st, const char *server, const char *instance,
                       const char *correlation_id, double now, double expires_at, bool own_stale,
                       recovery_lock_holder *holder)
{
	store_stmt *q;
	int rc = store_prepare(st, sql_take, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_text(q, 1, server);
	store_bind_text(q, 2, instance);
	store_bind_text(q, 3, correlation_id);
	store_bind_double(q, 4, now);
	store_bind_double(q, 5, expires_at);
	store_bind_int64(q, 6, own_stale ? 1 : 0);
	store_bind_double(q, 7, now - RECOVERY_LOCK_GRACE_SEC);
	rc = store_step_done(q);
	store_stmt_done(q);
	if (rc != STORE_OK)
		return rc;
	if (store_changes(st) == 1)
		return 1;
	rc = read_holder(st, server, holder);
	return rc == STORE_OK ? 0 : rc;
}

static int by_owner(store *st, const char *sql, const char *server, const char *instance,
                    double expires_at, bool with_time)
{
	store_stmt *q;
	int rc = store_prepare(st, sql, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_text(q, 1, server);
	store_bind_text(q, 2, instance);
	if (with_time)
		store_bind_double(q, 3, expires_at);
	rc = store_step_done(q);
	store_stmt_done(q);
	return rc;
}

int recovery_lock_renew(store *st, const char *server, const char *instance, double expires_at)
{
	return by_owner(st, sql_renew, server, instance, expires_at, true);
}

int recovery_lock_release(store *st, const char *server, const char *instance)
{
	return by_owner(st, sql_release, server, instance, 0, false);
}
