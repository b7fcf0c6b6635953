-- cost_per_sandbox, cost_over_time and error_rate read whole hours (or
-- 5 minutes) from the rollups and the ragged edges from raw events: they
-- must give exactly the figures of a raw-only computation, for aligned,
-- unaligned, across-midnight, short and unbounded windows, with odd data,
-- late events and before and after compaction.
-- A database of its own, so that events other tests store do not count.
CREATE DATABASE api_rollups_regression;
\c api_rollups_regression
CREATE EXTENSION runra_obs;
SET timezone = 'UTC';

-- The raw-only references pg_temp.ref_cost_per_sandbox, ref_cost_over_time
-- and ref_error_rate (shared with bench/rollapi.sh).
\i test/api_raw_reference.sql

-- Events: anchor is a UTC midnight at least two days ago that is a whole
-- number of weeks after the buckets' origin (2000-01-01 00:00 UTC), so that
-- every bucket grid below meets it at the same phase whatever today's date
-- is (a day is not a whole number of 7-minute buckets; a week is).  Events
-- from 14 hours before it to 13 hours after, at odd seconds and
-- microseconds, so that every hour and every window edge has events on both
-- sides.  The data holds what a second definition of a fact would read
-- differently: exitCode missing, "x", " 0", "0", 0.0; costs as strings, "abc",
-- 1e40, only sandboxCost on a cost.runtime, a cost on a cost.total;
-- durationMs with five decimals.
CREATE TEMP TABLE anchor AS
    SELECT date_bin('7 days', now() - interval '2 days', timestamptz '2000-01-01 00:00+00') AS t;
GRANT SELECT ON anchor TO runra_obs_reader;
CREATE FUNCTION pg_temp.t(since_anchor interval) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT t + since_anchor FROM anchor $$;
CREATE FUNCTION pg_temp.batch(first_i integer, last_i integer, shift interval) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_agg(jsonb_build_object(
        'timestamp', to_char(pg_temp.t('-14 hours') + shift + i * interval '61.000123 seconds',
                             'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'sandboxId', 'sb_' || (i % 7),
        'type', (ARRAY['exec.completed', 'exec.failed', 'exec.timed_out', 'exec.started',
                       'cost.runtime', 'cost.storage', 'cost.total', 'exec.completed',
                       'resource.memory', 'cost.runtime', 'exec.completed'])[1 + i % 11],
        'data', jsonb_build_object(
            'command', 'cmd_' || (i % 3),
            'exitCode', (ARRAY['0', '1', '"x"', '" 0"', '"0"', '0.0', 'null', '2', '0', '0', '"+1"'])[1 + i % 13]::jsonb,
            'durationMs', (ARRAY['1.23456', '"250"', '"fast"', '1e40', '17'])[1 + i % 5]::jsonb,
            'cost', (ARRAY['0.0012', '"0.5"', '"abc"', '1e40', '3'])[1 + i % 17 % 5]::jsonb,
            'sandboxCost', round(i / 1000.0, 5))
            - CASE WHEN i % 19 = 0 THEN 'cost' ELSE '' END
            - CASE WHEN i % 23 = 0 THEN 'exitCode' ELSE '' END))
    FROM generate_series(first_i, last_i) AS i
$$;
SELECT ingested, failed FROM runra_obs.ingest(pg_temp.batch(0, 1599, '0'));
-- The rollup worker folds these (none runs here, so fold_rollups() does).
SELECT runra_obs.fold_rollups() > 0 AS folded;
-- Late events, in a statement of their own: the same hours again, shifted,
-- folded apart (so the same keys get a second delta row).
SELECT ingested, failed FROM runra_obs.ingest(pg_temp.batch(0, 399, '17 minutes 3.5 seconds'));
SELECT runra_obs.fold_rollups() > 0 AS folded_late;
-- The events below are left unfolded, so the functions read the rollups,
-- the events after the rollup consumer's position and the raw edges.
-- Events on the hour exactly, and the microsecond before.
SELECT ingested, failed FROM runra_obs.ingest((
    SELECT jsonb_agg(jsonb_build_object(
        'timestamp', to_char(pg_temp.t(h * interval '1 hour') - d * interval '1 microsecond',
                             'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'sandboxId', 'sb_edge', 'type', ty,
        'data', jsonb_build_object('cost', 1, 'durationMs', 10, 'exitCode', 1, 'sandboxCost', 2)))
    FROM generate_series(-10, 10) AS h, generate_series(0, 1) AS d,
         unnest(ARRAY['exec.completed', 'cost.runtime', 'cost.total']) AS ty));

-- The windows (offsets from the anchor; NULL is unbounded) and buckets.
CREATE TEMP TABLE windows (name text, from_time timestamptz, to_time timestamptz);
INSERT INTO windows VALUES
    ('aligned 24 h',            pg_temp.t('-12 hours'), pg_temp.t('12 hours')),
    ('unaligned across midnight', pg_temp.t('-11:37:12.5'), pg_temp.t('9:03:00.000007')),
    ('unaligned same day',      pg_temp.t('1:00:00.000001'), pg_temp.t('7:59:59.999999')),
    ('exactly 3 h',             pg_temp.t('-1:30'), pg_temp.t('1:30')),
    ('2 h 59 min',              pg_temp.t('-1:29'), pg_temp.t('1:30')),
    ('40 min across midnight',  pg_temp.t('-0:20'), pg_temp.t('0:20')),
    ('one hour aligned',        pg_temp.t('2:00'), pg_temp.t('3:00')),
    ('open start',              NULL, pg_temp.t('5:17:01')),
    ('open end',                pg_temp.t('-3:03'), NULL),
    ('unbounded',               NULL, NULL),
    ('inverted',                pg_temp.t('5:00'), pg_temp.t('-5:00'));
CREATE TEMP TABLE buckets (bucket interval);
INSERT INTO buckets VALUES ('5 minutes'), ('15 minutes'), ('1 hour'), ('90 minutes'), ('1 day'),
                           ('7 minutes'), ('30 seconds');
-- Each bucket divides a week, or the row counts below would depend on the
-- date (see the anchor): no rows.
SELECT bucket AS bucket_not_dividing_a_week FROM buckets
WHERE extract(epoch FROM interval '7 days') % extract(epoch FROM bucket) <> 0;

-- Every window and bucket: whether each function's rows, as text and in
-- order, are the reference's, and how many rows there were.
-- Each call is planned with its window as constants, as a dashboard's
-- query is (a LATERAL call would plan them as parameters of a join).
CREATE FUNCTION pg_temp.compare() RETURNS TABLE (fn text, cases bigint, same bigint, rows_compared bigint)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    got text[];
    want text[];
BEGIN
    FOR c IN
        SELECT 'cost_per_sandbox' AS f, format('%L::timestamptz, %L::timestamptz', w.from_time, w.to_time) AS args
        FROM windows AS w
        UNION ALL
        SELECT f.f, format('%L::timestamptz, %L::timestamptz, %L::interval', w.from_time, w.to_time, k.bucket)
        FROM windows AS w, buckets AS k, (VALUES ('cost_over_time'), ('error_rate')) AS f(f)
        ORDER BY 1
    LOOP
        EXECUTE format('SELECT array_agg(x::text) FROM runra_obs.%s(%s) AS x', c.f, c.args) INTO got;
        EXECUTE format('SELECT array_agg(x::text) FROM pg_temp.ref_%s(%s) AS x', c.f, c.args) INTO want;
        fn := c.f;
        cases := 1;
        same := (got IS NOT DISTINCT FROM want)::int;
        rows_compared := coalesce(cardinality(got), 0);
        RETURN NEXT;
    END LOOP;
END
$$;
CREATE FUNCTION pg_temp.compare_all() RETURNS TABLE (fn text, cases numeric, same numeric, rows_compared numeric)
LANGUAGE sql AS $$
    SELECT fn, sum(cases), sum(same), sum(rows_compared) FROM pg_temp.compare() GROUP BY fn ORDER BY fn
$$;
SELECT * FROM pg_temp.compare_all();

-- Figures of one long window, to read by hand against the reference.
SELECT sandbox_id, runtime_cost, storage_cost, reported_total_cost, runtime_ms
FROM runra_obs.cost_per_sandbox(pg_temp.t('-11:37:12.5'), pg_temp.t('9:03:00.000007'))
WHERE sandbox_id IN ('sb_0', 'sb_edge');
SELECT sum(executions) AS executions, sum(failures) AS failures
FROM runra_obs.error_rate(pg_temp.t('-11:37:12.5'), pg_temp.t('9:03:00.000007'), '1 hour');

-- The long windows do read the rollups, the short ones only raw events:
-- a forged rollup row shows in the first and not in the second.
BEGIN;
INSERT INTO runra_obs.rollup_1h_sandbox (bucket, sandbox_id, event_type, label, agent_id, events, failures,
                                         cost, duration_count, value_count, over_90)
VALUES (pg_temp.t('2:00'), 'sb_forged', 'cost.runtime', '', '', 1, 0, 1000, 0, 0, 0);
INSERT INTO runra_obs.rollup_1h (bucket, event_type, label, agent_id, events, failures,
                                 duration_count, value_count, over_90)
VALUES (pg_temp.t('2:00'), 'exec.failed', '', '', 1000, 1000, 0, 0, 0);
INSERT INTO runra_obs.rollup_5m (bucket, event_type, label, agent_id, events, failures,
                                 duration_count, value_count, over_90)
VALUES (pg_temp.t('2:05'), 'exec.failed', '', '', 1000, 1000, 0, 0, 0);
SELECT fn, cases - same AS differing FROM pg_temp.compare_all();
SELECT (SELECT count(*) FROM runra_obs.cost_per_sandbox(pg_temp.t('-12:00'), pg_temp.t('12:00'))
        WHERE sandbox_id = 'sb_forged') AS forged_long,
       (SELECT count(*) FROM runra_obs.cost_per_sandbox(pg_temp.t('2:00'), pg_temp.t('3:00'))
        WHERE sandbox_id = 'sb_forged') AS forged_one_hour;
ROLLBACK;

-- After compaction: the same figures.
SELECT runra_obs._maintain_rollups() ~ '^rollups: [1-9][0-9]* delta rows compacted away' AS compacted;
SELECT * FROM pg_temp.compare_all();

-- With every event folded: the same figures.
SELECT runra_obs.fold_rollups() > 0 AS folded_all;
SELECT * FROM pg_temp.compare_all();

-- The reader can call them (the helpers are granted).
SET ROLE runra_obs_reader;
SELECT count(*) > 0 AS reader_costs FROM runra_obs.cost_per_sandbox(pg_temp.t('-12:00'), pg_temp.t('12:00'));
SELECT count(*) > 0 AS reader_hours FROM runra_obs.cost_over_time(pg_temp.t('-12:00'), pg_temp.t('12:00'), '1 hour');
SELECT count(*) > 0 AS reader_errors FROM runra_obs.error_rate(pg_temp.t('-12:00'), pg_temp.t('12:00'));
RESET ROLE;

\c contrib_regression
DROP DATABASE api_rollups_regression;
