/*
 * sdk_insert.c — the SDK's Postgres exporter's way in: INSERT INTO
 * sandbox_events, row by row through the one validation.
 *
 * The exporter sends multi-row INSERTs into an unqualified sandbox_events.
 * Logins made by runra_obs.create_login() find runra_obs_sdk.sandbox_events
 * first on their search_path: a view over the event table with an INSTEAD
 * OF trigger per row and an AFTER trigger per statement.  Each row is
 * turned into the seed's envelope and validated exactly as HTTP validates
 * a body (parse_event_body); a good row is queued in a batch held for the
 * statement, a bad one goes to rejected_events (source 'insert', position =
 * the row's place in the statement) and is not counted in the command tag.
 * At the end of the statement the batch is written with one COPY, as every
 * other way in writes.  So one bad event in a batch of 100 costs nothing
 * but itself, and the event table stays without triggers.
 *
 * The batch lives in the (sub)transaction of the statement: if the
 * statement fails, the subtransaction's abort forgets it; a batch still
 * held at commit (the statement trigger did not run) is written then, so a
 * row the trigger said yes to is never lost.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "store/event_batch_internal.h"

/* The batch of the INSERT statement now running, if any. */
typedef struct SdkStatement
{
	MemoryContext context;		/* holds the batch; child of the (sub)xact's */
	MemoryContext row_context;	/* one row's envelope and result, reset per row */
	EventBatch *batch;
	SubTransactionId subxact;	/* whose abort forgets it */
	int			rows;			/* rows seen: the position of the next */
	int			rejected;
	char	   *first_reason;	/* for the statement's warning */
} SdkStatement;

static SdkStatement *current = NULL;
static bool callbacks_registered = false;

/* Writes the statement's batch and forgets it; warns when rows were refused. */
static void
flush_statement(void)
{
	SdkStatement *stmt = current;

	if (stmt == NULL)
		return;
	current = NULL;
	if (ActiveSnapshotSet())
		event_batch_finish(stmt->batch);
	else
	{
		/* at commit, outside any statement */
		PushActiveSnapshot(GetTransactionSnapshot());
		event_batch_finish(stmt->batch);
		PopActiveSnapshot();
	}
	if (stmt->rejected > 0)
		ereport(WARNING,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("runra_obs stored %d of %d rows; the other %d are in runra_obs.rejected_events with their reasons",
						stmt->rows - stmt->rejected, stmt->rows, stmt->rejected),
				 errdetail("The first one refused, as HTTP would answer it: %s.", stmt->first_reason)));
	MemoryContextDelete(stmt->context);
}

/* At commit: a batch whose statement trigger did not run is written now. */
static void
sdk_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PARALLEL_PRE_COMMIT)
		flush_statement();
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		current = NULL;			/* its memory went with the transaction */
}

/* A statement that failed inside a savepoint: its rows are gone with it. */
static void
sdk_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && current != NULL && current->subxact == mySubid)
		current = NULL;
}

/* The running statement's batch, started on its first row. */
static SdkStatement *
statement_batch(void)
{
	MemoryContext context;
	MemoryContext old;

	if (current != NULL)
		return current;
	if (!callbacks_registered)
	{
		RegisterXactCallback(sdk_xact_callback, NULL);
		RegisterSubXactCallback(sdk_subxact_callback, NULL);
		callbacks_registered = true;
	}
	context = AllocSetContextCreate(CurTransactionContext, "runra_obs sdk insert",
									ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(context);
	current = palloc0(sizeof(SdkStatement));
	current->context = context;
	current->row_context = AllocSetContextCreate(context, "runra_obs sdk insert row",
												 ALLOCSET_SMALL_SIZES);
	current->subxact = GetCurrentSubTransactionId();
	current->batch = event_batch_begin("insert");
	MemoryContextSwitchTo(old);
	return current;
}

/* The value of column `name` of the row, or NULL when it is null. */
static Datum *
row_value(TriggerData *trig, const char *name, Datum *value)
{
	TupleDesc	desc = trig->tg_relation->rd_att;
	bool		isnull;
	int			attnum = SPI_fnumber(desc, name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("runra_obs_sdk.sandbox_events has no column \"%s\"", name)));
	*value = heap_getattr(trig->tg_trigtuple, attnum, desc, &isnull);
	return isnull ? NULL : value;
}

/* Appends ,"key":"text" for a text column that is not null. */
static void
append_text_member(StringInfo out, TriggerData *trig, const char *column, const char *key)
{
	Datum		value;

	if (row_value(trig, column, &value) == NULL)
		return;
	appendStringInfo(out, ",\"%s\":", key);
	escape_json(out, TextDatumGetCString(value));
}

/*
 * The row as the seed's envelope, so the one parser validates it.  A null
 * column is left out: the parser then names what is missing.
 */
static void
row_envelope(StringInfo out, TriggerData *trig)
{
	Datum		value;

	appendStringInfoString(out, "{\"data\":");
	if (row_value(trig, "data", &value) != NULL)
	{
		Jsonb	   *data = DatumGetJsonbP(value);

		(void) JsonbToCString(out, &data->root, VARSIZE(data));
	}
	else
		appendStringInfoString(out, "{}");
	if (row_value(trig, "created_at", &value) != NULL)
	{
		char		buf[MAXDATELEN + 1];
		int			utc = 0;

		appendStringInfoString(out, ",\"timestamp\":");
		escape_json(out, JsonEncodeDateTime(buf, value, TIMESTAMPTZOID, &utc));
	}
	append_text_member(out, trig, "sandbox_id", "sandboxId");
	append_text_member(out, trig, "event_type", "type");
	append_text_member(out, trig, "trace_id", "traceId");
	appendStringInfoChar(out, '}');
}

/*
 * Counts a refused row and keeps what the parser said of it, as the failures
 * array HTTP would answer, for the statement's warning.
 */
static void
note_rejected(SdkStatement *stmt, EventBodyResult *result)
{
	stmt->rejected++;
	if (stmt->first_reason == NULL)
		stmt->first_reason = MemoryContextStrdup(stmt->context,
												 psprintf("%s]", result->failures.data));
}

PG_FUNCTION_INFO_V1(runra_sdk_insert_row);

/*
 * INSTEAD OF INSERT, for each row: validate and queue it.  Returns the row
 * when it was taken (id and ingested_at are assigned at the write, so they
 * read as null in RETURNING), nothing when it was refused.
 */
Datum
runra_sdk_insert_row(PG_FUNCTION_ARGS)
{
	TriggerData *trig = (TriggerData *) fcinfo->context;
	SdkStatement *stmt;
	EventBodyResult result;
	StringInfoData envelope;
	char	   *syntax_error;
	MemoryContext old;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_INSTEAD(trig->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trig->tg_event) || !TRIGGER_FIRED_BY_INSERT(trig->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("runra_sdk_insert_row() must be an INSTEAD OF INSERT ... FOR EACH ROW trigger")));
	stmt = statement_batch();
	MemoryContextReset(stmt->row_context);
	old = MemoryContextSwitchTo(stmt->row_context);
	initStringInfo(&envelope);
	row_envelope(&envelope, trig);
	event_body_result_init(&result);
	if (!parse_event_body(stmt->batch, envelope.data, envelope.len, true,
						  stmt->rows, 0, &result, &syntax_error))
		reject_event_text(stmt->batch, &result, stmt->rows, 0, syntax_error, NULL,
						  envelope.data, envelope.len);
	stmt->rows++;
	if (result.ingested == 0)
		note_rejected(stmt, &result);
	MemoryContextSwitchTo(old);
	return PointerGetDatum(result.ingested > 0 ? trig->tg_trigtuple : NULL);
}

PG_FUNCTION_INFO_V1(runra_sdk_insert_statement);

/* AFTER INSERT, for each statement: write what the rows queued. */
Datum
runra_sdk_insert_statement(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("runra_sdk_insert_statement() must be called as a trigger")));
	flush_statement();
	return PointerGetDatum(NULL);
}
