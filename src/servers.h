/*
 * servers — the servers table (store.c, docs/state-store.md): the lookups
 * by handle and by id, the servers to health-check and their counters, the
 * servers due for provisioning and their claim, and the server's side of
 * an incident's transitions (incidents.c decides and writes the incident;
 * the status change here runs in its transaction).
 *
 * Threads: any thread, with its own store handle.
 *
 * Errors: 0 or a negative store_error; functions with err copy "<what>:
 * <store message>" into it; servers_count_by_status leaves the message in
 * store_errmsg(). Nothing is logged here. The status changes never begin
 * or commit: they are steps of the caller's transaction.
 *
 * Ownership: rows coming back through *out belong to the caller
 * (server_row_free, server_list_free).
 */
#ifndef FK_SERVERS_H
#define FK_SERVERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct {
	int64_t id;
	char *handle;
	char *ip;       /* NULL if unknown */
	int port;       /* 22 if unset */
	char *ssh_user; /* NULL: the [ssh] user */
	char *status;
	char *previous_status; /* servers_get only; NULL if none */
	int consecutive_failures;
	int consecutive_successes;
	int64_t open_incident;     /* id of the open server_unreachable incident, 0 if none */
	int64_t open_provisioning; /* id of the open provisioning_failed incident, 0 if none */
} server_row;

typedef struct {
	server_row *rows;
	size_t count;
} server_list;

void server_row_free(server_row *r);
void server_list_free(server_list *list);

/* The server with this handle (out->count is 1), or STORE_NOTFOUND with
 * "no server 'H'". *is_managed (may be NULL) gets its is_managed flag. */
int servers_find(store *s, const char *handle, server_list *out, bool *is_managed, char *err,
                 size_t errlen);
/* The server with this id, previous_status included; STORE_NOTFOUND. */
int servers_get(store *s, int64_t id, server_row *out, char *err, size_t errlen);

/* cb(ctx, status, count) for each status in use, by status; a non-zero
 * return stops and is returned. */
typedef int (*servers_count_cb)(void *ctx, const char *status, int64_t count);
int servers_count_by_status(store *s, servers_count_cb cb, void *ctx);

/* Every server checked at least once and not decommissioned, by handle:
 * its consecutive failures and last response time (-1 if none). For the
 * metrics endpoint; the message of a failure is in store_errmsg(). */
typedef int (*servers_health_cb)(void *ctx, const char *handle, int consecutive_failures,
                                 double response_ms);
int servers_health_each(store *s, servers_health_cb cb, void *ctx);

/* Managed servers whose status is one of statuses (NULL-terminated), plus
 * every managed server with an open server_unreachable or
 * provisioning_failed incident (so a server put in error by an outage or a
 * failed provisioning keeps being checked and can recover). Ordered by
 * handle; open_incident and open_provisioning are set. */
int servers_list_for_check(store *s, const char *const *statuses, server_list *out, char *err,
                           size_t errlen);

/* Debounce (Nagios/Gatus soft and hard states). */
typedef enum {
	HEALTH_STEADY,           /* no change of health */
	HEALTH_BECAME_UNHEALTHY, /* failures reached failure_threshold */
	HEALTH_BECAME_HEALTHY,   /* successes reached success_threshold */
} health_transition;

typedef struct {
	int failures;   /* consecutive failed checks */
	int successes;  /* consecutive passed checks */
	bool unhealthy; /* an incident is open */
} health_counters;

/* Count one check and say whether the health changed. Pure. */
health_transition servers_debounce(health_counters *c, bool passed, int failure_threshold,
                                   int success_threshold);

/* last_health_check, response_time_ms (NULL if response_ms < 0) and the
 * counters. */
int servers_record_check(store *s, int64_t server_id, double now, double response_ms,
                         const health_counters *c, char *err, size_t errlen);

/* ---- status changes, inside the caller's transaction ---- */

/* An incident opens: previous_status = status, status = error (unless it
 * already is error). */
int servers_mark_unreachable(store *s, int64_t id, double now, char *err, size_t errlen);
/* The incident closed: if still in error, back to previous_status (ready
 * when none was kept), previous_status cleared. */
int servers_restore_previous(store *s, int64_t id, double now, char *err, size_t errlen);
/* The end of a recovery. ok: back to previous_status when it is ready or
 * in_use, else in_use when the server has services, else ready — only from
 * error, provisioning or ready; consecutive_failures reset. !ok: error. */
int servers_end_recovery(store *s, int64_t id, bool ok, int services_count, double now, char *err,
                         size_t errlen);
int servers_set_status(store *s, int64_t id, const char *status, double now, char *err,
                       size_t errlen);
/* previous_status cleared (a later restore gives ready). */
int servers_forget_previous(store *s, int64_t id, double now, char *err, size_t errlen);
/* consecutive_failures = 0 (an operator closed the outage). */
int servers_reset_failures(store *s, int64_t id, double now, char *err, size_t errlen);

/* ---- provisioning (provisioner.c) ---- */

/* Managed servers in pending_setup or force_rebuild whose last attempt is
 * older than cooldown_sec, or in provisioning for longer than timeout_sec;
 * by handle. */
int servers_list_due_provisioning(store *s, double now, double timeout_sec, double cooldown_sec,
                                  server_list *out, char *err, size_t errlen);
/* status -> provisioning (started now, attempts + 1) unless someone else
 * claimed it or the cooldown holds; force: whatever the status (incident
 * recovery); cooldown_sec <= 0: no cooldown. *claimed says whether it was. */
int servers_claim_provisioning(store *s, int64_t id, bool force, double now, double timeout_sec,
                               double cooldown_sec, bool *claimed, char *err, size_t errlen);

/* ---- the operator's view (servers, servers show) ---- */

/* One server as `fleetkeeper servers` shows it. Strings are borrowed for
 * the callback. */
typedef struct {
	int64_t id;
	const char *handle;
	const char *ip; /* NULL if unknown */
	int port;       /* 22 if unset */
	const char *status;
	const char *previous_status; /* NULL if none */
	const char *provider;        /* NULL if none */
	bool managed;
	int consecutive_failures;
	int consecutive_successes;
	double last_health_check; /* 0 if never checked */
	double response_time_ms;  /* -1 if none */
	int64_t open_incident;    /* the newest open incident's id, 0 if none */
	const char *open_incident_type;
	bool maintenance_recorded; /* servers.maintenance_active */
	double maintenance_until;  /* a stored window active at now ends then; 0 if none */
} server_view;

typedef int (*server_view_cb)(void *ctx, const server_view *v);
/* Every server (handle NULL) or the one with this handle, by handle; a
 * non-zero return of cb stops and is returned. The message of a failure is
 * in store_errmsg(). */
int servers_view_each(store *s, const char *handle, double now, server_view_cb cb, void *ctx);
/* Remove the server's row: its services and maintenance windows go with
 * it, its incidents stay (without a server). STORE_NOTFOUND if none. */
int servers_forget(store *s, int64_t id);

/* ---- server_sync: servers from providers and inventories ---- */

/* The statements server_sync runs on the servers table. They never begin
 * or commit: server_sync applies one provider's listing in one transaction
 * of its own. Errors: 0 or a negative store_error with the message in
 * store_errmsg(s) (no err buffer here); nothing is logged. Strings passed
 * in are borrowed for the call; rows handed out are the caller's
 * (server_sync_rows_free). */

/* A server as it is stored, for comparing with a listing. */
typedef struct {
	int64_t id;
	char *handle, *ip, *ssh_user, *provider, *provider_id, *status, *previous_status;
	char *labels, *details; /* JSON or NULL */
	int port;               /* 22 if unset */
	bool managed;
	bool open_incident; /* a server_unreachable or provisioning_failed is open */
} server_sync_row;

typedef struct {
	server_sync_row *rows;
	size_t count;
} server_sync_rows;

void server_sync_rows_free(server_sync_rows *l);

/* What a provider lists about one server (NULL for unknown). */
typedef struct {
	const char *handle, *ip, *ssh_user, *provider, *provider_id, *labels;
	int port;
} server_listed;

/* Every server, of every provider, ordered by id. On error *out is empty. */
int servers_sync_load(store *s, server_sync_rows *out);
/* A new server from p with status and managed, last seen now; *id (may be
 * NULL) gets its id. */
int servers_sync_insert(store *s, const server_listed *p, const char *status, bool managed,
                        double now, int64_t *id);
/* Server id becomes what p says, with status, previous (NULL: none) and
 * managed; no longer missing; last seen now. */
int servers_sync_update(store *s, int64_t id, const server_listed *p, const char *status,
                        const char *previous, bool managed, double now);
/* Server id was listed unchanged: only last_seen_at moves. */
int servers_sync_seen(store *s, int64_t id, double now);
/* Server id is no longer listed: missing since now, previous kept in
 * previous_status (the status to come back to when it is listed again). */
int servers_sync_mark_missing(store *s, int64_t id, const char *previous, double now);
/* The provider's details JSON of the server named handle. */
int servers_sync_set_details(store *s, const char *handle, const char *details, double now);
/* Every managed server in pending_setup or force_rebuild, by handle:
 * cb(ctx, handle, ip, status) with borrowed strings (ip may be NULL); a
 * non-zero return stops and is returned. */
typedef int (*server_trigger_cb)(void *ctx, const char *handle, const char *ip, const char *status);
int servers_sync_triggers(store *s, server_trigger_cb cb, void *ctx);

#endif
