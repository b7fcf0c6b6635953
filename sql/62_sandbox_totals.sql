-- Per-sandbox totals (runra_obs.sandbox_totals) equal the same sums taken
-- from the raw events here, independently of the rollup code: for ranges
-- that hold whole sandboxes and ranges that cut them, with events not
-- folded yet, with late events, after compaction, a rebuild and rollup
-- retention.  No worker runs here; fold_rollups() does what the rollup
-- worker does each second.
CREATE DATABASE sandbox_totals_regression;
\c sandbox_totals_regression
CREATE EXTENSION runra_obs;
SET timezone = 'UTC';
-- The comparisons below (sandbox_totals() against the reference, EXCEPT
-- ALL both ways, over eight ranges) are estimated far above
-- jit_above_cost; compiling them took 21 of this file's 23 seconds.
SET jit = off;
-- the events' first hour
CREATE TEMP TABLE base AS SELECT date_trunc('hour', now()) - interval '2 days' AS t;

-- The reference: per sandbox with events whose hour lies in [f, t], from
-- the raw events, the way the panels used to group hourly rows.
CREATE FUNCTION pg_temp.reference(f timestamptz, t timestamptz)
RETURNS SETOF runra_obs.rollup_sandbox LANGUAGE sql AS $$
    WITH e AS (
        SELECT date_bin('1 hour', created_at, timestamptz '2000-01-01') AS bucket, sandbox_id, event_type,
               runra_obs.event_agent(data) AS agent, runra_obs.event_cost(event_type, data) AS cost,
               runra_obs.event_value(event_type, data) AS value, runra_obs.event_limit(event_type, data) AS lim,
               data ->> 'image' AS image
        FROM runra_obs.sandbox_events
    ), r AS (
        SELECT * FROM e WHERE bucket BETWEEN f AND t
    ), calls AS (
        SELECT DISTINCT ON (sandbox_id) sandbox_id, agent, count(*) AS n
        FROM r WHERE event_type = 'tool.invoked' AND agent <> ''
        GROUP BY sandbox_id, agent ORDER BY sandbox_id, count(*) DESC, agent
    )
    SELECT r.sandbox_id, min(bucket), max(bucket), count(*),
           count(*) FILTER (WHERE event_type IN ('cost.runtime', 'cost.storage')),
           sum(cost) FILTER (WHERE event_type = 'cost.runtime'),
           sum(cost) FILTER (WHERE event_type = 'cost.storage'),
           sum(cost) FILTER (WHERE event_type IN ('cost.runtime', 'cost.storage')),
           count(*) FILTER (WHERE event_type IN ('cost.runtime', 'cost.storage') AND r.agent = ''),
           sum(cost) FILTER (WHERE event_type IN ('cost.runtime', 'cost.storage') AND r.agent = ''),
           (SELECT max(image) FROM e AS all_time
            WHERE all_time.sandbox_id = r.sandbox_id AND all_time.event_type = 'sandbox.created'),
           c.agent, c.n,
           count(*) FILTER (WHERE event_type LIKE 'resource.%'),
           count(*) FILTER (WHERE event_type LIKE 'resource.%' AND value > 0.9 * lim),
           max(value) FILTER (WHERE event_type = 'resource.memory'),
           max(lim) FILTER (WHERE event_type = 'resource.memory'),
           max(value) FILTER (WHERE event_type = 'resource.cpu')
    FROM r LEFT JOIN calls AS c USING (sandbox_id)
    GROUP BY r.sandbox_id, c.agent, c.n
$$;
-- Rows that differ between sandbox_totals() and the reference, for ranges
-- that hold every sandbox whole, cut them at hours 1, 2 and 3, or hold one
-- hour; with the count of sandboxes the whole range holds.
CREATE FUNCTION pg_temp.diffs() RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(format('%s..%s:%s', lo, hi, n), ' ' ORDER BY lo, hi)
    FROM (VALUES (-1, 30), (0, 1), (1, 2), (2, 3), (1, 1), (3, 30), (-48, 0), (-240, 30)) AS w (lo, hi),
         LATERAL (SELECT base.t + lo * interval '1 hour' AS f, base.t + hi * interval '1 hour' AS t FROM base) AS r,
         LATERAL (SELECT count(*) AS n FROM (
             (SELECT * FROM runra_obs.sandbox_totals(r.f, r.t) EXCEPT ALL SELECT * FROM pg_temp.reference(r.f, r.t))
             UNION ALL
             (SELECT * FROM pg_temp.reference(r.f, r.t) EXCEPT ALL SELECT * FROM runra_obs.sandbox_totals(r.f, r.t))) AS d) AS x
$$;

-- 1215 events over five hours two days ago: 41 sandboxes, each alive for
-- a part of it (most across hour edges), costs with and without their own
-- agent, tool calls by three agents, resource samples above and below 90 %.
CREATE TEMP TABLE fleet AS
SELECT jsonb_build_object(
           'timestamp', to_char(base.t + (s * 5 + k * 3) * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'sandboxId', 'sb_' || s,
           'type', (ARRAY['sandbox.created', 'cost.runtime', 'cost.storage', 'tool.invoked',
                          'resource.memory', 'resource.cpu', 'exec.completed', 'tool.invoked'])[1 + k % 8],
           'data', CASE k % 8
               WHEN 0 THEN jsonb_build_object('image', 'image_' || s % 3)
               WHEN 1 THEN jsonb_build_object('cost', k * 0.01, 'durationMs', 60000, 'rate', 0.001)
               WHEN 2 THEN jsonb_build_object('cost', k * 0.001, 'durationMs', 60000, 'rate', 0.0001)
                           || CASE WHEN s % 4 = 0 THEN '{"agentId": "agent_own"}'::jsonb ELSE '{}'::jsonb END
               WHEN 4 THEN jsonb_build_object('memoryUsedMb', 500 + (s * k) % 500, 'memoryLimitMb', 1000)
               WHEN 5 THEN jsonb_build_object('cpuPercent', (s * k) % 100)
               WHEN 6 THEN jsonb_build_object('command', 'ls', 'exitCode', 0, 'durationMs', k)
               -- the busiest agent of the first 12 minutes is not that of all
               ELSE jsonb_build_object('toolName', 'search',
                                       'agentId', 'agent_' || (s + (k >= 12)::int) % 3) END) AS event,
       s, k
FROM base, generate_series(1, 41) AS s, generate_series(0, 29) AS k
WHERE s <= 40 OR k >= 15;

-- First the half with k < 15, folded, then the rest, not folded yet: the
-- totals add the unfolded events of the sandboxes they touch (and sb_41
-- has no other).
SELECT ingested, failed FROM runra_obs.ingest((SELECT jsonb_agg(event) FROM fleet WHERE k < 15));
SELECT runra_obs.fold_rollups() > 0 AS folded;
SELECT pg_temp.diffs() AS folded_half;
SELECT ingested, failed FROM runra_obs.ingest((SELECT jsonb_agg(event) FROM fleet WHERE k >= 15));
SELECT pg_temp.diffs() AS half_unfolded;
SELECT runra_obs.fold_rollups() > 0 AS folded;
SELECT pg_temp.diffs() AS all_folded;
-- (the figures behind it, for the whole range)
SELECT count(*) AS sandboxes, sum(events) AS events, sum(cost_events) AS cost_events, sum(cost) AS cost,
       sum(unattributed_cost) AS unattributed_cost, count(DISTINCT image) AS images,
       count(DISTINCT busiest_agent) AS agents, sum(over_90) AS over_90
FROM runra_obs.sandbox_totals((SELECT t FROM base) - interval '1 hour', (SELECT t FROM base) + interval '1 day');
-- the summary rows are the whole sandboxes, deltas included
SELECT count(*) AS summary_rows, sum(events) AS summary_events FROM runra_obs.rollup_sandbox;

-- Late events: a sandbox's events ten days before, in a statement of its
-- own; the busiest agent of sb_1 becomes agent_0 (9 calls; agent_2 has 4).
SELECT ingested FROM runra_obs.ingest((
    SELECT jsonb_agg(jsonb_build_object(
        'timestamp', to_char(base.t - interval '8 days' + i * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'sandboxId', 'sb_1', 'type', 'tool.invoked', 'data', '{"toolName": "x", "agentId": "agent_0"}'::jsonb))
    FROM base, generate_series(1, 9) AS i));
SELECT pg_temp.diffs() AS late_unfolded;
SELECT runra_obs.fold_rollups() > 0 AS folded;
SELECT pg_temp.diffs() AS late_folded;
SELECT busiest_agent, busiest_agent_calls FROM runra_obs.rollup_sandbox WHERE sandbox_id = 'sb_1';
-- An agent whose calls grow but stay below the leader's leaves it the
-- busiest (agent_1: 3 + 2); one that ties it with a name sorting first
-- takes its place (agent_: 9, like agent_0).
CREATE FUNCTION pg_temp.calls(agent text, n integer) RETURNS integer LANGUAGE sql AS $$
    SELECT ingested FROM runra_obs.ingest((
        SELECT jsonb_agg(jsonb_build_object(
            'timestamp', to_char(base.t - interval '8 days' + i * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'sandboxId', 'sb_1', 'type', 'tool.invoked', 'data', jsonb_build_object('toolName', 'x', 'agentId', agent)))
        FROM base, generate_series(1, n) AS i))
$$;
SELECT pg_temp.calls('agent_1', 2) AS ingested;
SELECT runra_obs.fold_rollups() > 0 AS folded;
SELECT busiest_agent, busiest_agent_calls FROM runra_obs.rollup_sandbox WHERE sandbox_id = 'sb_1';
SELECT pg_temp.calls('agent_', 9) AS ingested;
SELECT runra_obs.fold_rollups() > 0 AS folded;
SELECT busiest_agent, busiest_agent_calls FROM runra_obs.rollup_sandbox WHERE sandbox_id = 'sb_1';
SELECT pg_temp.diffs() AS busiest_changed;

-- Compaction leaves the totals alone; a rebuild recounts its sandboxes.
SELECT runra_obs._maintain_rollups() ~ '^rollups: [1-9][0-9]* delta rows compacted away' AS compacted;
SELECT pg_temp.diffs() AS compacted;
SELECT runra_obs.rebuild_rollups(t + interval '1 hour', t + interval '2 hours') > 0 AS rebuilt FROM base;
SELECT pg_temp.diffs() AS rebuilt;
-- a rebuild with the totals gone wrong (here: by hand) puts them right
UPDATE runra_obs.rollup_sandbox SET events = 0, cost = 0 WHERE sandbox_id IN ('sb_3', 'sb_4');
SELECT runra_obs.rebuild_rollups(t - interval '1 day', t + interval '1 day') > 0 AS rebuilt FROM base;
SELECT pg_temp.diffs() AS rebuilt_again;

-- Rollup retention: a sandbox whose first hours pass runra_obs.rollup_retention
-- is recounted from the hours it keeps; one with none left goes.
INSERT INTO runra_obs.rollup_1h_sandbox (bucket, sandbox_id, event_type, label, agent_id, events,
                                         failures, cost, duration_count, value_count, over_90, compacted)
VALUES (now() - interval '401 days', 'sb_old', 'cost.runtime', '', '', 2, 0, 5, 0, 0, 0, true),
       (now() - interval '399 days', 'sb_old', 'cost.runtime', '', '', 1, 0, 3, 0, 0, 0, true),
       (now() - interval '402 days', 'sb_gone', 'cost.runtime', '', '', 1, 0, 7, 0, 0, 0, true);
SELECT runra_obs._recount_sandboxes(ARRAY['sb_old', 'sb_gone']);
SELECT sandbox_id, events, cost FROM runra_obs.rollup_sandbox WHERE sandbox_id IN ('sb_old', 'sb_gone') ORDER BY 1;
SELECT runra_obs._maintain_rollups() ~ ', 2 expired rows dropped$' AS expired;
SELECT sandbox_id, events, cost, first_bucket > now() - interval '400 days' AS first_kept
FROM runra_obs.rollup_sandbox WHERE sandbox_id IN ('sb_old', 'sb_gone') ORDER BY 1;
SELECT pg_temp.diffs() AS after_retention;

-- The panels' question, as a reader: the top sandboxes by cost.
-- (the first hour as a psql variable: the reader cannot read the temp
-- table, and now() may be in the next hour by now)
SELECT t AS base_t FROM base \gset
SET ROLE runra_obs_reader;
SELECT sandbox_id, cost
FROM runra_obs.sandbox_totals(:'base_t', :'base_t'::timestamptz + interval '1 day')
WHERE cost_events > 0
ORDER BY cost DESC, sandbox_id
LIMIT 3;
-- a reader cannot write the totals
SELECT runra_obs._recount_sandboxes(ARRAY['sb_1']);
INSERT INTO runra_obs.rollup_sandbox_agent VALUES ('sb_1', 'x', 1);
RESET ROLE;

\c contrib_regression
DROP DATABASE sandbox_totals_regression;
