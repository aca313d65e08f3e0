/*
 * provisioner — bring a server to ready with the provisioning playbooks
 * (the engine; the task type that runs it on a schedule is
 * tasks/provision.c):
 *
 *   pending_setup | force_rebuild | error (recovery) | stuck provisioning
 *     -> provisioning (provisioning_started_at = now, attempts + 1,
 *        provisioner_trigger_received)
 *     -> provision_access.yml, then provision_software.yml
 *     -> ready (provisioning_complete)
 *      | error + a provisioning_failed incident (provisioning_failed)
 *
 * A server is claimed for provisioning with one UPDATE guarded by its
 * status and cooldown (servers_claim_provisioning), so two runs (or two
 * processes) never provision it at once and a trigger repeated within the
 * cooldown is ignored. The final status, the provisioning_failed incident
 * (incidents.c) and its notification are one transaction: all or nothing.
 *
 * Threads: any thread with its own store; blocks for the playbooks.
 *
 * Errors: provision_list_due returns 0 or a negative store_error with err
 * set; provision_server logs its own store failures
 * (provisioning_store_failed) and its outcome, once, and err says why.
 */
#ifndef FK_PROVISIONER_H
#define FK_PROVISIONER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ansible.h"
#include "config.h"
#include "servers.h"
#include "store.h"

#define PROVISION_LOGGER "provisioning"

typedef struct {
	int64_t provisioning_timeout_ms; /* a provisioning older than this is retried */
	int64_t cooldown_ms;             /* no new attempt sooner than this after the last */
} provision_policy;

/* Defaults: 30 min, 5 min. */
void provision_policy_default(provision_policy *p);

/* Servers due for provisioning: managed, pending_setup or force_rebuild
 * and outside the cooldown, or provisioning for longer than the timeout. */
int provision_list_due(store *st, const provision_policy *p, double now, server_list *out,
                       char *err, size_t errlen);

typedef enum {
	PROVISION_DONE = 0,     /* ready */
	PROVISION_FAILED = -1,  /* error + incident; err says why */
	PROVISION_SKIPPED = -2, /* not claimed: status changed or in cooldown */
} provision_outcome;

/* Provision one server (claim, both playbooks, final status). force: claim
 * whatever the status (incident recovery), still honouring the cooldown
 * unless it is 0. When the final status cannot be stored, nothing of it is
 * (the server stays in provisioning and is retried after the timeout) and
 * the outcome is PROVISION_FAILED. */
provision_outcome provision_server(const config *cfg, store *st, const server_row *srv,
                                   const provision_policy *p, bool is_incident_recovery,
                                   int cancel_fd, char *err, size_t errlen);

#endif
