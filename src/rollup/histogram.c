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
 *
 * The aggregates' state is that same bigint[] (widened as durations
 * arrive, counted in place), not an internal struct: with a combine
 * function, a state Citus can send as text lets it aggregate on each shard
 * and merge the partial histograms on the coordinator, and PostgreSQL can
 * aggregate in parallel workers.
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

PG_FUNCTION_INFO_V1(runra_duration_bucket);
PG_FUNCTION_INFO_V1(runra_duration_bucket_lower);
PG_FUNCTION_INFO_V1(runra_histogram_add_duration);
PG_FUNCTION_INFO_V1(runra_histogram_combine);
PG_FUNCTION_INFO_V1(runra_histogram_trim);
PG_FUNCTION_INFO_V1(runra_histogram_add);	/* 0.1.0 */
PG_FUNCTION_INFO_V1(runra_histogram_merge); /* 0.1.0 */
PG_FUNCTION_INFO_V1(runra_histogram_final); /* 0.1.0 */
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

/* The counts of a histogram array, bucket ARR_LBOUND first. */
#define HIST_COUNTS(a) ((int64 *) ARR_DATA_PTR(a))
#define HIST_LO(a) (ARR_LBOUND(a)[0])
#define HIST_HI(a) (ARR_LBOUND(a)[0] + ARR_DIMS(a)[0] - 1)

/* A histogram of zeros for buckets lo..hi, in the current memory context. */
static ArrayType *
hist_array_new(int lo, int hi)
{
	int			n = hi - lo + 1;
	Size		size = ARR_OVERHEAD_NONULLS(1) + sizeof(int64) * n;
	ArrayType  *a = palloc0(size);

	SET_VARSIZE(a, size);
	a->ndim = 1;
	a->dataoffset = 0;
	a->elemtype = INT8OID;
	ARR_DIMS(a)[0] = n;
	ARR_LBOUND(a)[0] = lo;
	return a;
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

/* A state being added to: its array, and whether it may be changed in place. */
typedef struct HistAdd
{
	ArrayType  *state;			/* NULL until the first count */
	bool		writable;
} HistAdd;

/*
 * Adds count to bucket k.  A state that does not reach k is copied into a
 * wider one, as is one we may not write (outside an aggregate, whose state
 * belongs to the caller); a copy is ours to write from then on.
 */
static void
hist_add(HistAdd *add, int k, int64 count)
{
	ArrayType  *state = add->state;

	if (state == NULL)
		state = hist_array_new(k, k);
	else if (k < HIST_LO(state) || k > HIST_HI(state) || !add->writable)
	{
		ArrayType  *wider = hist_array_new(Min(k, HIST_LO(state)), Max(k, HIST_HI(state)));

		memcpy(HIST_COUNTS(wider) + (HIST_LO(state) - HIST_LO(wider)), HIST_COUNTS(state),
			   sizeof(int64) * ARR_DIMS(state)[0]);
		state = wider;
	}
	if (state != add->state)
	{
		add->state = state;
		add->writable = true;
	}
	add_count(&HIST_COUNTS(state)[k - HIST_LO(state)], count);
}

static void
add_bucket(void *arg, int k, int64 count)
{
	hist_add((HistAdd *) arg, k, count);
}

/*
 * The aggregate state in argument 0, as HistAdd.  A state in our own form
 * (one dimension, bigint, no NULLs, buckets in range) is used as it is,
 * written in place inside an aggregate; anything else (a state Citus sent
 * back as text is in our form too) is rebuilt.
 */
static HistAdd
hist_state_arg(FunctionCallInfo fcinfo)
{
	HistAdd		add = {NULL, false};
	ArrayType  *state;

	if (PG_ARGISNULL(0))
		return add;
	state = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(state) == 1 && ARR_ELEMTYPE(state) == INT8OID && !ARR_HASNULL(state) &&
		HIST_LO(state) >= 0 && HIST_HI(state) < HIST_NBUCKETS)
	{
		add.state = state;
		add.writable = AggCheckCallContext(fcinfo, NULL) != 0;
	}
	else
		hist_array_foreach(state, add_bucket, &add);
	return add;
}

/* duration_histogram(ms) transition: counts one duration (NULLs are skipped). */
Datum
runra_histogram_add_duration(PG_FUNCTION_ARGS)
{
	HistAdd		add = hist_state_arg(fcinfo);

	if (!PG_ARGISNULL(1))
		hist_add(&add, duration_bucket(PG_GETARG_FLOAT8(1)), 1);
	if (add.state == NULL)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(add.state);
}

/*
 * Adds a histogram to the state: histogram_merge's transition, and the
 * combine function of both aggregates (partial states are histograms).
 */
Datum
runra_histogram_combine(PG_FUNCTION_ARGS)
{
	HistAdd		add = hist_state_arg(fcinfo);

	if (!PG_ARGISNULL(1))
		hist_array_foreach(PG_GETARG_ARRAYTYPE_P(1), add_bucket, &add);
	if (add.state == NULL)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(add.state);
}

/* Both aggregates' final step: the state trimmed to its non-empty buckets, or NULL. */
Datum
runra_histogram_trim(PG_FUNCTION_ARGS)
{
	ArrayType  *state;
	ArrayType  *trimmed;
	int			first,
				last;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = PG_GETARG_ARRAYTYPE_P(0);
	first = HIST_LO(state);
	last = HIST_HI(state);
	while (first <= last && HIST_COUNTS(state)[first - HIST_LO(state)] == 0)
		first++;
	while (last >= first && HIST_COUNTS(state)[last - HIST_LO(state)] == 0)
		last--;
	if (first > last)
		PG_RETURN_NULL();
	trimmed = hist_array_new(first, last);
	memcpy(HIST_COUNTS(trimmed), HIST_COUNTS(state) + (first - HIST_LO(state)),
		   sizeof(int64) * (last - first + 1));
	PG_RETURN_ARRAYTYPE_P(trimmed);
}

/*
 * The transition and final functions of runra_obs 0.1.0, whose aggregates
 * kept an internal state.  A database still at 0.1.0 after the library
 * was updated gets this error until ALTER EXTENSION runra_obs UPDATE
 * replaces its aggregates.
 */
static Datum
refuse_internal_state(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the duration histogram aggregates of runra_obs 0.1.0 need ALTER EXTENSION runra_obs UPDATE"),
			 errdetail("The library is runra_obs %s.", RUNRA_OBS_VERSION)));
	return (Datum) 0;
}

Datum
runra_histogram_add(PG_FUNCTION_ARGS)
{
	return refuse_internal_state();
}

Datum
runra_histogram_merge(PG_FUNCTION_ARGS)
{
	return refuse_internal_state();
}

Datum
runra_histogram_final(PG_FUNCTION_ARGS)
{
	return refuse_internal_state();
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
