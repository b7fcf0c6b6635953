/*
 * otlp_answer.c — OTLP/HTTP's answers, in the request's encoding.
 *
 *   all accepted      200, an empty Export{Trace,Logs}ServiceResponse: {}
 *   some refused      200, {"partialSuccess":{"rejectedSpans":"n" (or
 *                     rejectedLogRecords),"errorMessage":"..."}} — the
 *                     client must not retry those (the OTLP spec says so)
 *   any error         a google.rpc.Status: {"code":c,"message":"..."},
 *                     c the gRPC code that goes with the HTTP status
 */
#include "postgres.h"

#include "utils/json.h"

#include "ingest/otlp/otlp.h"

/* The gRPC status code that goes with an HTTP status (OTLP's table). */
int
otlp_grpc_code(unsigned int http_status)
{
	switch (http_status)
	{
		case 400:
		case 415:
		case 422:
			return 3;			/* INVALID_ARGUMENT */
		case 401:
			return 16;			/* UNAUTHENTICATED */
		case 404:
			return 5;			/* NOT_FOUND */
		case 405:
			return 12;			/* UNIMPLEMENTED */
		case 413:
		case 429:
			return 8;			/* RESOURCE_EXHAUSTED */
		case 503:
			return 14;			/* UNAVAILABLE */
		case 500:
			return 13;			/* INTERNAL */
		default:
			return 2;			/* UNKNOWN */
	}
}

/* The answer to an export: empty, or with partialSuccess when some were refused. */
void
otlp_export_answer(StringInfo out, bool protobuf, OtlpSignal signal, int64 rejected,
				   const char *message)
{
	if (rejected == 0 && (message == NULL || message[0] == '\0'))
	{
		appendStringInfoString(out, "{}");
		return;
	}
	appendStringInfo(out, "{\"partialSuccess\":{\"%s\":\"" INT64_FORMAT "\",\"errorMessage\":",
					 signal == OTLP_TRACES ? "rejectedSpans" : "rejectedLogRecords", rejected);
	escape_json(out, message ? message : "");
	appendStringInfoString(out, "}}");
}

/* An error answer made in the main loop: a google.rpc.Status. */
void
otlp_status_body(StringInfo out, bool protobuf, unsigned int http_status, const char *message)
{
	appendStringInfo(out, "{\"code\":%d,\"message\":", otlp_grpc_code(http_status));
	escape_json(out, message);
	appendStringInfoChar(out, '}');
}
