-- The extension installs into a fresh database, with its partition window.
CREATE EXTENSION runra_obs;
SELECT count(*) BETWEEN 33 AND 35 AS window_days FROM runra_obs.partitions;
SELECT min(lower) <= now() - interval '30 days' AS covers_retention,
       max(upper) >= now() + interval '3 days' AS covers_premake
FROM runra_obs.partitions;
-- partitions are data, not extension members
SELECT count(*) AS member_partitions
FROM pg_depend d JOIN runra_obs.partitions p ON d.objid = p.partition
WHERE d.deptype = 'e';
