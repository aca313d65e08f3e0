/*
 * maintenance — maintenance windows of servers (docs/servers.md).
 *
 * Two kinds: windows an operator sets (`servers maintenance H --for 2h
 * [--from T] [--reason R]`, ended early by `--end`), stored in the
 * maintenance_windows table; and recurring windows declared in the
 * configuration ([maintenance.NAME] servers = globs, schedule = cron,
 * duration = 2h), which are computed, never stored. During a window health
 * checks still run and are recorded, but open no incident, resolve none and
 * send no notification; when it ends, an outage that is still there opens
 * its incident at the next check (the failure counters kept counting).
 *
 * servers.maintenance_active keeps the state health_check last saw, so
 * that it can emit maintenance_started / maintenance_ended once per
 * transition (and the metric counts servers in maintenance).
 *
 * Threads: any, with the caller's store connection; the rule functions are
 * pure (time passed in).
 * Errors: 0 or a negative store_error with the message in store_errmsg();
 * nothing is logged here.
 * Ownership: strings passed in are borrowed; a maintenance_state is a
 * value (fixed buffers).
 */
#ifndef FK_MAINTENANCE_H
#define FK_MAINTENANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

/* The recurring windows are config.h's maintenance_rule ([maintenance.NAME]). */

typedef struct {
	bool active;
	double until;     /* the end of the window (the latest one if several) */
	char source[80];  /* "window 7" or "rule NAME" */
	char reason[256]; /* "" if none */
} maintenance_state;

/* Pure: is handle in a window of rule at now? *until gets its end. */
bool maintenance_rule_covers(const maintenance_rule *r, const char *handle, double now,
                             double *until);

/* A window for one server from from to until; *id (may be NULL) gets its id. */
int maintenance_window_add(store *s, int64_t server_id, double from, double until,
                           const char *reason, const char *by, double now, int64_t *id);
/* End every window of the server that has not ended by now (active or
 * scheduled); *ended (may be NULL) gets how many. */
int maintenance_window_end(store *s, int64_t server_id, double now, int64_t *ended);

/* The server's maintenance state at now, from its stored windows and the
 * rules (may be NULL / 0). */
int maintenance_state_at(store *s, const maintenance_rule *rules, size_t nrules, int64_t server_id,
                         const char *handle, double now, maintenance_state *out);

/* Record the state health_check saw; *changed says whether it differs
 * from the last one recorded. */
int maintenance_note(store *s, int64_t server_id, bool active, bool *changed);

/* Servers whose recorded state is in maintenance (for the metric). */
int maintenance_count_active(store *s, int64_t *out);

#endif
