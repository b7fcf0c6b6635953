/*
 * http_ratelimit.c — per-token rate limits of the ingest routes: events
 * per second and bytes per second, each a token bucket.
 *
 * Every bearer token (all unauthenticated clients share one) has two
 * buckets in shared memory (a table http_shmem.c makes), so the limit
 * holds over all workers.  A bucket
 * holds runra_obs.http_token_rate_burst seconds' worth and refills at the
 * rate; it is charged after the fact (body bytes once the body is in,
 * events once they are committed), since a request's event count is known
 * only once it is parsed.  A request is refused, before its body is read,
 * while either bucket is below one: 429 with Retry-After, the seconds
 * until it is back to one.  So one large request may take a bucket into
 * debt, and the next ones wait until it is paid.  A rate of 0 means no
 * limit.  The check runs in libmicrohttpd's callback: nothing here may
 * throw (the table has a fixed size; a token that finds it full is not
 * limited rather than refused).
 */
#include "postgres.h"

#include <math.h>

#include "storage/lwlock.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "ingest/http.h"

#define RATE_MAX_TOKENS 4096

typedef struct RateBucket
{
	uint8		hash[HTTP_TOKEN_HASH_LEN];	/* hash key: must be first */
	double		level[RATE_LIMIT_COUNT];	/* events, bytes left (may be negative) */
	TimestampTz refilled;
} RateBucket;

/* A fixed size: tokens are few */
static long
rate_table_size(void)
{
	return RATE_MAX_TOKENS;
}

/* The buckets (made by http_shmem.c) */
HttpSharedHash http_rate_hash = {
	"runra_obs http rate limits", rate_table_size, HTTP_TOKEN_HASH_LEN, sizeof(RateBucket), NULL, NULL
};

/* The rate of one limit now (per second; 0: none). */
static double
rate_of(HttpRateLimit limit)
{
	return limit == RATE_EVENTS ? runra_http_token_events_per_second
		: runra_http_token_bytes_per_second;
}

/* Are any limits set at all? */
static bool
limits_set(void)
{
	return runra_http_token_events_per_second > 0 || runra_http_token_bytes_per_second > 0;
}

/* The bucket of a client (hash, or all zeros when unauthenticated), refilled to now. */
static RateBucket *
bucket_of(const HttpRequest *req, TimestampTz now)
{
	static const uint8 anonymous[HTTP_TOKEN_HASH_LEN] = {0};
	RateBucket *b;
	bool		found;
	double		seconds;

	b = hash_search(http_rate_hash.table, req->has_token ? req->token_hash : anonymous, HASH_ENTER_NULL, &found);
	if (b == NULL)
		return NULL;
	seconds = found ? (double) (now - b->refilled) / USECS_PER_SEC : 0;
	for (int l = 0; l < RATE_LIMIT_COUNT; l++)
	{
		double		capacity = rate_of(l) * runra_http_token_rate_burst_s;

		b->level[l] = found ? Min(capacity, b->level[l] + rate_of(l) * Max(seconds, 0)) : capacity;
	}
	b->refilled = now;
	return b;
}

/*
 * May this client send a request now?  0 when yes; else the seconds until
 * it may (for Retry-After), and in *which the limit it is over.
 */
int
http_rate_check(const HttpRequest *req, HttpRateLimit *which)
{
	RateBucket *b;
	int			wait = 0;

	if (!limits_set())
		return 0;
	LWLockAcquire(http_rate_hash.lock, LW_EXCLUSIVE);
	b = bucket_of(req, GetCurrentTimestamp());
	for (int l = 0; b != NULL && l < RATE_LIMIT_COUNT && wait == 0; l++)
		if (rate_of(l) > 0 && b->level[l] < 1)
		{
			wait = (int) Min(ceil((1 - b->level[l]) / rate_of(l)), 86400);
			*which = l;
		}
	LWLockRelease(http_rate_hash.lock);
	return Max(wait, wait > 0 ? 1 : 0);
}

/* Charges what a request used: its events (once committed) or its bytes. */
void
http_rate_charge(const HttpRequest *req, HttpRateLimit limit, double amount)
{
	RateBucket *b;

	if (rate_of(limit) <= 0 || amount <= 0)
		return;
	LWLockAcquire(http_rate_hash.lock, LW_EXCLUSIVE);
	b = bucket_of(req, GetCurrentTimestamp());
	if (b != NULL)
		b->level[limit] -= amount;
	LWLockRelease(http_rate_hash.lock);
}
