/*
 * housekeeping.c — runs runra_obs.run_maintenance() from a worker.
 *
 * Partition creation and retention live in SQL (run_maintenance); this file
 * only calls it in a short transaction of its own, with the lock timeout
 * run_maintenance takes by default, so it never holds up ingest for long.
 * Each action it took (created, dropped, skipped, expired) is logged, and a
 * one-line summary goes to runra_obs.worker_status; a skipped action or an
 * ERROR also becomes the worker's last error there.  The run is counted
 * for /metrics (worker_metrics.c), which outlives the worker.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"

#include "guc.h"
#include "worker/housekeeping.h"
#include "worker/worker_common.h"
#include "worker/worker_metrics.h"
#include "worker/worker_xact.h"

/* What one run_maintenance() call did. */
typedef struct MaintenanceOutcome
{
	MaintenanceRun counts;		/* what /metrics counts */
	char	   *first_skip;		/* why the first skipped action was skipped */
	MemoryContext cxt;			/* where first_skip lives */
} MaintenanceOutcome;

/* Counts and logs one (action, object, detail) row. */
static void
note_action(MaintenanceOutcome *out, const char *action, const char *object,
			const char *detail)
{
	if (strcmp(action, "created") == 0)
		out->counts.created++;
	else if (strcmp(action, "dropped") == 0)
		out->counts.dropped++;
	else if (strcmp(action, "expired") == 0)
		out->counts.expired += strtol(detail, NULL, 10);	/* "N rejected events ..." */
	else if (strcmp(action, "skipped") == 0)
	{
		out->counts.skipped++;
		if (out->first_skip == NULL)
			out->first_skip = MemoryContextStrdup(out->cxt,
												  psprintf("%s: %s", object, detail));
	}
	ereport(strcmp(action, "skipped") == 0 ? WARNING : LOG,
			(errcode(strcmp(action, "skipped") == 0
					 ? ERRCODE_LOCK_NOT_AVAILABLE : ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("runra_obs maintenance %s %s", action, object),
			 errdetail_internal("%s", detail)));
}

/* The work of the maintenance transaction (see worker_xact.h). */
static void
call_run_maintenance(void *arg)
{
	MaintenanceOutcome *out = arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT action, object, detail FROM runra_obs.run_maintenance()",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute of runra_obs.run_maintenance() failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *detail = SPI_getvalue(row, desc, 3);

		note_action(out, SPI_getvalue(row, desc, 1), SPI_getvalue(row, desc, 2),
					detail ? detail : "");
	}
	SPI_finish();
}

/*
 * Runs run_maintenance() once and records the outcome in the worker's
 * status slot.  Never throws: a failure is logged and retried next time.
 */
void
housekeeping_run(void)
{
	MaintenanceOutcome out = {0};
	char	   *error;
	int			sqlerrcode;
	char	   *summary;

	out.cxt = CurrentMemoryContext;
	out.counts.started = GetCurrentTimestamp();
	runra_worker_set_state("running maintenance");
	if (!runra_worker_run_transaction("runra_obs.run_maintenance()",
									  call_run_maintenance, &out, &error, &sqlerrcode))
	{
		/* what it did before the error was rolled back: nothing to count */
		MaintenanceRun failed = {.failed = true, .started = out.counts.started};

		worker_metrics_count_maintenance(&failed);
		summary = psprintf("failed: %s", error);
		ereport(WARNING,
				(errcode(sqlerrcode),
				 errmsg("runra_obs maintenance failed: %s", error),
				 errhint("It is tried again in %d seconds (runra_obs.maintenance_interval).",
						 runra_maintenance_interval_s)));
		runra_worker_report_maintenance(summary, true);
		return;
	}
	worker_metrics_count_maintenance(&out.counts);
	summary = psprintf("created %d, dropped %d, skipped %d partitions; expired %lld rejected events",
					   out.counts.created, out.counts.dropped, out.counts.skipped,
					   (long long) out.counts.expired);
	if (out.counts.skipped > 0)
		summary = psprintf("%s (first skipped: %s)", summary, out.first_skip);
	runra_worker_report_maintenance(summary, out.counts.skipped > 0);
}

/* When the run after one that started at last_run is due. */
TimestampTz
housekeeping_next_run(TimestampTz last_run)
{
	return TimestampTzPlusMilliseconds(last_run,
									   (int64) runra_maintenance_interval_s * 1000);
}
