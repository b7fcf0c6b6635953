-- The analyst's SQL API: cost_per_sandbox() and cost_over_time().
-- total_cost is cost.runtime + cost.storage; cost.total is shown beside it as
-- reported_total_cost and never added in (see docs/analytics.md).
BEGIN;
\i test/analytics_fixture.sql

SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(pg_temp.t('01:00'), 'sb_a', 'cost.runtime', '{"durationMs": 60000, "rate": 0.0002, "cost": 0.012}'),
    pg_temp.ev(pg_temp.t('01:30'), 'sb_a', 'cost.runtime', '{"durationMs": 30000, "cost": 0.006}'),
    pg_temp.ev(pg_temp.t('02:10'), 'sb_a', 'cost.storage', '{"durationMs": 600000, "cost": 0.0015}'),
    pg_temp.ev(pg_temp.t('02:30'), 'sb_a', 'cost.total', '{"sandboxCost": 0.0195, "period": "1h"}'),
    pg_temp.ev(pg_temp.t('01:59:59.999999'), 'sb_b', 'cost.runtime', '{"durationMs": 120000, "cost": 0.024}'),
    pg_temp.ev(pg_temp.t('02:20'), 'sb_b', 'cost.runtime', '{"durationMs": "slow", "cost": "n/a"}'),
    pg_temp.ev(pg_temp.t('02:40'), 'sb_b', 'cost.storage', '{"durationMs": 5000, "cost": "0.004"}'),
    pg_temp.ev(pg_temp.t('03:00'), 'sb_b', 'cost.runtime', '{"durationMs": 1000, "cost": 0.05}'),
    pg_temp.ev(pg_temp.t('00:59:59'), 'sb_b', 'cost.runtime', '{"durationMs": 1000, "cost": 1}'),
    pg_temp.ev(pg_temp.t('01:15'), 'sb_c', 'cost.total', '{"sandboxCost": 0.5}'),
    pg_temp.ev(pg_temp.t('09:00'), 'sb_c', 'cost.total', '{"sandboxCost": 0.25}'),
    pg_temp.ev(pg_temp.t('01:20'), 'sb_c', 'exec.completed', '{"cost": 100}')));

-- Window [01:00, 03:00): the events at 01:00 are in, the ones at 00:59:59
-- and 03:00 are out, and the exec.completed is not a cost event.
--   sb_a: runtime 0.012 + 0.006 = 0.018, storage 0.0015, total 0.0195,
--         runtime_ms 60000 + 30000 = 90000, reported 0.0195 (not added)
--   sb_b: runtime 0.024 (the "n/a" cost and "slow" duration are skipped),
--         storage "0.004" = 0.004, total 0.028, runtime_ms 120000, reported NULL
--   sb_c: only cost.total: 0 / 0 / 0, runtime_ms 0, reported 0.5
-- Ordered by total_cost descending: sb_b, sb_a, sb_c.
SELECT * FROM runra_obs.cost_per_sandbox(pg_temp.t('01:00'), pg_temp.t('03:00'));

-- One-hour buckets over the same window:
--   01:00: runtime 0.012 + 0.006 (sb_a) + 0.024 (sb_b) = 0.042, storage 0,
--          total 0.042, reported 0.5 (sb_c at 01:15), sandboxes a, b, c = 3
--   02:00: runtime: only the "n/a" cost, skipped, so 0; storage 0.0015 +
--          0.004 = 0.0055, total 0.0055, reported 0.0195 (sb_a), sandboxes 2
-- The buckets add up to the sandboxes: 0.042 + 0.0055 = 0.0475
-- = 0.028 + 0.0195 + 0.
SELECT pg_temp.rel("time") AS bucket, runtime_cost, storage_cost, total_cost,
       reported_total_cost, sandboxes
FROM runra_obs.cost_over_time(pg_temp.t('01:00'), pg_temp.t('03:00'), '1 hour');
SELECT (SELECT sum(total_cost) FROM runra_obs.cost_over_time(pg_temp.t('01:00'), pg_temp.t('03:00'), '1 hour'))
     = (SELECT sum(total_cost) FROM runra_obs.cost_per_sandbox(pg_temp.t('01:00'), pg_temp.t('03:00')))
       AS buckets_add_up;

-- Day buckets are UTC days whatever the session's TimeZone: in pg_regress's
-- Los Angeles time the events from 00:59:59 to 09:00 UTC fall on two local
-- days (local midnight is 07:00 or 08:00 UTC), yet they form one bucket
-- starting at the anchor (offset 00:00).
SELECT count(DISTINCT date_trunc('day', created_at)) AS local_days,
       count(DISTINCT date_trunc('day', created_at, 'UTC')) AS utc_days
FROM runra_obs.sandbox_events;
-- NULL bounds mean unbounded, so every event counts:
--   runtime 0.012 + 0.006 + 0.024 + 0.05 + 1 = 1.092, storage 0.0055,
--   total 1.0975, reported 0.0195 + 0.5 + 0.25 = 0.7695, sandboxes 3
SELECT pg_temp.rel("time") AS bucket, runtime_cost, storage_cost, total_cost,
       reported_total_cost, sandboxes
FROM runra_obs.cost_over_time(NULL, NULL, '1 day');

-- Half-hour buckets: the bucket edges fall on :00 and :30.
--   01:00: 0.012 (sb_a 01:00), reported 0.5 (sb_c 01:15), sandboxes a, c = 2
--   01:30: 0.006 (sb_a 01:30) + 0.024 (sb_b 01:59:59.999999) = 0.030, sandboxes 2
--   02:00: 0.0015 (sb_a 02:10); sb_b's "n/a" at 02:20 adds nothing but
--          sb_b did send a cost event: sandboxes 2
--   02:30: 0.004 (sb_b 02:40), reported 0.0195 (sb_a 02:30), sandboxes 2
SELECT pg_temp.rel("time") AS bucket, total_cost, reported_total_cost, sandboxes
FROM runra_obs.cost_over_time(pg_temp.t('01:00'), pg_temp.t('03:00'), '30 minutes');

ROLLBACK;
