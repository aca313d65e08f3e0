/*
 * health_check — SSH into every managed server, debounce the results and
 * open or resolve server_unreachable incidents.
 *
 * One run: list the servers to check (status in `statuses`, default ready
 * and in_use, plus every server with an open server_unreachable incident so
 * that it can recover), test them all from this worker thread with the
 * multi-session poll loop of src/ssh.c (at most `concurrency` at once,
 * `auto`: as many as the descriptor limit allows, ssh_concurrency_limit;
 * each with one deadline of `check_timeout`, default [ssh] timeout), then
 * apply the results in handle order, in batches of HC_BATCH servers:
 *
 *   1. one transaction per batch: the counters and last_health_check
 *      (servers_record_check), the maintenance note, and one sample per
 *      server in its health_history row (health_history_record);
 *   2. after the commit, the batch's lines: maintenance_started/ended and
 *      server_health_check (printed as log_each_result says; stored as
 *      an event only when it says something new, see below);
 *   3. the batch's debounced transitions, each in a transaction of its
 *      own (incidents.c):
 *
 *   failures reach failure_threshold  -> incident opened (one per outage),
 *                                        status error, previous status kept,
 *                                        a server_unreachable notification,
 *                                        server_unhealthy_incident_created,
 *                                        with auto_recover the recovery hook
 *   successes reach success_threshold -> incident resolved (resolution
 *                                        recovered), previous status
 *                                        restored, a server_recovered
 *                                        notification, server_recovered
 *
 * What the store keeps per check (docs/state-store.md, "Health history"):
 * every check is a sample in health_history; a server_health_check event
 * only for a failed check while the server is not yet known failing
 * (debouncing: fewer than failure_threshold failures before it and no
 * open incident), a failed check whose stage or error_type differs from
 * the server's previous failure, and the first passed check after
 * failures. A server that stays down for a month costs one history row
 * per hour, not one event per check. Lines are written after the batch's
 * commit, so an event never names a write that was rolled back, and the
 * run never holds the write lock while the event writer waits for it.
 *
 * A failed batch (a store error) is rolled back as a whole and reported
 * once (health_check_store_failed with servers_count); the other batches
 * and the transitions go on. Its lines are still printed.
 *
 * A server with an open provisioning_failed incident is checked too and
 * counts as unhealthy already: failing checks open no second incident,
 * and passing ones resolve it (incident_resolved, the server ready).
 *
 * With auto_recover and no daemon, the recovery runs inline in this run,
 * and a recovery that fails (or cannot be stored) fails the run:
 * error_type recovery_failed (or store), after every server was checked.
 *
 * Results are applied after the poll loop, so no store write ever delays a
 * running SSH attempt past its deadline. A cancelled run (timeout,
 * shutdown) returns within one poll round; checks that did not finish are
 * not counted as failures.
 *
 * The complete event carries cpu_sec, the CPU time of this thread for the
 * run (getrusage RUSAGE_THREAD), and gate_wait_max_sec, the longest wait
 * of a server for a place in the handshake gate (ssh.h). A run that took longer than one interval
 * of its schedule logs health_check_overrun (warning).
 *
 * Keys of [task.X] (type health_check): concurrency (auto),
 * handshake_concurrency (auto: ssh_handshake_limit), failure_threshold
 * (2), success_threshold (1), auto_recover (false), statuses (ready,in_use),
 * command (true), check_timeout ([ssh] timeout), log_each_result (all).
 * `timeout` is the run's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "duration.h"
#include "health_history.h"
#include "log.h"
#include "incidents.h"
#include "maintenance.h"
#include "recovery.h"
#include "runner.h"
#include "schedule.h"
#include "servers.h"
#include "ssh.h"
#include "task.h"

#define MAX_STATUSES    12
#define MAX_CONCURRENCY 65536
/* Servers applied per store transaction: one short write-lock hold each
 * (about 500 row updates and upserts), few commits for a large fleet. */
#define HC_BATCH 500

/* log_each_result: which server_health_check lines are printed. */
typedef enum {
	LOG_EACH_ALL,      /* every check */
	LOG_EACH_FAILURES, /* failed checks, and the ones stored as events */
	LOG_EACH_CHANGES,  /* only the ones stored as events */
} log_each;

typedef struct {
	long concurrency; /* 0: auto */
	long handshakes;  /* handshake_concurrency, 0: auto */
	log_each log_each_result;
	long failure_threshold;
	long success_threshold;
	bool auto_recover;
	char *statuses[MAX_STATUSES + 1]; /* NULL-terminated, owned */
	char *command;                    /* owned, NULL: "true" */
	int64_t check_timeout_ms;         /* 0: [ssh] timeout */
} hc_params;

static const char *const health_check_items[] = {"healthy_count",          "unhealthy_count",
                                                 "incidents_created",      "servers_recovered",
                                                 "servers_in_maintenance", NULL};

static const char *const server_statuses[] = {
        "discovered", "pending_setup", "provisioning", "force_rebuild", "ready",          "in_use",
        "error",      "maintenance",   "reserved",     "missing",       "decommissioned", NULL};

static const char *const default_statuses[] = {"ready", "in_use", NULL};

static void params_defaults(hc_params *p)
{
	*p = (hc_params){.concurrency = 0, .failure_threshold = 2, .success_threshold = 1};
}

static void health_check_config_free(void *params)
{
	hc_params *p = params;
	if (p == NULL)
		return;
	for (size_t i = 0; p->statuses[i]; i++)
		free(p->statuses[i]);
	free(p->command);
	free(p);
}

static bool status_known(const char *s)
{
	for (size_t i = 0; server_statuses[i]; i++)
		if (strcmp(server_statuses[i], s) == 0)
			return true;
	return false;
}

/* "ready, in_use" into p->statuses. */
static int parse_statuses(hc_params *p, const char *value, char *err, size_t errlen)
{
	char buf[512];
	size_t n = 0;

	snprintf(buf, sizeof buf, "%s", value);
	for (size_t i = 0; p->statuses[i]; i++)
		free(p->statuses[i]);
	memset(p->statuses, 0, sizeof p->statuses);
	for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok;
	     tok = strtok_r(NULL, ", ", &save)) {
		if (!status_known(tok)) {
			snprintf(err, errlen, "unknown server status '%s'", tok);
			return -1;
		}
		if (n == MAX_STATUSES) {
			snprintf(err, errlen, "too many statuses");
			return -1;
		}
		p->statuses[n++] = strdup(tok);
	}
	if (n == 0)
		snprintf(err, errlen, "no status given");
	return n ? 0 : -1;
}

static int set_int(const char *value, long min, long max, long *out, char *err, size_t errlen)
{
	if (config_parse_int(value, min, max, out) == 0)
		return 0;
	snprintf(err, errlen, "expected an integer from %ld to %ld", min, max);
	return -1;
}

static int parse_log_each(hc_params *p, const char *value, char *err, size_t errlen)
{
	static const char *const names[] = {[LOG_EACH_ALL] = "all",
	                                    [LOG_EACH_FAILURES] = "failures",
	                                    [LOG_EACH_CHANGES] = "changes"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(value, names[i]) == 0) {
			p->log_each_result = (log_each)i;
			return 0;
		}
	snprintf(err, errlen, "expected all, changes or failures");
	return -1;
}

/* `auto` (0) or a count from 1 to MAX_CONCURRENCY. */
static int set_auto_count(const char *value, long *out, char *err, size_t errlen)
{
	if (strcmp(value, "auto") == 0) {
		*out = 0;
		return 0;
	}
	if (config_parse_int(value, 1, MAX_CONCURRENCY, out) == 0)
		return 0;
	snprintf(err, errlen, "expected auto or an integer from 1 to %d", MAX_CONCURRENCY);
	return -1;
}

static int health_check_config_key(void **params, const char *key, const char *value, char *err,
                                   size_t errlen)
{
	hc_params *p = *params;

	if (p == NULL) {
		if ((p = calloc(1, sizeof *p)) == NULL)
			return -1;
		params_defaults(p);
		*params = p;
	}
	if (strcmp(key, "concurrency") == 0)
		return set_auto_count(value, &p->concurrency, err, errlen);
	if (strcmp(key, "handshake_concurrency") == 0)
		return set_auto_count(value, &p->handshakes, err, errlen);
	if (strcmp(key, "log_each_result") == 0)
		return parse_log_each(p, value, err, errlen);
	if (strcmp(key, "failure_threshold") == 0)
		return set_int(value, 1, 1000, &p->failure_threshold, err, errlen);
	if (strcmp(key, "success_threshold") == 0)
		return set_int(value, 1, 1000, &p->success_threshold, err, errlen);
	if (strcmp(key, "auto_recover") == 0) {
		if (config_parse_bool(value, &p->auto_recover) == 0)
			return 0;
		snprintf(err, errlen, "expected true or false");
		return -1;
	}
	if (strcmp(key, "statuses") == 0)
		return parse_statuses(p, value, err, errlen);
	if (strcmp(key, "command") == 0) {
		free(p->command);
		p->command = strdup(value);
		return p->command ? 0 : -1;
	}
	if (strcmp(key, "check_timeout") == 0) {
		if (duration_parse(value, &p->check_timeout_ms, err, errlen) != 0)
			return -1;
		if (p->check_timeout_ms > 0)
			return 0;
		snprintf(err, errlen, "must be positive");
		return -1;
	}
	snprintf(err, errlen, "unknown key '%s'", key);
	return -1;
}

/* ---- one result ---- */

/* The first inline recovery that failed, for the run's error. */
typedef struct {
	size_t failed;
	char error_type[32];
	char error[512];
} recovery_failures;

/* What applying one result decided, kept until the batch's lines are
 * written and its transitions run. */
typedef struct {
	health_counters c;
	health_transition tr;
	maintenance_state m;
	bool maintenance_changed; /* m.active differs from the last check's */
	bool is_event;            /* server_health_check goes to the store */
} hc_outcome;

static void store_failed(task_run *run, const server_row *srv, const char *err)
{
	log_error(run->logger, "health_check_store_failed", LOG_STR("server_handle", srv->handle),
	          LOG_ERR(err, "store"));
}

/* The incident's details (also the notification's fields): stage,
 * error_type, failures and the SSH error message, escaped by cJSON; for a
 * host key failure also key_type, fingerprint and hint. */
static void details_json(const hc_params *p, const char *handle, const ssh_result *res, char *buf,
                         size_t cap)
{
	char hint[700];
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "stage", ssh_stage_name(res->stage));
	cJSON_AddStringToObject(d, "error_type", ssh_error_name(res->error));
	cJSON_AddNumberToObject(d, "failures", (double)p->failure_threshold);
	cJSON_AddStringToObject(d, "error", res->message);
	if (ssh_hostkey_hint(res->error, handle, hint, sizeof hint)) {
		cJSON_AddStringToObject(d, "key_type", res->key_type);
		cJSON_AddStringToObject(d, "fingerprint", res->fingerprint);
		cJSON_AddStringToObject(d, "hint", hint);
	}
	if (d == NULL || !cJSON_PrintPreallocated(d, buf, (int)cap, false))
		snprintf(buf, cap, "{\"stage\": \"%s\", \"error_type\": \"%s\", \"failures\": %ld}",
		         ssh_stage_name(res->stage), ssh_error_name(res->error),
		         p->failure_threshold);
	cJSON_Delete(d);
}

/* auto_recover: the incident's recovery, through the daemon's control
 * socket (a recover run of its own) or inline in this run without a
 * daemon; logs incident_recovery_requested. An inline recovery that fails
 * fails this run (recorded in fails). */
static void auto_recover(task_run *run, int64_t incident, const server_row *srv,
                         recovery_failures *fails)
{
	recovery_counts c;
	char err[512];
	int rc = recovery_request_auto(run, incident, srv->handle, &c, err, sizeof err);
	if (rc == 0 || fails->failed++ > 0)
		return;
	snprintf(fails->error_type, sizeof fails->error_type, "%s",
	         rc > 0                 ? "recovery_failed"
	         : rc == STORE_NOTFOUND ? "not_found"
	                                : "store");
	snprintf(fails->error, sizeof fails->error, "%s", err);
}

static void became_unhealthy(task_run *run, const hc_params *p, const server_row *srv,
                             const ssh_result *res, double now, recovery_failures *fails)
{
	char err[256], previous[32] = "", details[1024];
	int64_t incident = 0;
	bool created = false;

	details_json(p, srv->handle, res, details, sizeof details);
	if (incidents_open_unreachable(run->store, srv->id, now, run->correlation_id, details,
	                               &incident, &created, previous, sizeof previous, err,
	                               sizeof err) != 0) {
		store_failed(run, srv, err);
		return;
	}
	if (!created)
		return;
	task_run_count(run, "incidents_created", 1);
	log_warning(run->logger, "server_unhealthy_incident_created",
	            LOG_STR("server_handle", srv->handle), LOG_INT("incident_id", incident),
	            LOG_STR("previous_status", previous),
	            LOG_STR("stage", ssh_stage_name(res->stage)),
	            LOG_ERR(res->message, ssh_error_name(res->error)));
	if (p->auto_recover)
		auto_recover(run, incident, srv, fails);
}

/* Its server_unreachable and provisioning_failed incidents resolved
 * (resolution recovered), its status restored. */
static void became_healthy(task_run *run, const server_row *srv, double now)
{
	char err[256], restored[32] = "";
	int64_t ids[4];
	size_t n = 0;

	if (incidents_resolve_healthy(run->store, srv->id, now, ids, 4, &n, restored,
	                              sizeof restored, err, sizeof err) != 0) {
		store_failed(run, srv, err);
		return;
	}
	task_run_count(run, "servers_recovered", 1);
	log_info(run->logger, "server_recovered", LOG_STR("server_handle", srv->handle),
	         LOG_INT("incident_id",
	                 srv->open_incident ? srv->open_incident : srv->open_provisioning),
	         LOG_STR("status", restored));
	for (size_t i = 0; i < n; i++)
		log_info(run->logger, "incident_resolved", LOG_INT("incident_id", ids[i]),
		         LOG_STR("server_handle", srv->handle),
		         LOG_STR("incident_type", ids[i] == srv->open_provisioning
		                                          ? "provisioning_failed"
		                                          : "server_unreachable"),
		         LOG_STR("resolution", "recovered"));
}

/* The server's maintenance state now (maintenance.h): a window or a
 * [maintenance.*] rule, and whether it differs from the last check's (the
 * note is written in the batch's transaction; its start and end are said
 * after the commit). A store error counts as no maintenance. */
static int note_maintenance(task_run *run, const server_row *srv, double now, hc_outcome *o,
                            bool write)
{
	if (maintenance_state_at(run->store, run->cfg->maintenance, run->cfg->nmaintenance, srv->id,
	                         srv->handle, now, &o->m) != STORE_OK)
		memset(&o->m, 0, sizeof o->m);
	o->maintenance_changed = false;
	if (!write)
		return STORE_OK;
	return maintenance_note(run->store, srv->id, o->m.active, &o->maintenance_changed);
}

/* Is this check something the store does not know yet (an event), or one
 * more of the same failure of a server already known failing (only its
 * health_history sample)? See the top of the file. */
static bool check_is_event(task_run *run, const hc_params *p, const server_row *srv,
                           const ssh_result *res)
{
	if (res->success)
		return srv->consecutive_failures > 0;
	bool known_failing = srv->open_incident != 0 || srv->open_provisioning != 0 ||
	                     srv->consecutive_failures >= p->failure_threshold;
	if (!known_failing)
		return true;
	char stage = health_history_stage_code(ssh_stage_name(res->stage));
	char error = health_history_error_code(ssh_error_name(res->error));
	char last_stage, last_error;
	if (health_history_last_failure(run->store, srv->id, &last_stage, &last_error) != STORE_OK)
		return true;
	return stage == '?' || error == '?' || stage != last_stage || error != last_error;
}

static health_sample sample_of(const server_row *srv, const ssh_result *res, double now)
{
	return (health_sample){
	        .server_id = srv->id,
	        .at = now,
	        .healthy = res->success,
	        .stage = health_history_stage_code(ssh_stage_name(res->stage)),
	        .response_ms = res->duration_ms,
	        .error = res->success ? 0 : health_history_error_code(ssh_error_name(res->error)),
	};
}

/* Step 1 for one server, inside the batch's transaction: decide, and
 * write its counters and maintenance note. */
static int apply_result(task_run *run, const hc_params *p, const server_row *srv,
                        const ssh_result *res, double now, hc_outcome *o, bool write, char *err,
                        size_t errlen)
{
	int rc = note_maintenance(run, srv, now, o, write);
	if (rc != STORE_OK)
		return store_fail(run->store, rc, "maintenance note", err, errlen);
	/* an open provisioning_failed incident counts as unhealthy: its server
	 * is known broken (no second incident), and healthy again resolves it */
	o->c = (health_counters){srv->consecutive_failures, srv->consecutive_successes,
	                         srv->open_incident != 0 || srv->open_provisioning != 0};
	o->tr = servers_debounce(&o->c, res->success, (int)p->failure_threshold,
	                         (int)p->success_threshold);
	o->is_event = check_is_event(run, p, srv, res);
	if (!write)
		return STORE_OK;
	return servers_record_check(run->store, srv->id, now,
	                            res->success ? (double)res->duration_ms : -1.0, &o->c, err,
	                            errlen);
}

static bool printed(const hc_params *p, const ssh_result *res, const hc_outcome *o)
{
	switch (p->log_each_result) {
	case LOG_EACH_ALL:
		return true;
	case LOG_EACH_FAILURES:
		return !res->success || o->is_event;
	default:
		return o->is_event;
	}
}

/* Step 2 for one server: its maintenance lines (when the note was
 * committed) and its server_health_check line. */
static void result_lines(task_run *run, const hc_params *p, const server_row *srv,
                         const ssh_result *res, const hc_outcome *o, bool committed)
{
	if (committed && o->maintenance_changed) {
		if (o->m.active)
			log_info(run->logger, "maintenance_started",
			         LOG_STR("server_handle", srv->handle),
			         LOG_DBL("until", o->m.until), LOG_STR("source", o->m.source),
			         LOG_STR("reason", o->m.reason[0] ? o->m.reason : NULL));
		else
			log_info(run->logger, "maintenance_ended",
			         LOG_STR("server_handle", srv->handle));
	}
	if (o->m.active)
		task_run_count(run, "servers_in_maintenance", 1);
	task_run_count(run, res->success ? "healthy_count" : "unhealthy_count", 1);
	if (!printed(p, res, o))
		return;
	/* a host key failure shows the offered key and the command that fixes it */
	char hint[700];
	bool hostkey = ssh_hostkey_hint(res->error, srv->handle, hint, sizeof hint);
	log_field f[] = {
	        LOG_STR("server_handle", srv->handle),
	        LOG_STR("server_ip", srv->ip),
	        LOG_STR("status", res->success ? "healthy" : "unhealthy"),
	        LOG_INT("response_time_ms", res->duration_ms),
	        LOG_STR("stage", ssh_stage_name(res->stage)),
	        LOG_STR("error", res->success ? NULL : res->message),
	        LOG_STR("error_type", res->success ? NULL : ssh_error_name(res->error)),
	        LOG_INT("consecutive_failures", o->c.failures),
	        LOG_STR("key_type", hostkey ? res->key_type : NULL),
	        LOG_STR("fingerprint", hostkey ? res->fingerprint : NULL),
	        LOG_STR("hint", hostkey ? hint : NULL),
	};
	log_emitv_flags(res->success ? LOG_INFO : LOG_WARNING, run->logger, "server_health_check",
	                o->is_event ? 0 : LOG_NO_SINK, f, sizeof f / sizeof f[0]);
}

/* Step 3 for one server: the debounced transition, if any. */
static void apply_transition(task_run *run, const hc_params *p, const server_row *srv,
                             const ssh_result *res, const hc_outcome *o, double now,
                             recovery_failures *fails)
{
	if (o->tr == HEALTH_STEADY)
		return;
	if (o->m.active) {
		/* recorded, but no incident opens or ends in a window: the
		 * counters go on, so the first check after it decides */
		log_info(run->logger, "health_transition_held",
		         LOG_STR("server_handle", srv->handle),
		         LOG_STR("transition",
		                 o->tr == HEALTH_BECAME_UNHEALTHY ? "unhealthy" : "healthy"),
		         LOG_STR("reason", "maintenance"));
		return;
	}
	if (o->tr == HEALTH_BECAME_UNHEALTHY)
		became_unhealthy(run, p, srv, res, now, fails);
	else
		became_healthy(run, srv, now);
}

/* ---- the run ---- */

static int base_options(task_run *run, const hc_params *p, ssh_options *o, char *kh, size_t khcap)
{
	char err[256];

	ssh_options_default(o);
	if (ssh_options_from_config(o, config_section_find(run->cfg, "ssh"), err, sizeof err)) {
		task_run_fail(run, "config", "%s", err);
		return -1;
	}
	if (o->known_hosts == NULL) {
		snprintf(kh, khcap, "%s/known_hosts", run->cfg->state_dir);
		o->known_hosts = kh;
	}
	if (p->command)
		o->command = p->command;
	if (p->check_timeout_ms > 0)
		o->timeout_ms = p->check_timeout_ms;
	return 0;
}

/* concurrency = auto: as many as the descriptor limit allows; never more
 * than there are servers (what health_check_start shows). */
static size_t effective_concurrency(const hc_params *p, size_t servers)
{
	size_t n = p->concurrency > 0 ? (size_t)p->concurrency : ssh_concurrency_limit();
	if (n > servers)
		n = servers;
	return n ? n : 1;
}

/* handshake_concurrency = auto: ssh_handshake_limit(). */
static size_t effective_handshakes(const hc_params *p)
{
	return p->handshakes > 0 ? (size_t)p->handshakes : ssh_handshake_limit();
}

/* One batch of results [from, to): written in one transaction, then its
 * lines, then its transitions. */
static void apply_batch(task_run *run, const hc_params *p, const server_list *list,
                        const ssh_result *res, size_t from, size_t to, double now, hc_outcome *out,
                        health_sample *samples, recovery_failures *fails)
{
	char err[512] = "";
	size_t nsamples = 0;
	int rc = store_tx_begin(run->store);
	if (rc != STORE_OK)
		store_fail(run->store, rc, "begin", err, sizeof err);
	for (size_t i = from; i < to; i++) {
		if (res[i].error == SSH_ERR_CANCELLED)
			continue;
		int r = apply_result(run, p, &list->rows[i], &res[i], now, &out[i - from],
		                     rc == STORE_OK, err, sizeof err);
		if (r != STORE_OK && rc == STORE_OK) {
			rc = r; /* err says why; the batch is rolled back */
			store_tx_rollback(run->store);
		}
		samples[nsamples++] = sample_of(&list->rows[i], &res[i], now);
	}
	if (rc == STORE_OK && (rc = health_history_record(run->store, samples, nsamples)) != 0)
		store_fail(run->store, rc, "health history", err, sizeof err);
	if (rc == STORE_OK && (rc = store_tx_commit(run->store)) != STORE_OK)
		store_fail(run->store, rc, "commit", err, sizeof err);
	if (rc != STORE_OK) {
		store_tx_rollback(run->store);
		log_error(run->logger, "health_check_store_failed",
		          LOG_INT("servers_count", (int64_t)nsamples), LOG_ERR(err, "store"));
	}
	for (size_t i = from; i < to; i++)
		if (res[i].error != SSH_ERR_CANCELLED)
			result_lines(run, p, &list->rows[i], &res[i], &out[i - from],
			             rc == STORE_OK);
	for (size_t i = from; i < to; i++)
		if (res[i].error != SSH_ERR_CANCELLED)
			apply_transition(run, p, &list->rows[i], &res[i], &out[i - from], now,
			                 fails);
}

static task_result check_all(task_run *run, const hc_params *p, const ssh_options *base,
                             const server_list *list)
{
	ssh_options *opts = calloc(list->count, sizeof *opts);
	ssh_result *res = calloc(list->count, sizeof *res);
	hc_outcome *out = calloc(HC_BATCH, sizeof *out);
	health_sample *samples = calloc(HC_BATCH, sizeof *samples);
	task_result result = TASK_OK;
	recovery_failures fails = {0};
	size_t done = 0;

	if (opts == NULL || res == NULL || out == NULL || samples == NULL) {
		result = task_run_fail(run, "internal", "out of memory");
		goto cleanup;
	}
	for (size_t i = 0; i < list->count; i++) {
		const server_row *srv = &list->rows[i];
		opts[i] = *base;
		opts[i].host = srv->ip && *srv->ip ? srv->ip : srv->handle;
		opts[i].port = srv->port;
		if (srv->ssh_user && *srv->ssh_user)
			opts[i].user = srv->ssh_user;
	}
	int rc = ssh_run_many(opts, list->count, effective_concurrency(p, list->count),
	                      effective_handshakes(p), run->cancel_fd, res);
	double now = clock_wall();
	for (size_t from = 0; from < list->count; from += HC_BATCH) {
		size_t to = from + HC_BATCH < list->count ? from + HC_BATCH : list->count;
		apply_batch(run, p, list, res, from, to, now, out, samples, &fails);
	}
	int64_t gate_wait_max = 0;
	for (size_t i = 0; i < list->count; i++) {
		done += res[i].error != SSH_ERR_CANCELLED;
		if (res[i].gate_wait_ms > gate_wait_max)
			gate_wait_max = res[i].gate_wait_ms;
	}
	/* the longest a server that answered waited for a handshake place:
	 * how far this machine, not the fleet, held the run back */
	runner_report_dbl(run, "gate_wait_max_sec", (double)gate_wait_max / 1000.0);
	if (rc == SSH_ERR_CANCELLED)
		result = task_run_fail(run, "cancelled", "cancelled after %zu of %zu servers", done,
		                       list->count);
	else if (fails.failed == 1)
		result = task_run_fail(run, fails.error_type, "%s", fails.error);
	else if (fails.failed > 1)
		result = task_run_fail(run, fails.error_type, "%s (and %zu more recoveries failed)",
		                       fails.error, fails.failed - 1);
cleanup:
	free(opts);
	free(res);
	free(out);
	free(samples);
	return result;
}

/* ---- what the run cost ---- */

static double thread_cpu_sec(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_THREAD, &ru) != 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* One interval of the task's schedule around `started` (unix seconds):
 * an interval's period, for cron the gap from the fire at or after the
 * run's start second to the next one. 0: no schedule. */
static double schedule_interval_sec(const task_config *task, double started)
{
	if (task->schedule_expr == NULL)
		return 0;
	if (task->sched.kind == SCHEDULE_INTERVAL)
		return (double)task->sched.interval_ms / 1000.0;
	int64_t fire = schedule_next(&task->sched, task->zone, (int64_t)started - 1);
	int64_t next = fire < 0 ? -1 : schedule_next(&task->sched, task->zone, fire);
	return next > fire ? (double)(next - fire) : 0;
}

/* health_check_overrun: the run took longer than one interval, so the
 * next fire came while it still ran (and was skipped or queued, as
 * `overlap` says). */
static void report_overrun(task_run *run, const hc_params *p, double started, double duration,
                           size_t servers)
{
	double interval = schedule_interval_sec(run->task, started);
	if (interval <= 0 || duration <= interval)
		return;
	log_warning(run->logger, "health_check_overrun", LOG_DBL("duration_sec", duration),
	            LOG_DBL("interval_sec", interval), LOG_INT("servers_count", (int64_t)servers),
	            LOG_INT("concurrency", (int64_t)effective_concurrency(p, servers)),
	            LOG_STR("hint", "the run took longer than its schedule's interval: raise "
	                            "concurrency, lower check_timeout, or check less often"));
}

static task_result health_check_run(task_run *run)
{
	hc_params defaults;
	const hc_params *p = run->task->params;
	const char *const *statuses;
	ssh_options base;
	server_list list = {0};
	char kh[4096], err[256];
	double cpu0 = thread_cpu_sec(), started = clock_wall();
	int64_t started_ms = clock_mono_ms();

	params_defaults(&defaults);
	if (p == NULL)
		p = &defaults;
	statuses = p->statuses[0] ? (const char *const *)p->statuses : default_statuses;
	if (base_options(run, p, &base, kh, sizeof kh) != 0)
		return TASK_FAILED;
	if (servers_list_for_check(run->store, statuses, &list, err, sizeof err) != 0)
		return task_run_fail(run, "store", "%s", err);
	if (list.count == 0) {
		server_list_free(&list);
		return task_run_skip(run, "no_servers");
	}
	task_result r = check_all(run, p, &base, &list);
	runner_report_dbl(run, "cpu_sec", thread_cpu_sec() - cpu0);
	report_overrun(run, p, started, (double)(clock_mono_ms() - started_ms) / 1000.0,
	               list.count);
	server_list_free(&list);
	return r;
}

/* health_check_start carries the number of servers to check and the
 * settings that decide their fate: concurrency is the effective one. */
static size_t health_check_start_fields(task_run *run, log_field *out, size_t cap)
{
	hc_params defaults_storage;
	const hc_params *p = run->task->params;
	server_list list = {0};
	char err[256];
	size_t n = 0;

	if (p == NULL) {
		params_defaults(&defaults_storage);
		p = &defaults_storage;
	}
	const char *const *statuses =
	        p->statuses[0] ? (const char *const *)p->statuses : default_statuses;
	if (cap < 5 || servers_list_for_check(run->store, statuses, &list, err, sizeof err) != 0)
		return 0;
	out[n++] = LOG_INT("servers_count", list.count);
	out[n++] = LOG_INT("concurrency", effective_concurrency(p, list.count));
	out[n++] = LOG_INT("handshake_concurrency", effective_handshakes(p));
	out[n++] = LOG_INT("failure_threshold", p->failure_threshold);
	out[n++] = LOG_INT("success_threshold", p->success_threshold);
	server_list_free(&list);
	return n;
}

static const config_key_doc health_check_keys[] = {
        {"concurrency", "auto"},    {"handshake_concurrency", "auto"},
        {"failure_threshold", "2"}, {"success_threshold", "1"},
        {"auto_recover", "false"},  {"statuses", "ready, in_use"},
        {"command", "true"},        {"check_timeout", "[ssh] timeout"},
        {"log_each_result", "all"}, {NULL, NULL},
};

const task_type task_type_health_check = {
        .name = "health_check",
        .logger = "tasks.health_check",
        .items = health_check_items,
        .keys = health_check_keys,
        .config_key = health_check_config_key,
        .config_free = health_check_config_free,
        .start_fields = health_check_start_fields,
        .run = health_check_run,
};
