/*
 * json_numeric.c — runra_obs.json_numeric(jsonb): a JSON value as a number.
 *
 * The rollup trigger reads several numbers from every event it folds
 * (durationMs, cost, exitCode, memoryUsedMb...), so this is on the ingest
 * path: it takes a JSON number as the numeric it already is, and accepts a
 * string only if it spells a plain decimal number (as the SDK's own query
 * (data->>'cost')::numeric would read it), without the regular expression
 * and text round trip an SQL version needs.  Anything else, and any value
 * of magnitude 1e30 or more (so that every accepted value fits a float8),
 * gives NULL: odd data in an event never makes its insert fail.
 */
#include "postgres.h"

#include <ctype.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(runra_json_numeric);

/* Is s (len bytes) [space][sign]digits[.digits][e[sign]digits][space]? */
static bool
is_decimal_text(const char *s, int len)
{
	int			i = 0;
	int			digits = 0;
	int			exp_digits = 0;

	while (i < len && isspace((unsigned char) s[i]))
		i++;
	if (i < len && (s[i] == '+' || s[i] == '-'))
		i++;
	for (; i < len && isdigit((unsigned char) s[i]); i++)
		digits++;
	if (i < len && s[i] == '.')
		for (i++; i < len && isdigit((unsigned char) s[i]); i++)
			digits++;
	if (digits == 0 || digits > 1000)
		return false;
	if (i < len && (s[i] == 'e' || s[i] == 'E'))
	{
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		for (; i < len && isdigit((unsigned char) s[i]); i++)
			exp_digits++;
		if (exp_digits == 0 || exp_digits > 3)
			return false;
	}
	while (i < len && isspace((unsigned char) s[i]))
		i++;
	return i == len;
}

/* |n| < 1e30: the numbers rollups keep all fit a float8. */
static bool
is_moderate(Numeric n)
{
	static Numeric limit = NULL;
	Numeric		magnitude;

	if (limit == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		limit = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum("1e30"),
													ObjectIdGetDatum(InvalidOid),
													Int32GetDatum(-1)));
		MemoryContextSwitchTo(old);
	}
	if (numeric_is_nan(n) || numeric_is_inf(n))
		return false;
	magnitude = DatumGetNumeric(DirectFunctionCall1(numeric_abs, NumericGetDatum(n)));
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(magnitude),
											 NumericGetDatum(limit))) < 0;
}

/* json_numeric(value jsonb): the number a JSON value holds, or NULL. */
Datum
runra_json_numeric(PG_FUNCTION_ARGS)
{
	Jsonb	   *value = PG_GETARG_JSONB_P(0);
	JsonbValue	scalar;
	Numeric		n;

	if (!JsonbExtractScalar(&value->root, &scalar))
		PG_RETURN_NULL();
	if (scalar.type == jbvNumeric)
		n = DatumGetNumericCopy(NumericGetDatum(scalar.val.numeric));
	else if (scalar.type == jbvString &&
			 is_decimal_text(scalar.val.string.val, scalar.val.string.len))
	{
		char	   *text = pnstrdup(scalar.val.string.val, scalar.val.string.len);

		n = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
												ObjectIdGetDatum(InvalidOid),
												Int32GetDatum(-1)));
	}
	else
		PG_RETURN_NULL();
	if (!is_moderate(n))
		PG_RETURN_NULL();
	PG_RETURN_NUMERIC(n);
}
