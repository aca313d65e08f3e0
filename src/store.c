/*
 * store — the SQLite state store (SPEC §5); see store.h and
 * docs/state-store.md.
 *
 * One struct store wraps one connection, used by one thread at a time
 * (SQLITE_OPEN_NOMUTEX). Invariants:
 *
 *  1. Every read-write connection runs with journal_mode=WAL,
 *     synchronous=NORMAL, busy_timeout=5000 and foreign_keys=ON.
 *  2. The schema version is PRAGMA user_version. Each migration step runs in
 *     its own BEGIN IMMEDIATE transaction that re-reads user_version first,
 *     so two processes opening a fresh file never both create the schema,
 *     and a step is applied completely or not at all.
 *  3. A database newer than STORE_SCHEMA_VERSION is never touched: every
 *     open fails with STORE_TOONEW.
 *  4. Cached statements (s->stmt) are always reset before they are handed
 *     out and after use, so no statement keeps a read transaction open.
 *  5. Every failure records "<context>: <sqlite message>" in s->errmsg and
 *     returns a store_error; nothing is logged here.
 */
#include "store.h"
#include "file_modes.h"
#include "store_pg.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <sqlite3.h>

#define BUSY_TIMEOUT_MS 5000

/* ---- schema ---- */

static const char schema_v1[] =
        "CREATE TABLE servers ("
        " id INTEGER PRIMARY KEY,"
        " handle TEXT UNIQUE NOT NULL,"
        " ip TEXT,"
        " port INTEGER DEFAULT 22,"
        " ssh_user TEXT,"
        " provider TEXT,"
        " provider_id TEXT,"
        " status TEXT NOT NULL DEFAULT 'discovered' CHECK(status IN ('discovered',"
        "  'pending_setup','provisioning','force_rebuild','ready','in_use','error',"
        "  'maintenance','reserved','missing','decommissioned')),"
        " previous_status TEXT,"
        " is_managed INTEGER NOT NULL DEFAULT 1,"
        " labels TEXT,"
        " details TEXT,"
        " last_seen_at REAL,"
        " missing_since REAL,"
        " last_health_check REAL,"
        " response_time_ms REAL,"
        " consecutive_failures INTEGER NOT NULL DEFAULT 0,"
        " consecutive_successes INTEGER NOT NULL DEFAULT 0,"
        " provisioning_started_at REAL,"
        " provisioning_attempts INTEGER NOT NULL DEFAULT 0,"
        " created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL);"
        "CREATE TABLE projects ("
        " id INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " github_repo_id INTEGER UNIQUE,"
        " full_name TEXT,"
        " status TEXT NOT NULL DEFAULT 'active'"
        "  CHECK(status IN ('active','archived','missing')),"
        " missing_count INTEGER NOT NULL DEFAULT 0,"
        " default_branch TEXT,"
        " clone_url TEXT,"
        " html_url TEXT,"
        " description TEXT,"
        " spec TEXT,"
        " readme TEXT,"
        " last_synced_at REAL,"
        " created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL);"
        "CREATE TABLE services ("
        " id INTEGER PRIMARY KEY,"
        " server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,"
        " name TEXT NOT NULL,"
        " git_repo TEXT,"
        " ref TEXT,"
        " port INTEGER,"
        " start_command TEXT,"
        " env TEXT,"
        " created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL,"
        " UNIQUE(server_id, name));"
        "CREATE TABLE incidents ("
        " id INTEGER PRIMARY KEY,"
        " server_id INTEGER REFERENCES servers(id) ON DELETE SET NULL,"
        " type TEXT NOT NULL CHECK(type IN ('server_unreachable','provisioning_failed',"
        "  'service_down','resource_exhausted')),"
        " status TEXT NOT NULL DEFAULT 'detected'"
        "  CHECK(status IN ('detected','recovering','resolved','failed')),"
        " detected_at REAL NOT NULL,"
        " resolved_at REAL,"
        " correlation_id TEXT,"
        " details TEXT,"
        " updated_at REAL);"
        "CREATE TABLE task_runs ("
        " id INTEGER PRIMARY KEY,"
        " task TEXT NOT NULL,"
        " trigger TEXT NOT NULL,"
        " status TEXT NOT NULL CHECK(status IN ('running','success','failed','timeout',"
        "  'skipped','interrupted')),"
        " correlation_id TEXT NOT NULL,"
        " started_at REAL NOT NULL,"
        " finished_at REAL,"
        " duration_sec REAL,"
        " exit_code INTEGER,"
        " error TEXT,"
        " error_type TEXT,"
        " items TEXT);"
        /* No foreign key to task_runs: events arrive in any order. */
        "CREATE TABLE events ("
        " id INTEGER PRIMARY KEY,"
        " unix_time REAL NOT NULL,"
        " timestamp TEXT NOT NULL,"
        " level TEXT NOT NULL,"
        " logger TEXT,"
        " event TEXT NOT NULL,"
        " correlation_id TEXT,"
        " task TEXT,"
        " run_id INTEGER,"
        " line TEXT NOT NULL);";

static const char schema_v2[] = "CREATE TABLE task_state ("
                                " task TEXT PRIMARY KEY,"
                                " last_fire_at REAL,"
                                " updated_at REAL);"
                                "CREATE TABLE http_cache ("
                                " url TEXT PRIMARY KEY,"
                                " etag TEXT,"
                                " last_modified TEXT,"
                                " updated_at REAL);"
                                "CREATE INDEX events_correlation ON events(correlation_id, id);"
                                "CREATE INDEX events_time ON events(unix_time);"
                                "CREATE INDEX task_runs_task ON task_runs(task, id);"
                                "CREATE INDEX task_runs_status ON task_runs(status);"
                                "CREATE INDEX incidents_server ON incidents(server_id);"
                                "CREATE INDEX incidents_status ON incidents(status);";

/* v3: the last body of each cached URL, so a 304 can be replayed (http.c). */
static const char schema_v3[] = "ALTER TABLE http_cache ADD COLUMN body TEXT;";

/* v4: the notification outbox (outbox.c) and each notifier's delivery state
 * (notify_sender.c). */
static const char schema_v4[] =
        "CREATE TABLE notifications ("
        " id INTEGER PRIMARY KEY,"
        " created_at REAL NOT NULL,"
        " kind TEXT NOT NULL,"
        " level TEXT NOT NULL,"
        " title TEXT NOT NULL,"
        " body TEXT,"
        " correlation_id TEXT,"
        " fields TEXT);"
        "CREATE TABLE notification_deliveries ("
        " notifier TEXT NOT NULL,"
        " notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,"
        " state TEXT NOT NULL CHECK(state IN ('queued','sending','sent','failed','dropped',"
        "  'folded')),"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " progress INTEGER NOT NULL DEFAULT 0,"
        " next_attempt_at REAL NOT NULL DEFAULT 0,"
        " last_error TEXT,"
        " updated_at REAL NOT NULL,"
        " PRIMARY KEY(notifier, notification_id));"
        "CREATE INDEX notification_deliveries_state ON notification_deliveries(notifier, state);"
        "CREATE TABLE notifier_cursor ("
        " notifier TEXT PRIMARY KEY,"
        " last_id INTEGER NOT NULL);";

/* v5: the operator's controls (issue 14): incident acknowledgement and
 * resolution, maintenance windows, retry attempts. */
static const char schema_v5[] =
        "ALTER TABLE incidents ADD COLUMN acknowledged_at REAL;"
        "ALTER TABLE incidents ADD COLUMN acknowledged_by TEXT;"
        "ALTER TABLE incidents ADD COLUMN ack_reason TEXT;"
        /* how it ended: recovered (health), recovery, closed (operator) */
        "ALTER TABLE incidents ADD COLUMN resolution TEXT;"
        "ALTER TABLE incidents ADD COLUMN resolution_reason TEXT;"
        "ALTER TABLE task_runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;"
        /* the maintenance state health_check last saw (for its events) */
        "ALTER TABLE servers ADD COLUMN maintenance_active INTEGER NOT NULL DEFAULT 0;"
        "CREATE TABLE maintenance_windows ("
        " id INTEGER PRIMARY KEY,"
        " server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,"
        " starts_at REAL NOT NULL,"
        " ends_at REAL NOT NULL,"
        " reason TEXT,"
        " created_by TEXT,"
        " created_at REAL NOT NULL,"
        " ended_at REAL," /* ended early (servers maintenance H --end) */
        " CHECK(ends_at > starts_at));"
        "CREATE INDEX maintenance_windows_server ON maintenance_windows(server_id, ends_at);";

/* v6: fleet scale (issue 16). health_history: one row per server and
 * hour (unix time of the hour's start, UTC) with the hour's summary;
 * samples holds every check of the hour (health_history.h's encoding) until
 * the hour leaves the raw window, then it is NULL (downsampled). */
static const char schema_v6[] =
        "CREATE TABLE health_history ("
        " server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,"
        " hour INTEGER NOT NULL,"
        " checks INTEGER NOT NULL,"
        " failures INTEGER NOT NULL,"
        " rt_min_ms INTEGER," /* over the healthy checks; NULL: none */
        " rt_max_ms INTEGER,"
        " rt_sum_ms INTEGER NOT NULL DEFAULT 0,"
        " samples TEXT,"
        " PRIMARY KEY (server_id, hour)) WITHOUT ROWID;"
        "CREATE INDEX health_history_hour ON health_history(hour);"
        /* v6 indexes: */
        /* the batched prunes (runs_prune, outbox_prune) walk these */
        "CREATE INDEX task_runs_finished ON task_runs(finished_at);"
        "CREATE INDEX notifications_created ON notifications(created_at);"
        /* deleting a notification cascades to its deliveries by this */
        "CREATE INDEX notification_deliveries_notification"
        " ON notification_deliveries(notification_id);"
        /* health_history_downsample finds the hours that still have
         * samples without walking the downsampled ones */
        "CREATE INDEX health_history_raw ON health_history(hour) WHERE samples IS NOT NULL;"
        /* incidents, newest first, without a sort */
        "CREATE INDEX incidents_detected ON incidents(detected_at);"
        "";

/* v7: several daemons on one PostgreSQL (issue 17, docs/cluster.md).
 * task_runs.scheduled_for is a scheduled run's nominal fire time: one row
 * per (task, fire, attempt), whoever inserts it. cluster_leader is the one
 * row of the fencing term; cluster_members the instances' heartbeats;
 * cluster_requests what a standby forwards to the leader; recovery_locks
 * one recovery per server across machines. The same tables exist in an
 * SQLite store, where one daemon is always the leader. */
static const char schema_v7[] =
        "ALTER TABLE task_runs ADD COLUMN scheduled_for REAL;"
        "ALTER TABLE task_runs ADD COLUMN instance TEXT;"
        "ALTER TABLE task_runs ADD COLUMN interrupted_by TEXT;"
        "CREATE UNIQUE INDEX task_runs_fire ON task_runs(task, scheduled_for, attempt)"
        " WHERE scheduled_for IS NOT NULL;"
        "CREATE TABLE cluster_leader ("
        " id INTEGER PRIMARY KEY CHECK (id = 1),"
        " term INTEGER NOT NULL,"
        " instance TEXT NOT NULL,"
        " backend_pid INTEGER,"
        " elected_at REAL NOT NULL,"
        " heartbeat_at REAL NOT NULL);"
        "CREATE TABLE cluster_members ("
        " instance TEXT PRIMARY KEY,"
        " role TEXT NOT NULL,"
        " pid INTEGER,"
        " started_at REAL NOT NULL,"
        " heartbeat_at REAL NOT NULL);"
        "CREATE TABLE cluster_requests ("
        " id INTEGER PRIMARY KEY,"
        " kind TEXT NOT NULL,"
        " body TEXT NOT NULL,"
        " from_instance TEXT,"
        " state TEXT NOT NULL DEFAULT 'queued' CHECK(state IN ('queued','done','failed')),"
        " reply TEXT,"
        " created_at REAL NOT NULL,"
        " done_at REAL);"
        "CREATE INDEX cluster_requests_state ON cluster_requests(state, id);"
        "CREATE TABLE recovery_locks ("
        " server TEXT PRIMARY KEY,"
        " instance TEXT NOT NULL,"
        " correlation_id TEXT,"
        " taken_at REAL NOT NULL,"
        " expires_at REAL NOT NULL);";

/* migrations[i] takes the schema from version i to version i + 1. */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
        schema_v1, schema_v2, schema_v3, schema_v4, schema_v5, schema_v6, schema_v7};

struct store_stmt {
	store *s;
	sqlite3_stmt *st;
	pg_stmt *pg; /* instead of st on PostgreSQL */
	const char *sql;
	int bind_rc; /* first failed bind, reported by the next step */
};

/* Prepared statements by the address of their SQL text (open addressing). */
struct stmt_cache {
	store_stmt **slots;
	size_t cap; /* a power of two, or 0 */
	size_t used;
};

struct store {
	sqlite3 *db;
	pg_conn *pg; /* instead of db on PostgreSQL (store_pg.h) */
	struct stmt_cache cache;
	int tx_depth;    /* store_tx_begin nesting */
	bool tx_doomed;  /* an inner transaction rolled back */
	char path[4096]; /* the database file, for store_file_replaced */
	dev_t dev;       /* its device and inode at open */
	ino_t ino;
	store_plan_cb plan_cb; /* store_set_plan_cb: tests only */
	void *plan_ctx;
	char errmsg[512];
};

/* ---- errors ---- */

static int map_code(sqlite3 *db, int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return STORE_OK;
	case SQLITE_FULL:
		return STORE_FULL;
	case SQLITE_READONLY:
		return STORE_READONLY;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return STORE_BUSY;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return STORE_CORRUPT;
	case SQLITE_CANTOPEN: {
		int e = db ? sqlite3_system_errno(db) : 0;
		if (e == EACCES || e == EPERM || e == EROFS)
			return STORE_READONLY;
		return e == ENOENT ? STORE_NOTFOUND : STORE_ERROR;
	}
	default:
		return STORE_ERROR;
	}
}

/* Record "<what>: <sqlite message>" and return the store_error for rc. */
static int fail(store *s, int rc, const char *what)
{
	const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
	snprintf(s->errmsg, sizeof s->errmsg, "%s: %s", what, msg);
	int code = map_code(s->db, rc);
	return code == STORE_OK ? STORE_ERROR : code;
}

static int fail_msg(store *s, int code, const char *msg)
{
	snprintf(s->errmsg, sizeof s->errmsg, "%s", msg);
	return code;
}

const char *store_errmsg(const store *s)
{
	return s ? s->errmsg : "no store";
}

int store_set_error(store *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
	va_end(ap);
	return code;
}

int store_fail(store *s, int code, const char *what, char *err, size_t errlen)
{
	if (what)
		snprintf(err, errlen, "%s: %s", what, store_errmsg(s));
	else
		snprintf(err, errlen, "%s", store_errmsg(s));
	return code;
}

/* ---- statements ---- */

static size_t cache_index(const struct stmt_cache *c, const char *sql)
{
	uintptr_t h = (uintptr_t)sql;
	h ^= h >> 17;
	h *= 0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 7) & (c->cap - 1);
}

static int cache_grow(struct stmt_cache *c)
{
	size_t cap = c->cap ? c->cap * 2 : 64;
	store_stmt **slots = calloc(cap, sizeof *slots);
	if (!slots)
		return -1;
	struct stmt_cache next = {slots, cap, c->used};
	for (size_t i = 0; i < c->cap; i++) {
		store_stmt *e = c->slots[i];
		if (!e)
			continue;
		size_t j = cache_index(&next, e->sql);
		while (slots[j])
			j = (j + 1) & (cap - 1);
		slots[j] = e;
	}
	free(c->slots);
	*c = next;
	return 0;
}

static store_stmt **cache_slot(struct stmt_cache *c, const char *sql)
{
	if ((c->used + 1) * 2 > c->cap && cache_grow(c) != 0)
		return NULL;
	size_t j = cache_index(c, sql);
	while (c->slots[j] && c->slots[j]->sql != sql)
		j = (j + 1) & (c->cap - 1);
	return &c->slots[j];
}

static void cache_free(struct stmt_cache *c)
{
	for (size_t i = 0; i < c->cap; i++) {
		if (c->slots[i]) {
			sqlite3_finalize(c->slots[i]->st);
			pg_stmt_free(c->slots[i]->pg);
			free(c->slots[i]);
		}
	}
	free(c->slots);
	*c = (struct stmt_cache){0};
}

/* Copy the word at p (letters, digits, _) into buf, lowercased; returns
 * the end of the word. */
static const char *copy_word(const char *p, char *buf, size_t cap)
{
	size_t n = 0;
	while (*p == ' ' || *p == '(' || *p == '\n')
		p++;
	for (; (isalnum((unsigned char)*p) || *p == '_') && n + 1 < cap; p++)
		buf[n++] = (char)tolower((unsigned char)*p);
	buf[n] = '\0';
	return p;
}

/* "insert events", "update task_runs", "select servers": what a failed
 * statement did, for error messages. */
void store_statement_head(const char *sql, char *buf, size_t cap)
{
	char verb[16], table[48] = "";
	const char *p = copy_word(sql, verb, sizeof verb);
	const char *from = NULL;
	if (strcmp(verb, "insert") == 0 || strcmp(verb, "replace") == 0)
		from = strstr(p, "INTO ");
	else if (strcmp(verb, "delete") == 0 || strcmp(verb, "select") == 0 ||
	         strcmp(verb, "with") == 0)
		from = strstr(p, "FROM ");
	else if (strcmp(verb, "update") == 0)
		from = p - 1;
	if (from)
		copy_word(strchr(from, ' '), table, sizeof table);
	snprintf(buf, cap, "%s%s%s", verb, table[0] ? " " : "", table);
}

static int stmt_fail(store_stmt *st, int rc)
{
	char head[48];
	store_statement_head(st->sql, head, sizeof head);
	return fail(st->s, rc, head);
}

/* EXPLAIN QUERY PLAN of sql, each line to the plan callback (tests). */
static void report_plan(store *s, const char *sql)
{
	char *explain = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
	sqlite3_stmt *st = NULL;
	if (explain && sqlite3_prepare_v2(s->db, explain, -1, &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW)
			s->plan_cb(s->plan_ctx, sql, (const char *)sqlite3_column_text(st, 3));
	}
	sqlite3_finalize(st);
	sqlite3_free(explain);
}

/* store_prepare on PostgreSQL: the same cache, a pg_stmt in it. */
static int prepare_pg(store *s, store_stmt **slot, const char *sql, store_stmt **out)
{
	if (*slot && strcmp(pg_stmt_source((*slot)->pg), sql) == 0) {
		*out = *slot;
		return STORE_OK;
	}
	store_stmt *st = calloc(1, sizeof *st);
	if (!st)
		return fail_msg(s, STORE_ERROR, "prepare: out of memory");
	*st = (store_stmt){.s = s, .sql = sql};
	int code = pg_stmt_new(s->pg, sql, &st->pg, s->errmsg, sizeof s->errmsg);
	if (code != STORE_OK) {
		free(st);
		return code;
	}
	if (*slot) {
		pg_stmt_free((*slot)->pg);
		free(*slot);
	} else {
		s->cache.used++;
	}
	*slot = *out = st;
	return STORE_OK;
}

void store_set_plan_cb(store *s, store_plan_cb cb, void *ctx)
{
	s->plan_cb = cb;
	s->plan_ctx = ctx;
}

int store_prepare(store *s, const char *sql, store_stmt **out)
{
	*out = NULL;
	store_stmt **slot = cache_slot(&s->cache, sql);
	if (!slot)
		return fail_msg(s, STORE_ERROR, "prepare: out of memory");
	if (s->pg)
		return prepare_pg(s, slot, sql, out);
	if (*slot && strcmp(sqlite3_sql((*slot)->st), sql) == 0) {
		*out = *slot;
		return STORE_OK;
	}
	/* Not cached, or the same address now holds other text (a caller's
	 * buffer): prepare it, replacing the stale entry. */
	store_stmt *st = calloc(1, sizeof *st);
	if (!st)
		return fail_msg(s, STORE_ERROR, "prepare: out of memory");
	*st = (store_stmt){.s = s, .sql = sql};
	const char *tail = NULL;
	int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->st, &tail);
	if (rc == SQLITE_OK && tail && tail[strspn(tail, " \t\n;")] != '\0') {
		sqlite3_finalize(st->st);
		free(st);
		return fail_msg(s, STORE_ERROR, "prepare: more than one statement");
	}
	if (rc != SQLITE_OK || !st->st) {
		int code = rc != SQLITE_OK ? stmt_fail(st, rc)
		                           : fail_msg(s, STORE_ERROR, "prepare: empty statement");
		sqlite3_finalize(st->st);
		free(st);
		return code;
	}
	if (*slot) {
		sqlite3_finalize((*slot)->st);
		free(*slot);
	} else {
		s->cache.used++;
	}
	*slot = *out = st;
	if (s->plan_cb)
		report_plan(s, sql);
	return STORE_OK;
}

static void note_bind(store_stmt *st, int rc)
{
	if (rc != SQLITE_OK && st->bind_rc == SQLITE_OK)
		st->bind_rc = rc;
}

void store_bind_text(store_stmt *st, int i, const char *v)
{
	if (st->pg) {
		pg_bind_text(st->pg, i, v);
		return;
	}
	note_bind(st, v ? sqlite3_bind_text(st->st, i, v, -1, SQLITE_TRANSIENT)
	                : sqlite3_bind_null(st->st, i));
}

void store_bind_int64(store_stmt *st, int i, int64_t v)
{
	if (st->pg) {
		pg_bind_int64(st->pg, i, v);
		return;
	}
	note_bind(st, sqlite3_bind_int64(st->st, i, v));
}

void store_bind_double(store_stmt *st, int i, double v)
{
	if (st->pg) {
		pg_bind_double(st->pg, i, v);
		return;
	}
	note_bind(st, sqlite3_bind_double(st->st, i, v));
}

void store_bind_null(store_stmt *st, int i)
{
	if (st->pg) {
		pg_bind_null(st->pg, i);
		return;
	}
	note_bind(st, sqlite3_bind_null(st->st, i));
}

int store_step(store_stmt *st)
{
	if (st->pg)
		return pg_step(st->pg, st->s->errmsg, sizeof st->s->errmsg);
	if (st->bind_rc != SQLITE_OK)
		return stmt_fail(st, st->bind_rc);
	int rc = sqlite3_step(st->st);
	if (rc == SQLITE_ROW)
		return STORE_ROW;
	if (rc == SQLITE_DONE)
		return STORE_DONE;
	return stmt_fail(st, rc);
}

int store_step_done(store_stmt *st)
{
	int rc = store_step(st);
	return rc == STORE_ROW ? STORE_OK : rc;
}

int store_step_id(store_stmt *st, int64_t *id)
{
	int rc = store_step(st);
	if (rc == STORE_ROW && id)
		*id = store_col_int64(st, 0);
	if (rc == STORE_ROW)
		rc = store_step_done(st);
	store_stmt_done(st);
	return rc;
}

void store_stmt_done(store_stmt *st)
{
	if (!st)
		return;
	if (st->pg) {
		pg_stmt_reset(st->pg);
		return;
	}
	sqlite3_reset(st->st);
	sqlite3_clear_bindings(st->st);
	st->bind_rc = SQLITE_OK;
}

bool store_col_null(store_stmt *st, int i)
{
	if (st->pg)
		return pg_col_null(st->pg, i);
	return sqlite3_column_type(st->st, i) == SQLITE_NULL;
}

const char *store_col_text(store_stmt *st, int i)
{
	if (st->pg)
		return pg_col_text(st->pg, i);
	return (const char *)sqlite3_column_text(st->st, i);
}

char *store_col_dup(store_stmt *st, int i)
{
	const char *t = store_col_text(st, i);
	return t ? strdup(t) : NULL;
}

/* PostgreSQL's text of a number or a boolean. */
static double pg_number(store_stmt *st, int i)
{
	const char *t = pg_col_text(st->pg, i);
	if (!t)
		return 0;
	if (t[0] == 't' && t[1] == '\0')
		return 1;
	return t[0] == 'f' && t[1] == '\0' ? 0 : strtod(t, NULL);
}

int64_t store_col_int64(store_stmt *st, int i)
{
	if (st->pg) {
		const char *t = pg_col_text(st->pg, i);
		return t && strpbrk(t, ".eEtfN") == NULL ? strtoll(t, NULL, 10)
		                                         : (int64_t)pg_number(st, i);
	}
	return sqlite3_column_int64(st->st, i);
}

int store_col_int(store_stmt *st, int i)
{
	if (st->pg)
		return (int)store_col_int64(st, i);
	return sqlite3_column_int(st->st, i);
}

double store_col_double(store_stmt *st, int i, double if_null)
{
	if (store_col_null(st, i))
		return if_null;
	return st->pg ? pg_number(st, i) : sqlite3_column_double(st->st, i);
}

int64_t store_changes(store *s)
{
	if (s->pg)
		return pg_changes(s->pg);
	return sqlite3_changes64(s->db);
}

int store_exec(store *s, const char *sql)
{
	store_stmt *st;
	int code = store_prepare(s, sql, &st);
	if (code == STORE_OK)
		code = store_step_done(st);
	store_stmt_done(st);
	return code;
}

/* ---- transactions ---- */

int store_tx_begin(store *s)
{
	if (s->tx_depth > 0) {
		s->tx_depth++;
		return STORE_OK;
	}
	if (s->pg) {
		int code = pg_tx_begin(s->pg, s->errmsg, sizeof s->errmsg);
		if (code == STORE_OK) {
			s->tx_depth = 1;
			s->tx_doomed = false;
		}
		return code;
	}
	int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return fail(s, rc, "begin transaction");
	s->tx_depth = 1;
	s->tx_doomed = false;
	return STORE_OK;
}

static void tx_end_rollback(store *s)
{
	if (s->pg) {
		pg_tx_rollback(s->pg);
		s->tx_depth = 0;
		s->tx_doomed = false;
		return;
	}
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	s->tx_depth = 0;
	s->tx_doomed = false;
}

int store_tx_commit(store *s)
{
	if (s->tx_depth == 0)
		return fail_msg(s, STORE_ERROR, "commit: no transaction");
	if (--s->tx_depth > 0)
		return STORE_OK;
	if (s->tx_doomed) {
		tx_end_rollback(s);
		return fail_msg(s, STORE_ERROR, "commit: an inner transaction was rolled back");
	}
	if (s->pg) {
		s->tx_depth = 0;
		return pg_tx_commit(s->pg, s->errmsg, sizeof s->errmsg);
	}
	int rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		return STORE_OK;
	int code = fail(s, rc, "commit");
	tx_end_rollback(s);
	return code;
}

void store_tx_rollback(store *s)
{
	if (s->tx_depth > 1) {
		s->tx_depth--;
		s->tx_doomed = true;
		return;
	}
	tx_end_rollback(s);
}

int store_tx(store *s, int (*fn)(store *s, void *arg), void *arg)
{
	int code = store_tx_begin(s);
	if (code != STORE_OK)
		return code;
	code = fn(s, arg);
	if (code != 0) {
		store_tx_rollback(s);
		return code;
	}
	return store_tx_commit(s);
}

void store_set_busy_timeout(store *s, int ms)
{
	if (s->pg) {
		pg_set_lock_timeout(s->pg, ms);
		return;
	}
	sqlite3_busy_timeout(s->db, ms);
}

int store_write_probe(store *s)
{
	int code = store_tx_begin(s);
	if (code == STORE_OK)
		store_tx_rollback(s);
	return code;
}

/* ---- small helpers ---- */

static int exec_sql(store *s, const char *sql, const char *what)
{
	if (s->pg) {
		int code = store_exec(s, sql);
		if (code != STORE_OK) {
			char why[sizeof s->errmsg];
			snprintf(why, sizeof why, "%s", s->errmsg);
			store_set_error(s, code, "%s: %s", what, why);
		}
		return code;
	}
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? STORE_OK : fail(s, rc, what);
}

static void rollback(store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int64_t read_user_version(store *s, int *code)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;
	int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		v = sqlite3_column_int64(st, 0);
		*code = STORE_OK;
	} else {
		*code = fail(s, rc, "read schema version");
	}
	sqlite3_finalize(st);
	return v;
}

static int check_not_newer(store *s, int64_t version)
{
	if (version <= STORE_SCHEMA_VERSION)
		return STORE_OK;
	snprintf(s->errmsg, sizeof s->errmsg,
	         "schema version %lld is newer than this fleetkeeper supports (%d);"
	         " use a newer fleetkeeper",
	         (long long)version, STORE_SCHEMA_VERSION);
	return STORE_TOONEW;
}

int store_schema_version(store *s)
{
	if (s->pg)
		return pg_schema_version(s->pg, s->errmsg, sizeof s->errmsg);
	int code;
	int64_t v = read_user_version(s, &code);
	return code == STORE_OK ? (int)v : code;
}

/* ---- open, configure, migrate ---- */

/* A new database file is created 0600 whatever the umask, or 0640 when
 * its directory admits its group (file_modes.h); SQLite gives its -wal and
 * -shm files the mode of the database file. Failure is left to
 * sqlite3_open_v2 to report. */
static void create_private(const char *path)
{
	mode_t mode = file_mode_state(path);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd >= 0) {
		fchmod(fd, mode); /* whatever the umask */
		close(fd);
	}
}

/* Before the first connection: no bulk page-cache allocation per
 * connection (about 90 KiB each, six connections in a daemon, mostly never
 * used by an idle one); pages are allocated as they are needed. */
static void configure_library(void)
{
	sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
}

static int open_connection(store **out, const char *path, int flags, char *err, size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, configure_library);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	*out = NULL;
	if (rc != SQLITE_OK) {
		int e = db ? sqlite3_system_errno(db) : 0;
		snprintf(err, errlen, "%s: cannot open: %s%s%s", path,
		         db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), e ? ": " : "",
		         e ? strerror(e) : "");
		int code = map_code(db, rc);
		sqlite3_close(db);
		return code == STORE_OK ? STORE_ERROR : code;
	}
	store *s = calloc(1, sizeof *s);
	if (!s) {
		sqlite3_close(db);
		snprintf(err, errlen, "%s: out of memory", path);
		return STORE_ERROR;
	}
	s->db = db;
	snprintf(s->path, sizeof s->path, "%s", path);
	struct stat sb;
	if (stat(path, &sb) == 0) {
		s->dev = sb.st_dev;
		s->ino = sb.st_ino;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	*out = s;
	return STORE_OK;
}

static void pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Switching a fresh file to WAL needs an exclusive lock; another process
 * doing the same may make us see SQLITE_BUSY, so retry for a while. */
static int set_wal(store *s)
{
	int code = STORE_OK;
	for (int attempt = 0; attempt < BUSY_TIMEOUT_MS / 50; attempt++) {
		code = exec_sql(s, "PRAGMA journal_mode=WAL", "set journal_mode=WAL");
		if (code != STORE_BUSY)
			return code;
		pause_ms(50);
	}
	return code;
}

static int pragma_int(store *s, const char *sql, int64_t *out);

static int configure(store *s)
{
	if (sqlite3_db_readonly(s->db, "main") == 1)
		return fail_msg(s, STORE_READONLY, "database file is read-only");
	int code = exec_sql(s, "PRAGMA foreign_keys=ON", "set foreign_keys");
	/* A new (empty) file only, and before WAL: switching it to WAL writes
	 * its first page, after which auto_vacuum can no longer change. On an
	 * existing file the pragma would write its header at every open. */
	int64_t pages = -1;
	if (code == STORE_OK)
		code = pragma_int(s, "PRAGMA page_count", &pages);
	if (code == STORE_OK && pages == 0)
		code = exec_sql(s, "PRAGMA auto_vacuum=INCREMENTAL", "set auto_vacuum");
	if (code == STORE_OK)
		code = set_wal(s);
	if (code == STORE_OK)
		code = exec_sql(s, "PRAGMA synchronous=NORMAL", "set synchronous");
	return code;
}

/* One step, in its own transaction; *version is re-read under the write
 * lock, so a concurrent opener that got there first makes this a no-op. */
static int migrate_step(store *s, int target, int64_t *version)
{
	char sql[64];
	int code = exec_sql(s, "BEGIN IMMEDIATE", "begin migration");
	if (code != STORE_OK)
		return code;
	*version = read_user_version(s, &code);
	if (code == STORE_OK)
		code = check_not_newer(s, *version);
	if (code != STORE_OK || *version >= target)
		goto done;
	code = exec_sql(s, migrations[*version], "migrate schema");
	snprintf(sql, sizeof sql, "PRAGMA user_version = %lld", (long long)*version + 1);
	if (code == STORE_OK)
		code = exec_sql(s, sql, "set schema version");
	if (code == STORE_OK)
		++*version;
done:
	if (code == STORE_OK)
		code = exec_sql(s, "COMMIT", "commit migration");
	if (code != STORE_OK)
		rollback(s);
	return code;
}

static int migrate(store *s, int target)
{
	int code;
	int64_t version = read_user_version(s, &code);
	if (code == STORE_OK)
		code = check_not_newer(s, version);
	while (code == STORE_OK && version < target)
		code = migrate_step(s, target, &version);
	return code;
}

static int open_failed(store *s, int code, const char *path, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: %s", path, s->errmsg);
	store_close(s);
	return code;
}

/* ---- PostgreSQL (store_pg.c) ---- */

bool store_location_is_pg(const char *where)
{
	return where && strncmp(where, STORE_PG_PREFIX, strlen(STORE_PG_PREFIX)) == 0;
}

bool store_is_pg(const store *s)
{
	return s && s->pg;
}

void store_set_availability_cb(store_availability_cb cb)
{
	pg_set_availability_cb(cb);
}

static int open_pg(store **out, const char *where, bool readonly, int version, char *err,
                   size_t errlen)
{
	store *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return STORE_ERROR;
	}
	const char *dsn = where + strlen(STORE_PG_PREFIX);
	int code = pg_open(&s->pg, dsn, readonly, migrations, version, err, errlen);
	if (code != STORE_OK) {
		free(s);
		return code;
	}
	*out = s;
	return STORE_OK;
}

static int pg_only(store *s, const char *what)
{
	return store_set_error(s, STORE_ERROR, "%s: only on a PostgreSQL store", what);
}

int store_listen(store *s, const char *channel)
{
	return s->pg ? pg_listen(s->pg, channel, s->errmsg, sizeof s->errmsg)
	             : pg_only(s, "listen");
}

int store_notify_fd(store *s)
{
	return s->pg ? pg_socket(s->pg) : -1;
}

int store_notifications(store *s, store_notify_cb cb, void *ctx)
{
	return s->pg ? pg_notifications(s->pg, cb, ctx, s->errmsg, sizeof s->errmsg)
	             : pg_only(s, "notifications");
}

int store_backend_pid(store *s)
{
	return s->pg ? pg_backend_pid(s->pg) : 0;
}

int store_open_at_version(store **out, const char *path, int version, char *err, size_t errlen)
{
	store *s = NULL;
	*out = NULL;
	if (version < 0 || version > STORE_SCHEMA_VERSION) {
		snprintf(err, errlen, "%s: no schema version %d", path, version);
		return STORE_ERROR;
	}
	if (store_location_is_pg(path))
		return open_pg(out, path, false, version, err, errlen);
	create_private(path);
	int code =
	        open_connection(&s, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, errlen);
	if (code != STORE_OK)
		return code;
	code = configure(s);
	if (code == STORE_OK)
		code = migrate(s, version);
	if (code != STORE_OK)
		return open_failed(s, code, path, err, errlen);
	*out = s;
	return STORE_OK;
}

int store_open(store **out, const char *path, char *err, size_t errlen)
{
	return store_open_at_version(out, path, STORE_SCHEMA_VERSION, err, errlen);
}

/* No -shm next to path and no right to create one in its directory. */
static bool wal_files_cannot_be_made(const char *path)
{
	char shm[4200], dir[4096];
	snprintf(shm, sizeof shm, "%s-shm", path);
	if (access(shm, F_OK) == 0)
		return false;
	const char *slash = strrchr(path, '/');
	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
	return access(dir[0] ? dir : "/", W_OK) != 0;
}

/* Read-only with immutable=1 (no locks, no -shm): only when nothing writes. */
static int open_immutable(store **out, const char *path, char *err, size_t errlen)
{
	char uri[4096 * 3 + 32] = "file:";
	size_t n = strlen(uri);
	for (const unsigned char *p = (const unsigned char *)path; *p && n + 4 < sizeof uri; p++) {
		if (isalnum(*p) || strchr("/-._~", *p))
			uri[n++] = (char)*p;
		else
			n += (size_t)snprintf(uri + n, sizeof uri - n, "%%%02X", *p);
	}
	snprintf(uri + n, sizeof uri - n, "?immutable=1");
	int code = open_connection(out, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, err, errlen);
	if (code == STORE_OK)
		snprintf((*out)->path, sizeof(*out)->path, "%s", path);
	return code;
}

int store_open_readonly(store **out, const char *path, char *err, size_t errlen)
{
	struct stat sb;
	store *s = NULL;
	*out = NULL;
	if (store_location_is_pg(path))
		return open_pg(out, path, true, STORE_SCHEMA_VERSION, err, errlen);
	if (stat(path, &sb) != 0) {
		int e = errno;
		char hint[300] = "";
		if (e == EACCES)
			file_access_hint(path, hint, sizeof hint);
		snprintf(err, errlen, "%s: no state store: %s%s", path, strerror(e), hint);
		return e == ENOENT ? STORE_NOTFOUND : STORE_ERROR;
	}
	int code = open_connection(&s, path, SQLITE_OPEN_READONLY, err, errlen);
	if (code != STORE_OK)
		return code;
	int64_t version = read_user_version(s, &code);
	if (code != STORE_OK && wal_files_cannot_be_made(path)) {
		/* An operator (group read, docs/packaging.md) while no daemon
		 * runs: SQLite cannot create the -shm a WAL reader needs, and
		 * nothing writes, so the file is read as it is. */
		store_close(s);
		s = NULL;
		code = open_immutable(&s, path, err, errlen);
		if (code != STORE_OK)
			return code;
		version = read_user_version(s, &code);
	}
	if (code == STORE_OK)
		code = check_not_newer(s, version);
	if (code == STORE_OK && version == 0)
		code = fail_msg(s, STORE_NOTFOUND, "not a fleetkeeper state store (no schema)");
	if (code != STORE_OK)
		return open_failed(s, code, path, err, errlen);
	*out = s;
	return STORE_OK;
}

void store_close(store *s)
{
	if (!s)
		return;
	cache_free(&s->cache);
	sqlite3_close(s->db);
	pg_close(s->pg);
	free(s);
}

/* ---- task runs ---- */

/* ---- checks and backups ---- */

/* PostgreSQL keeps its own files: the checks and file operations of an
 * SQLite store are nothing or an error there. */
int store_quick_check(store *s)
{
	if (s->pg)
		return STORE_OK;
	static const char sql[] = "PRAGMA quick_check(1)";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	rc = store_step(st);
	const char *result = rc == STORE_ROW ? store_col_text(st, 0) : NULL;
	int code = rc < 0 ? rc : STORE_OK;
	if (rc == STORE_ROW && (!result || strcmp(result, "ok") != 0))
		code = store_set_error(s, STORE_CORRUPT, "quick_check: %s",
		                       result ? result : "no answer");
	store_stmt_done(st);
	return code;
}

int store_integrity_check(store *s, store_line_cb cb, void *ctx)
{
	if (s->pg)
		return STORE_OK;
	static const char sql[] = "PRAGMA integrity_check";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st), damaged = 0;
	if (rc != STORE_OK)
		return rc;
	while ((rc = store_step(st)) == STORE_ROW) {
		const char *line = store_col_text(st, 0);
		if (line && strcmp(line, "ok") == 0)
			continue;
		damaged = 1;
		cb(ctx, line ? line : "?");
	}
	store_stmt_done(st);
	if (rc < 0)
		return rc;
	return damaged ? store_set_error(s, STORE_CORRUPT, "integrity_check found damage")
	               : STORE_OK;
}

int store_backup(store *s, const char *dest, char *err, size_t errlen)
{
	if (s->pg) {
		snprintf(err, errlen,
		         "a PostgreSQL store is backed up by PostgreSQL (pg_dump, or the server's "
		         "own backups), not by fleetkeeper");
		return STORE_ERROR;
	}
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp-%ld", dest, (long)getpid());
	unlink(tmp);
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
		return errno == EACCES || errno == EROFS ? STORE_READONLY : STORE_ERROR;
	}
	close(fd);
	sqlite3 *out = NULL;
	int rc = sqlite3_open_v2(tmp, &out, SQLITE_OPEN_READWRITE, NULL);
	sqlite3_backup *b =
	        rc == SQLITE_OK ? sqlite3_backup_init(out, "main", s->db, "main") : NULL;
	if (b) {
		/* one step: a single read transaction, so the copy is one
		 * consistent snapshot; in WAL mode it does not block writers */
		for (int tries = 0; tries < 250; tries++) {
			rc = sqlite3_backup_step(b, -1);
			if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
				break;
			sqlite3_sleep(20);
		}
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
		int frc = sqlite3_backup_finish(b);
		if (rc == SQLITE_OK)
			rc = frc;
	} else if (rc == SQLITE_OK) {
		rc = sqlite3_errcode(out);
	}
	int code = map_code(out, rc);
	if (rc != SQLITE_OK)
		snprintf(err, errlen, "%s: backup failed: %s", dest,
		         out ? sqlite3_errmsg(out) : sqlite3_errstr(rc));
	sqlite3_close(out);
	if (rc == SQLITE_OK && rename(tmp, dest) != 0) {
		snprintf(err, errlen, "%s: cannot rename %s into place: %s", dest, tmp,
		         strerror(errno));
		rc = SQLITE_CANTOPEN;
		code = STORE_ERROR;
	}
	if (rc != SQLITE_OK) {
		unlink(tmp);
		return code == STORE_OK ? STORE_ERROR : code;
	}
	return STORE_OK;
}

/* ---- space ---- */

static int pragma_int(store *s, const char *sql, int64_t *out)
{
	store_stmt *st;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	rc = store_step(st);
	*out = rc == STORE_ROW ? store_col_int64(st, 0) : 0;
	store_stmt_done(st);
	return rc < 0 ? rc : STORE_OK;
}

int store_space_get(store *s, store_space *out)
{
	if (s->pg) { /* PostgreSQL's autovacuum gives space back */
		*out = (store_space){.auto_vacuum = STORE_AUTO_VACUUM_INCREMENTAL};
		return STORE_OK;
	}
	int64_t av = 0;
	int rc = pragma_int(s, "PRAGMA page_size", &out->page_size);
	if (rc == STORE_OK)
		rc = pragma_int(s, "PRAGMA page_count", &out->page_count);
	if (rc == STORE_OK)
		rc = pragma_int(s, "PRAGMA freelist_count", &out->freelist_count);
	if (rc == STORE_OK)
		rc = pragma_int(s, "PRAGMA auto_vacuum", &av);
	out->auto_vacuum = (store_auto_vacuum)av;
	return rc;
}

#define STR_(x) #x
#define STR(x)  STR_(x)

int store_vacuum_step(store *s, int64_t *freed)
{
	static const char sql[] = "PRAGMA incremental_vacuum(" STR(STORE_VACUUM_STEP_PAGES) ")";
	store_space before, after;
	*freed = 0;
	if (s->pg)
		return STORE_OK; /* autovacuum's job */
	int rc = store_space_get(s, &before);
	if (rc != STORE_OK || before.auto_vacuum != STORE_AUTO_VACUUM_INCREMENTAL ||
	    before.freelist_count == 0)
		return rc;
	/* sqlite3_exec steps it to the end: one pass frees the pages */
	rc = exec_sql(s, sql, "incremental_vacuum");
	if (rc == STORE_OK)
		rc = store_space_get(s, &after);
	if (rc == STORE_OK)
		*freed = before.freelist_count - after.freelist_count;
	return rc;
}

int store_vacuum(store *s)
{
	if (s->pg)
		return exec_sql(s, "VACUUM", "vacuum");
	store_space sp;
	int rc = store_space_get(s, &sp);
	/* on a NONE file the pragma writes nothing: it tells VACUUM the mode */
	if (rc == STORE_OK && sp.auto_vacuum == STORE_AUTO_VACUUM_NONE)
		rc = exec_sql(s, "PRAGMA auto_vacuum=INCREMENTAL", "set auto_vacuum");
	return rc == STORE_OK ? exec_sql(s, "VACUUM", "vacuum") : rc;
}

int store_checkpoint(store *s)
{
	if (s->pg)
		return STORE_OK;
	return exec_sql(s, "PRAGMA wal_checkpoint(PASSIVE)", "wal_checkpoint");
}

bool store_file_replaced(store *s)
{
	struct stat sb;
	if (s->ino == 0)
		return false;
	if (stat(s->path, &sb) != 0) {
		store_set_error(s, STORE_NOTFOUND, "%s: deleted while open (%s)", s->path,
		                strerror(errno));
		return true;
	}
	if (sb.st_dev != s->dev || sb.st_ino != s->ino) {
		store_set_error(s, STORE_ERROR, "%s: replaced by another file while open", s->path);
		return true;
	}
	return false;
}
