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
    resolved_at    timestamptz,
    last_sent_at   timestamptz,
    PRIMARY KEY (rule_id, fingerprint),
    CONSTRAINT alert_instances_state_check CHECK (state IN ('pending', 'firing', 'inactive'))
);
COMMENT ON TABLE runra_obs.alert_instances IS
    'Each alert instance (rule + labels) that is pending or firing, or was resolved recently (kept while Alertmanager is told)';
COMMENT ON COLUMN runra_obs.alert_instances.fingerprint IS 'md5 of the labels: the instance''s identity';
COMMENT ON COLUMN runra_obs.alert_instances.active_since IS 'Since when its series has been active (the pending period starts here)';
COMMENT ON COLUMN runra_obs.alert_instances.last_active_at IS 'The last evaluation that found its series active (keep_firing_for counts from here)';
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
    IF group_by = 'command' THEN
        RETURN QUERY
        SELECT runra_obs._alert_group_labels(group_by, NULL, o.command), count(*),
               count(*) FILTER (WHERE o.failed), count(*) FILTER (WHERE o.event_type = 'exec.timed_out')
        FROM runra_obs._exec_outcomes(from_time, t) AS o
        GROUP BY 1;
    ELSE
        RETURN QUERY
        SELECT runra_obs._alert_group_labels(group_by, o.sandbox_id, NULL), count(*),
               count(*) FILTER (WHERE o.failed), count(*) FILTER (WHERE o.event_type = 'exec.timed_out')
        FROM runra_obs._exec_events(from_time, t) AS o
        GROUP BY 1;
    END IF;
END
$$;

CREATE FUNCTION runra_obs._alert_error_rate(params jsonb, t timestamptz)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.labels,
           g.failures::double precision / g.executions,
           jsonb_build_object('executions', g.executions, 'failures', g.failures,
                              'threshold', params -> 'threshold'),
           g.failures::double precision / g.executions > (params ->> 'threshold')::double precision
           AND g.executions >= (params ->> 'minExecutions')::bigint
    FROM runra_obs._alert_exec_groups(params, t) AS g
$$;

CREATE FUNCTION runra_obs._alert_exec_timeouts(params jsonb, t timestamptz)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.labels, g.timeouts,
           jsonb_build_object('executions', g.executions, 'timeouts', g.timeouts),
           g.timeouts > (params ->> 'above')::double precision
    FROM runra_obs._alert_exec_groups(params, t) AS g
$$;

-- Per sandbox, its latest sample of the resource in [t - window, t) as a
-- percentage of its limit (event_value / event_limit, the one definition).
CREATE FUNCTION runra_obs._alert_resource(params jsonb, t timestamptz)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
    WHERE s.pct IS NOT NULL
$$;

-- Cost (cost.runtime + cost.storage, as cost_per_sandbox() adds them) per
-- group in [from_time, to_time), whole hours read from the rollups.
CREATE FUNCTION runra_obs._alert_cost(group_by text, from_time timestamptz, to_time timestamptz)
RETURNS TABLE (labels jsonb, cost numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT runra_obs._alert_group_labels(group_by, c.sandbox_id, NULL),
           coalesce(sum(c.runtime_cost), 0) + coalesce(sum(c.storage_cost), 0)
    FROM runra_obs._cost_parts(from_time, to_time, interval '1 hour') AS c
    WHERE c.runtime_cost IS NOT NULL OR c.storage_cost IS NOT NULL
    GROUP BY 1
$$;

-- The cost of the window against the same window on each of the previous
-- `days` days, 24 hours apart (the seasonal baseline: their mean, over the
-- days that had cost events); anomalous above baseline * (1 + tolerance).
CREATE FUNCTION runra_obs._alert_cost_anomaly(params jsonb, t timestamptz)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
    FROM now_cost AS n FULL JOIN past AS p ON p.labels = n.labels
$$;

-- Absence.  Fleet: the newest event by arrival (the last id stored, its
-- ingested_at): silent for `duration` is active, and so is a store that has
-- never received an event.  Sandbox: each sandbox whose latest lifecycle
-- event in the lookback says it runs (created, started, resumed) and whose
-- newest event (by created_at) is older than `duration`.
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
    RETURN QUERY
    SELECT jsonb_build_object('sandbox_id', s.sandbox_id),
           extract(epoch FROM t - newest.created_at)::double precision,
           jsonb_build_object('lastEventAt', newest.created_at, 'lastLifecycle', s.event_type),
           extract(epoch FROM t - newest.created_at) >= duration_s
    FROM (
        SELECT DISTINCT ON (e.sandbox_id) e.sandbox_id, e.event_type
        FROM runra_obs.sandbox_events AS e
        WHERE e.event_type IN ('sandbox.created', 'sandbox.started', 'sandbox.resumed',
                               'sandbox.paused', 'sandbox.terminated')
          AND e.created_at >= t - lookback AND e.created_at < t
        ORDER BY e.sandbox_id, e.created_at DESC, e.id DESC
    ) AS s
    CROSS JOIN LATERAL (
        SELECT e.created_at FROM runra_obs.sandbox_events AS e
        WHERE e.sandbox_id = s.sandbox_id AND e.created_at >= t - lookback AND e.created_at < t
        ORDER BY e.created_at DESC LIMIT 1
    ) AS newest
    WHERE s.event_type IN ('sandbox.created', 'sandbox.started', 'sandbox.resumed');
END
$$;

-- Match: the events after the rule's place in the log, up to `up_to` (the
-- safe watermark), of the chosen types whose data satisfies the condition,
-- grouped by the chosen labels; a group with a match is active.  At most
-- 100,000 ids are read per evaluation, the rest at the next.
CREATE FUNCTION runra_obs._alert_match(rule_id integer, params jsonb, up_to bigint)
RETURNS TABLE (labels jsonb, value double precision, "values" jsonb, active boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
    GROUP BY m.labels
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

-- The series of this evaluation as instances: labels completed with the
-- rule's labels and alertname, at most max_instances of the active ones
-- (the highest values), and the no_data policy applied.  `truncated`
-- counts active series left out.
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
    -- a match rule that matched nothing has data: nothing failed
    had_data := had_data OR r.kind = 'match';
    IF NOT had_data AND r.no_data = 'alerting' THEN
        series := jsonb_build_array(jsonb_build_object(
            'labels', r.labels || jsonb_build_object('alertname', r.name, 'no_data', 'true'),
            'value', NULL, 'values', '{}'::jsonb));
    END IF;
END
$$;

-- Moves every instance of rule `r` to its state at `at`, given the active
-- series; returns the instances that became firing or resolved now.
CREATE FUNCTION runra_obs._alert_step(r runra_obs.alert_rules, at timestamptz, series jsonb)
RETURNS SETOF runra_obs.alert_instances
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    i runra_obs.alert_instances;
    was text;
    seen text[] := '{}';
BEGIN
    FOR s IN SELECT x -> 'labels' AS labels, (x ->> 'value')::double precision AS value, x -> 'values' AS vals
             FROM jsonb_array_elements(series) AS x
    LOOP
        SELECT * INTO i FROM runra_obs.alert_instances AS a
        WHERE a.rule_id = r.id AND a.fingerprint = md5(s.labels::text) FOR UPDATE;
        was := CASE WHEN FOUND THEN i.state ELSE 'inactive' END;
        IF was = 'inactive' THEN
            i.rule_id := r.id;
            i.fingerprint := md5(s.labels::text);
            i.labels := s.labels;
            i.state := 'pending';
            i.active_since := at;
            i.fired_at := NULL;
            i.resolved_at := NULL;
            i.last_sent_at := NULL;
        END IF;
        i.value := s.value;
        i."values" := coalesce(s.vals, '{}');
        i.last_active_at := at;
        IF i.state = 'pending' AND at - i.active_since >= r.for_duration THEN
            i.state := 'firing';
            i.fired_at := at;
        END IF;
        IF i.state <> was THEN
            PERFORM runra_obs._alert_transition(r, at, i, was, i.state);
        END IF;
        i.annotations := runra_obs._alert_annotate(r, i);
        INSERT INTO runra_obs.alert_instances VALUES (i.*)
        ON CONFLICT (rule_id, fingerprint) DO UPDATE
        SET labels = EXCLUDED.labels, state = EXCLUDED.state, value = EXCLUDED.value,
            "values" = EXCLUDED."values", annotations = EXCLUDED.annotations,
            active_since = EXCLUDED.active_since, fired_at = EXCLUDED.fired_at,
            last_active_at = EXCLUDED.last_active_at, resolved_at = EXCLUDED.resolved_at,
            last_sent_at = EXCLUDED.last_sent_at;
        IF i.state = 'firing' AND was <> 'firing' THEN
            RETURN NEXT i;
        END IF;
        seen := seen || i.fingerprint;
    END LOOP;

    -- the instances whose series is not active now
    FOR i IN SELECT * FROM runra_obs.alert_instances AS a
             WHERE a.rule_id = r.id AND a.state <> 'inactive' AND NOT a.fingerprint = ANY (seen)
             FOR UPDATE
    LOOP
        IF i.state = 'pending' THEN
            PERFORM runra_obs._alert_transition(r, at, i, 'pending', 'inactive');
            DELETE FROM runra_obs.alert_instances AS a WHERE a.rule_id = r.id AND a.fingerprint = i.fingerprint;
        ELSIF at - i.last_active_at >= r.keep_firing_for THEN
            i.state := 'inactive';
            i.resolved_at := at;
            i.annotations := runra_obs._alert_annotate(r, i);
            PERFORM runra_obs._alert_transition(r, at, i, 'firing', 'inactive');
            UPDATE runra_obs.alert_instances AS a
            SET state = 'inactive', resolved_at = at, annotations = i.annotations
            WHERE a.rule_id = r.id AND a.fingerprint = i.fingerprint;
            RETURN NEXT i;
        END IF;
    END LOOP;
END
$$;

-- An instance's annotations, rendered from the rule's templates (a summary
-- of the kind's own when the rule gives none).
CREATE FUNCTION runra_obs._alert_annotate(r runra_obs.alert_rules, i runra_obs.alert_instances)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(a.key, runra_obs._alert_render(a.value, r.name, i.state, i.labels,
                                                                   i.value, i."values")), '{}')
    FROM jsonb_each_text(jsonb_build_object('summary', CASE r.kind
             WHEN 'error_rate' THEN 'error rate {{ value }} above {{ values.threshold }} ({{ values.failures }} of {{ values.executions }} executions failed)'
             WHEN 'exec_timeouts' THEN '{{ value }} executions timed out'
             WHEN 'resource' THEN '{{ labels.resource }} of sandbox {{ labels.sandbox_id }} at {{ value }} % of its limit'
             WHEN 'cost_anomaly' THEN 'cost {{ value }} against a baseline of {{ values.baseline }}'
             WHEN 'match' THEN '{{ value }} matching events, the last a {{ values.lastEvent.type }} of sandbox {{ values.lastEvent.sandboxId }}'
             WHEN 'absence' THEN 'no events for {{ value }} s'
             ELSE '{{ rule }}: {{ value }}'
         END) || r.annotations) AS a
$$;

-- Evaluates rule `rule_id` at `at`, the log read up to `up_to` (the safe
-- watermark), and queues what its contact points must hear.  Called by the
-- alert worker, one rule per transaction; returns a summary.
CREATE FUNCTION runra_obs._alert_evaluate(rule_id integer, at timestamptz, up_to bigint)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r runra_obs.alert_rules;
    cur record;
    changed runra_obs.alert_instances[];
    started timestamptz := clock_timestamp();
BEGIN
    SELECT * INTO r FROM runra_obs.alert_rules AS a WHERE a.id = rule_id;
    IF NOT FOUND OR r.paused THEN
        RETURN 'not evaluated: removed or paused';
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
        SET position = least(up_to, c.position + 100000), moved_at = now()
        WHERE c.name = 'alert:' || r.id AND c.position < up_to;
    END IF;
    PERFORM runra_obs._alert_notify(r, at, coalesce(changed, '{}'));
    PERFORM runra_obs._alert_ran(r, at, CASE WHEN cur.had_data THEN 'ok' ELSE 'nodata' END, NULL,
                                 extract(epoch FROM clock_timestamp() - started) * 1000);
    RETURN format('%s series, %s changed%s', jsonb_array_length(cur.series), coalesce(cardinality(changed), 0),
                  CASE WHEN cur.truncated > 0 THEN format(', %s active series over max_instances left out', cur.truncated) ELSE '' END);
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
