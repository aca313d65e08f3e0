/*
 * incidents — the one module that writes the incidents table (SPEC §5,
 * docs/state-store.md): every transition of an incident, its SQL and the
 * notification that goes with it, plus the listings the CLI and the
 * metrics read.
 *
 *   (none) --open--------> detected          incidents_open_unreachable
 *                                            (health_check), or
 *                                            incidents_open_provisioning_failed
 *   detected | failed --recovering--> recovering   incidents_begin_recovery
 *   recovering --resolve--> resolved         incidents_end_recovery (ok)
 *   recovering --fail-----> failed           incidents_end_recovery (!ok)
 *   open --close----------> resolved         incidents_close_unreachable
 *                                            (a health check passes again)
 *
 * An incident is open while resolved_at is NULL and its status is not
 * resolved (detected, recovering or failed: a failed recovery does not end
 * the outage). A server has at most one open server_unreachable incident.
 *
 * Each transition runs in one store transaction together with the server's
 * status change (servers.c) and its outbox row (notify_text.h): all of it
 * is written or none. The transactions nest (store_tx_*), so a caller may
 * wrap a transition in a transaction of its own (provisioner.c does).
 *
 * Threads: any thread, with its own store handle.
 *
 * Errors: 0 or a negative store_error; the transitions copy "<what>:
 * <store message>" into err and log nothing (the caller reports). The
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

/* The SQL condition of an open server_unreachable incident, for queries of
 * other modules that join incidents (servers_list_for_check). */
#define INCIDENTS_OPEN_UNREACHABLE                                                                 \
	"type = 'server_unreachable' AND resolved_at IS NULL AND status <> 'resolved'"

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

/* Close the open server_unreachable incident (resolved, resolved_at = now)
 * and, if the server is still in error, restore its previous status (ready
 * when none was kept); a server_recovered notification carries the
 * correlation_id bound in the calling thread's log context. *incident_id
 * is 0 if none was open (then nothing changes); restored (may be NULL)
 * gets the server's status afterwards. */
int incidents_close_unreachable(store *s, int64_t server_id, double now, int64_t *incident_id,
                                char *restored, size_t cap, char *err, size_t errlen);

/* A provisioning_failed incident of srv (details {"error": error}) and its
 * provisioning_failed notification, with correlation_id (NULL: ""). Meant
 * to run inside the caller's transaction with the status change. */
int incidents_open_provisioning_failed(store *s, const server_row *srv, const char *error,
                                       const char *correlation_id, double now, char *err,
                                       size_t errlen);

/* Every open incident of the server becomes recovering; ids (cap) gets
 * their ids in id order and *n how many. */
int incidents_begin_recovery(store *s, int64_t server_id, double now, int64_t *ids, size_t cap,
                             size_t *n, char *err, size_t errlen);

/* The end of a recovery: the incidents ids become resolved (ok) or failed;
 * ok: the server goes back to its previous status (in_use when it has
 * services, else ready) unless an operator moved it meanwhile; !ok with
 * incidents: the server is in error. note (the recovery's
 * recovery_finished, built by the caller) is added to the outbox in the
 * same transaction. On failure nothing changed (the incidents stay
 * recovering). */
int incidents_end_recovery(store *s, int64_t server_id, const int64_t *ids, size_t n, bool ok,
                           int services_count, double now, const notify_note *note, char *err,
                           size_t errlen);

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
} incident_row;

/* Strings are borrowed for the callback; non-zero stops (and is returned). */
typedef int (*incident_cb)(void *ctx, const incident_row *row);

/* Newest first; open_only: detected or recovering. */
int incidents_list(store *s, bool open_only, incident_cb cb, void *ctx);
/* Incidents detected or recovering. */
int incidents_open_count(store *s, int64_t *out);

#endif
