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
