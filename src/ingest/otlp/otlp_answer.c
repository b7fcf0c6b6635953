/*
 * otlp_answer.c — OTLP/HTTP's answers, in the request's encoding (JSON, or
 * protobuf packed by protobuf-c with the generated code).
 *
 *   all accepted      200, an empty Export{Trace,Logs}ServiceResponse ({},
 *                     or no bytes at all)
 *   some refused      200, partialSuccess {rejectedSpans (or
 *                     rejectedLogRecords), errorMessage}: the client must
 *                     not retry those (the OTLP spec says so)
 *   any error         a google.rpc.Status {code, message}, code the gRPC
 *                     code that goes with the HTTP status
 */
#include "postgres.h"

#include "utils/json.h"

#include "ingest/otlp/otlp.h"
#include "ingest/otlp/proto/logs_service.pb-c.h"
#include "ingest/otlp/proto/status.pb-c.h"
#include "ingest/otlp/proto/trace_service.pb-c.h"

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

/* Appends a packed message to out. */
static void
append_packed(StringInfo out, const ProtobufCMessage *msg)
{
	size_t		size = protobuf_c_message_get_packed_size(msg);

	enlargeStringInfo(out, (int) size);
	out->len += (int) protobuf_c_message_pack(msg, (uint8 *) out->data + out->len);
	out->data[out->len] = '\0';
}

/* The protobuf answer to an export: a partialSuccess, or nothing when all were taken. */
static void
append_export_protobuf(StringInfo out, OtlpSignal signal, int64 rejected, const char *message)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse traces =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess trace_partial =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
	Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse logs =
		OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_RESPONSE__INIT;
	Opentelemetry__Proto__Collector__Logs__V1__ExportLogsPartialSuccess logs_partial =
		OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_PARTIAL_SUCCESS__INIT;

	if (signal == OTLP_TRACES)
	{
		trace_partial.rejected_spans = rejected;
		trace_partial.error_message = (char *) message;
		traces.partial_success = &trace_partial;
		append_packed(out, &traces.base);
	}
	else
	{
		logs_partial.rejected_log_records = rejected;
		logs_partial.error_message = (char *) message;
		logs.partial_success = &logs_partial;
		append_packed(out, &logs.base);
	}
}

/* The answer to an export: empty, or with partialSuccess when some were refused. */
void
otlp_export_answer(StringInfo out, bool protobuf, OtlpSignal signal, int64 rejected,
				   const char *message)
{
	bool		all_taken = rejected == 0 && (message == NULL || message[0] == '\0');

	if (protobuf)
	{
		if (!all_taken)
			append_export_protobuf(out, signal, rejected, message ? message : "");
		return;
	}
	if (all_taken)
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
	Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;

	if (protobuf)
	{
		status.code = otlp_grpc_code(http_status);
		status.message = (char *) message;
		append_packed(out, &status.base);
		return;
	}
	appendStringInfo(out, "{\"code\":%d,\"message\":", otlp_grpc_code(http_status));
	escape_json(out, message);
	appendStringInfoChar(out, '}');
}

/*
 * Packs a google.rpc.Status into buf, for answers made inside
 * libmicrohttpd's callbacks: protobuf-c packing allocates nothing, so this
 * cannot throw.  The message is cut to fit; returns the length.
 */
size_t
otlp_status_pack(unsigned int http_status, const char *message, uint8 *buf, size_t size)
{
	Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
	char		text[1024];

	strlcpy(text, message, Min(sizeof(text), size > 32 ? size - 32 : 1));
	status.code = otlp_grpc_code(http_status);
	status.message = text;
	return protobuf_c_message_pack(&status.base, buf);
}
