/*
 * notify_text — see notify_text.h. The only place that turns a producer's
 * note into an outbox_message; keeping it here keeps every producer's
 * rows the same shape: title one line, body plain lines, fields a JSON
 * object (never NULL for a note that was built), correlation_id the run's.
 */
#include "notify_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox.h"

void notify_note_init(notify_note *n, const char *kind, log_level level, const char *correlation_id)
{
	memset(n, 0, sizeof *n);
	n->kind = kind;
	n->level = level;
	n->correlation_id = correlation_id && *correlation_id ? correlation_id : NULL;
	n->fields = cJSON_CreateObject();
}

void notify_note_free(notify_note *n)
{
	cJSON_Delete(n->fields);
	n->fields = NULL;
}

void notify_note_title(notify_note *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(n->title, sizeof n->title, fmt, ap);
	va_end(ap);
	for (char *p = n->title; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

void notify_note_line(notify_note *n, const char *fmt, ...)
{
	size_t len = strlen(n->body);
	va_list ap;

	if (len && len + 1 < sizeof n->body)
		n->body[len++] = '\n';
	if (len + 1 >= sizeof n->body)
		return;
	va_start(ap, fmt);
	vsnprintf(n->body + len, sizeof n->body - len, fmt, ap);
	va_end(ap);
}

void notify_field_str(notify_note *n, const char *key, const char *value)
{
	if (n->fields == NULL)
		return;
	if (value)
		cJSON_AddStringToObject(n->fields, key, value);
	else
		cJSON_AddNullToObject(n->fields, key);
}

void notify_field_int(notify_note *n, const char *key, int64_t value)
{
	if (n->fields)
		cJSON_AddNumberToObject(n->fields, key, (double)value);
}

int notify_add(store *s, const notify_note *n, double now, int64_t *out_id, char *err,
               size_t errlen)
{
	char *fields = n->fields ? cJSON_PrintUnformatted(n->fields) : NULL;
	if (fields == NULL) {
		snprintf(err, errlen, "notification %s: out of memory", n->kind);
		return STORE_ERROR;
	}
	outbox_message m = {
	        .kind = n->kind,
	        .level = n->level,
	        .title = n->title,
	        .body = n->body[0] ? n->body : NULL,
	        .correlation_id = n->correlation_id,
	        .fields_json = fields,
	};
	int rc = outbox_add(s, &m, now, out_id, err, errlen);
	free(fields);
	return rc;
}
