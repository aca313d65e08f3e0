/*
 * health_history — see health_history.h for the table and the encoding.
 *
 * Invariants:
 *  1. A row's checks counts every sample ever added to it; failures those
 *     with healthy false; rt_min/max/sum only the healthy ones (rt_min and
 *     rt_max NULL while there is none).
 *  2. samples is NULL only after downsampling; a sample added to a
 *     downsampled hour (a clock stepped back) is counted in the summary
 *     and not kept (NULL || x is NULL on SQLite and PostgreSQL).
 *  3. Every statement touches at most max_rows rows (downsample, prune)
 *     or one row per sample (record), so the write lock is held for a
 *     bounded time; downsample finds its rows before it takes the lock.
 */
#include "health_history.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- codes ---- */

static const struct {
	char code;
	const char *name;
} stage_codes[] = {
        {'r', "resolve"}, {'c', "connect"}, {'h', "handshake"},
        {'k', "hostkey"}, {'a', "auth"},    {'e', "exec"},
};

static const struct {
	char code;
	const char *name;
} error_codes[] = {
        {'R', "resolve_failed"},         {'F', "connect_refused"},  {'O', "connect_timeout"},
        {'C', "connect_failed"},         {'T', "timeout"},          {'H', "handshake_failed"},
        {'U', "hostkey_unknown"},        {'M', "hostkey_mismatch"}, {'K', "known_hosts_failed"},
        {'P', "credentials_unreadable"}, {'A', "auth_failed"},      {'E', "exec_failed"},
        {'X', "command_failed"},         {'Z', "cancelled"},        {'I', "internal"},
};

#define NCODES(a) (sizeof(a) / sizeof((a)[0]))

char health_history_stage_code(const char *stage)
{
	for (size_t i = 0; stage && i < NCODES(stage_codes); i++)
		if (strcmp(stage_codes[i].name, stage) == 0)
			return stage_codes[i].code;
	return '?';
}

char health_history_error_code(const char *error_type)
{
	for (size_t i = 0; error_type && i < NCODES(error_codes); i++)
		if (strcmp(error_codes[i].name, error_type) == 0)
			return error_codes[i].code;
	return '?';
}

const char *health_history_stage_name(char code)
{
	for (size_t i = 0; i < NCODES(stage_codes); i++)
		if (stage_codes[i].code == code)
			return stage_codes[i].name;
	return "unknown";
}

const char *health_history_error_name(char code)
{
	for (size_t i = 0; i < NCODES(error_codes); i++)
		if (error_codes[i].code == code)
			return error_codes[i].name;
	return "unknown";
}

static bool is_code(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '?';
}

/* ---- the encoding ---- */

#define MS_MAX 999999999

int64_t health_history_hour(double t)
{
	return (int64_t)floor(t / 3600.0) * 3600;
}

size_t health_history_encode(const health_sample *s, char *buf, size_t cap)
{
	if (cap < HEALTH_SAMPLE_MAX)
		return 0;
	int64_t sec = (int64_t)floor(s->at) - health_history_hour(s->at);
	int64_t ms = s->response_ms < 0 ? 0 : s->response_ms > MS_MAX ? MS_MAX : s->response_ms;
	if (sec < 0 || sec > 3599) /* not for finite times; NaN or huge */
		sec = 0;
	int n;
	if (s->healthy)
		n = snprintf(buf, cap, "%lld:%lld;", (long long)sec, (long long)ms);
	else
		n = snprintf(buf, cap, "%lld:%c%c%lld;", (long long)sec,
		             is_code(s->stage) ? s->stage : '?', is_code(s->error) ? s->error : '?',
		             (long long)ms);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Decimal digits at *p, at most max_digits, value <= max. */
static bool parse_num(const char **p, const char *end, int max_digits, int64_t max, int64_t *out)
{
	int64_t v = 0;
	int digits = 0;
	while (*p < end && **p >= '0' && **p <= '9') {
		if (++digits > max_digits)
			return false;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	*out = v;
	return digits > 0 && v <= max;
}

static int skip_bad(const char **p, const char *end)
{
	const char *semi = memchr(*p, ';', (size_t)(end - *p));
	*p = semi ? semi + 1 : end;
	return -1;
}

int health_history_decode(const char **p, const char *end, int64_t hour, health_sample *out)
{
	const char *q = *p;
	int64_t sec, ms;

	if (q >= end)
		return 0;
	memset(out, 0, sizeof *out);
	if (!parse_num(&q, end, 4, 3599, &sec) || q >= end || *q++ != ':' || q >= end)
		return skip_bad(p, end);
	out->healthy = *q >= '0' && *q <= '9';
	if (!out->healthy) {
		if (end - q < 2 || !is_code(q[0]) || !is_code(q[1]))
			return skip_bad(p, end);
		out->stage = q[0];
		out->error = q[1];
		q += 2;
	} else {
		out->stage = 'e';
	}
	if (!parse_num(&q, end, 9, MS_MAX, &ms) || q >= end || *q != ';')
		return skip_bad(p, end);
	out->at = (double)(hour + sec);
	out->response_ms = ms;
	*p = q + 1;
	return 1;
}

/* ---- recording ---- */

/* rt_* from the new sample's values (NULL for a failure); a row of a
 * server that is gone is not inserted (WHERE EXISTS: no foreign key
 * error to abort the batch). */
static const char upsert_sql[] =
        "INSERT INTO health_history"
        " (server_id, hour, checks, failures, rt_min_ms, rt_max_ms, rt_sum_ms, samples)"
        " SELECT ?1, ?2, 1, ?3, CAST(?4 AS INTEGER), CAST(?4 AS INTEGER), coalesce(?4, 0), ?5"
        " WHERE EXISTS (SELECT 1 FROM servers WHERE id = ?1)"
        " ON CONFLICT (server_id, hour) DO UPDATE SET"
        " checks = health_history.checks + 1,"
        " failures = health_history.failures + excluded.failures,"
        " rt_min_ms = CASE WHEN excluded.rt_min_ms IS NULL THEN health_history.rt_min_ms"
        "  WHEN health_history.rt_min_ms IS NULL OR excluded.rt_min_ms < health_history.rt_min_ms"
        "  THEN excluded.rt_min_ms ELSE health_history.rt_min_ms END,"
        " rt_max_ms = CASE WHEN excluded.rt_max_ms IS NULL THEN health_history.rt_max_ms"
        "  WHEN health_history.rt_max_ms IS NULL OR excluded.rt_max_ms > health_history.rt_max_ms"
        "  THEN excluded.rt_max_ms ELSE health_history.rt_max_ms END,"
        " rt_sum_ms = health_history.rt_sum_ms + excluded.rt_sum_ms,"
        " samples = health_history.samples || excluded.samples";

static int record_one(store *s, const health_sample *h)
{
	char enc[HEALTH_SAMPLE_MAX];
	store_stmt *q;
	int rc = store_prepare(s, upsert_sql, &q);
	if (rc != STORE_OK)
		return rc;
	if (health_history_encode(h, enc, sizeof enc) == 0)
		enc[0] = '\0';
	store_bind_int64(q, 1, h->server_id);
	store_bind_int64(q, 2, health_history_hour(h->at));
	store_bind_int64(q, 3, h->healthy ? 0 : 1);
	if (h->healthy)
		store_bind_int64(q, 4, h->response_ms < 0 ? 0 : h->response_ms);
	else
		store_bind_null(q, 4);
	store_bind_text(q, 5, enc);
	rc = store_step_done(q);
	store_stmt_done(q);
	return rc;
}

int health_history_record(store *s, const health_sample *samples, size_t n)
{
	int rc = store_tx_begin(s);
	for (size_t i = 0; rc == STORE_OK && i < n; i++)
		rc = record_one(s, &samples[i]);
	if (rc != STORE_OK) {
		store_tx_rollback(s);
		return rc;
	}
	return store_tx_commit(s);
}

/* ---- reading ---- */

int health_history_last_failure(store *s, int64_t server_id, char *stage, char *error)
{
	static const char sql[] = "SELECT hour, samples FROM health_history"
	                          " WHERE server_id = ?1 AND samples IS NOT NULL"
	                          " ORDER BY hour DESC LIMIT 1";
	store_stmt *q;
	int rc = store_prepare(s, sql, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(q, 1, server_id);
	rc = store_step(q);
	bool found = false;
	if (rc == STORE_ROW) {
		int64_t hour = store_col_int64(q, 0);
		const char *text = store_col_text(q, 1), *p = text;
		const char *end = text ? text + strlen(text) : NULL;
		health_sample h;
		int d;
		while (p && (d = health_history_decode(&p, end, hour, &h)) != 0)
			if (d == 1 && !h.healthy) {
				*stage = h.stage;
				*error = h.error;
				found = true;
			}
		rc = STORE_OK;
	}
	store_stmt_done(q);
	if (rc < 0)
		return rc;
	return found ? STORE_OK : STORE_NOTFOUND;
}

int health_history_summarize(store *s, int64_t server_id, double since, health_summary *out)
{
	static const char sql[] = "SELECT coalesce(sum(checks), 0), coalesce(sum(failures), 0),"
	                          " min(rt_min_ms), max(rt_max_ms), sum(rt_sum_ms)"
	                          " FROM health_history WHERE server_id = ?1 AND hour >= ?2";
	store_stmt *q;
	*out = (health_summary){0, 0, -1, -1, -1};
	int rc = store_prepare(s, sql, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(q, 1, server_id);
	store_bind_int64(q, 2, health_history_hour(since));
	rc = store_step(q);
	if (rc == STORE_ROW) {
		out->checks = store_col_int64(q, 0);
		out->failures = store_col_int64(q, 1);
		int64_t healthy = out->checks - out->failures;
		if (healthy > 0 && !store_col_null(q, 2)) {
			out->rt_min_ms = store_col_int64(q, 2);
			out->rt_max_ms = store_col_int64(q, 3);
			out->rt_avg_ms = (double)store_col_int64(q, 4) / (double)healthy;
		}
	}
	store_stmt_done(q);
	return rc < 0 ? rc : STORE_OK;
}

int health_history_summary(store *s, int64_t server_id, double since, int64_t *checks,
                           int64_t *failures)
{
	health_summary sum;
	int rc = health_history_summarize(s, server_id, since, &sum);
	*checks = sum.checks;
	*failures = sum.failures;
	return rc;
}

/* ---- downsampling and pruning ---- */

typedef struct {
	int64_t server_id, hour;
} hour_key;

/* The keys of at most max rows of hours that ended before `before`, by
 * hour: only those with samples when raw_only. A read, no write lock. */
static int find_hours(store *s, double before, bool raw_only, size_t max, hour_key *keys, size_t *n)
{
	static const char raw_sql[] =
	        "SELECT server_id, hour FROM health_history"
	        " WHERE samples IS NOT NULL AND hour <= ?1 ORDER BY hour, server_id LIMIT ?2";
	static const char all_sql[] = "SELECT server_id, hour FROM health_history"
	                              " WHERE hour <= ?1 ORDER BY hour, server_id LIMIT ?2";
	store_stmt *q;
	int rc = store_prepare(s, raw_only ? raw_sql : all_sql, &q);
	*n = 0;
	if (rc != STORE_OK)
		return rc;
	/* an hour [h, h + 3600) ended before `before` when h + 3600 <= before */
	store_bind_int64(q, 1, (int64_t)floor(before) - 3600);
	store_bind_int64(q, 2, (int64_t)max);
	while ((rc = store_step(q)) == STORE_ROW && *n < max) {
		keys[*n].server_id = store_col_int64(q, 0);
		keys[*n].hour = store_col_int64(q, 1);
		(*n)++;
	}
	store_stmt_done(q);
	return rc < 0 ? rc : STORE_OK;
}

/* One statement per key, in one transaction. A row another connection
 * changed meanwhile is simply not changed again. */
static int apply_keys(store *s, const char *sql, const hour_key *keys, size_t n)
{
	int rc = store_tx_begin(s);
	for (size_t i = 0; rc == STORE_OK && i < n; i++) {
		store_stmt *q;
		if ((rc = store_prepare(s, sql, &q)) != STORE_OK)
			break;
		store_bind_int64(q, 1, keys[i].server_id);
		store_bind_int64(q, 2, keys[i].hour);
		rc = store_step_done(q);
		store_stmt_done(q);
	}
	if (rc != STORE_OK) {
		store_tx_rollback(s);
		return rc;
	}
	return store_tx_commit(s);
}

static int batch(store *s, double before, size_t max_rows, bool downsample, size_t *changed)
{
	static const char null_sql[] =
	        "UPDATE health_history SET samples = NULL"
	        " WHERE server_id = ?1 AND hour = ?2 AND samples IS NOT NULL";
	static const char delete_sql[] =
	        "DELETE FROM health_history WHERE server_id = ?1 AND hour = ?2";
	*changed = 0;
	if (max_rows == 0)
		return STORE_OK;
	hour_key *keys = malloc(max_rows * sizeof *keys);
	if (keys == NULL)
		return store_set_error(s, STORE_ERROR, "out of memory");
	size_t n = 0;
	int rc = find_hours(s, before, downsample, max_rows, keys, &n);
	if (rc == STORE_OK && n > 0)
		rc = apply_keys(s, downsample ? null_sql : delete_sql, keys, n);
	if (rc == STORE_OK)
		*changed = n;
	free(keys);
	return rc;
}

int health_history_downsample(store *s, double before, size_t max_rows, size_t *done)
{
	return batch(s, before, max_rows, true, done);
}

int health_history_prune(store *s, double before, size_t max_rows, size_t *deleted)
{
	return batch(s, before, max_rows, false, deleted);
}
