/*
 * cluster_requests — see cluster_requests.h.
 */
#include "cluster_requests.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "clock.h"

/* While leader, the loop is woken this often even without a notification. */
#define LISTENER_SWEEP_MS 5000
/* ... and this often in its first LISTENER_SWEEP_MS as leader. */
#define LISTENER_EARLY_MS 500
/* Finished requests are deleted this long after they ended. */
#define REQUEST_KEEP_SEC (24 * 3600.0)
/* The waiter's fallback poll of the row between notifications. */
#define WAIT_POLL_MS 250

int64_t cluster_request_ttl_ms(const config *cfg)
{
	int64_t f = cfg->failover_timeout_ms > 0 ? cfg->failover_timeout_ms : 15000;
	return f + CLUSTER_REQUEST_MARGIN_MS;
}

/* ---- rows ---- */

static const char sql_insert[] =
        "INSERT INTO cluster_requests(kind, body, from_instance, state, created_at)"
        " VALUES (?1, ?2, ?3, 'queued', ?4) RETURNING id";
static const char sql_notify[] = "SELECT pg_notify(?1, ?2)";
static const char sql_claim[] =
        "UPDATE cluster_requests SET state = 'done', done_at = ?1"
        " WHERE id = (SELECT id FROM cluster_requests WHERE state = 'queued'"
        "  AND created_at >= ?2 ORDER BY id LIMIT 1) AND state = 'queued'"
        " RETURNING id, kind, body, from_instance";
static const char sql_finish[] =
        "UPDATE cluster_requests SET reply = ?2, state = ?3, done_at = ?4 WHERE id = ?1";
static const char sql_expire[] =
        "UPDATE cluster_requests SET state = 'failed', reply = ?1, done_at = ?2"
        " WHERE state = 'queued' AND created_at < ?3";
static const char sql_forget[] =
        "DELETE FROM cluster_requests WHERE state <> 'queued' AND done_at < ?1";
static const char sql_cancel[] =
        "UPDATE cluster_requests SET state = 'failed', reply = ?2, done_at = ?3"
        " WHERE id = ?1 AND state = 'queued'";
static const char sql_get[] = "SELECT state, reply FROM cluster_requests WHERE id = ?1";

static int notify(store *st, const char *channel, int64_t id)
{
	char payload[32];
	store_stmt *q;
	if (!store_is_pg(st))
		return STORE_OK;
	snprintf(payload, sizeof payload, "%lld", (long long)id);
	int rc = store_prepare(st, sql_notify, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_text(q, 1, channel);
	store_bind_text(q, 2, payload);
	rc = store_step_done(q);
	store_stmt_done(q);
	return rc;
}

int cluster_request_send(store *st, const char *kind, const char *body, const char *from_instance,
                         double now, int64_t *id)
{
	store_stmt *q;
	int rc = store_prepare(st, sql_insert, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_text(q, 1, kind);
	store_bind_text(q, 2, body);
	store_bind_text(q, 3, from_instance);
	store_bind_double(q, 4, now);
	rc = store_step_id(q, id);
	if (rc == STORE_OK)
		rc = notify(st, CLUSTER_REQUESTS_CHANNEL, *id);
	return rc;
}

int cluster_request_claim(store *st, double now, double not_before, int64_t *id, char **kind,
                          char **body, char **from)
{
	store_stmt *q;
	*kind = *body = *from = NULL;
	int rc = store_prepare(st, sql_claim, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_double(q, 1, now);
	store_bind_double(q, 2, not_before);
	rc = store_step(q);
	if (rc == STORE_ROW) {
		*id = store_col_int64(q, 0);
		*kind = store_col_dup(q, 1);
		*body = store_col_dup(q, 2);
		*from = store_col_dup(q, 3);
		/* to the end: RETURNING's statement is done only then */
		while ((rc = store_step(q)) == STORE_ROW)
			;
		rc = rc == STORE_DONE ? STORE_OK : rc;
	} else if (rc == STORE_DONE) {
		rc = STORE_NOTFOUND;
	}
	store_stmt_done(q);
	if (rc != STORE_OK && rc != STORE_NOTFOUND) {
		free(*kind);
		free(*body);
		free(*from);
		*kind = *body = *from = NULL;
	}
	return rc;
}

int cluster_request_finish(store *st, int64_t id, const char *reply, bool ok, double now)
{
	store_stmt *q;
	int rc = store_prepare(st, sql_finish, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(q, 1, id);
	store_bind_text(q, 2, reply);
	store_bind_text(q, 3, ok ? "done" : "failed");
	store_bind_double(q, 4, now);
	rc = store_step_done(q);
	store_stmt_done(q);
	if (rc == STORE_OK)
		rc = notify(st, CLUSTER_REPLIES_CHANNEL, id);
	return rc;
}

static char *no_leader_reply(const char *msg)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddFalseToObject(r, "ok");
	cJSON_AddStringToObject(r, "error", msg);
	cJSON_AddStringToObject(r, "error_type", "no_leader");
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

int cluster_requests_expire(store *st, double now, double cutoff, int64_t *n)
{
	store_stmt *q;
	char msg[160];
	*n = 0;
	snprintf(msg, sizeof msg, "no leader took the request within %.0f s", now - cutoff);
	char *reply = no_leader_reply(msg);
	int rc = store_prepare(st, sql_expire, &q);
	if (rc == STORE_OK) {
		store_bind_text(q, 1, reply ? reply : "{\"ok\": false}");
		store_bind_double(q, 2, now);
		store_bind_double(q, 3, cutoff);
		rc = store_step_done(q);
		store_stmt_done(q);
		*n = rc == STORE_OK ? store_changes(st) : 0;
	}
	free(reply);
	if (rc == STORE_OK && (rc = store_prepare(st, sql_forget, &q)) == STORE_OK) {
		store_bind_double(q, 1, now - REQUEST_KEEP_SEC);
		rc = store_step_done(q);
		store_stmt_done(q);
	}
	return rc;
}

/* ---- the waiter ---- */

/* 1 with *reply when the row has its reply, 0 when not yet (*queued
 * tells whether it is still queued), or a negative store_error. */
static int poll_row(store *st, int64_t id, bool *queued, char **reply)
{
	store_stmt *q;
	*reply = NULL;
	*queued = false;
	int rc = store_prepare(st, sql_get, &q);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(q, 1, id);
	rc = store_step(q);
	if (rc == STORE_ROW) {
		const char *state = store_col_text(q, 0);
		*queued = state && strcmp(state, "queued") == 0;
		*reply = store_col_dup(q, 1);
		rc = *reply ? 1 : 0;
	} else if (rc == STORE_DONE) {
		rc = STORE_NOTFOUND;
	}
	store_stmt_done(q);
	return rc;
}

/* Fail the request if it is still queued: true when it was (it never
 * runs now). */
static bool cancel_queued(store *st, int64_t id, const char *msg)
{
	store_stmt *q;
	char *reply = no_leader_reply(msg);
	bool cancelled = false;
	if (reply && store_prepare(st, sql_cancel, &q) == STORE_OK) {
		store_bind_int64(q, 1, id);
		store_bind_text(q, 2, reply);
		store_bind_double(q, 3, clock_wall());
		cancelled = store_step_done(q) == STORE_OK && store_changes(st) == 1;
		store_stmt_done(q);
	}
	free(reply);
	return cancelled;
}

/* Until the next notification on st, at most ms. */
static void wait_notification(store *st, int64_t ms)
{
	int fd = store_notify_fd(st);
	if (ms <= 0)
		return;
	if (ms > WAIT_POLL_MS)
		ms = WAIT_POLL_MS;
	if (fd >= 0) {
		struct pollfd p = {fd, POLLIN, 0};
		poll(&p, 1, (int)ms);
	} else {
		poll(NULL, 0, (int)ms);
	}
	store_notifications(st, NULL, NULL); /* consume; a lost connection reconnects */
}

int cluster_request_wait(const config *cfg, int64_t id, int64_t timeout_ms, char **reply, char *err,
                         size_t errlen)
{
	store *st = NULL;
	bool queued = true, claimed_late = false;
	int64_t deadline = clock_mono_ms() + timeout_ms;

	*reply = NULL;
	if (store_open(&st, cfg->db_path, err, errlen) != 0)
		return STORE_ERROR;
	store_listen(st, CLUSTER_REPLIES_CHANNEL); /* else: the fallback poll */
	int rc;
	for (;;) {
		rc = poll_row(st, id, &queued, reply);
		if (rc == 1) {
			rc = 0;
			break;
		}
		if (rc < 0 && rc != STORE_UNAVAILABLE) {
			store_fail(st, rc, "cluster request", err, errlen);
			break;
		}
		int64_t left = deadline - clock_mono_ms();
		if (left <= 0 && rc == 0 && queued && !claimed_late) {
			snprintf(err, errlen,
			         "no leader took request %lld within %.0f s; it will not run",
			         (long long)id, (double)timeout_ms / 1000.0);
			if (cancel_queued(st, id, err)) {
				rc = CLUSTER_REQUEST_EXPIRED;
				break;
			}
			/* claimed meanwhile: its reply is on its way */
			claimed_late = true;
			deadline = clock_mono_ms() + CLUSTER_REQUEST_MARGIN_MS;
			continue;
		}
		if (left <= 0) {
			if (rc == STORE_UNAVAILABLE) {
				store_fail(st, rc, "cluster request", err, errlen);
				break;
			}
			if (!queued && !claimed_late) {
				/* taken by a leader: it answers in milliseconds unless it
				 * stopped; one margin more */
				claimed_late = true;
				deadline = clock_mono_ms() + CLUSTER_REQUEST_MARGIN_MS;
				continue;
			}
			snprintf(err, errlen,
			         "the leader took request %lld but did not answer (it may have "
			         "stopped); see `fleetkeeper runs` for whether it started",
			         (long long)id);
			rc = CLUSTER_REQUEST_NO_REPLY;
			break;
		}
		wait_notification(st, left);
	}
	store_close(st);
	return rc;
}

/* ---- the listener ---- */

struct cluster_listener {
	pthread_t thread;
	int wake_fd; /* the loop's: readable when there is something to serve */
	int stop_fd;
	char *db_path;
	const cluster *cl;
};

void cluster_listener_kick(cluster_listener *l)
{
	uint64_t one = 1;
	if (l && write(l->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
		return; /* an eventfd write fails only on overflow: already readable */
}

int cluster_listener_fd(const cluster_listener *l)
{
	return l ? l->wake_fd : -1;
}

void cluster_listener_ack(cluster_listener *l)
{
	uint64_t v;
	if (l && read(l->wake_fd, &v, sizeof v) < 0)
		return; /* EAGAIN: nothing pending */
}

/* Until stop: the connection (opened and LISTENing again after any loss),
 * the wakeups. */
static void *listener_main(void *arg)
{
	cluster_listener *l = arg;
	store *st = NULL;
	char err[256];
	bool was_leader = false, listening = false;
	int64_t last_kick = 0, leader_since = 0;

	for (;;) {
		if (st == NULL && store_open(&st, l->db_path, err, sizeof err) != 0)
			st = NULL;
		if (st && !listening)
			listening = store_listen(st, CLUSTER_REQUESTS_CHANNEL) == STORE_OK;
		bool leader = cluster_is_leader(l->cl);
		int64_t now = clock_mono_ms();
		if (leader && !was_leader)
			leader_since = now;
		/* just promoted, the loop may not lead yet (its promotion event is
		 * on its way): look more often for a while */
		int64_t sweep = now - leader_since < LISTENER_SWEEP_MS ? LISTENER_EARLY_MS
		                                                       : LISTENER_SWEEP_MS;
		if (leader && (!was_leader || now - last_kick >= sweep)) {
			cluster_listener_kick(l);
			last_kick = now;
		}
		was_leader = leader;
		struct pollfd p[2] = {{l->stop_fd, POLLIN, 0},
		                      {st ? store_notify_fd(st) : -1, POLLIN, 0}};
		int n = poll(p, p[1].fd >= 0 ? 2 : 1, leader ? LISTENER_EARLY_MS : 1000);
		if (n > 0 && (p[0].revents & POLLIN))
			break;
		/* also without input: a lost connection is made again here */
		if (st && listening && store_notifications(st, NULL, NULL) > 0 &&
		    cluster_is_leader(l->cl)) {
			cluster_listener_kick(l);
			last_kick = clock_mono_ms();
		}
	}
	store_close(st);
	return NULL;
}

int cluster_listener_start(cluster_listener **out, const config *cfg, const cluster *cl, char *err,
                           size_t errlen)
{
	*out = NULL;
	if (!cfg->store_postgresql)
		return 0;
	cluster_listener *l = calloc(1, sizeof *l);
	if (l == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	l->cl = cl;
	l->db_path = strdup(cfg->db_path);
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->db_path == NULL || l->wake_fd < 0 || l->stop_fd < 0 ||
	    pthread_create(&l->thread, NULL, listener_main, l) != 0) {
		snprintf(err, errlen, "cannot start the request listener: %s", strerror(errno));
		if (l->wake_fd >= 0)
			close(l->wake_fd);
		if (l->stop_fd >= 0)
			close(l->stop_fd);
		free(l->db_path);
		free(l);
		return -1;
	}
	*out = l;
	return 0;
}

void cluster_listener_stop(cluster_listener *l)
{
	uint64_t one = 1;
	if (l == NULL)
		return;
	/* a fresh eventfd takes the write: the thread sees it within its poll */
	if (write(l->stop_fd, &one, sizeof one) < 0)
		abort();
	pthread_join(l->thread, NULL);
	close(l->wake_fd);
	close(l->stop_fd);
	free(l->db_path);
	free(l);
}
