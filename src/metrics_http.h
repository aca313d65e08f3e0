/*
 * metrics_http — the daemon's HTTP endpoint for Prometheus, on
 * libmicrohttpd with two threads of its own, which answer requests one at a
 * time and bound what a flood of connections can hold (metrics_http.c,
 * "the server and its limits"):
 *
 *   GET /metrics   the registry of metrics.h, process_* and the store gauges,
 *                  in the Prometheus text format 0.0.4
 *   GET /healthz   200 {"status": "ok", ...} when the loop answers a probe
 *                  within 1 s, the event writer's last write succeeded and
 *                  the store takes a write lock within 500 ms; 503 with the
 *                  failing check otherwise
 *
 * The HTTP thread owns two store connections of its own, opened on first
 * use: a read-only one for the gauges and a read-write one for the
 * write-lock probe (store_write_probe, 500 ms busy timeout). Serving never
 * touches the loop's structures: the liveness probe is an eventfd the loop
 * watches (metrics_http_probe_fd) and answers with metrics_http_probe_ack.
 *
 * Threads: start, stop and probe_ack on the loop thread; everything else
 * runs on the HTTP threads, one request at a time ("the HTTP thread" below
 * and in metrics_http.c: whichever of them holds the request).
 * Errors: start returns 0 or -1 with err set. Nothing is logged: a store
 * that cannot be read shows as fleetkeeper_store_scrape_error, one that
 * cannot be written as a 503 naming the store's error.
 * Ownership: the handle from start is freed by stop; the address string is
 * borrowed from the handle.
 */
#ifndef FK_METRICS_HTTP_H
#define FK_METRICS_HTTP_H

#include <stddef.h>

#include "config.h"

#define METRICS_DEFAULT_LISTEN "127.0.0.1:9464"

typedef struct metrics_http metrics_http;

/* [metrics] listen: the default when the key is absent, NULL when it is
 * set empty (the endpoint is off). Borrowed from cfg or static. */
const char *metrics_listen_address(const config *cfg);

/* Bind listen ("host:port", "[::1]:port") and start serving. db_path is
 * the state store. On failure (address in use, bad address) *out is NULL
 * and err says why. */
int metrics_http_start(metrics_http **out, const char *listen, const char *db_path, char *err,
                       size_t errlen);
/* Stops the thread, closes the socket and the connections. NULL is fine. */
void metrics_http_stop(metrics_http *h);

/* The bound address, e.g. "127.0.0.1:9464". */
const char *metrics_http_address(const metrics_http *h);

/* The eventfd the loop watches (EPOLLIN); -1 for NULL. */
int metrics_http_probe_fd(const metrics_http *h);
/* The loop saw probe_fd readable: drain it and answer the probes. */
void metrics_http_probe_ack(metrics_http *h);

#endif
