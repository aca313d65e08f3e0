/*
 * metrics — see metrics.h. The registry is a fixed set of families, each a
 * list of series keyed by up to two label values, under one mutex that is
 * held only for list walks and arithmetic (never across I/O). A series,
 * once created, lives until metrics_reset: the number of series is bounded
 * by tasks x statuses/items and playbooks x results, all chosen by the
 * configuration and the code, never by remote input.
 *
 * Rendering copies nothing out first: it formats under the mutex into the
 * caller's buffer (a few kilobytes), then reads /proc and the store with the
 * mutex released.
 */
#include "metrics.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "clock.h"
#include "incidents.h"
#include "schedule.h"
#include "runs.h"
#include "maintenance.h"
#include "servers.h"

/* ---- the text buffer ---- */

void metrics_buf_free(metrics_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

static bool buf_reserve(metrics_buf *b, size_t more)
{
	if (b->failed)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p) {
		b->failed = 1;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void metrics_buf_printf(metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void metrics_buf_label(metrics_buf *b, const char *value)
{
	for (const char *p = value ? value : ""; *p; p++) {
		if (!buf_reserve(b, 2))
			return;
		if (*p == '\\' || *p == '"') {
			b->data[b->len++] = '\\';
			b->data[b->len++] = *p;
		} else if (*p == '\n') {
			b->data[b->len++] = '\\';
			b->data[b->len++] = 'n';
		} else {
			b->data[b->len++] = *p;
		}
		b->data[b->len] = '\0';
	}
}

/* The shortest of %.15g, %.16g, %.17g that reads back as v. */
static const char *shortest(double v, char *buf, size_t cap)
{
	for (int prec = 15; prec < 17; prec++) {
		snprintf(buf, cap, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return buf;
	}
	snprintf(buf, cap, "%.17g", v);
	return buf;
}

/* A float sample value: integers without a fraction, +Inf/NaN spelled out. */
static void buf_value(metrics_buf *b, double v)
{
	char tmp[40];
	if (isnan(v))
		metrics_buf_printf(b, " NaN\n");
	else if (isinf(v))
		metrics_buf_printf(b, v > 0 ? " +Inf\n" : " -Inf\n");
	else if (v == floor(v) && fabs(v) < 1e15)
		metrics_buf_printf(b, " %.0f\n", v);
	else
		metrics_buf_printf(b, " %s\n", shortest(v, tmp, sizeof tmp));
}

/* ---- the registry ---- */

const double metrics_duration_buckets[] = {0.1, 0.5, 1,   2.5, 5,    10,  30,
                                           60,  120, 300, 600, 1800, 3600};
#define NBUCKETS (sizeof metrics_duration_buckets / sizeof metrics_duration_buckets[0])
const size_t metrics_duration_nbuckets = NBUCKETS;

typedef enum { T_COUNTER, T_GAUGE, T_HISTOGRAM } family_type;

typedef struct series {
	struct series *next;
	char *a, *b; /* label values; b NULL for one-label families */
	double value;
	uint64_t bucket[NBUCKETS]; /* histograms: not cumulative here */
	uint64_t count;
} series;

typedef struct {
	const char *name;
	const char *help;
	family_type type;
	const char *label_a, *label_b;
	series *head, *tail;
} family;

enum {
	F_RUNS,
	F_DURATION,
	F_ITEMS,
	F_LAST_SUCCESS,
	F_RUNNING,
	F_INTERVAL,
	F_ANSIBLE,
	F_API,
	F_API_DURATION,
	F_COUNT
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static family families[F_COUNT] = {
        [F_RUNS] = {"fleetkeeper_task_runs_total", "Finished task runs by final status.", T_COUNTER,
                    "task", "status", NULL, NULL},
        [F_DURATION] = {"fleetkeeper_task_duration_seconds",
                        "Duration of task runs (skipped runs excluded).", T_HISTOGRAM, "task", NULL,
                        NULL, NULL},
        [F_ITEMS] = {"fleetkeeper_task_items_total",
                     "Items processed by task runs (the item counts of <task>_complete).",
                     T_COUNTER, "task", "item", NULL, NULL},
        [F_LAST_SUCCESS] = {"fleetkeeper_task_last_success_timestamp_seconds",
                            "Unix time of the end of the last successful run.", T_GAUGE, "task",
                            NULL, NULL, NULL},
        [F_RUNNING] = {"fleetkeeper_task_running", "Runs of the task in progress.", T_GAUGE, "task",
                       NULL, NULL, NULL},
        [F_INTERVAL] = {"fleetkeeper_task_interval_seconds",
                        "Seconds between the next two fire times of the task's schedule.", T_GAUGE,
                        "task", NULL, NULL, NULL},
        [F_ANSIBLE] = {"fleetkeeper_ansible_playbook_runs_total",
                       "Ansible playbook runs by result.", T_COUNTER, "playbook", "result", NULL,
                       NULL},
        [F_API] = {"fleetkeeper_api_requests_total",
                   "Requests to the HTTP API by route and status code.", T_COUNTER, "route", "code",
                   NULL, NULL},
        [F_API_DURATION] = {"fleetkeeper_api_request_duration_seconds",
                            "Duration of HTTP API requests by route (streams excluded).",
                            T_HISTOGRAM, "route", NULL, NULL, NULL},
};

static const char *const level_names[] = {"debug", "info", "warning", "error", "critical"};
static _Atomic uint64_t events_by_level[5];
static _Atomic uint64_t events_dropped;
static _Atomic uint64_t store_write_errors;

/* The event writer's state: failing and its message, guarded by
 * writer_mu; writer_failing is also read without it (a fast check). */
static pthread_mutex_t writer_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool writer_failing;
static char writer_why[512];

static bool same(const char *x, const char *y)
{
	if (!x || !y)
		return x == y;
	return strcmp(x, y) == 0;
}

/* The series of (a, b), created if missing. Called with reg_mu held. NULL
 * only when out of memory (the observation is then lost). */
static series *series_get(family *f, const char *a, const char *b)
{
	for (series *s = f->head; s; s = s->next)
		if (same(s->a, a) && same(s->b, b))
			return s;
	series *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->a = strdup(a ? a : "");
	s->b = b ? strdup(b) : NULL;
	if (!s->a || (b && !s->b)) {
		free(s->a);
		free(s->b);
		free(s);
		return NULL;
	}
	if (f->tail)
		f->tail->next = s;
	else
		f->head = s;
	f->tail = s;
	return s;
}

static void add(int fam, const char *a, const char *b, double delta)
{
	pthread_mutex_lock(&reg_mu);
	series *s = series_get(&families[fam], a, b);
	if (s)
		s->value += delta;
	pthread_mutex_unlock(&reg_mu);
}

static void set(int fam, const char *a, const char *b, double value)
{
	pthread_mutex_lock(&reg_mu);
	series *s = series_get(&families[fam], a, b);
	if (s)
		s->value = value;
	pthread_mutex_unlock(&reg_mu);
}

static void observe(int fam, const char *a, double v)
{
	pthread_mutex_lock(&reg_mu);
	series *s = series_get(&families[fam], a, NULL);
	if (s) {
		size_t i = 0;
		while (i < NBUCKETS && v > metrics_duration_buckets[i])
			i++;
		if (i < NBUCKETS)
			s->bucket[i]++;
		s->count++;
		s->value += v;
	}
	pthread_mutex_unlock(&reg_mu);
}

/* ---- hooks ---- */

/* The gap between the next two fire times: exact for intervals, the current
 * gap for cron. 0 when the task has no schedule that fires. */
static double schedule_gap(const task_config *task)
{
	if (!task->schedule_expr || !schedule_can_fire(&task->sched))
		return 0;
	if (task->sched.kind == SCHEDULE_INTERVAL)
		return (double)task->sched.interval_ms / 1000.0;
	int64_t first = schedule_next(&task->sched, task->zone, (int64_t)clock_wall());
	int64_t second = first < 0 ? -1 : schedule_next(&task->sched, task->zone, first);
	return second < 0 ? 0 : (double)(second - first);
}

void metrics_run_started(const task_config *task)
{
	double gap = schedule_gap(task);
	add(F_RUNNING, task->name, NULL, 1);
	if (gap > 0)
		set(F_INTERVAL, task->name, NULL, gap);
}

void metrics_run_finished(const task_run *run, run_status status, double duration_sec)
{
	const char *task = run->task->name;
	add(F_RUNS, task, run_status_name(status), 1);
	if (status != RUN_SKIPPED)
		observe(F_DURATION, task, duration_sec);
	for (size_t i = 0; i < run->nitems; i++)
		add(F_ITEMS, task, run->items[i].name, (double)run->items[i].value);
	if (status == RUN_SUCCESS)
		set(F_LAST_SUCCESS, task, NULL, clock_wall());
	add(F_RUNNING, task, NULL, -1);
}

void metrics_run_skipped(const char *task)
{
	add(F_RUNS, task, "skipped", 1);
}

/* ---- the cluster's role (cluster.h) ---- */

static pthread_mutex_t cluster_mu = PTHREAD_MUTEX_INITIALIZER;
static bool cluster_set;
static bool cluster_leading;
static char cluster_self[128];
static char cluster_leader_of[128];

void metrics_cluster_state(const char *instance, bool leader, const char *leader_name)
{
	pthread_mutex_lock(&cluster_mu);
	cluster_set = true;
	cluster_leading = leader;
	snprintf(cluster_self, sizeof cluster_self, "%s", instance ? instance : "");
	snprintf(cluster_leader_of, sizeof cluster_leader_of, "%s", leader_name ? leader_name : "");
	pthread_mutex_unlock(&cluster_mu);
}

bool metrics_cluster_get(bool *leader, char *leader_name, size_t cap, char *instance, size_t icap)
{
	pthread_mutex_lock(&cluster_mu);
	bool set = cluster_set;
	*leader = cluster_leading;
	if (cap)
		snprintf(leader_name, cap, "%s", cluster_leader_of);
	if (icap)
		snprintf(instance, icap, "%s", cluster_self);
	pthread_mutex_unlock(&cluster_mu);
	return set;
}

void metrics_event_logged(log_level level)
{
	int i = level <= LOG_DEBUG     ? 0
	        : level <= LOG_INFO    ? 1
	        : level <= LOG_WARNING ? 2
	        : level <= LOG_ERROR   ? 3
	                               : 4;
	atomic_fetch_add_explicit(&events_by_level[i], 1, memory_order_relaxed);
}

void metrics_events_dropped(uint64_t n)
{
	atomic_fetch_add_explicit(&events_dropped, n, memory_order_relaxed);
}

void metrics_store_write_error(void)
{
	atomic_fetch_add_explicit(&store_write_errors, 1, memory_order_relaxed);
}

void metrics_store_writer_state(bool ok, const char *why)
{
	if (ok && !atomic_load(&writer_failing))
		return;
	pthread_mutex_lock(&writer_mu);
	snprintf(writer_why, sizeof writer_why, "%s", ok || !why ? "" : why);
	atomic_store(&writer_failing, !ok);
	pthread_mutex_unlock(&writer_mu);
}

bool metrics_store_writer_failing(char *why, size_t cap)
{
	if (!atomic_load(&writer_failing))
		return false;
	pthread_mutex_lock(&writer_mu);
	bool failing = atomic_load(&writer_failing);
	if (why && cap)
		snprintf(why, cap, "%s", writer_why);
	pthread_mutex_unlock(&writer_mu);
	return failing;
}

void metrics_ansible_run(const char *playbook, const char *result)
{
	add(F_ANSIBLE, playbook, result, 1);
}

void metrics_api_request(const char *route, int status_code, double seconds, bool stream)
{
	char code[16];
	snprintf(code, sizeof code, "%d", status_code);
	add(F_API, route, code, 1);
	if (!stream)
		observe(F_API_DURATION, route, seconds);
}

/* ---- dispatch latency ---- */

const double metrics_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,  0.5,    1,     2.5,  5,     10,   30};
#define NLATENCY (sizeof metrics_latency_buckets / sizeof metrics_latency_buckets[0])
const size_t metrics_latency_nbuckets = NLATENCY;

static const char *const dispatch_stage_names[] = {"row", "start"};
static struct {
	uint64_t bucket[NLATENCY]; /* not cumulative here */
	uint64_t count;
	double sum;
} dispatch_latency[2]; /* guarded by reg_mu */

void metrics_dispatch_latency(metrics_dispatch_stage stage, double seconds)
{
	if ((unsigned)stage > METRICS_DISPATCH_START)
		return;
	if (!(seconds > 0)) /* also NaN */
		seconds = 0;
	size_t i = 0;
	while (i < NLATENCY && seconds > metrics_latency_buckets[i])
		i++;
	pthread_mutex_lock(&reg_mu);
	if (i < NLATENCY)
		dispatch_latency[stage].bucket[i]++;
	dispatch_latency[stage].count++;
	dispatch_latency[stage].sum += seconds;
	pthread_mutex_unlock(&reg_mu);
}

void metrics_reset(void)
{
	pthread_mutex_lock(&reg_mu);
	for (int f = 0; f < F_COUNT; f++) {
		series *s = families[f].head;
		while (s) {
			series *next = s->next;
			free(s->a);
			free(s->b);
			free(s);
			s = next;
		}
		families[f].head = families[f].tail = NULL;
	}
	memset(dispatch_latency, 0, sizeof dispatch_latency);
	pthread_mutex_unlock(&reg_mu);
	for (size_t i = 0; i < 5; i++)
		atomic_store(&events_by_level[i], 0);
	atomic_store(&events_dropped, 0);
	atomic_store(&store_write_errors, 0);
	metrics_store_writer_state(true, NULL);
}

/* ---- rendering the registry ---- */

static const char *type_name(family_type t)
{
	return t == T_COUNTER ? "counter" : t == T_GAUGE ? "gauge" : "histogram";
}

static void render_header(metrics_buf *b, const char *name, const char *help, const char *type)
{
	metrics_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{la="a",lb="b"<extra>} — extra is a pre-rendered ,le="..." or "". */
static void render_sample_name(metrics_buf *b, const char *name, const family *f, const series *s,
                               const char *extra)
{
	metrics_buf_printf(b, "%s{%s=\"", name, f->label_a);
	metrics_buf_label(b, s->a);
	if (f->label_b) {
		metrics_buf_printf(b, "\",%s=\"", f->label_b);
		metrics_buf_label(b, s->b);
	}
	metrics_buf_printf(b, "\"%s}", extra);
}

static void render_histogram(metrics_buf *b, const family *f, const series *s)
{
	char name[128], le[48];
	uint64_t cumulative = 0;

	snprintf(name, sizeof name, "%s_bucket", f->name);
	for (size_t i = 0; i < NBUCKETS; i++) {
		cumulative += s->bucket[i];
		snprintf(le, sizeof le, ",le=\"%g\"", metrics_duration_buckets[i]);
		render_sample_name(b, name, f, s, le);
		buf_value(b, (double)cumulative);
	}
	render_sample_name(b, name, f, s, ",le=\"+Inf\"");
	buf_value(b, (double)s->count);
	snprintf(name, sizeof name, "%s_sum", f->name);
	render_sample_name(b, name, f, s, "");
	buf_value(b, s->value);
	snprintf(name, sizeof name, "%s_count", f->name);
	render_sample_name(b, name, f, s, "");
	buf_value(b, (double)s->count);
}

/* Both series, also before the first fire: the family is always there. */
static void render_dispatch_latency(metrics_buf *b)
{
	static const char name[] = "fleetkeeper_dispatch_latency_seconds";
	render_header(b, name,
	              "Seconds from a scheduled fire time (spread offset or jitter included) to its"
	              " task_runs row (stage row) and to a worker starting the run (stage start).",
	              "histogram");
	pthread_mutex_lock(&reg_mu);
	for (size_t st = 0; st < 2; st++) {
		const char *stage = dispatch_stage_names[st];
		uint64_t cumulative = 0;
		for (size_t i = 0; i < NLATENCY; i++) {
			cumulative += dispatch_latency[st].bucket[i];
			metrics_buf_printf(b, "%s_bucket{stage=\"%s\",le=\"%g\"} %llu\n", name,
			                   stage, metrics_latency_buckets[i],
			                   (unsigned long long)cumulative);
		}
		metrics_buf_printf(b, "%s_bucket{stage=\"%s\",le=\"+Inf\"} %llu\n", name, stage,
		                   (unsigned long long)dispatch_latency[st].count);
		metrics_buf_printf(b, "%s_sum{stage=\"%s\"}", name, stage);
		buf_value(b, dispatch_latency[st].sum);
		metrics_buf_printf(b, "%s_count{stage=\"%s\"} %llu\n", name, stage,
		                   (unsigned long long)dispatch_latency[st].count);
	}
	pthread_mutex_unlock(&reg_mu);
}

static void render_registry(metrics_buf *b)
{
	pthread_mutex_lock(&reg_mu);
	for (int i = 0; i < F_COUNT; i++) {
		const family *f = &families[i];
		render_header(b, f->name, f->help, type_name(f->type));
		for (const series *s = f->head; s; s = s->next) {
			if (f->type == T_HISTOGRAM) {
				render_histogram(b, f, s);
				continue;
			}
			render_sample_name(b, f->name, f, s, "");
			buf_value(b, s->value);
		}
	}
	pthread_mutex_unlock(&reg_mu);
	render_header(b, "fleetkeeper_events_total", "Events logged, by level.", "counter");
	for (size_t i = 0; i < 5; i++)
		metrics_buf_printf(b, "fleetkeeper_events_total{level=\"%s\"} %llu\n",
		                   level_names[i],
		                   (unsigned long long)atomic_load(&events_by_level[i]));
	render_header(b, "fleetkeeper_events_dropped_total",
	              "Events not stored: the event queue was full (events or bytes) or the"
	              " store still refused them at stop.",
	              "counter");
	metrics_buf_printf(b, "fleetkeeper_events_dropped_total %llu\n",
	                   (unsigned long long)atomic_load(&events_dropped));
	render_header(
	        b, "fleetkeeper_store_write_errors_total",
	        "Failed writes to the state store (event batches, each retry counted; run rows).",
	        "counter");
	metrics_buf_printf(b, "fleetkeeper_store_write_errors_total %llu\n",
	                   (unsigned long long)atomic_load(&store_write_errors));
	render_header(b, "fleetkeeper_store_write_failing",
	              "1 while the event writer's last write to the store failed.", "gauge");
	metrics_buf_printf(b, "fleetkeeper_store_write_failing %d\n",
	                   atomic_load(&writer_failing) ? 1 : 0);
	render_dispatch_latency(b);
}

/* ---- process_* from /proc/self ---- */

/* starttime (field 22 of /proc/self/stat, clock ticks after boot) + btime. */
static double process_start_time(void)
{
	char buf[1024];
	unsigned long long ticks = 0, btime = 0;
	FILE *f = fopen("/proc/self/stat", "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	/* after ")": field 3 (state) ... field 22 (starttime) */
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &ticks) != 1)
		return 0;
	f = fopen("/proc/stat", "r");
	if (!f)
		return 0;
	while (fgets(buf, sizeof buf, f))
		if (sscanf(buf, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	return (double)btime + (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

static long count_open_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	long n = 0;
	if (!dir)
		return -1;
	for (struct dirent *e; (e = readdir(dir)) != NULL;)
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n - 1; /* the directory's own fd */
}

static void render_gauge(metrics_buf *b, const char *name, const char *help, const char *type,
                         double v)
{
	render_header(b, name, help, type);
	metrics_buf_printf(b, "%s", name);
	buf_value(b, v);
}

static void render_process(metrics_buf *b)
{
	struct rusage ru;
	struct rlimit rl;
	unsigned long long vm_pages = 0, rss_pages = 0;
	double page = (double)sysconf(_SC_PAGESIZE);

	if (getrusage(RUSAGE_SELF, &ru) == 0)
		render_gauge(b, "process_cpu_seconds_total",
		             "Total user and system CPU time spent in seconds.", "counter",
		             (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		                     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	FILE *f = fopen("/proc/self/statm", "r");
	if (f && fscanf(f, "%llu %llu", &vm_pages, &rss_pages) == 2) {
		render_gauge(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
		             "gauge", (double)vm_pages * page);
		render_gauge(b, "process_resident_memory_bytes", "Resident memory size in bytes.",
		             "gauge", (double)rss_pages * page);
	}
	if (f)
		fclose(f);
	long fds = count_open_fds();
	if (fds >= 0)
		render_gauge(b, "process_open_fds", "Number of open file descriptors.", "gauge",
		             (double)fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		render_gauge(b, "process_max_fds", "Maximum number of open file descriptors.",
		             "gauge",
		             rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
	double start = process_start_time();
	if (start > 0)
		render_gauge(b, "process_start_time_seconds",
		             "Start time of the process since unix epoch in seconds.", "gauge",
		             start);
}

/* ---- the store gauges ---- */

static const char *const server_statuses[] = {
        "discovered", "pending_setup", "provisioning", "force_rebuild", "ready",         "in_use",
        "error",      "maintenance",   "reserved",     "missing",       "decommissioned"};
#define NSTATUSES (sizeof server_statuses / sizeof server_statuses[0])

typedef struct {
	int64_t count[NSTATUSES];
} status_counts;

static int count_status(void *ctx, const char *name, int64_t count)
{
	status_counts *c = ctx;
	for (size_t i = 0; i < NSTATUSES; i++)
		if (name && strcmp(name, server_statuses[i]) == 0)
			c->count[i] = count;
	return 0;
}

static int render_servers_by_status(metrics_buf *b, store *st)
{
	status_counts c;
	memset(&c, 0, sizeof c);
	int rc = servers_count_by_status(st, count_status, &c);
	if (rc != STORE_OK)
		return rc;
	render_header(b, "fleetkeeper_servers", "Servers in the state store, by status.", "gauge");
	for (size_t i = 0; i < NSTATUSES; i++)
		metrics_buf_printf(b, "fleetkeeper_servers{status=\"%s\"} %lld\n",
		                   server_statuses[i], (long long)c.count[i]);
	return STORE_OK;
}

/* Servers checked at least once: up = the last check succeeded. Two
 * families from one pass, so the second is buffered apart. */
typedef struct {
	metrics_buf *up;
	metrics_buf rt;
} health_out;

static int render_health_row(void *ctx, const char *handle, int consecutive_failures,
                             double response_ms)
{
	health_out *o = ctx;
	metrics_buf_printf(o->up, "fleetkeeper_server_up{server_handle=\"");
	metrics_buf_label(o->up, handle);
	metrics_buf_printf(o->up, "\"} %d\n", consecutive_failures == 0 ? 1 : 0);
	if (response_ms < 0)
		return 0;
	metrics_buf_printf(&o->rt, "fleetkeeper_server_response_time_seconds{server_handle=\"");
	metrics_buf_label(&o->rt, handle);
	metrics_buf_printf(&o->rt, "\"}");
	buf_value(&o->rt, response_ms / 1000.0);
	return 0;
}

static int render_server_health(metrics_buf *b, store *st)
{
	health_out o = {b, {0}};
	render_header(b, "fleetkeeper_server_up",
	              "1 if the last health check of the server succeeded.", "gauge");
	render_header(&o.rt, "fleetkeeper_server_response_time_seconds",
	              "Duration of the last health check of the server.", "gauge");
	int rc = servers_health_each(st, render_health_row, &o);
	if (o.rt.data)
		metrics_buf_printf(b, "%s", o.rt.data);
	metrics_buf_free(&o.rt);
	return rc;
}

int metrics_render_store(metrics_buf *out, store *st)
{
	int64_t open = 0;
	int rc = render_servers_by_status(out, st);
	if (rc == STORE_OK)
		rc = render_server_health(out, st);
	if (rc == STORE_OK)
		rc = incidents_open_count(st, &open);
	if (rc == STORE_OK)
		render_gauge(out, "fleetkeeper_incidents_open",
		             "Incidents open (detected, recovering or failed).", "gauge",
		             (double)open);
	int64_t maintenance = 0;
	if (rc == STORE_OK)
		rc = maintenance_count_active(st, &maintenance);
	if (rc == STORE_OK)
		render_gauge(out, "fleetkeeper_servers_in_maintenance",
		             "Servers in a maintenance window at their last health check.", "gauge",
		             (double)maintenance);
	return rc;
}

static void render_cluster(metrics_buf *b)
{
	bool leader;
	char self[128];
	if (!metrics_cluster_get(&leader, NULL, 0, self, sizeof self))
		return;
	render_gauge(b, "fleetkeeper_cluster_role",
	             "1 while this instance is the cluster's leader, 0 while it is a standby.",
	             "gauge", leader ? 1 : 0);
	render_header(b, "fleetkeeper_cluster_leader",
	              "1 on the leader's own instance label, 0 on a standby's (sum over the"
	              " cluster: 1).",
	              "gauge");
	metrics_buf_printf(b, "fleetkeeper_cluster_leader{instance=\"");
	metrics_buf_label(b, self);
	metrics_buf_printf(b, "\"}");
	buf_value(b, leader ? 1 : 0);
}

void metrics_render(metrics_buf *out, store *st)
{
	render_registry(out);
	render_process(out);
	render_cluster(out);
	metrics_buf part = {0};
	int rc = st ? metrics_render_store(&part, st) : STORE_ERROR;
	if (rc == STORE_OK && part.data)
		metrics_buf_printf(out, "%s", part.data);
	metrics_buf_free(&part);
	render_gauge(out, "fleetkeeper_store_scrape_error",
	             "1 if the state store could not be read for this scrape.", "gauge",
	             rc == STORE_OK ? 0 : 1);
}
