/*
 * maintenance — see maintenance.h.
 *
 * Invariants:
 *  1. A stored window is active at t when starts_at <= t < ends_at and it
 *     was not ended before t (ended_at IS NULL or ended_at > t).
 *  2. A rule's window opens at each fire time f of its schedule and covers
 *     [f, f + duration): t is covered when the first fire time after
 *     t - duration is at most t.
 */
#include "maintenance.h"

#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

static bool rule_matches(const maintenance_rule *r, const char *handle)
{
	for (size_t i = 0; i < r->nservers; i++)
		if (fnmatch(r->servers[i], handle, 0) == 0)
			return true;
	return false;
}

bool maintenance_rule_covers(const maintenance_rule *r, const char *handle, double now,
                             double *until)
{
	if (r->duration <= 0 || !rule_matches(r, handle))
		return false;
	int64_t t = (int64_t)now;
	int64_t start = schedule_next(&r->when, r->zone, t - r->duration);
	if (start < 0 || start > t)
		return false;
	if (until)
		*until = (double)(start + r->duration);
	return true;
}

int maintenance_window_add(store *s, int64_t server_id, double from, double until,
                           const char *reason, const char *by, double now, int64_t *id)
{
	static const char sql[] =
	        "INSERT INTO maintenance_windows (server_id, starts_at, ends_at, reason,"
	        " created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(st, 1, server_id);
	store_bind_double(st, 2, from);
	store_bind_double(st, 3, until);
	store_bind_text(st, 4, reason);
	store_bind_text(st, 5, by);
	store_bind_double(st, 6, now);
	return store_step_id(st, id);
}

int maintenance_window_end(store *s, int64_t server_id, double now, int64_t *ended)
{
	static const char sql[] =
	        "UPDATE maintenance_windows SET ended_at = ?2"
	        " WHERE server_id = ?1 AND ends_at > ?2 AND (ended_at IS NULL OR ended_at > ?2)";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(st, 1, server_id);
	store_bind_double(st, 2, now);
	rc = store_step_done(st);
	store_stmt_done(st);
	if (rc == STORE_OK && ended)
		*ended = store_changes(s);
	return rc;
}

/* The stored window active at now that ends last, if any. */
static int stored_window_at(store *s, int64_t server_id, double now, maintenance_state *out)
{
	static const char sql[] =
	        "SELECT id, ends_at, reason FROM maintenance_windows"
	        " WHERE server_id = ?1 AND starts_at <= ?2 AND ends_at > ?2"
	        " AND (ended_at IS NULL OR ended_at > ?2) ORDER BY ends_at DESC LIMIT 1";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(st, 1, server_id);
	store_bind_double(st, 2, now);
	rc = store_step(st);
	if (rc == STORE_ROW) {
		const char *reason = store_col_text(st, 2);
		out->active = true;
		out->until = store_col_double(st, 1, now);
		snprintf(out->source, sizeof out->source, "window %lld",
		         (long long)store_col_int64(st, 0));
		snprintf(out->reason, sizeof out->reason, "%s", reason ? reason : "");
	}
	store_stmt_done(st);
	return rc < 0 ? rc : STORE_OK;
}

int maintenance_state_at(store *s, const maintenance_rule *rules, size_t nrules, int64_t server_id,
                         const char *handle, double now, maintenance_state *out)
{
	memset(out, 0, sizeof *out);
	int rc = stored_window_at(s, server_id, now, out);
	if (rc != STORE_OK)
		return rc;
	for (size_t i = 0; i < nrules; i++) {
		double until = 0;
		if (!maintenance_rule_covers(&rules[i], handle, now, &until) ||
		    (out->active && until <= out->until))
			continue;
		out->active = true;
		out->until = until;
		snprintf(out->source, sizeof out->source, "rule %s", rules[i].name);
		snprintf(out->reason, sizeof out->reason, "%s",
		         rules[i].reason ? rules[i].reason : "");
	}
	return STORE_OK;
}

int maintenance_note(store *s, int64_t server_id, bool active, bool *changed)
{
	static const char sql[] = "UPDATE servers SET maintenance_active = ?2"
	                          " WHERE id = ?1 AND maintenance_active <> ?2";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(st, 1, server_id);
	store_bind_int64(st, 2, active ? 1 : 0);
	rc = store_step_done(st);
	store_stmt_done(st);
	if (changed)
		*changed = rc == STORE_OK && store_changes(s) > 0;
	return rc;
}

int maintenance_count_active(store *s, int64_t *out)
{
	static const char sql[] = "SELECT count(*) FROM servers WHERE maintenance_active <> 0";
	store_stmt *st;
	*out = 0;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	if ((rc = store_step(st)) == STORE_ROW)
		*out = store_col_int64(st, 0);
	store_stmt_done(st);
	return rc < 0 ? rc : STORE_OK;
}
