-- Partition maintenance: idempotent, reports what it did, follows the
-- settings, drops whole partitions past retention.
SELECT count(*) AS actions_when_nothing_to_do FROM runra_obs.run_maintenance();

-- widen premake: new partitions ahead, reported one per day
SET runra_obs.premake = '6d';
SELECT action, count(*) FROM runra_obs.run_maintenance() GROUP BY action;
SELECT max(upper) >= now() + interval '6 days' AS covers_new_premake FROM runra_obs.partitions;

-- shrink retention: old partitions are dropped, and their events with them
SET runra_obs.retention = '10d';
INSERT INTO runra_obs.sandbox_events (sandbox_id, event_type, created_at)
VALUES ('sb_old', 'exec.started', now() - interval '20 days');
SELECT action, count(*) FROM runra_obs.run_maintenance() GROUP BY action ORDER BY action;
SELECT min(lower) <= now() - interval '10 days' AND min(lower) > now() - interval '12 days'
       AS window_starts_at_retention
FROM runra_obs.partitions;
SELECT count(*) AS old_events_left FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_old';
-- the window is what ingest checks too
SELECT failed, failures->0->>'error' LIKE '%older than runra_obs.retention%' AS says_why
FROM runra_obs.ingest(jsonb_build_object(
    'timestamp', to_char((now() - interval '15 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'sandboxId', 'sb_old', 'type', 'exec.started'));

-- a gap (a partition someone dropped by hand) is refused with a clear
-- reason, and maintenance fills it again
SELECT partition AS today_partition FROM runra_obs.partitions
WHERE now() >= lower AND now() < upper \gset
DROP TABLE :today_partition;
SELECT failed, failures->0->>'error' LIKE '%has no partition%' AS says_why
FROM runra_obs.ingest(jsonb_build_object(
    'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'sandboxId', 'sb_gap', 'type', 'exec.started'));
SELECT action, count(*) FROM runra_obs.run_maintenance() GROUP BY action;
SELECT failed FROM runra_obs.ingest(jsonb_build_object(
    'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'sandboxId', 'sb_gap', 'type', 'exec.started'));

-- identifiers are quoted: the partition names are exactly as expected
SELECT bool_and(partition::text ~ '^runra_obs\.sandbox_events_\d{8}$') AS names_ok
FROM runra_obs.partitions;

-- old rejected events expire
INSERT INTO runra_obs.rejected_events (received_at, source, position, reason, raw)
VALUES (now() - interval '30 days', 'sql', 0, 'test', '{}');
SELECT action, detail FROM runra_obs.run_maintenance() WHERE action = 'expired';

-- back to the default window for the tests that follow
RESET runra_obs.premake;
RESET runra_obs.retention;
SELECT action, count(*) FROM runra_obs.run_maintenance() GROUP BY action;
DO $$
DECLARE p record;
BEGIN
    FOR p IN SELECT partition FROM runra_obs.partitions
             WHERE lower >= date_trunc('day', now() + interval '3 days', 'UTC') + interval '1 day'
    LOOP
        EXECUTE format('DROP TABLE %s', p.partition);
    END LOOP;
END
$$;
SELECT count(*) BETWEEN 33 AND 35 AS default_window_again FROM runra_obs.partitions;
