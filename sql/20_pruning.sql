-- The analyst's SQL API is planned so that a one-hour window touches one
-- day partition: the functions are inlined into the calling query, so the
-- window bounds prune partitions whether they are constants (at plan time),
-- now()-relative expressions (at executor start-up) or the parameters of a
-- generic prepared plan (at executor start-up).
BEGIN;
\i test/analytics_fixture.sql

-- The distinct day partitions a query's plan touches, in order.
CREATE FUNCTION pg_temp.partitions(query text)
RETURNS text[]
LANGUAGE plpgsql
AS $$
DECLARE
    line  text;
    found text[] := '{}';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
        found := found || ARRAY(SELECT m[1] FROM regexp_matches(line, '\m(sandbox_events_\d{8})\M', 'g') AS m);
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT unnest(found) ORDER BY 1);
END
$$;

-- The name of the partition holding an instant.
CREATE FUNCTION pg_temp.day(at timestamptz)
RETURNS text
LANGUAGE sql
AS $$ SELECT 'sandbox_events_' || to_char(at AT TIME ZONE 'UTC', 'YYYYMMDD') $$;

-- "the window's day" when a plan touches only the partition of [10:00, 11:00),
-- else how many it touches.
CREATE FUNCTION pg_temp.pruned(query text)
RETURNS text
LANGUAGE sql
AS $$
    SELECT CASE WHEN pg_temp.partitions(query) = ARRAY[pg_temp.day(pg_temp.t('10:00'))]
                THEN 'the window''s day'
                ELSE cardinality(pg_temp.partitions(query)) || ' partitions'
           END
$$;

-- Whether the function and its helpers were inlined: no function scan and
-- no call of a runra_obs function is left in the plan, but the live views'
-- _rollup_rows() (the rollup rows of the events not folded yet),
-- json_numeric() and _shift(), which are C (the SQL functions around them
-- are inlined).
CREATE FUNCTION pg_temp.inlined(query text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF, VERBOSE) ' || query LOOP
        line := regexp_replace(line, 'Function Scan on runra_obs\._rollup_rows u|runra_obs\.(_rollup_rows|json_numeric|_shift)\(', '', 'g');
        IF line ~ 'Function Scan' OR line ~ 'runra_obs\.\w+\(' THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END
$$;

-- Each function over [10:00, 11:00) of the anchor day, called three ways.
CREATE TEMP TABLE calls (fn text, args text);
INSERT INTO calls VALUES
    ('cost_per_sandbox', '%s, %s'),
    ('cost_over_time', '%s, %s, ''5 minutes'''),
    ('slow_execs', '5000, %s, %s, 100'),
    ('exec_latency', '%s, %s'),
    ('error_rate', '%s, %s'),
    ('top_failing_commands', '%s, %s, 10'),
    ('resource_alerts', '90, %s, %s');

-- Prepared statements with the window as parameters, planned generically
-- (as drivers do after a few executions), named after the function.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM calls LOOP
        EXECUTE format('PREPARE %I(timestamptz, timestamptz) AS SELECT * FROM runra_obs.%I(%s)',
                       c.fn, c.fn, format(c.args, '$1', '$2'));
    END LOOP;
END
$$;
SET LOCAL plan_cache_mode = force_generic_plan;

SELECT c.fn,
       pg_temp.pruned(format('SELECT * FROM runra_obs.%s(%s)', c.fn,
                             format(c.args, quote_literal(pg_temp.t('10:00')) || '::timestamptz',
                                            quote_literal(pg_temp.t('11:00')) || '::timestamptz'))) AS constants,
       pg_temp.pruned(format('SELECT * FROM runra_obs.%s(%s)', c.fn,
                             format(c.args, 'date_trunc(''day'', now(), ''UTC'') - interval ''14 hours''',
                                            'date_trunc(''day'', now(), ''UTC'') - interval ''13 hours'''))) AS now_relative,
       pg_temp.pruned(format('EXECUTE %s(%L, %L)', c.fn, pg_temp.t('10:00'), pg_temp.t('11:00'))) AS generic_plan,
       pg_temp.inlined(format('SELECT * FROM runra_obs.%s(%s)', c.fn, format(c.args, 'now()', 'now()'))) AS inlined
FROM calls AS c
ORDER BY c.fn;

-- A one-hour window across UTC midnight touches the two days, and only them.
SELECT pg_temp.partitions(format('SELECT * FROM runra_obs.slow_execs(5000, %L, %L)',
                                 pg_temp.t('23:30'), pg_temp.t('24:30')))
       = ARRAY[pg_temp.day(pg_temp.t('23:30')), pg_temp.day(pg_temp.t('24:30'))] AS across_midnight;

-- Without a window there is nothing to prune: the whole store is read
-- (33 to 35 day partitions, see 00_setup), so the checks above can fail.
SELECT cardinality(pg_temp.partitions('SELECT * FROM runra_obs.slow_execs(5000, NULL, NULL)'))
       BETWEEN 33 AND 35 AS unbounded_reads_all;

ROLLBACK;
