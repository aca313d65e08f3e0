/*
 * http — a small JSON-over-HTTP client on libcurl for the sync tasks.
 *
 * One http_client is one curl easy handle (connection reuse), used by one
 * thread. http_get does one logical GET: it retries network errors and 5xx
 * responses with exponential backoff, waits out short rate limits (see
 * http_rate_limit_wait_ms) and follows redirects. http_get_many does several
 * such GETs at once over the curl multi interface, with the same rules per
 * request. The Authorization header and basic-auth password given in
 * http_options are sent but never copied into err, the response or any log.
 *
 * Conditional requests: the ETag of each URL and the body it stood for are
 * kept in the http_cache table by the core (http_cache.h); a caller sends
 * If-None-Match only when it holds a cached body to fall back on.
 */
#ifndef FK_HTTP_H
#define FK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	const char *user_agent;     /* required */
	int64_t connect_timeout_ms; /* 0: 10 s */
	int64_t timeout_ms;         /* per attempt; 0: 30 s */
	int max_retries;            /* network errors and 5xx; < 0: 0 */
	int64_t backoff_ms;         /* first retry delay, doubled each time; 0: 200 ms */
	int64_t max_rate_wait_ms;   /* longest rate-limit wait accepted; 0: 60 s */
	int cancel_fd;              /* readable: stop waiting; -1: never */
	const char *bearer_token;   /* "Authorization: Bearer ..." if set; secret */
	const char *basic_user;     /* basic auth if set */
	const char *basic_pass;     /* secret */
	const char *accept;         /* Accept header; NULL: application/json */
} http_options;

typedef struct {
	long status; /* final HTTP status, 0 if none */
	char *body;  /* NUL-terminated, may be empty */
	size_t len;
	char *etag;          /* NULL if none */
	char *last_modified; /* NULL if none */
	char *next_url;      /* Link rel="next", NULL if none */
	long rl_remaining;   /* X-RateLimit-Remaining, -1 if absent */
	int64_t rl_reset;    /* X-RateLimit-Reset (unix seconds), 0 if absent */
	int64_t retry_after; /* seconds, -1 if absent */
	int attempts;
} http_response;

typedef enum {
	HTTP_OK = 0,                /* a final response; see status */
	HTTP_ERR_NETWORK = -1,      /* no response after the retries */
	HTTP_ERR_SERVER = -2,       /* 5xx after the retries */
	HTTP_ERR_RATE_LIMITED = -3, /* limit resets later than max_rate_wait_ms */
	HTTP_ERR_CANCELLED = -4,
	HTTP_ERR_INTERNAL = -5,
} http_error;

typedef struct {
	int64_t requests;     /* HTTP requests sent, retries included */
	int64_t not_modified; /* 304 responses */
	int64_t retries;
	int64_t rate_waits;
} http_stats;

typedef struct http_client http_client;

/* user_agent, accept and bearer_token are copied (the Authorization line
 * is wiped when the client is freed); basic_user and basic_pass are
 * borrowed for the client's life. */
http_client *http_client_new(const http_options *opts);
void http_client_free(http_client *c);
/* Replace the bearer token of every later request (NULL: none), e.g. a
 * renewed installation token; the old header line is wiped. HTTP_OK, or
 * HTTP_ERR_INTERNAL (out of memory: the old token stays). */
int http_client_set_bearer(http_client *c, const char *token);
const http_stats *http_client_stats(const http_client *c);

/* GET url; if_none_match may be NULL. On HTTP_OK out->status is the final
 * status (2xx, 304, 4xx). On HTTP_ERR_RATE_LIMITED out->rl_reset says when
 * the limit resets. err gets a message without secrets. out is reset
 * first and must be freed with http_response_free either way. */
int http_get(http_client *c, const char *url, const char *if_none_match, http_response *out,
             char *err, size_t errlen);
void http_response_free(http_response *r);

/* Milliseconds to wait before retrying r if it is a rate limit, else -1.
 * Pure (now: unix seconds), GitHub's documented rules for a 403 or 429:
 * Retry-After present: that long (at least 1 s); X-RateLimit-Remaining: 0
 * with a reset: until X-RateLimit-Reset + 1 s (1 s if the reset is past);
 * otherwise a 429, a 403 with remaining 0, or a 403 whose body (its first
 * 8 KiB) speaks of a rate limit ("secondary rate limit", "API rate limit
 * exceeded", "abuse detection"): HTTP_SECONDARY_WAIT_MS. Any other 403 is
 * a final response, not a rate limit.
 * HTTP_SECONDARY_WAIT_MS is GitHub's "at least one minute" plus the 1 s
 * margin of reset waits: longer than the default max_rate_wait_ms (60 s),
 * so with the defaults a secondary limit stops the request instead of
 * retrying it blindly after a minute. */
#define HTTP_SECONDARY_WAIT_MS 61000
int64_t http_rate_limit_wait_ms(const http_response *r, int64_t now);

/* One GET of http_get_many. The caller owns the array and the strings it
 * points to; http_get_many owns nothing after it returns except what it
 * put into resp, which the caller frees with http_response_free. */
typedef struct {
	const char *url;           /* in */
	const char *if_none_match; /* in, may be NULL */
	int rc;                    /* out: as http_get's return value */
	http_response resp;        /* out: as http_get's out */
	char err[512];             /* out: as http_get's err; empty when rc is HTTP_OK */
} http_request;

/* GET every reqs[i].url, at most max_parallel (< 1: 1) in flight at once
 * over one curl multi handle, each with http_get's rules: the client's
 * headers and timeouts, retries with backoff, redirects, rate limits. A
 * rate-limit wait of one request holds back the start of every other; a
 * limit longer than max_rate_wait_ms ends the requests not yet sent with
 * HTTP_ERR_RATE_LIMITED (and that rl_reset) instead of sending them. A
 * readable cancel_fd ends every unfinished request with
 * HTTP_ERR_CANCELLED. Returns HTTP_OK when every request has its rc,
 * HTTP_ERR_CANCELLED, or HTTP_ERR_INTERNAL (out of memory: every rc is
 * HTTP_ERR_INTERNAL). The client's stats count every attempt. */
int http_get_many(http_client *c, http_request *reqs, size_t n, int max_parallel);

/* POST body (Content-Type: application/json) to url, ONE attempt: no
 * retries, no redirects, no rate-limit waits (the notification sender owns
 * those). headers: extra "Name: value" lines, NULL-terminated, may be NULL.
 * The URL may hold a secret (a Telegram bot token, a Slack webhook path):
 * err never contains it, only the method and curl's error text. A transfer
 * is aborted soon after opts.cancel_fd becomes readable. On HTTP_OK
 * out->status is the status (any); else HTTP_ERR_NETWORK or
 * HTTP_ERR_CANCELLED. out is reset first; free it with http_response_free. */
int http_post(http_client *c, const char *url, const char *const *headers, const char *body,
              http_response *out, char *err, size_t errlen);

/* The URL of rel="next" in a Link header value, malloc'd, or NULL. */
char *http_link_next(const char *link);

#endif
