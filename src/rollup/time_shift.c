/*
 * time_shift.c — runra_obs._shift(timestamptz, interval): an instant moved
 * by a span of hours, minutes and seconds, as an IMMUTABLE function.
 *
 * The API splits every window into raw edges and whole rollup buckets
 * (_rollup_lo and _rollup_hi in 70_api_rollups.sql), which takes
 * timestamptz + interval.  PostgreSQL marks that operator STABLE, since a
 * span with days or months moves by a calendar, which depends on TimeZone;
 * so a bound computed from literal times stayed an expression, evaluated
 * at run time.  On one node that only costs run-time partition pruning.
 * On Citus each shard's query is planned on its worker against every day
 * partition and pruned only when it runs (about 20 times the time of the
 * same question on one node).  A span of hours, minutes and seconds moves
 * every instant by the same microseconds in any time zone, so here it is
 * IMMUTABLE, and a bound of constants is a constant at plan time, on the
 * coordinator and on every worker.  A span with days or months is refused
 * rather than computed by a calendar under a promise it would break.
 */
#include "postgres.h"

#include "common/int.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(runra_shift);

Datum
runra_shift(PG_FUNCTION_ARGS)
{
	TimestampTz instant = PG_GETARG_TIMESTAMPTZ(0);
	Interval   *span = PG_GETARG_INTERVAL_P(1);
	TimestampTz result;

	if (span->month != 0 || span->day != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("runra_obs._shift() moves by hours, minutes and seconds only"),
				 errdetail("The span \"%s\" has days or months, which move by the calendar of a time zone.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(span))))));
	if (TIMESTAMP_NOT_FINITE(instant))
		PG_RETURN_TIMESTAMPTZ(instant);
	if (pg_add_s64_overflow(instant, span->time, &result) || !IS_VALID_TIMESTAMP(result))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	PG_RETURN_TIMESTAMPTZ(result);
}
