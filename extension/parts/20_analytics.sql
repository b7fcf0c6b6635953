-- ===========================================================================
-- The analyst's SQL API: costs, executions, error rates, agent activity,
-- sandbox summaries and resource alerts, read from runra_obs.sandbox_events.
--
-- How these functions are built, and why:
--
-- * Every function takes a half-open window [from_time, to_time), by
--   default the last 24 hours.  NULL for either end means "unbounded".
--
-- * Every function is LANGUAGE sql, STABLE, SECURITY INVOKER, not STRICT,
--   has no SET clause and a BEGIN ATOMIC body: that is what lets the
--   planner inline it into the calling query (see inline_set_returning_
--   function in PostgreSQL's clauses.c).  Once inlined, the window bounds
--   are plain expressions on created_at, so partition pruning sees them:
--   at plan time for constants, at executor start-up for now()-relative
--   expressions and for the parameters of a generic prepared plan.  A
--   one-hour window inside a UTC day touches one partition
--   (sql/20_pruning.sql shows it with EXPLAIN).  BEGIN ATOMIC bodies are
--   parsed when the function is created, so a caller's search_path cannot
--   change what they mean, without the SET search_path that would stop
--   the inlining.
--
-- * Event data is whatever the sandbox sent.  What an event means (a
--   number, failed, cost, duration) is defined once, in 15_event_facts.sql,
--   and read here as by the rollups and the dashboards.  A field that should
--   be a number but is not one (durationMs: "fast") never makes a query
--   fail: runra_obs.json_numeric() turns it into NULL and the value is
--   skipped, as the reference in docs/analytics.md says for each figure.
--
-- * The reader runs these functions with its own SELECT on sandbox_events
--   (SECURITY INVOKER); the views are security_invoker for the same reason,
--   so the API never reads more than the caller may.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Small helpers, inlined into the queries that use them.
-- ---------------------------------------------------------------------------

-- The start of the time bucket an instant falls in.  Buckets are aligned on
-- UTC midnight of 2000-01-01, so a '1 day' bucket is a UTC day whatever the
-- session's TimeZone, and a '5 minutes' bucket starts at :00, :05, ...
CREATE FUNCTION runra_obs._bucket(bucket interval, at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT date_bin(bucket, at, timestamptz '2000-01-01 00:00:00+00');
END;
COMMENT ON FUNCTION runra_obs._bucket(interval, timestamptz) IS
    'Start of the bucket of the given width holding an instant; buckets are aligned on UTC midnight';

-- ---------------------------------------------------------------------------
-- Executions.
-- ---------------------------------------------------------------------------

-- One finished execution, as _exec_events and _exec_outcomes return it.
CREATE TYPE runra_obs._execution AS (
    event_id    bigint,       -- id of the exec.completed, exec.failed or exec.timed_out
    "time"      timestamptz,
    sandbox_id  text,
    event_type  text,
    command     text,
    duration_ms numeric,      -- durationMs, NULL when it is not a number
    exit_code   numeric,      -- exitCode, NULL when it is not a number
    failed      boolean,
    error       text          -- what went wrong, NULL for a success
);
COMMENT ON TYPE runra_obs._execution IS
    'One finished execution: its event, command, duration, exit code, whether it failed and why';

-- Every finished execution in the window: one row per exec.completed,
-- exec.failed and exec.timed_out (exec.started is not counted, or every
-- command would count twice), with the command the event names.
CREATE FUNCTION runra_obs._exec_events(from_time timestamptz, to_time timestamptz)
RETURNS SETOF runra_obs._execution
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT e.id,
           e.created_at,
           e.sandbox_id,
           e.event_type,
           e.data ->> 'command',
           runra_obs.event_duration_ms(e.event_type, e.data),
           runra_obs.json_numeric(e.data -> 'exitCode'),
           runra_obs.event_failed(e.event_type, e.data),
           CASE e.event_type
               WHEN 'exec.failed' THEN coalesce(e.data ->> 'error', 'exec.failed')
               WHEN 'exec.timed_out' THEN 'timed out'
                   || coalesce(' after ' || (e.data ->> 'timeoutMs') || ' ms', '')
               ELSE CASE WHEN runra_obs.event_failed(e.event_type, e.data)
                         THEN coalesce('exit code ' || (e.data ->> 'exitCode'), 'no exit code')
                    END
           END
    FROM runra_obs.sandbox_events AS e
    WHERE e.event_type IN ('exec.completed', 'exec.failed', 'exec.timed_out')
      AND e.created_at >= coalesce(from_time, '-infinity')
      AND e.created_at < coalesce(to_time, 'infinity');
END;
COMMENT ON FUNCTION runra_obs._exec_events(timestamptz, timestamptz) IS
    'Every finished execution (exec.completed, exec.failed, exec.timed_out) in [from_time, to_time) with the command it names, its duration, exit code, and whether it failed';

-- The same executions, each with a command: exec.failed and exec.timed_out
-- name none in the event model, so an event without one gets the command of
-- the latest exec.started of the same sandbox in the window before it.
-- Done as one sort of the window's exec events per sandbox (a running count
-- of exec.started numbers the runs, the run's first row is its
-- exec.started), not as a lookup per event: a correlated subquery is costed
-- as if it ran for every row, which switches on JIT compilation at hundreds
-- of milliseconds per query.
CREATE FUNCTION runra_obs._exec_outcomes(from_time timestamptz, to_time timestamptz)
RETURNS SETOF runra_obs._execution
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT named.event_id, named."time", named.sandbox_id, named.event_type, named.command,
           named.duration_ms, named.exit_code, named.failed, named.error
    FROM (
        SELECT runs.event_id, runs."time", runs.sandbox_id, runs.event_type, runs.started_command,
               coalesce(runs.command,
                        nullif(first_value(runs.started_command)
                                   OVER (PARTITION BY runs.sandbox_id, runs.run
                                         ORDER BY runs."time", runs.event_id), '')) AS command,
               runs.duration_ms, runs.exit_code, runs.failed, runs.error
        FROM (
            SELECT x.*,
                   count(x.started_command) OVER (PARTITION BY x.sandbox_id
                                                  ORDER BY x."time", x.event_id) AS run
            FROM (
                SELECT t.event_id, t."time", t.sandbox_id, t.event_type, t.command,
                       NULL::text AS started_command,
                       t.duration_ms, t.exit_code, t.failed, t.error
                FROM runra_obs._exec_events(from_time, to_time) AS t
                UNION ALL
                SELECT s.id, s.created_at, s.sandbox_id, s.event_type, NULL,
                       coalesce(s.data ->> 'command', ''),
                       NULL, NULL, NULL, NULL
                FROM runra_obs.sandbox_events AS s
                WHERE s.event_type = 'exec.started'
                  AND s.created_at >= coalesce(from_time, '-infinity')
                  AND s.created_at < coalesce(to_time, 'infinity')
            ) AS x
        ) AS runs
    ) AS named
    -- exec.started rows only named the runs; they are not executions
    WHERE named.started_command IS NULL;
END;
COMMENT ON FUNCTION runra_obs._exec_outcomes(timestamptz, timestamptz) IS
    'The executions of _exec_events, with the command of the latest exec.started of the sandbox in the window for those that name none';

CREATE FUNCTION runra_obs.slow_execs(threshold_ms numeric DEFAULT 5000,
                                     from_time timestamptz DEFAULT now() - interval '24 hours',
                                     to_time timestamptz DEFAULT now(),
                                     max_rows integer DEFAULT 100)
RETURNS TABLE ("time" timestamptz, sandbox_id text, command text,
               duration_ms numeric, exit_code numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT o."time", o.sandbox_id, o.command, o.duration_ms, o.exit_code
    FROM runra_obs._exec_events(from_time, to_time) AS o
    WHERE o.event_type = 'exec.completed'
      AND o.duration_ms > threshold_ms
    ORDER BY o."time" DESC, o.event_id DESC
    LIMIT max_rows;
END;
COMMENT ON FUNCTION runra_obs.slow_execs(numeric, timestamptz, timestamptz, integer) IS
    'exec.completed events in [from_time, to_time) whose durationMs is above threshold_ms, newest first, at most max_rows';

CREATE FUNCTION runra_obs.exec_latency(from_time timestamptz DEFAULT now() - interval '24 hours',
                                       to_time timestamptz DEFAULT now())
RETURNS TABLE (command text, executions bigint, failures bigint,
               p50_ms numeric, p95_ms numeric, p99_ms numeric, max_ms numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT o.command,
           count(*),
           count(*) FILTER (WHERE o.failed),
           percentile_disc(0.50) WITHIN GROUP (ORDER BY o.duration_ms),
           percentile_disc(0.95) WITHIN GROUP (ORDER BY o.duration_ms),
           percentile_disc(0.99) WITHIN GROUP (ORDER BY o.duration_ms),
           max(o.duration_ms)
    FROM runra_obs._exec_outcomes(from_time, to_time) AS o
    GROUP BY o.command
    ORDER BY count(*) DESC, o.command;
END;
COMMENT ON FUNCTION runra_obs.exec_latency(timestamptz, timestamptz) IS
    'Per command in [from_time, to_time): executions, failures, and nearest-rank p50/p95/p99 and max of the duration (durationMs; timeoutMs for a timeout)';

-- error_rate() is defined in 70_api_rollups.sql: it reads rollups for the
-- whole buckets of long windows.

CREATE FUNCTION runra_obs.top_failing_commands(from_time timestamptz DEFAULT now() - interval '24 hours',
                                               to_time timestamptz DEFAULT now(),
                                               max_rows integer DEFAULT 10)
RETURNS TABLE (command text, failures bigint, executions bigint, failure_rate double precision,
               exit_failures bigint, errors bigint, timeouts bigint,
               last_failure_at timestamptz, last_error text)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT o.command,
           count(*) FILTER (WHERE o.failed),
           count(*),
           (count(*) FILTER (WHERE o.failed))::double precision / count(*),
           count(*) FILTER (WHERE o.failed AND o.event_type = 'exec.completed'),
           count(*) FILTER (WHERE o.event_type = 'exec.failed'),
           count(*) FILTER (WHERE o.event_type = 'exec.timed_out'),
           max(o."time") FILTER (WHERE o.failed),
           (array_agg(o.error ORDER BY o."time" DESC, o.event_id DESC) FILTER (WHERE o.failed))[1]
    FROM runra_obs._exec_outcomes(from_time, to_time) AS o
    GROUP BY o.command
    HAVING count(*) FILTER (WHERE o.failed) > 0
    ORDER BY 2 DESC, 3 DESC, o.command
    LIMIT max_rows;
END;
COMMENT ON FUNCTION runra_obs.top_failing_commands(timestamptz, timestamptz, integer) IS
    'Commands with the most failed executions in [from_time, to_time), with the kind of failures and the latest error, at most max_rows';

-- ---------------------------------------------------------------------------
-- Costs.
--
-- total_cost is cost.runtime + cost.storage, always.  cost.total is reported
-- beside it (reported_total_cost) and never added in: it is the sandbox's own
-- aggregate of the same spending over a period it chose, so adding it would
-- count every cent twice, and using it in place of the itemised events for
-- some sandboxes would make the total depend on which events happen to fall
-- in the window, so buckets would no longer add up to the whole.  The
-- itemised events are disjoint slices (each covers its own durationMs), so
-- their sums add up across sandboxes, buckets and windows.
-- ---------------------------------------------------------------------------

-- Every cost event in the window, its cost in the column of its kind (NULL
-- in the others, and where the value is not a number).
CREATE FUNCTION runra_obs._cost_events(from_time timestamptz, to_time timestamptz)
RETURNS TABLE ("time" timestamptz, sandbox_id text, runtime_cost numeric, storage_cost numeric,
               reported_total_cost numeric, runtime_ms numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT e.created_at,
           e.sandbox_id,
           CASE WHEN e.event_type = 'cost.runtime' THEN runra_obs.event_cost(e.event_type, e.data) END,
           CASE WHEN e.event_type = 'cost.storage' THEN runra_obs.event_cost(e.event_type, e.data) END,
           CASE WHEN e.event_type = 'cost.total' THEN runra_obs.event_cost(e.event_type, e.data) END,
           CASE WHEN e.event_type = 'cost.runtime' THEN runra_obs.event_duration_ms(e.event_type, e.data) END
    FROM runra_obs.sandbox_events AS e
    WHERE e.event_type IN ('cost.runtime', 'cost.storage', 'cost.total')
      AND e.created_at >= coalesce(from_time, '-infinity')
      AND e.created_at < coalesce(to_time, 'infinity');
END;
COMMENT ON FUNCTION runra_obs._cost_events(timestamptz, timestamptz) IS
    'Every cost.runtime, cost.storage and cost.total event in [from_time, to_time), its cost in the column of its kind';

-- cost_per_sandbox() and cost_over_time() are defined in 70_api_rollups.sql:
-- they read rollups for the whole hours of long windows.

-- ---------------------------------------------------------------------------
-- Resources.
-- ---------------------------------------------------------------------------

CREATE FUNCTION runra_obs.resource_alerts(threshold_pct numeric DEFAULT 90,
                                          from_time timestamptz DEFAULT now() - interval '24 hours',
                                          to_time timestamptz DEFAULT now())
RETURNS TABLE ("time" timestamptz, sandbox_id text, resource text,
               used_mb numeric, limit_mb numeric, used_pct numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT sample."time",
           sample.sandbox_id,
           sample.resource,
           sample.used_mb,
           sample.limit_mb,
           round(sample.used_mb * 100 / sample.limit_mb, 2)
    FROM (
        SELECT e.id,
               e.created_at AS "time",
               e.sandbox_id,
               CASE e.event_type WHEN 'resource.memory' THEN 'memory' ELSE 'disk' END AS resource,
               runra_obs.json_numeric(CASE e.event_type
                                          WHEN 'resource.memory' THEN e.data -> 'memoryUsedMb'
                                          ELSE e.data -> 'diskUsedMb'
                                      END) AS used_mb,
               runra_obs.json_numeric(CASE e.event_type
                                          WHEN 'resource.memory' THEN e.data -> 'memoryLimitMb'
                                          ELSE e.data -> 'diskLimitMb'
                                      END) AS limit_mb
        FROM runra_obs.sandbox_events AS e
        WHERE e.event_type IN ('resource.memory', 'resource.disk')
          AND e.created_at >= coalesce(from_time, '-infinity')
          AND e.created_at < coalesce(to_time, 'infinity')
        OFFSET 0   -- evaluate each json_numeric() once per sample, not once per use
    ) AS sample
    WHERE sample.limit_mb > 0
      AND sample.used_mb * 100 > threshold_pct * sample.limit_mb
    ORDER BY sample."time" DESC, sample.id DESC;
END;
COMMENT ON FUNCTION runra_obs.resource_alerts(numeric, timestamptz, timestamptz) IS
    'resource.memory and resource.disk samples in [from_time, to_time) using more than threshold_pct percent of their limit, newest first';

-- ---------------------------------------------------------------------------
-- Agent activity.
--
-- Matching rule: the outcome of a tool.invoked is the first tool.completed
-- or tool.failed of the same sandbox and the same toolName after it, unless
-- another tool.invoked of that tool in that sandbox comes in between (then
-- the invocation has no outcome, and the outcome belongs to the later one).
-- "After" orders events by (created_at, id): events with the same timestamp
-- keep the order they arrived in.  So a sandbox calling the same tool again
-- and again gets each call paired with its own outcome, one lost outcome
-- leaves one call without an outcome instead of shifting all the following
-- pairs, and no outcome is ever paired twice.  Two overlapping calls of the
-- same tool in one sandbox cannot be told apart without a call id in the
-- events: the earlier one shows no outcome.
-- ---------------------------------------------------------------------------

CREATE VIEW runra_obs.agent_activity
WITH (security_invoker = true) AS
SELECT i.id AS event_id,
       i.created_at AS invoked_at,
       i.sandbox_id,
       i.data ->> 'agentId' AS agent_id,
       i.data ->> 'toolName' AS tool_name,
       i.data -> 'toolArgs' AS tool_args,
       CASE o.event_type
           WHEN 'tool.completed' THEN 'completed'
           WHEN 'tool.failed' THEN 'failed'
       END AS outcome,
       o.id AS outcome_event_id,
       o.created_at AS finished_at,
       coalesce(runra_obs.event_duration_ms(o.event_type, o.data),
                trim_scale(extract(epoch FROM o.created_at - i.created_at) * 1000)) AS duration_ms,
       o.data -> 'result' AS result,
       o.data ->> 'error' AS error,
       i.trace_id
FROM runra_obs.sandbox_events AS i
LEFT JOIN LATERAL (
    SELECT first_outcome.*
    FROM (
        SELECT f.id, f.created_at, f.event_type, f.data
        FROM runra_obs.sandbox_events AS f
        WHERE f.sandbox_id = i.sandbox_id
          AND f.event_type IN ('tool.completed', 'tool.failed')
          AND f.data -> 'toolName' IS NOT DISTINCT FROM i.data -> 'toolName'
          AND f.created_at >= i.created_at
          AND (f.created_at, f.id) > (i.created_at, i.id)
        ORDER BY f.created_at, f.id
        LIMIT 1
    ) AS first_outcome
    WHERE NOT EXISTS (
        SELECT
        FROM runra_obs.sandbox_events AS n
        WHERE n.sandbox_id = i.sandbox_id
          AND n.event_type = 'tool.invoked'
          AND n.data -> 'toolName' IS NOT DISTINCT FROM i.data -> 'toolName'
          AND n.created_at >= i.created_at
          AND n.created_at <= first_outcome.created_at
          AND (n.created_at, n.id) > (i.created_at, i.id)
          AND (n.created_at, n.id) < (first_outcome.created_at, first_outcome.id))
) AS o ON true
WHERE i.event_type = 'tool.invoked';

COMMENT ON VIEW runra_obs.agent_activity IS
    'Every tool.invoked with its agent, tool and arguments, and the outcome and duration from the matching tool.completed or tool.failed (see docs/analytics.md for the matching rule)';
COMMENT ON COLUMN runra_obs.agent_activity.event_id IS 'id of the tool.invoked event';
COMMENT ON COLUMN runra_obs.agent_activity.sandbox_id IS 'The sandbox where the tool ran';
COMMENT ON COLUMN runra_obs.agent_activity.invoked_at IS 'When the tool was invoked (filter on this column: it prunes partitions)';
COMMENT ON COLUMN runra_obs.agent_activity.agent_id IS 'data.agentId of the invocation';
COMMENT ON COLUMN runra_obs.agent_activity.tool_name IS 'data.toolName of the invocation';
COMMENT ON COLUMN runra_obs.agent_activity.tool_args IS 'data.toolArgs of the invocation, as sent';
COMMENT ON COLUMN runra_obs.agent_activity.outcome IS 'completed or failed; NULL while no matching outcome has been seen';
COMMENT ON COLUMN runra_obs.agent_activity.outcome_event_id IS 'id of the matching tool.completed or tool.failed event';
COMMENT ON COLUMN runra_obs.agent_activity.finished_at IS 'When the matching tool.completed or tool.failed happened';
COMMENT ON COLUMN runra_obs.agent_activity.duration_ms IS 'durationMs of the outcome when it is a number, else the time between the two events';
COMMENT ON COLUMN runra_obs.agent_activity.result IS 'data.result of a tool.completed';
COMMENT ON COLUMN runra_obs.agent_activity.error IS 'data.error of a tool.failed';
COMMENT ON COLUMN runra_obs.agent_activity.trace_id IS 'Trace id of the invocation';

-- ---------------------------------------------------------------------------
-- Sandbox summary: one row per sandbox that sent any event.
-- ---------------------------------------------------------------------------

CREATE VIEW runra_obs.sandbox_summary
WITH (security_invoker = true) AS
SELECT s.sandbox_id,
       CASE
           WHEN s.terminated_at IS NOT NULL THEN 'terminated'
           WHEN s.last_lifecycle = 'sandbox.paused' THEN 'paused'
           WHEN s.last_lifecycle IN ('sandbox.started', 'sandbox.resumed') THEN 'running'
           WHEN s.last_lifecycle = 'sandbox.created' THEN 'created'
           ELSE 'unknown'
       END AS state,
       s.created_at,
       s.image,
       s.started_at,
       s.startup_ms,
       s.pauses,
       s.resumes,
       s.paused_ms,
       s.terminated_at,
       s.termination_reason,
       s.runtime_ms,
       s.execs,
       s.exec_failures,
       s.runtime_cost,
       s.storage_cost,
       s.runtime_cost + s.storage_cost AS total_cost,
       s.reported_total_cost,
       s.first_event_at,
       s.last_event_at,
       s.last_event_type
FROM (
    -- one pass over the sandbox's events; the ordered aggregates pick the
    -- first (or latest) of a kind, ties broken by arrival order (id)
    SELECT e.sandbox_id,
           min(e.created_at) FILTER (WHERE e.event_type = 'sandbox.created') AS created_at,
           (array_agg(e.data ->> 'image' ORDER BY e.created_at, e.id)
                FILTER (WHERE e.event_type = 'sandbox.created'))[1] AS image,
           min(e.created_at) FILTER (WHERE e.event_type = 'sandbox.started') AS started_at,
           (array_agg(runra_obs.event_duration_ms(e.event_type, e.data) ORDER BY e.created_at, e.id)
                FILTER (WHERE e.event_type = 'sandbox.started'))[1] AS startup_ms,
           count(*) FILTER (WHERE e.event_type = 'sandbox.paused') AS pauses,
           count(*) FILTER (WHERE e.event_type = 'sandbox.resumed') AS resumes,
           coalesce(sum(runra_obs.event_duration_ms(e.event_type, e.data))
                        FILTER (WHERE e.event_type = 'sandbox.resumed'), 0) AS paused_ms,
           min(e.created_at) FILTER (WHERE e.event_type = 'sandbox.terminated') AS terminated_at,
           (array_agg(e.data ->> 'reason' ORDER BY e.created_at, e.id)
                FILTER (WHERE e.event_type = 'sandbox.terminated'))[1] AS termination_reason,
           (array_agg(runra_obs.event_duration_ms(e.event_type, e.data) ORDER BY e.created_at, e.id)
                FILTER (WHERE e.event_type = 'sandbox.terminated'))[1] AS runtime_ms,
           count(*) FILTER (WHERE e.event_type IN ('exec.completed', 'exec.failed', 'exec.timed_out')) AS execs,
           count(*) FILTER (WHERE e.event_type IN ('exec.completed', 'exec.failed', 'exec.timed_out')
                              AND runra_obs.event_failed(e.event_type, e.data)) AS exec_failures,
           -- the same sums as cost_per_sandbox(), over all time
           coalesce(sum(runra_obs.event_cost(e.event_type, e.data))
                        FILTER (WHERE e.event_type = 'cost.runtime'), 0) AS runtime_cost,
           coalesce(sum(runra_obs.event_cost(e.event_type, e.data))
                        FILTER (WHERE e.event_type = 'cost.storage'), 0) AS storage_cost,
           sum(runra_obs.event_cost(e.event_type, e.data))
               FILTER (WHERE e.event_type = 'cost.total') AS reported_total_cost,
           (array_agg(e.event_type ORDER BY e.created_at DESC, e.id DESC)
                FILTER (WHERE e.event_type IN ('sandbox.created', 'sandbox.started', 'sandbox.paused',
                                               'sandbox.resumed', 'sandbox.terminated')))[1] AS last_lifecycle,
           min(e.created_at) AS first_event_at,
           max(e.created_at) AS last_event_at,
           (array_agg(e.event_type ORDER BY e.created_at DESC, e.id DESC))[1] AS last_event_type
    FROM runra_obs.sandbox_events AS e
    GROUP BY e.sandbox_id
) AS s;

COMMENT ON VIEW runra_obs.sandbox_summary IS
    'One row per sandbox: lifecycle times, pauses, termination, runtime, executions and failures, cost, last event and current state';
COMMENT ON COLUMN runra_obs.sandbox_summary.sandbox_id IS 'The sandbox (one row for every sandbox that sent any event)';
COMMENT ON COLUMN runra_obs.sandbox_summary.state IS
    'terminated once a sandbox.terminated was seen, else from the latest lifecycle event: created, running, paused; unknown without lifecycle events';
COMMENT ON COLUMN runra_obs.sandbox_summary.created_at IS 'First sandbox.created';
COMMENT ON COLUMN runra_obs.sandbox_summary.image IS 'data.image of the first sandbox.created';
COMMENT ON COLUMN runra_obs.sandbox_summary.started_at IS 'First sandbox.started';
COMMENT ON COLUMN runra_obs.sandbox_summary.startup_ms IS 'startupDurationMs of the first sandbox.started';
COMMENT ON COLUMN runra_obs.sandbox_summary.pauses IS 'Number of sandbox.paused events';
COMMENT ON COLUMN runra_obs.sandbox_summary.resumes IS 'Number of sandbox.resumed events';
COMMENT ON COLUMN runra_obs.sandbox_summary.paused_ms IS 'Sum of pausedDurationMs of the sandbox.resumed events';
COMMENT ON COLUMN runra_obs.sandbox_summary.terminated_at IS 'First sandbox.terminated';
COMMENT ON COLUMN runra_obs.sandbox_summary.termination_reason IS 'data.reason of the first sandbox.terminated';
COMMENT ON COLUMN runra_obs.sandbox_summary.runtime_ms IS 'totalRuntimeMs of the first sandbox.terminated (NULL while the sandbox lives)';
COMMENT ON COLUMN runra_obs.sandbox_summary.execs IS 'Finished executions: exec.completed, exec.failed and exec.timed_out events';
COMMENT ON COLUMN runra_obs.sandbox_summary.exec_failures IS 'Executions that failed (exec.failed, exec.timed_out, exitCode other than 0)';
COMMENT ON COLUMN runra_obs.sandbox_summary.runtime_cost IS 'Sum of cost.runtime cost';
COMMENT ON COLUMN runra_obs.sandbox_summary.storage_cost IS 'Sum of cost.storage cost';
COMMENT ON COLUMN runra_obs.sandbox_summary.total_cost IS 'runtime_cost + storage_cost (cost.total is never added in)';
COMMENT ON COLUMN runra_obs.sandbox_summary.reported_total_cost IS 'Sum of sandboxCost of the cost.total events, for reconciliation';
COMMENT ON COLUMN runra_obs.sandbox_summary.first_event_at IS 'Earliest event of the sandbox';
COMMENT ON COLUMN runra_obs.sandbox_summary.last_event_at IS 'Latest event of the sandbox';
COMMENT ON COLUMN runra_obs.sandbox_summary.last_event_type IS 'Type of the latest event (the last one stored when several share its timestamp)';

-- ---------------------------------------------------------------------------
-- Access: the reader gets the API.  The functions run with the caller's
-- rights, so the reader's SELECT on sandbox_events is what lets them read.
-- The helpers are granted too: a function called inside an inlined function
-- or a view is checked against the caller.
-- ---------------------------------------------------------------------------
DO $$
DECLARE
    api regprocedure;
BEGIN
    FOREACH api IN ARRAY ARRAY[
        'runra_obs._bucket(interval, timestamptz)',
        'runra_obs._exec_events(timestamptz, timestamptz)',
        'runra_obs._exec_outcomes(timestamptz, timestamptz)',
        'runra_obs._cost_events(timestamptz, timestamptz)',
        'runra_obs.slow_execs(numeric, timestamptz, timestamptz, integer)',
        'runra_obs.exec_latency(timestamptz, timestamptz)',
        'runra_obs.top_failing_commands(timestamptz, timestamptz, integer)',
        'runra_obs.resource_alerts(numeric, timestamptz, timestamptz)']::regprocedure[]
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', api);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO runra_obs_reader', api);
    END LOOP;
END
$$;
GRANT SELECT ON runra_obs.agent_activity, runra_obs.sandbox_summary TO runra_obs_reader;
