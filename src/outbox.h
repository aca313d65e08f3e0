/*
 * outbox — the notifications domain (issue 9, docs/notifications.md): the
 * tables notifications, notification_deliveries and notifier_cursor. Every
 * statement on them is in outbox.c.
 *
 * A module that changes state and wants the operators told (an incident
 * opened, a recovery finished, ...) adds one outbox row in the SAME
 * transaction as the state change: the notification exists if and only if
 * the change was committed. outbox_add never begins or commits; the caller
 * owns the transaction. Delivery is the sender's job (notify_sender.c): it
 * keeps the delivery logic and calls the delivery functions below, which
 * never begin or commit either (the sender groups them in transactions).
 *
 * Threads: any, each with its own store connection.
 * Errors: 0 or a negative store_error. The producer-facing calls (outbox_add,
 * list_after, get, last_id) also copy the message into err; the delivery
 * calls leave it in store_errmsg() only. Nothing is logged here, and rows
 * never hold secrets.
 * Ownership: strings handed to callbacks are borrowed for the callback.
 */
#ifndef FK_OUTBOX_H
#define FK_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "store.h"

typedef struct {
	const char *kind;           /* e.g. "server_unreachable"; see docs/notifications.md */
	log_level level;            /* LOG_INFO .. LOG_CRITICAL */
	const char *title;          /* one line, required */
	const char *body;           /* further lines, may be NULL */
	const char *correlation_id; /* may be NULL */
	const char *fields_json;    /* a JSON object with the details, may be NULL */
} outbox_message;

/* Insert m inside the caller's open transaction (or in autocommit mode,
 * alone). *out_id (may be NULL) gets the row id. */
int outbox_add(store *s, const outbox_message *m, double now, int64_t *out_id, char *err,
               size_t errlen);

typedef struct {
	int64_t id;
	double created_at;
	const char *kind;
	log_level level;
	const char *title;
	const char *body;           /* NULL if none */
	const char *correlation_id; /* NULL if none */
	const char *fields_json;    /* NULL if none */
} outbox_row;

/* Strings are borrowed for the duration of the callback; return non-zero
 * to stop (that value is returned). */
typedef int (*outbox_cb)(void *ctx, const outbox_row *row);

/* Rows with id > after_id in id order, at most limit (<= 0: no limit). */
int outbox_list_after(store *s, int64_t after_id, int limit, outbox_cb cb, void *ctx, char *err,
                      size_t errlen);
/* One row by id; STORE_NOTFOUND if absent. */
int outbox_get(store *s, int64_t id, outbox_cb cb, void *ctx, char *err, size_t errlen);
/* The highest id, 0 if the outbox is empty. */
int outbox_last_id(store *s, int64_t *out, char *err, size_t errlen);

/* ---- deliveries: one row per (notifier, notification) for the sender ----
 *
 * States as in notify_sender.c; pending means queued, sending or failed. */

/* The notifier's cursor (the last id it adopted); a notifier new to the
 * store starts at the newest id, so adding one does not replay history. */
int outbox_cursor_init(store *s, const char *notifier, int64_t *out);
int outbox_cursor_set(store *s, const char *notifier, int64_t last_id);

/* A queued delivery of notification id to notifier; nothing if it has one. */
int outbox_delivery_add(store *s, const char *notifier, int64_t id, double now);

/* The notifications that notifier has deliveries for with after_id < id <=
 * upto_id, in id order. */
int outbox_deliveries_between(store *s, const char *notifier, int64_t after_id, int64_t upto_id,
                              outbox_cb cb, void *ctx);
/* Every pending delivery of notifier, in id order. */
int outbox_pending_list(store *s, const char *notifier, outbox_cb cb, void *ctx);

typedef struct {
	int64_t id; /* the notification */
	int attempts;
	int progress; /* steps done (Telegram: chats) */
	double next_attempt_at;
	int pending; /* pending deliveries of the notifier, this one included */
} outbox_head;

/* The lowest pending delivery of notifier; STORE_NOTFOUND if none. */
int outbox_pending_head(store *s, const char *notifier, outbox_head *out);

/* State changes of one delivery (now: its updated_at). An attempt is
 * sending with attempts + 1; progress counts the steps done; sent clears
 * last_error; failed waits for next_attempt_at. */
int outbox_mark_attempt(store *s, const char *notifier, int64_t id, double now);
int outbox_mark_progress(store *s, const char *notifier, int64_t id, int progress, double now);
int outbox_mark_sent(store *s, const char *notifier, int64_t id, double now);
int outbox_mark_failed(store *s, const char *notifier, int64_t id, double next_attempt_at,
                       const char *error, double now);
/* Pending deliveries of notifications created before cutoff become
 * dropped, each handed to cb after its update, in id order. */
int outbox_drop_older(store *s, const char *notifier, double cutoff, double now, outbox_cb cb,
                      void *ctx);
/* Pending deliveries with id <= upto_id become folded; *count (may be
 * NULL) gets how many. */
int outbox_fold_upto(store *s, const char *notifier, int64_t upto_id, double now, int64_t *count);

/* The updated_at of notifier's deliveries sent after since, oldest first
 * (the rate window after a restart). */
typedef int (*outbox_time_cb)(void *ctx, double at);
int outbox_sent_since(store *s, const char *notifier, double since, outbox_time_cb cb, void *ctx);

/* Retention: delete at most max_rows of the notifications created before
 * cutoff, oldest first (their deliveries go with them), always keeping the
 * newest row so that ids never restart below a notifier's cursor.
 * *deleted (may be NULL) gets the count: fewer than max_rows means none
 * is left. One statement; callers loop (retention.h). */
int outbox_prune(store *s, double cutoff, size_t max_rows, int64_t *deleted);

#endif
