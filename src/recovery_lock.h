/*
 * recovery_lock — one recovery per server across machines (docs/cluster.md,
 * "Recovery locks"): a row of recovery_locks (server, instance,
 * correlation_id, taken_at, expires_at) per server being recovered, in the
 * store every daemon of a cluster shares. The same on SQLite.
 *
 * A row is a lease: its holder renews expires_at before each step of the
 * recovery (each bounded by the playbook timeout) and deletes it at the
 * end. Another taker takes a row over only when it is stale:
 *  - expires_at has passed (its holder died or hangs), or
 *  - it is older than RECOVERY_LOCK_GRACE_SEC and the run of its
 *    correlation_id no longer runs (a failover marked it interrupted, or a
 *    restart did), or
 *  - own_stale and it is the taker's own instance: the caller holds the
 *    instance's local lock (recovery.c: its in-process table and the state
 *    directory's flock), so no live recovery of this instance owns it.
 * Take is one INSERT ... ON CONFLICT (server) DO UPDATE ... WHERE <stale>,
 * so two takers on any machines never both succeed.
 *
 * Threads: any, on the caller's connection. Errors: a negative
 * store_error, the message in store_errmsg.
 */
#ifndef FK_RECOVERY_LOCK_H
#define FK_RECOVERY_LOCK_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

/* A lock without a running run is taken over only after this long (the
 * gap between taking the lock and inserting the run's row). */
#define RECOVERY_LOCK_GRACE_SEC 30.0

typedef struct {
	char instance[128];
	char correlation_id[96];
	double expires_at;
} recovery_lock_holder;

/* 1 taken (until expires_at), 0 held by another (*holder filled, if it
 * can be read), or a negative store_error. */
int recovery_lock_take(store *st, const char *server, const char *instance,
                       const char *correlation_id, double now, double expires_at, bool own_stale,
                       recovery_lock_holder *holder);
/* The holder's lease until expires_at (nothing when it no longer holds). */
int recovery_lock_renew(store *st, const char *server, const char *instance, double expires_at);
/* Give the lock back (nothing when it no longer holds it). */
int recovery_lock_release(store *st, const char *server, const char *instance);

#endif
