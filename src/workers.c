/*
 * workers.c — which background workers runra_obs starts.
 *
 * One function per subsystem, called from _PG_init while
 * shared_preload_libraries is being processed.  The maintenance and notify
 * workers always run; runra_obs.http_workers,
 * runra_obs.rollup_enabled, runra_obs.forward_enabled and
 * runra_obs.alert_enabled decide about the others.
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
	/* maintenance: one, always (it keeps day partitions ahead) */
	runra_register_worker("maintenance", "runra_maintenance_main", (Datum) 0, true);

	/* NOTIFY ingest: one (it idles while runra_obs.notify_channel is empty) */
	runra_register_worker("notify", "runra_notify_worker_main", (Datum) 0, true);

	/* rollups: one consumer of the event log folds new events */
	if (runra_rollup_enabled)
		runra_register_worker("rollups", "runra_rollup_main", (Datum) 0, true);

	/* forwarding: one worker consumes the log for every destination of runra_obs.database */
	if (runra_forward_enabled)
		runra_register_worker("forward", "runra_forward_main", (Datum) 0, true);

	/* alerting: one worker evaluates the rules and sends their notifications */
	if (runra_alert_enabled)
		runra_register_worker("alerts", "runra_alert_main", (Datum) 0, true);

	/* HTTP ingest: runra_obs.http_workers workers sharing one port */
	http_register_workers();
}
