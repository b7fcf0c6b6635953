-- runra_obs 0.1.0 as released (git tag v0.1.0), kept so that a database can
-- be created at 0.1.0 and updated: this file never changes.  New installs
-- use the newest version's script, built from extension/parts/; databases
-- at 0.1.0 follow extension/runra_obs--0.1.0--*.sql (t/003_upgrade.pl
-- proves both paths end in the same catalog).
\echo Use "CREATE EXTENSION runra_obs" to load this file. \quit

-- ==== extension/parts/00_store.sql
-- ===========================================================================
-- The event store: roles, the partitioned events table, rejected events,
-- partition maintenance and the SQL ways in.
-- ===========================================================================

DO $$
BEGIN
    IF pg_catalog.current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'runra_obs needs a UTF8 database, not %',
            pg_catalog.current_setting('server_encoding')
            USING HINT = 'Events are JSON, which is Unicode: create the database with ENCODING ''UTF8''.';
    END IF;
END
$$;

-- Roles are cluster-wide: create them once, keep them across DROP EXTENSION.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'runra_obs_reader') THEN
        CREATE ROLE runra_obs_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'runra_obs_writer') THEN
        CREATE ROLE runra_obs_writer NOLOGIN;
    END IF;
END
$$;
COMMENT ON ROLE runra_obs_reader IS
    'Reads runra_obs events and its analysis API (what Grafana connects as); never secrets';
COMMENT ON ROLE runra_obs_writer IS
    'Sends events to runra_obs: runra_obs.ingest(), ingest_jsonl(), or INSERT into sandbox_events';

GRANT USAGE ON SCHEMA runra_obs TO runra_obs_reader, runra_obs_writer;

-- ---------------------------------------------------------------------------
-- sandbox_events: the one table that holds the truth.
--
-- Column names are the Runra SDK's own (its Postgres exporter inserts
-- sandbox_id, event_type, data, created_at), so its queries run unchanged.
-- The CHECK constraints state the same envelope rules the C validation
-- applies, so a direct INSERT cannot store what ingest() would refuse.
-- ---------------------------------------------------------------------------
-- The table is an append-only log in id order, read by consumers (rollups,
-- forwarding: 10_consume.sql).  Ids are handed out one at a time (CACHE 1):
-- a backend holding a cache of ids could store one below the watermark the
-- consumers have already read past.
CREATE SEQUENCE runra_obs.sandbox_events_id_seq AS bigint CACHE 1;

CREATE TABLE runra_obs.sandbox_events (
    id          bigint      NOT NULL DEFAULT nextval('runra_obs.sandbox_events_id_seq'),
    created_at  timestamptz NOT NULL,
    sandbox_id  text        NOT NULL,
    event_type  text        NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}',
    trace_id    text,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sandbox_events_sandbox_id_check
        CHECK (sandbox_id <> '' AND octet_length(sandbox_id) <= 256),
    CONSTRAINT sandbox_events_event_type_check
        CHECK (octet_length(event_type) <= 128
               AND event_type ~ '^[a-z0-9_-]+(\.[a-z0-9_-]+)+$'),
    CONSTRAINT sandbox_events_data_check
        CHECK (jsonb_typeof(data) = 'object'),
    CONSTRAINT sandbox_events_trace_id_check
        CHECK (trace_id ~ '^[0-9a-f]{32}$' AND trace_id <> '00000000000000000000000000000000')
) PARTITION BY RANGE (created_at);

ALTER SEQUENCE runra_obs.sandbox_events_id_seq OWNED BY runra_obs.sandbox_events.id;

-- Every API function asks for one event type in a time window.
CREATE INDEX sandbox_events_type_time_idx
    ON runra_obs.sandbox_events (event_type, created_at);
-- Per-sandbox views (summary, audit trail, dashboard drill-down).
CREATE INDEX sandbox_events_sandbox_time_idx
    ON runra_obs.sandbox_events (sandbox_id, created_at);
-- Consumers find new events, late ones (an old created_at) included, by id.
-- A btree, not BRIN: a BRIN range is summarized only after it fills and
-- autovacuum gets to it, and an unsummarized range always matches, so
-- reading the last second of events would read every page written since
-- (a minute of events under load); the btree reads exactly the new ones,
-- and shows the planner the real end of the ids.  Its inserts all go to
-- the right edge.
CREATE INDEX sandbox_events_id_idx ON runra_obs.sandbox_events (id);

COMMENT ON TABLE runra_obs.sandbox_events IS
    'Every Runra Sandbox observability event, partitioned by UTC day on created_at';
COMMENT ON COLUMN runra_obs.sandbox_events.id IS 'Unique per event, assigned at insert';
COMMENT ON COLUMN runra_obs.sandbox_events.created_at IS 'The event''s own timestamp (when it happened)';
COMMENT ON COLUMN runra_obs.sandbox_events.sandbox_id IS 'The sandbox that generated the event';
COMMENT ON COLUMN runra_obs.sandbox_events.event_type IS 'What happened: family.name, such as exec.completed';
COMMENT ON COLUMN runra_obs.sandbox_events.data IS 'Type-specific payload (a JSON object)';
COMMENT ON COLUMN runra_obs.sandbox_events.trace_id IS 'W3C trace id (32 lowercase hex digits), when the event had a valid one';
COMMENT ON COLUMN runra_obs.sandbox_events.ingested_at IS 'When runra_obs stored the event';

GRANT SELECT ON runra_obs.sandbox_events TO runra_obs_reader;
-- Writers insert the event's own columns; id and ingested_at are the
-- store's (an id set by hand could collide with the sequence later).
GRANT SELECT, INSERT (created_at, sandbox_id, event_type, data, trace_id)
    ON runra_obs.sandbox_events TO runra_obs_writer;
GRANT USAGE ON SEQUENCE runra_obs.sandbox_events_id_seq TO runra_obs_writer;

-- ---------------------------------------------------------------------------
-- rejected_events: what was sent and refused, and why.  Nothing sent is lost.
-- ---------------------------------------------------------------------------
CREATE TABLE runra_obs.rejected_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    source      text        NOT NULL,
    position    integer     NOT NULL,
    reason      text        NOT NULL,
    raw         text        NOT NULL
);
CREATE INDEX rejected_events_received_at_idx ON runra_obs.rejected_events (received_at);

COMMENT ON TABLE runra_obs.rejected_events IS
    'Events that failed validation, with the reason and the text that was sent';
COMMENT ON COLUMN runra_obs.rejected_events.source IS 'Way in: sql, jsonl, http (POST /v1/events), axiom (the Axiom-compatible routes), otlp (POST /v1/traces, /v1/logs), notify, or insert (the SDK''s Postgres exporter, through runra_obs_sdk.sandbox_events)';
COMMENT ON COLUMN runra_obs.rejected_events.position IS 'Index of the event in its batch (0-based; the line index for JSONL)';
COMMENT ON COLUMN runra_obs.rejected_events.reason IS 'What was wrong with it';
COMMENT ON COLUMN runra_obs.rejected_events.raw IS 'The event as it was sent (text JSONB cannot hold replaced by U+FFFD)';

GRANT SELECT ON runra_obs.rejected_events TO runra_obs_reader;

-- ---------------------------------------------------------------------------
-- Settings as SQL values.
-- ---------------------------------------------------------------------------
CREATE FUNCTION runra_obs.setting_interval(name text)
RETURNS interval
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT make_interval(secs => s.setting::double precision)
    FROM pg_settings AS s
    WHERE s.name = setting_interval.name AND s.unit = 's'
$$;
COMMENT ON FUNCTION runra_obs.setting_interval(text) IS
    'A runra_obs duration setting (such as runra_obs.retention) as an interval';

-- ---------------------------------------------------------------------------
-- Partitions: one per UTC day, from now() - retention to now() + premake.
-- ---------------------------------------------------------------------------
-- The bounds come from the catalog alone: no lock is taken on any partition,
-- so maintenance is never held up by a partition someone has locked.
CREATE FUNCTION runra_obs._partition_bounds(
    OUT partition regclass, OUT lower timestamptz, OUT upper timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass, m[1]::timestamptz, m[2]::timestamptz
    FROM pg_inherits AS i
    JOIN pg_class AS c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                    'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS m
    WHERE i.inhparent = 'runra_obs.sandbox_events'::regclass
$$;
REVOKE ALL ON FUNCTION runra_obs._partition_bounds() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs._partition_bounds() TO runra_obs_reader;

CREATE VIEW runra_obs.partitions AS
SELECT b.partition, b.lower, b.upper,
       pg_total_relation_size(b.partition) AS total_bytes
FROM runra_obs._partition_bounds() AS b;
COMMENT ON VIEW runra_obs.partitions IS
    'The day partitions of runra_obs.sandbox_events with their bounds and size';
GRANT SELECT ON runra_obs.partitions TO runra_obs_reader;

-- Creates one day partition without blocking ingest: a plain table is made
-- first, then attached, which takes only SHARE UPDATE EXCLUSIVE on the parent.
CREATE FUNCTION runra_obs._create_day_partition(day timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
AS $$
DECLARE
    name text := format('sandbox_events_%s', to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD'));
BEGIN
    EXECUTE format('CREATE TABLE runra_obs.%I (LIKE runra_obs.sandbox_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    EXECUTE format('ALTER TABLE runra_obs.sandbox_events ATTACH PARTITION runra_obs.%I FOR VALUES FROM (%L) TO (%L)',
                   name, day, day + interval '1 day');
    -- Partitions are data, not part of the extension: one made while the
    -- extension script runs must not become a member, or retention could
    -- never drop it.
    DELETE FROM pg_depend AS d
    USING pg_class AS c
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
      AND (c.oid = format('runra_obs.%I', name)::regclass
           OR c.oid IN (SELECT indexrelid FROM pg_index
                        WHERE indrelid = format('runra_obs.%I', name)::regclass));
    RETURN 'runra_obs.' || quote_ident(name);
END
$$;
REVOKE ALL ON FUNCTION runra_obs._create_day_partition(timestamptz) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Locks that only the extension's owner can take.  Advisory locks are open
-- to every role: one that held hashtext('runra_obs.run_maintenance') stopped
-- maintenance for as long as it liked.  A row of this table can only be
-- locked with UPDATE on it, which nobody is granted.
-- ---------------------------------------------------------------------------
CREATE TABLE runra_obs._locks (
    name text PRIMARY KEY
);
INSERT INTO runra_obs._locks VALUES ('run_maintenance'), ('rollups');
REVOKE ALL ON runra_obs._locks FROM PUBLIC;
COMMENT ON TABLE runra_obs._locks IS
    'Internal: one row per lock that serialises maintenance work; lockable only by the owner';

-- Waits for the lock `name` until the end of the transaction.
CREATE FUNCTION runra_obs._lock(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM FROM runra_obs._locks AS l WHERE l.name = _lock.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'runra_obs has no lock named "%"', name USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
COMMENT ON FUNCTION runra_obs._lock(text) IS
    'Internal: takes one of runra_obs._locks until the end of the transaction';
REVOKE ALL ON FUNCTION runra_obs._lock(text) FROM PUBLIC;

CREATE FUNCTION runra_obs.run_maintenance(lock_timeout_ms integer DEFAULT 1000)
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
    -- one maintenance at a time; a second caller waits for the first
    PERFORM runra_obs._lock('run_maintenance');
    PERFORM set_config('lock_timeout', lock_timeout_ms::text, true);

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
COMMENT ON FUNCTION runra_obs.run_maintenance(integer) IS
    'Creates the missing day partitions, drops those past runra_obs.retention, expires old rejected events, Idempotency-Keys and alert history, compacts and expires rollups; reports each action';
REVOKE ALL ON FUNCTION runra_obs.run_maintenance(integer) FROM PUBLIC;


-- ---------------------------------------------------------------------------
-- The SQL ways in.  Same validation as HTTP and NOTIFY (see the C source).
-- ---------------------------------------------------------------------------
CREATE FUNCTION runra_obs.ingest(events jsonb,
                                 OUT ingested integer, OUT failed integer, OUT failures jsonb)
RETURNS record
LANGUAGE c VOLATILE STRICT
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'runra_ingest_jsonb';
COMMENT ON FUNCTION runra_obs.ingest(jsonb) IS
    'Validates and stores one event or an array of events; rejected ones go to runra_obs.rejected_events';

CREATE FUNCTION runra_obs.ingest_jsonl(body text,
                                       OUT ingested integer, OUT failed integer, OUT failures jsonb)
RETURNS record
LANGUAGE c VOLATILE STRICT
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'runra_ingest_jsonl';
COMMENT ON FUNCTION runra_obs.ingest_jsonl(text) IS
    'Validates and stores events given one JSON object per line (the Runra JSONL format)';

REVOKE ALL ON FUNCTION runra_obs.ingest(jsonb), runra_obs.ingest_jsonl(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs.ingest(jsonb), runra_obs.ingest_jsonl(text) TO runra_obs_writer;

-- ---------------------------------------------------------------------------
-- Workers.
-- ---------------------------------------------------------------------------
CREATE FUNCTION runra_obs.worker_status(
    OUT pid integer, OUT role text, OUT state text, OUT started_at timestamptz,
    OUT events_ingested bigint, OUT events_rejected bigint,
    OUT last_error text, OUT last_error_at timestamptz,
    OUT last_maintenance_at timestamptz, OUT last_maintenance text)
RETURNS SETOF record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'runra_worker_status';

CREATE VIEW runra_obs.worker_status AS SELECT * FROM runra_obs.worker_status();
COMMENT ON FUNCTION runra_obs.worker_status() IS 'The runra_obs background workers now running';
COMMENT ON VIEW runra_obs.worker_status IS
    'Each runra_obs background worker: pid, role, state, counters, last error, last maintenance';
REVOKE ALL ON FUNCTION runra_obs.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs.worker_status() TO runra_obs_reader;
COMMENT ON COLUMN runra_obs.worker_status.pid IS 'Process id of the worker (pg_stat_activity.pid)';
COMMENT ON COLUMN runra_obs.worker_status.role IS 'What the worker does: maintenance, notify (the NOTIFY listener), http, rollups, forward, alerts';
COMMENT ON COLUMN runra_obs.worker_status.state IS 'What it is doing now, such as listening on "runra_events" or waiting to reconnect';
COMMENT ON COLUMN runra_obs.worker_status.started_at IS 'When this process started';
COMMENT ON COLUMN runra_obs.worker_status.events_ingested IS 'Events this process stored (counted after commit)';
COMMENT ON COLUMN runra_obs.worker_status.events_rejected IS 'Events this process kept in rejected_events (counted after commit)';
COMMENT ON COLUMN runra_obs.worker_status.last_error IS 'The latest error it met (a lost connection, a failed write or maintenance); NULL if none';
COMMENT ON COLUMN runra_obs.worker_status.last_error_at IS 'When last_error happened';
COMMENT ON COLUMN runra_obs.worker_status.last_maintenance_at IS 'When the maintenance worker last ran runra_obs.run_maintenance()';
COMMENT ON COLUMN runra_obs.worker_status.last_maintenance IS 'What that run did (created, dropped, skipped partitions; expired rejected events) or why it failed';
GRANT SELECT ON runra_obs.worker_status TO runra_obs_reader;

-- ==== extension/parts/10_consume.sql
-- ===========================================================================
-- Consumers of the event log.
--
-- runra_obs.sandbox_events is an append-only log in id order: an insert
-- writes the event and nothing else (no trigger, no outbox copy).
-- Everything derived from events is built by a consumer: the rollups
-- (60_rollups.sql) and each forward destination (50_forward.sql).  A
-- consumer has a durable position in runra_obs.consumers, reads the events
-- with ids in (position, safe watermark], and moves its position in the
-- same transaction as what it derived (rollups) or once its destination
-- accepted them (forwarding), so after a crash it reads them again, and
-- none is counted twice or skipped.
--
-- The safe watermark (src/consume/watermark.c) is an id below which no
-- event can still become visible: the sequence's last value, once every
-- transaction that was writing the table when it was read has ended.  Ids
-- come from the sequence one at a time (CACHE 1) for that reason.
-- ===========================================================================

CREATE FUNCTION runra_obs.safe_watermark()
RETURNS bigint
LANGUAGE c VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'runra_safe_watermark';
COMMENT ON FUNCTION runra_obs.safe_watermark() IS
    'An id at or below which every event that will ever be visible is visible now; waits for the transactions writing events at the call to end';
REVOKE ALL ON FUNCTION runra_obs.safe_watermark() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs.safe_watermark() TO runra_obs_reader, runra_obs_writer;

CREATE TABLE runra_obs.consumers (
    name        text        PRIMARY KEY,
    position    bigint      NOT NULL DEFAULT 0,
    moved_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT consumers_position_check CHECK (position >= 0)
);
COMMENT ON TABLE runra_obs.consumers IS
    'The durable position of each consumer of the event log (rollups, forward destinations)';
COMMENT ON COLUMN runra_obs.consumers.name IS
    'rollups, or destination:<id> for a forward destination';
COMMENT ON COLUMN runra_obs.consumers.position IS
    'Every event with an id at or below it has been consumed';
COMMENT ON COLUMN runra_obs.consumers.moved_at IS 'When position last moved';
GRANT SELECT ON runra_obs.consumers TO runra_obs_reader;

-- The published watermark (kept in shared memory by the consumer workers)
-- and how far a position is behind it, without waiting for anything.
CREATE FUNCTION runra_obs._watermark_lag(consumed_to bigint,
    OUT watermark bigint, OUT ids_behind bigint, OUT seconds_behind double precision)
RETURNS record
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'runra_watermark_lag';
COMMENT ON FUNCTION runra_obs._watermark_lag(bigint) IS
    'Internal: the watermark the consumer workers last published, and how many ids and seconds the position consumed_to is behind it';
REVOKE ALL ON FUNCTION runra_obs._watermark_lag(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs._watermark_lag(bigint) TO runra_obs_reader;

CREATE VIEW runra_obs.consumer_status AS
SELECT c.name, c.position, l.watermark, l.ids_behind, l.seconds_behind, c.moved_at
FROM runra_obs.consumers AS c,
     LATERAL runra_obs._watermark_lag(c.position) AS l;
COMMENT ON VIEW runra_obs.consumer_status IS
    'Each consumer of the event log with its lag behind the safe watermark';
COMMENT ON COLUMN runra_obs.consumer_status.watermark IS
    'The safe watermark the workers last published (0 before they run, and in a database they do not serve: runra_obs.database)';
COMMENT ON COLUMN runra_obs.consumer_status.ids_behind IS
    'Event ids between the position and the watermark: the events not yet consumed, plus the ids of rolled-back inserts';
COMMENT ON COLUMN runra_obs.consumer_status.seconds_behind IS
    'How long events after the position have been safe to read and not consumed; 0 when caught up';
GRANT SELECT ON runra_obs.consumer_status TO runra_obs_reader;

-- ==== extension/parts/15_event_facts.sql
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

-- ==== extension/parts/20_analytics.sql
-- ===========================================================================
-- The analyst's SQL API: costs, executions, error rates, agent activity,
-- sandbox summaries and resource alerts, read from runra_obs.sandbox_events.
--
-- How these functions are built, and why:
--
-- * Every function takes a half-open window [from_time, to_time), by
--   default the last 24 hours.  NULL for either end means "unbounded".
--
-- * Every function is LANGUAGE sql, STABLE, SECURITY INVOKER, not STRICT,
--   has no SET clause and a BEGIN ATOMIC body: that is what lets the
--   planner inline it into the calling query (see inline_set_returning_
--   function in PostgreSQL's clauses.c).  Once inlined, the window bounds
--   are plain expressions on created_at, so partition pruning sees them:
--   at plan time for constants, at executor start-up for now()-relative
--   expressions and for the parameters of a generic prepared plan.  A
--   one-hour window inside a UTC day touches one partition
--   (sql/20_pruning.sql shows it with EXPLAIN).  BEGIN ATOMIC bodies are
--   parsed when the function is created, so a caller's search_path cannot
--   change what they mean, without the SET search_path that would stop
--   the inlining.
--
-- * Event data is whatever the sandbox sent.  What an event means (a
--   number, failed, cost, duration) is defined once, in 15_event_facts.sql,
--   and read here as by the rollups and the dashboards.  A field that should
--   be a number but is not one (durationMs: "fast") never makes a query
--   fail: runra_obs.json_numeric() turns it into NULL and the value is
--   skipped, as the reference in docs/analytics.md says for each figure.
--
-- * The reader runs these functions with its own SELECT on sandbox_events
--   (SECURITY INVOKER); the views are security_invoker for the same reason,
--   so the API never reads more than the caller may.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Small helpers, inlined into the queries that use them.
-- ---------------------------------------------------------------------------

-- The start of the time bucket an instant falls in.  Buckets are aligned on
-- UTC midnight of 2000-01-01, so a '1 day' bucket is a UTC day whatever the
-- session's TimeZone, and a '5 minutes' bucket starts at :00, :05, ...
CREATE FUNCTION runra_obs._bucket(bucket interval, at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT date_bin(bucket, at, timestamptz '2000-01-01 00:00:00+00');
END;
COMMENT ON FUNCTION runra_obs._bucket(interval, timestamptz) IS
    'Start of the bucket of the given width holding an instant; buckets are aligned on UTC midnight';

-- ---------------------------------------------------------------------------
-- Executions.
-- ---------------------------------------------------------------------------

-- One finished execution, as _exec_events and _exec_outcomes return it.
CREATE TYPE runra_obs._execution AS (
    event_id    bigint,       -- id of the exec.completed, exec.failed or exec.timed_out
    "time"      timestamptz,
    sandbox_id  text,
    event_type  text,
    command     text,
    duration_ms numeric,      -- durationMs, NULL when it is not a number
    exit_code   numeric,      -- exitCode, NULL when it is not a number
    failed      boolean,
    error       text          -- what went wrong, NULL for a success
);
COMMENT ON TYPE runra_obs._execution IS
    'One finished execution: its event, command, duration, exit code, whether it failed and why';

-- Every finished execution in the window: one row per exec.completed,
-- exec.failed and exec.timed_out (exec.started is not counted, or every
-- command would count twice), with the command the event names.
CREATE FUNCTION runra_obs._exec_events(from_time timestamptz, to_time timestamptz)
RETURNS SETOF runra_obs._execution
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT e.id,
           e.created_at,
           e.sandbox_id,
           e.event_type,
           e.data ->> 'command',
           runra_obs.event_duration_ms(e.event_type, e.data),
           runra_obs.json_numeric(e.data -> 'exitCode'),
           runra_obs.event_failed(e.event_type, e.data),
           CASE e.event_type
               WHEN 'exec.failed' THEN coalesce(e.data ->> 'error', 'exec.failed')
               WHEN 'exec.timed_out' THEN 'timed out'
                   || coalesce(' after ' || (e.data ->> 'timeoutMs') || ' ms', '')
               ELSE CASE WHEN runra_obs.event_failed(e.event_type, e.data)
                         THEN coalesce('exit code ' || (e.data ->> 'exitCode'), 'no exit code')
                    END
           END
    FROM runra_obs.sandbox_events AS e
    WHERE e.event_type IN ('exec.completed', 'exec.failed', 'exec.timed_out')
      AND e.created_at >= coalesce(from_time, '-infinity')
      AND e.created_at < coalesce(to_time, 'infinity');
END;
COMMENT ON FUNCTION runra_obs._exec_events(timestamptz, timestamptz) IS
    'Every finished execution (exec.completed, exec.failed, exec.timed_out) in [from_time, to_time) with the command it names, its duration, exit code, and whether it failed';

-- The same executions, each with a command: exec.failed and exec.timed_out
-- name none in the event model, so an event without one gets the command of
-- the latest exec.started of the same sandbox in the window before it.
-- Done as one sort of the window's exec events per sandbox (a running count
-- of exec.started numbers the runs, the run's first row is its
-- exec.started), not as a lookup per event: a correlated subquery is costed
-- as if it ran for every row, which switches on JIT compilation at hundreds
-- of milliseconds per query.
CREATE FUNCTION runra_obs._exec_outcomes(from_time timestamptz, to_time timestamptz)
RETURNS SETOF runra_obs._execution
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT named.event_id, named."time", named.sandbox_id, named.event_type, named.command,
           named.duration_ms, named.exit_code, named.failed, named.error
    FROM (
        SELECT runs.event_id, runs."time", runs.sandbox_id, runs.event_type, runs.started_command,
               coalesce(runs.command,
                        nullif(first_value(runs.started_command)
                                   OVER (PARTITION BY runs.sandbox_id, runs.run
                                         ORDER BY runs."time", runs.event_id), '')) AS command,
               runs.duration_ms, runs.exit_code, runs.failed, runs.error
        FROM (
            SELECT x.*,
                   count(x.started_command) OVER (PARTITION BY x.sandbox_id
                                                  ORDER BY x."time", x.event_id) AS run
            FROM (
                SELECT t.event_id, t."time", t.sandbox_id, t.event_type, t.command,
                       NULL::text AS started_command,
                       t.duration_ms, t.exit_code, t.failed, t.error
                FROM runra_obs._exec_events(from_time, to_time) AS t
                UNION ALL
                SELECT s.id, s.created_at, s.sandbox_id, s.event_type, NULL,
                       coalesce(s.data ->> 'command', ''),
                       NULL, NULL, NULL, NULL
                FROM runra_obs.sandbox_events AS s
                WHERE s.event_type = 'exec.started'
                  AND s.created_at >= coalesce(from_time, '-infinity')
                  AND s.created_at < coalesce(to_time, 'infinity')
            ) AS x
        ) AS runs
    ) AS named
    -- exec.started rows only named the runs; they are not executions
    WHERE named.started_command IS NULL;
END;
COMMENT ON FUNCTION runra_obs._exec_outcomes(timestamptz, timestamptz) IS
    'The executions of _exec_events, with the command of the latest exec.started of the sandbox in the window for those that name none';

CREATE FUNCTION runra_obs.slow_execs(threshold_ms numeric DEFAULT 5000,
                                     from_time timestamptz DEFAULT now() - interval '24 hours',
                                     to_time timestamptz DEFAULT now(),
                                     max_rows integer DEFAULT 100)
RETURNS TABLE ("time" timestamptz, sandbox_id text, command text,
               duration_ms numeric, exit_code numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT o."time", o.sandbox_id, o.command, o.duration_ms, o.exit_code
    FROM runra_obs._exec_events(from_time, to_time) AS o
    WHERE o.event_type = 'exec.completed'
      AND o.duration_ms > threshold_ms
    ORDER BY o."time" DESC, o.event_id DESC
    LIMIT max_rows;
END;
COMMENT ON FUNCTION runra_obs.slow_execs(numeric, timestamptz, timestamptz, integer) IS
    'exec.completed events in [from_time, to_time) whose durationMs is above threshold_ms, newest first, at most max_rows';

CREATE FUNCTION runra_obs.exec_latency(from_time timestamptz DEFAULT now() - interval '24 hours',
                                       to_time timestamptz DEFAULT now())
RETURNS TABLE (command text, executions bigint, failures bigint,
               p50_ms numeric, p95_ms numeric, p99_ms numeric, max_ms numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT o.command,
           count(*),
           count(*) FILTER (WHERE o.failed),
           percentile_disc(0.50) WITHIN GROUP (ORDER BY o.duration_ms),
           percentile_disc(0.95) WITHIN GROUP (ORDER BY o.duration_ms),
           percentile_disc(0.99) WITHIN GROUP (ORDER BY o.duration_ms),
           max(o.duration_ms)
    FROM runra_obs._exec_outcomes(from_time, to_time) AS o
    GROUP BY o.command
    ORDER BY count(*) DESC, o.command;
END;
COMMENT ON FUNCTION runra_obs.exec_latency(timestamptz, timestamptz) IS
    'Per command in [from_time, to_time): executions, failures, and nearest-rank p50/p95/p99 and max of the duration (durationMs; timeoutMs for a timeout)';

-- error_rate() is defined in 70_api_rollups.sql: it reads rollups for the
-- whole buckets of long windows.

CREATE FUNCTION runra_obs.top_failing_commands(from_time timestamptz DEFAULT now() - interval '24 hours',
                                               to_time timestamptz DEFAULT now(),
                                               max_rows integer DEFAULT 10)
RETURNS TABLE (command text, failures bigint, executions bigint, failure_rate double precision,
               exit_failures bigint, errors bigint, timeouts bigint,
               last_failure_at timestamptz, last_error text)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT o.command,
           count(*) FILTER (WHERE o.failed),
           count(*),
           (count(*) FILTER (WHERE o.failed))::double precision / count(*),
           count(*) FILTER (WHERE o.failed AND o.event_type = 'exec.completed'),
           count(*) FILTER (WHERE o.event_type = 'exec.failed'),
           count(*) FILTER (WHERE o.event_type = 'exec.timed_out'),
           max(o."time") FILTER (WHERE o.failed),
           (array_agg(o.error ORDER BY o."time" DESC, o.event_id DESC) FILTER (WHERE o.failed))[1]
    FROM runra_obs._exec_outcomes(from_time, to_time) AS o
    GROUP BY o.command
    HAVING count(*) FILTER (WHERE o.failed) > 0
    ORDER BY 2 DESC, 3 DESC, o.command
    LIMIT max_rows;
END;
COMMENT ON FUNCTION runra_obs.top_failing_commands(timestamptz, timestamptz, integer) IS
    'Commands with the most failed executions in [from_time, to_time), with the kind of failures and the latest error, at most max_rows';

-- ---------------------------------------------------------------------------
-- Costs.
--
-- total_cost is cost.runtime + cost.storage, always.  cost.total is reported
-- beside it (reported_total_cost) and never added in: it is the sandbox's own
-- aggregate of the same spending over a period it chose, so adding it would
-- count every cent twice, and using it in place of the itemised events for
-- some sandboxes would make the total depend on which events happen to fall
-- in the window, so buckets would no longer add up to the whole.  The
-- itemised events are disjoint slices (each covers its own durationMs), so
-- their sums add up across sandboxes, buckets and windows.
-- ---------------------------------------------------------------------------

-- Every cost event in the window, its cost in the column of its kind (NULL
-- in the others, and where the value is not a number).
CREATE FUNCTION runra_obs._cost_events(from_time timestamptz, to_time timestamptz)
RETURNS TABLE ("time" timestamptz, sandbox_id text, runtime_cost numeric, storage_cost numeric,
               reported_total_cost numeric, runtime_ms numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT e.created_at,
           e.sandbox_id,
           CASE WHEN e.event_type = 'cost.runtime' THEN runra_obs.event_cost(e.event_type, e.data) END,
           CASE WHEN e.event_type = 'cost.storage' THEN runra_obs.event_cost(e.event_type, e.data) END,
           CASE WHEN e.event_type = 'cost.total' THEN runra_obs.event_cost(e.event_type, e.data) END,
           CASE WHEN e.event_type = 'cost.runtime' THEN runra_obs.event_duration_ms(e.event_type, e.data) END
    FROM runra_obs.sandbox_events AS e
    WHERE e.event_type IN ('cost.runtime', 'cost.storage', 'cost.total')
      AND e.created_at >= coalesce(from_time, '-infinity')
      AND e.created_at < coalesce(to_time, 'infinity');
END;
COMMENT ON FUNCTION runra_obs._cost_events(timestamptz, timestamptz) IS
    'Every cost.runtime, cost.storage and cost.total event in [from_time, to_time), its cost in the column of its kind';

-- cost_per_sandbox() and cost_over_time() are defined in 70_api_rollups.sql:
-- they read rollups for the whole hours of long windows.

-- ---------------------------------------------------------------------------
-- Resources.
-- ---------------------------------------------------------------------------

CREATE FUNCTION runra_obs.resource_alerts(threshold_pct numeric DEFAULT 90,
                                          from_time timestamptz DEFAULT now() - interval '24 hours',
                                          to_time timestamptz DEFAULT now())
RETURNS TABLE ("time" timestamptz, sandbox_id text, resource text,
               used_mb numeric, limit_mb numeric, used_pct numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT sample."time",
           sample.sandbox_id,
           sample.resource,
           sample.used_mb,
           sample.limit_mb,
           round(sample.used_mb * 100 / sample.limit_mb, 2)
    FROM (
        SELECT e.id,
               e.created_at AS "time",
               e.sandbox_id,
               CASE e.event_type WHEN 'resource.memory' THEN 'memory' ELSE 'disk' END AS resource,
               runra_obs.json_numeric(CASE e.event_type
                                          WHEN 'resource.memory' THEN e.data -> 'memoryUsedMb'
                                          ELSE e.data -> 'diskUsedMb'
                                      END) AS used_mb,
               runra_obs.json_numeric(CASE e.event_type
                                          WHEN 'resource.memory' THEN e.data -> 'memoryLimitMb'
                                          ELSE e.data -> 'diskLimitMb'
                                      END) AS limit_mb
        FROM runra_obs.sandbox_events AS e
        WHERE e.event_type IN ('resource.memory', 'resource.disk')
          AND e.created_at >= coalesce(from_time, '-infinity')
          AND e.created_at < coalesce(to_time, 'infinity')
        OFFSET 0   -- evaluate each json_numeric() once per sample, not once per use
    ) AS sample
    WHERE sample.limit_mb > 0
      AND sample.used_mb * 100 > threshold_pct * sample.limit_mb
    ORDER BY sample."time" DESC, sample.id DESC;
END;
COMMENT ON FUNCTION runra_obs.resource_alerts(numeric, timestamptz, timestamptz) IS
    'resource.memory and resource.disk samples in [from_time, to_time) using more than threshold_pct percent of their limit, newest first';

-- ---------------------------------------------------------------------------
-- Agent activity.
--
-- Matching rule: the outcome of a tool.invoked is the first tool.completed
-- or tool.failed of the same sandbox and the same toolName after it, unless
-- another tool.invoked of that tool in that sandbox comes in between (then
-- the invocation has no outcome, and the outcome belongs to the later one).
-- "After" orders events by (created_at, id): events with the same timestamp
-- keep the order they arrived in.  So a sandbox calling the same tool again
-- and again gets each call paired with its own outcome, one lost outcome
-- leaves one call without an outcome instead of shifting all the following
-- pairs, and no outcome is ever paired twice.  Two overlapping calls of the
-- same tool in one sandbox cannot be told apart without a call id in the
-- events: the earlier one shows no outcome.
-- ---------------------------------------------------------------------------

CREATE VIEW runra_obs.agent_activity
WITH (security_invoker = true) AS
SELECT i.id AS event_id,
       i.created_at AS invoked_at,
       i.sandbox_id,
       i.data ->> 'agentId' AS agent_id,
       i.data ->> 'toolName' AS tool_name,
       i.data -> 'toolArgs' AS tool_args,
       CASE o.event_type
           WHEN 'tool.completed' THEN 'completed'
           WHEN 'tool.failed' THEN 'failed'
       END AS outcome,
       o.id AS outcome_event_id,
       o.created_at AS finished_at,
       coalesce(runra_obs.event_duration_ms(o.event_type, o.data),
                trim_scale(extract(epoch FROM o.created_at - i.created_at) * 1000)) AS duration_ms,
       o.data -> 'result' AS result,
       o.data ->> 'error' AS error,
       i.trace_id
FROM runra_obs.sandbox_events AS i
LEFT JOIN LATERAL (
    SELECT first_outcome.*
    FROM (
        SELECT f.id, f.created_at, f.event_type, f.data
        FROM runra_obs.sandbox_events AS f
        WHERE f.sandbox_id = i.sandbox_id
          AND f.event_type IN ('tool.completed', 'tool.failed')
          AND f.data -> 'toolName' IS NOT DISTINCT FROM i.data -> 'toolName'
          AND f.created_at >= i.created_at
          AND (f.created_at, f.id) > (i.created_at, i.id)
        ORDER BY f.created_at, f.id
        LIMIT 1
    ) AS first_outcome
    WHERE NOT EXISTS (
        SELECT
        FROM runra_obs.sandbox_events AS n
        WHERE n.sandbox_id = i.sandbox_id
          AND n.event_type = 'tool.invoked'
          AND n.data -> 'toolName' IS NOT DISTINCT FROM i.data -> 'toolName'
          AND n.created_at >= i.created_at
          AND n.created_at <= first_outcome.created_at
          AND (n.created_at, n.id) > (i.created_at, i.id)
          AND (n.created_at, n.id) < (first_outcome.created_at, first_outcome.id))
) AS o ON true
WHERE i.event_type = 'tool.invoked';

COMMENT ON VIEW runra_obs.agent_activity IS
    'Every tool.invoked with its agent, tool and arguments, and the outcome and duration from the matching tool.completed or tool.failed (see docs/analytics.md for the matching rule)';
COMMENT ON COLUMN runra_obs.agent_activity.event_id IS 'id of the tool.invoked event';
COMMENT ON COLUMN runra_obs.agent_activity.sandbox_id IS 'The sandbox where the tool ran';
COMMENT ON COLUMN runra_obs.agent_activity.invoked_at IS 'When the tool was invoked (filter on this column: it prunes partitions)';
COMMENT ON COLUMN runra_obs.agent_activity.agent_id IS 'data.agentId of the invocation';
COMMENT ON COLUMN runra_obs.agent_activity.tool_name IS 'data.toolName of the invocation';
COMMENT ON COLUMN runra_obs.agent_activity.tool_args IS 'data.toolArgs of the invocation, as sent';
COMMENT ON COLUMN runra_obs.agent_activity.outcome IS 'completed or failed; NULL while no matching outcome has been seen';
COMMENT ON COLUMN runra_obs.agent_activity.outcome_event_id IS 'id of the matching tool.completed or tool.failed event';
COMMENT ON COLUMN runra_obs.agent_activity.finished_at IS 'When the matching tool.completed or tool.failed happened';
COMMENT ON COLUMN runra_obs.agent_activity.duration_ms IS 'durationMs of the outcome when it is a number, else the time between the two events';
COMMENT ON COLUMN runra_obs.agent_activity.result IS 'data.result of a tool.completed';
COMMENT ON COLUMN runra_obs.agent_activity.error IS 'data.error of a tool.failed';
COMMENT ON COLUMN runra_obs.agent_activity.trace_id IS 'Trace id of the invocation';

-- ---------------------------------------------------------------------------
-- Sandbox summary: one row per sandbox that sent any event.
-- ---------------------------------------------------------------------------

CREATE VIEW runra_obs.sandbox_summary
WITH (security_invoker = true) AS
SELECT s.sandbox_id,
       CASE
           WHEN s.terminated_at IS NOT NULL THEN 'terminated'
           WHEN s.last_lifecycle = 'sandbox.paused' THEN 'paused'
           WHEN s.last_lifecycle IN ('sandbox.started', 'sandbox.resumed') THEN 'running'
           WHEN s.last_lifecycle = 'sandbox.created' THEN 'created'
           ELSE 'unknown'
       END AS state,
       s.created_at,
       s.image,
       s.started_at,
       s.startup_ms,
       s.pauses,
       s.resumes,
       s.paused_ms,
       s.terminated_at,
       s.termination_reason,
       s.runtime_ms,
       s.execs,
       s.exec_failures,
       s.runtime_cost,
       s.storage_cost,
       s.runtime_cost + s.storage_cost AS total_cost,
       s.reported_total_cost,
       s.first_event_at,
       s.last_event_at,
       s.last_event_type
FROM (
    -- one pass over the sandbox's events; the ordered aggregates pick the
    -- first (or latest) of a kind, ties broken by arrival order (id)
    SELECT e.sandbox_id,
           min(e.created_at) FILTER (WHERE e.event_type = 'sandbox.created') AS created_at,
           (array_agg(e.data ->> 'image' ORDER BY e.created_at, e.id)
                FILTER (WHERE e.event_type = 'sandbox.created'))[1] AS image,
           min(e.created_at) FILTER (WHERE e.event_type = 'sandbox.started') AS started_at,
           (array_agg(runra_obs.event_duration_ms(e.event_type, e.data) ORDER BY e.created_at, e.id)
                FILTER (WHERE e.event_type = 'sandbox.started'))[1] AS startup_ms,
           count(*) FILTER (WHERE e.event_type = 'sandbox.paused') AS pauses,
           count(*) FILTER (WHERE e.event_type = 'sandbox.resumed') AS resumes,
           coalesce(sum(runra_obs.event_duration_ms(e.event_type, e.data))
                        FILTER (WHERE e.event_type = 'sandbox.resumed'), 0) AS paused_ms,
           min(e.created_at) FILTER (WHERE e.event_type = 'sandbox.terminated') AS terminated_at,
           (array_agg(e.data ->> 'reason' ORDER BY e.created_at, e.id)
                FILTER (WHERE e.event_type = 'sandbox.terminated'))[1] AS termination_reason,
           (array_agg(runra_obs.event_duration_ms(e.event_type, e.data) ORDER BY e.created_at, e.id)
                FILTER (WHERE e.event_type = 'sandbox.terminated'))[1] AS runtime_ms,
           count(*) FILTER (WHERE e.event_type IN ('exec.completed', 'exec.failed', 'exec.timed_out')) AS execs,
           count(*) FILTER (WHERE e.event_type IN ('exec.completed', 'exec.failed', 'exec.timed_out')
                              AND runra_obs.event_failed(e.event_type, e.data)) AS exec_failures,
           -- the same sums as cost_per_sandbox(), over all time
           coalesce(sum(runra_obs.event_cost(e.event_type, e.data))
                        FILTER (WHERE e.event_type = 'cost.runtime'), 0) AS runtime_cost,
           coalesce(sum(runra_obs.event_cost(e.event_type, e.data))
                        FILTER (WHERE e.event_type = 'cost.storage'), 0) AS storage_cost,
           sum(runra_obs.event_cost(e.event_type, e.data))
               FILTER (WHERE e.event_type = 'cost.total') AS reported_total_cost,
           (array_agg(e.event_type ORDER BY e.created_at DESC, e.id DESC)
                FILTER (WHERE e.event_type IN ('sandbox.created', 'sandbox.started', 'sandbox.paused',
                                               'sandbox.resumed', 'sandbox.terminated')))[1] AS last_lifecycle,
           min(e.created_at) AS first_event_at,
           max(e.created_at) AS last_event_at,
           (array_agg(e.event_type ORDER BY e.created_at DESC, e.id DESC))[1] AS last_event_type
    FROM runra_obs.sandbox_events AS e
    GROUP BY e.sandbox_id
) AS s;

COMMENT ON VIEW runra_obs.sandbox_summary IS
    'One row per sandbox: lifecycle times, pauses, termination, runtime, executions and failures, cost, last event and current state';
COMMENT ON COLUMN runra_obs.sandbox_summary.sandbox_id IS 'The sandbox (one row for every sandbox that sent any event)';
COMMENT ON COLUMN runra_obs.sandbox_summary.state IS
    'terminated once a sandbox.terminated was seen, else from the latest lifecycle event: created, running, paused; unknown without lifecycle events';
COMMENT ON COLUMN runra_obs.sandbox_summary.created_at IS 'First sandbox.created';
COMMENT ON COLUMN runra_obs.sandbox_summary.image IS 'data.image of the first sandbox.created';
COMMENT ON COLUMN runra_obs.sandbox_summary.started_at IS 'First sandbox.started';
COMMENT ON COLUMN runra_obs.sandbox_summary.startup_ms IS 'startupDurationMs of the first sandbox.started';
COMMENT ON COLUMN runra_obs.sandbox_summary.pauses IS 'Number of sandbox.paused events';
COMMENT ON COLUMN runra_obs.sandbox_summary.resumes IS 'Number of sandbox.resumed events';
COMMENT ON COLUMN runra_obs.sandbox_summary.paused_ms IS 'Sum of pausedDurationMs of the sandbox.resumed events';
COMMENT ON COLUMN runra_obs.sandbox_summary.terminated_at IS 'First sandbox.terminated';
COMMENT ON COLUMN runra_obs.sandbox_summary.termination_reason IS 'data.reason of the first sandbox.terminated';
COMMENT ON COLUMN runra_obs.sandbox_summary.runtime_ms IS 'totalRuntimeMs of the first sandbox.terminated (NULL while the sandbox lives)';
COMMENT ON COLUMN runra_obs.sandbox_summary.execs IS 'Finished executions: exec.completed, exec.failed and exec.timed_out events';
COMMENT ON COLUMN runra_obs.sandbox_summary.exec_failures IS 'Executions that failed (exec.failed, exec.timed_out, exitCode other than 0)';
COMMENT ON COLUMN runra_obs.sandbox_summary.runtime_cost IS 'Sum of cost.runtime cost';
COMMENT ON COLUMN runra_obs.sandbox_summary.storage_cost IS 'Sum of cost.storage cost';
COMMENT ON COLUMN runra_obs.sandbox_summary.total_cost IS 'runtime_cost + storage_cost (cost.total is never added in)';
COMMENT ON COLUMN runra_obs.sandbox_summary.reported_total_cost IS 'Sum of sandboxCost of the cost.total events, for reconciliation';
COMMENT ON COLUMN runra_obs.sandbox_summary.first_event_at IS 'Earliest event of the sandbox';
COMMENT ON COLUMN runra_obs.sandbox_summary.last_event_at IS 'Latest event of the sandbox';
COMMENT ON COLUMN runra_obs.sandbox_summary.last_event_type IS 'Type of the latest event (the last one stored when several share its timestamp)';

-- ---------------------------------------------------------------------------
-- Access: the reader gets the API.  The functions run with the caller's
-- rights, so the reader's SELECT on sandbox_events is what lets them read.
-- The helpers are granted too: a function called inside an inlined function
-- or a view is checked against the caller.
-- ---------------------------------------------------------------------------
DO $$
DECLARE
    api regprocedure;
BEGIN
    FOREACH api IN ARRAY ARRAY[
        'runra_obs._bucket(interval, timestamptz)',
        'runra_obs._exec_events(timestamptz, timestamptz)',
        'runra_obs._exec_outcomes(timestamptz, timestamptz)',
        'runra_obs._cost_events(timestamptz, timestamptz)',
        'runra_obs.slow_execs(numeric, timestamptz, timestamptz, integer)',
        'runra_obs.exec_latency(timestamptz, timestamptz)',
        'runra_obs.top_failing_commands(timestamptz, timestamptz, integer)',
        'runra_obs.resource_alerts(numeric, timestamptz, timestamptz)']::regprocedure[]
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', api);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO runra_obs_reader', api);
    END LOOP;
END
$$;
GRANT SELECT ON runra_obs.agent_activity, runra_obs.sandbox_summary TO runra_obs_reader;

-- ==== extension/parts/30_http.sql
-- ===========================================================================
-- HTTP ingest: bearer tokens and idempotency keys.
--
-- The HTTP workers (src/ingest/) accept POST /v1/events from clients holding
-- a token made by runra_obs.create_ingest_token().  Only a SHA-256 hash of
-- each token is stored, in a table nobody but its owner can read.
-- ===========================================================================

CREATE TABLE runra_obs.ingest_tokens (
    name        text        PRIMARY KEY,
    token_hash  bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ingest_tokens_name_check
        CHECK (name <> '' AND octet_length(name) <= 128),
    CONSTRAINT ingest_tokens_hash_check
        CHECK (octet_length(token_hash) = 32)
);
COMMENT ON TABLE runra_obs.ingest_tokens IS
    'Bearer tokens of the HTTP ingest API: a name and the SHA-256 of the token (the token itself is never stored); owner only';
COMMENT ON COLUMN runra_obs.ingest_tokens.name IS 'Who the token is for; also scopes its Idempotency-Keys';
COMMENT ON COLUMN runra_obs.ingest_tokens.token_hash IS 'sha256 of the token text';
REVOKE ALL ON runra_obs.ingest_tokens FROM PUBLIC;

CREATE FUNCTION runra_obs.create_ingest_token(name text)
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- two version 4 UUIDs: 244 random bits from the server's strong random source
    token text := 'rro_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
BEGIN
    INSERT INTO runra_obs.ingest_tokens (name, token_hash)
    VALUES (create_ingest_token.name, sha256(convert_to(token, 'UTF8')));
    RETURN token;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'ingest token "%" already exists', create_ingest_token.name
        USING ERRCODE = 'duplicate_object',
              HINT = 'Revoke it first with runra_obs.revoke_ingest_token(), or choose another name.';
END
$$;
COMMENT ON FUNCTION runra_obs.create_ingest_token(text) IS
    'Creates a bearer token for POST /v1/events and returns it; this is the only time it can be read';

CREATE FUNCTION runra_obs.revoke_ingest_token(name text)
RETURNS boolean
LANGUAGE sql VOLATILE STRICT
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM runra_obs.ingest_tokens AS t
        WHERE t.name = revoke_ingest_token.name
        RETURNING 1
    )
    SELECT count(*) > 0 FROM gone
$$;
COMMENT ON FUNCTION runra_obs.revoke_ingest_token(text) IS
    'Revokes a bearer token (requests using it get 401 from their next batch on); false if there was none by that name';

REVOKE ALL ON FUNCTION runra_obs.create_ingest_token(text),
                       runra_obs.revoke_ingest_token(text) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Idempotency keys: a request re-sent with the same Idempotency-Key is
-- answered with the first answer and stored once.  The row is written in the
-- same transaction as the events, so it exists exactly when they do.
-- ---------------------------------------------------------------------------
CREATE TABLE runra_obs.idempotency_keys (
    client       text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       integer     NOT NULL,
    response     text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON runra_obs.idempotency_keys (created_at);
COMMENT ON TABLE runra_obs.idempotency_keys IS
    'Idempotency-Key headers seen by the HTTP ingest API within runra_obs.idempotency_window, with the answer given';
COMMENT ON COLUMN runra_obs.idempotency_keys.client IS 'Name of the token the request used (empty when unauthenticated)';
COMMENT ON COLUMN runra_obs.idempotency_keys.key IS 'The Idempotency-Key header';
COMMENT ON COLUMN runra_obs.idempotency_keys.request_hash IS 'sha256 of the request''s media type and decoded body';
COMMENT ON COLUMN runra_obs.idempotency_keys.status IS 'HTTP status of the first answer';
COMMENT ON COLUMN runra_obs.idempotency_keys.response IS 'Body of the first answer (JSON)';
REVOKE ALL ON runra_obs.idempotency_keys FROM PUBLIC;

CREATE FUNCTION runra_obs._expire_idempotency_keys()
RETURNS bigint
LANGUAGE sql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM runra_obs.idempotency_keys
        WHERE created_at < now() - runra_obs.setting_interval('runra_obs.idempotency_window')
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
COMMENT ON FUNCTION runra_obs._expire_idempotency_keys() IS
    'Deletes Idempotency-Keys older than runra_obs.idempotency_window; returns how many (called by run_maintenance)';
REVOKE ALL ON FUNCTION runra_obs._expire_idempotency_keys() FROM PUBLIC;

-- ==== extension/parts/35_sdk_insert.sql
-- ===========================================================================
-- The SDK's Postgres exporter, with nothing but a connection string.
--
-- The exporter runs INSERT INTO sandbox_events (...) VALUES (...), (...) in
-- batches, with an unqualified table name.  A login made by create_login()
-- has runra_obs_sdk first on its search_path, where sandbox_events is a view
-- over the event table: each row goes through the one validation (C,
-- sdk_insert.c), good rows are written together with one COPY when the
-- statement ends, bad rows go to rejected_events with their reasons.  One
-- bad event no longer fails its 99 neighbours, and the event table itself
-- keeps no trigger (the COPY path HTTP uses is unchanged).
-- ===========================================================================

CREATE SCHEMA runra_obs_sdk;
COMMENT ON SCHEMA runra_obs_sdk IS
    'Where the Runra SDK''s Postgres exporter writes: sandbox_events here validates each inserted row';
GRANT USAGE ON SCHEMA runra_obs_sdk TO runra_obs_writer;

-- The same columns and types as the table, so the seed's queries (which
-- filter on created_at and read data->>'...') also run through it; reading
-- is checked against the caller's own rights on the table.
CREATE VIEW runra_obs_sdk.sandbox_events
WITH (security_invoker = true) AS
SELECT id, created_at, sandbox_id, event_type, data, trace_id, ingested_at
FROM runra_obs.sandbox_events;
COMMENT ON VIEW runra_obs_sdk.sandbox_events IS
    'runra_obs.sandbox_events for the SDK''s Postgres exporter: a multi-row INSERT keeps its good rows and rejects the bad ones into runra_obs.rejected_events (source insert)';

-- Run as the extension's owner, like ingest(): the writer may add events
-- and rejected events through it, nothing else.
CREATE FUNCTION runra_obs_sdk._insert_row()
RETURNS trigger
LANGUAGE c
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'runra_sdk_insert_row';
COMMENT ON FUNCTION runra_obs_sdk._insert_row() IS
    'INSTEAD OF INSERT trigger of runra_obs_sdk.sandbox_events: validates one row and queues it for the statement''s write';

CREATE FUNCTION runra_obs_sdk._insert_statement()
RETURNS trigger
LANGUAGE c
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'runra_sdk_insert_statement';
COMMENT ON FUNCTION runra_obs_sdk._insert_statement() IS
    'AFTER INSERT statement trigger of runra_obs_sdk.sandbox_events: writes the rows the statement queued, with one COPY';

REVOKE ALL ON FUNCTION runra_obs_sdk._insert_row(), runra_obs_sdk._insert_statement() FROM PUBLIC;

CREATE TRIGGER insert_row
    INSTEAD OF INSERT ON runra_obs_sdk.sandbox_events
    FOR EACH ROW EXECUTE FUNCTION runra_obs_sdk._insert_row();
CREATE TRIGGER insert_statement
    AFTER INSERT ON runra_obs_sdk.sandbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION runra_obs_sdk._insert_statement();

-- As on the table: writers give the event's own columns; id and
-- ingested_at are the store's.
GRANT SELECT, INSERT (created_at, sandbox_id, event_type, data, trace_id)
    ON runra_obs_sdk.sandbox_events TO runra_obs_writer;

-- ---------------------------------------------------------------------------
-- create_login: a login role ready for the exporter (writer) or for
-- Grafana and analysts (reader), and the connection string to give it.
-- It runs with the caller's rights: only a role that may create roles can
-- use it, and it grants nothing the caller could not grant by hand.
-- ---------------------------------------------------------------------------
CREATE FUNCTION runra_obs.create_login(name text, access text DEFAULT 'writer',
                                       OUT login text, OUT password text,
                                       OUT database_url text)
RETURNS record
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    listen_first text := trim(split_part(current_setting('listen_addresses'), ',', 1));
BEGIN
    IF name !~ '^[A-Za-z_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'login name "%" is not a plain name', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use letters, digits, _, . and - (at most 63, starting with a letter or _), so the name needs no quoting in a connection URL.';
    END IF;
    IF access NOT IN ('writer', 'reader') THEN
        RAISE EXCEPTION 'access must be writer or reader, not "%"', access
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'writer: the SDK''s Postgres exporter, ingest(); reader: Grafana and the analysis API.';
    END IF;
    IF EXISTS (SELECT FROM pg_roles AS r WHERE r.rolname = name) THEN
        RAISE EXCEPTION 'role "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Choose another name, or give the existing role a password and settings by hand (README: "The SDK''s Postgres exporter").';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles AS r
                   WHERE r.rolname = current_user AND (r.rolsuper OR r.rolcreaterole)) THEN
        RAISE EXCEPTION 'permission denied to create login "%"', name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'create_login runs with your own rights: it needs a superuser or a role with CREATEROLE.';
    END IF;
    -- two version 4 UUIDs: 244 random bits, hex, safe in a URL
    password := replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    BEGIN
        EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE %I',
                       name, password, 'runra_obs_' || access);
    EXCEPTION WHEN OTHERS THEN
        -- raised again from here, so the statement (and the password in
        -- it) is not the error's context in the server log
        RAISE EXCEPTION '%', SQLERRM USING ERRCODE = SQLSTATE;
    END;
    IF access = 'writer' THEN
        -- sandbox_events resolves to the validating view; times the
        -- exporter sends without a zone are read as UTC, the store's zone
        EXECUTE format('ALTER ROLE %I SET search_path = runra_obs_sdk, runra_obs', name);
        EXECUTE format('ALTER ROLE %I SET timezone = %L', name, 'UTC');
    ELSE
        EXECUTE format('ALTER ROLE %I SET search_path = runra_obs', name);
    END IF;
    -- compiling the analysis queries costs seconds and saves nothing here
    EXECUTE format('ALTER ROLE %I SET jit = off', name);
    login := name;
    database_url := format('postgresql://%s:%s@%s:%s/%s', name, password,
                           -- the address this session came in on; over a
                           -- Unix socket, the first address the server listens on
                           coalesce(host(inet_server_addr()),
                                    CASE WHEN listen_first IN ('', '*', '0.0.0.0', '::') THEN 'localhost'
                                         ELSE listen_first END),
                           current_setting('port'),
                           (SELECT string_agg(CASE WHEN c ~ '^[A-Za-z0-9._~-]$' THEN c
                                                   ELSE upper(regexp_replace(encode(convert_to(c, 'UTF8'), 'hex'),
                                                                             '(..)', '%\1', 'g'))
                                              END, '' ORDER BY i)
                            FROM regexp_split_to_table(current_database(), '') WITH ORDINALITY AS t(c, i)));
END
$$;
COMMENT ON FUNCTION runra_obs.create_login(text, text) IS
    'Creates a login role (writer: the SDK''s Postgres exporter; reader: Grafana) with its search_path set, and returns its generated password and a DATABASE_URL; shown once';

-- ==== extension/parts/50_forward.sql
-- ===========================================================================
-- Forwarding: destinations, each a consumer of the event log, the events
-- to send again, dead letters and what the forward worker reports.
--
-- A destination is a consumer (10_consume.sql): its cursor is the row
-- destination:<id> of runra_obs.consumers.  The forward worker reads the
-- events after the cursor and at or below the safe watermark, in id order,
-- keeps those its event_types select, sends them in batches (several
-- requests in flight), and moves the cursor only over batches the
-- destination accepted, dead-lettered or, for a SQL handler, handled.
-- Nothing is written when an event is inserted: ingest costs the same
-- whatever is forwarded.
--
-- A new destination starts at "now" (the safe watermark when it was added)
-- or, given startAt, replays the events stored then whose created_at is at
-- or after startAt, and then everything that arrives later (late events
-- with an older created_at included: they are new to the log).
-- ===========================================================================

CREATE TABLE runra_obs.destinations (
    id                int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text        NOT NULL UNIQUE,
    provider          text        NOT NULL,
    enabled           boolean     NOT NULL DEFAULT true,
    event_types       text[]      NOT NULL DEFAULT '{}',
    like_patterns     text[]      NOT NULL DEFAULT '{}',
    batch_size        integer     NOT NULL DEFAULT 1000,
    flush_interval_ms integer     NOT NULL DEFAULT 1000,
    max_retry_ms      bigint      NOT NULL DEFAULT 86400000,
    timeout_ms        integer     NOT NULL DEFAULT 30000,
    settings          jsonb       NOT NULL DEFAULT '{}',
    secrets           jsonb       NOT NULL DEFAULT '{}',
    handler           regprocedure,
    handler_role      regrole,
    start_at          timestamptz,
    replay_to         bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT destinations_name_check
        CHECK (name ~ '^[[:graph:]][[:print:]]{0,199}$'),
    CONSTRAINT destinations_provider_check
        CHECK (provider IN ('axiom', 'otel', 'jsonl', 'function')),
    CONSTRAINT destinations_batch_size_check CHECK (batch_size BETWEEN 1 AND 10000),
    CONSTRAINT destinations_flush_interval_check CHECK (flush_interval_ms BETWEEN 0 AND 3600000),
    CONSTRAINT destinations_max_retry_check CHECK (max_retry_ms >= 0),
    CONSTRAINT destinations_timeout_check CHECK (timeout_ms BETWEEN 100 AND 600000),
    CONSTRAINT destinations_handler_check CHECK ((provider = 'function') = (handler IS NOT NULL)),
    CONSTRAINT destinations_replay_check CHECK ((start_at IS NULL) = (replay_to IS NULL))
);
COMMENT ON TABLE runra_obs.destinations IS
    'Where selected events are forwarded (secrets included: readable by the extension owner only)';
COMMENT ON COLUMN runra_obs.destinations.event_types IS
    'Globs selecting event types, such as sandbox.* (empty: every event)';
COMMENT ON COLUMN runra_obs.destinations.like_patterns IS
    'event_types as LIKE patterns (what the forward worker reads with)';
COMMENT ON COLUMN runra_obs.destinations.batch_size IS
    'A batch is sent once this many events wait (or flush_interval_ms passed); a destination that is behind sends up to 10000 per request';
COMMENT ON COLUMN runra_obs.destinations.settings IS
    'Provider options without secrets: dataset, url, edge, edgeUrl, orgId, endpoint, signal, resourceAttributes, filePath, maxFileSizeMb, maxFiles';
COMMENT ON COLUMN runra_obs.destinations.secrets IS
    'Provider secrets: the Axiom token, the OTLP headers';
COMMENT ON COLUMN runra_obs.destinations.handler IS
    'For provider function: the function called with each event row';
COMMENT ON COLUMN runra_obs.destinations.handler_role IS
    'For provider function: the role that registered the handler (it runs as the function''s owner)';
COMMENT ON COLUMN runra_obs.destinations.start_at IS
    'startAt: the destination replays the events stored when it was added whose created_at is at or after it (NULL: it started at "now")';
COMMENT ON COLUMN runra_obs.destinations.replay_to IS
    'With start_at: the safe watermark when the destination was added; events with ids up to it are sent only if created at or after start_at';

-- What runra_obs_reader may see of the destinations: everything but secrets.
CREATE VIEW runra_obs.destination_list AS
SELECT name, provider, enabled, event_types, batch_size, flush_interval_ms,
       max_retry_ms, timeout_ms, settings, handler::text AS handler, start_at, created_at
FROM runra_obs.destinations;
COMMENT ON VIEW runra_obs.destination_list IS
    'The forwarding destinations without their secrets (token, headers)';
GRANT SELECT ON runra_obs.destination_list TO runra_obs_reader;

-- Events behind a destination's cursor to send again: requeued dead
-- letters, and events a SQL handler failed on (the cursor moved past them
-- so the rest of the log is not held up).
CREATE TABLE runra_obs.redeliveries (
    destination_id int         NOT NULL,
    event_id       bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    sandbox_id     text        NOT NULL,
    queued_at      timestamptz NOT NULL DEFAULT now(),
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    PRIMARY KEY (destination_id, event_id)
);
COMMENT ON TABLE runra_obs.redeliveries IS
    'Events behind a destination''s cursor to send again (requeued dead letters, events a SQL handler failed on)';
COMMENT ON COLUMN runra_obs.redeliveries.attempts IS 'Failed delivery attempts so far';

CREATE TABLE runra_obs.dead_letters (
    destination_id int         NOT NULL,
    event_id       bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    sandbox_id     text        NOT NULL,
    queued_at      timestamptz NOT NULL,
    attempts       integer     NOT NULL,
    dead_at        timestamptz NOT NULL DEFAULT now(),
    error          text        NOT NULL,
    PRIMARY KEY (destination_id, event_id)
);
COMMENT ON TABLE runra_obs.dead_letters IS
    'Events a destination refused for good, or failed for longer than its max_retry_ms; see requeue_dead_letters()';
COMMENT ON COLUMN runra_obs.dead_letters.queued_at IS
    'When the first delivery attempt of the event''s batch was made';

CREATE TABLE runra_obs.forward_counters (
    destination_id int         PRIMARY KEY,
    sent           bigint      NOT NULL DEFAULT 0,
    failed         bigint      NOT NULL DEFAULT 0,
    last_success   timestamptz,
    last_error     text,
    last_error_at  timestamptz
);
COMMENT ON TABLE runra_obs.forward_counters IS
    'Delivery counters per destination, updated by the forward worker with each outcome';

-- Wakes the forward worker when the calling transaction commits (C), so a
-- change of the destinations or a requeue is seen at once.
CREATE FUNCTION runra_obs._forward_wake()
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'runra_forward_wake';
COMMENT ON FUNCTION runra_obs._forward_wake() IS
    'Sets the forward worker''s latch when the calling transaction commits';

-- A seed glob (sandbox.*, *.failed, *) as a LIKE pattern.
CREATE FUNCTION runra_obs._glob_to_like(glob text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF glob !~ '^[a-z0-9_.*-]+$' THEN
        RAISE EXCEPTION 'invalid event type pattern "%"', glob
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A pattern has lowercase letters, digits, "_", "-", "." and "*" (any characters).',
                  HINT = 'Examples: sandbox.*, exec.completed, *.failed.';
    END IF;
    RETURN replace(replace(glob, '_', '\_'), '*', '%');
END
$$;

-- config's startAt as a time (NULL when not given), or a clear error.
CREATE FUNCTION runra_obs._start_time(provider text, config jsonb)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (config ->> 'startAt')::timestamptz;
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
    RAISE EXCEPTION 'option "startAt" of % destination must be a time, such as 2026-06-15T00:00:00Z', provider
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = format('It is %s.', config -> 'startAt');
END
$$;

-- ---------------------------------------------------------------------------
-- Configuration.
-- ---------------------------------------------------------------------------

-- Raises a clear error unless config[key] is a JSON value of the wanted kind.
CREATE FUNCTION runra_obs._check_option(provider text, config jsonb, key text,
                                        kind text, required boolean DEFAULT false,
                                        low numeric DEFAULT 0,
                                        high numeric DEFAULT 9223372036854775807)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v jsonb := config -> key;
    ok boolean;
BEGIN
    IF v IS NULL OR v = 'null' THEN
        IF required THEN
            RAISE EXCEPTION '% destination needs option "%"', provider, key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN;
    END IF;
    ok := CASE kind
        WHEN 'text' THEN jsonb_typeof(v) = 'string' AND v #>> '{}' <> ''
        WHEN 'integer' THEN jsonb_typeof(v) = 'number' AND (v::numeric) = trunc(v::numeric)
                            AND v::numeric BETWEEN low AND high
        WHEN 'positive' THEN jsonb_typeof(v) = 'number' AND v::numeric > 0
        WHEN 'string map' THEN jsonb_typeof(v) = 'object'
             AND NOT EXISTS (SELECT FROM jsonb_each(v) AS e
                             WHERE jsonb_typeof(e.value) <> 'string'
                                OR e.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$'
                                OR e.value #>> '{}' ~ '[\r\n]')
        WHEN 'attribute map' THEN jsonb_typeof(v) = 'object'
             AND NOT EXISTS (SELECT FROM jsonb_each(v) AS e
                             WHERE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean'))
    END;
    IF NOT ok THEN
        RAISE EXCEPTION 'option "%" of % destination must be %', key, provider,
            CASE kind WHEN 'text' THEN 'a non-empty string'
                      WHEN 'integer' THEN format('a whole number from %s to %s', low, high)
                      WHEN 'positive' THEN 'a number above 0'
                      WHEN 'string map' THEN 'an object of header names and one-line string values'
                      ELSE 'an object whose values are strings, numbers or booleans' END
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', v);
    END IF;
END
$$;

-- Validates a destination's full config (seed option names) and returns it.
CREATE FUNCTION runra_obs._check_config(provider text, config jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    common  text[] := '{batchSize,flushIntervalMs,maxRetryMs,timeoutMs,eventTypes,startAt}';
    allowed text[];
    key     text;
BEGIN
    IF config IS NULL OR jsonb_typeof(config) <> 'object' THEN
        RAISE EXCEPTION 'config must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    allowed := CASE provider
        WHEN 'axiom'    THEN '{dataset,token,url,edge,edgeUrl,orgId}'::text[]
        WHEN 'otel'     THEN '{endpoint,headers,resourceAttributes,signal}'::text[]
        WHEN 'jsonl'    THEN '{filePath,maxFileSizeMb,maxFiles}'::text[]
        WHEN 'function' THEN '{handler}'::text[]
    END || common;
    IF provider IS NULL OR provider NOT IN ('axiom', 'otel', 'jsonl', 'function') THEN
        RAISE EXCEPTION 'unknown provider "%"', provider
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A provider is axiom, otel, jsonl or function.';
    END IF;
    FOR key IN SELECT jsonb_object_keys(config) LOOP
        IF key <> ALL (allowed) THEN
            RAISE EXCEPTION 'unknown option "%" for % destination', key, provider
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Options of %s: %s.', provider, array_to_string(allowed, ', '));
        END IF;
    END LOOP;
    PERFORM runra_obs._check_option(provider, config, 'batchSize', 'integer', false, 1, 10000),
            runra_obs._check_option(provider, config, 'flushIntervalMs', 'integer', false, 0, 3600000),
            runra_obs._check_option(provider, config, 'maxRetryMs', 'integer'),
            runra_obs._check_option(provider, config, 'timeoutMs', 'integer', false, 100, 600000);
    PERFORM runra_obs._check_option(provider, config, 'startAt', 'text'),
            runra_obs._start_time(provider, config);
    IF config ? 'eventTypes' AND jsonb_typeof(config -> 'eventTypes') <> 'array' THEN
        RAISE EXCEPTION 'option "eventTypes" of % destination must be an array of patterns', provider
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CASE provider
    WHEN 'axiom' THEN
        PERFORM runra_obs._check_option(provider, config, 'dataset', 'text', true),
                runra_obs._check_option(provider, config, 'token', 'text', true),
                runra_obs._check_option(provider, config, 'url', 'text'),
                runra_obs._check_option(provider, config, 'edge', 'text'),
                runra_obs._check_option(provider, config, 'edgeUrl', 'text'),
                runra_obs._check_option(provider, config, 'orgId', 'text');
        PERFORM runra_obs._check_axiom(config);
    WHEN 'otel' THEN
        PERFORM runra_obs._check_option(provider, config, 'endpoint', 'text', true),
                runra_obs._check_option(provider, config, 'headers', 'string map'),
                runra_obs._check_option(provider, config, 'resourceAttributes', 'attribute map'),
                runra_obs._check_option(provider, config, 'signal', 'text');
        PERFORM runra_obs._check_otel(config);
    WHEN 'jsonl' THEN
        PERFORM runra_obs._check_option(provider, config, 'filePath', 'text', true),
                runra_obs._check_option(provider, config, 'maxFileSizeMb', 'positive'),
                runra_obs._check_option(provider, config, 'maxFiles', 'integer', false, 1, 1000);
    WHEN 'function' THEN
        PERFORM runra_obs._check_option(provider, config, 'handler', 'text', true);
    END CASE;
    RETURN config;
END
$$;

-- Raises a clear error unless config[key], when given, is an http:// or
-- https:// URL with a host and no user name or password: destination_list
-- shows the URLs to readers, so credentials belong in token or headers.
CREATE FUNCTION runra_obs._check_url(provider text, config jsonb, key text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    url text := config ->> key;
BEGIN
    IF url !~ '^https?://[^/?#[:space:][:cntrl:]]+[^[:space:][:cntrl:]]*$' THEN
        RAISE EXCEPTION 'option "%" of % destination must be an http:// or https:// URL', key, provider
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', config -> key);
    END IF;
    IF url ~ '^https?://[^/?#]*@' THEN
        RAISE EXCEPTION 'option "%" of % destination must not hold a user name or password', key, provider
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Readers see the URL in runra_obs.destination_list.',
                  HINT = CASE provider WHEN 'axiom' THEN 'Give the credentials as "token".'
                                       ELSE 'Give the credentials in "headers".' END;
    END IF;
END
$$;

-- The Axiom options beyond their types: a dataset name and header values
-- that go into the request as they are, and the places to send to.
CREATE FUNCTION runra_obs._check_axiom(config jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key text;
BEGIN
    IF config ->> 'dataset' !~ '^[A-Za-z0-9._-]+$' THEN
        RAISE EXCEPTION 'option "dataset" of axiom destination must be a dataset name, not "%"',
            config ->> 'dataset'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A dataset name has letters, digits, ".", "_" and "-"; it goes into the ingest URL.';
    END IF;
    FOREACH key IN ARRAY '{token,orgId}'::text[] LOOP
        IF config ->> key ~ '[[:cntrl:]]' THEN
            RAISE EXCEPTION 'option "%" of axiom destination must not hold control characters', key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'It is sent as it is in a request header, where a line break (often left over from a file) ends the header early.';
        END IF;
    END LOOP;
    PERFORM runra_obs._check_url('axiom', config, 'url'),
            runra_obs._check_url('axiom', config, 'edgeUrl');
    -- as in @axiomhq/js: edge is a domain, https:// is put before it
    IF config ->> 'edge' !~ '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$' THEN
        RAISE EXCEPTION 'option "edge" of axiom destination must be a domain, such as eu-central-1.aws.edge.axiom.co'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', config -> 'edge'),
                  HINT = 'A full URL (http:// or https://) goes in "edgeUrl".';
    END IF;
END
$$;

-- The OTLP options beyond their types: the signal, an endpoint that does
-- not name the other signal's path, resource attribute names.
CREATE FUNCTION runra_obs._check_otel(config jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    signal text := coalesce(config ->> 'signal', 'traces');
    path   text := substring(rtrim(config ->> 'endpoint', '/') FROM '/v1/(traces|logs)$');
BEGIN
    IF signal NOT IN ('traces', 'logs') THEN
        RAISE EXCEPTION 'option "signal" of otel destination must be "traces" or "logs"'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', config -> 'signal');
    END IF;
    PERFORM runra_obs._check_url('otel', config, 'endpoint');
    IF path <> signal THEN
        RAISE EXCEPTION 'option "endpoint" of otel destination ends in /v1/%, but "signal" is %', path, signal
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Give the base URL (without /v1/%s), or the URL ending in /v1/%s.', path, signal);
    END IF;
    IF EXISTS (SELECT FROM jsonb_object_keys(coalesce(config -> 'resourceAttributes', '{}')) AS k
               WHERE k = '') THEN
        RAISE EXCEPTION 'option "resourceAttributes" of otel destination must not have an empty name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'OTLP attribute keys are non-empty.';
    END IF;
    IF jsonb_typeof(config #> '{resourceAttributes,service.name}') <> 'string'
       OR config #>> '{resourceAttributes,service.name}' = '' THEN
        RAISE EXCEPTION 'resource attribute "service.name" of otel destination must be a non-empty string'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', config #> '{resourceAttributes,service.name}'),
                  HINT = 'Leave it out for the default, runra-sandbox.';
    END IF;
END
$$;

-- url with its own path when it has one (trailing slashes trimmed), else
-- with `path` (how @axiomhq/js builds ingest URLs).
CREATE FUNCTION runra_obs._url_or_path(url text, path text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m[1] || CASE WHEN m[2] ~ '^/*$' THEN path ELSE rtrim(m[2], '/') END || m[3]
    FROM regexp_match(url, '^(https?://[^/?#]+)([^?#]*)(.*)$') AS m
$$;

-- Where a destination's requests go, from its settings.  Axiom, as
-- @axiomhq/js 2.x resolves it: edgeUrl, else edge, else url, else
-- https://api.axiom.co; an edge endpoint takes /v1/ingest/{dataset}, the
-- others (US East only) /v1/datasets/{dataset}/ingest, and a URL with a
-- path of its own is used as it is.  OTLP: the endpoint as it is when it
-- ends in the signal's path (/v1/traces, /v1/logs), as the exporter spec's
-- OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is; else a base URL, the signal's
-- path appended, as OTEL_EXPORTER_OTLP_ENDPOINT is.
CREATE FUNCTION runra_obs._forward_url(provider text, settings jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE provider
        WHEN 'axiom' THEN CASE
            WHEN settings ? 'edgeUrl'
            THEN runra_obs._url_or_path(settings ->> 'edgeUrl', '/v1/ingest/' || (settings ->> 'dataset'))
            WHEN settings ? 'edge'
            THEN 'https://' || (settings ->> 'edge') || '/v1/ingest/' || (settings ->> 'dataset')
            ELSE runra_obs._url_or_path(coalesce(settings ->> 'url', 'https://api.axiom.co'),
                                        '/v1/datasets/' || (settings ->> 'dataset') || '/ingest')
        END
        WHEN 'otel' THEN rtrim(settings ->> 'endpoint', '/')
            || CASE WHEN rtrim(settings ->> 'endpoint', '/') ~ '/v1/(traces|logs)$' THEN ''
                    ELSE '/v1/' || coalesce(settings ->> 'signal', 'traces') END
    END
$$;

-- The extra request headers of a destination, one "Name: value" a line:
-- OTLP's configured headers; Axiom's organization for a personal token.
CREATE FUNCTION runra_obs._forward_headers(provider text, settings jsonb, secrets jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE provider
        WHEN 'axiom' THEN 'X-AXIOM-ORG-ID: ' || (settings ->> 'orgId')
        WHEN 'otel' THEN (SELECT string_agg(h.key || ': ' || h.value, E'\n')
                          FROM jsonb_each_text(secrets -> 'headers') AS h)
    END
$$;

-- Checks that a handler takes one runra_obs.sandbox_events row.
CREATE FUNCTION runra_obs._check_handler(handler regprocedure)
RETURNS regprocedure
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_proc AS p
                   WHERE p.oid = handler AND p.pronargs = 1
                     AND p.proargtypes[0] = 'runra_obs.sandbox_events'::regtype) THEN
        RAISE EXCEPTION 'handler % must take exactly one argument of type runra_obs.sandbox_events', handler
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Declare it as f(e runra_obs.sandbox_events).';
    END IF;
    RETURN handler;
END
$$;

-- Writes a validated config into the row of destination `dest`.
CREATE FUNCTION runra_obs._apply_config(dest integer, provider text, config jsonb,
                                        event_types text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    types text[] := coalesce(event_types,
                             ARRAY(SELECT jsonb_array_elements_text(config -> 'eventTypes')));
BEGIN
    PERFORM runra_obs._check_config(provider, config);
    UPDATE runra_obs.destinations AS d SET
        event_types       = coalesce(types, '{}'),
        like_patterns     = ARRAY(SELECT runra_obs._glob_to_like(t) FROM unnest(types) AS t),
        batch_size        = coalesce((config ->> 'batchSize')::integer, 1000),
        flush_interval_ms = coalesce((config ->> 'flushIntervalMs')::integer, 1000),
        max_retry_ms      = coalesce((config ->> 'maxRetryMs')::bigint, 86400000),
        timeout_ms        = coalesce((config ->> 'timeoutMs')::integer, 30000),
        settings          = config - '{token,headers,handler,eventTypes,batchSize,flushIntervalMs,maxRetryMs,timeoutMs,startAt}'::text[],
        secrets           = jsonb_strip_nulls(jsonb_build_object('token', config -> 'token',
                                                                 'headers', config -> 'headers')),
        handler           = CASE WHEN provider = 'function'
                                 THEN runra_obs._check_handler((config ->> 'handler')::regprocedure) END
    WHERE d.id = dest;
    PERFORM runra_obs._forward_wake();
END
$$;

CREATE FUNCTION runra_obs.add_destination(name text, provider text, config jsonb,
                                          event_types text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    dest  integer;
    start timestamptz;
    now_id bigint;
BEGIN
    -- one change of the destination set at a time
    LOCK TABLE runra_obs.destinations IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT FROM runra_obs.destinations AS d WHERE d.name = add_destination.name) THEN
        RAISE EXCEPTION 'destination "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Use runra_obs.change_destination() to change it.';
    END IF;
    PERFORM runra_obs._check_config(provider, config);
    start := runra_obs._start_time(provider, config);
    -- "now": every event visible at or below it is the past; what commits
    -- from here on has a higher id (waits for the inserts running now)
    now_id := runra_obs.safe_watermark();
    INSERT INTO runra_obs.destinations (name, provider, handler, handler_role, start_at, replay_to)
    VALUES (name, provider,
            CASE WHEN provider = 'function'
                 THEN runra_obs._check_handler((config ->> 'handler')::regprocedure) END,
            CASE WHEN provider = 'function' THEN current_user::regrole END,
            start, CASE WHEN start IS NOT NULL THEN now_id END)
    RETURNING id INTO dest;
    PERFORM runra_obs._apply_config(dest, provider, config,
                                    CASE WHEN event_types = '{}' THEN NULL ELSE event_types END);
    INSERT INTO runra_obs.forward_counters (destination_id) VALUES (dest);
    INSERT INTO runra_obs.consumers (name, position)
    VALUES ('destination:' || dest, CASE WHEN start IS NULL THEN now_id ELSE 0 END);
END
$$;
COMMENT ON FUNCTION runra_obs.add_destination(text, text, jsonb, text[]) IS
    'Adds a destination: provider axiom, otel, jsonl or function, with the seed''s option names in config; it starts at now, or replays from config startAt';

-- The destination called `name`, or a clear error.
CREATE FUNCTION runra_obs._destination(name text)
RETURNS runra_obs.destinations
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    d runra_obs.destinations;
BEGIN
    SELECT * INTO d FROM runra_obs.destinations AS x WHERE x.name = _destination.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'destination "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM runra_obs.destination_list shows the destinations.';
    END IF;
    RETURN d;
END
$$;

CREATE FUNCTION runra_obs.change_destination(name text, config jsonb,
                                             event_types text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    d runra_obs.destinations := runra_obs._destination(name);
    merged jsonb;
BEGIN
    IF config ? 'startAt' THEN
        RAISE EXCEPTION 'option "startAt" can only be given when a destination is added'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'To replay history into it, remove the destination and add it again with startAt.';
    END IF;
    -- the old options, with each key of config replacing (or, when null, removing) one
    merged := d.settings || d.secrets
              || jsonb_build_object('batchSize', d.batch_size, 'flushIntervalMs', d.flush_interval_ms,
                                    'maxRetryMs', d.max_retry_ms, 'timeoutMs', d.timeout_ms)
              || CASE WHEN d.provider = 'function'
                      THEN jsonb_build_object('handler', d.handler::text) ELSE '{}' END
              || coalesce(config, '{}');
    merged := jsonb_strip_nulls(merged);
    PERFORM runra_obs._apply_config(d.id, d.provider, merged,
                                    coalesce(event_types, d.event_types));
END
$$;
COMMENT ON FUNCTION runra_obs.change_destination(text, jsonb, text[]) IS
    'Changes options of a destination (keys given replace the old ones, null removes one); event_types too when given, for the events after its cursor';

-- Pauses (false) or resumes (true) the destination called `name`.
CREATE FUNCTION runra_obs._set_enabled(name text, enabled boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE runra_obs.destinations AS d SET enabled = _set_enabled.enabled
    WHERE d.id = (runra_obs._destination(_set_enabled.name)).id;
    PERFORM runra_obs._forward_wake();
END
$$;

CREATE FUNCTION runra_obs.pause_destination(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT runra_obs._set_enabled($1, false) $$;
COMMENT ON FUNCTION runra_obs.pause_destination(text) IS
    'Stops delivering to a destination; its cursor stays where it is and it falls behind';

CREATE FUNCTION runra_obs.resume_destination(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT runra_obs._set_enabled($1, true) $$;
COMMENT ON FUNCTION runra_obs.resume_destination(text) IS
    'Resumes delivering to a paused destination, from its cursor (what arrived meanwhile first)';

CREATE FUNCTION runra_obs.remove_destination(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    d runra_obs.destinations;
BEGIN
    LOCK TABLE runra_obs.destinations IN SHARE ROW EXCLUSIVE MODE;
    d := runra_obs._destination(name);
    DELETE FROM runra_obs.redeliveries WHERE destination_id = d.id;
    DELETE FROM runra_obs.dead_letters WHERE destination_id = d.id;
    DELETE FROM runra_obs.forward_counters WHERE destination_id = d.id;
    DELETE FROM runra_obs.consumers WHERE consumers.name = 'destination:' || d.id;
    DELETE FROM runra_obs.destinations WHERE id = d.id;
    PERFORM runra_obs._forward_wake();
END
$$;
COMMENT ON FUNCTION runra_obs.remove_destination(text) IS
    'Removes a destination with its cursor, redeliveries, dead letters and counters';

CREATE FUNCTION runra_obs.on(event_pattern text, handler regprocedure)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    name text := format('on:%s:%s', event_pattern, handler::oid);
BEGIN
    PERFORM runra_obs.add_destination(name, 'function',
                                      jsonb_build_object('handler', handler::text,
                                                         'batchSize', 100,
                                                         'flushIntervalMs', 0),
                                      ARRAY[event_pattern]);
    RETURN name;
END
$$;
COMMENT ON FUNCTION runra_obs.on(text, regprocedure) IS
    'Calls handler(event) for each new event matching event_pattern (the SQL twin of runra.on); returns the destination name';

CREATE FUNCTION runra_obs.requeue_dead_letters(destination text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    dest integer := CASE WHEN destination IS NOT NULL
                         THEN (runra_obs._destination(destination)).id END;
    moved bigint;
BEGIN
    WITH gone AS (
        DELETE FROM runra_obs.dead_letters AS l
        WHERE dest IS NULL OR l.destination_id = dest
        RETURNING l.destination_id, l.event_id, l.created_at, l.sandbox_id
    )
    INSERT INTO runra_obs.redeliveries (destination_id, event_id, created_at, sandbox_id)
    SELECT * FROM gone
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS moved = ROW_COUNT;
    PERFORM runra_obs._forward_wake();
    RETURN moved;
END
$$;
COMMENT ON FUNCTION runra_obs.requeue_dead_letters(text) IS
    'Moves the dead letters of one destination (or of all, given NULL) to runra_obs.redeliveries, to be sent again; returns how many';

-- ---------------------------------------------------------------------------
-- Reading, for the forward worker.
-- ---------------------------------------------------------------------------

-- The events a destination selects with ids in (after_id, up_to_id], in id
-- order, at most max_events.  The bounds are values (EXECUTE), and seqscans
-- are off, so that partitions without statistics are still read through
-- the BRIN index on id; parallel workers are off (starting them costs more
-- than reading 10,000 rows).  A replay (start_at) reads up to replay_to with
-- created_at >= start_at, which prunes the partitions before it; the
-- worker never asks for a range that crosses replay_to.  Each event comes
-- with what it means as 15_event_facts.sql defines it (failed, its
-- duration), so the encoders never decide that themselves.
CREATE FUNCTION runra_obs._forward_batch(destination integer, after_id bigint,
                                         up_to_id bigint, max_events integer,
                                         max_bytes bigint)
RETURNS TABLE (id bigint, created_at timestamptz, sandbox_id text, event_type text,
               data jsonb, trace_id text, sandbox_trace_id text, failed boolean,
               duration_ms numeric, ingested_at timestamptz, cut boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET max_parallel_workers_per_gather = 0
AS $$
DECLARE
    d         runra_obs.destinations;
    replaying boolean;
BEGIN
    SELECT * INTO STRICT d FROM runra_obs.destinations AS x WHERE x.id = destination;
    -- the history a start time replays has its own bound on created_at
    replaying := d.start_at IS NOT NULL AND after_id < d.replay_to;
    -- The batch ends with the event that takes the stored size of its data
    -- to max_bytes (so it always has one): one huge event, or many big
    -- ones, cannot make a request the worker cannot hold.  Events after it
    -- are read, and their data detoasted, only by the next batch.  One
    -- running sum, streamed: the common batch, far under max_bytes, costs
    -- what it cost without it.
    RETURN QUERY EXECUTE format($rows$
        SELECT b.id, b.created_at, b.sandbox_id, b.event_type, b.data, b.trace_id, md5(b.sandbox_id),
               runra_obs.event_failed(b.event_type, b.data),
               runra_obs.event_duration_ms(b.event_type, b.data), b.ingested_at,
               b.bytes_upto >= $6
        FROM (SELECT e.*, sum(runra_obs._raw_size(e.data)) OVER (ORDER BY e.id ROWS UNBOUNDED PRECEDING)
                            AS bytes_upto
              FROM (SELECT e.id, e.created_at, e.sandbox_id, e.event_type, e.data, e.trace_id, e.ingested_at
                    FROM runra_obs.sandbox_events AS e
                    WHERE e.id > $1 AND e.id <= $2 %s
                      AND ($3 = '{}' OR e.event_type LIKE ANY ($3))
                    ORDER BY e.id LIMIT $4) AS e) AS b
        WHERE b.bytes_upto - runra_obs._raw_size(b.data) < $6
        ORDER BY b.id
        $rows$, CASE WHEN replaying THEN 'AND e.created_at >= $5' ELSE '' END)
    USING after_id, CASE WHEN replaying THEN least(up_to_id, d.replay_to) ELSE up_to_id END,
          d.like_patterns, max_events, d.start_at, max_bytes;
END
$$;
COMMENT ON FUNCTION runra_obs._forward_batch(integer, bigint, bigint, integer, bigint) IS
    'Internal: the events destination selects with ids in (after_id, up_to_id], in id order, at most max_events, ending with the one that takes their stored data to max_bytes; cut says the batch reached max_bytes';

-- The size of a value as stored uncompressed, without detoasting it.
CREATE FUNCTION runra_obs._raw_size(value jsonb)
RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_raw_size';
COMMENT ON FUNCTION runra_obs._raw_size(jsonb) IS
    'Internal: the uncompressed stored size of a jsonb value, read from its header (no detoasting)';

REVOKE ALL ON FUNCTION
    runra_obs.add_destination(text, text, jsonb, text[]),
    runra_obs.change_destination(text, jsonb, text[]),
    runra_obs.pause_destination(text),
    runra_obs.resume_destination(text),
    runra_obs.remove_destination(text),
    runra_obs.on(text, regprocedure),
    runra_obs.requeue_dead_letters(text),
    runra_obs._forward_wake(),
    runra_obs._forward_batch(integer, bigint, bigint, integer, bigint),
    runra_obs._raw_size(jsonb),
    runra_obs._glob_to_like(text),
    runra_obs._start_time(text, jsonb),
    runra_obs._check_option(text, jsonb, text, text, boolean, numeric, numeric),
    runra_obs._check_config(text, jsonb),
    runra_obs._check_url(text, jsonb, text),
    runra_obs._check_axiom(jsonb),
    runra_obs._check_otel(jsonb),
    runra_obs._url_or_path(text, text),
    runra_obs._forward_url(text, jsonb),
    runra_obs._forward_headers(text, jsonb, jsonb),
    runra_obs._check_handler(regprocedure),
    runra_obs._apply_config(integer, text, jsonb, text[]),
    runra_obs._destination(text),
    runra_obs._set_enabled(text, boolean)
FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Seeing it.
-- ---------------------------------------------------------------------------
CREATE VIEW runra_obs.forward_status AS
SELECT d.name                          AS destination,
       d.provider                      AS provider,
       d.enabled                       AS enabled,
       c.position                      AS position,
       w.ids_behind                    AS behind_events,
       w.seconds_behind                AS behind_seconds,
       coalesce(r.redelivering, 0)::bigint AS redelivering,
       coalesce(k.sent, 0)::bigint     AS sent,
       coalesce(k.failed, 0)::bigint   AS failed,
       coalesce(l.dead, 0)::bigint     AS dead_lettered,
       k.last_success                  AS last_success,
       k.last_error                    AS last_error
FROM runra_obs.destinations AS d
JOIN runra_obs.consumers AS c ON c.name = 'destination:' || d.id
CROSS JOIN LATERAL runra_obs._watermark_lag(c.position) AS w
LEFT JOIN runra_obs.forward_counters AS k ON k.destination_id = d.id
LEFT JOIN LATERAL (SELECT count(*) AS redelivering
                   FROM runra_obs.redeliveries AS x WHERE x.destination_id = d.id) AS r ON true
LEFT JOIN LATERAL (SELECT count(*) AS dead
                   FROM runra_obs.dead_letters AS x WHERE x.destination_id = d.id) AS l ON true;
COMMENT ON VIEW runra_obs.forward_status IS
    'Per destination: its cursor and lag behind the safe watermark (events, seconds), events to send again, events sent, failed attempts, dead letters, last success and last error';
COMMENT ON COLUMN runra_obs.forward_status.position IS
    'The destination''s cursor: every event with an id at or below it was accepted, dead-lettered or skipped by the selection';
COMMENT ON COLUMN runra_obs.forward_status.behind_events IS
    'Event ids between the cursor and the safe watermark: events not read yet or not yet accepted (those the selection skips included)';
COMMENT ON COLUMN runra_obs.forward_status.behind_seconds IS
    'How long the events after the cursor have been safe to read and not delivered; 0 when caught up';
COMMENT ON COLUMN runra_obs.forward_status.redelivering IS
    'Events in runra_obs.redeliveries for this destination (requeued dead letters, handler failures)';
COMMENT ON COLUMN runra_obs.forward_status.failed IS
    'Events in delivery attempts that failed (each attempt counts)';
COMMENT ON COLUMN runra_obs.forward_status.dead_lettered IS
    'Events now in runra_obs.dead_letters for this destination';
GRANT SELECT ON runra_obs.forward_status TO runra_obs_reader;

-- ==== extension/parts/60_rollups.sql
-- ===========================================================================
-- Rollups: events counted by time bucket, so dashboards over long windows
-- read thousands of rows instead of millions of events.
--
--   rollup_5m          every 5 minutes, all sandboxes together
--   rollup_1h          every hour, all sandboxes together
--   rollup_1h_sandbox  every hour, per sandbox
--   ingest_1m          every minute of ingest time (not event time)
--
-- Each row counts the events of one bucket with the same event type and,
-- as far as the table keeps them (_rollup_key), the same label (command,
-- tool, termination reason, image...: see event_label) and agent.  How
-- they stay exact: the rollup consumer (a worker, src/consume/) folds the
-- committed events after its position in runra_obs.consumers, up to the
-- safe watermark (10_consume.sql), into delta rows, and moves its position
-- in the same transaction.  So an event is counted once, whatever its
-- timestamp, and a rolled-back insert never; the insert itself pays for
-- none of it.  Delta rows are only ever inserted, never updated, so a fold
-- never waits on a reader or on compaction; readers always aggregate (they
-- group by coarser time anyway), and _maintain_rollups() compacts the
-- deltas of each key into one row.  The *_live views add the events not
-- folded yet, so what reads them is exact to the last committed event.
-- docs/rollups.md has the measurements behind this choice.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Duration histograms (src/rollup/histogram.c): four buckets per doubling.
-- ---------------------------------------------------------------------------
CREATE FUNCTION runra_obs.duration_bucket(ms double precision)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_duration_bucket';
COMMENT ON FUNCTION runra_obs.duration_bucket(double precision) IS
    'The histogram bucket of a duration in ms: 0 below 1 ms, else 1 + floor(4 * log2(ms)), at most 161';

CREATE FUNCTION runra_obs.duration_bucket_lower(bucket integer)
RETURNS double precision
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_duration_bucket_lower';
COMMENT ON FUNCTION runra_obs.duration_bucket_lower(integer) IS
    'The lower edge in ms of a histogram bucket (2^((bucket - 1) / 4); 0 for bucket 0)';

CREATE FUNCTION runra_obs._histogram_add(internal, double precision)
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_add';

CREATE FUNCTION runra_obs._histogram_merge(internal, bigint[])
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_merge';

CREATE FUNCTION runra_obs._histogram_final(internal)
RETURNS bigint[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_final';
COMMENT ON FUNCTION runra_obs._histogram_add(internal, double precision) IS
    'Internal: transition function of runra_obs.duration_histogram';
COMMENT ON FUNCTION runra_obs._histogram_merge(internal, bigint[]) IS
    'Internal: transition function of runra_obs.histogram_merge';
COMMENT ON FUNCTION runra_obs._histogram_final(internal) IS
    'Internal: final function of both histogram aggregates';

CREATE AGGREGATE runra_obs.duration_histogram(double precision) (
    SFUNC = runra_obs._histogram_add,
    STYPE = internal,
    FINALFUNC = runra_obs._histogram_final
);
COMMENT ON AGGREGATE runra_obs.duration_histogram(double precision) IS
    'Durations in ms as a histogram: bigint[] of counts indexed by duration_bucket, trimmed to the non-empty range';

CREATE AGGREGATE runra_obs.histogram_merge(bigint[]) (
    SFUNC = runra_obs._histogram_merge,
    STYPE = internal,
    FINALFUNC = runra_obs._histogram_final
);
COMMENT ON AGGREGATE runra_obs.histogram_merge(bigint[]) IS
    'The sum of duration histograms (as duration_histogram makes them)';

CREATE FUNCTION runra_obs.histogram_percentile(histogram bigint[], fraction double precision)
RETURNS double precision
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_percentile';
COMMENT ON FUNCTION runra_obs.histogram_percentile(bigint[], double precision) IS
    'The percentile (fraction 0..1) of a duration histogram: the geometric middle of the bucket holding the value percentile_disc would pick (within 9 %)';

CREATE FUNCTION runra_obs.histogram_count(histogram bigint[])
RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_histogram_count';
COMMENT ON FUNCTION runra_obs.histogram_count(bigint[]) IS
    'How many durations a duration histogram holds';

-- ---------------------------------------------------------------------------
-- The rollup tables.  All share the measures; they differ in bucket width
-- and in whether sandbox_id is a key.
-- ---------------------------------------------------------------------------
CREATE TABLE runra_obs.rollup_5m (
    bucket          timestamptz NOT NULL,
    event_type      text        NOT NULL,
    label           text        NOT NULL,
    agent_id        text        NOT NULL,
    events          bigint      NOT NULL,
    failures        bigint      NOT NULL,
    cost            numeric,
    duration_count  bigint      NOT NULL,
    duration_sum    numeric,
    duration_max    numeric,
    duration_hist   bigint[],
    value_count     bigint      NOT NULL,
    value_sum       numeric,
    value_max       numeric,
    limit_max       numeric,
    over_90         bigint      NOT NULL,
    compacted       boolean     NOT NULL DEFAULT false
);
CREATE TABLE runra_obs.rollup_1h (LIKE runra_obs.rollup_5m INCLUDING DEFAULTS);
CREATE TABLE runra_obs.rollup_1h_sandbox (LIKE runra_obs.rollup_5m INCLUDING DEFAULTS);
ALTER TABLE runra_obs.rollup_1h_sandbox ADD COLUMN sandbox_id text NOT NULL;

-- Indexes are paid for on every insert, so each serves a reader:
--   type and bucket: panels and compaction look rows up by them; the
--   5-minute and per-sandbox ones carry the counts panels read, so those
--   panels read the index only, not the wide rows;
--   sandbox and bucket: panels on chosen sandboxes;
--   deltas (partial, holds only rows not yet compacted): compaction finds
--   its work without reading the table;
--   BRIN on bucket (a few pages): retention and rebuilds find old buckets.
CREATE INDEX rollup_5m_type_bucket_idx ON runra_obs.rollup_5m (event_type, bucket, label, agent_id)
    INCLUDE (events, failures, cost, over_90);
CREATE INDEX rollup_1h_type_bucket_idx ON runra_obs.rollup_1h (event_type, bucket, label, agent_id);
CREATE INDEX rollup_1h_sandbox_type_bucket_idx
    ON runra_obs.rollup_1h_sandbox (event_type, bucket, sandbox_id, label, agent_id)
    INCLUDE (events, failures, cost, value_max, limit_max, over_90);
CREATE INDEX rollup_1h_sandbox_sandbox_idx ON runra_obs.rollup_1h_sandbox (sandbox_id, bucket);
CREATE INDEX rollup_5m_delta_idx ON runra_obs.rollup_5m (bucket) WHERE NOT compacted;
CREATE INDEX rollup_1h_delta_idx ON runra_obs.rollup_1h (bucket) WHERE NOT compacted;
CREATE INDEX rollup_1h_sandbox_delta_idx ON runra_obs.rollup_1h_sandbox (bucket) WHERE NOT compacted;
CREATE INDEX rollup_5m_bucket_brin ON runra_obs.rollup_5m USING brin (bucket);
CREATE INDEX rollup_1h_bucket_brin ON runra_obs.rollup_1h USING brin (bucket);
CREATE INDEX rollup_1h_sandbox_bucket_brin ON runra_obs.rollup_1h_sandbox USING brin (bucket);

COMMENT ON TABLE runra_obs.rollup_5m IS
    'Events per 5 minutes (UTC), event type and (for exec.*) label, all sandboxes together; several rows per key until compacted: always aggregate';
COMMENT ON TABLE runra_obs.rollup_1h IS
    'Events per hour (UTC), event type, label and agent, all sandboxes together; several rows per key until compacted: always aggregate';
COMMENT ON TABLE runra_obs.rollup_1h_sandbox IS
    'Events per hour (UTC), sandbox, event type, agent and (for sandbox.*) label; several rows per key until compacted: always aggregate';
COMMENT ON COLUMN runra_obs.rollup_5m.bucket IS 'Start of the bucket (created_at rounded down, UTC)';
COMMENT ON COLUMN runra_obs.rollup_5m.label IS 'runra_obs.event_label() as far as the table keeps it (runra_obs._rollup_key())';
COMMENT ON COLUMN runra_obs.rollup_5m.agent_id IS 'runra_obs.event_agent(): data.agentId or '''' (always '''' in rollup_5m)';
COMMENT ON COLUMN runra_obs.rollup_5m.events IS 'How many events';
COMMENT ON COLUMN runra_obs.rollup_5m.failures IS 'How many of them runra_obs.event_failed() calls failures';
COMMENT ON COLUMN runra_obs.rollup_5m.cost IS 'Sum of runra_obs.event_cost()';
COMMENT ON COLUMN runra_obs.rollup_5m.duration_count IS 'Events with a duration (runra_obs.event_duration_ms())';
COMMENT ON COLUMN runra_obs.rollup_5m.duration_sum IS 'Sum of durations in ms';
COMMENT ON COLUMN runra_obs.rollup_5m.duration_max IS 'Longest duration in ms';
COMMENT ON COLUMN runra_obs.rollup_5m.duration_hist IS 'Histogram of durations (merge with runra_obs.histogram_merge)';
COMMENT ON COLUMN runra_obs.rollup_5m.value_count IS 'Events with a sample (runra_obs.event_value())';
COMMENT ON COLUMN runra_obs.rollup_5m.value_sum IS 'Sum of samples';
COMMENT ON COLUMN runra_obs.rollup_5m.value_max IS 'Largest sample';
COMMENT ON COLUMN runra_obs.rollup_5m.limit_max IS 'Largest limit (runra_obs.event_limit())';
COMMENT ON COLUMN runra_obs.rollup_5m.over_90 IS 'Samples above 90 % of their limit';
COMMENT ON COLUMN runra_obs.rollup_5m.compacted IS 'false for the delta rows of one ingest statement, true once compacted';

-- Ingest activity by ingest time, for the pipeline dashboard.
CREATE TABLE runra_obs.ingest_1m (
    bucket      timestamptz NOT NULL,
    events      bigint      NOT NULL,
    transactions bigint     NOT NULL,
    delay_sum_s double precision NOT NULL,
    delay_max_s double precision NOT NULL,
    compacted   boolean     NOT NULL DEFAULT false
);
CREATE INDEX ingest_1m_bucket_idx ON runra_obs.ingest_1m (bucket);
CREATE INDEX ingest_1m_delta_idx ON runra_obs.ingest_1m (bucket) WHERE NOT compacted;
COMMENT ON TABLE runra_obs.ingest_1m IS
    'Events stored per minute of ingest time (UTC), with the delay from created_at to storage; several rows per minute until compacted';
COMMENT ON COLUMN runra_obs.ingest_1m.transactions IS 'Transactions that stored them (distinct ingested_at; counted per fold)';
COMMENT ON COLUMN runra_obs.ingest_1m.delay_sum_s IS 'Sum over the events of ingested_at - created_at, in seconds';
COMMENT ON COLUMN runra_obs.ingest_1m.delay_max_s IS 'Largest ingested_at - created_at, in seconds';

GRANT SELECT ON runra_obs.rollup_5m, runra_obs.rollup_1h, runra_obs.rollup_1h_sandbox,
                runra_obs.ingest_1m TO runra_obs_reader;

-- ---------------------------------------------------------------------------
-- Folding events into the rollups.  The rollup consumer (src/consume/
-- rollup_worker.c) reads the events after its position in
-- runra_obs.consumers up to the safe watermark, about once a second
-- (runra_obs.rollup_interval), and folds them into delta rows in the same
-- transaction that moves its position: an event is counted once, whatever
-- its timestamp, and a rolled-back insert never.  The insert itself writes
-- nothing derived.  Readers that must be exact to the last committed event
-- read the *_live views, which add the events not folded yet.
-- ---------------------------------------------------------------------------

-- The keys each table keeps: what its panels group or filter by, no more
-- (every extra key multiplies rows).
--   rollup_5m          label for exec.* (command), no agent
--   rollup_1h          every label and agent
--   rollup_1h_sandbox  label for sandbox.* (image, termination reason), agent
CREATE FUNCTION runra_obs._rollup_key(rollup text, event_type text, label text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN rollup = 'rollup_5m' AND event_type LIKE 'exec.%' THEN label
        WHEN rollup = 'rollup_1h' THEN label
        WHEN rollup = 'rollup_1h_sandbox' AND event_type LIKE 'sandbox.%' THEN label
        ELSE ''
    END
$$;
COMMENT ON FUNCTION runra_obs._rollup_key(text, text, text) IS
    'The label a rollup table keeps for an event: rollup_5m only commands, rollup_1h every label, rollup_1h_sandbox only images and termination reasons';

-- The rollup rows of the events with ids in (after_id, up_to_id] and
-- created_at in [from_time, to_time), for the three tables at once: each
-- event's facts are read once and grouped three ways (GROUPING SETS);
-- `rollup` names the table a row is for.  The consumer's fold, rebuilds and
-- the live views all use this one statement.  It is planned with its
-- bounds as values (a generic plan would read the id range through the
-- created_at indexes of every partition) and without sequential scans, so
-- the id range is read through the index on id, even in a partition
-- without statistics yet (where any id range looks like a third of it).  It is not run at all when no event was stored
-- after after_id, which is what a live view finds when the worker keeps up
-- and nobody is writing.
CREATE FUNCTION runra_obs._rollup_rows(after_id bigint, up_to_id bigint,
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
    -- (a function, not a scan of the sequence: under enable_seqscan = off a
    -- scan is costed so high that JIT compiles it, 60 ms a call)
    IF after_id >= coalesce(pg_sequence_last_value('runra_obs.sandbox_events_id_seq'::regclass), 0) THEN
        RETURN;
    END IF;
    -- The time bounds go into the statement only when a rebuild gives them:
    -- -infinity..infinity would make a created_at index look useful.
    RETURN QUERY EXECUTE format($rows$
    WITH facts AS MATERIALIZED (
        SELECT date_bin('5 minutes', e.created_at, timestamptz '2000-01-01 00:00+00') AS bucket_5m,
               date_bin('1 hour', e.created_at, timestamptz '2000-01-01 00:00+00') AS bucket_1h,
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
        WHERE e.id > $1 AND e.id <= $2 %s
    ), keyed AS (
        SELECT f.*,
               runra_obs._rollup_key('rollup_5m', f.event_type, f.label) AS label_5m,
               runra_obs._rollup_key('rollup_1h_sandbox', f.event_type, f.label) AS label_sandbox
        FROM facts AS f
    )
    -- In each grouping set the columns of the other sets are NULL, and no
    -- key is ever NULL itself, so coalesce picks the key of the row's set.
    SELECT CASE WHEN grouping(k.bucket_5m) = 0 THEN 'rollup_5m'
                WHEN grouping(k.sandbox_id) = 0 THEN 'rollup_1h_sandbox'
                ELSE 'rollup_1h' END,
           coalesce(k.bucket_5m, k.bucket_1h),
           k.sandbox_id,
           k.event_type,
           coalesce(k.label_5m, k.label, k.label_sandbox),
           coalesce(k.agent_id, ''),
           count(*),
           count(*) FILTER (WHERE k.failed),
           sum(k.cost),
           count(k.duration_ms),
           sum(k.duration_ms),
           max(k.duration_ms),
           runra_obs.duration_histogram(k.duration_ms::float8),
           count(k.value),
           sum(k.value),
           max(k.value),
           max(k.lim),
           count(*) FILTER (WHERE k.value > 0.9 * k.lim)
    FROM keyed AS k
    GROUP BY GROUPING SETS (
        (k.bucket_5m, k.event_type, k.label_5m),
        (k.bucket_1h, k.event_type, k.label, k.agent_id),
        (k.bucket_1h, k.sandbox_id, k.event_type, k.label_sandbox, k.agent_id))
    $rows$, CASE WHEN from_time > '-infinity' OR to_time < 'infinity'
                 THEN 'AND e.created_at >= $3 AND e.created_at < $4' ELSE '' END)
    USING after_id, up_to_id, from_time, to_time;
END
$$;
COMMENT ON FUNCTION runra_obs._rollup_rows(bigint, bigint, timestamptz, timestamptz) IS
    'Internal: the rollup rows (for rollup_5m, rollup_1h and rollup_1h_sandbox) of the events with ids in (after_id, up_to_id] and created_at in [from_time, to_time)';

-- The ingest activity (by ingest time) of the same events, planned and
-- skipped as in _rollup_rows.
CREATE FUNCTION runra_obs._ingest_rows(after_id bigint, up_to_id bigint)
RETURNS TABLE (bucket timestamptz, events bigint, transactions bigint,
               delay_sum_s double precision, delay_max_s double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
BEGIN
    -- (a function, not a scan of the sequence: under enable_seqscan = off a
    -- scan is costed so high that JIT compiles it, 60 ms a call)
    IF after_id >= coalesce(pg_sequence_last_value('runra_obs.sandbox_events_id_seq'::regclass), 0) THEN
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

-- Inserts the rollup rows of a range of events; compacted says what they
-- are (false for the consumer's deltas, true when rebuilt).
CREATE FUNCTION runra_obs._fold_rollups(after_id bigint, up_to_id bigint,
                                        from_time timestamptz, to_time timestamptz,
                                        compacted boolean)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
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
    )
    INSERT INTO runra_obs.rollup_1h_sandbox (bucket, sandbox_id, event_type, label, agent_id,
        events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
        value_count, value_sum, value_max, limit_max, over_90, compacted)
    SELECT bucket, sandbox_id, event_type, label, agent_id,
           events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
           value_count, value_sum, value_max, limit_max, over_90, compacted
    FROM r WHERE rollup = 'rollup_1h_sandbox';
$$;
COMMENT ON FUNCTION runra_obs._fold_rollups(bigint, bigint, timestamptz, timestamptz, boolean) IS
    'Internal: inserts the rollup rows of the events with ids in (after_id, up_to_id] and created_at in [from_time, to_time)';

-- The rollup consumer.
INSERT INTO runra_obs.consumers (name) VALUES ('rollups');

-- One step of it: folds the events after its position, at most max_ids of
-- them, up to up_to (a safe watermark), and moves the position, in the
-- caller's transaction.  Its row lock orders it with rebuilds and with a
-- second folder (fold_rollups() while the worker runs).  Returns the
-- position it left.
CREATE FUNCTION runra_obs._consume_rollups(up_to bigint, max_ids bigint)
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
    target := least(up_to, pos + max_ids);
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
COMMENT ON FUNCTION runra_obs._consume_rollups(bigint, bigint) IS
    'Internal: one step of the rollup consumer: folds at most max_ids events after its position, up to up_to, and moves the position';

CREATE FUNCTION runra_obs.fold_rollups()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    up_to bigint := runra_obs.safe_watermark();
    step  bigint := current_setting('runra_obs.rollup_batch_size')::bigint;
    pos   bigint;
BEGIN
    LOOP
        pos := runra_obs._consume_rollups(up_to, step);
        EXIT WHEN pos >= up_to;
    END LOOP;
    RETURN pos;
END
$$;
COMMENT ON FUNCTION runra_obs.fold_rollups() IS
    'Folds every event committed now into the rollups, as the rollup worker does each second (in steps of runra_obs.rollup_batch_size ids); returns the rollup consumer''s position';


-- The rollups as of the last committed event: the folded rows, and the
-- rows of the events after the consumer's position, computed at query
-- time (about a second of events when the worker keeps up).  Always
-- aggregate, as with the tables.
CREATE VIEW runra_obs.rollup_5m_live WITH (security_invoker = true) AS
SELECT bucket, event_type, label, agent_id, events, failures, cost, duration_count,
       duration_sum, duration_max, duration_hist, value_count, value_sum, value_max,
       limit_max, over_90
FROM runra_obs.rollup_5m
UNION ALL
SELECT u.bucket, u.event_type, u.label, u.agent_id, u.events, u.failures, u.cost,
       u.duration_count, u.duration_sum, u.duration_max, u.duration_hist, u.value_count,
       u.value_sum, u.value_max, u.limit_max, u.over_90
FROM runra_obs.consumers AS c,
     LATERAL runra_obs._rollup_rows(c.position, 9223372036854775807, '-infinity', 'infinity') AS u
WHERE c.name = 'rollups' AND u.rollup = 'rollup_5m';
CREATE VIEW runra_obs.rollup_1h_live WITH (security_invoker = true) AS
SELECT bucket, event_type, label, agent_id, events, failures, cost, duration_count,
       duration_sum, duration_max, duration_hist, value_count, value_sum, value_max,
       limit_max, over_90
FROM runra_obs.rollup_1h
UNION ALL
SELECT u.bucket, u.event_type, u.label, u.agent_id, u.events, u.failures, u.cost,
       u.duration_count, u.duration_sum, u.duration_max, u.duration_hist, u.value_count,
       u.value_sum, u.value_max, u.limit_max, u.over_90
FROM runra_obs.consumers AS c,
     LATERAL runra_obs._rollup_rows(c.position, 9223372036854775807, '-infinity', 'infinity') AS u
WHERE c.name = 'rollups' AND u.rollup = 'rollup_1h';
CREATE VIEW runra_obs.rollup_1h_sandbox_live WITH (security_invoker = true) AS
SELECT bucket, sandbox_id, event_type, label, agent_id, events, failures, cost,
       duration_count, duration_sum, duration_max, duration_hist, value_count, value_sum,
       value_max, limit_max, over_90
FROM runra_obs.rollup_1h_sandbox
UNION ALL
SELECT u.bucket, u.sandbox_id, u.event_type, u.label, u.agent_id, u.events, u.failures,
       u.cost, u.duration_count, u.duration_sum, u.duration_max, u.duration_hist,
       u.value_count, u.value_sum, u.value_max, u.limit_max, u.over_90
FROM runra_obs.consumers AS c,
     LATERAL runra_obs._rollup_rows(c.position, 9223372036854775807, '-infinity', 'infinity') AS u
WHERE c.name = 'rollups' AND u.rollup = 'rollup_1h_sandbox';
CREATE VIEW runra_obs.ingest_1m_live WITH (security_invoker = true) AS
SELECT bucket, events, transactions, delay_sum_s, delay_max_s
FROM runra_obs.ingest_1m
UNION ALL
SELECT u.bucket, u.events, u.transactions, u.delay_sum_s, u.delay_max_s
FROM runra_obs.consumers AS c,
     LATERAL runra_obs._ingest_rows(c.position, 9223372036854775807) AS u
WHERE c.name = 'rollups';
COMMENT ON VIEW runra_obs.rollup_5m_live IS
    'runra_obs.rollup_5m with the events not folded yet: exact to the last committed event; always aggregate';
COMMENT ON VIEW runra_obs.rollup_1h_live IS
    'runra_obs.rollup_1h with the events not folded yet: exact to the last committed event; always aggregate';
COMMENT ON VIEW runra_obs.rollup_1h_sandbox_live IS
    'runra_obs.rollup_1h_sandbox with the events not folded yet: exact to the last committed event; always aggregate';
COMMENT ON VIEW runra_obs.ingest_1m_live IS
    'runra_obs.ingest_1m with the events not folded yet: exact to the last committed event; always aggregate';
GRANT SELECT ON runra_obs.rollup_5m_live, runra_obs.rollup_1h_live, runra_obs.rollup_1h_sandbox_live,
                runra_obs.ingest_1m_live TO runra_obs_reader;

-- Compaction merges the delta rows of each key.
-- The measures of rollup rows merged into one (compaction).
CREATE FUNCTION runra_obs._rollup_merge_measures()
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT
        'sum(events) AS events, sum(failures) AS failures, sum(cost) AS cost,
         sum(duration_count) AS duration_count, sum(duration_sum) AS duration_sum,
         max(duration_max) AS duration_max, runra_obs.histogram_merge(duration_hist) AS duration_hist,
         sum(value_count) AS value_count, sum(value_sum) AS value_sum, max(value_max) AS value_max,
         max(limit_max) AS limit_max, sum(over_90) AS over_90'
$$;
COMMENT ON FUNCTION runra_obs._rollup_merge_measures() IS
    'Internal: the rollup measures of several rows of one key merged, as SQL (for compaction)';

CREATE FUNCTION runra_obs._rollup_columns()
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT 'events, failures, cost, duration_count, duration_sum, duration_max, duration_hist,
            value_count, value_sum, value_max, limit_max, over_90, compacted'
$$;
COMMENT ON FUNCTION runra_obs._rollup_columns() IS 'Internal: the measure columns of the rollup tables, as SQL (for compaction)';

-- Maintenance and rebuilds change rollup rows one at a time.
CREATE FUNCTION runra_obs._rollup_lock()
RETURNS void
LANGUAGE sql
AS $$
    SELECT runra_obs._lock('rollups')
$$;
COMMENT ON FUNCTION runra_obs._rollup_lock() IS
    'Internal: serialises compaction, retention and rebuilds (never taken by ingest)';

-- Merges the delta rows of each key of one rollup table into one row, in
-- one statement: rows committed after its snapshot stay deltas for next
-- time, so nothing is counted twice or lost.  Returns rows removed.
CREATE FUNCTION runra_obs._compact_rollup(rollup regclass, keys text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    EXECUTE format($f$
        WITH dirty AS (
            SELECT DISTINCT %2$s FROM %1$s WHERE NOT compacted
        ), gone AS (
            DELETE FROM %1$s AS r USING dirty AS d
            WHERE (%3$s) = (%4$s)
            RETURNING r.*
        ), merged AS (
            INSERT INTO %1$s (%2$s, %5$s)
            SELECT %2$s, %6$s, true FROM gone GROUP BY %2$s
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM merged)$f$,
        rollup, keys,
        (SELECT string_agg('r.' || k, ', ') FROM unnest(string_to_array(keys, ', ')) AS k),
        (SELECT string_agg('d.' || k, ', ') FROM unnest(string_to_array(keys, ', ')) AS k),
        runra_obs._rollup_columns(), runra_obs._rollup_merge_measures())
    INTO removed;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION runra_obs._compact_rollup(regclass, text) IS
    'Internal: merges the delta rows of each key of one rollup table; returns rows removed';

CREATE FUNCTION runra_obs._compact_ingest()
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH dirty AS (
        SELECT DISTINCT bucket FROM runra_obs.ingest_1m WHERE NOT compacted
    ), gone AS (
        DELETE FROM runra_obs.ingest_1m AS r USING dirty AS d
        WHERE r.bucket = d.bucket
        RETURNING r.*
    ), merged AS (
        INSERT INTO runra_obs.ingest_1m (bucket, events, transactions, delay_sum_s, delay_max_s, compacted)
        SELECT bucket, sum(events), sum(transactions), sum(delay_sum_s), max(delay_max_s), true
        FROM gone GROUP BY bucket
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM merged)
$$;
COMMENT ON FUNCTION runra_obs._compact_ingest() IS
    'Internal: merges the rows of each minute of runra_obs.ingest_1m; returns rows removed';
REVOKE ALL ON FUNCTION runra_obs._rollup_lock(), runra_obs._compact_rollup(regclass, text),
                       runra_obs._compact_ingest() FROM PUBLIC;

CREATE FUNCTION runra_obs._maintain_rollups()
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
BEGIN
    PERFORM runra_obs._rollup_lock();
    DELETE FROM runra_obs.rollup_1h WHERE bucket < long_horizon;
    GET DIAGNOSTICS n = ROW_COUNT; expired := expired + n;
    DELETE FROM runra_obs.rollup_1h_sandbox WHERE bucket < long_horizon;
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
    RETURN format('rollups: %s delta rows compacted away, %s expired rows dropped', merged, expired);
END
$$;
COMMENT ON FUNCTION runra_obs._maintain_rollups() IS
    'Compacts rollup delta rows and drops rollup rows past retention (hourly: runra_obs.rollup_retention; 5-minute and ingest: runra_obs.retention); called by run_maintenance';
REVOKE ALL ON FUNCTION runra_obs._maintain_rollups() FROM PUBLIC;

CREATE FUNCTION runra_obs.rebuild_rollups(window_from timestamptz, window_to timestamptz)
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
    DELETE FROM runra_obs.rollup_5m WHERE bucket >= lower_h AND bucket < upper_h;
    DELETE FROM runra_obs.rollup_1h WHERE bucket >= lower_h AND bucket < upper_h;
    DELETE FROM runra_obs.rollup_1h_sandbox WHERE bucket >= lower_h AND bucket < upper_h;
    PERFORM runra_obs._fold_rollups(0, pos, lower_h, upper_h, true);
    SELECT count(*) INTO folded FROM runra_obs.sandbox_events
    WHERE created_at >= lower_h AND created_at < upper_h AND id <= pos;
    RETURN folded;
END
$$;
COMMENT ON FUNCTION runra_obs.rebuild_rollups(timestamptz, timestamptz) IS
    'Recounts the rollups of a window (widened to whole hours) from the raw events the rollup consumer has passed; returns the events counted';
REVOKE ALL ON FUNCTION runra_obs.rebuild_rollups(timestamptz, timestamptz) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Privileges: the reader gets the measuring functions and what the live
-- views call as the reader (they are security_invoker); the fold and the
-- consumer's step write rollups and are the owner's.
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION
    runra_obs._histogram_add(internal, double precision),
    runra_obs._histogram_merge(internal, bigint[]),
    runra_obs._histogram_final(internal),
    runra_obs._rollup_merge_measures(),
    runra_obs._rollup_columns(),
    runra_obs._rollup_key(text, text, text),
    runra_obs._rollup_rows(bigint, bigint, timestamptz, timestamptz),
    runra_obs._ingest_rows(bigint, bigint),
    runra_obs._fold_rollups(bigint, bigint, timestamptz, timestamptz, boolean),
    runra_obs._consume_rollups(bigint, bigint),
    runra_obs.fold_rollups()
FROM PUBLIC;
-- (the live views read the id sequence's last value as the reader)
GRANT SELECT ON SEQUENCE runra_obs.sandbox_events_id_seq TO runra_obs_reader;
GRANT EXECUTE ON FUNCTION
    runra_obs._rollup_key(text, text, text),
    runra_obs._rollup_rows(bigint, bigint, timestamptz, timestamptz),
    runra_obs._ingest_rows(bigint, bigint)
TO runra_obs_reader;
REVOKE ALL ON FUNCTION
    runra_obs.duration_bucket(double precision),
    runra_obs.duration_bucket_lower(integer),
    runra_obs.duration_histogram(double precision),
    runra_obs.histogram_merge(bigint[]),
    runra_obs.histogram_percentile(bigint[], double precision),
    runra_obs.histogram_count(bigint[])
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    runra_obs.duration_bucket(double precision),
    runra_obs.duration_bucket_lower(integer),
    runra_obs.duration_histogram(double precision),
    runra_obs.histogram_merge(bigint[]),
    runra_obs.histogram_percentile(bigint[], double precision),
    runra_obs.histogram_count(bigint[])
TO runra_obs_reader;

-- ==== extension/parts/70_api_rollups.sql
-- ===========================================================================
-- The SQL API over rollups: cost_per_sandbox, cost_over_time and error_rate
-- read the whole rollup buckets of a long window from the rollup tables and
-- the raw events only for the ragged edges, with the same figures as the
-- raw-only versions of 20_analytics.sql.
--
-- Why here and not in 20_analytics.sql with the rest of the API: BEGIN
-- ATOMIC bodies are parsed when created, so they can name the rollup
-- tables only after 60_rollups.sql.  Signatures, results, comments and
-- grants are those the functions had there; the raw-only bodies they had
-- are kept as the reference the tests compare with
-- (test/api_raw_reference.sql).
--
-- How the window is split, for a rollup of width w (1 hour, or 5 minutes
-- where a 5-minute rollup can serve the buckets asked for):
--
--     from_time   lo = from_time rounded up to w    hi = to_time rounded down   to_time
--        |-- raw --|========== rollup buckets [lo, hi) =========|--- raw ---|
--
-- A window shorter than 3 hours (or whose buckets no rollup can serve)
-- gets lo = hi = to_time: it is read raw, as before, and prunes to its
-- partitions.  Rollup buckets start on the same UTC origin as _bucket(),
-- so a rollup bucket lies in exactly one output bucket whenever the output
-- bucket width is a multiple of w.
--
-- Why the figures are the same: the whole buckets are read from the live
-- views (rollup_1h_live and the others: the folded rows plus the events
-- after the rollup consumer's position, 60_rollups.sql), which count every
-- committed event once, late ones too; the rollups and the raw edges read
-- the same facts (15_event_facts.sql: failed, cost, duration).  Sums of
-- numeric are exact and associative, NULL-only parts stay NULL, so summing
-- per-bucket sums gives the figure summing the events gives.

-- Still LANGUAGE sql, STABLE, BEGIN ATOMIC and without SET, so they are
-- inlined as before and the raw edges prune partitions.
-- ===========================================================================

-- The rollup width that can serve output buckets of a given width: 1 hour
-- for multiples of an hour, 5 minutes (only where finest allows it) for
-- multiples of 5 minutes, NULL (read raw) for anything else.
CREATE FUNCTION runra_obs._rollup_width(bucket interval, finest interval)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE
               WHEN bucket <= interval '0' THEN NULL
               WHEN extract(epoch FROM bucket) % 3600 = 0 THEN interval '1 hour'
               WHEN finest = interval '5 minutes' AND extract(epoch FROM bucket) % 300 = 0
               THEN interval '5 minutes'
           END;
END;
COMMENT ON FUNCTION runra_obs._rollup_width(interval, interval) IS
    'Internal: the rollup width (1 hour, or 5 minutes if finest allows) whose buckets each fall in one bucket of the given width; NULL when none does';

-- Where the whole rollup buckets of width w in [from_time, to_time) begin:
-- from_time rounded up to w; to_time when the window is read raw (shorter
-- than 3 hours, or w NULL); -infinity for an unbounded start.  STABLE, not
-- IMMUTABLE, as timestamptz + interval is: an IMMUTABLE function with a
-- STABLE body would not be inlined.
CREATE FUNCTION runra_obs._rollup_lo(from_time timestamptz, to_time timestamptz, w interval)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE
               WHEN w IS NULL
                 OR coalesce(to_time, 'infinity') < coalesce(from_time, '-infinity') + interval '3 hours'
               THEN coalesce(to_time, 'infinity')
               -- rounding up: the bucket of the last microsecond before from_time + w
               ELSE date_bin(w, coalesce(from_time, '-infinity') + w - interval '1 microsecond',
                             timestamptz '2000-01-01 00:00:00+00')
           END;
END;
COMMENT ON FUNCTION runra_obs._rollup_lo(timestamptz, timestamptz, interval) IS
    'Internal: start of the whole rollup buckets of width w in [from_time, to_time); to_time when the window is read raw';

-- Where they end: to_time rounded down to w; to_time when read raw.  (With
-- w at most an hour and the window at least 3 hours, lo < hi.)
CREATE FUNCTION runra_obs._rollup_hi(from_time timestamptz, to_time timestamptz, w interval)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE
               WHEN w IS NULL
                 OR coalesce(to_time, 'infinity') < coalesce(from_time, '-infinity') + interval '3 hours'
               THEN coalesce(to_time, 'infinity')
               ELSE date_bin(w, coalesce(to_time, 'infinity'), timestamptz '2000-01-01 00:00:00+00')
           END;
END;
COMMENT ON FUNCTION runra_obs._rollup_hi(timestamptz, timestamptz, interval) IS
    'Internal: end of the whole rollup buckets of width w in [from_time, to_time); to_time when the window is read raw';

-- ---------------------------------------------------------------------------
-- Costs: the raw edges through _cost_events, the whole hours from
-- rollup_1h_sandbox (cost_over_time counts sandboxes, so it needs the
-- per-sandbox rows, and reads raw when its buckets are not whole hours).
-- ---------------------------------------------------------------------------

-- The cost rows of the window: the events of the edges one by one, the
-- hours in between as one row per rollup row, in the columns of _cost_events.
CREATE FUNCTION runra_obs._cost_parts(from_time timestamptz, to_time timestamptz, w interval)
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
    FROM runra_obs.rollup_1h_sandbox_live AS r
    WHERE w = interval '1 hour'
      AND r.event_type IN ('cost.runtime', 'cost.storage', 'cost.total')
      AND r.bucket >= runra_obs._rollup_lo(from_time, to_time, w)
      AND r.bucket < runra_obs._rollup_hi(from_time, to_time, w);
END;
COMMENT ON FUNCTION runra_obs._cost_parts(timestamptz, timestamptz, interval) IS
    'Internal: the cost rows of [from_time, to_time): raw cost events at the edges, rollup_1h_sandbox rows for the whole hours (w = 1 hour; any other w reads raw)';

CREATE FUNCTION runra_obs.cost_per_sandbox(from_time timestamptz DEFAULT now() - interval '24 hours',
                                                      to_time timestamptz DEFAULT now())
RETURNS TABLE (sandbox_id text, runtime_cost numeric, storage_cost numeric,
               total_cost numeric, runtime_ms numeric, reported_total_cost numeric)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT sums.sandbox_id,
           sums.runtime_cost,
           sums.storage_cost,
           sums.runtime_cost + sums.storage_cost,
           sums.runtime_ms,
           sums.reported_total_cost
    FROM (
        SELECT c.sandbox_id,
               coalesce(sum(c.runtime_cost), 0) AS runtime_cost,
               coalesce(sum(c.storage_cost), 0) AS storage_cost,
               coalesce(sum(c.runtime_ms), 0) AS runtime_ms,
               sum(c.reported_total_cost) AS reported_total_cost
        FROM runra_obs._cost_parts(from_time, to_time, interval '1 hour') AS c
        GROUP BY c.sandbox_id
    ) AS sums
    ORDER BY 4 DESC, sums.sandbox_id;
END;
COMMENT ON FUNCTION runra_obs.cost_per_sandbox(timestamptz, timestamptz) IS
    'Per sandbox in [from_time, to_time): cost.runtime and cost.storage costs, their sum, runtime ms, and the cost.total the sandbox reported (never added to total_cost); whole hours of windows of 3 hours or more are read from rollup_1h_sandbox';

CREATE FUNCTION runra_obs.cost_over_time(from_time timestamptz DEFAULT now() - interval '24 hours',
                                                    to_time timestamptz DEFAULT now(),
                                                    bucket interval DEFAULT '1 hour')
RETURNS TABLE ("time" timestamptz, runtime_cost numeric, storage_cost numeric,
               total_cost numeric, reported_total_cost numeric, sandboxes bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT sums."time",
           sums.runtime_cost,
           sums.storage_cost,
           sums.runtime_cost + sums.storage_cost,
           sums.reported_total_cost,
           sums.sandboxes
    FROM (
        SELECT runra_obs._bucket(bucket, c."time") AS "time",
               coalesce(sum(c.runtime_cost), 0) AS runtime_cost,
               coalesce(sum(c.storage_cost), 0) AS storage_cost,
               sum(c.reported_total_cost) AS reported_total_cost,
               count(DISTINCT c.sandbox_id) AS sandboxes
        FROM runra_obs._cost_parts(from_time, to_time,
                                   runra_obs._rollup_width(cost_over_time.bucket, interval '1 hour')) AS c
        GROUP BY 1
    ) AS sums
    ORDER BY sums."time";
END;
COMMENT ON FUNCTION runra_obs.cost_over_time(timestamptz, timestamptz, interval) IS
    'Per time bucket in [from_time, to_time): cost.runtime and cost.storage costs, their sum, the reported cost.total, and how many sandboxes sent cost events; with buckets of whole hours, the whole hours of windows of 3 hours or more are read from rollup_1h_sandbox';

-- ---------------------------------------------------------------------------
-- Error rate: executions and failures per bucket, the whole buckets from
-- rollup_1h (buckets of whole hours) or rollup_5m (of whole 5 minutes).
-- ---------------------------------------------------------------------------

CREATE FUNCTION runra_obs.error_rate(from_time timestamptz DEFAULT now() - interval '24 hours',
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
            SELECT r.bucket, r.events, r.failures
            FROM runra_obs.rollup_1h_live AS r
            WHERE runra_obs._rollup_width(error_rate.bucket, interval '5 minutes') = interval '1 hour'
              AND r.event_type IN ('exec.completed', 'exec.failed', 'exec.timed_out')
              AND r.bucket >= runra_obs._rollup_lo(from_time, to_time, interval '1 hour')
              AND r.bucket < runra_obs._rollup_hi(from_time, to_time, interval '1 hour')
            UNION ALL
            SELECT r.bucket, r.events, r.failures
            FROM runra_obs.rollup_5m_live AS r
            WHERE runra_obs._rollup_width(error_rate.bucket, interval '5 minutes') = interval '5 minutes'
              AND r.event_type IN ('exec.completed', 'exec.failed', 'exec.timed_out')
              AND r.bucket >= runra_obs._rollup_lo(from_time, to_time, interval '5 minutes')
              AND r.bucket < runra_obs._rollup_hi(from_time, to_time, interval '5 minutes')
        ) AS x
        GROUP BY 1
    ) AS per_bucket
    ORDER BY per_bucket."time";
END;
COMMENT ON FUNCTION runra_obs.error_rate(timestamptz, timestamptz, interval) IS
    'Per time bucket in [from_time, to_time): executions, failures, failure rate, and whether it is above runra_obs.error_rate_threshold; the whole buckets of windows of 3 hours or more are read from rollup_1h or rollup_5m';

-- The reader gets the three functions, and the helpers too: a function
-- called inside an inlined function is checked against the caller.
REVOKE ALL ON FUNCTION runra_obs._rollup_width(interval, interval),
                       runra_obs._rollup_lo(timestamptz, timestamptz, interval),
                       runra_obs._rollup_hi(timestamptz, timestamptz, interval),
                       runra_obs._cost_parts(timestamptz, timestamptz, interval),
                       runra_obs.cost_per_sandbox(timestamptz, timestamptz),
                       runra_obs.cost_over_time(timestamptz, timestamptz, interval),
                       runra_obs.error_rate(timestamptz, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs._rollup_width(interval, interval),
                          runra_obs._rollup_lo(timestamptz, timestamptz, interval),
                          runra_obs._rollup_hi(timestamptz, timestamptz, interval),
                          runra_obs._cost_parts(timestamptz, timestamptz, interval),
                          runra_obs.cost_per_sandbox(timestamptz, timestamptz),
                          runra_obs.cost_over_time(timestamptz, timestamptz, interval),
                          runra_obs.error_rate(timestamptz, timestamptz, interval) TO runra_obs_reader;

-- ==== extension/parts/80_alerts.sql
-- ===========================================================================
-- Alerting, part 1: who may alert, contact points and rules.
--
-- A rule names a kind (error_rate, exec_timeouts, resource, cost_anomaly,
-- match, absence, query) and its parameters; the alert worker
-- (src/alert/alert_worker.c) evaluates it every `every`, turns each series
-- it finds into an alert instance (rule + labels) and keeps the instance's
-- state with Prometheus's semantics (82_alert_eval.sql); transitions are
-- sent to the rule's contact points (84_alert_notify.sql).
--
-- Only members of runra_obs_admin (and the owner) change rules and contact
-- points, through the functions below or by writing the tables directly:
-- either way a BEFORE trigger validates the row and stamps it with the role
-- that wrote it.  A query rule runs with that role's privileges, so
-- creating a rule is never a way to run SQL as the extension owner.
-- Readers see rules, states and history, never a contact point's secrets.
-- ===========================================================================

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'runra_obs_admin') THEN
        CREATE ROLE runra_obs_admin NOLOGIN;
    END IF;
END
$$;
COMMENT ON ROLE runra_obs_admin IS
    'Creates and changes runra_obs alert rules and contact points (and reads what runra_obs_reader reads)';
GRANT runra_obs_reader TO runra_obs_admin;

-- ---------------------------------------------------------------------------
-- Values in a rule's or contact point's options.
-- ---------------------------------------------------------------------------

-- An option given as a duration ("5 minutes", "30s", or seconds as a
-- number) as an interval, its default when absent, or a clear error.
CREATE FUNCTION runra_obs._alert_duration(what text, options jsonb, key text, default_value interval,
                                          low interval DEFAULT '0', high interval DEFAULT '400 days')
RETURNS interval
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v jsonb := options -> key;
    d interval;
BEGIN
    IF v IS NULL OR v = 'null' THEN
        RETURN default_value;
    END IF;
    BEGIN
        d := CASE jsonb_typeof(v)
                 WHEN 'number' THEN make_interval(secs => v::text::double precision)
                 WHEN 'string' THEN (v #>> '{}')::interval
             END;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow
                   OR numeric_value_out_of_range THEN
        d := NULL;
    END;
    IF d IS NULL OR d < low OR d > high THEN
        RAISE EXCEPTION 'option "%" of % must be a duration from % to %', key, what, low, high
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', v),
                  HINT = 'Give it as text such as "5 minutes" or "30s", or as a number of seconds.';
    END IF;
    RETURN d;
END
$$;

-- An option that must be a number in [low, high], its default when absent.
CREATE FUNCTION runra_obs._alert_number(what text, options jsonb, key text, default_value numeric,
                                        low numeric, high numeric)
RETURNS numeric
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v jsonb := options -> key;
BEGIN
    IF v IS NULL OR v = 'null' THEN
        RETURN default_value;
    END IF;
    IF jsonb_typeof(v) <> 'number' OR v::text::numeric NOT BETWEEN low AND high THEN
        RAISE EXCEPTION 'option "%" of % must be a number from % to %', key, what, low, high
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', v);
    END IF;
    RETURN v::text::numeric;
END
$$;

-- An option that must be one of `allowed`, its default when absent.
CREATE FUNCTION runra_obs._alert_choice(what text, options jsonb, key text, allowed text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v jsonb := options -> key;
BEGIN
    IF v IS NULL OR v = 'null' THEN
        RETURN allowed[1];
    END IF;
    IF jsonb_typeof(v) <> 'string' OR NOT (v #>> '{}') = ANY (allowed) THEN
        RAISE EXCEPTION 'option "%" of % must be one of %', key, what, array_to_string(allowed, ', ')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', v);
    END IF;
    RETURN v #>> '{}';
END
$$;

-- Raises a clear error unless every key of `given` is in `known`: a typo
-- in an option name must not pass as "not given".
CREATE FUNCTION runra_obs._alert_known_keys(what text, given jsonb, known text[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    unknown text;
BEGIN
    IF jsonb_typeof(given) <> 'object' THEN
        RAISE EXCEPTION 'the options of % must be a JSON object', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('They are %s.', given);
    END IF;
    SELECT k INTO unknown FROM jsonb_object_keys(given) AS k
    WHERE NOT k = ANY (known) ORDER BY k LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION '% has no option "%"', what, unknown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Its options are: %s.', array_to_string(known, ', '));
    END IF;
END
$$;

-- A map of names to strings (labels, annotations): names as Prometheus and
-- Alertmanager accept them, string values; '{}' when absent.  Labels may
-- not be alertname (the rule's name) or __name__.
CREATE FUNCTION runra_obs._alert_string_map(what text, noun text, map jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad text;
BEGIN
    IF map IS NULL OR map = 'null' THEN
        RETURN '{}';
    END IF;
    IF jsonb_typeof(map) <> 'object' THEN
        RAISE EXCEPTION 'the %s of % must be a JSON object of strings', noun, what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT e.key INTO bad FROM jsonb_each(map) AS e
    WHERE e.key !~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$' OR jsonb_typeof(e.value) <> 'string'
       OR (noun = 'label' AND e.key IN ('alertname', '__name__'))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% "%" of % is not allowed', noun, bad, what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('A %s name has letters, digits and "_" and does not start with a digit; its value is a string%s.',
                                  noun, CASE WHEN noun = 'label' THEN '; alertname is the rule''s name' ELSE '' END);
    END IF;
    RETURN map;
END
$$;

-- ---------------------------------------------------------------------------
-- Templates: annotations may use {{ value }}, {{ rule }}, {{ state }},
-- {{ labels.<name> }} and {{ values.<name>[.<name>...] }}.
-- ---------------------------------------------------------------------------

-- The pieces of a template in order: literal text (expr NULL) and each
-- {{ ... }}'s expression; a clear error, saying where, when it does not
-- parse.  The one definition of the template language: checking a
-- template and rendering it (_alert_template_set, _alert_annotate) both read
-- it through here.
CREATE FUNCTION runra_obs._alert_template_parts(what text, template text)
RETURNS TABLE (n integer, literal text, expr text)
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos integer := 1;
    open_at integer;
    close_at integer;
BEGIN
    n := 0;
    LOOP
        open_at := strpos(substr(template, pos), '{{');
        close_at := strpos(substr(template, pos), '}}');
        IF close_at > 0 AND (open_at = 0 OR close_at < open_at) THEN
            RAISE EXCEPTION 'template % does not parse: "}}" at character % closes nothing', what, pos + close_at - 1
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The template is %L.', template);
        END IF;
        EXIT WHEN open_at = 0;
        open_at := pos + open_at - 1;
        close_at := strpos(substr(template, open_at + 2), '}}');
        IF close_at = 0 THEN
            RAISE EXCEPTION 'template % does not parse: "{{" at character % is not closed', what, open_at
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The template is %L.', template);
        END IF;
        expr := substr(template, open_at + 2, close_at - 1);
        IF expr !~ '^\s*(value|rule|state|labels\.[A-Za-z_][A-Za-z0-9_]*|values(\.[A-Za-z_][A-Za-z0-9_]*)+)\s*$' THEN
            RAISE EXCEPTION 'template % does not parse: {{%}} at character % is not a value', what, expr, open_at
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The template is %L.', template),
                      HINT = 'A template may use {{ value }}, {{ rule }}, {{ state }}, {{ labels.<name> }} and {{ values.<name> }}.';
        END IF;
        n := n + 1;
        literal := substr(template, pos, open_at - pos);
        expr := btrim(expr);
        RETURN NEXT;
        pos := open_at + 2 + close_at + 1;
    END LOOP;
    n := n + 1;
    literal := substr(template, pos);
    expr := NULL;
    RETURN NEXT;
END
$$;

-- Raises a clear error, saying where, unless `template` parses.
CREATE FUNCTION runra_obs._alert_check_template(what text, template text)
RETURNS void
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT FROM runra_obs._alert_template_parts(what, template) HAVING count(*) > 0
$$;

-- A number as a person reads it in a message: no trailing zeros, at most
-- four decimals.
CREATE FUNCTION runra_obs._alert_format_number(value double precision)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN value IS NULL THEN ''
        WHEN value = 'NaN' OR value IN ('Infinity', '-Infinity') THEN value::text
        ELSE trim_scale(round(value::numeric, 4))::text
    END
$$;

-- What one template expression names for an instance ('' when it has no
-- such label or value, or for a piece of literal text, whose expr is NULL).
CREATE FUNCTION runra_obs._alert_template_value(expr text, rule_name text, state text,
                                                labels jsonb, value double precision, "values" jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(CASE jsonb_typeof(part)
                        WHEN 'string' THEN part #>> '{}'
                        WHEN 'number' THEN runra_obs._alert_format_number(part::text::double precision)
                        ELSE part::text
                    END, '')
    FROM (SELECT CASE
                     WHEN expr = 'value' THEN to_jsonb(runra_obs._alert_format_number(value))
                     WHEN expr = 'rule' THEN to_jsonb(rule_name)
                     WHEN expr = 'state' THEN to_jsonb(state)
                     WHEN expr LIKE 'labels.%' THEN labels -> substr(expr, 8)
                     ELSE "values" #> string_to_array(substr(expr, 8), '.')
                 END AS part) AS p
$$;

-- An annotation map: strings that parse as templates.
CREATE FUNCTION runra_obs._alert_check_annotations(what text, annotations jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
BEGIN
    annotations := runra_obs._alert_string_map(what, 'annotation', annotations);
    FOR a IN SELECT e.key, e.value FROM jsonb_each_text(annotations) AS e LOOP
        PERFORM runra_obs._alert_check_template(format('of annotation "%s" of %s', a.key, what), a.value);
    END LOOP;
    RETURN annotations;
END
$$;

-- ---------------------------------------------------------------------------
-- Contact points: where notifications go.
-- ---------------------------------------------------------------------------
CREATE TABLE runra_obs.contact_points (
    id           int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL UNIQUE,
    kind         text        NOT NULL,
    settings     jsonb       NOT NULL DEFAULT '{}',
    secrets      jsonb       NOT NULL DEFAULT '{}',
    handler      regprocedure,
    timeout_ms   integer     NOT NULL DEFAULT 10000,
    max_retry_ms bigint      NOT NULL DEFAULT 3600000,
    changed_by   regrole     NOT NULL DEFAULT current_user::regrole,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contact_points_name_check CHECK (name ~ '^[[:graph:]][[:print:]]{0,199}$'),
    CONSTRAINT contact_points_kind_check CHECK (kind IN ('slack', 'webhook', 'alertmanager', 'function')),
    CONSTRAINT contact_points_handler_check CHECK ((kind = 'function') = (handler IS NOT NULL)),
    CONSTRAINT contact_points_timeout_check CHECK (timeout_ms BETWEEN 100 AND 600000),
    CONSTRAINT contact_points_max_retry_check CHECK (max_retry_ms >= 0)
);
COMMENT ON TABLE runra_obs.contact_points IS
    'Where alert notifications are sent: Slack, a webhook (Grafana''s payload), Alertmanager or a SQL function; secrets readable by the extension owner only';
COMMENT ON COLUMN runra_obs.contact_points.settings IS
    'Options without secrets: resendInterval and resolvedResendFor (alertmanager), channel, username and iconEmoji (slack)';
COMMENT ON COLUMN runra_obs.contact_points.secrets IS
    'The URL and an Authorization header value, always written together (Slack''s URL is itself the secret)';
COMMENT ON COLUMN runra_obs.contact_points.handler IS
    'For kind function: called with each notification (jsonb), as the function''s owner';
COMMENT ON COLUMN runra_obs.contact_points.changed_by IS
    'The role that last wrote the row';

CREATE VIEW runra_obs.contact_point_list AS
SELECT id, name, kind, CASE WHEN kind <> 'slack' THEN secrets ->> 'url' END AS url,
       settings, handler::text AS handler, timeout_ms, max_retry_ms,
       secrets ? 'authorization' AS has_authorization,
       changed_by::text AS changed_by, created_at
FROM runra_obs.contact_points;
COMMENT ON VIEW runra_obs.contact_point_list IS
    'The alert contact points without their secrets (Slack''s URL, Authorization); a webhook''s or Alertmanager''s URL is shown';

-- The URL a contact point posts to: http:// or https:// with a host, no
-- control characters or spaces; a webhook's or Alertmanager's carries no
-- user name or password (readers see it in contact_point_list).
CREATE FUNCTION runra_obs._contact_point_check_url(what text, url text, key text, secret boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF url IS NULL THEN
        RAISE EXCEPTION '% needs option "%"', what, key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF url !~ '^https?://[^/?#[:space:][:cntrl:]]+[^[:space:][:cntrl:]]*$' THEN
        RAISE EXCEPTION 'option "%" of % must be an http:// or https:// URL', key, what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = CASE WHEN secret THEN 'The URL is a secret and is not shown.'
                                ELSE format('It is %s.', to_jsonb(url)) END;
    END IF;
    IF NOT secret AND url ~ '^https?://[^/?#]*@' THEN
        RAISE EXCEPTION 'option "%" of % must not hold a user name or password', key, what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Readers see the URL in runra_obs.contact_point_list.',
                  HINT = 'Give the credentials as "authorization" (the Authorization header''s value).';
    END IF;
END
$$;

-- A function contact point's handler: one jsonb argument, and a function
-- the writer could call as its owner themselves (it is a member of the
-- owner and may execute it), so naming it gains no privilege: the worker
-- calls it as its owner.
CREATE FUNCTION runra_obs._contact_point_check_handler(what text, handler regprocedure)
RETURNS regprocedure
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner regrole;
BEGIN
    SELECT p.proowner::regrole INTO owner FROM pg_proc AS p
    WHERE p.oid = handler AND p.pronargs = 1 AND p.proargtypes[0] = 'jsonb'::regtype AND p.prokind = 'f';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'handler % of % must be a function taking one jsonb argument', handler, what
            USING ERRCODE = 'invalid_function_definition';
    END IF;
    IF NOT pg_has_role(current_user, owner, 'USAGE') OR NOT has_function_privilege(current_user, handler, 'EXECUTE') THEN
        RAISE EXCEPTION 'role % may not make % the handler of %', current_user, handler, what
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The handler runs as its owner, %s; only its members may name it.', owner);
    END IF;
    RETURN handler;
END
$$;

-- Splits a contact point's config (the options a user gives) into the
-- row's settings, secrets and handler, refusing what is not valid.
CREATE FUNCTION runra_obs._contact_point_apply(cp runra_obs.contact_points, config jsonb)
RETURNS runra_obs.contact_points
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := format('contact point "%s"', cp.name);
    known text[] := CASE cp.kind
        WHEN 'slack' THEN '{url,channel,username,iconEmoji,timeoutMs,maxRetryMs}'
        WHEN 'webhook' THEN '{url,authorization,timeoutMs,maxRetryMs}'
        WHEN 'alertmanager' THEN '{url,authorization,resendInterval,resolvedResendFor,timeoutMs,maxRetryMs}'
        WHEN 'function' THEN '{handler,timeoutMs,maxRetryMs}'
    END;
    key text;
BEGIN
    IF known IS NULL THEN
        RAISE EXCEPTION 'contact point kind "%" is unknown', cp.kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are slack, webhook, alertmanager and function.';
    END IF;
    PERFORM runra_obs._alert_known_keys(what, config, known);
    cp.timeout_ms := runra_obs._alert_number(what, config, 'timeoutMs', 10000, 100, 600000);
    cp.max_retry_ms := runra_obs._alert_number(what, config, 'maxRetryMs', 3600000, 0, 9223372036854775807);
    cp.settings := '{}';
    cp.secrets := '{}';
    cp.handler := NULL;
    CASE cp.kind
    WHEN 'slack' THEN
        -- the URL holds the credential: a secret
        PERFORM runra_obs._contact_point_check_url(what, config ->> 'url', 'url', true);
        cp.secrets := jsonb_build_object('url', config ->> 'url');
        FOREACH key IN ARRAY '{channel,username,iconEmoji}'::text[] LOOP
            IF config ? key THEN
                PERFORM runra_obs._check_option(what, config, key, 'text');
                cp.settings := cp.settings || jsonb_build_object(key, config -> key);
            END IF;
        END LOOP;
    WHEN 'webhook', 'alertmanager' THEN
        -- the URL is kept with the secrets, so they are always written
        -- together: an admin who may not read the Authorization cannot
        -- point it at a server of their own
        PERFORM runra_obs._contact_point_check_url(what, config ->> 'url', 'url');
        cp.secrets := jsonb_build_object('url', config ->> 'url');
        IF config ? 'authorization' THEN
            PERFORM runra_obs._check_option(what, config, 'authorization', 'text');
            IF config ->> 'authorization' ~ '[[:cntrl:]]' THEN
                RAISE EXCEPTION 'option "authorization" of % must not hold control characters', what
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            cp.secrets := cp.secrets || jsonb_build_object('authorization', config ->> 'authorization');
        END IF;
        IF cp.kind = 'alertmanager' THEN
            cp.settings := cp.settings || jsonb_build_object(
                'resendInterval',
                extract(epoch FROM runra_obs._alert_duration(what, config, 'resendInterval', '1 minute', '1 second', '1 day'))::double precision,
                'resolvedResendFor',
                extract(epoch FROM runra_obs._alert_duration(what, config, 'resolvedResendFor', '15 minutes', '0', '1 day'))::double precision);
        END IF;
    WHEN 'function' THEN
        PERFORM runra_obs._check_option(what, config, 'handler', 'text', true);
        cp.handler := runra_obs._contact_point_check_handler(what, (config ->> 'handler')::regprocedure);
    END CASE;
    RETURN cp;
END
$$;

-- The rule that notifies contact point `name`, if one does.
CREATE FUNCTION runra_obs._contact_point_user(name text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.name FROM runra_obs.alert_rules AS r WHERE $1 = ANY (r.contact_points) ORDER BY r.name LIMIT 1
$$;

-- Every write of a contact point, through the functions or straight into
-- the table: the row is checked again as a config (settings, secrets,
-- handler and limits together, as _contact_point_apply() reads them) and
-- the writer recorded; a contact point a rule notifies is not renamed or
-- removed under it.
CREATE FUNCTION runra_obs._contact_point_stamp()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    user_rule text;
BEGIN
    IF TG_OP <> 'INSERT' AND (TG_OP = 'DELETE' OR NEW.name <> OLD.name) THEN
        user_rule := runra_obs._contact_point_user(OLD.name);
        IF user_rule IS NOT NULL THEN
            RAISE EXCEPTION 'contact point "%" is used by alert rule "%"', OLD.name, user_rule
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Change the rules that notify it first.';
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
    END IF;
    NEW := runra_obs._contact_point_apply(NEW, NEW.settings || NEW.secrets
        || jsonb_strip_nulls(jsonb_build_object('handler', NEW.handler::text,
                                                'timeoutMs', NEW.timeout_ms,
                                                'maxRetryMs', NEW.max_retry_ms)));
    NEW.changed_by := current_user::regrole;
    RETURN NEW;
END
$$;
CREATE TRIGGER contact_points_stamp BEFORE INSERT OR UPDATE OR DELETE ON runra_obs.contact_points
    FOR EACH ROW EXECUTE FUNCTION runra_obs._contact_point_stamp();

CREATE FUNCTION runra_obs.add_contact_point(name text, kind text, config jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cp runra_obs.contact_points;
BEGIN
    cp.name := name;
    cp.kind := kind;
    cp := runra_obs._contact_point_apply(cp, coalesce(config, '{}'));
    INSERT INTO runra_obs.contact_points (name, kind, settings, secrets, handler, timeout_ms, max_retry_ms)
    VALUES (cp.name, cp.kind, cp.settings, cp.secrets, cp.handler, cp.timeout_ms, cp.max_retry_ms);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'contact point "%" already exists', name
        USING ERRCODE = 'duplicate_object',
              HINT = 'Use runra_obs.change_contact_point() to change it.';
END
$$;
COMMENT ON FUNCTION runra_obs.add_contact_point(text, text, jsonb) IS
    'Adds a contact point: kind slack {url}, webhook {url, authorization}, alertmanager {url, authorization, resendInterval, resolvedResendFor} or function {handler}; timeoutMs, maxRetryMs';

-- The contact point called `name`, or a clear error.
CREATE FUNCTION runra_obs._contact_point(name text)
RETURNS runra_obs.contact_points
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    cp runra_obs.contact_points;
BEGIN
    -- not the secrets: admins may write them, never read them
    SELECT c.id, c.name, c.kind, c.settings, c.handler, c.timeout_ms, c.max_retry_ms
    INTO cp.id, cp.name, cp.kind, cp.settings, cp.handler, cp.timeout_ms, cp.max_retry_ms
    FROM runra_obs.contact_points AS c WHERE c.name = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact point "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN cp;
END
$$;

CREATE FUNCTION runra_obs.change_contact_point(name text, config jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    cp runra_obs.contact_points := runra_obs._contact_point(name);
BEGIN
    cp := runra_obs._contact_point_apply(cp, config);
    UPDATE runra_obs.contact_points AS c
    SET settings = cp.settings, secrets = cp.secrets, handler = cp.handler,
        timeout_ms = cp.timeout_ms, max_retry_ms = cp.max_retry_ms
    WHERE c.id = cp.id;
END
$$;
COMMENT ON FUNCTION runra_obs.change_contact_point(text, jsonb) IS
    'Replaces a contact point''s options (the whole config, secrets included)';

CREATE FUNCTION runra_obs.remove_contact_point(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    -- refused by the trigger while a rule notifies it
    DELETE FROM runra_obs.contact_points AS c WHERE c.id = (runra_obs._contact_point(name)).id;
END
$$;
COMMENT ON FUNCTION runra_obs.remove_contact_point(text) IS
    'Removes a contact point that no rule notifies, with its queued notifications';

-- ---------------------------------------------------------------------------
-- Rules.
-- ---------------------------------------------------------------------------
CREATE TABLE runra_obs.alert_rules (
    id               int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text        NOT NULL UNIQUE,
    kind             text        NOT NULL,
    params           jsonb       NOT NULL DEFAULT '{}',
    every            interval    NOT NULL DEFAULT '1 minute',
    for_duration     interval    NOT NULL DEFAULT '0',
    keep_firing_for  interval    NOT NULL DEFAULT '0',
    labels           jsonb       NOT NULL DEFAULT '{}',
    annotations      jsonb       NOT NULL DEFAULT '{}',
    contact_points   text[]      NOT NULL DEFAULT '{}',
    no_data          text        NOT NULL DEFAULT 'ok',
    evaluation_delay interval    NOT NULL DEFAULT '0',
    repeat_interval  interval,
    notify_resolved  boolean     NOT NULL DEFAULT true,
    max_instances    integer     NOT NULL DEFAULT 1000,
    paused           boolean     NOT NULL DEFAULT false,
    owner            regrole     NOT NULL DEFAULT current_user::regrole,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_rules_name_check CHECK (name ~ '^[[:graph:]][[:print:]]{0,199}$'),
    CONSTRAINT alert_rules_kind_check
        CHECK (kind IN ('error_rate', 'exec_timeouts', 'resource', 'cost_anomaly', 'match', 'absence', 'query')),
    CONSTRAINT alert_rules_every_check CHECK (every BETWEEN interval '1 second' AND interval '1 day'),
    CONSTRAINT alert_rules_for_check CHECK (for_duration >= '0' AND keep_firing_for >= '0'),
    CONSTRAINT alert_rules_no_data_check CHECK (no_data IN ('ok', 'alerting', 'keep_state')),
    CONSTRAINT alert_rules_delay_check CHECK (evaluation_delay BETWEEN interval '0' AND interval '1 day'),
    CONSTRAINT alert_rules_repeat_check CHECK (repeat_interval >= interval '1 minute'),
    CONSTRAINT alert_rules_max_instances_check CHECK (max_instances BETWEEN 1 AND 100000)
);
COMMENT ON TABLE runra_obs.alert_rules IS
    'Alert rules: what to watch (kind, params), how often, for how long before firing, and whom to tell';
COMMENT ON COLUMN runra_obs.alert_rules.params IS
    'The kind''s parameters, with their defaults filled in (see the README''s alerting section)';
COMMENT ON COLUMN runra_obs.alert_rules.for_duration IS
    'How long a series must be active before its alert fires (pending until then; Prometheus''s "for")';
COMMENT ON COLUMN runra_obs.alert_rules.keep_firing_for IS
    'How long a firing alert keeps firing after its series stopped being active';
COMMENT ON COLUMN runra_obs.alert_rules.no_data IS
    'When the rule finds no data at all: ok (resolve), alerting (one alert labelled no_data), keep_state';
COMMENT ON COLUMN runra_obs.alert_rules.evaluation_delay IS
    'Windows end this long before the evaluation time, so late events are in them';
COMMENT ON COLUMN runra_obs.alert_rules.repeat_interval IS
    'Notify again while firing at this interval (NULL: only on firing and resolved)';
COMMENT ON COLUMN runra_obs.alert_rules.notify_resolved IS
    'Whether Slack, webhook and function contact points hear of resolved alerts (Alertmanager always does: it ends them); false by default for match rules';
COMMENT ON COLUMN runra_obs.alert_rules.owner IS
    'The role that wrote the rule''s SQL (or created it): a query rule runs with its privileges';
GRANT SELECT ON runra_obs.alert_rules TO runra_obs_reader;

-- The runtime side of each rule, written by the alert worker alone.
CREATE TABLE runra_obs.alert_rule_runs (
    rule_id          int         PRIMARY KEY REFERENCES runra_obs.alert_rules ON DELETE CASCADE,
    next_eval_at     timestamptz NOT NULL,
    last_eval_at     timestamptz,
    last_duration_ms double precision,
    health           text        NOT NULL DEFAULT 'unknown',
    last_error       text,
    error_since      timestamptz,
    evaluations      bigint      NOT NULL DEFAULT 0,
    failures         bigint      NOT NULL DEFAULT 0,
    CONSTRAINT alert_rule_runs_health_check CHECK (health IN ('unknown', 'ok', 'nodata', 'error'))
);
CREATE INDEX alert_rule_runs_due_idx ON runra_obs.alert_rule_runs (next_eval_at);
COMMENT ON TABLE runra_obs.alert_rule_runs IS
    'When each alert rule is evaluated next, how its last evaluation went (health, error), and counters';
GRANT SELECT ON runra_obs.alert_rule_runs TO runra_obs_reader;

-- A rule kind's params with their defaults filled in, or a clear error.
-- Durations are kept as seconds.
CREATE FUNCTION runra_obs._alert_check_params(rule_name text, kind text, params jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := format('%s rule "%s"', kind, rule_name);
    p jsonb := coalesce(params, '{}');
    window_s double precision;
BEGIN
    PERFORM runra_obs._alert_known_keys(what, p, CASE kind
        WHEN 'error_rate' THEN '{threshold,window,by,minExecutions}'
        WHEN 'exec_timeouts' THEN '{above,window,by}'
        WHEN 'resource' THEN '{resource,abovePercent,window}'
        WHEN 'cost_anomaly' THEN '{window,days,tolerance,minCost,by}'
        WHEN 'match' THEN '{eventTypes,condition,failed,by}'
        WHEN 'absence' THEN '{scope,duration,lookback}'
        WHEN 'query' THEN '{sql,above}'
    END::text[]);
    window_s := extract(epoch FROM runra_obs._alert_duration(what, p, 'window',
        CASE kind WHEN 'cost_anomaly' THEN interval '1 hour' ELSE interval '5 minutes' END,
        '1 second', '7 days'));
    CASE kind
    WHEN 'error_rate' THEN
        RETURN jsonb_build_object(
            'threshold', runra_obs._alert_number(what, p, 'threshold', 0.05, 0, 1),
            'window', window_s,
            'by', runra_obs._alert_choice(what, p, 'by', '{fleet,sandbox,command}'),
            'minExecutions', runra_obs._alert_number(what, p, 'minExecutions', 1, 1, 1e9));
    WHEN 'exec_timeouts' THEN
        RETURN jsonb_build_object(
            'above', runra_obs._alert_number(what, p, 'above', 0, 0, 1e12),
            'window', window_s,
            'by', runra_obs._alert_choice(what, p, 'by', '{fleet,sandbox,command}'));
    WHEN 'resource' THEN
        RETURN jsonb_build_object(
            'resource', runra_obs._alert_choice(what, p, 'resource', '{memory,disk,cpu}'),
            'abovePercent', runra_obs._alert_number(what, p, 'abovePercent', 90, 0, 1000),
            'window', window_s);
    WHEN 'cost_anomaly' THEN
        RETURN jsonb_build_object(
            'window', window_s,
            'days', runra_obs._alert_number(what, p, 'days', 7, 1, 28),
            'tolerance', runra_obs._alert_number(what, p, 'tolerance', 0.5, 0, 1e6),
            'minCost', runra_obs._alert_number(what, p, 'minCost', 0, 0, 1e15),
            'by', runra_obs._alert_choice(what, p, 'by', '{fleet,sandbox}'));
    WHEN 'match' THEN
        RETURN runra_obs._alert_check_match(what, p);
    WHEN 'absence' THEN
        IF NOT p ? 'duration' THEN
            RAISE EXCEPTION '% needs option "duration"', what
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'How long without events before it alerts, such as "10 minutes".';
        END IF;
        RETURN jsonb_build_object(
            'scope', runra_obs._alert_choice(what, p, 'scope', '{fleet,sandbox}'),
            'duration', extract(epoch FROM runra_obs._alert_duration(what, p, 'duration', NULL, '1 second', '30 days'))::double precision,
            'lookback', extract(epoch FROM runra_obs._alert_duration(what, p, 'lookback', '24 hours', '1 minute', '7 days'))::double precision);
    WHEN 'query' THEN
        PERFORM runra_obs._check_option(what, p, 'sql', 'text', true);
        RETURN jsonb_strip_nulls(jsonb_build_object(
            'sql', p -> 'sql',
            'above', runra_obs._alert_number(what, p, 'above', NULL, '-1e300', '1e300')));
    ELSE
        RAISE EXCEPTION 'alert rule kind "%" is unknown', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are error_rate, exec_timeouts, resource, cost_anomaly, match, absence and query.';
    END CASE;
END
$$;

-- A match rule's params: event type globs, an optional jsonpath predicate
-- on data, an optional failed filter, the labels to group by.
CREATE FUNCTION runra_obs._alert_check_match(what text, p jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    globs text[];
    group_by text[];
BEGIN
    IF jsonb_typeof(p -> 'eventTypes') IS DISTINCT FROM 'array' OR jsonb_array_length(p -> 'eventTypes') = 0
       OR EXISTS (SELECT FROM jsonb_array_elements(p -> 'eventTypes') AS g WHERE jsonb_typeof(g) <> 'string') THEN
        RAISE EXCEPTION '% needs option "eventTypes", a list of event types or patterns', what
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ["exec.completed"] or ["*.failed"].';
    END IF;
    globs := ARRAY(SELECT jsonb_array_elements_text(p -> 'eventTypes'));
    PERFORM runra_obs._glob_to_like(g) FROM unnest(globs) AS g;
    IF p ? 'condition' THEN
        PERFORM runra_obs._check_option(what, p, 'condition', 'text', true);
        BEGIN
            PERFORM (p ->> 'condition')::jsonpath;
        EXCEPTION WHEN syntax_error OR invalid_text_representation THEN
            RAISE EXCEPTION 'option "condition" of % is not a jsonpath predicate: %', what, SQLERRM
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('It is %s.', p -> 'condition'),
                      HINT = 'It is matched against the event''s data, such as "$.exitCode != 0".';
        END;
    END IF;
    IF p ? 'failed' AND jsonb_typeof(p -> 'failed') <> 'boolean' THEN
        RAISE EXCEPTION 'option "failed" of % must be true or false', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    group_by := CASE WHEN p ? 'by' THEN ARRAY(SELECT jsonb_array_elements_text(p -> 'by'))
                     ELSE '{sandbox_id,event_type}' END;
    IF jsonb_typeof(p -> 'by') IS DISTINCT FROM 'array' AND p ? 'by'
       OR NOT group_by <@ '{sandbox_id,event_type,command,agent_id}'::text[] THEN
        RAISE EXCEPTION 'option "by" of % must list labels from sandbox_id, event_type, command, agent_id', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', p -> 'by');
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'eventTypes', to_jsonb(globs),
        'condition', p -> 'condition',
        'failed', p -> 'failed',
        'by', to_jsonb(group_by)));
END
$$;

-- Checks a query rule's SQL as the calling role (C): one SELECT that this
-- role may run, text columns for labels and one numeric column, the value.
CREATE FUNCTION runra_obs._alert_check_query(rule_name text, sql text)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'runra_alert_check_query';
COMMENT ON FUNCTION runra_obs._alert_check_query(text, text) IS
    'Internal: refuses a query rule''s SQL that is not one SELECT the caller may run, or whose columns are not labels and one number';

-- The series of a query rule (C): its SQL run as the rule's owner when the
-- caller is a superuser (the alert worker), else as the caller.
CREATE FUNCTION runra_obs._alert_query_series(rule_id integer)
RETURNS TABLE (labels jsonb, value double precision)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'runra_alert_query_series';
COMMENT ON FUNCTION runra_obs._alert_query_series(integer) IS
    'Internal: runs a query rule''s SQL (as its owner, never a superuser, for the alert worker; as the caller otherwise)';

-- Every write of a rule: its options checked (a direct INSERT too).  A
-- query rule runs with the privileges of its owner: the role that wrote
-- its SQL (on INSERT, or when the SQL or the kind changes; pausing or
-- relabelling someone's rule does not lend them your privileges).  A
-- superuser may not own one: its SQL would run as a superuser on a
-- search_path that anyone who may create in public could take over.
CREATE FUNCTION runra_obs._alert_rule_stamp()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := format('alert rule "%s"', NEW.name);
    missing text;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.kind <> OLD.kind OR NEW.params ->> 'sql' IS DISTINCT FROM OLD.params ->> 'sql' THEN
        NEW.owner := current_user::regrole;
    ELSE
        NEW.owner := OLD.owner;
    END IF;
    NEW.params := runra_obs._alert_check_params(NEW.name, NEW.kind, NEW.params);
    NEW.labels := runra_obs._alert_string_map(what, 'label', NEW.labels);
    NEW.annotations := runra_obs._alert_check_annotations(what, NEW.annotations);
    SELECT c INTO missing FROM unnest(NEW.contact_points) AS c
    WHERE NOT EXISTS (SELECT FROM runra_obs.contact_points AS p WHERE p.name = c) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'contact point "%" of % does not exist', missing, what
            USING ERRCODE = 'undefined_object',
                  HINT = 'Add it with runra_obs.add_contact_point() first.';
    END IF;
    IF NEW.kind = 'query' AND (TG_OP = 'INSERT' OR NEW.owner <> OLD.owner OR NEW.params <> OLD.params) THEN
        IF (SELECT rolsuper FROM pg_roles WHERE oid = NEW.owner) THEN
            RAISE EXCEPTION 'a superuser may not write the SQL of query rule "%"', NEW.name
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'A query rule runs with the privileges of the role that wrote its SQL.',
                      HINT = 'Write it as a role with only the privileges it needs, a member of runra_obs_admin.';
        END IF;
        PERFORM runra_obs._alert_check_query(NEW.name, NEW.params ->> 'sql');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER alert_rules_stamp BEFORE INSERT OR UPDATE ON runra_obs.alert_rules
    FOR EACH ROW EXECUTE FUNCTION runra_obs._alert_rule_stamp();

-- Where a new match rule starts reading the log: the published safe
-- watermark, or (before the workers published one) the newest event.
CREATE FUNCTION runra_obs._alert_log_head()
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest((SELECT l.watermark FROM runra_obs._watermark_lag(0) AS l),
                    (SELECT coalesce(max(e.id), 0) FROM runra_obs.sandbox_events AS e))
$$;

-- After a rule is written: its schedule (a new or changed rule is due at
-- once), a match rule's place in the log (a new or resumed one starts at
-- the present), and the worker woken.  Runs as the owner: admins may not
-- write the runtime tables.
CREATE FUNCTION runra_obs._alert_rule_schedule()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM runra_obs.consumers WHERE name = 'alert:' || OLD.id;
        RETURN NULL;
    END IF;
    INSERT INTO runra_obs.alert_rule_runs AS r (rule_id, next_eval_at) VALUES (NEW.id, now())
    ON CONFLICT (rule_id) DO UPDATE SET next_eval_at = now();
    IF NEW.kind = 'match' AND NOT NEW.paused
       AND (TG_OP = 'INSERT' OR OLD.kind <> 'match' OR OLD.paused) THEN
        INSERT INTO runra_obs.consumers AS c (name, position) VALUES ('alert:' || NEW.id, runra_obs._alert_log_head())
        ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, moved_at = now();
    ELSIF NEW.kind <> 'match' OR NEW.paused THEN
        -- a paused match rule is no consumer: it is not behind
        DELETE FROM runra_obs.consumers WHERE name = 'alert:' || NEW.id;
    END IF;
    PERFORM runra_obs._alert_wake();
    RETURN NULL;
END
$$;
CREATE TRIGGER alert_rules_schedule AFTER INSERT OR UPDATE OR DELETE ON runra_obs.alert_rules
    FOR EACH ROW EXECUTE FUNCTION runra_obs._alert_rule_schedule();

-- Wakes the alert worker when the calling transaction commits (C).
CREATE FUNCTION runra_obs._alert_wake()
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'runra_alert_wake';
COMMENT ON FUNCTION runra_obs._alert_wake() IS
    'Sets the alert worker''s latch when the calling transaction commits';

-- The options of create_alert() and change_alert() written into a rule.
CREATE FUNCTION runra_obs._alert_apply_options(r runra_obs.alert_rules, options jsonb)
RETURNS runra_obs.alert_rules
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := format('alert rule "%s"', r.name);
    o jsonb := coalesce(options, '{}');
BEGIN
    PERFORM runra_obs._alert_known_keys(what, o, '{every,for,keepFiringFor,labels,annotations,contactPoints,noData,evaluationDelay,repeatInterval,notifyResolved,maxInstances}');
    r.every := runra_obs._alert_duration(what, o, 'every', coalesce(r.every, '1 minute'), '1 second', '1 day');
    r.for_duration := runra_obs._alert_duration(what, o, 'for', coalesce(r.for_duration, '0'));
    r.keep_firing_for := runra_obs._alert_duration(what, o, 'keepFiringFor', coalesce(r.keep_firing_for, '0'));
    r.evaluation_delay := runra_obs._alert_duration(what, o, 'evaluationDelay', coalesce(r.evaluation_delay, '0'), '0', '1 day');
    IF o ? 'repeatInterval' THEN
        r.repeat_interval := runra_obs._alert_duration(what, o, 'repeatInterval', NULL, '1 minute', '30 days');
    END IF;
    IF o ? 'labels' THEN r.labels := o -> 'labels'; END IF;
    IF o ? 'annotations' THEN r.annotations := o -> 'annotations'; END IF;
    IF o ? 'contactPoints' THEN
        IF jsonb_typeof(o -> 'contactPoints') <> 'array'
           OR EXISTS (SELECT FROM jsonb_array_elements(o -> 'contactPoints') AS c WHERE jsonb_typeof(c) <> 'string') THEN
            RAISE EXCEPTION 'option "contactPoints" of % must be a list of contact point names', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        r.contact_points := ARRAY(SELECT jsonb_array_elements_text(o -> 'contactPoints'));
    END IF;
    IF o ? 'notifyResolved' THEN
        IF jsonb_typeof(o -> 'notifyResolved') <> 'boolean' THEN
            RAISE EXCEPTION 'option "notifyResolved" of % must be true or false', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        r.notify_resolved := (o ->> 'notifyResolved')::boolean;
    END IF;
    IF o ? 'noData' THEN r.no_data := runra_obs._alert_choice(what, o, 'noData', '{ok,alerting,keep_state}'); END IF;
    r.max_instances := runra_obs._alert_number(what, o, 'maxInstances', coalesce(r.max_instances, 1000), 1, 100000);
    RETURN r;
END
$$;

CREATE FUNCTION runra_obs.create_alert(name text, kind text, params jsonb DEFAULT '{}',
                                       options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r runra_obs.alert_rules;
BEGIN
    r.name := name;
    r := runra_obs._alert_apply_options(r, options);
    INSERT INTO runra_obs.alert_rules
        (name, kind, params, every, for_duration, keep_firing_for, labels, annotations,
         contact_points, no_data, evaluation_delay, repeat_interval, notify_resolved, max_instances)
    VALUES (name, kind, params, r.every, r.for_duration, r.keep_firing_for,
            coalesce(r.labels, '{}'), coalesce(r.annotations, '{}'), coalesce(r.contact_points, '{}'),
            coalesce(r.no_data, 'ok'), r.evaluation_delay, r.repeat_interval,
            coalesce(r.notify_resolved, kind IS DISTINCT FROM 'match'), r.max_instances);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'alert rule "%" already exists', name
        USING ERRCODE = 'duplicate_object',
              HINT = 'Use runra_obs.change_alert() to change it.';
END
$$;
COMMENT ON FUNCTION runra_obs.create_alert(text, text, jsonb, jsonb) IS
    'Creates an alert rule: a kind and its params; options every, for, keepFiringFor, labels, annotations, contactPoints, noData, evaluationDelay, repeatInterval, notifyResolved, maxInstances';

-- The rule called `name`, or a clear error.
CREATE FUNCTION runra_obs._alert_rule(name text)
RETURNS runra_obs.alert_rules
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r runra_obs.alert_rules;
BEGIN
    SELECT * INTO r FROM runra_obs.alert_rules AS a WHERE a.name = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert rule "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION runra_obs.change_alert(name text, params jsonb DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r runra_obs.alert_rules := runra_obs._alert_rule(name);
BEGIN
    r := runra_obs._alert_apply_options(r, options);
    UPDATE runra_obs.alert_rules AS a
    SET params = coalesce(params, a.params), every = r.every, for_duration = r.for_duration,
        keep_firing_for = r.keep_firing_for, labels = r.labels, annotations = r.annotations,
        contact_points = r.contact_points, no_data = r.no_data,
        evaluation_delay = r.evaluation_delay, repeat_interval = r.repeat_interval,
        notify_resolved = r.notify_resolved, max_instances = r.max_instances
    WHERE a.id = r.id;
END
$$;
COMMENT ON FUNCTION runra_obs.change_alert(text, jsonb, jsonb) IS
    'Changes an alert rule: new params (NULL: keep them) and the options given (the others are kept); whoever changes a query rule''s SQL becomes its owner';

-- Pauses (true) or resumes (false) the rule called `name`.
CREATE FUNCTION runra_obs._alert_set_paused(name text, paused boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    UPDATE runra_obs.alert_rules AS a SET paused = paused WHERE a.id = (runra_obs._alert_rule(name)).id;
END
$$;

CREATE FUNCTION runra_obs.pause_alert(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT runra_obs._alert_set_paused($1, true) $$;
COMMENT ON FUNCTION runra_obs.pause_alert(text) IS
    'Stops evaluating an alert rule; its alerts keep their state until it is resumed';

CREATE FUNCTION runra_obs.resume_alert(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT runra_obs._alert_set_paused($1, false) $$;
COMMENT ON FUNCTION runra_obs.resume_alert(text) IS
    'Evaluates a paused alert rule again (a match rule from the present: events that came while it was paused are not matched)';

CREATE FUNCTION runra_obs.remove_alert(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    DELETE FROM runra_obs.alert_rules AS a WHERE a.id = (runra_obs._alert_rule(name)).id;
END
$$;
COMMENT ON FUNCTION runra_obs.remove_alert(text) IS
    'Removes an alert rule with its states (its history and queued notifications stay)';

-- ==== extension/parts/82_alert_eval.sql
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

-- The fleet's cost (cost.runtime + cost.storage, as cost_per_sandbox()
-- adds them) and cost events in [from_time, to_time): the whole 5-minute
-- buckets from rollup_5m_live (exact to the last commit), the edges raw.
CREATE FUNCTION runra_obs._alert_fleet_cost(from_time timestamptz, to_time timestamptz,
                                            OUT cost numeric, OUT events bigint)
RETURNS record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
    SELECT coalesce(sum(p.cost), 0), coalesce(sum(p.events), 0)::bigint FROM parts AS p
$$;

-- Cost per group in [from_time, to_time): the fleet's from the 5-minute
-- rollups (_alert_fleet_cost), a sandbox's from its events (there is no
-- per-sandbox rollup finer than an hour).  No row for a group without cost
-- events.
CREATE FUNCTION runra_obs._alert_cost(group_by text, from_time timestamptz, to_time timestamptz)
RETURNS TABLE (labels jsonb, cost numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
          GROUP BY 1) AS g
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

-- ==== extension/parts/84_alert_notify.sql
-- ===========================================================================
-- Alerting, part 3: notifications.
--
-- An evaluation queues one notification per contact point of the rule when
-- something is worth telling: an alert fired or resolved, or (with
-- repeat_interval) alerts are still firing and were last told about that
-- long ago.  One notification carries every alert of the rule (a group,
-- as Grafana and Alertmanager group by alertname), so an error storm over
-- two thousand sandboxes is one message, not two thousand.
--
-- Alertmanager keeps no state of its own: as Prometheus does, its contact
-- points get the firing alerts again every resendInterval with an endsAt
-- ahead (four resend intervals or evaluation intervals, whichever is
-- longer), and resolved alerts, with their endsAt, for resolvedResendFor.
--
-- The alert worker sends what is queued (src/alert/alert_worker.c) with
-- the forwarders' transport and retry policy; a contact point that answers
-- a 4xx (other than 408 and 429) gets the notification dead-lettered with
-- its answer, the others are retried with backoff (and Retry-After) for
-- max_retry_ms.
-- ===========================================================================

CREATE TABLE runra_obs.alert_notifications (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_point_id int         NOT NULL REFERENCES runra_obs.contact_points ON DELETE CASCADE,
    rule_id          int         NOT NULL,
    rule_name        text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',
    body             jsonb       NOT NULL,
    created_at       timestamptz NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    done_at          timestamptz,
    last_error       text,
    answer           text,
    CONSTRAINT alert_notifications_status_check CHECK (status IN ('pending', 'sent', 'dead', 'superseded'))
);
CREATE INDEX alert_notifications_due_idx ON runra_obs.alert_notifications (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX alert_notifications_created_idx ON runra_obs.alert_notifications (created_at);
COMMENT ON TABLE runra_obs.alert_notifications IS
    'Notifications to contact points: pending (queued or being retried), sent, dead (refused, or failing past max_retry_ms; see requeue_alert_notifications()), or superseded (an Alertmanager one a newer one replaced before it was sent)';
COMMENT ON COLUMN runra_obs.alert_notifications.body IS
    'What is sent: Slack''s message, Grafana''s webhook payload (version 1), or Alertmanager''s list of alerts';
COMMENT ON COLUMN runra_obs.alert_notifications.answer IS
    'The contact point''s last answer body (at most 4 kB), for a dead letter its refusal';
GRANT SELECT ON runra_obs.alert_notifications TO runra_obs_reader;

-- When each rule last notified each contact point (repeats, resends).
CREATE TABLE runra_obs.alert_deliveries (
    rule_id          int         NOT NULL REFERENCES runra_obs.alert_rules ON DELETE CASCADE,
    contact_point_id int         NOT NULL REFERENCES runra_obs.contact_points ON DELETE CASCADE,
    last_queued_at   timestamptz NOT NULL,
    PRIMARY KEY (rule_id, contact_point_id)
);
COMMENT ON TABLE runra_obs.alert_deliveries IS
    'When each alert rule last queued a notification for each of its contact points';
GRANT SELECT ON runra_obs.alert_deliveries TO runra_obs_reader;

-- A time as the payloads write it: RFC 3339 in UTC.
CREATE FUNCTION runra_obs._alert_time(ts timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '0001-01-01T00:00:00Z')
$$;

-- The labels (or annotations) every alert of a group shares.
CREATE FUNCTION runra_obs._alert_common(maps jsonb[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}')
    FROM (SELECT kv.key, kv.value
          FROM unnest(maps) AS m, jsonb_each(m) AS kv
          GROUP BY kv.key, kv.value
          HAVING count(*) = cardinality(maps)) AS e
$$;

-- One alert in Grafana's webhook form (Alertmanager's fields and more).
CREATE FUNCTION runra_obs._alert_json(i runra_obs.alert_instances)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'status', CASE WHEN i.state = 'firing' THEN 'firing' ELSE 'resolved' END,
        'labels', i.labels,
        'annotations', i.annotations,
        'startsAt', runra_obs._alert_time(i.fired_at),
        'endsAt', runra_obs._alert_time(i.resolved_at),
        'generatorURL', '',
        'fingerprint', left(i.fingerprint, 16),
        'silenceURL', '',
        'dashboardURL', '',
        'panelURL', '',
        'values', jsonb_strip_nulls(jsonb_build_object('A', i.value)) || i."values",
        'valueString', format('[ var=''A'' labels=%s value=%s ]', i.labels, runra_obs._alert_format_number(i.value)))
$$;

-- The title of a group: "[FIRING:2] name" (and resolved ones).
CREATE FUNCTION runra_obs._alert_title(rule_name text, alerts jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN firing > 0
                THEN format('[FIRING:%s] %s', firing, rule_name)
                     || CASE WHEN resolved > 0 THEN format(' (%s resolved)', resolved) ELSE '' END
                ELSE format('[RESOLVED] %s', rule_name)
           END
    FROM (SELECT count(*) FILTER (WHERE a ->> 'status' = 'firing') AS firing,
                 count(*) FILTER (WHERE a ->> 'status' = 'resolved') AS resolved
          FROM jsonb_array_elements(alerts) AS a) AS n
$$;

-- Grafana's webhook payload, version 1, for the alerts of one rule (at
-- most 100; truncatedAlerts says how many more).
CREATE FUNCTION runra_obs._alert_webhook_body(cp runra_obs.contact_points, r runra_obs.alert_rules,
                                              alerts jsonb, truncated integer)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'receiver', cp.name,
        'status', CASE WHEN g.firing THEN 'firing' ELSE 'resolved' END,
        'orgId', 1,
        'alerts', alerts,
        'groupLabels', jsonb_build_object('alertname', r.name),
        'commonLabels', runra_obs._alert_common(ARRAY(SELECT a -> 'labels' FROM jsonb_array_elements(alerts) AS a)),
        'commonAnnotations', runra_obs._alert_common(ARRAY(SELECT a -> 'annotations' FROM jsonb_array_elements(alerts) AS a)),
        'externalURL', '',
        'version', '1',
        'groupKey', format('{}:{alertname=%s}', to_jsonb(r.name)),
        'truncatedAlerts', truncated,
        'title', runra_obs._alert_title(r.name, alerts),
        'state', CASE WHEN g.firing THEN 'alerting' ELSE 'ok' END,
        'message', runra_obs._alert_text(alerts, truncated))
    -- whether any alert of the group fires, asked once for status and state
    FROM (SELECT EXISTS (SELECT FROM jsonb_array_elements(alerts) AS a WHERE a ->> 'status' = 'firing') AS firing) AS g
$$;

-- The alerts of a group as lines of text: each one's summary (or its
-- labels), at most ten, then how many more.
CREATE FUNCTION runra_obs._alert_text(alerts jsonb, truncated integer)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%s: %s', upper(a ->> 'status'),
                             coalesce(a -> 'annotations' ->> 'summary', (a -> 'labels')::text)), E'\n' ORDER BY n)
           || CASE WHEN jsonb_array_length(alerts) + truncated > 10
                   THEN format(E'\n… and %s more', jsonb_array_length(alerts) + truncated - 10) ELSE '' END
    FROM jsonb_array_elements(alerts) WITH ORDINALITY AS x(a, n)
    WHERE n <= 10
$$;

-- Text as Slack's mrkdwn takes it literally: &, < and > escaped, so labels
-- and annotations that come from event data cannot mention @channel or
-- hide a link.
CREATE FUNCTION runra_obs._alert_slack_escape(value text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT replace(replace(replace(value, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')
$$;

-- A Slack incoming-webhook message: text (what notifications show) and
-- blocks (a header, one section per alert up to ten, a context line).
CREATE FUNCTION runra_obs._alert_slack_body(cp runra_obs.contact_points, r runra_obs.alert_rules,
                                            alerts jsonb, truncated integer)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'text', left(runra_obs._alert_slack_escape(runra_obs._alert_title(r.name, alerts) || E'\n'
                                                   || runra_obs._alert_text(alerts, truncated)), 3000),
        'channel', cp.settings -> 'channel',
        'username', cp.settings -> 'username',
        'icon_emoji', cp.settings -> 'iconEmoji',
        'blocks',
        jsonb_build_array(jsonb_build_object('type', 'header', 'text',
                jsonb_build_object('type', 'plain_text', 'text', left(runra_obs._alert_title(r.name, alerts), 150))))
        || coalesce((SELECT jsonb_agg(jsonb_build_object('type', 'section', 'text',
                         jsonb_build_object('type', 'mrkdwn', 'text', left(runra_obs._alert_slack_escape(format(E'*%s* %s\n%s',
                             upper(a ->> 'status'),
                             coalesce(a -> 'annotations' ->> 'summary', r.name),
                             (SELECT string_agg(format('`%s=%s`', l.key, l.value), ' ' ORDER BY l.key)
                              FROM jsonb_each_text(a -> 'labels') AS l WHERE l.key <> 'alertname'))), 3000))) ORDER BY n)
                     FROM jsonb_array_elements(alerts) WITH ORDINALITY AS x(a, n) WHERE n <= 10), '[]')
        || CASE WHEN jsonb_array_length(alerts) + truncated > 10
                THEN jsonb_build_array(jsonb_build_object('type', 'context', 'elements', jsonb_build_array(
                         jsonb_build_object('type', 'mrkdwn', 'text',
                             format('… and %s more', jsonb_array_length(alerts) + truncated - 10)))))
                ELSE '[]'::jsonb END))
$$;

-- Alertmanager's POST /api/v2/alerts body: the alerts, each with an endsAt
-- (ahead for a firing one, as Prometheus sends them).
CREATE FUNCTION runra_obs._alert_alertmanager_body(r runra_obs.alert_rules, at timestamptz, resend interval,
                                                   instances runra_obs.alert_instances[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'labels', i.labels,
               'annotations', i.annotations,
               'startsAt', runra_obs._alert_time(i.fired_at),
               'endsAt', runra_obs._alert_time(CASE WHEN i.state = 'firing'
                                                    THEN at + 4 * greatest(r.every, resend)
                                                    ELSE i.resolved_at END))
             ORDER BY i.fingerprint), '[]')
    FROM unnest(instances) AS i
$$;

-- Queues what rule `r`'s contact points must hear after the evaluation at
-- `at` (changed: the instances that fired or resolved in it), and forgets
-- resolved instances nobody needs any more.
CREATE FUNCTION runra_obs._alert_notify(r runra_obs.alert_rules, at timestamptz,
                                        changed runra_obs.alert_instances[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cp runra_obs.contact_points;
    last_queued timestamptz;
    resend interval;
    keep_resolved interval := '0';
    group_now runra_obs.alert_instances[];
    body jsonb;
BEGIN
    FOR cp IN SELECT * FROM runra_obs.contact_points AS c WHERE c.name = ANY (r.contact_points) ORDER BY c.id LOOP
        SELECT d.last_queued_at INTO last_queued FROM runra_obs.alert_deliveries AS d
        WHERE d.rule_id = r.id AND d.contact_point_id = cp.id;
        body := NULL;
        IF cp.kind = 'alertmanager' THEN
            resend := make_interval(secs => (cp.settings ->> 'resendInterval')::double precision);
            keep_resolved := greatest(keep_resolved,
                                      make_interval(secs => (cp.settings ->> 'resolvedResendFor')::double precision));
            group_now := ARRAY(
                SELECT i FROM runra_obs.alert_instances AS i
                WHERE i.rule_id = r.id
                  AND (i.state = 'firing'
                       OR (i.state = 'inactive'
                           AND i.resolved_at >= at - make_interval(secs => (cp.settings ->> 'resolvedResendFor')::double precision))));
            IF cardinality(changed) > 0
               OR (cardinality(group_now) > 0 AND (last_queued IS NULL OR last_queued <= at - resend)) THEN
                body := runra_obs._alert_alertmanager_body(r, at, resend, group_now);
            END IF;
        ELSE
            group_now := ARRAY(
                SELECT i FROM runra_obs.alert_instances AS i
                WHERE i.rule_id = r.id
                  AND (i.state = 'firing' OR (i.state = 'inactive' AND i.resolved_at = at AND r.notify_resolved))
                ORDER BY i.state, i.value DESC NULLS LAST, i.fingerprint);
            IF EXISTS (SELECT FROM unnest(changed) AS c WHERE c.state = 'firing' OR r.notify_resolved)
               OR (r.repeat_interval IS NOT NULL
                   AND EXISTS (SELECT FROM unnest(group_now) AS i WHERE i.state = 'firing')
                   AND (last_queued IS NULL OR last_queued <= at - r.repeat_interval)) THEN
                body := runra_obs._alert_group_body(cp, r, group_now);
            END IF;
        END IF;
        CONTINUE WHEN body IS NULL;
        IF cp.kind = 'alertmanager' THEN
            -- each carries the whole group as it is now: older ones are stale
            UPDATE runra_obs.alert_notifications AS n SET status = 'superseded', done_at = at
            WHERE n.contact_point_id = cp.id AND n.rule_id = r.id AND n.status = 'pending';
        END IF;
        INSERT INTO runra_obs.alert_notifications (contact_point_id, rule_id, rule_name, body, created_at, next_attempt_at)
        VALUES (cp.id, r.id, r.name, body, at, at);
        INSERT INTO runra_obs.alert_deliveries AS d (rule_id, contact_point_id, last_queued_at)
        VALUES (r.id, cp.id, at)
        ON CONFLICT (rule_id, contact_point_id) DO UPDATE SET last_queued_at = EXCLUDED.last_queued_at;
        UPDATE runra_obs.alert_instances AS i SET last_sent_at = at
        WHERE i.rule_id = r.id AND i.fingerprint IN (SELECT g.fingerprint FROM unnest(group_now) AS g);
    END LOOP;
    DELETE FROM runra_obs.alert_instances AS i
    WHERE i.rule_id = r.id AND i.state = 'inactive' AND i.resolved_at < at - keep_resolved + interval '1 microsecond';
END
$$;

-- The body for a Slack, webhook or function contact point: the first 100
-- alerts of the group (truncatedAlerts counts the rest).
CREATE FUNCTION runra_obs._alert_group_body(cp runra_obs.contact_points, r runra_obs.alert_rules,
                                            group_now runra_obs.alert_instances[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE cp.kind
        WHEN 'slack' THEN runra_obs._alert_slack_body(cp, r, alerts, truncated)
        ELSE runra_obs._alert_webhook_body(cp, r, alerts, truncated)
    END
    FROM (SELECT coalesce(jsonb_agg(runra_obs._alert_json(group_now[n]) ORDER BY n)
                              FILTER (WHERE n <= 100), '[]') AS alerts,
                 greatest(coalesce(cardinality(group_now), 0) - 100, 0) AS truncated
          FROM generate_subscripts(group_now, 1) AS n) AS g
$$;

-- ---------------------------------------------------------------------------
-- Delivery, for the alert worker.
-- ---------------------------------------------------------------------------

-- The notifications due at `at`: for each contact point and rule the oldest
-- pending one, when it is due and none of theirs is in flight (being sent),
-- so a contact point hears of a rule's alerts in the order they happened
-- (a retried FIRING never lands after the RESOLVED that followed it).
-- Where and how to send each.
CREATE FUNCTION runra_obs._alert_outbox(at timestamptz, max_notifications integer, in_flight bigint[] DEFAULT '{}')
RETURNS TABLE (id bigint, contact_point text, kind text, url text, authorization_header text,
               handler regprocedure, timeout_ms integer, body text, attempts integer, changed_by regrole)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.id, c.name, c.kind,
           CASE c.kind
               WHEN 'alertmanager' THEN runra_obs._url_or_path(c.secrets ->> 'url', '/api/v2/alerts')
               ELSE c.secrets ->> 'url'
           END,
           c.secrets ->> 'authorization', c.handler, c.timeout_ms, n.body::text, n.attempts, c.changed_by
    FROM (SELECT DISTINCT ON (p.contact_point_id, p.rule_id) p.*
          FROM runra_obs.alert_notifications AS p
          WHERE p.status = 'pending'
          ORDER BY p.contact_point_id, p.rule_id, p.id) AS n
    JOIN runra_obs.contact_points AS c ON c.id = n.contact_point_id
    WHERE n.next_attempt_at <= at
      AND NOT EXISTS (SELECT FROM runra_obs.alert_notifications AS f
                      WHERE f.id = ANY (in_flight) AND f.contact_point_id = n.contact_point_id
                        AND f.rule_id = n.rule_id)
    ORDER BY n.next_attempt_at, n.id
    LIMIT max_notifications
$$;

-- Records how an attempt went: sent (2xx), refused for good (dead at
-- once), or failed (tried again after retry_ms, dead past max_retry_ms).
CREATE FUNCTION runra_obs._alert_attempted(notification bigint, at timestamptz, outcome text,
                                           error text, answer text, retry_ms bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE runra_obs.alert_notifications AS n
    SET attempts = n.attempts + 1,
        status = CASE
            WHEN outcome = 'sent' THEN 'sent'
            WHEN outcome = 'refused' THEN 'dead'
            WHEN extract(epoch FROM at - n.created_at) * 1000 >= c.max_retry_ms THEN 'dead'
            ELSE 'pending' END,
        done_at = CASE WHEN outcome = 'sent' OR outcome = 'refused'
                         OR extract(epoch FROM at - n.created_at) * 1000 >= c.max_retry_ms THEN at END,
        next_attempt_at = at + make_interval(secs => coalesce(retry_ms, 0) / 1000.0),
        last_error = CASE
            WHEN outcome = 'sent' THEN NULL
            WHEN outcome = 'failed' AND extract(epoch FROM at - n.created_at) * 1000 >= c.max_retry_ms
            THEN format('still failing after %s ms (maxRetryMs): %s', c.max_retry_ms, error)
            ELSE error END,
        answer = left(_alert_attempted.answer, 4096)
    FROM runra_obs.contact_points AS c
    WHERE n.id = notification AND c.id = n.contact_point_id;
END
$$;

CREATE FUNCTION runra_obs.requeue_alert_notifications(contact_point text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE runra_obs.alert_notifications AS a
    SET status = 'pending', next_attempt_at = now(), created_at = now(), attempts = 0, done_at = NULL
    FROM runra_obs.contact_points AS c
    WHERE a.status = 'dead' AND c.id = a.contact_point_id
      AND (contact_point IS NULL OR c.name = contact_point);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM runra_obs._alert_wake();
    RETURN n;
END
$$;
COMMENT ON FUNCTION runra_obs.requeue_alert_notifications(text) IS
    'Sends the dead-lettered notifications (of one contact point, or all) again; returns how many';

-- Notifications and history past runra_obs.alert_retention (run_maintenance).
CREATE FUNCTION runra_obs._expire_alerts()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon timestamptz := now() - runra_obs.setting_interval('runra_obs.alert_retention');
    n1 bigint;
    n2 bigint;
BEGIN
    DELETE FROM runra_obs.alert_history WHERE at < horizon;
    GET DIAGNOSTICS n1 = ROW_COUNT;
    DELETE FROM runra_obs.alert_notifications WHERE created_at < horizon AND status <> 'pending';
    GET DIAGNOSTICS n2 = ROW_COUNT;
    RETURN n1 + n2;
END
$$;

-- ---------------------------------------------------------------------------
-- Who may do what.  Admins run the rule and contact point functions with
-- their own rights (the BEFORE triggers check and stamp what they write),
-- so they need the helpers those call; evaluation and delivery are the
-- worker's alone.  Readers see rules, states, history and notifications.
-- ---------------------------------------------------------------------------
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
        WHERE p.pronamespace = 'runra_obs'::regnamespace
          AND (p.proname LIKE '%alert%' OR p.proname LIKE '%contact_point%')
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
        WHERE p.pronamespace = 'runra_obs'::regnamespace
          AND (p.proname LIKE '%alert%' OR p.proname LIKE '%contact_point%')
          AND p.prorettype <> 'trigger'::regtype
          AND p.proname NOT IN ('_alert_evaluate', '_alert_failed', '_alert_due', '_alert_sleep_ms',
                                '_alert_outbox', '_alert_attempted', '_expire_alerts', '_alert_step',
                                '_alert_current', '_alert_notify', '_alert_transition', '_alert_ran',
                                '_alert_wake')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO runra_obs_admin', f);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION runra_obs._check_option(text, jsonb, text, text, boolean, numeric, numeric),
                          runra_obs._glob_to_like(text),
                          runra_obs._raw_size(jsonb)
    TO runra_obs_admin;
-- column by column: an id, an owner or a writer is never chosen by hand
GRANT SELECT, DELETE ON runra_obs.alert_rules TO runra_obs_admin;
GRANT INSERT (name, kind, params, every, for_duration, keep_firing_for, labels, annotations, contact_points,
              no_data, evaluation_delay, repeat_interval, notify_resolved, max_instances, paused),
      UPDATE (name, kind, params, every, for_duration, keep_firing_for, labels, annotations, contact_points,
              no_data, evaluation_delay, repeat_interval, notify_resolved, max_instances, paused)
    ON runra_obs.alert_rules TO runra_obs_admin;
GRANT SELECT (id, name, kind, settings, handler, timeout_ms, max_retry_ms, changed_by, created_at),
      INSERT (name, kind, settings, secrets, handler, timeout_ms, max_retry_ms),
      UPDATE (name, kind, settings, secrets, handler, timeout_ms, max_retry_ms),
      DELETE
    ON runra_obs.contact_points TO runra_obs_admin;
GRANT SELECT ON runra_obs.contact_point_list TO runra_obs_reader;

-- ==== extension/parts/99_finish.sql
-- ===========================================================================
-- Last: the partition window exists from the moment the extension is created.
-- (run_maintenance calls functions that later parts define, so it runs here.)
-- ===========================================================================
SELECT count(*) FROM runra_obs.run_maintenance();
