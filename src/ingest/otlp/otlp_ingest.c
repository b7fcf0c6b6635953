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

/* A string member of a jsonb object, or NULL. */
static char *
member_text(JsonbContainer *obj, const char *key)
{
	return otlp_string(otlp_member(obj, key));
}

/*
 * Names the events the validation refused (or stored with a warning) in
 * the answer's message, by their records' positions.
 */
static void
note_failures(OtlpTranslation *t, OtlpSignal signal, const char *failures)
{
	Jsonb	   *list = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(failures)));

	for (int i = 0; i < (int) JB_ROOT_COUNT(list); i++)
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
}

/* errorMessage: the named problems, and how many more there were. */
static char *
problems_text(OtlpTranslation *t)
{
	if (t->n_problems > OTLP_MAX_NAMED_PROBLEMS)
		appendStringInfo(&t->problems, "; and %d more", t->n_problems - OTLP_MAX_NAMED_PROBLEMS);
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
	EventBodyDialect dialect = {.source = "otlp", .refile = refile_event, .refile_arg = &t};
	EventBodyResult result;
	char	   *error = NULL;
	Jsonb	   *request;
	MemoryContext xact = CurrentMemoryContext;

	request = req->protobuf ? otlp_decode_protobuf(body, len, signal, &error)
		: otlp_decode_json(body, len, &error);
	event_batch_set_dialect(batch, &dialect);
	if (request == NULL || !otlp_translate(request, signal, batch, &t, &error))
	{
		MemoryContextSwitchTo(answer_context);
		answer_error(req, answer, 400,
					 psprintf("The body could not be read as an OTLP export request, so nothing of it was stored: %s",
							  error));
		MemoryContextSwitchTo(xact);
		return;
	}
	event_body_result_init(&result);
	event_batch_add(batch, t.events.data, t.events.len, EVENT_BODY_JSON, &result);
	note_failures(&t, signal, result.failures.data);
	MemoryContextSwitchTo(answer_context);
	if (result.body_error)		/* cannot happen: the translation is JSON */
		answer_error(req, answer, 500, result.body_error_message);
	else
	{
		answer->status = 200;
		resetStringInfo(&answer->body);
		otlp_export_answer(&answer->body, req->protobuf, signal, t.n_refused + result.failed,
						   problems_text(&t));
		answer->ingested = result.ingested;
		answer->rejected = t.n_refused + result.failed;
	}
	MemoryContextSwitchTo(xact);
}
