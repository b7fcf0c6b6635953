/*
 * watermark.c — the safe watermark of runra_obs.sandbox_events.
 *
 * An event's id comes from sandbox_events_id_seq while its transaction
 * holds a lock on the table it inserts into: RowExclusiveLock on the parent
 * for every way in (the store's COPY, INSERT, the SDK's batches) and on a
 * partition for a direct INSERT into one.  So:
 *
 *   1. read the sequence's last value W: every id <= W is handed out;
 *   2. note the transactions then holding a write lock on the parent or on
 *      any partition (GetLockConflicts, as CREATE INDEX CONCURRENTLY does);
 *   3. once each of them has ended (VirtualXactLock), every event with an id
 *      <= W that will ever be visible is visible: W is safe.
 *
 * This waits on top-level virtual transactions, not xids, so savepoints and
 * rolled-back subtransactions need nothing special; an aborted insert simply
 * never shows.  The sequence must hand out ids one at a time (CACHE 1): a
 * backend holding cached ids could use one below W long after step 2.  That
 * is checked on every probe.  Ids set by hand (a superuser's INSERT with an
 * explicit id; writers may not set it) are not covered.
 *
 * On Citus (sandbox_events distributed) the rows of a coordinator's
 * transaction live on the workers, prepared there before the coordinator
 * commits.  Citus sends COMMIT PREPARED before the transaction lets go of
 * its locks, so step 3 normally covers them; but when a worker is lost at
 * that moment they stay prepared, and invisible, until Citus recovers them.
 * So on Citus a step 4: the transactions committed on the coordinator and
 * still prepared on a worker at that point must be gone before W is safe
 * (runra_obs._citus_commits_in_doubt(); later ones are ignored, so a steady
 * stream of commits cannot hold it back, and a worker that does not answer
 * holds it back until it does).
 *
 * Steps 3 and 4 are polled, not waited on, so a consumer's loop keeps its
 * latch and its SIGTERM while a long transaction holds the watermark back.  Autovacuum
 * and VACUUM hold ShareUpdateExclusiveLock, which conflicts with the mode we
 * ask about, but insert nothing: they are skipped.
 *
 * A probe whose own transaction has written (and so may hold ids <= W that
 * are not committed) uses W for itself only; every other result is published
 * in shared memory, with a short history of when each value became safe,
 * from which consumers' lag in seconds is read.
 *
 * Ids are a database's own: every database with the extension has its own
 * sequence, and a re-created extension starts again at 1.  So what is
 * published belongs to one sequence of one database, the one the workers
 * serve (runra_obs.database); anywhere else (fold_rollups() in another
 * database) every probe waits for its own writers and publishes nothing.
 * A watermark read from another database's sequence would move a cursor
 * past ids not yet handed out here, and those events would never be read.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/sinvaladt.h"
#include "storage/spin.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/syscache.h"

#include "consume/watermark.h"
#include "guc.h"
#include "store/event_citus.h"
#include "store/relation.h"

#define WATERMARK_HISTORY 512
#define WATERMARK_CONSUMERS 64

/* A consumer's position as its worker last reported it (for /metrics). */
typedef struct ConsumerReport
{
	char		name[NAMEDATALEN];	/* "" when the slot is free */
	int64		position;
} ConsumerReport;

/* What every process sees: the newest safe value and when values became safe. */
typedef struct WatermarkShared
{
	slock_t		mutex;
	Oid			database;		/* the database of that sequence */
	Oid			sequence;		/* the id sequence these values are of */
	int64		safe;
	int			next;			/* next slot of the history ring */
	int64		history_value[WATERMARK_HISTORY];
	TimestampTz history_at[WATERMARK_HISTORY];
	ConsumerReport consumers[WATERMARK_CONSUMERS];
} WatermarkShared;

static WatermarkShared *shared = NULL;

/* Asks for room for the shared watermark (shmem_request_hook). */
void
watermark_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(WatermarkShared)));
}

/* Creates or attaches to the shared watermark (shmem_startup_hook). */
void
watermark_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("runra_obs watermark", sizeof(WatermarkShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(WatermarkShared));
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The id sequence's last value (0 before the first id), after checking that
 * it hands out ids one at a time and in increasing order.
 */
static int64
sequence_last_value(Oid seqoid)
{
	HeapTuple	tuple = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqoid));
	Form_pg_sequence seq;
	LOCAL_FCINFO(fcinfo, 1);
	Datum		value;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for sequence %u", seqoid);
	seq = (Form_pg_sequence) GETSTRUCT(tuple);
	if (seq->seqcache != 1 || seq->seqincrement <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("runra_obs.sandbox_events_id_seq must count up with CACHE 1"),
				 errdetail("It has INCREMENT %lld and CACHE %lld; consumers of the event log rely on ids being handed out one at a time, in order.",
						   (long long) seq->seqincrement, (long long) seq->seqcache),
				 errhint("ALTER SEQUENCE runra_obs.sandbox_events_id_seq INCREMENT 1 CACHE 1;")));
	ReleaseSysCache(tuple);

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seqoid);
	fcinfo->args[0].isnull = false;
	value = pg_sequence_last_value(fcinfo);
	return fcinfo->isnull ? 0 : DatumGetInt64(value);
}

/* Whether the transaction vxid belongs to a (auto)vacuum, which never inserts. */
static bool
is_vacuum(VirtualTransactionId vxid)
{
	PGPROC	   *proc;

	if (vxid.backendId == InvalidBackendId)
		return false;			/* a prepared transaction */
	proc = BackendIdGetProc(vxid.backendId);
	return proc != NULL && proc->lxid == vxid.localTransactionId
		&& (proc->statusFlags & (PROC_IS_AUTOVACUUM | PROC_IN_VACUUM)) != 0;
}

/*
 * Notes in the probe every transaction now holding a lock on sandbox_events
 * or one of its partitions that a writer would hold.
 */
static void
note_writers(WatermarkProbe *probe)
{
	Oid			parent = runra_relation_oid("sandbox_events");
	List	   *relations = find_all_inheritors(parent, NoLock, NULL);
	ListCell   *lc;
	int			capacity = 16;

	probe->nwaiting = 0;
	probe->waiting = MemoryContextAlloc(probe->cxt, capacity * sizeof(VirtualTransactionId));
	foreach(lc, relations)
	{
		LOCKTAG		tag;
		VirtualTransactionId *holders;

		SET_LOCKTAG_RELATION(tag, MyDatabaseId, lfirst_oid(lc));
		holders = GetLockConflicts(&tag, ShareLock, NULL);
		for (; VirtualTransactionIdIsValid(*holders); holders++)
		{
			if (is_vacuum(*holders))
				continue;
			if (probe->nwaiting == capacity)
			{
				capacity *= 2;
				probe->waiting = repalloc(probe->waiting, capacity * sizeof(VirtualTransactionId));
			}
			probe->waiting[probe->nwaiting++] = *holders;
		}
	}
	list_free(relations);
}

/* Drops from the probe the transactions that have ended; true when none is left. */
static bool
writers_ended(WatermarkProbe *probe, bool wait)
{
	int			left = 0;

	for (int i = 0; i < probe->nwaiting; i++)
		if (!VirtualXactLock(probe->waiting[i], wait))
			probe->waiting[left++] = probe->waiting[i];
	probe->nwaiting = left;
	return left == 0;
}

/*
 * Step 4 (Citus): true once none of the commits in doubt seen at the first
 * check is still in doubt (the two sets compared as arrays, in SQL); false
 * while one is, or while a worker does not answer.  Always true without
 * Citus.
 */
static bool
citus_commits_settled(WatermarkProbe *probe)
{
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		args[1];
	Datum		value;
	bool		isnull;
	bool		settled;

	if (!probe->citus)
		return true;
	SPI_connect();
	if (probe->doubt == NULL)
		(void) SPI_execute("SELECT runra_obs._citus_commits_in_doubt()", true, 1);
	else
	{
		args[0] = PointerGetDatum(probe->doubt);
		(void) SPI_execute_with_args("SELECT runra_obs._citus_commits_in_doubt() OPERATOR(pg_catalog.&&) $1",
									 1, argtypes, args, NULL, true, 1);
	}
	if (SPI_processed != 1)
		elog(ERROR, "runra_obs._citus_commits_in_doubt() did not answer");
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		settled = false;
	else if (probe->doubt != NULL)
		settled = !DatumGetBool(value);
	else
	{
		MemoryContext caller = MemoryContextSwitchTo(probe->cxt);

		probe->doubt = DatumGetArrayTypePCopy(value);
		MemoryContextSwitchTo(caller);
		settled = ArrayGetNItems(ARR_NDIM(probe->doubt), ARR_DIMS(probe->doubt)) == 0;
	}
	SPI_finish();
	return settled;
}

/*
 * The sequence whose watermark is shared, when this backend's database is
 * the one the workers serve; InvalidOid elsewhere.  Outside a transaction
 * (/metrics, a worker's status line) the catalog cannot be read: the last
 * claim counts if it was made from this database.
 */
static Oid
shared_sequence(void)
{
	static Oid	checked_database = InvalidOid;
	static bool serves = false;

	if (shared == NULL)
		return InvalidOid;
	if (!IsTransactionState())
	{
		Oid			sequence;

		SpinLockAcquire(&shared->mutex);
		sequence = shared->database == MyDatabaseId ? shared->sequence : InvalidOid;
		SpinLockRelease(&shared->mutex);
		return sequence;
	}
	if (checked_database != MyDatabaseId)
	{
		char	   *name = get_database_name(MyDatabaseId);

		serves = name != NULL && runra_database != NULL && strcmp(name, runra_database) == 0;
		checked_database = MyDatabaseId;
	}
	return serves ? runra_relation_oid("sandbox_events_id_seq") : InvalidOid;
}

/* Forgets what was published of another sequence (a re-created extension). */
static void
claim_shared(Oid sequence)
{
	if (shared->sequence == sequence && shared->database == MyDatabaseId)
		return;
	shared->database = MyDatabaseId;
	shared->sequence = sequence;
	shared->safe = 0;
	shared->next = 0;
	memset(shared->history_value, 0, sizeof(shared->history_value));
	memset(shared->history_at, 0, sizeof(shared->history_at));
}

/* Makes value the published watermark if it is newer. */
static void
publish(int64 value)
{
	TimestampTz now = GetCurrentTimestamp();
	Oid			sequence;

	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		return;
	if (!OidIsValid(sequence = shared_sequence()))
		return;
	SpinLockAcquire(&shared->mutex);
	claim_shared(sequence);
	if (value > shared->safe)
	{
		shared->safe = value;
		shared->history_value[shared->next] = value;
		shared->history_at[shared->next] = now;
		shared->next = (shared->next + 1) % WATERMARK_HISTORY;
	}
	SpinLockRelease(&shared->mutex);
}

/* Prepares a probe whose lists live in cxt (a long-lived context). */
void
watermark_probe_init(WatermarkProbe *probe, MemoryContext cxt)
{
	memset(probe, 0, sizeof(*probe));
	probe->cxt = cxt;
}

/* Starts a probe: the sequence's value now, and the writers running now. */
static void
start_probe(WatermarkProbe *probe)
{
	probe->sequence = runra_relation_oid("sandbox_events_id_seq");
	probe->candidate = sequence_last_value(probe->sequence);
	if (probe->waiting)
		pfree(probe->waiting);
	note_writers(probe);
	probe->citus = events_are_distributed();
	if (probe->doubt)
		pfree(probe->doubt);
	probe->doubt = NULL;
	probe->active = true;
}

/*
 * Publishes the probe's value if its writers have ended (and, on Citus,
 * their commits are done on the workers); true if so.
 */
static bool
finish_probe(WatermarkProbe *probe, int64 *known)
{
	/*
	 * A probe begun before the extension was dropped and created again read
	 * the old sequence: its value says nothing of the new one's ids (it let
	 * the new rollup consumer skip every event below it, never folded).
	 */
	if (probe->sequence != runra_relation_oid("sandbox_events_id_seq"))
	{
		probe->active = false;
		return true;
	}
	if (!writers_ended(probe, false))
		return false;
	if (probe->candidate > *known && !citus_commits_settled(probe))
		return false;
	probe->active = false;
	publish(probe->candidate);
	*known = Max(*known, probe->candidate);
	return true;
}

/*
 * One step of the watermark, without waiting: finishes the running probe if
 * its writers have ended, then starts the next one (finished at once when
 * nobody is writing).  So with writers always busy, the watermark trails
 * the sequence by one call.  Returns the newest safe watermark known (the
 * published one, or this probe's).  Call inside a transaction, as often as
 * a consumer ticks.
 */
int64
watermark_advance(WatermarkProbe *probe)
{
	int64		known = watermark_published();

	if (probe->active && !finish_probe(probe, &known))
		return known;
	start_probe(probe);
	(void) finish_probe(probe, &known);
	return known;
}

/*
 * A safe watermark now, waiting for the writers (interruptible, as any lock
 * wait) and on Citus for commits in doubt on the workers (polled; with a
 * worker down, until it is back and Citus has recovered them).  For SQL
 * callers: runra_obs.safe_watermark(), fold_rollups().
 */
int64
watermark_compute_blocking(void)
{
	WatermarkProbe probe;

	watermark_probe_init(&probe, CurrentMemoryContext);
	start_probe(&probe);
	writers_ended(&probe, true);
	while (!citus_commits_settled(&probe))
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	publish(probe.candidate);
	return Max(probe.candidate, watermark_published());
}

/*
 * The published watermark: 0 if none, without shared memory, or when it is
 * not of this database's sequence.
 */
int64
watermark_published(void)
{
	int64		value = 0;
	Oid			sequence = shared_sequence();

	if (!OidIsValid(sequence))
		return 0;
	SpinLockAcquire(&shared->mutex);
	if (shared->sequence == sequence)
		value = shared->safe;
	SpinLockRelease(&shared->mutex);
	return value;
}

/*
 * When the events just after position became safe to read: the time of the
 * first published value above it (the oldest one kept, if they all are);
 * 0 when none is, that is when nothing after position is safe yet.  A
 * consumer at position has been behind since then.
 */
TimestampTz
watermark_passed_at(int64 position)
{
	TimestampTz at = 0;
	Oid			sequence = shared_sequence();

	if (!OidIsValid(sequence))
		return 0;
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < WATERMARK_HISTORY && shared->sequence == sequence; i++)
	{
		int			slot = (shared->next + i) % WATERMARK_HISTORY;

		if (shared->history_at[slot] != 0 && shared->history_value[slot] > position)
		{
			at = shared->history_at[slot];
			break;
		}
	}
	SpinLockRelease(&shared->mutex);
	return at;
}

/*
 * How long the events after position have been safe to read and not
 * consumed, in seconds, by a consumer that sees `watermark`: 0 when it is
 * caught up.  The one rule behind consumer_status, forward_status,
 * worker_status and /metrics.
 */
double
watermark_seconds_behind(int64 position, int64 watermark)
{
	TimestampTz since;

	if (watermark <= position || (since = watermark_passed_at(position)) == 0)
		return 0;
	return (double) (GetCurrentTimestamp() - since) / USECS_PER_SEC;
}

/*
 * Records where a consumer (by name: rollups, destination:<id>) stands, for
 * /metrics; called by its worker after each move.  Positions only grow, so
 * a stale report is merely a little behind.
 */
void
watermark_report_position(const char *name, int64 position)
{
	int			free_slot = -1;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < WATERMARK_CONSUMERS; i++)
	{
		if (strcmp(shared->consumers[i].name, name) == 0)
		{
			shared->consumers[i].position = position;
			SpinLockRelease(&shared->mutex);
			return;
		}
		if (free_slot < 0 && shared->consumers[i].name[0] == '\0')
			free_slot = i;
	}
	if (free_slot >= 0)
	{
		strlcpy(shared->consumers[free_slot].name, name, NAMEDATALEN);
		shared->consumers[free_slot].position = position;
	}
	SpinLockRelease(&shared->mutex);
}

/* Forgets a consumer that no longer exists (a removed destination). */
void
watermark_forget_consumer(const char *name)
{
	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < WATERMARK_CONSUMERS; i++)
		if (strcmp(shared->consumers[i].name, name) == 0)
			shared->consumers[i].name[0] = '\0';
	SpinLockRelease(&shared->mutex);
}

/* The watermark and each reported consumer's lag, in Prometheus text. */
void
watermark_append_metrics(StringInfo out)
{
	ConsumerReport reports[WATERMARK_CONSUMERS];
	int64		safe;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	safe = shared->safe;
	memcpy(reports, shared->consumers, sizeof(reports));
	SpinLockRelease(&shared->mutex);
	appendStringInfo(out, "# HELP runra_obs_safe_watermark Event id below which every event that will be visible is visible\n"
					 "# TYPE runra_obs_safe_watermark gauge\nrunra_obs_safe_watermark " INT64_FORMAT "\n", safe);
	appendStringInfoString(out, "# HELP runra_obs_consumer_lag_ids Event ids between a consumer's position and the watermark\n"
						   "# TYPE runra_obs_consumer_lag_ids gauge\n");
	for (int i = 0; i < WATERMARK_CONSUMERS; i++)
		if (reports[i].name[0] != '\0')
			appendStringInfo(out, "runra_obs_consumer_lag_ids{consumer=\"%s\"} " INT64_FORMAT "\n",
							 reports[i].name, Max(safe - reports[i].position, 0));
	appendStringInfoString(out, "# HELP runra_obs_consumer_lag_seconds How long the events after a consumer's position have been safe to read\n"
						   "# TYPE runra_obs_consumer_lag_seconds gauge\n");
	for (int i = 0; i < WATERMARK_CONSUMERS; i++)
		if (reports[i].name[0] != '\0')
			appendStringInfo(out, "runra_obs_consumer_lag_seconds{consumer=\"%s\"} %.3f\n", reports[i].name,
							 watermark_seconds_behind(reports[i].position, safe));
}
