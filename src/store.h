/*
 * store — the state store (SPEC §5): an SQLite file (the default) or a
 * PostgreSQL database (docs/state-store.md, docs/cluster.md).
 *
 * A store's location is a file path, or STORE_PG_PREFIX followed by a libpq
 * connection string ("postgresql:host=db dbname=fleetkeeper"). One store
 * handle is one connection; it belongs to one thread at a time (each worker
 * thread, the event writer and the loop open their own: that is the pool,
 * sized by the threads that need one). SQLite connections run in WAL mode
 * with a busy timeout and foreign keys on. store_open creates the schema or
 * migrates it forward from any earlier version (PRAGMA user_version, or the
 * schema_version table on PostgreSQL), in one transaction per step.
 *
 * PostgreSQL: the same tables and statements (store_pg.c translates ?N to
 * $N and the schema's SQLite types); a write transaction takes one
 * transaction-level advisory lock, so write transactions are serialized as
 * SQLite's BEGIN IMMEDIATE serializes them. A lost connection is
 * STORE_UNAVAILABLE; the next use reconnects, with a backoff, and every
 * change of availability goes to the store_availability_cb once per
 * process.
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
	STORE_TOONEW = -7,      /* schema version newer than this binary */
	STORE_UNAVAILABLE = -8, /* PostgreSQL cannot be reached (reconnecting) */
} store_error;

#define STORE_SCHEMA_VERSION 7

#define STORE_PG_PREFIX "postgresql:"

/* True when where names a PostgreSQL store (STORE_PG_PREFIX...). */
bool store_location_is_pg(const char *where);
/* A libpq connection string fit for [store] dsn: parses, and holds no
 * password (those go in the passfile: PGPASSFILE, ~/.pgpass or a service
 * file). 0, or -1 with the reason in err. */
int store_dsn_check(const char *dsn, char *err, size_t errlen);
bool store_is_pg(const store *s);

/* Called (from any thread) when the PostgreSQL store becomes unreachable
 * (available false, why: libpq's message) and when a connection is made
 * again: once per change for the whole process. Set once, before any store
 * is opened; NULL: nothing is told. */
typedef void (*store_availability_cb)(bool available, const char *why);
void store_set_availability_cb(store_availability_cb cb);

/* PostgreSQL only (STORE_ERROR on SQLite): LISTEN on channel (a fixed
 * identifier of letters and '_'); store_notify_fd is the descriptor to poll
 * for input (-1 if none); store_notifications consumes input and calls cb
 * with each notification's channel and payload, returning how many. The
 * LISTEN is renewed after a reconnect. */
int store_listen(store *s, const char *channel);
int store_notify_fd(store *s);
typedef void (*store_notify_cb)(void *ctx, const char *channel, const char *payload);
int store_notifications(store *s, store_notify_cb cb, void *ctx);
/* The server's process id of this connection (PostgreSQL; 0 on SQLite). */
int store_backend_pid(store *s);

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
/* Set store_errmsg(s) to a message of the caller's (e.g. "no run 7") and
 * return code. */
int store_set_error(store *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
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
 * store_prepare hands out the connection's cached statement for sql, reset
 * and with no bindings; sql is one statement. Statements are cached by the
 * address of their text (checked against the text, so a buffer that is
 * reused is safe, only slower): keep SQL in static strings. Bind calls never fail by themselves: a
 * failed bind is reported by the next store_step. store_step returns STORE_ROW while there are
 * rows, STORE_DONE at the end, or a negative store_error with
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
/* Step an INSERT ... RETURNING id to its end and give the statement back;
 * *id (may be NULL) gets the id. */
int store_step_id(store_stmt *st, int64_t *id);
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
/* How long this connection waits for another's write lock before
 * STORE_BUSY (default 5000 ms). */
void store_set_busy_timeout(store *s, int ms);

/* ---- checks and backups ---- */

/* PRAGMA quick_check: STORE_OK, or STORE_CORRUPT with the first problem in
 * store_errmsg(). Seconds on a large file; run at start, not per request. */
int store_quick_check(store *s);
/* PRAGMA integrity_check: every problem line to cb; STORE_OK when there is
 * none, STORE_CORRUPT otherwise. */
typedef void (*store_line_cb)(void *ctx, const char *line);
int store_integrity_check(store *s, store_line_cb cb, void *ctx);
/* A consistent copy of the live store into dest (created 0600; written
 * beside dest and renamed into place, so dest is never half written), with
 * SQLite's online backup in one step: one snapshot, and in WAL mode the
 * daemon's writers are not blocked. */
int store_backup(store *s, const char *dest, char *err, size_t errlen);
/* True when the file this connection opened was deleted or replaced by
 * another file since (the connection still writes into the old inode);
 * the reason is in store_errmsg(). A stat(2), cheap. */
bool store_file_replaced(store *s);

/* ---- space: freed pages back to the file system ----
 *
 * New stores are created with auto_vacuum = INCREMENTAL: pages freed by a
 * delete go to the free list, and store_vacuum_step gives them back to the
 * file system in bounded steps. A store created before (auto_vacuum NONE)
 * keeps its free pages for reuse until store_vacuum rebuilds it. In WAL
 * mode the file shrinks when the WAL is checkpointed (store_checkpoint, or
 * SQLite's automatic checkpoint). */
typedef enum {
	STORE_AUTO_VACUUM_NONE = 0,
	STORE_AUTO_VACUUM_FULL = 1,
	STORE_AUTO_VACUUM_INCREMENTAL = 2,
} store_auto_vacuum;

typedef struct {
	int64_t page_size;
	int64_t page_count; /* the file's size in pages (after a checkpoint) */
	int64_t freelist_count;
	store_auto_vacuum auto_vacuum;
} store_space;

int store_space_get(store *s, store_space *out);
/* Pages one store_vacuum_step gives back at most (4 KiB each): measured
 * at a few ms per step (docs/state-store.md, Vacuum). */
#define STORE_VACUUM_STEP_PAGES 1000
/* PRAGMA incremental_vacuum of at most STORE_VACUUM_STEP_PAGES pages, one
 * short write transaction; *freed gets how many went (0: nothing left, or
 * not an incremental store). */
int store_vacuum_step(store *s, int64_t *freed);
/* VACUUM: rebuild the whole file (holds the write lock throughout and
 * needs free disk space about the store's size); turns an auto_vacuum
 * NONE store into an incremental one. */
int store_vacuum(store *s);
/* PRAGMA wal_checkpoint(PASSIVE): copy the WAL into the file without
 * waiting for anyone; the file is truncated to its page count when the
 * whole WAL is copied. */
int store_checkpoint(store *s);

/* Tests: every statement this connection prepares from now on has its
 * EXPLAIN QUERY PLAN lines handed to cb (sql is the statement's text). */
typedef void (*store_plan_cb)(void *ctx, const char *sql, const char *plan_line);
void store_set_plan_cb(store *s, store_plan_cb cb, void *ctx);

/* Migration up to a given version only; for tests of the migration path. */
int store_open_at_version(store **out, const char *path, int version, char *err, size_t errlen);

#endif
