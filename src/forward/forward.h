/*
 * forward.h — the forward worker's shared types: destinations as the worker
 * holds them (each a consumer of the event log with a cursor), the batches
 * it has read and not yet settled, and the interfaces between the worker
 * loop, the cursor's SQL side, the encoders and the transport.
 *
 * Flow: worker.c advances the safe watermark, and for each destination
 * that is due reads the next batch of the events after its read frontier
 * (cursor.c, a short transaction), encodes it (axiom.c, otlp.c) and puts it
 * on the wire (transport.c, libcurl multi, several batches per
 * destination), or writes it itself (jsonl.c); handler.c runs SQL
 * handlers.  Outcomes come back to worker.c, which moves the cursor over
 * the longest run of settled batches (cursor.c again); retry.c decides
 * when a failed batch is sent again.
 */
#ifndef RUNRA_OBS_FORWARD_H
#define RUNRA_OBS_FORWARD_H

#include <curl/curl.h>

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

/* Axiom takes up to 10,000 events per request: the most a batch holds. */
#define FORWARD_MAX_BATCH 10000

typedef enum ForwardProvider
{
	PROVIDER_AXIOM,
	PROVIDER_OTEL,
	PROVIDER_JSONL,
	PROVIDER_FUNCTION
} ForwardProvider;

/* One event of a batch with what the encoders need of it. */
typedef struct ForwardEvent
{
	int64		event_id;
	TimestampTz created_at;
	char	   *sandbox_id;
	char	   *event_type;		/* NULL when the event is no longer stored */
	Jsonb	   *data;
	char	   *trace_id;		/* NULL when the event had none */
	char	   *sandbox_trace_id;	/* md5(sandbox_id) in hex: OTLP's fallback */
	bool		failed;			/* runra_obs.event_failed(): the one definition */
	Numeric		duration_ms;	/* runra_obs.event_duration_ms(), NULL if none */
	TimestampTz ingested_at;	/* when the store took it (OTLP's observed time) */
} ForwardEvent;

typedef enum BatchState
{
	BATCH_ON_WIRE,				/* a request is in flight */
	BATCH_FAILED,				/* waiting for its retry */
	BATCH_SETTLED				/* accepted, or dead-lettered: the cursor may pass it */
} BatchState;

struct Destination;

/*
 * A batch read from the log: the events of ids (lo, hi] the destination
 * selects (a range batch), or events from runra_obs.redeliveries.  Its
 * memory context holds the events and the request body; what libcurl's
 * callbacks fill (response) is malloc'd, as they must not throw.
 */
typedef struct InFlight
{
	struct Destination *dest;
	MemoryContext cxt;
	bool		redelivery;
	int64		lo;
	int64		hi;
	BatchState	state;
	int			attempts;
	TimestampTz first_attempt;
	ForwardEvent *events;
	int			n_events;
	/* once settled: the events to dead-letter, and whether that is recorded */
	ForwardEvent *dead;
	int			n_dead;
	char	   *dead_error;
	bool		recorded;
	/* the request (HTTP destinations) */
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *body;
	size_t		body_len;
	const char *content_encoding;
	char	   *auth;
	char	   *response;		/* malloc'd, capped; filled by libcurl's callback */
	size_t		response_len;
	size_t		response_cap;	/* most of the answer kept (0: 16 MB) */
	char		retry_after[128];	/* Retry-After header value, if any */
	char		error[CURL_ERROR_SIZE];
} InFlight;

/* A destination as the worker holds it between reloads. */
typedef struct Destination
{
	int			id;
	char	   *name;
	ForwardProvider provider;
	bool		enabled;
	int			batch_size;
	int			flush_interval_ms;
	int64		max_retry_ms;
	int			timeout_ms;
	int64		replay_to;		/* 0: not replaying */
	/* provider settings */
	char	   *url;			/* the request URL (runra_obs._forward_url()) */
	char	   *token;
	char	   *headers;		/* extra "Name: value" lines (_forward_headers()) */
	List	   *secrets;		/* masked out of its error texts: token, secret headers */
	bool		otlp_logs;		/* otel: signal "logs" (log records), else spans */
	Jsonb	   *resource_attributes;
	char	   *file_path;
	int64		max_file_bytes;
	int			max_files;
	Oid			handler;
	Oid			handler_role;
	int64		redelivering;	/* rows in runra_obs.redeliveries, at the last look */
	/* consumer state, kept across reloads */
	int64		position;		/* the durable cursor, as last written */
	int64		read_to;		/* end of the last range batch read */
	int			read_limit;		/* > 0: read at most this many events next (a
								 * batch that encoded too large is read again
								 * in halves) */
	List	   *batches;		/* range batches read and not passed, in id order */
	InFlight   *redelivery;		/* the redelivery batch being sent, if any */
	int			on_wire;		/* requests in flight */
	/* what to record at the next settle */
	int64		sent;
	int64		failed;
	char		error[1024];	/* the last error since ('' if none) */
	bool		success;
	/* backoff */
	int			failures;		/* consecutive failed attempts */
	TimestampTz next_attempt;	/* not before this */
	bool		seen;			/* still configured (reload bookkeeping) */
	MemoryContext cxt;			/* settings live here */
} Destination;

/* What a delivery attempt came to. */
typedef enum SendOutcome
{
	SEND_OK,					/* accepted: acknowledge */
	SEND_RETRY,					/* temporary: back off, try again */
	SEND_PERMANENT				/* refused for good: dead-letter */
} SendOutcome;

/* cursor.c — SQL, inside the caller's transaction */
extern List *cursor_load_destinations(List *known, MemoryContext cxt);
extern int	cursor_read_redeliveries(Destination *dest, int max_events,
									 ForwardEvent **events, MemoryContext into);
extern void cursor_dead_letter(Destination *dest, ForwardEvent *events, int n,
							   TimestampTz first_attempt, int attempts, const char *error,
							   bool redelivery);
extern void cursor_delivered_redeliveries(Destination *dest, ForwardEvent *events, int n);
extern void cursor_failed_redeliveries(Destination *dest, ForwardEvent *events, int n,
									   const char *error);
extern void cursor_record(Destination *dest);
extern int	cursor_read_next(Destination *dest, int64 lo, int64 watermark, int max_events,
							 ForwardEvent **events, MemoryContext into, int64 *hi);
extern void cursor_move(Destination *dest, int64 position);
extern void cursor_queue_redeliveries(Destination *dest, ForwardEvent *events, int n,
									  const char *error);

/* json_out.c */
extern void json_append_timestamp(StringInfo out, TimestampTz ts);
extern void json_append_jsonb(StringInfo out, Jsonb *jb);
extern void json_append_string(StringInfo out, const char *s);
extern void json_append_event(StringInfo out, ForwardEvent *ev, const char *time_key);
extern int64 timestamp_to_unix_nanos(TimestampTz ts);

/* axiom.c, otlp.c: build the request body of a batch */
extern void axiom_encode(StringInfo out, ForwardEvent *events, int n);
extern bool axiom_gzip(const char *in, size_t len, char **out, size_t *out_len);
extern SendOutcome axiom_read_answer(const char *body, InFlight *req,
									 bool **refused, int *n_refused,
									 char **error);
extern void otlp_encode(StringInfo out, Destination *dest, ForwardEvent *events, int n);
extern void otlp_read_answer(Destination *dest, const char *body, char **error, int *rejected);

/* jsonl.c */
extern bool jsonl_write(Destination *dest, ForwardEvent *events, int n, char **error);

/* handler.c: one transaction of handler calls, the cursor moved with them */
extern bool handler_consume(Destination *dest, int64 watermark, char **error);

/* retry.c */
extern SendOutcome retry_classify_http(long status);
extern SendOutcome retry_classify_status(ForwardProvider provider, long status);
extern int64 retry_wait_ms(int failures, const char *retry_after);
extern void retry_schedule(Destination *dest, const char *retry_after);
extern void retry_reset(Destination *dest);

/* transport.c */
extern void transport_init(void);
extern void transport_start(InFlight *req);
extern void transport_wait(long timeout_ms, bool *latch_set);
extern InFlight *transport_next_done(CURLcode *code, long *status);
extern void transport_detach(InFlight *req);

/* worker.c */
extern void forward_note_error(Destination *dest, const char *error);

/* limits.c: how big a batch may be */
extern int64 forward_read_budget(void);
extern bool forward_body_too_large(size_t len);

#endif
