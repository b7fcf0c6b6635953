-- runra_obs 0.1.0 -> 0.2.0 (ALTER EXTENSION runra_obs UPDATE).
--
-- Every schema change made in extension/parts/ since 0.1.0, in the order it
-- was made, written so that a 0.1.0 database ends with exactly the catalog
-- a new 0.2.0 install has (t/003_upgrade.pl compares the two).
\echo Use "ALTER EXTENSION runra_obs UPDATE" to load this file. \quit
