/*
 * maintenance_worker.c — the maintenance worker: one background worker
 * whose only job is runra_obs.run_maintenance(), at start and every
 * runra_obs.maintenance_interval (counted from the end of the previous
 * run, so a slow run leaves time for everything else).
 *
 * It always runs: day partitions must be made ahead whether or not anyone
 * sends events over NOTIFY or HTTP.  It used to live in the NOTIFY
 * listener's loop, where a slow maintenance run (a lock held on a
 * partition for its whole lock timeout) delayed draining notifications.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "guc.h"
#include "worker/housekeeping.h"
#include "worker/worker_common.h"

PGDLLEXPORT void runra_maintenance_main(Datum arg);

/* Sleeps until the next run is due, a signal, or the postmaster's death. */
static void
wait_until(TimestampTz next_run)
{
	long		ms = (long) Max(0, (next_run - GetCurrentTimestamp() + 999) / 1000);

	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	runra_worker_absorb_barriers();
	runra_worker_reload_if_needed();
}

/* Entry point of the worker (registered in workers.c). */
void
runra_maintenance_main(Datum arg)
{
	MemoryContext loop_cxt;
	TimestampTz next_run = 0;

	runra_worker_setup_signals();
	BackgroundWorkerInitializeConnection(runra_database, NULL, 0);
	runra_worker_attach("maintenance");
	if (!runra_worker_wait_for_extension())
		proc_exit(1);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs maintenance loop",
									 ALLOCSET_DEFAULT_SIZES);
	while (!runra_got_sigterm)
	{
		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		if (GetCurrentTimestamp() >= next_run)
		{
			housekeeping_run();
			next_run = housekeeping_next_run(GetCurrentTimestamp());
			runra_worker_set_state("waiting for the next run");
		}
		wait_until(next_run);
	}
	/* 1, not 0: a worker that exits 0 is not started again */
	proc_exit(1);
}
