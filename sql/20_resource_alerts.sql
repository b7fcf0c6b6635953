-- The analyst's SQL API: resource_alerts(), the seed's memory example
-- (usedPercent = used / limit * 100, alert when > 90) for memory and disk.
BEGIN;
\i test/analytics_fixture.sql

SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(pg_temp.t('12:00'), 'sb_m', 'resource.memory', '{"memoryUsedMb": 1900, "memoryLimitMb": 2048}'),
    pg_temp.ev(pg_temp.t('12:01'), 'sb_m', 'resource.memory', '{"memoryUsedMb": 1843, "memoryLimitMb": 2048}'),
    pg_temp.ev(pg_temp.t('12:02'), 'sb_m', 'resource.memory', '{"memoryUsedMb": 1843.2, "memoryLimitMb": 2048}'),
    pg_temp.ev(pg_temp.t('12:03'), 'sb_n', 'resource.memory', '{"memoryUsedMb": 2048, "memoryLimitMb": 2048}'),
    pg_temp.ev(pg_temp.t('12:04'), 'sb_m', 'resource.disk', '{"diskUsedMb": 9500, "diskLimitMb": 10000}'),
    pg_temp.ev(pg_temp.t('12:05'), 'sb_m', 'resource.disk', '{"diskUsedMb": 5000, "diskLimitMb": 0}'),
    pg_temp.ev(pg_temp.t('12:06'), 'sb_m', 'resource.memory', '{"memoryUsedMb": "lots", "memoryLimitMb": 100}'),
    pg_temp.ev(pg_temp.t('12:07'), 'sb_m', 'resource.cpu', '{"cpuPercent": 99, "cores": 2}'),
    pg_temp.ev(pg_temp.t('12:08'), 'sb_n', 'resource.disk', '{"diskUsedMb": "9100", "diskLimitMb": "10000"}'),
    pg_temp.ev(pg_temp.t('12:09'), 'sb_n', 'resource.memory', '{"memoryUsedMb": 2000}'),
    pg_temp.ev(pg_temp.t('13:00'), 'sb_m', 'resource.memory', '{"memoryUsedMb": 2000, "memoryLimitMb": 2048}'),
    pg_temp.ev(pg_temp.t('11:59:59'), 'sb_m', 'resource.disk', '{"diskUsedMb": 10000, "diskLimitMb": 10000}')));

-- Window [12:00, 13:00), threshold 90 %:
--   12:00 memory 1900 / 2048 = 92.7734375 %  -> alert (92.77)
--   12:01 memory 1843 / 2048 = 89.99 %       -> no
--   12:02 memory 1843.2 / 2048 = 90 % exactly -> no (above means more than)
--   12:03 memory 2048 / 2048 = 100 %         -> alert
--   12:04 disk 9500 / 10000 = 95 %           -> alert
--   12:05 disk limit 0, 12:06 "lots", 12:09 no limit: skipped, never an error
--   12:07 cpu: not a memory or disk sample
--   12:08 disk "9100" / "10000" = 91 %       -> alert
--   11:59:59 and 13:00 are outside the window
-- Newest first.
SELECT pg_temp.rel("time") AS at, sandbox_id, resource, used_mb, limit_mb, used_pct
FROM runra_obs.resource_alerts(90, pg_temp.t('12:00'), pg_temp.t('13:00'));

-- At 95 %: only 100 % (95 % itself is not above).
SELECT pg_temp.rel("time") AS at, resource, used_pct
FROM runra_obs.resource_alerts(95, pg_temp.t('12:00'), pg_temp.t('13:00'));

ROLLBACK;
