/*
 * control — see control.h.
 *
 * Server invariants: each client has one input buffer (never above
 * CONTROL_MAX_REQUEST), one pending output buffer (not read into while more
 * than CONTROL_MAX_REQUEST of replies are pending, so a client that never
 * reads cannot grow it without bound), and one idle timer on the
 * loop's wheel; a client is freed in exactly one place (client_close), which
 * also cancels its timer and removes its fd from the epoll set.
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
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "looptimer.h"

typedef struct client {
	looptimer idle; /* first member: container_of from the timer */
	struct client *next;
	struct control *owner;
	int fd;
	char *in;
	size_t in_len;
	char *out;
	size_t out_len, out_off;
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

/* ---- client side ---- */

static int connect_unix(const char *path, char *err, size_t errlen)
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
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
		int e = errno;
		snprintf(err, errlen, "control socket %s: %s", path, strerror(e));
		close(fd);
		return (e == ENOENT || e == ECONNREFUSED) ? CONTROL_NO_DAEMON : -1;
	}
	return fd;
}

static int read_reply_line(int fd, char **reply, char *err, size_t errlen)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	int64_t deadline = clock_mono_ms() + 10000;

	while (buf) {
		struct pollfd p = {fd, POLLIN, 0};
		int64_t left = deadline - clock_mono_ms();
		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			snprintf(err, errlen, "no reply from the daemon within 10 s");
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
	int fd = connect_unix(path, err, errlen);
	if (fd < 0)
		return fd;
	size_t len = strlen(request);
	char *line = malloc(len + 2);
	int rc = -1;
	if (line) {
		memcpy(line, request, len);
		line[len] = '\n';
		if (send(fd, line, len + 1, MSG_NOSIGNAL) == (ssize_t)(len + 1))
			rc = read_reply_line(fd, reply, err, errlen);
		else
			snprintf(err, errlen, "cannot send to the daemon: %s", strerror(errno));
	}
	free(line);
	close(fd);
	return rc;
}

/* ---- server side ---- */

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

static void client_touch(client *cl)
{
	wheel_add(cl->owner->w, &cl->idle.wt, cl->owner->now + CONTROL_IDLE_MS);
}

/* Write what is pending; close when done and closing. */
static void client_flush(client *cl)
{
	while (cl->out_off < cl->out_len) {
		ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
		                 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* Backpressure: a client that does not read its replies
			 * is not read from either once they pile up. */
			uint32_t want = cl->out_len - cl->out_off > CONTROL_MAX_REQUEST
			                        ? EPOLLOUT
			                        : EPOLLIN | EPOLLOUT;
			struct epoll_event ev = {.events = want, .data.ptr = cl};
			epoll_ctl(cl->owner->epoll_fd, EPOLL_CTL_MOD, cl->fd, &ev);
			return;
		}
		if (n <= 0) {
			client_close(cl);
			return;
		}
		cl->out_off += (size_t)n;
	}
	cl->out_len = cl->out_off = 0;
	if (cl->closing) {
		client_close(cl);
		return;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = cl};
	epoll_ctl(cl->owner->epoll_fd, EPOLL_CTL_MOD, cl->fd, &ev);
}

static void client_queue_reply(client *cl, char *reply)
{
	size_t len = reply ? strlen(reply) : 0;
	char *out = realloc(cl->out, cl->out_len + len + 1);
	if (out == NULL) {
		free(reply);
		cl->closing = true;
		return;
	}
	cl->out = out;
	memcpy(cl->out + cl->out_len, reply, len);
	cl->out[cl->out_len + len] = '\n';
	cl->out_len += len + 1;
	free(reply);
}

static char *answer(control *c, const char *line)
{
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

/* Answer every complete line in the input buffer. */
static void client_process_lines(client *cl)
{
	char *start = cl->in;
	char *nl;
	while (!cl->closing && (nl = memchr(start, '\n', cl->in_len - (size_t)(start - cl->in)))) {
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

static void client_readable(client *cl)
{
	for (;;) {
		if (cl->out_len - cl->out_off > CONTROL_MAX_REQUEST)
			break; /* replies pending: see client_flush */
		size_t room = CONTROL_MAX_REQUEST - cl->in_len;
		if (room == 0) {
			client_queue_reply(
			        cl, control_error_reply("request too large (limit 65536 bytes)"));
			cl->closing = true;
			break;
		}
		ssize_t n = recv(cl->fd, cl->in + cl->in_len, room, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			cl->closing = true;
			break;
		}
		cl->in_len += (size_t)n;
		client_process_lines(cl);
		if (cl->closing)
			break;
	}
	client_touch(cl);
	client_flush(cl);
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
	if (brc != 0 || chmod(path, 0600) != 0 || listen(c->listen_fd, 16) != 0 ||
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
		if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			client_readable(cl);
		else if (evs[i].events & EPOLLOUT)
			client_flush(cl);
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
