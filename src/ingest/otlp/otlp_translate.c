/*
 * otlp_translate.c — an OTLP export request (as OTLP JSON in a jsonb) as
 * our events, following docs/otlp.md (the receiver's half):
 *
 *   span        type = name, timestamp = endTimeUnixNano (else the start),
 *               traceId unless it is md5(sandbox.id) (what the forwarder
 *               derives for events without one), data = the attributes,
 *               plus durationMs = end - start when none of the duration
 *               keys is among them
 *   log record  type = eventName, else attribute event.name; timestamp =
 *               timeUnixNano, else observedTimeUnixNano; traceId; data =
 *               the attributes, then the body's members (a kvlist body) or
 *               {"body": value} (any other body): the body wins a key
 *               both have
 *
 * sandbox.id comes from the record's attributes, else its resource's.
 * runra.data.<key> is <key>; runra.event.id and other runra.* attributes
 * are not kept.  The result is a JSON array of envelopes for the store's
 * one validation; a record that cannot be an event at all (no sandbox.id,
 * no name, no time, a value OTLP does not allow) is kept in
 * rejected_events, as its OTLP JSON, with the reason, under the store's
 * cap per body (EVENT_REJECTED_KEPT_PER_BODY, counted in the body's
 * EventBodyResult with the events the validation rejects later): past it
 * such records are only counted.
 */
#include "postgres.h"

#include "common/md5.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "ingest/otlp/otlp.h"
#include "store/event_fields.h"

#define UNIX_EPOCH_USECS ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/* The keys runra_obs.event_duration_ms() reads a duration from. */
static const char *const duration_keys[] = {
	"startupDurationMs", "runtimeDurationMs", "pausedDurationMs",
	"totalRuntimeMs", "timeoutMs", "durationMs"
};

/* One record on its way to becoming an event. */
typedef struct Record
{
	OtlpSignal	signal;
	JsonbContainer *rec;
	char	   *sandbox_id;
	char	   *event_name;		/* logs: the event.name attribute */
	StringInfoData data;		/* members of data, comma-separated */
	bool		has_duration;
	const char *problem;
} Record;

/* The i-th element of an array member, for walking the request's levels. */
static JsonbContainer *
element(JsonbContainer *array, int i)
{
	return otlp_container(getIthJsonbValueFromContainer(array, i));
}

/* An array member, or NULL when absent; *error when it is something else. */
static JsonbContainer *
array_member(JsonbContainer *obj, const char *name, const char *where, char **error)
{
	JsonbValue *v = otlp_member(obj, name);
	JsonbContainer *c = otlp_container(v);

	if (v != NULL && (c == NULL || !JsonContainerIsArray(c)))
		*error = psprintf("%s.%s must be an array", where, name);
	return (c != NULL && JsonContainerIsArray(c)) ? c : NULL;
}

/* The names of each level: resourceSpans / scopeSpans / spans, or logs'. */
static void
level_names(OtlpSignal signal, const char **resources, const char **scopes, const char **records)
{
	*resources = signal == OTLP_TRACES ? "resourceSpans" : "resourceLogs";
	*scopes = signal == OTLP_TRACES ? "scopeSpans" : "scopeLogs";
	*records = signal == OTLP_TRACES ? "spans" : "logRecords";
}

/* Is this attribute key one of the duration keys? */
static bool
is_duration_key(const char *key)
{
	for (int i = 0; i < lengthof(duration_keys); i++)
		if (strcmp(key, duration_keys[i]) == 0)
			return true;
	return false;
}

/* Appends "key":value to the record's data. */
static void
add_member(Record *r, const char *key, JsonbValue *value)
{
	int			mark = r->data.len;

	if (r->data.len > 0)
		appendStringInfoChar(&r->data, ',');
	escape_json(&r->data, key);
	appendStringInfoChar(&r->data, ':');
	if (!otlp_append_any_value(&r->data, value, &r->problem))
	{
		r->data.len = mark;
		r->data.data[mark] = '\0';
		return;
	}
	r->has_duration |= is_duration_key(key);
}

/* The stringValue of an AnyValue, or NULL. */
static char *
string_value(JsonbValue *value)
{
	return otlp_string(otlp_member(otlp_container(value), "stringValue"));
}

/* One attribute: built-in, ignored, or a member of data (docs/otlp.md). */
static void
read_attribute(Record *r, const char *key, JsonbValue *value)
{
	if (strcmp(key, "sandbox.id") == 0)
	{
		if ((r->sandbox_id = string_value(value)) == NULL)
			r->problem = "sandbox.id must be a stringValue";
	}
	else if (r->signal == OTLP_LOGS && strcmp(key, "event.name") == 0)
		r->event_name = string_value(value);
	else if (strncmp(key, "runra.data.", 11) == 0)
		add_member(r, key + 11, value);
	else if (strncmp(key, "runra.", 6) != 0)
		add_member(r, key, value);
}

/*
 * Calls visit for each {key, value} of a KeyValue array (attributes, a
 * kvlist body); one without a key is the record's problem.
 */
static void
each_key_value(Record *r, JsonbContainer *list, const char *what,
			   void (*visit) (Record *r, const char *key, JsonbValue *value))
{
	int			n = list && JsonContainerIsArray(list) ? JsonContainerSize(list) : 0;

	for (int i = 0; i < n && r->problem == NULL; i++)
	{
		JsonbContainer *kv = element(list, i);
		char	   *key = otlp_string(otlp_member(kv, "key"));

		if (key == NULL)
			r->problem = psprintf("%s has no key", what);
		else
			visit(r, key, otlp_member(kv, "value"));
	}
}

/* Reads every attribute of a record. */
static void
read_attributes(Record *r, JsonbContainer *owner)
{
	each_key_value(r, otlp_container(otlp_member(owner, "attributes")), "an attribute",
				   read_attribute);
}

/* A resource's attributes are read for sandbox.id alone. */
static void
resource_attribute(Record *r, const char *key, JsonbValue *value)
{
	if (strcmp(key, "sandbox.id") == 0)
		r->sandbox_id = string_value(value);
}

/* sandbox.id of a resource, or NULL. */
static char *
resource_sandbox_id(JsonbContainer *resource)
{
	Record		scratch = {0};

	each_key_value(&scratch, otlp_container(otlp_member(resource, "attributes")),
				   "a resource attribute", resource_attribute);
	return scratch.sandbox_id;
}

/* A log record's body: its members (a kvlist), else {"body": value}. */
static void
read_body(Record *r)
{
	JsonbValue *body = otlp_member(r->rec, "body");
	JsonbValue *kvlist = otlp_member(otlp_container(body), "kvlistValue");

	if (body == NULL)
		return;
	if (kvlist == NULL)
		add_member(r, "body", body);
	else
		each_key_value(r, otlp_container(otlp_member(otlp_container(kvlist), "values")),
					   "a body member", add_member);
}

/* A time field in nanoseconds since 1970, 0 when absent (OTLP's "unset"). */
static uint64
read_time(Record *r, const char *name)
{
	JsonbValue *v = otlp_member(r->rec, name);
	uint64		nanos = 0;

	if (v != NULL && !otlp_read_uint64(v, &nanos))
		r->problem = psprintf("%s must be a 64-bit unsigned integer", name);
	return nanos;
}

/* Appends "timestamp":"..." for a time in Unix nanoseconds, to the microsecond. */
static void
append_time(StringInfo out, uint64 nanos)
{
	appendStringInfoString(out, "\"timestamp\":\"");
	append_iso8601_timestamp(out, (TimestampTz) ((nanos + 500) / 1000) - UNIX_EPOCH_USECS);
	appendStringInfoChar(out, '"');
}

/* Appends ,"durationMs":n for a span that reports no duration of its own. */
static void
append_span_duration(Record *r, uint64 start, uint64 end)
{
	uint64		ns = end - start;

	if (r->has_duration || end <= start || start == 0)
		return;
	appendStringInfo(&r->data, "%s\"durationMs\":" UINT64_FORMAT, r->data.len > 0 ? "," : "",
					 ns / 1000000);
	if (ns % 1000000 != 0)
	{
		char		frac[8];
		int			len;

		snprintf(frac, sizeof(frac), "%06u", (unsigned) (ns % 1000000));
		for (len = 6; frac[len - 1] == '0'; len--)
			;
		appendStringInfo(&r->data, ".%.*s", len, frac);
	}
}

/*
 * The traceId to keep: none when absent, empty, all zeros, or (spans) the
 * md5 of the sandbox id that the forwarder derives for events without one.
 */
static char *
trace_id(Record *r)
{
	char	   *id = otlp_string(otlp_member(r->rec, "traceId"));
	char		md5[33];
	const char *errstr;

	if (id == NULL || id[0] == '\0' || strspn(id, "0") == strlen(id))
		return NULL;
	if (r->signal == OTLP_TRACES &&
		pg_md5_hash(r->sandbox_id, strlen(r->sandbox_id), md5, &errstr) &&
		pg_strcasecmp(id, md5) == 0)
		return NULL;
	return id;
}

/* The record's name and time; false with r->problem when it has none. */
static bool
name_and_time(Record *r, char **name, uint64 *time, uint64 *start)
{
	*start = 0;
	if (r->signal == OTLP_TRACES)
	{
		*name = otlp_string(otlp_member(r->rec, "name"));
		*start = read_time(r, "startTimeUnixNano");
		*time = read_time(r, "endTimeUnixNano");
		if (*time == 0)
			*time = *start;
	}
	else
	{
		*name = otlp_string(otlp_member(r->rec, "eventName"));
		if (*name == NULL || (*name)[0] == '\0')
			*name = r->event_name;
		*time = read_time(r, "timeUnixNano");
		if (*time == 0)
			*time = read_time(r, "observedTimeUnixNano");
	}
	if (r->problem == NULL && (*name == NULL || (*name)[0] == '\0'))
		r->problem = r->signal == OTLP_TRACES ? "the span has no name"
			: "the log record has no eventName (nor an event.name attribute)";
	else if (r->problem == NULL && *time == 0)
		r->problem = "it has no time";
	return r->problem == NULL;
}

/* Appends the record's envelope to the events array. */
static void
append_envelope(OtlpTranslation *out, Record *r, const char *name, uint64 time)
{
	char	   *trace = trace_id(r);

	appendStringInfoString(&out->events, out->n_events > 0 ? ",{" : "{");
	append_time(&out->events, time);
	appendStringInfoString(&out->events, ",\"sandboxId\":");
	escape_json(&out->events, r->sandbox_id);
	appendStringInfoString(&out->events, ",\"type\":");
	escape_json(&out->events, name);
	appendStringInfo(&out->events, ",\"data\":{%s}", r->data.data);
	if (trace != NULL)
	{
		appendStringInfoString(&out->events, ",\"traceId\":");
		escape_json(&out->events, trace);
	}
	appendStringInfoChar(&out->events, '}');
}

/*
 * Counts a record that cannot be an event; within the store's cap per body
 * it is kept and named in the answer, past it only counted (the request is
 * kept whole once: see http_otlp_add).
 */
static void
refuse_record(OtlpTranslation *out, EventBatch *batch, EventBodyResult *result,
			  Record *r, int position, const char *name)
{
	StringInfoData raw;

	if (!event_body_keep_rejection(result))
		return;
	initStringInfo(&raw);
	if (r->rec != NULL)
		(void) JsonbToCString(&raw, r->rec, 256);
	else
		appendStringInfoString(&raw, "null");	/* a scalar where a record belongs */
	event_batch_reject_record(batch, position, r->problem, raw.data, raw.len);
	otlp_note_problem(out, r->signal, position, name, r->problem);
}

/* One span or log record: an envelope, or refused with its reason. */
static void
translate_record(OtlpTranslation *out, EventBatch *batch, EventBodyResult *result,
				 OtlpSignal signal, JsonbContainer *rec, char *resource_sandbox, int position)
{
	Record		r = {.signal = signal, .rec = rec};
	char	   *name = NULL;
	uint64		time,
				start;

	initStringInfo(&r.data);
	if (rec == NULL || !JsonContainerIsObject(rec))
		r.problem = "a record must be a JSON object";
	else
	{
		read_attributes(&r, rec);
		if (signal == OTLP_LOGS && r.problem == NULL)
			read_body(&r);
		if (r.sandbox_id == NULL)
			r.sandbox_id = resource_sandbox;
		if (r.problem == NULL && r.sandbox_id == NULL)
			r.problem = "no sandbox.id attribute on it or its resource";
	}
	if (r.problem == NULL && name_and_time(&r, &name, &time, &start))
	{
		if (signal == OTLP_TRACES)
			append_span_duration(&r, start, time);
		append_envelope(out, &r, name, time);
		out->event_record[out->n_events] = rec;
		out->event_position[out->n_events++] = position;
		return;
	}
	if (name == NULL && rec != NULL)	/* to name it in the answer */
		name = otlp_string(otlp_member(rec, signal == OTLP_TRACES ? "name" : "eventName"));
	refuse_record(out, batch, result, &r, position, name);
}

/* Counts the records, checking every level is an array where one belongs. */
static bool
count_records(JsonbContainer *root, OtlpSignal signal, int *count, char **error)
{
	const char *rs_name, *scope_name, *rec_name;
	JsonbContainer *resources;
	int			n_resources;

	level_names(signal, &rs_name, &scope_name, &rec_name);
	*count = 0;
	resources = array_member(root, rs_name, "the request", error);
	n_resources = resources ? JsonContainerSize(resources) : 0;
	for (int i = 0; i < n_resources && *error == NULL; i++)
	{
		JsonbContainer *scopes = array_member(element(resources, i), scope_name,
											  psprintf("%s[%d]", rs_name, i), error);

		for (int j = 0; scopes && j < JsonContainerSize(scopes) && *error == NULL; j++)
		{
			JsonbContainer *records = array_member(element(scopes, j), rec_name,
												   psprintf("%s[%d].%s[%d]", rs_name, i, scope_name, j), error);

			*count += records ? JsonContainerSize(records) : 0;
		}
	}
	if (*error == NULL && *count > OTLP_MAX_RECORDS)
		*error = psprintf("the request holds %d %s, more than %d: send smaller batches",
						  *count, rec_name, OTLP_MAX_RECORDS);
	return *error == NULL;
}

/*
 * Translates a decoded request.  False with *error (nothing queued) when
 * its frame is not OTLP's; else out holds the events, and the records that
 * could not be events are counted in result (the body's, which the
 * validation of out->events then goes on counting in) and, within the
 * cap, queued in the batch's rejected_events.
 */
bool
otlp_translate(Jsonb *request, OtlpSignal signal, EventBatch *batch,
			   EventBodyResult *result, OtlpTranslation *out, char **error)
{
	const char *rs_name, *scope_name, *rec_name;
	JsonbContainer *resources;
	int			position = 0;

	memset(out, 0, sizeof(*out));
	out->request = request;
	*error = NULL;
	if (!count_records(&request->root, signal, &out->n_records, error))
		return false;
	level_names(signal, &rs_name, &scope_name, &rec_name);
	initStringInfo(&out->events);
	initStringInfo(&out->problems);
	appendStringInfoChar(&out->events, '[');
	out->event_record = palloc(sizeof(JsonbContainer *) * Max(out->n_records, 1));
	out->event_position = palloc(sizeof(int) * Max(out->n_records, 1));
	resources = otlp_container(otlp_member(&request->root, rs_name));
	for (int i = 0; resources && i < JsonContainerSize(resources); i++)
	{
		JsonbContainer *rs = element(resources, i);
		char	   *sandbox = resource_sandbox_id(otlp_container(otlp_member(rs, "resource")));
		JsonbContainer *scopes = otlp_container(otlp_member(rs, scope_name));

		for (int j = 0; scopes && j < JsonContainerSize(scopes); j++)
		{
			JsonbContainer *records = otlp_container(otlp_member(element(scopes, j), rec_name));

			for (int k = 0; records && k < JsonContainerSize(records); k++)
				translate_record(out, batch, result, signal, element(records, k), sandbox, position++);
		}
	}
	appendStringInfoChar(&out->events, ']');
	return true;
}

/* Names a refused record in the answer's errorMessage (the first few only). */
void
otlp_note_problem(OtlpTranslation *out, OtlpSignal signal, int position,
				  const char *name, const char *reason)
{
	if (out->n_problems++ >= OTLP_MAX_NAMED_PROBLEMS)
		return;
	if (out->problems.len > 0)
		appendStringInfoString(&out->problems, "; ");
	appendStringInfo(&out->problems, "%s %d", signal == OTLP_TRACES ? "span" : "log record", position);
	if (name != NULL && name[0] != '\0')
		appendStringInfo(&out->problems, " \"%.*s\"", pg_mbcliplen(name, strlen(name), 64), name);
	appendStringInfo(&out->problems, ": %s", reason);
}
