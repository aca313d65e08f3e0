/* Unit tests of src/http.c: Link header parsing, the http_cache rows, the
 * rate-limit rules, and http_get / http_get_many against a small loopback
 * HTTP server (one thread per connection, one request per connection). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"
#include "http_cache.h"

static void link_is(const char *header, const char *want)
{
	char *got = http_link_next(header);
	if (want == NULL) {
		assert_null(got);
	} else {
		assert_non_null(got);
		assert_string_equal(got, want);
	}
	free(got);
}

static void test_link_next(void **state)
{
	(void)state;
	/* As recorded from GitHub (paginate-issues.json). */
	link_is("<https://api.github.com/repositories/1000/issues?per_page=3&page=1>; "
	        "rel=\"prev\", "
	        "<https://api.github.com/repositories/1000/issues?per_page=3&page=3>; "
	        "rel=\"next\", "
	        "<https://api.github.com/repositories/1000/issues?per_page=3&page=5>; rel=\"last\"",
	        "https://api.github.com/repositories/1000/issues?per_page=3&page=3");
	link_is("<https://x/a?page=5>; rel=\"last\"", NULL);
	link_is("<https://x/a?page=2>; rel=next", "https://x/a?page=2");
	link_is("", NULL);
	link_is("<unterminated; rel=\"next\"", NULL);
	link_is("garbage, <<>>; rel=\"next\"", "<");
	link_is(";;;,,,", NULL);
}

static void test_cache_roundtrip(void **state)
{
	(void)state;
	char path[] = "/tmp/fk-test-http-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	store *s = NULL;
	char err[256];
	assert_int_equal(store_open(&s, path, err, sizeof err), 0);
	char *etag, *body;
	assert_int_equal(http_cache_get(s, "http://x/1", &etag, &body), 0);
	assert_null(etag);
	assert_null(body);
	assert_int_equal(http_cache_put(s, "http://x/1", "\"e1\"", NULL, "{\"repos\":[]}", 10), 0);
	assert_int_equal(http_cache_put(s, "http://x/1", "\"e2\"", "Mon", "{}", 20), 0);
	assert_int_equal(http_cache_get(s, "http://x/1", &etag, &body), 0);
	assert_string_equal(etag, "\"e2\"");
	assert_string_equal(body, "{}");
	free(etag);
	free(body);
	store_close(s);
	unlink(path);
}

static void test_unreachable_is_network_error(void **state)
{
	(void)state;
	http_options o = {.user_agent = "t",
	                  .connect_timeout_ms = 2000,
	                  .timeout_ms = 2000,
	                  .max_retries = 1,
	                  .backoff_ms = 1,
	                  .cancel_fd = -1,
	                  .bearer_token = "SECRET-TOKEN"};
	http_client *c = http_client_new(&o);
	http_response r;
	char err[512];
	/* Port 1 on loopback: connection refused. */
	assert_int_equal(http_get(c, "http://127.0.0.1:1/x", NULL, &r, err, sizeof err),
	                 HTTP_ERR_NETWORK);
	assert_null(strstr(err, "SECRET"));
	assert_int_equal(http_client_stats(c)->requests, 2);
	assert_int_equal(http_client_stats(c)->retries, 1);
	http_response_free(&r);
	http_client_free(c);
}

/* ---- rate-limit rules (pure) ---- */

static int64_t wait_for(long status, long remaining, int64_t reset, int64_t retry_after,
                        const char *body)
{
	http_response r = {.status = status,
	                   .rl_remaining = remaining,
	                   .rl_reset = reset,
	                   .retry_after = retry_after,
	                   .body = (char *)body,
	                   .len = body ? strlen(body) : 0};
	return http_rate_limit_wait_ms(&r, 1000000);
}

static void test_rate_limit_rules(void **state)
{
	(void)state;
	const char *secondary = "{\"message\": \"You have exceeded a secondary rate limit. Please"
	                        " wait a few minutes before you try again.\"}";
	/* Retry-After first, whatever else the response says. */
	assert_int_equal(wait_for(403, 0, 1000100, 5, NULL), 5000);
	assert_int_equal(wait_for(429, -1, 0, 0, NULL), 1000);
	assert_int_equal(wait_for(429, -1, 0, INT64_MAX, NULL), 7 * 86400 * 1000LL);
	assert_int_equal(wait_for(403, 0, INT64_MAX / 1000, -1, NULL), 7 * 86400 * 1000LL);
	/* Remaining 0: until the reset (+1 s), 1 s when it is past. */
	assert_int_equal(wait_for(403, 0, 1000010, -1, NULL), 11000);
	assert_int_equal(wait_for(403, 0, 999990, -1, NULL), 1000);
	/* No hints: a 429, or a 403 that says it is a rate limit, waits a minute. */
	assert_int_equal(wait_for(429, -1, 0, -1, NULL), HTTP_SECONDARY_WAIT_MS);
	assert_int_equal(wait_for(403, 4999, 1000010, -1, secondary), HTTP_SECONDARY_WAIT_MS);
	assert_int_equal(wait_for(403, -1, 0, -1, "{\"message\": \"API RATE LIMIT exceeded\"}"),
	                 HTTP_SECONDARY_WAIT_MS);
	assert_int_equal(wait_for(403, -1, 0, -1,
	                          "{\"message\": \"You have triggered an abuse detection"
	                          " mechanism.\"}"),
	                 HTTP_SECONDARY_WAIT_MS);
	assert_int_equal(wait_for(403, 0, 0, -1, NULL), HTTP_SECONDARY_WAIT_MS);
	assert_true(HTTP_SECONDARY_WAIT_MS > 60000); /* the default longest wait stops the run */
	/* Not rate limits. */
	assert_int_equal(wait_for(403, 4999, 0, -1, "{\"message\": \"Resource not accessible\"}"),
	                 -1);
	assert_int_equal(wait_for(403, -1, 0, -1, NULL), -1);
	assert_int_equal(wait_for(404, 0, 1000010, 5, "rate limit"), -1);
	assert_int_equal(wait_for(200, 0, 1000010, -1, NULL), -1);
}

/* ---- a loopback server ---- */

typedef struct {
	int fd, port;
	pthread_t thread;
	pthread_mutex_t lock;
	int in_flight, max_in_flight;
	int hits_e500, hits_slow, hits_rl_short;
} test_server;

static test_server srv = {.fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

static void sleep_ms(int ms)
{
	struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&t, &t) != 0)
		;
}

static void reply(int fd, const char *status, const char *headers, const char *body)
{
	char buf[2048];
	int n = snprintf(buf, sizeof buf,
	                 "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n%s\r\n%s",
	                 status, strlen(body), headers, body);
	for (int off = 0; off < n;) {
		ssize_t w = write(fd, buf + off, (size_t)(n - off));
		if (w <= 0)
			return;
		off += (int)w;
	}
}

static void count(int *counter, int delta)
{
	pthread_mutex_lock(&srv.lock);
	*counter += delta;
	if (counter == &srv.in_flight && srv.in_flight > srv.max_in_flight)
		srv.max_in_flight = srv.in_flight;
	pthread_mutex_unlock(&srv.lock);
}

static void route(int fd, const char *req)
{
	char path[256] = "", body[128];
	sscanf(req, "GET %255s", path);
	if (strncmp(path, "/slow/", 6) == 0) {
		count(&srv.hits_slow, 1);
		sleep_ms(300);
		snprintf(body, sizeof body, "{\"n\": %d}", atoi(path + 6));
		reply(fd, "200 OK", "", body);
	} else if (strcmp(path, "/hang") == 0) {
		sleep_ms(5000);
		reply(fd, "200 OK", "", "{}");
	} else if (strcmp(path, "/e500") == 0) {
		count(&srv.hits_e500, 1);
		reply(fd, "500 Internal Server Error", "", "{}");
	} else if (strcmp(path, "/rl-long") == 0) {
		reply(fd, "429 Too Many Requests", "Retry-After: 3600\r\n", "{}");
	} else if (strcmp(path, "/rl-short") == 0) {
		pthread_mutex_lock(&srv.lock);
		int first = srv.hits_rl_short++ == 0;
		pthread_mutex_unlock(&srv.lock);
		if (first)
			reply(fd, "429 Too Many Requests", "Retry-After: 1\r\n", "{}");
		else
			reply(fd, "200 OK", "", "{\"after\": \"wait\"}");
	} else if (strcmp(path, "/secondary") == 0) {
		reply(fd, "403 Forbidden", "X-RateLimit-Remaining: 4999\r\n",
		      "{\"message\": \"You have exceeded a secondary rate limit. Please wait a few"
		      " minutes before you try again.\"}");
	} else if (strcmp(path, "/forbidden") == 0) {
		reply(fd, "403 Forbidden", "X-RateLimit-Remaining: 4999\r\n",
		      "{\"message\": \"Resource not accessible by integration\"}");
	} else if (strcmp(path, "/moved") == 0) {
		reply(fd, "301 Moved Permanently", "Location: /slow/7\r\n", "{}");
	} else if (strcmp(path, "/etag") == 0) {
		if (strstr(req, "If-None-Match: \"e1\""))
			reply(fd, "304 Not Modified", "ETag: \"e1\"\r\n", "");
		else
			reply(fd, "200 OK", "ETag: \"e1\"\r\n", "{\"v\": 1}");
	} else {
		reply(fd, "404 Not Found", "", "{}");
	}
}

static void *serve_one(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char req[4096];
	size_t len = 0;
	count(&srv.in_flight, 1);
	while (len + 1 < sizeof req) {
		ssize_t r = read(fd, req + len, sizeof req - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n")) {
			route(fd, req);
			break;
		}
	}
	count(&srv.in_flight, -1);
	close(fd);
	return NULL;
}

static void *accept_loop(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(srv.fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		pthread_t t;
		if (pthread_create(&t, NULL, serve_one, (void *)(intptr_t)fd) == 0)
			pthread_detach(t);
		else
			close(fd);
	}
}

static int server_start(void **state)
{
	(void)state;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof a;
	srv.fd = socket(AF_INET, SOCK_STREAM, 0);
	if (srv.fd < 0 || bind(srv.fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    listen(srv.fd, 64) != 0 || getsockname(srv.fd, (struct sockaddr *)&a, &alen) != 0)
		return -1;
	srv.port = ntohs(a.sin_port);
	return pthread_create(&srv.thread, NULL, accept_loop, NULL) == 0 ? 0 : -1;
}

static int server_stop(void **state)
{
	(void)state;
	shutdown(srv.fd, SHUT_RDWR);
	close(srv.fd);
	pthread_join(srv.thread, NULL);
	return 0;
}

static char *url_of(const char *path)
{
	char *u = NULL;
	assert_true(asprintf(&u, "http://127.0.0.1:%d%s", srv.port, path) > 0);
	return u;
}

static http_client *client(int max_retries, int cancel_fd)
{
	http_options o = {.user_agent = "t",
	                  .connect_timeout_ms = 5000,
	                  .timeout_ms = 10000,
	                  .max_retries = max_retries,
	                  .backoff_ms = 1,
	                  .cancel_fd = cancel_fd};
	http_client *c = http_client_new(&o);
	assert_non_null(c);
	return c;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- http_get ---- */

static void test_get_secondary_limit(void **state)
{
	(void)state;
	http_client *c = client(0, -1);
	http_response r;
	char err[512], *u = url_of("/secondary");
	int64_t before = (int64_t)time(NULL);
	/* 61 s is longer than the longest wait (60 s): the limit is reported. */
	assert_int_equal(http_get(c, u, NULL, &r, err, sizeof err), HTTP_ERR_RATE_LIMITED);
	assert_int_equal(r.status, 403);
	assert_true(r.rl_reset >= before + 61 && r.rl_reset <= (int64_t)time(NULL) + 62);
	assert_non_null(strstr(err, "rate limited"));
	assert_int_equal(http_client_stats(c)->requests, 1);
	http_response_free(&r);
	free(u);
	/* A 403 that is no rate limit is a final response. */
	u = url_of("/forbidden");
	assert_int_equal(http_get(c, u, NULL, &r, err, sizeof err), HTTP_OK);
	assert_int_equal(r.status, 403);
	assert_int_equal(http_client_stats(c)->requests, 2);
	http_response_free(&r);
	free(u);
	http_client_free(c);
}

/* ---- http_get_many ---- */

static void free_reqs(http_request *q, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		http_response_free(&q[i].resp);
		free((char *)q[i].url);
	}
}

static void test_many_parallel(void **state)
{
	(void)state;
	enum { N = 6 };
	http_request q[N];
	http_client *c = client(0, -1);
	char path[32];
	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof path, "/slow/%d", i);
		q[i] = (http_request){.url = url_of(path)};
	}
	srv.max_in_flight = 0;
	double t0 = now_s();
	assert_int_equal(http_get_many(c, q, N, 3), HTTP_OK);
	double took = now_s() - t0;
	for (int i = 0; i < N; i++) {
		char want[32];
		snprintf(want, sizeof want, "{\"n\": %d}", i);
		assert_int_equal(q[i].rc, HTTP_OK);
		assert_int_equal(q[i].resp.status, 200);
		assert_string_equal(q[i].resp.body, want);
		assert_string_equal(q[i].err, "");
	}
	/* Exactly three at a time: bounded, and really concurrent. */
	assert_int_equal(srv.max_in_flight, 3);
	assert_true(took < 6 * 0.3 * 0.8);
	assert_int_equal(http_client_stats(c)->requests, N);
	free_reqs(q, N);
	http_client_free(c);
}

static void test_many_same_rules_as_get(void **state)
{
	(void)state;
	http_request q[] = {
	        {.url = url_of("/e500")},
	        {.url = url_of("/moved")},
	        {.url = url_of("/etag"), .if_none_match = "\"e1\""},
	        {.url = url_of("/etag")},
	        {.url = url_of("/forbidden")},
	        {.url = strdup("http://127.0.0.1:1/refused")},
	        {.url = url_of("/rl-short")},
	};
	size_t n = sizeof q / sizeof *q;
	http_client *c = client(1, -1);
	srv.hits_e500 = srv.hits_rl_short = 0;
	assert_int_equal(http_get_many(c, q, n, 4), HTTP_OK);
	assert_int_equal(q[0].rc, HTTP_ERR_SERVER);
	assert_non_null(strstr(q[0].err, "HTTP 500"));
	assert_int_equal(q[0].resp.attempts, 2);
	assert_int_equal(srv.hits_e500, 2);
	assert_int_equal(q[1].rc, HTTP_OK); /* the redirect followed */
	assert_int_equal(q[1].resp.status, 200);
	assert_string_equal(q[1].resp.body, "{\"n\": 7}");
	assert_int_equal(q[2].rc, HTTP_OK);
	assert_int_equal(q[2].resp.status, 304);
	assert_int_equal(q[3].resp.status, 200);
	assert_string_equal(q[3].resp.etag, "\"e1\"");
	assert_int_equal(q[4].rc, HTTP_OK);
	assert_int_equal(q[4].resp.status, 403);
	assert_int_equal(q[5].rc, HTTP_ERR_NETWORK);
	assert_int_equal(q[6].rc, HTTP_OK); /* waited out Retry-After: 1 */
	assert_string_equal(q[6].resp.body, "{\"after\": \"wait\"}");
	assert_int_equal(srv.hits_rl_short, 2);
	const http_stats *st = http_client_stats(c);
	assert_int_equal(st->not_modified, 1);
	assert_int_equal(st->retries, 2);
	assert_int_equal(st->rate_waits, 1);
	assert_int_equal(st->requests, 2 + 1 + 1 + 1 + 1 + 2 + 2);
	free_reqs(q, n);
	http_client_free(c);
}

static void test_many_long_limit_stops_sending(void **state)
{
	(void)state;
	http_request q[] = {{.url = url_of("/rl-long")},
	                    {.url = url_of("/slow/1")},
	                    {.url = url_of("/slow/2")}};
	http_client *c = client(3, -1);
	srv.hits_slow = 0;
	int64_t before = (int64_t)time(NULL);
	assert_int_equal(http_get_many(c, q, 3, 1), HTTP_OK);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(q[i].rc, HTTP_ERR_RATE_LIMITED);
		assert_true(q[i].resp.rl_reset >= before + 3600);
	}
	assert_non_null(strstr(q[1].err, "not sent"));
	assert_int_equal(srv.hits_slow, 0);
	assert_int_equal(http_client_stats(c)->requests, 1);
	free_reqs(q, 3);
	http_client_free(c);
}

static void *cancel_later(void *arg)
{
	sleep_ms(200);
	if (write(*(int *)arg, "x", 1) != 1)
		abort(); /* no cmocka asserts off the test's thread */
	return NULL;
}

static void test_many_cancel(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	http_client *c = client(0, p[0]);
	http_request q[] = {{.url = url_of("/hang")}, {.url = url_of("/hang")}};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, cancel_later, &p[1]), 0);
	double t0 = now_s();
	assert_int_equal(http_get_many(c, q, 2, 2), HTTP_ERR_CANCELLED);
	assert_true(now_s() - t0 < 3.0); /* not the 5 s of /hang */
	pthread_join(t, NULL);
	assert_int_equal(q[0].rc, HTTP_ERR_CANCELLED);
	assert_int_equal(q[1].rc, HTTP_ERR_CANCELLED);
	free_reqs(q, 2);
	/* Already cancelled: nothing is sent. */
	int64_t sent = http_client_stats(c)->requests;
	http_request one = {.url = url_of("/slow/1")};
	assert_int_equal(http_get_many(c, &one, 1, 4), HTTP_ERR_CANCELLED);
	assert_int_equal(one.rc, HTTP_ERR_CANCELLED);
	assert_int_equal(http_client_stats(c)->requests, sent);
	free_reqs(&one, 1);
	assert_int_equal(http_get_many(c, NULL, 0, 4), HTTP_OK);
	http_client_free(c);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_link_next),
	        cmocka_unit_test(test_cache_roundtrip),
	        cmocka_unit_test(test_unreachable_is_network_error),
	        cmocka_unit_test(test_rate_limit_rules),
	        cmocka_unit_test(test_get_secondary_limit),
	        cmocka_unit_test(test_many_parallel),
	        cmocka_unit_test(test_many_same_rules_as_get),
	        cmocka_unit_test(test_many_long_limit_stops_sending),
	        cmocka_unit_test(test_many_cancel),
	};
	return cmocka_run_group_tests(tests, server_start, server_stop);
}
