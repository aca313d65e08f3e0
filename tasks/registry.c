/*
 * registry — the task types fleetkeeper knows, by name. Adding a task type
 * is one file in tasks/ and one line here.
 */
#include "task.h"

#include <string.h>

extern const task_type task_type_command;
extern const task_type task_type_github_sync;
extern const task_type task_type_server_sync;
extern const task_type task_type_health_check;
extern const task_type task_type_provision;

static const task_type *const registry[] = {
        &task_type_command,      &task_type_github_sync, &task_type_server_sync,
        &task_type_health_check, &task_type_provision,
};

const task_type *task_type_find(const char *name)
{
	for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
		if (strcmp(registry[i]->name, name) == 0)
			return registry[i];
	return NULL;
}

const char *task_type_names(void)
{
	return "command, github_sync, server_sync, health_check, provision";
}
