/*
 * notifiers — the [notify.NAME] notifiers: their settings and secrets, the
 * filter, the message text, the rate window and the three transports
 * (telegram, slack, webhook). See docs/notifications.md.
 *
 * Everything here is pure (time is passed in) except notifiers_load, which
 * reads the secret files, and notifier_send_step, which does one HTTP POST.
 * A notifier holds its secrets (Telegram token, Slack URL, webhook URL and
 * HMAC secret) in memory only; they never reach an err string, an event or
 * a log line: every error text built from a response is passed through
 * notifier_redact.
 */
#ifndef FK_NOTIFIERS_H
#define FK_NOTIFIERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "outbox.h"

typedef enum { NOTIFIER_TELEGRAM, NOTIFIER_SLACK, NOTIFIER_WEBHOOK } notifier_type;

#define NOTIFY_RATE_DEFAULT    10      /* messages a minute */
#define NOTIFY_MAX_AGE_DEFAULT 86400.0 /* seconds */
#define NOTIFY_BACKOFF_MAX     300.0   /* seconds between attempts, at most */
#define NOTIFY_KIND_FOLDED     "notifications_folded"
#define NOTIFY_TEXT_MAX        3800 /* bytes; Telegram allows 4096 chars */

typedef struct {
	char *name;
	notifier_type type;
	log_level min_level;
	char *events;        /* comma list of kinds; NULL: every kind */
	int rate_per_minute; /* 0: no limit */
	double max_age;      /* seconds */
	char *url;           /* telegram: the API base; slack/webhook: the target (secret) */
	char *token;         /* telegram (secret) */
	char *secret;        /* webhook HMAC key (secret) */
	int64_t *chat_ids;
	size_t nchats;
} notifier;

/* Every [notify.*] section of cfg, secrets read. A notifier whose secrets
 * cannot be read is left out and named in *skipped (malloc'd lines
 * "NAME: reason", may be NULL); the rest load. Returns 0, -1 on OOM. */
int notifiers_load(const config *cfg, notifier **out, size_t *n, char **skipped);
/* One notifier by name: 0, STORE_NOTFOUND-like -2 if no such section, -1
 * if its secrets cannot be read (err says why, without the secret). */
int notifier_load_one(const config *cfg, const char *name, notifier *out, char *err, size_t errlen);
void notifier_clear(notifier *nf); /* wipes the secrets */
void notifiers_free(notifier *v, size_t n);
const char *notifier_type_name(notifier_type t);

/* min_level and events. Folded summaries are never adopted by the filter:
 * the sender creates their delivery rows itself. */
bool notifier_wants(const notifier *nf, const char *kind, log_level level);

/* The text of one notification: "[level] title", the body, and, when it has
 * one, "correlation_id: ID" and the hint "fleetkeeper trace ID". At most
 * NOTIFY_TEXT_MAX bytes (cut on a UTF-8 boundary). malloc'd. */
char *notify_text(const outbox_row *row);

/* A folded summary: title and body (malloc'd) for rows[0..n), one line per
 * row with its level, title and trace hint, cut at NOTIFY_TEXT_MAX with
 * "... and K more". *level gets the highest level. */
void notify_summary(const outbox_row *rows, size_t n, int rate_per_minute, char **title,
                    char **body, log_level *level);

/* The webhook's JSON body for row (malloc'd). */
char *notify_webhook_body(const outbox_row *row, const char *text);
/* "sha256=" + hex HMAC-SHA256(secret, timestamp "." body); out needs 72
 * bytes. 0, or -1 if libcrypto fails. */
int notify_sign(const char *secret, const char *timestamp, const char *body, char *out, size_t cap);

/* Replace every occurrence of the notifier's secrets in s by "***". */
void notifier_redact(const notifier *nf, char *s);

/* Seconds before attempt number `attempts + 1` after `attempts` failures:
 * 1, 2, 4, ... capped at NOTIFY_BACKOFF_MAX. */
double notify_backoff(int attempts);

/* The per-notifier window of send times of the last 60 s. */
typedef struct {
	double *at; /* ring of send times */
	int cap;    /* the limit; 0: unlimited */
	int head, n;
} notify_rate;

int notify_rate_init(notify_rate *r, int per_minute);
void notify_rate_free(notify_rate *r);
void notify_rate_note(notify_rate *r, double now);
/* Sends still allowed now (INT32_MAX when unlimited). */
int notify_rate_free_slots(notify_rate *r, double now);
/* When the next slot frees (now if one is free). */
double notify_rate_next_free(notify_rate *r, double now);
/* With `pending` rows due and `free_slots` sends allowed: 0 send the first
 * row alone, -1 wait for a slot, k > 1 fold the k pending rows into one
 * summary (only when the summary takes the last free slot). */
int notify_fold_decision(int pending, int free_slots);

/* ---- transports ---- */

/* Steps of one delivery: one per chat id for telegram, else 1. */
size_t notifier_steps(const notifier *nf);

typedef struct {
	long status;         /* HTTP status, 0 if none */
	int64_t retry_after; /* seconds the receiver asked to wait, -1 if none */
} notify_result;

/* Deliver step `step` of row (text from notify_text). 0 on success, -1 with
 * err (no secrets) and res filled. */
int notifier_send_step(const notifier *nf, http_client *c, const outbox_row *row, const char *text,
                       size_t step, double now, notify_result *res, char *err, size_t errlen);

#endif
