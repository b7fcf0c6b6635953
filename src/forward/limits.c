/*
 * limits.c — how big a batch of a destination may be.
 *
 * A request must stay under runra_obs.forward_max_request_size: receivers
 * refuse larger bodies (an OpenTelemetry Collector's default limit is 20
 * MiB), and a worker that builds a body it cannot hold fails for every
 * destination, then reads the same batch again after its restart.  So a
 * batch is read up to half the limit in stored event size (_forward_batch
 * stops before the event that would pass it; encodings grow the text, and
 * a retry holds the body), and a body that still encodes larger is read
 * again in halves (worker.c); an event that alone encodes larger is a dead
 * letter with the reason.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "fmgr.h"

#include "forward/forward.h"
#include "guc.h"

/* Most stored event bytes one batch reads. */
int64
forward_read_budget(void)
{
	return runra_forward_max_request_size / 2;
}

/* Is an encoded body more than a destination may be sent? */
bool
forward_body_too_large(size_t len)
{
	return len > (size_t) runra_forward_max_request_size;
}

PG_FUNCTION_INFO_V1(runra_raw_size);

/*
 * runra_obs._raw_size(jsonb): the value's size uncompressed, read from its
 * varlena header or TOAST pointer, never detoasting it.
 */
Datum
runra_raw_size(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) toast_raw_datum_size(PG_GETARG_DATUM(0)));
}
