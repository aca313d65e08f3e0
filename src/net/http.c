/*
 * http — see http.h.
 *
 * Invariants:
 *  1. Secrets (bearer token, basic password) live only in the curl handle's
 *     options and in the header lists, which are wiped when freed (a
 *     renewed bearer replaces its line: http_client_set_bearer); err
 *     strings are built from the URL, the status and curl's error text,
 *     none of which contain them (URLs never carry credentials: the
 *     callers pass them separately).
 *  2. Response headers are collected per response: a status line resets
 *     them, so after redirects only the final response's headers remain.
 *  3. Every wait (backoff, rate limit) polls cancel_fd, so a cancelled run
 *     returns within one poll.
 *  4. A body larger than HTTP_MAX_BODY aborts the transfer (network error):
 *     a hostile server cannot exhaust memory.
 *  5. http_get and http_get_many decide what follows an attempt in one
 *     place (http_next_step), so both retry, wait and give up alike.
 */
#include "http_internal.h"
#include "clock.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

/* curl_global_init is not thread-safe: tasks on different workers may
 * create their first client at the same moment. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_global_setup(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The client's own header lines: Accept, and Authorization if bearer is
 * set; NULL if out of memory. */
static struct curl_slist *client_headers(const char *accept, const char *bearer)
{
	char line[600];
	snprintf(line, sizeof line, "Accept: %s", accept);
	struct curl_slist *h = curl_slist_append(NULL, line);
	if (h && bearer && *bearer) {
		char *auth = NULL;
		struct curl_slist *more = NULL;
		if (asprintf(&auth, "Authorization: Bearer %s", bearer) >= 0) {
			more = curl_slist_append(h, auth);
			explicit_bzero(auth, strlen(auth));
			free(auth);
		}
		if (more == NULL) {
			curl_slist_free_all(h);
			return NULL;
		}
		h = more;
	}
	return h;
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
	snprintf(c->accept, sizeof c->accept, "%s",
	         opts->accept ? opts->accept : "application/json");
	c->opts.accept = NULL; /* the caller's string is not kept */
	c->opts.bearer_token = NULL;
	c->headers = client_headers(c->accept, opts->bearer_token);
	return c;
}

/* Free a header list, wiping every line first (one may hold a token). */
static void headers_free_wiped(struct curl_slist *h)
{
	for (struct curl_slist *i = h; i; i = i->next)
		explicit_bzero(i->data, strlen(i->data));
	curl_slist_free_all(h);
}

int http_client_set_bearer(http_client *c, const char *token)
{
	struct curl_slist *h = client_headers(c->accept, token);
	if (h == NULL)
		return HTTP_ERR_INTERNAL;
	headers_free_wiped(c->headers);
	c->headers = h;
	return HTTP_OK;
}

void http_client_free(http_client *c)
{
	if (c == NULL)
		return;
	headers_free_wiped(c->headers);
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

void http_response_reset(http_response *r)
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
		http_response_reset(r);
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
int http_wait_ms(const http_client *c, int64_t ms)
{
	int64_t start = clock_mono_ms();
	for (;;) {
		int64_t done = clock_mono_ms() - start;
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

void http_setup_get(const http_client *c, CURL *h, const char *url, struct curl_slist *hdrs,
                    body_buf *b, http_response *r)
{
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

/* The header list of a GET: the client's own, or a copy of it plus
 * If-None-Match in *extra (the caller frees *extra after the transfer). */
struct curl_slist *http_get_headers(const http_client *c, const char *if_none_match,
                                    struct curl_slist **extra)
{
	char line[512];
	*extra = NULL;
	if (if_none_match == NULL || *if_none_match == '\0')
		return c->headers;
	snprintf(line, sizeof line, "If-None-Match: %s", if_none_match);
	for (struct curl_slist *i = c->headers; i; i = i->next)
		*extra = curl_slist_append(*extra, i->data);
	*extra = curl_slist_append(*extra, line);
	return *extra;
}

/* One attempt: CURLE_* result; r and b filled. */
static CURLcode attempt(http_client *c, const char *url, const char *if_none_match,
                        http_response *r, body_buf *b)
{
	struct curl_slist *extra;
	http_setup_get(c, c->curl, url, http_get_headers(c, if_none_match, &extra), b, r);
	c->stats.requests++;
	r->attempts++;
	CURLcode rc = curl_easy_perform(c->curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
	headers_free_wiped(extra); /* a copy of the client's lines */
	return rc;
}

/* Does the start of body mention needle (ASCII, any case)? */
static bool body_mentions(const char *body, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	if (body == NULL)
		return false;
	if (len > 8192)
		len = 8192; /* a rate-limit message comes first */
	for (size_t i = 0; i + n <= len; i++)
		if (strncasecmp(body + i, needle, n) == 0)
			return true;
	return false;
}

int64_t http_rate_limit_wait_ms(const http_response *r, int64_t now)
{
	if (r->status != 403 && r->status != 429)
		return -1;
	const int64_t week = 7 * 86400; /* a hostile header cannot overflow the ms */
	if (r->retry_after >= 0)
		return (r->retry_after < 1      ? 1
		        : r->retry_after > week ? week
		                                : r->retry_after) *
		       1000;
	if (r->rl_remaining == 0 && r->rl_reset > 0) {
		int64_t s = r->rl_reset > now ? r->rl_reset - now + 1 : 1;
		return (s > week ? week : s) * 1000;
	}
	if (r->status == 429 || r->rl_remaining == 0 ||
	    body_mentions(r->body, r->len, "rate limit") ||
	    body_mentions(r->body, r->len, "abuse detection"))
		return HTTP_SECONDARY_WAIT_MS;
	return -1;
}

void http_take_body(http_response *r, body_buf *b)
{
	free(r->body);
	r->body = b->buf ? b->buf : strdup("");
	r->len = b->len;
	*b = (body_buf){0};
}

/* What follows one attempt (curl result cc, response r). Shared by
 * http_get and http_get_many so that both follow the same rules. */
http_step http_next_step(http_client *c, const char *url, CURLcode cc, bool too_big, int retries,
                         http_response *r, int *code, int64_t *wait, char *err, size_t errlen)
{
	if (cc != CURLE_OK || r->status >= 500) {
		if (cc != CURLE_OK)
			snprintf(err, errlen, "GET %s: %s", url,
			         too_big ? "response too large" : curl_easy_strerror(cc));
		else
			snprintf(err, errlen, "GET %s: HTTP %ld", url, r->status);
		*code = cc != CURLE_OK ? HTTP_ERR_NETWORK : HTTP_ERR_SERVER;
		return retries >= c->opts.max_retries ? HTTP_STEP_DONE : HTTP_STEP_RETRY;
	}
	int64_t now = (int64_t)clock_wall();
	int64_t ms = http_rate_limit_wait_ms(r, now);
	if (ms >= 0) {
		snprintf(err, errlen, "GET %s: rate limited (HTTP %ld) for %lld s", url, r->status,
		         (long long)(ms / 1000));
		if (r->rl_reset <= now)
			r->rl_reset = now + (ms + 999) / 1000;
		if (ms > c->opts.max_rate_wait_ms) {
			*code = HTTP_ERR_RATE_LIMITED;
			return HTTP_STEP_DONE;
		}
		c->stats.rate_waits++;
		*wait = ms;
		return HTTP_STEP_WAIT;
	}
	if (r->status == 304)
		c->stats.not_modified++;
	*code = HTTP_OK;
	return HTTP_STEP_DONE;
}

int http_get(http_client *c, const char *url, const char *if_none_match, http_response *out,
             char *err, size_t errlen)
{
	int retries = 0;
	int64_t backoff = c->opts.backoff_ms;

	*out = (http_response){.rl_remaining = -1, .retry_after = -1};
	for (;;) {
		body_buf b = {0};
		http_response_reset(out);
		CURLcode cc = attempt(c, url, if_none_match, out, &b);
		bool too_big = b.too_big;
		http_take_body(out, &b);
		int code = HTTP_ERR_INTERNAL;
		int64_t ms = 0;
		http_step s =
		        http_next_step(c, url, cc, too_big, retries, out, &code, &ms, err, errlen);
		if (s == HTTP_STEP_DONE)
			return code;
		if (s == HTTP_STEP_RETRY) {
			retries++;
			c->stats.retries++;
			ms = backoff;
			backoff *= 2;
		}
		if (http_wait_ms(c, ms) != 0) {
			snprintf(err, errlen, "GET %s: cancelled", url);
			return HTTP_ERR_CANCELLED;
		}
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
	headers_free_wiped(hdrs); /* the caller's lines may hold a token or a JWT */
	bool too_big = b.too_big;
	http_take_body(out, &b);
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
