/*
 * provision — the task type that provisions new servers: every managed
 * server in pending_setup or force_rebuild (outside the cooldown), and
 * every server stuck in provisioning past provisioning_timeout, goes
 * through provision_server (src/provisioner.c), one after the other.
 *
 * Keys of [task.X] (type provision): provisioning_timeout (30m), cooldown
 * (5m); and the Ansible settings read by ansible_settings_load when there
 * is no [ansible] section: playbook_dir, deploy_root, vars_file,
 * playbook_timeout, kill_grace, ansible_playbook, pipelining.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "duration.h"
#include "provisioner.h"
#include "task.h"

static const char *const provision_items[] = {"servers_due", "servers_provisioned",
                                              "servers_failed", NULL};

static int provision_config_key(void **params, const char *key, const char *value, char *err,
                                size_t errlen)
{
	provision_policy *p = *params;
	int64_t ms = 0;

	if (p == NULL) {
		if ((p = calloc(1, sizeof *p)) == NULL)
			return -1;
		provision_policy_default(p);
		*params = p;
	}
	if (strcmp(key, "provisioning_timeout") == 0 || strcmp(key, "cooldown") == 0 ||
	    strcmp(key, "playbook_timeout") == 0 || strcmp(key, "kill_grace") == 0) {
		if (duration_parse(value, &ms, err, errlen) != 0)
			return -1;
		if (strcmp(key, "provisioning_timeout") == 0)
			p->provisioning_timeout_ms = ms;
		else if (strcmp(key, "cooldown") == 0)
			p->cooldown_ms = ms;
		return 0;
	}
	if (strcmp(key, "pipelining") == 0) {
		bool on;
		if (config_parse_bool(value, &on) == 0)
			return 0; /* read by ansible_settings_load */
		snprintf(err, errlen, "pipelining: expected true or false, got '%.64s'", value);
		return -1;
	}
	if (strcmp(key, "playbook_dir") == 0 || strcmp(key, "deploy_root") == 0 ||
	    strcmp(key, "vars_file") == 0 || strcmp(key, "ansible_playbook") == 0)
		return 0; /* read by ansible_settings_load */
	snprintf(err, errlen, "unknown key '%s'", key);
	return -1;
}

static void provision_config_free(void *params)
{
	free(params);
}

static task_result provision_run(task_run *run)
{
	provision_policy defaults;
	const provision_policy *p = run->task->params;
	server_list list = {0};
	char err[512];

	if (p == NULL) {
		provision_policy_default(&defaults);
		p = &defaults;
	}
	if (provision_list_due(run->store, p, clock_wall(), &list, err, sizeof err) != 0)
		return task_run_fail(run, "store", "%s", err);
	if (list.count == 0) {
		server_list_free(&list);
		return task_run_skip(run, "no_servers");
	}
	task_run_count(run, "servers_due", (int64_t)list.count);
	for (size_t i = 0; i < list.count && !task_run_cancelled(run); i++) {
		provision_outcome o = provision_server(run->cfg, run->store, &list.rows[i], p,
		                                       false, run->cancel_fd, err, sizeof err);
		if (o == PROVISION_DONE)
			task_run_count(run, "servers_provisioned", 1);
		else if (o == PROVISION_FAILED)
			task_run_count(run, "servers_failed", 1);
	}
	server_list_free(&list);
	if (task_run_cancelled(run))
		return task_run_fail(run, "cancelled", "cancelled");
	for (size_t i = 0; i < run->nitems; i++)
		if (strcmp(run->items[i].name, "servers_failed") == 0 && run->items[i].value > 0)
			return task_run_fail(run, "provisioning_failed", "%lld servers failed",
			                     (long long)run->items[i].value);
	return TASK_OK;
}

/* The Ansible keys count only without an [ansible] section; their
 * defaults are [ansible]'s. */
static const config_key_doc provision_keys[] = {
        {"provisioning_timeout", "30m"},
        {"cooldown", "5m"},
        {"playbook_dir", "playbooks"},
        {"deploy_root", "/srv/fleetkeeper"},
        {"vars_file", "none"},
        {"playbook_timeout", "30m"},
        {"kill_grace", "5s"},
        {"ansible_playbook", "ansible-playbook"},
        {"pipelining", "false"},
        {NULL, NULL},
};

const task_type task_type_provision = {
        .name = "provision",
        .logger = "tasks.provision",
        .items = provision_items,
        .keys = provision_keys,
        .config_key = provision_config_key,
        .config_free = provision_config_free,
        .run = provision_run,
};
