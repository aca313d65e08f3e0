/*
 * metrics — the process-wide metric registry (SPEC §6) and its rendering in
 * the Prometheus text exposition format (version 0.0.4).
 *
 * The hooks (metrics_run_*, metrics_event_logged, metrics_events_dropped,
 * metrics_store_*, metrics_ansible_run) may be called from any thread at
 * any time, also before anything else of this module ran: the registry is
 * a static structure guarded by one mutex (the event counters are plain
 * atomics, they are hit on every log line; the event writer's state has a
 * mutex of its own). Values
 * live as long as the process, so they survive configuration reloads.
 *
 * Rendering adds, next to the registry: the process_* metrics read from
 * /proc/self, and the store gauges (servers by status, per-server health and
 * response time, open incidents) read through the caller's store
 * connection at render time.
 */
#ifndef FK_METRICS_H
#define FK_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "store.h"
#include "runs.h"
#include "task.h"

/* A growing text buffer; on allocation failure it stays truncated and
 * failed is set. */
typedef struct {
	char *data;
	size_t len;
	size_t cap;
	int failed;
} metrics_buf;

void metrics_buf_free(metrics_buf *b);
void metrics_buf_printf(metrics_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A label value escaped per the exposition format: \ " and newline. */
void metrics_buf_label(metrics_buf *b, const char *value);

/* Task duration histogram buckets (seconds), ascending; +Inf is implied. */
extern const double metrics_duration_buckets[];
extern const size_t metrics_duration_nbuckets;

/* ---- hooks ---- */

/* A run starts: task_running +1; the task's schedule interval gauge. */
void metrics_run_started(const task_config *task);
/* A run ended (runner_execute): runs_total{status}, the duration histogram
 * (not for skipped runs), items_total for each item, last success time,
 * task_running -1. */
void metrics_run_finished(const task_run *run, run_status status, double duration_sec);
/* An overlap skip (runner_record_skip): runs_total{status="skipped"}. */
void metrics_run_skipped(const char *task);
/* The cluster's role (cluster.h): this instance, whether it leads, the
 * leader's name (NULL or "" unknown). Rendered as fleetkeeper_cluster_role
 * and fleetkeeper_cluster_leader{instance}; /healthz reads it back. */
void metrics_cluster_state(const char *instance, bool leader, const char *leader_name);
/* false when no cluster state was set (not a daemon). */
bool metrics_cluster_get(bool *leader, char *leader_name, size_t cap, char *instance, size_t icap);
void metrics_event_logged(log_level level);
/* n events that were not stored (the event queue was full, or the writer
 * gave up at stop): fleetkeeper_events_dropped_total. */
void metrics_events_dropped(uint64_t n);
/* A write to the store failed (an event batch, a run's row):
 * fleetkeeper_store_write_errors_total. */
void metrics_store_write_error(void);
/* The event writer's last outcome: ok, or failing with why (copied).
 * fleetkeeper_store_write_failing and the store check of /healthz. */
void metrics_store_writer_state(bool ok, const char *why);
/* True while the event writer's writes fail; why gets its message. */
bool metrics_store_writer_failing(char *why, size_t cap);
/* result: ok, failed, timeout, unreachable, ... (a short word). */
void metrics_ansible_run(const char *playbook, const char *result);
/* One HTTP API request (api.c): route is its template ("/api/v1/runs/{id}"),
 * never the raw path; a stream's duration is not observed. */
void metrics_api_request(const char *route, int status_code, double seconds, bool stream);

/* Dispatch latency of a scheduled fire, from its fire time (nominal time
 * plus the task's spread offset or jitter) to: its task_runs row committed
 * (ROW), or a worker starting the run (START, later when every worker is
 * busy). fleetkeeper_dispatch_latency_seconds{stage="row"|"start"}, one
 * series each for the whole daemon; negative values count as 0. */
typedef enum { METRICS_DISPATCH_ROW, METRICS_DISPATCH_START } metrics_dispatch_stage;
void metrics_dispatch_latency(metrics_dispatch_stage stage, double seconds);
/* Its buckets (seconds), ascending; +Inf is implied. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_nbuckets;

/* ---- rendering ---- */

/* The registry and process_* metrics, then the store gauges read through
 * st, then fleetkeeper_store_scrape_error: 1 when st is NULL or a query
 * failed (the store gauges are then left out altogether). */
void metrics_render(metrics_buf *out, store *st);
/* Only the store gauges. 0 or a store_error. */
int metrics_render_store(metrics_buf *out, store *st);

/* Forget every value (tests only). */
void metrics_reset(void);

#endif
