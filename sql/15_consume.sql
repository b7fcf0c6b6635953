-- The event log and its consumers: the safe watermark, the consumers'
-- positions and their lag.  (Concurrent writers, kills and restarts are in
-- t/050_consume_watermark.pl; the rollup consumer's figures in 60_rollups.)

-- The insert writes the event and nothing else: no trigger on the table.
SELECT count(*) AS triggers_on_events
FROM pg_trigger
WHERE tgrelid = 'runra_obs.sandbox_events'::regclass AND NOT tgisinternal;

-- Ids are handed out one at a time, and there is an id index per partition.
SELECT seqcache, seqincrement FROM pg_sequence
WHERE seqrelid = 'runra_obs.sandbox_events_id_seq'::regclass;
SELECT count(*) = (SELECT count(*) FROM runra_obs.partitions) AS every_partition_has_an_id_index
FROM pg_index AS i
WHERE i.indkey::text = (SELECT attnum::text FROM pg_attribute
                        WHERE attrelid = 'runra_obs.sandbox_events'::regclass AND attname = 'id')
  AND i.indrelid IN (SELECT partition FROM runra_obs.partitions);

-- With nobody writing, the watermark is the sequence's last value.
SELECT runra_obs.ingest(jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_w', 'type', 'exec.started')) IS NOT NULL AS stored;
SELECT runra_obs.safe_watermark() = (SELECT last_value FROM runra_obs.sandbox_events_id_seq) AS watermark_is_last_id;

-- In a transaction that wrote events, its own uncommitted ids are below the
-- watermark it computes (a fold in it commits or rolls back with them).
-- (That it never publishes such a value is tested in t/050.)
BEGIN;
SELECT runra_obs.ingest(jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_w', 'type', 'exec.started')) IS NOT NULL AS stored;
SELECT runra_obs.safe_watermark() = (SELECT max(id) FROM runra_obs.sandbox_events) AS own_events_below;
COMMIT;

-- Ids are this database's own: only the database the workers serve
-- (runra_obs.database; here another one) publishes a watermark, so
-- consumer_status shows 0 here, and fold_rollups() waits for its own.
SELECT name, watermark, ids_behind, seconds_behind FROM runra_obs.consumer_status;
SELECT runra_obs.fold_rollups() = (SELECT last_value FROM runra_obs.sandbox_events_id_seq) AS folded_to_last_id;
SELECT name, position = (SELECT last_value FROM runra_obs.sandbox_events_id_seq) AS at_last_id
FROM runra_obs.consumer_status;

-- A sequence that caches ids would break the watermark: refused, with how
-- to fix it.
ALTER SEQUENCE runra_obs.sandbox_events_id_seq CACHE 20;
SELECT runra_obs.safe_watermark();
ALTER SEQUENCE runra_obs.sandbox_events_id_seq CACHE 1;

-- The reader sees positions and lag and may compute the watermark; only
-- the owner folds.
SET ROLE runra_obs_reader;
SELECT count(*) AS consumers FROM runra_obs.consumer_status;
SELECT runra_obs.safe_watermark() > 0 AS reader_watermark;
SELECT runra_obs.fold_rollups();
RESET ROLE;
