/*
 * retention — the store's housekeeping as a sequence of short batches:
 * events, finished runs and notifications past retention_days, the
 * health_history hours past check_history_raw_hours downsampled and those
 * past check_history_days deleted, then the freed pages given back to the
 * file system (store_vacuum_step).
 *
 * A retention_job is begun with its cutoffs and stepped: each
 * retention_step runs one batch (at most RETENTION_BATCH_ROWS rows, or
 * STORE_VACUUM_STEP_PAGES pages) in its own short transaction and returns,
 * so the write lock is held for one batch at a time and other writers
 * (the event writer, workers) get it between steps. The caller decides the
 * pause between steps (the daemon re-arms its prune timer, daemon.c).
 *
 * Threads: the job belongs to the thread that steps it, with that thread's
 * store connection (in the daemon, the loop).
 * Errors: retention_step returns a negative store_error (message in
 * store_errmsg(), failed kind in job->failed_kind); the job is then over.
 * Ownership: the job holds no pointers; nothing to free.
 */
#ifndef FK_RETENTION_H
#define FK_RETENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

/* Rows per batch: measured at about 10-25 ms per batch of events on a
 * 30-day store of 10,000 servers (docs/state-store.md, Retention). */
#define RETENTION_BATCH_ROWS 1000

typedef enum {
	RETENTION_EVENTS,
	RETENTION_RUNS,
	RETENTION_NOTIFICATIONS,
	RETENTION_HEALTH_DELETED,     /* health_history hours deleted */
	RETENTION_HEALTH_DOWNSAMPLED, /* health_history hours whose samples went */
	RETENTION_VACUUM,             /* pages given back to the file system */
	RETENTION_DONE,
} retention_kind;

typedef struct {
	double events_before;  /* events, runs, notifications: retention_days */
	double raw_before;     /* health_history samples: check_history_raw_hours */
	double history_before; /* health_history rows: check_history_days */
} retention_cutoffs;

typedef struct {
	retention_cutoffs cut;
	retention_kind kind;           /* the one the next step works on */
	int64_t count[RETENTION_DONE]; /* rows (pages for VACUUM) per kind */
	int64_t batches;
	double longest_batch_ms;
	double last_batch_ms;
	retention_kind failed_kind; /* after an error */
} retention_job;

/* Cutoffs for now (unix seconds) from the three settings. */
retention_cutoffs retention_cutoffs_for(double now, int retention_days, int check_history_days,
                                        int check_history_raw_hours);
void retention_begin(retention_job *job, const retention_cutoffs *cut);
/* One batch: 1 while work remains, 0 when the job is done, or a negative
 * store_error. */
int retention_step(retention_job *job, store *s);
bool retention_done(const retention_job *job);
/* "events", "runs", ... : the name of a kind in events and logs. */
const char *retention_kind_name(retention_kind kind);

#endif
