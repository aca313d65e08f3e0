/*
 * control — the daemon's control socket: a unix stream socket in the state
 * directory (mode 0600), one JSON object per line each way.
 *
 * Requests: {"cmd": "ping"}, {"cmd": "status"}, {"cmd": "trigger", "task":
 * "NAME"}. Every reply has "ok": true|false and, when false, "error". A
 * malformed request gets an error reply; a request line over
 * CONTROL_MAX_REQUEST bytes gets an error reply and the connection is closed;
 * a client idle for CONTROL_IDLE_MS is disconnected; at most
 * CONTROL_MAX_CLIENTS at once. Nothing a client sends can stop the daemon.
 *
 * Threads: the server side belongs to the loop thread.
 */
#ifndef FK_CONTROL_H
#define FK_CONTROL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "wheel.h"

#define CONTROL_MAX_REQUEST 65536
#define CONTROL_MAX_CLIENTS 64
#define CONTROL_IDLE_MS     30000

enum { CONTROL_NO_DAEMON = -2 };

/* ---- client ---- */

/* Send one request line and read one reply line (malloc'd into *reply, to
 * free). CONTROL_NO_DAEMON when nothing listens on path (err says why). */
int control_request(const char *path, const char *request, char **reply, char *err, size_t errlen);

/* ---- server ---- */

typedef struct control control;

/* Answer one request: return a malloc'd JSON reply (no newline). */
typedef char *(*control_handler)(void *ctx, const cJSON *request);

int control_open(control **out, const char *path, wheel *w, control_handler handler, void *ctx,
                 char *err, size_t errlen);
/* An fd to watch for reading (an epoll set of its own). */
int control_fd(const control *c);
/* Handle whatever is ready; never blocks. now: monotonic ms. */
void control_dispatch(control *c, uint64_t now);
/* Close every client and the socket, unlink it. NULL is fine. */
void control_close(control *c);

/* A JSON error reply: {"ok": false, "error": msg}. */
char *control_error_reply(const char *msg);

#endif
