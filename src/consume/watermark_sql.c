/*
 * watermark_sql.c — the safe watermark as SQL functions:
 * runra_obs.safe_watermark() and runra_obs._watermark_lag(position).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/timestamp.h"

#include "consume/watermark.h"

PG_FUNCTION_INFO_V1(runra_safe_watermark);
PG_FUNCTION_INFO_V1(runra_watermark_lag);

/* runra_obs.safe_watermark(): waits for the writers running now. */
Datum
runra_safe_watermark(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(watermark_compute_blocking());
}

/*
 * runra_obs._watermark_lag(position): the published watermark, the ids
 * between position and it, and for how long events after position have
 * been safe to read (0 when there are none).
 */
Datum
runra_watermark_lag(PG_FUNCTION_ARGS)
{
	int64		position = PG_GETARG_INT64(0);
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int64		watermark = watermark_published();

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum(watermark);
	values[1] = Int64GetDatum(Max(watermark - position, 0));
	values[2] = Float8GetDatum(watermark_seconds_behind(position, watermark));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
