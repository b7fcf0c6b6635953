/*
 * rollup_worker.c — the rollup consumer: one background worker that folds
 * newly committed events into the rollup tables.
 *
 * Every runra_obs.rollup_interval it advances the safe watermark (without
 * waiting: a long transaction holds the watermark back, not the worker) and
 * folds the events between its position and the watermark, at most
 * runra_obs.rollup_batch_size ids per transaction, by calling
 * runra_obs._consume_rollups().  The rows and the new position commit
 * together, so a worker killed mid-fold leaves nothing behind and folds
 * the same events again when it is back.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "consume/watermark.h"
#include "guc.h"
#include "worker/worker_common.h"
#include "worker/worker_xact.h"

PGDLLEXPORT void runra_rollup_main(Datum arg);

/* What one fold transaction starts from and where it left the consumer. */
typedef struct FoldStep
{
	WatermarkProbe *probe;
	int64		watermark;		/* the safe watermark this step folded up to */
	int64		position;		/* the consumer's position after the step */
} FoldStep;

/*
 * On Citus the fold runs on the shards over runra_obs.rollup_shard_connections
 * connections per worker (_fold_rollups_on_shards sets Citus's pool size);
 * this keeps them open at commit, which Citus would otherwise close down to
 * citus.max_cached_conns_per_worker (one by default), forking backends there
 * on every fold.  Never fewer than that setting keeps; until the end of the
 * transaction, so that a changed setting applies at the next step.
 */
static void
keep_shard_connections(void)
{
	const char *cached = GetConfigOption("citus.max_cached_conns_per_worker", true, false);
	char		connections[16];

	if (cached == NULL || atoi(cached) >= runra_rollup_shard_connections)
		return;
	snprintf(connections, sizeof(connections), "%d", runra_rollup_shard_connections);
	(void) set_config_option("citus.max_cached_conns_per_worker", connections,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

/* The work of one fold transaction (see worker_xact.h). */
static void
fold_step(void *arg)
{
	FoldStep   *step = arg;
	Datum		args[2];
	Oid			types[2] = {INT8OID, INT8OID};
	bool		isnull;

	keep_shard_connections();
	step->watermark = watermark_advance(step->probe);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = Int64GetDatum(step->watermark);
	args[1] = Int64GetDatum(runra_rollup_batch_size);
	if (SPI_execute_with_args("SELECT runra_obs._consume_rollups($1, $2)",
							  2, types, args, NULL, false, 1) != SPI_OK_SELECT
		|| SPI_processed != 1)
		elog(ERROR, "runra_obs._consume_rollups() failed");
	step->position = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
}

/*
 * Folds until caught up with the watermark (or stopped).  Returns false
 * when a fold failed; its error is logged and shown in worker_status.
 */
static bool
fold_until_caught_up(WatermarkProbe *probe)
{
	FoldStep	step = {probe, 0, 0};
	char	   *error;
	int			sqlerrcode;

	do
	{
		CHECK_FOR_INTERRUPTS();
		if (!runra_worker_run_transaction("runra_obs rollup fold", fold_step, &step,
										  &error, &sqlerrcode))
		{
			runra_worker_report_error(error);
			ereport(WARNING,
					(errcode(sqlerrcode),
					 errmsg("runra_obs rollup fold failed: %s", error),
					 errhint("It is tried again in %d ms (runra_obs.rollup_interval).",
							 runra_rollup_interval_ms)));
			return false;
		}
		watermark_report_position("rollups", step.position);
	} while (step.position < step.watermark && !runra_got_sigterm);
	return true;
}

/* Shows in worker_status where the consumer stands. */
static void
show_position(void)
{
	int64		watermark = watermark_published();

	runra_worker_set_state(psprintf("caught up with the watermark at id " INT64_FORMAT, watermark));
}

/*
 * Runs at runra_obs.rollup_nice, so that a saturated server spends its CPU
 * on the sessions that ingest (whose senders wait for an answer) and folds
 * later, in bigger batches, which cost less per event; queries add the
 * events not folded yet, so nobody sees the lag in an answer.  A process
 * cannot lower its own niceness: after the setting went down, the worker
 * exits and the postmaster starts a new one.
 */
static void
apply_nice(void)
{
	if (runra_worker_set_nice(runra_rollup_nice))
		return;
	ereport(LOG,
			(errmsg("runra_obs rollup worker restarts to lower its niceness to %d (runra_obs.rollup_nice)",
					runra_rollup_nice)));
	proc_exit(1);
}

/* Sleeps until the next fold is due, a signal, or the postmaster's death. */
static void
wait_for_next_fold(void)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 runra_rollup_interval_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	runra_worker_absorb_barriers();
	runra_worker_reload_if_needed();
	apply_nice();
}

/* Entry point of the worker (registered in workers.c). */
void
runra_rollup_main(Datum arg)
{
	MemoryContext loop_cxt;
	MemoryContext probe_cxt;
	WatermarkProbe probe;

	runra_worker_setup_signals();
	BackgroundWorkerInitializeConnection(runra_database, NULL, 0);
	runra_worker_attach("rollups");
	if (!runra_worker_wait_for_extension())
		proc_exit(0);
	probe_cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs watermark probe",
									  ALLOCSET_SMALL_SIZES);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs rollup loop",
									 ALLOCSET_DEFAULT_SIZES);
	watermark_probe_init(&probe, probe_cxt);
	apply_nice();
	ereport(LOG, (errmsg("runra_obs rollup worker started in database \"%s\"", runra_database)));
	while (!runra_got_sigterm)
	{
		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		runra_worker_set_state("folding");
		if (fold_until_caught_up(&probe))
			show_position();
		wait_for_next_fold();
	}
	/* 1, not 0: a worker that exits 0 is not started again, and a
	 * pg_terminate_backend() would stop it until the next restart */
	proc_exit(1);
}
