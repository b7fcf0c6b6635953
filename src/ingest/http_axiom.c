/*
 * http_axiom.c — the Axiom-compatible ingest routes, so that Axiom's
 * clients (and our own Axiom forwarder) can send to runra_obs unchanged:
 *
 *   POST /v1/datasets/{dataset}/ingest     Axiom's classic path
 *   POST /v1/ingest/{dataset}              its edge path
 *
 * A body is the events as JSON (one object or an array) or NDJSON, each
 * the seed's envelope; the event time may be named "_time", as Axiom names
 * it (both may be given, for the same instant).  The dataset must be a
 * valid Axiom dataset name, and is otherwise ignored: there is one event
 * table.  Validation is the store's, as for /v1/events; refused events are
 * kept in rejected_events with source 'axiom'.  The answer has Axiom's
 * shape:
 *
 *   {"ingested":n,"failed":m,"failures":[{"timestamp":t,"error":e}],
 *    "processedBytes":b,"blocksCreated":0,"walLength":0}
 *
 * where t is the failed event's time as sent, or the time it was received
 * when it had none that could be read, and b the body's size once decoded.
 * Errors are {"message":"..."}, which Axiom's clients show.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "ingest/http.h"
#include "store/event_batch.h"
#include "store/event_fields.h"

/* Is name a valid Axiom dataset name: 1 to 128 of [A-Za-z0-9._-]? */
bool
http_axiom_dataset_is_valid(const char *name, size_t len)
{
	if (len == 0 || len > HTTP_DATASET_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Axiom's error body: {"message":"..."}. */
void
http_axiom_error(StringInfo out, const char *message)
{
	appendStringInfoString(out, "{\"message\":");
	escape_json(out, message);
	appendStringInfoString(out, "}\n");
}

/* A string member of a jsonb object, or NULL. */
static char *
string_member(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = jsonb_member(obj, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * Appends Axiom's failures array made from the store's: errors only
 * (warnings are for events that were stored), each named by its time.
 */
static void
append_failures(StringInfo out, const char *store_failures)
{
	Jsonb	   *failures = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															  CStringGetDatum(store_failures)));
	int			n = JB_ROOT_COUNT(failures);
	StringInfoData received;
	bool		first = true;

	initStringInfo(&received);
	append_iso8601_timestamp(&received, GetCurrentTimestamp());
	appendStringInfoChar(out, '[');
	for (int i = 0; i < n; i++)
	{
		JsonbValue *entry = getIthJsonbValueFromContainer(&failures->root, i);
		char	   *error = string_member(entry->val.binary.data, "error");
		char	   *time = string_member(entry->val.binary.data, "timestamp");

		if (error == NULL)
			continue;
		appendStringInfoString(out, first ? "{\"timestamp\":" : ",{\"timestamp\":");
		escape_json(out, time ? time : received.data);
		appendStringInfoString(out, ",\"error\":");
		escape_json(out, error);
		appendStringInfoChar(out, '}');
		first = false;
	}
	appendStringInfoChar(out, ']');
}

/*
 * Queues an Axiom ingest body in the group's batch and makes its answer:
 * Axiom's 200 shape, or 400 when the body is not JSON at all.
 */
void
http_axiom_add(EventBatch *batch, HttpRequest *req, char *body, int len,
			   MemoryContext answer_context, HttpBodyAnswer *answer)
{
	EventBodyDialect dialect = {.source = "axiom", .time_alias = true, .failure_times = true};
	EventBodyResult result;
	MemoryContext xact = CurrentMemoryContext;

	event_body_result_init(&result);
	event_batch_set_dialect(batch, &dialect);
	event_batch_add(batch, body, len, req->ndjson ? EVENT_BODY_NDJSON : EVENT_BODY_JSON, &result);
	MemoryContextSwitchTo(answer_context);
	resetStringInfo(&answer->body);
	if (result.body_error)
	{
		answer->status = 400;
		http_axiom_error(&answer->body,
						 psprintf("The body could not be parsed, so nothing of it was stored: %s",
								  result.body_error_message));
	}
	else
	{
		answer->status = 200;
		appendStringInfo(&answer->body, "{\"ingested\":" INT64_FORMAT ",\"failed\":" INT64_FORMAT
						 ",\"failures\":", result.ingested, result.failed);
		append_failures(&answer->body, result.failures.data);
		appendStringInfo(&answer->body, ",\"processedBytes\":%d,\"blocksCreated\":0,\"walLength\":0}\n",
						 len);
		answer->ingested = result.ingested;
		answer->rejected = result.failed;
	}
	MemoryContextSwitchTo(xact);
}
