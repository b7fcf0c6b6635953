/*
 * worker.c — the forward worker's main loop.
 *
 * One worker serves runra_obs.database.  Each turn it (re)reads the
 * destinations and the head of their queues when woken (the selection
 * trigger sets its latch at commit), when a delivery finished, or every
 * runra_obs.forward_poll_interval; starts a delivery for each destination
 * that is due (a full batch queued, or its oldest event older than its
 * flushIntervalMs) and not backing off; then waits on one WaitEventSet for
 * the latch, libcurl's sockets and timers, and the next due time.
 *
 * HTTP deliveries (Axiom, OTLP) run concurrently through libcurl multi, at
 * most one request per destination, so a destination that is down never
 * holds up another.  JSONL and function deliveries are local and run in
 * the loop.  No transaction is open while the worker waits.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "forward/forward.h"
#include "worker/worker_common.h"

PGDLLEXPORT void runra_forward_main(Datum arg);

/*
 * Wake-ups from committing inserts re-read the outbox at most this often
 * (under heavy ingest every commit wakes us); a finished delivery re-reads
 * it at once, so a long queue drains batch after batch without pauses.
 */
#define MIN_RELOAD_MS 10

static List *destinations = NIL;
static bool reload_wanted = true;	/* woken: re-read soon */
static bool reload_now = true;	/* a delivery finished: re-read now */

/* Counts delivered and dead-lettered events in the worker's status slot. */
void
runra_forward_count(uint64 sent, uint64 dead_lettered)
{
	runra_worker_count_events(sent, dead_lettered);
}

/* When is this destination next due (0: nothing queued, or busy)? */
static TimestampTz
due_time(Destination *dest)
{
	TimestampTz due;

	if (!dest->enabled || dest->inflight || dest->queued == 0)
		return 0;
	due = dest->queued >= dest->batch_size ? 0
		: TimestampTzPlusMilliseconds(dest->oldest_queued, dest->flush_interval_ms);
	return Max(Max(due, dest->next_attempt), 1);
}

/* Dead-letters queue entries whose event is no longer stored; returns the rest. */
static int
drop_missing_events(Destination *dest, ForwardEvent *events, int n)
{
	int64	   *gone = palloc(sizeof(int64) * n);
	int			n_gone = 0,
				kept = 0;

	for (int i = 0; i < n; i++)
	{
		if (events[i].event_type == NULL)
			gone[n_gone++] = events[i].event_id;
		else
			events[kept++] = events[i];
	}
	outbox_fail(dest, gone, n_gone,
				"event is no longer in runra_obs.sandbox_events (its partition was dropped by retention)",
				true);
	return kept;
}

/* The event ids of a batch, malloc'd (or palloc'd) as asked. */
static int64 *
batch_ids(ForwardEvent *events, int n, bool use_malloc)
{
	int64	   *ids = use_malloc ? malloc(sizeof(int64) * Max(n, 1))
		: palloc(sizeof(int64) * Max(n, 1));

	if (ids == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	for (int i = 0; i < n; i++)
		ids[i] = events[i].event_id;
	return ids;
}

/* Writes a batch to a JSONL file; acknowledges it once it is on disk. */
static void
deliver_jsonl(Destination *dest, ForwardEvent *events, int n)
{
	int64	   *ids = batch_ids(events, n, false);
	char	   *error = NULL;

	if (jsonl_write(dest, events, n, &error))
	{
		outbox_ack(dest, ids, n);
		retry_reset(dest);
	}
	else
	{
		outbox_fail(dest, ids, n, error, false);
		retry_schedule(dest, NULL);
	}
}

/* Calls a function destination's handler for each event of a batch. */
static void
deliver_function(Destination *dest, ForwardEvent *events, int n)
{
	int64	   *failed;
	int			n_failed;
	char	   *error;
	int			delivered;

	delivered = handler_deliver(dest, batch_ids(events, n, false), n, &error, &failed, &n_failed);
	runra_forward_count(delivered, 0);
	if (n_failed > 0)
	{
		outbox_fail(dest, failed, n_failed, error, false);
		retry_schedule(dest, NULL);
	}
	else
		retry_reset(dest);
}

/* Encodes a batch for Axiom or OTLP and puts the request on the wire. */
static void
deliver_http(Destination *dest, ForwardEvent *events, int n)
{
	StringInfoData body;
	InFlight   *req = calloc(1, sizeof(InFlight));
	char	   *auth = NULL;
	bool		ok;

	if (req == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	initStringInfo(&body);
	req->n_events = n;
	req->event_ids = batch_ids(events, n, true);
	req->created_at = malloc(sizeof(TimestampTz) * Max(n, 1));
	for (int i = 0; req->created_at && i < n; i++)
		req->created_at[i] = events[i].created_at;
	if (dest->provider == PROVIDER_AXIOM)
	{
		axiom_encode(&body, events, n);
		ok = axiom_gzip(body.data, body.len, &req->body, &req->body_len);
		auth = psprintf("Bearer %s", dest->token ? dest->token : "");
	}
	else
	{
		otlp_encode(&body, dest, events, n);
		req->body = malloc(body.len + 1);
		if ((ok = req->body != NULL))
			memcpy(req->body, body.data, body.len + 1);
		req->body_len = body.len;
	}
	if (!ok || req->created_at == NULL)
	{
		transport_release(req);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("could not build the request body for destination \"%s\"", dest->name)));
	}
	transport_start(dest, req, dest->provider == PROVIDER_AXIOM ? "gzip" : NULL, auth);
}

/* Fetches the head of a due destination's queue and delivers it. */
static void
start_delivery(Destination *dest)
{
	ForwardEvent *events;
	int			n = outbox_fetch(dest, &events);

	n = drop_missing_events(dest, events, n);
	dest->queued = 0;			/* unknown until the next look */
	reload_now = true;
	if (n == 0)
		return;
	runra_worker_set_state("delivering");
	switch (dest->provider)
	{
		case PROVIDER_JSONL:
			deliver_jsonl(dest, events, n);
			break;
		case PROVIDER_FUNCTION:
			deliver_function(dest, events, n);
			break;
		default:
			deliver_http(dest, events, n);
			break;
	}
}

/* Axiom said 2xx: acknowledge what it took, dead-letter what it refused. */
static void
settle_axiom_answer(Destination *dest, InFlight *req)
{
	int64	   *refused;
	int			n_refused;
	char	   *error;
	int64	   *taken = palloc(sizeof(int64) * req->n_events);
	int			n_taken = 0;

	if (axiom_read_answer(req->response, req, &refused, &n_refused, &error) != SEND_OK)
	{
		outbox_fail(dest, req->event_ids, req->n_events, error, false);
		retry_schedule(dest, NULL);
		return;
	}
	for (int i = 0; i < req->n_events; i++)
	{
		bool		was_refused = false;

		for (int j = 0; j < n_refused; j++)
			was_refused |= (refused[j] == req->event_ids[i]);
		if (!was_refused)
			taken[n_taken++] = req->event_ids[i];
	}
	outbox_ack(dest, taken, n_taken);
	outbox_fail(dest, refused, n_refused, error, true);
	retry_reset(dest);
}

/* An HTTP request finished: acknowledge, retry later or dead-letter. */
static void
settle_request(Destination *dest, CURLcode code, long status)
{
	InFlight   *req = dest->inflight;
	SendOutcome outcome = code == CURLE_OK
		? retry_classify_status(dest->provider, status) : SEND_RETRY;
	char	   *error;

	if (code != CURLE_OK)
		error = psprintf("connection failure: %s",
						 req->error[0] ? req->error : curl_easy_strerror(code));
	else
		error = psprintf("HTTP %ld from %s: %.300s", status, dest->url,
						 req->response ? req->response : "");
	if (outcome == SEND_OK && dest->provider == PROVIDER_AXIOM)
		settle_axiom_answer(dest, req);
	else if (outcome == SEND_OK)
	{
		int			rejected;

		outbox_ack(dest, req->event_ids, req->n_events);
		otlp_read_answer(req->response, &error, &rejected);
		if (error)
			outbox_note_error(dest, error, rejected);
		retry_reset(dest);
	}
	else
	{
		outbox_fail(dest, req->event_ids, req->n_events, error, outcome == SEND_PERMANENT);
		if (outcome == SEND_RETRY)
			retry_schedule(dest, req->retry_after);
	}
	transport_cancel(dest);
}

/* Settles every request libcurl has finished. */
static void
settle_finished(void)
{
	Destination *dest;
	CURLcode	code;
	long		status;

	while ((dest = transport_next_done(&code, &status)) != NULL)
	{
		settle_request(dest, code, status);
		reload_now = true;
	}
}

/* Starts deliveries that are due; returns when the next one will be (0: none). */
static TimestampTz
start_due_deliveries(TimestampTz now)
{
	TimestampTz next = 0;
	ListCell   *lc;

	foreach(lc, destinations)
	{
		Destination *dest = lfirst(lc);
		TimestampTz due = due_time(dest);

		if (due == 0)
			continue;
		if (due <= now)
			start_delivery(dest);
		else if (next == 0 || due < next)
			next = due;
	}
	return next;
}

/* Milliseconds from now until `when` (at least 0; -1 when `when` is 0). */
static long
ms_until(TimestampTz when, TimestampTz now)
{
	if (when == 0)
		return -1;
	return (long) Max(0, (when - now + 999) / 1000);
}

/* One turn of the loop: look, deliver what is due, wait. */
static void
forward_turn(MemoryContext turn_cxt, TimestampTz *last_load, TimestampTz *next_poll)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next_due;
	long		wait_ms;
	bool		latch_set;

	MemoryContextReset(turn_cxt);
	MemoryContextSwitchTo(turn_cxt);
	runra_worker_reload_if_needed();
	if (reload_now || now >= *next_poll ||
		(reload_wanted && now >= TimestampTzPlusMilliseconds(*last_load, MIN_RELOAD_MS)))
	{
		destinations = outbox_load_destinations(destinations, TopMemoryContext);
		reload_wanted = reload_now = false;
		*last_load = now;
		*next_poll = TimestampTzPlusMilliseconds(now, runra_forward_poll_interval_ms);
	}
	next_due = start_due_deliveries(now);
	runra_worker_set_state(list_length(destinations) == 0 ? "idle: no destinations" : "waiting");
	now = GetCurrentTimestamp();
	wait_ms = ms_until(*next_poll, now);
	if (next_due != 0)
		wait_ms = Min(wait_ms, ms_until(next_due, now));
	if (reload_now)
		wait_ms = 0;
	else if (reload_wanted)
		wait_ms = Min(wait_ms, ms_until(TimestampTzPlusMilliseconds(*last_load, MIN_RELOAD_MS), now));
	transport_wait(wait_ms, &latch_set);
	if (latch_set)
		reload_wanted = true;
	settle_finished();
}

/* Entry point of the forward worker (registered in workers.c). */
void
runra_forward_main(Datum arg)
{
	MemoryContext turn_cxt;
	TimestampTz last_load = 0;
	TimestampTz next_poll = 0;

	runra_worker_setup_signals();
	BackgroundWorkerInitializeConnection(runra_database, NULL, 0);
	runra_worker_attach("forward");
	if (!runra_worker_wait_for_extension())
		proc_exit(0);
	transport_init();
	turn_cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs forward turn",
									 ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("runra_obs forward worker started in database \"%s\"", runra_database)));
	while (!runra_got_sigterm)
		forward_turn(turn_cxt, &last_load, &next_poll);
	proc_exit(0);
}
