/*
 * metrics_http — see metrics_http.h.
 *
 * The listening socket is bound here (so that "address in use" comes back
 * as a clear error) and handed to libmicrohttpd, which serves it from two
 * threads (start_server): requests are handled one at a time (serve holds
 * a mutex around each), so its two store connections need no other lock.
 *
 * The liveness probe: the HTTP thread bumps `asked` and writes 1 to the
 * eventfd; the loop, woken by it, drains the eventfd and copies `asked`
 * into `answered` under the mutex and broadcasts. The probe is answered
 * when `answered` reaches the value it asked for, within PROBE_LOOP_MS. A
 * loop that never returns to epoll_wait (a blocked or crashed loop) fails
 * the probe; an idle loop answers at once, whatever its next timer.
 */
#include "metrics_http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "clock.h"
#include "metrics.h"
#include "store.h"

#define PROBE_LOOP_MS 1000
/* The write probe's busy timeout, set on its own connection: the store's
 * 5 s default would hold /healthz that long. */
#define PROBE_BUSY_TIMEOUT_MS 500
#define CONTENT_TYPE          "text/plain; version=0.0.4; charset=utf-8"

struct metrics_http {
	struct MHD_Daemon *mhd;
	int listen_fd;
	int probe_fd;
	char address[300];
	char *db_path;

	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	uint64_t asked;    /* guarded by mu */
	uint64_t answered; /* guarded by mu */

	/* Inside serve only (one request at a time). */
	store *ro; /* the gauges */
	store *rw; /* the write probe */
};

const char *metrics_listen_address(const config *cfg)
{
	const config_section *sec = config_section_find(cfg, "metrics");
	const char *v = sec ? config_get(sec, "listen") : NULL;
	if (v == NULL)
		return METRICS_DEFAULT_LISTEN;
	return v[0] ? v : NULL;
}

/* ---- binding ---- */

/* "host:port" or "[v6]:port" into host and port. */
static int split_listen(const char *listen, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *colon = strrchr(listen, ':');
	if (!colon || colon == listen || strlen(colon + 1) >= pcap || colon[1] == '\0')
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

/* Room for a burst of connections while both threads are busy: a SYN that
 * finds the queue full is dropped and retried by the client only after 1 s. */
#define LISTEN_BACKLOG 1024

static int bind_one(const struct addrinfo *ai)
{
	int one = 1;
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int bind_listen(const char *listen, char *err, size_t errlen)
{
	char host[256], port[16];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV},
	                *res = NULL;
	if (split_listen(listen, host, sizeof host, port, sizeof port) != 0) {
		snprintf(err, errlen, "[metrics] listen %s: expected host:port", listen);
		return -1;
	}
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "[metrics] listen %s: %s", listen, gai_strerror(rc));
		return -1;
	}
	int fd = -1, e = 0;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = bind_one(ai);
		e = errno;
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(err, errlen, "[metrics] listen %s: %s", listen, strerror(e));
	return fd;
}

/* ---- /healthz ---- */

static bool loop_answers(metrics_http *h)
{
	int64_t until_ms = clock_mono_ms() + PROBE_LOOP_MS; /* cv waits on CLOCK_MONOTONIC */
	struct timespec until = {.tv_sec = until_ms / 1000,
	                         .tv_nsec = (long)(until_ms % 1000) * 1000000L};
	uint64_t one = 1;
	bool ok;

	pthread_mutex_lock(&h->mu);
	uint64_t want = ++h->asked;
	ssize_t n = write(h->probe_fd, &one, sizeof one);
	(void)n;
	while (h->answered < want)
		if (pthread_cond_timedwait(&h->cv, &h->mu, &until) == ETIMEDOUT)
			break;
	ok = h->answered >= want;
	pthread_mutex_unlock(&h->mu);
	return ok;
}

void metrics_http_probe_ack(metrics_http *h)
{
	uint64_t v;
	if (!h)
		return;
	while (read(h->probe_fd, &v, sizeof v) == (ssize_t)sizeof v)
		;
	pthread_mutex_lock(&h->mu);
	h->answered = h->asked;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* Take the write lock and give it back (store_write_probe) on the HTTP
 * thread's own read-write connection: fails when another connection holds
 * it past 500 ms, or the file or directory is read-only. why gets the
 * store's message. */
static bool store_writable(metrics_http *h, char *why, size_t whylen)
{
	if (!h->rw) {
		if (!store_location_is_pg(h->db_path) &&
		    access(h->db_path, F_OK) != 0) { /* never create it here */
			snprintf(why, whylen, "%s: %s", h->db_path, strerror(errno));
			return false;
		}
		int code = store_open(&h->rw, h->db_path, why, whylen);
		if (code != STORE_OK) {
			store_close(h->rw);
			h->rw = NULL;
			return false;
		}
		store_set_busy_timeout(h->rw, PROBE_BUSY_TIMEOUT_MS);
	}
	if (store_file_replaced(h->rw)) {
		store_fail(h->rw, STORE_ERROR, NULL, why, whylen);
		return false;
	}
	int code = store_write_probe(h->rw);
	if (code != STORE_OK)
		store_fail(h->rw, code, NULL, why, whylen);
	return code == STORE_OK;
}

/* The probe alone cannot see a full disk (taking the lock writes nothing):
 * the event writer's last outcome can. */
static bool store_healthy(metrics_http *h, char *why, size_t whylen)
{
	char msg[480];
	if (metrics_store_writer_failing(msg, sizeof msg)) {
		snprintf(why, whylen, "event writer: %s", msg);
		return false;
	}
	return store_writable(h, why, whylen);
}

static char *health_body(metrics_http *h, unsigned *status)
{
	char why[512] = "";
	bool loop_ok = loop_answers(h);
	bool store_ok = store_healthy(h, why, sizeof why);
	metrics_buf b = {0};

	*status = loop_ok && store_ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
	metrics_buf_printf(&b, "{\"status\": \"%s\", \"loop\": %s, \"store\": %s",
	                   *status == MHD_HTTP_OK ? "ok" : "unavailable",
	                   loop_ok ? "true" : "false", store_ok ? "true" : "false");
	if (!store_ok) { /* the message may hold the path: escaped */
		metrics_buf_printf(&b, ", \"store_error\": \"");
		metrics_buf_label(&b, why);
		metrics_buf_printf(&b, "\"");
	}
	/* The cluster's role (cluster.h): a standby is healthy too. */
	bool leader;
	char leader_name[128], self[128];
	if (metrics_cluster_get(&leader, leader_name, sizeof leader_name, self, sizeof self)) {
		metrics_buf_printf(&b, ", \"role\": \"%s\", \"instance\": \"",
		                   leader ? "leader" : "standby");
		metrics_buf_label(&b, self);
		if (leader_name[0]) {
			metrics_buf_printf(&b, "\", \"leader\": \"");
			metrics_buf_label(&b, leader_name);
			metrics_buf_printf(&b, "\"");
		} else {
			metrics_buf_printf(&b, "\", \"leader\": null");
		}
	}
	metrics_buf_printf(&b, "}\n");
	return b.data;
}

/* ---- /metrics ---- */

static char *metrics_body(metrics_http *h)
{
	char err[512];
	metrics_buf b = {0};
	if (!h->ro && store_open_readonly(&h->ro, h->db_path, err, sizeof err) != STORE_OK)
		h->ro = NULL;
	metrics_render(&b, h->ro);
	if (b.failed) {
		metrics_buf_free(&b);
		return NULL;
	}
	return b.data;
}

/* ---- requests ---- */

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, char *body,
                               const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(body ? strlen(body) : 0, body,
	                                                         MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static char *text(const char *s)
{
	return strdup(s);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
	metrics_http *h = cls;
	unsigned status = MHD_HTTP_OK;

	(void)version;
	(void)upload_data;
	(void)req_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		*upload_data_size = 0;
		return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text("GET only\n"), "text/plain");
	}
	if (strcmp(url, "/metrics") == 0) {
		char *body = metrics_body(h);
		if (!body)
			return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
			               text("out of memory\n"), "text/plain");
		return respond(conn, MHD_HTTP_OK, body, CONTENT_TYPE);
	}
	if (strcmp(url, "/healthz") == 0) {
		char *body = health_body(h, &status);
		return respond(conn, status, body, "application/json");
	}
	if (strcmp(url, "/") == 0)
		return respond(conn, MHD_HTTP_OK, text("fleetkeeper: /metrics /healthz\n"),
		               "text/plain");
	return respond(conn, MHD_HTTP_NOT_FOUND, text("not found\n"), "text/plain");
}

/* ---- start and stop ---- */

static void bound_address(metrics_http *h)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char host[256], port[16];
	if (getsockname(h->listen_fd, (struct sockaddr *)&ss, &len) != 0 ||
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, port, sizeof port,
	                NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return;
	snprintf(h->address, sizeof h->address, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
	         host, port);
}

static metrics_http *http_new(const char *listen, const char *db_path)
{
	pthread_condattr_t ca;
	metrics_http *h = calloc(1, sizeof *h);
	if (!h)
		return NULL;
	h->listen_fd = -1;
	h->probe_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h->db_path = strdup(db_path);
	snprintf(h->address, sizeof h->address, "%s", listen);
	pthread_mutex_init(&h->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (h->probe_fd < 0 || !h->db_path) {
		metrics_http_stop(h);
		return NULL;
	}
	return h;
}

/* ---- the server and its limits (docs/observability.md, "Limits") ----
 *
 * Event-driven (epoll): an idle or trickling connection costs a slot and a
 * descriptor, never a thread. A connection idle for HTTP_IDLE_TIMEOUT_S is
 * closed; a client trickling bytes is not (the timeout counts inactivity),
 * so what bounds trickling clients is the per-address quota and the total.
 * Beyond its quota an address's connections are accepted and closed at
 * once; at the total, libmicrohttpd stops accepting and new clients wait in
 * the listen backlog. On a loopback address there is no quota: every client
 * is local and may connect from any address of 127/8, so a quota would stop
 * no one and would let one local client, connecting from 127.0.0.1 as the
 * scraper does, take the scraper's share. HTTP_THREADS threads share the
 * connections (the total is split between them), so one busy with a
 * request, or with a burst of connections, leaves the other accepting;
 * requests are still served one at a time (serve), as the two store
 * connections are not shared. */
#define HTTP_IDLE_TIMEOUT_S 5u
#define HTTP_PER_IP_LIMIT   16u   /* not on loopback */
#define HTTP_MAX_CONNS      1024u /* and at most half the soft RLIMIT_NOFILE */
#define HTTP_MIN_CONNS      16u
#define HTTP_THREADS        2u

static pthread_mutex_t serve_mu = PTHREAD_MUTEX_INITIALIZER;

static enum MHD_Result serve(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls)
{
	pthread_mutex_lock(&serve_mu);
	enum MHD_Result r =
	        handle(cls, conn, url, method, version, upload_data, upload_data_size, req_cls);
	pthread_mutex_unlock(&serve_mu);
	return r;
}

/* Half the descriptors the process may open, so that a flood of
 * connections leaves the other half to the store, tasks and sockets. */
static unsigned connection_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur / 2 >= HTTP_MAX_CONNS)
		return HTTP_MAX_CONNS;
	return rl.rlim_cur / 2 > HTTP_MIN_CONNS ? (unsigned)(rl.rlim_cur / 2) : HTTP_MIN_CONNS;
}

static bool on_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return false;
	if (ss.ss_family == AF_INET)
		return ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24 == 127;
	if (ss.ss_family != AF_INET6)
		return false;
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
	return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

static struct MHD_Daemon *start_server(metrics_http *h)
{
	unsigned per_ip = on_loopback(h->listen_fd) ? 0 : HTTP_PER_IP_LIMIT; /* 0: none */
	return MHD_start_daemon(
	        MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, serve, h,
	        MHD_OPTION_LISTEN_SOCKET, h->listen_fd, MHD_OPTION_THREAD_POOL_SIZE, HTTP_THREADS,
	        MHD_OPTION_CONNECTION_LIMIT, connection_limit(), MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	        per_ip, MHD_OPTION_CONNECTION_TIMEOUT, HTTP_IDLE_TIMEOUT_S, MHD_OPTION_END);
}

int metrics_http_start(metrics_http **out, const char *listen, const char *db_path, char *err,
                       size_t errlen)
{
	*out = NULL;
	metrics_http *h = http_new(listen, db_path);
	if (!h) {
		snprintf(err, errlen, "[metrics] listen %s: %s", listen, strerror(errno));
		return -1;
	}
	h->listen_fd = bind_listen(listen, err, errlen);
	if (h->listen_fd < 0)
		goto fail;
	bound_address(h);
	/* The probe connection is opened now, so that it knows the file the
	 * daemon opened: a file deleted or replaced later is noticed
	 * (store_file_replaced). Failing here is left to the first probe. */
	char why[256];
	if ((store_location_is_pg(h->db_path) || access(h->db_path, F_OK) == 0) &&
	    store_open(&h->rw, h->db_path, why, sizeof why) == STORE_OK)
		store_set_busy_timeout(h->rw, PROBE_BUSY_TIMEOUT_MS);
	else
		h->rw = NULL;
	h->mhd = start_server(h);
	if (!h->mhd) {
		snprintf(err, errlen, "[metrics] listen %s: cannot start the HTTP server", listen);
		goto fail;
	}
	*out = h;
	return 0;
fail:
	metrics_http_stop(h);
	return -1;
}

void metrics_http_stop(metrics_http *h)
{
	if (!h)
		return;
	if (h->mhd)
		MHD_stop_daemon(h->mhd); /* closes listen_fd too */
	else if (h->listen_fd >= 0)
		close(h->listen_fd);
	if (h->probe_fd >= 0)
		close(h->probe_fd);
	store_close(h->ro);
	store_close(h->rw);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
	free(h->db_path);
	free(h);
}

const char *metrics_http_address(const metrics_http *h)
{
	return h ? h->address : "";
}

int metrics_http_probe_fd(const metrics_http *h)
{
	return h ? h->probe_fd : -1;
}
