/*
 * store_pg — the PostgreSQL half of the store, for store.c only (the
 * public contract is store.h; docs/state-store.md, PostgreSQL).
 *
 * One pg_conn is one libpq connection, used by one thread at a time, like
 * a store. Statements are store.c's SQL text translated once (pg_translate:
 * ?N to $N, the few SQLite names that differ) and run with PQexecParams;
 * rows are read from the whole result.
 *
 * Errors: functions return 0 / STORE_ROW / STORE_DONE or a negative
 * store_error and write "<what>: <PostgreSQL's message>" into the err
 * buffer they are given (the store's errmsg). A lost connection is
 * STORE_UNAVAILABLE; the next call reconnects (at once the first time,
 * then with a backoff up to 10 s), and a statement of a transaction that
 * began before the connection was lost fails until the rollback.
 *
 * Ownership: pg_open's *out is freed with pg_close; pg_stmt belongs to its
 * connection's caller (store.c's cache) and is freed with pg_stmt_free.
 * Column text is borrowed until the next pg_step or pg_stmt_reset.
 */
#ifndef FK_STORE_PG_H
#define FK_STORE_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct pg_conn pg_conn;
typedef struct pg_stmt pg_stmt;

/* Connect to dsn (libpq connection string; fleetkeeper's defaults for
 * keepalives and timeouts first, so the dsn overrides them). Read-write:
 * create or migrate the schema to target with migrations[v] (SQLite DDL,
 * translated by pg_ddl) under an advisory lock. Read-only: the session is
 * read-only and a database without the schema is STORE_NOTFOUND. */
int pg_open(pg_conn **out, const char *dsn, bool readonly, const char *const *migrations,
            int target, char *err, size_t errlen);
void pg_close(pg_conn *c);
int pg_schema_version(pg_conn *c, char *err, size_t errlen);

int pg_stmt_new(pg_conn *c, const char *sql, pg_stmt **out, char *err, size_t errlen);
/* The text pg_stmt_new was given (the cache compares it). */
const char *pg_stmt_source(const pg_stmt *st);
void pg_stmt_free(pg_stmt *st);
void pg_bind_text(pg_stmt *st, int i, const char *v);
void pg_bind_int64(pg_stmt *st, int i, int64_t v);
void pg_bind_double(pg_stmt *st, int i, double v);
void pg_bind_null(pg_stmt *st, int i);
int pg_step(pg_stmt *st, char *err, size_t errlen);
void pg_stmt_reset(pg_stmt *st);
bool pg_col_null(pg_stmt *st, int i);
const char *pg_col_text(pg_stmt *st, int i);
int64_t pg_changes(const pg_conn *c);

int pg_tx_begin(pg_conn *c, char *err, size_t errlen);
int pg_tx_commit(pg_conn *c, char *err, size_t errlen);
void pg_tx_rollback(pg_conn *c);
void pg_set_lock_timeout(pg_conn *c, int ms);

int pg_listen(pg_conn *c, const char *channel, char *err, size_t errlen);
int pg_socket(pg_conn *c);
int pg_notifications(pg_conn *c, store_notify_cb cb, void *ctx, char *err, size_t errlen);
int pg_backend_pid(pg_conn *c);

void pg_set_availability_cb(store_availability_cb cb);

/* store.c's: "insert events", "select servers" — what a statement does,
 * for error messages. */
void store_statement_head(const char *sql, char *buf, size_t cap);

/* Pure (tests): SQLite DDL as PostgreSQL DDL, malloc'd (NULL: out of
 * memory): INTEGER PRIMARY KEY becomes an identity column, INTEGER BIGINT,
 * REAL DOUBLE PRECISION, WITHOUT ROWID goes. */
char *pg_ddl(const char *sqlite_ddl);
/* A statement for PostgreSQL, malloc'd: ?N becomes $N outside quotes,
 * json_each( becomes json_array_elements_text(; *nparams gets the highest
 * N. */
char *pg_translate(const char *sql, int *nparams);

#endif
