/*
 * axiom.c — the Axiom ingest API: request body and answer.
 *
 * POST {url}/v1/datasets/{dataset}/ingest takes a JSON array of objects;
 * the event time goes in _time, the rest keeps the seed's field names.  The
 * body is gzipped (Content-Encoding: gzip).  Axiom answers 200 with
 * {"ingested":n,"failed":m,"failures":[{"timestamp":...,"error":...}]}: an
 * event it names as failed was not taken, whatever the status said.
 */
#include "postgres.h"

#include <cjson/cJSON.h>
#include <zlib.h>

#include "forward/forward.h"
#include "store/event_fields.h"

/* Appends the batch as Axiom's JSON array. */
void
axiom_encode(StringInfo out, ForwardEvent *events, int n)
{
	appendStringInfoChar(out, '[');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(out, ',');
		json_append_event(out, &events[i], "_time");
	}
	appendStringInfoChar(out, ']');
}

/*
 * Gzips a body into a buffer palloc'd in the current memory context (the
 * batch's: libcurl reads it after we return).  False when zlib fails.
 */
bool
axiom_gzip(const char *in, size_t len, char **out, size_t *out_len)
{
	z_stream	zs;
	uLong		bound;
	int			rc;

	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8,
					 Z_DEFAULT_STRATEGY) != Z_OK)
		return false;
	bound = deflateBound(&zs, len) + 32;
	*out = palloc_extended(bound, MCXT_ALLOC_NO_OOM);
	if (*out == NULL)
	{
		deflateEnd(&zs);
		return false;
	}
	zs.next_in = (Bytef *) in;
	zs.avail_in = len;
	zs.next_out = (Bytef *) *out;
	zs.avail_out = bound;
	rc = deflate(&zs, Z_FINISH);
	*out_len = zs.total_out;
	deflateEnd(&zs);
	if (rc != Z_STREAM_END)
	{
		pfree(*out);
		*out = NULL;
		return false;
	}
	return true;
}

/*
 * Which events of the request did Axiom name as failed?  Failures carry the
 * event's timestamp; every event with that time counts as failed.  When the
 * names do not account for `failed` events, all of them count as failed.
 * (*refused)[i] says whether event i was refused.
 */
static void
match_failures(cJSON *failures, int failed, InFlight *req,
			   bool **refused, int *n_refused)
{
	bool	   *hit = palloc0(sizeof(bool) * Max(req->n_events, 1));
	int			matched = 0;
	cJSON	   *f;

	cJSON_ArrayForEach(f, failures)
	{
		cJSON	   *ts = cJSON_GetObjectItemCaseSensitive(f, "timestamp");
		TimestampTz t;
		const char *problem;

		if (!cJSON_IsString(ts) || !parse_iso8601_timestamp(ts->valuestring, &t, &problem))
			continue;
		for (int i = 0; i < req->n_events; i++)
			if (!hit[i] && req->events[i].created_at == t)
			{
				hit[i] = true;
				matched++;
			}
	}
	*n_refused = 0;
	for (int i = 0; i < req->n_events; i++)
	{
		hit[i] = hit[i] || matched < failed;
		*n_refused += hit[i];
	}
	*refused = hit;
}

/*
 * Reads Axiom's 2xx answer.  SEND_OK with *n_refused events it refused
 * (marked in *refused, to dead-letter, with *error saying why), or
 * SEND_RETRY when the answer is not what Axiom sends.
 */
SendOutcome
axiom_read_answer(const char *body, InFlight *req, bool **refused,
				  int *n_refused, char **error)
{
	cJSON	   *root = cJSON_Parse(body ? body : "");
	cJSON	   *failed = root ? cJSON_GetObjectItemCaseSensitive(root, "failed") : NULL;
	cJSON	   *failures;
	cJSON	   *first;

	*n_refused = 0;
	*refused = NULL;
	*error = NULL;
	if (!cJSON_IsNumber(failed))
	{
		cJSON_Delete(root);
		*error = psprintf("axiom answered 2xx without a \"failed\" count: %.200s", body ? body : "");
		return SEND_RETRY;
	}
	if (failed->valuedouble > 0)
	{
		failures = cJSON_GetObjectItemCaseSensitive(root, "failures");
		first = cJSON_IsArray(failures) ? cJSON_GetArrayItem(failures, 0) : NULL;
		match_failures(failures, (int) failed->valuedouble, req, refused, n_refused);
		*error = psprintf("axiom refused %d of %d events: %.200s",
						  (int) failed->valuedouble, req->n_events,
						  first && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(first, "error"))
						  ? cJSON_GetObjectItemCaseSensitive(first, "error")->valuestring
						  : "no reason given");
	}
	cJSON_Delete(root);
	return SEND_OK;
}
