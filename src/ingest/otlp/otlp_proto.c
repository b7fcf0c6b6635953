/*
 * otlp_proto.c — an OTLP/HTTP protobuf body (application/x-protobuf) as the
 * same OTLP JSON (in a jsonb) that a JSON body decodes into, so that one
 * translator serves both encodings.
 *
 * protobuf-c unpacks the body with the code generated from our own schema
 * (the .proto files in proto/, OTLP's packages and field numbers; the Makefile runs
 * protoc-c).  Its allocator is malloc with a budget (16 bytes per body
 * byte, plus 16 MB) and a stack check: it returns NULL rather than
 * throwing, so no ERROR can unwind through protobuf-c's frames, and a body
 * that would take too much memory or nest so deep that protobuf-c's
 * recursion would exhaust the stack fails cleanly, as a 400.  The unpacked
 * message is then walked by its descriptors into OTLP JSON: camelCase
 * names, trace and span ids in hex, other bytes in base64, 64-bit integers
 * as decimal strings, defaults left out (as proto3 JSON does), oneof
 * members whenever set.  Strings must be valid UTF-8 (proto3 says so);
 * nesting and the number of values have the JSON decoder's limits.
 */
#include "postgres.h"

#include <math.h>
#include <protobuf-c/protobuf-c.h>

#include "common/base64.h"
#include "common/shortest_dec.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

#include "ingest/otlp/otlp.h"
#include "ingest/otlp/proto/logs_service.pb-c.h"
#include "ingest/otlp/proto/trace_service.pb-c.h"

/* The allocator's state: what it has handed out, and why it stopped. */
typedef struct Budget
{
	size_t		used;
	size_t		limit;
	bool		exhausted;
	bool		too_deep;
} Budget;

/* Walking the unpacked message into jsonb. */
typedef struct Walk
{
	JsonbParseState *state;
	int64		values;
	char	   *error;
} Walk;

static JsonbValue *walk_message(Walk *w, const ProtobufCMessage *msg, int depth);

/* malloc within the budget, or NULL; never throws (protobuf-c's frames are below). */
static void *
budget_alloc(void *data, size_t size)
{
	Budget	   *b = data;

	if (stack_is_too_deep())
	{
		b->too_deep = true;
		return NULL;
	}
	if (size > b->limit - b->used)
	{
		b->exhausted = true;
		return NULL;
	}
	b->used += size;
	return malloc(size);
}

static void
budget_free(void *data, void *pointer)
{
	free(pointer);
}

/* "resource_spans" -> "resourceSpans": the JSON name of a proto field. */
static char *
camel_name(const char *snake)
{
	StringInfoData out;

	initStringInfo(&out);
	for (const char *p = snake; *p; p++)
	{
		if (*p == '_' && p[1] >= 'a' && p[1] <= 'z')
			appendStringInfoChar(&out, *++p - 'a' + 'A');
		else
			appendStringInfoChar(&out, *p);
	}
	return out.data;
}

static void
push_string(Walk *w, JsonbIteratorToken token, const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	(void) pushJsonbValue(&w->state, token, &v);
}

static void
push_number(Walk *w, const char *text)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
														ObjectIdGetDatum(InvalidOid),
														Int32GetDatum(-1)));
	(void) pushJsonbValue(&w->state, WJB_VALUE, &v);
}

/* bytes: ids (trace_id, span_id, parent_span_id) in hex, the rest in base64. */
static void
push_bytes(Walk *w, const ProtobufCFieldDescriptor *f, const ProtobufCBinaryData *b)
{
	char	   *text;
	int			len;

	if (strstr(f->name, "_id") != NULL)
	{
		text = palloc(b->len * 2 + 1);
		len = hex_encode((const char *) b->data, b->len, text);
	}
	else
	{
		text = palloc(pg_b64_enc_len(b->len) + 1);
		len = Max(pg_b64_encode((const char *) b->data, b->len, text, pg_b64_enc_len(b->len)), 0);
	}
	push_string(w, WJB_VALUE, text, len);
}

/* A double as a number, or NaN/Infinity as the strings proto3 JSON uses. */
static void
push_double(Walk *w, double d)
{
	char		text[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(d))
		push_string(w, WJB_VALUE, "NaN", 3);
	else if (isinf(d))
		push_string(w, WJB_VALUE, d > 0 ? "Infinity" : "-Infinity", d > 0 ? 8 : 9);
	else
	{
		double_to_shortest_decimal_buf(d, text);
		push_number(w, text);
	}
}

/* One scalar or message value of a field. */
static void
push_value(Walk *w, const ProtobufCFieldDescriptor *f, const void *member, int depth)
{
	JsonbValue	v;

	switch (f->type)
	{
		case PROTOBUF_C_TYPE_STRING:
			{
				const char *s = *(char *const *) member;

				if (!pg_verify_mbstr(PG_UTF8, s, strlen(s), true))
					w->error = psprintf("the string field %s is not valid UTF-8", f->name);
				push_string(w, WJB_VALUE, s, strlen(s));
				break;
			}
		case PROTOBUF_C_TYPE_BYTES:
			push_bytes(w, f, member);
			break;
		case PROTOBUF_C_TYPE_BOOL:
			v.type = jbvBool;
			v.val.boolean = *(const protobuf_c_boolean *) member;
			(void) pushJsonbValue(&w->state, WJB_VALUE, &v);
			break;
		case PROTOBUF_C_TYPE_INT32:
		case PROTOBUF_C_TYPE_ENUM:
			push_number(w, psprintf("%d", *(const int32 *) member));
			break;
		case PROTOBUF_C_TYPE_UINT32:
			push_number(w, psprintf("%u", *(const uint32 *) member));
			break;
		case PROTOBUF_C_TYPE_INT64:
		case PROTOBUF_C_TYPE_UINT64:
		case PROTOBUF_C_TYPE_FIXED64:
			{
				/* 64-bit integers are decimal strings in OTLP JSON */
				char	   *text = f->type == PROTOBUF_C_TYPE_INT64
					? psprintf(INT64_FORMAT, *(const int64 *) member)
					: psprintf(UINT64_FORMAT, *(const uint64 *) member);

				push_string(w, WJB_VALUE, text, strlen(text));
				break;
			}
		case PROTOBUF_C_TYPE_DOUBLE:
			push_double(w, *(const double *) member);
			break;
		case PROTOBUF_C_TYPE_MESSAGE:
			(void) walk_message(w, *(ProtobufCMessage *const *) member, depth + 1);
			break;
		default:
			w->error = psprintf("field %s has a type the schema does not use", f->name);
			push_string(w, WJB_VALUE, "", 0);	/* the key has its value */
			break;
	}
}

/* Is a singular field set: the oneof member chosen, or not its default? */
static bool
field_is_set(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, const void *member)
{
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32 *) ((const char *) msg + f->quantifier_offset) == f->id;
	switch (f->type)
	{
		case PROTOBUF_C_TYPE_STRING:
			return *(char *const *) member != NULL && (*(char *const *) member)[0] != '\0';
		case PROTOBUF_C_TYPE_BYTES:
			return ((const ProtobufCBinaryData *) member)->len > 0;
		case PROTOBUF_C_TYPE_MESSAGE:
			return *(ProtobufCMessage *const *) member != NULL;
		case PROTOBUF_C_TYPE_BOOL:
			return *(const protobuf_c_boolean *) member;
		case PROTOBUF_C_TYPE_INT64:
		case PROTOBUF_C_TYPE_UINT64:
		case PROTOBUF_C_TYPE_FIXED64:
		case PROTOBUF_C_TYPE_DOUBLE:
			return *(const uint64 *) member != 0;
		default:
			return *(const uint32 *) member != 0;
	}
}

/* One field of a message: its key, then its value or array of values. */
static void
walk_field(Walk *w, const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, int depth)
{
	const char *member = (const char *) msg + f->offset;
	char	   *key = camel_name(f->name);

	if (f->label != PROTOBUF_C_LABEL_REPEATED)
	{
		if (!field_is_set(msg, f, member))
			return;
		push_string(w, WJB_KEY, key, strlen(key));
		push_value(w, f, member, depth);
		return;
	}
	if (*(const size_t *) ((const char *) msg + f->quantifier_offset) == 0)
		return;
	if (f->type != PROTOBUF_C_TYPE_MESSAGE)
	{
		w->error = psprintf("field %s is a repeated scalar, which the schema does not use", f->name);
		return;
	}
	push_string(w, WJB_KEY, key, strlen(key));
	(void) pushJsonbValue(&w->state, WJB_BEGIN_ARRAY, NULL);
	for (size_t i = 0; i < *(const size_t *) ((const char *) msg + f->quantifier_offset) && !w->error; i++)
		(void) walk_message(w, (*(ProtobufCMessage *const *const *) member)[i], depth + 1);
	(void) pushJsonbValue(&w->state, WJB_END_ARRAY, NULL);
}

/* A message as a JSON object, within the nesting and value limits. */
static JsonbValue *
walk_message(Walk *w, const ProtobufCMessage *msg, int depth)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;

	if (depth > otlp_max_body_depth())
		w->error = psprintf("the body nests more than %d messages deep (4 per level of runra_obs.max_json_depth, plus 16)",
							otlp_max_body_depth());
	else if ((w->values += d->n_fields) > OTLP_MAX_VALUES)
		w->error = psprintf("the body holds more than %d values: send smaller batches", OTLP_MAX_VALUES);
	(void) pushJsonbValue(&w->state, WJB_BEGIN_OBJECT, NULL);
	for (unsigned i = 0; i < d->n_fields && w->error == NULL; i++)
		walk_field(w, msg, &d->fields[i], depth);
	return pushJsonbValue(&w->state, WJB_END_OBJECT, NULL);
}

/* Why protobuf-c gave up, for the 400. */
static char *
unpack_failure(const Budget *b, const char *what, int len)
{
	if (b->too_deep)
		return psprintf("the %s nests too deeply to unpack", what);
	if (b->exhausted)
		return psprintf("the %s would take more than %zu bytes of memory to unpack (%d bytes sent)",
						what, b->limit, len);
	return psprintf("the body is not a protobuf %s: truncated, or a field of the wrong wire type", what);
}

/*
 * Decodes a protobuf request body; NULL with *error when it is not one,
 * nests too deep, holds too much, or has a string that is not UTF-8.
 */
Jsonb *
otlp_decode_protobuf(const char *body, int len, OtlpSignal signal, char **error)
{
	const ProtobufCMessageDescriptor *desc = signal == OTLP_TRACES
		? &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor
		: &opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor;
	Budget		budget = {.limit = (size_t) len * 16 + 16 * 1024 * 1024};
	ProtobufCAllocator allocator = {budget_alloc, budget_free, &budget};
	ProtobufCMessage *msg = protobuf_c_message_unpack(desc, &allocator, len, (const uint8 *) body);
	Walk		w = {0};
	Jsonb	   *volatile result = NULL;

	if (msg == NULL)
	{
		*error = unpack_failure(&budget, desc->short_name, len);
		return NULL;
	}
	PG_TRY();
	{
		JsonbValue *root = walk_message(&w, msg, 1);

		/* copied out while the strings it points to are still there */
		if (w.error == NULL)
			result = JsonbValueToJsonb(root);
	}
	PG_FINALLY();
	{
		protobuf_c_message_free_unpacked(msg, &allocator);
	}
	PG_END_TRY();
	*error = w.error;
	return result;
}
