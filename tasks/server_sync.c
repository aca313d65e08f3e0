/*
 * server_sync — servers from the provider API or an Ansible inventory.
 *
 * Until the sync itself lands, this type is skipped with reason no_providers
 * when no [provider.*] section is configured, and fails with error_type
 * not_implemented otherwise.
 */
#include <string.h>

#include "task.h"

static const char *const server_sync_items[] = {"servers_discovered", "servers_updated",
                                                "servers_missing", NULL};

static task_result server_sync_run(task_run *run)
{
	for (size_t i = 0; i < run->cfg->nsections; i++)
		if (strncmp(run->cfg->sections[i].name, "provider.", 9) == 0)
			return task_run_fail(run, "not_implemented",
			                     "server_sync is not implemented in this version");
	return task_run_skip(run, "no_providers");
}

const task_type task_type_server_sync = {
        .name = "server_sync",
        .logger = "tasks.server_sync",
        .items = server_sync_items,
        .run = server_sync_run,
};
