/*
 * daemon_tasks — the task slots of the daemon: when each task fires next,
 * starting runs under the overlap policy, reaping finished runs, timeouts,
 * catch-up at start, and configuration reloads.
 *
 * Invariants (loop thread only):
 *  1. A slot has at most one running job (slot->running) and at most one
 *     pending run (overlap = queue); a job is referenced by its slot until
 *     it is reaped, then freed exactly once in reap_job.
 *  2. A slot's fire timer is armed iff the task is enabled, has a schedule
 *     that can fire, and the daemon is not stopping.
 *  3. Cron fire times are computed from the nominal time of the last fire
 *     and the current wall clock, whichever is later, so a jump forward gives
 *     at most one catch-up run (trigger catchup when over a minute late) and
 *     a jump back never repeats a fire time. Intervals follow the monotonic
 *     clock only. See docs/scheduling.md, "When the wall clock jumps".
 *  4. A run that ends failed or timeout before its last attempt (retries)
 *     gets a retry: the slot's retry timer, armed only while no job runs,
 *     starts attempt n+1 (trigger retry, same correlation_id) after the
 *     backoff. Until that chain ends the slot counts as busy: a fire or a
 *     trigger is skipped (reason retry_pending) or queued (overlap = queue)
 *     and the queued run starts when the last attempt has ended. A reload
 *     that removes the task and a shutdown cancel a pending retry
 *     (task_retry_cancelled); skipped and interrupted runs are never
 *     retried.
 *  5. Every fire is delayed by the slot's delay_ms: a task with `jitter`
 *     draws it anew for each fire; any other task has the fixed offset of
 *     [daemon] spread (spread.h), and its cron schedule is evaluated
 *     shifted by it, so a fire is due at nominal + offset and an offset
 *     longer than the period still gives every fire. A cron fire's
 *     monotonic deadline is rounded up, never before its wall-clock time.
 *  6. Bursts: fire timers that expired together (one wakeup of the loop)
 *     are dispatched together, in order of their fire time (ties by task
 *     name), their run rows, skip rows and task_state updates in one store
 *     transaction (at most BURST_MAX fires each); the jobs reach the pool
 *     only once it committed, so the rows are visible before any run
 *     starts and no worker competes for the write lock meanwhile. A store
 *     error ends the burst early; the remaining fires are dispatched one
 *     by one as before. The dispatch latency (fire time to the committed
 *     row) is measured there (docs/scheduling.md, "Dispatch").
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "daemon_internal.h"
#include "log.h"
#include "metrics.h"
#include "runs.h"
#include "spread.h"

void daemon_format_time(double unix_time, char *buf, size_t cap)
{
	if (cap < 33) {
		if (cap)
			buf[0] = '\0';
		return;
	}
	log_format_timestamp(buf, cap, (int64_t)llround(unix_time * 1e6));
}

/* A cron fire later than this is a catch-up (see cron_fire_trigger). */
#define CATCHUP_LATE_MS   (60 * 1000)
#define CATCHUP_COUNT_MAX 100000
/* Fires per burst transaction (invariant 6): about 10 ms of inserts here. */
#define BURST_MAX 1000

static uint64_t random_below(uint64_t bound)
{
	uint64_t r = 0;
	if (bound == 0)
		return 0;
	if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
		r = (uint64_t)clock_wall_usec();
	return r % bound;
}

/* ---- arming ---- */

static void slot_fire(looptimer *t);

static bool slot_schedulable(const daemon_state *d, const task_slot *s)
{
	return !d->stopping && d->leading && s->cfg && s->cfg->enabled && s->cfg->schedule_expr;
}

double daemon_slot_next_run(const daemon_state *d, const task_slot *s)
{
	if (!wheel_timer_pending(&s->fire.wt))
		return 0;
	if (s->cfg && s->cfg->sched.kind == SCHEDULE_CRON)
		return (double)s->next_wall + (double)s->delay_ms / 1000.0;
	double in_sec = ((double)(s->next_mono + s->delay_ms) - (double)clock_mono_ms()) / 1000.0;
	return clock_wall() + (in_sec > 0 ? in_sec : 0);
	(void)d;
}

/* The task's fixed spread offset; 0 when it has a jitter of its own. */
static uint64_t slot_offset_ms(const daemon_state *d, const task_config *tc)
{
	return (uint64_t)spread_task_offset_ms(tc->name, tc->jitter_ms, d->cfg->spread_ms);
}

/* The monotonic deadline (ms) of a cron fire due at wall time fire_ms:
 * rounded up, plus the millisecond clock_mono_ms truncates, so that the
 * timer never expires before the wall-clock fire time. */
/* The wheel deadline (monotonic ms) of a fire due at fire_ms on the wall
 * clock. Both clocks are read in microseconds, close together, so fires due
 * at the same wall time get the same deadline whenever they are armed and
 * expire in one burst (ms reads would put them 1 ms apart by rounding). */
static uint64_t cron_deadline(int64_t fire_ms)
{
	int64_t now_mono_us = clock_mono_usec();
	int64_t ahead_us = fire_ms * 1000 - clock_wall_usec();
	if (ahead_us <= 0)
		return (uint64_t)(now_mono_us / 1000);
	return (uint64_t)((now_mono_us + ahead_us + 999) / 1000) + 1;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The wall-clock time (ms) this cron fire is due at. */
static int64_t cron_fire_ms(const task_slot *s)
{
	return s->next_wall * 1000 + (int64_t)s->delay_ms;
}

static void announce_next(const daemon_state *d, const task_slot *s, bool announce)
{
	char when[40];
	if (!announce && !log_enabled(LOG_DEBUG))
		return; /* a burst re-arms many tasks: not even the formatting */
	daemon_format_time(daemon_slot_next_run(d, s), when, sizeof when);
	if (announce)
		log_info(DAEMON_LOGGER, "task_scheduled", LOG_STR("task", s->name),
		         LOG_STR("next_run", when));
	else
		log_debug(DAEMON_LOGGER, "task_scheduled", LOG_STR("task", s->name),
		          LOG_STR("next_run", when));
}

void daemon_slot_arm(daemon_state *d, task_slot *s, bool announce)
{
	uint64_t now = (uint64_t)clock_mono_ms();

	wheel_cancel(&d->w, &s->fire.wt);
	if (!slot_schedulable(d, s))
		return;
	const task_config *tc = s->cfg;
	uint64_t offset = slot_offset_ms(d, tc);
	uint64_t deadline;
	if (tc->sched.kind == SCHEDULE_INTERVAL) {
		uint64_t interval = (uint64_t)tc->sched.interval_ms;
		uint64_t next = s->next_mono ? s->next_mono + interval : now + interval;
		if (s->next_mono && next > now)
			s->next_label += (double)interval / 1000.0;
		else
			s->next_label = clock_wall() + (double)interval / 1000.0;
		s->next_mono = next > now ? next : now + interval;
		s->delay_ms = offset ? offset : random_below((uint64_t)tc->jitter_ms + 1);
		deadline = s->next_mono + s->delay_ms;
	} else {
		/* the first nominal time whose fire time (+ offset) is after now
		 * (invariant 5), never before the last fire (invariant 3) */
		int64_t now_wall_us = clock_wall_usec();
		int64_t after = floor_div(now_wall_us / 1000 - (int64_t)offset, 1000);
		if (s->last_fire_wall > after)
			after = s->last_fire_wall;
		int64_t next = schedule_next(&tc->sched, tc->zone, after);
		if (next < 0) {
			s->next_wall = 0;
			return;
		}
		s->next_wall = next;
		s->delay_ms = offset ? offset : random_below((uint64_t)tc->jitter_ms + 1);
		deadline = cron_deadline(cron_fire_ms(s));
	}
	wheel_add(&d->w, &s->fire.wt, deadline);
	announce_next(d, s, announce);
}

/* The wall clock was set: cron deadlines are recomputed from their nominal
 * fire times (invariant 3). */
void daemon_slots_clock_changed(daemon_state *d)
{
	for (task_slot *s = d->slots; s; s = s->next) {
		if (!wheel_timer_pending(&s->fire.wt) || s->cfg->sched.kind != SCHEDULE_CRON)
			continue;
		wheel_add(&d->w, &s->fire.wt, cron_deadline(cron_fire_ms(s)));
		announce_next(d, s, true);
	}
}

static void retry_cancel(daemon_state *d, task_slot *s, const char *reason);

void daemon_slots_stop_timers(daemon_state *d)
{
	for (task_slot *s = d->slots; s; s = s->next) {
		wheel_cancel(&d->w, &s->fire.wt);
		s->pending = false;
		retry_cancel(d, s, "shutdown");
	}
}

/* ---- runs ---- */

static void job_work(void *arg, store *st)
{
	job *j = arg;
	if (st == NULL) { /* the worker could not open the store at start */
		log_error(DAEMON_LOGGER, "task_dispatch_failed", LOG_STR("task", j->slot->name),
		          LOG_STR("correlation_id", j->req.correlation_id),
		          LOG_ERR("this worker has no store connection", "store"));
		j->status = RUN_FAILED;
		return;
	}
	j->status = runner_execute(&j->req, st, &j->ctl);
}

static void job_timed_out(looptimer *t)
{
	job *j = (job *)(void *)t;
	log_warning(DAEMON_LOGGER, "task_timeout", LOG_STR("task", j->slot->name),
	            LOG_STR("correlation_id", j->req.correlation_id),
	            LOG_INT("run_id", j->req.run_id),
	            LOG_DBL("timeout_sec", (double)j->req.task->timeout_ms / 1000.0));
	run_control_cancel(&j->ctl, RUN_CANCEL_TIMEOUT);
}

/* A prepared job that will not run (its burst did not commit): the slot
 * forgets it. */
static void job_discard(daemon_state *d, job *j)
{
	task_slot *s = j->slot;
	wheel_cancel(&d->w, &j->timeout.wt);
	if (s->running == j) {
		s->running = NULL;
		s->runs_started--;
	}
	run_request_release(&j->req);
	run_control_destroy(&j->ctl);
	free(j);
}

/* Hand a prepared job to the pool; on failure its row is finished failed
 * and the job freed. 0 or -1. */
static int job_submit(daemon_state *d, job *j)
{
	task_slot *s = j->slot;
	if (pool_submit(d->pool, job_work, j) == 0)
		return 0;
	log_error(DAEMON_LOGGER, "task_dispatch_failed", LOG_STR("task", s->name),
	          LOG_ERR("out of memory", "resources"));
	/* The row exists: finish it through the runner path later is not
	 * possible, so mark it failed right here. */
	if (j->req.run_id)
		runs_finish(d->rt.st, j->req.run_id, RUN_FAILED, clock_wall(), 0, -1,
		            "could not queue the run", "resources", NULL);
	wheel_cancel(&d->w, &j->timeout.wt);
	if (s->running == j) {
		s->running = NULL;
		s->runs_started--;
	}
	run_request_release(&j->req);
	run_control_destroy(&j->ctl);
	free(j);
	return -1;
}

static void burst_close(daemon_state *d);

/* A fire or trigger whose row the fence refused (cluster.h): it does not
 * start, and says so at debug level only (a deposed leader's late fires). */
static void log_fenced(const task_slot *s, const char *trigger, double scheduled_for,
                       const char *why)
{
	char when[40] = "";
	if (scheduled_for > 0)
		daemon_format_time(scheduled_for, when, sizeof when);
	log_debug(DAEMON_LOGGER, "run_fenced", LOG_STR("task", s->name),
	          LOG_STR("trigger", trigger), LOG_STR("scheduled_for", when[0] ? when : NULL),
	          LOG_STR("reason", why));
}

/* at: the attempt, NULL for the first attempt of a new run. fire_at: the
 * fire time of a scheduled fire (unix s), else 0. scheduled_for: the
 * nominal fire time the row is keyed by (runs_start_fenced), 0 none. */
static job *job_start(daemon_state *d, task_slot *s, const char *trigger, const run_attempt *at,
                      double fire_at, double scheduled_for)
{
	char err[512];
	run_attempt a = {.correlation_id = NULL, .attempt = 1, .attempts = s->cfg->retries + 1};
	if (at)
		a = *at;
	a.fence_instance = cluster_instance(d->cluster);
	a.fence_term = cluster_fence_term(d->cluster);
	a.scheduled_for = scheduled_for;
	if (d->cluster == NULL || a.fence_term == 0) {
		log_fenced(s, trigger, scheduled_for, "not_leader");
		return NULL;
	}
	job *j = calloc(1, sizeof *j);
	if (j == NULL || run_control_init(&j->ctl) != 0) {
		log_error(DAEMON_LOGGER, "task_dispatch_failed", LOG_STR("task", s->name),
		          LOG_ERR("out of memory or file descriptors", "resources"));
		free(j);
		return NULL;
	}
	int prc = runner_prepare_attempt(&j->req, d->cfg, s->cfg, trigger, &a, d->rt.st, err,
	                                 sizeof err);
	if (prc != 0) {
		if (prc == RUNNER_NOT_STARTED)
			log_fenced(s, trigger, scheduled_for, err);
		else
			log_warning(DAEMON_LOGGER, "task_run_unrecorded", LOG_STR("task", s->name),
			            LOG_STR("trigger", trigger), LOG_STR("action", "not started"),
			            LOG_ERR(err, "store"));
		run_control_destroy(&j->ctl);
		free(j);
		if (prc != RUNNER_NOT_STARTED && d->burst_open)
			burst_close(d); /* the store failed: the burst ends (invariant 6) */
		return NULL;
	}
	j->d = d;
	j->slot = s;
	j->req.fire_at = fire_at;
	looptimer_init(&j->timeout, job_timed_out);
	if (s->cfg->timeout_ms > 0)
		wheel_add(&d->w, &j->timeout.wt,
		          (uint64_t)clock_mono_ms() + (uint64_t)s->cfg->timeout_ms);
	s->running = j;
	s->runs_started++;
	if (d->burst_open && j->req.run_id == 0)
		burst_close(d); /* a store error ends the burst (invariant 6) */
	if (d->burst_open) {
		*d->burst_tail = j;
		d->burst_tail = &j->burst_next;
		return j;
	}
	if (fire_at > 0) {
		j->req.dispatch_latency = clock_wall() - fire_at;
		if (j->req.run_id)
			metrics_dispatch_latency(METRICS_DISPATCH_ROW, j->req.dispatch_latency);
	}
	return job_submit(d, j) == 0 ? j : NULL;
}

/* cid: the caller's correlation id for a new run (API), NULL: a new one. */
static job *dispatch_as(daemon_state *d, task_slot *s, const char *trigger, const char *cid,
                        double fire_at, double scheduled_for, bool *queued)
{
	*queued = false;
	if (d->stopping || s->cfg == NULL)
		return NULL;
	run_attempt given = {.correlation_id = cid, .attempt = 1, .attempts = s->cfg->retries + 1};
	/* A leader that stepped down may still finish a run of this task
	 * (cluster.h, invariant 4): busy, whatever the overlap policy. */
	if (s->running == NULL && !s->retry_pending &&
	    cluster_task_busy_elsewhere(d->cluster, s->name)) {
		runner_record_skip(d->cfg, s->cfg, trigger, "still_running", d->rt.st);
		return NULL;
	}
	if (s->running == NULL && !s->retry_pending)
		return job_start(d, s, trigger, cid ? &given : NULL, fire_at, scheduled_for);
	/* Busy: a run is going, or its retry waits (invariant 4). */
	const char *busy_cid =
	        s->running ? s->running->req.correlation_id : s->retry_correlation_id;
	if (s->cfg->overlap == OVERLAP_QUEUE && !s->pending) {
		s->pending = true;
		snprintf(s->pending_trigger, sizeof s->pending_trigger, "%s", trigger);
		*queued = true;
		log_info(DAEMON_LOGGER, "task_queued", LOG_STR("task", s->name),
		         LOG_STR("trigger", trigger), LOG_STR("running_correlation_id", busy_cid));
		return NULL;
	}
	const char *reason = s->pending   ? "queue_full"
	                     : s->running ? "still_running"
	                                  : "retry_pending";
	runner_record_skip(d->cfg, s->cfg, trigger, reason, d->rt.st);
	return NULL;
}

static job *dispatch(daemon_state *d, task_slot *s, const char *trigger, double fire_at,
                     double scheduled_for, bool *queued)
{
	return dispatch_as(d, s, trigger, NULL, fire_at, scheduled_for, queued);
}

job *daemon_dispatch(daemon_state *d, task_slot *s, const char *trigger, bool *queued)
{
	return dispatch(d, s, trigger, 0, 0, queued);
}

job *daemon_dispatch_as(daemon_state *d, task_slot *s, const char *trigger,
                        const char *correlation_id, bool *queued)
{
	return dispatch_as(d, s, trigger, correlation_id, 0, 0, queued);
}

/* ---- retries ---- */

/* The delay before retry number n (1 for the second attempt): the backoff
 * doubled n - 1 times, capped at retry_backoff_max, then drawn uniformly
 * from [delay/2, delay] so that tasks failing together do not retry in
 * step. */
static uint64_t retry_delay_ms(const task_config *tc, int n)
{
	uint64_t cap = (uint64_t)tc->retry_backoff_max_ms;
	uint64_t delay = (uint64_t)tc->retry_backoff_ms;
	for (int i = 1; i < n && delay < cap; i++)
		delay *= 2;
	if (delay > cap)
		delay = cap;
	return delay - random_below(delay / 2 + 1);
}

static bool retry_due(const daemon_state *d, const task_slot *s, run_status st,
                      const run_request *req)
{
	return (st == RUN_FAILED || st == RUN_TIMEOUT) && req->attempt < req->attempts &&
	       !d->stopping && s->cfg != NULL;
}

static void retry_schedule(daemon_state *d, task_slot *s, const run_request *req, run_status st)
{
	uint64_t delay = retry_delay_ms(s->cfg, req->attempt);
	s->retry_pending = true;
	s->retry_attempt = req->attempt + 1;
	s->retry_attempts = req->attempts;
	s->retry_scheduled_for = req->scheduled_for;
	snprintf(s->retry_correlation_id, sizeof s->retry_correlation_id, "%s",
	         req->correlation_id);
	s->retry_due_mono = (uint64_t)clock_mono_ms() + delay;
	wheel_add(&d->w, &s->retry.wt, s->retry_due_mono);
	log_info(DAEMON_LOGGER, "task_retry_scheduled", LOG_STR("task", s->name),
	         LOG_INT("attempt", s->retry_attempt), LOG_INT("attempts", s->retry_attempts),
	         LOG_DBL("delay_sec", (double)delay / 1000.0),
	         LOG_STR("correlation_id", s->retry_correlation_id), LOG_INT("run_id", req->run_id),
	         LOG_STR("status", run_status_name(st)));
}

/* Drop a pending retry (a reload removed the task, or shutdown). */
static void retry_cancel(daemon_state *d, task_slot *s, const char *reason)
{
	if (!s->retry_pending)
		return;
	wheel_cancel(&d->w, &s->retry.wt);
	s->retry_pending = false;
	log_info(DAEMON_LOGGER, "task_retry_cancelled", LOG_STR("task", s->name),
	         LOG_INT("attempt", s->retry_attempt), LOG_STR("reason", reason),
	         LOG_STR("correlation_id", s->retry_correlation_id));
}

double daemon_slot_retry_at(const task_slot *s)
{
	if (!s->retry_pending)
		return 0;
	double in_sec = ((double)s->retry_due_mono - (double)clock_mono_ms()) / 1000.0;
	return clock_wall() + (in_sec > 0 ? in_sec : 0);
}

/* The slot is free again (its run's last attempt has ended): a queued run
 * starts. */
static void slot_idle(daemon_state *d, task_slot *s)
{
	if (s->pending && !d->stopping) {
		bool queued;
		s->pending = false;
		daemon_dispatch(d, s, s->pending_trigger, &queued);
	}
}

static void retry_fire(looptimer *t)
{
	task_slot *s = wheel_container_of(t, task_slot, retry);
	daemon_state *d = s->d;
	run_attempt at = {.correlation_id = s->retry_correlation_id,
	                  .attempt = s->retry_attempt,
	                  .attempts = s->retry_attempts};
	s->retry_pending = false;
	if (d->stopping || s->cfg == NULL || s->running) /* cancelled first; never */
		return;
	if (job_start(d, s, "retry", &at, 0, s->retry_scheduled_for) == NULL)
		slot_idle(d, s);
}

static void slot_free(task_slot *s)
{
	free(s->name);
	free(s);
}

static void slot_unlink(daemon_state *d, task_slot *s)
{
	for (task_slot **pp = &d->slots; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			return;
		}
	}
}

static void reap_job(daemon_state *d, job *j)
{
	task_slot *s = j->slot;
	wheel_cancel(&d->w, &j->timeout.wt);
	s->running = NULL;
	s->has_last = true;
	s->last_status = j->status;
	s->last_run_id = j->req.run_id;
	s->last_finished_at = clock_wall();
	bool retry = retry_due(d, s, j->status, &j->req);
	if (retry)
		retry_schedule(d, s, &j->req, j->status);
	run_request_release(&j->req);
	run_control_destroy(&j->ctl);
	free(j);
	if (s->cfg == NULL) { /* removed by a reload while it ran */
		slot_unlink(d, s);
		slot_free(s);
		return;
	}
	if (!retry)
		slot_idle(d, s);
}

void daemon_jobs_reap(daemon_state *d)
{
	job *j;
	while ((j = pool_take_done(d->pool)) != NULL)
		reap_job(d, j);
	daemon_check_store_file(d);
}

void daemon_jobs_cancel_all(daemon_state *d, run_cancel_reason reason)
{
	for (task_slot *s = d->slots; s; s = s->next)
		if (s->running)
			run_control_cancel(&s->running->ctl, reason);
}

size_t daemon_jobs_running(const daemon_state *d)
{
	return pool_outstanding(d->pool);
}

/* How many fire times from `first` up to `now` one catch-up run stands for
 * (counted up to CATCHUP_COUNT_MAX). */
static int64_t missed_fires(const task_config *tc, int64_t first, int64_t now)
{
	int64_t n = 0;
	for (int64_t t = first; t >= 0 && t <= now && n < CATCHUP_COUNT_MAX; n++)
		t = schedule_next(&tc->sched, tc->zone, t);
	return n;
}

/* A cron fire dispatched more than CATCHUP_LATE_MS after its nominal time
 * (the wall clock jumped forward, or the machine slept) is one catch-up run
 * for every fire time missed; the schedule goes on from now. */
static void last_fire_set(daemon_state *d, task_slot *s, double at)
{
	if (runs_last_fire_set(d->rt.st, s->name, at) != STORE_OK)
		burst_close(d); /* a store error ends the burst (invariant 6) */
}

/* The last fire time from `first` up to `now` (first itself if none is
 * later): the nominal time a catch-up run stands for, its row's key. */
static int64_t latest_fire(const task_config *tc, int64_t first, int64_t now)
{
	int64_t last = first;
	for (int64_t t = first, n = 0; t >= 0 && t <= now && n < CATCHUP_COUNT_MAX; n++) {
		last = t;
		t = schedule_next(&tc->sched, tc->zone, t);
	}
	return last;
}

/* *scheduled_for: the nominal fire time the run's row is keyed by. */
static const char *cron_fire_trigger(daemon_state *d, task_slot *s, int64_t now_wall_ms,
                                     double *scheduled_for)
{
	int64_t late_ms = now_wall_ms - cron_fire_ms(s);
	if (late_ms <= CATCHUP_LATE_MS) {
		s->last_fire_wall = s->next_wall;
		last_fire_set(d, s, (double)s->next_wall);
		*scheduled_for = (double)s->next_wall;
		return "schedule";
	}
	*scheduled_for = (double)latest_fire(s->cfg, s->next_wall, now_wall_ms / 1000);
	char missed[40];
	daemon_format_time((double)s->next_wall, missed, sizeof missed);
	log_info(DAEMON_LOGGER, "task_catchup", LOG_STR("task", s->name),
	         LOG_STR("missed_fire", missed), LOG_DBL("late_sec", (double)late_ms / 1000.0),
	         LOG_INT("missed_fires", missed_fires(s->cfg, s->next_wall, now_wall_ms / 1000)));
	s->last_fire_wall = now_wall_ms / 1000;
	last_fire_set(d, s, (double)now_wall_ms / 1000.0);
	return "catchup";
}

/* One fire: fire_ms is its fire time (nominal + delay, wall clock ms). */
static void fire_one(daemon_state *d, task_slot *s, int64_t fire_ms)
{
	const char *trigger = "schedule";
	double scheduled_for = 0;
	bool queued;

	if (s->cfg->sched.kind == SCHEDULE_CRON) {
		int64_t now_wall_us = clock_wall_usec();
		if (now_wall_us / 1000 + 500 < fire_ms) { /* early: the clock went back */
			wheel_add(&d->w, &s->fire.wt, cron_deadline(fire_ms));
			return;
		}
		trigger = cron_fire_trigger(d, s, now_wall_us / 1000, &scheduled_for);
	} else {
		/* the nominal time, not the clock: a new leader continues the
		 * same sequence from it (daemon_slots_promote) */
		scheduled_for = s->next_label;
		last_fire_set(d, s, s->next_label);
	}
	dispatch(d, s, trigger, strcmp(trigger, "schedule") == 0 ? (double)fire_ms / 1000.0 : 0,
	         scheduled_for, &queued);
	daemon_slot_arm(d, s, false);
}

/* ---- bursts (invariant 6) ---- */

static bool is_fire_timer(const wheel_timer *wt)
{
	return wt && ((const looptimer *)(const void *)wt)->fire == slot_fire;
}

/* The fire time of an expired fire timer (wall clock ms). */
static int64_t slot_fire_ms(const task_slot *s, int64_t now_wall_ms, uint64_t now_mono)
{
	if (s->cfg->sched.kind == SCHEDULE_CRON)
		return cron_fire_ms(s);
	return now_wall_ms - (int64_t)(now_mono - s->fire.wt.expires);
}

static int burst_fire_cmp(const void *a, const void *b)
{
	const struct burst_fire *x = a, *y = b;
	if (x->fire_ms != y->fire_ms)
		return x->fire_ms < y->fire_ms ? -1 : 1;
	return strcmp(x->slot->name, y->slot->name);
}

static bool burst_room(daemon_state *d, size_t n)
{
	if (n < d->burst_cap)
		return true;
	size_t cap = d->burst_cap ? d->burst_cap * 2 : 64;
	struct burst_fire *f = realloc(d->burst_fires, cap * sizeof *f);
	if (f == NULL)
		return false;
	d->burst_fires = f;
	d->burst_cap = cap;
	return true;
}

/* first and the fire timers expired right behind it (at most BURST_MAX),
 * in fire-time order in d->burst_fires; how many. 0: no memory for them,
 * first is to be fired alone. */
static size_t burst_gather(daemon_state *d, task_slot *first)
{
	int64_t now_wall_ms = clock_wall_usec() / 1000;
	uint64_t now_mono = (uint64_t)clock_mono_ms();
	size_t n = 0;
	if (!burst_room(d, 0))
		return 0;
	d->burst_fires[n++] =
	        (struct burst_fire){first, slot_fire_ms(first, now_wall_ms, now_mono)};
	while (n < BURST_MAX && is_fire_timer(wheel_peek_expired(&d->w)) && burst_room(d, n)) {
		task_slot *s = (task_slot *)(void *)wheel_get_expired(&d->w);
		d->burst_fires[n++] =
		        (struct burst_fire){s, slot_fire_ms(s, now_wall_ms, now_mono)};
	}
	qsort(d->burst_fires, n, sizeof *d->burst_fires, burst_fire_cmp);
	return n;
}

static void burst_open(daemon_state *d)
{
	d->burst_head = NULL;
	d->burst_tail = &d->burst_head;
	d->burst_open = store_tx_begin(d->rt.st) == STORE_OK;
}

/* Commit the burst's rows, then measure and hand out its jobs. If the
 * commit failed the rows are gone: the runner records each run at its end
 * (as when the store refused a row at dispatch). */
static void burst_close(daemon_state *d)
{
	if (!d->burst_open)
		return;
	d->burst_open = false;
	int rc = store_tx_commit(d->rt.st);
	double now = clock_wall();
	char why[256] = "";
	if (rc != STORE_OK) {
		snprintf(why, sizeof why, "%s", store_errmsg(d->rt.st));
		metrics_store_write_error();
	}
	job *j = d->burst_head;
	d->burst_head = NULL;
	d->burst_tail = &d->burst_head;
	bool drop = rc != STORE_OK && cluster_is_distributed(d->cluster);
	while (j) {
		job *next = j->burst_next;
		j->burst_next = NULL;
		if (drop) { /* no row, no run on PostgreSQL (cluster.h) */
			log_warning(DAEMON_LOGGER, "task_run_unrecorded",
			            LOG_STR("task", j->slot->name),
			            LOG_STR("action", "not started"),
			            LOG_STR("correlation_id", j->req.correlation_id),
			            LOG_ERR(why, "store"));
			job_discard(d, j);
			j = next;
			continue;
		}
		if (rc != STORE_OK && j->req.run_id) {
			log_warning(DAEMON_LOGGER, "task_run_unrecorded",
			            LOG_STR("task", j->slot->name),
			            LOG_STR("correlation_id", j->req.correlation_id),
			            LOG_ERR(why, "store"));
			j->req.run_id = 0;
		}
		if (j->req.fire_at > 0) {
			j->req.dispatch_latency = now - j->req.fire_at;
			if (j->req.run_id)
				metrics_dispatch_latency(METRICS_DISPATCH_ROW,
				                         j->req.dispatch_latency);
		}
		job_submit(d, j);
		j = next;
	}
}

/* The dispatch gate (cluster.h, invariant 2): a leader whose last
 * heartbeat is not recent enough (it may have slept through a SIGSTOP)
 * holds its fire, unchanged, until the cluster thread has confirmed or
 * demoted it. */
#define GATE_HOLD_MS 100

static void slot_hold(daemon_state *d, task_slot *s)
{
	wheel_add(&d->w, &s->fire.wt, (uint64_t)clock_mono_ms() + GATE_HOLD_MS);
}

/* The burst's transaction holds the store's write lock: checked once, the
 * leadership holds for every row and task_state update in it. */
static bool burst_fence_holds(daemon_state *d)
{
	if (!cluster_is_distributed(d->cluster))
		return true;
	return cluster_fence_holds(d->cluster, d->rt.st) == 1;
}

static void slot_fire(looptimer *t)
{
	task_slot *first = (task_slot *)(void *)t;
	daemon_state *d = first->d;
	if (!cluster_may_dispatch(d->cluster)) {
		slot_hold(d, first);
		return;
	}
	size_t n = burst_gather(d, first);
	if (n == 0) {
		fire_one(d, first,
		         slot_fire_ms(first, clock_wall_usec() / 1000, (uint64_t)clock_mono_ms()));
		return;
	}
	burst_open(d);
	if (d->burst_open && !burst_fence_holds(d)) {
		store_tx_rollback(d->rt.st);
		d->burst_open = false;
		for (size_t i = 0; i < n; i++)
			slot_hold(d, d->burst_fires[i].slot);
		return;
	}
	for (size_t i = 0; i < n; i++)
		fire_one(d, d->burst_fires[i].slot, d->burst_fires[i].fire_ms);
	burst_close(d);
}

/* ---- slots ---- */

static task_slot *slot_new(daemon_state *d, const task_config *tc)
{
	task_slot *s = calloc(1, sizeof *s);
	if (s == NULL || (s->name = strdup(tc->name)) == NULL) {
		free(s);
		return NULL;
	}
	s->d = d;
	s->cfg = tc;
	looptimer_init(&s->fire, slot_fire);
	looptimer_init(&s->retry, retry_fire);
	s->next = d->slots;
	d->slots = s;
	return s;
}

task_slot *daemon_slot_find(daemon_state *d, const char *name)
{
	for (task_slot *s = d->slots; s; s = s->next)
		if (s->cfg && strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

int daemon_slots_create(daemon_state *d, char *err, size_t errlen)
{
	/* Reverse order so that the list ends up in file order. */
	for (size_t i = d->cfg->ntasks; i-- > 0;) {
		if (slot_new(d, &d->cfg->tasks[i]) == NULL) {
			snprintf(err, errlen, "cannot set up task %s: %s", d->cfg->tasks[i].name,
			         strerror(ENOMEM));
			return -1;
		}
	}
	return 0;
}

void daemon_slots_free(daemon_state *d)
{
	free(d->burst_fires);
	d->burst_fires = NULL;
	d->burst_cap = 0;
	while (d->slots) {
		task_slot *s = d->slots;
		d->slots = s->next;
		slot_free(s);
	}
}

/* persistent = true: a fire time missed while the daemon was down runs
 * once; *missed gets the last of them (the catch-up row's key). */
static bool missed_fire(daemon_state *d, task_slot *s, double *missed)
{
	double last = 0;
	const task_config *tc = s->cfg;
	if (!tc->persistent || !tc->schedule_expr ||
	    runs_last_fire_get(d->rt.st, s->name, &last) != STORE_OK || last <= 0)
		return false;
	s->last_fire_wall = (int64_t)last;
	int64_t next = schedule_next(&tc->sched, tc->zone, (int64_t)last);
	if (next < 0 || (double)next > clock_wall())
		return false;
	*missed = (double)latest_fire(tc, next, (int64_t)clock_wall());
	return true;
}

void daemon_slots_start(daemon_state *d)
{
	bool queued;
	for (task_slot *s = d->slots; s; s = s->next) {
		double missed = 0;
		if (!s->cfg->enabled)
			continue;
		if (missed_fire(d, s, &missed)) {
			log_info(DAEMON_LOGGER, "task_catchup", LOG_STR("task", s->name));
			runs_last_fire_set(d->rt.st, s->name, clock_wall());
			s->last_fire_wall = (int64_t)clock_wall();
			dispatch(d, s, "catchup", 0, missed, &queued);
		} else if (s->cfg->run_on_start) {
			daemon_dispatch(d, s, "start", &queued);
		}
		daemon_slot_arm(d, s, true);
	}
}

/* ---- leadership (cluster.h) ---- */

/* An interval task armed at the nominal time label (unix s), on the
 * monotonic clock from now. */
static void slot_arm_label(daemon_state *d, task_slot *s, double label)
{
	const task_config *tc = s->cfg;
	uint64_t now = (uint64_t)clock_mono_ms();
	double ahead_ms = (label - clock_wall()) * 1000.0;
	uint64_t offset = slot_offset_ms(d, tc);
	wheel_cancel(&d->w, &s->fire.wt);
	s->next_label = label;
	s->next_mono = ahead_ms > 0 ? now + (uint64_t)ahead_ms : now;
	s->delay_ms = offset ? offset : random_below((uint64_t)tc->jitter_ms + 1);
	wheel_add(&d->w, &s->fire.wt, s->next_mono + s->delay_ms);
	announce_next(d, s, true);
}

/* After a failover: continue the task's sequence from the last fire the
 * store knows (whoever fired it). A fire missed in the gap runs once, now,
 * when it is at most CATCHUP_LATE_MS late (a late fire, as after a slow
 * wakeup) or the task is persistent (fire_one makes it a catch-up when it
 * is later than that); the rest were missed like a stopped daemon's. */
static void slot_resume(daemon_state *d, task_slot *s)
{
	const task_config *tc = s->cfg;
	double last = 0;
	double now = clock_wall();
	if (runs_last_fire_get(d->rt.st, s->name, &last) != STORE_OK || last <= 0) {
		daemon_slot_arm(d, s, true);
		return;
	}
	if (tc->sched.kind == SCHEDULE_INTERVAL) {
		double iv = (double)tc->sched.interval_ms / 1000.0;
		double k = floor((now - last) / iv);
		double label = last + iv;
		if (k >= 1)
			label = (now - (last + iv)) * 1000.0 <= CATCHUP_LATE_MS || tc->persistent
			                ? last + k * iv
			                : last + (k + 1) * iv;
		slot_arm_label(d, s, label);
		return;
	}
	if ((int64_t)last > s->last_fire_wall)
		s->last_fire_wall = (int64_t)last;
	int64_t next = schedule_next(&tc->sched, tc->zone, s->last_fire_wall);
	if (next >= 0 && (double)next <= now &&
	    ((now - (double)next) * 1000.0 <= CATCHUP_LATE_MS || tc->persistent)) {
		uint64_t offset = slot_offset_ms(d, tc);
		wheel_cancel(&d->w, &s->fire.wt);
		s->next_wall = next;
		s->delay_ms = offset ? offset : random_below((uint64_t)tc->jitter_ms + 1);
		wheel_add(&d->w, &s->fire.wt, cron_deadline(cron_fire_ms(s)));
		announce_next(d, s, true);
		return;
	}
	daemon_slot_arm(d, s, true);
}

void daemon_slots_promote(daemon_state *d, bool at_start)
{
	d->leading = true;
	if (d->stopping)
		return;
	if (at_start) {
		daemon_slots_start(d);
		return;
	}
	for (task_slot *s = d->slots; s; s = s->next)
		if (slot_schedulable(d, s))
			slot_resume(d, s);
}

void daemon_slots_demote(daemon_state *d)
{
	d->leading = false;
	for (task_slot *s = d->slots; s; s = s->next) {
		wheel_cancel(&d->w, &s->fire.wt);
		s->pending = false;
		retry_cancel(d, s, "leadership_lost");
	}
	daemon_jobs_check_taken(d);
}

bool daemon_jobs_check_taken(daemon_state *d)
{
	char by[32];
	bool going = false;
	for (task_slot *s = d->slots; s; s = s->next) {
		job *j = s->running;
		if (j == NULL)
			continue;
		going = true;
		if (j->req.run_id == 0 ||
		    runs_interrupted_by(d->rt.st, j->req.run_id, by, sizeof by) != STORE_OK ||
		    strcmp(by, "failover") != 0)
			continue;
		log_warning(
		        DAEMON_LOGGER, "task_run_taken_over", LOG_STR("task", s->name),
		        LOG_STR("correlation_id", j->req.correlation_id),
		        LOG_INT("run_id", j->req.run_id),
		        LOG_STR("action", "cancelled: a new leader marked its row interrupted"));
		run_control_cancel(&j->ctl, RUN_CANCEL_SHUTDOWN);
	}
	return going;
}

/* ---- reload ---- */

static void log_reload_failure(const config *cfg, const config_errors *errs)
{
	char joined[2048] = "";
	size_t len = 0;
	for (size_t i = 0; i < errs->count && len < sizeof joined; i++)
		len += (size_t)snprintf(joined + len, sizeof joined - len, "%s%s", i ? "; " : "",
		                        errs->lines[i]);
	log_error(DAEMON_LOGGER, "config_reload_failed", LOG_STR("config", cfg->path),
	          LOG_INT("errors", (int64_t)errs->count), LOG_ERR(joined, "config_invalid"),
	          LOG_STR("action", "keeping the running configuration"));
}

static bool schedule_changed(const task_config *a, const task_config *b)
{
	const char *ea = a->schedule_expr ? a->schedule_expr : "";
	const char *eb = b->schedule_expr ? b->schedule_expr : "";
	return strcmp(ea, eb) != 0 || a->zone != b->zone || a->enabled != b->enabled ||
	       a->jitter_ms != b->jitter_ms;
}

static void warn_restart_needed(const config *old, const config *nc)
{
	const char *key = NULL;
	if (strcmp(old->state_dir, nc->state_dir) != 0)
		key = "state_dir";
	else if (strcmp(old->control_socket, nc->control_socket) != 0)
		key = "control_socket";
	else if (old->max_concurrent_tasks != nc->max_concurrent_tasks)
		key = "max_concurrent_tasks";
	if (key)
		log_warning(DAEMON_LOGGER, "config_restart_required", LOG_STR("key", key),
		            LOG_STR("reason", "takes effect at the next start"));
}

/* Point every slot at the new configuration; returns counts via out args.
 * spread_changed: [daemon] spread changed, which moves every task's offset. */
static void apply_tasks(daemon_state *d, config *nc, bool spread_changed, int *added, int *removed,
                        int *changed)
{
	/* has_slot[i]: nc->tasks[i] got a slot below (a name lookup per task
	 * would make a reload quadratic: 7 s for 50k tasks) */
	bool *has_slot = calloc(nc->ntasks ? nc->ntasks : 1, sizeof *has_slot);
	for (task_slot *s = d->slots, *next; s; s = next) {
		next = s->next;
		const task_config *ntc = config_task(nc, s->name);
		if (ntc == NULL) {
			wheel_cancel(&d->w, &s->fire.wt);
			retry_cancel(d, s, "task_removed");
			s->cfg = NULL;
			s->pending = false;
			(*removed)++;
			if (s->running == NULL) {
				slot_unlink(d, s);
				slot_free(s);
			}
			continue;
		}
		if (has_slot)
			has_slot[ntc - nc->tasks] = true;
		/* a slot whose task was removed while it ran has no cfg: the
		 * task comes back, so it is scheduled anew */
		bool resched = s->cfg == NULL || spread_changed || schedule_changed(s->cfg, ntc);
		s->cfg = ntc;
		if (resched) {
			(*changed)++;
			s->next_mono = 0;
			daemon_slot_arm(d, s, true);
		}
	}
	for (size_t i = 0; i < nc->ntasks; i++) {
		if (has_slot ? has_slot[i] : daemon_slot_find(d, nc->tasks[i].name) != NULL)
			continue;
		task_slot *s = slot_new(d, &nc->tasks[i]);
		if (s == NULL) {
			log_error(DAEMON_LOGGER, "task_add_failed",
			          LOG_STR("task", nc->tasks[i].name),
			          LOG_ERR("out of memory", "resources"));
			continue;
		}
		(*added)++;
		daemon_slot_arm(d, s, true);
	}
	free(has_slot);
}

void daemon_reload(daemon_state *d)
{
	config *nc = NULL;
	config_errors errs = {0};
	int added = 0, removed = 0, changed = 0;

	if (config_load(&nc, d->cfg->path, &errs) != 0) {
		log_reload_failure(d->cfg, &errs);
		config_errors_free(&errs);
		return;
	}
	config_errors_free(&errs);
	warn_restart_needed(d->cfg, nc);
	config *old = d->cfg;
	d->cfg = nc;
	d->rt.cfg = nc;
	apply_tasks(d, nc, old->spread_ms != nc->spread_ms, &added, &removed, &changed);
	config_unref(old);
	log_info(DAEMON_LOGGER, "config_reloaded", LOG_STR("config", nc->path),
	         LOG_INT("tasks", (int64_t)nc->ntasks), LOG_INT("added", added),
	         LOG_INT("removed", removed), LOG_INT("rescheduled", changed));
}
