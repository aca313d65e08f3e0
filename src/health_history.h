/*
 * health_history — the health_history table: every health check result of
 * a server as a compact sample in the row of its hour, the hour's summary
 * (checks, failures, min/max/sum of the healthy response times), and the
 * downsampling that drops an hour's samples once it leaves the raw window
 * (cfg->check_history_raw_hours) and the pruning past check_history_days.
 *
 * State changes and failures are events (tasks/health_check.c decides);
 * this table is the latency and availability history that stays bounded:
 * one row per server and hour. Availability of an hour is
 * 1 - failures / checks; its mean healthy response time is
 * rt_sum_ms / (checks - failures).
 *
 * The sample encoding (the `samples` column, appended to with ||): one
 * sample per check, in check order, each ending in ';':
 *
 *   <second of the hour>:<ms>;                 a healthy check
 *   <second of the hour>:<stage><error><ms>;   a failed one
 *
 * second 0..3599 and ms (the check's duration, 0..999999999) in decimal
 * without leading zeros; stage and error are one letter each
 * (health_history_stage_code, health_history_error_code; '?' for a name
 * this version does not know). "17:42;1217:ct5000;" is a check at :00:17
 * that passed in 42 ms and one at :20:17 that timed out in the connect
 * stage after 5 s. About 7 bytes per healthy check.
 *
 * Threads: any, each with its own store connection; the codecs are pure.
 * Errors: 0 (STORE_OK) or a negative store_error with the message in
 * store_errmsg(); nothing is logged here.
 * Ownership: samples are borrowed for the call.
 */
#ifndef FK_HEALTH_HISTORY_H
#define FK_HEALTH_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct {
	int64_t server_id;
	double at; /* unix time of the check */
	bool healthy;
	char stage;          /* health_history_stage_code(stage name) */
	int64_t response_ms; /* the check's duration */
	char error;          /* failed: health_history_error_code(error_type); else 0 */
} health_sample;

/* Longest encoded sample, with its ';' and a NUL. */
#define HEALTH_SAMPLE_MAX 24

/* One letter for an SSH stage name (resolve r, connect c, handshake h,
 * hostkey k, auth a, exec e) or error_type (ssh_options.c's names: R F O C
 * T H U M K P A E X Z I); '?' for any other name, NULL included. */
char health_history_stage_code(const char *stage);
char health_history_error_code(const char *error_type);
/* And back: the name, or "unknown" for '?' or any other letter. Static. */
const char *health_history_stage_name(char code);
const char *health_history_error_name(char code);

/* The start of the hour of unix time t (UTC, seconds). */
int64_t health_history_hour(double t);

/* Encode s (in the hour health_history_hour(s->at)) into buf; returns the
 * length (cap must be at least HEALTH_SAMPLE_MAX, else 0). */
size_t health_history_encode(const health_sample *s, char *buf, size_t cap);

/* Decode the sample at *p (before end) of the row of `hour`, and move *p
 * past its ';'. 1: *out holds it (server_id 0, error 0 when healthy); 0:
 * nothing left; -1: malformed, *p moved past the next ';' (or to end), so
 * the caller may go on with the next one. Never reads at or past end. */
int health_history_decode(const char **p, const char *end, int64_t hour, health_sample *out);

/* Add n samples (one per server, from one run), inside the caller's
 * transaction if one is open, else in one of its own; all or none. A
 * sample of a server that no longer exists (deleted meanwhile) is
 * skipped, not an error. */
int health_history_record(store *s, const health_sample *samples, size_t n);

/* The stage and error codes of the server's last failed check in its
 * newest hour that still has samples: STORE_OK, or STORE_NOTFOUND when
 * that hour has no failure (or there is none). For health_check's "same
 * failure as before" test. */
int health_history_last_failure(store *s, int64_t server_id, char *stage, char *error);

/* What the hours of one server since a time add up to. */
typedef struct {
	int64_t checks, failures;
	int64_t rt_min_ms, rt_max_ms; /* of the healthy checks; -1 when none */
	double rt_avg_ms;             /* -1 when none */
} health_summary;

/* Checks and failures of the server since `since` (unix seconds; hours
 * that started at or after its hour). STORE_OK, zeros when none. */
int health_history_summary(store *s, int64_t server_id, double since, int64_t *checks,
                           int64_t *failures);

/* The same with the healthy checks' response times (`servers show`). */
int health_history_summarize(store *s, int64_t server_id, double since, health_summary *out);

/* Drop the samples of at most max_rows hours that ended before `before`
 * (unix seconds), keeping their summaries. *done: rows changed; fewer
 * than max_rows means nothing is left to do. One short transaction. */
int health_history_downsample(store *s, double before, size_t max_rows, size_t *done);

/* Delete at most max_rows hours that ended before `before`. *deleted as
 * above. One short transaction. */
int health_history_prune(store *s, double before, size_t max_rows, size_t *deleted);

#endif
