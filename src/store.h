/*
 * store — the SQLite state store (SPEC §5).
 *
 * One store handle is one SQLite connection; it belongs to one thread at a
 * time (each worker thread, the event writer and the loop open their own).
 * Every connection runs in WAL mode with a busy timeout and foreign keys on.
 * store_open creates the schema or migrates it forward from any earlier
 * version (PRAGMA user_version), in one transaction per step.
 *
 * Errors: functions return 0 or a negative store_error; the SQLite message of
 * the last failure is kept for store_errmsg(). Nothing is logged here: the
 * caller decides.
 *
 * Strings in row structs passed to callbacks are borrowed for the duration of
 * the callback. A callback returns 0 to go on, non-zero to stop (that value
 * is then returned).
 */
#ifndef FK_STORE_H
#define FK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store;

typedef enum {
	STORE_OK = 0,
	STORE_ERROR = -1, /* anything else; see store_errmsg */
	STORE_NOTFOUND = -2,
	STORE_BUSY = -3,     /* locked past the busy timeout */
	STORE_FULL = -4,     /* disk full */
	STORE_READONLY = -5, /* read-only file or directory */
	STORE_CORRUPT = -6,
	STORE_TOONEW = -7, /* schema version newer than this binary */
} store_error;

#define STORE_SCHEMA_VERSION 4

typedef enum {
	RUN_RUNNING,
	RUN_SUCCESS,
	RUN_FAILED,
	RUN_TIMEOUT,
	RUN_SKIPPED,
	RUN_INTERRUPTED,
} run_status;

const char *run_status_name(run_status st);
int run_status_parse(const char *name, run_status *out);

/* Open (creating the file and schema if needed) and migrate. Read-only
 * opens never create or migrate. *out is freed with store_close. On
 * failure *out is NULL and err holds the reason. */
int store_open(store **out, const char *path, char *err, size_t errlen);
int store_open_readonly(store **out, const char *path, char *err, size_t errlen);
void store_close(store *s);

const char *store_errmsg(const store *s);
/* "<what>: <store_errmsg(s)>" into err (what may be NULL: the message
 * alone); returns code, so a caller can write return store_fail(...). */
int store_fail(store *s, int code, const char *what, char *err, size_t errlen);
int store_schema_version(store *s);

/* ---- statements: the one way any module runs SQL ----
 *
 * Every domain module (servers.c, incidents.c, outbox.c, ...) keeps its SQL
 * as static strings and runs it through these calls; no other file includes
 * <sqlite3.h>. Statements are written so that they can run on PostgreSQL
 * too: numbered parameters ?1..?N, ON CONFLICT, RETURNING, no SQLite-only
 * syntax where a portable form exists. SQL text is never built at run time:
 * values are always bound.
 *
 * store_prepare hands out the connection's cached statement for sql (cached
 * by the string's address, so sql must have static storage), reset and with
 * no bindings. Bind calls never fail by themselves: a failed bind is
 * reported by the next store_step. store_step returns STORE_ROW while there
 * are rows, STORE_DONE at the end, or a negative store_error with
 * "<first words of the statement>: <message>" in store_errmsg(). Column
 * text is borrowed until the next step or store_stmt_done. Every prepared
 * statement is given back with store_stmt_done (NULL is fine), which resets
 * it so that no statement keeps a read transaction open. */
typedef struct store_stmt store_stmt;

#define STORE_DONE 0
#define STORE_ROW  1

int store_prepare(store *s, const char *sql, store_stmt **out);
void store_bind_text(store_stmt *st, int i, const char *v); /* copied; NULL binds NULL */
void store_bind_int64(store_stmt *st, int i, int64_t v);
void store_bind_double(store_stmt *st, int i, double v);
void store_bind_null(store_stmt *st, int i);
int store_step(store_stmt *st);
/* Step a statement that returns no rows (STORE_ROW counts as done). */
int store_step_done(store_stmt *st);
void store_stmt_done(store_stmt *st);

bool store_col_null(store_stmt *st, int i);
const char *store_col_text(store_stmt *st, int i); /* NULL for NULL */
char *store_col_dup(store_stmt *st, int i);        /* malloc'd copy; NULL for NULL */
int64_t store_col_int64(store_stmt *st, int i);
int store_col_int(store_stmt *st, int i);
double store_col_double(store_stmt *st, int i, double if_null);

/* Rows inserted, updated or deleted by the last statement. */
int64_t store_changes(store *s);

/* prepare + bind nothing + step_done + done: for statements without
 * parameters. */
int store_exec(store *s, const char *sql);

/* ---- transactions ----
 *
 * store_tx_begin starts a write transaction (the write lock is taken at
 * once, so a transaction that reads and then writes never deadlocks with
 * another process). Transactions nest: an inner begin/commit pair only
 * counts; an inner rollback makes the outermost commit roll back and fail.
 * store_tx_commit rolls back by itself when the commit fails.
 * store_tx_rollback is a no-op outside a transaction, so error paths can
 * call it unconditionally. store_tx runs fn(s, arg) in one transaction:
 * committed if fn returns 0, else rolled back and fn's value returned. */
int store_tx_begin(store *s);
int store_tx_commit(store *s);
void store_tx_rollback(store *s);
int store_tx(store *s, int (*fn)(store *s, void *arg), void *arg);
/* Take and release the write lock: STORE_OK if this connection can write
 * now, else why not (busy, read-only, full...). For health probes. */
int store_write_probe(store *s);

/* TRANSITIONAL, removed once every module runs its SQL through the calls
 * above: the raw connection and its error mapping. */
typedef struct sqlite3 sqlite3;
sqlite3 *store_db(store *s);
int store_sqlite_error(sqlite3 *db, int rc, const char *what, char *err, size_t errlen);

/* Migration up to a given version only; for tests of the migration path. */
int store_open_at_version(store **out, const char *path, int version, char *err, size_t errlen);

/* ---- task runs ---- */

typedef struct {
	int64_t id;
	const char *task;
	const char *trigger; /* schedule, manual, catchup, start, cli */
	run_status status;
	const char *correlation_id;
	double started_at;   /* unix seconds */
	double finished_at;  /* 0 while running */
	double duration_sec; /* -1 while running */
	int exit_code;       /* -1 if none */
	const char *error;   /* NULL if none */
	const char *error_type;
	const char *items_json; /* {"repos_synced": 12, ...} or NULL */
} store_run_row;

typedef int (*store_run_cb)(void *ctx, const store_run_row *row);

int store_run_start(store *s, const char *task, const char *trigger, const char *correlation_id,
                    double started_at, int64_t *out_run_id);
int store_run_finish(store *s, int64_t run_id, run_status status, double finished_at,
                     double duration_sec, int exit_code, const char *error, const char *error_type,
                     const char *items_json);
/* A run that never started (overlap skip): one finished row. */
int store_run_skipped(store *s, const char *task, const char *trigger, const char *correlation_id,
                      double at, const char *reason, int64_t *out_run_id);
/* Runs left running by a crash become interrupted; *count gets how many. */
int store_runs_mark_interrupted(store *s, double now, int *count);

int store_run_get(store *s, int64_t run_id, store_run_cb cb, void *ctx);
/* Newest first; task NULL for all; limit <= 0 for no limit. */
int store_runs_list(store *s, const char *task, int limit, store_run_cb cb, void *ctx);
/* The newest run of each task that has one. */
int store_runs_last_per_task(store *s, store_run_cb cb, void *ctx);

/* ---- events ---- */

typedef struct {
	double unix_time;
	const char *timestamp;
	const char *level;
	const char *logger;
	const char *event;
	const char *correlation_id; /* may be NULL */
	const char *task;           /* may be NULL */
	int64_t run_id;             /* 0 if none */
	const char *json;
} store_event;

/* All rows in one transaction: all stored or none. */
int store_events_insert(store *s, const store_event *events, size_t n);

typedef int (*store_event_cb)(void *ctx, int64_t id, const char *json);
/* Events of one correlation id with id > after_id, in order. */
int store_events_trace(store *s, const char *correlation_id, int64_t after_id, store_event_cb cb,
                       void *ctx);

/* Delete events and finished runs older than cutoff (unix seconds). */
int store_prune(store *s, double cutoff, int64_t *events_deleted, int64_t *runs_deleted);

/* ---- per-task scheduler state ---- */

/* The last fire time the scheduler acted on (unix seconds), 0 if none. */
int store_task_last_fire_get(store *s, const char *task, double *out);
int store_task_last_fire_set(store *s, const char *task, double fire_time);

/* ---- incidents (listing; the health_check issue writes them) ---- */

typedef struct {
	int64_t id;
	const char *server_handle; /* NULL if the server row is gone */
	const char *type;
	const char *status;
	double detected_at;
	double resolved_at; /* 0 if open */
	const char *correlation_id;
	const char *details;
} store_incident_row;

typedef int (*store_incident_cb)(void *ctx, const store_incident_row *row);
int store_incidents_list(store *s, bool open_only, store_incident_cb cb, void *ctx);
int store_incidents_open_count(store *s, int64_t *out);

/* Server counts by status, for status: cb gets (status, count). */
typedef int (*store_count_cb)(void *ctx, const char *name, int64_t count);
int store_servers_count_by_status(store *s, store_count_cb cb, void *ctx);

#endif
