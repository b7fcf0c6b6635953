-- The analyst's SQL API: the window every function takes is half-open,
-- [from_time, to_time), by default the last 24 hours, [now() - 24 h, now());
-- NULL for an end means unbounded.
BEGIN;
\i test/analytics_fixture.sql

-- The same four instants for executions, costs and memory samples:
--   A = now() - 24 h          in (the start is included)
--   B = now() - 24 h - 1 µs   out
--   C = now() - 1 µs          in
--   D = now()                 out (the end is excluded)
-- Execution A fails (exit 1), C succeeds, B and D fail; all take 6000 ms.
-- Costs: A 1, B 10, C 100, D 1000.  Memory: 100 % in every sample.
SELECT ingested, failed FROM runra_obs.ingest((
    SELECT jsonb_agg(e)
    FROM (VALUES (now() - interval '24 hours', 1, 1),
                 (now() - interval '24 hours' - interval '1 microsecond', 1, 10),
                 (now() - interval '1 microsecond', 0, 100),
                 (now(), 1, 1000)) AS i(at, exit_code, cost),
         LATERAL (VALUES
             (pg_temp.ev(i.at, 'sb_w', 'exec.completed',
                         jsonb_build_object('command', 'w', 'exitCode', i.exit_code, 'durationMs', 6000))),
             (pg_temp.ev(i.at, 'sb_w', 'cost.runtime', jsonb_build_object('cost', i.cost, 'durationMs', 1))),
             (pg_temp.ev(i.at, 'sb_w', 'resource.memory', '{"memoryUsedMb": 512, "memoryLimitMb": 512}'))
         ) AS events(e)));

-- With the defaults, A and C count: 2 slow executions, 2 executions with 1
-- failure (A), cost 1 + 100 = 101, 2 memory alerts.
SELECT (SELECT count(*) FROM runra_obs.slow_execs()) AS slow_execs,
       (SELECT executions || '/' || failures FROM runra_obs.exec_latency()) AS exec_latency,
       (SELECT sum(executions) || '/' || sum(failures) FROM runra_obs.error_rate()) AS error_rate,
       (SELECT failures || '/' || executions FROM runra_obs.top_failing_commands()) AS top_failing,
       (SELECT runtime_cost FROM runra_obs.cost_per_sandbox()) AS cost_per_sandbox,
       (SELECT sum(runtime_cost) FROM runra_obs.cost_over_time()) AS cost_over_time,
       (SELECT count(*) FROM runra_obs.resource_alerts()) AS resource_alerts;

-- NULL ends are unbounded: all four (cost 1 + 10 + 100 + 1000 = 1111), and
-- everything before now(): A, B, C (cost 111, executions 3 with 2 failures).
SELECT (SELECT count(*) FROM runra_obs.slow_execs(5000, NULL, NULL)) AS slow_execs,
       (SELECT runtime_cost FROM runra_obs.cost_per_sandbox(NULL, NULL)) AS all_cost,
       (SELECT runtime_cost FROM runra_obs.cost_per_sandbox(NULL, now())) AS cost_before_now,
       (SELECT sum(executions) || '/' || sum(failures) FROM runra_obs.error_rate(NULL, now())) AS error_rate_before_now;

-- Named arguments work too (the names are from_time and to_time):
-- [now() - 1 h, now()) holds C only.
SELECT count(*) FROM runra_obs.resource_alerts(from_time => now() - interval '1 hour');

ROLLBACK;
