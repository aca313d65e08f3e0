/*
 * ansible_run — one playbook against one known server as the run of the
 * synthetic task "ansible" (`fleetkeeper ansible`): the spec built from the
 * server record, [ssh] and the ansible settings, the base vars with the
 * caller's extra vars over them, and the run through the runner (a
 * task_runs row, ansible_start / ansible_complete | ansible_failed around
 * ansible's own events, one correlation id). The same job runs in the CLI
 * (no daemon) and in the daemon (ansible_run_control_request), so both
 * count it the same way.
 *
 * Secrets: the extra vars may hold secrets; they go only into the job (and
 * ansible.c's 0600 files and redaction), never into an event or a reply.
 *
 * Threads: a job belongs to one thread at a time; the daemon's runs each
 * get a thread of their own with its own store connection.
 * Errors: a negative ANSIBLE_JOB_* code with a message in err.
 * Ownership: a job owns a copy of everything it was given.
 */
#ifndef FK_ANSIBLE_RUN_H
#define FK_ANSIBLE_RUN_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "runner.h"
#include "store.h"

enum {
	ANSIBLE_JOB_USAGE = -2,  /* unknown server or playbook, bad vars_file: no run */
	ANSIBLE_JOB_FAILED = -1, /* out of resources: no run */
};

typedef struct ansible_job ansible_job;

/* Build the job and prepare its run (the running task_runs row). extra:
 * an object of extra vars (copied; NULL for none). 0, or a negative
 * ANSIBLE_JOB_* with err set and nothing logged. */
int ansible_job_create(ansible_job **out, config *cfg, store *st, const char *playbook,
                       const char *server, const cJSON *extra, const char *trigger, char *err,
                       size_t errlen);
int64_t ansible_job_run_id(const ansible_job *job);
const char *ansible_job_correlation_id(const ansible_job *job);
/* Run it on this thread with st (this thread's store). */
run_status ansible_job_execute(ansible_job *job, store *st);
void ansible_job_free(ansible_job *job);

/* The daemon's answer to {"cmd": "ansible", "playbook": P, "server": S[,
 * "extra_vars": {...}]}: starts the run on its own thread and replies
 * {"ok": true, "run_id", "correlation_id"}, or {"ok": false, "error",
 * "error_type": "usage"} for an unknown server or playbook. malloc'd JSON.
 * Loop thread (st is its store). */
char *ansible_run_control_request(config *cfg, store *st, const cJSON *request);

/* The daemon's shutdown: cancel the runs started by
 * ansible_run_control_request, and how many still run. Any thread. */
void ansible_run_cancel_all(run_cancel_reason reason);
size_t ansible_run_active_count(void);

#endif
