/*
 * retention — see retention.h.
 *
 * Invariants:
 *  1. One step is one batch function call, and every batch function is one
 *     statement or one short transaction of its own: the write lock is
 *     never held across steps.
 *  2. A kind is done when its batch changed fewer rows than it was allowed
 *     to; the job then moves on to the next kind, in enum order: the
 *     health_history hours past check_history_days go before the
 *     downsampling (which would otherwise rewrite them first), and the
 *     vacuum comes last and frees what the others left.
 */
#define _POSIX_C_SOURCE 200809L
#include "retention.h"

#include <time.h>

#include "events.h"
#include "health_history.h"
#include "outbox.h"
#include "runs.h"

static const char *const kind_names[] = {
        [RETENTION_EVENTS] = "events",
        [RETENTION_RUNS] = "runs",
        [RETENTION_NOTIFICATIONS] = "notifications",
        [RETENTION_HEALTH_DOWNSAMPLED] = "health_hours_downsampled",
        [RETENTION_HEALTH_DELETED] = "health_hours_deleted",
        [RETENTION_VACUUM] = "vacuum_pages",
        [RETENTION_DONE] = "done",
};

const char *retention_kind_name(retention_kind kind)
{
	return (unsigned)kind <= RETENTION_DONE ? kind_names[kind] : "unknown";
}

retention_cutoffs retention_cutoffs_for(double now, int retention_days, int check_history_days,
                                        int check_history_raw_hours)
{
	return (retention_cutoffs){
	        .events_before = now - (double)retention_days * 86400.0,
	        .raw_before = now - (double)check_history_raw_hours * 3600.0,
	        .history_before = now - (double)check_history_days * 86400.0,
	};
}

void retention_begin(retention_job *job, const retention_cutoffs *cut)
{
	*job = (retention_job){
	        .cut = *cut, .kind = RETENTION_EVENTS, .failed_kind = RETENTION_DONE};
}

bool retention_done(const retention_job *job)
{
	return job->kind == RETENTION_DONE;
}

/* A duration, not a clock the job depends on: the monotonic clock. */
static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One batch of kind; *n gets the rows (pages) it changed, *full whether it
 * used its whole allowance (so more may be left). */
static int run_batch(const retention_job *job, store *s, int64_t *n, bool *full)
{
	const size_t max = RETENTION_BATCH_ROWS;
	size_t done = 0;
	int rc;
	*n = 0;
	switch (job->kind) {
	case RETENTION_EVENTS:
		rc = events_prune(s, job->cut.events_before, max, n);
		break;
	case RETENTION_RUNS:
		rc = runs_prune(s, job->cut.events_before, max, n);
		break;
	case RETENTION_NOTIFICATIONS:
		rc = outbox_prune(s, job->cut.events_before, max, n);
		break;
	case RETENTION_HEALTH_DOWNSAMPLED:
		rc = health_history_downsample(s, job->cut.raw_before, max, &done);
		*n = (int64_t)done;
		break;
	case RETENTION_HEALTH_DELETED:
		rc = health_history_prune(s, job->cut.history_before, max, &done);
		*n = (int64_t)done;
		break;
	case RETENTION_VACUUM:
		rc = store_vacuum_step(s, n);
		*full = rc == STORE_OK && *n > 0;
		return rc;
	default:
		*full = false;
		return STORE_OK;
	}
	*full = rc == STORE_OK && *n >= (int64_t)max;
	return rc;
}

int retention_step(retention_job *job, store *s)
{
	if (retention_done(job))
		return 0;
	int64_t n = 0;
	bool full = false;
	double t0 = mono_ms();
	int rc = run_batch(job, s, &n, &full);
	job->last_batch_ms = mono_ms() - t0;
	if (job->last_batch_ms > job->longest_batch_ms)
		job->longest_batch_ms = job->last_batch_ms;
	job->batches++;
	if (rc != STORE_OK) {
		job->failed_kind = job->kind;
		job->kind = RETENTION_DONE;
		return rc;
	}
	job->count[job->kind] += n;
	if (!full)
		job->kind++;
	return retention_done(job) ? 0 : 1;
}
