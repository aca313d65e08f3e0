/*
 * notifiers — see notifiers.h.
 *
 * Invariants:
 *  1. Secrets (token, target URL, HMAC key) live in the notifier struct and
 *     in the request being built; notifier_clear wipes them. Error texts
 *     are built from the status, the receiver's description and curl's
 *     error text, and always pass notifier_redact before they leave
 *     notifier_send_step.
 *  2. The filter, the text, the summary, the signature, the backoff and the
 *     rate window are pure: the caller passes the time in.
 *  3. A message text is never longer than NOTIFY_TEXT_MAX bytes and is
 *     never cut inside a UTF-8 sequence.
 */
#include "notifiers.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "sync_common.h"

/* ---- loading ---- */

const char *notifier_type_name(notifier_type t)
{
	switch (t) {
	case NOTIFIER_TELEGRAM:
		return "telegram";
	case NOTIFIER_SLACK:
		return "slack";
	default:
		return "webhook";
	}
}

static int chat_ids_parse(notifier *nf, const char *list)
{
	size_t cap = 0;
	for (const char *p = list; p && *p;) {
		char *end;
		long long v = strtoll(p, &end, 10);
		if (end == p)
			break;
		if (nf->nchats == cap) {
			cap = cap ? cap * 2 : 4;
			int64_t *nv = realloc(nf->chat_ids, cap * sizeof *nv);
			if (nv == NULL)
				return -1;
			nf->chat_ids = nv;
		}
		nf->chat_ids[nf->nchats++] = v;
		p = end;
		while (*p == ',' || isspace((unsigned char)*p))
			p++;
	}
	return 0;
}

static char *trim_slash_dup(const char *url)
{
	size_t n = strlen(url);
	while (n && url[n - 1] == '/')
		n--;
	return strndup(url, n);
}

/* The type's secrets and target; -1 with err naming the key at fault. */
static int secrets_read(notifier *nf, const config_section *sec, char *err, size_t errlen)
{
	const char *api = config_get(sec, "api_url");
	switch (nf->type) {
	case NOTIFIER_TELEGRAM:
		nf->url = trim_slash_dup(api ? api : "https://api.telegram.org");
		nf->token = sync_secret_read(sec, "token");
		if (nf->token == NULL)
			snprintf(err, errlen, "cannot read the token (token_file or token_env)");
		return nf->token ? 0 : -1;
	case NOTIFIER_SLACK:
		nf->url = sync_secret_read(sec, "url");
		if (nf->url == NULL)
			snprintf(err, errlen, "cannot read the webhook URL (url_file)");
		return nf->url ? 0 : -1;
	case NOTIFIER_WEBHOOK:
		nf->url = api ? strdup(api) : sync_secret_read(sec, "url");
		nf->secret = sync_secret_read(sec, "secret");
		if (nf->url == NULL)
			snprintf(err, errlen, "cannot read the URL (api_url or url_file)");
		else if (nf->secret == NULL)
			snprintf(err, errlen, "cannot read the signing secret (secret_file)");
		return nf->url && nf->secret ? 0 : -1;
	}
	return -1;
}

static int notifier_from_section(const config_section *sec, notifier *nf, char *err, size_t errlen)
{
	const char *type = sync_key_str(sec, "type", "telegram");
	memset(nf, 0, sizeof *nf);
	nf->name = strdup(sec->name + strlen("notify."));
	nf->type = strcasecmp(type, "slack") == 0     ? NOTIFIER_SLACK
	           : strcasecmp(type, "webhook") == 0 ? NOTIFIER_WEBHOOK
	                                              : NOTIFIER_TELEGRAM;
	nf->min_level = LOG_INFO;
	const char *lvl = config_get(sec, "min_level");
	if (lvl)
		log_level_parse(lvl, &nf->min_level);
	const char *events = sync_key_str(sec, "events", NULL);
	nf->events = events ? strdup(events) : NULL;
	nf->rate_per_minute = (int)sync_key_int(sec, "rate_limit_per_minute", NOTIFY_RATE_DEFAULT);
	nf->max_age = (double)sync_key_duration_ms(sec, "max_age",
	                                           (int64_t)(NOTIFY_MAX_AGE_DEFAULT * 1000)) /
	              1000.0;
	if (nf->name == NULL || chat_ids_parse(nf, config_get(sec, "chat_ids")) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return secrets_read(nf, sec, err, errlen);
}

int notifier_load_one(const config *cfg, const char *name, notifier *out, char *err, size_t errlen)
{
	char sname[128];
	snprintf(sname, sizeof sname, "notify.%s", name);
	const config_section *sec = config_section_find(cfg, sname);
	memset(out, 0, sizeof *out);
	if (sec == NULL) {
		snprintf(err, errlen, "no notifier '%s' in the configuration", name);
		return -2;
	}
	if (notifier_from_section(sec, out, err, errlen) != 0) {
		notifier_clear(out);
		return -1;
	}
	return 0;
}

static void skipped_add(char **skipped, const char *name, const char *why)
{
	size_t old = *skipped ? strlen(*skipped) : 0;
	size_t add = strlen(name) + strlen(why) + 4;
	char *s = realloc(*skipped, old + add);
	if (s == NULL)
		return;
	snprintf(s + old, add, "%s%s: %s", old ? "\n" : "", name, why);
	*skipped = s;
}

int notifiers_load(const config *cfg, notifier **out, size_t *n, char **skipped)
{
	*out = NULL;
	*n = 0;
	*skipped = NULL;
	notifier *v = calloc(cfg->nsections ? cfg->nsections : 1, sizeof *v);
	if (v == NULL)
		return -1;
	for (size_t i = 0; i < cfg->nsections; i++) {
		const config_section *sec = &cfg->sections[i];
		char err[256];
		if (strncmp(sec->name, "notify.", 7) != 0)
			continue;
		if (notifier_from_section(sec, &v[*n], err, sizeof err) != 0) {
			skipped_add(skipped, sec->name + 7, err);
			notifier_clear(&v[*n]);
			continue;
		}
		(*n)++;
	}
	*out = v;
	return 0;
}

static void secret_free(char **s)
{
	sync_secret_free(*s);
	*s = NULL;
}

void notifier_clear(notifier *nf)
{
	free(nf->name);
	free(nf->events);
	free(nf->chat_ids);
	secret_free(&nf->url);
	secret_free(&nf->token);
	secret_free(&nf->secret);
	memset(nf, 0, sizeof *nf);
}

void notifiers_free(notifier *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		notifier_clear(&v[i]);
	free(v);
}

/* ---- filter ---- */

bool notifier_wants(const notifier *nf, const char *kind, log_level level)
{
	if (kind == NULL || strcmp(kind, NOTIFY_KIND_FOLDED) == 0)
		return false;
	if (level < nf->min_level)
		return false;
	return nf->events == NULL || sync_list_contains(nf->events, kind);
}

/* ---- text ---- */

/* Cut s to at most max bytes, on a UTF-8 boundary. */
static void utf8_cut(char *s, size_t max)
{
	size_t n = strlen(s);
	if (n <= max)
		return;
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	s[max] = '\0';
}

char *notify_text(const outbox_row *row)
{
	char *text = NULL;
	const char *cid = row->correlation_id;
	int rc = asprintf(&text, "[%s] %s%s%s%s%s%s%s", log_level_name(row->level),
	                  row->title ? row->title : "", row->body && *row->body ? "\n" : "",
	                  row->body ? row->body : "", cid ? "\n\ncorrelation_id: " : "",
	                  cid ? cid : "", cid ? "\nfleetkeeper trace " : "", cid ? cid : "");
	if (rc < 0)
		return NULL;
	if (strlen(text) > NOTIFY_TEXT_MAX && cid) {
		/* Keep the trace hint: cut the body instead. */
		char tail[300];
		snprintf(tail, sizeof tail, "\n...\n\ncorrelation_id: %s\nfleetkeeper trace %s",
		         cid, cid);
		utf8_cut(text, NOTIFY_TEXT_MAX - strlen(tail));
		strcat(text, tail);
	}
	utf8_cut(text, NOTIFY_TEXT_MAX);
	return text;
}

static int summary_line(char *buf, size_t cap, const outbox_row *r)
{
	const char *cid = r->correlation_id;
	return snprintf(buf, cap, "- [%s] %s%s%s%s\n", log_level_name(r->level),
	                r->title ? r->title : "", cid ? " (fleetkeeper trace " : "", cid ? cid : "",
	                cid ? ")" : "");
}

void notify_summary(const outbox_row *rows, size_t n, int rate_per_minute, char **title,
                    char **body, log_level *level)
{
	/* Room for the title and "[level] " in front of the body. */
	size_t cap = NOTIFY_TEXT_MAX - 200, used = 0, listed = 0;
	char *b = calloc(1, cap + 1);
	*level = LOG_INFO;
	for (size_t i = 0; i < n; i++)
		if (rows[i].level > *level)
			*level = rows[i].level;
	for (; b && listed < n; listed++) {
		char line[600];
		int len = summary_line(line, sizeof line, &rows[listed]);
		if (len < 0 || used + (size_t)len + 64 > cap)
			break;
		memcpy(b + used, line, (size_t)len + 1);
		used += (size_t)len;
	}
	if (b && listed < n)
		snprintf(b + used, cap + 1 - used, "... and %zu more\n", n - listed);
	*body = b;
	*title = NULL;
	if (asprintf(title, "%zu notifications folded into one (rate limit: %d a minute)", n,
	             rate_per_minute) < 0)
		*title = NULL;
}

/* ---- webhook ---- */

char *notify_webhook_body(const outbox_row *row, const char *text)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "id", (double)row->id);
	cJSON_AddNumberToObject(o, "created_at", row->created_at);
	cJSON_AddStringToObject(o, "kind", row->kind ? row->kind : "");
	cJSON_AddStringToObject(o, "level", log_level_name(row->level));
	cJSON_AddStringToObject(o, "title", row->title ? row->title : "");
	if (row->body)
		cJSON_AddStringToObject(o, "body", row->body);
	else
		cJSON_AddNullToObject(o, "body");
	if (row->correlation_id)
		cJSON_AddStringToObject(o, "correlation_id", row->correlation_id);
	else
		cJSON_AddNullToObject(o, "correlation_id");
	cJSON *fields = row->fields_json ? cJSON_Parse(row->fields_json) : NULL;
	if (fields == NULL)
		fields = cJSON_CreateObject();
	cJSON_AddItemToObject(o, "fields", fields);
	cJSON_AddStringToObject(o, "text", text ? text : "");
	char *out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return out;
}

/* ---- redaction ---- */

static void redact_one(char *s, const char *secret)
{
	size_t n = secret ? strlen(secret) : 0;
	if (n < 4)
		return;
	char *p;
	while ((p = strstr(s, secret)) != NULL) {
		memcpy(p, "***", 3);
		memmove(p + 3, p + n, strlen(p + n) + 1);
	}
}

void notifier_redact(const notifier *nf, char *s)
{
	redact_one(s, nf->token);
	redact_one(s, nf->secret);
	if (nf->type != NOTIFIER_TELEGRAM)
		redact_one(s, nf->url);
}

/* ---- backoff and rate window ---- */

double notify_backoff(int attempts)
{
	double d = 1.0;
	for (int i = 1; i < attempts && d < NOTIFY_BACKOFF_MAX; i++)
		d *= 2;
	return d < NOTIFY_BACKOFF_MAX ? d : NOTIFY_BACKOFF_MAX;
}

int notify_rate_init(notify_rate *r, int per_minute)
{
	memset(r, 0, sizeof *r);
	r->cap = per_minute > 0 ? per_minute : 0;
	if (r->cap == 0)
		return 0;
	r->at = calloc((size_t)r->cap, sizeof *r->at);
	return r->at ? 0 : -1;
}

void notify_rate_free(notify_rate *r)
{
	free(r->at);
	memset(r, 0, sizeof *r);
}

static void rate_expire(notify_rate *r, double now)
{
	/* A send time in the future means the wall clock was set back: forget it
	 * rather than wait for the clock to catch up. */
	while (r->n > 0 && (r->at[r->head] <= now - 60.0 || r->at[r->head] > now + 1.0)) {
		r->head = (r->head + 1) % r->cap;
		r->n--;
	}
}

void notify_rate_note(notify_rate *r, double now)
{
	if (r->cap == 0)
		return;
	rate_expire(r, now);
	if (r->n == r->cap) { /* forced over the limit: forget the oldest */
		r->head = (r->head + 1) % r->cap;
		r->n--;
	}
	r->at[(r->head + r->n) % r->cap] = now;
	r->n++;
}

int notify_rate_free_slots(notify_rate *r, double now)
{
	if (r->cap == 0)
		return INT32_MAX;
	rate_expire(r, now);
	return r->cap - r->n;
}

double notify_rate_next_free(notify_rate *r, double now)
{
	if (notify_rate_free_slots(r, now) > 0)
		return now;
	return r->at[r->head] + 60.0;
}

int notify_fold_decision(int pending, int free_slots)
{
	if (pending <= 0 || free_slots <= 0)
		return -1;
	if (free_slots == 1 && pending > 1)
		return pending;
	return 0;
}

/* ---- transports ---- */

size_t notifier_steps(const notifier *nf)
{
	return nf->type == NOTIFIER_TELEGRAM ? nf->nchats : 1;
}

/* "HTTP 400: description" from a Telegram error answer; retry_after too. */
static void telegram_error(const http_response *r, notify_result *res, char *err, size_t errlen)
{
	cJSON *o = cJSON_Parse(r->body ? r->body : "");
	const cJSON *desc = cJSON_GetObjectItemCaseSensitive(o, "description");
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(o, "parameters");
	const cJSON *ra = cJSON_GetObjectItemCaseSensitive(params, "retry_after");
	if (cJSON_IsNumber(ra))
		res->retry_after = (int64_t)ra->valuedouble;
	snprintf(err, errlen, "HTTP %ld%s%.200s", r->status, cJSON_IsString(desc) ? ": " : "",
	         cJSON_IsString(desc) ? desc->valuestring : "");
	cJSON_Delete(o);
}

static bool telegram_ok(const http_response *r)
{
	cJSON *o = cJSON_Parse(r->body ? r->body : "");
	const cJSON *ok = cJSON_GetObjectItemCaseSensitive(o, "ok");
	bool good = r->status >= 200 && r->status < 300 && (o == NULL || cJSON_IsTrue(ok));
	cJSON_Delete(o);
	return good;
}

static int telegram_send(const notifier *nf, http_client *c, const char *text, size_t step,
                         http_response *r, char *err, size_t errlen)
{
	char *url = NULL, chat[32];
	if (asprintf(&url, "%s/bot%s/sendMessage", nf->url, nf->token) < 0)
		return HTTP_ERR_INTERNAL;
	snprintf(chat, sizeof chat, "%lld", (long long)nf->chat_ids[step]);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddRawToObject(o, "chat_id", chat);
	cJSON_AddStringToObject(o, "text", text);
	cJSON_AddTrueToObject(o, "disable_web_page_preview");
	char *body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	int rc = body ? http_post(c, url, NULL, body, r, err, errlen) : HTTP_ERR_INTERNAL;
	explicit_bzero(url, strlen(url));
	free(url);
	free(body);
	return rc;
}

static int webhook_send(const notifier *nf, http_client *c, const outbox_row *row, const char *text,
                        double now, http_response *r, char *err, size_t errlen)
{
	char ts[32], sig[80], h_ts[64], h_sig[128], h_id[160];
	char *body = notify_webhook_body(row, text);
	if (body == NULL)
		return HTTP_ERR_INTERNAL;
	snprintf(ts, sizeof ts, "%lld", (long long)now);
	if (notify_sign(nf->secret, ts, body, sig, sizeof sig) != 0) {
		free(body);
		return HTTP_ERR_INTERNAL;
	}
	snprintf(h_ts, sizeof h_ts, "X-Fleetkeeper-Timestamp: %s", ts);
	snprintf(h_sig, sizeof h_sig, "X-Fleetkeeper-Signature: %s", sig);
	snprintf(h_id, sizeof h_id, "X-Fleetkeeper-Delivery: %s-%lld", nf->name,
	         (long long)row->id);
	const char *headers[] = {h_ts, h_sig, h_id, NULL};
	int rc = http_post(c, nf->url, headers, body, r, err, errlen);
	free(body);
	return rc;
}

static int slack_send(const notifier *nf, http_client *c, const char *text, http_response *r,
                      char *err, size_t errlen)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "text", text);
	char *body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	int rc = body ? http_post(c, nf->url, NULL, body, r, err, errlen) : HTTP_ERR_INTERNAL;
	free(body);
	return rc;
}

/* The verdict on a final response: 0 delivered, else -1 with err. */
static int judge(const notifier *nf, const http_response *r, notify_result *res, char *err,
                 size_t errlen)
{
	res->status = r->status;
	res->retry_after = r->retry_after;
	if (nf->type == NOTIFIER_TELEGRAM) {
		if (telegram_ok(r))
			return 0;
		telegram_error(r, res, err, errlen);
		return -1;
	}
	if (r->status >= 200 && r->status < 300)
		return 0;
	snprintf(err, errlen, "HTTP %ld%s%.120s", r->status, r->body && *r->body ? ": " : "",
	         r->body ? r->body : "");
	for (char *p = err; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return -1;
}

int notifier_send_step(const notifier *nf, http_client *c, const outbox_row *row, const char *text,
                       size_t step, double now, notify_result *res, char *err, size_t errlen)
{
	http_response r = {0};
	char why[512] = "";
	int rc;

	*res = (notify_result){.status = 0, .retry_after = -1};
	if (nf->type == NOTIFIER_TELEGRAM)
		rc = step < nf->nchats ? telegram_send(nf, c, text, step, &r, why, sizeof why)
		                       : HTTP_ERR_INTERNAL;
	else if (nf->type == NOTIFIER_SLACK)
		rc = slack_send(nf, c, text, &r, why, sizeof why);
	else
		rc = webhook_send(nf, c, row, text, now, &r, why, sizeof why);
	if (rc == HTTP_OK)
		rc = judge(nf, &r, res, why, sizeof why) == 0 ? 0 : -1;
	else if (why[0] == '\0')
		snprintf(why, sizeof why, "cannot build the request");
	http_response_free(&r);
	if (rc == 0)
		return 0;
	notifier_redact(nf, why);
	if (nf->type == NOTIFIER_TELEGRAM && nf->nchats > 1)
		snprintf(err, errlen, "chat %zu of %zu: %s", step + 1, nf->nchats, why);
	else
		snprintf(err, errlen, "%s", why);
	return -1;
}
