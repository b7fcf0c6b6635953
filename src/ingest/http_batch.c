/*
 * http_batch.c — the group commit: every request that completed while the
 * worker was busy is written in one transaction, then answered.
 *
 * After MHD_run returns, the pending list holds suspended requests.  Their
 * bodies (gzip decoded here) go into one EventBatch, one EventBodyResult
 * each, in one transaction; after CommitTransactionCommand returns, each
 * gets its own answer and its connection is resumed.  So one fsync serves
 * every request that arrived during the previous one, and a 2xx is only
 * ever sent for committed events.  Each route reads its body and makes its
 * answer in its own shape (/v1/events here, Axiom's in http_axiom.c,
 * OTLP's in otlp/otlp_ingest.c); the
 * batch, the transaction and the error policy are the same for all.
 *
 * A database error inside the group becomes an answer, never an unwinding
 * through libmicrohttpd: errors that say "not now" (lock or statement
 * timeout, read-only, shutdown, resources) give every request in the group
 * 503 with Retry-After; any other error is retried one request at a time,
 * so a single poisonous body cannot fail its neighbours.
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "citus/citus.h"
#include "guc.h"
#include "ingest/http.h"
#include "store/event_batch.h"
#include "worker/worker_common.h"

/* a group is written once its bodies reach this size, bounding memory */
#define GROUP_BYTES (64 * 1024 * 1024)

/* One request with events on its way through a group. */
typedef struct GroupItem
{
	HttpRequest *req;
	char	   *body;			/* decoded, writable, NUL-terminated */
	int			len;
	uint8		hash[HTTP_TOKEN_HASH_LEN];	/* of the body as sent, for Idempotency-Key */
	bool		hashed;
	HttpBodyAnswer answer;		/* once decided */
	bool		replayed;
} GroupItem;

/* Fills in item's answer as an error in its route's shape. */
static void
item_error(GroupItem *item, unsigned int status, const char *message)
{
	item->answer.status = status;
	resetStringInfo(&item->answer.body);
	http_error_body(item->req, &item->answer.body, status, message);
}

/* POST /v1/events: queues the body and makes its 200 or 400 answer. */
static void
add_events_body(EventBatch *batch, HttpRequest *req, char *body, int len,
				MemoryContext answer_context, HttpBodyAnswer *answer)
{
	EventBodyResult result;
	MemoryContext xact = CurrentMemoryContext;

	event_body_result_init(&result);
	event_batch_add(batch, body, len, req->ndjson ? EVENT_BODY_NDJSON : EVENT_BODY_JSON, &result);
	MemoryContextSwitchTo(answer_context);
	resetStringInfo(&answer->body);
	if (result.body_error)
	{
		answer->status = 400;
		http_error_json(&answer->body, 400,
						psprintf("The body could not be parsed, so nothing of it was stored: %s",
								 result.body_error_message));
	}
	else
	{
		answer->status = 200;
		appendStringInfo(&answer->body, "{\"ingested\":" INT64_FORMAT ",\"failed\":" INT64_FORMAT
						 ",\"failures\":%s}\n", result.ingested, result.failed, result.failures.data);
		answer->ingested = result.ingested;
		answer->rejected = result.failed;
	}
	MemoryContextSwitchTo(xact);
}

/* Queues one body in the batch, read and answered as its route says. */
static void
add_body(EventBatch *batch, GroupItem *item, MemoryContext answer_context)
{
	HttpRequest *req = item->req;

	if (req->route == ROUTE_AXIOM)
		http_axiom_add(batch, req, item->body, item->len, answer_context, &item->answer);
	else if (ROUTE_IS_OTLP(req->route))
		http_otlp_add(batch, req, item->body, item->len, answer_context, &item->answer);
	else
		add_events_body(batch, req, item->body, item->len, answer_context, &item->answer);
	event_batch_set_dialect(batch, NULL);
}

/*
 * For a keyed request: claims the key, or answers as the first time.  True
 * when the body should still be written.
 */
static bool
claim_key(GroupItem *item, MemoryContext answer_context)
{
	int			status;
	char	   *response;
	IdempotencyOutcome outcome;
	MemoryContext xact;

	/*
	 * Hash once, before event_batch_add repairs the text in place: a group
	 * retried request by request must see the body as the client sent it.
	 */
	if (!item->hashed)
		http_request_hash(item->req, item->body, item->len, item->hash);
	item->hashed = true;
	outcome = http_idempotency_claim(item->req, item->hash, &status, &response);
	if (outcome == IDEMPOTENCY_NEW)
		return true;
	xact = MemoryContextSwitchTo(answer_context);
	if (outcome == IDEMPOTENCY_REPLAY)
	{
		item->answer.status = status;
		resetStringInfo(&item->answer.body);
		appendStringInfoString(&item->answer.body, response);
		item->replayed = true;
	}
	else
		item_error(item, 422,
				   "This Idempotency-Key was already used with a different body: send a new key for new events.");
	MemoryContextSwitchTo(xact);
	return false;
}

/* Inside the transaction: tokens, keys, bodies, then the COPY. */
static void
fill_group(GroupItem *items, int n, MemoryContext answer_context)
{
	HttpRequest **reqs = palloc(sizeof(HttpRequest *) * n);
	bool	   *valid = palloc(sizeof(bool) * n);
	EventBatch *batch;

	for (int i = 0; i < n; i++)
		reqs[i] = items[i].req;
	http_tokens_verify(reqs, n, valid);
	batch = event_batch_begin("http");
	for (int i = 0; i < n; i++)
	{
		GroupItem  *item = &items[i];

		item->replayed = false;
		item->answer.ingested = item->answer.rejected = 0;
		if (!valid[i])
		{
			MemoryContext xact = MemoryContextSwitchTo(answer_context);

			item_error(item, 401, "This bearer token was revoked.");
			MemoryContextSwitchTo(xact);
			continue;
		}
		if (item->req->idempotency_key != NULL && !claim_key(item, answer_context))
			continue;
		add_body(batch, item, answer_context);
		if (item->req->idempotency_key != NULL)
			http_idempotency_remember(item->req, item->answer.status, item->answer.body.data);
	}
	event_batch_finish(batch);
}

/* "Not now" errors: the same request may well succeed in a moment. */
static bool
error_is_transient(ErrorData *error)
{
	switch (ERRCODE_TO_CATEGORY(error->sqlerrcode))
	{
		case ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE:	/* lock_not_available */
		case ERRCODE_OPERATOR_INTERVENTION: /* timeouts, shutdown */
		case ERRCODE_TRANSACTION_ROLLBACK:	/* deadlock, serialization */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* disk full, out of memory */
		case ERRCODE_CONNECTION_EXCEPTION:	/* a Citus worker down or restarting */
			return true;
		default:
			/* (Citus reports a worker lost in mid-COPY as an I/O error,
			 * and some losses with no errcode at all) */
			return error->sqlerrcode == ERRCODE_READ_ONLY_SQL_TRANSACTION ||
				error->sqlerrcode == ERRCODE_IO_ERROR ||
				citus_error_is_node_lost(error);
	}
}

/* Sends every item its answer and resumes its connection. */
static void
answer_items(GroupItem *items, int n)
{
	for (int i = 0; i < n; i++)
	{
		HttpBodyAnswer *answer = &items[i].answer;

		if (items[i].replayed)
			http_answer_replay(items[i].req, answer->status, answer->body.data);
		else
			http_answer_bytes(items[i].req, answer->status, answer->body.data, answer->body.len);
		http_answer_resume(items[i].req);
	}
}

/* Turns a database error into each item's answer. */
static void
fail_items(GroupItem *items, int n, ErrorData *error)
{
	bool		transient = error_is_transient(error);
	int			category = ERRCODE_TO_CATEGORY(error->sqlerrcode);
	char	   *message;

	if (transient)
		message = psprintf("The database cannot take these events just now (%s); nothing was stored, retry shortly.",
						   error->message);
	else
		message = psprintf("The events could not be stored, nothing of this request was: %s", error->message);
	for (int i = 0; i < n; i++)
		item_error(&items[i],
				   transient ? 503 :
				   (category == ERRCODE_DATA_EXCEPTION || category == ERRCODE_PROGRAM_LIMIT_EXCEEDED) ? 400 : 500,
				   message);
	if (!transient)
		runra_worker_report_error(error->message);
}

/*
 * Writes a group in one transaction and answers it; on a lasting error,
 * writes its requests one by one so only the guilty one fails.
 */
static void
write_group(GroupItem *items, int n)
{
	MemoryContext answer_context = CurrentMemoryContext;
	TimestampTz started = GetCurrentTimestamp();
	ErrorData  *volatile error = NULL;

	runra_worker_set_state("writing a batch");
	PG_TRY();
	{
		http_xact_begin();
		fill_group(items, n, answer_context);
		http_xact_commit();
	}
	PG_CATCH();
	{
		error = http_xact_abort();
	}
	PG_END_TRY();
	runra_worker_set_state("listening");
	if (error == NULL)
	{
		int64		ingested = 0,
					rejected = 0;

		for (int i = 0; i < n; i++)
		{
			ingested += items[i].answer.ingested, rejected += items[i].answer.rejected;
			/* every event sent counts against its token's rate, refused ones too */
			http_rate_charge(items[i].req, RATE_EVENTS,
							 (double) (items[i].answer.ingested + items[i].answer.rejected));
		}
		http_metrics_count_batch(n, ingested, rejected, started);
		runra_worker_count_events(ingested, rejected);
	}
	else if (n > 1 && !error_is_transient(error))
	{
		ereport(LOG,
				(errmsg("runra_obs http is writing a group of %d requests one by one after an error: %s",
						n, error->message)));
		for (int i = 0; i < n; i++)
			write_group(&items[i], 1);
		return;
	}
	else
	{
		if (!error_is_transient(error))
			ereport(LOG, (errmsg("runra_obs http could not store a request: %s", error->message)));
		fail_items(items, n, error);
	}
	answer_items(items, n);
}

/* Decodes the body of an events request; false when it was answered instead. */
static bool
prepare_item(GroupItem *item, HttpRequest *req)
{
	memset(item, 0, sizeof(*item));
	item->req = req;
	initStringInfo(&item->answer.body);
	if (req->gzip)
	{
		char	   *out;
		size_t		out_len;
		const char *error = NULL;
		GunzipResult r = http_gunzip(req->body ? req->body : "", req->body_len,
									 (size_t) runra_http_max_body_size, &out, &out_len, &error);

		if (r == GUNZIP_TOO_LARGE)
			http_answer_error(req, 413, "The body is larger than runra_obs.http_max_body_size once decoded: split the events over several requests.");
		else if (r == GUNZIP_CORRUPT)
			http_answer_error(req, 400, psprintf("The body is not valid gzip (Content-Encoding: gzip): %s.", error));
		if (r != GUNZIP_OK)
		{
			http_answer_resume(req);
			return false;
		}
		item->body = out;
		item->len = (int) out_len;
	}
	else
	{
		item->body = req->body ? req->body : pstrdup("");
		item->len = (int) req->body_len;
	}
	return true;
}

/*
 * Writes events requests in groups of at most GROUP_BYTES of body and
 * runra_obs.http_max_batch_requests requests, and answers each.
 */
void
http_write_events(HttpRequest **reqs, int n)
{
	GroupItem  *items = palloc(sizeof(GroupItem) * Max(n, 1));
	int			n_items = 0;
	size_t		bytes = 0;
	int			first = 0;

	for (int i = 0; i < n; i++)
		if (prepare_item(&items[n_items], reqs[i]))
			n_items++;
	for (int i = 0; i < n_items; i++)
	{
		bytes += items[i].len;
		if (bytes >= GROUP_BYTES || i == n_items - 1 ||
			i - first + 1 >= runra_http_max_batch_requests)
		{
			write_group(&items[first], i - first + 1);
			first = i + 1;
			bytes = 0;
		}
	}
}
