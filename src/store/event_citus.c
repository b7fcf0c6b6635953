/*
 * event_citus.c — writing a batch of events into a table Citus distributes.
 *
 * The batch writer (event_batch.c) runs PostgreSQL's COPY FROM itself, from
 * C.  Citus routes COPY only when it arrives as a utility statement, so on a
 * distributed sandbox_events that COPY would fill the coordinator's local
 * shell partitions, which no distributed query reads.  Here the queued
 * COPY BINARY tuples are taken apart into five arrays and written with
 *
 *     INSERT INTO runra_obs.sandbox_events (...) SELECT ... FROM unnest(...)
 *
 * through SPI, which Citus plans (pull to coordinator, then COPY into the
 * shards).  Same columns, same privilege checks (the current user's), same
 * defaults (id and ingested_at evaluated on the coordinator); the data
 * column is the JSONB the parser built, passed as it is.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "store/event_batch_internal.h"
#include "store/event_citus.h"

/* the COPY BINARY header event_batch.c writes before its tuples */
#define COPY_BINARY_HEADER_LEN 19

#define N_EVENT_COLUMNS 5

static const char insert_events_sql[] =
"INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data, trace_id)"
" SELECT u.created_at, u.sandbox_id, u.event_type, u.data, u.trace_id"
" FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"
"                 pg_catalog.unnest($4), pg_catalog.unnest($5))"
"      AS u(created_at, sandbox_id, event_type, data, trace_id)";

/*
 * Is sandbox_events distributed by Citus in this database?  Asked once per
 * batch; without the citus extension it is one catalog lookup.
 */
bool
events_are_distributed(void)
{
	bool		distributed;
	bool		isnull;

	if (!OidIsValid(get_extension_oid("citus", true)))
		return false;
	SPI_connect();
	if (SPI_execute("SELECT runra_obs._events_distributed()", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "runra_obs._events_distributed() did not answer");
	distributed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return distributed && !isnull;
}

/* Reads a big-endian integer of our own COPY BINARY encoding. */
static uint32
read_uint32(const char **p)
{
	uint32		v;

	memcpy(&v, *p, 4);
	*p += 4;
	return pg_ntoh32(v);
}

static uint64
read_uint64(const char **p)
{
	uint64		v;

	memcpy(&v, *p, 8);
	*p += 8;
	return pg_ntoh64(v);
}

/* A text field of length len at *p (NULL when len is -1), as a text datum. */
static Datum
read_text(const char **p, int32 len, bool *isnull)
{
	Datum		d;

	*isnull = len < 0;
	if (*isnull)
		return (Datum) 0;
	d = PointerGetDatum(cstring_to_text_with_len(*p, len));
	*p += len;
	return d;
}

/* How many tuples buf holds: their fields' lengths lead from one to the next. */
static int64
count_tuples(const char *buf, int len)
{
	const char *p = buf + COPY_BINARY_HEADER_LEN;
	const char *end = buf + len;
	int64		n = 0;

	while (p + 2 <= end)
	{
		p += 2;
		for (int c = 0; c < N_EVENT_COLUMNS; c++)
		{
			int32		field_len = (int32) read_uint32(&p);

			p += Max(field_len, 0);
		}
		n++;
	}
	return n;
}

/* One tuple's five fields at *p into row i of the column arrays. */
static void
read_tuple(const char **p, int64 i, Datum **values, bool **nulls)
{
	*p += 2;					/* field count: always 5 */
	*p += 4;					/* created_at's length: 8 */
	values[0][i] = Int64GetDatum((int64) read_uint64(p));
	for (int c = 1; c < N_EVENT_COLUMNS; c++)
	{
		int32		field_len = (int32) read_uint32(p);

		if (c == 3)
		{
			values[c][i] = PointerGetDatum(event_batch_jsonb(*p, field_len));
			*p += field_len;
		}
		else
			values[c][i] = read_text(p, field_len, &nulls[c][i]);
	}
}

/*
 * Inserts the tuples that event_batch.c encoded in buf (COPY BINARY: the
 * header, then per tuple a field count of 5 and created_at, sandbox_id,
 * event_type, data as the body of a Jsonb varlena, trace_id); returns
 * how many were stored.
 */
uint64
insert_distributed_events(const char *buf, int len)
{
	static const Oid types[N_EVENT_COLUMNS] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID};
	int64		n = count_tuples(buf, len);
	Datum	   *values[N_EVENT_COLUMNS];
	bool	   *nulls[N_EVENT_COLUMNS];
	Datum		arrays[N_EVENT_COLUMNS];
	Oid			argtypes[N_EVENT_COLUMNS];
	const char *p = buf + COPY_BINARY_HEADER_LEN;
	uint64		stored;

	if (n == 0)
		return 0;
	for (int c = 0; c < N_EVENT_COLUMNS; c++)
	{
		values[c] = palloc(sizeof(Datum) * n);
		nulls[c] = palloc0(sizeof(bool) * n);
	}
	for (int64 i = 0; i < n; i++)
		read_tuple(&p, i, values, nulls);
	for (int c = 0; c < N_EVENT_COLUMNS; c++)
	{
		int			dims[1] = {(int) n};
		int			lbs[1] = {1};
		int16		typlen;
		bool		typbyval;
		char		typalign;

		get_typlenbyvalalign(types[c], &typlen, &typbyval, &typalign);
		arrays[c] = PointerGetDatum(construct_md_array(values[c], nulls[c], 1, dims, lbs,
													   types[c], typlen, typbyval, typalign));
		argtypes[c] = get_array_type(types[c]);
	}
	/*
	 * One connection per worker for the whole write: at Citus's default a
	 * batch reaching 16 shards of a worker opens 16 connections to it and
	 * closes 15 at commit, forking backends on every batch (bench/citus.sh
	 * measured 45-50 times the rate with this).  Until the end of the
	 * transaction.
	 */
	(void) set_config_option("citus.max_adaptive_executor_pool_size", "1",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	SPI_connect();
	if (SPI_execute_with_args(insert_events_sql, N_EVENT_COLUMNS, argtypes, arrays,
							  NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "runra_obs could not insert into the distributed runra_obs.sandbox_events");
	stored = SPI_processed;
	SPI_finish();
	return stored;
}
