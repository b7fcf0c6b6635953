/*
 * ingest_sql.c — runra_obs.ingest(jsonb) and runra_obs.ingest_jsonl(text).
 *
 * The SQL ways in.  Both hand their input to the same EventBatch as HTTP and
 * NOTIFY do, so the validation is the same everywhere, and both answer in
 * Axiom's style: (ingested, failed, failures), where each failure names the
 * position of the event and what was wrong with it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "store/event_batch.h"

/* Builds the (ingested, failed, failures) row. */
static Datum
ingest_result_datum(FunctionCallInfo fcinfo, EventBodyResult *result)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("function returning record called in context that cannot accept type record")));
	desc = BlessTupleDesc(desc);
	values[0] = Int32GetDatum((int32) Min(result->ingested, PG_INT32_MAX));
	values[1] = Int32GetDatum((int32) Min(result->failed, PG_INT32_MAX));
	values[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(result->failures.data));
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/* Validates, writes, and answers for one body in one format. */
static Datum
ingest_body(FunctionCallInfo fcinfo, const char *source, char *body, int len,
			EventBodyFormat format)
{
	EventBatch *batch = event_batch_begin(source);
	EventBodyResult result;

	event_body_result_init(&result);
	event_batch_add(batch, body, len, format, &result);
	if (result.body_error)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("%s", result.body_error_message)));
	event_batch_finish(batch);
	return ingest_result_datum(fcinfo, &result);
}

PG_FUNCTION_INFO_V1(runra_ingest_jsonb);

/* runra_obs.ingest(events jsonb): one event object or an array of them. */
Datum
runra_ingest_jsonb(PG_FUNCTION_ARGS)
{
	Jsonb	   *events = PG_GETARG_JSONB_P(0);
	char	   *text = JsonbToCString(NULL, &events->root, VARSIZE(events));

	return ingest_body(fcinfo, "sql", text, strlen(text), EVENT_BODY_JSON);
}

PG_FUNCTION_INFO_V1(runra_ingest_jsonl);

/* runra_obs.ingest_jsonl(body text): one event per line, as the seed writes. */
Datum
runra_ingest_jsonl(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	char	   *copy = text_to_cstring(body);

	return ingest_body(fcinfo, "jsonl", copy, strlen(copy), EVENT_BODY_NDJSON);
}
