/*
 * deliver.c — sending the queued alert notifications.
 *
 * One transaction reads the notifications due (runra_obs._alert_outbox);
 * HTTP ones (Slack, webhooks, Alertmanager) are then all sent at once with
 * the forwarders' libcurl transport, outside any transaction, and their
 * outcomes recorded in one more (runra_obs._alert_attempted): a 2xx is
 * sent, a 4xx other than 408 and 429 is refused for good (dead, with the
 * answer kept), anything else is tried again after the forwarders' backoff
 * (or the Retry-After asked for), until the contact point's maxRetryMs.
 * A function contact point's handler runs in a subtransaction of the
 * transaction that records its outcome, so what it writes commits with the
 * notification being marked sent, once.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/regproc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "alert/alert.h"
#include "forward/forward.h"
#include "worker/run_as_owner.h"
#include "worker/worker_common.h"
#include "worker/worker_xact.h"

#define NOTIFICATIONS_PER_ROUND 100
#define ANSWER_KEPT 4096

/* One queued notification and how its attempt went. */
typedef struct Notification
{
	int64		id;
	char	   *contact_point;
	bool		is_function;
	Oid			handler;
	char	   *body;
	int			attempts;
	Destination dest;			/* what the transport needs: url, timeout */
	InFlight	req;
	/* the outcome */
	const char *outcome;		/* sent, refused, failed */
	char	   *error;
	char	   *answer;
	int64		retry_ms;
} Notification;

typedef struct Round
{
	TimestampTz at;
	int			n;
	Notification *items;
	MemoryContext cxt;
} Round;

static MemoryContext round_cxt = NULL;

/* Sets up libcurl and the memory each round lives in. */
void
alert_deliver_init(void)
{
	transport_init();
	round_cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs alert delivery",
									  ALLOCSET_DEFAULT_SIZES);
}

/* A text column of the outbox row, copied into the round's memory. */
static char *
column_text(HeapTuple row, TupleDesc desc, int col, MemoryContext into)
{
	char	   *v = SPI_getvalue(row, desc, col);

	return v ? MemoryContextStrdup(into, v) : NULL;
}

/* Fills one notification from its outbox row. */
static void
read_notification(Notification *n, HeapTuple row, TupleDesc desc, MemoryContext into)
{
	bool		isnull;
	char	   *auth;

	memset(n, 0, sizeof(*n));
	n->id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
	n->contact_point = column_text(row, desc, 2, into);
	n->is_function = strcmp(SPI_getvalue(row, desc, 3), "function") == 0;
	n->dest.url = column_text(row, desc, 4, into);
	auth = column_text(row, desc, 5, into);
	n->handler = DatumGetObjectId(SPI_getbinval(row, desc, 6, &isnull));
	n->dest.timeout_ms = DatumGetInt32(SPI_getbinval(row, desc, 7, &isnull));
	n->body = column_text(row, desc, 8, into);
	n->attempts = DatumGetInt32(SPI_getbinval(row, desc, 9, &isnull));
	n->dest.name = n->contact_point;
	n->req.dest = &n->dest;
	n->req.body = n->body;
	n->req.body_len = strlen(n->body);
	n->req.auth = auth;
}

/* Reads the notifications due (transaction work). */
static void
read_due(void *arg)
{
	Round	   *round = arg;
	Oid			types[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2] = {TimestampTzGetDatum(round->at), Int32GetDatum(NOTIFICATIONS_PER_ROUND)};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT id, contact_point, kind, url, authorization_header, handler,"
							  " timeout_ms, body, attempts FROM runra_obs._alert_outbox($1, $2)",
							  2, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs._alert_outbox() failed");
	round->n = (int) SPI_processed;
	round->items = MemoryContextAllocZero(round->cxt, sizeof(Notification) * Max(round->n, 1));
	for (int i = 0; i < round->n; i++)
		read_notification(&round->items[i], SPI_tuptable->vals[i], SPI_tuptable->tupdesc, round->cxt);
	SPI_finish();
}

/* Records one outcome, in an SPI connection. */
static void
record_outcome(Notification *n, TimestampTz at)
{
	Oid			types[6] = {INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, INT8OID};
	Datum		values[6] = {Int64GetDatum(n->id), TimestampTzGetDatum(at),
		CStringGetTextDatum(n->outcome),
		n->error ? CStringGetTextDatum(n->error) : (Datum) 0,
		n->answer ? CStringGetTextDatum(n->answer) : (Datum) 0,
	Int64GetDatum(n->retry_ms)};
	char		nulls[6] = {' ', ' ', ' ', n->error ? ' ' : 'n', n->answer ? ' ' : 'n', ' '};

	if (SPI_execute_with_args("SELECT runra_obs._alert_attempted($1, $2, $3, $4, $5, $6)",
							  6, types, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs._alert_attempted() failed");
}

/* Calls a function contact point's handler with the notification. */
static void
call_handler(void *arg)
{
	Notification *n = arg;
	char	   *what = psprintf("contact point \"%s\"", n->contact_point);

	(void) runra_call_as_owner(n->handler,
							   DirectFunctionCall1(jsonb_in, CStringGetDatum(n->body)), what);
}

/* Delivers to function contact points and records every outcome (transaction work). */
static void
settle_round(void *arg)
{
	Round	   *round = arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < round->n; i++)
	{
		Notification *n = &round->items[i];

		if (n->is_function)
		{
			char	   *error;

			if (runra_worker_run_subtransaction(call_handler, n, &error))
				n->outcome = "sent";
			else
			{
				n->outcome = "failed";
				n->error = psprintf("handler %s failed: %s", format_procedure(n->handler), error);
				n->retry_ms = retry_wait_ms(n->attempts + 1, NULL);
			}
		}
		/* not answered before the worker was told to stop: left pending */
		if (n->outcome != NULL)
			record_outcome(n, GetCurrentTimestamp());
	}
	SPI_finish();
}

/* What one finished HTTP request came to. */
static void
read_http_outcome(Notification *n, CURLcode code, long status)
{
	InFlight   *req = &n->req;
	SendOutcome outcome = code != CURLE_OK ? SEND_RETRY : retry_classify_http(status);

	if (req->response_len > 0)
		n->answer = pnstrdup(req->response, Min(req->response_len, ANSWER_KEPT));
	if (code != CURLE_OK)
		n->error = psprintf("%s: %s", curl_easy_strerror(code), req->error);
	else if (outcome != SEND_OK)
		n->error = psprintf("HTTP %ld from %s", status, n->contact_point);
	n->outcome = outcome == SEND_OK ? "sent" : outcome == SEND_PERMANENT ? "refused" : "failed";
	if (outcome == SEND_RETRY)
		n->retry_ms = retry_wait_ms(n->attempts + 1, req->retry_after);
	transport_detach(req);
}

/* Sends every HTTP notification of the round at once and waits for all. */
static void
send_http(Round *round)
{
	int			on_wire = 0;
	CURLcode	code;
	long		status;
	bool		latch_set;
	InFlight   *done;

	for (int i = 0; i < round->n; i++)
	{
		if (round->items[i].is_function)
			continue;
		transport_start(&round->items[i].req);
		on_wire++;
	}
	while (on_wire > 0 && !runra_got_sigterm)
	{
		transport_wait(1000, &latch_set);
		while ((done = transport_next_done(&code, &status)) != NULL)
		{
			for (int i = 0; i < round->n; i++)
				if (&round->items[i].req == done)
					read_http_outcome(&round->items[i], code, status);
			on_wire--;
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/* Delivers the notifications due now; returns how many were attempted. */
int
alert_deliver_due(void)
{
	Round		round;
	char	   *error;
	MemoryContext old = MemoryContextSwitchTo(round_cxt);

	MemoryContextReset(round_cxt);
	round.cxt = round_cxt;
	round.at = GetCurrentTimestamp();
	if (!runra_worker_run_transaction("runra_obs alert outbox", read_due, &round, &error, NULL))
	{
		runra_worker_report_error(error);
		round.n = 0;
	}
	if (round.n > 0)
	{
		send_http(&round);
		if (!runra_worker_run_transaction("runra_obs alert delivery", settle_round, &round, &error, NULL))
			runra_worker_report_error(error);
	}
	MemoryContextSwitchTo(old);
	return round.n;
}
