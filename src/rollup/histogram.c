/*
 * histogram.c — duration histograms with fixed log-scale buckets.
 *
 * Percentiles do not add up across time buckets, histograms with fixed
 * bucket edges do: the rollups keep one histogram of durations (in
 * milliseconds) per row, and a panel asking for the p95 over a week merges
 * the rows' histograms and reads the percentile from the sum.
 *
 * Bucket 0 holds durations below 1 ms (and negative ones); bucket k >= 1
 * holds [2^((k-1)/4), 2^(k/4)) ms, four buckets per doubling, so a
 * percentile read from a histogram is within 9 % of the exact one
 * (the bucket's geometric middle is at most 2^(1/8) from either edge).  The
 * last bucket also takes everything above its lower edge (2^40 ms, 35
 * years).
 *
 * A histogram is stored as a bigint[] indexed by bucket number, trimmed to
 * the buckets from the first to the last non-empty one (the array's lower
 * bound is the first bucket's number), so a row whose durations all fall
 * in a few buckets costs a few numbers, not 161.
 */
#include "postgres.h"

#include "common/int.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#define HIST_BUCKETS_PER_DOUBLING 4
#define HIST_NBUCKETS (1 + 40 * HIST_BUCKETS_PER_DOUBLING + 1)

/*
 * The aggregate state: counters for buckets lo..hi, grown as durations
 * arrive (a group's durations usually span a few buckets, and a big
 * rebuild holds one state per group of its window).
 */
typedef struct HistState
{
	MemoryContext context;		/* the aggregate's, where counts live */
	int			lo;
	int			hi;				/* counts[k - lo] for lo <= k <= hi */
	int64	   *counts;			/* NULL until the first duration */
	int64		total;
} HistState;

PG_FUNCTION_INFO_V1(runra_duration_bucket);
PG_FUNCTION_INFO_V1(runra_duration_bucket_lower);
PG_FUNCTION_INFO_V1(runra_histogram_add);
PG_FUNCTION_INFO_V1(runra_histogram_merge);
PG_FUNCTION_INFO_V1(runra_histogram_final);
PG_FUNCTION_INFO_V1(runra_histogram_percentile);
PG_FUNCTION_INFO_V1(runra_histogram_count);

/* Adds count to *total, or fails: a histogram never wraps around. */
static void
add_count(int64 *total, int64 count)
{
	if (pg_add_s64_overflow(*total, count, total))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("duration histogram count out of range")));
}

/* The bucket a duration in milliseconds falls into. */
static int
duration_bucket(double ms)
{
	double		k;

	if (isnan(ms) || ms < 1.0)
		return 0;
	k = floor(log2(ms) * HIST_BUCKETS_PER_DOUBLING) + 1;
	return (int) Min(k, (double) (HIST_NBUCKETS - 1));
}

/* Lower edge of bucket k in milliseconds (0 for bucket 0). */
static double
bucket_lower(int k)
{
	return k <= 0 ? 0.0 : pow(2.0, (double) (k - 1) / HIST_BUCKETS_PER_DOUBLING);
}

/* The value a percentile falling into bucket k is reported as. */
static double
bucket_middle(int k)
{
	return k <= 0 ? 0.0 : pow(2.0, (k - 0.5) / HIST_BUCKETS_PER_DOUBLING);
}

/* duration_bucket(ms): which bucket a duration falls into. */
Datum
runra_duration_bucket(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(duration_bucket(PG_GETARG_FLOAT8(0)));
}

/* duration_bucket_lower(k): the lower edge of bucket k, in milliseconds. */
Datum
runra_duration_bucket_lower(PG_FUNCTION_ARGS)
{
	int32		k = PG_GETARG_INT32(0);

	if (k < 0 || k >= HIST_NBUCKETS)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("histogram bucket %d is out of range", k),
				 errdetail("Buckets are numbered 0 to %d.", HIST_NBUCKETS - 1)));
	PG_RETURN_FLOAT8(bucket_lower(k));
}

/* The aggregate state, made in the aggregate's memory context on first use. */
static HistState *
hist_state(FunctionCallInfo fcinfo)
{
	MemoryContext aggcontext;
	HistState  *state;

	if (!PG_ARGISNULL(0))
		return (HistState *) PG_GETARG_POINTER(0);
	if (!AggCheckCallContext(fcinfo, &aggcontext))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("histogram aggregate called in non-aggregate context")));
	state = (HistState *) MemoryContextAllocZero(aggcontext, sizeof(HistState));
	state->context = aggcontext;
	return state;
}

/* Adds count to bucket k, widening the counted range to include k. */
static void
hist_add(HistState *state, int k, int64 count)
{
	if (state->counts == NULL)
	{
		state->counts = MemoryContextAllocZero(state->context, sizeof(int64));
		state->lo = state->hi = k;
	}
	else if (k < state->lo || k > state->hi)
	{
		int			lo = Min(k, state->lo);
		int			hi = Max(k, state->hi);
		int64	   *counts = MemoryContextAllocZero(state->context,
													sizeof(int64) * (hi - lo + 1));

		memcpy(counts + (state->lo - lo), state->counts,
			   sizeof(int64) * (state->hi - state->lo + 1));
		pfree(state->counts);
		state->counts = counts;
		state->lo = lo;
		state->hi = hi;
	}
	add_count(&state->counts[k - state->lo], count);
	add_count(&state->total, count);
}

/* duration_histogram(ms) transition: counts one duration (NULLs are skipped). */
Datum
runra_histogram_add(PG_FUNCTION_ARGS)
{
	HistState  *state = hist_state(fcinfo);

	if (!PG_ARGISNULL(1))
		hist_add(state, duration_bucket(PG_GETARG_FLOAT8(1)), 1);
	PG_RETURN_POINTER(state);
}

/*
 * Calls fn(k, count) for each bucket of a stored histogram, whatever its
 * lower bound; NULL elements count as zero.
 */
static void
hist_array_foreach(ArrayType *array, void (*fn) (void *, int, int64), void *arg)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			lower;

	if (ARR_NDIM(array) == 0)
		return;
	if (ARR_NDIM(array) != 1 || ARR_ELEMTYPE(array) != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a duration histogram must be a one-dimensional bigint array")));
	lower = ARR_LBOUND(array)[0];
	deconstruct_array(array, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		int			k = lower + i;

		if (nulls[i] || DatumGetInt64(elems[i]) == 0)
			continue;
		if (k < 0 || k >= HIST_NBUCKETS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("duration histogram has bucket %d, outside 0 to %d",
							k, HIST_NBUCKETS - 1)));
		fn(arg, k, DatumGetInt64(elems[i]));
	}
}

static void
add_bucket(void *arg, int k, int64 count)
{
	hist_add((HistState *) arg, k, count);
}

/* histogram_merge(hist) transition: adds a stored histogram in. */
Datum
runra_histogram_merge(PG_FUNCTION_ARGS)
{
	HistState  *state = hist_state(fcinfo);

	if (!PG_ARGISNULL(1))
		hist_array_foreach(PG_GETARG_ARRAYTYPE_P(1), add_bucket, state);
	PG_RETURN_POINTER(state);
}

/* Both aggregates' final step: the trimmed bigint[], or NULL if empty. */
Datum
runra_histogram_final(PG_FUNCTION_ARGS)
{
	HistState  *state;
	Datum	   *elems;
	int			first,
				last;
	int			dims[1];
	int			lbs[1];

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (HistState *) PG_GETARG_POINTER(0);
	if (state->total == 0)
		PG_RETURN_NULL();
	first = state->lo;
	last = state->hi;
	while (state->counts[first - state->lo] == 0)
		first++;
	while (state->counts[last - state->lo] == 0)
		last--;
	elems = palloc(sizeof(Datum) * (last - first + 1));
	for (int k = first; k <= last; k++)
		elems[k - first] = Int64GetDatum(state->counts[k - state->lo]);
	dims[0] = last - first + 1;
	lbs[0] = first;
	PG_RETURN_ARRAYTYPE_P(construct_md_array(elems, NULL, 1, dims, lbs, INT8OID,
											 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static void
copy_bucket(void *arg, int k, int64 count)
{
	add_count(&((int64 *) arg)[k], count);
}

/*
 * histogram_percentile(hist, q): the middle of the bucket holding the
 * ceil(q * n)-th smallest duration (the same rank percentile_disc picks),
 * NULL for an empty histogram.
 */
Datum
runra_histogram_percentile(PG_FUNCTION_ARGS)
{
	double		q = PG_GETARG_FLOAT8(1);
	int64		counts[HIST_NBUCKETS] = {0};
	int64		total = 0;
	int64		rank;
	int64		seen = 0;

	if (isnan(q) || q < 0.0 || q > 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("percentile %g is not between 0 and 1", q)));
	hist_array_foreach(PG_GETARG_ARRAYTYPE_P(0), copy_bucket, counts);
	for (int k = 0; k < HIST_NBUCKETS; k++)
		add_count(&total, counts[k]);
	if (total == 0)
		PG_RETURN_NULL();
	rank = Max((int64) ceil(q * (double) total), 1);
	for (int k = 0; k < HIST_NBUCKETS; k++)
	{
		seen += counts[k];
		if (seen >= rank)
			PG_RETURN_FLOAT8(bucket_middle(k));
	}
	PG_RETURN_FLOAT8(bucket_middle(HIST_NBUCKETS - 1));
}

/* histogram_count(hist): how many durations a histogram holds. */
Datum
runra_histogram_count(PG_FUNCTION_ARGS)
{
	int64		counts[HIST_NBUCKETS] = {0};
	int64		total = 0;

	hist_array_foreach(PG_GETARG_ARRAYTYPE_P(0), copy_bucket, counts);
	for (int k = 0; k < HIST_NBUCKETS; k++)
		add_count(&total, counts[k]);
	PG_RETURN_INT64(total);
}
