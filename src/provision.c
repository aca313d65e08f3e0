/*
 * provision — see provision.h. The claim (status -> provisioning) is one
 * guarded UPDATE in a transaction that, when the server was in
 * force_rebuild, also adds the force_rebuild_started notification; the
 * final status, the provisioning_failed incident and its notification are
 * written in one transaction. A failed outbox insert rolls the claim or
 * the final status back like any store error (notify_text.h).
 */
#include "provision.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "notify_text.h"

void provision_policy_default(provision_policy *p)
{
	*p = (provision_policy){.provisioning_timeout_ms = 30 * 60 * 1000,
	                        .cooldown_ms = 5 * 60 * 1000};
}

int provision_list_due(store *st, const provision_policy *p, double now, server_list *out,
                       char *err, size_t errlen)
{
	static const char sql[] =
	        "SELECT id, handle, ip, port, ssh_user, status FROM servers WHERE is_managed = 1"
	        " AND ((status IN ('pending_setup', 'force_rebuild') AND"
	        "  (provisioning_started_at IS NULL OR provisioning_started_at <= ?1 - ?3))"
	        " OR (status = 'provisioning' AND"
	        "  (provisioning_started_at IS NULL OR provisioning_started_at <= ?1 - ?2)))"
	        " ORDER BY handle";
	sqlite3 *db = store_db(st);
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);

	memset(out, 0, sizeof *out);
	if (rc != SQLITE_OK)
		goto fail;
	sqlite3_bind_double(q, 1, now);
	sqlite3_bind_double(q, 2, (double)p->provisioning_timeout_ms / 1000.0);
	sqlite3_bind_double(q, 3, (double)p->cooldown_ms / 1000.0);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		server_row *rows = realloc(out->rows, (out->count + 1) * sizeof *rows);
		if (rows == NULL)
			break;
		out->rows = rows;
		const unsigned char *t[5] = {sqlite3_column_text(q, 1), sqlite3_column_text(q, 2),
		                             NULL, sqlite3_column_text(q, 4),
		                             sqlite3_column_text(q, 5)};
		rows[out->count++] = (server_row){
		        .id = sqlite3_column_int64(q, 0),
		        .handle = strdup((const char *)t[0]),
		        .ip = t[1] ? strdup((const char *)t[1]) : NULL,
		        .port = sqlite3_column_type(q, 3) == SQLITE_NULL ? 22
		                                                         : sqlite3_column_int(q, 3),
		        .ssh_user = t[3] ? strdup((const char *)t[3]) : NULL,
		        .status = t[4] ? strdup((const char *)t[4]) : NULL,
		};
	}
	if (rc == SQLITE_DONE) {
		sqlite3_finalize(q);
		return 0;
	}
fail:
	snprintf(err, errlen, "%s", sqlite3_errmsg(db));
	sqlite3_finalize(q);
	server_list_free(out);
	return STORE_ERROR;
}

static int note_server(store *st, const server_row *srv, const char *kind, const char *error,
                       double now)
{
	bool failed = strcmp(kind, NOTIFY_PROVISIONING_FAILED) == 0;
	notify_note n;
	char err[256];

	notify_note_init(&n, kind, failed ? LOG_ERROR : LOG_WARNING,
	                 log_bound_str("correlation_id"));
	if (failed) {
		notify_note_title(&n, "Provisioning of %s failed", srv->handle);
		notify_note_line(&n, "The server is in error with a provisioning_failed incident.");
		notify_note_line(&n, "%s", error ? error : "unknown error");
	} else {
		notify_note_title(&n, "Forced rebuild of %s started", srv->handle);
		notify_note_line(&n, "The server is being provisioned again from scratch.");
	}
	notify_field_str(&n, "server_handle", srv->handle);
	notify_field_str(&n, "ip", srv->ip);
	if (failed)
		notify_field_str(&n, "error", error);
	int rc = notify_add(st, &n, now, NULL, err, sizeof err);
	notify_note_free(&n);
	return rc;
}

/* The claim and, for a force_rebuild server, its notification. */
static int claim_update(store *st, int64_t id, bool force, const provision_policy *p, double now,
                        bool *claimed);

static int claim(store *st, const server_row *srv, bool force, const provision_policy *p,
                 double now, bool *claimed, char *err, size_t errlen)
{
	sqlite3 *db = store_db(st);
	sqlite3_stmt *q = NULL;
	bool rebuild = false;

	*claimed = false;
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return STORE_ERROR;
	}
	if (sqlite3_prepare_v2(db, "SELECT status = 'force_rebuild' FROM servers WHERE id = ?1", -1,
	                       &q, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(q, 1, srv->id);
		rebuild = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0);
	}
	sqlite3_finalize(q);
	int rc = claim_update(st, srv->id, force, p, now, claimed);
	if (rc == 0 && *claimed && rebuild)
		rc = note_server(st, srv, NOTIFY_FORCE_REBUILD_STARTED, NULL, now);
	if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = STORE_ERROR;
	if (rc != 0) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		*claimed = false;
	}
	return rc;
}

/* status -> provisioning, unless someone else did or the cooldown holds. */
static int claim_update(store *st, int64_t id, bool force, const provision_policy *p, double now,
                        bool *claimed)
{
	static const char sql[] =
	        "UPDATE servers SET status = 'provisioning', provisioning_started_at = ?2,"
	        " provisioning_attempts = provisioning_attempts + 1, updated_at = ?2"
	        " WHERE id = ?1 AND (?3 OR status IN ('pending_setup', 'force_rebuild',"
	        " 'provisioning')) AND (status != 'provisioning' OR provisioning_started_at IS NULL"
	        " OR provisioning_started_at <= ?2 - ?4) AND (?5 OR provisioning_started_at IS NULL"
	        " OR provisioning_started_at <= ?2 - ?6)";
	sqlite3 *db = store_db(st);
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
	if (rc != SQLITE_OK)
		return STORE_ERROR;
	sqlite3_bind_int64(q, 1, id);
	sqlite3_bind_double(q, 2, now);
	sqlite3_bind_int(q, 3, force);
	sqlite3_bind_double(q, 4, (double)p->provisioning_timeout_ms / 1000.0);
	sqlite3_bind_int(q, 5, p->cooldown_ms <= 0);
	sqlite3_bind_double(q, 6, (double)p->cooldown_ms / 1000.0);
	rc = sqlite3_step(q);
	*claimed = rc == SQLITE_DONE && sqlite3_changes(db) == 1;
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : STORE_ERROR;
}

/* 0, or -1 when the transaction was rolled back (nothing changed). */
static int finish_status(store *st, const server_row *srv, bool ok, const char *error,
                         const char *cid, double now)
{
	sqlite3 *db = store_db(st);
	sqlite3_stmt *q = NULL;
	int64_t id = srv->id;
	int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
	if (rc == 0 && sqlite3_prepare_v2(db,
	                                  "UPDATE servers SET status = ?2, updated_at = ?3"
	                                  " WHERE id = ?1",
	                                  -1, &q, NULL) != SQLITE_OK)
		rc = -1;
	if (rc == 0) {
		sqlite3_bind_int64(q, 1, id);
		sqlite3_bind_text(q, 2, ok ? "ready" : "error", -1, SQLITE_STATIC);
		sqlite3_bind_double(q, 3, now);
		if (sqlite3_step(q) != SQLITE_DONE)
			rc = -1;
	}
	sqlite3_finalize(q);
	q = NULL;
	if (rc == 0 && !ok &&
	    sqlite3_prepare_v2(db,
	                       "INSERT INTO incidents(server_id, type, status, detected_at,"
	                       " correlation_id, details, updated_at) VALUES (?1,"
	                       " 'provisioning_failed', 'detected', ?2, ?3, json_object("
	                       "'error', ?4), ?2)",
	                       -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(q, 1, id);
		sqlite3_bind_double(q, 2, now);
		sqlite3_bind_text(q, 3, cid ? cid : "", -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(q, 4, error, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(q) != SQLITE_DONE)
			rc = -1;
	}
	sqlite3_finalize(q);
	if (rc == 0 && !ok && note_server(st, srv, NOTIFY_PROVISIONING_FAILED, error, now) != 0)
		rc = -1;
	if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = -1;
	if (rc != 0) {
		log_error(PROVISION_LOGGER, "provisioning_store_failed",
		          LOG_STR("server_handle", srv->handle),
		          LOG_ERR(sqlite3_errmsg(db), "store"));
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	}
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
	bool claimed = false;
	int64_t started = clock_mono_ms();

	if (claim(st, srv, is_incident_recovery, p, now, &claimed, err, errlen) != 0)
		return PROVISION_FAILED;
	if (!claimed) {
		snprintf(err, errlen, "not due (status changed or within the cooldown)");
		return PROVISION_SKIPPED;
	}
	log_info(PROVISION_LOGGER, "provisioner_trigger_received",
	         LOG_STR("server_handle", srv->handle),
	         LOG_BOOL("is_incident_recovery", is_incident_recovery));
	int rc = run_playbooks(cfg, srv, cancel_fd, err, errlen);
	double duration = (double)(clock_mono_ms() - started) / 1000.0;
	if (finish_status(st, srv, rc == 0, err, log_bound_str("correlation_id"), clock_wall()) !=
	    0) {
		if (rc == 0)
			snprintf(err, errlen, "the final status could not be stored");
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
