/*
 * otlp.c — events as OpenTelemetry spans, in OTLP/HTTP JSON.
 *
 * One request is one ExportTraceServiceRequest: a resource (the
 * destination's resourceAttributes), one scope (runra_obs) and a span per
 * event.  The mapping, following the OTLP JSON encoding rules (hex trace
 * and span ids, 64-bit integers as decimal strings, enums as numbers):
 *
 *   name               event type
 *   traceId            the event's traceId, else md5(sandbox id) in hex
 *                      (never all zeros: that would take a collision)
 *   spanId             16 hex digits derived from the event id, so a span
 *                      sent twice is recognisably the same span
 *   startTimeUnixNano  the event time
 *   endTimeUnixNano    start + data.durationMs, when the event has one
 *   attributes         sandbox.id, runra.event.id, then data flattened
 *                      with dotted keys (arrays as arrayValue)
 *   status             ERROR for what runra_obs.event_failed() calls a
 *                      failure (exec.failed, exec.timed_out, tool.failed,
 *                      exec.completed whose exitCode is not the number 0)
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "forward/forward.h"

static void append_any_value(StringInfo out, JsonbValue *v);

/* 16 hex digits from the event id (splitmix64: well spread, never zero here). */
static void
otlp_span_id(int64 event_id, char *out)
{
	uint64		z = (uint64) event_id + UINT64CONST(0x9E3779B97F4A7C15);

	z = (z ^ (z >> 30)) * UINT64CONST(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64CONST(0x94D049BB133111EB);
	z ^= z >> 31;
	if (z == 0)
		z = 1;
	snprintf(out, 17, "%016llx", (unsigned long long) z);
}

/*
 * Is this number written as a whole number that fits in int64 (then it is
 * an intValue)?  1.0 keeps its decimal point and becomes a doubleValue.
 */
static bool
number_text_is_int64(const char *text, int64 *result)
{
	char	   *end;

	if (strspn(text + (text[0] == '-'), "0123456789") != strlen(text + (text[0] == '-')))
		return false;
	errno = 0;
	*result = strtoi64(text, &end, 10);
	return errno == 0 && *end == '\0';
}

/* Appends an AnyValue for a scalar: string, bool, int (as string) or double. */
static void
append_scalar_value(StringInfo out, JsonbValue *v)
{
	int64		i;

	switch (v->type)
	{
		case jbvString:
			appendStringInfoString(out, "{\"stringValue\":");
			{
				char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

				json_append_string(out, s);
			}
			appendStringInfoChar(out, '}');
			break;
		case jbvBool:
			appendStringInfo(out, "{\"boolValue\":%s}", v->val.boolean ? "true" : "false");
			break;
		case jbvNumeric:
			{
				char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric)));

				if (number_text_is_int64(text, &i))
					appendStringInfo(out, "{\"intValue\":\"" INT64_FORMAT "\"}", i);
				else
					appendStringInfo(out, "{\"doubleValue\":%s}", text);
				break;
			}
		default:
			appendStringInfoString(out, "{}");	/* null: an empty AnyValue */
			break;
	}
}

/* Appends {"key":k,"value":AnyValue} for each member of an object container. */
static void
append_kvlist(StringInfo out, JsonbContainer *obj)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	bool		first = true;

	appendStringInfoChar(out, '[');
	(void) JsonbIteratorNext(&it, &k, true);	/* WJB_BEGIN_OBJECT */
	while ((tok = JsonbIteratorNext(&it, &k, true)) == WJB_KEY)
	{
		tok = JsonbIteratorNext(&it, &v, true);
		if (!first)
			appendStringInfoChar(out, ',');
		first = false;
		appendStringInfoString(out, "{\"key\":");
		json_append_string(out, pnstrdup(k.val.string.val, k.val.string.len));
		appendStringInfoString(out, ",\"value\":");
		append_any_value(out, &v);
		appendStringInfoChar(out, '}');
	}
	appendStringInfoChar(out, ']');
}

/* Appends an AnyValue for any jsonb value (containers as array/kvlist). */
static void
append_any_value(StringInfo out, JsonbValue *v)
{
	if (v->type != jbvBinary)
	{
		append_scalar_value(out, v);
		return;
	}
	if (JsonContainerIsObject(v->val.binary.data))
	{
		appendStringInfoString(out, "{\"kvlistValue\":{\"values\":");
		append_kvlist(out, v->val.binary.data);
		appendStringInfoString(out, "}}");
	}
	else
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		bool		first = true;

		appendStringInfoString(out, "{\"arrayValue\":{\"values\":[");
		(void) JsonbIteratorNext(&it, &e, true);	/* WJB_BEGIN_ARRAY */
		while (JsonbIteratorNext(&it, &e, true) == WJB_ELEM)
		{
			if (!first)
				appendStringInfoChar(out, ',');
			first = false;
			append_any_value(out, &e);
		}
		appendStringInfoString(out, "]}}");
	}
}

/*
 * Appends the members of an object as flat attributes: nested objects
 * become dotted keys (a.b), nulls are left out, arrays stay arrays.
 */
static void
append_flat_attributes(StringInfo out, JsonbContainer *obj, const char *prefix, bool *first)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	k,
				v;

	(void) JsonbIteratorNext(&it, &k, true);
	while (JsonbIteratorNext(&it, &k, true) == WJB_KEY)
	{
		char	   *key = prefix
			? psprintf("%s.%.*s", prefix, k.val.string.len, k.val.string.val)
			: pnstrdup(k.val.string.val, k.val.string.len);

		(void) JsonbIteratorNext(&it, &v, true);
		if (v.type == jbvNull)
			continue;
		if (v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
		{
			append_flat_attributes(out, v.val.binary.data, key, first);
			continue;
		}
		if (!*first)
			appendStringInfoChar(out, ',');
		*first = false;
		appendStringInfoString(out, "{\"key\":");
		json_append_string(out, key);
		appendStringInfoString(out, ",\"value\":");
		append_any_value(out, &v);
		appendStringInfoChar(out, '}');
	}
}

/* data[key] of an event, or NULL. */
static JsonbValue *
data_field(ForwardEvent *ev, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(&ev->data->root, JB_FOBJECT, &k);
}

/* data.durationMs in nanoseconds, or 0 when the event has none. */
static int64
duration_nanos(ForwardEvent *ev)
{
	JsonbValue *d = data_field(ev, "durationMs");
	double		ms;

	if (d == NULL || d->type != jbvNumeric)
		return 0;
	/* numeric_float8 throws beyond double's range (1e400, 1e-400): never here */
	ms = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											NumericGetDatum(d->val.numeric)));
	if (!(ms > 0) || ms > 1e12)
		return 0;
	return (int64) (ms * 1e6);
}

/*
 * The status message of a failed event (runra_obs.event_failed(), read with
 * the event), or NULL when it did not fail: its exit code, its error, or
 * its type.
 */
static char *
failure_message(ForwardEvent *ev)
{
	JsonbValue *v;

	if (!ev->failed)
		return NULL;
	if (strcmp(ev->event_type, "exec.completed") == 0)
	{
		v = data_field(ev, "exitCode");
		if (v != NULL && v->type == jbvNumeric)
			return psprintf("exit code %s",
							DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric))));
		return pstrdup("no usable exit code");
	}
	v = data_field(ev, "error");
	if (v != NULL && v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	return pstrdup(ev->event_type);
}

/* Appends one span. */
static void
append_span(StringInfo out, ForwardEvent *ev)
{
	char		trace[33];
	char		span[17];
	int64		start = timestamp_to_unix_nanos(ev->created_at);
	char	   *failure = failure_message(ev);
	bool		first = false;

	/* md5 is computed by the fetch query: it needs a resource owner */
	strlcpy(trace, ev->trace_id ? ev->trace_id : ev->sandbox_trace_id, sizeof(trace));
	otlp_span_id(ev->event_id, span);
	appendStringInfo(out, "{\"traceId\":\"%s\",\"spanId\":\"%s\",\"name\":", trace, span);
	json_append_string(out, ev->event_type);
	appendStringInfo(out, ",\"kind\":1,\"startTimeUnixNano\":\"" INT64_FORMAT
					 "\",\"endTimeUnixNano\":\"" INT64_FORMAT "\",\"attributes\":[",
					 start, start + duration_nanos(ev));
	appendStringInfoString(out, "{\"key\":\"sandbox.id\",\"value\":{\"stringValue\":");
	json_append_string(out, ev->sandbox_id);
	appendStringInfo(out, "}},{\"key\":\"runra.event.id\",\"value\":{\"intValue\":\"" INT64_FORMAT "\"}}",
					 ev->event_id);
	append_flat_attributes(out, &ev->data->root, NULL, &first);
	appendStringInfoChar(out, ']');
	if (failure)
	{
		appendStringInfoString(out, ",\"status\":{\"code\":2,\"message\":");
		json_append_string(out, failure);
		appendStringInfoChar(out, '}');
	}
	appendStringInfoChar(out, '}');
}

/* Appends the batch as one ExportTraceServiceRequest. */
void
otlp_encode(StringInfo out, Destination *dest, ForwardEvent *events, int n)
{
	bool		first = true;

	appendStringInfoString(out, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
	if (dest->resource_attributes && JB_ROOT_IS_OBJECT(dest->resource_attributes))
		append_flat_attributes(out, &dest->resource_attributes->root, NULL, &first);
	appendStringInfoString(out, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"runra_obs\"},\"spans\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(out, ',');
		append_span(out, &events[i]);
	}
	appendStringInfoString(out, "]}]}]}");
}

/*
 * Reads the receiver's 2xx answer.  A partialSuccess with rejected spans
 * must not be retried (the spec says so); *error then says how many and
 * why, and *rejected_spans how many.
 */
void
otlp_read_answer(const char *body, char **error, int *rejected_spans)
{
	cJSON	   *root = cJSON_Parse(body ? body : "");
	cJSON	   *partial = root ? cJSON_GetObjectItemCaseSensitive(root, "partialSuccess") : NULL;
	cJSON	   *rejected = partial ? cJSON_GetObjectItemCaseSensitive(partial, "rejectedSpans") : NULL;
	cJSON	   *message = partial ? cJSON_GetObjectItemCaseSensitive(partial, "errorMessage") : NULL;
	double		n = 0;

	*error = NULL;
	*rejected_spans = 0;
	if (cJSON_IsString(rejected))
		n = strtod(rejected->valuestring, NULL);
	else if (cJSON_IsNumber(rejected))
		n = rejected->valuedouble;
	if (n > 0 || (cJSON_IsString(message) && message->valuestring[0] != '\0'))
		*error = psprintf("otlp receiver rejected %.0f spans: %.200s", n,
						  cJSON_IsString(message) ? message->valuestring : "no reason given");
	*rejected_spans = (int) Min(n, (double) PG_INT32_MAX);
	cJSON_Delete(root);
}
