/*
 * http — see http.h.
 *
 * Invariants:
 *  1. Secrets (bearer token, basic password) live only in the curl handle's
 *     options and in the header list; err strings are built from the URL,
 *     the status and curl's error text, none of which contain them (URLs
 *     never carry credentials: the callers pass them separately).
 *  2. Response headers are collected per response: a status line resets
 *     them, so after redirects only the final response's headers remain.
 *  3. Every wait (backoff, rate limit) polls cancel_fd, so a cancelled run
 *     returns within one poll.
 *  4. A body larger than HTTP_MAX_BODY aborts the transfer (network error):
 *     a hostile server cannot exhaust memory.
 */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <sqlite3.h>

#define HTTP_MAX_BODY (64u * 1024u * 1024u)

struct http_client {
	CURL *curl;
	struct curl_slist *headers;
	http_options opts;
	http_stats stats;
	char ua[256];
};

typedef struct {
	char *buf;
	size_t len, cap;
	bool too_big;
} body_buf;

/* curl_global_init is not thread-safe: tasks on different workers may
 * create their first client at the same moment. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_global_setup(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

http_client *http_client_new(const http_options *opts)
{
	pthread_once(&curl_once, curl_global_setup);
	http_client *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->opts = *opts;
	if (c->opts.connect_timeout_ms <= 0)
		c->opts.connect_timeout_ms = 10000;
	if (c->opts.timeout_ms <= 0)
		c->opts.timeout_ms = 30000;
	if (c->opts.max_retries < 0)
		c->opts.max_retries = 0;
	if (c->opts.backoff_ms <= 0)
		c->opts.backoff_ms = 200;
	if (c->opts.max_rate_wait_ms <= 0)
		c->opts.max_rate_wait_ms = 60000;
	c->curl = curl_easy_init();
	if (c->curl == NULL) {
		free(c);
		return NULL;
	}
	snprintf(c->ua, sizeof c->ua, "%s", opts->user_agent ? opts->user_agent : "fleetkeeper");
	char line[600];
	snprintf(line, sizeof line, "Accept: %s", opts->accept ? opts->accept : "application/json");
	c->headers = curl_slist_append(NULL, line);
	if (opts->bearer_token && *opts->bearer_token) {
		char *auth = NULL;
		if (asprintf(&auth, "Authorization: Bearer %s", opts->bearer_token) >= 0) {
			c->headers = curl_slist_append(c->headers, auth);
			explicit_bzero(auth, strlen(auth));
			free(auth);
		}
	}
	return c;
}

void http_client_free(http_client *c)
{
	if (c == NULL)
		return;
	curl_slist_free_all(c->headers);
	curl_easy_cleanup(c->curl);
	free(c);
}

const http_stats *http_client_stats(const http_client *c)
{
	return &c->stats;
}

void http_response_free(http_response *r)
{
	free(r->body);
	free(r->etag);
	free(r->last_modified);
	free(r->next_url);
	r->body = r->etag = r->last_modified = r->next_url = NULL;
}

static void response_reset(http_response *r)
{
	http_response_free(r);
	int attempts = r->attempts;
	*r = (http_response){.rl_remaining = -1, .retry_after = -1, .attempts = attempts};
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	body_buf *b = ud;
	size_t n = size * nmemb;
	if (b->len + n + 1 > HTTP_MAX_BODY) {
		b->too_big = true;
		return 0;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *nb = realloc(b->buf, cap);
		if (nb == NULL)
			return 0;
		b->buf = nb;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, ptr, n);
	b->len += n;
	b->buf[b->len] = '\0';
	return n;
}

static char *trimmed_dup(const char *v, size_t n)
{
	while (n && isspace((unsigned char)*v))
		v++, n--;
	while (n && isspace((unsigned char)v[n - 1]))
		n--;
	return strndup(v, n);
}

static void header_value(http_response *r, const char *name, const char *v, size_t n)
{
	char tmp[64];
	if (strcasecmp(name, "etag") == 0) {
		free(r->etag);
		r->etag = trimmed_dup(v, n);
	} else if (strcasecmp(name, "last-modified") == 0) {
		free(r->last_modified);
		r->last_modified = trimmed_dup(v, n);
	} else if (strcasecmp(name, "link") == 0) {
		char *link = trimmed_dup(v, n);
		free(r->next_url);
		r->next_url = link ? http_link_next(link) : NULL;
		free(link);
	} else {
		snprintf(tmp, sizeof tmp, "%.*s", (int)(n < 63 ? n : 63), v);
		long long x = strtoll(tmp, NULL, 10);
		if (strcasecmp(name, "x-ratelimit-remaining") == 0)
			r->rl_remaining = x < 0 ? 0 : (long)x;
		else if (strcasecmp(name, "x-ratelimit-reset") == 0)
			/* Some recordings give milliseconds. */
			r->rl_reset = x > 100000000000LL ? x / 1000 : x;
		else if (strcasecmp(name, "retry-after") == 0)
			r->retry_after = x < 0 ? 0 : x;
	}
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
	http_response *r = ud;
	size_t n = size * nmemb;
	char name[64];

	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		response_reset(r);
		return n;
	}
	const char *colon = memchr(ptr, ':', n);
	if (colon == NULL || (size_t)(colon - ptr) >= sizeof name)
		return n;
	memcpy(name, ptr, (size_t)(colon - ptr));
	name[colon - ptr] = '\0';
	header_value(r, name, colon + 1, n - (size_t)(colon + 1 - ptr));
	return n;
}

/* Sleep ms, or less if cancel_fd fires: 0, or -1 when cancelled. */
static int wait_ms(const http_client *c, int64_t ms)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		int64_t done = (now.tv_sec - start.tv_sec) * 1000 +
		               (now.tv_nsec - start.tv_nsec) / 1000000;
		if (done >= ms)
			return 0;
		struct pollfd p = {.fd = c->opts.cancel_fd, .events = POLLIN};
		int rc = poll(&p, c->opts.cancel_fd >= 0 ? 1 : 0, (int)(ms - done));
		if (rc > 0)
			return -1;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

static void setup_request(http_client *c, const char *url, struct curl_slist *hdrs, body_buf *b,
                          http_response *r)
{
	CURL *h = c->curl;
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->opts.connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->opts.timeout_ms);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->ua);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	if (c->opts.basic_user) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(h, CURLOPT_USERNAME, c->opts.basic_user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, c->opts.basic_pass ? c->opts.basic_pass : "");
	}
}

/* One attempt: CURLE_* result; r and b filled. */
static CURLcode attempt(http_client *c, const char *url, const char *if_none_match,
                        http_response *r, body_buf *b)
{
	struct curl_slist *extra = NULL, *hdrs = c->headers;
	char line[512];

	if (if_none_match && *if_none_match) {
		snprintf(line, sizeof line, "If-None-Match: %s", if_none_match);
		for (struct curl_slist *i = c->headers; i; i = i->next)
			extra = curl_slist_append(extra, i->data);
		extra = curl_slist_append(extra, line);
		hdrs = extra;
	}
	setup_request(c, url, hdrs, b, r);
	c->stats.requests++;
	r->attempts++;
	CURLcode rc = curl_easy_perform(c->curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(extra);
	return rc;
}

static bool rate_limited(const http_response *r)
{
	if (r->status == 429)
		return true;
	return r->status == 403 && (r->rl_remaining == 0 || r->retry_after >= 0);
}

/* Milliseconds until a rate limit lifts (at least 1 s). */
static int64_t rate_wait(const http_response *r)
{
	if (r->retry_after >= 0)
		return (r->retry_after ? r->retry_after : 1) * 1000;
	int64_t now = (int64_t)time(NULL);
	if (r->rl_reset > now)
		return (r->rl_reset - now + 1) * 1000;
	return 1000;
}

static void take_body(http_response *r, body_buf *b)
{
	free(r->body);
	r->body = b->buf ? b->buf : strdup("");
	r->len = b->len;
	*b = (body_buf){0};
}

int http_get(http_client *c, const char *url, const char *if_none_match, http_response *out,
             char *err, size_t errlen)
{
	int retries = 0;
	int64_t backoff = c->opts.backoff_ms;

	*out = (http_response){.rl_remaining = -1, .retry_after = -1};
	for (;;) {
		body_buf b = {0};
		response_reset(out);
		CURLcode rc = attempt(c, url, if_none_match, out, &b);
		take_body(out, &b);
		int code;
		if (rc != CURLE_OK) {
			snprintf(err, errlen, "GET %s: %s", url,
			         b.too_big ? "response too large" : curl_easy_strerror(rc));
			code = HTTP_ERR_NETWORK;
		} else if (out->status >= 500) {
			snprintf(err, errlen, "GET %s: HTTP %ld", url, out->status);
			code = HTTP_ERR_SERVER;
		} else if (rate_limited(out)) {
			int64_t ms = rate_wait(out);
			snprintf(err, errlen, "GET %s: rate limited (HTTP %ld) for %lld s", url,
			         out->status, (long long)(ms / 1000));
			if (out->rl_reset == 0)
				out->rl_reset = (int64_t)time(NULL) + ms / 1000;
			if (ms > c->opts.max_rate_wait_ms)
				return HTTP_ERR_RATE_LIMITED;
			c->stats.rate_waits++;
			if (wait_ms(c, ms) != 0)
				return HTTP_ERR_CANCELLED;
			continue;
		} else {
			if (out->status == 304)
				c->stats.not_modified++;
			return HTTP_OK;
		}
		if (retries >= c->opts.max_retries)
			return code;
		retries++;
		c->stats.retries++;
		if (wait_ms(c, backoff) != 0) {
			snprintf(err, errlen, "GET %s: cancelled", url);
			return HTTP_ERR_CANCELLED;
		}
		backoff *= 2;
	}
}

char *http_link_next(const char *link)
{
	const char *p = link;
	while (p && *p) {
		const char *lt = strchr(p, '<');
		if (lt == NULL)
			return NULL;
		const char *gt = strchr(lt, '>');
		if (gt == NULL)
			return NULL;
		const char *end = strchr(gt, ',');
		/* A comma inside <...> is impossible after '>'; params end at ','. */
		size_t plen = end ? (size_t)(end - gt) : strlen(gt);
		char params[256];
		snprintf(params, sizeof params, "%.*s", (int)(plen < 255 ? plen : 255), gt + 1);
		if (strstr(params, "rel=\"next\"") || strstr(params, "rel=next"))
			return strndup(lt + 1, (size_t)(gt - lt - 1));
		p = end ? end + 1 : NULL;
	}
	return NULL;
}

static char *column_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	return v ? strdup((const char *)v) : NULL;
}

int http_cache_get(store *s, const char *url, char **etag, char **body)
{
	sqlite3_stmt *st = NULL;
	*etag = *body = NULL;
	if (sqlite3_prepare_v2(store_db(s), "SELECT etag, body FROM http_cache WHERE url = ?", -1,
	                       &st, NULL) != SQLITE_OK)
		return STORE_ERROR;
	sqlite3_bind_text(st, 1, url, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*etag = column_dup(st, 0);
		*body = column_dup(st, 1);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? STORE_OK : STORE_ERROR;
}

int http_cache_put(store *s, const char *url, const char *etag, const char *last_modified,
                   const char *body)
{
	sqlite3_stmt *st = NULL;
	const char *sql =
	        "INSERT OR REPLACE INTO http_cache(url, etag, last_modified, body, updated_at)"
	        " VALUES (?, ?, ?, ?, (julianday('now') - 2440587.5) * 86400.0)";
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return STORE_ERROR;
	sqlite3_bind_text(st, 1, url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, etag, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, last_modified, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, body, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? STORE_OK : STORE_ERROR;
}

/* ---- POST (notifications) ---- */

/* Abort a transfer once cancel_fd is readable. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	const http_client *c = ud;
	struct pollfd p = {.fd = c->opts.cancel_fd, .events = POLLIN};
	return c->opts.cancel_fd >= 0 && poll(&p, 1, 0) > 0;
}

static struct curl_slist *post_headers(const char *const *headers)
{
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, "Expect:");
	for (size_t i = 0; headers && headers[i]; i++)
		h = curl_slist_append(h, headers[i]);
	return h;
}

static void setup_post(http_client *c, const char *url, struct curl_slist *hdrs, const char *body,
                       body_buf *b, http_response *r)
{
	CURL *h = c->curl;
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->opts.connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->opts.timeout_ms);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->ua);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
}

int http_post(http_client *c, const char *url, const char *const *headers, const char *body,
              http_response *out, char *err, size_t errlen)
{
	body_buf b = {0};
	struct curl_slist *hdrs = post_headers(headers);

	*out = (http_response){.rl_remaining = -1, .retry_after = -1};
	setup_post(c, url, hdrs, body, &b, out);
	c->stats.requests++;
	out->attempts++;
	CURLcode rc = curl_easy_perform(c->curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &out->status);
	/* The handle keeps pointers to hdrs and the URL: drop them now. */
	curl_easy_reset(c->curl);
	curl_slist_free_all(hdrs);
	bool too_big = b.too_big;
	take_body(out, &b);
	if (rc == CURLE_ABORTED_BY_CALLBACK) {
		snprintf(err, errlen, "POST: cancelled");
		return HTTP_ERR_CANCELLED;
	}
	if (rc != CURLE_OK) {
		/* Never the URL: it may carry a token. */
		snprintf(err, errlen, "POST: %s",
		         too_big ? "response too large" : curl_easy_strerror(rc));
		return HTTP_ERR_NETWORK;
	}
	return HTTP_OK;
}
