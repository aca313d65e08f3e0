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
#include "runs.h"

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
	return !d->stopping && s->cfg && s->cfg->enabled && s->cfg->schedule_expr;
}

double daemon_slot_next_run(const daemon_state *d, const task_slot *s)
{
	if (!wheel_timer_pending(&s->fire.wt))
		return 0;
	if (s->cfg && s->cfg->sched.kind == SCHEDULE_CRON)
		return (double)s->next_wall + (double)s->jitter_ms / 1000.0;
	double in_sec = ((double)(s->next_mono + s->jitter_ms) - (double)clock_mono_ms()) / 1000.0;
	return clock_wall() + (in_sec > 0 ? in_sec : 0);
	(void)d;
}

static void announce_next(const daemon_state *d, const task_slot *s, bool announce)
{
	char when[40];
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
	if (tc->sched.kind == SCHEDULE_INTERVAL) {
		uint64_t interval = (uint64_t)tc->sched.interval_ms;
		uint64_t next = s->next_mono ? s->next_mono + interval : now + interval;
		s->next_mono = next > now ? next : now + interval;
	} else {
		int64_t now_wall_ms = clock_wall_usec() / 1000;
		int64_t after = now_wall_ms / 1000;
		if (s->last_fire_wall > after)
			after = s->last_fire_wall;
		int64_t next = schedule_next(&tc->sched, tc->zone, after);
		if (next < 0) {
			s->next_wall = 0;
			return;
		}
		s->next_wall = next;
		int64_t delay = next * 1000 - now_wall_ms;
		s->next_mono = now + (uint64_t)(delay > 0 ? delay : 0);
	}
	s->jitter_ms = random_below((uint64_t)tc->jitter_ms + 1);
	wheel_add(&d->w, &s->fire.wt, s->next_mono + s->jitter_ms);
	announce_next(d, s, announce);
}

/* The wall clock was set: cron deadlines are recomputed from their nominal
 * fire times (invariant 3). */
void daemon_slots_clock_changed(daemon_state *d)
{
	uint64_t now = (uint64_t)clock_mono_ms();
	int64_t now_wall_ms = clock_wall_usec() / 1000;
	for (task_slot *s = d->slots; s; s = s->next) {
		if (!wheel_timer_pending(&s->fire.wt) || s->cfg->sched.kind != SCHEDULE_CRON)
			continue;
		int64_t delay = s->next_wall * 1000 - now_wall_ms;
		s->next_mono = now + (uint64_t)(delay > 0 ? delay : 0);
		wheel_add(&d->w, &s->fire.wt, s->next_mono + s->jitter_ms);
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

/* at: the attempt, NULL for the first attempt of a new run. */
static job *job_start(daemon_state *d, task_slot *s, const char *trigger, const run_attempt *at)
{
	char err[512];
	run_attempt first = {.correlation_id = NULL, .attempt = 1, .attempts = s->cfg->retries + 1};
	job *j = calloc(1, sizeof *j);
	if (j == NULL || run_control_init(&j->ctl) != 0) {
		log_error(DAEMON_LOGGER, "task_dispatch_failed", LOG_STR("task", s->name),
		          LOG_ERR("out of memory or file descriptors", "resources"));
		free(j);
		return NULL;
	}
	if (runner_prepare_attempt(&j->req, d->cfg, s->cfg, trigger, at ? at : &first, d->rt.st,
	                           err, sizeof err) != 0) {
		log_error(DAEMON_LOGGER, "task_dispatch_failed", LOG_STR("task", s->name),
		          LOG_ERR(err, "store"));
		run_control_destroy(&j->ctl);
		free(j);
		return NULL;
	}
	j->d = d;
	j->slot = s;
	looptimer_init(&j->timeout, job_timed_out);
	if (s->cfg->timeout_ms > 0)
		wheel_add(&d->w, &j->timeout.wt,
		          (uint64_t)clock_mono_ms() + (uint64_t)s->cfg->timeout_ms);
	if (pool_submit(d->pool, job_work, j) != 0) {
		log_error(DAEMON_LOGGER, "task_dispatch_failed", LOG_STR("task", s->name),
		          LOG_ERR("out of memory", "resources"));
		/* The row exists: finish it through the runner path later is not
		 * possible, so mark it failed right here. */
		runs_finish(d->rt.st, j->req.run_id, RUN_FAILED, clock_wall(), 0, -1,
		            "could not queue the run", "resources", NULL);
		wheel_cancel(&d->w, &j->timeout.wt);
		run_request_release(&j->req);
		run_control_destroy(&j->ctl);
		free(j);
		return NULL;
	}
	s->running = j;
	s->runs_started++;
	return j;
}

job *daemon_dispatch(daemon_state *d, task_slot *s, const char *trigger, bool *queued)
{
	*queued = false;
	if (d->stopping || s->cfg == NULL)
		return NULL;
	if (s->running == NULL && !s->retry_pending)
		return job_start(d, s, trigger, NULL);
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
	if (job_start(d, s, "retry", &at) == NULL)
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
static const char *cron_fire_trigger(daemon_state *d, task_slot *s, int64_t now_wall_ms)
{
	int64_t late_ms = now_wall_ms - s->next_wall * 1000 - (int64_t)s->jitter_ms;
	if (late_ms <= CATCHUP_LATE_MS) {
		s->last_fire_wall = s->next_wall;
		runs_last_fire_set(d->rt.st, s->name, (double)s->next_wall);
		return "schedule";
	}
	char missed[40];
	daemon_format_time((double)s->next_wall, missed, sizeof missed);
	log_info(DAEMON_LOGGER, "task_catchup", LOG_STR("task", s->name),
	         LOG_STR("missed_fire", missed), LOG_DBL("late_sec", (double)late_ms / 1000.0),
	         LOG_INT("missed_fires", missed_fires(s->cfg, s->next_wall, now_wall_ms / 1000)));
	s->last_fire_wall = now_wall_ms / 1000;
	runs_last_fire_set(d->rt.st, s->name, (double)now_wall_ms / 1000.0);
	return "catchup";
}

static void slot_fire(looptimer *t)
{
	task_slot *s = (task_slot *)(void *)t;
	daemon_state *d = s->d;
	const char *trigger = "schedule";
	bool queued;

	if (s->cfg->sched.kind == SCHEDULE_CRON) {
		int64_t now_wall_ms = clock_wall_usec() / 1000;
		if (now_wall_ms + 500 < s->next_wall * 1000) { /* early: the clock went back */
			s->next_mono = (uint64_t)clock_mono_ms() +
			               (uint64_t)(s->next_wall * 1000 - now_wall_ms);
			wheel_add(&d->w, &s->fire.wt, s->next_mono + s->jitter_ms);
			return;
		}
		trigger = cron_fire_trigger(d, s, now_wall_ms);
	} else {
		runs_last_fire_set(d->rt.st, s->name, clock_wall());
	}
	daemon_dispatch(d, s, trigger, &queued);
	daemon_slot_arm(d, s, false);
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
	while (d->slots) {
		task_slot *s = d->slots;
		d->slots = s->next;
		slot_free(s);
	}
}

/* persistent = true: a fire time missed while the daemon was down runs once. */
static bool missed_fire(daemon_state *d, task_slot *s)
{
	double last = 0;
	const task_config *tc = s->cfg;
	if (!tc->persistent || !tc->schedule_expr ||
	    runs_last_fire_get(d->rt.st, s->name, &last) != STORE_OK || last <= 0)
		return false;
	s->last_fire_wall = (int64_t)last;
	int64_t next = schedule_next(&tc->sched, tc->zone, (int64_t)last);
	return next >= 0 && (double)next <= clock_wall();
}

void daemon_slots_start(daemon_state *d)
{
	bool queued;
	for (task_slot *s = d->slots; s; s = s->next) {
		if (!s->cfg->enabled)
			continue;
		if (missed_fire(d, s)) {
			log_info(DAEMON_LOGGER, "task_catchup", LOG_STR("task", s->name));
			runs_last_fire_set(d->rt.st, s->name, clock_wall());
			s->last_fire_wall = (int64_t)clock_wall();
			daemon_dispatch(d, s, "catchup", &queued);
		} else if (s->cfg->run_on_start) {
			daemon_dispatch(d, s, "start", &queued);
		}
		daemon_slot_arm(d, s, true);
	}
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

/* Point every slot at the new configuration; returns counts via out args. */
static void apply_tasks(daemon_state *d, config *nc, int *added, int *removed, int *changed)
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
		bool resched = s->cfg == NULL || schedule_changed(s->cfg, ntc);
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
	apply_tasks(d, nc, &added, &removed, &changed);
	config_unref(old);
	log_info(DAEMON_LOGGER, "config_reloaded", LOG_STR("config", nc->path),
	         LOG_INT("tasks", (int64_t)nc->ntasks), LOG_INT("added", added),
	         LOG_INT("removed", removed), LOG_INT("rescheduled", changed));
}
