-- ===========================================================================
-- What an event means: the one definition of each fact that the SQL API
-- (20_analytics.sql, 70_api_rollups.sql), the rollups (60_rollups.sql), the
-- dashboards (which read the rollups) and the forwarders read.
--
--   a number   json_numeric()        a JSON number, or a string spelling a
--                                    decimal number, below 1e30 in magnitude
--   failed     event_failed()        exec.failed, exec.timed_out, tool.failed,
--                                    and an exec.completed whose exitCode is
--                                    not the number 0 (a missing or unusable
--                                    one too: the seed's monitor counts only
--                                    exitCode === 0 as a success)
--   cost       event_cost()          data.sandboxCost of a cost.total, data.cost
--                                    of any other event
--   duration   event_duration_ms()   the type's own duration field, in ms
--   value      event_value()         the sample a resource, file or network
--                                    event carries
--   limit      event_limit()         what a resource sample is measured against
--   label      event_label()         command, tool, reason, image, host, period
--   agent      event_agent()         data.agentId
--
-- Plain SQL expressions over json_numeric() (C), inlined by the planner;
-- none of them can fail on odd data: a field that is missing or not a
-- number gives NULL, and the figure skips it.
-- ===========================================================================

-- A JSON number, or a string spelling a decimal number (as the SDK's own
-- query (data->>'cost')::numeric reads it), below 1e30 in magnitude, as
-- numeric; NULL for anything else (src/rollup/json_numeric.c).
CREATE FUNCTION runra_obs.json_numeric(value jsonb)
RETURNS numeric
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_json_numeric';
COMMENT ON FUNCTION runra_obs.json_numeric(jsonb) IS
    'A JSON number or decimal string below 1e30 in magnitude as numeric, NULL for anything else';

-- A duration or a sample: rounded to a thousandth (a microsecond for a
-- duration), without trailing zeros, so 1500 stays 1500.
CREATE FUNCTION runra_obs._json_measure(value jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT trim_scale(round(runra_obs.json_numeric(value), 3))
$$;
COMMENT ON FUNCTION runra_obs._json_measure(jsonb) IS
    'Internal: runra_obs.json_numeric() rounded to a thousandth, as durations and samples are kept';

CREATE FUNCTION runra_obs.event_label(event_type text, data jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT left(coalesce(CASE
        WHEN event_type LIKE 'exec.%' THEN data ->> 'command'
        WHEN event_type LIKE 'tool.%' THEN data ->> 'toolName'
        WHEN event_type = 'sandbox.terminated' THEN data ->> 'reason'
        WHEN event_type = 'sandbox.created' THEN data ->> 'image'
        WHEN event_type = 'network.egress' THEN data ->> 'host'
        WHEN event_type = 'cost.total' THEN data ->> 'period'
    END, ''), 200)
$$;
COMMENT ON FUNCTION runra_obs.event_label(text, jsonb) IS
    'The label rollups keep per event: command (exec.*), toolName (tool.*), reason (sandbox.terminated), image (sandbox.created), host (network.egress), period (cost.total); '''' otherwise; at most 200 characters';

CREATE FUNCTION runra_obs.event_agent(data jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT left(coalesce(data ->> 'agentId', ''), 200)
$$;
COMMENT ON FUNCTION runra_obs.event_agent(jsonb) IS
    'The agentId an event carries, '''' if none; at most 200 characters';

CREATE FUNCTION runra_obs.event_failed(event_type text, data jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN event_type IN ('exec.failed', 'exec.timed_out', 'tool.failed') THEN true
        WHEN event_type = 'exec.completed'
        THEN runra_obs.json_numeric(data -> 'exitCode') IS DISTINCT FROM 0
        ELSE false
    END
$$;
COMMENT ON FUNCTION runra_obs.event_failed(text, jsonb) IS
    'Whether an event is a failure: exec.failed, exec.timed_out, tool.failed, and exec.completed whose exitCode is not the number 0 (missing included)';

CREATE FUNCTION runra_obs.event_cost(event_type text, data jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT runra_obs.json_numeric(data -> CASE event_type WHEN 'cost.total' THEN 'sandboxCost' ELSE 'cost' END)
$$;
COMMENT ON FUNCTION runra_obs.event_cost(text, jsonb) IS
    'The cost an event carries: data.sandboxCost of a cost.total (what a sandbox reports about itself), data.cost of any other event';

CREATE FUNCTION runra_obs.event_duration_ms(event_type text, data jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT runra_obs._json_measure(data -> CASE event_type
        WHEN 'sandbox.started'    THEN 'startupDurationMs'
        WHEN 'sandbox.paused'     THEN 'runtimeDurationMs'
        WHEN 'sandbox.resumed'    THEN 'pausedDurationMs'
        WHEN 'sandbox.terminated' THEN 'totalRuntimeMs'
        WHEN 'exec.timed_out'     THEN 'timeoutMs'
        ELSE 'durationMs'
    END)
$$;
COMMENT ON FUNCTION runra_obs.event_duration_ms(text, jsonb) IS
    'The duration an event reports, in ms: startupDurationMs, runtimeDurationMs, pausedDurationMs, totalRuntimeMs or timeoutMs by type, else durationMs';

CREATE FUNCTION runra_obs.event_value(event_type text, data jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT runra_obs._json_measure(data -> CASE
        WHEN event_type = 'resource.memory' THEN 'memoryUsedMb'
        WHEN event_type = 'resource.cpu'    THEN 'cpuPercent'
        WHEN event_type = 'resource.disk'   THEN 'diskUsedMb'
        WHEN event_type = 'network.egress'  THEN 'bytesSent'
        WHEN event_type LIKE 'file.%'       THEN 'sizeBytes'
    END)
$$;
COMMENT ON FUNCTION runra_obs.event_value(text, jsonb) IS
    'The sample an event carries: memoryUsedMb, cpuPercent, diskUsedMb, bytesSent (network.egress) or sizeBytes (file.*)';

CREATE FUNCTION runra_obs.event_limit(event_type text, data jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE event_type
        WHEN 'resource.memory' THEN runra_obs._json_measure(data -> 'memoryLimitMb')
        WHEN 'resource.disk'   THEN runra_obs._json_measure(data -> 'diskLimitMb')
        WHEN 'resource.cpu'    THEN 100
    END
$$;
COMMENT ON FUNCTION runra_obs.event_limit(text, jsonb) IS
    'The limit a resource sample is measured against: memoryLimitMb, diskLimitMb, 100 for cpuPercent';


-- Everyone who reads events may use them; nothing else.
REVOKE ALL ON FUNCTION
    runra_obs.json_numeric(jsonb),
    runra_obs._json_measure(jsonb),
    runra_obs.event_label(text, jsonb),
    runra_obs.event_agent(jsonb),
    runra_obs.event_failed(text, jsonb),
    runra_obs.event_cost(text, jsonb),
    runra_obs.event_duration_ms(text, jsonb),
    runra_obs.event_value(text, jsonb),
    runra_obs.event_limit(text, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    runra_obs.json_numeric(jsonb),
    runra_obs._json_measure(jsonb),
    runra_obs.event_label(text, jsonb),
    runra_obs.event_agent(jsonb),
    runra_obs.event_failed(text, jsonb),
    runra_obs.event_cost(text, jsonb),
    runra_obs.event_duration_ms(text, jsonb),
    runra_obs.event_value(text, jsonb),
    runra_obs.event_limit(text, jsonb)
TO runra_obs_reader;
