/*
 * handler.c — the function destination: SQL handlers (runra_obs.on()).
 *
 * A function destination is a consumer like the others, but its delivery
 * is a transaction of our own: handler_consume() calls handler(event row)
 * for each selected event after the cursor (and for its redeliveries),
 * each in its own subtransaction, and moves the cursor in the same
 * transaction, so what a handler writes commits together with the cursor
 * move: once, or (after a crash) not at all.  An event its handler fails
 * on is logged, counted and put in runra_obs.redeliveries, in that same
 * transaction, so it is retried with backoff without holding up the events
 * after it; after max_retry_ms it becomes a dead letter.
 *
 * The handler runs as the owner of the handler function, restricted, its
 * settings undone when it returns (worker/run_as_owner.c).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "forward/forward.h"
#include "worker/run_as_owner.h"
#include "worker/secret_mask.h"
#include "worker/worker_xact.h"

/* Events older in the redeliveries than max_retry_ms become dead letters. */
static const char *const expire_sql =
"WITH gone AS ("
"    DELETE FROM runra_obs.redeliveries"
"    WHERE destination_id = $1 AND attempts > 0"
"      AND extract(epoch FROM now() - queued_at) * 1000 > $2"
"    RETURNING *)"
" INSERT INTO runra_obs.dead_letters AS l"
"     (destination_id, event_id, created_at, sandbox_id, queued_at, attempts, error)"
" SELECT destination_id, event_id, created_at, sandbox_id, queued_at, attempts,"
"        'still failing after ' || $2 || ' ms (max_retry_ms): ' || coalesce(last_error, '')"
" FROM gone"
" ON CONFLICT (destination_id, event_id) DO UPDATE"
" SET attempts = EXCLUDED.attempts, dead_at = now(), error = EXCLUDED.error";

/* The stored row of an event (false if it is gone), in an SPI connection. */
static bool
fetch_row(ForwardEvent *ev, Datum *row)
{
	Oid			types[3] = {TEXTOID, TIMESTAMPTZOID, INT8OID};
	Datum		values[3] = {CStringGetTextDatum(ev->sandbox_id),
	TimestampTzGetDatum(ev->created_at), Int64GetDatum(ev->event_id)};
	bool		isnull;

	if (SPI_execute_with_args("SELECT e FROM runra_obs.sandbox_events AS e"
							  " WHERE e.sandbox_id = $1 AND e.created_at = $2 AND e.id = $3",
							  3, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs forward: could not read event " INT64_FORMAT, ev->event_id);
	if (SPI_processed == 0)
		return false;
	*row = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull;
}

/* One handler call: the event's stored row, if it is still stored. */
typedef struct HandlerCall
{
	Destination *dest;
	ForwardEvent *ev;
} HandlerCall;

/* Calls the handler with the event's row (subtransaction work). */
static void
call_handler(void *arg)
{
	HandlerCall *call = arg;
	Datum		row;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (fetch_row(call->ev, &row))
		(void) runra_call_as_owner(call->dest->handler, row,
								   psprintf("destination \"%s\"", call->dest->name));
	SPI_finish();
}

/*
 * One event in its own subtransaction; false (with *error, in the caller's
 * context) when the handler failed.  An event no longer stored counts as
 * handled: there is nothing to call the handler with.
 */
static bool
handle_one(Destination *dest, ForwardEvent *ev, char **error)
{
	HandlerCall call = {dest, ev};
	char	   *message;

	if (runra_worker_run_subtransaction(call_handler, &call, &message))
		return true;
	/* masked at once: it is logged, kept with the event and cut to fit */
	*error = secret_mask(psprintf("handler %s failed on event " INT64_FORMAT ": %s",
								  format_procedure(dest->handler), ev->event_id, message),
						 dest->secrets);
	return false;
}

/*
 * Runs the handler over events: the ones it failed on are moved to the
 * front of the array, the ones it handled copied to done.  Returns how
 * many failed (*error: the last error).
 */
static int
handle_all(Destination *dest, ForwardEvent *events, int n, ForwardEvent *done,
		   char **error)
{
	int			n_failed = 0;
	int			n_done = 0;

	for (int i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (handle_one(dest, &events[i], error))
			done[n_done++] = events[i];
		else
		{
			ereport(LOG,
					(errmsg("runra_obs forward: destination \"%s\": %s", dest->name, *error)));
			events[n_failed++] = events[i];
		}
	}
	dest->sent += n_done;
	dest->failed += n_failed;
	return n_failed;
}

/* Calls the handler for a batch of redeliveries. */
static int
redeliver(Destination *dest, char **error)
{
	ForwardEvent *events;
	int			n = cursor_read_redeliveries(dest, dest->batch_size, &events, CurrentMemoryContext);
	ForwardEvent *done = palloc(sizeof(ForwardEvent) * Max(n, 1));
	int			n_failed;
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		values[2] = {Int32GetDatum(dest->id), Int64GetDatum(dest->max_retry_ms)};

	n_failed = handle_all(dest, events, n, done, error);
	/* the handled ones leave the redeliveries, the failed ones count an attempt */
	cursor_delivered_redeliveries(dest, done, n - n_failed);
	cursor_failed_redeliveries(dest, events, n_failed, *error);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(expire_sql, 2, types, values, NULL, false, 0) < 0)
		elog(ERROR, "runra_obs forward: could not expire redeliveries");
	SPI_finish();
	return n_failed;
}

/*
 * One step of a function destination, in the caller's transaction: its
 * redeliveries, then the selected events after its cursor (up to
 * batch_size of them, at or below watermark), the cursor moved past them.
 * Returns false when a handler failed (*error says why): back off.  The
 * caller makes read_to the position once this committed.
 */
bool
handler_consume(Destination *dest, int64 watermark, char **error)
{
	ForwardEvent *events;
	int64		hi;
	int			n;
	int			n_failed = 0;

	*error = NULL;
	if (dest->redelivering > 0)
		n_failed += redeliver(dest, error);
	n = cursor_read_next(dest, dest->position, watermark, dest->batch_size,
						 &events, CurrentMemoryContext, &hi);
	if (hi > dest->position)
	{
		n = handle_all(dest, events, n, palloc(sizeof(ForwardEvent) * Max(n, 1)), error);
		cursor_queue_redeliveries(dest, events, n, *error);
		n_failed += n;
		cursor_move(dest, hi);
		dest->read_to = hi;
	}
	dest->success = dest->sent > 0;
	if (*error)
		strlcpy(dest->error, *error, sizeof(dest->error));
	cursor_record(dest);
	return n_failed == 0;
}
