/*
 * worker_common.c — the skeleton every runra_obs background worker stands on.
 *
 * Modelled on worker_spi: our own SIGTERM handler (the default one throws
 * FATAL from inside the signal handler, which can unwind through library
 * frames such as libmicrohttpd's), SIGHUP reload, and a per-worker slot in
 * shared memory so runra_obs.worker_status can show what each worker does
 * without asking it.
 */
#include "postgres.h"

#include <signal.h>
#include <sys/resource.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/indexing.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procsignal.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "guc.h"
#include "worker/secret_mask.h"
#include "worker/worker_common.h"
#include "worker/worker_metrics.h"
#include "worker/worker_xact.h"

volatile sig_atomic_t runra_got_sigterm = false;
volatile sig_atomic_t runra_in_user_code = false;
RunraWorkerSlot *MyRunraSlot = NULL;

static RunraWorkerSlot *worker_slots = NULL;

/* Asks the postmaster for room for the worker slots (shmem_request_hook). */
void
runra_worker_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(RunraWorkerSlot) * RUNRA_WORKER_SLOTS));
}

/* Creates or attaches to the worker slots (shmem_startup_hook). */
void
runra_worker_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	worker_slots = ShmemInitStruct("runra_obs worker slots",
								   sizeof(RunraWorkerSlot) * RUNRA_WORKER_SLOTS,
								   &found);
	if (!found)
	{
		memset(worker_slots, 0, sizeof(RunraWorkerSlot) * RUNRA_WORKER_SLOTS);
		for (int i = 0; i < RUNRA_WORKER_SLOTS; i++)
		{
			SpinLockInit(&worker_slots[i].mutex);
			pg_atomic_init_u64(&worker_slots[i].events_ingested, 0);
			pg_atomic_init_u64(&worker_slots[i].events_rejected, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Registers one static background worker.  Workers restart 5 seconds after a
 * crash and start once recovery has finished, so they never try to write on
 * a standby.
 */
void
runra_register_worker(const char *type, const char *function, Datum arg,
					  bool needs_database)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	if (needs_database)
		worker.bgw_flags |= BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "runra_obs");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "runra_obs %s", type);
	snprintf(worker.bgw_type, BGW_MAXLEN, "runra_obs %s", type);
	worker.bgw_main_arg = arg;
	RegisterBackgroundWorker(&worker);
}

/*
 * Sets a flag and the latch: the main loop decides when to stop; while
 * user code runs, it is stopped as a backend would be (die()).
 */
static void
runra_sigterm_handler(SIGNAL_ARGS)
{
	int			save_errno = errno;

	runra_got_sigterm = true;
	if (runra_in_user_code)
	{
		InterruptPending = true;
		ProcDiePending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Installs SIGTERM and SIGHUP handlers and unblocks signals. */
void
runra_worker_setup_signals(void)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, runra_sigterm_handler);
	BackgroundWorkerUnblockSignals();
}

/* How many workers of role hold a slot now (the caller's included). */
static int
workers_running(const char *role)
{
	int			n = 0;

	for (int i = 0; i < RUNRA_WORKER_SLOTS; i++)
	{
		SpinLockAcquire(&worker_slots[i].mutex);
		n += worker_slots[i].pid != 0 && strcmp(worker_slots[i].role, role) == 0;
		SpinLockRelease(&worker_slots[i].mutex);
	}
	return n;
}

/* Frees the slot when the worker exits, however it exits. */
static void
release_slot(int code, Datum arg)
{
	RunraWorkerSlot *slot = MyRunraSlot;

	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	slot->pid = 0;
	SpinLockRelease(&slot->mutex);
	MyRunraSlot = NULL;
}

/*
 * Every worker runs as a superuser, so nothing it runs may be found on a
 * search_path someone else can write to: its own SQL is schema-qualified,
 * and pg_catalog comes before everything else (pg_temp last, so not even a
 * temporary table can shadow a table of ours).  A handler may change it
 * for the duration of its own call only (handler.c).
 */
static void
pin_search_path(void)
{
	SetConfigOption("search_path", RUNRA_WORKER_SEARCH_PATH, PGC_SUSET, PGC_S_SESSION);
}

/*
 * Citus relays the messages its connections receive from workers as
 * messages of the same level in this process, a worker's "FATAL:
 * terminating connection due to unexpected postmaster exit" included: one
 * Citus worker killed would end every runra_obs worker that was talking to
 * it (t/073).  Our workers report the errors of their statements, which
 * Citus raises as errors; its relayed notices they do without.  (Where
 * Citus is not loaded this only makes a placeholder setting.)
 */
static void
mute_citus_worker_messages(void)
{
	SetConfigOption("citus.worker_min_messages", "off", PGC_USERSET, PGC_S_SESSION);
}

/*
 * Takes a free status slot for this worker (there are always enough), and
 * pins the worker's search_path.  Called right after connecting.
 */
void
runra_worker_attach(const char *role)
{
	pin_search_path();
	mute_citus_worker_messages();
	for (int i = 0; i < RUNRA_WORKER_SLOTS; i++)
	{
		RunraWorkerSlot *slot = &worker_slots[i];
		bool		taken = false;

		SpinLockAcquire(&slot->mutex);
		if (slot->pid == 0)
		{
			slot->pid = MyProcPid;
			strlcpy(slot->role, role, sizeof(slot->role));
			strlcpy(slot->state, "starting", sizeof(slot->state));
			slot->started_at = GetCurrentTimestamp();
			slot->last_error[0] = '\0';
			slot->last_error_at = 0;
			slot->last_maintenance[0] = '\0';
			slot->last_maintenance_at = 0;
			taken = true;
		}
		SpinLockRelease(&slot->mutex);
		if (taken)
		{
			pg_atomic_write_u64(&slot->events_ingested, 0);
			pg_atomic_write_u64(&slot->events_rejected, 0);
			MyRunraSlot = slot;
			on_shmem_exit(release_slot, (Datum) 0);
			worker_metrics_count_start(role, workers_running(role));
			return;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("no free runra_obs worker status slot"),
			 errdetail("At most %d runra_obs workers can run at once.", RUNRA_WORKER_SLOTS)));
}

/*
 * The version of runra_obs installed in the connected database, copied into
 * buf, or false when it is not installed.  Call inside a transaction.
 */
static bool
installed_version(char *buf, size_t len)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("runra_obs"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		version = heap_getattr(tuple, Anum_pg_extension_extversion,
										   RelationGetDescr(rel), &isnull);

		strlcpy(buf, isnull ? "" : TextDatumGetCString(version), len);
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Is this node a Citus worker?  There the coordinator does runra_obs's work
 * (ingest, maintenance, consumers, alerts: extension/parts/90_citus.sql);
 * a worker's own background work would write to shells no query reads.
 * Call inside a transaction, with the extension installed.
 */
static bool
on_citus_worker(void)
{
	bool		worker = false;
	bool		isnull;

	if (!OidIsValid(get_extension_oid("citus", true)))
		return false;
	SPI_connect();
	if (SPI_execute("SELECT runra_obs.citus_node_role() = 'worker'", true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		worker = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull)) && !isnull;
	SPI_finish();
	return worker;
}

/* What extension_is_ready() found, in one transaction. */
typedef struct Readiness
{
	char	   *version;		/* the installed version, "" if none */
	size_t		len;
	bool		installed;
	bool		current;		/* installed at this library's version */
	bool		citus_worker;	/* asked only then: older schemas lack the function */
} Readiness;

static void
read_readiness(void *arg)
{
	Readiness  *found = (Readiness *) arg;

	found->installed = installed_version(found->version, found->len);
	found->current = found->installed && strcmp(found->version, RUNRA_OBS_VERSION) == 0;
	found->citus_worker = found->current && on_citus_worker();
}

/*
 * Is the database ready for this library?  The extension must be installed
 * at the library's own version: after a new runra_obs.so is installed and
 * the server restarted, the SQL objects stay at the old version until
 * ALTER EXTENSION runra_obs UPDATE, and a worker that ran on them would fail
 * on every query that touches what changed.  Sets *waiting_for to what is
 * missing, or to NULL when nothing is but this node is a Citus worker.
 * One short transaction; an error in it (a catalog being changed under
 * it) counts as not ready yet.
 */
static bool
extension_is_ready(const char **waiting_for, char *version, size_t len)
{
	Readiness	found = {.version = version, .len = len};
	char	   *error;

	version[0] = '\0';
	*waiting_for = "CREATE EXTENSION runra_obs";
	if (!runra_worker_run_transaction("runra_obs: checking the extension",
									  read_readiness, &found, &error, NULL))
	{
		ereport(LOG, (errmsg("runra_obs worker could not check the extension: %s", error)));
		pfree(error);
		return false;
	}
	if (!found.installed)
		return false;
	if (!found.current)
	{
		*waiting_for = "ALTER EXTENSION runra_obs UPDATE";
		return false;
	}
	if (found.citus_worker)
	{
		*waiting_for = NULL;
		return false;
	}
	return true;
}

/*
 * Waits until runra_obs.database has the extension at the library's
 * version, saying so once in the log (and in worker_status) rather than
 * crash-looping; on a Citus worker, waits for good (idle).  Returns false when SIGTERM arrived first.
 */
bool
runra_worker_wait_for_extension(void)
{
	const char *logged = NULL;

	while (!runra_got_sigterm)
	{
		const char *waiting_for;
		char		version[NAMEDATALEN];
		char		state[RUNRA_STATUS_TEXT];
		long		nap;

		if (extension_is_ready(&waiting_for, version, sizeof(version)))
			return true;
		if (waiting_for == NULL)
		{
			runra_worker_set_state("idle (a Citus worker: runra_obs works on the coordinator)");
			nap = 10000L;
		}
		else
		{
			if (logged != waiting_for)
				ereport(LOG,
						(errmsg("runra_obs worker waiting for %s in database \"%s\"",
								waiting_for, runra_database),
						 version[0] ?
						 errdetail("The database has runra_obs %s; the library is %s.",
								   version, RUNRA_OBS_VERSION) :
						 errdetail("The library is runra_obs %s.", RUNRA_OBS_VERSION)));
			logged = waiting_for;
			snprintf(state, sizeof(state), "waiting for %s", waiting_for);
			runra_worker_set_state(state);
			nap = 1000L;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		runra_worker_absorb_barriers();
		runra_worker_reload_if_needed();
	}
	return false;
}

/*
 * Answers what other backends wait for us to do, without the ERROR that a
 * full CHECK_FOR_INTERRUPTS may throw: a ProcSignalBarrier (DROP DATABASE,
 * ALTER DATABASE SET TABLESPACE ...) waits until every process has absorbed
 * it, so a worker that sleeps without absorbing it hangs those commands.
 * Call it after every wait.
 */
void
runra_worker_absorb_barriers(void)
{
	if (ProcSignalBarrierPending)
		ProcessProcSignalBarrier();
}

/*
 * Gives the calling worker the CPU niceness nice (0 to 19).  Raising it is
 * always allowed; lowering it again needs privileges a server seldom has.
 * Returns false when only a new process can get closer: one the postmaster
 * forks starts at the postmaster's niceness, and below that nobody gets
 * (a warning says so, once, and the worker stays where it is).
 */
bool
runra_worker_set_nice(int nice)
{
	static int	warned_for = -1;
	int			current;
	int			failure;

	errno = 0;
	current = getpriority(PRIO_PROCESS, 0);
	if ((current == nice && errno == 0) || setpriority(PRIO_PROCESS, 0, nice) == 0)
		return true;
	failure = errno;
	if (failure == EACCES || failure == EPERM)
	{
		int			postmaster;

		errno = 0;
		postmaster = getpriority(PRIO_PROCESS, PostmasterPid);
		if (errno == 0 && current > postmaster)
			return false;
	}
	if (warned_for != nice)
		ereport(WARNING,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("runra_obs could not set the niceness of this worker to %d: %s",
						nice, strerror(failure)),
				 errdetail("It stays at %d (below the postmaster's niceness only a privileged process can go).",
						   current)));
	warned_for = nice;
	return true;
}

/* Re-reads postgresql.conf after SIGHUP. */
void
runra_worker_reload_if_needed(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* Shows what the worker is doing in worker_status and pg_stat_activity. */
void
runra_worker_set_state(const char *state)
{
	if (MyRunraSlot == NULL)
		return;
	SpinLockAcquire(&MyRunraSlot->mutex);
	strlcpy(MyRunraSlot->state, state, sizeof(MyRunraSlot->state));
	SpinLockRelease(&MyRunraSlot->mutex);
	pgstat_report_activity(STATE_RUNNING, state);
}

/*
 * Remembers the last error for worker_status, which runra_obs_reader
 * reads: credentials it may quote (a URL, a remote answer) are masked,
 * before it is cut to fit.
 */
void
runra_worker_report_error(const char *message)
{
	char	   *masked;

	if (MyRunraSlot == NULL)
		return;
	masked = secret_mask(message, NIL);
	SpinLockAcquire(&MyRunraSlot->mutex);
	strlcpy(MyRunraSlot->last_error, masked, sizeof(MyRunraSlot->last_error));
	MyRunraSlot->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&MyRunraSlot->mutex);
}

/* Remembers the outcome of the last maintenance run for worker_status (masked as errors are). */
void
runra_worker_report_maintenance(const char *summary, bool failed)
{
	char	   *masked;

	if (MyRunraSlot == NULL)
		return;
	masked = secret_mask(summary, NIL);
	SpinLockAcquire(&MyRunraSlot->mutex);
	strlcpy(MyRunraSlot->last_maintenance, masked, sizeof(MyRunraSlot->last_maintenance));
	MyRunraSlot->last_maintenance_at = GetCurrentTimestamp();
	SpinLockRelease(&MyRunraSlot->mutex);
	if (failed)
		runra_worker_report_error(summary);
}

/* Adds to the worker's event counters (committed events only). */
void
runra_worker_count_events(uint64 ingested, uint64 rejected)
{
	if (MyRunraSlot == NULL)
		return;
	pg_atomic_fetch_add_u64(&MyRunraSlot->events_ingested, ingested);
	pg_atomic_fetch_add_u64(&MyRunraSlot->events_rejected, rejected);
}

static Datum
timestamp_or_null(TimestampTz ts, bool *isnull)
{
	*isnull = (ts == 0);
	return TimestampTzGetDatum(ts);
}

static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = (s[0] == '\0');
	return *isnull ? (Datum) 0 : CStringGetTextDatum(s);
}

/* Copies one slot under its lock and turns it into a result row. */
static void
emit_slot_row(Tuplestorestate *store, TupleDesc desc, RunraWorkerSlot *shared)
{
	RunraWorkerSlot copy;
	Datum		values[10];
	bool		nulls[10] = {0};

	SpinLockAcquire(&shared->mutex);
	memcpy(&copy, shared, sizeof(copy));
	SpinLockRelease(&shared->mutex);
	if (copy.pid == 0)
		return;
	values[0] = Int32GetDatum(copy.pid);
	values[1] = CStringGetTextDatum(copy.role);
	values[2] = CStringGetTextDatum(copy.state);
	values[3] = timestamp_or_null(copy.started_at, &nulls[3]);
	values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&shared->events_ingested));
	values[5] = Int64GetDatum((int64) pg_atomic_read_u64(&shared->events_rejected));
	values[6] = text_or_null(copy.last_error, &nulls[6]);
	values[7] = timestamp_or_null(copy.last_error_at, &nulls[7]);
	values[8] = timestamp_or_null(copy.last_maintenance_at, &nulls[8]);
	values[9] = text_or_null(copy.last_maintenance, &nulls[9]);
	tuplestore_putvalues(store, desc, values, nulls);
}

PG_FUNCTION_INFO_V1(runra_worker_status);

/* runra_obs.worker_status(): one row per running runra_obs worker. */
Datum
runra_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (worker_slots == NULL)
		PG_RETURN_VOID();		/* not preloaded: no workers */
	for (int i = 0; i < RUNRA_WORKER_SLOTS; i++)
		emit_slot_row(rsinfo->setResult, rsinfo->setDesc, &worker_slots[i]);
	PG_RETURN_VOID();
}
