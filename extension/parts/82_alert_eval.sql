-- ===========================================================================
-- Alerting, part 2: evaluating a rule.
--
-- An evaluation at time `at` asks the rule's kind for its series (labels, a
-- value, the figures behind it, and whether the series is active: above its
-- threshold), and moves each alert instance (rule + labels) through
-- Prometheus's states:
--
--   inactive -> pending   a series became active and the rule has a `for`
--   pending  -> firing    it stayed active for `for` (at once when for = 0)
--   pending  -> inactive  it stopped being active first: dropped, nobody told
--   firing   -> inactive  it stopped being active `keep_firing_for` ago
--
-- Every transition is a row of alert_history; firing and resolved ones are
-- what contact points hear of (84_alert_notify.sql).  The windows of the
-- threshold kinds end at `at` - evaluation_delay, so late events are in.
-- A rule's evaluation that fails leaves its alerts as they were and puts
-- the rule in the error state (alert_rule_runs.health) with the message.
-- ===========================================================================

CREATE TABLE runra_obs.alert_instances (
    rule_id        int         NOT NULL REFERENCES runra_obs.alert_rules ON DELETE CASCADE,
    fingerprint    text        NOT NULL,
    labels         jsonb       NOT NULL,
    state          text        NOT NULL,
    value          double precision,
    "values"       jsonb       NOT NULL DEFAULT '{}',
    annotations    jsonb       NOT NULL DEFAULT '{}',
    active_since   timestamptz,
    fired_at       timestamptz,
    last_active_at timestamptz,
    keep_firing_since timestamptz,
    resolved_at    timestamptz,
    last_sent_at   timestamptz,
    PRIMARY KEY (rule_id, fingerprint),
    CONSTRAINT alert_instances_state_check CHECK (state IN ('pending', 'firing', 'inactive'))
);
COMMENT ON TABLE runra_obs.alert_instances IS
    'Each alert instance (rule + labels) that is pending or firing, or was resolved recently (kept while Alertmanager is told)';
COMMENT ON COLUMN runra_obs.alert_instances.fingerprint IS 'md5 of the labels: the instance''s identity';
COMMENT ON COLUMN runra_obs.alert_instances.active_since IS 'Since when its series has been active (the pending period starts here)';
COMMENT ON COLUMN runra_obs.alert_instances.last_active_at IS 'The last evaluation that found its series active';
COMMENT ON COLUMN runra_obs.alert_instances.keep_firing_since IS 'The first evaluation that found a firing alert''s series no longer active (keep_firing_for counts from here, as in Prometheus)';
COMMENT ON COLUMN runra_obs.alert_instances.last_sent_at IS 'When contact points were last told about it';
GRANT SELECT ON runra_obs.alert_instances TO runra_obs_reader;

CREATE TABLE runra_obs.alert_history (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    rule_id     int         NOT NULL,
    rule_name   text        NOT NULL,
    fingerprint text        NOT NULL,
    labels      jsonb       NOT NULL,
    from_state  text        NOT NULL,
    to_state    text        NOT NULL,
    value       double precision,
    message     text
);
CREATE INDEX alert_history_at_idx ON runra_obs.alert_history (at);
CREATE INDEX alert_history_rule_idx ON runra_obs.alert_history (rule_id, at);
COMMENT ON TABLE runra_obs.alert_history IS
    'Every transition of an alert instance (inactive, pending, firing) and of a rule''s health (ok, error), kept for runra_obs.alert_retention';
COMMENT ON COLUMN runra_obs.alert_history.fingerprint IS 'The instance''s fingerprint; '''' for a transition of the rule''s health';
GRANT SELECT ON runra_obs.alert_history TO runra_obs_reader;

CREATE VIEW runra_obs.alert_states AS
SELECT r.name AS rule, r.kind, i.state, i.labels, i.value, i."values", i.annotations,
       i.active_since, i.fired_at, i.last_active_at, i.resolved_at, NULL::text AS error
FROM runra_obs.alert_instances AS i
JOIN runra_obs.alert_rules AS r ON r.id = i.rule_id
WHERE i.state <> 'inactive'
UNION ALL
SELECT r.name, r.kind, 'error', r.labels || jsonb_build_object('alertname', r.name), NULL, '{}', '{}',
       u.error_since, NULL, NULL, NULL, u.last_error
FROM runra_obs.alert_rule_runs AS u
JOIN runra_obs.alert_rules AS r ON r.id = u.rule_id
WHERE u.health = 'error';
COMMENT ON VIEW runra_obs.alert_states IS
    'What is alerting now: each pending or firing alert instance, and each rule whose last evaluation failed (state error, with its message)';
GRANT SELECT ON runra_obs.alert_states TO runra_obs_reader;

CREATE VIEW runra_obs.alert_rule_status AS
SELECT r.name, r.kind, r.paused, r.every, r.for_duration, r.contact_points,
       u.health, u.last_error, u.error_since, u.last_eval_at, u.next_eval_at,
       u.last_duration_ms, u.evaluations, u.failures,
       (SELECT count(*) FROM runra_obs.alert_instances AS i WHERE i.rule_id = r.id AND i.state = 'firing') AS firing,
       (SELECT count(*) FROM runra_obs.alert_instances AS i WHERE i.rule_id = r.id AND i.state = 'pending') AS pending,
       r.owner::text AS owner
FROM runra_obs.alert_rules AS r
LEFT JOIN runra_obs.alert_rule_runs AS u ON u.rule_id = r.id;
COMMENT ON VIEW runra_obs.alert_rule_status IS
    'Each alert rule with how its evaluations go (health, last error, when next) and how many of its alerts fire or are pending';
GRANT SELECT ON runra_obs.alert_rule_status TO runra_obs_reader;

-- ---------------------------------------------------------------------------
-- The series of each kind.  Each returns every series it has data for
-- (labels, value, the figures behind the value, active); none at all means
-- the rule has no data.
-- ---------------------------------------------------------------------------

-- The label a threshold rule groups executions by.
CREATE FUNCTION runra_obs._alert_group_labels(group_by text, sandbox_id text, command text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE group_by
        WHEN 'sandbox' THEN jsonb_build_object('sandbox_id', sandbox_id)
        WHEN 'command' THEN jsonb_build_object('command', coalesce(command, ''))
        ELSE '{}'::jsonb
    END
$$;

-- Executions and failures (or timeouts) per group over [t - window, t):
-- the error_rate and exec_timeouts kinds.  Commands come from
-- _exec_outcomes(), which names the command of exec.failed and
-- exec.timed_out too; the other groupings need no names, and read the
-- cheaper _exec_events().
CREATE FUNCTION runra_obs._alert_exec_groups(params jsonb, t timestamptz)
RETURNS TABLE (labels jsonb, executions bigint, failures bigint, timeouts bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    from_time timestamptz := t - make_interval(secs => (params ->> 'window')::double precision);
    group_by text := params ->> 'by';
BEGIN
    -- counted per group key first, the labels built once per group
    IF group_by = 'command' THEN
        RETURN QUERY
        SELECT runra_obs._alert_group_labels(group_by, NULL, g.k), g.n, g.f, g.o
        FROM (SELECT o.command AS k, count(*) AS n, count(*) FILTER (WHERE o.failed) AS f,
                     count(*) FILTER (WHERE o.event_type = 'exec.timed_out') AS o
              FROM runra_obs._exec_outcomes(from_time, t) AS o GROUP BY 1) AS g;
    ELSE
        RETURN QUERY
        SELECT runra_obs._alert_group_labels(group_by, g.k, NULL), g.n, g.f, g.o
        FROM (SELECT CASE WHEN group_by = 'sandbox' THEN o.sandbox_id END AS k, count(*) AS n,
                     count(*) FILTER (WHERE o.failed) AS f,
                     count(*) FILTER (WHERE o.event_type = 'exec.timed_out') AS o
              FROM runra_obs._exec_events(from_time, t) AS o GROUP BY 1) AS g;
    END IF;
END
$$;

CREATE FUNCTION runra_obs._alert_error_rate(params jsonb, t timestamptz)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT g.labels,
               g.failures::double precision / g.executions,
               jsonb_build_object('executions', g.executions, 'failures', g.failures,
                                  'threshold', params -> 'threshold'),
               g.failures::double precision / g.executions > (params ->> 'threshold')::double precision
               AND g.executions >= (params ->> 'minExecutions')::bigint
        FROM runra_obs._alert_exec_groups(params, t) AS g;
END
$$;

CREATE FUNCTION runra_obs._alert_exec_timeouts(params jsonb, t timestamptz)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT g.labels, g.timeouts::double precision,
               jsonb_build_object('executions', g.executions, 'timeouts', g.timeouts),
               g.timeouts > (params ->> 'above')::double precision
        FROM runra_obs._alert_exec_groups(params, t) AS g;
END
$$;

-- Per sandbox, its latest sample of the resource in [t - window, t) as a
-- percentage of its limit (event_value / event_limit, the one definition).
CREATE FUNCTION runra_obs._alert_resource(params jsonb, t timestamptz)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT jsonb_build_object('sandbox_id', s.sandbox_id, 'resource', params ->> 'resource'),
               s.pct,
               jsonb_build_object('used', s.used, 'limit', s.lim, 'sampledAt', s.created_at),
               s.pct > (params ->> 'abovePercent')::double precision
        FROM (
            SELECT DISTINCT ON (e.sandbox_id)
                   e.sandbox_id, e.created_at,
                   runra_obs.event_value(e.event_type, e.data) AS used,
                   runra_obs.event_limit(e.event_type, e.data) AS lim,
                   (runra_obs.event_value(e.event_type, e.data) * 100
                    / nullif(runra_obs.event_limit(e.event_type, e.data), 0))::double precision AS pct
            FROM runra_obs.sandbox_events AS e
            WHERE e.event_type = 'resource.' || (params ->> 'resource')
              AND e.created_at >= t - make_interval(secs => (params ->> 'window')::double precision)
              AND e.created_at < t
            ORDER BY e.sandbox_id, e.created_at DESC, e.id DESC
        ) AS s
        WHERE s.pct IS NOT NULL;
END
$$;

-- The fleet's cost (cost.runtime + cost.storage, as cost_per_sandbox()
-- adds them) and cost events in [from_time, to_time): the whole 5-minute
-- buckets from rollup_5m_live (exact to the last commit), the edges raw.
CREATE FUNCTION runra_obs._alert_fleet_cost(from_time timestamptz, to_time timestamptz,
                                            OUT cost numeric, OUT events bigint)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
        WITH b AS (
            SELECT greatest(from_time, least(to_time,
                       date_bin('5 minutes', from_time + interval '5 minutes' - interval '1 microsecond',
                                timestamptz '2000-01-01 00:00:00+00'))) AS lo,
                   greatest(from_time, date_bin('5 minutes', to_time, timestamptz '2000-01-01 00:00:00+00')) AS hi
        ), parts AS (
            SELECT coalesce(c.runtime_cost, 0) + coalesce(c.storage_cost, 0) AS cost, 1::bigint AS events
            FROM b, runra_obs._cost_events(from_time, CASE WHEN b.lo < b.hi THEN b.lo ELSE to_time END) AS c
            WHERE c.runtime_cost IS NOT NULL OR c.storage_cost IS NOT NULL
            UNION ALL
            SELECT coalesce(c.runtime_cost, 0) + coalesce(c.storage_cost, 0), 1
            FROM b, runra_obs._cost_events(b.hi, to_time) AS c
            WHERE b.lo < b.hi AND (c.runtime_cost IS NOT NULL OR c.storage_cost IS NOT NULL)
            UNION ALL
            SELECT coalesce(r.cost, 0), r.events
            FROM b, runra_obs.rollup_5m_live AS r
            WHERE b.lo < b.hi AND r.event_type IN ('cost.runtime', 'cost.storage')
              AND r.bucket >= b.lo AND r.bucket < b.hi
        )
        SELECT coalesce(sum(p.cost), 0), coalesce(sum(p.events), 0)::bigint
        INTO cost, events FROM parts AS p;
END
$$;

-- Cost per group in [from_time, to_time): the fleet's from the 5-minute
-- rollups (_alert_fleet_cost), a sandbox's from its events (there is no
-- per-sandbox rollup finer than an hour).  No row for a group without cost
-- events.
CREATE FUNCTION runra_obs._alert_cost(group_by text, from_time timestamptz, to_time timestamptz)
RETURNS TABLE (labels jsonb, cost numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT '{}'::jsonb, f.cost
        FROM runra_obs._alert_fleet_cost(from_time, to_time) AS f
        WHERE group_by = 'fleet' AND f.events > 0
        UNION ALL
        -- summed per sandbox first, the labels built per group: a jsonb per
        -- cost event cost seven times the sum itself
        SELECT jsonb_build_object('sandbox_id', g.sandbox_id), g.cost
        FROM (SELECT c.sandbox_id, coalesce(sum(c.runtime_cost), 0) + coalesce(sum(c.storage_cost), 0) AS cost
              FROM runra_obs._cost_events(from_time, to_time) AS c
              WHERE group_by = 'sandbox' AND (c.runtime_cost IS NOT NULL OR c.storage_cost IS NOT NULL)
              GROUP BY 1) AS g;
END
$$;

-- The cost of the window against the same window on each of the previous
-- `days` days, 24 hours apart (the seasonal baseline: their mean, over the
-- days that had cost events); anomalous above baseline * (1 + tolerance).
CREATE FUNCTION runra_obs._alert_cost_anomaly(params jsonb, t timestamptz)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH w AS (
            SELECT make_interval(secs => (params ->> 'window')::double precision) AS len
        ), past AS (
            SELECT c.labels, avg(c.cost) AS baseline, count(*) AS days
            FROM w, generate_series(1, (params ->> 'days')::integer) AS d,
                 LATERAL runra_obs._alert_cost(params ->> 'by', t - d * interval '24 hours' - w.len,
                                               t - d * interval '24 hours') AS c
            GROUP BY c.labels
        ), now_cost AS (
            SELECT c.labels, c.cost FROM w, LATERAL runra_obs._alert_cost(params ->> 'by', t - w.len, t) AS c
        )
        SELECT coalesce(n.labels, p.labels),
               coalesce(n.cost, 0)::double precision,
               jsonb_build_object('baseline', trim_scale(round(coalesce(p.baseline, 0), 6)),
                                  'baselineDays', coalesce(p.days, 0),
                                  'ratio', round(coalesce(n.cost, 0) / nullif(p.baseline, 0), 4)),
               coalesce(p.days, 0) > 0
               AND coalesce(n.cost, 0) > p.baseline * (1 + (params ->> 'tolerance')::numeric)
               AND coalesce(n.cost, 0) >= (params ->> 'minCost')::numeric
        FROM now_cost AS n FULL JOIN past AS p ON p.labels = n.labels;
END
$$;

-- Absence.  Fleet: the newest event by arrival (the last id stored, its
-- ingested_at): silent for `duration` is active, and so is a store that has
-- never received an event.  Sandbox: each sandbox whose latest lifecycle
-- event in the lookback says it runs (created, started, resumed) and that
-- has no event (by created_at) in the last `duration`; only silent ones
-- are series (the others have nothing to say).
CREATE FUNCTION runra_obs._alert_absence(params jsonb, t timestamptz)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    duration_s double precision := (params ->> 'duration')::double precision;
    lookback interval := make_interval(secs => (params ->> 'lookback')::double precision);
    last_seen timestamptz;
BEGIN
    IF params ->> 'scope' = 'fleet' THEN
        SELECT e.ingested_at INTO last_seen FROM runra_obs.sandbox_events AS e ORDER BY e.id DESC LIMIT 1;
        RETURN QUERY SELECT '{}'::jsonb, extract(epoch FROM t - last_seen)::double precision,
                            jsonb_build_object('lastEventAt', last_seen),
                            last_seen IS NULL OR extract(epoch FROM t - last_seen) >= duration_s;
        RETURN;
    END IF;
    -- a running sandbox is silent when it has no event in [t - duration, t):
    -- one short index probe that stops at the first event; how long it has
    -- been silent is looked up for the silent ones only
    RETURN QUERY
    SELECT jsonb_build_object('sandbox_id', q.sandbox_id),
           extract(epoch FROM t - newest.created_at)::double precision,
           jsonb_build_object('lastEventAt', newest.created_at, 'lastLifecycle', q.event_type),
           true
    FROM (
        SELECT s.sandbox_id, s.event_type
        FROM (
            SELECT DISTINCT ON (e.sandbox_id) e.sandbox_id, e.event_type
            FROM runra_obs.sandbox_events AS e
            WHERE e.event_type IN ('sandbox.created', 'sandbox.started', 'sandbox.resumed',
                                   'sandbox.paused', 'sandbox.terminated')
              AND e.created_at >= t - lookback AND e.created_at < t
            ORDER BY e.sandbox_id, e.created_at DESC, e.id DESC
        ) AS s
        WHERE s.event_type IN ('sandbox.created', 'sandbox.started', 'sandbox.resumed')
          AND NOT EXISTS (SELECT FROM runra_obs.sandbox_events AS e
                          WHERE e.sandbox_id = s.sandbox_id
                            AND e.created_at >= t - make_interval(secs => duration_s) AND e.created_at < t)
    ) AS q
    CROSS JOIN LATERAL (
        SELECT e.created_at FROM runra_obs.sandbox_events AS e
        WHERE e.sandbox_id = q.sandbox_id AND e.created_at >= t - lookback AND e.created_at < t
        ORDER BY e.created_at DESC LIMIT 1
    ) AS newest;
END
$$;

-- Match: the events after the rule's place in the log, up to `up_to` (the
-- safe watermark), of the chosen types whose data satisfies the condition,
-- grouped by the chosen labels; a group with a match is active.  At most
-- 100,000 ids are read per evaluation, the rest at the next.
CREATE FUNCTION runra_obs._alert_match(rule_id integer, params jsonb, up_to bigint)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT m.labels, count(*)::double precision,
               jsonb_build_object('count', count(*),
                                  'lastEvent', (array_agg(m.event ORDER BY m.id DESC))[1]),
               true
        FROM (
            SELECT e.id,
                   (SELECT coalesce(jsonb_object_agg(k, CASE k
                               WHEN 'sandbox_id' THEN e.sandbox_id
                               WHEN 'event_type' THEN e.event_type
                               WHEN 'command' THEN coalesce(e.data ->> 'command', '')
                               ELSE runra_obs.event_agent(e.data) END), '{}')
                    FROM jsonb_array_elements_text(params -> 'by') AS k) AS labels,
                   jsonb_build_object('id', e.id, 'time', e.created_at, 'type', e.event_type,
                                      'sandboxId', e.sandbox_id,
                                      'data', CASE WHEN runra_obs._raw_size(e.data) <= 8192 THEN e.data END) AS event
            FROM runra_obs.sandbox_events AS e, runra_obs.consumers AS c
            WHERE c.name = 'alert:' || rule_id
              AND e.id > c.position AND e.id <= least(up_to, c.position + 100000)
              AND e.event_type LIKE ANY (ARRAY(SELECT runra_obs._glob_to_like(g)
                                               FROM jsonb_array_elements_text(params -> 'eventTypes') AS g))
              AND (NOT params ? 'condition' OR e.data @@ (params ->> 'condition')::jsonpath)
              AND (NOT params ? 'failed'
                   OR runra_obs.event_failed(e.event_type, e.data) = (params ->> 'failed')::boolean)
        ) AS m
        GROUP BY m.labels;
END
$$;

-- A query rule's rows; with `above`, a row is active when its value is
-- above it, else every row with a value is.
CREATE FUNCTION runra_obs._alert_query(rule_id integer, params jsonb)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT q.labels, q.value, '{}'::jsonb,
           q.value IS NOT NULL AND (NOT params ? 'above' OR q.value > (params ->> 'above')::double precision)
    FROM runra_obs._alert_query_series(rule_id) AS q
$$;

-- The series of rule `r` evaluated at `at`, the log read up to `up_to`.
CREATE FUNCTION runra_obs._alert_series(r runra_obs.alert_rules, at timestamptz, up_to bigint)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t timestamptz := at - r.evaluation_delay;
BEGIN
    CASE r.kind
    WHEN 'error_rate' THEN RETURN QUERY SELECT * FROM runra_obs._alert_error_rate(r.params, t);
    WHEN 'exec_timeouts' THEN RETURN QUERY SELECT * FROM runra_obs._alert_exec_timeouts(r.params, t);
    WHEN 'resource' THEN RETURN QUERY SELECT * FROM runra_obs._alert_resource(r.params, t);
    WHEN 'cost_anomaly' THEN RETURN QUERY SELECT * FROM runra_obs._alert_cost_anomaly(r.params, t);
    WHEN 'absence' THEN RETURN QUERY SELECT * FROM runra_obs._alert_absence(r.params, t);
    WHEN 'match' THEN RETURN QUERY SELECT * FROM runra_obs._alert_match(r.id, r.params, up_to);
    WHEN 'query' THEN RETURN QUERY SELECT * FROM runra_obs._alert_query(r.id, r.params);
    END CASE;
END
$$;

CREATE FUNCTION runra_obs.preview_alert(name text, at timestamptz DEFAULT now())
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    r runra_obs.alert_rules := runra_obs._alert_rule(name);
BEGIN
    RETURN QUERY
    SELECT r.labels || s.labels || jsonb_build_object('alertname', r.name), s.value, s."values", s.active
    FROM runra_obs._alert_series(r, at, runra_obs._alert_log_head()) AS s
    ORDER BY 4 DESC, 2 DESC NULLS LAST, 1;
END
$$;
COMMENT ON FUNCTION runra_obs.preview_alert(text, timestamptz) IS
    'The series an alert rule finds at `at` (labels, value, the figures behind it, active) without changing any state; a query rule runs as the caller';

-- ---------------------------------------------------------------------------
-- The state machine.
-- ---------------------------------------------------------------------------

-- Records one transition of an instance.
CREATE FUNCTION runra_obs._alert_transition(r runra_obs.alert_rules, at timestamptz, i runra_obs.alert_instances,
                                            from_state text, to_state text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO runra_obs.alert_history (at, rule_id, rule_name, fingerprint, labels, from_state, to_state, value)
    VALUES (at, r.id, r.name, i.fingerprint, i.labels, from_state, to_state, i.value)
$$;

-- The active series of this evaluation: labels completed with the rule's
-- labels and alertname, and the no_data policy applied; more than
-- max_instances of them is an error.
CREATE FUNCTION runra_obs._alert_current(r runra_obs.alert_rules, at timestamptz, up_to bigint,
                                         OUT series jsonb, OUT had_data boolean, OUT truncated bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    WITH s AS (
        SELECT r.labels || x.labels || jsonb_build_object('alertname', r.name) AS labels,
               x.value, x."values", x.active
        FROM runra_obs._alert_series(r, at, up_to) AS x
    ), ranked AS (
        SELECT s.*, row_number() OVER (ORDER BY s.value DESC NULLS LAST, s.labels) AS n
        FROM s WHERE s.active
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('labels', ranked.labels, 'value', ranked.value,
                                                 'values', ranked."values"))
                    FILTER (WHERE ranked.n <= r.max_instances), '[]'),
           EXISTS (SELECT FROM s),
           count(*) FILTER (WHERE ranked.n > r.max_instances)
    INTO series, had_data, truncated
    FROM ranked;
    IF truncated > 0 THEN
        -- as Prometheus's rule limit: cutting some off would resolve them
        -- and fire them again at random
        RAISE EXCEPTION 'alert rule "%" found % active series, more than its maxInstances (%)',
            r.name, r.max_instances + truncated, r.max_instances
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Group by fewer labels, raise the threshold, or raise maxInstances.';
    END IF;
    -- a match rule that matched nothing, an absence rule that found nobody
    -- silent, have data: all is well
    had_data := had_data OR r.kind IN ('match', 'absence');
    IF NOT had_data AND r.no_data = 'alerting' THEN
        series := jsonb_build_array(jsonb_build_object(
            'labels', r.labels || jsonb_build_object('alertname', r.name, 'no_data', 'true'),
            'value', NULL, 'values', '{}'::jsonb));
    END IF;
END
$$;

-- Moves every instance of rule `r` to its state at `at`, given the active
-- series; returns the instances that became firing or resolved now.  Set
-- by set: the series against the stored instances in one statement, the
-- instances whose series is gone in another, each transition a row of the
-- history.
CREATE FUNCTION runra_obs._alert_step(r runra_obs.alert_rules, at timestamptz, series jsonb)
RETURNS SETOF runra_obs.alert_instances
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    templates jsonb := runra_obs._alert_template_set(r);
BEGIN
    -- the active series: pending or firing, with their transitions
    RETURN QUERY
    WITH s AS (
        SELECT x -> 'labels' AS labels, md5((x -> 'labels')::text) AS fingerprint,
               (x ->> 'value')::double precision AS value, coalesce(x -> 'values', '{}') AS vals
        FROM jsonb_array_elements(series) AS x
    ), known AS (
        SELECT s.*, coalesce(i.state, 'inactive') AS was,
               CASE WHEN i.state IN ('pending', 'firing') THEN i.active_since ELSE at END AS since,
               CASE WHEN i.state = 'firing' THEN i.fired_at END AS old_fired_at,
               CASE WHEN i.state IN ('pending', 'firing') THEN i.last_sent_at END AS old_sent_at
        FROM s LEFT JOIN runra_obs.alert_instances AS i ON i.rule_id = r.id AND i.fingerprint = s.fingerprint
    ), decided AS (
        SELECT k.*, CASE WHEN k.was = 'firing' OR at - k.since >= r.for_duration THEN 'firing' ELSE 'pending' END AS state
        FROM known AS k
    ), history AS (
        INSERT INTO runra_obs.alert_history (at, rule_id, rule_name, fingerprint, labels, from_state, to_state, value)
        SELECT at, r.id, r.name, d.fingerprint, d.labels, d.was, d.state, d.value
        FROM decided AS d WHERE d.state <> d.was
    ), upserted AS (
        INSERT INTO runra_obs.alert_instances AS a
            (rule_id, fingerprint, labels, state, value, "values", annotations, active_since, fired_at,
             last_active_at, keep_firing_since, resolved_at, last_sent_at)
        SELECT r.id, d.fingerprint, d.labels, d.state, d.value, d.vals,
               runra_obs._alert_annotate(templates, r.name, d.state, d.labels, d.value, d.vals),
               d.since, coalesce(d.old_fired_at, CASE WHEN d.state = 'firing' THEN at END),
               at, NULL, NULL, d.old_sent_at
        FROM decided AS d
        ON CONFLICT (rule_id, fingerprint) DO UPDATE
        SET labels = EXCLUDED.labels, state = EXCLUDED.state, value = EXCLUDED.value,
            "values" = EXCLUDED."values", annotations = EXCLUDED.annotations,
            active_since = EXCLUDED.active_since, fired_at = EXCLUDED.fired_at,
            last_active_at = EXCLUDED.last_active_at, keep_firing_since = NULL,
            resolved_at = NULL, last_sent_at = EXCLUDED.last_sent_at
        RETURNING a.*
    )
    SELECT u.* FROM upserted AS u WHERE u.state = 'firing' AND u.fired_at = at;

    -- the instances whose series is not active now: a pending one is
    -- dropped, a firing one resolves once keep_firing_for has passed since
    -- the first evaluation that missed it
    RETURN QUERY
    WITH gone AS (
        SELECT i.* FROM runra_obs.alert_instances AS i
        WHERE i.rule_id = r.id AND i.state IN ('pending', 'firing')
          AND NOT EXISTS (SELECT FROM jsonb_array_elements(series) AS x
                          WHERE md5((x -> 'labels')::text) = i.fingerprint)
        FOR UPDATE
    ), dropped AS (
        DELETE FROM runra_obs.alert_instances AS i USING gone AS g
        WHERE i.rule_id = r.id AND i.fingerprint = g.fingerprint AND g.state = 'pending'
        RETURNING i.*
    ), kept AS (
        UPDATE runra_obs.alert_instances AS i
        SET keep_firing_since = coalesce(g.keep_firing_since, at),
            state = CASE WHEN at - coalesce(g.keep_firing_since, at) >= r.keep_firing_for THEN 'inactive' ELSE 'firing' END,
            resolved_at = CASE WHEN at - coalesce(g.keep_firing_since, at) >= r.keep_firing_for THEN at END,
            annotations = runra_obs._alert_annotate(templates, r.name,
                CASE WHEN at - coalesce(g.keep_firing_since, at) >= r.keep_firing_for THEN 'inactive' ELSE 'firing' END,
                g.labels, g.value, g."values")
        FROM gone AS g
        WHERE i.rule_id = r.id AND i.fingerprint = g.fingerprint AND g.state = 'firing'
        RETURNING i.*
    ), history AS (
        INSERT INTO runra_obs.alert_history (at, rule_id, rule_name, fingerprint, labels, from_state, to_state, value)
        SELECT at, r.id, r.name, d.fingerprint, d.labels, 'pending', 'inactive', d.value FROM dropped AS d
        UNION ALL
        SELECT at, r.id, r.name, k.fingerprint, k.labels, 'firing', 'inactive', k.value FROM kept AS k
        WHERE k.state = 'inactive'
    )
    SELECT k.* FROM kept AS k WHERE k.state = 'inactive';
END
$$;

-- A rule's annotation templates, parsed once per evaluation: a summary of
-- the kind's own unless the rule gives one, each as its pieces
-- (_alert_template_parts), so rendering a thousand alerts parses nothing.
CREATE FUNCTION runra_obs._alert_template_set(r runra_obs.alert_rules)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('key', a.key, 'n', p.n, 'literal', p.literal, 'expr', p.expr)), '[]')
    FROM jsonb_each_text(jsonb_build_object('summary', CASE r.kind
             WHEN 'error_rate' THEN 'error rate {{ value }} above {{ values.threshold }} ({{ values.failures }} of {{ values.executions }} executions failed)'
             WHEN 'exec_timeouts' THEN '{{ value }} executions timed out'
             WHEN 'resource' THEN '{{ labels.resource }} of sandbox {{ labels.sandbox_id }} at {{ value }} % of its limit'
             WHEN 'cost_anomaly' THEN 'cost {{ value }} against a baseline of {{ values.baseline }}'
             WHEN 'match' THEN '{{ value }} matching events, the last a {{ values.lastEvent.type }} of sandbox {{ values.lastEvent.sandboxId }}'
             WHEN 'absence' THEN 'no events for {{ value }} s'
             ELSE '{{ rule }}: {{ value }}'
         END) || r.annotations) AS a,
         LATERAL runra_obs._alert_template_parts('of alert rule "' || r.name || '"', a.value) AS p
$$;

-- An instance's annotations: the parsed templates of its rule
-- (_alert_template_set) filled in with its state, labels and values.
CREATE FUNCTION runra_obs._alert_annotate(templates jsonb, rule_name text, state text, labels jsonb,
                                          value double precision, "values" jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(x.key, x.txt), '{}')
    FROM (SELECT t ->> 'key' AS key,
                 string_agg((t ->> 'literal')
                            || runra_obs._alert_template_value(t ->> 'expr', _alert_annotate.rule_name,
                                                               _alert_annotate.state, _alert_annotate.labels,
                                                               _alert_annotate.value, _alert_annotate."values"),
                            '' ORDER BY (t ->> 'n')::integer) AS txt
          FROM jsonb_array_elements(templates) AS t
          GROUP BY 1) AS x
$$;

-- Evaluates rule `rule_id` at `at`, the log read up to `up_to` (the safe
-- watermark), and queues what its contact points must hear.  Called by the
-- alert worker, one rule per transaction; returns a summary.  Without JIT:
-- every query of an evaluation is small, and compiling one cost more than
-- running it (a match rule: 378 ms against 22 ms, bench/alerts.sh).
CREATE FUNCTION runra_obs._alert_evaluate(rule_id integer, at timestamptz, up_to bigint)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_variable
DECLARE
    r runra_obs.alert_rules;
    cur record;
    changed runra_obs.alert_instances[];
    started timestamptz := clock_timestamp();
    read_from bigint;
BEGIN
    SELECT * INTO r FROM runra_obs.alert_rules AS a WHERE a.id = rule_id;
    IF NOT FOUND OR r.paused THEN
        RETURN 'not evaluated: removed or paused';
    END IF;
    IF r.kind = 'match' THEN
        -- read at most 100,000 ids, and move the position exactly over them
        SELECT c.position INTO read_from FROM runra_obs.consumers AS c
        WHERE c.name = 'alert:' || r.id FOR UPDATE;
        up_to := least(up_to, read_from + 100000);
    END IF;
    cur := runra_obs._alert_current(r, at, up_to);
    IF cur.had_data OR r.no_data <> 'keep_state' THEN
        changed := ARRAY(SELECT x FROM runra_obs._alert_step(r, at, cur.series) AS x);
    END IF;
    IF r.kind = 'match' THEN
        -- every evaluation with new matches is news, not only a firing
        changed := ARRAY(SELECT i FROM runra_obs.alert_instances AS i
                         WHERE i.rule_id = r.id AND i.state = 'firing' AND i.last_active_at = at)
                   || ARRAY(SELECT c FROM unnest(changed) AS c WHERE c.state = 'inactive');
        UPDATE runra_obs.consumers AS c
        SET position = up_to, moved_at = now()
        WHERE c.name = 'alert:' || r.id AND c.position = read_from AND up_to > read_from;
    END IF;
    PERFORM runra_obs._alert_notify(r, at, coalesce(changed, '{}'));
    PERFORM runra_obs._alert_ran(r, at, CASE WHEN cur.had_data THEN 'ok' ELSE 'nodata' END, NULL,
                                 extract(epoch FROM clock_timestamp() - started) * 1000);
    RETURN format('%s series, %s changed', jsonb_array_length(cur.series), coalesce(cardinality(changed), 0));
END
$$;

-- When a rule is due next: on its grid of `every` from the last due time,
-- the first slot after `at` (missed slots are skipped, not run in a burst).
CREATE FUNCTION runra_obs._alert_next_eval(due timestamptz, every interval, at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT due + every * (floor(extract(epoch FROM at - due) / extract(epoch FROM every)) + 1)
$$;

-- Records that rule `r` was evaluated at `at`: its health (a change of it
-- goes into the history), its next slot, its counters.
CREATE FUNCTION runra_obs._alert_ran(r runra_obs.alert_rules, at timestamptz, health text, error text,
                                     duration_ms double precision)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was text;
BEGIN
    SELECT u.health INTO was FROM runra_obs.alert_rule_runs AS u WHERE u.rule_id = r.id FOR UPDATE;
    IF (was = 'error') <> (health = 'error') THEN
        INSERT INTO runra_obs.alert_history (at, rule_id, rule_name, fingerprint, labels, from_state, to_state, message)
        VALUES (at, r.id, r.name, '', r.labels || jsonb_build_object('alertname', r.name),
                CASE WHEN was = 'error' THEN 'error' ELSE 'ok' END,
                CASE WHEN health = 'error' THEN 'error' ELSE 'ok' END, error);
    END IF;
    UPDATE runra_obs.alert_rule_runs AS u
    SET health = _alert_ran.health,
        last_error = error,
        error_since = CASE WHEN _alert_ran.health <> 'error' THEN NULL
                           WHEN was = 'error' THEN u.error_since ELSE at END,
        next_eval_at = runra_obs._alert_next_eval(u.next_eval_at, r.every, at),
        last_eval_at = at,
        last_duration_ms = coalesce(duration_ms, u.last_duration_ms),
        evaluations = u.evaluations + 1,
        failures = u.failures + CASE WHEN _alert_ran.health = 'error' THEN 1 ELSE 0 END
    WHERE u.rule_id = r.id;
END
$$;

-- A rule's evaluation failed with `error`: its alerts stay as they are,
-- the rule is in the error state, and it is tried again at its next slot.
CREATE FUNCTION runra_obs._alert_failed(rule_id integer, at timestamptz, error text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r runra_obs.alert_rules;
BEGIN
    SELECT * INTO r FROM runra_obs.alert_rules AS a WHERE a.id = rule_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM runra_obs._alert_ran(r, at, 'error', error, NULL);
END
$$;

-- The rules due at `at`, most overdue first, at most `max_rules`.
CREATE FUNCTION runra_obs._alert_due(at timestamptz, max_rules integer)
RETURNS SETOF integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.rule_id
    FROM runra_obs.alert_rule_runs AS u
    JOIN runra_obs.alert_rules AS r ON r.id = u.rule_id
    WHERE u.next_eval_at <= at AND NOT r.paused
    ORDER BY u.next_eval_at, u.rule_id
    LIMIT max_rules
$$;

-- How long until the next rule is due, in ms (capped at `cap_ms`).
CREATE FUNCTION runra_obs._alert_sleep_ms(at timestamptz, cap_ms integer)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(cap_ms, greatest(0, coalesce(
        (SELECT ceil(extract(epoch FROM min(u.next_eval_at) - at) * 1000)::integer
         FROM runra_obs.alert_rule_runs AS u JOIN runra_obs.alert_rules AS r ON r.id = u.rule_id
         WHERE NOT r.paused), cap_ms)))
$$;
