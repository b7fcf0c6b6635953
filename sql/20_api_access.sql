-- The analyst's SQL API: who may use it, and that every object of it says
-- what it is.
BEGIN;
\i test/analytics_fixture.sql

SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(pg_temp.t('10:00'), 'sb_r', 'tool.invoked', '{"toolName": "bash"}'),
    pg_temp.ev(pg_temp.t('10:01'), 'sb_r', 'exec.completed', '{"command": "x", "exitCode": 1, "durationMs": 9000}'),
    pg_temp.ev(pg_temp.t('10:02'), 'sb_r', 'cost.runtime', '{"cost": 0.5}'),
    pg_temp.ev(pg_temp.t('10:03'), 'sb_r', 'resource.disk', '{"diskUsedMb": 99, "diskLimitMb": 100}')));

-- runra_obs_reader (what Grafana connects as) uses every function and view,
-- with its own SELECT on sandbox_events: each finds its one row.
SET ROLE runra_obs_reader;
SELECT (SELECT count(*) FROM runra_obs.cost_per_sandbox(NULL, NULL)) AS cost_per_sandbox,
       (SELECT count(*) FROM runra_obs.cost_over_time(NULL, NULL)) AS cost_over_time,
       (SELECT count(*) FROM runra_obs.slow_execs(5000, NULL, NULL)) AS slow_execs,
       (SELECT count(*) FROM runra_obs.exec_latency(NULL, NULL)) AS exec_latency,
       (SELECT count(*) FROM runra_obs.error_rate(NULL, NULL)) AS error_rate,
       (SELECT count(*) FROM runra_obs.top_failing_commands(NULL, NULL)) AS top_failing,
       (SELECT count(*) FROM runra_obs.resource_alerts(90, NULL, NULL)) AS resource_alerts,
       (SELECT count(*) FROM runra_obs.agent_activity) AS agent_activity,
       (SELECT count(*) FROM runra_obs.sandbox_summary) AS sandbox_summary;
RESET ROLE;

-- Anyone else may not.
CREATE ROLE runra_obs_test_stranger NOLOGIN;
GRANT USAGE ON SCHEMA runra_obs TO runra_obs_test_stranger;
SET ROLE runra_obs_test_stranger;
SAVEPOINT denied;
SELECT * FROM runra_obs.cost_per_sandbox();
ROLLBACK TO denied;
SELECT * FROM runra_obs.sandbox_summary;
ROLLBACK TO denied;
RESET ROLE;

-- The functions of the API, by name.
CREATE TEMP TABLE api_functions AS
SELECT p.oid, p.proname
FROM pg_proc AS p
WHERE p.pronamespace = 'runra_obs'::regnamespace
  AND p.proname IN ('_number', '_exec_failed', '_bucket', '_exec_events', '_exec_outcomes', '_cost_events', 'slow_execs',
                    'exec_latency', 'error_rate', 'top_failing_commands', 'cost_per_sandbox',
                    'cost_over_time', 'resource_alerts');

-- They run with the caller's rights and have no SET clause (both would
-- stop the inlining that prunes partitions); the views are security_invoker.
SELECT f.proname, p.prosecdef, p.proconfig, p.provolatile
FROM api_functions AS f JOIN pg_proc AS p USING (oid)
ORDER BY f.proname;
SELECT c.relname, c.reloptions
FROM pg_class AS c
WHERE c.oid IN ('runra_obs.agent_activity'::regclass, 'runra_obs.sandbox_summary'::regclass)
ORDER BY c.relname;

-- Every object of the API has a comment, and so has every view column.
SELECT f.oid::regprocedure::text AS uncommented
FROM api_functions AS f
WHERE obj_description(f.oid, 'pg_proc') IS NULL
UNION ALL
SELECT 'runra_obs._execution'
WHERE obj_description('runra_obs._execution'::regtype, 'pg_type') IS NULL
UNION ALL
SELECT c.oid::regclass::text
FROM pg_class AS c
WHERE c.oid IN ('runra_obs.agent_activity'::regclass, 'runra_obs.sandbox_summary'::regclass)
  AND obj_description(c.oid, 'pg_class') IS NULL
UNION ALL
SELECT format('%s.%s', a.attrelid::regclass, a.attname)
FROM pg_attribute AS a
WHERE a.attrelid IN ('runra_obs.agent_activity'::regclass, 'runra_obs.sandbox_summary'::regclass)
  AND a.attnum > 0
  AND col_description(a.attrelid, a.attnum) IS NULL;

ROLLBACK;
