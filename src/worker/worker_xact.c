/*
 * worker_xact.c — one short transaction, with its errors caught.
 *
 * A background worker that hits an ERROR outside a transaction-catching
 * block exits and is restarted five seconds later, losing whatever it held
 * in memory (queued notifications, for one).  Housekeeping and the NOTIFY
 * writer instead run each unit of work through here: the work gets a
 * transaction with an active snapshot, and an ERROR is logged as usual,
 * rolled back, and handed back to the caller as text so it can be shown in
 * runra_obs.worker_status and retried.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "worker/worker_common.h"
#include "worker/worker_xact.h"

/*
 * Cleans up after an ERROR thrown by the work: logs it, rolls back, and
 * returns its message copied into the caller's memory context.
 */
static char *
recover_from_error(MemoryContext caller, int *sqlerrcode)
{
	ErrorData  *edata;
	char	   *message;

	MemoryContextSwitchTo(caller);
	edata = CopyErrorData();
	HOLD_INTERRUPTS();
	EmitErrorReport();
	AbortCurrentTransaction();
	FlushErrorState();
	RESUME_INTERRUPTS();
	message = pstrdup(edata->message ? edata->message : "unknown error");
	if (sqlerrcode)
		*sqlerrcode = edata->sqlerrcode;
	FreeErrorData(edata);
	return message;
}

/*
 * Runs work(arg) in a transaction of its own and commits it.  Returns true
 * when it committed; on an ERROR returns false with *error set to its
 * message (in the caller's memory context, which must not be a transaction
 * context) and *sqlerrcode, if given, to its SQLSTATE.  Must be called
 * outside any transaction.
 */
bool
runra_worker_run_transaction(const char *activity, RunraTransactionWork work,
							 void *arg, char **error, int *sqlerrcode)
{
	MemoryContext caller = CurrentMemoryContext;
	volatile bool committed = true;

	Assert(!IsTransactionState());
	*error = NULL;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		work(arg);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		runra_in_user_code = false;
		*error = recover_from_error(caller, sqlerrcode);
		committed = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return committed;
}

/*
 * Runs work(arg) in a subtransaction of the current transaction.  Returns
 * true when it succeeded; on an ERROR the subtransaction is rolled back
 * (the user and settings it changed with it) and false is returned with
 * *error set to its message in the caller's memory context.
 */
bool
runra_worker_run_subtransaction(RunraTransactionWork work, void *arg, char **error)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	*error = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		work(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		runra_in_user_code = false;
		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		*error = pstrdup(edata->message ? edata->message : "unknown error");
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner;
	return ok;
}

/*
 * Runs work(arg) in the caller's transaction with the statement timeout
 * armed for timeout_ms (0: no limit): a background worker has no statement
 * timer of its own, and user code must not hold one up for ever.  The
 * timer is disarmed however the work ends, and a timeout that fired just
 * as it ended cancels nothing that comes after.
 */
void
runra_worker_call_with_timeout(int timeout_ms, RunraTransactionWork work, void *arg)
{
	if (timeout_ms <= 0)
	{
		work(arg);
		return;
	}
	enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
	PG_TRY();
	{
		work(arg);
	}
	PG_FINALLY();
	{
		disable_timeout(STATEMENT_TIMEOUT, false);
		QueryCancelPending = false;
	}
	PG_END_TRY();
}
