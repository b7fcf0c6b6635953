/*
 * http_auth.c — bearer tokens of the HTTP ingest API.
 *
 * runra_obs.ingest_tokens holds only the SHA-256 of each token.  Each worker
 * keeps a copy of the hashes (malloc'd, read from libmicrohttpd's callbacks)
 * so a request is judged from its headers before any of its body is read.
 * The copy is reloaded at start, on SIGHUP, and when a token is not in it
 * (it may have been made a moment ago).  Because the copy can be stale after
 * a revocation, every batch checks its tokens again in the very transaction
 * that writes the events: a revoked token never gets a 2xx.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "guc.h"
#include "ingest/http.h"

typedef struct CachedToken
{
	uint8		hash[HTTP_TOKEN_HASH_LEN];
	char		name[HTTP_TOKEN_NAME_LEN];
} CachedToken;

static CachedToken *tokens = NULL;
static int	n_tokens = 0;

/* owns hash contexts made outside any transaction */
static ResourceOwner hash_owner = NULL;

static SPIPlanPtr select_all_plan = NULL;
static SPIPlanPtr select_one_plan = NULL;

/* Orders cached tokens by hash, for qsort and bsearch. */
static int
compare_tokens(const void *a, const void *b)
{
	return memcmp(((const CachedToken *) a)->hash, ((const CachedToken *) b)->hash,
				  HTTP_TOKEN_HASH_LEN);
}

/*
 * SHA-256 of a token.  Called from libmicrohttpd's callback, so it catches
 * its own errors (the hash context is the only thing that allocates) and
 * says false instead of throwing.
 */
bool
http_token_hash(const char *token, size_t len, uint8 *hash)
{
	volatile bool ok = false;
	ResourceOwner saved = CurrentResourceOwner;
	pg_cryptohash_ctx *volatile ctx = NULL;

	if (CurrentResourceOwner == NULL)
		CurrentResourceOwner = hash_owner;
	PG_TRY();
	{
		ctx = pg_cryptohash_create(PG_SHA256);
		ok = ctx != NULL &&
			pg_cryptohash_init(ctx) == 0 &&
			pg_cryptohash_update(ctx, (const uint8 *) token, len) == 0 &&
			pg_cryptohash_final(ctx, hash, HTTP_TOKEN_HASH_LEN) == 0;
	}
	PG_CATCH();
	{
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	if (ctx != NULL)
		pg_cryptohash_free(ctx);
	CurrentResourceOwner = saved;
	return ok;
}

/* The name of the token with this hash, or NULL.  Never throws. */
const char *
http_token_lookup(const uint8 *hash)
{
	CachedToken key;
	CachedToken *found;

	if (n_tokens == 0)
		return NULL;
	memcpy(key.hash, hash, HTTP_TOKEN_HASH_LEN);
	found = bsearch(&key, tokens, n_tokens, sizeof(CachedToken), compare_tokens);
	return found ? found->name : NULL;
}

/* Replaces the cached hashes with the table's (inside a transaction). */
static void
load_tokens(void)
{
	CachedToken *fresh;
	int			n;

	SPI_connect();
	if (SPI_execute_plan(http_kept_plan(&select_all_plan,
								   "SELECT token_hash, name FROM runra_obs.ingest_tokens",
								   0, NULL), NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read runra_obs.ingest_tokens");
	n = (int) SPI_processed;
	fresh = malloc(sizeof(CachedToken) * Max(n, 1));
	if (fresh == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory loading ingest tokens")));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		bytea	   *hash = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		memset(&fresh[i], 0, sizeof(CachedToken));
		memcpy(fresh[i].hash, VARDATA_ANY(hash), Min(VARSIZE_ANY_EXHDR(hash), HTTP_TOKEN_HASH_LEN));
		strlcpy(fresh[i].name, name, HTTP_TOKEN_NAME_LEN);
	}
	SPI_finish();
	qsort(fresh, n, sizeof(CachedToken), compare_tokens);
	free(tokens);
	tokens = fresh;
	n_tokens = n;
}

/*
 * Reloads the cached hashes in a transaction of its own.  On failure the
 * old ones stay and the error goes to the log and worker_status.
 */
void
http_tokens_reload(void)
{
	if (hash_owner == NULL)
		hash_owner = ResourceOwnerCreate(NULL, "runra_obs http token hashing");
	if (!http_xact_run(load_tokens, "reload ingest tokens"))
		ereport(LOG, (errmsg("runra_obs http kept its previous ingest tokens")));
}

/* Does the table still hold this hash?  The name it has is copied to client. */
static bool
token_exists(const uint8 *hash, char *client)
{
	Oid			argtypes[1] = {BYTEAOID};
	Datum		args[1];
	bool		exists;

	args[0] = http_hash_datum(hash);
	SPI_connect();
	if (SPI_execute_plan(http_kept_plan(&select_one_plan,
								   "SELECT name FROM runra_obs.ingest_tokens WHERE token_hash = $1",
								   1, argtypes), args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read runra_obs.ingest_tokens");
	exists = SPI_processed > 0;
	if (exists)
		strlcpy(client, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
				HTTP_TOKEN_NAME_LEN);
	SPI_finish();
	return exists;
}

/*
 * Inside the write transaction: valid[i] says whether request i's token is
 * still in the table (each distinct token is looked up once).  A revoked
 * token also refreshes the cache, so its next request stops at the headers.
 */
void
http_tokens_verify(HttpRequest **reqs, int n, bool *valid)
{
	bool		stale = false;

	for (int i = 0; i < n; i++)
	{
		int			same = -1;

		valid[i] = true;
		if (!reqs[i]->has_token)
			continue;
		for (int j = 0; j < i && same < 0; j++)
			if (reqs[j]->has_token &&
				memcmp(reqs[j]->token_hash, reqs[i]->token_hash, HTTP_TOKEN_HASH_LEN) == 0)
				same = j;
		if (same >= 0)
		{
			valid[i] = valid[same];
			strlcpy(reqs[i]->client, reqs[same]->client, HTTP_TOKEN_NAME_LEN);
		}
		else
			valid[i] = token_exists(reqs[i]->token_hash, reqs[i]->client);
		stale |= !valid[i];
	}
	if (stale)
		load_tokens();
}

/*
 * May this request read GET /metrics?  Yes when runra_obs.http_metrics_token
 * is empty, else only with "Authorization: Bearer <that token>".  The two
 * are compared as SHA-256 hashes, in constant time (no timing tells how
 * much of a guess was right).  Runs in libmicrohttpd's callback.
 */
bool
http_metrics_authorized(struct MHD_Connection *conn)
{
	const char *auth;
	uint8		sent[HTTP_TOKEN_HASH_LEN];
	uint8		wanted[HTTP_TOKEN_HASH_LEN];
	uint8		differ = 0;

	if (runra_http_metrics_token == NULL || runra_http_metrics_token[0] == '\0')
		return true;
	auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	if (auth == NULL || pg_strncasecmp(auth, "Bearer ", 7) != 0 ||
		!http_token_hash(auth + 7, strlen(auth + 7), sent) ||
		!http_token_hash(runra_http_metrics_token, strlen(runra_http_metrics_token), wanted))
		return false;
	for (int i = 0; i < HTTP_TOKEN_HASH_LEN; i++)
		differ |= sent[i] ^ wanted[i];
	return differ == 0;
}
