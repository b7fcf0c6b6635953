/*
 * deliver.c — sending the queued alert notifications.
 *
 * One transaction reads the notifications due (runra_obs._alert_outbox),
 * leaving out those already on the wire.  HTTP ones (Slack, webhooks,
 * Alertmanager) are put on the wire with the forwarders' libcurl
 * transport, outside any transaction, and the worker goes back to
 * evaluating rules while they are: a slow contact point delays nobody.
 * Each finished request's outcome is recorded in a short transaction
 * (runra_obs._alert_attempted): a 2xx is sent, a 4xx other than 408 and
 * 429 is refused for good (dead, with the answer kept), anything else is
 * tried again after the forwarders' backoff (or the Retry-After asked
 * for), until the contact point's maxRetryMs.  A function contact point's
 * handler runs in a subtransaction of the transaction that records its
 * outcome, within the contact point's timeoutMs, so what it writes commits
 * with the notification marked sent, once, and a slow one fails alone.
 */
#include "postgres.h"

#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "alert/alert.h"
#include "forward/forward.h"
#include "worker/run_as_owner.h"
#include "worker/secret_mask.h"
#include "worker/worker_common.h"
#include "worker/worker_metrics.h"
#include "worker/worker_xact.h"

#define NOTIFICATIONS_PER_ROUND 100
#define MAX_ON_WIRE 200
#define ANSWER_KEPT 4096

/* One queued notification and how its attempt went; it owns its memory. */
typedef struct Notification
{
	MemoryContext cxt;
	int64		id;
	char	   *contact_point;
	bool		is_function;
	Oid			handler;
	Oid			changed_by;		/* who named the handler */
	int			timeout_ms;
	char	   *body;
	int			attempts;
	List	   *secrets;		/* masked out of its error and answer */
	Destination dest;			/* what the transport needs: url, timeout */
	InFlight	req;
	/* the outcome */
	const char *outcome;		/* sent, refused, failed; NULL: none yet */
	char	   *error;
	char	   *answer;
	int64		retry_ms;
} Notification;

/* The notifications read in one round, and those on the wire. */
typedef struct Batch
{
	int			n;
	Notification *items[NOTIFICATIONS_PER_ROUND + MAX_ON_WIRE];
} Batch;

static Batch on_wire;

/* Sets up libcurl. */
void
alert_deliver_init(void)
{
	transport_init();
}

/* Requests on the wire now. */
int
alert_deliver_on_wire(void)
{
	return on_wire.n;
}

/* A text column of the outbox row, copied into the notification's memory. */
static char *
column_text(HeapTuple row, TupleDesc desc, int col, MemoryContext into)
{
	char	   *v = SPI_getvalue(row, desc, col);

	return v ? MemoryContextStrdup(into, v) : NULL;
}

/*
 * What a contact point's errors and answers must not show: its
 * Authorization value, and Slack's URL, which is itself the credential.
 */
static List *
contact_point_secrets(const char *kind, const char *url, const char *auth, MemoryContext into)
{
	MemoryContext old = MemoryContextSwitchTo(into);
	List	   *secrets = secret_mask_add(NIL, auth);

	if (strcmp(kind, "slack") == 0)
		secrets = secret_mask_add_url(secrets, url);
	MemoryContextSwitchTo(old);
	return secrets;
}

/* A notification from its outbox row, in a memory context of its own. */
static Notification *
read_notification(HeapTuple row, TupleDesc desc)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs alert notification",
											  ALLOCSET_SMALL_SIZES);
	Notification *n = MemoryContextAllocZero(cxt, sizeof(Notification));
	bool		isnull;

	n->cxt = cxt;
	n->id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
	n->contact_point = column_text(row, desc, 2, cxt);
	n->is_function = strcmp(SPI_getvalue(row, desc, 3), "function") == 0;
	n->dest.url = column_text(row, desc, 4, cxt);
	n->req.auth = column_text(row, desc, 5, cxt);
	n->secrets = contact_point_secrets(SPI_getvalue(row, desc, 3), n->dest.url, n->req.auth, cxt);
	n->handler = DatumGetObjectId(SPI_getbinval(row, desc, 6, &isnull));
	n->dest.timeout_ms = DatumGetInt32(SPI_getbinval(row, desc, 7, &isnull));
	n->body = column_text(row, desc, 8, cxt);
	n->attempts = DatumGetInt32(SPI_getbinval(row, desc, 9, &isnull));
	n->changed_by = DatumGetObjectId(SPI_getbinval(row, desc, 10, &isnull));
	n->timeout_ms = n->dest.timeout_ms;
	n->dest.name = n->contact_point;
	n->req.dest = &n->dest;
	n->req.body = n->body;
	n->req.body_len = strlen(n->body);
	n->req.response_cap = ANSWER_KEPT;	/* 200 on the wire: keep what is kept */
	return n;
}

/* The ids on the wire, as a bigint[] for _alert_outbox(). */
static Datum
ids_on_wire(void)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(on_wire.n, 1));

	for (int i = 0; i < on_wire.n; i++)
		ids[i] = Int64GetDatum(on_wire.items[i]->id);
	return PointerGetDatum(construct_array(ids, on_wire.n, INT8OID, 8, true, TYPALIGN_DOUBLE));
}

/* Reads the notifications due and not on the wire (transaction work). */
static void
read_due(void *arg)
{
	Batch	   *due = arg;
	Oid			types[3] = {TIMESTAMPTZOID, INT4OID, INT8ARRAYOID};
	Datum		values[3];

	values[0] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[1] = Int32GetDatum(Min(NOTIFICATIONS_PER_ROUND, MAX_ON_WIRE - on_wire.n));
	values[2] = ids_on_wire();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT id, contact_point, kind, url, authorization_header, handler,"
							  " timeout_ms, body, attempts, changed_by FROM runra_obs._alert_outbox($1, $2, $3)",
							  3, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs._alert_outbox() failed");
	due->n = (int) SPI_processed;
	for (int i = 0; i < due->n; i++)
		due->items[i] = read_notification(SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	SPI_finish();
}

/*
 * Records one outcome, in an SPI connection; the error and the answer,
 * which runra_obs_reader sees in alert_notifications, with the contact
 * point's credentials masked (an answer may echo what it refused).
 */
static void
record_outcome(Notification *n)
{
	char	   *error = secret_mask(n->error, n->secrets);
	char	   *answer = secret_mask(n->answer, n->secrets);
	Oid			types[6] = {INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, INT8OID};
	Datum		values[6] = {Int64GetDatum(n->id), TimestampTzGetDatum(GetCurrentTimestamp()),
		CStringGetTextDatum(n->outcome),
		error ? CStringGetTextDatum(error) : (Datum) 0,
		answer ? CStringGetTextDatum(answer) : (Datum) 0,
	Int64GetDatum(n->retry_ms)};
	char		nulls[6] = {' ', ' ', ' ', error ? ' ' : 'n', answer ? ' ' : 'n', ' '};

	if (SPI_execute_with_args("SELECT runra_obs._alert_attempted($1, $2, $3, $4, $5, $6)",
							  6, types, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "runra_obs._alert_attempted() failed");
}

/*
 * Checks, when it is called, that a handler still takes one jsonb (it is
 * called with one) and that the role that named it still acts with its
 * owner's privileges (the trigger checked both when the row was written).
 */
static void
check_handler(Notification *n)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(n->handler));
	Form_pg_proc proc;
	bool		ok;
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the handler of contact point \"%s\" no longer exists", n->contact_point)));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	ok = proc->prokind == PROKIND_FUNCTION && proc->pronargs == 1 && proc->proargtypes.values[0] == JSONBOID;
	owner = proc->proowner;
	ReleaseSysCache(tuple);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("the handler of contact point \"%s\" no longer takes one jsonb argument",
						n->contact_point)));
	if (!has_privs_of_role(n->changed_by, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the role that named the handler of contact point \"%s\" no longer has its owner's privileges",
						n->contact_point)));
}

/* Calls a function contact point's handler with the notification. */
static void
call_handler_now(void *arg)
{
	Notification *n = arg;
	char	   *what = psprintf("contact point \"%s\"", n->contact_point);

	check_handler(n);
	(void) runra_call_as_owner(n->handler,
							   DirectFunctionCall1(jsonb_in, CStringGetDatum(n->body)), what);
}

/* The handler call within the contact point's timeoutMs (subtransaction work). */
static void
call_handler(void *arg)
{
	Notification *n = arg;

	runra_worker_call_with_timeout(n->timeout_ms, call_handler_now, n);
}

/*
 * Records the outcomes of a batch (transaction work); function contact
 * points are called here first.
 */
static void
settle(void *arg)
{
	Batch	   *batch = arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < batch->n; i++)
	{
		Notification *n = batch->items[i];
		char	   *error;

		if (n->is_function)
		{
			if (runra_worker_run_subtransaction(call_handler, n, &error))
				n->outcome = "sent";
			else
			{
				n->outcome = "failed";
				n->error = psprintf("handler %s failed: %s", format_procedure(n->handler), error);
				n->retry_ms = retry_wait_ms(n->attempts + 1, NULL);
			}
		}
		record_outcome(n);
	}
	SPI_finish();
}

/*
 * Records a batch's outcomes, then frees its notifications; the attempts
 * are counted for /metrics once their outcomes are committed.
 */
static void
settle_and_free(Batch *batch)
{
	char	   *error;

	if (batch->n > 0 &&
		!runra_worker_run_transaction("runra_obs alert delivery", settle, batch, &error, NULL))
		runra_worker_report_error(error);
	else
		for (int i = 0; i < batch->n; i++)
			worker_metrics_count_notification(batch->items[i]->outcome);
	for (int i = 0; i < batch->n; i++)
		MemoryContextDelete(batch->items[i]->cxt);
	batch->n = 0;
}

/* What one finished HTTP request came to. */
static void
read_http_outcome(Notification *n, CURLcode code, long status)
{
	InFlight   *req = &n->req;
	SendOutcome outcome = code != CURLE_OK ? SEND_RETRY : retry_classify_http(status);
	MemoryContext old = MemoryContextSwitchTo(n->cxt);

	if (req->response_len > 0)
		n->answer = pnstrdup(req->response, Min(req->response_len, ANSWER_KEPT));
	if (code != CURLE_OK)
		n->error = psprintf("%s: %s", curl_easy_strerror(code), req->error);
	else if (outcome != SEND_OK)
		n->error = psprintf("HTTP %ld from %s", status, n->contact_point);
	n->outcome = outcome == SEND_OK ? "sent" : outcome == SEND_PERMANENT ? "refused" : "failed";
	if (outcome == SEND_RETRY)
		n->retry_ms = retry_wait_ms(n->attempts + 1, req->retry_after);
	MemoryContextSwitchTo(old);
	transport_detach(req);
}

/*
 * Reads what is due and starts it: function contact points are settled at
 * once, HTTP ones put on the wire.  Returns how many were read.
 */
int
alert_deliver_start(void)
{
	Batch		due = {0};
	Batch		functions = {0};
	char	   *error;

	if (on_wire.n >= MAX_ON_WIRE)
		return 0;
	if (!runra_worker_run_transaction("runra_obs alert outbox", read_due, &due, &error, NULL))
	{
		runra_worker_report_error(error);
		return 0;
	}
	for (int i = 0; i < due.n; i++)
	{
		Notification *n = due.items[i];

		if (n->is_function)
			functions.items[functions.n++] = n;
		else
		{
			transport_start(&n->req);
			on_wire.items[on_wire.n++] = n;
		}
	}
	settle_and_free(&functions);
	return due.n;
}

/*
 * Waits up to timeout_ms for the requests on the wire (the latch wakes it
 * too), and records the outcomes of those that finished.
 */
void
alert_deliver_wait(long timeout_ms)
{
	Batch		done = {0};
	CURLcode	code;
	long		status;
	bool		latch_set;
	InFlight   *req;

	transport_wait(timeout_ms, &latch_set);
	while ((req = transport_next_done(&code, &status)) != NULL)
	{
		for (int i = 0; i < on_wire.n; i++)
		{
			Notification *n = on_wire.items[i];

			if (&n->req != req)
				continue;
			read_http_outcome(n, code, status);
			done.items[done.n++] = n;
			on_wire.items[i] = on_wire.items[--on_wire.n];
			break;
		}
	}
	settle_and_free(&done);
}
