/*
 * ansible_run — see ansible_run.h. The daemon's running jobs are in one
 * list under one mutex (for the shutdown's cancel and count); a job joins
 * it before its thread starts and leaves it when the thread ends.
 */
#include "ansible_run.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ansible.h"
#include "clock.h"
#include "control.h"
#include "log.h"
#include "runs.h"
#include "servers.h"

struct ansible_job {
	task_config tc;
	ansible_spec spec;
	ansible_result res;
	server_list srv;
	cJSON *vars;
	char *playbook;
	char kh[4096];
	run_request req;
	run_control ctl;
	ansible_job *next; /* in the daemon's list of running jobs */
};

/* ---- the synthetic task ---- */

static const char *const ansible_items[] = {"ok_count",          "changed_count", "failed_count",
                                            "unreachable_count", "skipped_count", NULL};

static size_t ansible_start_fields(task_run *run, log_field *out, size_t cap)
{
	const ansible_job *job = run->task->params;
	if (cap < 2)
		return 0;
	out[0] = LOG_STR("playbook", job->spec.playbook);
	out[1] = LOG_STR("server_handle", job->spec.server_handle);
	return 2;
}

static task_result ansible_task_run(task_run *run)
{
	ansible_job *job = run->task->params;
	const ansible_result *r = &job->res;
	job->spec.correlation_id = run->correlation_id;
	job->spec.cancel_fd = run->cancel_fd;
	ansible_run(&job->spec, &job->res);
	task_run_count(run, "ok_count", r->ok);
	task_run_count(run, "changed_count", r->changed);
	task_run_count(run, "failed_count", r->failed);
	task_run_count(run, "unreachable_count", r->unreachable);
	task_run_count(run, "skipped_count", r->skipped);
	run->exit_code = r->exit_code;
	if (ansible_result_ok(r))
		return TASK_OK;
	if (r->error[0])
		return task_run_fail(run, r->error_type[0] ? r->error_type : "ansible", "%s",
		                     r->error);
	return task_run_fail(run, r->timed_out ? "timeout" : "playbook_failed",
	                     "ansible-playbook exited %d (%d failed, %d unreachable)", r->exit_code,
	                     r->failed, r->unreachable);
}

static const task_type ansible_task_type = {
        .name = "ansible",
        .logger = ANSIBLE_LOGGER,
        .items = ansible_items,
        .start_fields = ansible_start_fields,
        .run = ansible_task_run,
};

/* ---- one job ---- */

void ansible_job_free(ansible_job *job)
{
	if (job == NULL)
		return;
	run_request_release(&job->req);
	run_control_destroy(&job->ctl);
	server_list_free(&job->srv);
	cJSON_Delete(job->vars);
	free(job->playbook);
	free(job);
}

/* The spec against the server, the vars with extra over the base ones. */
static int job_build(ansible_job *job, config *cfg, store *st, const char *server,
                     const cJSON *extra, char *err, size_t errlen)
{
	ansible_settings set;
	char path[PATH_MAX];
	const cJSON *it;

	if (servers_find(st, server, &job->srv, NULL, err, errlen) != 0)
		return ANSIBLE_JOB_USAGE;
	ansible_settings_load(cfg, &set);
	char why[512];
	job->vars = ansible_base_vars(&set, why, sizeof why);
	if (job->vars == NULL ||
	    ansible_spec_for_server(&job->spec, cfg, &set, &job->srv.rows[0], job->kh,
	                            sizeof job->kh, why, sizeof why) != 0) {
		snprintf(err, errlen, "%s: %s", cfg->path, why);
		return ANSIBLE_JOB_USAGE;
	}
	cJSON_ArrayForEach(it, extra)
	{
		cJSON_DeleteItemFromObjectCaseSensitive(job->vars, it->string);
		cJSON_AddItemToObject(job->vars, it->string, cJSON_Duplicate(it, true));
	}
	job->spec.playbook = job->playbook;
	job->spec.extra_vars = job->vars;
	if (ansible_playbook_resolve(&job->spec, path, sizeof path) != 0) {
		snprintf(err, errlen, "ansible: playbook %s not found in %s", job->playbook,
		         job->spec.playbook_dir ? job->spec.playbook_dir : "playbooks");
		return ANSIBLE_JOB_USAGE;
	}
	return 0;
}

int ansible_job_create(ansible_job **out, config *cfg, store *st, const char *playbook,
                       const char *server, const cJSON *extra, const char *trigger, char *err,
                       size_t errlen)
{
	ansible_job *job = calloc(1, sizeof *job);
	*out = NULL;
	if (job == NULL || (job->playbook = strdup(playbook)) == NULL) {
		free(job);
		snprintf(err, errlen, "out of memory");
		return ANSIBLE_JOB_FAILED;
	}
	job->ctl.cancel_fd = -1;
	job->tc.name = (char *)"ansible";
	job->tc.type = &ansible_task_type;
	job->tc.enabled = true;
	job->tc.params = job;
	int rc = job_build(job, cfg, st, server, cJSON_IsObject(extra) ? extra : NULL, err, errlen);
	if (rc == 0 && run_control_init(&job->ctl) != 0) {
		snprintf(err, errlen, "cannot create an eventfd");
		rc = ANSIBLE_JOB_FAILED;
	}
	if (rc == 0)
		runner_prepare(&job->req, cfg, &job->tc, trigger, st, err, errlen);
	if (rc != 0) {
		ansible_job_free(job);
		return rc;
	}
	*out = job;
	return 0;
}

int64_t ansible_job_run_id(const ansible_job *job)
{
	return job->req.run_id;
}

const char *ansible_job_correlation_id(const ansible_job *job)
{
	return job->req.correlation_id;
}

run_status ansible_job_execute(ansible_job *job, store *st)
{
	return runner_execute(&job->req, st, &job->ctl);
}

/* ---- through the daemon ---- */

static pthread_mutex_t active_lock = PTHREAD_MUTEX_INITIALIZER;
static ansible_job *active_head;

static void active_add(ansible_job *job)
{
	pthread_mutex_lock(&active_lock);
	job->next = active_head;
	active_head = job;
	pthread_mutex_unlock(&active_lock);
}

static void active_remove(const ansible_job *job)
{
	pthread_mutex_lock(&active_lock);
	for (ansible_job **p = &active_head; *p; p = &(*p)->next) {
		if (*p == job) {
			*p = job->next;
			break;
		}
	}
	pthread_mutex_unlock(&active_lock);
}

void ansible_run_cancel_all(run_cancel_reason reason)
{
	pthread_mutex_lock(&active_lock);
	for (ansible_job *j = active_head; j; j = j->next)
		run_control_cancel(&j->ctl, reason);
	pthread_mutex_unlock(&active_lock);
}

size_t ansible_run_active_count(void)
{
	size_t n = 0;
	pthread_mutex_lock(&active_lock);
	for (const ansible_job *j = active_head; j; j = j->next)
		n++;
	pthread_mutex_unlock(&active_lock);
	return n;
}

static void *job_thread(void *arg)
{
	ansible_job *job = arg;
	store *st = NULL;
	char err[512];

	if (store_open(&st, job->req.cfg->db_path, err, sizeof err) == 0) {
		ansible_job_execute(job, st);
		store_close(st);
	} else {
		log_error(ANSIBLE_LOGGER, "task_run_store_failed", LOG_STR("task", "ansible"),
		          LOG_STR("correlation_id", job->req.correlation_id),
		          LOG_ERR(err, "store"));
	}
	active_remove(job);
	ansible_job_free(job);
	return NULL;
}

static char *usage_reply(const char *msg)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddFalseToObject(r, "ok");
	cJSON_AddStringToObject(r, "error", msg);
	cJSON_AddStringToObject(r, "error_type", "usage");
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

static char *started_reply(const ansible_job *job)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddTrueToObject(r, "ok");
	cJSON_AddStringToObject(r, "task", "ansible");
	cJSON_AddNumberToObject(r, "run_id", (double)job->req.run_id);
	cJSON_AddStringToObject(r, "correlation_id", job->req.correlation_id);
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

static bool start_thread(ansible_job *job)
{
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	active_add(job);
	int rc = pthread_create(&t, &attr, job_thread, job);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		active_remove(job);
	return rc == 0;
}

char *ansible_run_control_request(config *cfg, store *st, const cJSON *request)
{
	const cJSON *playbook = cJSON_GetObjectItemCaseSensitive(request, "playbook");
	const cJSON *server = cJSON_GetObjectItemCaseSensitive(request, "server");
	const cJSON *extra = cJSON_GetObjectItemCaseSensitive(request, "extra_vars");
	ansible_job *job = NULL;
	char err[768];

	if (!cJSON_IsString(playbook) || !*playbook->valuestring || !cJSON_IsString(server) ||
	    !*server->valuestring)
		return usage_reply("ansible needs \"playbook\" and \"server\"");
	if (extra && !cJSON_IsObject(extra))
		return usage_reply("ansible: \"extra_vars\" must be an object");
	int rc = ansible_job_create(&job, cfg, st, playbook->valuestring, server->valuestring,
	                            extra, "cli", err, sizeof err);
	if (rc == ANSIBLE_JOB_USAGE)
		return usage_reply(err);
	if (rc != 0)
		return control_error_reply(err);
	char *reply = started_reply(job);
	if (reply && start_thread(job))
		return reply;
	free(reply);
	runs_finish(st, job->req.run_id, RUN_FAILED, clock_wall(), 0, -1,
	            "could not start a thread", "resources", NULL);
	ansible_job_free(job);
	return control_error_reply("the ansible run could not be started (see the daemon's log)");
}
