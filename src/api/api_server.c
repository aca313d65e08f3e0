/*
 * api_server — the HTTP API's listener and the life of one request (see
 * api.h and docs/api.md):
 *
 *   1. the body is read into memory, at most [api] max_body_bytes (413
 *      beyond, read and dropped; a Content-Length over it is refused before
 *      any byte is read);
 *   2. X-Correlation-ID, when present, must be 1 to 64 of [A-Za-z0-9._:-]
 *      (400 invalid_correlation_id);
 *   3. everything but /healthz and the page's files needs a bearer token
 *      (401; 429 while the client's address has failed too often);
 *   4. the route (api_routes.c) answers, or starts a stream (SSE);
 *   5. one http_request line is logged and the request counted in metrics.
 *
 * Limits against slow clients and floods: a thread per connection, at most
 * API_MAX_CONNS of them (beyond, libmicrohttpd closes new connections at
 * once), API_PER_IP_CONNS per address except on loopback (every local
 * client may come from any 127/8 address), an idle connection closed after
 * API_IDLE_TIMEOUT_S, a small stack per thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api_internal.h"
#include "clock.h"
#include "control.h"
#include "events.h"
#include "log.h"
#include "metrics.h"
#include "runner.h"
#include "runs.h"

#define API_MAX_CONNS      256u
#define API_PER_IP_CONNS   32u
#define API_IDLE_TIMEOUT_S 15u
#define API_STACK_BYTES    (512u * 1024u)
#define API_BACKLOG        1024
#define API_PEM_MAX        (256 * 1024)

const char *api_listen_address(const config *cfg)
{
	const config_section *sec = config_section_find(cfg, "api");
	const char *v = sec ? config_get(sec, "listen") : NULL;
	if (v == NULL)
		return API_DEFAULT_LISTEN;
	return v[0] ? v : NULL;
}

const char *api_address(const api *a)
{
	return a ? a->address : "";
}

bool api_uses_tls(const api *a)
{
	return a && a->tls;
}

/* ---- store connections and the control socket ---- */

store *api_store_take(api *a, char *err, size_t errlen)
{
	size_t i;
	pthread_mutex_lock(&a->store_mu);
	for (;;) {
		for (i = 0; i < API_STORES && a->store_busy[i]; i++)
			;
		if (i < API_STORES)
			break;
		pthread_cond_wait(&a->store_cv, &a->store_mu);
	}
	a->store_busy[i] = true;
	pthread_mutex_unlock(&a->store_mu);
	if (a->stores[i] == NULL && store_open(&a->stores[i], a->cfg->db_path, err, errlen) != 0) {
		store_close(a->stores[i]);
		a->stores[i] = NULL;
		pthread_mutex_lock(&a->store_mu);
		a->store_busy[i] = false;
		pthread_cond_signal(&a->store_cv);
		pthread_mutex_unlock(&a->store_mu);
		return NULL;
	}
	return a->stores[i];
}

void api_store_give(api *a, store *st)
{
	pthread_mutex_lock(&a->store_mu);
	for (size_t i = 0; i < API_STORES; i++)
		if (a->stores[i] == st && st)
			a->store_busy[i] = false;
	pthread_cond_signal(&a->store_cv);
	pthread_mutex_unlock(&a->store_mu);
}

static cJSON *control_locked(api *a, const char *request, unsigned *http_status, char *err,
                             size_t errlen)
{
	char *reply = NULL;
	int rc = control_request(a->cfg->control_socket, request, &reply, err, errlen);
	cJSON *r = rc == 0 ? cJSON_Parse(reply) : NULL;
	if (rc == 0 && r == NULL)
		snprintf(err, errlen, "unreadable reply from the daemon");
	free(reply);
	if (r == NULL)
		*http_status = MHD_HTTP_SERVICE_UNAVAILABLE;
	return r;
}

cJSON *api_control(api *a, const char *request, unsigned *http_status, char *err, size_t errlen)
{
	pthread_mutex_lock(&a->ctl_mu);
	cJSON *r = control_locked(a, request, http_status, err, errlen);
	free(a->status_cache); /* an operation changes the state */
	a->status_cache = NULL;
	pthread_mutex_unlock(&a->ctl_mu);
	return r;
}

cJSON *api_control_status(api *a, unsigned *http_status, char *err, size_t errlen)
{
	int64_t now = clock_mono_ms();
	cJSON *r = NULL;
	pthread_mutex_lock(&a->ctl_mu);
	if (a->status_cache && now - a->status_cache_ms < API_STATUS_CACHE_MS)
		r = cJSON_Parse(a->status_cache);
	if (r == NULL) {
		r = control_locked(a, "{\"cmd\": \"status\"}", http_status, err, errlen);
		free(a->status_cache);
		a->status_cache = r ? cJSON_PrintUnformatted(r) : NULL;
		a->status_cache_ms = now;
	}
	pthread_mutex_unlock(&a->ctl_mu);
	return r;
}

/* ---- the event stream (GET /api/v1/runs/{id}/events?follow=1) ---- */

#define STREAM_POLL_MS      200
#define STREAM_KEEPALIVE_MS 10000

typedef struct {
	api *a;
	int64_t run_id;
	char cid[128];
	int64_t after;
	char *buf;
	size_t len, off, cap;
	char terminal[3][192]; /* "event": "<task>_complete" and the others (follow.c) */
	bool saw_terminal;
	int64_t finished_ms; /* when the run was first seen ended; 0 not yet */
	bool ended;
	int64_t last_send_ms;
	char final_status[32];
} sse;

static void sse_append(sse *s, const char *text, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		size_t cap = (s->len + n + 1) * 2;
		char *b = realloc(s->buf, cap);
		if (b == NULL)
			return;
		s->buf = b;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, text, n);
	s->len += n;
}

static int sse_event(void *ctx, int64_t id, const char *json)
{
	sse *s = ctx;
	char head[48];
	int n = snprintf(head, sizeof head, "id: %lld\ndata: ", (long long)id);
	sse_append(s, head, (size_t)n);
	sse_append(s, json, strlen(json)); /* one line: the events are JSON lines */
	sse_append(s, "\n\n", 2);
	s->after = id;
	for (int i = 0; i < 3; i++)
		s->saw_terminal |= s->terminal[i][0] && strstr(json, s->terminal[i]) != NULL;
	return 0;
}

static int sse_run_status(void *ctx, const run_row *row)
{
	static const char *const suffix[] = {"complete", "failed", "skipped"};
	sse *s = ctx;
	snprintf(s->final_status, sizeof s->final_status, "%s", run_status_name(row->status));
	for (int i = 0; i < 3; i++)
		snprintf(s->terminal[i], sizeof s->terminal[i], "\"event\": \"%.128s_%s\"",
		         row->task, suffix[i]);
	return row->status == RUN_RUNNING ? 0 : 1;
}

/* One look at the store: new events, and whether the run has ended. The
 * stream ends once the run's row has ended and its terminal event was
 * stored (the writer commits at least every 250 ms), or STREAM_QUIET_MS
 * after the end without one (a run whose events were dropped). */
#define STREAM_QUIET_MS 5000
static void sse_poll(sse *s)
{
	char err[256];
	store *st = api_store_take(s->a, err, sizeof err);
	if (st == NULL)
		return;
	bool finished = runs_get(st, s->run_id, sse_run_status, s) == 1;
	events_trace(st, s->cid, s->after, sse_event, s);
	api_store_give(s->a, st);
	int64_t now = clock_mono_ms();
	if (finished && s->finished_ms == 0)
		s->finished_ms = now;
	if (finished && (s->saw_terminal || now - s->finished_ms > STREAM_QUIET_MS)) {
		char end[96];
		int n = snprintf(end, sizeof end, "event: end\ndata: {\"status\": \"%s\"}\n\n",
		                 s->final_status);
		sse_append(s, end, (size_t)n);
		s->ended = true;
	}
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	sse *s = cls;
	(void)pos;
	while (s->off == s->len) {
		s->off = s->len = 0;
		if (s->ended)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (__atomic_load_n(&s->a->stopping, __ATOMIC_ACQUIRE)) {
			static const char bye[] =
			        "event: end\ndata: {\"status\": \"daemon_stopping\"}\n\n";
			sse_append(s, bye, sizeof bye - 1);
			s->ended = true;
			break;
		}
		sse_poll(s);
		if (s->len > 0)
			break;
		int64_t now = clock_mono_ms();
		if (now - s->last_send_ms >= STREAM_KEEPALIVE_MS) {
			sse_append(s, ": keepalive\n\n", 13);
			break;
		}
		struct timespec ts = {.tv_sec = 0, .tv_nsec = STREAM_POLL_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	size_t n = s->len - s->off < max ? s->len - s->off : max;
	memcpy(out, s->buf + s->off, n);
	s->off += n;
	s->last_send_ms = clock_mono_ms();
	return (ssize_t)n;
}

static void sse_free(void *cls)
{
	sse *s = cls;
	free(s->buf);
	free(s);
}

static struct MHD_Response *stream_response(api *a, const api_resp *rs)
{
	sse *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->a = a;
	s->run_id = rs->stream_run_id;
	s->after = rs->stream_after;
	s->last_send_ms = clock_mono_ms();
	snprintf(s->cid, sizeof s->cid, "%s", rs->stream_cid);
	/* an opening comment: the client sees the stream at once */
	sse_append(s, ": stream\n\n", 10);
	struct MHD_Response *r =
	        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free);
	if (r == NULL)
		sse_free(s);
	return r;
}

/* ---- one request ---- */

typedef struct {
	int64_t start_us;
	char *body;
	size_t len;
	bool too_big;
} req_ctx;

static void client_address(struct MHD_Connection *conn, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	snprintf(out, cap, "local");
	if (ci == NULL || ci->client_addr == NULL)
		return;
	const struct sockaddr *sa = ci->client_addr;
	socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                          : sizeof(struct sockaddr_in);
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return;
	getnameinfo(sa, len, out, (socklen_t)cap, NULL, 0, NI_NUMERICHOST);
}

static bool is_public(const api *a, const char *method, const char *url)
{
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return false;
	return strcmp(url, "/healthz") == 0 || strcmp(url, "/") == 0 ||
	       strcmp(url, "/app.js") == 0 || strcmp(url, "/app.css") == 0 ||
	       (a->public_status && strcmp(url, "/api/v1/overview") == 0);
}

/* Step 3: 0 to go on (rq->token set, or NULL on a public path), -1 with rs
 * filled. */
static int authenticate(api *a, api_req *rq, api_resp *rs)
{
	const char *h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Authorization");
	int retry = 0;
	double now = clock_wall();
	bool public_path = is_public(a, rq->method, rq->path);
	if (h == NULL && public_path)
		return 0;
	if (api_limiter_blocked(&a->limiter, rq->client, now, &retry)) {
		rs->retry_after = retry;
		api_reply_error(rs, MHD_HTTP_TOO_MANY_REQUESTS, "rate_limited",
		                "too many failed authentications from this address; retry in %d s",
		                retry);
		return -1;
	}
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || h[7] == '\0') {
		api_reply_error(rs, MHD_HTTP_UNAUTHORIZED, "unauthorized",
		                "an Authorization: Bearer token is required");
		return -1;
	}
	rq->token = api_tokens_match(a->tokens, a->ntokens, h + 7);
	if (rq->token == NULL) {
		api_limiter_fail(&a->limiter, rq->client, now);
		api_reply_error(rs, MHD_HTTP_UNAUTHORIZED, "unauthorized", "invalid token");
		return -1;
	}
	return 0;
}

static void handle(api *a, api_req *rq, api_resp *rs, const req_ctx *rc)
{
	const char *cid =
	        MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "X-Correlation-ID");
	if (rc->too_big) {
		api_reply_error(rs, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
		                "the request body is over %zu bytes", a->max_body);
		return;
	}
	if (cid && !runner_correlation_id_valid(cid)) {
		api_reply_error(rs, MHD_HTTP_BAD_REQUEST, "invalid_correlation_id",
		                "X-Correlation-ID: 1 to %d of A-Z a-z 0-9 . _ : -",
		                RUNNER_CORRELATION_GIVEN_MAX);
		return;
	}
	if (cid) {
		rq->given_cid = cid;
		snprintf(rs->correlation_id, sizeof rs->correlation_id, "%s", cid);
	}
	if (authenticate(a, rq, rs) != 0)
		return;
	api_route(rq, rs);
}

static void add_headers(struct MHD_Response *r, const api_resp *rs)
{
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rs->content_type);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (strncmp(rs->content_type, "text/html", 9) == 0)
		MHD_add_response_header(r, "Content-Security-Policy",
		                        "default-src 'none'; script-src 'self'; style-src 'self'; "
		                        "connect-src 'self'; img-src 'self' data:; "
		                        "frame-ancestors 'none'");
	if (rs->correlation_id[0])
		MHD_add_response_header(r, "X-Correlation-ID", rs->correlation_id);
	if (rs->status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		                        "Bearer realm=\"fleetkeeper\"");
	if (rs->allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, rs->allow);
	if (rs->retry_after > 0) {
		char v[16];
		snprintf(v, sizeof v, "%d", rs->retry_after);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
	}
}

/* Under the request's correlation id when it has one: `trace ID` then shows
 * the request beside the run it started. */
static void log_request(const api_req *rq, const api_resp *rs, double ms)
{
	size_t plen = strlen(rq->path);
	if (rs->correlation_id[0])
		log_bind(LOG_STR("correlation_id", rs->correlation_id));
	log_info(API_LOGGER, "http_request", LOG_STR("method", rq->method),
	         LOG_STRN("path", rq->path, plen > 256 ? 256 : plen), LOG_STR("route", rs->route),
	         LOG_INT("status_code", rs->status), LOG_DBL("duration_ms", ms),
	         LOG_STR("caller", rq->token ? rq->token->name : NULL),
	         LOG_STR("client", rq->client));
	if (rs->correlation_id[0])
		log_unbind("correlation_id");
}

static enum MHD_Result respond(api *a, api_req *rq, api_resp *rs, const req_ctx *rc)
{
	struct MHD_Response *r;
	if (rs->stream) {
		r = stream_response(a, rs);
		rs->content_type = "text/event-stream";
	} else {
		size_t n = rs->body ? strlen(rs->body) : 0;
		if (rs->content_type == NULL)
			rs->content_type = "application/json";
		r = MHD_create_response_from_buffer(n, rs->body, MHD_RESPMEM_MUST_FREE);
		if (r)
			rs->body = NULL;
	}
	double ms = (double)(clock_wall_usec() - rc->start_us) / 1000.0;
	if (rs->route == NULL)
		rs->route = "other";
	log_request(rq, rs, ms);
	metrics_api_request(rs->route, (int)rs->status, ms / 1000.0, rs->stream);
	free(rs->body);
	if (r == NULL)
		return MHD_NO;
	add_headers(r, rs);
	enum MHD_Result ret = MHD_queue_response(rq->conn, rs->status, r);
	MHD_destroy_response(r);
	return ret;
}

/* The body so far; beyond max_body it is read and dropped. */
static void take_body(api *a, req_ctx *rc, const char *data, size_t n)
{
	if (rc->too_big || rc->len + n > a->max_body) {
		rc->too_big = true;
		return;
	}
	char *b = realloc(rc->body, rc->len + n + 1);
	if (b == NULL) {
		rc->too_big = true;
		return;
	}
	memcpy(b + rc->len, data, n);
	rc->len += n;
	b[rc->len] = '\0';
	rc->body = b;
}

static bool length_over(api *a, struct MHD_Connection *conn)
{
	const char *cl =
	        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	char *end = NULL;
	if (cl == NULL)
		return false;
	errno = 0;
	unsigned long long v = strtoull(cl, &end, 10);
	return errno != 0 || v > a->max_body;
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls)
{
	api *a = cls;
	req_ctx *rc = *req_cls;
	(void)version;
	if (rc == NULL) {
		rc = calloc(1, sizeof *rc);
		if (rc == NULL)
			return MHD_NO;
		rc->start_us = clock_wall_usec();
		*req_cls = rc;
		if (!length_over(a, conn))
			return MHD_YES;
		rc->too_big = true; /* answered now: the body is never read */
	} else if (*upload_data_size > 0) {
		take_body(a, rc, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	char client[64];
	client_address(conn, client, sizeof client);
	api_req rq = {.a = a,
	              .conn = conn,
	              .method = method,
	              .path = url,
	              .body = rc->body,
	              .body_len = rc->len,
	              .client = client};
	api_resp rs = {0};
	handle(a, &rq, &rs, rc);
	return respond(a, &rq, &rs, rc);
}

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)conn, (void)toe;
	req_ctx *rc = *req_cls;
	if (rc) {
		free(rc->body);
		free(rc);
	}
	*req_cls = NULL;
}

/* ---- binding ---- */

static int split_listen(const char *listen, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *colon = strrchr(listen, ':');
	if (!colon || colon == listen || colon[1] == '\0' || strlen(colon + 1) >= pcap)
		return -1;
	const char *h = listen;
	size_t hlen = (size_t)(colon - listen);
	if (h[0] == '[') {
		if (hlen < 2 || h[hlen - 1] != ']')
			return -1;
		h++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= hcap)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	snprintf(port, pcap, "%s", colon + 1);
	return 0;
}

static int bind_unix(api *a, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof addr.sun_path) {
		snprintf(err, errlen, "[api] listen %s: socket path too long", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(path); /* stale: the daemon lock says no other daemon owns it */
	mode_t old = umask(0177);
	int rc = fd >= 0 ? bind(fd, (struct sockaddr *)&addr, sizeof addr) : -1;
	umask(old);
	if (rc != 0 || listen(fd, API_BACKLOG) != 0) {
		snprintf(err, errlen, "[api] listen %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	a->unix_socket = true;
	snprintf(a->address, sizeof a->address, "%s", path);
	return fd;
}

static int bind_tcp(api *a, const char *listen_addr, char *err, size_t errlen)
{
	char host[256], port[16];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV},
	                *res = NULL;
	int one = 1, fd = -1, e = 0;
	if (split_listen(listen_addr, host, sizeof host, port, sizeof port) != 0) {
		snprintf(err, errlen, "[api] listen %s: expected host:port or a socket path",
		         listen_addr);
		return -1;
	}
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "[api] listen %s: %s", listen_addr, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, API_BACKLOG) != 0) {
			e = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "[api] listen %s: %s", listen_addr, strerror(e));
		return -1;
	}
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char h[256], p[16];
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, len, h, sizeof h, p, sizeof p,
	                NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(a->address, sizeof a->address,
		         ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
	return fd;
}

static bool on_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return false;
	if (ss.ss_family == AF_UNIX)
		return true;
	if (ss.ss_family == AF_INET)
		return ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24 == 127;
	if (ss.ss_family != AF_INET6)
		return false;
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
	return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

/* ---- TLS ---- */

static char *read_pem(const char *key, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	if (f == NULL) {
		snprintf(err, errlen, "[api] %s %s: %s", key, path, strerror(errno));
		return NULL;
	}
	buf = malloc(API_PEM_MAX + 1);
	size_t n = buf ? fread(buf, 1, API_PEM_MAX + 1, f) : 0;
	fclose(f);
	if (buf == NULL || n == 0 || n > API_PEM_MAX) {
		snprintf(err, errlen, "[api] %s %s: empty, or larger than %d bytes", key, path,
		         API_PEM_MAX);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static int load_tls(api *a, const config_section *sec, char *err, size_t errlen)
{
	const char *cert = sec ? config_get(sec, "tls_cert_file") : NULL;
	const char *key = sec ? config_get(sec, "tls_key_file") : NULL;
	if ((cert && *cert) != (key && *key)) {
		snprintf(err, errlen, "[api] tls_cert_file and tls_key_file go together");
		return -1;
	}
	if (!(cert && *cert))
		return 0;
	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		snprintf(err, errlen, "[api] tls_cert_file: this libmicrohttpd has no TLS support");
		return -1;
	}
	a->tls_cert = read_pem("tls_cert_file", cert, err, errlen);
	a->tls_key = a->tls_cert ? read_pem("tls_key_file", key, err, errlen) : NULL;
	if (a->tls_key == NULL)
		return -1;
	a->tls = true;
	return 0;
}

/* ---- start and stop ---- */

static struct MHD_Daemon *start_mhd(api *a)
{
	unsigned flags =
	        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
	unsigned per_ip = on_loopback(a->listen_fd) ? 0 : API_PER_IP_CONNS;
	if (a->tls)
		return MHD_start_daemon(
		        flags | MHD_USE_TLS, 0, NULL, NULL, serve, a, MHD_OPTION_LISTEN_SOCKET,
		        a->listen_fd, MHD_OPTION_CONNECTION_LIMIT, API_MAX_CONNS,
		        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
		        API_IDLE_TIMEOUT_S, MHD_OPTION_THREAD_STACK_SIZE, (size_t)API_STACK_BYTES,
		        MHD_OPTION_NOTIFY_COMPLETED, completed, a, MHD_OPTION_HTTPS_MEM_CERT,
		        a->tls_cert, MHD_OPTION_HTTPS_MEM_KEY, a->tls_key, MHD_OPTION_END);
	return MHD_start_daemon(flags, 0, NULL, NULL, serve, a, MHD_OPTION_LISTEN_SOCKET,
	                        a->listen_fd, MHD_OPTION_CONNECTION_LIMIT, API_MAX_CONNS,
	                        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
	                        MHD_OPTION_CONNECTION_TIMEOUT, API_IDLE_TIMEOUT_S,
	                        MHD_OPTION_THREAD_STACK_SIZE, (size_t)API_STACK_BYTES,
	                        MHD_OPTION_NOTIFY_COMPLETED, completed, a, MHD_OPTION_END);
}

static api *api_new(config *cfg)
{
	api *a = calloc(1, sizeof *a);
	if (a == NULL)
		return NULL;
	a->cfg = config_ref(cfg);
	a->listen_fd = -1;
	api_limiter_init(&a->limiter);
	pthread_mutex_init(&a->store_mu, NULL);
	pthread_cond_init(&a->store_cv, NULL);
	pthread_mutex_init(&a->ctl_mu, NULL);
	return a;
}

static int configure(api *a, const char *listen_addr, char *err, size_t errlen)
{
	const config_section *sec = config_section_find(a->cfg, "api");
	const char *pub = sec ? config_get(sec, "public_status") : NULL;
	const char *maxb = sec ? config_get(sec, "max_body_bytes") : NULL;
	bool flag = false;
	long v = 65536;
	if (pub && config_parse_bool(pub, &flag) == 0)
		a->public_status = flag;
	if (maxb)
		config_parse_int(maxb, 1024, 1048576, &v);
	a->max_body = (size_t)v;
	if (api_tokens_load(a->cfg, &a->tokens, &a->ntokens, err, errlen) != 0)
		return -1;
	if (a->ntokens == 0 && !a->public_status) {
		snprintf(err, errlen, "no [api.token.NAME] and public_status is false");
		return API_NOT_STARTED;
	}
	if (load_tls(a, sec, err, errlen) != 0)
		return -1;
	a->listen_fd = listen_addr[0] == '/' ? bind_unix(a, listen_addr, err, errlen)
	                                     : bind_tcp(a, listen_addr, err, errlen);
	return a->listen_fd < 0 ? -1 : 0;
}

int api_start(api **out, config *cfg, char *err, size_t errlen)
{
	const char *listen_addr = api_listen_address(cfg);
	*out = NULL;
	if (listen_addr == NULL) {
		snprintf(err, errlen, "[api] listen is empty");
		return API_NOT_STARTED;
	}
	api *a = api_new(cfg);
	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = configure(a, listen_addr, err, errlen);
	if (rc == 0) {
		a->mhd = start_mhd(a);
		if (a->mhd == NULL) {
			snprintf(err, errlen, "[api] listen %s: cannot start the HTTP server",
			         listen_addr);
			rc = -1;
		}
	}
	if (rc != 0) {
		api_stop(a);
		return rc;
	}
	*out = a;
	return 0;
}

void api_stop(api *a)
{
	if (a == NULL)
		return;
	__atomic_store_n(&a->stopping, 1, __ATOMIC_RELEASE);
	if (a->mhd)
		MHD_stop_daemon(a->mhd); /* closes listen_fd; waits for the streams */
	else if (a->listen_fd >= 0)
		close(a->listen_fd);
	if (a->unix_socket)
		unlink(a->address);
	for (size_t i = 0; i < API_STORES; i++)
		store_close(a->stores[i]);
	if (a->tokens)
		memset(a->tokens, 0, a->ntokens * sizeof *a->tokens);
	free(a->tokens);
	free(a->tls_cert);
	if (a->tls_key) {
		memset(a->tls_key, 0, strlen(a->tls_key));
		free(a->tls_key);
	}
	free(a->status_cache);
	api_limiter_destroy(&a->limiter);
	pthread_mutex_destroy(&a->store_mu);
	pthread_cond_destroy(&a->store_cv);
	pthread_mutex_destroy(&a->ctl_mu);
	config_unref(a->cfg);
	free(a);
}
