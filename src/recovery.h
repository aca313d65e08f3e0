/*
 * recovery — incident recovery of one server (SPEC §3, recovery):
 *
 *   no services recorded: incident_recovery_skipped (reason no_services),
 *     nothing else (no SSH test, the incidents left as they are)
 *   incident_recovery_start (server_handle, services_count)
 *   open incidents of the server: detected -> recovering
 *   SSH test; a server that does not answer is reprovisioned first only
 *     when asked (recover --reprovision, [recovery] reprovision = true) and
 *     it is managed, never after a host-key failure (hostkey_mismatch,
 *     hostkey_unknown: reprovisioning over SSH cannot fix the key);
 *     recovery_server_unreachable says which and why
 *   for each service: service_redeployment start, then success or failed
 *     (deploy_project.yml)
 *   incident_recovery_complete (server_handle, success_count, fail_count,
 *     duration_sec)
 *   all redeployed: incidents resolved (incident_resolved each), the server
 *     back to its previous status (ready / in_use, else in_use) from error,
 *     provisioning, ready, pending_setup or discovered
 *     (server_status_restored); otherwise incidents failed and the server
 *     in error.
 *
 * A recovery runs through the runner as the run of a synthetic task named
 * "recover" (a task_runs row, recover_start / recover_complete |
 * recover_failed, one correlation_id for every event). At most one
 * recovery per server runs at a time, in a process, on a machine and
 * across every daemon sharing the store (recovery_lock.h): a second
 * request is answered "already recovering" with the running
 * correlation_id (and "on instance I" when another instance holds it).
 *
 * The incidents' transitions and their SQL are incidents.c's; the server
 * lookup is servers.c's. This module holds no SQL.
 *
 * Threads: recovery_control_request on the daemon's loop thread (it starts
 * a thread of its own per recovery); the others on any thread.
 *
 * Errors: a store failure is returned (a negative store_error, err set)
 * and logged once, by whoever ends the run: the recover run's
 * recover_failed (error_type store, or not_found for an unknown server),
 * or the health_check run that recovered inline.
 */
#ifndef FK_RECOVERY_H
#define FK_RECOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "runner.h"
#include "store.h"
#include "task.h"

#define RECOVERY_LOGGER "recovery"

typedef struct {
	int services_count;
	int success_count;
	int fail_count;
	/* When not every service was redeployed: unreachable, hostkey_mismatch,
	 * hostkey_unknown, reprovision_failed or redeploy_failed (static). */
	const char *error_type;
} recovery_counts;

/* recovery_sequence's results besides a negative store_error. */
enum {
	RECOVERY_DONE = 0,    /* every service redeployed */
	RECOVERY_FAILED = 1,  /* not every one: error_type, err says why */
	RECOVERY_NOTHING = 2, /* no services recorded: nothing done, err says so */
};

/* The params of a recover run: the server to recover, whether reprovisioning
 * was asked for (--reprovision; [recovery] reprovision applies too), and
 * the run's outcome in words, written by the run for the CLI (owned by
 * the job, read after the run). */
typedef struct {
	char handle[128];
	bool reprovision;
	char outcome[704];
} recovery_target;

/* The synthetic `recover` task type (tasks/recover.c). It is not in the
 * registry (tasks/registry.c) nor in task_type_names: it cannot be
 * configured as [task.X] (its server is given per request), only started
 * by this module for one server. */
extern const task_type task_type_recover;

/* [recovery] reprovision (default false). */
bool recovery_reprovision_configured(const config *cfg);

/* The sequence in the calling thread and log context; reprovision: asked
 * for explicitly (or'ed with [recovery] reprovision). RECOVERY_DONE,
 * RECOVERY_FAILED (out->error_type and err say why), RECOVERY_NOTHING (err
 * says so), or a negative store_error when it could not run or its end
 * could not be stored (STORE_NOTFOUND: no such server), with err set and
 * nothing logged. */
int recovery_sequence(const config *cfg, store *st, const char *handle, bool reprovision,
                      int cancel_fd, recovery_counts *out, char *err, size_t errlen);

/* `recover` without a daemon: one run in this process; prints its outcome
 * on stderr. Exit status. */
int recovery_run_local(config *cfg, const char *handle, bool reprovision, const char *trigger);

/* The daemon's answer to {"cmd": "recover", "server": "H"[, "reprovision":
 * true]}: starts the recovery on its own thread and replies with run_id
 * and correlation_id, or {"ok": false, "error_type": "already_recovering",
 * "running_correlation_id": ...[, "running_instance": ...]}. A standby's
 * forwarded request (cluster_requests.h) comes here on the leader with the
 * standby's correlation_id. malloc'd JSON. */
char *recovery_control_request(config *cfg, store *st, const cJSON *request);

/* health_check's auto_recover: ask the daemon (its control socket) to
 * recover handle; without a daemon, run the sequence inline in run
 * (reprovisioning as [recovery] reprovision says). Returns 0 when the
 * daemon took the request (its run reports the outcome), when another
 * recovery of handle is running, when there are no services to redeploy,
 * or when the inline recovery redeployed everything; else
 * RECOVERY_FAILED or a negative store_error, with err set and *counts
 * filled. Logs
 * incident_recovery_requested, never the failure (the caller does). */
int recovery_request_auto(task_run *run, int64_t incident_id, const char *handle,
                          recovery_counts *counts, char *err, size_t errlen);

/* The daemon's shutdown: cancel every recovery running in this process
 * (they end as interrupted), and how many still run. Any thread. */
void recovery_cancel_all(run_cancel_reason reason);
size_t recovery_active_count(void);

#endif
