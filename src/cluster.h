/*
 * cluster — leader election and fencing of several daemons on one
 * PostgreSQL store (docs/cluster.md).
 *
 * One cluster thread per daemon with its own store connection (the lock
 * connection). Every heartbeat (failover_timeout / 5, at least 1 s) it:
 *  - as standby: tries the session advisory lock; when a leader holds it
 *    but its heartbeat is older than failover_timeout, evicts it
 *    (pg_terminate_backend of its lock connection) and tries again;
 *  - on getting the lock: takes a new term in cluster_leader (one store
 *    transaction, which also marks the previous leader's running rows
 *    interrupted, interrupted_by = failover) and tells the loop to promote;
 *  - as leader: renews heartbeat_at WHERE term = mine; 0 rows or any error
 *    steps down at once.
 * Every instance upserts its cluster_members row at each heartbeat.
 *
 * On SQLite there is no thread: cluster_start takes a new term in the same
 * way (one transaction) and the daemon is leader for good.
 *
 * Fencing: a scheduled run's row is inserted only while cluster_leader
 * still holds (term, instance) — runs_start_fenced (runs.h) — so a deposed
 * leader that wakes up cannot start a fire a new leader already took.
 *
 * Threads: cluster_start/cluster_stop/cluster_events and the term getters
 * on the loop thread; cluster_is_leader, cluster_instance,
 * cluster_leader_name, cluster_may_dispatch and cluster_term from any thread
 * (the shared fields are atomic or under a mutex).
 *
 * Ownership: cluster_start's *out is freed by cluster_stop; strings
 * returned are borrowed for the life of the cluster.
 */
#ifndef FK_CLUSTER_H
#define FK_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

typedef struct cluster cluster;

/* The loop learns about role changes through this descriptor (an eventfd,
 * readable when cluster_events has something to report). */
typedef enum {
	CLUSTER_EV_NONE = 0,
	CLUSTER_EV_PROMOTED, /* this instance became leader: reload and re-arm */
	CLUSTER_EV_DEMOTED,  /* this instance lost leadership: stop dispatching */
} cluster_event;

/* Start the cluster for cfg. st is the loop's own connection (used on
 * SQLite for the one term increment). On PostgreSQL the thread starts as
 * standby and tries the lock at once. 0, or -1 with a message in err. */
int cluster_start(cluster **out, config *cfg, store *st, char *err, size_t errlen);
/* Stop the thread, release the lock (the connection is closed), delete
 * nothing: a stopped instance's member row ages out. NULL is fine. */
void cluster_stop(cluster *c);

/* The loop's eventfd (-1 on SQLite: there is nothing to wait for). */
int cluster_event_fd(const cluster *c);
/* Next role change to act on (consumes the eventfd); CLUSTER_EV_NONE when
 * there is none. Loop thread. */
cluster_event cluster_next_event(cluster *c);

/* True while this instance holds leadership (always true on SQLite). */
bool cluster_is_leader(const cluster *c);
/* Leader AND its last successful heartbeat younger than failover_timeout/2
 * (monotonic clock): the gate of every scheduled dispatch. */
bool cluster_may_dispatch(const cluster *c);
/* This instance's name ([cluster] instance). */
const char *cluster_instance(const cluster *c);
/* Copy the current leader's instance name (as last read from
 * cluster_leader) into out; 0, or -1 when no leader is known ("" in out). */
int cluster_leader_name(const cluster *c, char *out, size_t cap);
/* The term this instance leads under (0 while standby). */
int64_t cluster_term(const cluster *c);
/* "leader" or "standby". */
const char *cluster_role_name(const cluster *c);
/* True when the cluster runs on PostgreSQL (a real election). */
bool cluster_is_distributed(const cluster *c);

/* Shutdown: give the leadership back now (a standby takes over at its next
 * heartbeat) and campaign no more; the thread keeps the member row fresh
 * until cluster_stop. Loop thread. */
void cluster_resign(cluster *c);
/* The term the loop promoted under (cluster_next_event), 0 while it has not:
 * the fence of every run row the loop inserts. Loop thread. */
int64_t cluster_fence_term(const cluster *c);
/* True when the term the loop acts on was taken at this process's start
 * (its first election, won at once): the start's catch-up and
 * run_on_start apply; false after a failover. */
bool cluster_promoted_at_start(const cluster *c);
/* A task with a running row of another live instance (a leader that
 * stepped down, still finishing it): busy for overlap. Any thread. */
bool cluster_task_busy_elsewhere(cluster *c, const char *task);
double cluster_failover_timeout_sec(const cluster *c);
/* Inside a store transaction on st (which holds the store's write lock):
 * 1 while cluster_leader still names this instance under the loop's term,
 * 0 if not, or a negative store_error. Loop thread. */
int cluster_fence_holds(cluster *c, store *st);

#endif
