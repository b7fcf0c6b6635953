/*
 * wake.c — runra_obs._forward_wake(): wake the forward worker at commit.
 *
 * The configuration functions (add, change, pause, resume, remove a
 * destination; requeue dead letters) call it.  It registers a transaction
 * callback (once per transaction) that, when the transaction commits, sets
 * the latch of this database's forward worker, so the worker re-reads the
 * destinations at once instead of within the second.  A rolled-back
 * transaction wakes nobody: it changed nothing.
 *
 * The worker is found among the background workers by its type and
 * database; its pid is remembered and checked again before each use, so a
 * restarted worker is found anew.  Nothing here can fail the committing
 * transaction: at worst the worker wakes at its next poll.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"

#include "forward/forward.h"

static bool callback_registered = false;
static bool wake_at_commit = false;
static pid_t worker_pid = 0;

/* Is pid a forward worker serving this database right now? */
static bool
is_forward_worker(pid_t pid)
{
	const char *type;

	if (pid == 0)
		return false;
	type = GetBackgroundWorkerTypeByPid(pid);
	return type != NULL && strcmp(type, FORWARD_WORKER_TYPE) == 0;
}

/* Finds the forward worker connected to this database, or 0. */
static pid_t
find_forward_worker(void)
{
	for (uint32 i = 0; i < ProcGlobal->allProcCount; i++)
	{
		PGPROC	   *proc = &ProcGlobal->allProcs[i];
		pid_t		pid = proc->pid;

		if (pid != 0 && proc->isBackgroundWorker &&
			proc->databaseId == MyDatabaseId && is_forward_worker(pid))
			return pid;
	}
	return 0;
}

/* Sets the forward worker's latch (if it runs). */
static void
wake_worker(void)
{
	PGPROC	   *proc;

	if (!is_forward_worker(worker_pid))
		worker_pid = find_forward_worker();
	if (worker_pid == 0)
		return;
	proc = BackendPidGetProc(worker_pid);
	if (proc != NULL)
		SetLatch(&proc->procLatch);
}

/* At commit, wakes the worker if this transaction queued events. */
static void
forward_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				wake_worker();
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:	/* COMMIT PREPARED: the next poll sees it */
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

PG_FUNCTION_INFO_V1(runra_forward_wake);

/* runra_obs._forward_wake(): wake the forward worker when we commit. */
Datum
runra_forward_wake(PG_FUNCTION_ARGS)
{
	if (!callback_registered)
	{
		RegisterXactCallback(forward_xact_callback, NULL);
		callback_registered = true;
	}
	wake_at_commit = true;
	PG_RETURN_VOID();
}
