/*
 * incidents — the one module that writes the incidents table (SPEC §5,
 * docs/state-store.md, docs/servers.md): every transition of an incident,
 * its SQL and the notification that goes with it, plus the listings the
 * CLI and the metrics read.
 *
 *   (none) --open--------> detected          incidents_open_unreachable
 *                                            (health_check), or
 *                                            incidents_open_provisioning_failed
 *   open --recovering----> recovering        incidents_begin_recovery
 *   recovering --resolve--> resolved         incidents_end_recovery (ok),
 *                                            resolution 'recovery'
 *   recovering --fail-----> failed           incidents_end_recovery (!ok)
 *   open --healthy-------> resolved          incidents_resolve_healthy (a
 *                                            health check passes again),
 *                                            resolution 'recovered'
 *   open --close---------> resolved          incidents_close (the operator),
 *                                            resolution 'closed'
 *   open --ack-----------> open, acknowledged  incidents_ack (the operator)
 *
 * One definition of open, used by every query here and by the modules
 * that join incidents (INCIDENTS_OPEN): status detected, recovering or
 * failed — a failed recovery does not end the outage; only a resolution
 * (health, recovery, operator) does. A server has at most one open
 * incident of each type server_unreachable and provisioning_failed.
 *
 * Acknowledged (acknowledged_at set): the incident stays open, but the
 * notifications of its problem stop: no further notification of its
 * type for its server and no recovery_finished of a failed recovery of
 * it. Its resolution (server_recovered, a successful recovery) is still
 * notified.
 *
 * Each transition runs in one store transaction together with the server's
 * status change (servers.c) and its outbox row (notify_text.h): all of it
 * is written or none. The transactions nest (store_tx_*), so a caller may
 * wrap a transition in a transaction of its own (provisioner.c does).
 *
 * Threads: any thread, with its own store handle.
 *
 * Errors: 0 or a negative store_error; the transitions copy "<what>:
 * <store message>" into err and log nothing (the caller reports).
 * STORE_NOTFOUND: no such incident or server; INCIDENTS_NOT_OPEN from
 * incidents_ack / incidents_close: the incident is resolved already. The
 * listings leave the message in store_errmsg().
 */
#ifndef FK_INCIDENTS_H
#define FK_INCIDENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notify_text.h"
#include "servers.h"
#include "store.h"

/* The SQL condition of an open incident (unqualified column names: the
 * innermost incidents table of the query), for every query that needs it,
 * here and in modules that join incidents (servers_list_for_check). */
#define INCIDENTS_OPEN "status IN ('detected', 'recovering', 'failed')"
/* An open server_unreachable incident. */
#define INCIDENTS_OPEN_UNREACHABLE "type = 'server_unreachable' AND " INCIDENTS_OPEN
/* An open provisioning_failed incident. */
#define INCIDENTS_OPEN_PROVISIONING "type = 'provisioning_failed' AND " INCIDENTS_OPEN

/* incidents_ack / incidents_close: the incident is not open. */
enum { INCIDENTS_NOT_OPEN = -20 };

/* ---- transitions ---- */

/* Open a server_unreachable incident unless one is open: the server's
 * status becomes error, its previous status is kept in previous_status,
 * and a server_unreachable notification (correlation_id; details, a JSON
 * object, copied into its fields) is added. *created says whether one was
 * opened; *incident_id is the open one either way; previous (may be NULL,
 * cap bytes) gets the status before. STORE_NOTFOUND: no such server. */
int incidents_open_unreachable(store *s, int64_t server_id, double now, const char *correlation_id,
                               const char *details, int64_t *incident_id, bool *created,
                               char *previous, size_t cap, char *err, size_t errlen);

/* A passing health check ends the server's outage: its open
 * server_unreachable and provisioning_failed incidents become resolved
 * (resolved_at = now, resolution 'recovered'), each with a
 * server_recovered notification (the correlation_id bound in the calling
 * thread's log context), and, if the server is still in error, its
 * previous status comes back (ready when none was kept). ids (cap) gets
 * the resolved ids in id order and *n how many (0: nothing changed);
 * restored (may be NULL) gets the server's status afterwards. */
int incidents_resolve_healthy(store *s, int64_t server_id, double now, int64_t *ids, size_t cap,
                              size_t *n, char *restored, size_t rcap, char *err, size_t errlen);

/* A provisioning_failed incident of srv (details {"error": error}) and its
 * provisioning_failed notification, with correlation_id (NULL: ""); if one
 * is open already, it takes the new details instead (one per server) and
 * the notification is added unless it is acknowledged. With no other open
 * incident the server's previous_status is cleared, so that a passing
 * health check later makes it ready. Meant to run inside the caller's
 * transaction with the status change. */
int incidents_open_provisioning_failed(store *s, const server_row *srv, const char *error,
                                       const char *correlation_id, double now, char *err,
                                       size_t errlen);

/* Every open incident of the server becomes recovering; ids (cap) gets
 * their ids in id order and *n how many. */
int incidents_begin_recovery(store *s, int64_t server_id, double now, int64_t *ids, size_t cap,
                             size_t *n, char *err, size_t errlen);

/* The end of a recovery: the incidents ids become resolved (ok,
 * resolution 'recovery') or failed; ok: the server goes back to its
 * previous status (in_use when it has services, else ready) unless an
 * operator moved it meanwhile; !ok with incidents: the server is in error.
 * note (the recovery's recovery_finished, built by the caller) is added to
 * the outbox in the same transaction — unless the recovery failed and
 * every one of the incidents is acknowledged. On failure nothing changed
 * (the incidents stay recovering). */
int incidents_end_recovery(store *s, int64_t server_id, const int64_t *ids, size_t n, bool ok,
                           int services_count, double now, const notify_note *note, char *err,
                           size_t errlen);

/* ---- the operator ---- */

/* Acknowledge open incident id: acknowledged_at = now, acknowledged_by
 * (who), ack_reason (may be NULL). Acknowledging it again keeps the first
 * acknowledgement (*already true). STORE_NOTFOUND, INCIDENTS_NOT_OPEN. */
int incidents_ack(store *s, int64_t id, const char *who, const char *reason, double now,
                  bool *already, char *err, size_t errlen);

/* Close open incident id (the operator's resolution): status resolved,
 * resolved_at = now, resolution 'closed', resolution_reason = reason. If
 * the server is in error and has no other open incident, its previous
 * status comes back as a health recovery would (ready when none was kept)
 * and its consecutive failures restart from 0. restored (may be NULL) gets
 * the server's status afterwards ("" if the server is gone). No
 * notification: the operator is the one who knows. STORE_NOTFOUND,
 * INCIDENTS_NOT_OPEN. */
int incidents_close(store *s, int64_t id, const char *reason, double now, char *restored,
                    size_t cap, char *err, size_t errlen);

/* ---- listings ---- */

typedef struct {
	int64_t id;
	const char *server_handle; /* NULL if the server row is gone */
	const char *type;
	const char *status;
	double detected_at;
	double resolved_at; /* 0 if open */
	const char *correlation_id;
	const char *details;
	double acknowledged_at;        /* 0 if not acknowledged */
	const char *acknowledged_by;   /* NULL if none */
	const char *ack_reason;        /* NULL if none */
	const char *resolution;        /* recovered, recovery, closed; NULL while open */
	const char *resolution_reason; /* NULL if none */
} incident_row;

/* Strings are borrowed for the callback; non-zero stops (and is returned). */
typedef int (*incident_cb)(void *ctx, const incident_row *row);

/* Newest first; open_only: the open ones (INCIDENTS_OPEN). */
int incidents_list(store *s, bool open_only, incident_cb cb, void *ctx);
/* One incident by id (cb called once); STORE_NOTFOUND if none. */
int incidents_get(store *s, int64_t id, incident_cb cb, void *ctx);
/* How many are open (INCIDENTS_OPEN). */
int incidents_open_count(store *s, int64_t *out);

#endif
