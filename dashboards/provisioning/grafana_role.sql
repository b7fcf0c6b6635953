-- The login role Grafana connects as: a member of runra_obs_reader, which
-- reads events, rollups and status views and nothing else.  Run as a
-- superuser, then set the password:  \password runra_obs_grafana
CREATE ROLE runra_obs_grafana LOGIN IN ROLE runra_obs_reader;
-- A dashboard query never needs more than this; a runaway one is stopped.
ALTER ROLE runra_obs_grafana SET statement_timeout = '30s';
ALTER ROLE runra_obs_grafana SET default_transaction_read_only = on;
