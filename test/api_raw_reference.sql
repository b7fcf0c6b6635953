-- The raw-only references of the SQL API functions that read rollups
-- (extension/parts/70_api_rollups.sql): the bodies of 20_analytics.sql,
-- over the raw helpers (_cost_events, _exec_events), which read events
-- only.  As pg_temp functions: sql/70_api_rollups.sql compares the API
-- with them, bench/rollapi.sh times both in one session.
CREATE FUNCTION pg_temp.ref_cost_per_sandbox(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (sandbox_id text, runtime_cost numeric, storage_cost numeric,
               total_cost numeric, runtime_ms numeric, reported_total_cost numeric)
LANGUAGE sql STABLE AS $$
    SELECT sums.sandbox_id, sums.runtime_cost, sums.storage_cost,
           sums.runtime_cost + sums.storage_cost, sums.runtime_ms, sums.reported_total_cost
    FROM (
        SELECT c.sandbox_id,
               coalesce(sum(c.runtime_cost), 0) AS runtime_cost,
               coalesce(sum(c.storage_cost), 0) AS storage_cost,
               coalesce(sum(c.runtime_ms), 0) AS runtime_ms,
               sum(c.reported_total_cost) AS reported_total_cost
        FROM runra_obs._cost_events(from_time, to_time) AS c
        GROUP BY c.sandbox_id
    ) AS sums
    ORDER BY 4 DESC, sums.sandbox_id
$$;
CREATE FUNCTION pg_temp.ref_cost_over_time(from_time timestamptz, to_time timestamptz, bucket interval)
RETURNS TABLE ("time" timestamptz, runtime_cost numeric, storage_cost numeric,
               total_cost numeric, reported_total_cost numeric, sandboxes bigint)
LANGUAGE sql STABLE AS $$
    SELECT sums."time", sums.runtime_cost, sums.storage_cost,
           sums.runtime_cost + sums.storage_cost, sums.reported_total_cost, sums.sandboxes
    FROM (
        SELECT runra_obs._bucket(bucket, c."time") AS "time",
               coalesce(sum(c.runtime_cost), 0) AS runtime_cost,
               coalesce(sum(c.storage_cost), 0) AS storage_cost,
               sum(c.reported_total_cost) AS reported_total_cost,
               count(DISTINCT c.sandbox_id) AS sandboxes
        FROM runra_obs._cost_events(from_time, to_time) AS c
        GROUP BY 1
    ) AS sums
    ORDER BY sums."time"
$$;
CREATE FUNCTION pg_temp.ref_error_rate(from_time timestamptz, to_time timestamptz, bucket interval)
RETURNS TABLE ("time" timestamptz, executions bigint, failures bigint,
               rate double precision, threshold double precision, above_threshold boolean)
LANGUAGE sql STABLE AS $$
    SELECT per_bucket."time", per_bucket.executions, per_bucket.failures,
           per_bucket.failures::double precision / per_bucket.executions,
           per_bucket.threshold,
           per_bucket.failures::double precision / per_bucket.executions > per_bucket.threshold
    FROM (
        SELECT runra_obs._bucket(bucket, o."time") AS "time",
               count(*) AS executions,
               count(*) FILTER (WHERE o.failed) AS failures,
               coalesce(nullif(current_setting('runra_obs.error_rate_threshold', true), '')::double precision,
                        0.05) AS threshold
        FROM runra_obs._exec_events(from_time, to_time) AS o
        GROUP BY 1
    ) AS per_bucket
    ORDER BY per_bucket."time"
$$;

