/*
 * api — the HTTP API and the status page (docs/api.md), on libmicrohttpd
 * with a thread per connection, its own listener ([api] listen, default
 * 127.0.0.1:9465, a unix socket path allowed, empty: off) and optionally
 * TLS through libmicrohttpd's GnuTLS ([api] tls_cert_file, tls_key_file).
 *
 *   GET /healthz          no token
 *   GET /                 the status page (its code: it shows nothing
 *                         without a read token, unless public_status)
 *   /api/v1/...           JSON, a bearer token of [api.token.NAME] with the
 *                         route's scope (read < operate < admin)
 *
 * Operations that the loop owns (trigger, recover, the live task state) go
 * to the daemon's control socket, as the CLI's do (daemon_control.c);
 * reads and the operator's store changes (incidents, maintenance,
 * services) go through the domain modules on the API's own store
 * connections, as the CLI's do.
 *
 * Threads: api_start and api_stop on the loop thread; requests on
 * libmicrohttpd's threads, one per connection (at most API_MAX_CONNS).
 * Errors: api_start returns 0 (started), API_NOT_STARTED (nothing to
 * serve: no token and no public status page; err says why) or -1 with
 * err set. Requests are logged as http_request, one line each.
 * Ownership: the handle from start is freed by stop; cfg is referenced
 * until then (tokens, paths: a reload does not change them).
 */
#ifndef FK_API_H
#define FK_API_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define API_DEFAULT_LISTEN "127.0.0.1:9465"
#define API_LOGGER         "api"

enum { API_NOT_STARTED = 1 };

typedef struct api api;

/* [api] listen: the default when absent, NULL when set empty. */
const char *api_listen_address(const config *cfg);

int api_start(api **out, config *cfg, char *err, size_t errlen);
/* Ends the streams, waits for the connections' threads. NULL is fine. */
void api_stop(api *a);

/* "127.0.0.1:9465", or the unix socket's path. */
const char *api_address(const api *a);
bool api_uses_tls(const api *a);

#endif
