/*
 * health_check — SSH into every managed server.
 *
 * Until the SSH tester lands, this type accepts its keys, is skipped with
 * reason no_servers when no server is ready or in use, and fails with
 * error_type not_implemented otherwise.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "task.h"

static const char *const health_check_items[] = {"healthy_count", "unhealthy_count", NULL};

static int health_check_config_key(void **params, const char *key, const char *value, char *err,
				   size_t errlen)
{
	static const char *const keys[] = {"concurrency",  "failure_threshold", "success_threshold",
					   "auto_recover", "statuses",		NULL};
	(void)params;
	(void)value;
	for (const char *const *k = keys; *k; k++)
		if (strcmp(*k, key) == 0)
			return 0;
	snprintf(err, errlen, "unknown key '%s'", key);
	return -1;
}

static task_result health_check_run(task_run *run)
{
	sqlite3_stmt *stmt = NULL;
	long long servers = 0;
	if (sqlite3_prepare_v2(store_db(run->store),
			       "SELECT count(*) FROM servers WHERE status IN ('ready','in_use')", -1,
			       &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step(stmt) == SQLITE_ROW)
		servers = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	if (servers == 0)
		return task_run_skip(run, "no_servers");
	return task_run_fail(run, "not_implemented", "health_check is not implemented in this version");
}

const task_type task_type_health_check = {
	.name = "health_check",
	.logger = "tasks.health_check",
	.items = health_check_items,
	.config_key = health_check_config_key,
	.run = health_check_run,
};
