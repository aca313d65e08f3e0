/*
 * pool — the worker threads that execute task runs.
 *
 * The loop thread submits work; each worker thread owns its own store
 * connection and passes it to the work function. Finished work comes back to
 * the loop through pool_take_done, signalled by pool_done_fd becoming
 * readable, so the loop never waits on a worker.
 *
 * Threads: pool_submit, pool_take_done and pool_stop are for the loop thread.
 */
#ifndef FK_POOL_H
#define FK_POOL_H

#include <stddef.h>

#include "store.h"

typedef struct pool pool;
typedef void (*pool_work_fn)(void *arg, store *st);

/* Start nworkers threads, each with a connection to db_path. */
int pool_start(pool **out, unsigned nworkers, const char *db_path, char *err, size_t errlen);
/* Queue work; arg comes back from pool_take_done once fn returned. */
int pool_submit(pool *p, pool_work_fn fn, void *arg);
/* Readable (eventfd) while finished work waits to be taken. */
int pool_done_fd(const pool *p);
/* One finished arg, or NULL. */
void *pool_take_done(pool *p);
/* Work submitted and not yet taken back. */
size_t pool_outstanding(const pool *p);
/* Waits for queued and running work to finish, joins, frees. Finished args
 * not taken are dropped (the caller takes them first). NULL is fine. */
void pool_stop(pool *p);

#endif
