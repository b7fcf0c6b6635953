-- ===========================================================================
-- Last: the partition window exists from the moment the extension is created.
-- (run_maintenance calls functions that later parts define, so it runs here.)
-- ===========================================================================
SELECT count(*) FROM runra_obs.run_maintenance();
