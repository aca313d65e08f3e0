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

typedef struct sqlite3 sqlite3;
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
/* The connection, borrowed, for modules with queries of their own. */
sqlite3 *store_db(store *s);
/* For those modules: "<what>: <SQLite message of db>" into err, and the
 * store_error for the SQLite result code rc. */
int store_sqlite_error(sqlite3 *db, int rc, const char *what, char *err, size_t errlen);
int store_schema_version(store *s);

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
