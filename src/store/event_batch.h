/*
 * event_batch.h — the one way events get into runra_obs.sandbox_events.
 *
 * Every path (runra_obs.ingest(), ingest_jsonl(), HTTP, NOTIFY) hands raw
 * request bodies to an EventBatch.  The batch validates each event with the
 * same rules, queues the valid ones, and writes them all with PostgreSQL's
 * COPY machinery (binary format, multi-insert, partition routing, indexes
 * and triggers included) when event_batch_write() is called.  Rejected
 * events go to runra_obs.rejected_events in the same transaction, so
 * nothing that was sent is lost.
 *
 * Usage, inside a transaction with an active snapshot:
 *
 *     EventBatch *batch = event_batch_begin("http");
 *     event_batch_add(batch, body, len, EVENT_BODY_JSON, &result);   (repeat)
 *     event_batch_finish(batch);        (writes, closes the table)
 *     ... commit; only now tell the client what `result` says ...
 *
 * event_batch_add never throws for bad input: a body that cannot be parsed
 * at all sets result->body_error and leaves the batch as it was before the
 * call, so other bodies of the same group commit are unaffected.  (The one
 * exception is nesting so deep that the parser runs out of stack; that is
 * an ERROR.)  Database failures in event_batch_write are ordinary ERRORs.
 */
#ifndef RUNRA_OBS_EVENT_BATCH_H
#define RUNRA_OBS_EVENT_BATCH_H

#include "lib/stringinfo.h"

typedef struct EventBatch EventBatch;

/*
 * Rejected events of one body kept (and reported in failures) one by one;
 * past that they are counted, and the body is kept whole once.  A
 * translator that rejects records itself (OTLP) counts them in the same
 * EventBodyResult first (event_body_keep_rejection), so the cap is one
 * for the whole body.
 */
#define EVENT_REJECTED_KEPT_PER_BODY 1000

typedef enum EventBodyFormat
{
	EVENT_BODY_JSON,			/* one event object, or an array of them */
	EVENT_BODY_NDJSON			/* one event object per line (JSONL) */
} EventBodyFormat;

typedef struct EventBodyResult
{
	int64		ingested;		/* valid events queued by this body */
	int64		failed;			/* events rejected (kept in rejected_events) */
	StringInfoData failures;	/* JSON array text: [{"index":i,"error":"..."}]
								 * ("warning" for an event stored anyway) */
	bool		body_error;		/* the body could not be parsed at all */
	char	   *body_error_message; /* then: what and where (line, column) */
} EventBodyResult;

/*
 * How the bodies added next are read and where their rejections are filed.
 * A group commit that serves several routes sets it before each body; all
 * zero (or NULL) is the default: the batch's own source, "timestamp" only.
 */
typedef struct EventBodyDialect
{
	const char *source;			/* rejected_events.source; NULL: the batch's */
	bool		time_alias;		/* "_time" (Axiom's name) may stand for "timestamp" */
	bool		failure_times;	/* failures carry the event's "timestamp" as sent */

	/*
	 * For bodies translated from another format (OTLP): called for each
	 * event the validation rejects, so it is filed at the sender's position
	 * with the sender's text rather than the translation's; and, when more
	 * were rejected than are kept one by one, for the text to keep whole
	 * once (the sender's request, not the translation).  Both get arg.
	 */
	void		(*refile) (void *arg, int *position, const char **raw, int *raw_len);
	void		(*whole_body) (void *arg, char **body, int *len);
	void	   *arg;
} EventBodyDialect;

extern EventBatch *event_batch_begin(const char *source);
extern void event_batch_set_dialect(EventBatch *batch, const EventBodyDialect *dialect);
extern void event_batch_add(EventBatch *batch, char *body, int len,
							EventBodyFormat format, EventBodyResult *result);
extern void event_batch_reject_body(EventBatch *batch, const char *reason,
									char *body, int len);
extern void event_batch_reject_record(EventBatch *batch, int position,
									  const char *reason, char *raw, int len);
extern void event_batch_write(EventBatch *batch);
extern void event_batch_finish(EventBatch *batch);
extern int64 event_batch_pending(EventBatch *batch);

extern void event_body_result_init(EventBodyResult *result);
extern bool event_body_keep_rejection(EventBodyResult *result);

#endif
