/*
 * event_parse.c — reads event envelopes out of JSON text, in one pass.
 *
 * PostgreSQL's own JSON parser (common/jsonapi.h) walks the body and calls
 * back here.  We read the envelope (timestamp, sandboxId, type, traceId,
 * data) of each event, check every number, the nesting depth and the size
 * on the way, and build the "data" object into JSONB as it goes by, with
 * the same calls jsonb_in makes (pushJsonbValue, numeric_in).  The table
 * is handed that JSONB as it is (event_batch.c), so each body is lexed
 * once, not once to validate it and again to convert it.
 *
 * A body is one event object or an array of them.  Each event is validated
 * on its own; a bad event is rejected with a reason and its raw text, and
 * the others are kept.
 *
 * The batch's dialect (EventBodyDialect) may let "_time" stand for
 * "timestamp", as Axiom names it; an event with both must give the same
 * instant in each.
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "store/event_batch_internal.h"
#include "store/event_fields.h"

typedef enum EnvelopeField
{
	FIELD_NONE = -1,
	FIELD_TIMESTAMP,
	FIELD_SANDBOX_ID,
	FIELD_TYPE,
	FIELD_DATA,
	FIELD_TRACE_ID,
	FIELD_TIME_ALIAS,			/* "_time": only in a dialect with time_alias */
	FIELD_COUNT
} EnvelopeField;

static const char *const field_names[FIELD_COUNT] = {
	"timestamp", "sandboxId", "type", "data", "traceId", "_time"
};

/* What kind of value an envelope field had. */
typedef enum ValueKind
{
	VALUE_ABSENT = 0,
	VALUE_STRING,
	VALUE_NULL,
	VALUE_OBJECT,
	VALUE_OTHER
} ValueKind;

typedef struct EventParse
{
	JsonLexContext *lex;
	EventBatch *batch;
	EventBodyResult *result;
	MemoryContext scratch;		/* reset after every event */
	int			depth;			/* parser nesting depth; 0 = outside */
	int			event_depth;	/* depth of event objects: 1 alone, 2 in an array */
	int			index;			/* position of the current event */
	int			line;			/* NDJSON line number, else 0 */
	char	   *element_start;	/* raw text of the current array element */
	bool		element_is_event;
	char	   *event_start;
	EnvelopeField field;		/* envelope field whose value is being read */
	ValueKind	kind[FIELD_COUNT];
	char	   *value[FIELD_COUNT]; /* de-escaped strings */
	bool		building_data;	/* inside the data object, building its JSONB */
	JsonbParseState *data_state;	/* pushJsonbValue's stack while building */
	Size		data_size;		/* an upper bound of the JSONB's size so far */
	Jsonb	   *data;			/* the data object, once it ended */
	char	   *problem;		/* first structural problem of this event */
	const char *time_text;		/* the event's time as sent, once it was read */
	const EventBodyDialect *dialect;
} EventParse;

/*
 * Appends {"index":i[,"line":n][,"timestamp":t],"<key>":"message"} to the
 * failures array; the time only when the dialect asks and it was read.
 */
static void
add_failure(EventBodyResult *result, int index, int line, const char *time_text,
			const char *key, const char *message)
{
	StringInfo	out = &result->failures;

	appendStringInfoString(out, out->len > 1 ? ",{" : "{");
	appendStringInfo(out, "\"index\":%d,", index);
	if (line > 0)
		appendStringInfo(out, "\"line\":%d,", line);
	if (time_text != NULL)
	{
		appendStringInfoString(out, "\"timestamp\":");
		escape_json(out, time_text);
		appendStringInfoChar(out, ',');
	}
	escape_json(out, key);
	appendStringInfoChar(out, ':');
	escape_json(out, message);
	appendStringInfoChar(out, '}');
}

/*
 * Counts one rejected event of the body result is for; true while it is
 * among the first EVENT_REJECTED_KEPT_PER_BODY, which are kept (and
 * reported) one by one.  Past the cap it is only counted, and the body is
 * kept whole once (reject_rest_of_body).
 */
bool
event_body_keep_rejection(EventBodyResult *result)
{
	return ++result->failed <= EVENT_REJECTED_KEPT_PER_BODY;
}

/*
 * Rejects one event (or NDJSON line): reported to the caller with its
 * position, counted, and kept with its raw text.
 */
void
reject_event_text(EventBatch *batch, EventBodyResult *result, int index,
				  int line, const char *reason, const char *time_text,
				  const char *raw, int raw_len)
{
	if (!event_batch_dialect(batch)->failure_times)
		time_text = NULL;
	if (!event_body_keep_rejection(result))
		return;
	add_failure(result, index, line, time_text, "error", reason);
	event_batch_reject(batch, index, reason, raw, raw_len);
}

/*
 * A body with more rejected events than are kept one by one: one more
 * failure says how many, and the whole body is kept once in
 * rejected_events, so nothing sent is lost, while a 1 MB body of
 * [1,1,1,...] writes 1001 rows, not 500,000.  A translated body's dialect
 * gives the sender's text to keep instead of the translation.
 */
void
reject_rest_of_body(EventBatch *batch, EventBodyResult *result, char *body, int len)
{
	int64		rest = result->failed - EVENT_REJECTED_KEPT_PER_BODY;
	const EventBodyDialect *dialect = event_batch_dialect(batch);
	char	   *reason;

	if (rest <= 0)
		return;
	if (dialect->whole_body)
		dialect->whole_body(dialect->arg, &body, &len);
	reason = psprintf(INT64_FORMAT " more events of this body were rejected; only the first %d are kept one by one, and runra_obs.rejected_events keeps the whole body (position %d)",
					  rest, EVENT_REJECTED_KEPT_PER_BODY, EVENT_REJECTED_KEPT_PER_BODY);
	add_failure(result, EVENT_REJECTED_KEPT_PER_BODY, 0, NULL, "error", reason);
	event_batch_reject_record(batch, EVENT_REJECTED_KEPT_PER_BODY, reason, body, len);
}

/* Rejects the current event. */
static void
reject_event(EventParse *parse, const char *reason, const char *raw, int raw_len)
{
	reject_event_text(parse->batch, parse->result, parse->index, parse->line,
					  reason, parse->time_text, raw, raw_len);
}

/* Notes the first structural problem of the event (unknown key, depth ...). */
static void
note_problem(EventParse *parse, const char *fmt, const char *arg)
{
	if (parse->problem == NULL)
		parse->problem = psprintf(fmt, arg);
	parse->building_data = false;	/* it will be rejected: build no more */
}

/* A user-supplied string, cut short enough to quote in an error message. */
static const char *
quoted(const char *s)
{
	if (strlen(s) <= 64)
		return s;
	return psprintf("%.*s...", pg_mbcliplen(s, strlen(s), 60), s);
}

/* The string value of a required envelope field, or NULL with a reason. */
static const char *
required_string(EventParse *parse, EnvelopeField field, const char **reason)
{
	switch (parse->kind[field])
	{
		case VALUE_STRING:
			return parse->value[field];
		case VALUE_ABSENT:
			*reason = psprintf("%s is missing", field_names[field]);
			return NULL;
		default:
			*reason = psprintf("%s must be a string", field_names[field]);
			return NULL;
	}
}

/* Reads one time field (timestamp or _time) as an ISO 8601 instant. */
static bool
read_time(EventParse *parse, EnvelopeField field, TimestampTz *ts, const char **reason)
{
	const char *text = required_string(parse, field, reason);
	const char *problem;

	if (text == NULL)
		return false;
	if (!parse_iso8601_timestamp(text, ts, &problem))
	{
		*reason = psprintf("%s \"%s\" %s", field_names[field], quoted(text), problem);
		return false;
	}
	parse->time_text = text;
	return true;
}

/*
 * The event's time: timestamp, or (Axiom dialect) _time; with both, they
 * must be the same instant, written however each likes.
 */
static bool
read_event_time(EventParse *parse, TimestampTz *ts, const char **reason)
{
	TimestampTz alias;

	if (parse->kind[FIELD_TIME_ALIAS] == VALUE_ABSENT)
	{
		if (parse->dialect->time_alias && parse->kind[FIELD_TIMESTAMP] == VALUE_ABSENT)
		{
			*reason = "timestamp (or _time) is missing";
			return false;
		}
		return read_time(parse, FIELD_TIMESTAMP, ts, reason);
	}
	if (!read_time(parse, FIELD_TIME_ALIAS, &alias, reason))
		return false;
	*ts = alias;
	if (parse->kind[FIELD_TIMESTAMP] == VALUE_ABSENT)
		return true;
	if (!read_time(parse, FIELD_TIMESTAMP, ts, reason))
		return false;
	if (*ts == alias)
		return true;
	*reason = psprintf("timestamp \"%s\" and _time \"%s\" are different instants",
					   quoted(parse->value[FIELD_TIMESTAMP]), quoted(parse->value[FIELD_TIME_ALIAS]));
	return false;
}

/* Validates the event's time and its place in the stored window. */
static bool
check_timestamp(EventParse *parse, TimestampTz *ts, const char **reason)
{
	const char *problem;

	if (!read_event_time(parse, ts, reason))
		return false;
	if ((problem = event_batch_check_time(parse->batch, *ts)) != NULL)
	{
		*reason = psprintf("timestamp \"%s\" %s", quoted(parse->time_text), problem);
		return false;
	}
	return true;
}

/* Validates sandboxId and type; fills them into the event. */
static bool
check_identity(EventParse *parse, ValidEvent *event, const char **reason)
{
	const char *id = required_string(parse, FIELD_SANDBOX_ID, reason);
	const char *type;

	if (id == NULL || (*reason = check_sandbox_id(id, strlen(id))) != NULL)
		return false;
	/* repaired text (U+FFFD, UTF-8 EF BF BD) is kept in data, never in an id */
	if (event_batch_body_repaired(parse->batch) && strstr(id, "\xEF\xBF\xBD") != NULL)
	{
		*reason = "sandboxId is not valid text (invalid UTF-8, \\u0000 or a lone surrogate): "
			"stored as U+FFFD it would merge distinct sandboxes";
		return false;
	}
	type = required_string(parse, FIELD_TYPE, reason);
	if (type == NULL)
		return false;
	if ((*reason = check_event_type(type, strlen(type))) != NULL)
	{
		if (strlen(type) <= EVENT_TYPE_MAX)
			*reason = psprintf("%s, not \"%s\"", *reason, quoted(type));
		return false;
	}
	event->sandbox_id = id;
	event->sandbox_id_len = strlen(id);
	event->event_type = type;
	event->event_type_len = strlen(type);
	return true;
}

/* {} as JSONB, built once per process. */
static Jsonb *
empty_object(void)
{
	static Jsonb *empty = NULL;

	if (empty == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		JsonbParseState *state = NULL;

		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		empty = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
		MemoryContextSwitchTo(old);
	}
	return empty;
}

/* Fills in data: the object as JSONB, {} when absent or null. */
static bool
check_data(EventParse *parse, ValidEvent *event, const char **reason)
{
	switch (parse->kind[FIELD_DATA])
	{
		case VALUE_ABSENT:
		case VALUE_NULL:
			event->data = empty_object();
			return true;
		case VALUE_OBJECT:
			Assert(parse->data != NULL);	/* no problem noted: it was built */
			event->data = parse->data;
			return true;
		default:
			*reason = "data must be a JSON object";
			return false;
	}
}

/*
 * traceId is optional; a malformed one is reported as a warning and the
 * event is kept without it (losing a whole event over a trace id would be
 * worse).
 */
static void
check_trace_id(EventParse *parse, ValidEvent *event, char *buffer)
{
	ValueKind	kind = parse->kind[FIELD_TRACE_ID];

	event->trace_id = NULL;
	if (kind == VALUE_ABSENT || kind == VALUE_NULL)
		return;
	if (kind == VALUE_STRING &&
		normalize_trace_id(parse->value[FIELD_TRACE_ID],
						   strlen(parse->value[FIELD_TRACE_ID]), buffer))
	{
		event->trace_id = buffer;
		return;
	}
	add_failure(parse->result, parse->index, parse->line, NULL, "warning",
				"traceId is not 32 hex digits (a W3C trace id); event stored without it");
}

/* The event object just ended: validate it and queue or reject it. */
static void
finish_event(EventParse *parse, char *raw_start, char *raw_end)
{
	ValidEvent	event;
	const char *reason = parse->problem;
	char		trace_id[EVENT_TRACE_ID_LEN + 1];

	if (reason == NULL &&
		check_timestamp(parse, &event.created_at, &reason) &&
		check_identity(parse, &event, &reason) &&
		check_data(parse, &event, &reason))
	{
		check_trace_id(parse, &event, trace_id);
		event_batch_append(parse->batch, &event);
		parse->result->ingested++;
	}
	else
		reject_event(parse, reason, raw_start, raw_end - raw_start);
}

/* Clears what we know of the event that starts now. */
static void
start_event(EventParse *parse)
{
	MemoryContextReset(parse->scratch);
	memset(parse->kind, 0, sizeof(parse->kind));
	memset(parse->value, 0, sizeof(parse->value));
	parse->problem = NULL;
	parse->time_text = NULL;
	parse->field = FIELD_NONE;
	parse->building_data = false;
	parse->data = NULL;
	parse->event_start = parse->lex->token_start;
}

/* Depth of the current value inside its event (the event object is 1). */
static void
check_depth(EventParse *parse)
{
	int			depth_in_event = parse->depth - parse->event_depth + 1;

	if (depth_in_event == runra_max_json_depth + 1)
		note_problem(parse, "event is nested deeper than %s levels (runra_obs.max_json_depth)",
					 psprintf("%d", runra_max_json_depth));
}

/* ---- building the data object's JSONB ---- */

/*
 * The most one JSONB container can hold (its entries' offsets have 28
 * bits).  Past it jsonb_in raises an error, which would fail the whole
 * batch; here only the one event is rejected.
 */
#define DATA_MAX_SIZE ((Size) JENTRY_OFFLENMASK)

/*
 * Counts what a value adds to the JSONB at most (its bytes plus its entry,
 * alignment and a numeric's header); true while the data still fits.
 */
static bool
data_fits(EventParse *parse, Size bytes)
{
	parse->data_size += bytes + 16;
	if (parse->data_size <= DATA_MAX_SIZE)
		return true;
	note_problem(parse, "data is larger than JSONB can store (%s MB)",
				 psprintf("%d", (int) (DATA_MAX_SIZE / (1024 * 1024))));
	return false;
}

/* A scalar of the data object: a member's value or an array's element. */
static void
push_data_scalar(EventParse *parse, char *token, JsonTokenType type)
{
	JsonbValue	v;
	Size		len = strlen(token);

	if (!data_fits(parse, len))
		return;
	switch (type)
	{
		case JSON_TOKEN_STRING:
			v.type = jbvString;
			v.val.string.len = len;
			v.val.string.val = token;
			break;
		case JSON_TOKEN_NUMBER:
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																CStringGetDatum(token),
																ObjectIdGetDatum(InvalidOid),
																Int32GetDatum(-1)));
			break;
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
			v.type = jbvBool;
			v.val.boolean = (type == JSON_TOKEN_TRUE);
			break;
		default:
			v.type = jbvNull;
			break;
	}
	pushJsonbValue(&parse->data_state,
				   parse->data_state->contVal.type == jbvArray ? WJB_ELEM : WJB_VALUE, &v);
}

/* A key of the data object (or of an object inside it). */
static void
push_data_key(EventParse *parse, char *key)
{
	JsonbValue	v;
	Size		len = strlen(key);

	if (!data_fits(parse, len))
		return;
	v.type = jbvString;
	v.val.string.len = len;
	v.val.string.val = key;
	pushJsonbValue(&parse->data_state, WJB_KEY, &v);
}

/*
 * An object or array starts at the current depth, inside an event.  In
 * the place of the envelope's data field, an object starts the data
 * (a later data field replaces an earlier one, as in jsonb_in).  Once the
 * event has a problem nothing more is built (note_problem): a value nested
 * too deep is never pushed.
 */
static void
start_container(EventParse *parse, ValueKind kind)
{
	bool		is_object = (kind == VALUE_OBJECT);

	if (parse->depth == parse->event_depth + 1 && parse->field != FIELD_NONE)
	{
		parse->kind[parse->field] = kind;
		parse->building_data = (parse->field == FIELD_DATA && is_object &&
								parse->problem == NULL);
		parse->data_state = NULL;
		parse->data_size = 0;
	}
	check_depth(parse);
	if (parse->building_data && data_fits(parse, 0))
		pushJsonbValue(&parse->data_state,
					   is_object ? WJB_BEGIN_OBJECT : WJB_BEGIN_ARRAY, NULL);
}

/* An object or array ends at the current depth; maybe the data object. */
static void
end_container(EventParse *parse, bool is_object)
{
	JsonbValue *value;

	if (!parse->building_data)
		return;
	value = pushJsonbValue(&parse->data_state,
						   is_object ? WJB_END_OBJECT : WJB_END_ARRAY, NULL);
	if (parse->depth == parse->event_depth + 1)
	{
		parse->data = JsonbValueToJsonb(value);
		parse->building_data = false;
	}
}

/* ---- the parser's callbacks ---- */

static void
on_object_start(void *state)
{
	EventParse *parse = state;

	parse->depth++;
	if (parse->depth == parse->event_depth)
	{
		parse->element_is_event = true;
		start_event(parse);
	}
	else if (parse->depth > parse->event_depth)
		start_container(parse, VALUE_OBJECT);
}

static void
on_object_end(void *state)
{
	EventParse *parse = state;

	if (parse->depth == parse->event_depth)
		finish_event(parse, parse->event_start, parse->lex->prev_token_terminator);
	else if (parse->depth > parse->event_depth)
		end_container(parse, true);
	parse->depth--;
}

static void
on_array_start(void *state)
{
	EventParse *parse = state;

	parse->depth++;
	if (parse->depth > parse->event_depth)
		start_container(parse, VALUE_OTHER);
}

static void
on_array_end(void *state)
{
	EventParse *parse = state;

	if (parse->depth > parse->event_depth)
		end_container(parse, false);
	parse->depth--;
}

/* The envelope field of a key; _time only where the dialect allows it. */
static EnvelopeField
lookup_field(EventParse *parse, const char *name)
{
	for (int f = 0; f < FIELD_COUNT; f++)
		if (strcmp(name, field_names[f]) == 0)
			return (f == FIELD_TIME_ALIAS && !parse->dialect->time_alias)
				? FIELD_NONE : (EnvelopeField) f;
	return FIELD_NONE;
}

/* fname is de-escaped by the parser, as every string token is */
static void
on_field_start(void *state, char *fname, bool isnull)
{
	EventParse *parse = state;

	if (parse->building_data)
		push_data_key(parse, fname);
	if (parse->depth != parse->event_depth)
		return;
	parse->field = lookup_field(parse, fname);
	if (parse->field == FIELD_NONE)
		note_problem(parse,
					 "unknown field \"%s\" (an event has timestamp, sandboxId, type, data and traceId)",
					 quoted(fname));
	else if (isnull)
		parse->kind[parse->field] = VALUE_NULL;
}

static void
on_field_end(void *state, char *fname, bool isnull)
{
	EventParse *parse = state;

	if (parse->depth != parse->event_depth)
		return;
	parse->field = FIELD_NONE;
}

static void
on_scalar(void *state, char *token, JsonTokenType type)
{
	EventParse *parse = state;

	if (type == JSON_TOKEN_NUMBER && !json_number_is_storable(token))
		note_problem(parse,
					 "number %s cannot be stored exactly (at most 131000 digits before the point, 16000 after, and an exponent within +-1000)",
					 quoted(token));
	if (parse->building_data)
		push_data_scalar(parse, token, type);
	if (parse->depth != parse->event_depth || parse->field == FIELD_NONE)
		return;
	if (type == JSON_TOKEN_STRING)
	{
		parse->kind[parse->field] = VALUE_STRING;
		parse->value[parse->field] = token;	/* de-escaped, in the event's scratch */
	}
	else if (type != JSON_TOKEN_NULL)
		parse->kind[parse->field] = VALUE_OTHER;
}

static void
on_element_start(void *state, bool isnull)
{
	EventParse *parse = state;

	if (parse->depth != 1 || parse->event_depth != 2)
		return;
	parse->element_start = parse->lex->token_start;
	parse->element_is_event = false;
}

/* An array element that was not an object is rejected as a whole. */
static void
on_element_end(void *state, bool isnull)
{
	EventParse *parse = state;

	if (parse->depth != 1 || parse->event_depth != 2)
		return;
	if (!parse->element_is_event)
	{
		char	   *end = parse->lex->prev_token_terminator;

		reject_event(parse, "an event must be a JSON object",
					 parse->element_start, end - parse->element_start);
	}
	parse->index++;
}

/* The first character that is not JSON white space. */
char
json_first_token_char(const char *body, int len)
{
	for (int i = 0; i < len; i++)
		if (!(body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
			return body[i];
	return '\0';
}

/* "invalid JSON at line L, column C: <what the parser said>" */
char *
describe_json_syntax_error(JsonLexContext *lex, JsonParseErrorType error, int line_offset)
{
	/* at the end of the input the lexer leaves token_start NULL */
	char	   *where = lex->token_start ? lex->token_start : lex->token_terminator;
	int			column = pg_mbstrlen_with_len(lex->line_start, where - lex->line_start) + 1;

	return psprintf("invalid JSON at line %d, column %d: %s",
					lex->line_number + line_offset, column,
					json_errdetail(error, lex));
}

/*
 * Parses one body (or one NDJSON line: one_event_only) and feeds each event
 * to the batch.  Returns false, with *syntax_error set, when the text is not
 * JSON at all; events already fed must then be discarded by the caller.
 */
bool
parse_event_body(EventBatch *batch, char *body, int len, bool one_event_only,
				 int index, int line, EventBodyResult *result, char **syntax_error)
{
	EventParse	parse = {0};
	JsonSemAction sem = {0};
	JsonParseErrorType error;
	char		first = json_first_token_char(body, len);
	MemoryContext outer = CurrentMemoryContext;

	if (first != '{' && (first != '[' || one_event_only))
	{
		*syntax_error = pstrdup(one_event_only ? "each line must be one JSON object"
								: "body must be a JSON object or an array of objects");
		return false;
	}
	parse.lex = makeJsonLexContextCstringLen(body, len, PG_UTF8, true);
	parse.batch = batch;
	parse.dialect = event_batch_dialect(batch);
	parse.result = result;
	parse.event_depth = (first == '[') ? 2 : 1;
	parse.index = index;
	parse.line = line;
	parse.field = FIELD_NONE;	/* {0} would mean timestamp, before any key */
	parse.scratch = AllocSetContextCreate(outer, "runra_obs event", ALLOCSET_DEFAULT_SIZES);

	sem.semstate = &parse;
	sem.object_start = on_object_start;
	sem.object_end = on_object_end;
	sem.array_start = on_array_start;
	sem.array_end = on_array_end;
	sem.object_field_start = on_field_start;
	sem.object_field_end = on_field_end;
	sem.array_element_start = on_element_start;
	sem.array_element_end = on_element_end;
	sem.scalar = on_scalar;

	/* the lexer's allocations for an event die with that event */
	MemoryContextSwitchTo(parse.scratch);
	error = pg_parse_json(parse.lex, &sem);
	MemoryContextSwitchTo(outer);

	*syntax_error = (error == JSON_SUCCESS) ? NULL
		: describe_json_syntax_error(parse.lex, error, line > 0 ? line - 1 : 0);
	MemoryContextDelete(parse.scratch);
	return error == JSON_SUCCESS;
}
