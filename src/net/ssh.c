/*
 * ssh — the non-blocking SSH tester; see ssh.h.
 *
 * Each attempt is a state machine, one small function per state, in the
 * manner of curl's lib/vssh/libssh2.c:
 *
 *   IDLE --begin: getaddrinfo + connect()--> CONNECTING --SO_ERROR 0--> HANDSHAKE
 *   HANDSHAKE --host key checked--> AUTH_LIST --> AUTH_KEY | AUTH_AGENT | AUTH_PASSWORD
 *   AUTH_* --authenticated--> CHANNEL --> EXEC --> READ --EOF--> CLOSE --> DONE
 *   HANDSHAKE --host key checked, hostkey_only--> DONE (known-hosts scan)
 *
 * A state function returns STEP_WAIT when libssh2 (or connect) would block,
 * STEP_NEXT after changing state, and STEP_DONE once the result is final.
 * ssh_run_many polls every waiting attempt's socket in the direction it is
 * blocked on, plus the cancel fd, with the nearest deadline as timeout.
 *
 * Invariants:
 *  1. An attempt owns its socket, session, channel, agent and secrets; all
 *     are released by attempt_end, which runs exactly once per started
 *     attempt (success, failure, deadline or cancel).
 *  2. Before libssh2 frees a session whose peer may be silent, the socket
 *     is shut down, so no libssh2 call in attempt_end can wait on the peer.
 *  3. A CONNECTING attempt is stepped only when poll() reported its socket:
 *     SO_ERROR reads 0 while a connect is still in progress.
 */
#include "ssh.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

typedef enum { STEP_WAIT, STEP_NEXT, STEP_DONE } step_result;

typedef struct {
	const ssh_options *opt;
	ssh_result *res;
	attempt_state state;
	int64_t started;
	int64_t deadline;
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
	if (a->fd >= 0)
		close(a->fd);
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
	a->res->duration_ms = clock_mono_ms() - a->started;
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
		if (fd < 0) {
			a->last_errno = errno;
			continue;
		}
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

static step_result state_connecting(attempt *a)
{
	int soerr = 0;
	socklen_t len = sizeof soerr;

	if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		soerr = errno;
	if (soerr == 0)
		return start_handshake(a);
	a->last_errno = soerr;
	close(a->fd);
	a->fd = -1;
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

/* Advance until the attempt waits or is done. true when done. */
static bool attempt_step(attempt *a)
{
	step_result r;
	do
		r = attempt_state_step(a);
	while (r == STEP_NEXT);
	return r == STEP_DONE || a->state == A_DONE;
}

static short attempt_events(const attempt *a)
{
	if (a->state == A_CONNECTING)
		return POLLOUT;
	int dir = libssh2_session_block_directions(a->session);
	short ev = 0;
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		ev |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		ev |= POLLOUT;
	return ev ? ev : POLLIN;
}

static void attempt_init(attempt *a, const ssh_options *opt, ssh_result *res, int64_t now)
{
	memset(a, 0, sizeof *a);
	memset(res, 0, sizeof *res);
	a->opt = opt;
	a->res = res;
	a->fd = -1;
	a->user = opt->user ? opt->user : "root";
	a->started = now;
	a->deadline = now + (opt->timeout_ms > 0 ? opt->timeout_ms : SSH_DEFAULT_TIMEOUT_MS);
	res->exit_status = -1;
	res->stage = SSH_STAGE_RESOLVE;
}

static void attempt_expire(attempt *a)
{
	if (a->state == A_CONNECTING)
		attempt_fail(a, SSH_ERR_CONNECT_TIMEOUT, "no connection within %lld ms",
		             (long long)a->opt->timeout_ms);
	else
		attempt_fail(a, SSH_ERR_TIMEOUT, "no answer within %lld ms in %s",
		             (long long)(a->deadline - a->started),
		             ssh_stage_name(state_stage(a->state)));
}

/* ---- many attempts, one thread ---- */

typedef struct {
	const ssh_options *opts;
	ssh_result *results;
	size_t n, concurrency, next;
	attempt *att;    /* concurrency slots */
	size_t *slot_of; /* attempt index of each active slot */
	size_t active;
	struct pollfd *pfd; /* active + cancel */
} runner;

static void start_pending(runner *r)
{
	while (r->active < r->concurrency && r->next < r->n) {
		size_t i = r->next++;
		attempt *a = &r->att[r->active];
		attempt_init(a, &r->opts[i], &r->results[i], clock_mono_ms());
		if (attempt_begin(a) == STEP_DONE)
			continue;
		r->slot_of[r->active++] = i;
	}
}

static int poll_timeout(const runner *r, int64_t now)
{
	int64_t t = INT32_MAX;
	for (size_t s = 0; s < r->active; s++)
		if (r->att[s].deadline - now < t)
			t = r->att[s].deadline - now;
	return t < 0 ? 0 : (int)t;
}

/* Drop finished slots, keeping the others packed. */
static void compact(runner *r)
{
	size_t out = 0;
	for (size_t s = 0; s < r->active; s++) {
		if (r->att[s].state == A_DONE)
			continue;
		if (out != s) {
			r->att[out] = r->att[s];
			r->slot_of[out] = r->slot_of[s];
		}
		out++;
	}
	r->active = out;
}

static bool cancel_ready(const runner *r, int cancel_fd)
{
	return cancel_fd >= 0 && (r->pfd[r->active].revents & (POLLIN | POLLERR | POLLHUP));
}

static void cancel_all(runner *r)
{
	for (size_t s = 0; s < r->active; s++)
		attempt_fail(&r->att[s], SSH_ERR_CANCELLED, "cancelled");
	r->active = 0;
	for (; r->next < r->n; r->next++) {
		ssh_result *res = &r->results[r->next];
		memset(res, 0, sizeof *res);
		res->exit_status = -1;
		res->error = SSH_ERR_CANCELLED;
		snprintf(res->message, sizeof res->message, "cancelled before it started");
	}
}

/* One poll round. Returns -1 once cancelled. */
static int run_round(runner *r, int cancel_fd)
{
	for (size_t s = 0; s < r->active; s++)
		r->pfd[s] =
		        (struct pollfd){.fd = r->att[s].fd, .events = attempt_events(&r->att[s])};
	r->pfd[r->active] = (struct pollfd){.fd = cancel_fd, .events = POLLIN};
	int rc = poll(r->pfd, r->active + 1, poll_timeout(r, clock_mono_ms()));
	if (rc < 0 && errno != EINTR)
		return -1;
	if (rc > 0 && cancel_ready(r, cancel_fd)) {
		cancel_all(r);
		return -1;
	}
	int64_t now = clock_mono_ms();
	for (size_t s = 0; s < r->active; s++) {
		attempt *a = &r->att[s];
		if (rc > 0 && r->pfd[s].revents)
			attempt_step(a);
		if (a->state != A_DONE && now >= a->deadline)
			attempt_expire(a);
	}
	compact(r);
	return 0;
}

int ssh_run_many(const ssh_options *opts, size_t n, size_t concurrency, int cancel_fd,
                 ssh_result *results)
{
	runner r = {.opts = opts, .results = results, .n = n};
	int ret = 0;

	pthread_once(&init_once, library_init);
	if (n == 0)
		return 0;
	r.concurrency = concurrency == 0 ? 1 : concurrency < n ? concurrency : n;
	r.att = calloc(r.concurrency, sizeof *r.att);
	r.slot_of = calloc(r.concurrency, sizeof *r.slot_of);
	r.pfd = calloc(r.concurrency + 1, sizeof *r.pfd);
	if (!r.att || !r.slot_of || !r.pfd) {
		cancel_all(&r);
		ret = SSH_ERR_INTERNAL;
		goto out;
	}
	for (;;) {
		start_pending(&r);
		if (r.active == 0)
			break;
		if (run_round(&r, cancel_fd) != 0) {
			cancel_all(&r);
			ret = SSH_ERR_CANCELLED;
			break;
		}
	}
out:
	free(r.att);
	free(r.slot_of);
	free(r.pfd);
	return ret;
}

int ssh_test(const ssh_options *opt, int cancel_fd, ssh_result *result)
{
	return ssh_run_many(opt, 1, 1, cancel_fd, result);
}

int ssh_known_hosts_forget(const char *path, const char *host, int port, int *removed, char *err,
                           size_t errlen)
{
	return known_hosts_forget(path, host, port, removed, err, errlen) == 0 ? 0 : -1;
}
