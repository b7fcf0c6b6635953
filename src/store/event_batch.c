/*
 * event_batch.c — queues validated events and writes them with COPY.
 *
 * Valid events are encoded as COPY BINARY tuples in memory and written by
 * PostgreSQL's own COPY FROM machinery (BeginCopyFrom/CopyFrom with a data
 * source callback).  That gives us, for free and exactly as COPY does it,
 * partition routing, multi-insert buffering, index maintenance, defaults
 * (id, ingested_at), constraints and triggers (including the transition
 * tables that forwarding and rollups rely on).  Binary format means the
 * timestamp needs no second parse and the data column is the JSONB that
 * the parser (event_parse.c) built while validating: CopyFrom is given a
 * receive function for it that takes those bytes as they are, where
 * jsonb_recv would parse the text a second time.
 *
 * When Citus distributes the table, event_citus.c writes the same tuples
 * with an INSERT that Citus routes to the shards.
 *
 * Before events are queued, the batch holds RowExclusiveLock on the table,
 * so the set of partitions it checked timestamps against cannot change
 * before the write: a validated event always finds its partition.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "commands/dbcommands.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "commands/copyfrom_internal.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "port/pg_bswap.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "batch_memory.h"
#include "guc.h"
#include "store/event_batch_internal.h"
#include "store/event_citus.h"
#include "store/json_sanitize.h"
#include "store/relation.h"

/* a COPY is run whenever this much is queued, to bound memory */
#define FLUSH_BYTES (64 * 1024 * 1024)

static const char copy_binary_header[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
#define COPY_BINARY_HEADER_LEN 19

/* One day partition's range, for checking timestamps before the write. */
typedef struct PartitionRange
{
	TimestampTz lower;
	TimestampTz upper;
} PartitionRange;

struct EventBatch
{
	char	   *source;			/* 'sql', 'jsonl', 'http', 'notify' */
	Relation	events_rel;		/* sandbox_events, RowExclusiveLock held */
	Oid			rejected_relid;
	StringInfoData events;		/* COPY BINARY tuples for sandbox_events */
	StringInfoData rejected;	/* COPY BINARY tuples for rejected_events */
	int64		n_events;
	int64		n_rejected;
	int64		n_events_written;	/* of n_events, already written */
	int64		n_rejected_written;
	TimestampTz oldest_allowed; /* now() - runra_obs.retention */
	PartitionRange *ranges;		/* sorted, merged where adjacent */
	int			n_ranges;
	bool		has_default;	/* a DEFAULT partition takes anything */
	bool		distributed;	/* sandbox_events is a Citus table: event_citus.c writes */
	bool		body_repaired;	/* the body being parsed had text replaced by U+FFFD */
	EventBodyDialect dialect;	/* of the bodies being added now */
};

/* ---- encoding COPY BINARY tuples ---- */

static inline void
put_int16(StringInfo buf, int16 v)
{
	uint16		n = pg_hton16((uint16) v);

	appendBinaryStringInfo(buf, (char *) &n, 2);
}

static inline void
put_int32(StringInfo buf, int32 v)
{
	uint32		n = pg_hton32((uint32) v);

	appendBinaryStringInfo(buf, (char *) &n, 4);
}

static inline void
put_int64(StringInfo buf, int64 v)
{
	uint64		n = pg_hton64((uint64) v);

	appendBinaryStringInfo(buf, (char *) &n, 8);
}

static inline void
put_text(StringInfo buf, const char *s, int len)
{
	put_int32(buf, len);
	appendBinaryStringInfo(buf, s, len);
}

static void
reset_copy_buffer(StringInfo buf)
{
	resetStringInfo(buf);
	appendBinaryStringInfo(buf, copy_binary_header, COPY_BINARY_HEADER_LEN);
}

/* ---- the partition window ---- */

/*
 * Reads the table's day partitions into sorted, merged ranges.  Range
 * bounds of a partitioned table are kept sorted in its PartitionBoundInfo;
 * indexes[i + 1] >= 0 means datums[i] .. datums[i + 1] belongs to a
 * partition.
 */
static void
load_partition_ranges(EventBatch *batch)
{
	PartitionDesc desc = RelationGetPartitionDesc(batch->events_rel, true);
	PartitionBoundInfo bounds = desc->boundinfo;

	batch->n_ranges = 0;
	batch->has_default = false;
	if (bounds == NULL)
		return;
	batch->has_default = partition_bound_has_default(bounds);
	batch->ranges = palloc(sizeof(PartitionRange) * Max(bounds->ndatums, 1));
	for (int i = 0; i + 1 < bounds->ndatums; i++)
	{
		TimestampTz lower,
					upper;

		if (bounds->indexes[i + 1] < 0 ||
			bounds->kind[i][0] != PARTITION_RANGE_DATUM_VALUE ||
			bounds->kind[i + 1][0] != PARTITION_RANGE_DATUM_VALUE)
			continue;
		lower = DatumGetTimestampTz(bounds->datums[i][0]);
		upper = DatumGetTimestampTz(bounds->datums[i + 1][0]);
		if (batch->n_ranges > 0 && batch->ranges[batch->n_ranges - 1].upper == lower)
			batch->ranges[batch->n_ranges - 1].upper = upper;
		else
			batch->ranges[batch->n_ranges++] = (PartitionRange) {lower, upper};
	}
}

/* Is ts inside one of the partition ranges? */
static bool
has_partition_for(EventBatch *batch, TimestampTz ts)
{
	int			low = 0,
				high = batch->n_ranges - 1;

	while (low <= high)
	{
		int			mid = (low + high) / 2;

		if (ts < batch->ranges[mid].lower)
			high = mid - 1;
		else if (ts >= batch->ranges[mid].upper)
			low = mid + 1;
		else
			return true;
	}
	return batch->has_default;
}

/*
 * NULL if an event at ts can be stored, else a phrase saying why not
 * (it follows the quoted timestamp in the rejection reason).
 */
const char *
event_batch_check_time(EventBatch *batch, TimestampTz ts)
{
	if (ts < batch->oldest_allowed)
		return psprintf("is older than runra_obs.retention allows (oldest accepted: %s)",
						timestamptz_to_str(batch->oldest_allowed));
	if (has_partition_for(batch, ts))
		return NULL;
	if (batch->n_ranges == 0)
		return "has no partition: runra_obs.sandbox_events has none (run runra_obs.run_maintenance())";
	return psprintf("has no partition: partitions cover %s to %s (see runra_obs.premake)",
					pstrdup(timestamptz_to_str(batch->ranges[0].lower)),
					pstrdup(timestamptz_to_str(batch->ranges[batch->n_ranges - 1].upper)));
}

/*
 * Did the body being parsed have text replaced by U+FFFD (invalid UTF-8,
 * \u0000, lone surrogates)?  The parser refuses such text in sandboxId:
 * two sandboxes whose ids differ only there would become one.
 */
bool
event_batch_body_repaired(EventBatch *batch)
{
	return batch->body_repaired;
}

/* ---- queueing ---- */

/*
 * An ingest call of 1000 events peaks at about 3 MB; its process keeps that
 * for the next call (batch_memory.c: a quarter of ingest_jsonl's CPU went to
 * faulting it in again).
 */
#define INGEST_BATCH_MEMORY ((Size) 4 * 1024 * 1024)

/*
 * Starts a batch in the current memory context.  Call inside a transaction;
 * locks sandbox_events (RowExclusiveLock, as INSERT does) until commit.
 */
EventBatch *
event_batch_begin(const char *source)
{
	EventBatch *batch;

	runra_keep_freed_memory(INGEST_BATCH_MEMORY);
	batch = palloc0(sizeof(EventBatch));
	batch->source = pstrdup(source);
	batch->events_rel = table_open(runra_relation_oid("sandbox_events"), RowExclusiveLock);
	batch->rejected_relid = runra_relation_oid("rejected_events");
	batch->oldest_allowed = GetCurrentTransactionStartTimestamp()
		- (TimestampTz) runra_retention_s * USECS_PER_SEC;
	load_partition_ranges(batch);
	batch->distributed = events_are_distributed();
	initStringInfo(&batch->events);
	reset_copy_buffer(&batch->events);
	initStringInfo(&batch->rejected);
	reset_copy_buffer(&batch->rejected);
	return batch;
}

/*
 * A queued data field back as a Jsonb: event_batch_append queues the body
 * of the parser's Jsonb varlena (len bytes at bytes), without its header.
 */
Jsonb *
event_batch_jsonb(const char *bytes, int len)
{
	Jsonb	   *jsonb = palloc(VARHDRSZ + len);

	SET_VARSIZE(jsonb, VARHDRSZ + len);
	memcpy(VARDATA(jsonb), bytes, len);
	return jsonb;
}

/* Queues one valid event as a COPY BINARY tuple. */
void
event_batch_append(EventBatch *batch, const ValidEvent *event)
{
	StringInfo	buf = &batch->events;

	put_int16(buf, 5);
	put_int32(buf, 8);
	put_int64(buf, event->created_at);
	put_text(buf, event->sandbox_id, event->sandbox_id_len);
	put_text(buf, event->event_type, event->event_type_len);
	put_int32(buf, VARSIZE(event->data) - VARHDRSZ);
	appendBinaryStringInfo(buf, VARDATA(event->data), VARSIZE(event->data) - VARHDRSZ);
	if (event->trace_id)
		put_text(buf, event->trace_id, 32);
	else
		put_int32(buf, -1);
	batch->n_events++;
}

/*
 * Sets how the next bodies are read and filed (see EventBodyDialect); NULL
 * goes back to the default.  The strings must live as long as the batch.
 */
void
event_batch_set_dialect(EventBatch *batch, const EventBodyDialect *dialect)
{
	if (dialect)
		batch->dialect = *dialect;
	else
		memset(&batch->dialect, 0, sizeof(batch->dialect));
}

/* The dialect of the body being parsed (for event_parse.c). */
const EventBodyDialect *
event_batch_dialect(EventBatch *batch)
{
	return &batch->dialect;
}

/* Queues a COPY tuple for runra_obs.rejected_events, under the dialect's source. */
static void
queue_rejected(EventBatch *batch, int position, const char *reason,
			   const char *raw, int raw_len)
{
	StringInfo	buf = &batch->rejected;
	const char *source = batch->dialect.source ? batch->dialect.source : batch->source;

	put_int16(buf, 4);
	put_text(buf, source, strlen(source));
	put_int32(buf, 4);
	put_int32(buf, position);
	put_text(buf, reason, strlen(reason));
	put_text(buf, raw, raw_len);
	batch->n_rejected++;
}

/*
 * Queues an event the validation rejected; a translated body's dialect
 * files it at the sender's position with the sender's text.
 */
void
event_batch_reject(EventBatch *batch, int position, const char *reason,
				   const char *raw, int raw_len)
{
	if (batch->dialect.refile)
		batch->dialect.refile(batch->dialect.arg, &position, &raw, &raw_len);
	queue_rejected(batch, position, reason, raw, raw_len);
}

/*
 * Keeps one record that a caller could not even translate into an event
 * (an OTLP span without a sandbox id, say), at its position with the reason.
 */
void
event_batch_reject_record(EventBatch *batch, int position, const char *reason,
						  char *raw, int len)
{
	int			replaced;

	raw = json_sanitize(raw, &len, &replaced);
	queue_rejected(batch, position, reason, raw, len);
}

/*
 * Keeps a whole body that could not be taken apart into events (it is not
 * JSON at all, or could not be stored) in rejected_events at position 0,
 * with the reason.  Used by callers that have nobody to answer to, such as
 * the NOTIFY listener, where an error message would reach no one.
 */
void
event_batch_reject_body(EventBatch *batch, const char *reason, char *body, int len)
{
	event_batch_reject_record(batch, 0, reason, body, len);
}

/* ---- writing with COPY ---- */

static const char *copy_source;
static int	copy_source_len;
static int	copy_source_pos;

/* COPY's data source: hands out the queued tuples. */
static int
read_queued_tuples(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_source_len - copy_source_pos);

	memcpy(outbuf, copy_source + copy_source_pos, n);
	copy_source_pos += n;
	return n;
}

/*
 * CopyFrom flushes its multi-insert buffers at 1000 tuples or at 64 kB of
 * input lines, whichever comes first, counting each tuple's line_buf.len.
 * Binary COPY has no line buffer, so that count stays 0 and every partition
 * buffers 1000 tuples: with 4-5 day partitions in a batch, that is several
 * thousand slots pinning the tuple descriptor, whose resource-owner
 * bookkeeping grows quadratically with their number.
 * Telling CopyFrom each tuple's average size makes it flush as it does for
 * the same rows in text format.  Binary mode reads line_buf nowhere else
 * (CopyFromErrorCallback checks opts.binary first).
 */
static void
count_tuple_bytes_as_text_copy_does(CopyFromState cstate, StringInfo buf, int64 tuples)
{
	if (tuples > 0)
		cstate->line_buf.len = (int) (buf->len / tuples);
}

/*
 * The data column's receive function while the events are written: its
 * bytes are a Jsonb that the parser built in this process (the body of the
 * varlena, as event_batch_append queued it), taken as they are.
 */
static Datum
receive_built_jsonb(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	Jsonb	   *jsonb = event_batch_jsonb(buf->data + buf->cursor, buf->len - buf->cursor);

	buf->cursor = buf->len;
	PG_RETURN_POINTER(jsonb);
}

/* Makes COPY take the column's bytes as built JSONB (see receive_built_jsonb). */
static void
receive_column_as_built_jsonb(CopyFromState cstate, Relation rel, const char *column)
{
	AttrNumber	attnum = attnameAttNum(rel, column, false);

	Assert(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid == JSONBOID);
	cstate->in_functions[attnum - 1].fn_addr = receive_built_jsonb;
}

/*
 * Runs COPY rel (columns) FROM the buffer's tuples (FORMAT binary), as COPY
 * would; built_jsonb_column, if not NULL, holds JSONB the parser built.
 */
static uint64
copy_buffer_into(Relation rel, const char *const *columns, int ncolumns,
				 StringInfo buf, int64 tuples, const char *built_jsonb_column)
{
	ParseState *pstate = make_parsestate(NULL);
	ParseNamespaceItem *nsitem;
	List	   *attnames = NIL;
	CopyFromState cstate;
	uint64		processed;

	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock,
										   NULL, false, false);
	nsitem->p_rte->requiredPerms = ACL_INSERT;
	for (int i = 0; i < ncolumns; i++)
	{
		AttrNumber	attnum = attnameAttNum(rel, columns[i], false);

		nsitem->p_rte->insertedCols =
			bms_add_member(nsitem->p_rte->insertedCols,
						   attnum - FirstLowInvalidHeapAttributeNumber);
		attnames = lappend(attnames, makeString(pstrdup(columns[i])));
	}
	ExecCheckRTPerms(pstate->p_rtable, true);

	/* a trigger on the table that ingests again would clobber the source */
	if (copy_source != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("runra_obs cannot ingest events from inside its own write"),
				 errdetail("A trigger on %s called a runra_obs ingest function.",
						   RelationGetRelationName(rel))));
	appendBinaryStringInfo(buf, "\377\377", 2);	/* end of COPY BINARY data */
	copy_source = buf->data;
	copy_source_len = buf->len;
	copy_source_pos = 0;
	PG_TRY();
	{
		cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, read_queued_tuples,
							   attnames,
							   list_make1(makeDefElem("format", (Node *) makeString("binary"), -1)));
		count_tuple_bytes_as_text_copy_does(cstate, buf, tuples);
		if (built_jsonb_column)
			receive_column_as_built_jsonb(cstate, rel, built_jsonb_column);
		processed = CopyFrom(cstate);
		EndCopyFrom(cstate);
	}
	PG_FINALLY();
	{
		copy_source = NULL;
	}
	PG_END_TRY();
	free_parsestate(pstate);
	reset_copy_buffer(buf);
	return processed;
}

static void
write_events(EventBatch *batch)
{
	static const char *const columns[] =
	{"created_at", "sandbox_id", "event_type", "data", "trace_id"};

	if (batch->events.len <= COPY_BINARY_HEADER_LEN)
		return;
	if (batch->distributed)
	{
		insert_distributed_events(batch->events.data, batch->events.len);
		reset_copy_buffer(&batch->events);
	}
	else
		copy_buffer_into(batch->events_rel, columns, lengthof(columns), &batch->events,
						 batch->n_events - batch->n_events_written, "data");
	batch->n_events_written = batch->n_events;
}

static void
write_rejected(EventBatch *batch)
{
	static const char *const columns[] = {"source", "position", "reason", "raw"};
	Relation	rel;

	if (batch->rejected.len <= COPY_BINARY_HEADER_LEN)
		return;
	rel = table_open(batch->rejected_relid, RowExclusiveLock);
	copy_buffer_into(rel, columns, lengthof(columns), &batch->rejected,
					 batch->n_rejected - batch->n_rejected_written, NULL);
	batch->n_rejected_written = batch->n_rejected;
	table_close(rel, NoLock);
}

/*
 * Writes everything queued so far (valid and rejected events).  The batch
 * can take more bodies afterwards, in the same transaction.
 */
void
event_batch_write(EventBatch *batch)
{
	write_events(batch);
	write_rejected(batch);
}

/* Writes what is queued and lets go of the table (the lock stays till commit). */
void
event_batch_finish(EventBatch *batch)
{
	event_batch_write(batch);
	table_close(batch->events_rel, NoLock);
	batch->events_rel = NULL;
}

/* Events queued and not yet written. */
int64
event_batch_pending(EventBatch *batch)
{
	return batch->n_events - batch->n_events_written;
}

/* ---- bodies ---- */

void
event_body_result_init(EventBodyResult *result)
{
	memset(result, 0, sizeof(*result));
	initStringInfo(&result->failures);
	appendStringInfoChar(&result->failures, '[');
}

/* Closes the failures array (it was opened by event_body_result_init). */
static void
finish_result(EventBodyResult *result)
{
	appendStringInfoChar(&result->failures, ']');
}

/* What the batch and the body's result held before a body or line was parsed. */
typedef struct BatchMark
{
	int			events_len;
	int			rejected_len;
	int64		n_events;
	int64		n_rejected;
	int64		ingested;
	int64		failed;
	int			failures_len;
} BatchMark;

/* Remembers where batch and result stand, so a text that is not JSON can be undone. */
static void
batch_mark(EventBatch *batch, EventBodyResult *result, BatchMark *mark)
{
	mark->events_len = batch->events.len;
	mark->rejected_len = batch->rejected.len;
	mark->n_events = batch->n_events;
	mark->n_rejected = batch->n_rejected;
	mark->ingested = result->ingested;
	mark->failed = result->failed;
	mark->failures_len = result->failures.len;
}

/*
 * Forgets what was queued since the mark: the parser may have queued events
 * of the text before a syntax error (such as the first of two objects on one
 * line), and the text is then rejected as a whole.
 */
static void
batch_undo(EventBatch *batch, EventBodyResult *result, const BatchMark *mark)
{
	batch->events.len = mark->events_len;
	batch->rejected.len = mark->rejected_len;
	batch->n_events = mark->n_events;
	batch->n_rejected = mark->n_rejected;
	result->ingested = mark->ingested;
	result->failed = mark->failed;
	result->failures.len = mark->failures_len;
	result->failures.data[mark->failures_len] = '\0';
}

/* Is the line empty or only spaces and tabs? */
static bool
is_blank(const char *line, int len)
{
	for (int i = 0; i < len; i++)
		if (line[i] != ' ' && line[i] != '\t')
			return false;
	return true;
}

/* Feeds each non-blank line of an NDJSON body to the parser on its own. */
static void
add_ndjson(EventBatch *batch, char *body, int len, EventBodyResult *result)
{
	char	   *line = body;
	char	   *end = body + len;
	int			index = 0;

	while (line < end)
	{
		char	   *newline = memchr(line, '\n', end - line);
		char	   *line_end = newline ? newline : end;
		int			line_len = line_end - line;
		char	   *syntax_error;
		char		saved;
		BatchMark	mark;

		if (line_len > 0 && line[line_len - 1] == '\r')
			line_len--;			/* CRLF */
		if (!is_blank(line, line_len))
		{
			saved = line[line_len];
			line[line_len] = '\0';
			batch_mark(batch, result, &mark);
			if (!parse_event_body(batch, line, line_len, true, index, index + 1,
								  result, &syntax_error))
			{
				batch_undo(batch, result, &mark);
				reject_event_text(batch, result, index, index + 1, syntax_error,
								  NULL, line, line_len);
			}
			line[line_len] = saved;
		}
		index++;
		line = line_end + 1;
	}
}

/*
 * Validates a body and queues its events.  The body is repaired in place
 * where JSONB could not hold its text (see json_sanitize.c).  For a JSON
 * body that is not JSON at all, nothing of it is queued and
 * result->body_error says what is wrong and where.
 */
void
event_batch_add(EventBatch *batch, char *body, int len, EventBodyFormat format,
				EventBodyResult *result)
{
	int			replaced;
	BatchMark	mark;
	char	   *syntax_error;

	batch_mark(batch, result, &mark);
	body = json_sanitize(body, &len, &replaced);
	batch->body_repaired = replaced > 0;
	if (format == EVENT_BODY_NDJSON)
		add_ndjson(batch, body, len, result);
	else if (!parse_event_body(batch, body, len, false, 0, 0, result, &syntax_error))
	{
		/* undo what the part before the error queued */
		batch_undo(batch, result, &mark);
		result->body_error = true;
		result->body_error_message = syntax_error;
	}
	if (!result->body_error)
		reject_rest_of_body(batch, result, body, len);
	batch->body_repaired = false;
	finish_result(result);
	if (batch->events.len + batch->rejected.len > FLUSH_BYTES)
		event_batch_write(batch);
}
