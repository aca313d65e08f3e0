/*
 * recover — the synthetic task type of an incident recovery: one run
 * recovers one server with recovery_sequence (src/recovery.c), which
 * starts these runs (`fleetkeeper recover`, the daemon's control socket).
 *
 * Not in the registry and not in task_type_names: the type cannot be
 * configured as [task.X] (the server is given per request, in the run's
 * params, a recovery_target), so task_type_find("recover") is NULL and a
 * [task.X] of type recover is refused like any unknown type.
 *
 * Items: success_count, fail_count. Failures: not_found (no such server),
 * store (the store failed; reported here once), unreachable (not
 * reprovisioned: not asked to, or not managed), hostkey_mismatch /
 * hostkey_unknown (never reprovisioned), reprovision_failed,
 * redeploy_failed. No services recorded: skipped, reason no_services.
 * The run's outcome in words goes to the target's outcome, which the CLI
 * prints.
 */
#include <stdio.h>

#include "recovery.h"
#include "task.h"

static const char *const recover_items[] = {"success_count", "fail_count", NULL};

static size_t recover_start_fields(task_run *run, log_field *out, size_t cap)
{
	const recovery_target *target = run->task->params;
	if (cap < 1)
		return 0;
	out[0] = LOG_STR("server_handle", target->handle);
	return 1;
}

static task_result recover_run(task_run *run)
{
	recovery_target *target = run->task->params; /* the job's own: outcome is written */
	recovery_counts c;
	char err[512];

	int rc = recovery_sequence(run->cfg, run->store, target->handle, target->reprovision,
	                           run->cancel_fd, &c, err, sizeof err);
	task_run_count(run, "success_count", c.success_count);
	task_run_count(run, "fail_count", c.fail_count);
	if (rc == RECOVERY_DONE)
		snprintf(target->outcome, sizeof target->outcome,
		         "recovered %s: %d of %d services redeployed", target->handle,
		         c.success_count, c.services_count);
	else if (rc == RECOVERY_NOTHING)
		snprintf(target->outcome, sizeof target->outcome, "%s", err);
	else
		snprintf(target->outcome, sizeof target->outcome, "recovery of %s failed: %s",
		         target->handle, err);
	if (rc < 0)
		return task_run_fail(run, rc == STORE_NOTFOUND ? "not_found" : "store", "%s", err);
	if (rc == RECOVERY_FAILED)
		return task_run_fail(run, c.error_type ? c.error_type : "redeploy_failed", "%s",
		                     err);
	if (rc == RECOVERY_NOTHING)
		return task_run_skip(run, "no_services");
	return TASK_OK;
}

const task_type task_type_recover = {
        .name = "recover",
        .logger = RECOVERY_LOGGER,
        .items = recover_items,
        .start_fields = recover_start_fields,
        .run = recover_run,
};
