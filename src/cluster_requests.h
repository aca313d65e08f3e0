/*
 * cluster_requests — trigger and recover from any node (docs/cluster.md,
 * "Requests from any node").
 *
 * A standby does not run tasks: it forwards a trigger or a recover to the
 * leader through the store. It inserts a cluster_requests row (kind, body =
 * the control request with its correlation_id, from_instance, state
 * queued) and notifies CLUSTER_REQUESTS_CHANNEL with the row's id. The
 * leader's listener thread (its own connection, LISTEN) wakes the loop,
 * which claims queued rows one at a time (cluster_request_claim: an
 * UPDATE ... WHERE state = 'queued' RETURNING, so a request runs at most
 * once even when two daemons both believe they lead), runs each through
 * the same function as a local control request, stores the reply
 * (cluster_request_finish: state done or failed) and notifies
 * CLUSTER_REPLIES_CHANNEL. The CLI that sent the request to the standby
 * waits for that reply (cluster_request_wait) and then follows the run as
 * it would a local one.
 *
 * Deadline: a request not claimed within cluster_request_ttl_ms (the
 * failover timeout plus CLUSTER_REQUEST_MARGIN_MS: a request sent while
 * there is no leader is served by the next one) fails with error_type
 * no_leader, either by the leader that finds it expired or by the waiter
 * that gives up (both with UPDATE ... WHERE state = 'queued', so an
 * expired request never runs later).
 *
 * Invariants:
 * 1. A row leaves 'queued' once, by exactly one UPDATE that checks
 *    state = 'queued': the claim (-> done, reply NULL until
 *    cluster_request_finish) or an expiry (-> failed, reply set).
 * 2. A claimed row's reply is written by the claimer only; a claimer that
 *    dies in between leaves done with a NULL reply, which the waiter
 *    reports as "taken, no answer" (the run may or may not have started:
 *    `fleetkeeper runs` tells) — never run twice.
 *
 * Threads: the listener is a thread of its own (cluster_listener_*); the
 * row functions run on the caller's thread and connection.
 * Errors: 0 or a negative store_error (err set where there is err).
 * Ownership: strings through ** are malloc'd, the caller frees them.
 */
#ifndef FK_CLUSTER_REQUESTS_H
#define FK_CLUSTER_REQUESTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "config.h"
#include "store.h"

#define CLUSTER_REQUESTS_CHANNEL  "fk_requests"
#define CLUSTER_REPLIES_CHANNEL   "fk_replies"
#define CLUSTER_REQUEST_MARGIN_MS 10000
/* The most requests the loop serves per wakeup (the rest at the next). */
#define CLUSTER_REQUEST_BATCH 16

/* cluster_request_wait's result when the request failed to reach a leader. */
enum { CLUSTER_REQUEST_EXPIRED = -20, CLUSTER_REQUEST_NO_REPLY = -21 };

/* How long a queued request waits for a leader. */
int64_t cluster_request_ttl_ms(const config *cfg);

/* ---- rows (any thread, the caller's connection) ---- */

/* Insert a queued request and notify the leader (PostgreSQL: pg_notify;
 * nothing on SQLite, where nobody forwards). */
int cluster_request_send(store *st, const char *kind, const char *body, const char *from_instance,
                         double now, int64_t *id);
/* Claim the oldest queued request created at or after not_before: 0 with
 * *id, *kind, *body, *from (malloc'd) set, STORE_NOTFOUND when there is
 * none. */
int cluster_request_claim(store *st, double now, double not_before, int64_t *id, char **kind,
                          char **body, char **from);
/* The claimed request's reply (state done when reply says "ok": true,
 * else failed), then notify CLUSTER_REPLIES_CHANNEL. */
int cluster_request_finish(store *st, int64_t id, const char *reply, bool ok, double now);
/* Queued requests created before cutoff fail with error_type no_leader;
 * *n gets how many. */
int cluster_requests_expire(store *st, double now, double cutoff, int64_t *n);

/* ---- the waiter (the CLI) ---- */

/* Wait up to timeout_ms for request id's reply (malloc'd JSON into
 * *reply). On the deadline a still queued request is failed (it will
 * never run): CLUSTER_REQUEST_EXPIRED; a claimed one without a reply after
 * a further CLUSTER_REQUEST_MARGIN_MS: CLUSTER_REQUEST_NO_REPLY; a store
 * failure: its store_error. err says why in every case. */
int cluster_request_wait(const config *cfg, int64_t id, int64_t timeout_ms, char **reply, char *err,
                         size_t errlen);

/* ---- the leader's listener ---- */

typedef struct cluster_listener cluster_listener;

/* PostgreSQL only (on SQLite *out is NULL and 0 is returned: there is no
 * one to forward). A thread with its own connection LISTENs on
 * CLUSTER_REQUESTS_CHANNEL and makes cluster_listener_fd readable when
 * the loop has requests to look at: on a notification, when this instance
 * becomes leader (requests queued while there was none) and every few
 * seconds while it leads (a notification lost in a reconnect). cl is
 * borrowed and must outlive the listener. 0, or -1 with err. */
int cluster_listener_start(cluster_listener **out, const config *cfg, const cluster *cl, char *err,
                           size_t errlen);
/* The descriptor the loop watches (an eventfd); -1 for NULL. */
int cluster_listener_fd(const cluster_listener *l);
/* Consume the wakeup (loop thread). */
void cluster_listener_ack(cluster_listener *l);
/* Wake the loop again (it left requests for the next wakeup). */
void cluster_listener_kick(cluster_listener *l);
/* Stop and join the thread, close the connection. NULL is fine. */
void cluster_listener_stop(cluster_listener *l);

#endif
