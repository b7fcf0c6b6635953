/*
 * handler.c — the function destination: SQL handlers (runra_obs.on()).
 *
 * The worker calls handler(event row) for each queued event, in its own
 * transaction (never the inserting one) and each event in its own
 * subtransaction.  The event's outbox entry is removed in that same
 * subtransaction, so what a handler writes commits together with the
 * acknowledgement: once, or (after an error) not at all.  An error is
 * logged, counted, and the event stays queued to be retried with backoff
 * like a failed send.
 *
 * The handler runs as the role that registered it, not as the worker's
 * superuser, and must be executable by that role.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "forward/forward.h"

typedef struct HandlerRun
{
	Destination *dest;
	int64	   *ids;
	int			n;
	int			delivered;
	int64	   *failed_ids;
	int			n_failed;
	char	   *last_error;
	MemoryContext caller;		/* where results outlive the transaction */
} HandlerRun;

/* Takes the event out of the outbox and returns its row (NULL if gone). */
static bool
take_event(Destination *dest, int64 id, Datum *row)
{
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		values[2] = {Int32GetDatum(dest->id), Int64GetDatum(id)};
	bool		isnull;

	if (SPI_execute_with_args("WITH gone AS ("
							  "  DELETE FROM runra_obs.outbox"
							  "  WHERE destination_id = $1 AND event_id = $2"
							  "  RETURNING sandbox_id, created_at, event_id)"
							  " SELECT e FROM runra_obs.sandbox_events AS e JOIN gone AS g"
							  "   ON e.sandbox_id = g.sandbox_id AND e.created_at = g.created_at"
							  "  AND e.id = g.event_id",
							  2, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs forward: could not take event " INT64_FORMAT " from the outbox", id);
	if (SPI_processed == 0)
		return false;
	*row = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull;
}

/* Calls handler(row) as the role that registered the handler. */
static void
call_handler(Destination *dest, Datum row)
{
	Oid			save_user;
	int			save_sec;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 1);

	if (!OidIsValid(dest->handler_role) ||
		!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(dest->handler_role)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the role that registered the handler of destination \"%s\" no longer exists",
						dest->name)));
	if (pg_proc_aclcheck(dest->handler, dest->handler_role, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role %s may not execute handler %s",
						GetUserNameFromId(dest->handler_role, false),
						format_procedure(dest->handler))));
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(dest->handler_role, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	fmgr_info(dest->handler, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = row;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
	SetUserIdAndSecContext(save_user, save_sec);
}

/* One event in its own subtransaction; false (with run->last_error) on error. */
static bool
deliver_one(HandlerRun *run, int64 id)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Oid			save_user;
	int			save_sec;
	bool		ok = true;

	GetUserIdAndSecContext(&save_user, &save_sec);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Datum		row;

		if (take_event(run->dest, id, &row))
			call_handler(run->dest, row);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		SetUserIdAndSecContext(save_user, save_sec);
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		run->last_error = MemoryContextStrdup(run->caller, psprintf("handler %s failed on event " INT64_FORMAT ": %s",
								   format_procedure(run->dest->handler), id, edata->message));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

/* Runs the handler over the batch inside the caller's transaction. */
static void
run_handlers(void *arg)
{
	HandlerRun *run = arg;
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		values[2];

	for (int i = 0; i < run->n; i++)
	{
		if (deliver_one(run, run->ids[i]))
			run->delivered++;
		else
		{
			run->failed_ids[run->n_failed++] = run->ids[i];
			ereport(LOG,
					(errmsg("runra_obs forward: destination \"%s\": %s",
							run->dest->name, run->last_error)));
		}
	}
	values[0] = Int32GetDatum(run->dest->id);
	values[1] = Int64GetDatum(run->delivered);
	if (run->delivered > 0)
		SPI_execute_with_args("UPDATE runra_obs.forward_counters"
							  " SET sent = sent + $2, last_success = now()"
							  " WHERE destination_id = $1",
							  2, types, values, NULL, false, 0);
}

/*
 * Calls the destination's handler for each event; returns how many were
 * handled, and the ids that failed with the last error.
 */
int
handler_deliver(Destination *dest, int64 *ids, int n, char **last_error,
				int64 **failed_ids, int *n_failed)
{
	HandlerRun	run = {0};

	run.dest = dest;
	run.ids = ids;
	run.n = n;
	run.failed_ids = palloc(sizeof(int64) * Max(n, 1));
	run.caller = CurrentMemoryContext;
	outbox_run_batch_in_xact(run_handlers, &run);
	*last_error = run.last_error;
	*failed_ids = run.failed_ids;
	*n_failed = run.n_failed;
	return run.delivered;
}
