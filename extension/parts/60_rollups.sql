-- ===========================================================================
-- Rollups: events counted by time bucket, so dashboards over long windows
-- read thousands of rows instead of millions of events.
--
--   rollup_5m          every 5 minutes, all sandboxes together
--   rollup_1h          every hour, all sandboxes together
--   rollup_1h_sandbox  every hour, per sandbox
--   ingest_1m          every minute of ingest time (not event time)
--
-- Each row counts the events of one bucket with the same event type and,
-- as far as the table keeps them (_rollup_key), the same label (command,
-- tool, termination reason, image...: see event_label) and agent.  How
-- they stay exact: an AFTER INSERT statement trigger on
-- sandbox_events folds each statement's new events (its transition table)
-- into delta rows, in the inserting transaction.  So an event is counted
-- when and only when it commits, whatever its timestamp, and a rolled-back
-- insert is never counted.  Delta rows are only ever inserted, never
-- updated, so concurrent ingest transactions never wait on each other;
-- readers always aggregate (they group by coarser time anyway), and
-- _maintain_rollups() compacts the deltas of each key into one row.
-- docs/rollups.md has the measurements behind this choice.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- What an event contributes.  Plain SQL expressions, inlined by the planner,
-- shared by the trigger, rebuild_rollups() and the tests that compare
-- rollups with raw events.  None of them can fail on odd data: a field that
-- is missing or not a number gives NULL.
-- ---------------------------------------------------------------------------

-- A JSON number, or a string spelling a decimal number (as the SDK's own
-- query (data->>'cost')::numeric reads it), below 1e30 in magnitude, as
-- numeric; NULL for anything else (src/rollup/json_numeric.c).
CREATE FUNCTION runra_obs.json_numeric(value jsonb)
RETURNS numeric
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_json_numeric';
COMMENT ON FUNCTION runra_obs.json_numeric(jsonb) IS
    'A JSON number or decimal string below 1e30 in magnitude as numeric, NULL for anything else';

-- A measure in the rollups: rounded to a thousandth.
CREATE FUNCTION runra_obs._json_measure(value jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT round(runra_obs.json_numeric(value), 3)
$$;
COMMENT ON FUNCTION runra_obs._json_measure(jsonb) IS
    'Internal: runra_obs.json_numeric() rounded to a thousandth, as rollups keep durations and samples';

CREATE FUNCTION runra_obs.event_label(event_type text, data jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT left(coalesce(CASE
        WHEN event_type LIKE 'exec.%' THEN data ->> 'command'
        WHEN event_type LIKE 'tool.%' THEN data ->> 'toolName'
        WHEN event_type = 'sandbox.terminated' THEN data ->> 'reason'
        WHEN event_type = 'sandbox.created' THEN data ->> 'image'
        WHEN event_type = 'network.egress' THEN data ->> 'host'
        WHEN event_type = 'cost.total' THEN data ->> 'period'
    END, ''), 200)
$$;
COMMENT ON FUNCTION runra_obs.event_label(text, jsonb) IS
    'The label rollups keep per event: command (exec.*), toolName (tool.*), reason (sandbox.terminated), image (sandbox.created), host (network.egress), period (cost.total); '''' otherwise; at most 200 characters';

CREATE FUNCTION runra_obs.event_agent(data jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT left(coalesce(data ->> 'agentId', ''), 200)
$$;
COMMENT ON FUNCTION runra_obs.event_agent(jsonb) IS
    'The agentId an event carries, '''' if none; at most 200 characters';

CREATE FUNCTION runra_obs.event_failed(event_type text, data jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN event_type IN ('exec.failed', 'exec.timed_out', 'tool.failed') THEN true
        WHEN event_type = 'exec.completed'
        THEN coalesce(runra_obs.json_numeric(data -> 'exitCode') <> 0, false)
        ELSE false
    END
$$;
COMMENT ON FUNCTION runra_obs.event_failed(text, jsonb) IS
    'Whether an event is a failure: exec.completed with a non-zero exitCode, exec.failed, exec.timed_out, tool.failed';

CREATE FUNCTION runra_obs.event_cost(data jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(runra_obs.json_numeric(data -> 'cost'),
                    runra_obs.json_numeric(data -> 'sandboxCost'))
$$;
COMMENT ON FUNCTION runra_obs.event_cost(jsonb) IS
    'The cost an event carries: data.cost (cost.runtime, cost.storage) or data.sandboxCost (cost.total)';

CREATE FUNCTION runra_obs.event_duration_ms(event_type text, data jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT runra_obs._json_measure(data -> CASE event_type
        WHEN 'sandbox.started'    THEN 'startupDurationMs'
        WHEN 'sandbox.paused'     THEN 'runtimeDurationMs'
        WHEN 'sandbox.resumed'    THEN 'pausedDurationMs'
        WHEN 'sandbox.terminated' THEN 'totalRuntimeMs'
        WHEN 'exec.timed_out'     THEN 'timeoutMs'
        ELSE 'durationMs'
    END)
$$;
COMMENT ON FUNCTION runra_obs.event_duration_ms(text, jsonb) IS
    'The duration an event reports, in ms: startupDurationMs, runtimeDurationMs, pausedDurationMs, totalRuntimeMs or timeoutMs by type, else durationMs';

CREATE FUNCTION runra_obs.event_value(event_type text, data jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT runra_obs._json_measure(data -> CASE
        WHEN event_type = 'resource.memory' THEN 'memoryUsedMb'
        WHEN event_type = 'resource.cpu'    THEN 'cpuPercent'
        WHEN event_type = 'resource.disk'   THEN 'diskUsedMb'
        WHEN event_type = 'network.egress'  THEN 'bytesSent'
        WHEN event_type LIKE 'file.%'       THEN 'sizeBytes'
    END)
$$;
COMMENT ON FUNCTION runra_obs.event_value(text, jsonb) IS
    'The sample an event carries: memoryUsedMb, cpuPercent, diskUsedMb, bytesSent (network.egress) or sizeBytes (file.*)';

CREATE FUNCTION runra_obs.event_limit(event_type text, data jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE event_type
        WHEN 'resource.memory' THEN runra_obs._json_measure(data -> 'memoryLimitMb')
        WHEN 'resource.disk'   THEN runra_obs._json_measure(data -> 'diskLimitMb')
        WHEN 'resource.cpu'    THEN 100
    END
$$;
COMMENT ON FUNCTION runra_obs.event_limit(text, jsonb) IS
    'The limit a resource sample is measured against: memoryLimitMb, diskLimitMb, 100 for cpuPercent';

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

CREATE FUNCTION runra_obs._histogram_add(internal, double precision)
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_add';

CREATE FUNCTION runra_obs._histogram_merge(internal, bigint[])
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_merge';

CREATE FUNCTION runra_obs._histogram_final(internal)
RETURNS bigint[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_final';
COMMENT ON FUNCTION runra_obs._histogram_add(internal, double precision) IS
    'Internal: transition function of runra_obs.duration_histogram';
COMMENT ON FUNCTION runra_obs._histogram_merge(internal, bigint[]) IS
    'Internal: transition function of runra_obs.histogram_merge';
COMMENT ON FUNCTION runra_obs._histogram_final(internal) IS
    'Internal: final function of both histogram aggregates';

CREATE AGGREGATE runra_obs.duration_histogram(double precision) (
    SFUNC = runra_obs._histogram_add,
    STYPE = internal,
    FINALFUNC = runra_obs._histogram_final
);
COMMENT ON AGGREGATE runra_obs.duration_histogram(double precision) IS
    'Durations in ms as a histogram: bigint[] of counts indexed by duration_bucket, trimmed to the non-empty range';

CREATE AGGREGATE runra_obs.histogram_merge(bigint[]) (
    SFUNC = runra_obs._histogram_merge,
    STYPE = internal,
    FINALFUNC = runra_obs._histogram_final
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
    api_failures    bigint      NOT NULL DEFAULT 0,
    api_cost        numeric,
    api_duration_sum numeric,
    compacted       boolean     NOT NULL DEFAULT false
);
CREATE TABLE runra_obs.rollup_1h (LIKE runra_obs.rollup_5m INCLUDING DEFAULTS);
CREATE TABLE runra_obs.rollup_1h_sandbox (LIKE runra_obs.rollup_5m INCLUDING DEFAULTS);
ALTER TABLE runra_obs.rollup_1h_sandbox ADD COLUMN sandbox_id text NOT NULL;

-- Indexes are paid for on every insert, so each serves a reader:
--   type and bucket: panels and compaction look rows up by them; the
--   5-minute and per-sandbox ones carry the counts panels read, so those
--   panels read the index only, not the wide rows;
--   sandbox and bucket: panels on chosen sandboxes;
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
COMMENT ON COLUMN runra_obs.rollup_5m.api_failures IS
    'How many of them the SQL API counts as failed executions (runra_obs._exec_failed(): also an exec.completed without a usable exitCode)';
COMMENT ON COLUMN runra_obs.rollup_5m.api_cost IS
    'Sum of the cost as the SQL API reads it: runra_obs._number() of data.sandboxCost for cost.total, of data.cost otherwise';
COMMENT ON COLUMN runra_obs.rollup_5m.api_duration_sum IS
    'Sum of runra_obs._number(data.durationMs), unrounded, as the SQL API sums runtime_ms';
COMMENT ON COLUMN runra_obs.rollup_5m.compacted IS 'false for the delta rows of one ingest statement, true once compacted';

-- Ingest activity by ingest time, for the pipeline dashboard.
CREATE TABLE runra_obs.ingest_1m (
    bucket      timestamptz NOT NULL,
    events      bigint      NOT NULL,
    statements  bigint      NOT NULL,
    delay_sum_s double precision NOT NULL,
    delay_max_s double precision NOT NULL,
    compacted   boolean     NOT NULL DEFAULT false
);
CREATE INDEX ingest_1m_bucket_idx ON runra_obs.ingest_1m (bucket);
CREATE INDEX ingest_1m_delta_idx ON runra_obs.ingest_1m (bucket) WHERE NOT compacted;
COMMENT ON TABLE runra_obs.ingest_1m IS
    'Events stored per minute of ingest time (UTC), with the delay from created_at to storage; several rows per minute until compacted';
COMMENT ON COLUMN runra_obs.ingest_1m.statements IS 'Insert statements (COPY batches) that stored them';
COMMENT ON COLUMN runra_obs.ingest_1m.delay_sum_s IS 'Sum over the events of ingested_at - created_at, in seconds';
COMMENT ON COLUMN runra_obs.ingest_1m.delay_max_s IS 'Largest ingested_at - created_at, in seconds';

GRANT SELECT ON runra_obs.rollup_5m, runra_obs.rollup_1h, runra_obs.rollup_1h_sandbox,
                runra_obs.ingest_1m TO runra_obs_reader;

-- ---------------------------------------------------------------------------
-- Folding events into the rollups.  One statement does it, written once
-- here and used twice: by the trigger on each statement's new events, and
-- by rebuild_rollups() on the events of a window.
-- ---------------------------------------------------------------------------

-- The measures, aggregated from events (facts) or from finer rollup rows.
CREATE FUNCTION runra_obs._rollup_measures(from_rollup boolean)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN from_rollup THEN
        'sum(events) AS events, sum(failures) AS failures, sum(cost) AS cost,
         sum(duration_count) AS duration_count, sum(duration_sum) AS duration_sum,
         max(duration_max) AS duration_max, runra_obs.histogram_merge(duration_hist) AS duration_hist,
         sum(value_count) AS value_count, sum(value_sum) AS value_sum, max(value_max) AS value_max,
         max(limit_max) AS limit_max, sum(over_90) AS over_90,
         sum(api_failures) AS api_failures, sum(api_cost) AS api_cost,
         sum(api_duration_sum) AS api_duration_sum'
    ELSE
        'count(*) AS events, count(*) FILTER (WHERE failed) AS failures, sum(cost) AS cost,
         count(duration_ms) AS duration_count, sum(duration_ms) AS duration_sum,
         max(duration_ms) AS duration_max,
         runra_obs.duration_histogram(duration_ms::float8) AS duration_hist,
         count(value) AS value_count, sum(value) AS value_sum, max(value) AS value_max,
         max(lim) AS limit_max, count(*) FILTER (WHERE value > 0.9 * lim) AS over_90,
         count(*) FILTER (WHERE api_failed) AS api_failures, sum(api_cost) AS api_cost,
         sum(api_duration) AS api_duration_sum'
    END
$$;
COMMENT ON FUNCTION runra_obs._rollup_measures(boolean) IS
    'Internal: the rollup measures as SQL, aggregated from event facts or from rollup rows';

CREATE FUNCTION runra_obs._rollup_columns()
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT 'events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
            value_count, value_sum, value_max, limit_max, over_90,
            api_failures, api_cost, api_duration_sum, compacted'
$$;
COMMENT ON FUNCTION runra_obs._rollup_columns() IS 'Internal: the measure columns of the rollup tables';

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

-- The folding statement for events read from `source`; `compacted` says
-- what the new rows are (true when rebuilt, false for trigger deltas);
-- `first_ctes` (each followed by a comma) run in the same statement.
-- Each event's facts are read once, then grouped three ways.
CREATE FUNCTION runra_obs._rollup_fold_sql(source text, compacted boolean, first_ctes text DEFAULT '')
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT format($f$
    WITH %5$s facts AS MATERIALIZED (
        SELECT e.created_at, e.sandbox_id, e.event_type,
               runra_obs.event_label(e.event_type, e.data) AS label,
               runra_obs.event_agent(e.data) AS agent_id,
               runra_obs.event_failed(e.event_type, e.data) AS failed,
               runra_obs.event_cost(e.data) AS cost,
               runra_obs.event_duration_ms(e.event_type, e.data) AS duration_ms,
               runra_obs.event_value(e.event_type, e.data) AS value,
               runra_obs.event_limit(e.event_type, e.data) AS lim,
               -- the SQL API's own definitions (20_analytics.sql), so that
               -- it can read whole hours from here and give the same figures
               runra_obs._exec_failed(e.event_type, e.data) AS api_failed,
               runra_obs._number(e.data -> CASE e.event_type WHEN 'cost.total' THEN 'sandboxCost'
                                                             ELSE 'cost' END) AS api_cost,
               runra_obs._number(e.data -> 'durationMs') AS api_duration
        FROM %1$s
    ), to_5m AS (
        INSERT INTO runra_obs.rollup_5m (bucket, event_type, label, agent_id, %3$s)
        SELECT date_bin('5 minutes', created_at, timestamptz '2000-01-01 00:00+00'),
               event_type, runra_obs._rollup_key('rollup_5m', event_type, label), '',
               %2$s, %4$L::boolean
        FROM facts GROUP BY 1, 2, 3, 4
    ), to_1h AS (
        INSERT INTO runra_obs.rollup_1h (bucket, event_type, label, agent_id, %3$s)
        SELECT date_bin('1 hour', created_at, timestamptz '2000-01-01 00:00+00'),
               event_type, label, agent_id, %2$s, %4$L::boolean
        FROM facts GROUP BY 1, 2, 3, 4
    )
    INSERT INTO runra_obs.rollup_1h_sandbox (bucket, sandbox_id, event_type, label, agent_id, %3$s)
    SELECT date_bin('1 hour', created_at, timestamptz '2000-01-01 00:00+00'),
           sandbox_id, event_type, runra_obs._rollup_key('rollup_1h_sandbox', event_type, label),
           agent_id, %2$s, %4$L::boolean
    FROM facts GROUP BY 1, 2, 3, 4, 5
    $f$, source, runra_obs._rollup_measures(false), runra_obs._rollup_columns(), compacted, first_ctes)
$$;
COMMENT ON FUNCTION runra_obs._rollup_fold_sql(text, boolean, text) IS
    'Internal: the one statement that folds events into all three rollup tables';

-- The trigger function is generated from the same statement, as static SQL
-- so that PL/pgSQL plans it once per session, not once per insert.
DO $do$
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION runra_obs._rollup_new_events()
        RETURNS trigger
        LANGUAGE plpgsql
        SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS %L$f$, format($body$
        BEGIN
            %s;
            RETURN NULL;
        END
        $body$, runra_obs._rollup_fold_sql('new_events AS e', false, $ctes$
        ingest AS (
            INSERT INTO runra_obs.ingest_1m (bucket, events, statements, delay_sum_s, delay_max_s)
            SELECT date_bin('1 minute', now(), timestamptz '2000-01-01 00:00+00'), count(*), 1,
                   coalesce(sum(extract(epoch FROM ingested_at - created_at)), 0),
                   coalesce(max(extract(epoch FROM ingested_at - created_at)), 0)
            FROM new_events
            HAVING count(*) > 0
        ),$ctes$)));
END
$do$;
COMMENT ON FUNCTION runra_obs._rollup_new_events() IS
    'Trigger: folds the events an insert statement stored into rollup delta rows, in the same transaction';

CREATE TRIGGER sandbox_events_rollup
    AFTER INSERT ON runra_obs.sandbox_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION runra_obs._rollup_new_events();

-- Maintenance and rebuilds change rollup rows one at a time.
CREATE FUNCTION runra_obs._rollup_lock()
RETURNS void
LANGUAGE sql
AS $$
    SELECT pg_advisory_xact_lock(hashtext('runra_obs.rollups'))
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
        runra_obs._rollup_columns(), runra_obs._rollup_measures(true))
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
        INSERT INTO runra_obs.ingest_1m (bucket, events, statements, delay_sum_s, delay_max_s, compacted)
        SELECT bucket, sum(events), sum(statements), sum(delay_sum_s), max(delay_max_s), true
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
BEGIN
    PERFORM runra_obs._rollup_lock();
    DELETE FROM runra_obs.rollup_1h WHERE bucket < long_horizon;
    GET DIAGNOSTICS n = ROW_COUNT; expired := expired + n;
    DELETE FROM runra_obs.rollup_1h_sandbox WHERE bucket < long_horizon;
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
    folded  bigint;
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
    -- One statement: the deletions and the recount see the same snapshot,
    -- so an insert committing meanwhile is counted once (by its own deltas).
    EXECUTE runra_obs._rollup_fold_sql(
        '(SELECT * FROM runra_obs.sandbox_events WHERE created_at >= $1 AND created_at < $2) AS e',
        true,
        'drop_5m AS (DELETE FROM runra_obs.rollup_5m WHERE bucket >= $1 AND bucket < $2),
         drop_1h AS (DELETE FROM runra_obs.rollup_1h WHERE bucket >= $1 AND bucket < $2),
         drop_sb AS (DELETE FROM runra_obs.rollup_1h_sandbox WHERE bucket >= $1 AND bucket < $2),')
    USING lower_h, upper_h;
    SELECT count(*) INTO folded FROM runra_obs.sandbox_events
    WHERE created_at >= lower_h AND created_at < upper_h;
    RETURN folded;
END
$$;
COMMENT ON FUNCTION runra_obs.rebuild_rollups(timestamptz, timestamptz) IS
    'Recounts the rollups of a window (widened to whole hours) from the raw events, in one statement; returns the events counted';
REVOKE ALL ON FUNCTION runra_obs.rebuild_rollups(timestamptz, timestamptz) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Privileges: the reader gets the measuring functions; internals, and above
-- all the SECURITY DEFINER trigger function (anyone who may execute it could
-- attach it to a table of their own and forge rollup rows), are the owner's.
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION
    runra_obs._rollup_new_events(),
    runra_obs._json_measure(jsonb),
    runra_obs._histogram_add(internal, double precision),
    runra_obs._histogram_merge(internal, bigint[]),
    runra_obs._histogram_final(internal),
    runra_obs._rollup_measures(boolean),
    runra_obs._rollup_columns(),
    runra_obs._rollup_key(text, text, text),
    runra_obs._rollup_fold_sql(text, boolean, text)
FROM PUBLIC;
REVOKE ALL ON FUNCTION
    runra_obs.json_numeric(jsonb),
    runra_obs.event_label(text, jsonb),
    runra_obs.event_agent(jsonb),
    runra_obs.event_failed(text, jsonb),
    runra_obs.event_cost(jsonb),
    runra_obs.event_duration_ms(text, jsonb),
    runra_obs.event_value(text, jsonb),
    runra_obs.event_limit(text, jsonb),
    runra_obs.duration_bucket(double precision),
    runra_obs.duration_bucket_lower(integer),
    runra_obs.duration_histogram(double precision),
    runra_obs.histogram_merge(bigint[]),
    runra_obs.histogram_percentile(bigint[], double precision),
    runra_obs.histogram_count(bigint[])
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    runra_obs.json_numeric(jsonb),
    runra_obs.event_label(text, jsonb),
    runra_obs.event_agent(jsonb),
    runra_obs.event_failed(text, jsonb),
    runra_obs.event_cost(jsonb),
    runra_obs.event_duration_ms(text, jsonb),
    runra_obs.event_value(text, jsonb),
    runra_obs.event_limit(text, jsonb),
    runra_obs.duration_bucket(double precision),
    runra_obs.duration_bucket_lower(integer),
    runra_obs.duration_histogram(double precision),
    runra_obs.histogram_merge(bigint[]),
    runra_obs.histogram_percentile(bigint[], double precision),
    runra_obs.histogram_count(bigint[])
TO runra_obs_reader;
