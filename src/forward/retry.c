/*
 * retry.c — when to try a destination again.
 *
 * Which answers are worth retrying depends on the provider: OTLP/HTTP says
 * only 429, 502, 503 and 504 (and connection failures); for Axiom and the
 * alert contact points 408, 429 and every 5xx are temporary.  Any other 4xx is permanent: the events go
 * to the dead letters at once.
 *
 * The wait after the n-th consecutive failure is exponential (0.5 s
 * doubling up to 60 s) with "equal jitter": half of it fixed, half random,
 * so destinations that failed together do not retry together.  A
 * Retry-After header (seconds or an HTTP date) replaces that wait, up to an
 * hour.
 */
#include "postgres.h"

#include <curl/curl.h>
#include <time.h>

#include "common/pg_prng.h"
#include "utils/timestamp.h"

#include "forward/forward.h"

#define BACKOFF_BASE_MS 500
#define BACKOFF_MAX_MS 60000
#define RETRY_AFTER_MAX_MS (3600 * 1000)

/* HTTP's own reading of a status: 408, 429 and every 5xx are temporary. */
SendOutcome
retry_classify_http(long status)
{
	if (status >= 200 && status < 300)
		return SEND_OK;
	if (status == 408 || status == 429 || status >= 500)
		return SEND_RETRY;
	return SEND_PERMANENT;
}

/* Is this HTTP status worth retrying for this provider? */
SendOutcome
retry_classify_status(ForwardProvider provider, long status)
{
	if (provider == PROVIDER_AXIOM)
		return retry_classify_http(status);
	if (status >= 200 && status < 300)
		return SEND_OK;
	if (status == 429 || status == 502 || status == 503 || status == 504)
		return SEND_RETRY;
	return SEND_PERMANENT;
}

/*
 * Milliseconds a Retry-After value asks us to wait (delay-seconds or an
 * HTTP date), or -1 when there is none or it cannot be read.
 */
static int64
retry_after_ms(const char *value)
{
	char	   *end;
	long		seconds;
	time_t		when;

	if (value == NULL || value[0] == '\0')
		return -1;
	errno = 0;
	seconds = strtol(value, &end, 10);
	if (end != value && *end == '\0' && errno == 0 && seconds >= 0)
		return Min((int64) seconds * 1000, RETRY_AFTER_MAX_MS);
	when = curl_getdate(value, NULL);
	if (when == -1)
		return -1;
	return Max(0, Min(((int64) when - (int64) time(NULL)) * 1000, RETRY_AFTER_MAX_MS));
}

/* Exponential backoff with equal jitter for the n-th consecutive failure. */
static int64
backoff_ms(int failures)
{
	int64		wait = BACKOFF_BASE_MS;

	for (int i = 1; i < failures && wait < BACKOFF_MAX_MS; i++)
		wait *= 2;
	wait = Min(wait, BACKOFF_MAX_MS);
	return wait / 2 + (int64) (pg_prng_double(&pg_global_prng_state) * (wait / 2));
}

/*
 * How long to wait after the n-th consecutive failure: what Retry-After
 * asks for, but never less than the first backoff step (a "Retry-After: 0"
 * must not turn a worker into a busy loop), else the backoff.
 */
int64
retry_wait_ms(int failures, const char *retry_after)
{
	int64		wait = retry_after_ms(retry_after);

	return wait >= 0 ? Max(wait, BACKOFF_BASE_MS) : backoff_ms(failures);
}

/* Counts a failure and sets when the destination may be tried again. */
void
retry_schedule(Destination *dest, const char *retry_after)
{
	int64		wait;

	dest->failures++;
	wait = retry_wait_ms(dest->failures, retry_after);
	dest->next_attempt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait);
	elog(DEBUG1, "runra_obs forward: destination \"%s\" retries in " INT64_FORMAT " ms",
		 dest->name, wait);
}

/* A success: the next failure starts the backoff from the beginning. */
void
retry_reset(Destination *dest)
{
	dest->failures = 0;
	dest->next_attempt = 0;
}
