/*
 * registry — the task types fleetkeeper knows, by name. Adding a task type
 * is one file in tasks/ and one line here.
 */
#include "task.h"

#include <pthread.h>
#include <stdio.h>
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
#define REGISTRY_COUNT (sizeof registry / sizeof registry[0])

const task_type *task_type_find(const char *name)
{
	for (size_t i = 0; i < REGISTRY_COUNT; i++)
		if (strcmp(registry[i]->name, name) == 0)
			return registry[i];
	return NULL;
}

static char type_names[256];
static pthread_once_t type_names_once = PTHREAD_ONCE_INIT;

/* The names joined once, from the registry itself, so the message can
 * never disagree with task_type_find. */
static void type_names_build(void)
{
	size_t len = 0;

	for (size_t i = 0; i < REGISTRY_COUNT; i++) {
		int n = snprintf(type_names + len, sizeof type_names - len, "%s%s", i ? ", " : "",
		                 registry[i]->name);
		if (n < 0 || (size_t)n >= sizeof type_names - len) {
			type_names[len] = '\0'; /* drop a cut name: a shorter list */
			break;
		}
		len += (size_t)n;
	}
}

const char *task_type_names(void)
{
	pthread_once(&type_names_once, type_names_build);
	return type_names;
}
