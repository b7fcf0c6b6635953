-- ===========================================================================
-- Per-sandbox totals: one row per sandbox, so that a panel ranking every
-- sandbox of a week (top sandboxes by cost, cost per image and agent,
-- sandboxes above 90 %) reads one row per sandbox instead of grouping the
-- hourly rows of 20 000 sandboxes (docs/rollups.md has the figures).
--
--   rollup_sandbox        one row per sandbox: the hours it has events in,
--                         its costs, image, busiest agent, resource peaks
--   rollup_sandbox_agent  tool calls per sandbox and agent (what the
--                         busiest agent is chosen by)
--
-- The rollup consumer keeps both in the fold that writes the hourly deltas
-- (_fold_rollups, 60_rollups.sql), in the same statement: a row always
-- sums every rollup_1h_sandbox row of its sandbox, deltas included, so
-- compaction never touches it.  Rebuilds and rollup retention recount the
-- sandboxes they change from their hourly rows (_recount_sandboxes).
--
-- runra_obs.sandbox_totals(from, to) answers for a range of hourly
-- buckets: a sandbox whose hours all lie inside the range, with no event
-- waiting for the consumer, is read as it is; the few others (alive at
-- the range's edges, or with events not folded yet) are summed from their
-- hourly rows in the range and the unfolded events.  One definition of the
-- sums serves the fold, the recount and those edges: _sandbox_totals_of(),
-- over an array of hourly rows.
-- ===========================================================================

CREATE TABLE runra_obs.rollup_sandbox (
    sandbox_id               text        PRIMARY KEY,
    first_bucket             timestamptz NOT NULL,
    last_bucket              timestamptz NOT NULL,
    events                   bigint      NOT NULL,
    cost_events              bigint      NOT NULL,
    runtime_cost             numeric,
    storage_cost             numeric,
    cost                     numeric,
    unattributed_cost_events bigint      NOT NULL,
    unattributed_cost        numeric,
    image                    text,
    busiest_agent            text,
    busiest_agent_calls      bigint,
    resource_events          bigint      NOT NULL,
    over_90                  bigint      NOT NULL,
    memory_peak              numeric,
    memory_limit             numeric,
    cpu_peak                 numeric
) WITH (fillfactor = 70);
-- Every fold updates the rows of the sandboxes it saw: room left on each
-- page (fillfactor) lets most updates stay on their page (HOT: only
-- last_bucket and first_bucket are indexed, and they change once an hour
-- at most), so the table does not grow with updates between vacuums.
-- Readers look up the sandboxes active in a range by their last hour.
CREATE INDEX rollup_sandbox_last_bucket_idx ON runra_obs.rollup_sandbox (last_bucket, first_bucket);
COMMENT ON TABLE runra_obs.rollup_sandbox IS
    'One row per sandbox: the sums of all its rollup_1h_sandbox rows (kept by the rollup consumer); read it through runra_obs.sandbox_totals(from, to)';
COMMENT ON COLUMN runra_obs.rollup_sandbox.first_bucket IS 'The first hour (UTC) with an event of the sandbox';
COMMENT ON COLUMN runra_obs.rollup_sandbox.last_bucket IS 'The last hour (UTC) with an event of the sandbox';
COMMENT ON COLUMN runra_obs.rollup_sandbox.events IS 'How many events';
COMMENT ON COLUMN runra_obs.rollup_sandbox.cost_events IS 'How many cost.runtime and cost.storage events';
COMMENT ON COLUMN runra_obs.rollup_sandbox.runtime_cost IS 'Sum of runra_obs.event_cost() of cost.runtime events';
COMMENT ON COLUMN runra_obs.rollup_sandbox.storage_cost IS 'Sum of runra_obs.event_cost() of cost.storage events';
COMMENT ON COLUMN runra_obs.rollup_sandbox.cost IS 'runtime_cost plus storage_cost (cost.total is a report, never added)';
COMMENT ON COLUMN runra_obs.rollup_sandbox.unattributed_cost_events IS 'How many of the cost events carry no agentId';
COMMENT ON COLUMN runra_obs.rollup_sandbox.unattributed_cost IS 'Their cost';
COMMENT ON COLUMN runra_obs.rollup_sandbox.image IS 'The image of its sandbox.created event (the greatest, if several)';
COMMENT ON COLUMN runra_obs.rollup_sandbox.busiest_agent IS 'The agent with the most tool.invoked events (ties: the first by name); NULL without any';
COMMENT ON COLUMN runra_obs.rollup_sandbox.busiest_agent_calls IS 'Its tool calls';
COMMENT ON COLUMN runra_obs.rollup_sandbox.resource_events IS 'How many resource.memory, resource.cpu and resource.disk events';
COMMENT ON COLUMN runra_obs.rollup_sandbox.over_90 IS 'Resource samples above 90 % of their limit';
COMMENT ON COLUMN runra_obs.rollup_sandbox.memory_peak IS 'Largest resource.memory sample';
COMMENT ON COLUMN runra_obs.rollup_sandbox.memory_limit IS 'Largest resource.memory limit';
COMMENT ON COLUMN runra_obs.rollup_sandbox.cpu_peak IS 'Largest resource.cpu sample';

CREATE TABLE runra_obs.rollup_sandbox_agent (
    sandbox_id text   NOT NULL,
    agent_id   text   NOT NULL,
    tool_calls bigint NOT NULL,
    PRIMARY KEY (sandbox_id, agent_id)
) WITH (fillfactor = 70);
COMMENT ON TABLE runra_obs.rollup_sandbox_agent IS
    'Tool calls (tool.invoked events with an agentId) per sandbox and agent, kept by the rollup consumer; rollup_sandbox.busiest_agent is chosen from them';

GRANT SELECT ON runra_obs.rollup_sandbox, runra_obs.rollup_sandbox_agent TO runra_obs_reader;

-- The part of a rollup_1h_sandbox row the totals need.  The fold's rows,
-- the table's and the unfolded events' all become these, so that one
-- function sums them whatever they come from.
CREATE TYPE runra_obs._sandbox_hour AS (
    bucket     timestamptz,
    sandbox_id text,
    event_type text,
    label      text,
    agent_id   text,
    events     bigint,
    cost       numeric,
    value_max  numeric,
    limit_max  numeric,
    over_90    bigint
);
COMMENT ON TYPE runra_obs._sandbox_hour IS
    'Internal: the measures of a rollup_1h_sandbox row that per-sandbox totals are made of';

-- Tool calls per sandbox and agent in some hourly rows.
CREATE FUNCTION runra_obs._sandbox_agent_calls(hours runra_obs._sandbox_hour[])
RETURNS TABLE (sandbox_id text, agent_id text, tool_calls bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT h.sandbox_id, h.agent_id, runra_obs.total(h.events)
    FROM unnest(hours) AS h
    WHERE h.event_type = 'tool.invoked' AND h.agent_id <> ''
    GROUP BY h.sandbox_id, h.agent_id
$$;
COMMENT ON FUNCTION runra_obs._sandbox_agent_calls(runra_obs._sandbox_hour[]) IS
    'Internal: tool calls per sandbox and agent in some hourly rows';

-- The totals of each sandbox in some hourly rows: what a rollup_sandbox
-- row holds, and what sandbox_totals() computes at the range's edges.
-- total() rather than sum(): these are many small groups.
CREATE FUNCTION runra_obs._sandbox_totals_of(hours runra_obs._sandbox_hour[])
RETURNS SETOF runra_obs.rollup_sandbox
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    WITH busiest AS (
        SELECT DISTINCT ON (c.sandbox_id) c.sandbox_id, c.agent_id, c.tool_calls
        FROM runra_obs._sandbox_agent_calls(hours) AS c
        ORDER BY c.sandbox_id, c.tool_calls DESC, c.agent_id
    ), totals AS (
        SELECT h.sandbox_id,
               min(h.bucket) AS first_bucket,
               max(h.bucket) AS last_bucket,
               runra_obs.total(h.events) AS events,
               coalesce(runra_obs.total(h.events) FILTER (WHERE h.is_cost), 0) AS cost_events,
               runra_obs.total(h.cost) FILTER (WHERE h.event_type = 'cost.runtime') AS runtime_cost,
               runra_obs.total(h.cost) FILTER (WHERE h.event_type = 'cost.storage') AS storage_cost,
               runra_obs.total(h.cost) FILTER (WHERE h.is_cost) AS cost,
               coalesce(runra_obs.total(h.events) FILTER (WHERE h.is_cost AND h.agent_id = ''), 0)
                   AS unattributed_cost_events,
               runra_obs.total(h.cost) FILTER (WHERE h.is_cost AND h.agent_id = '') AS unattributed_cost,
               max(h.label) FILTER (WHERE h.event_type = 'sandbox.created') AS image,
               coalesce(runra_obs.total(h.events) FILTER (WHERE h.is_resource), 0) AS resource_events,
               coalesce(runra_obs.total(h.over_90) FILTER (WHERE h.is_resource), 0) AS over_90,
               max(h.value_max) FILTER (WHERE h.event_type = 'resource.memory') AS memory_peak,
               max(h.limit_max) FILTER (WHERE h.event_type = 'resource.memory') AS memory_limit,
               max(h.value_max) FILTER (WHERE h.event_type = 'resource.cpu') AS cpu_peak
        FROM (SELECT u.*,
                     u.event_type IN ('cost.runtime', 'cost.storage') AS is_cost,
                     u.event_type IN ('resource.memory', 'resource.cpu', 'resource.disk') AS is_resource
              FROM unnest(hours) AS u) AS h
        GROUP BY h.sandbox_id
    )
    SELECT t.sandbox_id, t.first_bucket, t.last_bucket, t.events, t.cost_events,
           t.runtime_cost, t.storage_cost, t.cost, t.unattributed_cost_events, t.unattributed_cost,
           t.image, b.agent_id, b.tool_calls, t.resource_events, t.over_90,
           t.memory_peak, t.memory_limit, t.cpu_peak
    FROM totals AS t LEFT JOIN busiest AS b ON b.sandbox_id = t.sandbox_id
$$;
COMMENT ON FUNCTION runra_obs._sandbox_totals_of(runra_obs._sandbox_hour[]) IS
    'Internal: the rollup_sandbox row of each sandbox in some hourly rows';

-- How a fold's totals of a sandbox are added to its rollup_sandbox row,
-- as SQL: the ON CONFLICT clause of an INSERT INTO runra_obs.rollup_sandbox
-- AS s of the fold's totals, whose busiest agent is one whose tool calls
-- grew now, with its total calls.  The fold on one node and on Citus's
-- shards both end with it.
CREATE FUNCTION runra_obs._sandbox_totals_upsert_sql()
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT 'ON CONFLICT (sandbox_id) DO UPDATE SET
            first_bucket = least(s.first_bucket, excluded.first_bucket),
            last_bucket = greatest(s.last_bucket, excluded.last_bucket),
            events = s.events + excluded.events,
            cost_events = s.cost_events + excluded.cost_events,
            -- (NULL + x is NULL; a sum of no costs stays NULL)
            runtime_cost = coalesce(s.runtime_cost + excluded.runtime_cost, s.runtime_cost, excluded.runtime_cost),
            storage_cost = coalesce(s.storage_cost + excluded.storage_cost, s.storage_cost, excluded.storage_cost),
            cost = coalesce(s.cost + excluded.cost, s.cost, excluded.cost),
            unattributed_cost_events = s.unattributed_cost_events + excluded.unattributed_cost_events,
            unattributed_cost = coalesce(s.unattributed_cost + excluded.unattributed_cost,
                                         s.unattributed_cost, excluded.unattributed_cost),
            image = greatest(s.image, excluded.image),
            -- the busier of the two, by the order _sandbox_totals_of() uses
            (busiest_agent, busiest_agent_calls) = (
                SELECT w.agent, w.calls
                FROM (VALUES (s.busiest_agent, s.busiest_agent_calls),
                             (excluded.busiest_agent, excluded.busiest_agent_calls)) AS w (agent, calls)
                WHERE w.agent IS NOT NULL
                ORDER BY w.calls DESC, w.agent
                LIMIT 1),
            resource_events = s.resource_events + excluded.resource_events,
            over_90 = s.over_90 + excluded.over_90,
            memory_peak = greatest(s.memory_peak, excluded.memory_peak),
            memory_limit = greatest(s.memory_limit, excluded.memory_limit),
            cpu_peak = greatest(s.cpu_peak, excluded.cpu_peak)'
$$;
COMMENT ON FUNCTION runra_obs._sandbox_totals_upsert_sql() IS
    'Internal: the ON CONFLICT clause that adds a fold''s totals of a sandbox to its rollup_sandbox row, as SQL';

-- Recounts the totals of some sandboxes from their hourly rows, after a
-- change that the fold's running sums cannot follow (a rebuilt window,
-- hours past retention).  The caller holds the rollup consumer's row, so
-- no fold adds to these rows meanwhile.
CREATE FUNCTION runra_obs._recount_sandboxes(sandboxes text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hours runra_obs._sandbox_hour[];
BEGIN
    IF coalesce(cardinality(sandboxes), 0) = 0 THEN
        RETURN;
    END IF;
    hours := ARRAY(
        SELECT ROW(r.bucket, r.sandbox_id, r.event_type, r.label, r.agent_id, r.events, r.cost,
                   r.value_max, r.limit_max, r.over_90)::runra_obs._sandbox_hour
        FROM runra_obs.rollup_1h_sandbox AS r
        WHERE r.sandbox_id = ANY (sandboxes));
    DELETE FROM runra_obs.rollup_sandbox WHERE sandbox_id = ANY (sandboxes);
    DELETE FROM runra_obs.rollup_sandbox_agent WHERE sandbox_id = ANY (sandboxes);
    INSERT INTO runra_obs.rollup_sandbox_agent (sandbox_id, agent_id, tool_calls)
    SELECT c.sandbox_id, c.agent_id, c.tool_calls FROM runra_obs._sandbox_agent_calls(hours) AS c;
    INSERT INTO runra_obs.rollup_sandbox
    SELECT * FROM runra_obs._sandbox_totals_of(hours);
END
$$;
COMMENT ON FUNCTION runra_obs._recount_sandboxes(text[]) IS
    'Internal: recounts the rollup_sandbox and rollup_sandbox_agent rows of some sandboxes from their rollup_1h_sandbox rows';

-- The per-sandbox totals of the hourly buckets in [from_bucket,
-- to_bucket] (both ends included, as Grafana's $__timeFilter), exact to
-- the last committed event:
--   inside: a sandbox whose hours all lie in the range and that has no
--   event waiting for the rollup consumer is its rollup_sandbox row;
--   edge: any other sandbox with events in the range is summed from its
--   rollup_1h_sandbox rows in the range and its unfolded events there.
-- The image is the sandbox's, wherever its sandbox.created event lies;
-- the busiest agent is the one of the range.
CREATE FUNCTION runra_obs.sandbox_totals(from_bucket timestamptz, to_bucket timestamptz)
RETURNS SETOF runra_obs.rollup_sandbox
LANGUAGE sql STABLE
AS $$
    WITH unfolded AS MATERIALIZED (
        SELECT ROW(u.bucket, u.sandbox_id, u.event_type, u.label, u.agent_id, u.events, u.cost,
                   u.value_max, u.limit_max, u.over_90)::runra_obs._sandbox_hour AS h
        FROM runra_obs.consumers AS c,
             LATERAL runra_obs._rollup_rows(c.position, 9223372036854775807, '-infinity', 'infinity') AS u
        WHERE c.name = 'rollups' AND u.rollup = 'rollup_1h_sandbox'
    ), edge AS MATERIALIZED (
        -- alive at the range's start or end (the index on last_bucket
        -- finds the sandboxes of the range), or with events not folded
        SELECT s.sandbox_id
        FROM runra_obs.rollup_sandbox AS s
        WHERE s.last_bucket >= from_bucket AND s.first_bucket <= to_bucket
          AND (s.first_bucket < from_bucket OR s.last_bucket > to_bucket)
        UNION
        SELECT (f.h).sandbox_id FROM unfolded AS f
    ), edge_hours AS (
        SELECT array_agg(x.h) AS hours
        FROM (SELECT ROW(r.bucket, r.sandbox_id, r.event_type, r.label, r.agent_id, r.events, r.cost,
                         r.value_max, r.limit_max, r.over_90)::runra_obs._sandbox_hour AS h
              FROM runra_obs.rollup_1h_sandbox AS r
              WHERE r.sandbox_id IN (SELECT e.sandbox_id FROM edge AS e)
                AND r.bucket BETWEEN from_bucket AND to_bucket
              UNION ALL
              SELECT f.h FROM unfolded AS f WHERE (f.h).bucket BETWEEN from_bucket AND to_bucket) AS x
    ), edge_images AS MATERIALIZED (
        -- the image of an edge sandbox, folded or not, in the range or not
        SELECT s.sandbox_id, s.image
        FROM runra_obs.rollup_sandbox AS s
        WHERE s.sandbox_id IN (SELECT e.sandbox_id FROM edge AS e)
        UNION ALL
        SELECT (f.h).sandbox_id, (f.h).label FROM unfolded AS f WHERE (f.h).event_type = 'sandbox.created'
    )
    SELECT s.*
    FROM runra_obs.rollup_sandbox AS s
    WHERE s.last_bucket >= from_bucket AND s.last_bucket <= to_bucket AND s.first_bucket >= from_bucket
      AND NOT EXISTS (SELECT FROM unfolded AS f WHERE (f.h).sandbox_id = s.sandbox_id)
    UNION ALL
    SELECT t.sandbox_id, t.first_bucket, t.last_bucket, t.events, t.cost_events,
           t.runtime_cost, t.storage_cost, t.cost, t.unattributed_cost_events, t.unattributed_cost,
           greatest(t.image, (SELECT max(i.image) FROM edge_images AS i WHERE i.sandbox_id = t.sandbox_id)),
           t.busiest_agent, t.busiest_agent_calls, t.resource_events, t.over_90,
           t.memory_peak, t.memory_limit, t.cpu_peak
    FROM edge_hours AS eh, runra_obs._sandbox_totals_of(eh.hours) AS t
$$;
COMMENT ON FUNCTION runra_obs.sandbox_totals(timestamptz, timestamptz) IS
    'Per sandbox with events in the hourly buckets from from_bucket to to_bucket (both included): its costs, image, busiest agent in the range and resource peaks, exact to the last committed event; first_bucket and last_bucket are its first and last hour in the range';

REVOKE ALL ON FUNCTION
    runra_obs._sandbox_agent_calls(runra_obs._sandbox_hour[]),
    runra_obs._sandbox_totals_of(runra_obs._sandbox_hour[]),
    runra_obs._sandbox_totals_upsert_sql(),
    runra_obs._recount_sandboxes(text[]),
    runra_obs.sandbox_totals(timestamptz, timestamptz)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    runra_obs._sandbox_agent_calls(runra_obs._sandbox_hour[]),
    runra_obs._sandbox_totals_of(runra_obs._sandbox_hour[]),
    runra_obs.sandbox_totals(timestamptz, timestamptz)
TO runra_obs_reader;
