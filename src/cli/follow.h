/*
 * follow — print a run's stored events as they arrive.
 */
#ifndef FK_FOLLOW_H
#define FK_FOLLOW_H

#include <stdint.h>

#include "config.h"

/* Print every event of correlation_id as it is stored, until the run
 * (task_runs row run_id) has finished and its terminal event
 * (<task>_complete, _failed or _skipped) was printed, or 5 s after the last
 * event once the row is finished. Returns the exit status: 0 when the run
 * succeeded (or was skipped), 1 otherwise. */
int follow_run(const config *cfg, const char *task, int64_t run_id, const char *correlation_id);

/* A standby's reply to trigger or recover ({"ok": true, "forwarded": true,
 * "request_id": N, "forwarded_to": L}, cluster_requests.h): wait for the
 * leader's own reply and put it in *reply (malloc'd, replacing the
 * standby's), so the caller goes on as with a local daemon. 0 when *reply
 * is what to act on (unchanged when it was not forwarded), -1 after a
 * message on stderr (no leader in time, store failure). */
int follow_forwarded(const config *cfg, char **reply);

#endif
