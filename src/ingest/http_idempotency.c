/*
 * http_idempotency.c — the Idempotency-Key header.
 *
 * Clients retry after timeouts; a retried batch must be stored once.  Before
 * a keyed request's events are queued, the key is claimed in
 * runra_obs.idempotency_keys (INSERT ... ON CONFLICT in the write
 * transaction); after they are queued, the answer is stored in the same row.
 * The row commits or vanishes together with the events.  A second request
 * with the key finds the row (if another worker holds it uncommitted, the
 * unique index makes it wait for that commit) and gets the first answer,
 * unless its body differs, which is refused.  Keys are scoped by token name
 * and forgotten after runra_obs.idempotency_window.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "guc.h"
#include "ingest/http.h"

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr remember_plan = NULL;

/* SHA-256 of the media type and the decoded body: what makes two requests "the same". */
void
http_request_hash(HttpRequest *req, const char *body, size_t len, uint8 *hash)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	const char *type = req->ndjson ? "application/x-ndjson\n" : "application/json\n";

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) type, strlen(type)) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) body, len) < 0 ||
		pg_cryptohash_final(ctx, hash, HTTP_TOKEN_HASH_LEN) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not hash a request body: %s", pg_cryptohash_error(ctx))));
	pg_cryptohash_free(ctx);
}

/* Runs a prepared statement with (client, key, ...) arguments. */
static int
run(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes, Datum *args, bool read_only)
{
	int			rc = SPI_execute_plan(http_kept_plan(plan, sql, nargs, argtypes), args, NULL,
									  read_only, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s", sql, SPI_result_code_string(rc));
	return rc;
}

/*
 * Claims req's key (inside the write transaction).  NEW: go on and call
 * http_idempotency_remember; REPLAY: *status and *response hold the first
 * answer; MISMATCH: the key was used for another body.
 */
IdempotencyOutcome
http_idempotency_claim(HttpRequest *req, const uint8 *hash, int *status, char **response)
{
	Oid			types[4] = {TEXTOID, TEXTOID, BYTEAOID, INT4OID};
	Datum		args[4];
	IdempotencyOutcome outcome = IDEMPOTENCY_NEW;
	MemoryContext caller = CurrentMemoryContext;

	args[0] = CStringGetTextDatum(req->client);
	args[1] = CStringGetTextDatum(req->idempotency_key);
	args[2] = http_hash_datum(hash);
	args[3] = Int32GetDatum(runra_idempotency_window_s);
	SPI_connect();
	run(&claim_plan,
		"INSERT INTO runra_obs.idempotency_keys AS k (client, key, request_hash, status, response) "
		"VALUES ($1, $2, $3, 0, '') "
		"ON CONFLICT (client, key) DO UPDATE "
		"SET request_hash = excluded.request_hash, status = 0, response = '', created_at = now() "
		"WHERE k.created_at < now() - make_interval(secs => $4) "
		"RETURNING 1", 4, types, args, false);
	if (SPI_processed == 0)
	{
		run(&lookup_plan,
			"SELECT request_hash = $3, status, response FROM runra_obs.idempotency_keys "
			"WHERE client = $1 AND key = $2", 3, types, args, false);
		if (SPI_processed != 1)
			elog(ERROR, "Idempotency-Key row vanished while it was being read");
		/* the answer must outlive SPI_finish */
		MemoryContextSwitchTo(caller);
		outcome = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0
			? IDEMPOTENCY_REPLAY : IDEMPOTENCY_MISMATCH;
		*status = pg_strtoint32(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
		*response = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	}
	SPI_finish();
	return outcome;
}

/* Stores the answer of a claimed key (same transaction as its events). */
void
http_idempotency_remember(HttpRequest *req, int status, const char *response)
{
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum		args[4];

	args[0] = CStringGetTextDatum(req->client);
	args[1] = CStringGetTextDatum(req->idempotency_key);
	args[2] = Int32GetDatum(status);
	args[3] = CStringGetTextDatum(response);
	SPI_connect();
	run(&remember_plan,
		"UPDATE runra_obs.idempotency_keys SET status = $3, response = $4 "
		"WHERE client = $1 AND key = $2", 4, types, args, false);
	SPI_finish();
}
