-- The two example queries of the Runra SDK's Postgres exporter run
-- verbatim against runra_obs, with only runra_obs on the search_path.
-- Copied from ../shared/spec/runra-sandbox-observability.txt ("Find slow
-- executions", "Calculate costs per sandbox"); the copy there lost its line
-- breaks, which are put back between the clauses and nowhere else.
BEGIN;
\i test/analytics_fixture.sql

-- Slow executions: 22 exec.completed of sb_s, one a minute from 10:01 to
-- 10:22, taking 5000 + 10 * minute ms (5010 .. 5220), all slow; plus
-- sb_q's 5000 ms (not above 5000), an exec.started carrying a durationMs
-- (not exec.completed), and a fast one.
SELECT ingested, failed FROM runra_obs.ingest((
    SELECT jsonb_agg(pg_temp.ev(pg_temp.t(make_interval(hours => 10, mins => m)), 'sb_s', 'exec.completed',
                                jsonb_build_object('command', 'job ' || m, 'durationMs', 5000 + 10 * m,
                                                   'exitCode', 0)))
    FROM generate_series(1, 22) AS m));
SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(pg_temp.t('10:30'), 'sb_q', 'exec.completed', '{"command": "edge", "durationMs": 5000, "exitCode": 0}'),
    pg_temp.ev(pg_temp.t('10:31'), 'sb_q', 'exec.started', '{"command": "started", "durationMs": 9999}'),
    pg_temp.ev(pg_temp.t('10:32'), 'sb_q', 'exec.completed', '{"command": "quick", "durationMs": 12, "exitCode": 0}')));

-- Costs per sandbox over the last 24 hours: cost.runtime only.
--   sb_a: 0.25 (1 h ago) + 0.5 (2 h ago) = 0.75; its 9 from 25 h ago is out
--   sb_b: 1.0 (30 min ago)
--   sb_c: only cost.storage (5), which the query does not count
SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(now() - interval '1 hour', 'sb_a', 'cost.runtime', '{"cost": 0.25, "durationMs": 60000}'),
    pg_temp.ev(now() - interval '2 hours', 'sb_a', 'cost.runtime', '{"cost": 0.5, "durationMs": 120000}'),
    pg_temp.ev(now() - interval '25 hours', 'sb_a', 'cost.runtime', '{"cost": 9, "durationMs": 1}'),
    pg_temp.ev(now() - interval '30 minutes', 'sb_b', 'cost.runtime', '{"cost": 1.0, "durationMs": 240000}'),
    pg_temp.ev(now() - interval '1 hour', 'sb_c', 'cost.storage', '{"cost": 5, "durationMs": 1}')));

SET search_path = runra_obs;

-- Expected: the 20 newest of sb_s, job 22 (5220 ms) down to job 3 (5030 ms).
-- Find slow executions
SELECT sandbox_id, data->>'command', data->>'durationMs'
FROM sandbox_events
WHERE event_type = 'exec.completed' AND (data->>'durationMs')::int > 5000
ORDER BY created_at DESC
LIMIT 20;

-- Expected: sb_b 1.0, sb_a 0.75.
-- Calculate costs per sandbox
SELECT sandbox_id, SUM((data->>'cost')::numeric) as total_cost
FROM sandbox_events
WHERE event_type = 'cost.runtime' AND created_at > NOW() - INTERVAL '24 hours'
GROUP BY sandbox_id
ORDER BY total_cost DESC;

RESET search_path;

-- The API agrees with the seed's queries on the same events, row for row
-- and in the same order.
SELECT (SELECT array_agg(row(sandbox_id, command, duration_ms) ORDER BY n)
        FROM runra_obs.slow_execs(5000, NULL, NULL, 20) WITH ORDINALITY AS s(t, sandbox_id, command, duration_ms, exit_code, n))
     = (SELECT array_agg(row(sandbox_id, command, duration_ms::numeric) ORDER BY n)
        FROM (SELECT sandbox_id, data->>'command', data->>'durationMs', row_number() OVER (ORDER BY created_at DESC)
              FROM runra_obs.sandbox_events
              WHERE event_type = 'exec.completed' AND (data->>'durationMs')::int > 5000
              ORDER BY created_at DESC
              LIMIT 20) AS seed(sandbox_id, command, duration_ms, n)) AS slow_execs_agree;
SELECT sandbox_id, runtime_cost FROM runra_obs.cost_per_sandbox() WHERE runtime_cost > 0;

ROLLBACK;
