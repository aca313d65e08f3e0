/*
 * cluster — see cluster.h. The owner of the cluster_leader and
 * cluster_members tables.
 *
 * Invariants:
 *  1. This instance believes it leads (c->leader) only between a committed
 *     takeover (term + 1 written by this instance, on a connection that
 *     holds the advisory lock) and the first heartbeat that fails, finds
 *     another term, or runs on a connection that is not the one that took
 *     the lock (the store reconnected: the session lock is gone).
 *  2. The loop dispatches a scheduled fire only while
 *     cluster_may_dispatch: leader and the last confirmed heartbeat was
 *     sent less than failover_timeout / 2 ago (monotonic). A standby takes
 *     over only when the leader row's heartbeat (server clock) is at least
 *     failover_timeout / 2 old, so an old leader's gate is closed before a
 *     new term begins; the term fence (runs_start_fenced) covers the rest.
 *  3. A standby evicts a leader (pg_terminate_backend of its lock
 *     connection) only when its heartbeat is older than failover_timeout:
 *     a SIGSTOPped process keeps its TCP connection and its lock.
 *  4. At a takeover the running rows of instances that are not alive
 *     (cluster_members heartbeat older than failover_timeout, or a row
 *     from before that instance's last start) become interrupted
 *     (interrupted_by = failover); tasks with rows of live instances are
 *     busy for the new leader (cluster_task_busy_elsewhere) until those
 *     rows end or their instance stops answering. Right after a
 *     PostgreSQL restart nobody's heartbeat says anything yet: for
 *     failover_timeout after it, no row is declared dead.
 *
 * Threads: the cluster thread owns c->st and the fields marked "thread";
 * the loop owns loop_term; the rest is atomic or under c->mu.
 */
#include "cluster.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "runs.h"

#define CLUSTER_LOGGER "core.cluster"
/* The session advisory lock of the leadership: "fkleader" (the store's
 * transaction lock uses a key of its own). */
#define CLUSTER_LOCK_KEY INT64_C(0x666b6c6561646572)
#define HEARTBEAT_MIN_MS 1000
/* Each instance holds the advisory lock (MEMBER_LOCK_CLASS,
 * hashtext(instance)) on its lock connection: while it is held, the
 * instance is connected (invariant 4). */
#define MEMBER_LOCK_CLASS 26219
#define BUSY_MAX          256
#define INSTANCE_MAX      128
/* A lock connection that says something (a termination notice) is checked
 * at once, but not more often than this. */
#define SOCKET_RECHECK_MS 200
/* cluster_start waits this long for the thread's first heartbeat. */
#define FIRST_WAIT_MS 3000

struct cluster {
	config *cfg; /* one reference */
	bool distributed;
	char instance[INSTANCE_MAX];
	int64_t failover_ms;
	int64_t period_ms;
	double started_at; /* wall clock, this process */
	int event_fd;      /* thread -> loop (eventfd) */
	int wake_fd;       /* loop -> thread (eventfd): stop, resign */
	pthread_t thread;
	bool thread_started;
	atomic_bool leader;
	atomic_llong term;
	atomic_llong hb_ok_ms; /* monotonic send time of the last confirmed heartbeat */
	atomic_bool stop;
	atomic_bool resign;
	atomic_bool at_start;   /* the current term was taken at this process's start */
	atomic_bool first_done; /* the thread's first heartbeat is over */
	pthread_mutex_t mu;     /* leader_name, busy */
	char leader_name[INSTANCE_MAX];
	char *busy[BUSY_MAX];
	size_t nbusy;
	/* loop */
	int64_t loop_term;
	/* thread */
	store *st;
	int lock_pid;        /* backend of the connection that holds the lock, 0 none */
	int member_lock_pid; /* backend that holds the member lock, 0 none */
	bool campaigned;
	bool waiting_logged;
	bool store_down_logged;
	int64_t socket_check_ms;
	char announced[INSTANCE_MAX]; /* the leader cluster_standby last named */
	int64_t retry_at_ms;          /* a takeover waits until then (0: a period) */
	unsigned beats;               /* heartbeats as leader */
};

/* ---- small helpers ---- */

static void signal_loop(cluster *c)
{
	uint64_t one = 1;
	ssize_t n = write(c->event_fd, &one, sizeof one);
	(void)n;
}

static void set_leader_name(cluster *c, const char *name)
{
	pthread_mutex_lock(&c->mu);
	snprintf(c->leader_name, sizeof c->leader_name, "%s", name ? name : "");
	pthread_mutex_unlock(&c->mu);
	metrics_cluster_state(c->instance, atomic_load(&c->leader), name);
}

static void busy_clear(cluster *c)
{
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->nbusy; i++)
		free(c->busy[i]);
	c->nbusy = 0;
	pthread_mutex_unlock(&c->mu);
}

struct busy_acc {
	char *names[BUSY_MAX];
	size_t n;
};

static void busy_add(void *ctx, const char *task)
{
	struct busy_acc *a = ctx;
	if (a->n < BUSY_MAX && task && (a->names[a->n] = strdup(task)) != NULL)
		a->n++;
}

/* ---- the tables (PostgreSQL-only SQL: the thread runs only there) ---- */

static int server_now(cluster *c, double *now)
{
	static const char sql[] =
	        "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)";
	store_stmt *st;
	int rc = store_prepare(c->st, sql, &st);
	if (rc != STORE_OK)
		return rc;
	rc = store_step(st);
	if (rc == STORE_ROW)
		*now = store_col_double(st, 0, 0);
	store_stmt_done(st);
	return rc == STORE_ROW ? STORE_OK : rc < 0 ? rc : STORE_ERROR;
}

/* 1 got, 0 held by another session, < 0 error. */
static int try_lock(cluster *c)
{
	static const char sql[] = "SELECT CASE WHEN pg_try_advisory_lock(?1) THEN 1 ELSE 0 END";
	store_stmt *st;
	int rc = store_prepare(c->st, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(st, 1, CLUSTER_LOCK_KEY);
	rc = store_step(st);
	int got = rc == STORE_ROW ? store_col_int(st, 0) : 0;
	store_stmt_done(st);
	if (rc < 0)
		return rc;
	if (got)
		c->lock_pid = store_backend_pid(c->st);
	return got;
}

static void unlock(cluster *c)
{
	static const char sql[] = "SELECT pg_advisory_unlock(?1)";
	store_stmt *st;
	if (c->lock_pid && store_backend_pid(c->st) == c->lock_pid &&
	    store_prepare(c->st, sql, &st) == STORE_OK) {
		store_bind_int64(st, 1, CLUSTER_LOCK_KEY);
		store_step(st);
		store_stmt_done(st);
	}
	c->lock_pid = 0;
}

/* The lock is ours while the connection that took it is the one we use. */
static bool lock_held(cluster *c)
{
	return c->lock_pid != 0 && store_backend_pid(c->st) == c->lock_pid;
}

typedef struct {
	bool valid;
	int64_t term;
	char instance[INSTANCE_MAX];
	int pid;
	double heartbeat_at;
} leader_row;

static int read_leader(store *s, leader_row *r)
{
	static const char sql[] = "SELECT term, instance, backend_pid, heartbeat_at"
	                          " FROM cluster_leader WHERE id = 1";
	store_stmt *st;
	memset(r, 0, sizeof *r);
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	rc = store_step(st);
	if (rc == STORE_ROW) {
		r->valid = true;
		r->term = store_col_int64(st, 0);
		snprintf(r->instance, sizeof r->instance, "%s",
		         store_col_text(st, 1) ? store_col_text(st, 1) : "");
		r->pid = store_col_int(st, 2);
		r->heartbeat_at = store_col_double(st, 3, 0);
	}
	store_stmt_done(st);
	return rc < 0 ? rc : STORE_OK;
}

static int terminate(cluster *c, int pid)
{
	static const char sql[] = "SELECT pg_terminate_backend(CAST(?1 AS INTEGER))";
	store_stmt *st;
	int rc = store_prepare(c->st, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(st, 1, pid);
	rc = store_step(st);
	store_stmt_done(st);
	return rc < 0 ? rc : STORE_OK;
}

/* The new term: written on both backends (times are bound). */
static int write_term(store *s, const char *me, int pid, double now, int64_t *term)
{
	static const char sql[] =
	        "INSERT INTO cluster_leader (id, term, instance, backend_pid, elected_at,"
	        " heartbeat_at) VALUES (1, 1, ?1, ?2, ?3, ?3)"
	        " ON CONFLICT (id) DO UPDATE SET term = cluster_leader.term + 1,"
	        " instance = excluded.instance, backend_pid = excluded.backend_pid,"
	        " elected_at = excluded.elected_at, heartbeat_at = excluded.heartbeat_at"
	        " RETURNING term";
	store_stmt *st;
	int rc = store_prepare(s, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_text(st, 1, me);
	store_bind_int64(st, 2, pid);
	store_bind_double(st, 3, now);
	return store_step_id(st, term);
}

/* The member lock, once per connection. */
static void member_lock(cluster *c)
{
	static const char sql[] = "SELECT pg_try_advisory_lock(CAST(?1 AS INTEGER), hashtext(?2))";
	int pid = store_backend_pid(c->st);
	if (pid == 0 || pid == c->member_lock_pid)
		return;
	store_stmt *st;
	if (store_prepare(c->st, sql, &st) != STORE_OK)
		return;
	store_bind_int64(st, 1, MEMBER_LOCK_CLASS);
	store_bind_text(st, 2, c->instance);
	if (store_step(st) == STORE_ROW)
		c->member_lock_pid = pid;
	store_stmt_done(st);
}

static int member_upsert(cluster *c, const char *role)
{
	member_lock(c);
	static const char sql[] =
	        "INSERT INTO cluster_members (instance, role, pid, started_at, heartbeat_at)"
	        " VALUES (?1, ?2, ?3, ?4, CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE"
	        " PRECISION)) ON CONFLICT (instance) DO UPDATE SET role = excluded.role,"
	        " pid = excluded.pid, started_at = excluded.started_at,"
	        " heartbeat_at = excluded.heartbeat_at";
	store_stmt *st;
	int rc = store_prepare(c->st, sql, &st);
	if (rc != STORE_OK)
		return rc;
	store_bind_text(st, 1, c->instance);
	store_bind_text(st, 2, role);
	store_bind_int64(st, 3, getpid());
	store_bind_double(st, 4, c->started_at);
	rc = store_step_done(st);
	store_stmt_done(st);
	return rc;
}

/* A fleetkeeper session idle inside a transaction for longer than the
 * failover timeout belongs to a stopped process (SIGSTOP between two
 * statements): it holds the store's write lock, and every daemon's writes
 * wait behind it. Ended like an evicted leader's lock connection. */
static void end_stuck_sessions(cluster *c)
{
	static const char sql[] =
	        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	        " WHERE state LIKE 'idle in transaction%' AND application_name = 'fleetkeeper'"
	        " AND pid <> pg_backend_pid()"
	        " AND state_change < clock_timestamp() - make_interval(secs => ?1)";
	store_stmt *st;
	if (store_prepare(c->st, sql, &st) != STORE_OK)
		return;
	store_bind_double(st, 1, (double)c->failover_ms / 1000.0);
	int64_t n = 0;
	if (store_step(st) == STORE_ROW)
		n = store_col_int64(st, 0);
	store_stmt_done(st);
	if (n > 0)
		log_warning(
		        CLUSTER_LOGGER, "cluster_stuck_sessions_ended",
		        LOG_STR("instance", c->instance), LOG_INT("sessions", n),
		        LOG_STR("reason", "idle in a transaction longer than failover_timeout"));
}

/* Seconds since the server started (a restart forgets every heartbeat). */
static int server_uptime(cluster *c, double *out)
{
	static const char sql[] = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp() -"
	                          " pg_postmaster_start_time()) AS DOUBLE PRECISION)";
	store_stmt *st;
	int rc = store_prepare(c->st, sql, &st);
	if (rc != STORE_OK)
		return rc;
	rc = store_step(st);
	if (rc == STORE_ROW)
		*out = store_col_double(st, 0, 0);
	store_stmt_done(st);
	return rc == STORE_ROW ? STORE_OK : rc < 0 ? rc : STORE_ERROR;
}

/* ---- leader: the rows of others (invariant 4) ---- */

/* Interrupt the rows of instances that stopped answering, then list the
 * tasks still running elsewhere. Inside a transaction when called by the
 * takeover. *interrupted gets how many rows. */
static int sweep_rows(cluster *c, double now, int *interrupted)
{
	double uptime = 0;
	double failover = (double)c->failover_ms / 1000.0;
	*interrupted = 0;
	int rc = server_uptime(c, &uptime);
	/* a live instance heartbeats every period: one missed, and its
	 * connection gone, it is dead */
	double fresh = (double)c->period_ms / 1000.0 + 0.5;
	if (rc == STORE_OK && uptime >= failover)
		rc = runs_interrupt_failover(c->st, c->instance, now - failover, now - fresh,
		                             MEMBER_LOCK_CLASS, now, interrupted);
	return rc;
}

static int refresh_busy(cluster *c)
{
	struct busy_acc acc = {.n = 0};
	int rc = runs_running_elsewhere(c->st, c->instance, busy_add, &acc);
	if (rc != STORE_OK) {
		for (size_t i = 0; i < acc.n; i++)
			free(acc.names[i]);
		return rc;
	}
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->nbusy; i++)
		free(c->busy[i]);
	memcpy(c->busy, acc.names, acc.n * sizeof acc.names[0]);
	c->nbusy = acc.n;
	pthread_mutex_unlock(&c->mu);
	return STORE_OK;
}

/* ---- role changes ---- */

/* cluster_standby once for each leader a standby sees. */
static void announce_standby(cluster *c, const char *leader)
{
	if (strcmp(c->announced, leader) == 0)
		return;
	snprintf(c->announced, sizeof c->announced, "%s", leader);
	log_info(CLUSTER_LOGGER, "cluster_standby", LOG_STR("instance", c->instance),
	         LOG_STR("leader", leader[0] ? leader : NULL));
}

static void become_standby(cluster *c, const char *reason, const char *error)
{
	bool was = atomic_exchange(&c->leader, false);
	int64_t term = atomic_exchange(&c->term, 0);
	unlock(c);
	busy_clear(c);
	if (!was)
		return;
	signal_loop(c);
	if (error)
		log_warning(CLUSTER_LOGGER, "cluster_leader_lost", LOG_STR("instance", c->instance),
		            LOG_INT("term", term), LOG_STR("reason", reason),
		            LOG_ERR(error, "store"));
	else
		log_warning(CLUSTER_LOGGER, "cluster_leader_lost", LOG_STR("instance", c->instance),
		            LOG_INT("term", term), LOG_STR("reason", reason));
	char leader[INSTANCE_MAX];
	cluster_leader_name(c, leader, sizeof leader);
	if (strcmp(leader, c->instance) == 0)
		leader[0] = '\0';
	set_leader_name(c, leader);
	if (strcmp(reason, "shutdown") == 0)
		return;         /* a stopping daemon is nobody's standby */
	c->announced[0] = '\1'; /* said again, whoever it names */
	c->announced[1] = '\0';
	announce_standby(c, leader);
}

/* With the lock held: the new term, the failover's rows, in one
 * transaction (serialized with every fenced insert by the store's write
 * lock). */
static void take_over(cluster *c, const leader_row *prev, int64_t sent_ms)
{
	double now = 0;
	int64_t term = 0;
	int interrupted = 0;
	int rc = store_tx_begin(c->st);
	if (rc == STORE_OK)
		rc = server_now(c, &now);
	if (rc == STORE_OK)
		rc = write_term(c->st, c->instance, store_backend_pid(c->st), now, &term);
	if (rc == STORE_OK)
		rc = sweep_rows(c, now, &interrupted);
	if (rc != STORE_OK) {
		char why[300];
		snprintf(why, sizeof why, "%s", store_errmsg(c->st));
		store_tx_rollback(c->st);
		log_warning(CLUSTER_LOGGER, "cluster_takeover_failed",
		            LOG_STR("instance", c->instance), LOG_ERR(why, "store"));
		return;
	}
	if (store_tx_commit(c->st) != STORE_OK) {
		log_warning(CLUSTER_LOGGER, "cluster_takeover_failed",
		            LOG_STR("instance", c->instance),
		            LOG_ERR(store_errmsg(c->st), "store"));
		return;
	}
	if (!lock_held(c)) { /* reconnected inside: the lock went with it */
		c->lock_pid = 0;
		return;
	}
	refresh_busy(c);
	atomic_store(&c->at_start, !c->campaigned);
	c->campaigned = true;
	c->waiting_logged = false;
	atomic_store(&c->hb_ok_ms, sent_ms);
	atomic_store(&c->term, term);
	atomic_store(&c->leader, true);
	set_leader_name(c, c->instance);
	log_info(CLUSTER_LOGGER, "cluster_leader_elected", LOG_STR("instance", c->instance),
	         LOG_INT("term", term),
	         LOG_STR("previous", prev->valid && prev->instance[0] ? prev->instance : NULL),
	         LOG_INT("runs_interrupted", interrupted));
	signal_loop(c);
}

/* A standby's heartbeat: the lock, an eviction, a takeover. */
static void campaign(cluster *c)
{
	leader_row row;
	double now = 0;
	double failover = (double)c->failover_ms / 1000.0;
	int64_t sent = clock_mono_ms();

	if (!lock_held(c)) {
		c->lock_pid = 0;
		int got = try_lock(c);
		if (got < 0)
			return;
		if (got == 0) {
			if (read_leader(c->st, &row) != STORE_OK || server_now(c, &now) != STORE_OK)
				return;
			set_leader_name(c, row.valid ? row.instance : NULL);
			announce_standby(c, row.valid ? row.instance : "");
			if (row.valid && row.pid > 0 && now - row.heartbeat_at > failover) {
				log_warning(CLUSTER_LOGGER, "cluster_leader_evicted",
				            LOG_STR("instance", c->instance),
				            LOG_STR("leader", row.instance),
				            LOG_INT("term", row.term),
				            LOG_DBL("heartbeat_age_sec", now - row.heartbeat_at));
				terminate(c, row.pid);
				end_stuck_sessions(c);
				got = try_lock(c);
			}
			if (got <= 0) {
				c->campaigned = true;
				return;
			}
		}
	}
	if (read_leader(c->st, &row) != STORE_OK || server_now(c, &now) != STORE_OK)
		return;
	/* invariant 2: an old leader's dispatch gate closes at failover / 2
	 * after its last heartbeat */
	if (row.valid && strcmp(row.instance, c->instance) != 0 && row.heartbeat_at > 0 &&
	    now - row.heartbeat_at < failover / 2) {
		if (!c->waiting_logged)
			log_debug(CLUSTER_LOGGER, "cluster_takeover_waiting",
			          LOG_STR("instance", c->instance), LOG_STR("leader", row.instance),
			          LOG_DBL("heartbeat_age_sec", now - row.heartbeat_at));
		c->waiting_logged = true;
		c->campaigned = true;
		c->retry_at_ms = clock_mono_ms() +
		                 (int64_t)((failover / 2 - (now - row.heartbeat_at)) * 1000.0) + 20;
		return;
	}
	take_over(c, &row, sent);
}

/* A leader's heartbeat: renew, or step down (invariant 1). */
static void heartbeat(cluster *c)
{
	static const char sql[] = "UPDATE cluster_leader SET heartbeat_at ="
	                          " CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
	                          " WHERE id = 1 AND term = ?1 AND instance = ?2";
	int64_t sent = clock_mono_ms();
	if (!lock_held(c)) {
		become_standby(c, "lock_connection_lost", NULL);
		return;
	}
	store_stmt *st;
	int rc = store_prepare(c->st, sql, &st);
	if (rc == STORE_OK) {
		store_bind_int64(st, 1, atomic_load(&c->term));
		store_bind_text(st, 2, c->instance);
		rc = store_step_done(st);
		store_stmt_done(st);
	}
	if (rc != STORE_OK) {
		char why[300];
		snprintf(why, sizeof why, "%s", store_errmsg(c->st));
		become_standby(c, "store_error", why);
		return;
	}
	if (store_changes(c->st) == 0) {
		become_standby(c, "term_taken", NULL);
		return;
	}
	if (!lock_held(c)) {
		become_standby(c, "lock_connection_lost", NULL);
		return;
	}
	atomic_store(&c->hb_ok_ms, sent);
	if (c->beats++ % 5 == 0)
		end_stuck_sessions(c);
	int interrupted = 0;
	if (c->nbusy > 0) { /* invariant 4, again, while others' rows run */
		double now = 0;
		if (server_now(c, &now) == STORE_OK &&
		    sweep_rows(c, now, &interrupted) == STORE_OK && interrupted > 0)
			log_info(CLUSTER_LOGGER, "cluster_runs_interrupted",
			         LOG_STR("instance", c->instance), LOG_INT("count", interrupted));
		refresh_busy(c);
	}
}

/* Shutdown: give the leadership back at once (heartbeat 0: a standby takes
 * over at its next heartbeat). */
static void resign(cluster *c)
{
	static const char sql[] = "UPDATE cluster_leader SET heartbeat_at = 0"
	                          " WHERE id = 1 AND term = ?1 AND instance = ?2";
	if (!atomic_load(&c->leader))
		return;
	store_stmt *st;
	if (store_prepare(c->st, sql, &st) == STORE_OK) {
		store_bind_int64(st, 1, atomic_load(&c->term));
		store_bind_text(st, 2, c->instance);
		store_step_done(st);
		store_stmt_done(st);
	}
	become_standby(c, "shutdown", NULL);
}

/* ---- the thread ---- */

/* Until the period is over, or the loop asks, or the lock connection says
 * something (a leader checks at once: pg_terminate_backend). */
static void wait_period(cluster *c, int64_t until_ms)
{
	for (;;) {
		int64_t now = clock_mono_ms();
		if (now >= until_ms || atomic_load(&c->stop))
			return;
		struct pollfd p[2] = {{.fd = c->wake_fd, .events = POLLIN}, {.fd = -1}};
		int n = 1;
		int sock = c->st ? store_notify_fd(c->st) : -1;
		if (atomic_load(&c->leader) && sock >= 0 && now >= c->socket_check_ms) {
			p[1] = (struct pollfd){.fd = sock, .events = POLLIN};
			n = 2;
		}
		int r = poll(p, (nfds_t)n, (int)(until_ms - now));
		if (r < 0 && errno != EINTR)
			return;
		if (r > 0 && (p[0].revents & POLLIN)) {
			uint64_t v;
			ssize_t got = read(c->wake_fd, &v, sizeof v);
			(void)got;
			return;
		}
		if (r > 0 && n == 2 && p[1].revents) {
			c->socket_check_ms = clock_mono_ms() + SOCKET_RECHECK_MS;
			return;
		}
	}
}

static const char *role_now(const cluster *c)
{
	if (atomic_load(&c->resign))
		return "stopping";
	return atomic_load(&c->leader) ? "leader" : "standby";
}

static void *cluster_main(void *arg)
{
	cluster *c = arg;
	char err[512];
	while (!atomic_load(&c->stop)) {
		int64_t t0 = clock_mono_ms();
		if (c->st == NULL && store_open(&c->st, c->cfg->db_path, err, sizeof err) != 0) {
			store_close(c->st);
			c->st = NULL;
			if (!c->store_down_logged)
				log_warning(CLUSTER_LOGGER, "cluster_store_unavailable",
				            LOG_STR("instance", c->instance),
				            LOG_ERR(err, "store"));
			c->store_down_logged = true;
		}
		if (c->st) {
			c->store_down_logged = false;
			if (atomic_load(&c->resign))
				resign(c);
			else if (atomic_load(&c->leader))
				heartbeat(c);
			else
				campaign(c);
			member_upsert(c, role_now(c));
		}
		atomic_store(&c->first_done, true);
		int64_t until = t0 + c->period_ms;
		if (c->retry_at_ms > 0 && c->retry_at_ms < until)
			until = c->retry_at_ms;
		c->retry_at_ms = 0;
		wait_period(c, until);
	}
	if (c->st) {
		resign(c);
		member_upsert(c, "stopped");
		unlock(c);
		store_close(c->st);
		c->st = NULL;
	}
	return NULL;
}

/* ---- SQLite: one term at start, leader for good ---- */

static int start_local(cluster *c, store *st, char *err, size_t errlen)
{
	int64_t term = 0;
	int rc = store_tx_begin(st);
	if (rc == STORE_OK)
		rc = write_term(st, c->instance, 0, clock_wall(), &term);
	if (rc != STORE_OK) {
		store_fail(st, rc, "cannot take the scheduling term", err, errlen);
		store_tx_rollback(st);
		return -1;
	}
	rc = store_tx_commit(st);
	if (rc != STORE_OK) {
		store_fail(st, rc, "cannot take the scheduling term", err, errlen);
		return -1;
	}
	atomic_store(&c->term, term);
	atomic_store(&c->at_start, true);
	atomic_store(&c->leader, true);
	set_leader_name(c, c->instance);
	signal_loop(c);
	return 0;
}

/* ---- the API ---- */

int cluster_start(cluster **out, config *cfg, store *st, char *err, size_t errlen)
{
	*out = NULL;
	cluster *c = calloc(1, sizeof *c);
	if (c == NULL) {
		snprintf(err, errlen, "cluster: out of memory");
		return -1;
	}
	c->cfg = config_ref(cfg);
	c->distributed = cfg->store_postgresql;
	snprintf(c->instance, sizeof c->instance, "%s",
	         cfg->cluster_instance ? cfg->cluster_instance : "fleetkeeper");
	c->failover_ms = cfg->failover_timeout_ms > 0 ? cfg->failover_timeout_ms : 15000;
	c->period_ms =
	        c->failover_ms / 5 > HEARTBEAT_MIN_MS ? c->failover_ms / 5 : HEARTBEAT_MIN_MS;
	c->started_at = clock_wall();
	c->wake_fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	c->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->distributed)
		c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->event_fd < 0 || (c->distributed && c->wake_fd < 0)) {
		snprintf(err, errlen, "cluster: eventfd: %s", strerror(errno));
		cluster_stop(c);
		return -1;
	}
	metrics_cluster_state(c->instance, false, NULL);
	if (!c->distributed) {
		if (start_local(c, st, err, errlen) != 0) {
			cluster_stop(c);
			return -1;
		}
		*out = c;
		return 0;
	}
	log_info(CLUSTER_LOGGER, "cluster_started", LOG_STR("instance", c->instance),
	         LOG_DBL("failover_timeout_sec", (double)c->failover_ms / 1000.0),
	         LOG_DBL("heartbeat_sec", (double)c->period_ms / 1000.0));
	int rc = pthread_create(&c->thread, NULL, cluster_main, c);
	if (rc != 0) {
		snprintf(err, errlen, "cluster: cannot start its thread: %s", strerror(rc));
		cluster_stop(c);
		return -1;
	}
	c->thread_started = true;
	/* The first election is waited for (a short while): a daemon that is
	 * alone is the leader when it says scheduler_started. */
	for (int64_t until = clock_mono_ms() + FIRST_WAIT_MS;
	     !atomic_load(&c->first_done) && clock_mono_ms() < until;)
		usleep(5000);
	*out = c;
	return 0;
}

static void wake(cluster *c)
{
	uint64_t one = 1;
	if (c->wake_fd >= 0) {
		ssize_t n = write(c->wake_fd, &one, sizeof one);
		(void)n;
	}
}

void cluster_resign(cluster *c)
{
	if (c == NULL || !c->distributed)
		return;
	atomic_store(&c->resign, true);
	wake(c);
}

void cluster_stop(cluster *c)
{
	if (c == NULL)
		return;
	if (c->thread_started) {
		atomic_store(&c->stop, true);
		wake(c);
		pthread_join(c->thread, NULL);
	}
	busy_clear(c);
	if (c->event_fd >= 0)
		close(c->event_fd);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	pthread_mutex_destroy(&c->mu);
	config_unref(c->cfg);
	free(c);
}

int cluster_event_fd(const cluster *c)
{
	return c ? c->event_fd : -1;
}

cluster_event cluster_next_event(cluster *c)
{
	uint64_t v;
	ssize_t n = read(c->event_fd, &v, sizeof v);
	(void)n;
	bool leader = atomic_load(&c->leader);
	int64_t term = atomic_load(&c->term);
	if (c->loop_term != 0 && (!leader || term != c->loop_term)) {
		c->loop_term = 0;
		return CLUSTER_EV_DEMOTED;
	}
	if (leader && term != 0 && c->loop_term == 0) {
		c->loop_term = term;
		return CLUSTER_EV_PROMOTED;
	}
	return CLUSTER_EV_NONE;
}

bool cluster_promoted_at_start(const cluster *c)
{
	return c && atomic_load(&c->at_start);
}

bool cluster_is_leader(const cluster *c)
{
	return c == NULL || atomic_load(&c->leader);
}

bool cluster_may_dispatch(const cluster *c)
{
	if (c == NULL)
		return true;
	if (!c->distributed)
		return atomic_load(&c->leader);
	if (!atomic_load(&c->leader) || c->loop_term == 0 || atomic_load(&c->term) != c->loop_term)
		return false;
	return clock_mono_ms() - atomic_load(&c->hb_ok_ms) < c->failover_ms / 2;
}

const char *cluster_instance(const cluster *c)
{
	return c ? c->instance : "";
}

int cluster_leader_name(const cluster *c, char *out, size_t cap)
{
	if (cap == 0)
		return -1;
	out[0] = '\0';
	if (c == NULL)
		return -1;
	pthread_mutex_lock((pthread_mutex_t *)&c->mu);
	snprintf(out, cap, "%s", c->leader_name);
	pthread_mutex_unlock((pthread_mutex_t *)&c->mu);
	return out[0] ? 0 : -1;
}

int64_t cluster_term(const cluster *c)
{
	return c ? atomic_load(&c->term) : 0;
}

int64_t cluster_fence_term(const cluster *c)
{
	return c ? c->loop_term : 0;
}

const char *cluster_role_name(const cluster *c)
{
	return cluster_is_leader(c) ? "leader" : "standby";
}

bool cluster_is_distributed(const cluster *c)
{
	return c && c->distributed;
}

bool cluster_task_busy_elsewhere(cluster *c, const char *task)
{
	bool busy = false;
	if (c == NULL || !c->distributed)
		return false;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->nbusy && !busy; i++)
		busy = strcmp(c->busy[i], task) == 0;
	pthread_mutex_unlock(&c->mu);
	return busy;
}

double cluster_failover_timeout_sec(const cluster *c)
{
	return c ? (double)c->failover_ms / 1000.0 : 0;
}

int cluster_fence_holds(cluster *c, store *st)
{
	static const char sql[] =
	        "SELECT 1 FROM cluster_leader WHERE id = 1 AND term = ?1 AND instance = ?2";
	store_stmt *stmt;
	if (c == NULL)
		return 1;
	int rc = store_prepare(st, sql, &stmt);
	if (rc != STORE_OK)
		return rc;
	store_bind_int64(stmt, 1, c->loop_term);
	store_bind_text(stmt, 2, c->instance);
	rc = store_step(stmt);
	store_stmt_done(stmt);
	return rc < 0 ? rc : rc == STORE_ROW ? 1 : 0;
}
