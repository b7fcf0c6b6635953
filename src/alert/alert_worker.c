/*
 * alert_worker.c — the alert worker: one background worker that evaluates
 * the alert rules of runra_obs.database when they are due and delivers the
 * notifications they queue.
 *
 * It wakes every second (runra_obs.alert_poll_interval), at once when a
 * rule or contact point changed (runra_obs._alert_wake() sets its latch at
 * commit), or when a notification on the wire got its answer; it
 * evaluates what is due (evaluate.c) and puts what is queued on the wire
 * (deliver.c), so rules are evaluated on time while contact points answer.  A failing rule or contact point costs only itself; the
 * worker exits 1 on anything else, so it is restarted.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "alert/alert.h"
#include "guc.h"
#include "worker/worker_common.h"

PGDLLEXPORT void runra_alert_main(Datum arg);

/*
 * Sleeps until the next poll, a wake-up, or the postmaster's death; while
 * notifications are on the wire, their sockets wake it too, and what they
 * came to is recorded.
 */
static void
wait_for_next_round(void)
{
	if (alert_deliver_on_wire() > 0)
		alert_deliver_wait(runra_alert_poll_interval_ms);
	else
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 runra_alert_poll_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		runra_worker_absorb_barriers();
	}
	runra_worker_reload_if_needed();
}

/* Entry point of the worker (registered in workers.c). */
void
runra_alert_main(Datum arg)
{
	MemoryContext loop_cxt;
	MemoryContext probe_cxt;
	WatermarkProbe probe;

	runra_worker_setup_signals();
	BackgroundWorkerInitializeConnection(runra_database, NULL, 0);
	runra_worker_attach("alerts");
	if (!runra_worker_wait_for_extension())
		proc_exit(0);
	probe_cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs watermark probe",
									  ALLOCSET_SMALL_SIZES);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs alert loop",
									 ALLOCSET_DEFAULT_SIZES);
	watermark_probe_init(&probe, probe_cxt);
	alert_deliver_init();
	ereport(LOG, (errmsg("runra_obs alert worker started in database \"%s\"", runra_database)));
	while (!runra_got_sigterm)
	{
		int			evaluated;
		int			delivered;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		runra_worker_set_state("evaluating");
		evaluated = alert_evaluate_due(&probe);
		runra_worker_set_state("delivering");
		delivered = alert_deliver_start();
		runra_worker_set_state(psprintf("idle: %d evaluated, %d sent, %d on the wire",
										evaluated, delivered, alert_deliver_on_wire()));
		wait_for_next_round();
	}
	/* 1, not 0: a worker that exits 0 is not started again */
	proc_exit(1);
}
