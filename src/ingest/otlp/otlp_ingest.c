/*
 * otlp_ingest.c — POST /v1/traces and POST /v1/logs in the HTTP group
 * commit: decode, translate, validate, answer.
 *
 * Runs inside the group's transaction, like every route's body handler.
 * The translated events go through event_batch_add exactly as a
 * /v1/events body does, under the dialect "otlp": an event the validation
 * refuses is filed at its record's position in the request with the
 * record's OTLP JSON (the refile hook), not the envelope it was turned
 * into.  The answer counts both kinds of refusal in partialSuccess and
 * names them in errorMessage; warnings (a traceId that is not one, so the
 * event was stored without it) are named too, with nothing rejected.
 * Both kinds count toward the store's one cap per body (the translation
 * and the validation share the body's EventBodyResult): past 1000, records
 * are only counted, and the request is kept whole once, as its OTLP JSON.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/numeric.h"

#include "ingest/http.h"
#include "ingest/otlp/otlp.h"

/* The refile hook: an event's record and its position in the request. */
static void
refile_event(void *arg, int *position, const char **raw, int *raw_len)
{
	OtlpTranslation *t = arg;
	StringInfoData text;

	if (*position < 0 || *position >= t->n_events)
		return;
	initStringInfo(&text);
	(void) JsonbToCString(&text, t->event_record[*position], 256);
	*raw = text.data;
	*raw_len = text.len;
	*position = t->event_position[*position];
}

/* The whole_body hook: the request as OTLP JSON, not its translation. */
static void
whole_request(void *arg, char **body, int *len)
{
	OtlpTranslation *t = arg;
	StringInfoData text;

	initStringInfo(&text);
	(void) JsonbToCString(&text, &t->request->root, VARSIZE(t->request));
	*body = text.data;
	*len = text.len;
}

/* A string member of a jsonb object, or NULL. */
static char *
member_text(JsonbContainer *obj, const char *key)
{
	return otlp_string(otlp_member(obj, key));
}

/*
 * Names the events the validation refused (or stored with a warning) in
 * the answer's message, by their records' positions.  Past the cap the
 * last failure says how many more there were and is about no one event:
 * it is returned (else NULL) for the message's end.
 */
static char *
note_failures(OtlpTranslation *t, OtlpSignal signal, EventBodyResult *result)
{
	Jsonb	   *list = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(result->failures.data)));
	int			n = (int) JB_ROOT_COUNT(list);
	bool		capped = result->failed > EVENT_REJECTED_KEPT_PER_BODY;

	for (int i = 0; i < n - (capped ? 1 : 0); i++)
	{
		JsonbContainer *f = otlp_container(getIthJsonbValueFromContainer(&list->root, i));
		char	   *index;
		char	   *name;
		char	   *error = member_text(f, "error");
		char	   *warning = member_text(f, "warning");
		JsonbValue *iv = otlp_member(f, "index");
		int			e;

		if (iv == NULL || iv->type != jbvNumeric)
			continue;
		index = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(iv->val.numeric)));
		e = atoi(index);
		if (e < 0 || e >= t->n_events)
			continue;
		name = member_text(t->event_record[e], signal == OTLP_TRACES ? "name" : "eventName");
		otlp_note_problem(t, signal, t->event_position[e], name,
						  error ? error : psprintf("stored, but %s", warning ? warning : "?"));
	}
	if (!capped || n == 0)
		return NULL;
	return member_text(otlp_container(getIthJsonbValueFromContainer(&list->root, n - 1)), "error");
}

/*
 * errorMessage: the named problems, how many more were kept one by one,
 * and, past the cap, how many more were only counted.
 */
static char *
problems_text(OtlpTranslation *t, const char *rest)
{
	if (t->n_problems > OTLP_MAX_NAMED_PROBLEMS)
		appendStringInfo(&t->problems, "; and %d more", t->n_problems - OTLP_MAX_NAMED_PROBLEMS);
	if (rest != NULL)
		appendStringInfo(&t->problems, "%s%s", t->problems.len > 0 ? "; " : "", rest);
	return t->problems.data;
}

/* Makes an error answer (a google.rpc.Status) in the answer context. */
static void
answer_error(HttpRequest *req, HttpBodyAnswer *answer, unsigned int status, const char *message)
{
	answer->status = status;
	resetStringInfo(&answer->body);
	otlp_status_body(&answer->body, req->protobuf, status, message);
}

/*
 * Queues an OTLP export request's events in the group's batch and makes
 * its answer (see the file comment).
 */
void
http_otlp_add(EventBatch *batch, HttpRequest *req, char *body, int len,
			  MemoryContext answer_context, HttpBodyAnswer *answer)
{
	OtlpSignal	signal = req->route == ROUTE_OTLP_TRACES ? OTLP_TRACES : OTLP_LOGS;
	OtlpTranslation t;
	EventBodyDialect dialect = {.source = "otlp", .refile = refile_event,
	.whole_body = whole_request, .arg = &t};
	EventBodyResult result;
	char	   *error = NULL;
	char	   *rest;
	Jsonb	   *request;
	MemoryContext xact = CurrentMemoryContext;

	request = req->protobuf ? otlp_decode_protobuf(body, len, signal, &error)
		: otlp_decode_json(body, len, &error);
	event_batch_set_dialect(batch, &dialect);
	event_body_result_init(&result);
	if (request == NULL || !otlp_translate(request, signal, batch, &result, &t, &error))
	{
		MemoryContextSwitchTo(answer_context);
		answer_error(req, answer, 400,
					 psprintf("The body could not be read as an OTLP export request, so nothing of it was stored: %s",
							  error));
		MemoryContextSwitchTo(xact);
		return;
	}
	event_batch_add(batch, t.events.data, t.events.len, EVENT_BODY_JSON, &result);
	rest = note_failures(&t, signal, &result);
	MemoryContextSwitchTo(answer_context);
	if (result.body_error)		/* cannot happen: the translation is JSON */
		answer_error(req, answer, 500, result.body_error_message);
	else
	{
		answer->status = 200;
		resetStringInfo(&answer->body);
		/* result.failed counts the records the translation refused too */
		otlp_export_answer(&answer->body, req->protobuf, signal, result.failed,
						   problems_text(&t, rest));
		answer->ingested = result.ingested;
		answer->rejected = result.failed;
	}
	MemoryContextSwitchTo(xact);
}
