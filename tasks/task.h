/*
 * task — the one interface every task type implements (command, github_sync,
 * server_sync, health_check, ...), and the run context a task works in.
 *
 * A task type validates its own configuration keys and runs. Everything
 * around a run — the task_runs row, <task>_start / <task>_complete /
 * <task>_failed, duration, item counts, the bound log context
 * (correlation_id, task, run_id), timeouts and cancellation — is done by the
 * runner (src/runner.c), once, for every type.
 *
 * Threads: run() is called on a worker thread; it may block, but must return
 * promptly once run->cancel_fd becomes readable (timeout or shutdown).
 */
#ifndef FK_TASK_H
#define FK_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "store.h"

typedef enum {
	TASK_OK = 0,
	TASK_FAILED = 1,  /* error and error_type set with task_run_fail */
	TASK_SKIPPED = 2, /* reason set with task_run_skip */
} task_result;

#define TASK_MAX_ITEMS 16

typedef enum {
	RUN_CANCEL_NONE = 0,
	RUN_CANCEL_TIMEOUT,
	RUN_CANCEL_SHUTDOWN,
} run_cancel_reason;

typedef struct task_run {
	/* Read-only for the task. */
	const config *cfg;
	const task_config *task;
	const char *trigger; /* schedule, manual, catchup, start, cli */
	const char *correlation_id;
	int64_t run_id;
	store *store;       /* this thread's connection */
	int cancel_fd;      /* readable once cancelled; -1 if never */
	const char *logger; /* "tasks.<type>" */

	/* Outcome, set through the functions below. */
	struct {
		const char *name; /* static string */
		int64_t value;
	} items[TASK_MAX_ITEMS];
	size_t nitems;
	int exit_code; /* -1 if none */
	char error[512];
	char error_type[48];
	char skip_reason[64];
	const void *control; /* private to the runner */
} task_run;

typedef struct task_type {
	const char *name;   /* "command" */
	const char *logger; /* "tasks.command" */
	/* Item counts reported (0 when the run did not reach them), in the
	 * order the complete event lists them; NULL-terminated, may be NULL. */
	const char *const *items;
	/* Every key config_key takes, with its default, {NULL}-terminated; NULL
	 * if none. What `check-config --list-keys` prints and
	 * docs/configuration.md must document (test_config_docs.py). */
	const config_key_doc *keys;
	/* One type-specific key of [task.X]. 0, or -1 with a message. */
	int (*config_key)(void **params, const char *key, const char *value, char *err,
	                  size_t errlen);
	/* After all keys: check what is required. 0, or -1 with a message. */
	int (*config_finish)(void **params, const config_section *sec, char *err, size_t errlen);
	void (*config_free)(void *params);
	/* Optional: the type's own fields of <task>_start (e.g. servers_count),
	 * at most cap; strings must stay valid until run() is called. */
	size_t (*start_fields)(task_run *run, log_field *out, size_t cap);
	task_result (*run)(task_run *run);
} task_type;

/* The registered types; NULL if unknown. */
const task_type *task_type_find(const char *name);
/* For messages: "command, github_sync, ...". */
const char *task_type_names(void);

/* Add to (or create) an item count; name must be a static string. */
void task_run_count(task_run *run, const char *name, int64_t delta);
task_result task_run_fail(task_run *run, const char *error_type, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
task_result task_run_skip(task_run *run, const char *reason);
bool task_run_cancelled(const task_run *run);
run_cancel_reason task_run_cancel_reason(const task_run *run);

#endif
