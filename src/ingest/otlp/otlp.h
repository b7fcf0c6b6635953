/*
 * otlp.h — the OTLP/HTTP receiver: POST /v1/traces and POST /v1/logs.
 *
 * A request, JSON (otlp_json.c) or protobuf (otlp_proto.c), is first
 * decoded into one in-memory form: the request as OTLP JSON, in a jsonb
 * (hex ids, camelCase names).  One translator (otlp_translate.c, with
 * AnyValue in otlp_value.c) turns it into our envelope JSON, an array of
 * {timestamp, sandboxId, type, data, traceId}, following docs/otlp.md, and
 * keeps the records that cannot be events in rejected_events.  The array
 * goes through the store's one validation in the HTTP group commit
 * (otlp_ingest.c), and the answer is OTLP's (otlp_answer.c).
 *
 * Nothing here runs inside libmicrohttpd's callbacks except
 * otlp_status_pack, which only packs into the caller's buffer.
 */
#ifndef RUNRA_OBS_OTLP_H
#define RUNRA_OBS_OTLP_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "store/event_batch.h"

typedef enum OtlpSignal
{
	OTLP_TRACES,				/* ExportTraceServiceRequest: spans */
	OTLP_LOGS					/* ExportLogsServiceRequest: log records */
} OtlpSignal;

/* spans or log records in one request; more is a 400 (send smaller batches) */
#define OTLP_MAX_RECORDS 100000
/* JSON values (or protobuf fields) in one request, which bounds its tree */
#define OTLP_MAX_VALUES 2000000
/* how many refused records errorMessage names before "and N more" */
#define OTLP_MAX_NAMED_PROBLEMS 20

/* How deep a request may nest (400 past it): its frame plus values. */
extern int	otlp_max_body_depth(void);

/* otlp_json.c / otlp_proto.c: a body as OTLP JSON, or NULL with *error */
extern Jsonb *otlp_decode_json(char *body, int len, char **error);
extern Jsonb *otlp_decode_protobuf(const char *body, int len, OtlpSignal signal,
								   char **error);

/* otlp_value.c: values and attributes */
extern JsonbValue *otlp_member(JsonbContainer *obj, const char *camel_name);
extern JsonbContainer *otlp_container(JsonbValue *v);
extern char *otlp_string(JsonbValue *v);
extern bool otlp_append_any_value(StringInfo out, JsonbValue *value, const char **problem);
extern bool otlp_read_uint64(JsonbValue *v, uint64 *result);

/* otlp_translate.c: a decoded request as our events */
typedef struct OtlpTranslation
{
	Jsonb	   *request;		/* what was translated (kept whole past the cap) */
	StringInfoData events;		/* a JSON array of envelopes */
	int			n_events;
	JsonbContainer **event_record;	/* the record each event came from */
	int		   *event_position; /* its index among the request's records */
	int			n_records;
	StringInfoData problems;	/* "span 2 \"x\": reason; ..." */
	int			n_problems;
} OtlpTranslation;

extern bool otlp_translate(Jsonb *request, OtlpSignal signal, EventBatch *batch,
						   EventBodyResult *result, OtlpTranslation *out, char **error);
extern void otlp_note_problem(OtlpTranslation *out, OtlpSignal signal, int position,
							  const char *name, const char *reason);

/* otlp_answer.c: OTLP's answers, as JSON or protobuf */
extern void otlp_export_answer(StringInfo out, bool protobuf, OtlpSignal signal,
							   int64 rejected, const char *message);
extern void otlp_status_body(StringInfo out, bool protobuf, unsigned int http_status,
							 const char *message);
extern int	otlp_grpc_code(unsigned int http_status);
extern size_t otlp_status_pack(unsigned int http_status, const char *message,
							   uint8 *buf, size_t size);

#endif
