/*
 * outbox.c — the forward worker's side of runra_obs.outbox.
 *
 * Each function here is one short transaction: read the destinations and
 * how much each has queued, fetch a batch, acknowledge what a destination
 * accepted, record a failure (and dead-letter what is past its limit).  No
 * transaction is ever open while the worker waits on the network.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "forward/forward.h"

/*
 * The destinations with their settings and a look at the head of each queue.
 * Nothing here may fail on a value the option checks let through (such as
 * maxFileSizeMb 1e13): an ERROR would stop every destination.
 */
static const char *const load_sql =
"SELECT d.id, d.name, d.provider, d.enabled, d.batch_size, d.flush_interval_ms,"
"       d.max_retry_ms, d.timeout_ms,"
"       CASE d.provider"
"         WHEN 'axiom' THEN rtrim(coalesce(d.settings->>'url', 'https://api.axiom.co'), '/')"
"                           || '/v1/datasets/' || (d.settings->>'dataset') || '/ingest'"
"         WHEN 'otel' THEN CASE WHEN rtrim(d.settings->>'endpoint', '/') LIKE '%/v1/traces'"
"                               THEN rtrim(d.settings->>'endpoint', '/')"
"                               ELSE rtrim(d.settings->>'endpoint', '/') || '/v1/traces' END"
"       END,"
"       d.secrets->>'token',"
"       (SELECT string_agg(h.key || ': ' || h.value, E'\\n')"
"        FROM jsonb_each_text(d.secrets->'headers') AS h),"
"       d.settings->'resourceAttributes',"
"       d.settings->>'filePath',"
"       least(coalesce((d.settings->>'maxFileSizeMb')::numeric, 100) * 1048576, 9e18)::bigint,"
"       coalesce((d.settings->>'maxFiles')::int, 10),"
"       d.handler::oid,"
"       d.handler_role::oid,"
"       q.queued, q.oldest"
" FROM runra_obs.destinations AS d"
" CROSS JOIN LATERAL ("
"     SELECT count(*)::int AS queued, min(h.queued_at) AS oldest"
"     FROM (SELECT o.queued_at FROM runra_obs.outbox AS o"
"           WHERE o.destination_id = d.id ORDER BY o.event_id LIMIT d.batch_size) AS h) AS q"
" ORDER BY d.id";

/* The head of one destination's queue with the events it points at. */
static const char *const fetch_sql =
"SELECT o.event_id, o.created_at, o.queued_at, o.sandbox_id,"
"       e.event_type, e.data, e.trace_id, md5(o.sandbox_id)"
" FROM (SELECT * FROM runra_obs.outbox"
"       WHERE destination_id = $1 ORDER BY event_id LIMIT $5) AS o"
" LEFT JOIN runra_obs.sandbox_events AS e"
"   ON e.sandbox_id = o.sandbox_id AND e.created_at = o.created_at AND e.id = o.event_id"
" ORDER BY o.event_id";

static const char *const ack_sql =
"WITH gone AS (DELETE FROM runra_obs.outbox"
"              WHERE destination_id = $1 AND event_id = ANY ($2) RETURNING 1)"
" UPDATE runra_obs.forward_counters"
" SET sent = sent + (SELECT count(*) FROM gone), last_success = now()"
" WHERE destination_id = $1";

static const char *const count_failure_sql =
"UPDATE runra_obs.forward_counters"
" SET failed = failed + $5, last_error = $3, last_error_at = now()"
" WHERE destination_id = $1";

static const char *const attempt_sql =
"UPDATE runra_obs.outbox SET attempts = attempts + 1, last_error = $3"
" WHERE destination_id = $1 AND event_id = ANY ($2)";

/*
 * Moves events to the dead letters: all of them ($4 = 0: a permanent
 * failure, or max_retry_ms 0) or those queued longer than $4 ms.  The age
 * is compared in milliseconds: now() - $4 ms is out of range for a large
 * max_retry_ms (any bigint is allowed), and that ERROR would stop the worker.
 */
static const char *const dead_letter_sql =
"WITH gone AS ("
"    DELETE FROM runra_obs.outbox"
"    WHERE destination_id = $1 AND event_id = ANY ($2)"
"      AND ($4 = 0 OR extract(epoch FROM now() - queued_at) * 1000 > $4)"
"    RETURNING *)"
" INSERT INTO runra_obs.dead_letters AS l"
"     (destination_id, event_id, created_at, sandbox_id, queued_at, attempts, error)"
" SELECT destination_id, event_id, created_at, sandbox_id, queued_at, attempts,"
"        CASE WHEN $4 = 0 THEN $3 ELSE 'still failing after ' || $4 || ' ms (max_retry_ms): ' || $3 END"
" FROM gone"
" ON CONFLICT (destination_id, event_id) DO UPDATE"
" SET attempts = EXCLUDED.attempts, dead_at = now(), error = EXCLUDED.error";

static MemoryContext xact_caller_cxt = NULL;

/*
 * Starts a transaction with a snapshot and an SPI connection.  The caller's
 * memory context is remembered, for results, and restored by xact_end
 * (a commit leaves CurrentMemoryContext at TopMemoryContext).
 */
static void
xact_begin(const char *activity)
{
	xact_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commits what xact_begin started and returns to the caller's context. */
static void
xact_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(xact_caller_cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Runs fn(arg) inside one short transaction with SPI connected. */
void
outbox_run_batch_in_xact(void (*fn) (void *), void *arg)
{
	xact_begin("runra_obs forward: calling handlers");
	fn(arg);
	xact_end();
}

/*
 * The error as text the database can hold: it may quote a remote answer cut
 * at a byte count (inside a character) or not in UTF-8 at all, and text is
 * not checked when made from a C string.  Bad bytes become '?'.
 */
static Datum
error_text(const char *error)
{
	char	   *s = pstrdup(error ? error : "");
	int			len = strlen(s);
	int			pos = 0;

	while ((pos += pg_encoding_verifymbstr(GetDatabaseEncoding(), s + pos, len - pos)) < len)
		s[pos++] = '?';
	return PointerGetDatum(cstring_to_text_with_len(s, len));
}

/*
 * Runs one statement with the five parameters every statement here takes
 * ($1 destination id, $2 event ids, $3 error text, $4 and $5 numbers whose
 * meaning is the statement's); returns the rows affected.
 */
static uint64
exec_outcome(const char *sql, Destination *dest, const int64 *ids, int n,
			 const char *error, int64 p4, int64 p5)
{
	Oid			types[5] = {INT4OID, INT8ARRAYOID, TEXTOID, INT8OID, INT8OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			rc;

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	values[0] = Int32GetDatum(dest->id);
	values[1] = PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = error_text(error);
	values[3] = Int64GetDatum(p4);
	values[4] = Int64GetDatum(p5);
	rc = SPI_execute_with_args(sql, 5, types, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "runra_obs forward: SPI failed (%s) on: %s", SPI_result_code_string(rc), sql);
	return SPI_processed;
}

/* Text column i of the current SPI row, copied, or NULL. */
static char *
col_text(HeapTuple tup, int i)
{
	char	   *s = SPI_getvalue(tup, SPI_tuptable->tupdesc, i);

	return s ? pstrdup(s) : NULL;
}

/* Datum column i of the current SPI row; *isnull says when it is NULL. */
static Datum
col(HeapTuple tup, int i, bool *isnull)
{
	return SPI_getbinval(tup, SPI_tuptable->tupdesc, i, isnull);
}

static ForwardProvider
provider_from_text(const char *p)
{
	if (strcmp(p, "axiom") == 0)
		return PROVIDER_AXIOM;
	if (strcmp(p, "otel") == 0)
		return PROVIDER_OTEL;
	if (strcmp(p, "jsonl") == 0)
		return PROVIDER_JSONL;
	return PROVIDER_FUNCTION;
}

/* Fills a destination's settings from one row of load_sql (in dest->cxt). */
static void
fill_destination(Destination *dest, HeapTuple tup)
{
	MemoryContext old = MemoryContextSwitchTo(dest->cxt);
	bool		isnull;
	Datum		d;

	dest->name = col_text(tup, 2);
	dest->provider = provider_from_text(col_text(tup, 3));
	dest->enabled = DatumGetBool(col(tup, 4, &isnull));
	dest->batch_size = DatumGetInt32(col(tup, 5, &isnull));
	dest->flush_interval_ms = DatumGetInt32(col(tup, 6, &isnull));
	dest->max_retry_ms = DatumGetInt64(col(tup, 7, &isnull));
	dest->timeout_ms = DatumGetInt32(col(tup, 8, &isnull));
	dest->url = col_text(tup, 9);
	dest->token = col_text(tup, 10);
	dest->headers = col_text(tup, 11);
	d = col(tup, 12, &isnull);
	dest->resource_attributes = isnull ? NULL : DatumGetJsonbPCopy(d);
	dest->file_path = col_text(tup, 13);
	dest->max_file_bytes = DatumGetInt64(col(tup, 14, &isnull));
	dest->max_files = DatumGetInt32(col(tup, 15, &isnull));
	d = col(tup, 16, &isnull);
	dest->handler = isnull ? InvalidOid : DatumGetObjectId(d);
	d = col(tup, 17, &isnull);
	dest->handler_role = isnull ? InvalidOid : DatumGetObjectId(d);
	dest->queued = DatumGetInt32(col(tup, 18, &isnull));
	d = col(tup, 19, &isnull);
	dest->oldest_queued = isnull ? 0 : DatumGetTimestampTz(d);
	MemoryContextSwitchTo(old);
}

/*
 * Destinations exist but the selection trigger does not (a restore from
 * pg_dump leaves it out, being on an extension table; or someone dropped
 * it): recreate it, or nothing new would be queued.
 */
static void
ensure_trigger(void)
{
	if (SPI_execute("SELECT FROM runra_obs.destinations"
					" WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger"
					"   WHERE tgrelid = 'runra_obs.sandbox_events'::regclass"
					"     AND tgname = 'forward_select' AND tgenabled <> 'D')"
					" LIMIT 1", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs forward: could not look for the selection trigger");
	if (SPI_processed == 0)
		return;
	ereport(LOG,
			(errmsg("runra_obs forward: destinations exist but the selection trigger on runra_obs.sandbox_events is missing or disabled; recreating it")));
	if (SPI_execute("LOCK TABLE runra_obs.destinations IN SHARE ROW EXCLUSIVE MODE;"
					" DROP TRIGGER IF EXISTS forward_select ON runra_obs.sandbox_events;"
					" SELECT runra_obs._forward_sync_trigger()", false, 0) < 0)
		elog(ERROR, "runra_obs forward: could not recreate the selection trigger");
}

/* The destination with this id in the list, or NULL. */
static Destination *
find_destination(List *list, int id)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		Destination *d = lfirst(lc);

		if (d->id == id)
			return d;
	}
	return NULL;
}

/*
 * Re-reads the destinations.  Known ones keep their delivery state (backoff,
 * request in flight) and get fresh settings; new ones are made in cxt; those
 * no longer configured are cancelled and freed.  Returns the new list.
 */
List *
outbox_load_destinations(List *known, MemoryContext cxt)
{
	List	   *result = NIL;
	ListCell   *lc;

	xact_begin("runra_obs forward: reading destinations");
	ensure_trigger();
	if (SPI_execute(load_sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs forward: could not read runra_obs.destinations");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		bool		isnull;
		int			id = DatumGetInt32(col(tup, 1, &isnull));
		Destination *dest = find_destination(known, id);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		if (dest == NULL)
		{
			dest = palloc0(sizeof(Destination));
			dest->id = id;
			dest->cxt = AllocSetContextCreate(cxt, "runra_obs destination", ALLOCSET_SMALL_SIZES);
		}
		else
			MemoryContextReset(dest->cxt);
		dest->seen = true;
		fill_destination(dest, tup);
		result = lappend(result, dest);
		MemoryContextSwitchTo(old);
	}
	xact_end();

	foreach(lc, known)
	{
		Destination *d = lfirst(lc);

		if (!d->seen)
		{
			transport_cancel(d);
			MemoryContextDelete(d->cxt);
			pfree(d);
		}
	}
	foreach(lc, result)
		((Destination *) lfirst(lc))->seen = false;
	list_free(known);
	return result;
}

/* Copies one fetched row into ev (in the caller's context `into`). */
static void
copy_event(ForwardEvent *ev, HeapTuple tup, MemoryContext into)
{
	MemoryContext old = MemoryContextSwitchTo(into);
	bool		isnull;
	Datum		d;

	ev->event_id = DatumGetInt64(col(tup, 1, &isnull));
	ev->created_at = DatumGetTimestampTz(col(tup, 2, &isnull));
	ev->queued_at = DatumGetTimestampTz(col(tup, 3, &isnull));
	ev->sandbox_id = col_text(tup, 4);
	ev->event_type = col_text(tup, 5);
	d = col(tup, 6, &isnull);
	ev->data = isnull ? NULL : DatumGetJsonbPCopy(d);
	ev->trace_id = col_text(tup, 7);
	ev->sandbox_trace_id = col_text(tup, 8);
	MemoryContextSwitchTo(old);
}

/*
 * Fetches the head of the destination's queue (up to batch_size events, in
 * the caller's memory context).  An entry whose event is gone (its
 * partition dropped by retention) comes back with event_type NULL.
 */
int
outbox_fetch(Destination *dest, ForwardEvent **events)
{
	MemoryContext caller = CurrentMemoryContext;
	int			n;

	xact_begin("runra_obs forward: fetching a batch");
	exec_outcome(fetch_sql, dest, NULL, 0, NULL, 0, dest->batch_size);
	n = (int) SPI_processed;
	*events = MemoryContextAllocZero(caller, sizeof(ForwardEvent) * Max(n, 1));
	for (int i = 0; i < n; i++)
		copy_event(&(*events)[i], SPI_tuptable->vals[i], caller);
	xact_end();
	return n;
}

/* The destination accepted these events: they leave the outbox. */
void
outbox_ack(Destination *dest, const int64 *ids, int n)
{
	if (n == 0)
		return;
	xact_begin("runra_obs forward: acknowledging");
	exec_outcome(ack_sql, dest, ids, n, NULL, 0, 0);
	xact_end();
	runra_forward_count(n, 0);
}

/*
 * A delivery attempt of these events failed.  Permanent failures go to the
 * dead letters now; temporary ones count an attempt and go there only once
 * they have been queued longer than the destination's max_retry_ms.
 */
void
outbox_fail(Destination *dest, const int64 *ids, int n, const char *error,
			bool permanent)
{
	uint64		dead;

	if (n == 0)
		return;
	xact_begin("runra_obs forward: recording a failure");
	exec_outcome(attempt_sql, dest, ids, n, error, 0, 0);
	dead = exec_outcome(dead_letter_sql, dest, ids, n, error,
						permanent ? 0 : dest->max_retry_ms, 0);
	exec_outcome(count_failure_sql, dest, ids, n, error, 0, n);
	xact_end();
	runra_forward_count(0, dead);
	ereport(LOG,
			(errmsg("runra_obs forward: destination \"%s\": %d events not delivered" "%s",
					dest->name, n, permanent ? ", dead-lettered" : ""),
			 errdetail("%s", error)));
}

/* Records an error that lost nothing we can retry (counts n as failed). */
void
outbox_note_error(Destination *dest, const char *error, int n)
{
	xact_begin("runra_obs forward: recording an error");
	exec_outcome(count_failure_sql, dest, NULL, 0, error, 0, n);
	xact_end();
	ereport(LOG,
			(errmsg("runra_obs forward: destination \"%s\": %s", dest->name, error)));
}
