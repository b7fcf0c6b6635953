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
#include "ingest/http.h"
#include "worker/worker_common.h"

/* Registers every worker the settings ask for. */
void
runra_register_subsystem_workers(void)
{
	/* subsystems add their registration calls here */
	http_register_workers();
}
