/*
 * cursor.c — the forward worker's SQL: the destinations with their cursors,
 * reading batches from the log and from runra_obs.redeliveries, dead
 * letters, counters, and moving a cursor.
 *
 * Every function here runs inside the caller's transaction (the worker
 * frames each unit of work with runra_worker_run_transaction()), so what
 * one settle records commits together: the cursor never moves without the
 * dead letters and counters of the batches it passes.  None of them is
 * ever called while a transaction waits on the network.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "forward/forward.h"
#include "worker/secret_mask.h"

/*
 * The destinations with their settings and cursors.  Nothing here may fail
 * on a value the option checks let through (such as maxFileSizeMb 1e13):
 * an ERROR would stop every destination.
 */
static const char *const load_sql =
"SELECT d.id, d.name, d.provider, d.enabled, d.batch_size, d.flush_interval_ms,"
"       d.max_retry_ms, d.timeout_ms,"
"       runra_obs._forward_url(d.provider, d.settings),"
"       d.secrets->>'token',"
"       runra_obs._forward_headers(d.provider, d.settings, d.secrets),"
"       d.settings->'resourceAttributes',"
"       d.settings->>'filePath',"
"       least(coalesce((d.settings->>'maxFileSizeMb')::numeric, 100) * 1048576, 9e18)::bigint,"
"       coalesce((d.settings->>'maxFiles')::int, 10),"
"       d.handler::oid,"
"       d.handler_role::oid,"
"       coalesce(d.replay_to, 0),"
"       c.position,"
"       (SELECT count(*) FROM runra_obs.redeliveries AS r WHERE r.destination_id = d.id),"
"       coalesce(d.settings->>'signal', 'traces') = 'logs'"
" FROM runra_obs.destinations AS d"
" JOIN runra_obs.consumers AS c ON c.name = 'destination:' || d.id"
" ORDER BY d.id";

static const char *const read_sql =
"SELECT id, created_at, sandbox_id, event_type, data, trace_id, sandbox_trace_id, failed,"
"       duration_ms, ingested_at, cut"
" FROM runra_obs._forward_batch($1, $2, $3, $4, $5)";

/* The head of a destination's redeliveries with the events they name. */
static const char *const redeliveries_sql =
"SELECT r.event_id, r.created_at, r.sandbox_id,"
"       e.event_type, e.data, e.trace_id, md5(r.sandbox_id),"
"       runra_obs.event_failed(e.event_type, e.data),"
"       runra_obs.event_duration_ms(e.event_type, e.data), e.ingested_at"
" FROM (SELECT * FROM runra_obs.redeliveries"
"       WHERE destination_id = $1 ORDER BY event_id LIMIT $4) AS r"
" LEFT JOIN runra_obs.sandbox_events AS e"
"   ON e.sandbox_id = r.sandbox_id AND e.created_at = r.created_at AND e.id = r.event_id"
" ORDER BY r.event_id";

static const char *const dead_letter_sql =
"INSERT INTO runra_obs.dead_letters AS l"
"     (destination_id, event_id, created_at, sandbox_id, queued_at, attempts, error)"
" SELECT $1, u.id, u.created_at, u.sandbox_id, $4, $5, $3"
" FROM unnest($2::bigint[], $6::timestamptz[], $7::text[]) AS u (id, created_at, sandbox_id)"
" ON CONFLICT (destination_id, event_id) DO UPDATE"
" SET attempts = l.attempts + EXCLUDED.attempts, dead_at = now(), error = EXCLUDED.error";

static const char *const redelivered_sql =
"DELETE FROM runra_obs.redeliveries WHERE destination_id = $1 AND event_id = ANY ($2)";

static const char *const redelivery_failed_sql =
"UPDATE runra_obs.redeliveries SET attempts = attempts + 1, last_error = $3"
" WHERE destination_id = $1 AND event_id = ANY ($2)";

static const char *const queue_redeliveries_sql =
"INSERT INTO runra_obs.redeliveries AS r"
"     (destination_id, event_id, created_at, sandbox_id, attempts, last_error)"
" SELECT $1, u.id, u.created_at, u.sandbox_id, 1, $3"
" FROM unnest($2::bigint[], $6::timestamptz[], $7::text[]) AS u (id, created_at, sandbox_id)"
" ON CONFLICT (destination_id, event_id) DO UPDATE"
" SET attempts = r.attempts + 1, last_error = EXCLUDED.last_error";

static const char *const record_sql =
"UPDATE runra_obs.forward_counters"
" SET sent = sent + $4, failed = failed + $5,"
"     last_success = CASE WHEN $6 THEN now() ELSE last_success END,"
"     last_error = coalesce($3, last_error),"
"     last_error_at = CASE WHEN $3 IS NULL THEN last_error_at ELSE now() END"
" WHERE destination_id = $1";

static const char *const move_sql =
"UPDATE runra_obs.consumers SET position = $4, moved_at = now()"
" WHERE name = 'destination:' || $1 AND position < $4";

/*
 * The error as text the database can hold, and readers may see: the
 * destination's credentials masked (secret_mask.h), since it may quote a
 * remote answer; and such an answer may be cut at a byte count (inside a
 * character) or not be UTF-8 at all, while text is not checked when made
 * from a C string, so bad bytes become '?'.
 */
static Datum
error_text(Destination *dest, const char *error)
{
	char	   *s = secret_mask(error ? error : "", dest->secrets);
	int			len = strlen(s);
	int			pos = 0;

	while ((pos += pg_encoding_verifymbstr(GetDatabaseEncoding(), s + pos, len - pos)) < len)
		s[pos++] = '?';
	return PointerGetDatum(cstring_to_text_with_len(s, len));
}

/* The parameters every statement here takes; each uses those it needs. */
typedef struct Params
{
	const ForwardEvent *events;	/* $2 ids, $6 times, $7 sandbox ids */
	int			n;
	const char *error;			/* $3 (NULL: SQL NULL) */
	int64		p4;				/* $4: a time, a count or a position */
	bool		p4_is_time;
	int64		p5;
	bool		p6;				/* $6 when no events are passed: a flag */
} Params;

/* Runs sql with $1 = the destination and the rest from p; returns rows affected. */
static uint64
exec_sql(const char *sql, Destination *dest, const Params *p, bool read_only)
{
	Oid			types[7] = {INT4OID, INT8ARRAYOID, TEXTOID, INT8OID, INT8OID,
	TIMESTAMPTZARRAYOID, TEXTARRAYOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			n = p->events ? p->n : 0;
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *times = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *sandboxes = palloc(sizeof(Datum) * Max(n, 1));
	int			nargs = p->events ? 7 : 6;
	int			rc;

	for (int i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(p->events[i].event_id);
		times[i] = TimestampTzGetDatum(p->events[i].created_at);
		sandboxes[i] = CStringGetTextDatum(p->events[i].sandbox_id);
	}
	values[0] = Int32GetDatum(dest->id);
	values[1] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = p->error ? error_text(dest, p->error) : (Datum) 0;
	nulls[2] = p->error ? ' ' : 'n';
	types[3] = p->p4_is_time ? TIMESTAMPTZOID : INT8OID;
	values[3] = Int64GetDatum(p->p4);
	values[4] = Int64GetDatum(p->p5);
	if (p->events)
	{
		values[5] = PointerGetDatum(construct_array(times, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[6] = PointerGetDatum(construct_array(sandboxes, n, TEXTOID, -1, false, TYPALIGN_INT));
	}
	else
	{
		types[5] = BOOLOID;
		values[5] = BoolGetDatum(p->p6);
	}
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, 0);
	if (rc < 0)
		elog(ERROR, "runra_obs forward: SPI failed (%s) on: %s", SPI_result_code_string(rc), sql);
	return SPI_processed;
}

/* Connects SPI around one statement. */
static uint64
run(const char *sql, Destination *dest, const Params *p)
{
	uint64		rows;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rows = exec_sql(sql, dest, p, false);
	SPI_finish();
	return rows;
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
	dest->replay_to = DatumGetInt64(col(tup, 18, &isnull));
	dest->redelivering = DatumGetInt64(col(tup, 20, &isnull));
	dest->otlp_logs = DatumGetBool(col(tup, 21, &isnull));
	dest->secrets = secret_mask_add(NIL, dest->token);
	if (dest->provider == PROVIDER_OTEL)	/* Axiom's one header is its org id */
		dest->secrets = secret_mask_add_header_values(dest->secrets, dest->headers);
	MemoryContextSwitchTo(old);
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
 * Re-reads the destinations.  Known ones keep their consumer state (cursor,
 * batches, backoff) and get fresh settings; new ones are made in cxt with
 * the cursor as stored.  Returns the new list; the destinations of `known`
 * not in it keep seen = false for the caller to drop.
 */
List *
cursor_load_destinations(List *known, MemoryContext cxt)
{
	List	   *result = NIL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
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
			dest->position = DatumGetInt64(col(tup, 19, &isnull));
			dest->read_to = dest->position;
		}
		else
			MemoryContextReset(dest->cxt);
		dest->seen = true;
		fill_destination(dest, tup);
		result = lappend(result, dest);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return result;
}

/* Copies the SPI rows (read_sql's or redeliveries_sql's columns) into `into`. */
static int
copy_events(ForwardEvent **events, MemoryContext into)
{
	MemoryContext old = MemoryContextSwitchTo(into);
	int			n = (int) SPI_processed;

	*events = palloc0(sizeof(ForwardEvent) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		ForwardEvent *ev = &(*events)[i];
		bool		isnull;
		Datum		d;

		ev->event_id = DatumGetInt64(col(tup, 1, &isnull));
		ev->created_at = DatumGetTimestampTz(col(tup, 2, &isnull));
		ev->sandbox_id = col_text(tup, 3);
		ev->event_type = col_text(tup, 4);
		d = col(tup, 5, &isnull);
		ev->data = isnull ? NULL : DatumGetJsonbPCopy(d);
		ev->trace_id = col_text(tup, 6);
		ev->sandbox_trace_id = col_text(tup, 7);
		d = col(tup, 8, &isnull);
		ev->failed = !isnull && DatumGetBool(d);
		d = col(tup, 9, &isnull);
		ev->duration_ms = isnull ? NULL : DatumGetNumericCopy(d);
		d = col(tup, 10, &isnull);
		ev->ingested_at = isnull ? ev->created_at : DatumGetTimestampTz(d);
	}
	MemoryContextSwitchTo(old);
	return n;
}

/*
 * The events the destination selects with ids in (lo, hi], at most
 * max_events, in id order, copied into `into`; returns how many.
 */
static int
cursor_read(Destination *dest, int64 lo, int64 hi, int max_events,
			ForwardEvent **events, MemoryContext into, bool *cut)
{
	Oid			types[5] = {INT4OID, INT8OID, INT8OID, INT4OID, INT8OID};
	Datum		values[5] = {Int32GetDatum(dest->id), Int64GetDatum(lo),
		Int64GetDatum(hi), Int32GetDatum(max_events),
	Int64GetDatum(forward_read_budget())};
	bool		isnull;
	int			n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(read_sql, 5, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs forward: could not read the events of destination \"%s\"", dest->name);
	/* the last event says whether the batch reached max_bytes there */
	*cut = SPI_processed > 0 &&
		DatumGetBool(col(SPI_tuptable->vals[SPI_processed - 1], 11, &isnull)) && !isnull;
	n = copy_events(events, into);
	SPI_finish();
	return n;
}

/*
 * The next batch after lo: the selected events in (lo, *hi], at most
 * max_events of them, where *hi is the watermark, at most FORWARD_MAX_BATCH
 * ids on and never past replay_to while replaying (the two ranges are read
 * apart), and the last event's id when the batch is full.  Returns how
 * many; *hi == lo when there is nothing to read.
 */
int
cursor_read_next(Destination *dest, int64 lo, int64 watermark, int max_events,
				 ForwardEvent **events, MemoryContext into, int64 *hi)
{
	int			n;
	bool		cut;

	*hi = Min(watermark, lo + FORWARD_MAX_BATCH);
	if (dest->replay_to > lo)
		*hi = Min(*hi, dest->replay_to);
	*events = NULL;
	if (*hi <= lo)
	{
		*hi = lo;
		return 0;
	}
	if (dest->read_limit > 0)
		max_events = Min(max_events, dest->read_limit);
	n = cursor_read(dest, lo, *hi, max_events, events, into, &cut);
	/* full, or cut short by size: the range ends at its last event */
	if (n > 0 && (n == max_events || cut))
		*hi = (*events)[n - 1].event_id;
	return n;
}

/*
 * The head of the destination's redeliveries (up to max_events).  An entry
 * whose event is gone (its partition dropped by retention) comes back with
 * event_type NULL.
 */
int
cursor_read_redeliveries(Destination *dest, int max_events, ForwardEvent **events,
						 MemoryContext into)
{
	Params		p = {0};
	int			n;

	p.p4 = max_events;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	exec_sql(redeliveries_sql, dest, &p, true);
	n = copy_events(events, into);
	SPI_finish();
	return n;
}

/* These events go to the dead letters (and, redelivered, leave the redeliveries). */
void
cursor_dead_letter(Destination *dest, ForwardEvent *events, int n,
				   TimestampTz first_attempt, int attempts, const char *error,
				   bool redelivery)
{
	Params		p = {events, n, error, first_attempt, true, Max(attempts, 1), false};

	if (n == 0)
		return;
	run(dead_letter_sql, dest, &p);
	if (redelivery)
		cursor_delivered_redeliveries(dest, events, n);
}

/* These redelivered events were accepted: they leave the redeliveries. */
void
cursor_delivered_redeliveries(Destination *dest, ForwardEvent *events, int n)
{
	Params		p = {events, n, NULL, 0, false, 0, false};

	if (n > 0)
		run(redelivered_sql, dest, &p);
}

/* A redelivery attempt of these events failed: count it on each. */
void
cursor_failed_redeliveries(Destination *dest, ForwardEvent *events, int n,
						   const char *error)
{
	Params		p = {events, n, error, 0, false, 0, false};

	if (n > 0)
		run(redelivery_failed_sql, dest, &p);
}

/* These events are to be sent again, behind the cursor (a handler failed on them). */
void
cursor_queue_redeliveries(Destination *dest, ForwardEvent *events, int n,
						  const char *error)
{
	Params		p = {events, n, error, 0, false, 0, false};

	if (n > 0)
		run(queue_redeliveries_sql, dest, &p);
}

/* Adds the destination's outcomes since the last record to its counters. */
void
cursor_record(Destination *dest)
{
	Params		p = {NULL, 0, dest->error[0] ? dest->error : NULL,
	dest->sent, false, dest->failed, dest->success};

	if (dest->sent == 0 && dest->failed == 0 && !dest->success && !dest->error[0])
		return;
	run(record_sql, dest, &p);
}

/* Moves the destination's cursor forward to position. */
void
cursor_move(Destination *dest, int64 position)
{
	Params		p = {NULL, 0, NULL, position, false, 0, false};

	run(move_sql, dest, &p);
}
