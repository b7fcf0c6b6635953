-- Rollups equal the raw aggregates: after a batch, after late events, after
-- a rolled-back insert, after compaction and after a rebuild.  Each time,
-- first the live views (the folded rows plus the events not folded yet,
-- exact without any fold), then the tables once fold_rollups() has done
-- what the rollup worker does each second (no worker runs here).
-- A database of its own, so that events other tests store do not count.
CREATE DATABASE rollups_regression;
\c rollups_regression
CREATE EXTENSION runra_obs;
SET timezone = 'UTC';


-- How many (bucket, keys) rows differ between the raw events, aggregated
-- here independently of the rollup code, and a rollup table.
CREATE FUNCTION pg_temp.rollup_diff(rollup text, width interval, per_sandbox boolean)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    sb text := CASE WHEN per_sandbox THEN 'sandbox_id,' ELSE '' END;
    -- the keys each table keeps (see runra_obs._rollup_key); a live view
    -- keeps those of its table
    tab text := regexp_replace(rollup, '_live$', '');
    label text := CASE tab
        WHEN 'runra_obs.rollup_5m' THEN 'CASE WHEN event_type ~ ''^exec\.'' THEN runra_obs.event_label(event_type, data) ELSE '''' END'
        WHEN 'runra_obs.rollup_1h' THEN 'runra_obs.event_label(event_type, data)'
        ELSE 'CASE WHEN event_type ~ ''^sandbox\.'' THEN runra_obs.event_label(event_type, data) ELSE '''' END' END;
    agent text := CASE tab WHEN 'runra_obs.rollup_5m' THEN '''''' ELSE 'coalesce(data->>''agentId'', '''')' END;
    n  bigint;
BEGIN
    EXECUTE format($q$
        WITH raw AS (
            SELECT date_bin(%2$L, created_at, timestamptz '2000-01-01') AS bucket, %3$s
                   event_type, %5$s AS label, %6$s AS agent_id,
                   count(*) AS events,
                   count(*) FILTER (WHERE runra_obs.event_failed(event_type, data)) AS failures,
                   sum(runra_obs.event_cost(event_type, data)) AS cost,
                   count(runra_obs.event_duration_ms(event_type, data)) AS duration_count,
                   sum(runra_obs.event_duration_ms(event_type, data)) AS duration_sum,
                   max(runra_obs.event_duration_ms(event_type, data)) AS duration_max,
                   runra_obs.duration_histogram(runra_obs.event_duration_ms(event_type, data)::float8) AS hist,
                   sum(runra_obs.event_value(event_type, data)) AS value_sum,
                   max(runra_obs.event_limit(event_type, data)) AS limit_max,
                   count(*) FILTER (WHERE runra_obs.event_value(event_type, data)
                                          > 0.9 * runra_obs.event_limit(event_type, data)) AS over_90
            FROM runra_obs.sandbox_events GROUP BY 1, 2, 3, 4 %4$s
        ), rolled AS (
            SELECT bucket, %3$s event_type, label, agent_id, sum(events), sum(failures), sum(cost),
                   sum(duration_count), sum(duration_sum), max(duration_max),
                   runra_obs.histogram_merge(duration_hist), sum(value_sum), max(limit_max), sum(over_90)
            FROM %1$s GROUP BY 1, 2, 3, 4 %4$s
        )
        SELECT (SELECT count(*) FROM (TABLE raw EXCEPT TABLE rolled) AS a)
             + (SELECT count(*) FROM (TABLE rolled EXCEPT TABLE raw) AS b)$q$,
        rollup, width, sb, CASE WHEN per_sandbox THEN ', 5' ELSE '' END, label, agent)
    INTO n;
    RETURN n;
END
$$;
CREATE FUNCTION pg_temp.diffs(suffix text) RETURNS text LANGUAGE sql AS $$
    SELECT format('5m:%s 1h:%s 1h_sandbox:%s',
                  pg_temp.rollup_diff('runra_obs.rollup_5m' || suffix, '5 minutes', false),
                  pg_temp.rollup_diff('runra_obs.rollup_1h' || suffix, '1 hour', false),
                  pg_temp.rollup_diff('runra_obs.rollup_1h_sandbox' || suffix, '1 hour', true))
$$;
CREATE FUNCTION pg_temp.all_diffs() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    live text := pg_temp.diffs('_live');
BEGIN
    PERFORM runra_obs.fold_rollups();
    RETURN format('live %s, folded %s, live again %s', live, pg_temp.diffs(''), pg_temp.diffs('_live'));
END
$$;

-- 600 events over two hours two days ago: five sandboxes, every family.
CREATE TEMP TABLE base AS SELECT date_trunc('hour', now()) - interval '2 days' AS t;
SELECT ingested, failed FROM runra_obs.ingest((
    SELECT jsonb_agg(jsonb_build_object(
        'timestamp', to_char(base.t + i * interval '12 seconds', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'sandboxId', 'sb_' || (i % 5),
        'type', (ARRAY['exec.completed', 'exec.timed_out', 'cost.runtime', 'cost.storage',
                       'resource.memory', 'tool.invoked', 'tool.failed', 'sandbox.started',
                       'sandbox.terminated', 'file.created'])[1 + i % 10],
        'data', jsonb_build_object(
            'command', 'cmd_' || (i % 3), 'exitCode', (i % 7 = 0)::int,
            'durationMs', (i * 37) % 5000, 'timeoutMs', 30000, 'cost', round(i / 1000.0, 4),
            'memoryUsedMb', 500 + i % 500, 'memoryLimitMb', 1000,
            'toolName', 'tool_' || (i % 4), 'agentId', 'agent_' || (i % 2),
            'startupDurationMs', 100 + i, 'reason', 'done', 'totalRuntimeMs', i * 1000,
            'sizeBytes', i)))
    FROM base, generate_series(0, 599) AS i));
SELECT pg_temp.all_diffs() AS after_batch;
SELECT sum(events) AS events_5m FROM runra_obs.rollup_5m;
SELECT sum(events) AS events_sandbox, count(DISTINCT sandbox_id) AS sandboxes FROM runra_obs.rollup_1h_sandbox;

-- Late events: ten days old, arriving now, in a statement of their own.
SELECT ingested FROM runra_obs.ingest((
    SELECT jsonb_agg(jsonb_build_object(
        'timestamp', to_char(base.t - interval '8 days' + i * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'sandboxId', 'sb_late', 'type', 'exec.completed',
        'data', jsonb_build_object('command', 'late', 'exitCode', 1, 'durationMs', i)))
    FROM base, generate_series(1, 30) AS i));
SELECT pg_temp.all_diffs() AS after_late_events;
SELECT sum(events) AS late_events, sum(failures) AS late_failures
FROM runra_obs.rollup_1h WHERE label = 'late';

-- A rolled-back insert is counted nowhere.
BEGIN;
SELECT ingested FROM runra_obs.ingest(jsonb_build_object(
    'timestamp', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'sandboxId', 'sb_ghost', 'type', 'exec.completed'));
-- (the live view shows the transaction its own events, as any query would)
SELECT count(*) AS ghost_rows_inside FROM runra_obs.rollup_1h_sandbox_live WHERE sandbox_id = 'sb_ghost';
ROLLBACK;
SELECT count(*) AS ghost_rows_after FROM runra_obs.rollup_1h_sandbox WHERE sandbox_id = 'sb_ghost';
SELECT pg_temp.all_diffs() AS after_rollback;

-- A rolled-back savepoint: its events are not counted, the rest of the
-- transaction's are.
BEGIN;
SAVEPOINT before_ghost;
SELECT ingested FROM runra_obs.ingest(jsonb_build_object(
    'timestamp', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'sandboxId', 'sb_ghost', 'type', 'exec.completed'));
ROLLBACK TO SAVEPOINT before_ghost;
SELECT ingested FROM runra_obs.ingest(jsonb_build_object(
    'timestamp', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'sandboxId', 'sb_kept', 'type', 'exec.completed'));
COMMIT;
SELECT sandbox_id, sum(events) AS events FROM runra_obs.rollup_1h_sandbox_live
WHERE sandbox_id IN ('sb_ghost', 'sb_kept') GROUP BY 1;
SELECT pg_temp.all_diffs() AS after_savepoint;

-- Several statements in one transaction, and a second batch into the same
-- buckets: several delta rows per key until compaction.
BEGIN;
SELECT ingested FROM runra_obs.ingest((
    SELECT jsonb_agg(jsonb_build_object(
        'timestamp', to_char(base.t + i * interval '12 seconds', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'sandboxId', 'sb_' || (i % 5), 'type', 'exec.completed',
        'data', jsonb_build_object('command', 'cmd_' || (i % 3), 'exitCode', 2, 'durationMs', '250',
                                   'agentId', 'agent_' || (i % 2))))
    FROM base, generate_series(0, 99) AS i));
SELECT ingested FROM runra_obs.ingest_jsonl(
    '{"timestamp":"' || to_char((SELECT t FROM base), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    || '","sandboxId":"sb_0","type":"cost.runtime","data":{"cost":"0.5","durationMs":"not a number"}}');
COMMIT;
SELECT pg_temp.all_diffs() AS after_second_batch;
SELECT count(*) > count(DISTINCT (bucket, event_type, label, agent_id)) AS has_deltas FROM runra_obs.rollup_5m;

-- Compaction leaves one row per key and the same figures.
SELECT runra_obs._maintain_rollups() ~ '^rollups: [1-9][0-9]* delta rows compacted away, 0 expired rows dropped$' AS compacted;
SELECT pg_temp.all_diffs() AS after_compaction;
SELECT count(*) = count(DISTINCT (bucket, event_type, label, agent_id)) AS one_row_per_key,
       bool_and(compacted) AS all_compacted
FROM runra_obs.rollup_5m;
SELECT count(*) = count(DISTINCT (bucket, sandbox_id, event_type, label, agent_id)) AS one_row_per_key_sandbox
FROM runra_obs.rollup_1h_sandbox;
SELECT sum(events) AS ingest_events, sum(transactions) AS ingest_transactions FROM runra_obs.ingest_1m;

-- Rebuild: damage a window, rebuild it from raw events in one call.
DELETE FROM runra_obs.rollup_1h WHERE bucket = (SELECT t FROM base);
UPDATE runra_obs.rollup_1h_sandbox SET events = events + 1000 WHERE bucket = (SELECT t + interval '1 hour' FROM base);
SELECT pg_temp.diffs('') <> '5m:0 1h:0 1h_sandbox:0' AS damaged;
SELECT runra_obs.rebuild_rollups(t + interval '10 minutes', t + interval '70 minutes') AS rebuilt_events FROM base;
SELECT pg_temp.all_diffs() AS after_rebuild;
-- Not before the oldest partition: there are no raw events left to count.
DO $$
BEGIN
    PERFORM runra_obs.rebuild_rollups(now() - interval '1 year', now());
EXCEPTION WHEN invalid_parameter_value THEN
    RAISE NOTICE 'refused: %', SQLERRM ~ '^cannot rebuild rollups from .*: raw events are kept only from ';
END
$$;

-- Percentiles from merged histograms fall in the bucket of the exact ones.
SELECT r.label,
       runra_obs.duration_bucket(runra_obs.histogram_percentile(r.h, 0.5)) = runra_obs.duration_bucket(x.p50) AS p50_ok,
       runra_obs.duration_bucket(runra_obs.histogram_percentile(r.h, 0.95)) = runra_obs.duration_bucket(x.p95) AS p95_ok,
       runra_obs.duration_bucket(runra_obs.histogram_percentile(r.h, 0.99)) = runra_obs.duration_bucket(x.p99) AS p99_ok,
       runra_obs.histogram_count(r.h) = x.n AS count_ok,
       abs(runra_obs.histogram_percentile(r.h, 0.95) / x.p95 - 1) < 0.091 AS within_9_percent
FROM (SELECT label, runra_obs.histogram_merge(duration_hist) AS h
      FROM runra_obs.rollup_1h WHERE event_type = 'exec.completed' GROUP BY label) AS r
JOIN (SELECT data->>'command' AS label, count(*) AS n,
             percentile_disc(0.5) WITHIN GROUP (ORDER BY (data->>'durationMs')::float8) AS p50,
             percentile_disc(0.95) WITHIN GROUP (ORDER BY (data->>'durationMs')::float8) AS p95,
             percentile_disc(0.99) WITHIN GROUP (ORDER BY (data->>'durationMs')::float8) AS p99
      FROM runra_obs.sandbox_events WHERE event_type = 'exec.completed' GROUP BY 1) AS x USING (label)
ORDER BY 1;

-- Histogram edges: four buckets per doubling, below 1 ms is bucket 0.
SELECT runra_obs.duration_bucket(0) AS b0, runra_obs.duration_bucket(0.99) AS b099,
       runra_obs.duration_bucket(1) AS b1, runra_obs.duration_bucket(2) AS b2,
       runra_obs.duration_bucket(1024) AS b1024, runra_obs.duration_bucket_lower(41) AS lower41,
       runra_obs.duration_bucket(1e30) AS top;
SELECT runra_obs.histogram_merge(h) AS merged
FROM (VALUES ('[3:4]={1,2}'::bigint[]), ('[1:1]={5}'), (NULL)) AS v(h);
SELECT runra_obs.histogram_percentile('[3:4]={1,3}', 0.25) = runra_obs.histogram_percentile('{0,0,1}', 1) AS rank_1,
       runra_obs.histogram_percentile('{}', 0.5) AS empty;
SELECT runra_obs.histogram_percentile('{1}', 1.5);
SELECT runra_obs.histogram_merge(h) FROM (VALUES ('[500:500]={1}'::bigint[])) AS v(h);
-- counts never wrap around: past int64 is an error, not a small number
SELECT runra_obs.histogram_merge(h) FROM (VALUES ('{9223372036854775807}'::bigint[]), ('{1}')) AS v(h);
SELECT runra_obs.histogram_percentile('{9223372036854775807,1}', 0.5);

-- total() sums as sum() does, per group, exactly; NULL without values.
SELECT g, runra_obs.total(x) AS total, sum(x) AS sum, runra_obs.total(x) = sum(x) AS same
FROM (VALUES (1, 0.1), (1, 0.2), (1, 1e-20), (2, NULL::numeric), (3, 'NaN'), (3, 1), (4, 5)) AS v(g, x)
GROUP BY g ORDER BY g;
SELECT runra_obs.total(x) AS no_rows FROM (SELECT 1::numeric WHERE false) AS v(x);
SELECT runra_obs.total(n) AS bigint_total, pg_typeof(runra_obs.total(n)) AS type
FROM (VALUES (1::bigint), (NULL), (41)) AS v(n);
-- past int64 is an error, not a wrapped number
SELECT runra_obs.total(n) FROM (VALUES (9223372036854775807::bigint), (1)) AS v(n);
-- in parts (as parallel workers and Citus combine them), the same sum
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
CREATE TABLE total_parts AS SELECT i, (i % 7) * 0.001 AS x FROM generate_series(1, 20000) AS i;
ANALYZE total_parts;
EXPLAIN (COSTS OFF) SELECT runra_obs.total(x), runra_obs.total(i::bigint) FROM total_parts;
SELECT runra_obs.total(x) = sum(x) AS parallel_same, runra_obs.total(i::bigint) = sum(i) AS bigint_same
FROM total_parts;
DROP TABLE total_parts;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;

-- Odd data never fails an insert: numbers that do not fit, strings, arrays.
SELECT runra_obs.json_numeric('"0.25"') AS from_string, runra_obs.json_numeric('" -.5e-3 "') AS spaced,
       runra_obs.json_numeric('"1e400"') AS too_big, runra_obs.json_numeric('-1e30') AS limit,
       runra_obs.json_numeric('[1]') AS array_value, runra_obs.json_numeric('"12abc"') AS not_a_number,
       runra_obs.json_numeric('1e5') AS exponent, runra_obs.json_numeric('true') AS boolean,
       runra_obs.event_duration_ms('exec.completed', '{"durationMs": "1e29"}')::float8 AS big_fits_float8;
-- ... and an insert with such values is stored and counted.
SELECT ingested FROM runra_obs.ingest(jsonb_build_object(
    'timestamp', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'sandboxId', 'sb_odd', 'type', 'exec.completed',
    'data', jsonb_build_object('durationMs', 1e400, 'exitCode', 'x', 'cost', '1e999', 'command', jsonb_build_array(1))));
SELECT events, failures, cost, duration_count, label FROM runra_obs.rollup_1h_sandbox_live WHERE sandbox_id = 'sb_odd';

-- Retention: hourly rows past runra_obs.rollup_retention go, newer stay.
INSERT INTO runra_obs.rollup_1h (bucket, event_type, label, agent_id, events, failures,
                                 duration_count, value_count, over_90, compacted)
VALUES (now() - interval '401 days', 'exec.completed', '', '', 1, 0, 0, 0, 0, true),
       (now() - interval '399 days', 'exec.completed', '', '', 1, 0, 0, 0, 0, true);
SELECT runra_obs._maintain_rollups() ~ '^rollups: [0-9]+ delta rows compacted away, 1 expired rows dropped$' AS maintenance;
SELECT count(*) AS old_rows_left FROM runra_obs.rollup_1h WHERE bucket < now() - interval '300 days';

-- Readers read rollups; they cannot rebuild or maintain them.
SET ROLE runra_obs_reader;
SELECT sum(events) > 0 AS reader_reads FROM runra_obs.rollup_1h_sandbox;
SELECT sum(events) > 0 AS reader_reads_live FROM runra_obs.rollup_1h_sandbox_live;
SELECT runra_obs.total(cost) > 0 AS reader_totals FROM runra_obs.rollup_1h_sandbox;
SELECT runra_obs.rebuild_rollups(now() - interval '1 hour', now());
SELECT runra_obs.fold_rollups();
SELECT runra_obs._maintain_rollups();
RESET ROLE;

\c contrib_regression
DROP DATABASE rollups_regression;
