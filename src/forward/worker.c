/*
 * worker.c — the forward worker: every destination is a consumer of the
 * event log.
 *
 * One worker serves runra_obs.database.  Each turn it advances the safe
 * watermark (re-reading the destinations when woken or every second), and
 * for each destination that is due (batchSize events waiting after its
 * read frontier, or the first of them waiting flushIntervalMs) reads the
 * next batch: the events it selects with ids in (frontier, watermark], up
 * to FORWARD_MAX_BATCH.  A destination that is behind so sends requests of
 * up to 10,000 events, several at once: up to runra_obs.forward_requests
 * batches read and not yet passed by its cursor.
 *
 * A batch is settled when the destination accepted it (what it refused
 * for good becomes a dead letter) or, after max_retry_ms of failing or a
 * permanent refusal, when all of it became dead letters.  The cursor moves
 * to the end of the longest run of settled batches after it, in the same
 * transaction as their dead letters and counters: an event is never passed
 * before its destination said yes, and after a crash only the batches not
 * yet passed are sent again.  A failed batch is sent again with backoff
 * (retry.c); while a destination fails, one request at a time probes it.
 *
 * HTTP deliveries (Axiom, OTLP) run through libcurl multi; JSONL writes
 * and SQL handlers are local and run in the loop.  No transaction is open
 * while the worker waits.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "consume/watermark.h"
#include "batch_memory.h"
#include "guc.h"
#include "forward/forward.h"
#include "worker/secret_mask.h"
#include "worker/worker_common.h"
#include "worker/worker_xact.h"

PGDLLEXPORT void runra_forward_main(Datum arg);

/* The destinations are re-read at least this often, and when woken. */
#define RELOAD_MS 1000

static List *destinations = NIL;
static WatermarkProbe probe;
static int64 watermark = 0;
static MemoryContext forward_cxt = NULL;

/* ---------------------------------------------------------------------------
 * Transactions.
 * ---------------------------------------------------------------------------
 */

/* Runs fn(arg) in a short transaction; false (logged, shown) on an ERROR. */
static bool
in_xact(const char *activity, void (*fn) (void *), void *arg)
{
	char	   *error;
	int			sqlerrcode;

	if (runra_worker_run_transaction(activity, fn, arg, &error, &sqlerrcode))
		return true;
	runra_worker_report_error(error);
	return false;
}

/* Frees a batch: its request, if on the wire, and its memory. */
static void
free_batch(InFlight *b)
{
	transport_detach(b);
	MemoryContextDelete(b->cxt);
}

/* The consumer name of a destination, as in runra_obs.consumers. */
static void
consumer_name(Destination *d, char *name, size_t size)
{
	snprintf(name, size, "destination:%d", d->id);
}

/* Publishes a destination's committed position for /metrics. */
static void
report_position(Destination *d)
{
	char		name[NAMEDATALEN];

	consumer_name(d, name, sizeof(name));
	watermark_report_position(name, d->position);
}

/* Drops a destination no longer configured, with its batches. */
static void
drop_destination(Destination *d)
{
	ListCell   *lc;
	char		name[NAMEDATALEN];

	consumer_name(d, name, sizeof(name));
	watermark_forget_consumer(name);

	foreach(lc, d->batches)
		free_batch(lfirst(lc));
	if (d->redelivery)
		free_batch(d->redelivery);
	MemoryContextDelete(d->cxt);
	pfree(d);
}

typedef struct Look
{
	bool		reload;
} Look;

/*
 * The look of a turn: advance the watermark, re-read the destinations if
 * asked.
 */
static void
look_step(void *arg)
{
	Look	   *look = arg;
	ListCell   *lc;

	watermark = watermark_advance(&probe);
	if (!look->reload)
		return;
	foreach(lc, destinations)
		((Destination *) lfirst(lc))->seen = false;
	{
		List	   *old = destinations;
		List	   *fresh = cursor_load_destinations(old, forward_cxt);

		foreach(lc, old)
		{
			Destination *d = lfirst(lc);

			if (!d->seen)
				drop_destination(d);
		}
		list_free(old);
		destinations = fresh;
	}
	foreach(lc, destinations)
		report_position(lfirst(lc));
}

/* ---------------------------------------------------------------------------
 * Reading batches.
 * ---------------------------------------------------------------------------
 */

/* A new, empty batch of destination d in a memory context of its own. */
static InFlight *
new_batch(Destination *d, bool redelivery)
{
	MemoryContext cxt = AllocSetContextCreate(forward_cxt, "runra_obs forward batch",
											  ALLOCSET_DEFAULT_SIZES);
	InFlight   *b = MemoryContextAllocZero(cxt, sizeof(InFlight));

	b->cxt = cxt;
	b->dest = d;
	b->redelivery = redelivery;
	b->state = BATCH_FAILED;	/* ready to be sent */
	return b;
}

typedef struct Read
{
	InFlight   *batch;
} Read;

/* Reads the next range batch of a destination, after its read frontier. */
static void
read_range_step(void *arg)
{
	InFlight   *b = ((Read *) arg)->batch;
	Destination *d = b->dest;

	b->lo = d->read_to;
	b->n_events = cursor_read_next(d, b->lo, watermark, FORWARD_MAX_BATCH,
								   &b->events, b->cxt, &b->hi);
}

/*
 * Reads the head of a destination's redeliveries.  Those whose event is no
 * longer stored (its partition dropped by retention) become dead letters.
 */
static void
read_redeliveries_step(void *arg)
{
	InFlight   *b = ((Read *) arg)->batch;
	Destination *d = b->dest;
	ForwardEvent *gone;
	int			n_gone = 0;
	int			kept = 0;

	b->n_events = cursor_read_redeliveries(d, FORWARD_MAX_BATCH, &b->events, b->cxt);
	gone = palloc(sizeof(ForwardEvent) * Max(b->n_events, 1));
	for (int i = 0; i < b->n_events; i++)
	{
		if (b->events[i].event_type == NULL)
			gone[n_gone++] = b->events[i];
		else
			b->events[kept++] = b->events[i];
	}
	b->n_events = kept;
	cursor_dead_letter(d, gone, n_gone, GetCurrentTimestamp(), 1,
					   "event is no longer in runra_obs.sandbox_events (its partition was dropped by retention)",
					   true);
	runra_worker_count_events(0, n_gone);
}

/* ---------------------------------------------------------------------------
 * Sending and settling.
 * ---------------------------------------------------------------------------
 */

/*
 * Remembers an error for the destination's counters and the log, its
 * credentials masked first: it may quote the URL or the answer, and it is
 * cut to fit, which would leave part of a secret unrecognised.
 */
void
forward_note_error(Destination *dest, const char *error)
{
	char	   *masked = secret_mask(error, dest->secrets);

	strlcpy(dest->error, masked, sizeof(dest->error));
	ereport(LOG, (errmsg("runra_obs forward: destination \"%s\": %s", dest->name, masked)));
}

/* The batch is settled; `dead` of its events (n_dead) are to be dead-lettered. */
static void
settle(InFlight *b, ForwardEvent *dead, int n_dead, const char *error)
{
	b->state = BATCH_SETTLED;
	b->dead = dead;
	b->n_dead = n_dead;
	b->dead_error = n_dead > 0 ? MemoryContextStrdup(b->cxt, error) : NULL;
}

/*
 * A delivery attempt failed: dead-letter the batch if it was refused for
 * good or has been failing for longer than max_retry_ms, else back off.
 */
static void
attempt_failed(InFlight *b, const char *error, bool permanent, const char *retry_after)
{
	Destination *d = b->dest;
	int64		failing_ms = (GetCurrentTimestamp() - b->first_attempt) / 1000;

	d->failed += b->n_events;
	forward_note_error(d, error);
	if (permanent || failing_ms >= d->max_retry_ms)
	{
		settle(b, b->events, b->n_events,
			   permanent || d->max_retry_ms == 0 ? error
			   : psprintf("still failing after " INT64_FORMAT " ms (max_retry_ms): %s",
						  d->max_retry_ms, error));
		return;
	}
	b->state = BATCH_FAILED;
	retry_schedule(d, retry_after);
}

/* The events of b not marked in refused, moved to the front; returns how many. */
static int
keep_accepted(InFlight *b, const bool *refused, ForwardEvent **dead)
{
	int			kept = 0;
	int			n_dead = 0;

	*dead = MemoryContextAlloc(b->cxt, sizeof(ForwardEvent) * Max(b->n_events, 1));
	for (int i = 0; i < b->n_events; i++)
	{
		if (refused && refused[i])
			(*dead)[n_dead++] = b->events[i];
		else
			b->events[kept++] = b->events[i];
	}
	b->n_events = kept;
	return n_dead;
}

/* Axiom said 2xx: acknowledge what it took, dead-letter what it refused. */
static void
settle_axiom_answer(InFlight *b, const char *response)
{
	Destination *d = b->dest;
	bool	   *refused;
	int			n_refused;
	char	   *error;
	ForwardEvent *dead;

	if (axiom_read_answer(response, b, &refused, &n_refused, &error) != SEND_OK)
	{
		attempt_failed(b, error, false, NULL);
		return;
	}
	n_refused = keep_accepted(b, refused, &dead);
	d->sent += b->n_events;
	d->success = true;
	if (n_refused > 0)
		forward_note_error(d, error);
	settle(b, dead, n_refused, error);
	retry_reset(d);
}

/* OTLP said 2xx: acknowledged; a partialSuccess is reported, not retried. */
static void
settle_otlp_answer(InFlight *b, const char *response)
{
	Destination *d = b->dest;
	char	   *error;
	int			rejected;

	otlp_read_answer(d, response, &error, &rejected);
	d->sent += b->n_events;
	d->success = true;
	if (error)
	{
		d->failed += rejected;
		forward_note_error(d, error);
	}
	settle(b, NULL, 0, NULL);
	retry_reset(d);
}

/* An HTTP request finished: settle, retry later or dead-letter. */
static void
request_done(InFlight *b, CURLcode code, long status)
{
	Destination *d = b->dest;
	SendOutcome outcome = code == CURLE_OK
		? retry_classify_status(d->provider, status) : SEND_RETRY;
	char	   *error;
	char	   *response = b->response ? pstrdup(b->response) : NULL;
	char		retry_after[sizeof(b->retry_after)];

	if (code != CURLE_OK)
		error = psprintf("connection failure: %s",
						 b->error[0] ? b->error : curl_easy_strerror(code));
	else
		error = psprintf("HTTP %ld from %s: %.300s", status, d->url,
						 response ? response : "");
	memcpy(retry_after, b->retry_after, sizeof(retry_after));
	transport_detach(b);		/* off the wire: on_wire counts it no more */
	if (outcome == SEND_OK && d->provider == PROVIDER_AXIOM)
		settle_axiom_answer(b, response);
	else if (outcome == SEND_OK)
		settle_otlp_answer(b, response);
	else
		attempt_failed(b, error, outcome == SEND_PERMANENT, retry_after);
}

/* Settles every request libcurl has finished. */
static void
settle_finished(void)
{
	InFlight   *b;
	CURLcode	code;
	long		status;

	while ((b = transport_next_done(&code, &status)) != NULL)
		request_done(b, code, status);
}

/* Builds the request body of an HTTP batch (once: a retry sends it again). */
static void
encode_http(InFlight *b)
{
	Destination *d = b->dest;
	MemoryContext old = MemoryContextSwitchTo(b->cxt);
	StringInfoData body;

	initStringInfo(&body);
	if (d->provider == PROVIDER_AXIOM)
	{
		axiom_encode(&body, b->events, b->n_events);
		if (!axiom_gzip(body.data, body.len, &b->body, &b->body_len))
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
							errmsg("could not gzip the request body for destination \"%s\"", d->name)));
		pfree(body.data);
		b->content_encoding = "gzip";
		b->auth = psprintf("Bearer %s", d->token ? d->token : "");
	}
	else
	{
		otlp_encode(&body, d, b->events, b->n_events);
		b->body = body.data;
		b->body_len = body.len;
	}
	MemoryContextSwitchTo(old);
}

/* Writes a JSONL batch; settled once its lines are on disk. */
static void
write_jsonl(InFlight *b)
{
	Destination *d = b->dest;
	char	   *error = NULL;
	MemoryContext old = MemoryContextSwitchTo(b->cxt);
	bool		ok = jsonl_write(d, b->events, b->n_events, &error);

	MemoryContextSwitchTo(old);
	if (!ok)
	{
		attempt_failed(b, error, false, NULL);
		return;
	}
	d->sent += b->n_events;
	d->success = true;
	settle(b, NULL, 0, NULL);
	retry_reset(d);
}

/* When a batch was first tried: its dead letters and max_retry_ms count from then. */
static void
note_first_attempt(InFlight *b)
{
	if (b->attempts == 0 && b->first_attempt == 0)
		b->first_attempt = GetCurrentTimestamp();
}

typedef enum EncodeOutcome
{
	ENCODED,					/* the body is ready and small enough */
	ENCODE_TOO_LARGE,			/* more than one event, too large: read fewer */
	ENCODE_FAILED				/* the batch is settled: dead letters, with why */
} EncodeOutcome;

/*
 * Encodes an HTTP batch.  An error while encoding costs this batch (its
 * events become dead letters with the error: another attempt would fail
 * the same way), never the worker and the other destinations.  So does a
 * single event that encodes to more than runra_obs.forward_max_request_size.
 */
static EncodeOutcome
encode_checked(InFlight *b)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *edata = NULL;

	note_first_attempt(b);
	PG_TRY();
	{
		encode_http(b);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();
	if (edata != NULL)
	{
		b->body = NULL;
		attempt_failed(b, psprintf("could not encode the batch: %s", edata->message), true, NULL);
		return ENCODE_FAILED;
	}
	if (!forward_body_too_large(b->body_len))
		return ENCODED;
	if (b->n_events > 1)
		return ENCODE_TOO_LARGE;
	attempt_failed(b, psprintf("event " INT64_FORMAT " encodes to %zu bytes, more than runra_obs.forward_max_request_size (%d bytes)",
							   b->events[0].event_id, b->body_len, runra_forward_max_request_size),
				   true, NULL);
	return ENCODE_FAILED;
}

/*
 * Sends a batch (again): on the wire for HTTP, written at once for JSONL.
 * A range batch comes encoded (start_new_batches); a batch of
 * redeliveries is encoded here, and sent even when large (they are read a
 * batch_size at a time, not by range, and cannot be read again in halves).
 */
static void
send_batch(InFlight *b)
{
	if (b->body == NULL && b->n_events > 0 && b->dest->provider != PROVIDER_JSONL &&
		encode_checked(b) == ENCODE_FAILED)
		return;
	note_first_attempt(b);
	b->attempts++;
	if (b->n_events == 0)
		settle(b, NULL, 0, NULL);
	else if (b->dest->provider == PROVIDER_JSONL)
		write_jsonl(b);
	else
		transport_start(b);
}

/*
 * A new range batch, encoded before it is queued so its size is known.
 * False when it encoded too large: it is dropped, and the same range is
 * read again with half as many events.
 */
static bool
encode_new_batch(InFlight *b)
{
	Destination *d = b->dest;

	if (d->provider == PROVIDER_JSONL || b->n_events == 0)
		return true;
	if (encode_checked(b) != ENCODE_TOO_LARGE)
	{
		d->read_limit = 0;
		return true;
	}
	d->read_limit = Max(b->n_events / 2, 1);
	ereport(DEBUG1,
			(errmsg("runra_obs forward: destination \"%s\": %d events encode to %zu bytes; reading %d at a time",
					d->name, b->n_events, b->body_len, d->read_limit)));
	return false;
}

/* ---------------------------------------------------------------------------
 * Dispatch.
 * ---------------------------------------------------------------------------
 */

/* Are events waiting after d's read frontier long or many enough to read? */
static bool
due(Destination *d, TimestampTz now)
{
	int64		waiting = watermark - d->read_to;
	TimestampTz since;

	if (waiting <= 0)
		return false;
	if (waiting >= d->batch_size || d->flush_interval_ms == 0)
		return true;
	since = watermark_passed_at(d->read_to);
	return since == 0 || now >= TimestampTzPlusMilliseconds(since, d->flush_interval_ms);
}

/* Sends a destination's failed batches again, one at a time while it fails. */
static void
resend_failed(Destination *d)
{
	ListCell   *lc;

	if (d->redelivery && d->redelivery->state == BATCH_FAILED && d->on_wire == 0)
		send_batch(d->redelivery);
	foreach(lc, d->batches)
	{
		InFlight   *b = lfirst(lc);

		if (d->failures > 0 && d->on_wire > 0)
			return;
		if (b->state == BATCH_FAILED)
			send_batch(b);
	}
}

/* Starts sending d's redeliveries if it has some and none are on their way. */
static void
start_redelivery(Destination *d)
{
	Read		r;

	if (d->redelivery || d->redelivering == 0)
		return;
	r.batch = new_batch(d, true);
	if (!in_xact("runra_obs forward: reading redeliveries", read_redeliveries_step, &r)
		|| r.batch->n_events == 0)
	{
		d->redelivering = 0;	/* until the next look says otherwise */
		free_batch(r.batch);
		return;
	}
	d->redelivery = r.batch;
	send_batch(r.batch);
}

/* Has d a batch waiting to be sent again? */
static bool
has_failed_batch(Destination *d)
{
	ListCell   *lc;

	if (d->redelivery && d->redelivery->state == BATCH_FAILED)
		return true;
	foreach(lc, d->batches)
	{
		if (((InFlight *) lfirst(lc))->state == BATCH_FAILED)
			return true;
	}
	return false;
}

/*
 * May d read another batch now: due, with room for one, and not failing,
 * or failing with nothing left to retry (its failed batch was
 * dead-lettered, or a read failed): then one batch probes it.
 */
static bool
may_read(Destination *d, TimestampTz now)
{
	if (!d->enabled || d->provider == PROVIDER_FUNCTION || now < d->next_attempt ||
		list_length(d->batches) >= runra_forward_requests || !due(d, now))
		return false;
	return d->failures == 0 || (d->on_wire == 0 && !has_failed_batch(d));
}

/* Reads and sends new batches while d may. */
static void
start_new_batches(Destination *d, TimestampTz now)
{
	while (may_read(d, now))
	{
		Read		r;
		MemoryContext old;

		r.batch = new_batch(d, false);
		if (!in_xact("runra_obs forward: reading events", read_range_step, &r))
		{
			free_batch(r.batch);
			retry_schedule(d, NULL);
			return;
		}
		if (!encode_new_batch(r.batch))
		{
			free_batch(r.batch);
			continue;
		}
		d->read_to = r.batch->hi;
		old = MemoryContextSwitchTo(forward_cxt);
		d->batches = lappend(d->batches, r.batch);
		MemoryContextSwitchTo(old);
		if (r.batch->state != BATCH_SETTLED)
			send_batch(r.batch);
	}
}

typedef struct HandlerStep
{
	Destination *dest;
	bool		ok;
	char	   *error;
} HandlerStep;

static void
handler_step(void *arg)
{
	HandlerStep *h = arg;

	h->ok = handler_consume(h->dest, watermark, &h->error);
}

/* One transaction of a function destination's handler calls. */
static bool
consume_with_handler(Destination *d, TimestampTz now)
{
	HandlerStep h = {d, false, NULL};
	bool		committed;

	if (!due(d, now) && d->redelivering == 0)
		return false;
	committed = in_xact("runra_obs forward: calling handlers", handler_step, &h);
	if (committed)
	{
		d->position = d->read_to;
		report_position(d);
		runra_worker_count_events(d->sent, 0);
	}
	else
		d->read_to = d->position;
	d->sent = d->failed = 0;
	d->success = false;
	d->error[0] = '\0';
	if (committed && h.ok)
		retry_reset(d);
	else
		retry_schedule(d, NULL);
	return committed && h.ok && due(d, now);
}

/* Starts what is due for one destination; true when more is waiting now. */
static bool
dispatch(Destination *d, TimestampTz now)
{
	if (!d->enabled || now < d->next_attempt)
		return false;
	runra_worker_set_state("delivering");
	if (d->provider == PROVIDER_FUNCTION)
		return consume_with_handler(d, now);
	resend_failed(d);
	if (d->failures == 0)
		start_redelivery(d);
	start_new_batches(d, now);
	return false;
}

/* ---------------------------------------------------------------------------
 * Moving the cursors.
 * ---------------------------------------------------------------------------
 */

/* Records a settled batch's dead letters (and, redelivered, its deliveries). */
static void
record_batch(Destination *d, InFlight *b)
{
	if (b->state != BATCH_SETTLED || b->recorded)
		return;
	cursor_dead_letter(d, b->dead, b->n_dead, b->first_attempt, b->attempts,
					   b->dead_error, b->redelivery);
	if (b->redelivery)
		cursor_delivered_redeliveries(d, b->events, b->n_events);
}

/* Where the cursor can move: the end of the run of settled batches after it. */
static int64
settled_up_to(Destination *d)
{
	int64		to = d->position;
	ListCell   *lc;

	foreach(lc, d->batches)
	{
		InFlight   *b = lfirst(lc);

		if (b->state != BATCH_SETTLED)
			return to;
		to = b->hi;
	}
	return d->batches == NIL ? Max(d->read_to, d->position) : to;
}

/* The settle transaction: dead letters, counters and cursor moves of every destination. */
static void
record_step(void *arg)
{
	ListCell   *lc;

	foreach(lc, destinations)
	{
		Destination *d = lfirst(lc);
		ListCell   *bc;
		int64		to = settled_up_to(d);

		if (d->provider == PROVIDER_FUNCTION)
			continue;
		foreach(bc, d->batches)
			record_batch(d, lfirst(bc));
		if (d->redelivery)
			record_batch(d, d->redelivery);
		if (to > d->position)
			cursor_move(d, to);
		cursor_record(d);
	}
}

/* After the settle transaction committed: forget what it recorded. */
static void
forget_recorded(Destination *d)
{
	int64		to = settled_up_to(d);
	uint64		dead = 0;
	ListCell   *lc;

	while (d->batches != NIL && ((InFlight *) linitial(d->batches))->state == BATCH_SETTLED)
	{
		InFlight   *b = linitial(d->batches);

		dead += b->n_dead;
		free_batch(b);
		d->batches = list_delete_first(d->batches);
	}
	foreach(lc, d->batches)
	{
		InFlight   *b = lfirst(lc);

		b->recorded = b->state == BATCH_SETTLED;
	}
	if (d->redelivery && d->redelivery->state == BATCH_SETTLED)
	{
		dead += d->redelivery->n_dead;
		free_batch(d->redelivery);
		d->redelivery = NULL;
	}
	runra_worker_count_events(d->sent, dead);
	d->position = Max(d->position, to);
	report_position(d);
	d->sent = d->failed = 0;
	d->success = false;
	d->error[0] = '\0';
}

/* Has d anything for the settle transaction? */
static bool
has_outcomes(Destination *d)
{
	ListCell   *lc;

	if (d->provider == PROVIDER_FUNCTION)
		return false;
	if (d->sent || d->failed || d->success || d->error[0] || settled_up_to(d) > d->position)
		return true;
	if (d->redelivery && d->redelivery->state == BATCH_SETTLED)
		return true;
	foreach(lc, d->batches)
	{
		InFlight   *b = lfirst(lc);

		if (b->state == BATCH_SETTLED && !b->recorded)
			return true;
	}
	return false;
}

/* Records every outcome since the last turn and moves the cursors. */
static void
record_outcomes(void)
{
	ListCell   *lc;
	bool		any = false;

	foreach(lc, destinations)
		any |= has_outcomes(lfirst(lc));
	if (!any || !in_xact("runra_obs forward: moving cursors", record_step, NULL))
		return;
	foreach(lc, destinations)
	{
		Destination *d = lfirst(lc);

		if (d->provider != PROVIDER_FUNCTION)
			forget_recorded(d);
	}
}

/* ---------------------------------------------------------------------------
 * The loop.
 * ---------------------------------------------------------------------------
 */

/* Shows the destination furthest behind in worker_status.state. */
static void
show_lag(void)
{
	ListCell   *lc;
	Destination *worst = NULL;
	char		state[64];

	foreach(lc, destinations)
	{
		Destination *d = lfirst(lc);

		if (worst == NULL || d->position < worst->position)
			worst = d;
	}
	if (worst == NULL)
	{
		runra_worker_set_state("idle: no destinations");
		return;
	}
	snprintf(state, sizeof(state), "behind " INT64_FORMAT " ids, %.1f s: %s",
			 Max(watermark - worst->position, 0),
			 watermark_seconds_behind(worst->position, watermark), worst->name);
	runra_worker_set_state(state);
}

/* Milliseconds until the next backoff ends (or the poll interval). */
static long
wait_ms(bool more, TimestampTz now)
{
	long		ms = runra_forward_poll_interval_ms;
	ListCell   *lc;

	if (more)
		return 0;
	foreach(lc, destinations)
	{
		Destination *d = lfirst(lc);

		if (d->next_attempt > now)
			ms = Min(ms, (long) ((d->next_attempt - now + 999) / 1000));
	}
	return ms;
}

/* One turn of the loop: look, settle, start what is due, record, wait. */
static void
forward_turn(MemoryContext turn_cxt, bool *woken, TimestampTz *last_load)
{
	TimestampTz now = GetCurrentTimestamp();
	Look		look = {*woken || now >= TimestampTzPlusMilliseconds(*last_load, RELOAD_MS)};
	bool		more = false;
	bool		latch_set;
	ListCell   *lc;

	MemoryContextReset(turn_cxt);
	MemoryContextSwitchTo(turn_cxt);
	runra_worker_reload_if_needed();
	/* with no destinations the watermark is of no use: no transaction */
	if ((look.reload || destinations != NIL)
		&& in_xact("runra_obs forward: advancing the watermark", look_step, &look) && look.reload)
	{
		*last_load = now;
		*woken = false;
	}
	settle_finished();
	foreach(lc, destinations)
		more |= dispatch(lfirst(lc), now);
	record_outcomes();
	foreach(lc, destinations)
		more |= may_read(lfirst(lc), now);
	show_lag();
	transport_wait(wait_ms(more, GetCurrentTimestamp()), &latch_set);
	*woken |= latch_set;
	settle_finished();
}

/* Entry point of the forward worker (registered in workers.c). */
void
runra_forward_main(Datum arg)
{
	MemoryContext turn_cxt;
	TimestampTz last_load = 0;
	bool		woken = true;

	runra_worker_setup_signals();
	BackgroundWorkerInitializeConnection(runra_database, NULL, 0);
	runra_worker_attach("forward");
	if (!runra_worker_wait_for_extension())
		proc_exit(0);
	transport_init();
	runra_keep_freed_memory(RUNRA_WORKER_BATCH_MEMORY);
	forward_cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs forward",
										ALLOCSET_DEFAULT_SIZES);
	watermark_probe_init(&probe, AllocSetContextCreate(TopMemoryContext,
													   "runra_obs watermark probe",
													   ALLOCSET_SMALL_SIZES));
	turn_cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs forward turn",
									 ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("runra_obs forward worker started in database \"%s\"", runra_database)));
	while (!runra_got_sigterm)
		forward_turn(turn_cxt, &woken, &last_load);
	/* 1, not 0: a worker that exits 0 is not started again, and a
	 * pg_terminate_backend() would stop it until the next restart */
	proc_exit(1);
}
