/*
 * otlp_value.c — reading OTLP JSON (in a jsonb): members by either of the
 * names the protobuf JSON mapping allows (lowerCamelCase, as OTLP writes
 * them, or the proto field name in snake_case), 64-bit integers given as
 * strings or numbers, and AnyValue written out as the JSON value it holds
 * (docs/otlp.md: kvlistValue an object, arrayValue an array, intValue and
 * doubleValue numbers, an empty AnyValue null).
 */
#include "postgres.h"

#include <errno.h>

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/numeric.h"

#include "ingest/otlp/otlp.h"
#include "store/event_fields.h"

/* "timeUnixNano" -> "time_unix_nano": the proto field name of a JSON name. */
static char *
snake_name(const char *camel)
{
	StringInfoData out;

	initStringInfo(&out);
	for (const char *p = camel; *p; p++)
	{
		if (*p >= 'A' && *p <= 'Z')
		{
			appendStringInfoChar(&out, '_');
			appendStringInfoChar(&out, *p - 'A' + 'a');
		}
		else
			appendStringInfoChar(&out, *p);
	}
	return out.data;
}

/*
 * The member camel_name (or its snake_case proto name) of an object; NULL
 * when obj is not an object, or the member is absent or null.
 */
JsonbValue *
otlp_member(JsonbContainer *obj, const char *camel_name)
{
	JsonbValue *v;

	if (obj == NULL || !JsonContainerIsObject(obj))
		return NULL;
	v = jsonb_member(obj, camel_name);
	if (v == NULL && strpbrk(camel_name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != NULL)
		v = jsonb_member(obj, snake_name(camel_name));
	return (v == NULL || v->type == jbvNull) ? NULL : v;
}

/* The object or array a value holds, or NULL for a scalar. */
JsonbContainer *
otlp_container(JsonbValue *v)
{
	return (v != NULL && v->type == jbvBinary) ? v->val.binary.data : NULL;
}

/* A string value as C text, or NULL. */
char *
otlp_string(JsonbValue *v)
{
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* The decimal text of a numeric value. */
static char *
numeric_text(JsonbValue *v)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
}

/* Is text a whole number, optionally negative, within int64 or uint64? */
static bool
integer_text(const char *text, bool is_signed)
{
	const char *digits = text + (is_signed && text[0] == '-');
	char	   *end;

	if (digits[0] == '\0' || strspn(digits, "0123456789") != strlen(digits))
		return false;
	errno = 0;
	if (is_signed)
		(void) strtoi64(text, &end, 10);
	else
		(void) strtou64(text, &end, 10);
	return errno == 0;
}

/* A fixed64 / uint64 field (times), given as a string or a number. */
bool
otlp_read_uint64(JsonbValue *v, uint64 *result)
{
	char	   *text;

	if (v == NULL || (v->type != jbvString && v->type != jbvNumeric))
		return false;
	text = v->type == jbvString ? otlp_string(v) : numeric_text(v);
	if (!integer_text(text, false))
		return false;
	*result = strtou64(text, NULL, 10);
	return true;
}

/* intValue: an int64 as a string or a number, written as a JSON number. */
static bool
append_int(StringInfo out, JsonbValue *v, const char **problem)
{
	char	   *text = v->type == jbvString ? otlp_string(v)
		: v->type == jbvNumeric ? numeric_text(v) : NULL;

	if (text == NULL || !integer_text(text, true))
	{
		*problem = "intValue must be a 64-bit integer";
		return false;
	}
	appendStringInfoString(out, text);
	return true;
}

/*
 * doubleValue: a number (or its text); NaN and the infinities, which JSON
 * numbers cannot be, are kept as the strings the mapping writes for them.
 */
static bool
append_double(StringInfo out, JsonbValue *v, const char **problem)
{
	char	   *text;

	if (v->type == jbvNumeric)
	{
		appendStringInfoString(out, numeric_text(v));
		return true;
	}
	text = otlp_string(v);
	if (text != NULL && (strcmp(text, "NaN") == 0 || strcmp(text, "Infinity") == 0 ||
						 strcmp(text, "-Infinity") == 0))
	{
		escape_json(out, text);
		return true;
	}
	if (text != NULL && integer_text(text, true))
	{
		appendStringInfoString(out, text);
		return true;
	}
	*problem = "doubleValue must be a number";
	return false;
}

/* arrayValue {values: [AnyValue...]} as a JSON array. */
static bool
append_array(StringInfo out, JsonbValue *v, const char **problem)
{
	JsonbContainer *values = otlp_container(otlp_member(otlp_container(v), "values"));
	int			n = values && JsonContainerIsArray(values) ? JsonContainerSize(values) : 0;

	appendStringInfoChar(out, '[');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(out, ',');
		if (!otlp_append_any_value(out, getIthJsonbValueFromContainer(values, i), problem))
			return false;
	}
	appendStringInfoChar(out, ']');
	return true;
}

/* kvlistValue {values: [{key, value}...]} as a JSON object. */
static bool
append_kvlist(StringInfo out, JsonbValue *v, const char **problem)
{
	JsonbContainer *values = otlp_container(otlp_member(otlp_container(v), "values"));
	int			n = values && JsonContainerIsArray(values) ? JsonContainerSize(values) : 0;

	appendStringInfoChar(out, '{');
	for (int i = 0; i < n; i++)
	{
		JsonbContainer *kv = otlp_container(getIthJsonbValueFromContainer(values, i));
		char	   *key = otlp_string(otlp_member(kv, "key"));

		if (key == NULL)
		{
			*problem = "a kvlistValue member has no key";
			return false;
		}
		if (i > 0)
			appendStringInfoChar(out, ',');
		escape_json(out, key);
		appendStringInfoChar(out, ':');
		if (!otlp_append_any_value(out, otlp_member(kv, "value"), problem))
			return false;
	}
	appendStringInfoChar(out, '}');
	return true;
}

/*
 * Appends the JSON value an AnyValue holds; an absent or empty one is null.
 * False with *problem when it holds something OTLP does not allow.
 * (Recursion is bounded by the body's nesting limit, checked on decoding.)
 */
bool
otlp_append_any_value(StringInfo out, JsonbValue *value, const char **problem)
{
	JsonbContainer *any = otlp_container(value);
	JsonbValue *v;

	if ((v = otlp_member(any, "stringValue")) != NULL || (v = otlp_member(any, "bytesValue")) != NULL)
	{
		if (v->type != jbvString)
		{
			*problem = "stringValue and bytesValue must be strings";
			return false;
		}
		escape_json(out, otlp_string(v));
		return true;
	}
	if ((v = otlp_member(any, "boolValue")) != NULL)
	{
		if (v->type != jbvBool)
		{
			*problem = "boolValue must be true or false";
			return false;
		}
		appendStringInfoString(out, v->val.boolean ? "true" : "false");
		return true;
	}
	if ((v = otlp_member(any, "intValue")) != NULL)
		return append_int(out, v, problem);
	if ((v = otlp_member(any, "doubleValue")) != NULL)
		return append_double(out, v, problem);
	if ((v = otlp_member(any, "arrayValue")) != NULL)
		return append_array(out, v, problem);
	if ((v = otlp_member(any, "kvlistValue")) != NULL)
		return append_kvlist(out, v, problem);
	appendStringInfoString(out, "null");
	return true;
}
