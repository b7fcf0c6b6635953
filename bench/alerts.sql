-- bench/alerts.sql — the alert benchmark's own objects (schema bench),
-- loaded by bench/alerts.sh into its private cluster; never part of the
-- extension.
--
-- A fleet: `sandboxes` slots, each running one sandbox after another, every
-- sandbox living 12 hours (the slots' lives are staggered, so at any time
-- every slot has a sandbox running and a few are being replaced).  All
-- slots send events at once, interleaved: each event's slot, type and
-- figures come from a hash of its number, its time is spread evenly over
-- the window asked for.  One slot in 100 has gone silent `silent_for`
-- before `quiet_from` (its events go to the next slot), so absence rules
-- have something to find.  (10M events over 7 days are 16 a second: a
-- sandbox of 5000 sends one every 5 minutes, and is seldom silent for the
-- 30 minutes of the sandbox absence rules by chance.)

CREATE SCHEMA bench;

CREATE FUNCTION bench.life_s() RETURNS double precision LANGUAGE sql IMMUTABLE AS 'SELECT 43200.0';

-- The event types other than sandbox.*, each repeated by its share per
-- thousand events: a draw of 0..999 indexes it.
CREATE FUNCTION bench.type_draw() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg(m.type ORDER BY m.ord, g)
    FROM (VALUES (1, 'exec.started', 110), (2, 'exec.completed', 100), (3, 'exec.failed', 4),
                 (4, 'exec.timed_out', 3), (5, 'tool.invoked', 90), (6, 'tool.completed', 80),
                 (7, 'tool.failed', 6), (8, 'file.created', 50), (9, 'file.read', 60),
                 (10, 'file.modified', 30), (11, 'file.deleted', 8), (12, 'network.egress', 60),
                 (13, 'resource.memory', 100), (14, 'resource.cpu', 100), (15, 'resource.disk', 50),
                 (16, 'cost.runtime', 100), (17, 'cost.storage', 30), (18, 'cost.total', 10),
                 (19, 'port.exposed', 5), (20, 'port.closed', 4)) AS m(ord, type, share),
         generate_series(1, m.share) AS g
$$;

-- The payload of an event of `type` whose figures are drawn from v.
CREATE FUNCTION bench.payload(type text, v bigint) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE split_part(type, '.', 1)
        WHEN 'exec' THEN jsonb_build_object(
            'command', 'cmd_' || v % 25, 'exitCode', CASE WHEN v % 29 = 0 THEN 1 ELSE 0 END,
            'durationMs', 5 + v % 20000, 'timeoutMs', 60000)
        WHEN 'tool' THEN jsonb_build_object(
            'toolName', 'tool_' || v % 12, 'agentId', 'agent_' || v % 40, 'durationMs', 20 + v % 3000)
        WHEN 'file' THEN jsonb_build_object('path', '/work/src/f' || v % 500, 'sizeBytes', v % 100000)
        WHEN 'network' THEN jsonb_build_object('host', 'api' || v % 20 || '.example.com', 'port', 443,
                                               'bytesSent', v % 50000)
        WHEN 'port' THEN jsonb_build_object('port', 3000 + v % 20)
        ELSE CASE type
            WHEN 'resource.memory' THEN jsonb_build_object('memoryUsedMb', 64 + v % 1000, 'memoryLimitMb', 1024)
            WHEN 'resource.disk' THEN jsonb_build_object('diskUsedMb', 100 + v % 10240, 'diskLimitMb', 10240)
            WHEN 'resource.cpu' THEN jsonb_build_object('cpuPercent', v % 100, 'cores', 2)
            WHEN 'cost.total' THEN jsonb_build_object('sandboxCost', (1 + v % 500) / 1000.0, 'period', 'hour')
            ELSE jsonb_build_object('cost', (1 + v % 100) / 100000.0, 'durationMs', 60000)
        END
    END
$$;

-- The sandbox that slot `slot` runs at time t.
CREATE FUNCTION bench.sandbox(slot bigint, slots integer, t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('sb_%s_%s', slot,
                  floor((extract(epoch FROM t) + slot * bench.life_s() / slots) / bench.life_s()))
$$;

-- n events of the running sandboxes (no lifecycle events) spread evenly
-- over [from_ts, to_ts); seed makes each call's draws its own.
CREATE FUNCTION bench.fleet_events(n bigint, from_ts timestamptz, to_ts timestamptz, slots integer,
                                   seed bigint, quiet_from timestamptz, silent_for interval)
RETURNS bigint LANGUAGE sql AS $$
    WITH ins AS (
        INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data)
        SELECT d.t, bench.sandbox(d.slot, slots, d.t), d.type, bench.payload(d.type, d.v)
        FROM (
            SELECT e.t, e.type, e.v,
                   CASE WHEN e.slot % 100 = 7 AND e.t >= quiet_from - silent_for THEN e.slot + 1 ELSE e.slot END AS slot
            FROM (
                SELECT from_ts + (to_ts - from_ts) * ((i + 0.5) / n) AS t,
                       abs(h % slots) AS slot,
                       (SELECT bench.type_draw())[1 + abs(h / slots % 1000)] AS type,
                       abs(h / slots / 1000) AS v
                FROM generate_series(0, n - 1) AS i,
                     LATERAL (SELECT hashint8extended(i, seed)) AS x(h)
            ) AS e
        ) AS d
        RETURNING 1
    )
    SELECT count(*) FROM ins
$$;

-- The lifecycle events of every sandbox in [from_ts, to_ts): created and
-- started as its life begins, paused and resumed at its middle, terminated
-- as it ends.
CREATE FUNCTION bench.fleet_lifecycle(from_ts timestamptz, to_ts timestamptz, slots integer)
RETURNS bigint LANGUAGE sql AS $$
    WITH ins AS (
        INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data)
        SELECT l.t, bench.sandbox(l.slot, slots, l.t), l.type,
               CASE l.type WHEN 'sandbox.created' THEN jsonb_build_object('image', 'image_' || l.slot % 6)
                           WHEN 'sandbox.started' THEN jsonb_build_object('startupDurationMs', 300 + l.slot % 2000)
                           WHEN 'sandbox.terminated' THEN jsonb_build_object('reason', 'completed',
                                                                             'totalRuntimeMs', bench.life_s() * 1000)
                           ELSE '{}'::jsonb END
        FROM (
            SELECT s.slot, to_timestamp(g * bench.life_s() - s.slot * bench.life_s() / slots + k.at) AS t, k.type
            FROM generate_series(0, slots - 1) AS s(slot),
                 generate_series(floor(extract(epoch FROM from_ts) / bench.life_s())::bigint,
                                 floor(extract(epoch FROM to_ts) / bench.life_s())::bigint + 1) AS g,
                 (VALUES ('sandbox.created', 0.1), ('sandbox.started', 1.5),
                         ('sandbox.paused', bench.life_s() / 2), ('sandbox.resumed', bench.life_s() / 2 + 300),
                         ('sandbox.terminated', bench.life_s() - 1)) AS k(type, at)
        ) AS l
        WHERE l.t >= from_ts AND l.t < to_ts
        RETURNING 1
    )
    SELECT count(*) FROM ins
$$;

-- The fleet still sending, at `rate` events a second from `from_ts` on,
-- until the session is ended: every second the events (and lifecycle
-- events) of the time since the last step, the first step catching up
-- with the time the load took.
CREATE PROCEDURE bench.keep_sending(rate double precision, slots integer, from_ts timestamptz,
                                    quiet_from timestamptz, silent_for interval)
LANGUAGE plpgsql AS $$
DECLARE
    prev timestamptz := from_ts;
    cur timestamptz;
    sent bigint := 0;
    due bigint;
BEGIN
    FOR k IN 1 .. 1000000 LOOP
        cur := clock_timestamp();
        due := floor(rate * extract(epoch FROM cur - from_ts));
        PERFORM bench.fleet_events(due - sent, prev, cur, slots, 1000000 + k, quiet_from, silent_for);
        PERFORM bench.fleet_lifecycle(prev, cur, slots);
        COMMIT;
        sent := due;
        prev := cur;
        PERFORM pg_sleep(greatest(0, 1 - extract(epoch FROM clock_timestamp() - cur)));
    END LOOP;
END
$$;

-- What the alert worker did: alert_rule_runs every second, until no rule
-- is due before slots_end any more (each slot before it was evaluated or
-- skipped), or at the latest at hard_stop.
CREATE TABLE bench.samples (at timestamptz, rule_id int, evaluations bigint, next_eval_at timestamptz,
                            last_eval_at timestamptz, last_duration_ms double precision, done_at timestamptz);

CREATE PROCEDURE bench.sample_runs(slots_end timestamptz, hard_stop timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        INSERT INTO bench.samples
        SELECT clock_timestamp(), u.rule_id, u.evaluations, u.next_eval_at, u.last_eval_at, u.last_duration_ms,
               pg_xact_commit_timestamp(u.xmin)
        FROM runra_obs.alert_rule_runs AS u;
        COMMIT;
        EXIT WHEN clock_timestamp() >= hard_stop
               OR NOT EXISTS (SELECT FROM runra_obs.alert_rule_runs AS u WHERE u.next_eval_at < slots_end);
        PERFORM pg_sleep(1);
    END LOOP;
END
$$;

-- Each evaluation the samples saw: a rule's counter moved since the sample
-- before (by one: a sample a second, a rule a minute), and it was due at
-- that sample's next_eval_at.  `at` is the time it evaluated the rule at
-- (the worker's clock when it started the round of up to 100 rules),
-- done_at when its transaction committed (track_commit_timestamp): its lag
-- is done_at - due, how late its result was in.
CREATE VIEW bench.evaluations AS
SELECT s.rule_id, s.prev_due AS due, s.last_eval_at AS at, s.done_at, s.last_duration_ms AS ms,
       s.evaluations - s.prev_evaluations AS n,
       extract(epoch FROM s.done_at - s.prev_due)::double precision AS lag_s
FROM (SELECT x.*, lag(x.next_eval_at) OVER w AS prev_due, lag(x.evaluations) OVER w AS prev_evaluations
      FROM bench.samples AS x
      WINDOW w AS (PARTITION BY x.rule_id ORDER BY x.at)) AS s
WHERE s.evaluations > s.prev_evaluations;

-- The rules: one variant after another, thresholds varied a little from
-- rule to rule.  Default windows (5 minutes; cost: 1 hour over 7 days),
-- and one long error rate window (1 hour), no contact points.
CREATE TABLE bench.variants (n int PRIMARY KEY, variant text, kind text, params jsonb);
INSERT INTO bench.variants VALUES
    (0, 'error_rate fleet', 'error_rate', '{"by": "fleet"}'),
    (1, 'error_rate sandbox', 'error_rate', '{"by": "sandbox"}'),
    (2, 'error_rate command', 'error_rate', '{"by": "command"}'),
    (3, 'error_rate fleet 1h', 'error_rate', '{"by": "fleet", "window": "1 hour"}'),
    (4, 'exec_timeouts sandbox', 'exec_timeouts', '{"by": "sandbox"}'),
    (5, 'resource memory', 'resource', '{"resource": "memory"}'),
    (6, 'resource disk', 'resource', '{"resource": "disk"}'),
    (7, 'cost_anomaly fleet', 'cost_anomaly', '{"by": "fleet"}'),
    (8, 'cost_anomaly sandbox', 'cost_anomaly', '{"by": "sandbox"}'),
    (9, 'match', 'match', '{"eventTypes": ["exec.failed", "*.timed_out"], "by": ["sandbox_id", "event_type"]}'),
    (10, 'absence fleet', 'absence', '{"scope": "fleet", "duration": "5 minutes"}'),
    (11, 'absence sandbox', 'absence', '{"scope": "sandbox", "duration": "30 minutes"}'),
    (12, 'query', 'query', jsonb_build_object('above', 0, 'sql',
        'SELECT sandbox_id, count(*) AS failures FROM runra_obs.sandbox_events '
        'WHERE event_type = ''exec.failed'' AND created_at >= now() - interval ''5 minutes'' GROUP BY sandbox_id'));

CREATE TABLE bench.rules (rule_id int PRIMARY KEY, variant text);

-- `rules` rules every minute, created as create_alert() does; none is due
-- until bench.start_rules() says when.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_alert_admin') THEN
        CREATE ROLE bench_alert_admin IN ROLE runra_obs_admin;
    END IF;
END
$$;

CREATE PROCEDURE bench.create_rules(rules integer)
LANGUAGE plpgsql AS $$
DECLARE
    v bench.variants;
    tweak jsonb;
BEGIN
    FOR k IN 0 .. rules - 1 LOOP
        SELECT * INTO v FROM bench.variants WHERE n = k % (SELECT count(*) FROM bench.variants);
        tweak := CASE v.kind
            WHEN 'error_rate' THEN jsonb_build_object('threshold', 0.05 + (k % 7) * 0.01)
            WHEN 'exec_timeouts' THEN jsonb_build_object('above', k % 3)
            WHEN 'resource' THEN jsonb_build_object('abovePercent', 90 + k % 9)
            WHEN 'cost_anomaly' THEN jsonb_build_object('tolerance', 0.2 + (k % 5) * 0.1)
            ELSE '{}'::jsonb END;
        -- a query rule is written by an admin: a superuser may not own one
        IF v.kind = 'query' THEN
            SET LOCAL ROLE bench_alert_admin;
        END IF;
        PERFORM runra_obs.create_alert(format('%s #%s', v.variant, k), v.kind, v.params || tweak,
                                       '{"every": "1 minute", "maxInstances": 100000}');
        RESET ROLE;
        INSERT INTO bench.rules SELECT r.id, v.variant FROM runra_obs.alert_rules AS r
        WHERE r.name = format('%s #%s', v.variant, k);
    END LOOP;
    UPDATE runra_obs.alert_rule_runs SET next_eval_at = now() + interval '1 year';
END
$$;

-- Every rule due from `at` on, all at once, as when they were created
-- together (spread: over the minute, one second of it after another).
CREATE PROCEDURE bench.start_rules(at timestamptz, spread boolean)
LANGUAGE sql AS $$
    UPDATE runra_obs.alert_rule_runs
    SET next_eval_at = at + CASE WHEN spread THEN (rule_id % 60) * interval '1 second' ELSE '0' END;
$$;

-- The baseline: `per_variant` rules of each variant evaluated by hand, one
-- after another, each in a transaction of its own as the worker does
-- (after a first round that is not counted: plans cached, alerts fired
-- once), with the server's jit setting (as the worker has it) or jit off.
-- Match rules first go back a minute of events in the log, so they have a
-- minute's worth to read, as at a worker's evaluation.
CREATE TABLE bench.baseline (rule_id int, variant text, jit boolean, round int, ms double precision,
                             summary text);

CREATE PROCEDURE bench.measure_baseline(per_variant integer, minute_of_events bigint, jit boolean)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    t0 timestamptz;
    summary text;
BEGIN
    PERFORM set_config('jit', CASE WHEN jit THEN current_setting('jit') ELSE 'off' END, false);
    FOR round IN 0 .. 1 LOOP
        UPDATE runra_obs.consumers AS c SET position = greatest(0, runra_obs._alert_log_head() - minute_of_events)
        WHERE c.name LIKE 'alert:%';
        COMMIT;
        FOR r IN SELECT b.rule_id, b.variant
                 FROM (SELECT x.*, row_number() OVER (PARTITION BY x.variant ORDER BY x.rule_id) AS k
                       FROM bench.rules AS x) AS b
                 WHERE b.k <= per_variant ORDER BY b.rule_id LOOP
            t0 := clock_timestamp();
            summary := runra_obs._alert_evaluate(r.rule_id, now(), runra_obs._alert_log_head());
            INSERT INTO bench.baseline VALUES (r.rule_id, r.variant, current_setting('jit')::boolean, round,
                                               extract(epoch FROM clock_timestamp() - t0) * 1000, summary);
            UPDATE runra_obs.alert_rule_runs SET next_eval_at = now() + interval '1 year' WHERE rule_id = r.rule_id;
            COMMIT;
        END LOOP;
    END LOOP;
END
$$;
