/*
 * worker_metrics.h — counters the workers keep in shared memory for
 * GET /metrics: starts and restarts of each worker role, maintenance runs,
 * alert evaluations and notification attempts.
 */
#ifndef RUNRA_OBS_WORKER_METRICS_H
#define RUNRA_OBS_WORKER_METRICS_H

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

/* What one run_maintenance() call did (housekeeping.c counts it). */
typedef struct MaintenanceRun
{
	bool		failed;			/* it ended in an ERROR */
	int			created;
	int			dropped;
	int			skipped;
	int64		expired;		/* rejected events past their retention */
	TimestampTz started;
} MaintenanceRun;

extern void worker_metrics_shmem_request(void);
extern void worker_metrics_shmem_startup(void);

extern void worker_metrics_count_start(const char *role, int running);
extern void worker_metrics_count_maintenance(const MaintenanceRun *run);
extern void worker_metrics_count_evaluation(bool failed);
extern void worker_metrics_count_notification(const char *outcome);

extern void worker_metrics_append(StringInfo out);

#endif
