/*
 * outbox — the notification outbox (issue 9, docs/notifications.md).
 *
 * A module that changes state and wants the operators told (an incident
 * opened, a recovery finished, ...) adds one outbox row in the SAME
 * transaction as the state change: the notification exists if and only if
 * the change was committed. outbox_add never begins or commits; the caller
 * owns the transaction. Delivery is the sender's job (notify_sender.c),
 * which reads rows in id order per notifier.
 *
 * Errors: 0 or a negative store_error with a message in err (no secrets:
 * outbox rows never hold any); nothing logged.
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

#endif
