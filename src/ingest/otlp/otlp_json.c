/*
 * otlp_json.c — an OTLP/HTTP JSON body (application/json) as a jsonb.
 *
 * The body is checked before it becomes a tree, so that every way it can
 * be wrong is a 400 saying what and where, never an ERROR: valid UTF-8
 * (RFC 8259 and OTLP require it), nesting no deeper than
 * otlp_max_body_depth() (counted without recursion, before PostgreSQL's
 * recursive parser runs), JSON syntax and escapes with line and column,
 * numbers that can be stored, at most OTLP_MAX_VALUES values, and an object
 * at the top.  What passes is read by jsonb_in, which then cannot fail.
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "guc.h"
#include "ingest/otlp/otlp.h"
#include "store/event_fields.h"

/* What the checking parse found. */
typedef struct JsonCheck
{
	int64		values;
	char	   *problem;
} JsonCheck;

/* The deepest nesting of [ and { outside strings, counted in one pass. */
static int
max_nesting(const char *body, int len)
{
	int			depth = 0,
				deepest = 0;
	bool		in_string = false;

	for (int i = 0; i < len; i++)
	{
		char		c = body[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			depth++;
			deepest = Max(deepest, depth);
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return deepest;
}

/* Counts a value; the first problem wins. */
static void
count_value(JsonCheck *check)
{
	if (++check->values == OTLP_MAX_VALUES + 1)
		check->problem = psprintf("the body holds more than %d JSON values: send smaller batches",
								  OTLP_MAX_VALUES);
}

static void
on_element(void *state, bool isnull)
{
	count_value(state);
}

static void
on_field(void *state, char *fname, bool isnull)
{
	count_value(state);
}

/* Numbers must be storable as exact numerics (jsonb's); strings are kept as they are. */
static void
on_scalar(void *state, char *token, JsonTokenType type)
{
	JsonCheck  *check = state;

	if (type == JSON_TOKEN_NUMBER && check->problem == NULL && !json_number_is_storable(token))
		check->problem = psprintf("the number %.40s cannot be stored (exponent past +-1000 or too many digits)",
								  token);
}

/* Runs the checking parse; NULL when the body is fine, else what is wrong. */
static char *
check_json(char *body, int len)
{
	JsonLexContext *lex = makeJsonLexContextCstringLen(body, len, PG_UTF8, true);
	JsonSemAction sem = {0};
	JsonCheck	check = {0};
	JsonParseErrorType error;

	sem.semstate = &check;
	sem.array_element_start = on_element;
	sem.object_field_start = on_field;
	sem.scalar = on_scalar;
	error = pg_parse_json(lex, &sem);
	if (error != JSON_SUCCESS)
		return describe_json_syntax_error(lex, error, 0);
	return check.problem;
}

/*
 * Decodes a JSON request body (NUL-terminated at len); NULL with *error
 * saying what and where when it is not a request we can read.
 */
Jsonb *
otlp_decode_json(char *body, int len, char **error)
{
	int			valid = pg_encoding_verifymbstr(PG_UTF8, body, len);
	int			depth;

	if (valid < len)
	{
		*error = psprintf("the body is not valid UTF-8 (byte %d)", valid);
		return NULL;
	}
	if (json_first_token_char(body, len) != '{')
	{
		*error = pstrdup("the body must be a JSON object (an OTLP export request)");
		return NULL;
	}
	if ((depth = max_nesting(body, len)) > otlp_max_body_depth())
	{
		*error = psprintf("the body nests %d levels deep, more than the %d allowed (4 per level of runra_obs.max_json_depth, plus 16)",
						  depth, otlp_max_body_depth());
		return NULL;
	}
	if ((*error = check_json(body, len)) != NULL)
		return NULL;
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(body)));
}

/* How deep a request may nest: 16 levels of frame, 4 per level of value. */
int
otlp_max_body_depth(void)
{
	return 16 + 4 * runra_max_json_depth;
}
