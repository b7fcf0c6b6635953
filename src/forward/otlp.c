/*
 * otlp.c — events as OpenTelemetry spans or log records, in OTLP/HTTP JSON.
 *
 * docs/otlp.md is the mapping, for this forwarder and for the receiver;
 * this file is its forwarding half.  One request is one
 * ExportTraceServiceRequest (signal "traces") or ExportLogsServiceRequest
 * (signal "logs"): a resource (the destination's resourceAttributes, with
 * service.name runra-sandbox unless they name one), one scope (runra_obs)
 * and a span or log record per event, in the OTLP JSON encoding (hex trace
 * and span ids, 64-bit integers as decimal strings, enums as numbers).
 *
 *   span               name = type; traceId = the event's, else md5 of the
 *                      sandbox id; spanId from the event id; the event
 *                      marks the end of its work, so end = its time and
 *                      start = end - runra_obs.event_duration_ms(); ERROR
 *                      status when runra_obs.event_failed()
 *   log record         eventName and event.name = type; time, observed
 *                      time = when stored; severity ERROR/INFO by
 *                      event_failed(); body = data as a kvlist
 *   attributes         sandbox.id, runra.event.id, then (spans) each
 *                      top-level data key as an attribute, objects as
 *                      kvlistValue, never flattened into dotted keys
 *
 * What an event means (failed, duration) comes with the event from the
 * batch query; nothing here decides it.
 */
#include "postgres.h"

#include <math.h>

#include <cjson/cJSON.h>

#include "common/shortest_dec.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "forward/forward.h"
#include "store/event_fields.h"

/* A data key that would be read as a built-in goes out under this prefix. */
#define ESCAPE_PREFIX "runra.data."

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

/* Appends {"stringValue":s} for len bytes of s. */
static void
append_string_value(StringInfo out, const char *s, int len)
{
	appendStringInfoString(out, "{\"stringValue\":");
	json_append_string(out, pnstrdup(s, len));
	appendStringInfoChar(out, '}');
}

/*
 * Appends a number as intValue (whole, fits int64), doubleValue (written
 * as the double a receiver will hold, never a 401-digit literal), or, when
 * no double holds it (beyond double range, or so small it would read as
 * 0), stringValue of its text: a strict receiver refuses the whole request
 * for one such doubleValue.  numeric_out never writes an exponent, and has
 * no -0.
 */
static void
append_number_value(StringInfo out, Numeric num)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	char		shortest[DOUBLE_SHORTEST_DECIMAL_LEN];
	int64		i;
	double		d;

	if (number_text_is_int64(text, &i))
	{
		appendStringInfo(out, "{\"intValue\":\"" INT64_FORMAT "\"}", i);
		return;
	}
	d = strtod(text, NULL);		/* ERANGE gives inf or 0: looked at next */
	if (!isfinite(d) || (d == 0 && strspn(text, "-0.") != strlen(text)))
	{
		append_string_value(out, text, strlen(text));
		return;
	}
	double_to_shortest_decimal_buf(d, shortest);
	appendStringInfo(out, "{\"doubleValue\":%s}", shortest);
}

/* Appends an AnyValue for a scalar; null is the empty AnyValue. */
static void
append_scalar_value(StringInfo out, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			append_string_value(out, v->val.string.val, v->val.string.len);
			break;
		case jbvBool:
			appendStringInfo(out, "{\"boolValue\":%s}", v->val.boolean ? "true" : "false");
			break;
		case jbvNumeric:
			append_number_value(out, v->val.numeric);
			break;
		default:
			appendStringInfoString(out, "{}");
			break;
	}
}

/*
 * Would this top-level data key be read as something else?  The empty key
 * (attribute keys must be non-empty), the built-in attribute names and
 * every runra.* name (docs/otlp.md).
 */
static bool
key_needs_escape(const char *key, int len)
{
	static const char *const builtin[] = {"sandbox.id", "service.name", "event.name"};

	if (len == 0 || (len >= 6 && strncmp(key, "runra.", 6) == 0))
		return true;
	for (int i = 0; i < lengthof(builtin); i++)
		if (len == strlen(builtin[i]) && strncmp(key, builtin[i], len) == 0)
			return true;
	return false;
}

/* Appends {"key":k,"value":AnyValue}; escape: k is a top-level data key. */
static void
append_key_value(StringInfo out, JsonbValue *k, JsonbValue *v, bool escape)
{
	char	   *key = pnstrdup(k->val.string.val, k->val.string.len);

	appendStringInfoString(out, "{\"key\":");
	if (escape && key_needs_escape(key, k->val.string.len))
		key = psprintf(ESCAPE_PREFIX "%s", key);
	json_append_string(out, key);
	appendStringInfoString(out, ",\"value\":");
	append_any_value(out, v);
	appendStringInfoChar(out, '}');
}

/*
 * Appends a KeyValue for each member of an object container, each after a
 * comma unless *first.  Keys in a JSON object are unique, and escaping
 * keeps them so: the escaped names all begin with runra., which a kept key
 * never does.
 */
static void
append_members(StringInfo out, JsonbContainer *obj, bool escape, bool *first)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	k,
				v;

	(void) JsonbIteratorNext(&it, &k, true);	/* WJB_BEGIN_OBJECT */
	while (JsonbIteratorNext(&it, &k, true) == WJB_KEY)
	{
		(void) JsonbIteratorNext(&it, &v, true);
		if (!*first)
			appendStringInfoChar(out, ',');
		*first = false;
		append_key_value(out, &k, &v, escape);
	}
}

/* Appends an array container's elements as AnyValues. */
static void
append_elements(StringInfo out, JsonbContainer *arr)
{
	JsonbIterator *it = JsonbIteratorInit(arr);
	JsonbValue	e;
	bool		first = true;

	(void) JsonbIteratorNext(&it, &e, true);	/* WJB_BEGIN_ARRAY */
	while (JsonbIteratorNext(&it, &e, true) == WJB_ELEM)
	{
		if (!first)
			appendStringInfoChar(out, ',');
		first = false;
		append_any_value(out, &e);
	}
}

/*
 * Appends an AnyValue for any jsonb value: objects as kvlistValue (their
 * keys as they are: only attribute lists hold built-in names), arrays as
 * arrayValue.
 */
static void
append_any_value(StringInfo out, JsonbValue *v)
{
	bool		first = true;

	if (v->type != jbvBinary)
		append_scalar_value(out, v);
	else if (JsonContainerIsObject(v->val.binary.data))
	{
		appendStringInfoString(out, "{\"kvlistValue\":{\"values\":[");
		append_members(out, v->val.binary.data, false, &first);
		appendStringInfoString(out, "]}}");
	}
	else
	{
		appendStringInfoString(out, "{\"arrayValue\":{\"values\":[");
		append_elements(out, v->val.binary.data);
		appendStringInfoString(out, "]}}");
	}
}

/* An event's data as the AnyValue of its root (a kvlist: data is an object). */
static void
append_data_value(StringInfo out, ForwardEvent *ev)
{
	JsonbValue	root;

	root.type = jbvBinary;
	root.val.binary.data = &ev->data->root;
	root.val.binary.len = VARSIZE(ev->data) - VARHDRSZ;
	append_any_value(out, &root);
}

/*
 * How long before its end the event's work started, in ns: the duration it
 * reports (runra_obs.event_duration_ms(), read with the event, in whole
 * microseconds), or 0 when it reports none or one no span can have:
 * negative, or reaching back before 1970.  The start is never after the
 * end nor before the epoch.
 */
static int64
duration_nanos(ForwardEvent *ev, int64 end_ns)
{
	double		ms;
	Numeric		us;

	if (ev->duration_ms == NULL)
		return 0;
	/* event_duration_ms() is below 1e30 in magnitude: no overflow here */
	ms = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											NumericGetDatum(ev->duration_ms)));
	if (!(ms > 0) || ms * 1e6 > (double) end_ns)
		return 0;
	us = numeric_mul_opt_error(ev->duration_ms, int64_to_numeric(1000), NULL);
	return Min(DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(us))) * 1000,
			   end_ns);
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
		v = jsonb_member(&ev->data->root, "exitCode");
		if (v != NULL && v->type == jbvNumeric)
			return psprintf("exit code %s",
							DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric))));
		return pstrdup("no usable exit code");
	}
	v = jsonb_member(&ev->data->root, "error");
	if (v != NULL && v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	return pstrdup(ev->event_type);
}

/* Appends the attributes every span and log record has: sandbox.id, runra.event.id. */
static void
append_builtin_attributes(StringInfo out, ForwardEvent *ev)
{
	appendStringInfoString(out, "{\"key\":\"sandbox.id\",\"value\":{\"stringValue\":");
	json_append_string(out, ev->sandbox_id);
	appendStringInfo(out, "}},{\"key\":\"runra.event.id\",\"value\":{\"intValue\":\"" INT64_FORMAT "\"}}",
					 ev->event_id);
}

/* Appends one span. */
static void
append_span(StringInfo out, ForwardEvent *ev)
{
	char		span[17];
	int64		end = timestamp_to_unix_nanos(ev->created_at);
	char	   *failure = failure_message(ev);
	bool		first = false;

	/* md5 is computed by the fetch query: it needs a resource owner */
	otlp_span_id(ev->event_id, span);
	appendStringInfo(out, "{\"traceId\":\"%s\",\"spanId\":\"%s\",\"name\":",
					 ev->trace_id ? ev->trace_id : ev->sandbox_trace_id, span);
	json_append_string(out, ev->event_type);
	appendStringInfo(out, ",\"kind\":1,\"startTimeUnixNano\":\"" INT64_FORMAT
					 "\",\"endTimeUnixNano\":\"" INT64_FORMAT "\",\"attributes\":[",
					 end - duration_nanos(ev, end), end);
	append_builtin_attributes(out, ev);
	append_members(out, &ev->data->root, true, &first);
	appendStringInfoChar(out, ']');
	if (failure)
	{
		appendStringInfoString(out, ",\"status\":{\"code\":2,\"message\":");
		json_append_string(out, failure);
		appendStringInfoChar(out, '}');
	}
	appendStringInfoChar(out, '}');
}

/* Appends one log record: an event with an event name, data as its body. */
static void
append_log_record(StringInfo out, ForwardEvent *ev)
{
	appendStringInfo(out, "{\"timeUnixNano\":\"" INT64_FORMAT "\",\"observedTimeUnixNano\":\""
					 INT64_FORMAT "\",\"severityNumber\":%d,\"severityText\":\"%s\",\"eventName\":",
					 timestamp_to_unix_nanos(ev->created_at),
					 timestamp_to_unix_nanos(ev->ingested_at),
					 ev->failed ? 17 : 9, ev->failed ? "ERROR" : "INFO");
	json_append_string(out, ev->event_type);
	if (ev->trace_id)
		appendStringInfo(out, ",\"traceId\":\"%s\"", ev->trace_id);
	appendStringInfoString(out, ",\"body\":");
	append_data_value(out, ev);
	appendStringInfoString(out, ",\"attributes\":[");
	append_builtin_attributes(out, ev);
	appendStringInfoString(out, ",{\"key\":\"event.name\",\"value\":{\"stringValue\":");
	json_append_string(out, ev->event_type);
	appendStringInfoString(out, "}}]}");
}

/* Appends the resource: the configured attributes, service.name by default. */
static void
append_resource(StringInfo out, Destination *dest)
{
	Jsonb	   *attrs = dest->resource_attributes;
	bool		first = true;

	appendStringInfoString(out, "{\"attributes\":[");
	if (attrs == NULL || !JB_ROOT_IS_OBJECT(attrs) ||
		jsonb_member(&attrs->root, "service.name") == NULL)
	{
		appendStringInfoString(out, "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"runra-sandbox\"}}");
		first = false;
	}
	if (attrs && JB_ROOT_IS_OBJECT(attrs))
		append_members(out, &attrs->root, false, &first);
	appendStringInfoString(out, "]}");
}

/* Appends the batch as one ExportTraceServiceRequest or ExportLogsServiceRequest. */
void
otlp_encode(StringInfo out, Destination *dest, ForwardEvent *events, int n)
{
	appendStringInfoString(out, dest->otlp_logs ? "{\"resourceLogs\":[{\"resource\":"
						   : "{\"resourceSpans\":[{\"resource\":");
	append_resource(out, dest);
	appendStringInfoString(out, dest->otlp_logs
						   ? ",\"scopeLogs\":[{\"scope\":{\"name\":\"runra_obs\"},\"logRecords\":["
						   : ",\"scopeSpans\":[{\"scope\":{\"name\":\"runra_obs\"},\"spans\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(out, ',');
		if (dest->otlp_logs)
			append_log_record(out, &events[i]);
		else
			append_span(out, &events[i]);
	}
	appendStringInfoString(out, "]}]}]}");
}

/*
 * Reads the receiver's 2xx answer.  A partialSuccess with rejected spans
 * (log records) must not be retried (the spec says so); *error then says
 * how many and why, and *rejected how many.
 */
void
otlp_read_answer(Destination *dest, const char *body, char **error, int *rejected)
{
	const char *what = dest->otlp_logs ? "log records" : "spans";
	cJSON	   *root = cJSON_Parse(body ? body : "");
	cJSON	   *partial = root ? cJSON_GetObjectItemCaseSensitive(root, "partialSuccess") : NULL;
	cJSON	   *count = partial ? cJSON_GetObjectItemCaseSensitive(partial, dest->otlp_logs
																   ? "rejectedLogRecords"
																   : "rejectedSpans") : NULL;
	cJSON	   *message = partial ? cJSON_GetObjectItemCaseSensitive(partial, "errorMessage") : NULL;
	double		n = 0;

	*error = NULL;
	*rejected = 0;
	if (cJSON_IsString(count))
		n = strtod(count->valuestring, NULL);
	else if (cJSON_IsNumber(count))
		n = count->valuedouble;
	if (n > 0 || (cJSON_IsString(message) && message->valuestring[0] != '\0'))
		*error = psprintf("otlp receiver rejected %.0f %s: %.200s", n, what,
						  cJSON_IsString(message) ? message->valuestring : "no reason given");
	*rejected = (int) Min(n, (double) PG_INT32_MAX);
	cJSON_Delete(root);
}
