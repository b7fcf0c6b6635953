-- ===========================================================================
-- Rollups: events counted by time bucket, so dashboards over long windows
-- read thousands of rows instead of millions of events.
--
--   rollup_5m          every 5 minutes, all sandboxes together
--   rollup_1h          every hour, all sandboxes together
--   rollup_1h_sandbox  every hour, per sandbox
--   ingest_1m          every minute of ingest time (not event time)
--   (and one row per sandbox, grown by the same fold: 62_sandbox_totals.sql)
--
-- Each row counts the events of one bucket with the same event type and,
-- as far as the table keeps them (_rollup_key), the same label (command,
-- tool, termination reason, image...: see event_label) and agent.  How
-- they stay exact: the rollup consumer (a worker, src/consume/) folds the
-- committed events after its position in runra_obs.consumers, up to the
-- safe watermark (10_consume.sql), into delta rows, and moves its position
-- in the same transaction.  So an event is counted once, whatever its
-- timestamp, and a rolled-back insert never; the insert itself pays for
-- none of it.  Delta rows are only ever inserted, never updated, so a fold
-- never waits on a reader or on compaction; readers always aggregate (they
-- group by coarser time anyway), and _maintain_rollups() compacts the
-- deltas of each key into one row.  The *_live views add the events not
-- folded yet, so what reads them is exact to the last committed event.
-- docs/rollups.md has the measurements behind this choice.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Duration histograms (src/rollup/histogram.c): four buckets per doubling.
-- ---------------------------------------------------------------------------
CREATE FUNCTION runra_obs.duration_bucket(ms double precision)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_duration_bucket';
COMMENT ON FUNCTION runra_obs.duration_bucket(double precision) IS
    'The histogram bucket of a duration in ms: 0 below 1 ms, else 1 + floor(4 * log2(ms)), at most 161';

CREATE FUNCTION runra_obs.duration_bucket_lower(bucket integer)
RETURNS double precision
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_duration_bucket_lower';
COMMENT ON FUNCTION runra_obs.duration_bucket_lower(integer) IS
    'The lower edge in ms of a histogram bucket (2^((bucket - 1) / 4); 0 for bucket 0)';

-- The aggregates keep the histogram itself as their state, with a combine
-- function: PostgreSQL can then aggregate in parallel, and Citus on each
-- shard, merging the partial histograms afterwards.
CREATE FUNCTION runra_obs._histogram_add(bigint[], double precision)
RETURNS bigint[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_add_duration';

CREATE FUNCTION runra_obs._histogram_merge(bigint[], bigint[])
RETURNS bigint[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_combine';

CREATE FUNCTION runra_obs._histogram_final(bigint[])
RETURNS bigint[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_trim';
COMMENT ON FUNCTION runra_obs._histogram_add(bigint[], double precision) IS
    'Internal: transition function of runra_obs.duration_histogram';
COMMENT ON FUNCTION runra_obs._histogram_merge(bigint[], bigint[]) IS
    'Internal: transition function of runra_obs.histogram_merge, combine function of both histogram aggregates';
COMMENT ON FUNCTION runra_obs._histogram_final(bigint[]) IS
    'Internal: final function of both histogram aggregates';

CREATE AGGREGATE runra_obs.duration_histogram(double precision) (
    SFUNC = runra_obs._histogram_add,
    STYPE = bigint[],
    COMBINEFUNC = runra_obs._histogram_merge,
    FINALFUNC = runra_obs._histogram_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE runra_obs.duration_histogram(double precision) IS
    'Durations in ms as a histogram: bigint[] of counts indexed by duration_bucket, trimmed to the non-empty range';

CREATE AGGREGATE runra_obs.histogram_merge(bigint[]) (
    SFUNC = runra_obs._histogram_merge,
    STYPE = bigint[],
    COMBINEFUNC = runra_obs._histogram_merge,
    FINALFUNC = runra_obs._histogram_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE runra_obs.histogram_merge(bigint[]) IS
    'The sum of duration histograms (as duration_histogram makes them)';

CREATE FUNCTION runra_obs.histogram_percentile(histogram bigint[], fraction double precision)
RETURNS double precision
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_percentile';
COMMENT ON FUNCTION runra_obs.histogram_percentile(bigint[], double precision) IS
    'The percentile (fraction 0..1) of a duration histogram: the geometric middle of the bucket holding the value percentile_disc would pick (within 9 %)';

CREATE FUNCTION runra_obs.histogram_count(histogram bigint[])
RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_count';
COMMENT ON FUNCTION runra_obs.histogram_count(bigint[]) IS
    'How many durations a duration histogram holds';

-- Sums for many small groups.  sum(numeric) keeps an accumulator per group
-- (internal state, allocated when the group starts): for the per-sandbox
-- panels, 20 000 sandboxes of one or two rows each, that allocation is
-- most of the query (at 10M events: "Top sandboxes by cost" 126 ms with
-- sum(), 41 ms with total()).  total() keeps the running sum as its
-- state: the first row's value as it is, then one exact numeric_add (or
-- int8pl) a row.  Over long groups sum() is faster; fleet panels keep it.
-- Both are plain states with a combine function, so Citus and parallel
-- workers aggregate them in parts.
CREATE AGGREGATE runra_obs.total(numeric) (
    SFUNC = pg_catalog.numeric_add,
    STYPE = numeric,
    COMBINEFUNC = pg_catalog.numeric_add,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE runra_obs.total(numeric) IS
    'The exact sum of numerics, as sum(numeric) gives it (NULL without rows), faster where groups are many and small (per-sandbox rollup rows)';

CREATE AGGREGATE runra_obs.total(bigint) (
    SFUNC = pg_catalog.int8pl,
    STYPE = bigint,
    COMBINEFUNC = pg_catalog.int8pl,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE runra_obs.total(bigint) IS
    'The sum of bigints as a bigint (an error past 2^63, where sum() would give numeric), faster than sum() where groups are many and small';

-- ---------------------------------------------------------------------------
-- The rollup tables.  All share the measures; they differ in bucket width
-- and in whether sandbox_id is a key.
-- ---------------------------------------------------------------------------
CREATE TABLE runra_obs.rollup_5m (
    bucket          timestamptz NOT NULL,
    event_type      text        NOT NULL,
    label           text        NOT NULL,
    agent_id        text        NOT NULL,
    events          bigint      NOT NULL,
    failures        bigint      NOT NULL,
    cost            numeric,
    duration_count  bigint      NOT NULL,
    duration_sum    numeric,
    duration_max    numeric,
    duration_hist   bigint[],
    value_count     bigint      NOT NULL,
    value_sum       numeric,
    value_max       numeric,
    limit_max       numeric,
    over_90         bigint      NOT NULL,
    compacted       boolean     NOT NULL DEFAULT false
);
CREATE TABLE runra_obs.rollup_1h (LIKE runra_obs.rollup_5m INCLUDING DEFAULTS);
CREATE TABLE runra_obs.rollup_1h_sandbox (LIKE runra_obs.rollup_5m INCLUDING DEFAULTS);
ALTER TABLE runra_obs.rollup_1h_sandbox ADD COLUMN sandbox_id text NOT NULL;

-- Indexes are paid for on every insert, so each serves a reader:
--   type and bucket: panels and compaction look rows up by them; the
--   5-minute and per-sandbox ones carry the counts panels read, so those
--   panels read the index only, not the wide rows;
--   sandbox and bucket: panels on chosen sandboxes, and the sandboxes at
--   a range's edges (62_sandbox_totals.sql);
--   deltas (partial, holds only rows not yet compacted): compaction finds
--   its work without reading the table;
--   BRIN on bucket (a few pages): retention and rebuilds find old buckets.
CREATE INDEX rollup_5m_type_bucket_idx ON runra_obs.rollup_5m (event_type, bucket, label, agent_id)
    INCLUDE (events, failures, cost, over_90);
CREATE INDEX rollup_1h_type_bucket_idx ON runra_obs.rollup_1h (event_type, bucket, label, agent_id);
CREATE INDEX rollup_1h_sandbox_type_bucket_idx
    ON runra_obs.rollup_1h_sandbox (event_type, bucket, sandbox_id, label, agent_id)
    INCLUDE (events, failures, cost, value_max, limit_max, over_90);
CREATE INDEX rollup_1h_sandbox_sandbox_idx ON runra_obs.rollup_1h_sandbox (sandbox_id, bucket);
-- (the cost events that name their own agent, for "Cost per agent": few
-- rows, where the type index would read every cost row of the range)
CREATE INDEX rollup_1h_sandbox_agent_cost_idx ON runra_obs.rollup_1h_sandbox (bucket)
    INCLUDE (sandbox_id, agent_id, cost)
    WHERE event_type IN ('cost.runtime', 'cost.storage') AND agent_id <> '';
CREATE INDEX rollup_5m_delta_idx ON runra_obs.rollup_5m (bucket) WHERE NOT compacted;
CREATE INDEX rollup_1h_delta_idx ON runra_obs.rollup_1h (bucket) WHERE NOT compacted;
CREATE INDEX rollup_1h_sandbox_delta_idx ON runra_obs.rollup_1h_sandbox (bucket) WHERE NOT compacted;
CREATE INDEX rollup_5m_bucket_brin ON runra_obs.rollup_5m USING brin (bucket);
CREATE INDEX rollup_1h_bucket_brin ON runra_obs.rollup_1h USING brin (bucket);
CREATE INDEX rollup_1h_sandbox_bucket_brin ON runra_obs.rollup_1h_sandbox USING brin (bucket);

COMMENT ON TABLE runra_obs.rollup_5m IS
    'Events per 5 minutes (UTC), event type and (for exec.*) label, all sandboxes together; several rows per key until compacted: always aggregate';
COMMENT ON TABLE runra_obs.rollup_1h IS
    'Events per hour (UTC), event type, label and agent, all sandboxes together; several rows per key until compacted: always aggregate';
COMMENT ON TABLE runra_obs.rollup_1h_sandbox IS
    'Events per hour (UTC), sandbox, event type, agent and (for sandbox.*) label; several rows per key until compacted: always aggregate';
COMMENT ON COLUMN runra_obs.rollup_5m.bucket IS 'Start of the bucket (created_at rounded down, UTC)';
COMMENT ON COLUMN runra_obs.rollup_5m.label IS 'runra_obs.event_label() as far as the table keeps it (runra_obs._rollup_key())';
COMMENT ON COLUMN runra_obs.rollup_5m.agent_id IS 'runra_obs.event_agent(): data.agentId or '''' (always '''' in rollup_5m)';
COMMENT ON COLUMN runra_obs.rollup_5m.events IS 'How many events';
COMMENT ON COLUMN runra_obs.rollup_5m.failures IS 'How many of them runra_obs.event_failed() calls failures';
COMMENT ON COLUMN runra_obs.rollup_5m.cost IS 'Sum of runra_obs.event_cost()';
COMMENT ON COLUMN runra_obs.rollup_5m.duration_count IS 'Events with a duration (runra_obs.event_duration_ms())';
COMMENT ON COLUMN runra_obs.rollup_5m.duration_sum IS 'Sum of durations in ms';
COMMENT ON COLUMN runra_obs.rollup_5m.duration_max IS 'Longest duration in ms';
COMMENT ON COLUMN runra_obs.rollup_5m.duration_hist IS 'Histogram of durations (merge with runra_obs.histogram_merge)';
COMMENT ON COLUMN runra_obs.rollup_5m.value_count IS 'Events with a sample (runra_obs.event_value())';
COMMENT ON COLUMN runra_obs.rollup_5m.value_sum IS 'Sum of samples';
COMMENT ON COLUMN runra_obs.rollup_5m.value_max IS 'Largest sample';
COMMENT ON COLUMN runra_obs.rollup_5m.limit_max IS 'Largest limit (runra_obs.event_limit())';
COMMENT ON COLUMN runra_obs.rollup_5m.over_90 IS 'Samples above 90 % of their limit';
COMMENT ON COLUMN runra_obs.rollup_5m.compacted IS 'false for the delta rows of one ingest statement, true once compacted';

-- Ingest activity by ingest time, for the pipeline dashboard.
CREATE TABLE runra_obs.ingest_1m (
    bucket      timestamptz NOT NULL,
    events      bigint      NOT NULL,
    transactions bigint     NOT NULL,
    delay_sum_s double precision NOT NULL,
    delay_max_s double precision NOT NULL,
    compacted   boolean     NOT NULL DEFAULT false
);
CREATE INDEX ingest_1m_bucket_idx ON runra_obs.ingest_1m (bucket);
CREATE INDEX ingest_1m_delta_idx ON runra_obs.ingest_1m (bucket) WHERE NOT compacted;
COMMENT ON TABLE runra_obs.ingest_1m IS
    'Events stored per minute of ingest time (UTC), with the delay from created_at to storage; several rows per minute until compacted';
COMMENT ON COLUMN runra_obs.ingest_1m.transactions IS 'Transactions that stored them (distinct ingested_at; counted per fold)';
COMMENT ON COLUMN runra_obs.ingest_1m.delay_sum_s IS 'Sum over the events of ingested_at - created_at, in seconds';
COMMENT ON COLUMN runra_obs.ingest_1m.delay_max_s IS 'Largest ingested_at - created_at, in seconds';

GRANT SELECT ON runra_obs.rollup_5m, runra_obs.rollup_1h, runra_obs.rollup_1h_sandbox,
                runra_obs.ingest_1m TO runra_obs_reader;

-- ---------------------------------------------------------------------------
-- Folding events into the rollups.  The rollup consumer (src/consume/
-- rollup_worker.c) reads the events after its position in
-- runra_obs.consumers up to the safe watermark, about once a second
-- (runra_obs.rollup_interval), and folds them into delta rows in the same
-- transaction that moves its position: an event is counted once, whatever
-- its timestamp, and a rolled-back insert never.  The insert itself writes
-- nothing derived.  Readers that must be exact to the last committed event
-- read the *_live views, which add the events not folded yet.
-- ---------------------------------------------------------------------------

-- The keys each table keeps: what its panels group or filter by, no more
-- (every extra key multiplies rows).
--   rollup_5m          label for exec.* (command), no agent
--   rollup_1h          every label and agent
--   rollup_1h_sandbox  label for sandbox.* (image, termination reason), agent
CREATE FUNCTION runra_obs._rollup_key(rollup text, event_type text, label text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN rollup = 'rollup_5m' AND event_type LIKE 'exec.%' THEN label
        WHEN rollup = 'rollup_1h' THEN label
        WHEN rollup = 'rollup_1h_sandbox' AND event_type LIKE 'sandbox.%' THEN label
        ELSE ''
    END
$$;
COMMENT ON FUNCTION runra_obs._rollup_key(text, text, text) IS
    'The label a rollup table keeps for an event: rollup_5m only commands, rollup_1h every label, rollup_1h_sandbox only images and termination reasons';

-- The last event id handed out (0 before the first): no event was stored
-- after an id at or above it, so the folds and the live views skip their
-- statements.  A function of the sequence, not a scan of it: under
-- enable_seqscan = off (_rollup_rows) a scan is costed so high that JIT
-- compiles it, 60 ms a call.
CREATE FUNCTION runra_obs._last_event_id()
RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(pg_catalog.pg_sequence_last_value('runra_obs.sandbox_events_id_seq'::regclass), 0)
$$;
COMMENT ON FUNCTION runra_obs._last_event_id() IS
    'Internal: the last id runra_obs.sandbox_events_id_seq handed out, 0 before the first';

-- The facts of each event that the rollups count, as the text of a query
-- over the events with ids in ($1, $2] and, when time_bounded, created_at
-- in [$3, $4).  One definition for the fold on one node (_rollup_rows)
-- and on Citus's shards (_fold_rollups_on_shards, 90_citus.sql).  The
-- time bounds go in only when a rebuild gives them: -infinity..infinity
-- would make a created_at index look useful.
CREATE FUNCTION runra_obs._rollup_facts_sql(time_bounded boolean)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT 'SELECT date_bin(''5 minutes'', e.created_at, timestamptz ''2000-01-01 00:00+00'') AS bucket_5m,
               date_bin(''1 hour'', e.created_at, timestamptz ''2000-01-01 00:00+00'') AS bucket_1h,
               e.sandbox_id,
               e.event_type,
               runra_obs.event_label(e.event_type, e.data) AS label,
               runra_obs.event_agent(e.data) AS agent_id,
               runra_obs.event_failed(e.event_type, e.data) AS failed,
               runra_obs.event_cost(e.event_type, e.data) AS cost,
               runra_obs.event_duration_ms(e.event_type, e.data) AS duration_ms,
               runra_obs.event_value(e.event_type, e.data) AS value,
               runra_obs.event_limit(e.event_type, e.data) AS lim
        FROM runra_obs.sandbox_events AS e
        WHERE e.id > $1 AND e.id <= $2'
        || CASE WHEN time_bounded THEN ' AND e.created_at >= $3 AND e.created_at < $4' ELSE '' END
$$;
COMMENT ON FUNCTION runra_obs._rollup_facts_sql(boolean) IS
    'Internal: the query of the facts the rollups count of the events with ids in ($1, $2] (and created_at in [$3, $4) when time_bounded), as SQL';

-- The measures of a rollup row, aggregated from facts (aliased f) as
-- _rollup_facts_sql() names them, as SQL.
CREATE FUNCTION runra_obs._rollup_measures_sql()
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT 'count(*) AS events,
           count(*) FILTER (WHERE f.failed) AS failures,
           sum(f.cost) AS cost,
           count(f.duration_ms) AS duration_count,
           sum(f.duration_ms) AS duration_sum,
           max(f.duration_ms) AS duration_max,
           runra_obs.duration_histogram(f.duration_ms::float8) AS duration_hist,
           count(f.value) AS value_count,
           sum(f.value) AS value_sum,
           max(f.value) AS value_max,
           max(f.lim) AS limit_max,
           count(*) FILTER (WHERE f.value > 0.9 * f.lim) AS over_90'
$$;
COMMENT ON FUNCTION runra_obs._rollup_measures_sql() IS
    'Internal: the measures of a rollup row aggregated from the facts of its events (aliased f), as SQL';

-- The rollup rows of the events with ids in (after_id, up_to_id] and
-- created_at in [from_time, to_time), for the three tables at once: each
-- event's facts are read once and grouped three ways (GROUPING SETS);
-- `rollup` names the table a row is for.  The consumer's fold on one
-- node, rebuilds and the live views all use this one statement.  It is
-- planned with its bounds as values (a generic plan would read the id
-- range through the created_at indexes of every partition) and without
-- sequential scans, so the id range is read through the index on id, even
-- in a partition without statistics yet (where any id range looks like a
-- third of it).  It is not run at all when no event was stored after
-- after_id, which is what a live view finds when the worker keeps up and
-- nobody is writing.
CREATE FUNCTION runra_obs._rollup_rows(after_id bigint, up_to_id bigint,
                                       from_time timestamptz, to_time timestamptz)
RETURNS TABLE (rollup text, bucket timestamptz, sandbox_id text, event_type text, label text,
               agent_id text, events bigint, failures bigint, cost numeric,
               duration_count bigint, duration_sum numeric, duration_max numeric,
               duration_hist bigint[], value_count bigint, value_sum numeric, value_max numeric,
               limit_max numeric, over_90 bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
BEGIN
    IF after_id >= runra_obs._last_event_id() THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($rows$
    WITH facts AS MATERIALIZED (%s
    ), keyed AS (
        SELECT f.*,
               runra_obs._rollup_key('rollup_5m', f.event_type, f.label) AS label_5m,
               runra_obs._rollup_key('rollup_1h_sandbox', f.event_type, f.label) AS label_sandbox
        FROM facts AS f
    )
    -- In each grouping set the columns of the other sets are NULL, and no
    -- key is ever NULL itself, so coalesce picks the key of the row's set.
    SELECT CASE WHEN grouping(f.bucket_5m) = 0 THEN 'rollup_5m'
                WHEN grouping(f.sandbox_id) = 0 THEN 'rollup_1h_sandbox'
                ELSE 'rollup_1h' END,
           coalesce(f.bucket_5m, f.bucket_1h),
           f.sandbox_id,
           f.event_type,
           coalesce(f.label_5m, f.label, f.label_sandbox),
           coalesce(f.agent_id, ''),
           %s
    FROM keyed AS f
    GROUP BY GROUPING SETS (
        (f.bucket_5m, f.event_type, f.label_5m),
        (f.bucket_1h, f.event_type, f.label, f.agent_id),
        (f.bucket_1h, f.sandbox_id, f.event_type, f.label_sandbox, f.agent_id))
    $rows$, runra_obs._rollup_facts_sql(from_time > '-infinity' OR to_time < 'infinity'),
            runra_obs._rollup_measures_sql())
    USING after_id, up_to_id, from_time, to_time;
END
$$;
COMMENT ON FUNCTION runra_obs._rollup_rows(bigint, bigint, timestamptz, timestamptz) IS
    'Internal: the rollup rows (for rollup_5m, rollup_1h and rollup_1h_sandbox) of the events with ids in (after_id, up_to_id] and created_at in [from_time, to_time)';

-- The ingest activity (by ingest time) of the same events, planned and
-- skipped as in _rollup_rows.
CREATE FUNCTION runra_obs._ingest_rows(after_id bigint, up_to_id bigint)
RETURNS TABLE (bucket timestamptz, events bigint, transactions bigint,
               delay_sum_s double precision, delay_max_s double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
BEGIN
    IF after_id >= runra_obs._last_event_id() THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $rows$
    SELECT date_bin('1 minute', e.ingested_at, timestamptz '2000-01-01 00:00+00'),
           count(*),
           count(DISTINCT e.ingested_at),
           sum(extract(epoch FROM e.ingested_at - e.created_at))::double precision,
           max(extract(epoch FROM e.ingested_at - e.created_at))::double precision
    FROM runra_obs.sandbox_events AS e
    WHERE e.id > $1 AND e.id <= $2
    GROUP BY 1
    $rows$ USING after_id, up_to_id;
END
$$;
COMMENT ON FUNCTION runra_obs._ingest_rows(bigint, bigint) IS
    'Internal: the runra_obs.ingest_1m rows of the events with ids in (after_id, up_to_id]';

-- Inserts the rollup rows of a range of events; compacted says what they
-- are (false for the consumer's deltas, true when rebuilt).  PL/pgSQL, so
-- that Citus can plan the statement (it cannot plan a non-inlined SQL
-- function's statements: their parameters have no values yet).  On Citus
-- the shards do the work (_fold_rollups_on_shards, 90_citus.sql).
CREATE FUNCTION runra_obs._fold_rollups(after_id bigint, up_to_id bigint,
                                        from_time timestamptz, to_time timestamptz,
                                        compacted boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF runra_obs._events_distributed() THEN
        PERFORM runra_obs._fold_rollups_on_shards(after_id, up_to_id, from_time, to_time, compacted);
        RETURN;
    END IF;
    EXECUTE format($fold$
        WITH r AS MATERIALIZED (
            SELECT * FROM runra_obs._rollup_rows($1, $2, $3, $4)
        ), to_5m AS (
            INSERT INTO runra_obs.rollup_5m (bucket, event_type, label, agent_id,
                events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                value_count, value_sum, value_max, limit_max, over_90, compacted)
            SELECT bucket, event_type, label, agent_id,
                   events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                   value_count, value_sum, value_max, limit_max, over_90, $5
            FROM r WHERE rollup = 'rollup_5m'
        ), to_1h AS (
            INSERT INTO runra_obs.rollup_1h (bucket, event_type, label, agent_id,
                events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                value_count, value_sum, value_max, limit_max, over_90, compacted)
            SELECT bucket, event_type, label, agent_id,
                   events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                   value_count, value_sum, value_max, limit_max, over_90, $5
            FROM r WHERE rollup = 'rollup_1h'
        ), to_1h_sandbox AS (
            INSERT INTO runra_obs.rollup_1h_sandbox (bucket, sandbox_id, event_type, label, agent_id,
                events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                value_count, value_sum, value_max, limit_max, over_90, compacted)
            SELECT bucket, sandbox_id, event_type, label, agent_id,
                   events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                   value_count, value_sum, value_max, limit_max, over_90, $5
            FROM r WHERE rollup = 'rollup_1h_sandbox'
        ),
        -- The per-sandbox totals (62_sandbox_totals.sql) grow by the same
        -- rows, in the same statement.  A rebuild (compacted) recounts its
        -- sandboxes afterwards instead.
        hours AS (
            SELECT array_agg(ROW(bucket, sandbox_id, event_type, label, agent_id, events, cost,
                                 value_max, limit_max, over_90)::runra_obs._sandbox_hour) AS hours
            FROM r WHERE rollup = 'rollup_1h_sandbox' AND NOT $5
        ), calls AS (
            INSERT INTO runra_obs.rollup_sandbox_agent AS a (sandbox_id, agent_id, tool_calls)
            SELECT c.sandbox_id, c.agent_id, c.tool_calls
            FROM hours AS h, runra_obs._sandbox_agent_calls(h.hours) AS c
            ON CONFLICT (sandbox_id, agent_id) DO UPDATE SET tool_calls = a.tool_calls + excluded.tool_calls
            RETURNING a.sandbox_id, a.agent_id, a.tool_calls
        ), busiest AS (
            -- tool calls only grow, so the busiest agent is the one it was
            -- or one of the agents whose calls grew now (with their totals)
            SELECT DISTINCT ON (c.sandbox_id) c.sandbox_id, c.agent_id, c.tool_calls
            FROM calls AS c
            ORDER BY c.sandbox_id, c.tool_calls DESC, c.agent_id
        )
        INSERT INTO runra_obs.rollup_sandbox AS s
        SELECT t.sandbox_id, t.first_bucket, t.last_bucket, t.events, t.cost_events,
               t.runtime_cost, t.storage_cost, t.cost, t.unattributed_cost_events, t.unattributed_cost,
               t.image, b.agent_id, b.tool_calls, t.resource_events, t.over_90,
               t.memory_peak, t.memory_limit, t.cpu_peak
        FROM hours AS h
             CROSS JOIN LATERAL runra_obs._sandbox_totals_of(h.hours) AS t
             LEFT JOIN busiest AS b ON b.sandbox_id = t.sandbox_id
        %s
    $fold$, runra_obs._sandbox_totals_upsert_sql())
    USING after_id, up_to_id, from_time, to_time, compacted;
END
$$;
COMMENT ON FUNCTION runra_obs._fold_rollups(bigint, bigint, timestamptz, timestamptz, boolean) IS
    'Internal: inserts the rollup rows of the events with ids in (after_id, up_to_id] and created_at in [from_time, to_time)';

-- The rollup consumer.
INSERT INTO runra_obs.consumers (name) VALUES ('rollups');

-- One step of it: folds the events after its position, at most max_ids of
-- them, up to up_to (a safe watermark), and moves the position, in the
-- caller's transaction.  Its row lock orders it with rebuilds and with a
-- second folder (fold_rollups() while the worker runs).  Returns the
-- position it left.
CREATE FUNCTION runra_obs._consume_rollups(up_to bigint, max_ids bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos    bigint;
    target bigint;
BEGIN
    SELECT c.position INTO STRICT pos
    FROM runra_obs.consumers AS c WHERE c.name = 'rollups' FOR UPDATE;
    -- never past the ids handed out: a watermark computed before the
    -- extension was dropped and created again (the caller's transaction
    -- waited for this row through both) counts the old sequence's ids
    target := least(up_to, pos + max_ids, runra_obs._last_event_id());
    IF target <= pos THEN
        RETURN pos;
    END IF;
    PERFORM runra_obs._fold_rollups(pos, target, '-infinity', 'infinity', false);
    INSERT INTO runra_obs.ingest_1m (bucket, events, transactions, delay_sum_s, delay_max_s)
    SELECT * FROM runra_obs._ingest_rows(pos, target);
    UPDATE runra_obs.consumers SET position = target, moved_at = now() WHERE name = 'rollups';
    RETURN target;
END
$$;
COMMENT ON FUNCTION runra_obs._consume_rollups(bigint, bigint) IS
    'Internal: one step of the rollup consumer: folds at most max_ids events after its position, up to up_to, and moves the position';

CREATE FUNCTION runra_obs.fold_rollups()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    up_to bigint := runra_obs.safe_watermark();
    step  bigint := current_setting('runra_obs.rollup_batch_size')::bigint;
    pos   bigint;
BEGIN
    LOOP
        pos := runra_obs._consume_rollups(up_to, step);
        EXIT WHEN pos >= up_to;
    END LOOP;
    RETURN pos;
END
$$;
COMMENT ON FUNCTION runra_obs.fold_rollups() IS
    'Folds every event committed now into the rollups, as the rollup worker does each second (in steps of runra_obs.rollup_batch_size ids); returns the rollup consumer''s position';


-- The rollups as of the last committed event: the folded rows, and the
-- rows of the events after the consumer's position, computed at query
-- time (about a second of events when the worker keeps up).  Always
-- aggregate, as with the tables.
--
-- Each is a function of the buckets [lo, hi) and the event types (NULL:
-- all) asked for, with the conditions inside both legs: Citus plans a
-- union of a Citus table and the coordinator's consumers row leg by leg,
-- before conditions outside it reach the legs, so a condition on a view
-- pulled every rollup row of every shard (or of a coordinator table) into
-- an intermediate result first.  The API reads the functions; the views
-- are the functions over all buckets.
CREATE FUNCTION runra_obs._rollup_5m_live(lo timestamptz, hi timestamptz, types text[])
RETURNS TABLE (bucket timestamptz, event_type text, label text, agent_id text,
               events bigint, failures bigint, cost numeric, duration_count bigint,
               duration_sum numeric, duration_max numeric, duration_hist bigint[],
               value_count bigint, value_sum numeric, value_max numeric, limit_max numeric,
               over_90 bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.bucket, r.event_type, r.label, r.agent_id, r.events, r.failures, r.cost,
           r.duration_count, r.duration_sum, r.duration_max, r.duration_hist, r.value_count,
           r.value_sum, r.value_max, r.limit_max, r.over_90
    FROM runra_obs.rollup_5m AS r
    WHERE r.bucket >= lo AND r.bucket < hi
      AND (types IS NULL OR r.event_type = ANY (types))
    UNION ALL
    SELECT u.bucket, u.event_type, u.label, u.agent_id, u.events, u.failures, u.cost,
           u.duration_count, u.duration_sum, u.duration_max, u.duration_hist, u.value_count,
           u.value_sum, u.value_max, u.limit_max, u.over_90
    FROM runra_obs.consumers AS c,
         LATERAL runra_obs._rollup_rows(c.position, 9223372036854775807, '-infinity', 'infinity') AS u
    WHERE c.name = 'rollups' AND u.rollup = 'rollup_5m'
      AND u.bucket >= lo AND u.bucket < hi
      AND (types IS NULL OR u.event_type = ANY (types));
END;
COMMENT ON FUNCTION runra_obs._rollup_5m_live(timestamptz, timestamptz, text[]) IS
    'Internal: the rows of rollup_5m_live with bucket in [lo, hi) and event_type in types (NULL: any)';
CREATE VIEW runra_obs.rollup_5m_live WITH (security_invoker = true) AS
SELECT bucket, event_type, label, agent_id, events, failures, cost, duration_count,
       duration_sum, duration_max, duration_hist, value_count, value_sum, value_max,
       limit_max, over_90
FROM runra_obs._rollup_5m_live('-infinity', 'infinity', NULL);
CREATE FUNCTION runra_obs._rollup_1h_live(lo timestamptz, hi timestamptz, types text[])
RETURNS TABLE (bucket timestamptz, event_type text, label text, agent_id text,
               events bigint, failures bigint, cost numeric, duration_count bigint,
               duration_sum numeric, duration_max numeric, duration_hist bigint[],
               value_count bigint, value_sum numeric, value_max numeric, limit_max numeric,
               over_90 bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.bucket, r.event_type, r.label, r.agent_id, r.events, r.failures, r.cost,
           r.duration_count, r.duration_sum, r.duration_max, r.duration_hist, r.value_count,
           r.value_sum, r.value_max, r.limit_max, r.over_90
    FROM runra_obs.rollup_1h AS r
    WHERE r.bucket >= lo AND r.bucket < hi
      AND (types IS NULL OR r.event_type = ANY (types))
    UNION ALL
    SELECT u.bucket, u.event_type, u.label, u.agent_id, u.events, u.failures, u.cost,
           u.duration_count, u.duration_sum, u.duration_max, u.duration_hist, u.value_count,
           u.value_sum, u.value_max, u.limit_max, u.over_90
    FROM runra_obs.consumers AS c,
         LATERAL runra_obs._rollup_rows(c.position, 9223372036854775807, '-infinity', 'infinity') AS u
    WHERE c.name = 'rollups' AND u.rollup = 'rollup_1h'
      AND u.bucket >= lo AND u.bucket < hi
      AND (types IS NULL OR u.event_type = ANY (types));
END;
COMMENT ON FUNCTION runra_obs._rollup_1h_live(timestamptz, timestamptz, text[]) IS
    'Internal: the rows of rollup_1h_live with bucket in [lo, hi) and event_type in types (NULL: any)';
CREATE VIEW runra_obs.rollup_1h_live WITH (security_invoker = true) AS
SELECT bucket, event_type, label, agent_id, events, failures, cost, duration_count,
       duration_sum, duration_max, duration_hist, value_count, value_sum, value_max,
       limit_max, over_90
FROM runra_obs._rollup_1h_live('-infinity', 'infinity', NULL);
CREATE FUNCTION runra_obs._rollup_1h_sandbox_live(lo timestamptz, hi timestamptz, types text[])
RETURNS TABLE (bucket timestamptz, sandbox_id text, event_type text, label text, agent_id text,
               events bigint, failures bigint, cost numeric, duration_count bigint,
               duration_sum numeric, duration_max numeric, duration_hist bigint[],
               value_count bigint, value_sum numeric, value_max numeric, limit_max numeric,
               over_90 bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.bucket, r.sandbox_id, r.event_type, r.label, r.agent_id, r.events, r.failures, r.cost,
           r.duration_count, r.duration_sum, r.duration_max, r.duration_hist, r.value_count,
           r.value_sum, r.value_max, r.limit_max, r.over_90
    FROM runra_obs.rollup_1h_sandbox AS r
    WHERE r.bucket >= lo AND r.bucket < hi
      AND (types IS NULL OR r.event_type = ANY (types))
    UNION ALL
    SELECT u.bucket, u.sandbox_id, u.event_type, u.label, u.agent_id, u.events, u.failures,
           u.cost, u.duration_count, u.duration_sum, u.duration_max, u.duration_hist,
           u.value_count, u.value_sum, u.value_max, u.limit_max, u.over_90
    FROM runra_obs.consumers AS c,
         LATERAL runra_obs._rollup_rows(c.position, 9223372036854775807, '-infinity', 'infinity') AS u
    WHERE c.name = 'rollups' AND u.rollup = 'rollup_1h_sandbox'
      AND u.bucket >= lo AND u.bucket < hi
      AND (types IS NULL OR u.event_type = ANY (types));
END;
COMMENT ON FUNCTION runra_obs._rollup_1h_sandbox_live(timestamptz, timestamptz, text[]) IS
    'Internal: the rows of rollup_1h_sandbox_live with bucket in [lo, hi) and event_type in types (NULL: any)';
CREATE VIEW runra_obs.rollup_1h_sandbox_live WITH (security_invoker = true) AS
SELECT bucket, sandbox_id, event_type, label, agent_id, events, failures, cost,
       duration_count, duration_sum, duration_max, duration_hist, value_count, value_sum,
       value_max, limit_max, over_90
FROM runra_obs._rollup_1h_sandbox_live('-infinity', 'infinity', NULL);
CREATE VIEW runra_obs.ingest_1m_live WITH (security_invoker = true) AS
SELECT bucket, events, transactions, delay_sum_s, delay_max_s
FROM runra_obs.ingest_1m
UNION ALL
SELECT u.bucket, u.events, u.transactions, u.delay_sum_s, u.delay_max_s
FROM runra_obs.consumers AS c,
     LATERAL runra_obs._ingest_rows(c.position, 9223372036854775807) AS u
WHERE c.name = 'rollups';
COMMENT ON VIEW runra_obs.rollup_5m_live IS
    'runra_obs.rollup_5m with the events not folded yet: exact to the last committed event; always aggregate';
COMMENT ON VIEW runra_obs.rollup_1h_live IS
    'runra_obs.rollup_1h with the events not folded yet: exact to the last committed event; always aggregate';
COMMENT ON VIEW runra_obs.rollup_1h_sandbox_live IS
    'runra_obs.rollup_1h_sandbox with the events not folded yet: exact to the last committed event; always aggregate';
COMMENT ON VIEW runra_obs.ingest_1m_live IS
    'runra_obs.ingest_1m with the events not folded yet: exact to the last committed event; always aggregate';
GRANT SELECT ON runra_obs.rollup_5m_live, runra_obs.rollup_1h_live, runra_obs.rollup_1h_sandbox_live,
                runra_obs.ingest_1m_live TO runra_obs_reader;

-- Compaction merges the delta rows of each key.
-- The measures of rollup rows merged into one (compaction).
CREATE FUNCTION runra_obs._rollup_merge_measures()
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT
        'sum(events) AS events, sum(failures) AS failures, sum(cost) AS cost,
         sum(duration_count) AS duration_count, sum(duration_sum) AS duration_sum,
         max(duration_max) AS duration_max, runra_obs.histogram_merge(duration_hist) AS duration_hist,
         sum(value_count) AS value_count, sum(value_sum) AS value_sum, max(value_max) AS value_max,
         max(limit_max) AS limit_max, sum(over_90) AS over_90'
$$;
COMMENT ON FUNCTION runra_obs._rollup_merge_measures() IS
    'Internal: the rollup measures of several rows of one key merged, as SQL (for compaction)';

CREATE FUNCTION runra_obs._rollup_columns()
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT 'events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
            value_count, value_sum, value_max, limit_max, over_90, compacted'
$$;
COMMENT ON FUNCTION runra_obs._rollup_columns() IS 'Internal: the measure columns of the rollup tables, as SQL (for compaction)';

-- Maintenance and rebuilds change rollup rows one at a time.
CREATE FUNCTION runra_obs._rollup_lock()
RETURNS void
LANGUAGE sql
AS $$
    SELECT runra_obs._lock('rollups')
$$;
COMMENT ON FUNCTION runra_obs._rollup_lock() IS
    'Internal: serialises compaction, retention and rebuilds (never taken by ingest)';

-- Merges the delta rows of each key of one rollup table into one row, in
-- one statement: rows committed after its snapshot stay deltas for next
-- time, so nothing is counted twice or lost.  Returns rows removed.
CREATE FUNCTION runra_obs._compact_rollup(rollup regclass, keys text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    EXECUTE format($f$
        WITH dirty AS (
            SELECT DISTINCT %2$s FROM %1$s WHERE NOT compacted
        ), gone AS (
            DELETE FROM %1$s AS r USING dirty AS d
            WHERE (%3$s) = (%4$s)
            RETURNING r.*
        ), merged AS (
            INSERT INTO %1$s (%2$s, %5$s)
            SELECT %2$s, %6$s, true FROM gone GROUP BY %2$s
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM merged)$f$,
        rollup, keys,
        (SELECT string_agg('r.' || k, ', ') FROM unnest(string_to_array(keys, ', ')) AS k),
        (SELECT string_agg('d.' || k, ', ') FROM unnest(string_to_array(keys, ', ')) AS k),
        runra_obs._rollup_columns(), runra_obs._rollup_merge_measures())
    INTO removed;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION runra_obs._compact_rollup(regclass, text) IS
    'Internal: merges the delta rows of each key of one rollup table; returns rows removed';

CREATE FUNCTION runra_obs._compact_ingest()
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH dirty AS (
        SELECT DISTINCT bucket FROM runra_obs.ingest_1m WHERE NOT compacted
    ), gone AS (
        DELETE FROM runra_obs.ingest_1m AS r USING dirty AS d
        WHERE r.bucket = d.bucket
        RETURNING r.*
    ), merged AS (
        INSERT INTO runra_obs.ingest_1m (bucket, events, transactions, delay_sum_s, delay_max_s, compacted)
        SELECT bucket, sum(events), sum(transactions), sum(delay_sum_s), max(delay_max_s), true
        FROM gone GROUP BY bucket
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM merged)
$$;
COMMENT ON FUNCTION runra_obs._compact_ingest() IS
    'Internal: merges the rows of each minute of runra_obs.ingest_1m; returns rows removed';
REVOKE ALL ON FUNCTION runra_obs._rollup_lock(), runra_obs._compact_rollup(regclass, text),
                       runra_obs._compact_ingest() FROM PUBLIC;

CREATE FUNCTION runra_obs._maintain_rollups()
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    long_horizon  timestamptz := now() - runra_obs.setting_interval('runra_obs.rollup_retention');
    short_horizon timestamptz := now() - runra_obs.setting_interval('runra_obs.retention');
    expired bigint := 0;
    n       bigint;
    merged  bigint;
    cut     text[];
BEGIN
    PERFORM runra_obs._rollup_lock();
    DELETE FROM runra_obs.rollup_1h WHERE bucket < long_horizon;
    GET DIAGNOSTICS n = ROW_COUNT; expired := expired + n;
    DELETE FROM runra_obs.rollup_5m WHERE bucket < short_horizon;
    GET DIAGNOSTICS n = ROW_COUNT; expired := expired + n;
    DELETE FROM runra_obs.ingest_1m WHERE bucket < short_horizon;
    GET DIAGNOSTICS n = ROW_COUNT; expired := expired + n;

    merged := runra_obs._compact_rollup('runra_obs.rollup_5m', 'bucket, event_type, label, agent_id')
            + runra_obs._compact_rollup('runra_obs.rollup_1h', 'bucket, event_type, label, agent_id')
            + runra_obs._compact_rollup('runra_obs.rollup_1h_sandbox',
                                        'bucket, sandbox_id, event_type, label, agent_id')
            + runra_obs._compact_ingest();

    -- Per-sandbox hours past retention, last: a sandbox losing hours is
    -- recounted from those it keeps (or goes, with none left), holding the
    -- consumer's row so that no fold adds to its totals between the
    -- recount's read and its write.  Only when there are such hours (about
    -- once an hour), and never waiting for the row: run_maintenance may
    -- hold sandbox_events (a partition dropped) while a fold holding the
    -- row waits to read it.  A busy row leaves them for the next run.
    -- (arrays, not EXISTS: Citus cannot plan an empty target list)
    cut := ARRAY(SELECT DISTINCT sandbox_id FROM runra_obs.rollup_1h_sandbox WHERE bucket < long_horizon);
    IF cardinality(cut) > 0 THEN
        PERFORM FROM runra_obs.consumers AS c WHERE c.name = 'rollups' FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            -- (again: a fold may have added such hours before we held it)
            cut := ARRAY(SELECT DISTINCT sandbox_id FROM runra_obs.rollup_1h_sandbox WHERE bucket < long_horizon);
            DELETE FROM runra_obs.rollup_1h_sandbox WHERE bucket < long_horizon;
            GET DIAGNOSTICS n = ROW_COUNT; expired := expired + n;
            PERFORM runra_obs._recount_sandboxes(cut);
        END IF;
    END IF;
    RETURN format('rollups: %s delta rows compacted away, %s expired rows dropped', merged, expired);
END
$$;
COMMENT ON FUNCTION runra_obs._maintain_rollups() IS
    'Compacts rollup delta rows and drops rollup rows past retention (hourly: runra_obs.rollup_retention; 5-minute and ingest: runra_obs.retention); called by run_maintenance';
REVOKE ALL ON FUNCTION runra_obs._maintain_rollups() FROM PUBLIC;

CREATE FUNCTION runra_obs.rebuild_rollups(window_from timestamptz, window_to timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lower_h timestamptz := date_bin('1 hour', window_from, timestamptz '2000-01-01 00:00+00');
    upper_h timestamptz := date_bin('1 hour', window_to, timestamptz '2000-01-01 00:00+00');
    oldest  timestamptz := (SELECT min(lower) FROM runra_obs.partitions);
    pos     bigint;
    folded  bigint;
    touched text[];
BEGIN
    IF window_to > upper_h THEN
        upper_h := upper_h + interval '1 hour';
    END IF;
    IF lower_h < oldest THEN
        RAISE EXCEPTION 'cannot rebuild rollups from %: raw events are kept only from %', lower_h, oldest
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Rebuilding deletes the rollups of the window and recounts its raw events; before the oldest partition there are none left to count.',
                  HINT = 'Start the window at or after the oldest partition of runra_obs.sandbox_events.';
    END IF;
    PERFORM runra_obs._rollup_lock();
    -- Holding the consumer's row: no fold runs meanwhile, and every event
    -- up to its position is committed and visible (the watermark's
    -- promise), so those are recounted here and the later ones are left
    -- to the consumer.  Nothing is counted twice or missed.
    SELECT c.position INTO STRICT pos
    FROM runra_obs.consumers AS c WHERE c.name = 'rollups' FOR UPDATE;
    -- the sandboxes whose totals change: those with hours in the window
    -- before and after the recount
    touched := ARRAY(SELECT DISTINCT sandbox_id FROM runra_obs.rollup_1h_sandbox
                     WHERE bucket >= lower_h AND bucket < upper_h);
    DELETE FROM runra_obs.rollup_5m WHERE bucket >= lower_h AND bucket < upper_h;
    DELETE FROM runra_obs.rollup_1h WHERE bucket >= lower_h AND bucket < upper_h;
    DELETE FROM runra_obs.rollup_1h_sandbox WHERE bucket >= lower_h AND bucket < upper_h;
    PERFORM runra_obs._fold_rollups(0, pos, lower_h, upper_h, true);
    PERFORM runra_obs._recount_sandboxes(ARRAY(
        SELECT unnest(touched)
        UNION
        SELECT sandbox_id FROM runra_obs.rollup_1h_sandbox WHERE bucket >= lower_h AND bucket < upper_h));
    SELECT count(*) INTO folded FROM runra_obs.sandbox_events
    WHERE created_at >= lower_h AND created_at < upper_h AND id <= pos;
    RETURN folded;
END
$$;
COMMENT ON FUNCTION runra_obs.rebuild_rollups(timestamptz, timestamptz) IS
    'Recounts the rollups of a window (widened to whole hours) from the raw events the rollup consumer has passed; returns the events counted';
REVOKE ALL ON FUNCTION runra_obs.rebuild_rollups(timestamptz, timestamptz) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Privileges: the reader gets the measuring functions and what the live
-- views call as the reader (they are security_invoker); the fold and the
-- consumer's step write rollups and are the owner's.
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION
    runra_obs._histogram_add(bigint[], double precision),
    runra_obs._histogram_merge(bigint[], bigint[]),
    runra_obs._histogram_final(bigint[]),
    runra_obs._rollup_merge_measures(),
    runra_obs._rollup_columns(),
    runra_obs._rollup_key(text, text, text),
    runra_obs._last_event_id(),
    runra_obs._rollup_facts_sql(boolean),
    runra_obs._rollup_measures_sql(),
    runra_obs._rollup_rows(bigint, bigint, timestamptz, timestamptz),
    runra_obs._rollup_5m_live(timestamptz, timestamptz, text[]),
    runra_obs._rollup_1h_live(timestamptz, timestamptz, text[]),
    runra_obs._rollup_1h_sandbox_live(timestamptz, timestamptz, text[]),
    runra_obs._ingest_rows(bigint, bigint),
    runra_obs._fold_rollups(bigint, bigint, timestamptz, timestamptz, boolean),
    runra_obs._consume_rollups(bigint, bigint),
    runra_obs.fold_rollups()
FROM PUBLIC;
-- (the live views read the id sequence's last value as the reader)
GRANT SELECT ON SEQUENCE runra_obs.sandbox_events_id_seq TO runra_obs_reader;
-- (and the histogram aggregates' own functions: Citus checks the caller's
-- right to each when it aggregates on the shards)
GRANT EXECUTE ON FUNCTION
    runra_obs._histogram_add(bigint[], double precision),
    runra_obs._histogram_merge(bigint[], bigint[]),
    runra_obs._histogram_final(bigint[]),
    runra_obs._rollup_key(text, text, text),
    runra_obs._last_event_id(),
    runra_obs._rollup_facts_sql(boolean),
    runra_obs._rollup_measures_sql(),
    runra_obs._rollup_rows(bigint, bigint, timestamptz, timestamptz),
    runra_obs._rollup_5m_live(timestamptz, timestamptz, text[]),
    runra_obs._rollup_1h_live(timestamptz, timestamptz, text[]),
    runra_obs._rollup_1h_sandbox_live(timestamptz, timestamptz, text[]),
    runra_obs._ingest_rows(bigint, bigint)
TO runra_obs_reader;
REVOKE ALL ON FUNCTION
    runra_obs.duration_bucket(double precision),
    runra_obs.duration_bucket_lower(integer),
    runra_obs.duration_histogram(double precision),
    runra_obs.histogram_merge(bigint[]),
    runra_obs.histogram_percentile(bigint[], double precision),
    runra_obs.histogram_count(bigint[]),
    runra_obs.total(numeric),
    runra_obs.total(bigint)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    runra_obs.duration_bucket(double precision),
    runra_obs.duration_bucket_lower(integer),
    runra_obs.duration_histogram(double precision),
    runra_obs.histogram_merge(bigint[]),
    runra_obs.histogram_percentile(bigint[], double precision),
    runra_obs.histogram_count(bigint[]),
    runra_obs.total(numeric),
    runra_obs.total(bigint)
TO runra_obs_reader;
