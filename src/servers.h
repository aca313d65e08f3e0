/*
 * servers — store helpers for health checks and server_unreachable
 * incidents, in SQL against the servers and incidents tables (store.c,
 * docs/state-store.md) through store_db().
 *
 * An incident is open while its resolved_at is NULL and its status is not
 * resolved (detected, recovering, or failed: a failed recovery does not end
 * the outage). A server has at most one open server_unreachable incident:
 * servers_incident_open checks and inserts in one BEGIN IMMEDIATE
 * transaction, so two processes cannot both open one.
 *
 * Errors: 0 or a negative store_error, with store_errmsg() unset (the
 * message goes to err); nothing is logged here.
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
	int consecutive_failures;
	int consecutive_successes;
	int64_t open_incident; /* id of the open server_unreachable incident, 0 if none */
} server_row;

typedef struct {
	server_row *rows;
	size_t count;
} server_list;

void server_list_free(server_list *list);

/* Managed servers whose status is one of statuses (NULL-terminated), plus
 * every managed server with an open server_unreachable incident (so a
 * server put in error by an outage keeps being checked and can recover).
 * Ordered by handle. */
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

/* Open a server_unreachable incident unless one is open: the server's
 * status becomes error and its previous status is kept in previous_status,
 * and a server_unreachable notification (correlation_id; details, a JSON
 * object, copied into its fields) is added in the same transaction.
 * *created says whether one was opened; *incident_id is the open one
 * either way; previous (may be NULL, cap bytes) gets the status before. */
int servers_incident_open(store *s, int64_t server_id, double now, const char *correlation_id,
                          const char *details, int64_t *incident_id, bool *created, char *previous,
                          size_t cap, char *err, size_t errlen);

/* Resolve the open server_unreachable incident (resolved_at = now) and, if
 * the server is still in error, restore its previous status (ready when
 * none was kept); a server_recovered notification is added in the same
 * transaction, with the correlation_id bound in the calling thread's log
 * context (the run's, bound by the runner). *incident_id is 0 if none was open; restored (may be
 * NULL) gets the server's status afterwards. */
int servers_incident_resolve(store *s, int64_t server_id, double now, int64_t *incident_id,
                             char *restored, size_t cap, char *err, size_t errlen);

#endif
