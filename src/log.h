/*
 * log — the structured event log (SPEC §2).
 *
 * One event is one JSON line (or one aligned console line) written to the
 * output fd with a single write(2); lines from different threads never
 * interleave. Keys come in this order: timestamp, level, service, logger,
 * event, then the calling thread's bound context, then the call's own fields
 * in call order. A call field whose key is also bound replaces the bound
 * value (structlog semantics). Fields whose key names a secret (password,
 * passwd, secret, token, authorization, private_key, api_key; any case) are
 * rendered as "***".
 *
 * Every rendered event is also handed to the sink (log_set_sink), which the
 * event store uses to persist events without the emitting thread ever waiting
 * on SQLite — except one emitted with LOG_NO_SINK (log_emitv_flags), which is
 * only written. The sink is called with the JSON rendering even when the
 * output format is console.
 *
 * Threads: log_init/log_shutdown on the main thread before/after the others;
 * everything else may be called from any thread. The bound context is
 * per-thread (thread-local storage).
 */
#ifndef FK_LOG_H
#define FK_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	LOG_DEBUG = 10,
	LOG_INFO = 20,
	LOG_WARNING = 30,
	LOG_ERROR = 40,
	LOG_CRITICAL = 50,
} log_level;

typedef enum { LOG_FORMAT_JSON, LOG_FORMAT_CONSOLE } log_format;

typedef enum {
	LOG_T_END = 0, /* terminates a field list; key is NULL */
	LOG_T_STR,     /* NULL string renders as null */
	LOG_T_INT,
	LOG_T_DBL, /* NaN and infinities render as null */
	LOG_T_BOOL,
	LOG_T_NULL,
	LOG_T_RAW,  /* pre-rendered, valid JSON value (object, array) */
	LOG_T_STRN, /* v.sn: n bytes that may hold NUL bytes (rendered \u0000 in
	             * JSON, \x00 on the console); p[n] must be '\0' */
} log_type;

typedef struct {
	const char *key;
	log_type type;
	union {
		const char *s;
		struct {
			const char *p;
			size_t n;
		} sn;
		int64_t i;
		double d;
		bool b;
	} v;
} log_field;

#define LOG_STR(k, x)  ((log_field){.key = (k), .type = LOG_T_STR, .v.s = (x)})
#define LOG_INT(k, x)  ((log_field){.key = (k), .type = LOG_T_INT, .v.i = (int64_t)(x)})
#define LOG_DBL(k, x)  ((log_field){.key = (k), .type = LOG_T_DBL, .v.d = (double)(x)})
#define LOG_BOOL(k, x) ((log_field){.key = (k), .type = LOG_T_BOOL, .v.b = (x)})
#define LOG_NULL(k)    ((log_field){.key = (k), .type = LOG_T_NULL})
#define LOG_RAW(k, x)  ((log_field){.key = (k), .type = LOG_T_RAW, .v.s = (x)})
#define LOG_END        ((log_field){.key = NULL, .type = LOG_T_END})

/* n bytes at x, NUL bytes among them; x[n] must be '\0' (a line of output). */
#define LOG_STRN(k, x, n) ((log_field){.key = (k), .type = LOG_T_STRN, .v.sn = {(x), (n)}})

/* error and error_type, the two fields every error event carries. */
#define LOG_ERR(msg, kind) LOG_STR("error", (msg)), LOG_STR("error_type", (kind))

typedef struct {
	const char *service; /* default "scheduler"; copied */
	log_level level;     /* default LOG_INFO */
	log_format format;   /* default LOG_FORMAT_JSON */
	int fd;              /* output, default 1 (stdout) */
	int color;           /* -1 auto (isatty), 0 off, 1 on; console only */
} log_options;

/* What the sink receives for every emitted event. All pointers are borrowed
 * for the duration of the call. */
typedef struct {
	double unix_time;      /* seconds since the epoch, microsecond precision */
	const char *timestamp; /* as rendered */
	log_level level;
	const char *logger;
	const char *event;
	const char *correlation_id; /* bound or call field, NULL if none */
	const char *task;           /* bound or call field, NULL if none */
	int64_t run_id;             /* bound or call field, 0 if none */
	const char *json;           /* the whole JSON line, without newline */
	size_t json_len;
} log_record;

typedef void (*log_sink_fn)(void *ctx, const log_record *rec);

/* Fill opts with defaults, then apply LOG_LEVEL, LOG_FORMAT, SERVICE_NAME
 * from the environment. Returns 0, or -1 if a variable holds a bad value
 * (that variable is then ignored and *bad_var names it). */
void log_options_default(log_options *opts);
int log_options_from_env(log_options *opts, const char **bad_var);

int log_init(const log_options *opts);
void log_shutdown(void);

/* Only for the event store: at most one sink; NULL removes it. */
void log_set_sink(log_sink_fn fn, void *ctx);

bool log_enabled(log_level level);
log_level log_get_level(void);
const char *log_level_name(log_level level);
/* Parses debug/info/warning/warn/error/critical, any case. 0 or -1. */
int log_level_parse(const char *name, log_level *out);
int log_format_parse(const char *name, log_format *out);

/* Emit one event. The variadic part is log_field values ending in LOG_END;
 * use the log_debug/... macros, which add the LOG_END. */
void log_emit(log_level level, const char *logger, const char *event, ...);
void log_emitv(log_level level, const char *logger, const char *event, const log_field *fields,
               size_t nfields);

/* Flags of log_emitv_flags. LOG_NO_SINK: the event is written to the
 * output like any other but not handed to the sink, so the event store
 * does not keep it (health_check's healthy results with log_each_result =
 * all: the store keeps them as health_history rows instead). */
enum { LOG_NO_SINK = 1 };
void log_emitv_flags(log_level level, const char *logger, const char *event, unsigned flags,
                     const log_field *fields, size_t nfields);

#define log_debug(L, ...)    log_emit(LOG_DEBUG, (L), __VA_ARGS__, LOG_END)
#define log_info(L, ...)     log_emit(LOG_INFO, (L), __VA_ARGS__, LOG_END)
#define log_warning(L, ...)  log_emit(LOG_WARNING, (L), __VA_ARGS__, LOG_END)
#define log_error(L, ...)    log_emit(LOG_ERROR, (L), __VA_ARGS__, LOG_END)
#define log_critical(L, ...) log_emit(LOG_CRITICAL, (L), __VA_ARGS__, LOG_END)

/* Per-thread bound context: copied in; a key bound again is replaced in
 * place (keeps its position). */
void log_bind(log_field field);
void log_unbind(const char *key);
void log_clear_context(void);
/* The bound string value of key on this thread, or NULL. Borrowed. */
const char *log_bound_str(const char *key);

/* True if a field with this name is redacted. */
bool log_key_is_secret(const char *key);

/*
 * Rendering, exposed for tests and the benchmark. Render one event as JSON
 * into buf (no newline), with the given unix time (microseconds) and the
 * calling thread's context. Returns the length, or the length it would need
 * if cap is too small (like snprintf).
 */
size_t log_render_json(char *buf, size_t cap, int64_t unix_usec, log_level level,
                       const char *logger, const char *event, const log_field *fields,
                       size_t nfields);
size_t log_render_console(char *buf, size_t cap, int64_t unix_usec, log_level level,
                          const char *logger, const char *event, const log_field *fields,
                          size_t nfields, bool color);

/* ISO 8601 local time with microseconds and offset: 2025-12-26T02:03:45.123456+02:00.
 * buf needs 33 bytes. Returns the length. */
size_t log_format_timestamp(char *buf, size_t cap, int64_t unix_usec);

#endif
