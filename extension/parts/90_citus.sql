-- ===========================================================================
-- Citus: one runra_obs over a coordinator and its workers.
--
-- Citus runs CREATE EXTENSION runra_obs on every node (it propagates the
-- extension), so this script runs on workers too.  There it must leave the
-- data to the coordinator: the workers get no day partitions of their own
-- (Citus creates the shards and their shells), no maintenance and no
-- background work (src/worker/worker_common.c idles every worker there).
--
-- runra_obs.distribute() then spreads the store over the workers:
-- sandbox_events by sandbox_id, and the per-sandbox rollups colocated with
-- it (rollup_1h_sandbox, the biggest: a row per sandbox, hour and kind of
-- event; rollup_sandbox and rollup_sandbox_agent, 62_sandbox_totals.sql),
-- so that a sandbox's events and its rollups live on the same shard.  The fleet-wide
-- rollups, rejected events and the configuration stay on the coordinator,
-- where every runra_obs worker runs: they are small, written by one
-- process, and read with the distributed tables by queries Citus plans as
-- joins of local and distributed tables.  The rollup consumer's fold groups
-- the new events on the shards (_fold_rollups_on_shards, at the end).
--
-- The API's SQL functions are inlined before Citus plans a query that
-- calls them (src/citus/inline.c), so Citus sees the distributed tables.
--
-- Ingest goes through the coordinator, which hands out every id from its
-- one sequence: the consumers' safe watermark (10_consume.sql) waits for
-- the coordinator's transactions, and Citus holds a coordinator's locks
-- until it has sent its workers their COMMIT PREPARED.  When one of those
-- fails (a worker lost at that moment), the events stay invisible on the
-- worker until Citus recovers the transaction, and the watermark waits for
-- that too (_citus_commits_in_doubt below).  A client that writes to a worker directly is not covered; the
-- workers' sequences are therefore closed, so such an insert fails rather
-- than store an id the consumers would never read.
-- ===========================================================================

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
-- own, called with PERFORM, and without a SET clause naming lock_timeout
-- (a SET LOCAL made in a function lasts to the end of the transaction,
-- unless the function's own SET clause names that setting).
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

-- The rollup consumer's fold on Citus: the shards do the work.  Each
-- statement below reads the new events on every shard and groups them
-- there, so the coordinator only sends them and merges the fleet rows
-- (when it grouped every event, its one process folded at most 50-115k
-- events/s: docs/citus.md).
--   1. the hourly rows of each sandbox, inserted into the colocated shard
--      of rollup_1h_sandbox (Citus pushes the whole INSERT ... SELECT down);
--   2. the fleet rows: every shard groups its events by 5 minutes, event
--      type, label and agent, the coordinator merges those partial rows
--      into rollup_5m and rollup_1h (which stay on the coordinator);
--   3. unless rebuilding, the per-sandbox totals (62_sandbox_totals.sql),
--      on the shards again: tool calls per agent, then each sandbox's
--      totals with its busiest agent read back from the agents' rows (the
--      one statement of one node uses the RETURNING of the first instead,
--      which Citus cannot push down).
-- The same events are read three or four times, on the workers, where
-- adding nodes adds cores; the rows are those of the one-node fold, by
-- the same definitions (_rollup_facts_sql, _rollup_measures_sql,
-- _sandbox_agent_calls, _sandbox_totals_of, _sandbox_totals_upsert_sql).
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
REVOKE ALL ON FUNCTION runra_obs._fold_rollups_on_shards(bigint, bigint, timestamptz, timestamptz, boolean) FROM PUBLIC;
