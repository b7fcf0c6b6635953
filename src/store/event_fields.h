/*
 * event_fields.h — checks of the individual envelope fields of an event.
 *
 * These are the rules the table's CHECK constraints also state, so an event
 * that passes here is never refused by the table.
 */
#ifndef RUNRA_OBS_EVENT_FIELDS_H
#define RUNRA_OBS_EVENT_FIELDS_H

#include "common/jsonapi.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#define EVENT_SANDBOX_ID_MAX 256
#define EVENT_TYPE_MAX 128
#define EVENT_TRACE_ID_LEN 32

extern bool parse_iso8601_timestamp(const char *text, TimestampTz *result,
									const char **problem);
extern void append_iso8601_timestamp(StringInfo out, TimestampTz ts);
extern const char *check_sandbox_id(const char *id, int len);
extern const char *check_event_type(const char *type, int len);
extern bool normalize_trace_id(const char *id, int len, char *out);
extern bool json_number_is_storable(const char *token);

/* the member of a jsonb object with this exact key, or NULL */
extern JsonbValue *jsonb_member(JsonbContainer *obj, const char *key);

/* event_parse.c: what other JSON readers say the same way */
extern char json_first_token_char(const char *body, int len);
extern char *describe_json_syntax_error(JsonLexContext *lex, JsonParseErrorType error,
										int line_offset);

#endif
