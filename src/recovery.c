/*
 * recovery — see recovery.h. Invariants:
 *
 * 1. The registry of running recoveries (handle -> correlation_id) is the
 *    only shared state of the process; a slot, then the state directory's
 *    flock, then the store's recovery_locks row (recovery_lock.h) are
 *    taken before the run is prepared (with the run's correlation id
 *    already chosen) and given back in reverse order when the run ends.
 *    The store's row is renewed before every step of the sequence.
 * 2. Incidents move detected/failed -> recovering at the start and
 *    recovering -> resolved | failed at the end, in that order, so a crash
 *    in between leaves them open (recovering), never resolved
 *    (incidents_begin_recovery, incidents_end_recovery).
 * 3. The end (incidents, server status) and its recovery_finished
 *    notification are one transaction: a failed outbox insert rolls the
 *    end back (the incidents stay recovering) and the sequence returns the
 *    store error, which only the run that ends reports.
 */
#include "recovery.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "ansible.h"
#include "clock.h"
#include "control.h"
#include "log.h"
#include "incidents.h"
#include "notify_text.h"
#include "provisioner.h"
#include "recovery_lock.h"
#include "runner.h"
#include "runtime.h"
#include "services.h"
#include "ssh.h"
#include "runs.h"

#define MAX_ACTIVE    64
#define MAX_INCIDENTS 32
#define MAX_ERRORS    5

/* The first MAX_ERRORS errors of a recovery, for its notification. */
typedef struct {
	char text[MAX_ERRORS][256];
	int n;
} error_list;

static void errors_add(error_list *e, const char *service, const char *error)
{
	if (e->n < MAX_ERRORS)
		snprintf(e->text[e->n++], sizeof e->text[0], "%s: %s", service, error);
}

/* recovery_finished: info when every service was redeployed, warning
 * otherwise; succeeded N, failed M and the first MAX_ERRORS errors. */
static void note_finished(notify_note *n, const server_row *srv, const recovery_counts *c,
                          const error_list *errs, size_t incidents)
{
	bool ok = c->fail_count == 0;
	notify_note_init(n, NOTIFY_RECOVERY_FINISHED, ok ? LOG_INFO : LOG_WARNING,
	                 log_bound_str("correlation_id"));
	notify_note_title(n, "Recovery of %s %s", srv->handle,
	                  ok ? "succeeded" : "finished with failures");
	notify_note_line(n, "Succeeded %d, failed %d (of %d services).", c->success_count,
	                 c->fail_count, c->services_count);
	for (int i = 0; i < errs->n; i++)
		notify_note_line(n, "- %s", errs->text[i]);
	notify_field_str(n, "server_handle", srv->handle);
	notify_field_str(n, "ip", srv->ip);
	notify_field_int(n, "services_count", c->services_count);
	notify_field_int(n, "succeeded", c->success_count);
	notify_field_int(n, "failed", c->fail_count);
	notify_field_int(n, "incidents", (int64_t)incidents);
	cJSON *list = cJSON_CreateArray();
	for (int i = 0; list && i < errs->n; i++)
		cJSON_AddItemToArray(list, cJSON_CreateString(errs->text[i]));
	if (n->fields && list)
		cJSON_AddItemToObject(n->fields, "errors", list);
	else
		cJSON_Delete(list);
}

/* ---- the sequence ---- */

bool recovery_reprovision_configured(const config *cfg)
{
	const config_section *sec = config_section_find(cfg, "recovery");
	const char *v = sec ? config_get(sec, "reprovision") : NULL;
	bool on = false;
	return v && config_parse_bool(v, &on) == 0 && on;
}

/* The SSH test of the server, logged as ssh_connection_test. */
static bool ssh_check(const config *cfg, const server_row *srv, int cancel_fd, ssh_result *res)
{
	ssh_options o;
	char kh[4096];

	memset(res, 0, sizeof *res);
	ssh_options_default(&o);
	if (ssh_options_from_config(&o, config_section_find(cfg, "ssh"), res->message,
	                            sizeof res->message) != 0) {
		res->error = SSH_ERR_CREDENTIALS;
		return false;
	}
	if (o.known_hosts == NULL) {
		snprintf(kh, sizeof kh, "%.4000s/known_hosts", cfg->state_dir);
		o.known_hosts = kh;
	}
	o.host = srv->ip && *srv->ip ? srv->ip : srv->handle;
	o.port = srv->port;
	if (srv->ssh_user && *srv->ssh_user)
		o.user = srv->ssh_user;
	ssh_test(&o, cancel_fd, res);
	log_emit(res->success ? LOG_INFO : LOG_WARNING, "ssh", "ssh_connection_test",
	         LOG_STR("host", o.host), LOG_INT("port", o.port),
	         LOG_BOOL("success", res->success), LOG_INT("duration_ms", res->duration_ms),
	         LOG_STR("stage", ssh_stage_name(res->stage)),
	         res->success ? LOG_NULL("error") : LOG_STR("error", res->message),
	         res->success ? LOG_NULL("error_type")
	                      : LOG_STR("error_type", ssh_error_name(res->error)),
	         LOG_END);
	return res->success;
}

static cJSON *service_vars(const ansible_settings *set, const service_row *svc, char *err,
                           size_t errlen)
{
	cJSON *vars = ansible_base_vars(set, err, errlen);
	if (vars == NULL)
		return NULL;
	cJSON_AddStringToObject(vars, "service_name", svc->name);
	cJSON_AddStringToObject(vars, "service_repo", svc->git_repo ? svc->git_repo : "");
	cJSON_AddStringToObject(vars, "service_ref", svc->ref && *svc->ref ? svc->ref : "HEAD");
	cJSON_AddNumberToObject(vars, "service_port", svc->port);
	cJSON_AddStringToObject(vars, "service_start_command",
	                        svc->start_command ? svc->start_command : "");
	cJSON *env = svc->env ? cJSON_Parse(svc->env) : NULL;
	if (!cJSON_IsObject(env)) {
		cJSON_Delete(env);
		env = cJSON_CreateObject();
	}
	cJSON_AddItemToObject(vars, "service_env", env);
	return vars;
}

static bool redeploy(const config *cfg, const server_row *srv, const service_row *svc,
                     int cancel_fd, error_list *errs)
{
	ansible_settings set;
	ansible_spec spec;
	ansible_result res = {0};
	char kh[4096], err[512] = "";
	bool ok = false;

	log_info(RECOVERY_LOGGER, "service_redeployment", LOG_STR("service_name", svc->name),
	         LOG_STR("server", srv->handle), LOG_STR("status", "start"));
	ansible_settings_load(cfg, &set);
	cJSON *vars = service_vars(&set, svc, err, sizeof err);
	if (vars &&
	    ansible_spec_for_server(&spec, cfg, &set, srv, kh, sizeof kh, err, sizeof err) == 0) {
		spec.playbook = "deploy_project";
		spec.extra_vars = vars;
		spec.cancel_fd = cancel_fd;
		ok = ansible_run(&spec, &res) == 0 && ansible_result_ok(&res);
		if (!ok)
			snprintf(err, sizeof err, "%s", res.error);
	}
	cJSON_Delete(vars);
	log_emit(ok ? LOG_INFO : LOG_ERROR, RECOVERY_LOGGER, "service_redeployment",
	         LOG_STR("service_name", svc->name), LOG_STR("server", srv->handle),
	         LOG_STR("status", ok ? "success" : "failed"),
	         ok ? LOG_NULL("error") : LOG_STR("error", err),
	         ok ? LOG_NULL("error_type")
	            : LOG_STR("error_type", res.error_type[0] ? res.error_type : "deploy_failed"),
	         LOG_END);
	if (!ok)
		errors_add(errs, svc->name, err[0] ? err : "deploy failed");
	return ok;
}

/* What a recovery does about a server that failed its SSH test. */
typedef enum {
	UNREACHABLE_REPROVISION,   /* reprovision it, then redeploy */
	UNREACHABLE_HOSTKEY,       /* a host-key failure: never reprovisioned */
	UNREACHABLE_NOT_REQUESTED, /* neither --reprovision nor [recovery] reprovision */
	UNREACHABLE_UNMANAGED,     /* not ours to reprovision */
} unreachable_action;

static const char *const unreachable_reason[] = {
        [UNREACHABLE_REPROVISION] = "reprovision",
        [UNREACHABLE_HOSTKEY] = "hostkey",
        [UNREACHABLE_NOT_REQUESTED] = "not_requested",
        [UNREACHABLE_UNMANAGED] = "unmanaged",
};

static unreachable_action unreachable_decide(const ssh_result *res, bool managed, bool reprovision)
{
	if (res->error == SSH_ERR_HOSTKEY_MISMATCH || res->error == SSH_ERR_HOSTKEY_UNKNOWN)
		return UNREACHABLE_HOSTKEY;
	if (!reprovision)
		return UNREACHABLE_NOT_REQUESTED;
	return managed ? UNREACHABLE_REPROVISION : UNREACHABLE_UNMANAGED;
}

/* err: why the server is not redeployed, with the command that fixes it. */
static void unreachable_message(unreachable_action a, const server_row *srv, const ssh_result *res,
                                char *err, size_t errlen)
{
	const char *kind = ssh_error_name(res->error);
	switch (a) {
	case UNREACHABLE_HOSTKEY:
		snprintf(err, errlen,
		         "%s: %s (%s); not reprovisioned: reprovisioning cannot fix a host key. "
		         "Check the host, then trust its key with "
		         "`fleetkeeper known-hosts scan %s --accept`",
		         srv->handle, res->message, kind, srv->handle);
		return;
	case UNREACHABLE_NOT_REQUESTED:
		snprintf(err, errlen,
		         "%s does not answer over SSH (%s: %s); not reprovisioned: run "
		         "`fleetkeeper recover %s --reprovision` (or set [recovery] reprovision = "
		         "true) to reprovision it first",
		         srv->handle, kind, res->message, srv->handle);
		return;
	case UNREACHABLE_UNMANAGED:
		snprintf(err, errlen,
		         "%s does not answer over SSH (%s: %s); not reprovisioned: the server is "
		         "not managed by fleetkeeper",
		         srv->handle, kind, res->message);
		return;
	case UNREACHABLE_REPROVISION:
		break;
	}
	err[0] = '\0';
}

/* SSH first; an unreachable server is reprovisioned only when asked and
 * never after a host-key failure. true: go on redeploying; false: err and
 * out->error_type say why not. */
static bool server_ready(const config *cfg, store *st, const server_row *srv, bool managed,
                         bool reprovision, int cancel_fd, recovery_counts *out, char *err,
                         size_t errlen)
{
	provision_policy p;
	ssh_result res;
	char perr[512];

	if (ssh_check(cfg, srv, cancel_fd, &res))
		return true;
	unreachable_action a = unreachable_decide(&res, managed, reprovision);
	unreachable_message(a, srv, &res, err, errlen);
	log_warning(RECOVERY_LOGGER, "recovery_server_unreachable",
	            LOG_STR("server_handle", srv->handle),
	            LOG_STR("ssh_error_type", ssh_error_name(res.error)),
	            res.fingerprint[0] ? LOG_STR("fingerprint", res.fingerprint)
	                               : LOG_NULL("fingerprint"),
	            LOG_BOOL("reprovision", a == UNREACHABLE_REPROVISION),
	            LOG_STR("reason", unreachable_reason[a]),
	            a == UNREACHABLE_REPROVISION ? LOG_NULL("message") : LOG_STR("message", err));
	if (a == UNREACHABLE_HOSTKEY) {
		out->error_type = ssh_error_name(res.error);
		return false;
	}
	if (a != UNREACHABLE_REPROVISION) {
		out->error_type = "unreachable";
		return false;
	}
	provision_policy_default(&p);
	p.cooldown_ms = 0;
	if (provision_server(cfg, st, srv, &p, true, cancel_fd, perr, sizeof perr) ==
	    PROVISION_DONE)
		return true;
	out->error_type = "reprovision_failed";
	snprintf(err, errlen, "reprovisioning %s failed: %s", srv->handle, perr);
	return false;
}

static void lock_renew(const config *cfg, store *st, const char *handle);

/* Every service, or when the server is not ready, every service failed
 * with why (err). The store's recovery lock is renewed before each step
 * (invariant 1). */
static void redeploy_all(const config *cfg, store *st, const server_row *srv, bool managed,
                         bool reprovision, const service_list *svcs, int cancel_fd,
                         recovery_counts *out, error_list *errs, char *err, size_t errlen)
{
	lock_renew(cfg, st, srv->handle);
	bool up = server_ready(cfg, st, srv, managed, reprovision, cancel_fd, out, err, errlen);
	for (size_t i = 0; i < svcs->count; i++) {
		if (!up) {
			log_error(RECOVERY_LOGGER, "service_redeployment",
			          LOG_STR("service_name", svcs->rows[i].name),
			          LOG_STR("server", srv->handle), LOG_STR("status", "failed"),
			          LOG_ERR("not redeployed: the server is not reachable",
			                  out->error_type));
			out->fail_count++;
			continue;
		}
		lock_renew(cfg, st, srv->handle);
		if (redeploy(cfg, srv, &svcs->rows[i], cancel_fd, errs))
			out->success_count++;
		else
			out->fail_count++;
	}
	if (!up) {
		errors_add(errs, srv->handle, err);
	} else if (out->fail_count > 0) {
		out->error_type = "redeploy_failed";
		snprintf(err, errlen, "%d of %d services not redeployed", out->fail_count,
		         out->services_count);
	}
}

/* A successful recovery of a server that, as far as the store knows, was
 * never set up (pending_setup, discovered): it runs its services now, so
 * it is in use (servers_end_recovery covers error, provisioning and ready;
 * an operator's status — maintenance, reserved, force_rebuild — and
 * sync's — missing, decommissioned — are left alone). final (cap) gets
 * the status afterwards. */
static int settle_status(store *st, const server_row *srv, double now, char *final, size_t cap,
                         char *err, size_t errlen)
{
	server_row cur = {0};
	int rc = servers_get(st, srv->id, &cur, err, errlen);
	if (rc == STORE_NOTFOUND) { /* forgotten meanwhile: nothing to settle */
		snprintf(final, cap, "%s", srv->status);
		return STORE_OK;
	}
	if (rc != STORE_OK)
		return rc;
	bool unset =
	        strcmp(cur.status, "pending_setup") == 0 || strcmp(cur.status, "discovered") == 0;
	if (unset)
		rc = servers_set_status(st, srv->id, "in_use", now, err, errlen);
	snprintf(final, cap, "%s", unset ? "in_use" : cur.status);
	server_row_free(&cur);
	return rc;
}

/* The end (invariant 3): incidents, server status and recovery_finished
 * in one transaction; incident_resolved for each and
 * server_status_restored once it is committed. */
static int end_recovery(store *st, const server_row *srv, const int64_t *ids, size_t n,
                        const recovery_counts *c, const error_list *errs, char *err, size_t errlen)
{
	notify_note note;
	bool ok = c->fail_count == 0;
	double now = clock_wall();
	char status[32] = "";

	note_finished(&note, srv, c, errs, n);
	int rc = store_tx_begin(st);
	if (rc != STORE_OK) {
		notify_note_free(&note);
		return store_fail(st, rc, "end recovery", err, errlen);
	}
	rc = incidents_end_recovery(st, srv->id, ids, n, ok, c->services_count, now, &note, err,
	                            errlen);
	if (rc == STORE_OK && ok)
		rc = settle_status(st, srv, now, status, sizeof status, err, errlen);
	if (rc == STORE_OK && (rc = store_tx_commit(st)) != STORE_OK)
		store_fail(st, rc, "end recovery", err, errlen);
	if (rc != STORE_OK)
		store_tx_rollback(st);
	notify_note_free(&note);
	for (size_t i = 0; rc == STORE_OK && ok && i < n; i++)
		log_info(RECOVERY_LOGGER, "incident_resolved", LOG_INT("incident_id", ids[i]));
	if (rc == STORE_OK && ok && strcmp(status, srv->status) != 0)
		log_info(RECOVERY_LOGGER, "server_status_restored",
		         LOG_STR("server_handle", srv->handle), LOG_STR("from_status", srv->status),
		         LOG_STR("status", status));
	return rc;
}

/* No services: a no-op, said once (the incidents stay as they are: a
 * health check that passes resolves them). */
static int nothing_to_do(const char *handle, char *err, size_t errlen)
{
	snprintf(err, errlen, "no services recorded for %s; nothing to redeploy", handle);
	log_info(RECOVERY_LOGGER, "incident_recovery_skipped", LOG_STR("server_handle", handle),
	         LOG_STR("reason", "no_services"), LOG_STR("message", err));
	return RECOVERY_NOTHING;
}

int recovery_sequence(const config *cfg, store *st, const char *handle, bool reprovision,
                      int cancel_fd, recovery_counts *out, char *err, size_t errlen)
{
	server_list srv = {0};
	service_list svcs = {0};
	int64_t ids[MAX_INCIDENTS];
	size_t nids = 0;
	bool managed = true;
	int64_t started = clock_mono_ms();
	error_list errs = {.n = 0};
	char why[640] = "";

	memset(out, 0, sizeof *out);
	int rc = servers_find(st, handle, &srv, &managed, err, errlen);
	if (rc != STORE_OK)
		return rc;
	rc = services_list(st, handle, &svcs, err, errlen);
	if (rc == STORE_OK && svcs.count == 0) {
		rc = nothing_to_do(handle, err, errlen);
		goto out;
	}
	if (rc == STORE_OK)
		rc = incidents_begin_recovery(st, srv.rows[0].id, clock_wall(), ids, MAX_INCIDENTS,
		                              &nids, err, errlen);
	if (rc != STORE_OK)
		goto out;
	out->services_count = (int)svcs.count;
	log_info(RECOVERY_LOGGER, "incident_recovery_start", LOG_STR("server_handle", handle),
	         LOG_INT("services_count", out->services_count));
	redeploy_all(cfg, st, &srv.rows[0], managed,
	             reprovision || recovery_reprovision_configured(cfg), &svcs, cancel_fd, out,
	             &errs, why, sizeof why);
	log_emit(out->fail_count ? LOG_ERROR : LOG_INFO, RECOVERY_LOGGER,
	         "incident_recovery_complete", LOG_STR("server_handle", handle),
	         LOG_INT("success_count", out->success_count),
	         LOG_INT("fail_count", out->fail_count),
	         LOG_DBL("duration_sec", (double)(clock_mono_ms() - started) / 1000.0), LOG_END);
	rc = end_recovery(st, &srv.rows[0], ids, nids, out, &errs, err, errlen);
	if (rc == STORE_OK && out->fail_count) {
		snprintf(err, errlen, "%s", why);
		rc = RECOVERY_FAILED;
	}
out:
	server_list_free(&srv);
	service_list_free(&svcs);
	return rc;
}

/* ---- one recovery per server (invariant 1) ----
 * Three locks, taken in this order and given back in reverse:
 *  - within a process, a table of running recoveries;
 *  - across the processes of one instance (a `recover` run in-process
 *    while another one, or a daemon that just started, recovers the same
 *    server), an flock on state_dir/recover-<handle>.lock, which holds the
 *    running correlation id; the kernel drops it when its process dies;
 *  - across machines, the store's recovery_locks row (recovery_lock.h), a
 *    lease renewed before every step. Holding the flock, a row of this
 *    instance is known to be stale (its process died): it is taken over at
 *    once instead of waiting for its lease to run out. */

typedef struct {
	char handle[128];
	char correlation_id[RUNNER_CORRELATION_MAX];
	run_control *ctl; /* of the running recovery, NULL until it starts */
	int lock_fd;      /* the flocked file, -1 when it could not be opened */
	bool used;
} active_slot;

static pthread_mutex_t active_lock = PTHREAD_MUTEX_INITIALIZER;
static active_slot active[MAX_ACTIVE];

/* state_dir/recover-<handle>.lock, characters outside [A-Za-z0-9._-]
 * replaced (two handles may then share a lock: only over-cautious). */
static void lock_path(const config *cfg, const char *handle, char *out, size_t cap)
{
	char safe[101];
	size_t n = 0;
	for (; handle[n] && n < sizeof safe - 1; n++) {
		char ch = handle[n];
		bool keep = isalnum((unsigned char)ch) || ch == '-' || (ch == '.' && n > 0);
		safe[n] = keep ? ch : '_';
	}
	safe[n] = '\0';
	snprintf(out, cap, "%s/recover-%s.lock", cfg->state_dir, safe);
}

/* The file lock: fd >= 0 when held, -1 when another process holds it
 * (running gets its correlation id), -2 when the file cannot be opened
 * (the in-process table and the store still guard; logged). */
static int file_lock_take(const config *cfg, const char *handle, char *running, size_t cap)
{
	char path[PATH_MAX];
	lock_path(cfg, handle, path, sizeof path);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_warning(RECOVERY_LOGGER, "recovery_lock_failed", LOG_STR("path", path),
		            LOG_ERR(strerror(errno), "state_dir"));
		return -2;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return fd;
	ssize_t got = pread(fd, running, cap - 1, 0);
	running[got > 0 ? got : 0] = '\0';
	close(fd);
	return -1;
}

static void file_lock_note(int fd, const char *cid)
{
	if (fd < 0)
		return;
	if (ftruncate(fd, 0) != 0 || pwrite(fd, cid, strlen(cid), 0) < 0)
		log_warning(RECOVERY_LOGGER, "recovery_lock_failed",
		            LOG_ERR(strerror(errno), "state_dir"));
}

static const char *lock_instance(const config *cfg)
{
	return cfg->cluster_instance && *cfg->cluster_instance ? cfg->cluster_instance : "local";
}

/* The store lease of one step: a playbook run (the longest step, killed at
 * its timeout plus grace), twice (a reprovision may chain two), plus a
 * margin for the SSH test and the store. */
static double lock_lease_sec(const config *cfg)
{
	ansible_settings set;
	ansible_settings_load(cfg, &set);
	if (set.timeout_ms <= 0)
		return 24 * 3600.0;
	return 2.0 * (double)(set.timeout_ms + set.kill_grace_ms) / 1000.0 + 120.0;
}

static void lock_renew(const config *cfg, store *st, const char *handle)
{
	int rc = recovery_lock_renew(st, handle, lock_instance(cfg),
	                             clock_wall() + lock_lease_sec(cfg));
	if (rc != STORE_OK)
		log_warning(RECOVERY_LOGGER, "recovery_lock_renew_failed",
		            LOG_STR("server_handle", handle), LOG_ERR(store_errmsg(st), "store"));
}

/* Who holds a lock that was refused. */
typedef struct {
	char correlation_id[RUNNER_CORRELATION_MAX];
	char instance[128]; /* "" when it is this instance */
	char error[256];    /* set when the store could not tell */
} lock_busy;

static active_slot *slot_of(const char *handle)
{
	for (size_t i = 0; i < MAX_ACTIVE; i++)
		if (active[i].used && strcmp(active[i].handle, handle) == 0)
			return &active[i];
	return NULL;
}

/* The table slot and the flock (under active_lock): the slot, or NULL with
 * busy filled. */
static active_slot *local_take(const config *cfg, const char *handle, lock_busy *busy)
{
	active_slot *s = slot_of(handle), *free_slot = NULL;
	if (s) {
		snprintf(busy->correlation_id, sizeof busy->correlation_id, "%s",
		         s->correlation_id);
		return NULL;
	}
	for (size_t i = 0; i < MAX_ACTIVE && free_slot == NULL; i++)
		if (!active[i].used)
			free_slot = &active[i];
	if (free_slot == NULL)
		return NULL;
	int fd = file_lock_take(cfg, handle, busy->correlation_id, sizeof busy->correlation_id);
	if (fd == -1)
		return NULL;
	*free_slot = (active_slot){.used = true, .lock_fd = fd < 0 ? -1 : fd};
	snprintf(free_slot->handle, sizeof free_slot->handle, "%s", handle);
	return free_slot;
}

static void local_release(active_slot *s)
{
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	s->used = false;
}

/* Take the three locks for a recovery of handle whose correlation id is
 * cid. true when taken; otherwise busy says by whom (or, error, why the
 * store could not tell: the recovery does not run then either). */
static bool active_take(const config *cfg, store *st, const char *handle, const char *cid,
                        lock_busy *busy)
{
	recovery_lock_holder h;
	double now = clock_wall();
	memset(busy, 0, sizeof *busy);
	pthread_mutex_lock(&active_lock);
	active_slot *s = local_take(cfg, handle, busy);
	if (s == NULL) {
		pthread_mutex_unlock(&active_lock);
		return false;
	}
	int rc = recovery_lock_take(st, handle, lock_instance(cfg), cid, now,
	                            now + lock_lease_sec(cfg), s->lock_fd >= 0, &h);
	if (rc == 1) {
		snprintf(s->correlation_id, sizeof s->correlation_id, "%s", cid);
		file_lock_note(s->lock_fd, cid);
	} else {
		local_release(s);
		if (rc == 0) {
			snprintf(busy->correlation_id, sizeof busy->correlation_id, "%s",
			         h.correlation_id);
			if (strcmp(h.instance, lock_instance(cfg)) != 0)
				snprintf(busy->instance, sizeof busy->instance, "%s", h.instance);
		} else {
			snprintf(busy->error, sizeof busy->error, "the recovery lock: %s",
			         store_errmsg(st));
		}
	}
	pthread_mutex_unlock(&active_lock);
	return rc == 1;
}

/* "already recovering H (correlation_id C)[ on instance I]", or the store's
 * error. */
static void busy_message(const char *handle, const lock_busy *b, char *out, size_t cap)
{
	if (b->error[0]) {
		snprintf(out, cap, "cannot recover %.128s: %s", handle, b->error);
		return;
	}
	snprintf(out, cap, "already recovering %.128s (correlation_id %.96s)%s%.128s", handle,
	         b->correlation_id[0] ? b->correlation_id : "unknown",
	         b->instance[0] ? " on instance " : "", b->instance);
}

static void active_set_control(const char *handle, run_control *ctl)
{
	pthread_mutex_lock(&active_lock);
	active_slot *s = slot_of(handle);
	if (s)
		s->ctl = ctl;
	pthread_mutex_unlock(&active_lock);
}

void recovery_cancel_all(run_cancel_reason reason)
{
	pthread_mutex_lock(&active_lock);
	for (size_t i = 0; i < MAX_ACTIVE; i++)
		if (active[i].used && active[i].ctl)
			run_control_cancel(active[i].ctl, reason);
	pthread_mutex_unlock(&active_lock);
}

size_t recovery_active_count(void)
{
	size_t n = 0;
	pthread_mutex_lock(&active_lock);
	for (size_t i = 0; i < MAX_ACTIVE; i++)
		n += active[i].used;
	pthread_mutex_unlock(&active_lock);
	return n;
}

/* Give the locks back: the store's row first (st NULL: left to expire, or
 * to be taken over by this instance), then the flock and the slot. */
static void active_release(const config *cfg, store *st, const char *handle)
{
	if (st && recovery_lock_release(st, handle, lock_instance(cfg)) != STORE_OK)
		log_warning(RECOVERY_LOGGER, "recovery_lock_release_failed",
		            LOG_STR("server_handle", handle), LOG_ERR(store_errmsg(st), "store"));
	pthread_mutex_lock(&active_lock);
	active_slot *s = slot_of(handle);
	if (s)
		local_release(s);
	pthread_mutex_unlock(&active_lock);
}

/* ---- one recovery run ----
 * A run of the synthetic "recover" task type (tasks/recover.c), whose
 * params are the job's target. */

typedef struct {
	task_config tc;
	recovery_target target;
	run_request req;
	run_control ctl;
} recovery_job;

static recovery_job *job_new(const char *handle, bool reprovision)
{
	recovery_job *job = calloc(1, sizeof *job);
	if (job == NULL)
		return NULL;
	snprintf(job->target.handle, sizeof job->target.handle, "%s", handle);
	job->target.reprovision = reprovision;
	job->tc.name = (char *)"recover";
	job->tc.type = &task_type_recover;
	job->tc.enabled = true;
	job->tc.params = &job->target;
	job->ctl.cancel_fd = -1;
	if (run_control_init(&job->ctl) != 0) {
		free(job);
		return NULL;
	}
	return job;
}

static void job_free(recovery_job *job)
{
	run_request_release(&job->req);
	run_control_destroy(&job->ctl);
	free(job);
}

int recovery_run_local(config *cfg, const char *handle, bool reprovision, const char *trigger)
{
	runtime rt;
	char err[512], cid[RUNNER_CORRELATION_MAX];
	lock_busy busy;
	recovery_job *job = job_new(handle, reprovision);
	int rc = EXIT_FAILURE;

	if (job == NULL)
		return EXIT_FAILURE;
	if (runtime_open(&rt, cfg, false, err, sizeof err) != 0) {
		log_error("core.cli", "startup_failed", LOG_ERR(err, "state_dir"));
		job_free(job);
		return EXIT_FAILURE;
	}
	/* the id first: the lock holds it from the start */
	runner_new_correlation_id("recover", clock_wall(), cid, sizeof cid);
	if (!active_take(cfg, rt.st, handle, cid, &busy)) {
		busy_message(handle, &busy, err, sizeof err);
		fprintf(stderr, "fleetkeeper: %s\n", err);
		goto out;
	}
	run_attempt given = {.correlation_id = cid, .attempt = 1, .attempts = 1};
	if (runner_prepare_attempt(&job->req, cfg, &job->tc, trigger, &given, rt.st, err,
	                           sizeof err) == 0) {
		fprintf(stderr, "fleetkeeper: recovering %s (correlation_id %s)\n", handle,
		        job->req.correlation_id);
		run_status st = runner_execute(&job->req, rt.st, &job->ctl);
		rc = st == RUN_SUCCESS || st == RUN_SKIPPED ? EXIT_SUCCESS : EXIT_FAILURE;
		if (job->target.outcome[0])
			fprintf(stderr, "fleetkeeper: %s\n", job->target.outcome);
	} else {
		log_error("core.cli", "task_run_store_failed", LOG_ERR(err, "store"));
	}
	active_release(cfg, rt.st, handle);
out:
	runtime_close(&rt);
	job_free(job);
	return rc;
}

/* ---- through the daemon ---- */

static void *daemon_job_thread(void *arg)
{
	recovery_job *job = arg;
	store *st = NULL;
	char err[512];

	active_set_control(job->target.handle, &job->ctl);
	if (store_open(&st, job->req.cfg->db_path, err, sizeof err) == 0) {
		runner_execute(&job->req, st, &job->ctl);
	} else {
		log_error(RECOVERY_LOGGER, "recovery_store_failed", LOG_ERR(err, "store"));
	}
	active_release(job->req.cfg, st, job->target.handle);
	store_close(st);
	job_free(job);
	return NULL;
}

static char *reply_busy(const char *handle, const lock_busy *b)
{
	char msg[512];
	busy_message(handle, b, msg, sizeof msg);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddFalseToObject(r, "ok");
	cJSON_AddStringToObject(r, "error", msg);
	if (b->error[0]) {
		cJSON_AddStringToObject(r, "error_type", "store");
	} else {
		cJSON_AddStringToObject(r, "error_type", "already_recovering");
		cJSON_AddStringToObject(r, "running_correlation_id", b->correlation_id);
		if (b->instance[0])
			cJSON_AddStringToObject(r, "running_instance", b->instance);
	}
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

static char *start_thread(recovery_job *job)
{
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &attr, daemon_job_thread, job);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		return NULL;
	cJSON *r = cJSON_CreateObject();
	cJSON_AddTrueToObject(r, "ok");
	cJSON_AddStringToObject(r, "task", "recover");
	cJSON_AddStringToObject(r, "server", job->target.handle);
	cJSON_AddNumberToObject(r, "run_id", (double)job->req.run_id);
	cJSON_AddStringToObject(r, "correlation_id", job->req.correlation_id);
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return out;
}

char *recovery_control_request(config *cfg, store *st, const cJSON *request)
{
	const cJSON *server = cJSON_GetObjectItemCaseSensitive(request, "server");
	const cJSON *trig = cJSON_GetObjectItemCaseSensitive(request, "trigger");
	const cJSON *reprovision = cJSON_GetObjectItemCaseSensitive(request, "reprovision");
	const cJSON *cid = cJSON_GetObjectItemCaseSensitive(request, "correlation_id");
	char err[512], made[RUNNER_CORRELATION_MAX];
	lock_busy busy;
	server_list srv = {0};

	if (!cJSON_IsString(server) || !*server->valuestring)
		return control_error_reply("recover needs \"server\"");
	if (cid && !(cJSON_IsString(cid) && runner_correlation_id_valid(cid->valuestring)))
		return control_error_reply("\"correlation_id\": 1 to 64 of A-Z a-z 0-9 . _ : -");
	/* The caller's correlation id (the HTTP API's X-Correlation-ID, or the
	 * standby's that forwarded the request), else a new one: the lock
	 * holds it from the start. */
	if (cid == NULL)
		runner_new_correlation_id("recover", clock_wall(), made, sizeof made);
	run_attempt given = {
	        .correlation_id = cid ? cid->valuestring : made, .attempt = 1, .attempts = 1};
	if (servers_find(st, server->valuestring, &srv, NULL, err, sizeof err) != 0)
		return control_error_reply(err);
	server_list_free(&srv);
	if (!active_take(cfg, st, server->valuestring, given.correlation_id, &busy))
		return reply_busy(server->valuestring, &busy);
	recovery_job *job = job_new(server->valuestring, cJSON_IsTrue(reprovision));
	const char *trigger = cJSON_IsString(trig) ? trig->valuestring : "manual";
	if (job && runner_prepare_attempt(&job->req, cfg, &job->tc, trigger, &given, st, err,
	                                  sizeof err) == 0) {
		char *reply = start_thread(job);
		if (reply)
			return reply;
		runs_finish(st, job->req.run_id, RUN_FAILED, clock_wall(), 0, -1,
		            "could not start a thread", "resources", NULL);
	}
	active_release(cfg, st, server->valuestring);
	if (job)
		job_free(job);
	return control_error_reply("the recovery could not be started (see the daemon's log)");
}

/* ---- auto_recover ---- */

int recovery_request_auto(task_run *run, int64_t incident_id, const char *handle,
                          recovery_counts *counts, char *err, size_t errlen)
{
	char request[320];
	char *reply = NULL;

	memset(counts, 0, sizeof *counts);
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "recover");
	cJSON_AddStringToObject(req, "server", handle);
	cJSON_AddStringToObject(req, "trigger", "auto");
	cJSON_PrintPreallocated(req, request, sizeof request, false);
	cJSON_Delete(req);
	int rc = control_request(run->cfg->control_socket, request, &reply, err, errlen);
	log_info(run->logger, "incident_recovery_requested", LOG_INT("incident_id", incident_id),
	         LOG_STR("server_handle", handle), LOG_STR("reason", "auto_recover"),
	         LOG_STR("via", rc == 0 ? "daemon" : "inline"),
	         LOG_RAW("reply", rc == 0 && reply && *reply == '{' ? reply : "null"));
	free(reply);
	if (rc != CONTROL_NO_DAEMON)
		return 0; /* the daemon's run reports how it went */
	lock_busy busy;
	const char *cid = log_bound_str("correlation_id");
	if (!active_take(run->cfg, run->store, handle, cid ? cid : "", &busy)) {
		log_info(run->logger, "incident_recovery_skipped", LOG_STR("server_handle", handle),
		         LOG_STR("reason",
		                 busy.error[0] ? "lock_unavailable" : "already_recovering"),
		         LOG_STR("running_correlation_id", busy.correlation_id),
		         busy.instance[0] ? LOG_STR("running_instance", busy.instance)
		                          : LOG_NULL("running_instance"),
		         busy.error[0] ? LOG_STR("error", busy.error) : LOG_NULL("error"));
		return 0;
	}
	char why[640];
	rc = recovery_sequence(run->cfg, run->store, handle, false, run->cancel_fd, counts, why,
	                       sizeof why);
	active_release(run->cfg, run->store, handle);
	if (rc == RECOVERY_NOTHING)
		return 0; /* said by incident_recovery_skipped; the incident stays open */
	if (rc == RECOVERY_FAILED)
		snprintf(err, errlen, "recovery of %s failed: %s", handle, why);
	else
		snprintf(err, errlen, "%s", why);
	return rc;
}
