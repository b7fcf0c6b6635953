-- ===========================================================================
-- The SQL API over rollups: cost_per_sandbox, cost_over_time and error_rate
-- read the whole rollup buckets of a long window from the rollup tables and
-- the raw events only for the ragged edges, with the same figures as the
-- raw-only versions of 20_analytics.sql.
--
-- Why here and not in 20_analytics.sql with the rest of the API: BEGIN
-- ATOMIC bodies are parsed when created, so they can name the rollup
-- tables only after 60_rollups.sql.  Signatures, results, comments and
-- grants are those the functions had there; the raw-only bodies they had
-- are kept as the reference the tests compare with
-- (test/api_raw_reference.sql).
--
-- How the window is split, for a rollup of width w (1 hour, or 5 minutes
-- where a 5-minute rollup can serve the buckets asked for):
--
--     from_time   lo = from_time rounded up to w    hi = to_time rounded down   to_time
--        |-- raw --|========== rollup buckets [lo, hi) =========|--- raw ---|
--
-- A window shorter than 3 hours (or whose buckets no rollup can serve)
-- gets lo = hi = to_time: it is read raw, as before, and prunes to its
-- partitions.  Rollup buckets start on the same UTC origin as _bucket(),
-- so a rollup bucket lies in exactly one output bucket whenever the output
-- bucket width is a multiple of w.
--
-- Why the figures are the same: the whole buckets are read from the live
-- views (rollup_1h_live and the others: the folded rows plus the events
-- after the rollup consumer's position, 60_rollups.sql), which count every
-- committed event once, late ones too; the rollups and the raw edges read
-- the same facts (15_event_facts.sql: failed, cost, duration).  Sums of
-- numeric are exact and associative, NULL-only parts stay NULL, so summing
-- per-bucket sums gives the figure summing the events gives.

-- Still LANGUAGE sql, STABLE, BEGIN ATOMIC and without SET, so they are
-- inlined as before and the raw edges prune partitions.
-- ===========================================================================

-- The rollup width that can serve output buckets of a given width: 1 hour
-- for multiples of an hour, 5 minutes (only where finest allows it) for
-- multiples of 5 minutes, NULL (read raw) for anything else.
CREATE FUNCTION runra_obs._rollup_width(bucket interval, finest interval)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE
               WHEN bucket <= interval '0' THEN NULL
               WHEN extract(epoch FROM bucket) % 3600 = 0 THEN interval '1 hour'
               WHEN finest = interval '5 minutes' AND extract(epoch FROM bucket) % 300 = 0
               THEN interval '5 minutes'
           END;
END;
COMMENT ON FUNCTION runra_obs._rollup_width(interval, interval) IS
    'Internal: the rollup width (1 hour, or 5 minutes if finest allows) whose buckets each fall in one bucket of the given width; NULL when none does';

-- An instant moved by a span of hours, minutes and seconds, IMMUTABLE
-- where timestamptz + interval is STABLE (src/rollup/time_shift.c), so
-- that the bounds below fold into constants at plan time when the window
-- is given as constants: each raw edge then prunes its partitions when it
-- is planned, which on Citus every worker does for each of its shards.
CREATE FUNCTION runra_obs._shift(instant timestamptz, span interval)
RETURNS timestamptz
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_shift';
COMMENT ON FUNCTION runra_obs._shift(timestamptz, interval) IS
    'Internal: instant + span for a span of hours, minutes and seconds (an error for days or months), IMMUTABLE';

-- Where the whole rollup buckets of width w in [from_time, to_time) begin:
-- from_time rounded up to w; to_time when the window is read raw (shorter
-- than 3 hours, or w NULL); -infinity for an unbounded start.
CREATE FUNCTION runra_obs._rollup_lo(from_time timestamptz, to_time timestamptz, w interval)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE
               WHEN w IS NULL
                 OR coalesce(to_time, 'infinity') < runra_obs._shift(coalesce(from_time, '-infinity'), interval '3 hours')
               THEN coalesce(to_time, 'infinity')
               -- rounding up: the bucket of the last microsecond before from_time + w
               ELSE date_bin(w, runra_obs._shift(coalesce(from_time, '-infinity'), w - interval '1 microsecond'),
                             timestamptz '2000-01-01 00:00:00+00')
           END;
END;
COMMENT ON FUNCTION runra_obs._rollup_lo(timestamptz, timestamptz, interval) IS
    'Internal: start of the whole rollup buckets of width w in [from_time, to_time); to_time when the window is read raw';

-- Where they end: to_time rounded down to w; to_time when read raw.  (With
-- w at most an hour and the window at least 3 hours, lo < hi.)
CREATE FUNCTION runra_obs._rollup_hi(from_time timestamptz, to_time timestamptz, w interval)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE
               WHEN w IS NULL
                 OR coalesce(to_time, 'infinity') < runra_obs._shift(coalesce(from_time, '-infinity'), interval '3 hours')
               THEN coalesce(to_time, 'infinity')
               ELSE date_bin(w, coalesce(to_time, 'infinity'), timestamptz '2000-01-01 00:00:00+00')
           END;
END;
COMMENT ON FUNCTION runra_obs._rollup_hi(timestamptz, timestamptz, interval) IS
    'Internal: end of the whole rollup buckets of width w in [from_time, to_time); to_time when the window is read raw';

-- ---------------------------------------------------------------------------
-- Costs: the raw edges through _cost_events, the whole hours from
-- rollup_1h_sandbox (cost_over_time counts sandboxes, so it needs the
-- per-sandbox rows, and reads raw when its buckets are not whole hours).
-- ---------------------------------------------------------------------------

-- The cost rows of the window: the events of the edges one by one, the
-- hours in between as one row per rollup row, in the columns of _cost_events.
CREATE FUNCTION runra_obs._cost_parts(from_time timestamptz, to_time timestamptz, w interval)
RETURNS TABLE ("time" timestamptz, sandbox_id text, runtime_cost numeric, storage_cost numeric,
               reported_total_cost numeric, runtime_ms numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT c."time", c.sandbox_id, c.runtime_cost, c.storage_cost, c.reported_total_cost, c.runtime_ms
    FROM runra_obs._cost_events(from_time, runra_obs._rollup_lo(from_time, to_time, w)) AS c
    UNION ALL
    SELECT c."time", c.sandbox_id, c.runtime_cost, c.storage_cost, c.reported_total_cost, c.runtime_ms
    FROM runra_obs._cost_events(runra_obs._rollup_hi(from_time, to_time, w), to_time) AS c
    UNION ALL
    SELECT r.bucket,
           r.sandbox_id,
           CASE WHEN r.event_type = 'cost.runtime' THEN r.cost END,
           CASE WHEN r.event_type = 'cost.storage' THEN r.cost END,
           CASE WHEN r.event_type = 'cost.total' THEN r.cost END,
           CASE WHEN r.event_type = 'cost.runtime' THEN r.duration_sum END
    FROM runra_obs._rollup_1h_sandbox_live(runra_obs._rollup_lo(from_time, to_time, w),
                                           runra_obs._rollup_hi(from_time, to_time, w),
                                           ARRAY['cost.runtime', 'cost.storage', 'cost.total']) AS r
    WHERE w = interval '1 hour';
END;
COMMENT ON FUNCTION runra_obs._cost_parts(timestamptz, timestamptz, interval) IS
    'Internal: the cost rows of [from_time, to_time): raw cost events at the edges, rollup_1h_sandbox rows for the whole hours (w = 1 hour; any other w reads raw)';

CREATE FUNCTION runra_obs.cost_per_sandbox(from_time timestamptz DEFAULT now() - interval '24 hours',
                                                      to_time timestamptz DEFAULT now())
RETURNS TABLE (sandbox_id text, runtime_cost numeric, storage_cost numeric,
               total_cost numeric, runtime_ms numeric, reported_total_cost numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT sums.sandbox_id,
           sums.runtime_cost,
           sums.storage_cost,
           sums.runtime_cost + sums.storage_cost,
           sums.runtime_ms,
           sums.reported_total_cost
    FROM (
        SELECT c.sandbox_id,
               coalesce(sum(c.runtime_cost), 0) AS runtime_cost,
               coalesce(sum(c.storage_cost), 0) AS storage_cost,
               coalesce(sum(c.runtime_ms), 0) AS runtime_ms,
               sum(c.reported_total_cost) AS reported_total_cost
        FROM runra_obs._cost_parts(from_time, to_time, interval '1 hour') AS c
        GROUP BY c.sandbox_id
    ) AS sums
    ORDER BY 4 DESC, sums.sandbox_id;
END;
COMMENT ON FUNCTION runra_obs.cost_per_sandbox(timestamptz, timestamptz) IS
    'Per sandbox in [from_time, to_time): cost.runtime and cost.storage costs, their sum, runtime ms, and the cost.total the sandbox reported (never added to total_cost); whole hours of windows of 3 hours or more are read from rollup_1h_sandbox';

CREATE FUNCTION runra_obs.cost_over_time(from_time timestamptz DEFAULT now() - interval '24 hours',
                                                    to_time timestamptz DEFAULT now(),
                                                    bucket interval DEFAULT '1 hour')
RETURNS TABLE ("time" timestamptz, runtime_cost numeric, storage_cost numeric,
               total_cost numeric, reported_total_cost numeric, sandboxes bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT sums."time",
           sums.runtime_cost,
           sums.storage_cost,
           sums.runtime_cost + sums.storage_cost,
           sums.reported_total_cost,
           sums.sandboxes
    FROM (
        SELECT runra_obs._bucket(bucket, c."time") AS "time",
               coalesce(sum(c.runtime_cost), 0) AS runtime_cost,
               coalesce(sum(c.storage_cost), 0) AS storage_cost,
               sum(c.reported_total_cost) AS reported_total_cost,
               count(DISTINCT c.sandbox_id) AS sandboxes
        FROM runra_obs._cost_parts(from_time, to_time,
                                   runra_obs._rollup_width(cost_over_time.bucket, interval '1 hour')) AS c
        GROUP BY 1
    ) AS sums
    ORDER BY sums."time";
END;
COMMENT ON FUNCTION runra_obs.cost_over_time(timestamptz, timestamptz, interval) IS
    'Per time bucket in [from_time, to_time): cost.runtime and cost.storage costs, their sum, the reported cost.total, and how many sandboxes sent cost events; with buckets of whole hours, the whole hours of windows of 3 hours or more are read from rollup_1h_sandbox';

-- ---------------------------------------------------------------------------
-- Error rate: executions and failures per bucket, the whole buckets from
-- rollup_1h (buckets of whole hours) or rollup_5m (of whole 5 minutes).
-- ---------------------------------------------------------------------------

CREATE FUNCTION runra_obs.error_rate(from_time timestamptz DEFAULT now() - interval '24 hours',
                                                to_time timestamptz DEFAULT now(),
                                                bucket interval DEFAULT '5 minutes')
RETURNS TABLE ("time" timestamptz, executions bigint, failures bigint,
               rate double precision, threshold double precision, above_threshold boolean)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT per_bucket."time",
           per_bucket.executions,
           per_bucket.failures,
           per_bucket.failures::double precision / per_bucket.executions,
           per_bucket.threshold,
           per_bucket.failures::double precision / per_bucket.executions > per_bucket.threshold
    FROM (
        SELECT runra_obs._bucket(bucket, x."time") AS "time",
               sum(x.executions)::bigint AS executions,
               sum(x.failures)::bigint AS failures,
               coalesce(nullif(current_setting('runra_obs.error_rate_threshold', true), '')::double precision,
                        0.05) AS threshold
        FROM (
            SELECT o."time", 1::bigint AS executions, CASE WHEN o.failed THEN 1::bigint ELSE 0 END AS failures
            FROM runra_obs._exec_events(from_time,
                                        runra_obs._rollup_lo(from_time, to_time,
                                                             runra_obs._rollup_width(error_rate.bucket, interval '5 minutes'))) AS o
            UNION ALL
            SELECT o."time", 1, CASE WHEN o.failed THEN 1 ELSE 0 END
            FROM runra_obs._exec_events(runra_obs._rollup_hi(from_time, to_time,
                                                             runra_obs._rollup_width(error_rate.bucket, interval '5 minutes')),
                                        to_time) AS o
            UNION ALL
            -- (each rollup leg is given its width only when its rollup serves
            -- the buckets, else NULL and so an empty range: Citus plans and
            -- runs every leg of a union, even one under a false condition)
            SELECT r.bucket, r.events, r.failures
            FROM runra_obs._rollup_1h_live(
                     runra_obs._rollup_lo(from_time, to_time, runra_obs._rollup_width(error_rate.bucket, interval '1 hour')),
                     runra_obs._rollup_hi(from_time, to_time, runra_obs._rollup_width(error_rate.bucket, interval '1 hour')),
                     ARRAY['exec.completed', 'exec.failed', 'exec.timed_out']) AS r
            WHERE runra_obs._rollup_width(error_rate.bucket, interval '5 minutes') = interval '1 hour'
            UNION ALL
            SELECT r.bucket, r.events, r.failures
            FROM runra_obs._rollup_5m_live(
                     runra_obs._rollup_lo(from_time, to_time, nullif(runra_obs._rollup_width(error_rate.bucket, interval '5 minutes'), interval '1 hour')),
                     runra_obs._rollup_hi(from_time, to_time, nullif(runra_obs._rollup_width(error_rate.bucket, interval '5 minutes'), interval '1 hour')),
                     ARRAY['exec.completed', 'exec.failed', 'exec.timed_out']) AS r
            WHERE runra_obs._rollup_width(error_rate.bucket, interval '5 minutes') = interval '5 minutes'
        ) AS x
        GROUP BY 1
    ) AS per_bucket
    ORDER BY per_bucket."time";
END;
COMMENT ON FUNCTION runra_obs.error_rate(timestamptz, timestamptz, interval) IS
    'Per time bucket in [from_time, to_time): executions, failures, failure rate, and whether it is above runra_obs.error_rate_threshold; the whole buckets of windows of 3 hours or more are read from rollup_1h or rollup_5m';

-- The reader gets the three functions, and the helpers too: a function
-- called inside an inlined function is checked against the caller.
REVOKE ALL ON FUNCTION runra_obs._rollup_width(interval, interval),
                       runra_obs._shift(timestamptz, interval),
                       runra_obs._rollup_lo(timestamptz, timestamptz, interval),
                       runra_obs._rollup_hi(timestamptz, timestamptz, interval),
                       runra_obs._cost_parts(timestamptz, timestamptz, interval),
                       runra_obs.cost_per_sandbox(timestamptz, timestamptz),
                       runra_obs.cost_over_time(timestamptz, timestamptz, interval),
                       runra_obs.error_rate(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs._rollup_width(interval, interval),
                          runra_obs._shift(timestamptz, interval),
                          runra_obs._rollup_lo(timestamptz, timestamptz, interval),
                          runra_obs._rollup_hi(timestamptz, timestamptz, interval),
                          runra_obs._cost_parts(timestamptz, timestamptz, interval),
                          runra_obs.cost_per_sandbox(timestamptz, timestamptz),
                          runra_obs.cost_over_time(timestamptz, timestamptz, interval),
                          runra_obs.error_rate(timestamptz, timestamptz, interval) TO runra_obs_reader;
