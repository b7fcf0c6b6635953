/*
 * workers.c — which background workers runra_obs starts.
 *
 * One function per subsystem, called from _PG_init while
 * shared_preload_libraries is being processed.  The settings decide how
 * many of each run (runra_obs.http_workers, runra_obs.notify_channel,
 * runra_obs.forward_enabled).
 */
#include "postgres.h"

#include "guc.h"
#include "runra_obs.h"
#include "worker/worker_common.h"

/* Registers every worker the settings ask for. */
void
runra_register_subsystem_workers(void)
{
	/* subsystems add their registration calls here */

	/* NOTIFY ingest and housekeeping: one, always (it keeps partitions ahead) */
	runra_register_worker("notify", "runra_notify_worker_main", (Datum) 0, true);
}
