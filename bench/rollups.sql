-- bench/rollups.sql — the benchmark's own objects (schema bench), loaded by
-- bench/rollups.sh into its private cluster; never part of the extension.

CREATE SCHEMA bench;

-- n generated events, numbered from lo, spread evenly over the 7 days
-- before `upto`, shaped like a fleet: sandboxes of 500 events each
-- (created, started, paused, resumed, terminated among them), every event
-- type of the spec, 20 commands, 8 tools, 5 agents, 4 images; failures,
-- timeouts and memory peaks at fixed rates.  Shared by the benchmarks.
CREATE FUNCTION bench.generate(lo bigint, hi bigint, total bigint, upto timestamptz)
RETURNS bigint LANGUAGE sql AS $$
    WITH ins AS (
        INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data)
        SELECT upto - interval '7 days' + (i::float8 / total) * interval '7 days',
               'sb_' || (i / 500), t.type, t.data
        FROM generate_series(lo, hi) AS i,
             LATERAL (SELECT i % 500 AS j, (i * 2654435761) % 1000 AS h) AS k,
             LATERAL (SELECT CASE
                 WHEN k.j = 0   THEN 'sandbox.created'
                 WHEN k.j = 1   THEN 'sandbox.started'
                 WHEN k.j = 250 THEN 'sandbox.paused'
                 WHEN k.j = 251 THEN 'sandbox.resumed'
                 WHEN k.j = 499 THEN 'sandbox.terminated'
                 WHEN k.h < 250 THEN 'exec.completed'
                 WHEN k.h < 350 THEN 'exec.started'
                 WHEN k.h < 355 THEN 'exec.timed_out'
                 WHEN k.h < 360 THEN 'exec.failed'
                 WHEN k.h < 460 THEN 'tool.invoked'
                 WHEN k.h < 540 THEN 'tool.completed'
                 WHEN k.h < 550 THEN 'tool.failed'
                 WHEN k.h < 650 THEN 'resource.memory'
                 WHEN k.h < 740 THEN 'resource.cpu'
                 WHEN k.h < 750 THEN 'resource.disk'
                 WHEN k.h < 830 THEN 'cost.runtime'
                 WHEN k.h < 850 THEN 'cost.storage'
                 WHEN k.h < 930 THEN 'file.created'
                 WHEN k.h < 970 THEN 'file.read'
                 WHEN k.h < 975 THEN 'file.modified'
                 WHEN k.h < 977 THEN 'file.deleted'
                 WHEN k.h < 979 THEN 'port.exposed'
                 WHEN k.h < 981 THEN 'port.closed'
                 WHEN k.h < 983 THEN 'cost.total'
                 ELSE 'network.egress' END AS type) AS ty,
             LATERAL (SELECT ty.type, CASE split_part(ty.type, '.', 1)
                 WHEN 'sandbox' THEN jsonb_build_object(
                     'image', 'image_' || (i / 500) % 4, 'startupDurationMs', 200 + (k.h * 7) % 3000,
                     'runtimeDurationMs', 60000 + k.h, 'pausedDurationMs', 1000 + k.h,
                     'totalRuntimeMs', 3600000 + k.h, 'reason', (ARRAY['completed', 'timeout', 'error'])[1 + k.h % 3])
                 WHEN 'exec' THEN jsonb_build_object(
                     'command', 'command_' || (k.h * 13) % 20, 'exitCode', (k.h % 17 = 0)::int,
                     'durationMs', ((k.h * 37) % 1000) * (1 + (k.h * 13) % 20) + 1, 'timeoutMs', 60000,
                     'stdout', 'ok', 'error', 'infrastructure')
                 WHEN 'tool' THEN jsonb_build_object(
                     'toolName', 'tool_' || k.h % 8, 'agentId', 'agent_' || (i / 500) % 5,
                     'toolArgs', jsonb_build_object('q', k.h), 'durationMs', 10 + k.h)
                 WHEN 'resource' THEN jsonb_build_object(
                     'memoryUsedMb', 200 + (k.h * 11) % 850, 'memoryLimitMb', 1024,
                     'cpuPercent', (k.h * 7) % 100, 'cores', 2,
                     'diskUsedMb', 1000 + (k.h * 13) % 9000, 'diskLimitMb', 10240)
                 WHEN 'cost' THEN CASE ty.type WHEN 'cost.total' THEN jsonb_build_object(
                     'sandboxCost', round(((k.h % 100) + 1) / 100.0, 4), 'period', 'hour')
                 ELSE jsonb_build_object(
                     'cost', round(((k.h % 100) + 1) / 10000.0, 4), 'durationMs', 60000, 'rate', 0.0001) END
                 WHEN 'port' THEN jsonb_build_object('port', 3000 + k.h % 10, 'url', 'https://sb.example/' || k.h % 10)
                 WHEN 'file' THEN jsonb_build_object('path', '/work/f' || k.h % 50, 'sizeBytes', k.h * 100)
                 ELSE jsonb_build_object('host', 'host' || k.h % 10 || '.example', 'port', 443, 'bytesSent', k.h * 10)
                 END AS data) AS t
        RETURNING 1
    )
    SELECT count(*) FROM ins
$$;

-- The rollup tables recomputed from raw events of a window: a panel's SQL
-- with these in place of the rollup tables is the same query on raw events.
-- sandbox_id is '' unless per_sandbox (grouping by a constant is free).
CREATE FUNCTION bench.raw(width interval, per_sandbox boolean, from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (bucket timestamptz, sandbox_id text, event_type text, label text, agent_id text,
               events bigint, failures bigint, cost numeric, duration_count bigint,
               duration_sum numeric, duration_max numeric, duration_hist bigint[],
               value_count bigint, value_sum numeric, value_max numeric, limit_max numeric,
               over_90 bigint)
LANGUAGE sql STABLE AS $$
    SELECT date_bin(width, created_at, timestamptz '2000-01-01 00:00+00'),
           CASE WHEN per_sandbox THEN sandbox_id ELSE '' END, event_type,
           runra_obs.event_label(event_type, data), runra_obs.event_agent(data),
           count(*), count(*) FILTER (WHERE runra_obs.event_failed(event_type, data)),
           sum(runra_obs.event_cost(event_type, data)),
           count(runra_obs.event_duration_ms(event_type, data)),
           sum(runra_obs.event_duration_ms(event_type, data)),
           max(runra_obs.event_duration_ms(event_type, data)),
           runra_obs.duration_histogram(runra_obs.event_duration_ms(event_type, data)::float8),
           count(runra_obs.event_value(event_type, data)), sum(runra_obs.event_value(event_type, data)),
           max(runra_obs.event_value(event_type, data)), max(runra_obs.event_limit(event_type, data)),
           count(*) FILTER (WHERE runra_obs.event_value(event_type, data) > 0.9 * runra_obs.event_limit(event_type, data))
    FROM runra_obs.sandbox_events
    WHERE created_at >= from_ts - width AND created_at <= to_ts + width
    GROUP BY 1, 2, 3, 4, 5
$$;

CREATE FUNCTION bench.raw_ingest(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (bucket timestamptz, events bigint, transactions bigint,
               delay_sum_s double precision, delay_max_s double precision)
LANGUAGE sql STABLE AS $$
    SELECT date_bin('1 minute', ingested_at, timestamptz '2000-01-01 00:00+00'), count(*),
           count(DISTINCT xmin::text),
           sum(extract(epoch FROM ingested_at - created_at)), max(extract(epoch FROM ingested_at - created_at))
    FROM runra_obs.sandbox_events
    WHERE ingested_at >= from_ts AND ingested_at <= to_ts
    GROUP BY 1
$$;


-- runra_obs.sandbox_totals() recomputed from raw events: per sandbox with
-- events in the hours [from_ts, to_ts], the image from its sandbox.created
-- event whenever that was, the busiest agent of the range.
CREATE FUNCTION bench.raw_sandbox_totals(from_ts timestamptz, to_ts timestamptz)
RETURNS SETOF runra_obs.rollup_sandbox
LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT *
        FROM bench.raw('1 hour', true, from_ts, to_ts) AS h
        WHERE h.bucket BETWEEN from_ts AND to_ts
    ), calls AS (
        SELECT DISTINCT ON (sandbox_id) sandbox_id, agent_id, sum(events)::bigint AS n
        FROM r WHERE event_type = 'tool.invoked' AND agent_id <> ''
        GROUP BY sandbox_id, agent_id ORDER BY sandbox_id, sum(events) DESC, agent_id
    ), images AS (
        SELECT sandbox_id, max(runra_obs.event_label(event_type, data)) AS image
        FROM runra_obs.sandbox_events WHERE event_type = 'sandbox.created'
        GROUP BY sandbox_id
    )
    SELECT r.sandbox_id, min(bucket), max(bucket), sum(events)::bigint,
           coalesce(sum(events) FILTER (WHERE event_type IN ('cost.runtime', 'cost.storage')), 0)::bigint,
           sum(cost) FILTER (WHERE event_type = 'cost.runtime'),
           sum(cost) FILTER (WHERE event_type = 'cost.storage'),
           sum(cost) FILTER (WHERE event_type IN ('cost.runtime', 'cost.storage')),
           coalesce(sum(events) FILTER (WHERE event_type IN ('cost.runtime', 'cost.storage') AND r.agent_id = ''), 0)::bigint,
           sum(cost) FILTER (WHERE event_type IN ('cost.runtime', 'cost.storage') AND r.agent_id = ''),
           i.image, c.agent_id, c.n,
           coalesce(sum(events) FILTER (WHERE event_type LIKE 'resource.%'), 0)::bigint,
           coalesce(sum(over_90) FILTER (WHERE event_type LIKE 'resource.%'), 0)::bigint,
           max(value_max) FILTER (WHERE event_type = 'resource.memory'),
           max(limit_max) FILTER (WHERE event_type = 'resource.memory'),
           max(value_max) FILTER (WHERE event_type = 'resource.cpu')
    FROM r LEFT JOIN calls AS c USING (sandbox_id) LEFT JOIN images AS i USING (sandbox_id)
    GROUP BY r.sandbox_id, c.agent_id, c.n, i.image
$$;
