-- The analyst's SQL API: the agent_activity view, and its matching rule
-- (an invocation's outcome is the first tool.completed / tool.failed of the
-- same sandbox and toolName after it, unless another invocation of that
-- tool in that sandbox comes in between).
BEGIN;
\i test/analytics_fixture.sql

SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    -- sb_t calls read_file twice, one after the other: each call gets its own outcome
    pg_temp.ev(pg_temp.t('10:00'), 'sb_t', 'tool.invoked', '{"toolName": "read_file", "toolArgs": {"path": "/a"}, "agentId": "agent-1"}'),
    pg_temp.ev(pg_temp.t('10:00:01.5'), 'sb_t', 'tool.completed', '{"toolName": "read_file", "result": "A", "durationMs": 1500}'),
    pg_temp.ev(pg_temp.t('10:01'), 'sb_t', 'tool.invoked', '{"toolName": "read_file", "toolArgs": {"path": "/b"}, "agentId": "agent-1"}'),
    pg_temp.ev(pg_temp.t('10:01:02'), 'sb_t', 'tool.failed', '{"toolName": "read_file", "error": "ENOENT"}'),
    -- invocation and completion in the same microsecond: arrival order decides
    pg_temp.ev(pg_temp.t('10:02'), 'sb_t', 'tool.invoked', '{"toolName": "bash", "toolArgs": {"cmd": "ls"}, "agentId": "agent-2"}'),
    pg_temp.ev(pg_temp.t('10:02'), 'sb_t', 'tool.completed', '{"toolName": "bash", "result": {"out": "x"}, "durationMs": 0}'),
    -- never answered
    pg_temp.ev(pg_temp.t('10:03'), 'sb_t', 'tool.invoked', '{"toolName": "search", "toolArgs": {"q": "x"}, "agentId": "agent-1"}'),
    -- two overlapping read_file calls, then two outcomes: the first outcome
    -- goes to the later call, the earlier one shows no outcome, the second
    -- outcome (10:07) is an orphan
    pg_temp.ev(pg_temp.t('10:04'), 'sb_t', 'tool.invoked', '{"toolName": "read_file", "toolArgs": {"path": "/c"}, "agentId": "agent-1"}'),
    pg_temp.ev(pg_temp.t('10:05'), 'sb_t', 'tool.invoked', '{"toolName": "read_file", "toolArgs": {"path": "/d"}, "agentId": "agent-1"}'),
    pg_temp.ev(pg_temp.t('10:06'), 'sb_t', 'tool.completed', '{"toolName": "read_file", "result": "D", "durationMs": 1000}'),
    pg_temp.ev(pg_temp.t('10:07'), 'sb_t', 'tool.completed', '{"toolName": "read_file", "result": "C", "durationMs": 3000}'),
    -- sb_u: another sandbox's outcomes never match; a different tool's
    -- outcome (write_file at 10:00:40) never matches; a durationMs that is
    -- not a number gives way to the time between the events (15 s)
    pg_temp.ev(pg_temp.t('10:00:30'), 'sb_u', 'tool.invoked', '{"toolName": "read_file", "toolArgs": {"path": "/a"}, "agentId": "agent-3"}'),
    pg_temp.ev(pg_temp.t('10:00:40'), 'sb_u', 'tool.completed', '{"toolName": "write_file", "result": "W", "durationMs": 5}'),
    pg_temp.ev(pg_temp.t('10:00:45'), 'sb_u', 'tool.completed', '{"toolName": "read_file", "result": "U", "durationMs": "n/a"}')));

-- Expected, in invocation order:
--   10:00    sb_t read_file /a  completed 10:00:01.5  1500 ms (reported)  "A"
--   10:00:30 sb_u read_file /a  completed 10:00:45   15000 ms (elapsed: "n/a" is no number)  "U"
--   10:01    sb_t read_file /b  failed    10:01:02    2000 ms (elapsed; tool.failed has no durationMs)  ENOENT
--   10:02    sb_t bash          completed 10:02          0 ms (reported)  {"out": "x"}
--   10:03    sb_t search        no outcome
--   10:04    sb_t read_file /c  no outcome (the call at 10:05 comes before any outcome)
--   10:05    sb_t read_file /d  completed 10:06       1000 ms  "D"
SELECT pg_temp.rel(invoked_at) AS invoked, sandbox_id, agent_id, tool_name, tool_args,
       outcome, pg_temp.rel(finished_at) AS finished, duration_ms, result, error
FROM runra_obs.agent_activity
ORDER BY invoked_at, event_id;

-- Every invocation appears once, and no outcome is paired twice: 7 invocations,
-- 5 of the 7 outcomes used (not the orphan at 10:07, nor sb_u's write_file,
-- which was never invoked).
SELECT count(*) AS invocations, count(DISTINCT event_id) AS distinct_invocations,
       count(outcome_event_id) AS with_outcome, count(DISTINCT outcome_event_id) AS distinct_outcomes
FROM runra_obs.agent_activity;

-- Filtering on sandbox_id or invoked_at gives the same pairs as the whole view.
SELECT pg_temp.rel(invoked_at) AS invoked, tool_name, outcome, duration_ms
FROM runra_obs.agent_activity
WHERE sandbox_id = 'sb_t' AND invoked_at >= pg_temp.t('10:04') AND invoked_at < pg_temp.t('11:00')
ORDER BY invoked_at;

ROLLBACK;
