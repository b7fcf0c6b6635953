/*
 * event_batch_internal.h — what the event parser (event_parse.c) and the
 * Citus writer (event_citus.c) need from the batch writer (event_batch.c),
 * and nobody else.
 */
#ifndef RUNRA_OBS_EVENT_BATCH_INTERNAL_H
#define RUNRA_OBS_EVENT_BATCH_INTERNAL_H

#include "datatype/timestamp.h"
#include "store/event_batch.h"
#include "utils/jsonb.h"

/* One validated event, pointing into the parser's buffers. */
typedef struct ValidEvent
{
	TimestampTz created_at;
	const char *sandbox_id;
	int			sandbox_id_len;
	const char *event_type;
	int			event_type_len;
	const Jsonb *data;			/* the data object, built by the parser */
	const char *trace_id;		/* 32 lowercase hex digits, or NULL */
} ValidEvent;

extern void event_batch_append(EventBatch *batch, const ValidEvent *event);
extern Jsonb *event_batch_jsonb(const char *bytes, int len);
extern void event_batch_reject(EventBatch *batch, int position,
							   const char *reason, const char *raw, int raw_len);
extern const char *event_batch_check_time(EventBatch *batch, TimestampTz ts);
extern const EventBodyDialect *event_batch_dialect(EventBatch *batch);
extern bool event_batch_body_repaired(EventBatch *batch);

/* event_parse.c */
extern bool parse_event_body(EventBatch *batch, char *body, int len,
							 bool one_event_only, int index, int line,
							 EventBodyResult *result, char **syntax_error);
extern void reject_rest_of_body(EventBatch *batch, EventBodyResult *result,
								char *body, int len);
extern void reject_event_text(EventBatch *batch, EventBodyResult *result,
							  int index, int line, const char *reason,
							  const char *time_text, const char *raw, int raw_len);

#endif
