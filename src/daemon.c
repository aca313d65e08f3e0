/*
 * daemon — the loop and the lifecycle of `fleetkeeper run` (see daemon.h).
 *
 * Lifecycle: start (lock, store, writer, signals blocked before any thread
 * starts so that only the signalfd sees them, pool, control socket) ->
 * running -> stopping (SIGTERM/SIGINT: no new runs; running ones get
 * shutdown_grace, then are cancelled and end as interrupted) -> stopped
 * (scheduler_stopped logged and flushed, exit 0).
 *
 * Invariant: the loop only blocks in epoll_wait, with the wheel's next expiry
 * as its timeout; every other call it makes is non-blocking or a short
 * SQLite write on its own connection.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "ansible_run.h"
#include "clock.h"
#include "daemon_internal.h"
#include "log.h"
#include "notify_sender.h"
#include "recovery.h"
#include "retention.h"
#include "runs.h"
#include "sdnotify.h"

enum { FD_SIGNAL = 1, FD_POOL, FD_CONTROL, FD_CLOCK, FD_METRICS, FD_CLUSTER, FD_REQUESTS };

#define PRUNE_INTERVAL_MS (3600 * 1000)
/* Between two batches of a prune: at least this, and at least as long as
 * the last batch took, so that the other writers get the write lock at
 * least half of the time while a prune works through a backlog. */
#define PRUNE_GAP_MS 25
/* A store older than auto_vacuum (NONE) up to this size is rebuilt with
 * VACUUM at the first prune after start (well under a second here); a
 * larger one is left to `fleetkeeper store vacuum`. */
#define PRUNE_CONVERT_MAX_BYTES (32LL << 20)

/* ---- timers of the daemon itself ---- */

static void grace_expired(looptimer *t)
{
	daemon_state *d = wheel_container_of(t, daemon_state, grace);
	log_warning(DAEMON_LOGGER, "scheduler_shutdown_grace_expired",
	            LOG_INT("running", (int64_t)daemon_jobs_running(d)),
	            LOG_INT("recoveries", (int64_t)recovery_active_count()),
	            LOG_INT("ansible_runs", (int64_t)ansible_run_active_count()));
	daemon_jobs_cancel_all(d, RUN_CANCEL_SHUTDOWN);
	recovery_cancel_all(RUN_CANCEL_SHUTDOWN);
	ansible_run_cancel_all(RUN_CANCEL_SHUTDOWN);
}

static void stop_poll_tick(looptimer *t)
{
	(void)t; /* waking the loop is all it does */
}

/* ---- the cluster (cluster.h) ---- */

static uint64_t fence_poll_ms(const daemon_state *d)
{
	double s = cluster_failover_timeout_sec(d->cluster) / 5;
	return s > 1 ? (uint64_t)(s * 1000) : 1000;
}

/* Deposed with runs going: a new leader may mark their rows interrupted
 * (it thinks this daemon died); those runs are cancelled when it does. */
static void fence_poll_tick(looptimer *t)
{
	daemon_state *d = wheel_container_of(t, daemon_state, fence_poll);
	if (d->leading || !daemon_jobs_check_taken(d))
		return;
	wheel_add(&d->w, &t->wt, (uint64_t)clock_mono_ms() + fence_poll_ms(d));
}

static void handle_cluster(daemon_state *d)
{
	cluster_event ev;
	while ((ev = cluster_next_event(d->cluster)) != CLUSTER_EV_NONE) {
		if (ev == CLUSTER_EV_PROMOTED) {
			wheel_cancel(&d->w, &d->fence_poll.wt);
			daemon_slots_promote(d, cluster_promoted_at_start(d->cluster));
		} else {
			daemon_slots_demote(d);
			if (daemon_jobs_running(d) > 0 && !wheel_timer_pending(&d->fence_poll.wt))
				wheel_add(&d->w, &d->fence_poll.wt,
				          (uint64_t)clock_mono_ms() + fence_poll_ms(d));
		}
	}
}

void daemon_cluster_status(const daemon_state *d, cJSON *dm)
{
	char leader[128];
	cJSON_AddStringToObject(dm, "role", d->leading ? "leader" : "standby");
	cJSON_AddStringToObject(dm, "instance", cluster_instance(d->cluster));
	if (cluster_leader_name(d->cluster, leader, sizeof leader) == 0)
		cJSON_AddStringToObject(dm, "leader", leader);
	else
		cJSON_AddNullToObject(dm, "leader");
	cJSON_AddNumberToObject(dm, "term", (double)cluster_term(d->cluster));
	cJSON_AddBoolToObject(dm, "cluster", cluster_is_distributed(d->cluster));
}

static void watchdog_tick(looptimer *t)
{
	daemon_state *d = wheel_container_of(t, daemon_state, watchdog);
	sdnotify_send("WATCHDOG=1");
	wheel_add(&d->w, &t->wt, (uint64_t)clock_mono_ms() + (uint64_t)d->watchdog_ms / 2);
}

/* The prune in progress, stepped one batch per prune_tick; the loop's
 * alone (there is one daemon per process). */
static retention_job prune_job;
static bool prune_active;
static bool prune_convert_checked;

void daemon_check_store_file(daemon_state *d)
{
	if (d->store_file_lost || !store_file_replaced(d->rt.st))
		return;
	d->store_file_lost = true;
	log_critical(DAEMON_LOGGER, "store_file_replaced",
	             LOG_ERR(store_errmsg(d->rt.st), "store_file_replaced"),
	             LOG_STR("path", d->cfg->db_path),
	             LOG_STR("hint", "what is written now is lost at the next start: stop the"
	                             " daemon, restore the file or a backup, start it again"));
}

/* Once per process: an auto_vacuum NONE store (made before v6) keeps its
 * free pages; a small one is rebuilt now, a large one is reported. */
static void prune_convert_once(daemon_state *d)
{
	store_space sp;
	if (prune_convert_checked)
		return;
	prune_convert_checked = true;
	if (store_space_get(d->rt.st, &sp) != STORE_OK || sp.auto_vacuum != STORE_AUTO_VACUUM_NONE)
		return;
	int64_t bytes = sp.page_count * sp.page_size;
	if (bytes > PRUNE_CONVERT_MAX_BYTES) {
		log_warning(DAEMON_LOGGER, "store_vacuum_advised", LOG_INT("size_bytes", bytes),
		            LOG_INT("free_bytes", sp.freelist_count * sp.page_size),
		            LOG_STR("hint",
		                    "pages freed by pruning are reused but not given back;"
		                    " stop the daemon and run `fleetkeeper store vacuum` once"));
		return;
	}
	int64_t t0 = clock_mono_ms();
	if (store_vacuum(d->rt.st) != STORE_OK) {
		log_error(DAEMON_LOGGER, "store_vacuum_failed",
		          LOG_ERR(store_errmsg(d->rt.st), "store"));
		return;
	}
	store_space after = sp;
	store_space_get(d->rt.st, &after);
	log_info(DAEMON_LOGGER, "store_vacuumed", LOG_INT("size_bytes_before", bytes),
	         LOG_INT("size_bytes", after.page_count * after.page_size),
	         LOG_STR("auto_vacuum", "incremental"),
	         LOG_INT("duration_ms", clock_mono_ms() - t0));
}

static void prune_report(daemon_state *d, int rc)
{
	const retention_job *j = &prune_job;
	const int64_t *n = j->count;
	if (rc < 0)
		log_error(DAEMON_LOGGER, "store_prune_failed",
		          LOG_ERR(store_errmsg(d->rt.st), "store"),
		          LOG_STR("kind", retention_kind_name(j->failed_kind)));
	if (n[RETENTION_NOTIFICATIONS])
		log_info(DAEMON_LOGGER, "notifications_pruned",
		         LOG_INT("notifications_deleted", n[RETENTION_NOTIFICATIONS]),
		         LOG_INT("retention_days", d->cfg->retention_days));
	bool any = false;
	for (int k = 0; k < RETENTION_DONE; k++)
		any = any || n[k] != 0;
	if (!any)
		return;
	log_info(DAEMON_LOGGER, "store_pruned", LOG_INT("events_deleted", n[RETENTION_EVENTS]),
	         LOG_INT("runs_deleted", n[RETENTION_RUNS]),
	         LOG_INT("notifications_deleted", n[RETENTION_NOTIFICATIONS]),
	         LOG_INT("health_hours_downsampled", n[RETENTION_HEALTH_DOWNSAMPLED]),
	         LOG_INT("health_hours_deleted", n[RETENTION_HEALTH_DELETED]),
	         LOG_INT("vacuum_pages", n[RETENTION_VACUUM]), LOG_INT("batches", j->batches),
	         LOG_DBL("longest_batch_ms", j->longest_batch_ms),
	         LOG_INT("retention_days", d->cfg->retention_days),
	         LOG_INT("check_history_days", d->cfg->check_history_days),
	         LOG_INT("check_history_raw_hours", d->cfg->check_history_raw_hours));
}

/* Hourly, and at start: one batch per tick while a prune has work left,
 * re-armed after a short gap, so the loop answers control requests and
 * fires tasks between batches and no batch holds the write lock long. */
static void prune_tick(looptimer *t)
{
	daemon_state *d = wheel_container_of(t, daemon_state, prune);
	if (!prune_active) {
		daemon_check_store_file(d);
		prune_convert_once(d);
		retention_cutoffs cut = retention_cutoffs_for(clock_wall(), d->cfg->retention_days,
		                                              d->cfg->check_history_days,
		                                              d->cfg->check_history_raw_hours);
		retention_begin(&prune_job, &cut);
		prune_active = true;
	}
	int rc = retention_step(&prune_job, d->rt.st);
	uint64_t next = PRUNE_INTERVAL_MS;
	if (rc > 0) {
		double gap = prune_job.last_batch_ms > PRUNE_GAP_MS ? prune_job.last_batch_ms
		                                                    : PRUNE_GAP_MS;
		next = (uint64_t)gap + 1;
	} else {
		prune_active = false;
		if (prune_job.count[RETENTION_VACUUM] > 0)
			store_checkpoint(d->rt.st); /* the file shrinks now */
		prune_report(d, rc);
	}
	wheel_add(&d->w, &t->wt, (uint64_t)clock_mono_ms() + next);
}

/* ---- signals and shutdown ---- */

static void begin_shutdown(daemon_state *d, const char *signame)
{
	if (d->stopping) {
		log_warning(DAEMON_LOGGER, "scheduler_shutdown_forced", LOG_STR("signal", signame));
		daemon_jobs_cancel_all(d, RUN_CANCEL_SHUTDOWN);
		recovery_cancel_all(RUN_CANCEL_SHUTDOWN);
		ansible_run_cancel_all(RUN_CANCEL_SHUTDOWN);
		return;
	}
	d->stopping = true;
	sdnotify_send("STOPPING=1");
	cluster_resign(d->cluster); /* a standby takes over while the runs end */
	log_info(DAEMON_LOGGER, "scheduler_shutdown_requested", LOG_STR("signal", signame),
	         LOG_INT("running", (int64_t)daemon_jobs_running(d)),
	         LOG_DBL("shutdown_grace_sec", (double)d->cfg->shutdown_grace_ms / 1000.0));
	daemon_slots_stop_timers(d);
	wheel_cancel(&d->w, &d->prune.wt);
	wheel_cancel(&d->w, &d->watchdog.wt);
	if (daemon_jobs_running(d) > 0 || recovery_active_count() > 0 ||
	    ansible_run_active_count() > 0)
		wheel_add(&d->w, &d->grace.wt,
		          (uint64_t)clock_mono_ms() + (uint64_t)d->cfg->shutdown_grace_ms);
}

static void handle_signals(daemon_state *d)
{
	struct signalfd_siginfo si;
	while (read(d->signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
		switch (si.ssi_signo) {
		case SIGHUP:
			if (!d->stopping)
				daemon_reload(d);
			if (!d->stopping)
				notify_sender_reload(d->cfg);
			break;
		case SIGINT:
			begin_shutdown(d, "SIGINT");
			break;
		case SIGTERM:
			begin_shutdown(d, "SIGTERM");
			break;
		default:
			break;
		}
	}
}

/* ---- wall-clock changes ---- */

/* A CLOCK_REALTIME timer far in the future with TFD_TIMER_CANCEL_ON_SET: its
 * read fails with ECANCELED whenever the wall clock is set. */
static int arm_clock_watch(int fd)
{
	struct itimerspec its = {.it_value = {.tv_sec = (time_t)clock_wall() + 10 * 365 * 86400}};
	return timerfd_settime(fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL);
}

/* Both ways of noticing a set clock end here: the cron deadlines are
 * recomputed (daemon_tasks.c, invariant 3) and the offset becomes the new
 * baseline of check_clock_step. */
static void on_clock_change(daemon_state *d, const char *detected_by)
{
	int64_t offset = clock_wall_offset_ms();
	log_info(DAEMON_LOGGER, "wall_clock_changed", LOG_STR("detected_by", detected_by),
	         LOG_DBL("step_sec", (double)(offset - d->wall_offset_ms) / 1000.0));
	d->wall_offset_ms = offset;
	d->wall_checked_ms = clock_mono_ms();
	daemon_slots_clock_changed(d);
}

static void handle_clock(daemon_state *d)
{
	uint64_t expirations;
	if (read(d->clock_fd, &expirations, sizeof expirations) < 0 && errno == ECANCELED)
		on_clock_change(d, "timerfd");
	arm_clock_watch(d->clock_fd);
}

/* At every wakeup: a step the timerfd did not report (a kernel or sandbox
 * without TFD_TIMER_CANCEL_ON_SET, a faked clock such as libfaketime) shows
 * as a jump of the wall-minus-monotonic offset. Slewing does not count. */
static void check_clock_step(daemon_state *d)
{
	int64_t mono = clock_mono_ms();
	int64_t offset = clock_wall_offset_ms();
	if (d->wall_checked_ms == 0) {
		d->wall_offset_ms = offset;
	} else if (clock_offset_stepped(d->wall_offset_ms, offset, mono - d->wall_checked_ms)) {
		on_clock_change(d, "offset");
		return;
	} else {
		d->wall_offset_ms = offset;
	}
	d->wall_checked_ms = mono;
}

/* ---- start and stop ---- */

static int watch_fd(daemon_state *d, int fd, uint32_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};
	return epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

static int block_signals(daemon_state *d)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -1;
	d->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return d->signal_fd < 0 ? -1 : 0;
}

/* The endpoint is optional: a busy address is logged and the daemon runs
 * on without it. Its liveness probe is answered by the loop (FD_METRICS). */
static void start_metrics(daemon_state *d)
{
	char err[512];
	const char *listen = metrics_listen_address(d->cfg);
	if (!listen)
		return;
	if (metrics_http_start(&d->metrics, listen, d->cfg->db_path, err, sizeof err) != 0) {
		log_error(DAEMON_LOGGER, "metrics_listen_failed", LOG_STR("listen", listen),
		          LOG_ERR(err, "listen_failed"));
		return;
	}
	if (watch_fd(d, metrics_http_probe_fd(d->metrics), FD_METRICS) != 0) {
		log_error(DAEMON_LOGGER, "metrics_listen_failed", LOG_STR("listen", listen),
		          LOG_ERR(strerror(errno), "epoll"));
		metrics_http_stop(d->metrics);
		d->metrics = NULL;
		return;
	}
	log_info(DAEMON_LOGGER, "metrics_listening",
	         LOG_STR("listen", metrics_http_address(d->metrics)));
}

/* The HTTP API (api.h) is optional like the metrics: not configured or
 * failing, it is logged and the daemon runs on without it. */
static void start_api(daemon_state *d)
{
	char err[512];
	int rc = api_start(&d->api, d->cfg, err, sizeof err);
	if (rc == API_NOT_STARTED)
		log_info(DAEMON_LOGGER, "api_disabled", LOG_STR("reason", err));
	else if (rc != 0)
		log_error(DAEMON_LOGGER, "api_listen_failed", LOG_ERR(err, "listen_failed"));
	else
		log_info(DAEMON_LOGGER, "api_listening", LOG_STR("listen", api_address(d->api)),
		         LOG_BOOL("tls", api_uses_tls(d->api)));
}

static int start_io(daemon_state *d, char *err, size_t errlen)
{
	d->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	d->clock_fd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
	if (d->epoll_fd < 0 || d->clock_fd < 0) {
		snprintf(err, errlen, "cannot set up the event loop: %s", strerror(errno));
		return -1;
	}
	arm_clock_watch(d->clock_fd);
	check_clock_step(d); /* the baseline, before any cron deadline is computed */
	if (pool_start(&d->pool, (unsigned)d->cfg->max_concurrent_tasks, d->cfg->db_path, err,
	               errlen) != 0)
		return -1;
	if (control_open(&d->ctl, d->cfg->control_socket, &d->w, daemon_control_handle, d, err,
	                 errlen) != 0)
		return -1;
	if (watch_fd(d, d->signal_fd, FD_SIGNAL) || watch_fd(d, pool_done_fd(d->pool), FD_POOL) ||
	    watch_fd(d, control_fd(d->ctl), FD_CONTROL) || watch_fd(d, d->clock_fd, FD_CLOCK)) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		return -1;
	}
	start_metrics(d);
	start_api(d);
	return 0;
}

/* The leader election (cluster.h): a thread on PostgreSQL; on SQLite a
 * new term, taken at once. */
static int start_cluster(daemon_state *d, char *err, size_t errlen)
{
	if (cluster_start(&d->cluster, d->cfg, d->rt.st, err, errlen) != 0)
		return -1;
	if (watch_fd(d, cluster_event_fd(d->cluster), FD_CLUSTER) != 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		return -1;
	}
	/* forwarded requests (cluster_requests.h; nothing on SQLite) */
	if (cluster_listener_start(&d->requests, d->cfg, d->cluster, err, errlen) != 0)
		return -1;
	if (d->requests && watch_fd(d, cluster_listener_fd(d->requests), FD_REQUESTS) != 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void start_timers(daemon_state *d)
{
	uint64_t now = (uint64_t)clock_mono_ms();
	looptimer_init(&d->grace, grace_expired);
	looptimer_init(&d->watchdog, watchdog_tick);
	looptimer_init(&d->prune, prune_tick);
	looptimer_init(&d->stop_poll, stop_poll_tick);
	looptimer_init(&d->fence_poll, fence_poll_tick);
	wheel_add(&d->w, &d->prune.wt, now); /* prune once at start */
	d->watchdog_ms = sdnotify_watchdog_ms();
	if (d->watchdog_ms > 0)
		wheel_add(&d->w, &d->watchdog.wt, now + (uint64_t)d->watchdog_ms / 2);
}

static void stop_all(daemon_state *d)
{
	cluster_listener_stop(d->requests); /* it reads the cluster */
	d->requests = NULL;
	cluster_stop(d->cluster); /* its member row says stopped */
	d->cluster = NULL;
	api_stop(d->api); /* before the control socket its operations go to */
	metrics_http_stop(d->metrics);
	control_close(d->ctl);
	pool_stop(d->pool);
	daemon_slots_free(d);
	if (d->clock_fd >= 0)
		close(d->clock_fd);
	if (d->signal_fd >= 0)
		close(d->signal_fd);
	if (d->epoll_fd >= 0)
		close(d->epoll_fd);
	notify_sender_stop();
	runtime_close(&d->rt);
	config_unref(d->cfg);
}

/* ---- the loop ---- */

static void run_expired_timers(daemon_state *d)
{
	check_clock_step(d);
	wheel_update(&d->w, (uint64_t)clock_mono_ms());
	wheel_timer *t;
	while ((t = wheel_get_expired(&d->w)) != NULL)
		looptimer_fire(t);
}

static int next_wait_ms(const daemon_state *d)
{
	uint64_t t = wheel_timeout(&d->w);
	if (t == UINT64_MAX)
		return -1;
	return t > INT_MAX ? INT_MAX : (int)t;
}

static void handle_event(daemon_state *d, uint32_t tag)
{
	switch (tag) {
	case FD_SIGNAL:
		handle_signals(d);
		break;
	case FD_POOL:
		daemon_jobs_reap(d);
		break;
	case FD_CONTROL:
		control_dispatch(d->ctl, (uint64_t)clock_mono_ms());
		break;
	case FD_CLOCK:
		handle_clock(d);
		break;
	case FD_METRICS:
		metrics_http_probe_ack(d->metrics);
		break;
	case FD_CLUSTER:
		handle_cluster(d);
		break;
	case FD_REQUESTS:
		daemon_requests_serve(d);
		break;
	default:
		break;
	}
}

static void loop(daemon_state *d)
{
	struct epoll_event evs[16];
	for (;;) {
		run_expired_timers(d);
		if (d->stopping && daemon_jobs_running(d) == 0) {
			if (recovery_active_count() == 0 && ansible_run_active_count() == 0)
				return;
			/* Recoveries and ansible runs run on threads of their
			 * own that do not wake the loop: look again shortly
			 * (only while stopping). */
			if (!wheel_timer_pending(&d->stop_poll.wt))
				wheel_add(&d->w, &d->stop_poll.wt, (uint64_t)clock_mono_ms() + 100);
		}
		int n = epoll_wait(d->epoll_fd, evs, 16, next_wait_ms(d));
		if (n < 0 && errno != EINTR) {
			log_critical(DAEMON_LOGGER, "event_loop_failed",
			             LOG_ERR(strerror(errno), "epoll"));
			return;
		}
		for (int i = 0; i < n; i++)
			handle_event(d, evs[i].data.u32);
	}
}

static void announce_start(daemon_state *d)
{
	log_info(DAEMON_LOGGER, "scheduler_workers_configured",
	         LOG_INT("workers", d->cfg->max_concurrent_tasks));
	log_info(DAEMON_LOGGER, "scheduler_started", LOG_STR("version", FK_VERSION),
	         LOG_INT("tasks", (int64_t)d->cfg->ntasks), LOG_INT("pid", getpid()),
	         LOG_STR("state_dir", d->cfg->state_dir),
	         LOG_STR("control_socket", d->cfg->control_socket),
	         LOG_INT("open_files_limit", (int64_t)d->rt.nofile_soft));
}

/* A stdout pipe or socket nobody reads must not stop the daemon: made
 * non-blocking, a full one drops console lines (log.c) while the events
 * still reach the store. Terminals and files are left as they are. */
static void stdout_nonblocking(void)
{
	struct stat st;
	int fl = fcntl(STDOUT_FILENO, F_GETFL);
	if (fl >= 0 && fstat(STDOUT_FILENO, &st) == 0 &&
	    (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
		fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK);
}

int daemon_run(config *cfg)
{
	daemon_state d;
	char err[1024] = "";

	memset(&d, 0, sizeof d);
	d.epoll_fd = d.signal_fd = d.clock_fd = -1;
	d.cfg = config_ref(cfg);
	d.started_at = clock_wall();
	signal(SIGPIPE, SIG_IGN);
	stdout_nonblocking();
	/* A handful of long-lived threads that mostly wait: two malloc arenas
	 * serve them without contention, instead of one per thread (each keeps
	 * its own free memory). MALLOC_ARENA_MAX in the environment wins. */
	if (getenv("MALLOC_ARENA_MAX") == NULL)
		mallopt(M_ARENA_MAX, 2);
	wheel_init(&d.w, (uint64_t)clock_mono_ms());
	/* Before any thread starts, so that every thread inherits the mask. */
	if (block_signals(&d) != 0) {
		fprintf(stderr, "fleetkeeper: cannot block signals: %s\n", strerror(errno));
		config_unref(d.cfg);
		return EXIT_FAILURE;
	}

	runs_set_instance(cfg->cluster_instance); /* before any row is written */
	int rc = runtime_open(&d.rt, cfg, true, err, sizeof err);
	if (rc != 0) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		log_error(DAEMON_LOGGER, "scheduler_start_failed",
		          LOG_ERR(err, rc == RUNTIME_LOCKED ? "already_running" : "state_dir"));
		config_unref(d.cfg);
		return EXIT_FAILURE;
	}
	if (start_io(&d, err, sizeof err) != 0 || daemon_slots_create(&d, err, sizeof err) != 0 ||
	    start_cluster(&d, err, sizeof err) != 0) {
		fprintf(stderr, "fleetkeeper: %s\n", err);
		log_error(DAEMON_LOGGER, "scheduler_start_failed", LOG_ERR(err, "startup"));
		stop_all(&d);
		return EXIT_FAILURE;
	}
	start_timers(&d);
	announce_start(&d);
	handle_cluster(&d); /* SQLite: leader at once, the start's catch-up */
	notify_sender_start(d.cfg);
	sdnotify_send("READY=1");

	loop(&d);

	/* the cluster's last words (leadership given back) before the last line */
	cluster_listener_stop(d.requests);
	d.requests = NULL;
	cluster_stop(d.cluster);
	d.cluster = NULL;
	log_info(DAEMON_LOGGER, "scheduler_stopped",
	         LOG_DBL("uptime_sec", clock_wall() - d.started_at));
	stop_all(&d);
	return EXIT_SUCCESS;
}
