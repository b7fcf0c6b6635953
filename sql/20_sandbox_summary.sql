-- The analyst's SQL API: the sandbox_summary view.
BEGIN;
\i test/analytics_fixture.sql

SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    -- sb_1: a whole life
    pg_temp.ev(pg_temp.t('00:00'), 'sb_1', 'sandbox.created', '{"image": "node:20", "resources": {"cpu": 2}}'),
    pg_temp.ev(pg_temp.t('00:00:02'), 'sb_1', 'sandbox.started', '{"startupDurationMs": 1800}'),
    pg_temp.ev(pg_temp.t('00:10'), 'sb_1', 'exec.completed', '{"command": "npm test", "exitCode": 0, "durationMs": 100}'),
    pg_temp.ev(pg_temp.t('00:11'), 'sb_1', 'exec.completed', '{"command": "npm test", "exitCode": 1, "durationMs": 200}'),
    pg_temp.ev(pg_temp.t('00:12'), 'sb_1', 'exec.timed_out', '{"timeoutMs": 1000}'),
    pg_temp.ev(pg_temp.t('00:20'), 'sb_1', 'sandbox.paused', '{"runtimeDurationMs": 1200000}'),
    pg_temp.ev(pg_temp.t('00:30'), 'sb_1', 'sandbox.resumed', '{"pausedDurationMs": 600000}'),
    pg_temp.ev(pg_temp.t('00:40'), 'sb_1', 'sandbox.paused', '{"runtimeDurationMs": 600000}'),
    pg_temp.ev(pg_temp.t('00:45'), 'sb_1', 'sandbox.resumed', '{"pausedDurationMs": 300000}'),
    pg_temp.ev(pg_temp.t('00:50'), 'sb_1', 'cost.runtime', '{"cost": 0.03, "durationMs": 2400000}'),
    pg_temp.ev(pg_temp.t('00:50'), 'sb_1', 'cost.storage', '{"cost": 0.001, "durationMs": 900000}'),
    pg_temp.ev(pg_temp.t('00:50'), 'sb_1', 'cost.total', '{"sandboxCost": 0.031}'),
    pg_temp.ev(pg_temp.t('01:00'), 'sb_1', 'sandbox.terminated', '{"totalRuntimeMs": 2700000, "reason": "idle timeout"}'),
    pg_temp.ev(pg_temp.t('01:00'), 'sb_1', 'file.deleted', '{"path": "/tmp/x"}'),
    -- sb_2: paused now; startupDurationMs as a numeric string
    pg_temp.ev(pg_temp.t('02:00'), 'sb_2', 'sandbox.created', '{"image": "python:3.12"}'),
    pg_temp.ev(pg_temp.t('02:00:01'), 'sb_2', 'sandbox.started', '{"startupDurationMs": "900"}'),
    pg_temp.ev(pg_temp.t('02:05'), 'sb_2', 'sandbox.paused', '{}'),
    pg_temp.ev(pg_temp.t('02:06'), 'sb_2', 'resource.cpu', '{"cpuPercent": 1}'),
    -- sb_3: running, its sandbox.created not seen, a startup time that is no number
    pg_temp.ev(pg_temp.t('03:00'), 'sb_3', 'sandbox.started', '{"startupDurationMs": "quick"}'),
    pg_temp.ev(pg_temp.t('03:01'), 'sb_3', 'exec.failed', '{"error": "oom"}'),
    -- sb_4: no lifecycle event at all
    pg_temp.ev(pg_temp.t('04:00'), 'sb_4', 'file.read', '{"path": "/x"}'),
    -- sb_5: provisioned, not yet ready
    pg_temp.ev(pg_temp.t('05:00'), 'sb_5', 'sandbox.created', '{}')));

-- Lifecycle:
--   sb_1: created 00:00 (node:20), started 00:00:02, startup 1800 ms,
--         2 pauses, 2 resumes, paused 600000 + 300000 = 900000 ms,
--         terminated 01:00 "idle timeout", runtime 2700000 ms, state terminated
--   sb_2: created 02:00, started 02:00:01, startup "900" = 900 ms, 1 pause,
--         0 resumes, paused 0 ms (no resume reported a pause yet), state paused
--   sb_3: no created, started 03:00, startup NULL ("quick"), state running
--   sb_4: state unknown; sb_5: state created
SELECT sandbox_id, state, pg_temp.rel(created_at) AS created, image,
       pg_temp.rel(started_at) AS started, startup_ms, pauses, resumes, paused_ms,
       pg_temp.rel(terminated_at) AS terminated, termination_reason, runtime_ms
FROM runra_obs.sandbox_summary
ORDER BY sandbox_id;

-- Work, cost and last event:
--   sb_1: 3 executions (2 completed, 1 timed out), 2 failures (exit 1, timeout);
--         cost 0.03 + 0.001 = 0.031, reported 0.031 (not added);
--         last event at 01:00: file.deleted, stored after sandbox.terminated
--   sb_2: last event resource.cpu at 02:06
--   sb_3: 1 execution, 1 failure (exec.failed)
--   sb_4, sb_5: no work, no cost
SELECT sandbox_id, execs, exec_failures, runtime_cost, storage_cost, total_cost,
       reported_total_cost, pg_temp.rel(first_event_at) AS first_event,
       pg_temp.rel(last_event_at) AS last_event, last_event_type
FROM runra_obs.sandbox_summary
ORDER BY sandbox_id;

ROLLBACK;
