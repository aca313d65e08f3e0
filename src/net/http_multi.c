/*
 * http_multi — http_get_many (http.h): several GETs at once over one curl
 * multi handle, each following http_get's rules through http_next_step
 * (http_internal.h).
 *
 * Invariants:
 *  1. The multi handle lives for one call; an easy handle belongs to one
 *     running transfer (xfer) and is released when that attempt ends or the
 *     batch is cancelled, so nothing outlives the call but the responses
 *     handed to the caller.
 *  2. A rate-limit wait of one request holds back the start of every other.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "http_internal.h"

enum { XFER_PENDING, XFER_RUNNING, XFER_DONE };

/* The state of one request of http_get_many. While running it owns an easy
 * handle, its extra header list and the body buffer. */
typedef struct {
	http_request *req;
	CURL *h;
	struct curl_slist *extra;
	body_buf body;
	int state;
	int retries;
	int64_t backoff;
	int64_t wake; /* monotonic ms: not started before */
} xfer;

typedef struct {
	http_client *c;
	CURLM *multi;
	xfer *x;
	size_t n, done, running, max_parallel;
	int64_t paused_until; /* monotonic ms: a rate-limit wait holds back every start */
	bool limited;         /* a long rate limit: nothing more is sent */
	int64_t limit_reset;
} batch;

static void xfer_finish(batch *b, xfer *x, int code)
{
	x->req->rc = code;
	if (code == HTTP_OK)
		x->req->err[0] = '\0';
	x->state = XFER_DONE;
	b->done++;
}

/* Drop the easy handle and buffers of a running transfer. */
static void xfer_release(batch *b, xfer *x)
{
	curl_multi_remove_handle(b->multi, x->h);
	curl_easy_cleanup(x->h);
	curl_slist_free_all(x->extra);
	free(x->body.buf);
	x->h = NULL;
	x->extra = NULL;
	x->body = (body_buf){0};
	b->running--;
}

static void xfer_start(batch *b, xfer *x)
{
	http_request *q = x->req;
	x->h = curl_easy_init();
	if (x->h == NULL) {
		snprintf(q->err, sizeof q->err, "GET %s: out of memory", q->url);
		xfer_finish(b, x, HTTP_ERR_INTERNAL);
		return;
	}
	http_response_reset(&q->resp);
	http_setup_get(b->c, x->h, q->url, http_get_headers(b->c, q->if_none_match, &x->extra),
	               &x->body, &q->resp);
	curl_easy_setopt(x->h, CURLOPT_PRIVATE, (void *)x);
	if (curl_multi_add_handle(b->multi, x->h) != CURLM_OK) {
		curl_easy_cleanup(x->h);
		curl_slist_free_all(x->extra);
		x->h = NULL;
		x->extra = NULL;
		snprintf(q->err, sizeof q->err, "GET %s: cannot start the transfer", q->url);
		xfer_finish(b, x, HTTP_ERR_INTERNAL);
		return;
	}
	b->c->stats.requests++;
	q->resp.attempts++;
	x->state = XFER_RUNNING;
	b->running++;
}

/* Start what is due, in order, up to max_parallel; after a long rate limit
 * end the pending requests unsent. */
static void start_due(batch *b)
{
	int64_t now = clock_mono_ms();
	for (size_t i = 0; i < b->n; i++) {
		xfer *x = &b->x[i];
		if (x->state != XFER_PENDING)
			continue;
		if (b->limited) {
			x->req->resp.rl_reset = b->limit_reset;
			snprintf(x->req->err, sizeof x->req->err,
			         "GET %s: not sent, rate limited until %lld", x->req->url,
			         (long long)b->limit_reset);
			xfer_finish(b, x, HTTP_ERR_RATE_LIMITED);
		} else if (b->running < b->max_parallel && x->wake <= now &&
		           b->paused_until <= now) {
			xfer_start(b, x);
		}
	}
}

/* A transfer ended (curl result cc): done, or pending again after a wait. */
static void xfer_ended(batch *b, xfer *x, CURLcode cc)
{
	http_request *q = x->req;
	if (cc == CURLE_OK)
		curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &q->resp.status);
	bool too_big = x->body.too_big;
	http_take_body(&q->resp, &x->body);
	xfer_release(b, x);

	int code = HTTP_ERR_INTERNAL;
	int64_t ms = 0;
	http_step s = http_next_step(b->c, q->url, cc, too_big, x->retries, &q->resp, &code, &ms,
	                             q->err, sizeof q->err);
	if (s == HTTP_STEP_DONE) {
		xfer_finish(b, x, code);
		if (code == HTTP_ERR_RATE_LIMITED && !b->limited) {
			b->limited = true;
			b->limit_reset = q->resp.rl_reset;
		}
		return;
	}
	if (s == HTTP_STEP_RETRY) {
		x->retries++;
		b->c->stats.retries++;
		ms = x->backoff;
		x->backoff *= 2;
	}
	x->state = XFER_PENDING;
	x->wake = clock_mono_ms() + ms;
	if (s == HTTP_STEP_WAIT && x->wake > b->paused_until)
		b->paused_until = x->wake;
}

static void collect_ended(batch *b)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(b->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		xfer *x = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		CURLcode cc = m->data.result; /* m is invalid after remove_handle */
		if (x != NULL)
			xfer_ended(b, x, cc);
	}
}

static bool cancel_ready(const http_client *c)
{
	struct pollfd p = {.fd = c->opts.cancel_fd, .events = POLLIN};
	return c->opts.cancel_fd >= 0 && poll(&p, 1, 0) > 0;
}

static void cancel_all(batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		xfer *x = &b->x[i];
		if (x->state == XFER_DONE)
			continue;
		if (x->state == XFER_RUNNING)
			xfer_release(b, x);
		snprintf(x->req->err, sizeof x->req->err, "GET %s: cancelled", x->req->url);
		xfer_finish(b, x, HTTP_ERR_CANCELLED);
	}
}

/* Wait for socket activity, the next due start (at most 1 s) or cancel_fd. */
static void wait_activity(batch *b)
{
	struct curl_waitfd w = {.fd = b->c->opts.cancel_fd, .events = CURL_WAIT_POLLIN};
	int64_t timeout = 1000, now = clock_mono_ms();
	for (size_t i = 0; b->running < b->max_parallel && i < b->n; i++) {
		const xfer *x = &b->x[i];
		if (x->state != XFER_PENDING)
			continue;
		int64_t due = (x->wake > b->paused_until ? x->wake : b->paused_until) - now;
		if (due < timeout)
			timeout = due < 0 ? 0 : due;
	}
	curl_multi_poll(b->multi, b->c->opts.cancel_fd >= 0 ? &w : NULL,
	                b->c->opts.cancel_fd >= 0 ? 1u : 0u, (int)timeout, NULL);
}

int http_get_many(http_client *c, http_request *reqs, size_t n, int max_parallel)
{
	batch b = {.c = c, .n = n, .max_parallel = max_parallel < 1 ? 1 : (size_t)max_parallel};
	for (size_t i = 0; i < n; i++) {
		reqs[i].rc = HTTP_ERR_INTERNAL;
		reqs[i].resp = (http_response){.rl_remaining = -1, .retry_after = -1};
		snprintf(reqs[i].err, sizeof reqs[i].err, "GET %s: out of memory", reqs[i].url);
	}
	b.x = n ? calloc(n, sizeof *b.x) : NULL;
	b.multi = n ? curl_multi_init() : NULL;
	if (n && (b.x == NULL || b.multi == NULL)) {
		free(b.x);
		curl_multi_cleanup(b.multi);
		return HTTP_ERR_INTERNAL;
	}
	for (size_t i = 0; i < n; i++)
		b.x[i] = (xfer){.req = &reqs[i], .backoff = c->opts.backoff_ms};
	int rc = HTTP_OK;
	while (b.done < b.n) {
		if (cancel_ready(c)) {
			cancel_all(&b);
			rc = HTTP_ERR_CANCELLED;
			break;
		}
		start_due(&b);
		if (b.done == b.n)
			break;
		wait_activity(&b);
		int still;
		curl_multi_perform(b.multi, &still);
		collect_ended(&b);
	}
	free(b.x);
	if (b.multi)
		curl_multi_cleanup(b.multi);
	return rc;
}
