/*
 * control — the daemon's control socket: a unix stream socket in the state
 * directory (mode 0600), one JSON object per line each way.
 *
 * Requests: {"cmd": "ping"}, {"cmd": "status"}, {"cmd": "trigger", "task":
 * "NAME"} (and "correlation_id": the run's, as the HTTP API passes
 * X-Correlation-ID; recover takes it too). Every reply has "ok": true|false and, when false,
 * "error". A malformed request gets an error reply (so does one that is not valid UTF-8 or holds a
 * NUL, raw or as \u0000); a request line over CONTROL_MAX_REQUEST bytes gets an error reply and the
 * connection is closed; a client that makes no progress (reads nothing, sends nothing) for
 * CONTROL_IDLE_MS is disconnected; at most CONTROL_MAX_CLIENTS at once.
 * Replies are always valid UTF-8 JSON. Nothing a client sends can stop the
 * daemon or delay its timers: a client whose replies pile up past
 * CONTROL_MAX_PENDING is not answered until it reads, and one wakeup answers
 * at most CONTROL_BATCH of its requests.
 *
 * Threads: the server side belongs to the loop thread; control_request is
 * for any thread. Errors: 0 or a negative code with a message in err.
 * Ownership: replies (both sides) are malloc'd and belong to the receiver.
 */
#ifndef FK_CONTROL_H
#define FK_CONTROL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "wheel.h"

#define CONTROL_MAX_REQUEST      65536
#define CONTROL_MAX_CLIENTS      64
#define CONTROL_IDLE_MS          30000
#define CONTROL_MAX_PENDING      65536 /* unread reply bytes before a client is paused */
#define CONTROL_BATCH            8     /* requests answered per client per wakeup */
#define CONTROL_REPLY_TIMEOUT_MS 10000 /* control_request: connect + reply */

enum { CONTROL_NO_DAEMON = -2 };

/* ---- client ---- */

/* Send one request line and read one reply line (malloc'd into *reply, to
 * free), all within CONTROL_REPLY_TIMEOUT_MS (a stopped daemon with a full
 * backlog included). CONTROL_NO_DAEMON when nothing listens on path, -1 for
 * any other failure (err says why: permission, timeout, closed). */
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
