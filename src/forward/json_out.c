/*
 * json_out.c — compact JSON text for the encoders, and the seed's event
 * object that Axiom and JSONL share.
 *
 * jsonb's own output puts a space after every ':' and ','; the seed's JSONL
 * lines and the wire formats have none.  Numbers are written with
 * numeric_out, so a 64-bit integer or a long decimal keeps every digit (a
 * double-based library such as cJSON would round them).
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "forward/forward.h"

/* Appends s as a JSON string literal. */
void
json_append_string(StringInfo out, const char *s)
{
	escape_json(out, s);
}

/* Appends one scalar jsonb value as JSON text. */
static void
append_scalar(StringInfo out, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(out, "null");
			break;
		case jbvBool:
			appendStringInfoString(out, v->val.boolean ? "true" : "false");
			break;
		case jbvNumeric:
			appendStringInfoString(out, DatumGetCString(DirectFunctionCall1(numeric_out,
																			NumericGetDatum(v->val.numeric))));
			break;
		case jbvString:
			{
				char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

				escape_json(out, s);
				pfree(s);
				break;
			}
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

/* Appends a jsonb document as compact JSON text. */
void
json_append_jsonb(StringInfo out, Jsonb *jb)
{
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		first = true;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
				if (v.val.array.rawScalar)
					continue;
				/* FALLTHROUGH */
			case WJB_BEGIN_OBJECT:
				if (!first)
					appendStringInfoChar(out, ',');
				appendStringInfoChar(out, tok == WJB_BEGIN_OBJECT ? '{' : '[');
				first = true;
				break;
			case WJB_END_ARRAY:
			case WJB_END_OBJECT:
				if (tok == WJB_END_ARRAY && JB_ROOT_IS_SCALAR(jb))
					continue;
				appendStringInfoChar(out, tok == WJB_END_OBJECT ? '}' : ']');
				first = false;
				break;
			case WJB_KEY:
				if (!first)
					appendStringInfoChar(out, ',');
				append_scalar(out, &v);
				appendStringInfoChar(out, ':');
				first = true;	/* the value follows without a comma */
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (!first)
					appendStringInfoChar(out, ',');
				append_scalar(out, &v);
				first = false;
				break;
			default:
				break;
		}
	}
}

/*
 * Appends ts as "2026-06-15T10:30:00.000Z": milliseconds as the seed writes
 * them, or microseconds when the event has sub-millisecond precision.
 */
void
json_append_timestamp(StringInfo out, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("event timestamp out of range")));
	appendStringInfo(out, "\"%04d-%02d-%02dT%02d:%02d:%02d.",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (fsec % 1000 == 0)
		appendStringInfo(out, "%03dZ\"", (int) (fsec / 1000));
	else
		appendStringInfo(out, "%06dZ\"", (int) fsec);
}

/*
 * Appends one event as the seed's JSON object: the time under time_key
 * ("timestamp" in JSONL, "_time" for Axiom), sandboxId, type, data, and
 * traceId when the event has one.
 */
void
json_append_event(StringInfo out, ForwardEvent *ev, const char *time_key)
{
	appendStringInfo(out, "{\"%s\":", time_key);
	json_append_timestamp(out, ev->created_at);
	appendStringInfoString(out, ",\"sandboxId\":");
	json_append_string(out, ev->sandbox_id);
	appendStringInfoString(out, ",\"type\":");
	json_append_string(out, ev->event_type);
	appendStringInfoString(out, ",\"data\":");
	json_append_jsonb(out, ev->data);
	if (ev->trace_id)
	{
		appendStringInfoString(out, ",\"traceId\":");
		json_append_string(out, ev->trace_id);
	}
	appendStringInfoChar(out, '}');
}

/* Unix time in nanoseconds, as OTLP wants span times. */
int64
timestamp_to_unix_nanos(TimestampTz ts)
{
	int64		unix_us = ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

	return unix_us * 1000;
}
