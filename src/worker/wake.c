/*
 * wake.c — waking a worker of this database when the calling transaction
 * commits: runra_obs._forward_wake() and runra_obs._alert_wake().
 *
 * The configuration functions (destinations, alert rules, contact points,
 * requeues) call them.  A transaction callback (registered once) sets, at
 * commit, the latch of each worker type the transaction asked for, so the
 * worker re-reads its configuration at once instead of at its next poll.
 * A rolled-back transaction wakes nobody: it changed nothing.
 *
 * A worker is found among the background workers by its type and
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

#include "worker/worker_common.h"

/* The workers a configuration change may wake. */
typedef struct WakeTarget
{
	const char *type;			/* bgw_type */
	pid_t		pid;			/* last seen; checked before each use */
	bool		at_commit;		/* this transaction asked to wake it */
} WakeTarget;

static WakeTarget targets[] = {
	{RUNRA_FORWARD_WORKER_TYPE, 0, false},
	{RUNRA_ALERT_WORKER_TYPE, 0, false},
};

static bool callback_registered = false;

/* Is pid a worker of this type right now? */
static bool
is_worker(pid_t pid, const char *type)
{
	const char *actual;

	if (pid == 0)
		return false;
	actual = GetBackgroundWorkerTypeByPid(pid);
	return actual != NULL && strcmp(actual, type) == 0;
}

/* Finds the worker of this type connected to this database, or 0. */
static pid_t
find_worker(const char *type)
{
	for (uint32 i = 0; i < ProcGlobal->allProcCount; i++)
	{
		PGPROC	   *proc = &ProcGlobal->allProcs[i];
		pid_t		pid = proc->pid;

		if (pid != 0 && proc->isBackgroundWorker &&
			proc->databaseId == MyDatabaseId && is_worker(pid, type))
			return pid;
	}
	return 0;
}

/* Sets a worker's latch (if it runs). */
static void
wake_worker(WakeTarget *target)
{
	PGPROC	   *proc;

	if (!is_worker(target->pid, target->type))
		target->pid = find_worker(target->type);
	if (target->pid == 0)
		return;
	proc = BackendPidGetProc(target->pid);
	if (proc != NULL)
		SetLatch(&proc->procLatch);
}

/* At commit, wakes the workers this transaction asked for. */
static void
wake_xact_callback(XactEvent event, void *arg)
{
	for (int i = 0; i < lengthof(targets); i++)
	{
		if (targets[i].at_commit &&
			(event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT))
			wake_worker(&targets[i]);
		/* COMMIT PREPARED: the next poll sees it */
		if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
			event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			event == XACT_EVENT_PREPARE)
			targets[i].at_commit = false;
	}
}

/* Asks for target `i` to be woken when the transaction commits. */
static void
wake_at_commit(int i)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		callback_registered = true;
	}
	targets[i].at_commit = true;
}

PG_FUNCTION_INFO_V1(runra_forward_wake);

/* runra_obs._forward_wake(): wake the forward worker when we commit. */
Datum
runra_forward_wake(PG_FUNCTION_ARGS)
{
	wake_at_commit(0);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(runra_alert_wake);

/* runra_obs._alert_wake(): wake the alert worker when we commit. */
Datum
runra_alert_wake(PG_FUNCTION_ARGS)
{
	wake_at_commit(1);
	PG_RETURN_VOID();
}
