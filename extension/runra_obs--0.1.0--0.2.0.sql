-- runra_obs 0.1.0 -> 0.2.0 (ALTER EXTENSION runra_obs UPDATE).
--
-- Every schema change made in extension/parts/ since 0.1.0, in the order it
-- was made, written so that a 0.1.0 database ends with exactly the catalog
-- a new 0.2.0 install has (t/003_upgrade.pl compares the two).
\echo Use "ALTER EXTENSION runra_obs UPDATE" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Citus (extension/parts/90_citus.sql, and run_maintenance() doing nothing
-- on a Citus worker: extension/parts/00_store.sql).
-- ---------------------------------------------------------------------------
-- What this node is: 'none' without Citus, else 'coordinator' or 'worker'.
-- Citus sets a worker's group before it creates the extension there, on
-- node addition as well as on CREATE EXTENSION, so the answer is already
-- right while this script runs on a worker.
CREATE FUNCTION runra_obs.citus_node_role()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    group_id integer;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
        RETURN 'none';
    END IF;
    EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO group_id;
    RETURN CASE WHEN group_id = 0 THEN 'coordinator' ELSE 'worker' END;
END
$$;
COMMENT ON FUNCTION runra_obs.citus_node_role() IS
    'What this node is to runra_obs: none (no Citus), coordinator (ingest, maintenance and every runra_obs worker run here) or worker (holds shards only)';
REVOKE ALL ON FUNCTION runra_obs.citus_node_role() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs.citus_node_role() TO runra_obs_reader, runra_obs_writer;

-- On a Citus coordinator, ATTACH and DROP of a day partition take their
-- locks on the workers too (shells and shards), so maintenance's lock
-- timeout must reach them.  Citus forwards SET LOCAL statements (not
-- set_config() calls) once citus.propagate_set_commands is 'local', and
-- only from within a function called by a query: hence a function of its
-- own, called with PERFORM, and without a SET clause (a function's SET
-- clause undoes every SET LOCAL made inside it when it returns).
CREATE FUNCTION runra_obs._citus_lock_timeout(lock_timeout_ms integer)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF runra_obs.citus_node_role() = 'coordinator' THEN
        PERFORM pg_catalog.set_config('citus.propagate_set_commands', 'local', true);
        EXECUTE pg_catalog.format('SET LOCAL lock_timeout = %s', lock_timeout_ms);
    END IF;
END
$$;
COMMENT ON FUNCTION runra_obs._citus_lock_timeout(integer) IS
    'Internal: on a Citus coordinator, sets lock_timeout for the transaction on the workers too';
REVOKE ALL ON FUNCTION runra_obs._citus_lock_timeout(integer) FROM PUBLIC;

-- Is runra_obs.sandbox_events a Citus table here?  (The writer asks, in
-- src/store/event_batch.c, to choose a path Citus routes.)
CREATE FUNCTION runra_obs._events_distributed()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    distributed boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)'
        INTO distributed USING 'runra_obs.sandbox_events'::regclass;
    RETURN distributed;
END
$$;
COMMENT ON FUNCTION runra_obs._events_distributed() IS
    'Internal: whether runra_obs.sandbox_events is distributed by Citus';
REVOKE ALL ON FUNCTION runra_obs._events_distributed() FROM PUBLIC;

-- The distributed transactions the coordinator has committed that are
-- still only prepared on a worker: their events are stored there but not
-- yet visible.  Normally none (Citus sends COMMIT PREPARED before the
-- coordinator's transaction lets go of its locks); a worker that fails or
-- is killed at that moment keeps them until Citus's recovery commits them
-- (citus.recover_2pc_interval, or recover_prepared_transactions()).  The
-- safe watermark (src/consume/watermark.c) holds back until those it saw
-- are gone.  A transaction is committed on the coordinator when its row in
-- pg_dist_transaction is visible.  NULL when a worker did not answer: then
-- nobody can tell.
CREATE FUNCTION runra_obs._citus_commits_in_doubt()
RETURNS text[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    in_doubt text[];
BEGIN
    IF to_regclass('pg_catalog.pg_dist_transaction') IS NULL THEN
        RETURN '{}';
    END IF;
    EXECUTE $query$
        SELECT CASE WHEN count(*) = 0 OR bool_and(w.success)
                    THEN coalesce(array_agg(t.gid) FILTER (WHERE t.gid IS NOT NULL), '{}')
               END
          FROM run_command_on_workers(
                   $worker$SELECT coalesce(string_agg(gid, ' '), '') FROM pg_prepared_xacts WHERE gid LIKE 'citus\_%'$worker$
               ) AS w
          LEFT JOIN LATERAL unnest(string_to_array(nullif(w.result, ''), ' ')) AS p(gid) ON w.success
          LEFT JOIN pg_dist_transaction AS t ON t.gid = p.gid
    $query$ INTO in_doubt;
    RETURN in_doubt;
END
$$;
COMMENT ON FUNCTION runra_obs._citus_commits_in_doubt() IS
    'Internal: gids of transactions committed on the Citus coordinator and still prepared on a worker; NULL when a worker did not answer';
REVOKE ALL ON FUNCTION runra_obs._citus_commits_in_doubt() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs._citus_commits_in_doubt() TO runra_obs_reader, runra_obs_writer;

CREATE FUNCTION runra_obs.distribute(shard_count integer DEFAULT NULL)
RETURNS TABLE (object text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    failures    text;
    per_sandbox regclass;
BEGIN
    IF runra_obs.citus_node_role() <> 'coordinator' THEN
        RAISE EXCEPTION 'runra_obs.distribute() runs on a Citus coordinator; this node is %',
            CASE runra_obs.citus_node_role() WHEN 'none' THEN 'not running Citus' ELSE 'a Citus worker' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'CREATE EXTENSION citus on every node, add the workers with citus_add_node(), then call it on the coordinator.';
    END IF;
    IF shard_count IS NOT NULL AND shard_count < 1 THEN
        RAISE EXCEPTION 'shard_count must be at least 1, not %', shard_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the partitions' shells on the coordinator are created by Citus
    -- alongside each new partition's shards; ids stay the coordinator's
    IF NOT runra_obs._events_distributed() THEN
        PERFORM create_distributed_table('runra_obs.sandbox_events', 'sandbox_id',
                                         shard_count => coalesce(shard_count,
                                             current_setting('citus.shard_count')::integer));
        object := 'runra_obs.sandbox_events';
        action := 'distributed by sandbox_id';
        RETURN NEXT;
    END IF;
    FOREACH per_sandbox IN ARRAY ARRAY['runra_obs.rollup_1h_sandbox', 'runra_obs.rollup_sandbox',
                                       'runra_obs.rollup_sandbox_agent']::regclass[] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = per_sandbox) THEN
            PERFORM create_distributed_table(per_sandbox, 'sandbox_id',
                                             colocate_with => 'runra_obs.sandbox_events');
            object := per_sandbox::text;
            action := 'distributed by sandbox_id, colocated with runra_obs.sandbox_events';
            RETURN NEXT;
        END IF;
    END LOOP;
    -- no id from a worker's own sequence: nextval there fails at once
    SELECT string_agg(format('%s:%s: %s', w.nodename, w.nodeport, w.result), '; ')
    INTO failures
    FROM run_command_on_workers(
             'ALTER SEQUENCE runra_obs.sandbox_events_id_seq MINVALUE 0 MAXVALUE 1 NO CYCLE') AS w
    WHERE NOT w.success;
    IF failures IS NULL THEN
        SELECT string_agg(format('%s:%s: %s', w.nodename, w.nodeport, w.result), '; ')
        INTO failures
        FROM run_command_on_workers(
                 'SELECT pg_catalog.setval(''runra_obs.sandbox_events_id_seq'', 1, true)') AS w
        WHERE NOT w.success;
    END IF;
    IF failures IS NOT NULL THEN
        RAISE EXCEPTION 'runra_obs could not close the id sequence on every worker: %', failures
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    object := 'runra_obs.sandbox_events_id_seq';
    action := 'closed on the workers: ids come from the coordinator';
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION runra_obs.distribute(integer) IS
    'On a Citus coordinator: distributes sandbox_events and the per-sandbox rollups by sandbox_id (colocated; shard_count shards per day partition, default citus.shard_count) and closes the workers'' id sequences; safe to call again';
REVOKE ALL ON FUNCTION runra_obs.distribute(integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION runra_obs.run_maintenance(lock_timeout_ms integer DEFAULT 1000)
RETURNS TABLE (action text, object text, detail text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET timezone = 'UTC'   -- days are UTC days, whatever the session's zone
AS $$
DECLARE
    now_utc   timestamptz := now();
    oldest    timestamptz := now_utc - runra_obs.setting_interval('runra_obs.retention');
    newest    timestamptz := now_utc + runra_obs.setting_interval('runra_obs.premake');
    day       timestamptz;
    part      record;
    removed   bigint;
    parent_busy boolean := false;
BEGIN
    -- on a Citus worker the coordinator's maintenance keeps the shards
    -- (extension/parts/90_citus.sql): nothing to do, nothing to fail
    IF runra_obs.citus_node_role() = 'worker' THEN
        RETURN;
    END IF;
    -- one maintenance at a time; a second caller waits for the first
    PERFORM runra_obs._lock('run_maintenance');
    PERFORM set_config('lock_timeout', lock_timeout_ms::text, true);
    -- on a Citus coordinator, the workers' locks get the same timeout
    PERFORM runra_obs._citus_lock_timeout(lock_timeout_ms);

    FOR day IN
        SELECT d FROM generate_series(date_trunc('day', oldest, 'UTC'),
                                      date_trunc('day', newest, 'UTC'),
                                      interval '1 day') AS d
        WHERE NOT EXISTS (SELECT FROM runra_obs._partition_bounds() AS p
                          WHERE d >= p.lower AND d < p.upper)
    LOOP
        BEGIN
            object := runra_obs._create_day_partition(day);
            action := 'created';
            detail := format('[%s, %s)', day, day + interval '1 day');
        EXCEPTION WHEN lock_not_available OR invalid_object_definition OR duplicate_table THEN
            action := 'skipped';
            object := format('partition for %s', day);
            detail := SQLERRM;
        END;
        RETURN NEXT;
    END LOOP;

    FOR part IN
        SELECT p.partition, p.upper FROM runra_obs._partition_bounds() AS p
        WHERE p.upper <= oldest ORDER BY p.lower
    LOOP
        object := part.partition::text;   -- before the DROP: after, only an OID is left
        IF parent_busy THEN
            -- every attempt queues an exclusive lock request that stalls
            -- writers while it waits: after one timeout, try no more
            action := 'skipped';
            detail := 'not tried: an earlier drop could not get its lock';
        ELSE
            BEGIN
                EXECUTE format('DROP TABLE %s', part.partition);
                action := 'dropped';
                detail := format('all events before %s are past runra_obs.retention', part.upper);
            EXCEPTION WHEN lock_not_available THEN
                action := 'skipped';
                detail := SQLERRM;
                parent_busy := true;
            END;
        END IF;
        RETURN NEXT;
    END LOOP;

    DELETE FROM runra_obs.rejected_events
    WHERE received_at < now_utc - runra_obs.setting_interval('runra_obs.rejected_retention');
    GET DIAGNOSTICS removed = ROW_COUNT;
    IF removed > 0 THEN
        action := 'expired';
        object := 'runra_obs.rejected_events';
        detail := format('%s rejected events past runra_obs.rejected_retention', removed);
        RETURN NEXT;
    END IF;

    removed := runra_obs._expire_idempotency_keys();   -- extension/parts/30_http.sql
    IF removed > 0 THEN
        action := 'expired';
        object := 'runra_obs.idempotency_keys';
        detail := format('%s Idempotency-Keys past runra_obs.idempotency_window', removed);
        RETURN NEXT;
    END IF;

    removed := runra_obs._expire_alerts();              -- extension/parts/84_alert_notify.sql
    IF removed > 0 THEN
        action := 'expired';
        object := 'runra_obs.alert_history';
        detail := format('%s alert transitions and notifications past runra_obs.alert_retention', removed);
        RETURN NEXT;
    END IF;

    detail := runra_obs._maintain_rollups();            -- extension/parts/60_rollups.sql
    IF detail NOT LIKE 'rollups: 0 delta rows compacted away, 0 expired rows dropped' THEN
        action := 'compacted';
        object := 'rollups';
        RETURN NEXT;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- The alert kinds' SQL functions are PL/pgSQL now: Citus cannot plan the
-- statements of a non-inlined SQL function (their parameters have no
-- values when they are planned), and PL/pgSQL binds them.
-- (extension/parts/80_alerts.sql, 82_alert_eval.sql)
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION runra_obs._alert_log_head()
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT greatest((SELECT l.watermark FROM runra_obs._watermark_lag(0) AS l),
                        (SELECT coalesce(max(e.id), 0) FROM runra_obs.sandbox_events AS e)));
END
$$;

CREATE OR REPLACE FUNCTION runra_obs._alert_error_rate(params jsonb, t timestamptz)
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

CREATE OR REPLACE FUNCTION runra_obs._alert_exec_timeouts(params jsonb, t timestamptz)
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

CREATE OR REPLACE FUNCTION runra_obs._alert_resource(params jsonb, t timestamptz)
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

CREATE OR REPLACE FUNCTION runra_obs._alert_fleet_cost(from_time timestamptz, to_time timestamptz,
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

CREATE OR REPLACE FUNCTION runra_obs._alert_cost(group_by text, from_time timestamptz, to_time timestamptz)
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

CREATE OR REPLACE FUNCTION runra_obs._alert_cost_anomaly(params jsonb, t timestamptz)
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

CREATE OR REPLACE FUNCTION runra_obs._alert_match(rule_id integer, params jsonb, up_to bigint)
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

-- ---------------------------------------------------------------------------
-- _fold_rollups() is PL/pgSQL, for Citus, and grows the per-sandbox totals
-- (extension/parts/60_rollups.sql, 62_sandbox_totals.sql).
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION runra_obs._fold_rollups(after_id bigint, up_to_id bigint,
                                        from_time timestamptz, to_time timestamptz,
                                        compacted boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
        WITH r AS MATERIALIZED (
            SELECT * FROM runra_obs._rollup_rows(after_id, up_to_id, from_time, to_time)
        ), to_5m AS (
            INSERT INTO runra_obs.rollup_5m (bucket, event_type, label, agent_id,
                events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                value_count, value_sum, value_max, limit_max, over_90, compacted)
            SELECT bucket, event_type, label, agent_id,
                   events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                   value_count, value_sum, value_max, limit_max, over_90, compacted
            FROM r WHERE rollup = 'rollup_5m'
        ), to_1h AS (
            INSERT INTO runra_obs.rollup_1h (bucket, event_type, label, agent_id,
                events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                value_count, value_sum, value_max, limit_max, over_90, compacted)
            SELECT bucket, event_type, label, agent_id,
                   events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                   value_count, value_sum, value_max, limit_max, over_90, compacted
            FROM r WHERE rollup = 'rollup_1h'
        ), to_1h_sandbox AS (
            INSERT INTO runra_obs.rollup_1h_sandbox (bucket, sandbox_id, event_type, label, agent_id,
                events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                value_count, value_sum, value_max, limit_max, over_90, compacted)
            SELECT bucket, sandbox_id, event_type, label, agent_id,
                   events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                   value_count, value_sum, value_max, limit_max, over_90, compacted
            FROM r WHERE rollup = 'rollup_1h_sandbox'
        ),
        -- The per-sandbox totals (62_sandbox_totals.sql) grow by the same
        -- rows, in the same statement.  A rebuild (compacted) recounts its
        -- sandboxes afterwards instead.
        hours AS (
            SELECT array_agg(ROW(bucket, sandbox_id, event_type, label, agent_id, events, cost,
                                 value_max, limit_max, over_90)::runra_obs._sandbox_hour) AS hours
            FROM r WHERE rollup = 'rollup_1h_sandbox' AND NOT _fold_rollups.compacted
        ), calls AS (
            INSERT INTO runra_obs.rollup_sandbox_agent AS a (sandbox_id, agent_id, tool_calls)
            SELECT c.sandbox_id, c.agent_id, c.tool_calls
            FROM hours AS h, runra_obs._sandbox_agent_calls(h.hours) AS c
            ON CONFLICT (sandbox_id, agent_id) DO UPDATE SET tool_calls = a.tool_calls + excluded.tool_calls
            RETURNING a.sandbox_id, a.agent_id, a.tool_calls
        ), busiest AS (
            -- tool calls only grow, so the busiest agent is the one it was
            -- or one of the agents whose calls grew now (with their totals)
            SELECT DISTINCT ON (c.sandbox_id) c.sandbox_id, c.agent_id, c.tool_calls
            FROM calls AS c
            ORDER BY c.sandbox_id, c.tool_calls DESC, c.agent_id
        )
        INSERT INTO runra_obs.rollup_sandbox AS s
        SELECT t.sandbox_id, t.first_bucket, t.last_bucket, t.events, t.cost_events,
               t.runtime_cost, t.storage_cost, t.cost, t.unattributed_cost_events, t.unattributed_cost,
               t.image, b.agent_id, b.tool_calls, t.resource_events, t.over_90,
               t.memory_peak, t.memory_limit, t.cpu_peak
        FROM hours AS h
             CROSS JOIN LATERAL runra_obs._sandbox_totals_of(h.hours) AS t
             LEFT JOIN busiest AS b ON b.sandbox_id = t.sandbox_id
        ON CONFLICT (sandbox_id) DO UPDATE SET
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
            cpu_peak = greatest(s.cpu_peak, excluded.cpu_peak);
END
$$;

-- ---------------------------------------------------------------------------
-- The histogram aggregates keep a bigint[] state with a combine function
-- (extension/parts/60_rollups.sql); nothing stored depends on them.
-- ---------------------------------------------------------------------------
DROP AGGREGATE runra_obs.duration_histogram(double precision);
DROP AGGREGATE runra_obs.histogram_merge(bigint[]);
DROP FUNCTION runra_obs._histogram_add(internal, double precision);
DROP FUNCTION runra_obs._histogram_merge(internal, bigint[]);
DROP FUNCTION runra_obs._histogram_final(internal);

-- The aggregates keep the histogram itself as their state, with a combine
-- function: PostgreSQL can then aggregate in parallel, and Citus on each
-- shard, merging the partial histograms afterwards.
CREATE FUNCTION runra_obs._histogram_add(bigint[], double precision)
RETURNS bigint[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_add_duration';

CREATE FUNCTION runra_obs._histogram_merge(bigint[], bigint[])
RETURNS bigint[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_combine';

CREATE FUNCTION runra_obs._histogram_final(bigint[])
RETURNS bigint[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_trim';
COMMENT ON FUNCTION runra_obs._histogram_add(bigint[], double precision) IS
    'Internal: transition function of runra_obs.duration_histogram';
COMMENT ON FUNCTION runra_obs._histogram_merge(bigint[], bigint[]) IS
    'Internal: transition function of runra_obs.histogram_merge, combine function of both histogram aggregates';
COMMENT ON FUNCTION runra_obs._histogram_final(bigint[]) IS
    'Internal: final function of both histogram aggregates';

CREATE AGGREGATE runra_obs.duration_histogram(double precision) (
    SFUNC = runra_obs._histogram_add,
    STYPE = bigint[],
    COMBINEFUNC = runra_obs._histogram_merge,
    FINALFUNC = runra_obs._histogram_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE runra_obs.duration_histogram(double precision) IS
    'Durations in ms as a histogram: bigint[] of counts indexed by duration_bucket, trimmed to the non-empty range';

CREATE AGGREGATE runra_obs.histogram_merge(bigint[]) (
    SFUNC = runra_obs._histogram_merge,
    STYPE = bigint[],
    COMBINEFUNC = runra_obs._histogram_merge,
    FINALFUNC = runra_obs._histogram_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE runra_obs.histogram_merge(bigint[]) IS
    'The sum of duration histograms (as duration_histogram makes them)';

REVOKE ALL ON FUNCTION
    runra_obs._histogram_add(bigint[], double precision),
    runra_obs._histogram_merge(bigint[], bigint[]),
    runra_obs._histogram_final(bigint[]),
    runra_obs.duration_histogram(double precision),
    runra_obs.histogram_merge(bigint[])
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    runra_obs._histogram_add(bigint[], double precision),
    runra_obs._histogram_merge(bigint[], bigint[]),
    runra_obs._histogram_final(bigint[]),
    runra_obs.duration_histogram(double precision),
    runra_obs.histogram_merge(bigint[])
TO runra_obs_reader;

-- runra_obs.total(): sums for the per-sandbox panels (see 60_rollups.sql).
CREATE AGGREGATE runra_obs.total(numeric) (
    SFUNC = pg_catalog.numeric_add,
    STYPE = numeric,
    COMBINEFUNC = pg_catalog.numeric_add,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE runra_obs.total(numeric) IS
    'The exact sum of numerics, as sum(numeric) gives it (NULL without rows), faster where groups are many and small (per-sandbox rollup rows)';

CREATE AGGREGATE runra_obs.total(bigint) (
    SFUNC = pg_catalog.int8pl,
    STYPE = bigint,
    COMBINEFUNC = pg_catalog.int8pl,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE runra_obs.total(bigint) IS
    'The sum of bigints as a bigint (an error past 2^63, where sum() would give numeric), faster than sum() where groups are many and small';
REVOKE ALL ON FUNCTION runra_obs.total(numeric), runra_obs.total(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs.total(numeric), runra_obs.total(bigint) TO runra_obs_reader;

-- The list views mask what looks like a credential in configured URLs
-- (see 50_forward.sql).
CREATE FUNCTION runra_obs._mask_credentials(text)
RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_mask_credentials';
COMMENT ON FUNCTION runra_obs._mask_credentials(text) IS
    'Internal: the text with what looks like a credential (URL user:password@, a token-named query parameter''s value) as ***';
REVOKE ALL ON FUNCTION runra_obs._mask_credentials(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs._mask_credentials(text) TO runra_obs_reader;

CREATE OR REPLACE VIEW runra_obs.destination_list AS
SELECT d.name, d.provider, d.enabled, d.event_types, d.batch_size, d.flush_interval_ms,
       d.max_retry_ms, d.timeout_ms,
       (SELECT coalesce(jsonb_object_agg(o.key, CASE WHEN jsonb_typeof(o.value) = 'string'
                                                     THEN to_jsonb(runra_obs._mask_credentials(o.value #>> '{}'))
                                                     ELSE o.value END), '{}')
        FROM jsonb_each(d.settings) AS o) AS settings,
       d.handler::text AS handler, d.start_at, d.created_at
FROM runra_obs.destinations AS d;
COMMENT ON VIEW runra_obs.destination_list IS
    'The forwarding destinations without their secrets (token, headers); a credential in an option (a token in a URL''s query string) shows as ***';

CREATE OR REPLACE VIEW runra_obs.contact_point_list AS
SELECT id, name, kind,
       CASE WHEN kind <> 'slack' THEN runra_obs._mask_credentials(secrets ->> 'url') END AS url,
       settings, handler::text AS handler, timeout_ms, max_retry_ms,
       secrets ? 'authorization' AS has_authorization,
       changed_by::text AS changed_by, created_at
FROM runra_obs.contact_points;
COMMENT ON VIEW runra_obs.contact_point_list IS
    'The alert contact points without their secrets (Slack''s URL, Authorization); a webhook''s or Alertmanager''s URL is shown, a credential in it (a token in its query string) as ***';

-- ---------------------------------------------------------------------------
-- Per-sandbox totals for the panels that rank every sandbox
-- (extension/parts/62_sandbox_totals.sql), kept by the rollup fold and
-- recounted by rebuilds and retention (60_rollups.sql), distributed with
-- the other per-sandbox rollups on Citus (90_citus.sql).
-- ---------------------------------------------------------------------------
-- (the cost events that name their own agent, for "Cost per agent": few
-- rows, where the type index would read every cost row of the range)
CREATE INDEX rollup_1h_sandbox_agent_cost_idx ON runra_obs.rollup_1h_sandbox (bucket)
    INCLUDE (sandbox_id, agent_id, cost)
    WHERE event_type IN ('cost.runtime', 'cost.storage') AND agent_id <> '';

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
    runra_obs._recount_sandboxes(text[]),
    runra_obs.sandbox_totals(timestamptz, timestamptz)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    runra_obs._sandbox_agent_calls(runra_obs._sandbox_hour[]),
    runra_obs._sandbox_totals_of(runra_obs._sandbox_hour[]),
    runra_obs.sandbox_totals(timestamptz, timestamptz)
TO runra_obs_reader;

CREATE OR REPLACE FUNCTION runra_obs._maintain_rollups()
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    long_horizon  timestamptz := now() - runra_obs.setting_interval('runra_obs.rollup_retention');
    short_horizon timestamptz := now() - runra_obs.setting_interval('runra_obs.retention');
    expired bigint := 0;
    n       bigint;
    merged  bigint;
    cut     text[];
BEGIN
    PERFORM runra_obs._rollup_lock();
    DELETE FROM runra_obs.rollup_1h WHERE bucket < long_horizon;
    GET DIAGNOSTICS n = ROW_COUNT; expired := expired + n;
    DELETE FROM runra_obs.rollup_5m WHERE bucket < short_horizon;
    GET DIAGNOSTICS n = ROW_COUNT; expired := expired + n;
    DELETE FROM runra_obs.ingest_1m WHERE bucket < short_horizon;
    GET DIAGNOSTICS n = ROW_COUNT; expired := expired + n;

    merged := runra_obs._compact_rollup('runra_obs.rollup_5m', 'bucket, event_type, label, agent_id')
            + runra_obs._compact_rollup('runra_obs.rollup_1h', 'bucket, event_type, label, agent_id')
            + runra_obs._compact_rollup('runra_obs.rollup_1h_sandbox',
                                        'bucket, sandbox_id, event_type, label, agent_id')
            + runra_obs._compact_ingest();

    -- Per-sandbox hours past retention, last: a sandbox losing hours is
    -- recounted from those it keeps (or goes, with none left), holding the
    -- consumer's row so that no fold adds to its totals between the
    -- recount's read and its write.  Only when there are such hours (about
    -- once an hour), and never waiting for the row: run_maintenance may
    -- hold sandbox_events (a partition dropped) while a fold holding the
    -- row waits to read it.  A busy row leaves them for the next run.
    -- (arrays, not EXISTS: Citus cannot plan an empty target list)
    cut := ARRAY(SELECT DISTINCT sandbox_id FROM runra_obs.rollup_1h_sandbox WHERE bucket < long_horizon);
    IF cardinality(cut) > 0 THEN
        PERFORM FROM runra_obs.consumers AS c WHERE c.name = 'rollups' FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            -- (again: a fold may have added such hours before we held it)
            cut := ARRAY(SELECT DISTINCT sandbox_id FROM runra_obs.rollup_1h_sandbox WHERE bucket < long_horizon);
            DELETE FROM runra_obs.rollup_1h_sandbox WHERE bucket < long_horizon;
            GET DIAGNOSTICS n = ROW_COUNT; expired := expired + n;
            PERFORM runra_obs._recount_sandboxes(cut);
        END IF;
    END IF;
    RETURN format('rollups: %s delta rows compacted away, %s expired rows dropped', merged, expired);
END
$$;
COMMENT ON FUNCTION runra_obs._maintain_rollups() IS
    'Compacts rollup delta rows and drops rollup rows past retention (hourly: runra_obs.rollup_retention; 5-minute and ingest: runra_obs.retention); called by run_maintenance';

CREATE OR REPLACE FUNCTION runra_obs.rebuild_rollups(window_from timestamptz, window_to timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lower_h timestamptz := date_bin('1 hour', window_from, timestamptz '2000-01-01 00:00+00');
    upper_h timestamptz := date_bin('1 hour', window_to, timestamptz '2000-01-01 00:00+00');
    oldest  timestamptz := (SELECT min(lower) FROM runra_obs.partitions);
    pos     bigint;
    folded  bigint;
    touched text[];
BEGIN
    IF window_to > upper_h THEN
        upper_h := upper_h + interval '1 hour';
    END IF;
    IF lower_h < oldest THEN
        RAISE EXCEPTION 'cannot rebuild rollups from %: raw events are kept only from %', lower_h, oldest
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Rebuilding deletes the rollups of the window and recounts its raw events; before the oldest partition there are none left to count.',
                  HINT = 'Start the window at or after the oldest partition of runra_obs.sandbox_events.';
    END IF;
    PERFORM runra_obs._rollup_lock();
    -- Holding the consumer's row: no fold runs meanwhile, and every event
    -- up to its position is committed and visible (the watermark's
    -- promise), so those are recounted here and the later ones are left
    -- to the consumer.  Nothing is counted twice or missed.
    SELECT c.position INTO STRICT pos
    FROM runra_obs.consumers AS c WHERE c.name = 'rollups' FOR UPDATE;
    -- the sandboxes whose totals change: those with hours in the window
    -- before and after the recount
    touched := ARRAY(SELECT DISTINCT sandbox_id FROM runra_obs.rollup_1h_sandbox
                     WHERE bucket >= lower_h AND bucket < upper_h);
    DELETE FROM runra_obs.rollup_5m WHERE bucket >= lower_h AND bucket < upper_h;
    DELETE FROM runra_obs.rollup_1h WHERE bucket >= lower_h AND bucket < upper_h;
    DELETE FROM runra_obs.rollup_1h_sandbox WHERE bucket >= lower_h AND bucket < upper_h;
    PERFORM runra_obs._fold_rollups(0, pos, lower_h, upper_h, true);
    PERFORM runra_obs._recount_sandboxes(ARRAY(
        SELECT unnest(touched)
        UNION
        SELECT sandbox_id FROM runra_obs.rollup_1h_sandbox WHERE bucket >= lower_h AND bucket < upper_h));
    SELECT count(*) INTO folded FROM runra_obs.sandbox_events
    WHERE created_at >= lower_h AND created_at < upper_h AND id <= pos;
    RETURN folded;
END
$$;
COMMENT ON FUNCTION runra_obs.rebuild_rollups(timestamptz, timestamptz) IS
    'Recounts the rollups of a window (widened to whole hours) from the raw events the rollup consumer has passed; returns the events counted';

-- the totals of what the rollups hold already, with no fold or rebuild
-- meanwhile (a manual fold_rollups() during the update)
SELECT runra_obs._rollup_lock();
SELECT FROM runra_obs.consumers WHERE name = 'rollups' FOR UPDATE;
SELECT runra_obs._recount_sandboxes(ARRAY(SELECT DISTINCT sandbox_id FROM runra_obs.rollup_1h_sandbox));

-- ---------------------------------------------------------------------------
-- The API's bounds fold into constants (_shift, IMMUTABLE), and the live
-- views are functions of the buckets and event types asked for, with the
-- conditions inside both legs (extension/parts/60_rollups.sql and
-- 70_api_rollups.sql); the rollup consumer never moves past the ids handed
-- out.
-- ---------------------------------------------------------------------------
CREATE FUNCTION runra_obs._shift(instant timestamptz, span interval)
RETURNS timestamptz
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_shift';
COMMENT ON FUNCTION runra_obs._shift(timestamptz, interval) IS
    'Internal: instant + span for a span of hours, minutes and seconds (an error for days or months), IMMUTABLE';

CREATE OR REPLACE FUNCTION runra_obs._rollup_lo(from_time timestamptz, to_time timestamptz, w interval)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE
               WHEN w IS NULL
                 OR coalesce(to_time, 'infinity') < runra_obs._shift(coalesce(from_time, '-infinity'), interval '3 hours')
               THEN coalesce(to_time, 'infinity')
               -- rounding up: the bucket of the last microsecond before from_time + w
               ELSE date_bin(w, runra_obs._shift(coalesce(from_time, '-infinity'), w - interval '1 microsecond'),
                             timestamptz '2000-01-01 00:00:00+00')
           END;
END;
COMMENT ON FUNCTION runra_obs._rollup_lo(timestamptz, timestamptz, interval) IS
    'Internal: start of the whole rollup buckets of width w in [from_time, to_time); to_time when the window is read raw';

CREATE OR REPLACE FUNCTION runra_obs._rollup_hi(from_time timestamptz, to_time timestamptz, w interval)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE
               WHEN w IS NULL
                 OR coalesce(to_time, 'infinity') < runra_obs._shift(coalesce(from_time, '-infinity'), interval '3 hours')
               THEN coalesce(to_time, 'infinity')
               ELSE date_bin(w, coalesce(to_time, 'infinity'), timestamptz '2000-01-01 00:00:00+00')
           END;
END;
COMMENT ON FUNCTION runra_obs._rollup_hi(timestamptz, timestamptz, interval) IS
    'Internal: end of the whole rollup buckets of width w in [from_time, to_time); to_time when the window is read raw';

REVOKE ALL ON FUNCTION runra_obs._shift(timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs._shift(timestamptz, interval) TO runra_obs_reader;

CREATE FUNCTION runra_obs._rollup_5m_live(lo timestamptz, hi timestamptz, types text[])
RETURNS TABLE (bucket timestamptz, event_type text, label text, agent_id text,
               events bigint, failures bigint, cost numeric, duration_count bigint,
               duration_sum numeric, duration_max numeric, duration_hist bigint[],
               value_count bigint, value_sum numeric, value_max numeric, limit_max numeric,
               over_90 bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.bucket, r.event_type, r.label, r.agent_id, r.events, r.failures, r.cost,
           r.duration_count, r.duration_sum, r.duration_max, r.duration_hist, r.value_count,
           r.value_sum, r.value_max, r.limit_max, r.over_90
    FROM runra_obs.rollup_5m AS r
    WHERE r.bucket >= lo AND r.bucket < hi
      AND (types IS NULL OR r.event_type = ANY (types))
    UNION ALL
    SELECT u.bucket, u.event_type, u.label, u.agent_id, u.events, u.failures, u.cost,
           u.duration_count, u.duration_sum, u.duration_max, u.duration_hist, u.value_count,
           u.value_sum, u.value_max, u.limit_max, u.over_90
    FROM runra_obs.consumers AS c,
         LATERAL runra_obs._rollup_rows(c.position, 9223372036854775807, '-infinity', 'infinity') AS u
    WHERE c.name = 'rollups' AND u.rollup = 'rollup_5m'
      AND u.bucket >= lo AND u.bucket < hi
      AND (types IS NULL OR u.event_type = ANY (types));
END;
COMMENT ON FUNCTION runra_obs._rollup_5m_live(timestamptz, timestamptz, text[]) IS
    'Internal: the rows of rollup_5m_live with bucket in [lo, hi) and event_type in types (NULL: any)';
CREATE OR REPLACE VIEW runra_obs.rollup_5m_live WITH (security_invoker = true) AS
SELECT bucket, event_type, label, agent_id, events, failures, cost, duration_count,
       duration_sum, duration_max, duration_hist, value_count, value_sum, value_max,
       limit_max, over_90
FROM runra_obs._rollup_5m_live('-infinity', 'infinity', NULL);
CREATE FUNCTION runra_obs._rollup_1h_live(lo timestamptz, hi timestamptz, types text[])
RETURNS TABLE (bucket timestamptz, event_type text, label text, agent_id text,
               events bigint, failures bigint, cost numeric, duration_count bigint,
               duration_sum numeric, duration_max numeric, duration_hist bigint[],
               value_count bigint, value_sum numeric, value_max numeric, limit_max numeric,
               over_90 bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.bucket, r.event_type, r.label, r.agent_id, r.events, r.failures, r.cost,
           r.duration_count, r.duration_sum, r.duration_max, r.duration_hist, r.value_count,
           r.value_sum, r.value_max, r.limit_max, r.over_90
    FROM runra_obs.rollup_1h AS r
    WHERE r.bucket >= lo AND r.bucket < hi
      AND (types IS NULL OR r.event_type = ANY (types))
    UNION ALL
    SELECT u.bucket, u.event_type, u.label, u.agent_id, u.events, u.failures, u.cost,
           u.duration_count, u.duration_sum, u.duration_max, u.duration_hist, u.value_count,
           u.value_sum, u.value_max, u.limit_max, u.over_90
    FROM runra_obs.consumers AS c,
         LATERAL runra_obs._rollup_rows(c.position, 9223372036854775807, '-infinity', 'infinity') AS u
    WHERE c.name = 'rollups' AND u.rollup = 'rollup_1h'
      AND u.bucket >= lo AND u.bucket < hi
      AND (types IS NULL OR u.event_type = ANY (types));
END;
COMMENT ON FUNCTION runra_obs._rollup_1h_live(timestamptz, timestamptz, text[]) IS
    'Internal: the rows of rollup_1h_live with bucket in [lo, hi) and event_type in types (NULL: any)';
CREATE OR REPLACE VIEW runra_obs.rollup_1h_live WITH (security_invoker = true) AS
SELECT bucket, event_type, label, agent_id, events, failures, cost, duration_count,
       duration_sum, duration_max, duration_hist, value_count, value_sum, value_max,
       limit_max, over_90
FROM runra_obs._rollup_1h_live('-infinity', 'infinity', NULL);
CREATE FUNCTION runra_obs._rollup_1h_sandbox_live(lo timestamptz, hi timestamptz, types text[])
RETURNS TABLE (bucket timestamptz, sandbox_id text, event_type text, label text, agent_id text,
               events bigint, failures bigint, cost numeric, duration_count bigint,
               duration_sum numeric, duration_max numeric, duration_hist bigint[],
               value_count bigint, value_sum numeric, value_max numeric, limit_max numeric,
               over_90 bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT r.bucket, r.sandbox_id, r.event_type, r.label, r.agent_id, r.events, r.failures, r.cost,
           r.duration_count, r.duration_sum, r.duration_max, r.duration_hist, r.value_count,
           r.value_sum, r.value_max, r.limit_max, r.over_90
    FROM runra_obs.rollup_1h_sandbox AS r
    WHERE r.bucket >= lo AND r.bucket < hi
      AND (types IS NULL OR r.event_type = ANY (types))
    UNION ALL
    SELECT u.bucket, u.sandbox_id, u.event_type, u.label, u.agent_id, u.events, u.failures,
           u.cost, u.duration_count, u.duration_sum, u.duration_max, u.duration_hist,
           u.value_count, u.value_sum, u.value_max, u.limit_max, u.over_90
    FROM runra_obs.consumers AS c,
         LATERAL runra_obs._rollup_rows(c.position, 9223372036854775807, '-infinity', 'infinity') AS u
    WHERE c.name = 'rollups' AND u.rollup = 'rollup_1h_sandbox'
      AND u.bucket >= lo AND u.bucket < hi
      AND (types IS NULL OR u.event_type = ANY (types));
END;
COMMENT ON FUNCTION runra_obs._rollup_1h_sandbox_live(timestamptz, timestamptz, text[]) IS
    'Internal: the rows of rollup_1h_sandbox_live with bucket in [lo, hi) and event_type in types (NULL: any)';
CREATE OR REPLACE VIEW runra_obs.rollup_1h_sandbox_live WITH (security_invoker = true) AS
SELECT bucket, sandbox_id, event_type, label, agent_id, events, failures, cost,
       duration_count, duration_sum, duration_max, duration_hist, value_count, value_sum,
       value_max, limit_max, over_90
FROM runra_obs._rollup_1h_sandbox_live('-infinity', 'infinity', NULL);
REVOKE ALL ON FUNCTION
    runra_obs._rollup_5m_live(timestamptz, timestamptz, text[]),
    runra_obs._rollup_1h_live(timestamptz, timestamptz, text[]),
    runra_obs._rollup_1h_sandbox_live(timestamptz, timestamptz, text[])
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    runra_obs._rollup_5m_live(timestamptz, timestamptz, text[]),
    runra_obs._rollup_1h_live(timestamptz, timestamptz, text[]),
    runra_obs._rollup_1h_sandbox_live(timestamptz, timestamptz, text[])
TO runra_obs_reader;

CREATE OR REPLACE FUNCTION runra_obs._cost_parts(from_time timestamptz, to_time timestamptz, w interval)
RETURNS TABLE ("time" timestamptz, sandbox_id text, runtime_cost numeric, storage_cost numeric,
               reported_total_cost numeric, runtime_ms numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT c."time", c.sandbox_id, c.runtime_cost, c.storage_cost, c.reported_total_cost, c.runtime_ms
    FROM runra_obs._cost_events(from_time, runra_obs._rollup_lo(from_time, to_time, w)) AS c
    UNION ALL
    SELECT c."time", c.sandbox_id, c.runtime_cost, c.storage_cost, c.reported_total_cost, c.runtime_ms
    FROM runra_obs._cost_events(runra_obs._rollup_hi(from_time, to_time, w), to_time) AS c
    UNION ALL
    SELECT r.bucket,
           r.sandbox_id,
           CASE WHEN r.event_type = 'cost.runtime' THEN r.cost END,
           CASE WHEN r.event_type = 'cost.storage' THEN r.cost END,
           CASE WHEN r.event_type = 'cost.total' THEN r.cost END,
           CASE WHEN r.event_type = 'cost.runtime' THEN r.duration_sum END
    FROM runra_obs._rollup_1h_sandbox_live(runra_obs._rollup_lo(from_time, to_time, w),
                                           runra_obs._rollup_hi(from_time, to_time, w),
                                           ARRAY['cost.runtime', 'cost.storage', 'cost.total']) AS r
    WHERE w = interval '1 hour';
END;
CREATE OR REPLACE FUNCTION runra_obs.error_rate(from_time timestamptz DEFAULT now() - interval '24 hours',
                                                to_time timestamptz DEFAULT now(),
                                                bucket interval DEFAULT '5 minutes')
RETURNS TABLE ("time" timestamptz, executions bigint, failures bigint,
               rate double precision, threshold double precision, above_threshold boolean)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT per_bucket."time",
           per_bucket.executions,
           per_bucket.failures,
           per_bucket.failures::double precision / per_bucket.executions,
           per_bucket.threshold,
           per_bucket.failures::double precision / per_bucket.executions > per_bucket.threshold
    FROM (
        SELECT runra_obs._bucket(bucket, x."time") AS "time",
               sum(x.executions)::bigint AS executions,
               sum(x.failures)::bigint AS failures,
               coalesce(nullif(current_setting('runra_obs.error_rate_threshold', true), '')::double precision,
                        0.05) AS threshold
        FROM (
            SELECT o."time", 1::bigint AS executions, CASE WHEN o.failed THEN 1::bigint ELSE 0 END AS failures
            FROM runra_obs._exec_events(from_time,
                                        runra_obs._rollup_lo(from_time, to_time,
                                                             runra_obs._rollup_width(error_rate.bucket, interval '5 minutes'))) AS o
            UNION ALL
            SELECT o."time", 1, CASE WHEN o.failed THEN 1 ELSE 0 END
            FROM runra_obs._exec_events(runra_obs._rollup_hi(from_time, to_time,
                                                             runra_obs._rollup_width(error_rate.bucket, interval '5 minutes')),
                                        to_time) AS o
            UNION ALL
            -- (each rollup leg is given its width only when its rollup serves
            -- the buckets, else NULL and so an empty range: Citus plans and
            -- runs every leg of a union, even one under a false condition)
            SELECT r.bucket, r.events, r.failures
            FROM runra_obs._rollup_1h_live(
                     runra_obs._rollup_lo(from_time, to_time, runra_obs._rollup_width(error_rate.bucket, interval '1 hour')),
                     runra_obs._rollup_hi(from_time, to_time, runra_obs._rollup_width(error_rate.bucket, interval '1 hour')),
                     ARRAY['exec.completed', 'exec.failed', 'exec.timed_out']) AS r
            WHERE runra_obs._rollup_width(error_rate.bucket, interval '5 minutes') = interval '1 hour'
            UNION ALL
            SELECT r.bucket, r.events, r.failures
            FROM runra_obs._rollup_5m_live(
                     runra_obs._rollup_lo(from_time, to_time, nullif(runra_obs._rollup_width(error_rate.bucket, interval '5 minutes'), interval '1 hour')),
                     runra_obs._rollup_hi(from_time, to_time, nullif(runra_obs._rollup_width(error_rate.bucket, interval '5 minutes'), interval '1 hour')),
                     ARRAY['exec.completed', 'exec.failed', 'exec.timed_out']) AS r
            WHERE runra_obs._rollup_width(error_rate.bucket, interval '5 minutes') = interval '5 minutes'
        ) AS x
        GROUP BY 1
    ) AS per_bucket
    ORDER BY per_bucket."time";
END;
CREATE OR REPLACE FUNCTION runra_obs._consume_rollups(up_to bigint, max_ids bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos    bigint;
    target bigint;
BEGIN
    SELECT c.position INTO STRICT pos
    FROM runra_obs.consumers AS c WHERE c.name = 'rollups' FOR UPDATE;
    -- never past the ids handed out: a watermark computed before the
    -- extension was dropped and created again (the caller's transaction
    -- waited for this row through both) counts the old sequence's ids
    target := least(up_to, pos + max_ids, runra_obs._last_event_id());
    IF target <= pos THEN
        RETURN pos;
    END IF;
    PERFORM runra_obs._fold_rollups(pos, target, '-infinity', 'infinity', false);
    INSERT INTO runra_obs.ingest_1m (bucket, events, transactions, delay_sum_s, delay_max_s)
    SELECT * FROM runra_obs._ingest_rows(pos, target);
    UPDATE runra_obs.consumers SET position = target, moved_at = now() WHERE name = 'rollups';
    RETURN target;
END
$$;

-- 2026-12-04: on Citus the rollup consumer's fold groups the new events on
-- the shards (_fold_rollups_on_shards); the facts, the measures, the
-- totals' upsert and the last id handed out (_last_event_id) it shares
-- with the one-node fold are one definition each.
CREATE FUNCTION runra_obs._last_event_id()
RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(pg_catalog.pg_sequence_last_value('runra_obs.sandbox_events_id_seq'::regclass), 0)
$$;
COMMENT ON FUNCTION runra_obs._last_event_id() IS
    'Internal: the last id runra_obs.sandbox_events_id_seq handed out, 0 before the first';
CREATE OR REPLACE FUNCTION runra_obs._ingest_rows(after_id bigint, up_to_id bigint)
RETURNS TABLE (bucket timestamptz, events bigint, transactions bigint,
               delay_sum_s double precision, delay_max_s double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
BEGIN
    IF after_id >= runra_obs._last_event_id() THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $rows$
    SELECT date_bin('1 minute', e.ingested_at, timestamptz '2000-01-01 00:00+00'),
           count(*),
           count(DISTINCT e.ingested_at),
           sum(extract(epoch FROM e.ingested_at - e.created_at))::double precision,
           max(extract(epoch FROM e.ingested_at - e.created_at))::double precision
    FROM runra_obs.sandbox_events AS e
    WHERE e.id > $1 AND e.id <= $2
    GROUP BY 1
    $rows$ USING after_id, up_to_id;
END
$$;
COMMENT ON FUNCTION runra_obs._ingest_rows(bigint, bigint) IS
    'Internal: the runra_obs.ingest_1m rows of the events with ids in (after_id, up_to_id]';
CREATE FUNCTION runra_obs._rollup_facts_sql(time_bounded boolean)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT 'SELECT date_bin(''5 minutes'', e.created_at, timestamptz ''2000-01-01 00:00+00'') AS bucket_5m,
               date_bin(''1 hour'', e.created_at, timestamptz ''2000-01-01 00:00+00'') AS bucket_1h,
               e.sandbox_id,
               e.event_type,
               runra_obs.event_label(e.event_type, e.data) AS label,
               runra_obs.event_agent(e.data) AS agent_id,
               runra_obs.event_failed(e.event_type, e.data) AS failed,
               runra_obs.event_cost(e.event_type, e.data) AS cost,
               runra_obs.event_duration_ms(e.event_type, e.data) AS duration_ms,
               runra_obs.event_value(e.event_type, e.data) AS value,
               runra_obs.event_limit(e.event_type, e.data) AS lim
        FROM runra_obs.sandbox_events AS e
        WHERE e.id > $1 AND e.id <= $2'
        || CASE WHEN time_bounded THEN ' AND e.created_at >= $3 AND e.created_at < $4' ELSE '' END
$$;
COMMENT ON FUNCTION runra_obs._rollup_facts_sql(boolean) IS
    'Internal: the query of the facts the rollups count of the events with ids in ($1, $2] (and created_at in [$3, $4) when time_bounded), as SQL';
CREATE FUNCTION runra_obs._rollup_measures_sql()
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT 'count(*) AS events,
           count(*) FILTER (WHERE f.failed) AS failures,
           sum(f.cost) AS cost,
           count(f.duration_ms) AS duration_count,
           sum(f.duration_ms) AS duration_sum,
           max(f.duration_ms) AS duration_max,
           runra_obs.duration_histogram(f.duration_ms::float8) AS duration_hist,
           count(f.value) AS value_count,
           sum(f.value) AS value_sum,
           max(f.value) AS value_max,
           max(f.lim) AS limit_max,
           count(*) FILTER (WHERE f.value > 0.9 * f.lim) AS over_90'
$$;
COMMENT ON FUNCTION runra_obs._rollup_measures_sql() IS
    'Internal: the measures of a rollup row aggregated from the facts of its events (aliased f), as SQL';
CREATE OR REPLACE FUNCTION runra_obs._rollup_rows(after_id bigint, up_to_id bigint,
                                       from_time timestamptz, to_time timestamptz)
RETURNS TABLE (rollup text, bucket timestamptz, sandbox_id text, event_type text, label text,
               agent_id text, events bigint, failures bigint, cost numeric,
               duration_count bigint, duration_sum numeric, duration_max numeric,
               duration_hist bigint[], value_count bigint, value_sum numeric, value_max numeric,
               limit_max numeric, over_90 bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
BEGIN
    IF after_id >= runra_obs._last_event_id() THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($rows$
    WITH facts AS MATERIALIZED (%s
    ), keyed AS (
        SELECT f.*,
               runra_obs._rollup_key('rollup_5m', f.event_type, f.label) AS label_5m,
               runra_obs._rollup_key('rollup_1h_sandbox', f.event_type, f.label) AS label_sandbox
        FROM facts AS f
    )
    -- In each grouping set the columns of the other sets are NULL, and no
    -- key is ever NULL itself, so coalesce picks the key of the row's set.
    SELECT CASE WHEN grouping(f.bucket_5m) = 0 THEN 'rollup_5m'
                WHEN grouping(f.sandbox_id) = 0 THEN 'rollup_1h_sandbox'
                ELSE 'rollup_1h' END,
           coalesce(f.bucket_5m, f.bucket_1h),
           f.sandbox_id,
           f.event_type,
           coalesce(f.label_5m, f.label, f.label_sandbox),
           coalesce(f.agent_id, ''),
           %s
    FROM keyed AS f
    GROUP BY GROUPING SETS (
        (f.bucket_5m, f.event_type, f.label_5m),
        (f.bucket_1h, f.event_type, f.label, f.agent_id),
        (f.bucket_1h, f.sandbox_id, f.event_type, f.label_sandbox, f.agent_id))
    $rows$, runra_obs._rollup_facts_sql(from_time > '-infinity' OR to_time < 'infinity'),
            runra_obs._rollup_measures_sql())
    USING after_id, up_to_id, from_time, to_time;
END
$$;
COMMENT ON FUNCTION runra_obs._rollup_rows(bigint, bigint, timestamptz, timestamptz) IS
    'Internal: the rollup rows (for rollup_5m, rollup_1h and rollup_1h_sandbox) of the events with ids in (after_id, up_to_id] and created_at in [from_time, to_time)';
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
CREATE FUNCTION runra_obs._fold_rollups_on_shards(after_id bigint, up_to_id bigint,
                                                  from_time timestamptz, to_time timestamptz,
                                                  compacted boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    facts text := runra_obs._rollup_facts_sql(from_time > '-infinity' OR to_time < 'infinity');
    -- the fold's rollup_1h_sandbox rows of the events matching a condition
    -- on their facts: format(hours, measures, facts, condition), one
    -- format() each time, so that no text put in is read as a format
    hours constant text := $hours$
        SELECT f.bucket_1h AS bucket, f.sandbox_id, f.event_type,
               runra_obs._rollup_key('rollup_1h_sandbox', f.event_type, f.label) AS label,
               f.agent_id, %s
        FROM (%s) AS f
        WHERE %s
        GROUP BY 1, 2, 3, 4, 5$hours$;
    -- those rows of each sandbox as one array
    per_sandbox constant text := $sandbox$
        SELECT h.sandbox_id,
               array_agg(ROW(h.bucket, h.sandbox_id, h.event_type, h.label, h.agent_id, h.events,
                             h.cost, h.value_max, h.limit_max, h.over_90)::runra_obs._sandbox_hour) AS hours
        FROM (%s) AS h
        GROUP BY h.sandbox_id$sandbox$;
    measures constant text := runra_obs._rollup_measures_sql();
    -- what the caller's transaction had, given back at the end: a SET
    -- LOCAL made in a function lasts to the end of the transaction (only
    -- the settings a function's own SET clause names are restored)
    seqscan_was text := pg_catalog.current_setting('enable_seqscan');
    pool_was text := pg_catalog.current_setting('citus.max_adaptive_executor_pool_size');
    propagate_was text := pg_catalog.current_setting('citus.propagate_set_commands');
BEGIN
    -- no event after after_id: nothing to send to the shards
    IF after_id >= runra_obs._last_event_id() THEN
        RETURN;
    END IF;
    -- runra_obs.rollup_shard_connections connections per worker (one by
    -- default: its shards folded one after the other), which the rollup
    -- worker keeps open between folds: at Citus's defaults every step
    -- would open up to 16 connections per worker and close 15 at commit
    -- (forking backends each second).  And the plan of one node on every
    -- shard: the id range read through the index on id (_rollup_rows says
    -- why), sent to the workers as a SET LOCAL of their transactions.
    PERFORM pg_catalog.set_config('citus.max_adaptive_executor_pool_size',
                                  pg_catalog.current_setting('runra_obs.rollup_shard_connections'), true);
    PERFORM pg_catalog.set_config('citus.propagate_set_commands', 'local', true);
    SET LOCAL enable_seqscan = off;

    -- (the target's sandbox_id taken from the events' own, never from a
    -- function's result: only then does Citus push the insert down)
    EXECUTE format($fold$
        INSERT INTO runra_obs.rollup_1h_sandbox (bucket, sandbox_id, event_type, label, agent_id,
            events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
            value_count, value_sum, value_max, limit_max, over_90, compacted)
        SELECT h.*, $5 FROM (%s) AS h$fold$, format(hours, measures, facts, 'true'))
    USING after_id, up_to_id, from_time, to_time, compacted;

    EXECUTE format($fold$
        WITH fine AS MATERIALIZED (
            SELECT f.bucket_5m, f.event_type, f.label, f.agent_id, %1$s
            FROM (%2$s) AS f
            GROUP BY 1, 2, 3, 4
        ), to_5m AS (
            INSERT INTO runra_obs.rollup_5m (bucket, event_type, label, agent_id, %3$s)
            SELECT fine.bucket_5m, fine.event_type,
                   runra_obs._rollup_key('rollup_5m', fine.event_type, fine.label), '', %4$s, $5
            FROM fine
            GROUP BY 1, 2, 3
        )
        INSERT INTO runra_obs.rollup_1h (bucket, event_type, label, agent_id, %3$s)
        SELECT date_bin('1 hour', fine.bucket_5m, timestamptz '2000-01-01 00:00+00'),
               fine.event_type, fine.label, fine.agent_id, %4$s, $5
        FROM fine
        GROUP BY 1, 2, 3, 4$fold$,
        measures, facts, runra_obs._rollup_columns(), runra_obs._rollup_merge_measures())
    USING after_id, up_to_id, from_time, to_time, compacted;

    -- a rebuild recounts its sandboxes afterwards instead
    IF NOT compacted THEN
        EXECUTE format($fold$
            INSERT INTO runra_obs.rollup_sandbox_agent AS a (sandbox_id, agent_id, tool_calls)
            SELECT g.sandbox_id, c.agent_id, c.tool_calls
            FROM (%s) AS g, runra_obs._sandbox_agent_calls(g.hours) AS c
            ON CONFLICT (sandbox_id, agent_id) DO UPDATE SET tool_calls = a.tool_calls + excluded.tool_calls
            $fold$, format(per_sandbox, format(hours, measures, facts, 'f.event_type = ''tool.invoked''')))
        USING after_id, up_to_id, from_time, to_time;
        EXECUTE format($fold$
            INSERT INTO runra_obs.rollup_sandbox AS s
            SELECT g.sandbox_id, t.first_bucket, t.last_bucket, t.events, t.cost_events,
                   t.runtime_cost, t.storage_cost, t.cost, t.unattributed_cost_events, t.unattributed_cost,
                   t.image, b.agent_id, b.tool_calls, t.resource_events, t.over_90,
                   t.memory_peak, t.memory_limit, t.cpu_peak
            FROM (%s) AS g
                 CROSS JOIN LATERAL runra_obs._sandbox_totals_of(g.hours) AS t
                 LEFT JOIN LATERAL (
                     SELECT a.agent_id, a.tool_calls
                     FROM runra_obs.rollup_sandbox_agent AS a
                     WHERE a.sandbox_id = g.sandbox_id
                     ORDER BY a.tool_calls DESC, a.agent_id
                     LIMIT 1) AS b ON true
            %s$fold$, format(per_sandbox, format(hours, measures, facts, 'true')),
            runra_obs._sandbox_totals_upsert_sql())
        USING after_id, up_to_id, from_time, to_time;
    END IF;

    EXECUTE format('SET LOCAL enable_seqscan = %s', seqscan_was);
    PERFORM pg_catalog.set_config('citus.propagate_set_commands', propagate_was, true);
    PERFORM pg_catalog.set_config('citus.max_adaptive_executor_pool_size', pool_was, true);
END
$$;
COMMENT ON FUNCTION runra_obs._fold_rollups_on_shards(bigint, bigint, timestamptz, timestamptz, boolean) IS
    'Internal: _fold_rollups() on Citus: the rollup rows of the events with ids in (after_id, up_to_id] and created_at in [from_time, to_time), grouped on the shards';
CREATE OR REPLACE FUNCTION runra_obs._fold_rollups(after_id bigint, up_to_id bigint,
                                        from_time timestamptz, to_time timestamptz,
                                        compacted boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF runra_obs._events_distributed() THEN
        PERFORM runra_obs._fold_rollups_on_shards(after_id, up_to_id, from_time, to_time, compacted);
        RETURN;
    END IF;
    EXECUTE format($fold$
        WITH r AS MATERIALIZED (
            SELECT * FROM runra_obs._rollup_rows($1, $2, $3, $4)
        ), to_5m AS (
            INSERT INTO runra_obs.rollup_5m (bucket, event_type, label, agent_id,
                events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                value_count, value_sum, value_max, limit_max, over_90, compacted)
            SELECT bucket, event_type, label, agent_id,
                   events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                   value_count, value_sum, value_max, limit_max, over_90, $5
            FROM r WHERE rollup = 'rollup_5m'
        ), to_1h AS (
            INSERT INTO runra_obs.rollup_1h (bucket, event_type, label, agent_id,
                events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                value_count, value_sum, value_max, limit_max, over_90, compacted)
            SELECT bucket, event_type, label, agent_id,
                   events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                   value_count, value_sum, value_max, limit_max, over_90, $5
            FROM r WHERE rollup = 'rollup_1h'
        ), to_1h_sandbox AS (
            INSERT INTO runra_obs.rollup_1h_sandbox (bucket, sandbox_id, event_type, label, agent_id,
                events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                value_count, value_sum, value_max, limit_max, over_90, compacted)
            SELECT bucket, sandbox_id, event_type, label, agent_id,
                   events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
                   value_count, value_sum, value_max, limit_max, over_90, $5
            FROM r WHERE rollup = 'rollup_1h_sandbox'
        ),
        -- The per-sandbox totals (62_sandbox_totals.sql) grow by the same
        -- rows, in the same statement.  A rebuild (compacted) recounts its
        -- sandboxes afterwards instead.
        hours AS (
            SELECT array_agg(ROW(bucket, sandbox_id, event_type, label, agent_id, events, cost,
                                 value_max, limit_max, over_90)::runra_obs._sandbox_hour) AS hours
            FROM r WHERE rollup = 'rollup_1h_sandbox' AND NOT $5
        ), calls AS (
            INSERT INTO runra_obs.rollup_sandbox_agent AS a (sandbox_id, agent_id, tool_calls)
            SELECT c.sandbox_id, c.agent_id, c.tool_calls
            FROM hours AS h, runra_obs._sandbox_agent_calls(h.hours) AS c
            ON CONFLICT (sandbox_id, agent_id) DO UPDATE SET tool_calls = a.tool_calls + excluded.tool_calls
            RETURNING a.sandbox_id, a.agent_id, a.tool_calls
        ), busiest AS (
            -- tool calls only grow, so the busiest agent is the one it was
            -- or one of the agents whose calls grew now (with their totals)
            SELECT DISTINCT ON (c.sandbox_id) c.sandbox_id, c.agent_id, c.tool_calls
            FROM calls AS c
            ORDER BY c.sandbox_id, c.tool_calls DESC, c.agent_id
        )
        INSERT INTO runra_obs.rollup_sandbox AS s
        SELECT t.sandbox_id, t.first_bucket, t.last_bucket, t.events, t.cost_events,
               t.runtime_cost, t.storage_cost, t.cost, t.unattributed_cost_events, t.unattributed_cost,
               t.image, b.agent_id, b.tool_calls, t.resource_events, t.over_90,
               t.memory_peak, t.memory_limit, t.cpu_peak
        FROM hours AS h
             CROSS JOIN LATERAL runra_obs._sandbox_totals_of(h.hours) AS t
             LEFT JOIN busiest AS b ON b.sandbox_id = t.sandbox_id
        %s
    $fold$, runra_obs._sandbox_totals_upsert_sql())
    USING after_id, up_to_id, from_time, to_time, compacted;
END
$$;
COMMENT ON FUNCTION runra_obs._fold_rollups(bigint, bigint, timestamptz, timestamptz, boolean) IS
    'Internal: inserts the rollup rows of the events with ids in (after_id, up_to_id] and created_at in [from_time, to_time)';
REVOKE ALL ON FUNCTION
    runra_obs._last_event_id(),
    runra_obs._rollup_facts_sql(boolean),
    runra_obs._rollup_measures_sql(),
    runra_obs._sandbox_totals_upsert_sql(),
    runra_obs._fold_rollups_on_shards(bigint, bigint, timestamptz, timestamptz, boolean)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    runra_obs._last_event_id(),
    runra_obs._rollup_facts_sql(boolean),
    runra_obs._rollup_measures_sql()
TO runra_obs_reader;
