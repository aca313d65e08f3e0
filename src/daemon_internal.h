/*
 * daemon_internal — what daemon.c (loop and lifecycle), daemon_tasks.c
 * (task slots: scheduling, dispatch, completion, reload) and
 * daemon_control.c (control-socket requests) share. Everything here belongs
 * to the loop thread, except job_work which runs on a worker.
 */
#ifndef FK_DAEMON_INTERNAL_H
#define FK_DAEMON_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "cluster.h"
#include "cluster_requests.h"
#include "config.h"
#include "control.h"
#include "looptimer.h"
#include "metrics_http.h"
#include "pool.h"
#include "runner.h"
#include "runtime.h"
#include "wheel.h"
#include "runs.h"

typedef struct daemon_state daemon_state;
typedef struct task_slot task_slot;

/* One run on its way through the pool. */
typedef struct job {
	looptimer timeout; /* first: container_of from the timer */
	daemon_state *d;
	task_slot *slot;
	run_request req;
	run_control ctl;
	run_status status;      /* written by the worker, read after done */
	struct job *burst_next; /* in the burst being dispatched (daemon_tasks.c) */
} job;

/* One fire of a burst: its slot and its fire time (wall clock, ms). */
struct burst_fire {
	task_slot *slot;
	int64_t fire_ms;
};

/* The scheduler's state of one configured task; survives reloads. */
struct task_slot {
	looptimer fire; /* first */
	daemon_state *d;
	task_slot *next;
	char *name;
	const task_config *cfg; /* from d->cfg; NULL once removed by a reload */
	int64_t next_wall;      /* cron: nominal next fire time (unix s), 0 none */
	int64_t last_fire_wall; /* cron: nominal time of the last fire */
	uint64_t next_mono;     /* interval: nominal fire time (monotonic ms) */
	/* interval: the nominal fire time of next_mono on the wall clock (unix
	 * s), the row's scheduled_for; continued from task_state.last_fire_at
	 * by a new leader (daemon_slots_promote). */
	double next_label;
	/* Added to the nominal time of this fire: the task's fixed spread
	 * offset ([daemon] spread), or this fire's jitter draw. */
	uint64_t delay_ms;
	job *running;
	bool pending; /* overlap = queue: one run waits */
	char pending_trigger[16];
	/* A failed run's next attempt, waiting for its backoff (retry_pending
	 * only while running is NULL; daemon_tasks.c invariant 4). */
	looptimer retry;
	bool retry_pending;
	int retry_attempt;          /* the attempt the timer starts, 2.. */
	int retry_attempts;         /* the run's last attempt (retries + 1 when it began) */
	double retry_scheduled_for; /* the run's nominal fire time, 0 none */
	uint64_t retry_due_mono;
	char retry_correlation_id[RUNNER_CORRELATION_MAX];
	bool has_last;
	run_status last_status;
	int64_t last_run_id;
	double last_finished_at;
	uint64_t runs_started;
};

struct daemon_state {
	config *cfg;
	runtime rt;
	wheel w;
	pool *pool;
	control *ctl;
	metrics_http *metrics; /* NULL when [metrics] listen is off or failed */
	/* Leader election (cluster.h); always leader on SQLite. The loop
	 * dispatches only while leading (promoted, not yet demoted) and
	 * cluster_may_dispatch. */
	cluster *cluster;
	bool leading;
	looptimer fence_poll; /* deposed with runs going: were their rows taken over? */
	/* Forwarded requests' listener (cluster_requests.h); NULL on SQLite. */
	cluster_listener *requests;
	api *api; /* NULL when [api] is off, has nothing to serve, or failed */
	int epoll_fd;
	int signal_fd;
	int clock_fd;
	task_slot *slots;
	bool stopping;
	bool store_file_lost; /* store_file_replaced was logged */
	looptimer grace;
	looptimer watchdog;
	looptimer prune;
	looptimer stop_poll; /* while stopping with recoveries still running */
	int64_t watchdog_ms;
	double started_at;
	int64_t wall_offset_ms;  /* wall minus monotonic clock at the last check */
	int64_t wall_checked_ms; /* monotonic time of that check */
	/* The burst of fires being dispatched (daemon_tasks.c, "Bursts"): its
	 * slots in fire-time order, and the jobs whose rows are in its open
	 * transaction, handed to the pool once it commits. */
	struct burst_fire *burst_fires;
	size_t burst_cap;
	bool burst_open;
	bool burst_tx; /* its transaction began */
	job *burst_head;
	job **burst_tail;
};

#define DAEMON_LOGGER "core.daemon"

/* daemon_tasks.c */
/* One slot per configured task. 0, or -1 with a message in err. */
int daemon_slots_create(daemon_state *d, char *err, size_t errlen);
void daemon_slots_free(daemon_state *d);
void daemon_slots_start(daemon_state *d); /* catch-up, run_on_start, arm */
void daemon_slot_arm(daemon_state *d, task_slot *s, bool announce);
void daemon_slots_clock_changed(daemon_state *d);
void daemon_slots_stop_timers(daemon_state *d);
task_slot *daemon_slot_find(daemon_state *d, const char *name);
/* Start a run now, honouring overlap. Returns the job, or NULL when skipped
 * or queued (*queued tells which). */
job *daemon_dispatch(daemon_state *d, task_slot *s, const char *trigger, bool *queued);
/* The same with the caller's correlation id for the run (NULL: a new one;
 * a queued run gets its own when it starts). */
job *daemon_dispatch_as(daemon_state *d, task_slot *s, const char *trigger,
                        const char *correlation_id, bool *queued);
void daemon_jobs_reap(daemon_state *d);
/* store_file_replaced (critical, once) when the daemon's database file was
 * deleted or replaced under it; cheap (a stat), called after runs and prunes. */
void daemon_check_store_file(daemon_state *d);
void daemon_jobs_cancel_all(daemon_state *d, run_cancel_reason reason);
size_t daemon_jobs_running(const daemon_state *d);
void daemon_reload(daemon_state *d);
void daemon_format_time(double unix_time, char *buf, size_t cap);
double daemon_slot_next_run(const daemon_state *d, const task_slot *s); /* unix s, 0 none */
double daemon_slot_retry_at(const task_slot *s); /* unix s of the pending retry, 0 none */

/* Leadership (daemon_tasks.c): promoted arms every task from the store
 * (at_start: the start's catch-up and run_on_start; else a failover's
 * continuation, fires missed in the gap once); demoted stops dispatching
 * (running runs go on) and cancels those whose rows a failover took. */
void daemon_slots_promote(daemon_state *d, bool at_start);
void daemon_slots_demote(daemon_state *d);
/* Cancel the runs whose rows a new leader marked interrupted (failover);
 * true while some of this daemon's runs still go on. */
bool daemon_jobs_check_taken(daemon_state *d);

/* daemon.c: the cluster's part of the status reply (role, instance,
 * leader, term) into the "daemon" object. */
void daemon_cluster_status(const daemon_state *d, cJSON *daemon_obj);

/* daemon_control.c */
char *daemon_control_handle(void *ctx, const cJSON *request);
/* The leader's wakeup for forwarded requests (cluster_listener_fd
 * readable): expire the stale ones, serve up to CLUSTER_REQUEST_BATCH
 * queued ones. Does nothing while not leading or stopping. */
void daemon_requests_serve(daemon_state *d);

#endif
