/*
 * notify_queue.c — notification payloads waiting to be written, and the
 * write itself.
 *
 * Payloads are copied out of libpq as they arrive and written together, in
 * one short transaction through the event batch (event_batch.h, source
 * "notify"), when the queue holds runra_obs.notify_batch_size events or its
 * oldest payload is runra_obs.notify_flush_ms old, whichever comes first.
 * No transaction is ever open while the worker waits on its connection.
 *
 * A payload that is not JSON at all is kept in rejected_events with the
 * parser's reason; one whose events are bad is handled by the batch (bad
 * events rejected, good ones stored).  If the write itself fails with an
 * error that waiting may cure (a lock timeout, a deadlock, a full disk, an
 * I/O error), the queue is kept and retried with backoff.  Any other error
 * (a trigger that throws, say) may be one payload's fault: each payload is
 * then written in a transaction of its own, so that one does not hold back
 * the others, and one that fails alone is kept in rejected_events with the
 * error; if even that fails, it waits in the queue with the rest.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "ingest/notify.h"
#include "store/event_batch.h"
#include "worker/worker_common.h"
#include "worker/worker_xact.h"

#define WRITE_RETRY_FIRST_MS 1000
#define WRITE_RETRY_MAX_MS 30000

/* What one write transaction is given and what it did. */
typedef struct QueueWrite
{
	List	   *payloads;		/* NotifyPayload * to write */
	const char *store_error;	/* set: reject them all with this reason */
	int64		ingested;
	int64		rejected;
} QueueWrite;

void
notify_queue_init(NotifyQueue *queue)
{
	memset(queue, 0, sizeof(*queue));
	queue->cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs notify queue",
									   ALLOCSET_DEFAULT_SIZES);
}

/*
 * How many events a payload holds, to know when a batch is full without
 * parsing it twice: 1 for an object, the number of top-level elements for
 * an array.  Only strings and nesting are tracked; a payload that is not
 * JSON counts as what it looks like, and at least 1.
 */
static int
count_events(const char *text, int len)
{
	int			i = 0,
				depth = 0,
				elements = 0;
	bool		in_string = false,
				empty = true;

	while (i < len && isspace((unsigned char) text[i]))
		i++;
	if (i == len || text[i] != '[')
		return 1;
	for (i++; i < len; i++)
	{
		char		c = text[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
			depth++;
		else if ((c == ']' || c == '}') && depth-- == 0)
			break;
		else if (c == ',' && depth == 0)
			elements++;
		if (!isspace((unsigned char) c) && c != ']')
			empty = false;
	}
	return Max(empty ? 0 : elements + 1, 1);
}

/* Copies a payload, with who sent it, into the queue. */
void
notify_queue_add(NotifyQueue *queue, const char *payload, Oid sender_role)
{
	MemoryContext old = MemoryContextSwitchTo(queue->cxt);
	NotifyPayload *p = palloc(sizeof(NotifyPayload));

	p->sender_role = sender_role;

	p->len = strlen(payload);
	p->text = pnstrdup(payload, p->len);
	p->events = count_events(p->text, p->len);
	if (queue->payloads == NIL)
		queue->first_at = GetCurrentTimestamp();
	queue->payloads = lappend(queue->payloads, p);
	queue->events += p->events;
	MemoryContextSwitchTo(old);
}

/* When the queue must be written at the latest; 0 when it is empty. */
TimestampTz
notify_queue_deadline(NotifyQueue *queue)
{
	if (queue->payloads == NIL)
		return 0;
	if (queue->write_failures > 0)
		return queue->retry_at;
	return TimestampTzPlusMilliseconds(queue->first_at, runra_notify_flush_ms);
}

/* Should the queue be written now? */
bool
notify_queue_due(NotifyQueue *queue, TimestampTz now)
{
	if (queue->payloads == NIL)
		return false;
	if (queue->write_failures > 0)
		return now >= queue->retry_at;
	return queue->events >= runra_notify_batch_size ||
		now >= notify_queue_deadline(queue);
}

/*
 * Why the sender of a payload may not send events, or NULL if it may: it
 * must be a member of runra_obs_writer, as for every other way in.
 */
static const char *
sender_refused(NotifyPayload *p)
{
	Oid			writer = get_role_oid("runra_obs_writer", true);
	char	   *sender;

	if (!OidIsValid(p->sender_role))
		return "not stored: its sender ended before its role could be known "
			"(send from a member of runra_obs_writer, or use runra_obs.ingest())";
	if (OidIsValid(writer) && has_privs_of_role(p->sender_role, writer))
		return NULL;
	sender = GetUserNameFromId(p->sender_role, true);
	return psprintf("not stored: sent by role \"%s\", which is not a member of runra_obs_writer",
					sender ? sender : "(dropped)");
}

/* Queues one payload into the batch; a body that is not JSON is kept too. */
static void
add_payload(EventBatch *batch, NotifyPayload *p, QueueWrite *w)
{
	EventBodyResult result;
	const char *refused = w->store_error ? w->store_error : sender_refused(p);

	event_body_result_init(&result);
	if (refused == NULL)
		event_batch_add(batch, p->text, p->len, EVENT_BODY_JSON, &result);
	if (refused != NULL || result.body_error)
	{
		event_batch_reject_body(batch, refused ? refused : result.body_error_message,
								p->text, p->len);
		w->rejected++;
		return;
	}
	w->ingested += result.ingested;
	w->rejected += result.failed;
}

/* The work of a write transaction (see worker_xact.h). */
static void
write_payloads(void *arg)
{
	QueueWrite *w = arg;
	EventBatch *batch = event_batch_begin("notify");
	ListCell   *lc;

	foreach(lc, w->payloads)
		add_payload(batch, (NotifyPayload *) lfirst(lc), w);
	event_batch_finish(batch);
}

/* Writes payloads in one transaction; counts them once committed. */
static bool
write_in_transaction(List *payloads, const char *store_error, char **error,
					 int *sqlerrcode)
{
	QueueWrite	w = {payloads, store_error, 0, 0};

	if (!runra_worker_run_transaction("writing notified events", write_payloads,
									  &w, error, sqlerrcode))
		return false;
	runra_worker_count_events(w.ingested, w.rejected);
	return true;
}

/*
 * Is this an error that waiting may cure, rather than something wrong with
 * what was written?
 */
static bool
error_may_pass(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_TRANSACTION_ROLLBACK:	/* deadlock, serialization */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* disk full, out of memory */
		case ERRCODE_OPERATOR_INTERVENTION: /* canceled, shutting down */
		case ERRCODE_SYSTEM_ERROR:	/* I/O */
			return true;
		default:
			return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
	}
}

/*
 * After a failed batch: each payload on its own, and one that cannot be
 * stored is kept in rejected_events with the reason.  Returns the payloads
 * that could not be written either way, and in *sqlerrcode why the last
 * write failed.
 */
static List *
write_one_by_one(List *payloads, int *sqlerrcode)
{
	List	   *left = NIL;
	ListCell   *lc;

	foreach(lc, payloads)
	{
		List	   *one = list_make1(lfirst(lc));
		char	   *error;

		if (write_in_transaction(one, NULL, &error, sqlerrcode))
			continue;
		if (!error_may_pass(*sqlerrcode) &&
			write_in_transaction(one, psprintf("could not be stored: %s", error),
								 &error, sqlerrcode))
			continue;
		left = lappend(left, lfirst(lc));
	}
	return left;
}

/*
 * Empties the queue, or keeps what is left for a retry with backoff
 * (sqlerrcode: why the last write failed).
 */
static void
settle_queue(NotifyQueue *queue, List *left, int sqlerrcode)
{
	int			delay = WRITE_RETRY_FIRST_MS;
	ListCell   *lc;

	if (left == NIL)
	{
		queue->payloads = NIL;
		queue->events = 0;
		queue->write_failures = 0;
		MemoryContextReset(queue->cxt);
		return;
	}
	queue->payloads = left;
	queue->last_sqlerrcode = sqlerrcode;
	queue->events = 0;
	foreach(lc, left)
		queue->events += ((NotifyPayload *) lfirst(lc))->events;
	queue->write_failures++;
	for (int i = 1; i < queue->write_failures && delay < WRITE_RETRY_MAX_MS; i++)
		delay *= 2;
	queue->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  Min(delay, WRITE_RETRY_MAX_MS));
	ereport(LOG,
			(errcode(sqlerrcode),
			 errmsg("runra_obs notify could not write %d notifications; retrying in %d ms",
					list_length(left), Min(delay, WRITE_RETRY_MAX_MS))));
}

/* Writes everything queued (see the file comment for what happens on errors). */
void
notify_queue_flush(NotifyQueue *queue)
{
	MemoryContext old;
	char	   *error;
	int			sqlerrcode;
	List	   *left = NIL;

	if (queue->payloads == NIL)
		return;
	old = MemoryContextSwitchTo(queue->cxt);
	runra_worker_set_state(psprintf("writing %lld notified events",
									(long long) queue->events));
	if (!write_in_transaction(queue->payloads, NULL, &error, &sqlerrcode))
	{
		runra_worker_report_error(error);
		left = error_may_pass(sqlerrcode) ? queue->payloads
			: write_one_by_one(queue->payloads, &sqlerrcode);
	}
	MemoryContextSwitchTo(old);
	settle_queue(queue, left, sqlerrcode);
}
