/*
 * http — a small JSON-over-HTTP client on libcurl for the sync tasks.
 *
 * One http_client is one curl easy handle (connection reuse), used by one
 * thread. http_get does one logical GET: it retries network errors and 5xx
 * responses with exponential backoff, waits out short rate limits (403/429
 * with X-RateLimit-Remaining: 0 or Retry-After) and follows redirects. The
 * Authorization header and basic-auth password given in http_options are
 * sent but never copied into err, the response or any log.
 *
 * Conditional requests: the ETag of each URL and the body it stood for are
 * kept in the http_cache table (http_cache_get / http_cache_put); a caller
 * sends If-None-Match only when it holds a cached body to fall back on.
 */
#ifndef FK_HTTP_H
#define FK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

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

http_client *http_client_new(const http_options *opts);
void http_client_free(http_client *c);
const http_stats *http_client_stats(const http_client *c);

/* GET url; if_none_match may be NULL. On HTTP_OK out->status is the final
 * status (2xx, 304, 4xx). On HTTP_ERR_RATE_LIMITED out->rl_reset says when
 * the limit resets. err gets a message without secrets. out is reset
 * first and must be freed with http_response_free either way. */
int http_get(http_client *c, const char *url, const char *if_none_match, http_response *out,
             char *err, size_t errlen);
void http_response_free(http_response *r);

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

/* http_cache: etag/body (malloc'd; NULL if none) of url. 0, or a store_error. */
int http_cache_get(store *s, const char *url, char **etag, char **body);
/* Replace the row of url. */
int http_cache_put(store *s, const char *url, const char *etag, const char *last_modified,
                   const char *body);

#endif
