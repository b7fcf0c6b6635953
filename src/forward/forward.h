/*
 * forward.h — the forward worker's shared types: destinations as the worker
 * holds them, the events of one batch, and the interfaces between the
 * worker loop, the outbox, the encoders and the transport.
 *
 * Flow: worker.c asks outbox.c which destinations are due, fetches a batch
 * (short transaction), hands it to an encoder (axiom.c, otlp.c) and
 * transport.c (libcurl multi), or writes it itself (jsonl.c, handler.c);
 * the outcome goes back to outbox.c (acknowledge, or retry.c decides when
 * to try again and outbox.c dead-letters what is past its limit).
 */
#ifndef RUNRA_OBS_FORWARD_H
#define RUNRA_OBS_FORWARD_H

#include <curl/curl.h>

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

typedef enum ForwardProvider
{
	PROVIDER_AXIOM,
	PROVIDER_OTEL,
	PROVIDER_JSONL,
	PROVIDER_FUNCTION
} ForwardProvider;

/* One queued event with what the encoders need of it. */
typedef struct ForwardEvent
{
	int64		event_id;
	TimestampTz created_at;
	TimestampTz queued_at;
	char	   *sandbox_id;
	char	   *event_type;		/* NULL when the event is no longer stored */
	Jsonb	   *data;
	char	   *trace_id;		/* NULL when the event had none */
	char	   *sandbox_trace_id;	/* md5(sandbox_id) in hex: OTLP's fallback */
} ForwardEvent;

/* A request on the wire (HTTP destinations only). */
typedef struct InFlight
{
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *body;			/* malloc'd: libcurl reads it while we wait */
	size_t		body_len;
	char	   *response;		/* malloc'd, capped; filled by libcurl's callback */
	size_t		response_len;
	char		retry_after[128];	/* Retry-After header value, if any */
	int64	   *event_ids;		/* the batch, to acknowledge or fail */
	TimestampTz *created_at;	/* event times (Axiom failures name them) */
	int			n_events;
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
	/* provider settings */
	char	   *url;			/* axiom: the full ingest URL; otel: .../v1/traces */
	char	   *token;
	char	   *headers;		/* otel: "Name: value" lines */
	Jsonb	   *resource_attributes;
	char	   *file_path;
	int64		max_file_bytes;
	int			max_files;
	Oid			handler;
	Oid			handler_role;
	/* what the last look at the outbox found */
	int			queued;			/* up to batch_size */
	TimestampTz oldest_queued;
	/* delivery state, kept across reloads */
	int			failures;		/* consecutive failed attempts */
	TimestampTz next_attempt;	/* not before this (backoff) */
	InFlight   *inflight;
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

/* outbox.c — every function runs its own short transaction */
extern List *outbox_load_destinations(List *known, MemoryContext cxt);
extern int	outbox_fetch(Destination *dest, ForwardEvent **events);
extern void outbox_ack(Destination *dest, const int64 *ids, int n);
extern void outbox_fail(Destination *dest, const int64 *ids, int n,
						const char *error, bool permanent);
extern void outbox_note_error(Destination *dest, const char *error, int n);
extern void outbox_run_batch_in_xact(void (*fn) (void *), void *arg);

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
									 int64 **failed_ids, int *n_failed,
									 char **error);
extern void otlp_encode(StringInfo out, Destination *dest, ForwardEvent *events, int n);
extern void otlp_read_answer(const char *body, char **error, int *rejected);

/* jsonl.c */
extern bool jsonl_write(Destination *dest, ForwardEvent *events, int n, char **error);

/* handler.c */
extern int	handler_deliver(Destination *dest, int64 *ids, int n, char **last_error,
							int64 **failed_ids, int *n_failed);

/* retry.c */
extern SendOutcome retry_classify_status(ForwardProvider provider, long status);
extern void retry_schedule(Destination *dest, const char *retry_after);
extern void retry_reset(Destination *dest);

/* transport.c */
extern void transport_init(void);
extern void transport_start(Destination *dest, InFlight *req, const char *content_encoding,
							const char *auth);
extern void transport_wait(long timeout_ms, bool *latch_set);
extern Destination *transport_next_done(CURLcode *code, long *status);
extern void transport_release(InFlight *req);
extern void transport_cancel(Destination *dest);

/* worker.c */
extern void runra_forward_count(uint64 sent, uint64 dead_lettered);

/* wake.c */
#define FORWARD_WORKER_TYPE "runra_obs forward"

#endif
