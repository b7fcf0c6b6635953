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
