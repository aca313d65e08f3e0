/*
 * ssh — the non-blocking SSH tester; see ssh.h.
 *
 * Each attempt is a state machine, one small function per state, in the
 * manner of curl's lib/vssh/libssh2.c:
 *
 *   IDLE --begin: getaddrinfo + connect()--> CONNECTING --SO_ERROR 0--> BANNER
 *   BANNER --readable, the handshake gate has room--> HANDSHAKE
 *   BANNER --readable, gate full--> QUEUED --admitted--> HANDSHAKE
 *   HANDSHAKE --host key checked--> AUTH_LIST --> AUTH_KEY | AUTH_AGENT | AUTH_PASSWORD
 *   AUTH_* --authenticated--> CHANNEL --> EXEC --> READ --EOF--> CLOSE --> DONE
 *   HANDSHAKE --host key checked, hostkey_only--> DONE (known-hosts scan)
 *
 * A state function returns STEP_WAIT when libssh2 (or connect) would block,
 * STEP_NEXT after changing state, STEP_DONE once the result is final, and
 * STEP_NOFD when socket() found no free descriptor (EMFILE, ENFILE): the
 * attempt is then undone and started again later, not failed.
 *
 * ssh_run_many keeps every waiting attempt's socket in one epoll set
 * (level-triggered), registered in the direction libssh2 is blocked on and
 * changed (EPOLL_CTL_MOD) only when that direction changes; the cancel fd is
 * in the set too. A round costs O(ready): epoll_wait returns the ready
 * sockets, and the nearest deadline is the top of a min-heap of (due, slot,
 * generation) entries. An attempt's due time changes with its stage
 * (connect_timeout, handshake_timeout, then the whole timeout); the old heap
 * entry is left in place and skipped when it surfaces (its due or
 * generation no longer match), so nothing is ever removed from the middle.
 *
 * Deadlines: the whole attempt has one (timeout_ms, from the start of the
 * resolve); connect and handshake each have their own, cut to the whole
 * one. The stage an attempt was in when a deadline passed is its result's
 * stage; the message names the deadline (connect_timeout,
 * handshake_timeout, timeout).
 *
 * The handshake gate: at most `handshakes` attempts are in the stages that
 * cost CPU here and on the server (HANDSHAKE to CLOSE) at once. A connected
 * attempt first waits for the server's identification string without a
 * session (BANNER: epoll for readable, nothing read, handshake_timeout
 * applies; an SSH server sends it as soon as it accepts, RFC 4253 4.2),
 * then takes a place or queues (QUEUED: out of the epoll set, no deadline)
 * and is admitted in the order the banners came when an admitted attempt
 * ends. The wait is this machine's, not the server's: it is not counted
 * against the attempt (its whole deadline moves by the wait, its handshake
 * deadline starts at admission, its duration leaves it out and its result
 * reports it as gate_wait_ms); the run's own cancel bounds it. So a silent
 * server (accepts, never speaks) holds a descriptor but never a place, and
 * a burst of answering servers is served first come first served instead
 * of all at once, which on a saturated CPU makes every one of them late,
 * or every one of them wait out its deadline in the queue.
 *
 * Descriptors: at most ssh_concurrency_limit() attempts are in flight (the
 * soft RLIMIT_NOFILE less a reserve for the rest of the process). If
 * socket() still fails with EMFILE or ENFILE, the attempt goes back to the
 * queue, no new attempt starts until one ends, and the cap drops to a few
 * below the number in flight, so that the transient descriptors of the
 * ones running (known_hosts, agent) still open. Only with nothing in
 * flight to wait for does it fail (internal).
 *
 * Invariants:
 *  1. An attempt owns its socket, session, channel, agent and secrets; all
 *     are released by attempt_end, which runs exactly once per started
 *     attempt (success, failure, deadline or cancel).
 *  2. Before libssh2 frees a session whose peer may be silent, the socket
 *     is shut down, so no libssh2 call in attempt_end can wait on the peer.
 *  3. A CONNECTING attempt is stepped only when epoll reported its socket:
 *     SO_ERROR reads 0 while a connect is still in progress. A socket is
 *     removed from the epoll set before it is closed (a forked child may
 *     hold a copy, which would keep a closed socket's registration alive),
 *     and every event carries the slot's generation, so no event of an
 *     earlier socket or attempt ever steps the current one.
 *  4. Every attempt in flight has exactly one heap entry that matches its
 *     current due time and generation.
 */
#include "ssh.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libssh2.h>

#include "known_hosts.h"

#include "clock.h"
#include "duration.h"

#define SECRET_MAX 4096

typedef enum {
	A_IDLE,
	A_CONNECTING,
	A_BANNER, /* connected, gate full: waiting for the server to speak */
	A_QUEUED, /* the server spoke, gate full: waiting for admission */
	A_HANDSHAKE,
	A_AUTH_LIST,
	A_AUTH_KEY,
	A_AUTH_AGENT,
	A_AUTH_PASSWORD,
	A_CHANNEL,
	A_EXEC,
	A_READ,
	A_CLOSE,
	A_DONE,
} attempt_state;

typedef enum { STEP_WAIT, STEP_NEXT, STEP_DONE, STEP_NOFD, STEP_ADMIT } step_result;

typedef struct {
	const ssh_options *opt;
	ssh_result *res;
	attempt_state state;
	int64_t started;
	int64_t deadline;     /* the whole attempt */
	int64_t due;          /* the nearest deadline now: the stage's or the whole */
	const char *due_name; /* the key of the deadline `due` is */
	int ep;               /* the runner's epoll set, -1: none */
	int reg_fd;           /* the socket registered in ep, -1: none */
	uint32_t reg_events;
	struct addrinfo *addrs;
	struct addrinfo *addr; /* the one being connected */
	int last_errno;
	int fd;
	LIBSSH2_SESSION *session;
	LIBSSH2_CHANNEL *channel;
	LIBSSH2_AGENT *agent;
	struct libssh2_agent_publickey *identity;
	known_hosts *kh;
	char kh_error[200];
	char auth_error[160]; /* why the last method failed */
	char *methods;        /* the server's auth methods, owned */
	const char *user;
	char key_path[4096];
	char *passphrase; /* secret, wiped */
	char *password;   /* secret, wiped */
	size_t out_len;
	bool out_line_done;
	bool admitted;     /* holds a place in the handshake gate */
	int64_t queued_at; /* when it entered QUEUED */
} attempt;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

static void library_init(void)
{
	init_rc = libssh2_init(0);
}

/* ---- results ---- */

static ssh_stage state_stage(attempt_state st)
{
	switch (st) {
	case A_IDLE:
		return SSH_STAGE_RESOLVE;
	case A_CONNECTING:
		return SSH_STAGE_CONNECT;
	case A_BANNER:
	case A_QUEUED:
	case A_HANDSHAKE:
		return SSH_STAGE_HANDSHAKE;
	case A_AUTH_LIST:
	case A_AUTH_KEY:
	case A_AUTH_AGENT:
	case A_AUTH_PASSWORD:
		return SSH_STAGE_AUTH;
	default:
		return SSH_STAGE_EXEC;
	}
}

static void attempt_end(attempt *a);

/* Final result; releases everything (invariant 1). */
static step_result attempt_fail(attempt *a, ssh_error err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static step_result attempt_fail(attempt *a, ssh_error err, const char *fmt, ...)
{
	va_list ap;

	if (a->res->stage < state_stage(a->state))
		a->res->stage = state_stage(a->state);
	a->res->success = false;
	a->res->error = err;
	va_start(ap, fmt);
	vsnprintf(a->res->message, sizeof a->res->message, fmt, ap);
	va_end(ap);
	attempt_end(a);
	return STEP_DONE;
}

static const char *session_error(attempt *a)
{
	char *msg = NULL;
	if (a->session == NULL)
		return "no session";
	libssh2_session_last_error(a->session, &msg, NULL, 0);
	return msg && *msg ? msg : "unknown error";
}

static bool session_eagain(attempt *a)
{
	return libssh2_session_last_errno(a->session) == LIBSSH2_ERROR_EAGAIN;
}

static void wipe_free(char *secret)
{
	if (secret == NULL)
		return;
	explicit_bzero(secret, strlen(secret));
	free(secret);
}

/* Out of the epoll set first (invariant 3), then closed. */
static void attempt_close_fd(attempt *a)
{
	if (a->fd < 0)
		return;
	if (a->reg_fd == a->fd)
		epoll_ctl(a->ep, EPOLL_CTL_DEL, a->fd, NULL);
	a->reg_fd = -1;
	close(a->fd);
	a->fd = -1;
}

/* The nearest deadline: the stage's (ms after now, <= 0: default) cut to
 * the whole attempt's. */
static void attempt_set_due(attempt *a, int64_t now, int64_t stage_ms, int64_t default_ms,
                            const char *name)
{
	int64_t due = now + (stage_ms > 0 ? stage_ms : default_ms);
	if (due < a->deadline) {
		a->due = due;
		a->due_name = name;
	} else {
		a->due = a->deadline;
		a->due_name = "timeout";
	}
}

static void attempt_end(attempt *a)
{
	if (a->state == A_DONE)
		return;
	if (a->session && a->fd >= 0)
		shutdown(a->fd, SHUT_RDWR); /* invariant 2 */
	if (a->session)
		libssh2_session_set_blocking(a->session, 1);
	if (a->channel)
		libssh2_channel_free(a->channel);
	if (a->agent) {
		libssh2_agent_disconnect(a->agent);
		libssh2_agent_free(a->agent);
	}
	known_hosts_free(a->kh);
	if (a->session)
		libssh2_session_free(a->session);
	attempt_close_fd(a);
	if (a->addrs)
		freeaddrinfo(a->addrs);
	free(a->methods);
	wipe_free(a->passphrase);
	wipe_free(a->password);
	a->channel = NULL;
	a->agent = NULL;
	a->kh = NULL;
	a->session = NULL;
	a->fd = -1;
	a->addrs = NULL;
	a->methods = a->passphrase = a->password = NULL;
	if (a->state == A_QUEUED) /* cancelled in the queue */
		a->res->gate_wait_ms += clock_mono_ms() - a->queued_at;
	a->res->duration_ms = clock_mono_ms() - a->started - a->res->gate_wait_ms;
	a->state = A_DONE;
}

/* ---- connect ---- */

static step_result start_handshake(attempt *a);
static step_result load_credentials(attempt *a);

/* Try a->addr and the following addresses until one is in progress. */
static step_result connect_next(attempt *a)
{
	for (; a->addr; a->addr = a->addr->ai_next) {
		int fd = socket(a->addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE))
			return STEP_NOFD; /* not the server's fault: retried later */
		if (fd < 0) {
			a->last_errno = errno;
			continue;
		}
		/* The handshake is a chain of small writes, each waiting for the
		 * answer: with Nagle's algorithm a write that follows one not
		 * yet acknowledged waits for the peer's delayed ACK (40 ms on
		 * Linux), several times per check. */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(fd, a->addr->ai_addr, a->addr->ai_addrlen) == 0 ||
		    errno == EINPROGRESS) {
			a->fd = fd;
			a->state = A_CONNECTING;
			return STEP_WAIT;
		}
		a->last_errno = errno;
		close(fd);
	}
	a->state = A_CONNECTING;
	if (a->last_errno == ECONNREFUSED)
		return attempt_fail(a, SSH_ERR_CONNECT_REFUSED, "connection refused");
	if (a->last_errno == ETIMEDOUT)
		return attempt_fail(a, SSH_ERR_CONNECT_TIMEOUT, "connection timed out");
	return attempt_fail(a, SSH_ERR_CONNECT, "cannot connect: %s", strerror(a->last_errno));
}

/* Connected: wait (without a session) until the server speaks. */
static void wait_banner(attempt *a)
{
	a->state = A_BANNER;
	a->res->stage = SSH_STAGE_HANDSHAKE;
	attempt_set_due(a, clock_mono_ms(), a->opt->handshake_timeout_ms,
	                SSH_DEFAULT_HANDSHAKE_TIMEOUT_MS, "handshake_timeout");
}

/* The server spoke while the gate is full: wait for a place, out of the
 * epoll set (slot_watch), with no deadline of its own. */
static void wait_admission(attempt *a)
{
	a->state = A_QUEUED;
	a->queued_at = clock_mono_ms();
	a->due = INT64_MAX;
	a->due_name = "timeout";
}

/* Readable: the banner is there (peeked, not read), or the server closed. */
static step_result state_banner(attempt *a)
{
	char c;
	ssize_t n = recv(a->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		return STEP_ADMIT;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return STEP_WAIT;
	return attempt_fail(a, SSH_ERR_HANDSHAKE,
	                    "the server closed the connection before its banner%s%s",
	                    n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
}

static step_result state_connecting(attempt *a)
{
	int soerr = 0;
	socklen_t len = sizeof soerr;

	if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		soerr = errno;
	if (soerr == 0)
		return STEP_ADMIT; /* the runner waits for the banner */
	a->last_errno = soerr;
	attempt_close_fd(a);
	a->addr = a->addr->ai_next;
	return connect_next(a);
}

static step_result attempt_begin(attempt *a)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	char port[16];

	if (init_rc != 0)
		return attempt_fail(a, SSH_ERR_INTERNAL, "libssh2_init failed");
	if (a->opt->host == NULL || *a->opt->host == '\0')
		return attempt_fail(a, SSH_ERR_RESOLVE, "no host given");
	snprintf(port, sizeof port, "%d", a->opt->port > 0 ? a->opt->port : 22);
	int rc = getaddrinfo(a->opt->host, port, &hints, &a->addrs);
	if (rc != 0) {
		a->addrs = NULL;
		return attempt_fail(a, SSH_ERR_RESOLVE, "cannot resolve %s: %s", a->opt->host,
		                    gai_strerror(rc));
	}
	a->res->stage = SSH_STAGE_CONNECT;
	attempt_set_due(a, clock_mono_ms(), a->opt->connect_timeout_ms,
	                SSH_DEFAULT_CONNECT_TIMEOUT_MS, "connect_timeout");
	a->addr = a->addrs;
	a->last_errno = EHOSTUNREACH;
	return connect_next(a);
}

/* ---- handshake and host key ---- */

static void prefer_known_types(attempt *a)
{
	char types[256];
	int skipped = 0;

	if (a->opt->policy == HOSTKEY_POLICY_OFF)
		return;
	if (a->opt->known_hosts == NULL) {
		snprintf(a->kh_error, sizeof a->kh_error, "no known_hosts file configured");
		return;
	}
	if (known_hosts_load(&a->kh, a->session, a->opt->known_hosts, &skipped, a->kh_error,
	                     sizeof a->kh_error) != 0)
		return;
	if (known_hosts_types(a->kh, a->opt->host, a->opt->port, types, sizeof types) > 0)
		libssh2_session_method_pref(a->session, LIBSSH2_METHOD_HOSTKEY, types);
}

static step_result start_handshake(attempt *a)
{
	a->state = A_HANDSHAKE;
	a->res->stage = SSH_STAGE_HANDSHAKE;
	attempt_set_due(a, clock_mono_ms(), a->opt->handshake_timeout_ms,
	                SSH_DEFAULT_HANDSHAKE_TIMEOUT_MS, "handshake_timeout");
	a->session = libssh2_session_init_ex(NULL, NULL, NULL, NULL);
	if (a->session == NULL)
		return attempt_fail(a, SSH_ERR_INTERNAL, "cannot create an SSH session");
	libssh2_session_set_blocking(a->session, 0);
	prefer_known_types(a);
	return STEP_NEXT;
}

static step_result hostkey_unknown(attempt *a, const char *key, size_t len, int type)
{
	char err[256];

	if (a->opt->policy == HOSTKEY_POLICY_STRICT)
		return attempt_fail(a, SSH_ERR_HOSTKEY_UNKNOWN,
		                    "host key %s %s of %s:%d is not in %s (policy strict)",
		                    a->res->key_type, a->res->fingerprint, a->opt->host,
		                    a->opt->port, a->opt->known_hosts);
	int rc = known_hosts_add(a->session, a->opt->known_hosts, a->opt->host, a->opt->port, key,
	                         len, type, err, sizeof err);
	if (rc == KNOWN_HOSTS_ECHANGED)
		return attempt_fail(a, SSH_ERR_HOSTKEY_MISMATCH, "%s", err);
	if (rc != KNOWN_HOSTS_OK)
		return attempt_fail(a, SSH_ERR_KNOWN_HOSTS, "%s", err);
	a->res->hostkey_added = true;
	return STEP_NEXT;
}

/* The offered key's type and fingerprint go into the result whatever the
 * policy, so every later failure (and a scan) can show them. */
static step_result check_hostkey(attempt *a)
{
	size_t len = 0;
	int type = 0;

	a->res->stage = SSH_STAGE_HOSTKEY;
	const char *key = libssh2_session_hostkey(a->session, &len, &type);
	if (key == NULL)
		return attempt_fail(a, SSH_ERR_HANDSHAKE, "no host key: %s", session_error(a));
	snprintf(a->res->key_type, sizeof a->res->key_type, "%s", known_hosts_key_type_name(type));
	known_hosts_fingerprint(key, len, a->res->fingerprint, sizeof a->res->fingerprint);
	if (a->opt->policy == HOSTKEY_POLICY_OFF)
		return STEP_NEXT;
	if (a->kh == NULL)
		return attempt_fail(a, SSH_ERR_KNOWN_HOSTS, "%s", a->kh_error);
	switch (known_hosts_check(a->kh, a->opt->host, a->opt->port, key, len, type)) {
	case KNOWN_HOSTS_MATCH:
		return STEP_NEXT;
	case KNOWN_HOSTS_UNKNOWN:
		return hostkey_unknown(a, key, len, type);
	default:
		return attempt_fail(a, SSH_ERR_HOSTKEY_MISMATCH,
		                    "host key %s %s of %s:%d does not match %s", a->res->key_type,
		                    a->res->fingerprint, a->opt->host, a->opt->port,
		                    a->opt->known_hosts);
	}
}

/* hostkey_only: the key is checked (or recorded); nothing more to do. */
static step_result hostkey_done(attempt *a)
{
	libssh2_session_disconnect(a->session, "fleetkeeper host key scan done");
	a->res->success = true;
	a->res->error = SSH_OK;
	attempt_end(a);
	return STEP_DONE;
}

static step_result state_handshake(attempt *a)
{
	int rc = libssh2_session_handshake(a->session, a->fd);
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return STEP_WAIT;
	if (rc != 0)
		return attempt_fail(a, SSH_ERR_HANDSHAKE, "handshake failed: %s", session_error(a));
	if (check_hostkey(a) == STEP_DONE)
		return STEP_DONE;
	if (a->opt->hostkey_only)
		return hostkey_done(a);
	a->due = a->deadline;
	a->due_name = "timeout";
	a->state = A_AUTH_LIST;
	a->res->stage = SSH_STAGE_AUTH;
	return load_credentials(a);
}

/* ---- authentication ---- */

/* A secret file's first line, without its newline. NULL on error. */
static char *read_secret(const char *path)
{
	char *buf = NULL;
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return NULL;
	buf = calloc(1, SECRET_MAX);
	if (buf && fgets(buf, SECRET_MAX, f) == NULL && ferror(f)) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf)
		buf[strcspn(buf, "\r\n")] = '\0';
	return buf;
}

static void expand_home(const char *path, char *out, size_t cap)
{
	const char *home = getenv("HOME");
	if (strncmp(path, "~/", 2) == 0 && home)
		snprintf(out, cap, "%s/%s", home, path + 2);
	else
		snprintf(out, cap, "%s", path);
}

/* Read the credential files once, when the auth stage begins. */
static step_result load_credentials(attempt *a)
{
	const ssh_options *o = a->opt;

	if (o->key_file) {
		expand_home(o->key_file, a->key_path, sizeof a->key_path);
		if (access(a->key_path, R_OK) != 0)
			return attempt_fail(a, SSH_ERR_CREDENTIALS, "cannot read key file %s: %s",
			                    a->key_path, strerror(errno));
	}
	if (o->passphrase_file && (a->passphrase = read_secret(o->passphrase_file)) == NULL)
		return attempt_fail(a, SSH_ERR_CREDENTIALS, "cannot read passphrase file %s",
		                    o->passphrase_file);
	if (o->password_file && (a->password = read_secret(o->password_file)) == NULL)
		return attempt_fail(a, SSH_ERR_CREDENTIALS, "cannot read password file %s",
		                    o->password_file);
	return STEP_NEXT;
}

static bool server_offers(const attempt *a, const char *method)
{
	size_t n = strlen(method);
	for (const char *p = a->methods; p && *p;) {
		size_t len = strcspn(p, ",");
		if (len == n && strncmp(p, method, n) == 0)
			return true;
		p += len + (p[len] == ',');
	}
	return false;
}

static step_result open_channel(attempt *a)
{
	a->state = A_CHANNEL;
	a->res->stage = SSH_STAGE_EXEC;
	return STEP_NEXT;
}

/* The next method after the current state, in the order key, agent,
 * password; auth_failed when none is left. */
static step_result next_method(attempt *a)
{
	bool pk = server_offers(a, "publickey");

	if (a->state < A_AUTH_KEY && a->opt->key_file && pk) {
		a->state = A_AUTH_KEY;
		return STEP_NEXT;
	}
	if (a->state < A_AUTH_AGENT && a->opt->use_agent && pk) {
		a->state = A_AUTH_AGENT;
		return STEP_NEXT;
	}
	if (a->state < A_AUTH_PASSWORD && a->opt->password_file && server_offers(a, "password")) {
		a->state = A_AUTH_PASSWORD;
		return STEP_NEXT;
	}
	a->state = A_AUTH_PASSWORD;
	return attempt_fail(a, SSH_ERR_AUTH,
	                    "authentication failed for user %s (server offers %s)%s%s", a->user,
	                    a->methods ? a->methods : "nothing", a->auth_error[0] ? ": " : "",
	                    a->auth_error);
}

static step_result state_auth_list(attempt *a)
{
	char *list = libssh2_userauth_list(a->session, a->user, (unsigned)strlen(a->user));
	if (list == NULL) {
		if (libssh2_userauth_authenticated(a->session))
			return open_channel(a);
		if (session_eagain(a))
			return STEP_WAIT;
		return attempt_fail(a, SSH_ERR_AUTH, "cannot list auth methods: %s",
		                    session_error(a));
	}
	a->methods = strdup(list);
	if (a->methods == NULL)
		return attempt_fail(a, SSH_ERR_INTERNAL, "out of memory");
	return next_method(a);
}

static step_result state_auth_key(attempt *a)
{
	int rc = libssh2_userauth_publickey_fromfile_ex(
	        a->session, a->user, (unsigned)strlen(a->user), NULL, a->key_path, a->passphrase);
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return STEP_WAIT;
	if (rc == 0)
		return open_channel(a);
	snprintf(a->auth_error, sizeof a->auth_error, "%s", session_error(a));
	return next_method(a);
}

static step_result state_auth_agent(attempt *a)
{
	if (a->agent == NULL) {
		a->agent = libssh2_agent_init(a->session);
		if (a->agent == NULL || libssh2_agent_connect(a->agent) != 0 ||
		    libssh2_agent_list_identities(a->agent) != 0)
			return next_method(a);
		if (libssh2_agent_get_identity(a->agent, &a->identity, NULL) != 0)
			return next_method(a);
	}
	int rc = libssh2_agent_userauth(a->agent, a->user, a->identity);
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return STEP_WAIT;
	if (rc == 0)
		return open_channel(a);
	if (libssh2_agent_get_identity(a->agent, &a->identity, a->identity) != 0)
		return next_method(a);
	return STEP_NEXT;
}

static step_result state_auth_password(attempt *a)
{
	int rc = libssh2_userauth_password_ex(a->session, a->user, (unsigned)strlen(a->user),
	                                      a->password, (unsigned)strlen(a->password), NULL);
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return STEP_WAIT;
	if (rc == 0)
		return open_channel(a);
	snprintf(a->auth_error, sizeof a->auth_error, "%s", session_error(a));
	return next_method(a);
}

/* ---- exec ---- */

static step_result state_channel(attempt *a)
{
	a->channel = libssh2_channel_open_session(a->session);
	if (a->channel)
		a->state = A_EXEC;
	else if (session_eagain(a))
		return STEP_WAIT;
	else
		return attempt_fail(a, SSH_ERR_EXEC, "cannot open a channel: %s", session_error(a));
	return STEP_NEXT;
}

static step_result state_exec(attempt *a)
{
	const char *cmd = a->opt->command ? a->opt->command : SSH_DEFAULT_COMMAND;
	int rc = libssh2_channel_exec(a->channel, cmd);
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return STEP_WAIT;
	if (rc != 0)
		return attempt_fail(a, SSH_ERR_EXEC, "exec refused: %s", session_error(a));
	a->state = A_READ;
	return STEP_NEXT;
}

static void keep_first_line(attempt *a, const char *buf, size_t n)
{
	char *out = a->res->output;
	for (size_t i = 0; i < n && !a->out_line_done; i++) {
		if (buf[i] == '\n')
			a->out_line_done = true;
		else if (buf[i] != '\r' && a->out_len + 1 < sizeof a->res->output)
			out[a->out_len++] = buf[i];
	}
	out[a->out_len] = '\0';
}

static step_result state_read(attempt *a)
{
	char buf[4096];

	for (;;) {
		ssize_t n = libssh2_channel_read(a->channel, buf, sizeof buf);
		if (n > 0) {
			keep_first_line(a, buf, (size_t)n);
			continue;
		}
		ssize_t m = libssh2_channel_read_stderr(a->channel, buf, sizeof buf);
		if (m > 0)
			continue; /* drained so the window never stalls */
		if ((n < 0 && n != LIBSSH2_ERROR_EAGAIN) || (m < 0 && m != LIBSSH2_ERROR_EAGAIN))
			return attempt_fail(a, SSH_ERR_EXEC, "read failed: %s", session_error(a));
		if (libssh2_channel_eof(a->channel)) {
			a->state = A_CLOSE;
			return STEP_NEXT;
		}
		return STEP_WAIT;
	}
}

static step_result state_close(attempt *a)
{
	int rc = libssh2_channel_close(a->channel);
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return STEP_WAIT;
	a->res->exit_status = libssh2_channel_get_exit_status(a->channel);
	if (a->res->exit_status != 0)
		return attempt_fail(a, SSH_ERR_COMMAND, "command exited with status %d",
		                    a->res->exit_status);
	libssh2_session_disconnect(a->session, "fleetkeeper ssh test done");
	a->res->success = true;
	a->res->error = SSH_OK;
	attempt_end(a);
	return STEP_DONE;
}

/* ---- the machine ---- */

static step_result attempt_state_step(attempt *a)
{
	switch (a->state) {
	case A_CONNECTING:
		return state_connecting(a);
	case A_BANNER:
		return state_banner(a);
	case A_QUEUED:
		return STEP_WAIT; /* not watched while queued */
	case A_HANDSHAKE:
		return state_handshake(a);
	case A_AUTH_LIST:
		return state_auth_list(a);
	case A_AUTH_KEY:
		return state_auth_key(a);
	case A_AUTH_AGENT:
		return state_auth_agent(a);
	case A_AUTH_PASSWORD:
		return state_auth_password(a);
	case A_CHANNEL:
		return state_channel(a);
	case A_EXEC:
		return state_exec(a);
	case A_READ:
		return state_read(a);
	case A_CLOSE:
		return state_close(a);
	default:
		return STEP_DONE;
	}
}

static uint32_t attempt_events(const attempt *a)
{
	if (a->state == A_CONNECTING)
		return EPOLLOUT;
	if (a->state == A_BANNER)
		return EPOLLIN;
	if (a->state == A_QUEUED)
		return 0; /* no session yet, not watched */
	int dir = libssh2_session_block_directions(a->session);
	uint32_t ev = 0;
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		ev |= EPOLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		ev |= EPOLLOUT;
	return ev ? ev : EPOLLIN;
}

static void attempt_init(attempt *a, const ssh_options *opt, ssh_result *res, int64_t now, int ep)
{
	memset(a, 0, sizeof *a);
	memset(res, 0, sizeof *res);
	a->opt = opt;
	a->res = res;
	a->fd = a->reg_fd = -1;
	a->ep = ep;
	a->user = opt->user ? opt->user : "root";
	a->started = now;
	a->deadline = now + (opt->timeout_ms > 0 ? opt->timeout_ms : SSH_DEFAULT_TIMEOUT_MS);
	a->due = a->deadline;
	a->due_name = "timeout";
	res->exit_status = -1;
	res->stage = SSH_STAGE_RESOLVE;
}

static void attempt_expire(attempt *a, int64_t now)
{
	long long ms = (long long)(now - a->started - a->res->gate_wait_ms);
	if (a->state == A_CONNECTING)
		attempt_fail(a, SSH_ERR_CONNECT_TIMEOUT, "no connection within %lld ms (%s)", ms,
		             a->due_name);
	else if (a->state == A_BANNER)
		attempt_fail(a, SSH_ERR_TIMEOUT,
		             "the server accepted the connection but sent no SSH banner within "
		             "%lld ms (%s)",
		             ms, a->due_name);
	else
		attempt_fail(a, SSH_ERR_TIMEOUT, "no answer within %lld ms in %s (%s)", ms,
		             ssh_stage_name(state_stage(a->state)), a->due_name);
}

/* Undo a started attempt that found no descriptor (STEP_NOFD): nothing of
 * it is kept, it starts again from the resolve. */
static void attempt_undo(attempt *a)
{
	attempt_end(a);
	memset(a->res, 0, sizeof *a->res);
}

/* ---- many attempts, one thread ---- */

/* A heap entry: slot's attempt is due at `due` if gen and due still match
 * (invariant 4). */
typedef struct {
	int64_t due;
	uint32_t slot;
	uint32_t gen;
} due_entry;

typedef struct {
	due_entry *v;
	size_t len, cap;
} due_heap;

static bool heap_less(const due_entry *x, const due_entry *y)
{
	return x->due < y->due;
}

static int heap_push(due_heap *h, due_entry e)
{
	if (h->len == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		due_entry *v = realloc(h->v, cap * sizeof *v);
		if (v == NULL)
			return -1;
		h->v = v;
		h->cap = cap;
	}
	size_t i = h->len++;
	while (i > 0 && heap_less(&e, &h->v[(i - 1) / 2])) {
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i] = e;
	return 0;
}

static void heap_pop(due_heap *h)
{
	due_entry last = h->v[--h->len];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->len)
			break;
		if (c + 1 < h->len && heap_less(&h->v[c + 1], &h->v[c]))
			c++;
		if (!heap_less(&h->v[c], &last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->len > 0)
		h->v[i] = last;
}

#define CANCEL_TAG UINT64_MAX
#define EVENTS_MAX 256
#define NOFD_SPARE 4 /* descriptors kept free after an EMFILE */

typedef struct {
	const ssh_options *opts;
	ssh_result *results;
	size_t n, next;  /* attempts; the next one never started */
	size_t slots;    /* attempt slots allocated */
	size_t cap;      /* most in flight now (lowered by an EMFILE) */
	size_t active;   /* in flight */
	attempt *att;    /* [slots] */
	uint32_t *gen;   /* [slots], bumped whenever a slot's attempt ends */
	int64_t *pushed; /* [slots], the due time of the slot's live heap entry */
	size_t *free;    /* [slots], a stack of free slots */
	size_t nfree;
	size_t *retry; /* [slots], attempts undone by STEP_NOFD */
	size_t nretry;
	bool fd_short;    /* EMFILE since the last attempt ended: start nothing */
	size_t hs_cap;    /* the handshake gate: most admitted at once */
	size_t hs_active; /* admitted (a->admitted) */
	size_t *qnext;    /* [slots], the queue of QUEUED slots, in banner order */
	size_t *qprev;    /* [slots] */
	size_t qhead, qtail;
	int ep;
	due_heap heap;
} runner;

#define NO_SLOT SIZE_MAX

static uint64_t slot_tag(const runner *r, size_t slot)
{
	return (uint64_t)r->gen[slot] << 32 | (uint64_t)slot;
}

/* Register (or re-register) the attempt's socket in its current direction
 * and its due time in the heap. -1 if the kernel or malloc refused. */
static int slot_watch(runner *r, size_t slot)
{
	attempt *a = &r->att[slot];
	uint32_t ev = attempt_events(a);
	struct epoll_event e = {.events = ev, .data.u64 = slot_tag(r, slot)};

	if (a->state == A_QUEUED) {
		if (a->reg_fd == a->fd && epoll_ctl(r->ep, EPOLL_CTL_DEL, a->fd, NULL) != 0)
			return -1;
		a->reg_fd = -1;
	} else if (a->reg_fd != a->fd) {
		if (epoll_ctl(r->ep, EPOLL_CTL_ADD, a->fd, &e) != 0)
			return -1;
		a->reg_fd = a->fd;
		a->reg_events = ev;
	} else if (a->reg_events != ev) {
		if (epoll_ctl(r->ep, EPOLL_CTL_MOD, a->fd, &e) != 0)
			return -1;
		a->reg_events = ev;
	}
	if (r->pushed[slot] != a->due) {
		if (heap_push(&r->heap, (due_entry){a->due, (uint32_t)slot, r->gen[slot]}) != 0)
			return -1;
		r->pushed[slot] = a->due;
	}
	return 0;
}

static void queue_push(runner *r, size_t slot)
{
	r->qnext[slot] = NO_SLOT;
	r->qprev[slot] = r->qtail;
	if (r->qtail == NO_SLOT)
		r->qhead = slot;
	else
		r->qnext[r->qtail] = slot;
	r->qtail = slot;
}

static void queue_unlink(runner *r, size_t slot)
{
	size_t p = r->qprev[slot], n = r->qnext[slot];
	if (p == NO_SLOT)
		r->qhead = n;
	else
		r->qnext[p] = n;
	if (n == NO_SLOT)
		r->qtail = p;
	else
		r->qprev[n] = p;
	r->qnext[slot] = r->qprev[slot] = NO_SLOT;
}

static void slot_release(runner *r, size_t slot)
{
	attempt *a = &r->att[slot];
	if (a->admitted) {
		a->admitted = false;
		r->hs_active--;
	}
	if (r->qhead == slot || r->qprev[slot] != NO_SLOT)
		queue_unlink(r, slot); /* it ended (deadline, cancel) while queued */
	r->gen[slot]++;
	r->pushed[slot] = INT64_MIN;
	r->free[r->nfree++] = slot;
	r->active--;
	r->fd_short = false; /* a descriptor was freed */
}

static step_result attempt_run(attempt *a);

/* Give the attempt a place in the handshake gate and start its handshake;
 * the time it waited for it moves its deadline. */
static step_result admit(runner *r, attempt *a)
{
	if (a->state == A_QUEUED) {
		int64_t waited = clock_mono_ms() - a->queued_at;
		a->res->gate_wait_ms += waited;
		a->deadline += waited;
	}
	a->admitted = true;
	r->hs_active++;
	step_result sr = start_handshake(a);
	return sr == STEP_NEXT ? attempt_run(a) : sr;
}

/* After a step: done, waiting (watched), queued for the gate, or out of
 * descriptors. */
static void slot_after_step(runner *r, size_t slot, size_t index, step_result sr)
{
	attempt *a = &r->att[slot];

	if (sr == STEP_ADMIT) {
		if (a->state == A_CONNECTING) {
			wait_banner(a);
			sr = STEP_WAIT;
		} else if (r->hs_active < r->hs_cap) {
			sr = admit(r, a);
		} else {
			wait_admission(a);
			queue_push(r, slot);
			sr = STEP_WAIT;
		}
	}
	if (sr == STEP_NOFD) {
		attempt_undo(a);
		slot_release(r, slot);
		if (r->active == 0) { /* nothing to wait for */
			attempt_init(a, &r->opts[index], &r->results[index], clock_mono_ms(), -1);
			a->state = A_CONNECTING;
			attempt_fail(a, SSH_ERR_INTERNAL, "no file descriptor: %s",
			             strerror(EMFILE));
			return;
		}
		r->fd_short = true;
		r->cap = r->active > NOFD_SPARE ? r->active - NOFD_SPARE : 1;
		r->retry[r->nretry++] = index;
		return;
	}
	if (a->state == A_DONE) {
		slot_release(r, slot);
		return;
	}
	if (slot_watch(r, slot) != 0) {
		attempt_fail(a, SSH_ERR_INTERNAL, "cannot watch the socket: %s", strerror(errno));
		slot_release(r, slot);
	}
}

/* Advance until the attempt waits, is done, asks for the gate or found no
 * descriptor. */
static step_result attempt_run(attempt *a)
{
	step_result sr;
	if (a->fd >= 0) {
		int one = 1;
		setsockopt(a->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
	}
	do
		sr = attempt_state_step(a);
	while (sr == STEP_NEXT);
	return sr;
}

static void start_pending(runner *r)
{
	while (r->active < r->cap && !r->fd_short && (r->nretry > 0 || r->next < r->n)) {
		size_t i = r->nretry > 0 ? r->retry[--r->nretry] : r->next++;
		size_t slot = r->free[--r->nfree];
		attempt *a = &r->att[slot];
		r->active++;
		attempt_init(a, &r->opts[i], &r->results[i], clock_mono_ms(), r->ep);
		step_result sr = attempt_begin(a);
		slot_after_step(r, slot, i, sr == STEP_NEXT ? attempt_run(a) : sr);
	}
}

/* Places came free in the gate: admit the queued attempts, in order. */
static void admit_queued(runner *r)
{
	while (r->hs_active < r->hs_cap && r->qhead != NO_SLOT) {
		size_t slot = r->qhead;
		queue_unlink(r, slot);
		attempt *a = &r->att[slot];
		slot_after_step(r, slot, (size_t)(a->res - r->results), admit(r, a));
	}
}

/* Milliseconds to the nearest live deadline; stale heap entries on top are
 * dropped on the way. */
static int next_timeout(runner *r, int64_t now)
{
	while (r->heap.len > 0) {
		const due_entry *e = &r->heap.v[0];
		if (e->gen == r->gen[e->slot] && e->due == r->pushed[e->slot]) {
			int64_t t = e->due - now;
			return t < 0 ? 0 : t > INT32_MAX ? INT32_MAX : (int)t;
		}
		heap_pop(&r->heap);
	}
	return 1000; /* not reached: every attempt in flight has an entry */
}

static void expire_due(runner *r, int64_t now)
{
	while (r->heap.len > 0 && r->heap.v[0].due <= now) {
		due_entry e = r->heap.v[0];
		heap_pop(&r->heap);
		if (e.gen != r->gen[e.slot] || e.due != r->pushed[e.slot])
			continue;
		attempt_expire(&r->att[e.slot], now);
		slot_release(r, e.slot);
	}
}

static void cancel_all(runner *r)
{
	for (size_t s = 0; s < r->slots && r->active > 0; s++) {
		if (r->pushed[s] == INT64_MIN)
			continue;
		attempt_fail(&r->att[s], SSH_ERR_CANCELLED, "cancelled");
		slot_release(r, s);
	}
	while (r->nretry > 0 || r->next < r->n) {
		size_t i = r->nretry > 0 ? r->retry[--r->nretry] : r->next++;
		ssh_result *res = &r->results[i];
		memset(res, 0, sizeof *res);
		res->exit_status = -1;
		res->error = SSH_ERR_CANCELLED;
		snprintf(res->message, sizeof res->message, "cancelled before it started");
	}
}

/* One epoll round: step the ready attempts, then expire the due ones.
 * Returns -1 once cancelled (or if epoll failed). */
static int run_round(runner *r)
{
	struct epoll_event ev[EVENTS_MAX];
	int n = epoll_wait(r->ep, ev, EVENTS_MAX, next_timeout(r, clock_mono_ms()));

	if (n < 0 && errno != EINTR)
		return -1;
	for (int k = 0; k < n; k++) {
		if (ev[k].data.u64 == CANCEL_TAG)
			return -1;
	}
	for (int k = 0; k < n; k++) {
		size_t slot = (size_t)(ev[k].data.u64 & UINT32_MAX);
		if ((uint32_t)(ev[k].data.u64 >> 32) != r->gen[slot])
			continue; /* the slot's attempt ended in this round */
		attempt *a = &r->att[slot];
		slot_after_step(r, slot, (size_t)(a->res - r->results), attempt_run(a));
	}
	expire_due(r, clock_mono_ms());
	admit_queued(r);
	return 0;
}

static int runner_init(runner *r, size_t concurrency, size_t handshakes, int cancel_fd)
{
	size_t limit = ssh_concurrency_limit();

	r->slots = concurrency == 0 ? 1 : concurrency < r->n ? concurrency : r->n;
	if (r->slots > limit)
		r->slots = limit;
	r->cap = r->slots;
	r->att = calloc(r->slots, sizeof *r->att);
	r->gen = calloc(r->slots, sizeof *r->gen);
	r->pushed = calloc(r->slots, sizeof *r->pushed);
	r->free = calloc(r->slots, sizeof *r->free);
	r->retry = calloc(r->slots, sizeof *r->retry);
	r->qnext = malloc(r->slots * sizeof *r->qnext);
	r->qprev = malloc(r->slots * sizeof *r->qprev);
	r->qhead = r->qtail = NO_SLOT;
	r->hs_cap = handshakes == 0 ? ssh_handshake_limit() : handshakes;
	r->ep = epoll_create1(EPOLL_CLOEXEC);
	if (!r->att || !r->gen || !r->pushed || !r->free || !r->retry || !r->qnext || !r->qprev ||
	    r->ep < 0)
		return -1;
	for (size_t s = 0; s < r->slots; s++) {
		r->qnext[s] = r->qprev[s] = NO_SLOT;
		r->pushed[s] = INT64_MIN; /* free */
		r->free[r->nfree++] = r->slots - 1 - s;
	}
	struct epoll_event e = {.events = EPOLLIN, .data.u64 = CANCEL_TAG};
	if (cancel_fd >= 0 && epoll_ctl(r->ep, EPOLL_CTL_ADD, cancel_fd, &e) != 0)
		return -1;
	return 0;
}

static void runner_free(runner *r)
{
	if (r->ep >= 0)
		close(r->ep);
	free(r->att);
	free(r->gen);
	free(r->pushed);
	free(r->free);
	free(r->retry);
	free(r->qnext);
	free(r->qprev);
	free(r->heap.v);
}

/* All undone results an internal failure (the runner could not start). */
static void fail_all(runner *r, const char *why)
{
	for (size_t i = 0; i < r->n; i++) {
		ssh_result *res = &r->results[i];
		memset(res, 0, sizeof *res);
		res->exit_status = -1;
		res->error = SSH_ERR_INTERNAL;
		snprintf(res->message, sizeof res->message, "%s", why);
	}
}

int ssh_run_many(const ssh_options *opts, size_t n, size_t concurrency, size_t handshakes,
                 int cancel_fd, ssh_result *results)
{
	runner r = {.opts = opts, .results = results, .n = n, .ep = -1};
	int ret = 0;

	pthread_once(&init_once, library_init);
	if (n == 0)
		return 0;
	if (runner_init(&r, concurrency, handshakes, cancel_fd) != 0) {
		fail_all(&r, errno == EMFILE || errno == ENFILE ? "no file descriptor for epoll"
		                                                : "out of memory");
		runner_free(&r);
		return SSH_ERR_INTERNAL;
	}
	for (;;) {
		start_pending(&r);
		if (r.active == 0)
			break;
		if (run_round(&r) != 0) {
			cancel_all(&r);
			ret = SSH_ERR_CANCELLED;
			break;
		}
	}
	runner_free(&r);
	return ret;
}

int ssh_test(const ssh_options *opt, int cancel_fd, ssh_result *result)
{
	return ssh_run_many(opt, 1, 1, 1, cancel_fd, result);
}

int ssh_known_hosts_forget(const char *path, const char *host, int port, int *removed, char *err,
                           size_t errlen)
{
	return known_hosts_forget(path, host, port, removed, err, errlen) == 0 ? 0 : -1;
}

/* What the rest of the process may hold besides the attempts' sockets:
 * an eighth of the limit, at least 32, at most 1024. */
static size_t nofile_reserve(size_t soft)
{
	size_t r = soft / 8;
	return r < 32 ? 32 : r > 1024 ? 1024 : r;
}

size_t ssh_concurrency_limit(void)
{
	struct rlimit rl;
	size_t soft;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1;
	soft = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20) ? (1u << 20)
	                                                                : (size_t)rl.rlim_cur;
	return soft > nofile_reserve(soft) + 1 ? soft - nofile_reserve(soft) : 1;
}

size_t ssh_handshake_limit(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = (size_t)(cpus > 0 ? cpus : 1) * SSH_HANDSHAKES_PER_CPU;
	return n < SSH_HANDSHAKES_MIN ? SSH_HANDSHAKES_MIN : n;
}
