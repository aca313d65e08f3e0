/*
 * notify_text — building one notification (issue 9, docs/notifications.md
 * "What is sent") and adding it to the outbox inside the caller's
 * transaction.
 *
 * A producer fills a notify_note on its stack: kind, level and the run's
 * correlation_id at init, a one-line title, body lines, and the
 * machine-readable fields (a cJSON object owned by the note). notify_add
 * serialises the fields and calls outbox_add; it never begins or commits,
 * so the note is written if and only if the caller's transaction commits.
 *
 * The kinds, as exact strings, are the NOTIFY_* constants below.
 *
 * Errors: notify_add returns 0 or a negative store_error with err set
 * (out of memory is STORE_ERROR); nothing is logged here.
 */
#ifndef FK_NOTIFY_TEXT_H
#define FK_NOTIFY_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "store.h"

#define NOTIFY_SERVER_UNREACHABLE    "server_unreachable"
#define NOTIFY_SERVER_RECOVERED      "server_recovered"
#define NOTIFY_SERVER_DISCOVERED     "server_discovered"
#define NOTIFY_SERVER_MISSING        "server_missing"
#define NOTIFY_PROJECT_MISSING       "project_missing"
#define NOTIFY_FORCE_REBUILD_STARTED "force_rebuild_started"
#define NOTIFY_PROVISIONING_FAILED   "provisioning_failed"
#define NOTIFY_RECOVERY_FINISHED     "recovery_finished"
#define NOTIFY_TASK_FAILING          "task_failing"

#define NOTIFY_TITLE_MAX 256
#define NOTIFY_BODY_MAX  2048

typedef struct {
	const char *kind; /* static string, one of NOTIFY_* */
	log_level level;
	const char *correlation_id; /* borrowed, may be NULL */
	char title[NOTIFY_TITLE_MAX];
	char body[NOTIFY_BODY_MAX]; /* lines joined by '\n'; "" for none */
	cJSON *fields;              /* owned; NULL only when out of memory */
} notify_note;

void notify_note_init(notify_note *n, const char *kind, log_level level,
                      const char *correlation_id);
void notify_note_free(notify_note *n);

/* The title (one line: newlines become spaces). */
void notify_note_title(notify_note *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append one line to the body (truncated when the body is full). */
void notify_note_line(notify_note *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fields; a NULL string value is stored as JSON null. */
void notify_field_str(notify_note *n, const char *key, const char *value);
void notify_field_int(notify_note *n, const char *key, int64_t value);

/* outbox_add inside the caller's transaction; *out_id (may be NULL) gets
 * the row id. The note stays valid (free it with notify_note_free). */
int notify_add(store *s, const notify_note *n, double now, int64_t *out_id, char *err,
               size_t errlen);

#endif
