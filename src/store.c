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

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#define BUSY_TIMEOUT_MS   5000
#define INTERRUPTED_ERROR "daemon stopped before the run finished"

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

/* migrations[i] takes the schema from version i to version i + 1. */
static const char *const migrations[STORE_SCHEMA_VERSION] = {schema_v1, schema_v2, schema_v3,
                                                             schema_v4};

/* ---- cached statements ---- */

#define RUN_COLS                                                                                   \
	"id, task, trigger, status, correlation_id, started_at, finished_at, duration_sec,"        \
	" exit_code, error, error_type, items"
#define NOW_SQL "((julianday('now') - 2440587.5) * 86400.0)"

enum {
	Q_EVENT_INSERT,
	Q_RUN_START,
	Q_RUN_FINISH,
	Q_RUN_SKIPPED,
	Q_RUN_GET,
	Q_RUNS_ALL,
	Q_RUNS_TASK,
	Q_RUNS_LAST,
	Q_TRACE,
	Q_FIRE_GET,
	Q_FIRE_SET,
	Q_COUNT
};

static const char *const query_sql[Q_COUNT] = {
        [Q_EVENT_INSERT] = "INSERT INTO events (unix_time, timestamp, level, logger, event,"
                           " correlation_id, task, run_id, line) VALUES (?,?,?,?,?,?,?,?,?)",
        [Q_RUN_START] = "INSERT INTO task_runs (task, trigger, status, correlation_id, started_at)"
                        " VALUES (?, ?, 'running', ?, ?)",
        [Q_RUN_FINISH] = "UPDATE task_runs SET status = ?2, finished_at = ?3, duration_sec = ?4,"
                         " exit_code = ?5, error = ?6, error_type = ?7, items = ?8 WHERE id = ?1",
        [Q_RUN_SKIPPED] = "INSERT INTO task_runs (task, trigger, status, correlation_id,"
                          " started_at, finished_at, duration_sec, error)"
                          " VALUES (?1, ?2, 'skipped', ?3, ?4, ?4, 0, ?5)",
        [Q_RUN_GET] = "SELECT " RUN_COLS " FROM task_runs WHERE id = ?",
        [Q_RUNS_ALL] = "SELECT " RUN_COLS " FROM task_runs ORDER BY id DESC LIMIT ?",
        [Q_RUNS_TASK] =
                "SELECT " RUN_COLS " FROM task_runs WHERE task = ? ORDER BY id DESC LIMIT ?",
        [Q_RUNS_LAST] = "SELECT " RUN_COLS " FROM task_runs WHERE id IN"
                        " (SELECT max(id) FROM task_runs GROUP BY task) ORDER BY task",
        [Q_TRACE] = "SELECT id, line FROM events WHERE correlation_id = ? AND id > ? ORDER BY id",
        [Q_FIRE_GET] = "SELECT last_fire_at FROM task_state WHERE task = ?",
        [Q_FIRE_SET] = "INSERT INTO task_state (task, last_fire_at, updated_at)"
                       " VALUES (?, ?, " NOW_SQL ") ON CONFLICT(task) DO UPDATE SET"
                       " last_fire_at = excluded.last_fire_at, updated_at = excluded.updated_at",
};

struct store_stmt {
	store *s;
	sqlite3_stmt *st;
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
	sqlite3_stmt *stmt[Q_COUNT];
	struct stmt_cache cache;
	int tx_depth;    /* store_tx_begin nesting */
	bool tx_doomed;  /* an inner transaction rolled back */
	char errmsg[512];
};

/* ---- run status names ---- */

static const char *const run_status_names[] = {
        [RUN_RUNNING] = "running", [RUN_SUCCESS] = "success", [RUN_FAILED] = "failed",
        [RUN_TIMEOUT] = "timeout", [RUN_SKIPPED] = "skipped", [RUN_INTERRUPTED] = "interrupted",
};
#define RUN_STATUS_COUNT (sizeof run_status_names / sizeof run_status_names[0])

const char *run_status_name(run_status st)
{
	if ((unsigned)st >= RUN_STATUS_COUNT)
		return "unknown";
	return run_status_names[st];
}

int run_status_parse(const char *name, run_status *out)
{
	for (size_t i = 0; name && i < RUN_STATUS_COUNT; i++) {
		if (strcmp(name, run_status_names[i]) == 0) {
			*out = (run_status)i;
			return 0;
		}
	}
	return -1;
}

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

int store_sqlite_error(sqlite3 *db, int rc, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(db));
	int code = map_code(db, rc);
	return code == STORE_OK ? STORE_ERROR : code;
}

const char *store_errmsg(const store *s)
{
	return s ? s->errmsg : "no store";
}

sqlite3 *store_db(store *s)
{
	return s->db;
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
			free(c->slots[i]);
		}
	}
	free(c->slots);
	*c = (struct stmt_cache){0};
}

/* The leading words of a statement, for error messages. */
static void statement_head(const char *sql, char *buf, size_t cap)
{
	size_t n = 0, words = 0;
	while (sql[n] && n + 1 < cap && n < 40) {
		if (sql[n] == ' ' && ++words == 3)
			break;
		n++;
	}
	snprintf(buf, cap, "%.*s", (int)n, sql);
}

static int stmt_fail(store_stmt *st, int rc)
{
	char head[48];
	statement_head(st->sql, head, sizeof head);
	return fail(st->s, rc, head);
}

int store_prepare(store *s, const char *sql, store_stmt **out)
{
	*out = NULL;
	store_stmt **slot = cache_slot(&s->cache, sql);
	if (!slot)
		return fail_msg(s, STORE_ERROR, "prepare: out of memory");
	if (*slot) {
		*out = *slot;
		return STORE_OK;
	}
	store_stmt *st = calloc(1, sizeof *st);
	if (!st)
		return fail_msg(s, STORE_ERROR, "prepare: out of memory");
	*st = (store_stmt){.s = s, .sql = sql};
	int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->st, NULL);
	if (rc != SQLITE_OK) {
		int code = stmt_fail(st, rc);
		free(st);
		return code;
	}
	*slot = *out = st;
	s->cache.used++;
	return STORE_OK;
}

static void note_bind(store_stmt *st, int rc)
{
	if (rc != SQLITE_OK && st->bind_rc == SQLITE_OK)
		st->bind_rc = rc;
}

void store_bind_text(store_stmt *st, int i, const char *v)
{
	note_bind(st, v ? sqlite3_bind_text(st->st, i, v, -1, SQLITE_TRANSIENT)
	                : sqlite3_bind_null(st->st, i));
}

void store_bind_int64(store_stmt *st, int i, int64_t v)
{
	note_bind(st, sqlite3_bind_int64(st->st, i, v));
}

void store_bind_double(store_stmt *st, int i, double v)
{
	note_bind(st, sqlite3_bind_double(st->st, i, v));
}

void store_bind_null(store_stmt *st, int i)
{
	note_bind(st, sqlite3_bind_null(st->st, i));
}

int store_step(store_stmt *st)
{
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

void store_stmt_done(store_stmt *st)
{
	if (!st)
		return;
	sqlite3_reset(st->st);
	sqlite3_clear_bindings(st->st);
	st->bind_rc = SQLITE_OK;
}

bool store_col_null(store_stmt *st, int i)
{
	return sqlite3_column_type(st->st, i) == SQLITE_NULL;
}

const char *store_col_text(store_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st->st, i);
}

char *store_col_dup(store_stmt *st, int i)
{
	const char *t = store_col_text(st, i);
	return t ? strdup(t) : NULL;
}

int64_t store_col_int64(store_stmt *st, int i)
{
	return sqlite3_column_int64(st->st, i);
}

int store_col_int(store_stmt *st, int i)
{
	return sqlite3_column_int(st->st, i);
}

double store_col_double(store_stmt *st, int i, double if_null)
{
	return store_col_null(st, i) ? if_null : sqlite3_column_double(st->st, i);
}

int64_t store_changes(store *s)
{
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
	int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return fail(s, rc, "begin transaction");
	s->tx_depth = 1;
	s->tx_doomed = false;
	return STORE_OK;
}

static void tx_end_rollback(store *s)
{
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
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? STORE_OK : fail(s, rc, what);
}

static void rollback(store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* The cached statement q, reset and with no bindings. */
static int query(store *s, int q, sqlite3_stmt **out)
{
	sqlite3_stmt *st = s->stmt[q];
	*out = st;
	if (st) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		return STORE_OK;
	}
	int rc = sqlite3_prepare_v3(s->db, query_sql[q], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(s, rc, "prepare");
	s->stmt[q] = *out = st;
	return STORE_OK;
}

/* Run a statement that returns no rows; reset it whatever happens. */
static int step_done(store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	int ret = rc == SQLITE_DONE ? STORE_OK : fail(s, rc, what);
	sqlite3_reset(st);
	return ret;
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
	int code;
	int64_t v = read_user_version(s, &code);
	return code == STORE_OK ? (int)v : code;
}

/* ---- open, configure, migrate ---- */

static int open_connection(store **out, const char *path, int flags, char *err, size_t errlen)
{
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

static int configure(store *s)
{
	if (sqlite3_db_readonly(s->db, "main") == 1)
		return fail_msg(s, STORE_READONLY, "database file is read-only");
	int code = exec_sql(s, "PRAGMA foreign_keys=ON", "set foreign_keys");
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

int store_open_at_version(store **out, const char *path, int version, char *err, size_t errlen)
{
	store *s = NULL;
	*out = NULL;
	if (version < 0 || version > STORE_SCHEMA_VERSION) {
		snprintf(err, errlen, "%s: no schema version %d", path, version);
		return STORE_ERROR;
	}
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

int store_open_readonly(store **out, const char *path, char *err, size_t errlen)
{
	struct stat sb;
	store *s = NULL;
	*out = NULL;
	if (stat(path, &sb) != 0) {
		int e = errno;
		snprintf(err, errlen, "%s: no state store: %s", path, strerror(e));
		return e == ENOENT ? STORE_NOTFOUND : STORE_ERROR;
	}
	int code = open_connection(&s, path, SQLITE_OPEN_READONLY, err, errlen);
	if (code != STORE_OK)
		return code;
	int64_t version = read_user_version(s, &code);
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
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	cache_free(&s->cache);
	sqlite3_close(s->db);
	free(s);
}

/* ---- task runs ---- */

int store_run_start(store *s, const char *task, const char *trigger, const char *correlation_id,
                    double started_at, int64_t *out_run_id)
{
	sqlite3_stmt *st;
	int qc = query(s, Q_RUN_START, &st);
	if (qc != STORE_OK)
		return qc;
	sqlite3_bind_text(st, 1, task, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, trigger, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, correlation_id, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 4, started_at);
	int code = step_done(s, st, "insert task_runs");
	if (code == STORE_OK && out_run_id)
		*out_run_id = sqlite3_last_insert_rowid(s->db);
	return code;
}

int store_run_finish(store *s, int64_t run_id, run_status status, double finished_at,
                     double duration_sec, int exit_code, const char *error, const char *error_type,
                     const char *items_json)
{
	sqlite3_stmt *st;
	int qc = query(s, Q_RUN_FINISH, &st);
	if (qc != STORE_OK)
		return qc;
	sqlite3_bind_int64(st, 1, run_id);
	sqlite3_bind_text(st, 2, run_status_name(status), -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 3, finished_at);
	sqlite3_bind_double(st, 4, duration_sec);
	if (exit_code >= 0)
		sqlite3_bind_int(st, 5, exit_code);
	sqlite3_bind_text(st, 6, error, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, error_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, items_json, -1, SQLITE_STATIC);
	int code = step_done(s, st, "update task_runs");
	if (code == STORE_OK && sqlite3_changes(s->db) == 0) {
		snprintf(s->errmsg, sizeof s->errmsg, "update task_runs: no run %lld",
		         (long long)run_id);
		return STORE_NOTFOUND;
	}
	return code;
}

int store_run_skipped(store *s, const char *task, const char *trigger, const char *correlation_id,
                      double at, const char *reason, int64_t *out_run_id)
{
	sqlite3_stmt *st;
	int qc = query(s, Q_RUN_SKIPPED, &st);
	if (qc != STORE_OK)
		return qc;
	sqlite3_bind_text(st, 1, task, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, trigger, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, correlation_id, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 4, at);
	sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC);
	int code = step_done(s, st, "insert skipped task_runs");
	if (code == STORE_OK && out_run_id)
		*out_run_id = sqlite3_last_insert_rowid(s->db);
	return code;
}

int store_runs_mark_interrupted(store *s, double now, int *count)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db,
	                            "UPDATE task_runs SET status = 'interrupted', finished_at = ?1,"
	                            " duration_sec = max(?1 - started_at, 0), error = ?2,"
	                            " error_type = 'interrupted' WHERE status = 'running'",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(s, rc, "mark interrupted runs");
	sqlite3_bind_double(st, 1, now);
	sqlite3_bind_text(st, 2, INTERRUPTED_ERROR, -1, SQLITE_STATIC);
	int code = step_done(s, st, "mark interrupted runs");
	if (count)
		*count = code == STORE_OK ? sqlite3_changes(s->db) : 0;
	sqlite3_finalize(st);
	return code;
}

static const char *column_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static double column_double_or(sqlite3_stmt *st, int i, double dflt)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_double(st, i);
}

static void read_run_row(sqlite3_stmt *st, store_run_row *r)
{
	r->id = sqlite3_column_int64(st, 0);
	r->task = column_text(st, 1);
	r->trigger = column_text(st, 2);
	if (run_status_parse(column_text(st, 3), &r->status) != 0)
		r->status = RUN_FAILED; /* unreachable: CHECK constraint */
	r->correlation_id = column_text(st, 4);
	r->started_at = sqlite3_column_double(st, 5);
	r->finished_at = column_double_or(st, 6, 0);
	r->duration_sec = column_double_or(st, 7, -1);
	r->exit_code = sqlite3_column_type(st, 8) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 8);
	r->error = column_text(st, 9);
	r->error_type = column_text(st, 10);
	r->items_json = column_text(st, 11);
}

typedef int (*row_fn)(sqlite3_stmt *st, void *arg);

/* Step through every row, handing each to fn; stop early on a non-zero
 * return, which is passed on. The statement is reset in all cases. */
static int each_row(store *s, sqlite3_stmt *st, row_fn fn, void *arg, const char *what,
                    int64_t *rows)
{
	int rc, ret = STORE_OK;
	int64_t n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		n++;
		ret = fn(st, arg);
		if (ret != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		ret = fail(s, rc, what);
	sqlite3_reset(st);
	if (rows)
		*rows = n;
	return ret;
}

typedef struct {
	store_run_cb cb;
	void *ctx;
} run_cb_box;

static int run_row_fn(sqlite3_stmt *st, void *arg)
{
	run_cb_box *box = arg;
	store_run_row r;
	read_run_row(st, &r);
	return box->cb(box->ctx, &r);
}

int store_run_get(store *s, int64_t run_id, store_run_cb cb, void *ctx)
{
	int64_t rows = 0;
	sqlite3_stmt *st;
	int qc = query(s, Q_RUN_GET, &st);
	if (qc != STORE_OK)
		return qc;
	run_cb_box box = {cb, ctx};
	sqlite3_bind_int64(st, 1, run_id);
	int ret = each_row(s, st, run_row_fn, &box, "select task_runs", &rows);
	if (ret == STORE_OK && rows == 0) {
		snprintf(s->errmsg, sizeof s->errmsg, "no run %lld", (long long)run_id);
		return STORE_NOTFOUND;
	}
	return ret;
}

int store_runs_list(store *s, const char *task, int limit, store_run_cb cb, void *ctx)
{
	sqlite3_stmt *st;
	int qc = query(s, task ? Q_RUNS_TASK : Q_RUNS_ALL, &st);
	if (qc != STORE_OK)
		return qc;
	run_cb_box box = {cb, ctx};
	int i = 1;
	if (task)
		sqlite3_bind_text(st, i++, task, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, i, limit > 0 ? limit : -1);
	return each_row(s, st, run_row_fn, &box, "select task_runs", NULL);
}

int store_runs_last_per_task(store *s, store_run_cb cb, void *ctx)
{
	sqlite3_stmt *st;
	int qc = query(s, Q_RUNS_LAST, &st);
	if (qc != STORE_OK)
		return qc;
	run_cb_box box = {cb, ctx};
	return each_row(s, st, run_row_fn, &box, "select task_runs", NULL);
}

/* ---- events ---- */

static int insert_event(store *s, sqlite3_stmt *st, const store_event *e)
{
	sqlite3_bind_double(st, 1, e->unix_time);
	sqlite3_bind_text(st, 2, e->timestamp, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, e->level, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, e->logger, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, e->event, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, e->correlation_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, e->task, -1, SQLITE_STATIC);
	if (e->run_id != 0)
		sqlite3_bind_int64(st, 8, e->run_id);
	else
		sqlite3_bind_null(st, 8);
	sqlite3_bind_text(st, 9, e->json, -1, SQLITE_STATIC);
	return step_done(s, st, "insert events");
}

int store_events_insert(store *s, const store_event *events, size_t n)
{
	if (n == 0)
		return STORE_OK;
	sqlite3_stmt *st;
	int qc = query(s, Q_EVENT_INSERT, &st);
	if (qc != STORE_OK)
		return qc;
	int code = exec_sql(s, "BEGIN IMMEDIATE", "begin insert events");
	for (size_t i = 0; code == STORE_OK && i < n; i++)
		code = insert_event(s, st, &events[i]);
	if (code == STORE_OK)
		code = exec_sql(s, "COMMIT", "commit events");
	if (code != STORE_OK)
		rollback(s);
	return code;
}

typedef struct {
	store_event_cb cb;
	void *ctx;
} event_cb_box;

static int event_row_fn(sqlite3_stmt *st, void *arg)
{
	event_cb_box *box = arg;
	return box->cb(box->ctx, sqlite3_column_int64(st, 0), column_text(st, 1));
}

int store_events_trace(store *s, const char *correlation_id, int64_t after_id, store_event_cb cb,
                       void *ctx)
{
	sqlite3_stmt *st;
	int qc = query(s, Q_TRACE, &st);
	if (qc != STORE_OK)
		return qc;
	sqlite3_bind_text(st, 1, correlation_id, -1, SQLITE_STATIC);
	event_cb_box box = {cb, ctx};
	sqlite3_bind_int64(st, 2, after_id);
	return each_row(s, st, event_row_fn, &box, "select events", NULL);
}

static int delete_before(store *s, const char *sql, double cutoff, int64_t *deleted)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(s, rc, "prune");
	sqlite3_bind_double(st, 1, cutoff);
	int code = step_done(s, st, "prune");
	if (code == STORE_OK && deleted)
		*deleted = sqlite3_changes64(s->db);
	sqlite3_finalize(st);
	return code;
}

int store_prune(store *s, double cutoff, int64_t *events_deleted, int64_t *runs_deleted)
{
	int code = exec_sql(s, "BEGIN IMMEDIATE", "begin prune");
	if (code == STORE_OK)
		code = delete_before(s, "DELETE FROM events WHERE unix_time < ?", cutoff,
		                     events_deleted);
	if (code == STORE_OK)
		code = delete_before(s,
		                     "DELETE FROM task_runs WHERE status != 'running'"
		                     " AND finished_at < ?",
		                     cutoff, runs_deleted);
	if (code == STORE_OK)
		code = exec_sql(s, "COMMIT", "commit prune");
	if (code != STORE_OK)
		rollback(s);
	return code;
}

/* ---- per-task scheduler state ---- */

int store_task_last_fire_get(store *s, const char *task, double *out)
{
	sqlite3_stmt *st;
	int qc = query(s, Q_FIRE_GET, &st);
	if (qc != STORE_OK)
		return qc;
	sqlite3_bind_text(st, 1, task, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	int code = STORE_OK;
	*out = 0;
	if (rc == SQLITE_ROW)
		*out = column_double_or(st, 0, 0);
	else if (rc != SQLITE_DONE)
		code = fail(s, rc, "select task_state");
	sqlite3_reset(st);
	return code;
}

int store_task_last_fire_set(store *s, const char *task, double fire_time)
{
	sqlite3_stmt *st;
	int qc = query(s, Q_FIRE_SET, &st);
	if (qc != STORE_OK)
		return qc;
	sqlite3_bind_text(st, 1, task, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 2, fire_time);
	return step_done(s, st, "upsert task_state");
}

/* ---- incidents and servers ---- */

typedef struct {
	store_incident_cb cb;
	void *ctx;
} incident_cb_box;

static int incident_row_fn(sqlite3_stmt *st, void *arg)
{
	incident_cb_box *box = arg;
	store_incident_row r = {
	        .id = sqlite3_column_int64(st, 0),
	        .server_handle = column_text(st, 1),
	        .type = column_text(st, 2),
	        .status = column_text(st, 3),
	        .detected_at = sqlite3_column_double(st, 4),
	        .resolved_at = column_double_or(st, 5, 0),
	        .correlation_id = column_text(st, 6),
	        .details = column_text(st, 7),
	};
	return box->cb(box->ctx, &r);
}

/* Run a one-off query and hand each row to fn. */
static int select_rows(store *s, const char *sql, int bind_int, row_fn fn, void *arg,
                       const char *what)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(s, rc, what);
	if (sqlite3_bind_parameter_count(st) > 0)
		sqlite3_bind_int(st, 1, bind_int);
	int ret = each_row(s, st, fn, arg, what, NULL);
	sqlite3_finalize(st);
	return ret;
}

int store_incidents_list(store *s, bool open_only, store_incident_cb cb, void *ctx)
{
	incident_cb_box box = {cb, ctx};
	return select_rows(s,
	                   "SELECT i.id, s.handle, i.type, i.status, i.detected_at, i.resolved_at,"
	                   " i.correlation_id, i.details FROM incidents i"
	                   " LEFT JOIN servers s ON s.id = i.server_id"
	                   " WHERE ?1 = 0 OR i.status IN ('detected','recovering')"
	                   " ORDER BY i.detected_at DESC, i.id DESC",
	                   open_only ? 1 : 0, incident_row_fn, &box, "select incidents");
}

static int int64_row_fn(sqlite3_stmt *st, void *arg)
{
	*(int64_t *)arg = sqlite3_column_int64(st, 0);
	return 0;
}

typedef struct {
	store_count_cb cb;
	void *ctx;
} count_cb_box;

static int count_row_fn(sqlite3_stmt *st, void *arg)
{
	count_cb_box *box = arg;
	return box->cb(box->ctx, column_text(st, 0), sqlite3_column_int64(st, 1));
}

int store_incidents_open_count(store *s, int64_t *out)
{
	*out = 0;
	return select_rows(s,
	                   "SELECT count(*) FROM incidents"
	                   " WHERE status IN ('detected','recovering')",
	                   0, int64_row_fn, out, "count incidents");
}

int store_servers_count_by_status(store *s, store_count_cb cb, void *ctx)
{
	count_cb_box box = {cb, ctx};
	return select_rows(s,
	                   "SELECT status, count(*) FROM servers GROUP BY status ORDER BY status",
	                   0, count_row_fn, &box, "count servers");
}
