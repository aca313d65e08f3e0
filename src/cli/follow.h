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

#endif
