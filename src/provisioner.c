/*
 * provisioner — see provisioner.h. The claim (status -> provisioning) is
 * one guarded UPDATE (servers.c) in a transaction that, when the server
 * was in force_rebuild, also adds the force_rebuild_started notification;
 * the final status, the provisioning_failed incident and its notification
 * (incidents.c) are written in one transaction. Any failed step, the
 * outbox insert included, rolls the claim or the final status back.
 */
#include "provisioner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "incidents.h"
#include "log.h"
#include "notify_text.h"

static double ms_to_sec(int64_t ms)
{
	return (double)ms / 1000.0;
}

void provision_policy_default(provision_policy *p)
{
	*p = (provision_policy){.provisioning_timeout_ms = 30 * 60 * 1000,
	                        .cooldown_ms = 5 * 60 * 1000};
}

int provision_list_due(store *st, const provision_policy *p, double now, server_list *out,
                       char *err, size_t errlen)
{
	return servers_list_due_provisioning(st, now, ms_to_sec(p->provisioning_timeout_ms),
	                                     ms_to_sec(p->cooldown_ms), out, err, errlen);
}

static int note_rebuild_started(store *st, const server_row *srv, double now, char *err,
                                size_t errlen)
{
	notify_note n;
	notify_note_init(&n, NOTIFY_FORCE_REBUILD_STARTED, LOG_WARNING,
	                 log_bound_str("correlation_id"));
	notify_note_title(&n, "Forced rebuild of %s started", srv->handle);
	notify_note_line(&n, "The server is being provisioned again from scratch.");
	notify_field_str(&n, "server_handle", srv->handle);
	notify_field_str(&n, "ip", srv->ip);
	int rc = notify_add(st, &n, now, NULL, err, errlen);
	notify_note_free(&n);
	return rc;
}

/* One transaction of the provisioner: its arguments and results. */
typedef struct {
	const server_row *srv;
	const provision_policy *p;
	bool force, claimed; /* claim */
	bool ok;             /* finish: the playbooks succeeded */
	const char *error, *cid;
	double now;
	char *err;
	size_t errlen;
} provision_tx;

/* The claim and, for a force_rebuild server, its notification. */
static int claim_steps(store *st, void *arg)
{
	provision_tx *t = arg;
	server_row cur;
	int rc = servers_get(st, t->srv->id, &cur, t->err, t->errlen);
	if (rc == STORE_NOTFOUND)
		return STORE_OK; /* gone: not claimed */
	if (rc != STORE_OK)
		return rc;
	bool rebuild = strcmp(cur.status, "force_rebuild") == 0;
	server_row_free(&cur);
	rc = servers_claim_provisioning(
	        st, t->srv->id, t->force, t->now, ms_to_sec(t->p->provisioning_timeout_ms),
	        ms_to_sec(t->p->cooldown_ms), &t->claimed, t->err, t->errlen);
	if (rc == STORE_OK && t->claimed && rebuild)
		rc = note_rebuild_started(st, t->srv, t->now, t->err, t->errlen);
	return rc;
}

/* ready, or error with its provisioning_failed incident and notification. */
static int finish_steps(store *st, void *arg)
{
	provision_tx *t = arg;
	int rc = servers_set_status(st, t->srv->id, t->ok ? "ready" : "error", t->now, t->err,
	                            t->errlen);
	if (rc == STORE_OK && !t->ok)
		rc = incidents_open_provisioning_failed(st, t->srv, t->error, t->cid, t->now,
		                                        t->err, t->errlen);
	return rc;
}

/* fn in one transaction: all of it or, on failure, nothing, with t->err
 * set (by fn, or here when the begin or the commit failed). */
static int run_tx(store *st, int (*fn)(store *, void *), provision_tx *t)
{
	t->err[0] = '\0';
	int rc = store_tx(st, fn, t);
	if (rc != STORE_OK && t->err[0] == '\0')
		store_fail(st, rc, "provisioning", t->err, t->errlen);
	return rc;
}

static const char *deploy_key_var(const config *cfg, char *buf, size_t cap)
{
	const config_section *ssh = config_section_find(cfg, "ssh");
	const char *pub = ssh ? config_get(ssh, "public_key_file") : NULL;
	char path[4096];
	FILE *f;

	buf[0] = '\0';
	if (pub == NULL && ssh && config_get(ssh, "key_file")) {
		snprintf(path, sizeof path, "%s.pub", config_get(ssh, "key_file"));
		pub = path;
	}
	if (pub && (f = fopen(pub, "re")) != NULL) {
		if (fgets(buf, (int)cap, f) == NULL)
			buf[0] = '\0';
		buf[strcspn(buf, "\r\n")] = '\0';
		fclose(f);
	}
	return buf;
}

/* Both playbooks, in order; 0 when both succeeded. */
static int run_playbooks(const config *cfg, const server_row *srv, int cancel_fd, char *err,
                         size_t errlen)
{
	static const char *const books[] = {"provision_access", "provision_software"};
	ansible_settings set;
	ansible_spec spec;
	ansible_result res;
	char kh[4096], key[4096];
	int rc = -1;

	ansible_settings_load(cfg, &set);
	cJSON *vars = ansible_base_vars(&set, err, errlen);
	if (vars == NULL ||
	    ansible_spec_for_server(&spec, cfg, &set, srv, kh, sizeof kh, err, errlen) != 0)
		goto out;
	if (!cJSON_HasObjectItem(vars, "deploy_public_key"))
		cJSON_AddStringToObject(vars, "deploy_public_key",
		                        deploy_key_var(cfg, key, sizeof key));
	spec.extra_vars = vars;
	spec.cancel_fd = cancel_fd;
	for (size_t i = 0; i < 2; i++) {
		spec.playbook = books[i];
		if (ansible_run(&spec, &res) != 0 || !ansible_result_ok(&res)) {
			snprintf(err, errlen, "%s: %s", books[i], res.error);
			goto out;
		}
	}
	rc = 0;
out:
	cJSON_Delete(vars);
	return rc;
}

provision_outcome provision_server(const config *cfg, store *st, const server_row *srv,
                                   const provision_policy *p, bool is_incident_recovery,
                                   int cancel_fd, char *err, size_t errlen)
{
	double now = clock_wall();
	int64_t started = clock_mono_ms();
	char store_err[512];

	provision_tx t = {.srv = srv,
	                  .p = p,
	                  .force = is_incident_recovery,
	                  .now = now,
	                  .err = err,
	                  .errlen = errlen};
	if (run_tx(st, claim_steps, &t) != 0) {
		log_error(PROVISION_LOGGER, "provisioning_store_failed",
		          LOG_STR("server_handle", srv->handle), LOG_ERR(err, "store"));
		return PROVISION_FAILED;
	}
	if (!t.claimed) {
		snprintf(err, errlen, "not due (status changed or within the cooldown)");
		return PROVISION_SKIPPED;
	}
	log_info(PROVISION_LOGGER, "provisioner_trigger_received",
	         LOG_STR("server_handle", srv->handle),
	         LOG_BOOL("is_incident_recovery", is_incident_recovery));
	int rc = run_playbooks(cfg, srv, cancel_fd, err, errlen);
	double duration = (double)(clock_mono_ms() - started) / 1000.0;
	t = (provision_tx){.srv = srv,
	                   .ok = rc == 0,
	                   .error = err,
	                   .cid = log_bound_str("correlation_id"),
	                   .now = clock_wall(),
	                   .err = store_err,
	                   .errlen = sizeof store_err};
	if (run_tx(st, finish_steps, &t) != 0) {
		log_error(PROVISION_LOGGER, "provisioning_store_failed",
		          LOG_STR("server_handle", srv->handle), LOG_ERR(store_err, "store"));
		snprintf(err, errlen, "%s", store_err);
		return PROVISION_FAILED;
	}
	if (rc == 0) {
		log_info(PROVISION_LOGGER, "provisioning_complete",
		         LOG_STR("server_handle", srv->handle), LOG_DBL("duration_sec", duration));
		return PROVISION_DONE;
	}
	log_error(PROVISION_LOGGER, "provisioning_failed", LOG_STR("server_handle", srv->handle),
	          LOG_DBL("duration_sec", duration), LOG_ERR(err, "provisioning"));
	return PROVISION_FAILED;
}
