/*
 * http_xact.c — how an HTTP worker runs its transactions.
 *
 * A background worker has no postgres.c main loop around it, so what that
 * loop does per statement is done here: the statement start time, a
 * snapshot, the statement_timeout timer (lock_timeout works by itself once
 * set), and, on error, the error copied out, the transaction aborted
 * cleanly and the worker left ready for the next one; and the prepared
 * statements its transactions run.  Nothing here ever runs inside a
 * libmicrohttpd callback.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "guc.h"
#include "ingest/http.h"
#include "worker/worker_common.h"

/* where the caller was before the transaction; restored after it */
static MemoryContext caller_context = NULL;

/* lock_timeout for this worker's sessions, from runra_obs.http_lock_timeout. */
void
http_xact_apply_settings(void)
{
	char		value[32];

	snprintf(value, sizeof(value), "%d", runra_http_lock_timeout_ms);
	SetConfigOption("lock_timeout", value, PGC_SUSET, PGC_S_SESSION);
}

/* Starts a transaction with a snapshot and the statement timeout armed. */
void
http_xact_begin(void)
{
	caller_context = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (runra_http_statement_timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, runra_http_statement_timeout_ms);
}

/* Commits; when this returns, the transaction is durable as configured. */
void
http_xact_commit(void)
{
	disable_timeout(STATEMENT_TIMEOUT, false);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller_context);
}

/*
 * Call from PG_CATCH: copies the error into the caller's memory context,
 * aborts the transaction and returns the error for the caller to answer.
 */
ErrorData *
http_xact_abort(void)
{
	ErrorData  *error;

	MemoryContextSwitchTo(caller_context);
	error = CopyErrorData();
	FlushErrorState();
	disable_timeout(STATEMENT_TIMEOUT, false);
	AbortCurrentTransaction();
	/* a timeout that fired after the error must not cancel the next one */
	QueryCancelPending = false;
	MemoryContextSwitchTo(caller_context);
	return error;
}

/*
 * Runs work() in a transaction of its own; an error is logged and shown
 * in worker_status, and the worker goes on.  True when it committed.
 */
bool
http_xact_run(void (*work) (void), const char *what)
{
	volatile bool ok = false;

	PG_TRY();
	{
		http_xact_begin();
		work();
		http_xact_commit();
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *error = http_xact_abort();

		ereport(LOG,
				(errmsg("runra_obs http could not %s: %s", what, error->message)));
		runra_worker_report_error(error->message);
		FreeErrorData(error);
	}
	PG_END_TRY();
	return ok;
}

/* Prepares a statement on first use and keeps it for the worker's life. */
SPIPlanPtr
http_kept_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}

/* A SHA-256 hash as a bytea Datum, for statement arguments. */
Datum
http_hash_datum(const uint8 *hash)
{
	bytea	   *value = palloc(VARHDRSZ + HTTP_TOKEN_HASH_LEN);

	SET_VARSIZE(value, VARHDRSZ + HTTP_TOKEN_HASH_LEN);
	memcpy(VARDATA(value), hash, HTTP_TOKEN_HASH_LEN);
	return PointerGetDatum(value);
}
