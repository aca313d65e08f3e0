/*
 * http_internal — what http.c (one GET at a time, POST) and http_multi.c
 * (several GETs at once) share: the client, the body buffer, and the one
 * place that decides what follows an attempt. Not for other modules: they
 * use http.h.
 */
#ifndef FK_HTTP_INTERNAL_H
#define FK_HTTP_INTERNAL_H

#include <curl/curl.h>

#include "http.h"

#define HTTP_MAX_BODY (64u * 1024u * 1024u)

struct http_client {
	CURL *curl;
	struct curl_slist *headers;
	http_options opts;
	http_stats stats;
	char ua[256];
	char accept[256];
};

typedef struct {
	char *buf;
	size_t len, cap;
	bool too_big;
} body_buf;

typedef enum {
	HTTP_STEP_DONE,  /* *code is the result */
	HTTP_STEP_RETRY, /* a network error or 5xx: back off, then again */
	HTTP_STEP_WAIT,  /* a short rate limit: wait *wait ms, then again */
} http_step;

/* Free r's strings and clear it for the next attempt (attempts kept). */
void http_response_reset(http_response *r);

/* Set up easy handle h for a GET of url: the client's options, hdrs, the
 * body into b and the headers into r. */
void http_setup_get(const http_client *c, CURL *h, const char *url, struct curl_slist *hdrs,
                    body_buf *b, http_response *r);

/* The header list of a GET: the client's own, or a copy of it plus
 * If-None-Match in *extra (the caller frees *extra after the transfer). */
struct curl_slist *http_get_headers(const http_client *c, const char *if_none_match,
                                    struct curl_slist **extra);

/* Move b's bytes into r->body (an empty string when there are none). */
void http_take_body(http_response *r, body_buf *b);

/* What follows one attempt (curl result cc, response r): done with *code,
 * retry after a backoff, or wait *wait ms for a short rate limit. */
http_step http_next_step(http_client *c, const char *url, CURLcode cc, bool too_big, int retries,
                         http_response *r, int *code, int64_t *wait, char *err, size_t errlen);

/* Sleep ms, or less if the client's cancel_fd fires: 0, or -1 when cancelled. */
int http_wait_ms(const http_client *c, int64_t ms);

#endif
