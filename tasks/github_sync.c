/*
 * github_sync — an organization's repositories into the projects table.
 *
 * Until the sync itself lands (issue "github_sync and server_sync"), this
 * type only knows when it cannot run: without a token it is skipped with
 * reason no_credentials, as an unconfigured daemon must not fail; with one it
 * fails with error_type not_implemented so nobody mistakes it for a sync.
 */
#include "credentials.h"
#include "task.h"

static const char *const github_sync_items[] = {"repos_synced", "repos_discovered", "repos_missing",
                                                NULL};

static task_result github_sync_run(task_run *run)
{
	const config_section *gh = config_section_find(run->cfg, "github");
	if (!credentials_available(gh, "token"))
		return task_run_skip(run, "no_credentials");
	return task_run_fail(run, "not_implemented",
	                     "github_sync is not implemented in this version");
}

const task_type task_type_github_sync = {
        .name = "github_sync",
        .logger = "tasks.github_sync",
        .items = github_sync_items,
        .run = github_sync_run,
};
