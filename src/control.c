/*
 * control — see control.h.
 *
 * Server invariants:
 *  1. Each client has one input buffer (never above CONTROL_MAX_REQUEST),
 *     one pending output buffer and one idle timer on the loop's wheel.
 *  2. No request is answered while the client's pending replies are over
 *     CONTROL_MAX_PENDING, and nothing more is read from it while a complete
 *     line waits: a client that never reads costs at most one input buffer
 *     plus CONTROL_MAX_PENDING plus one reply.
 *  3. One wakeup of a client does at most one recv and answers at most
 *     CONTROL_BATCH requests; lines left over are answered at later wakeups
 *     (EPOLLOUT, level-triggered), so the loop's timers run in between.
 *  4. Every reply is valid UTF-8 (ill-formed bytes become U+FFFD), and a
 *     request that is not valid UTF-8 or holds a NUL is refused unread.
 *  5. A client is freed in exactly one place (client_close), which also
 *     cancels its timer and removes its fd from the epoll set.
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "file_modes.h"
#include "looptimer.h"
#include "utf8.h"

typedef struct client {
	looptimer idle; /* first member: container_of from the timer */
	struct client *next;
	struct control *owner;
	int fd;
	char *in;
	size_t in_len;
	char *out;
	size_t out_len, out_off;
	bool eof;     /* the client sent EOF: answer what is complete, then close */
	bool closing; /* close once out is written */
} client;

struct control {
	int listen_fd;
	int epoll_fd;
	char *path;
	wheel *w;
	control_handler handler;
	void *ctx;
	client *clients;
	int nclients;
	uint64_t now;
};

char *control_error_reply(const char *msg)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddFalseToObject(r, "ok");
	cJSON_AddStringToObject(r, "error", msg);
	char *s = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return s;
}

/* ---- text checks: replies must be valid JSON, and cJSON prints bytes raw ---- */

/* A \u0000 escape inside a JSON string of text: cJSON would decode it into
 * a NUL that ends the C string early ("status\u0000x" would read "status"). */
static bool json_has_nul_escape(const char *text)
{
	bool in_string = false;
	for (const char *p = text; *p; p++) {
		if (*p == '"') {
			in_string = !in_string;
		} else if (in_string && *p == '\\') {
			if (p[1] == 'u' && strncmp(p + 2, "0000", 4) == 0)
				return true;
			if (p[1] != '\0')
				p++; /* skip the escaped character (\" or \\) */
		}
	}
	return false;
}

/* ---- client side ---- */

/* A blocking connect that gives up at deadline: a unix connect waits while
 * the listener's backlog is full (a stopped daemon), for SO_SNDTIMEO. */
static int connect_unix(const char *path, int64_t deadline, char *err, size_t errlen)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof addr.sun_path) {
		snprintf(err, errlen, "control socket path too long: %s", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int64_t left = deadline - clock_mono_ms();
	struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
		int e = errno;
		if (e == EAGAIN || e == EWOULDBLOCK)
			snprintf(err, errlen,
			         "control socket %s: no connection accepted within %d s "
			         "(its backlog is full)",
			         path, CONTROL_REPLY_TIMEOUT_MS / 1000);
		else if (e == EACCES) {
			char hint[300];
			file_access_hint(path, hint, sizeof hint);
			snprintf(err, errlen, "control socket %s: %s%s", path, strerror(e), hint);
		} else
			snprintf(err, errlen, "control socket %s: %s", path, strerror(e));
		close(fd);
		return (e == ENOENT || e == ECONNREFUSED) ? CONTROL_NO_DAEMON : -1;
	}
	return fd;
}

static int read_reply_line(int fd, int64_t deadline, char **reply, char *err, size_t errlen)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);

	while (buf) {
		struct pollfd p = {fd, POLLIN, 0};
		int64_t left = deadline - clock_mono_ms();
		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			snprintf(err, errlen, "no reply from the daemon within %d s",
			         CONTROL_REPLY_TIMEOUT_MS / 1000);
			break;
		}
		if (len + 1 >= cap) {
			char *bigger = cap < (1u << 24) ? realloc(buf, cap * 2) : NULL;
			if (bigger == NULL)
				break;
			buf = bigger;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n <= 0) {
			snprintf(err, errlen, "the daemon closed the connection");
			break;
		}
		len += (size_t)n;
		char *nl = memchr(buf, '\n', len);
		if (nl) {
			*nl = '\0';
			*reply = buf;
			return 0;
		}
	}
	free(buf);
	return -1;
}

int control_request(const char *path, const char *request, char **reply, char *err, size_t errlen)
{
	*reply = NULL;
	int64_t deadline = clock_mono_ms() + CONTROL_REPLY_TIMEOUT_MS;
	int fd = connect_unix(path, deadline, err, errlen);
	if (fd < 0)
		return fd;
	size_t len = strlen(request);
	char *line = malloc(len + 2);
	int rc = -1;
	if (line) {
		memcpy(line, request, len);
		line[len] = '\n';
		bool sent = send(fd, line, len + 1, MSG_NOSIGNAL) == (ssize_t)(len + 1);
		int send_errno = errno;
		/* Refused at once ("too many clients"): the reason may be
		 * waiting even though the send failed. */
		rc = read_reply_line(fd, deadline, reply, err, errlen);
		if (!sent && rc != 0)
			snprintf(err, errlen, "cannot send to the daemon: %s",
			         strerror(send_errno));
	}
	free(line);
	close(fd);
	return rc;
}

/* ---- server side ---- */

static size_t client_pending(const client *cl)
{
	return cl->out_len - cl->out_off;
}

/* A complete request line is waiting in the input buffer. */
static bool client_has_line(const client *cl)
{
	return cl->in_len > 0 && memchr(cl->in, '\n', cl->in_len) != NULL;
}

static void client_close(client *cl)
{
	control *c = cl->owner;
	for (client **pp = &c->clients; *pp; pp = &(*pp)->next) {
		if (*pp == cl) {
			*pp = cl->next;
			break;
		}
	}
	wheel_cancel(c->w, &cl->idle.wt);
	epoll_ctl(c->epoll_fd, EPOLL_CTL_DEL, cl->fd, NULL);
	close(cl->fd);
	free(cl->in);
	free(cl->out);
	free(cl);
	c->nclients--;
}

static void client_idle_expired(looptimer *t)
{
	client_close((client *)(void *)t);
}

/* Called on progress (bytes in or out): idle means no progress. */
static void client_touch(client *cl)
{
	wheel_add(cl->owner->w, &cl->idle.wt, cl->owner->now + CONTROL_IDLE_MS);
}

/* Write what the socket takes. False when the client was closed. */
static bool client_flush(client *cl)
{
	while (cl->out_off < cl->out_len) {
		ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
		                 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n <= 0) {
			client_close(cl);
			return false;
		}
		cl->out_off += (size_t)n;
		client_touch(cl);
	}
	cl->out_len = cl->out_off = 0;
	if (cl->closing) {
		client_close(cl);
		return false;
	}
	return true;
}

/* Watch for what lets the client make progress: EPOLLIN only while its
 * input is needed (no complete line waits and its replies are under the
 * cap), EPOLLOUT while replies are pending or lines wait (level-triggered:
 * a waiting line is answered at the next wakeup once the socket takes
 * output). */
static void client_arm(client *cl)
{
	bool backlog = client_has_line(cl);
	uint32_t want = 0;
	if (client_pending(cl) > 0 || backlog)
		want |= EPOLLOUT;
	if (!backlog && !cl->eof && client_pending(cl) <= CONTROL_MAX_PENDING)
		want |= EPOLLIN;
	struct epoll_event ev = {.events = want, .data.ptr = cl};
	epoll_ctl(cl->owner->epoll_fd, EPOLL_CTL_MOD, cl->fd, &ev);
}

static void client_queue_reply(client *cl, char *reply)
{
	if (cl->out_off > 0 && cl->out_off >= client_pending(cl)) {
		/* Drop what was sent, so a client that reads slowly but never
		 * drains fully does not grow the buffer (amortised: the sent
		 * part is at least as long as what is moved). */
		memmove(cl->out, cl->out + cl->out_off, client_pending(cl));
		cl->out_len -= cl->out_off;
		cl->out_off = 0;
	}
	char *clean = utf8_sanitize(reply);
	size_t len = clean ? strlen(clean) : 0;
	char *out = clean ? realloc(cl->out, cl->out_len + len + 1) : NULL;
	if (out == NULL) {
		free(clean);
		cl->closing = true;
		return;
	}
	cl->out = out;
	memcpy(cl->out + cl->out_len, clean, len);
	cl->out[cl->out_len + len] = '\n';
	cl->out_len += len + 1;
	free(clean);
}

static char *answer(control *c, const char *line)
{
	if (!utf8_valid(line))
		return control_error_reply("malformed request: invalid UTF-8");
	if (json_has_nul_escape(line))
		return control_error_reply("malformed request: NUL character (\\u0000)");
	cJSON *req = cJSON_Parse(line);
	char *reply;
	if (req == NULL || !cJSON_IsObject(req)) {
		reply = control_error_reply("malformed request: expected one JSON object per line");
	} else {
		cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
		if (!cJSON_IsString(cmd))
			reply = control_error_reply("malformed request: missing \"cmd\"");
		else
			reply = c->handler(c->ctx, req);
		if (reply == NULL)
			reply = control_error_reply("internal error");
	}
	cJSON_Delete(req);
	return reply;
}

/* Answer at most CONTROL_BATCH complete lines, and none while the pending
 * replies are over CONTROL_MAX_PENDING: the rest waits in the buffer. */
static void client_answer_lines(client *cl)
{
	char *start = cl->in;
	char *nl;
	for (int done = 0;
	     done < CONTROL_BATCH && !cl->closing && client_pending(cl) <= CONTROL_MAX_PENDING &&
	     (nl = memchr(start, '\n', cl->in_len - (size_t)(start - cl->in)));
	     done++) {
		char *end = nl > start && nl[-1] == '\r' ? nl - 1 : nl;
		*end = '\0';
		/* A NUL inside the line would hide the rest of it from the parser. */
		if (end > start && memchr(start, '\0', (size_t)(end - start)) != NULL)
			client_queue_reply(cl, control_error_reply("malformed request: NUL byte"));
		else if (end > start)
			client_queue_reply(cl, answer(cl->owner, start));
		start = nl + 1;
	}
	cl->in_len -= (size_t)(start - cl->in);
	memmove(cl->in, start, cl->in_len);
}

/* One recv into the input buffer (never more per wakeup). */
static void client_read(client *cl)
{
	size_t room = CONTROL_MAX_REQUEST - cl->in_len;
	if (room == 0) {
		client_queue_reply(cl,
		                   control_error_reply("request too large (limit 65536 bytes)"));
		cl->closing = true;
		return;
	}
	ssize_t n;
	do
		n = recv(cl->fd, cl->in + cl->in_len, room, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		cl->eof = true; /* answer what is complete, then close */
		return;
	}
	cl->in_len += (size_t)n;
	client_touch(cl);
}

/* Whatever woke the client: write, read once if its input is needed, answer
 * a bounded batch, write again, re-arm. Bounded work per wakeup. */
static void client_service(client *cl)
{
	if (!client_flush(cl))
		return;
	if (!cl->eof && !cl->closing && !client_has_line(cl) &&
	    client_pending(cl) <= CONTROL_MAX_PENDING)
		client_read(cl);
	client_answer_lines(cl);
	if (cl->eof && !client_has_line(cl))
		cl->closing = true;
	if (client_flush(cl))
		client_arm(cl);
}

static void accept_clients(control *c)
{
	for (;;) {
		int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		if (c->nclients >= CONTROL_MAX_CLIENTS) {
			const char *msg = "{\"ok\": false, \"error\": \"too many clients\"}\n";
			ssize_t n = send(fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
			(void)n;
			close(fd);
			continue;
		}
		client *cl = calloc(1, sizeof *cl);
		char *in = malloc(CONTROL_MAX_REQUEST);
		if (cl == NULL || in == NULL) {
			free(cl);
			free(in);
			close(fd);
			continue;
		}
		cl->fd = fd;
		cl->in = in;
		cl->owner = c;
		looptimer_init(&cl->idle, client_idle_expired);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = cl};
		epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
		cl->next = c->clients;
		c->clients = cl;
		c->nclients++;
		client_touch(cl);
	}
}

int control_open(control **out, const char *path, wheel *w, control_handler handler, void *ctx,
                 char *err, size_t errlen)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	control *c = calloc(1, sizeof *c);
	*out = NULL;
	if (c == NULL || strlen(path) >= sizeof addr.sun_path) {
		snprintf(err, errlen, "control socket path too long: %s", path);
		free(c);
		return -1;
	}
	c->w = w;
	c->handler = handler;
	c->ctx = ctx;
	c->path = strdup(path);
	c->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	strcpy(addr.sun_path, path);
	unlink(path); /* stale: the daemon lock guarantees no other daemon owns it */
	mode_t old = umask(0177);
	int brc =
	        c->listen_fd >= 0 ? bind(c->listen_fd, (struct sockaddr *)&addr, sizeof addr) : -1;
	umask(old);
	if (brc != 0 || chmod(path, file_mode_socket(path)) != 0 || listen(c->listen_fd, 16) != 0 ||
	    c->epoll_fd < 0 || c->path == NULL) {
		snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
		control_close(c);
		return -1;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, c->listen_fd, &ev);
	*out = c;
	return 0;
}

int control_fd(const control *c)
{
	return c->epoll_fd;
}

void control_dispatch(control *c, uint64_t now)
{
	struct epoll_event evs[16];
	c->now = now;
	int n = epoll_wait(c->epoll_fd, evs, 16, 0);
	for (int i = 0; i < n; i++) {
		client *cl = evs[i].data.ptr;
		if (cl == NULL) {
			accept_clients(c);
			continue;
		}
		/* A client closed earlier in this batch is no longer listed. */
		bool alive = false;
		for (client *it = c->clients; it; it = it->next)
			alive |= it == cl;
		if (!alive)
			continue;
		client_service(cl);
	}
}

void control_close(control *c)
{
	if (c == NULL)
		return;
	while (c->clients)
		client_close(c->clients);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		if (c->path)
			unlink(c->path);
	}
	if (c->epoll_fd >= 0)
		close(c->epoll_fd);
	free(c->path);
	free(c);
}
