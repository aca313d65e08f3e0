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
 * store (the store failed; reported here once), redeploy_failed.
 */
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
	const recovery_target *target = run->task->params;
	recovery_counts c;
	char err[512];

	int rc = recovery_sequence(run->cfg, run->store, target->handle, run->cancel_fd, &c, err,
	                           sizeof err);
	task_run_count(run, "success_count", c.success_count);
	task_run_count(run, "fail_count", c.fail_count);
	if (rc < 0)
		return task_run_fail(run, rc == STORE_NOTFOUND ? "not_found" : "store", "%s", err);
	if (rc > 0)
		return task_run_fail(run, "redeploy_failed", "%d of %d services not redeployed",
		                     c.fail_count, c.services_count);
	return TASK_OK;
}

const task_type task_type_recover = {
        .name = "recover",
        .logger = RECOVERY_LOGGER,
        .items = recover_items,
        .start_fields = recover_start_fields,
        .run = recover_run,
};
