-- Shared by the sql/20_*.sql tests of the analyst's SQL API (included with
-- \i inside the test's transaction, which ends in ROLLBACK).
--
-- * A clean slate: whatever other tests stored is deleted (events and
--   their rollups), and comes back at the ROLLBACK.
-- * A fixed anchor: UTC midnight at the start of yesterday.  Events are
--   placed at anchor + offset (offsets in hours, never days, so no daylight
--   saving change can move them), and times are shown as offsets from the
--   anchor, so the expected output does not depend on today's date or on
--   pg_regress's TimeZone (PST8PDT).
DELETE FROM runra_obs.sandbox_events;
-- The API reads whole hours of long windows from the rollups, which a
-- DELETE of events does not change: clear them too.
DELETE FROM runra_obs.rollup_5m;
DELETE FROM runra_obs.rollup_1h;
DELETE FROM runra_obs.rollup_1h_sandbox;
SET LOCAL intervalstyle = 'postgres';

-- t(offset): anchor + offset.
CREATE FUNCTION pg_temp.t(since_anchor interval)
RETURNS timestamptz
LANGUAGE sql STABLE
AS $$ SELECT date_trunc('day', now(), 'UTC') - interval '24 hours' + since_anchor $$;

-- rel(ts): ts as an offset from the anchor (shown as HH:MM:SS).
CREATE FUNCTION pg_temp.rel(ts timestamptz)
RETURNS interval
LANGUAGE sql STABLE
AS $$ SELECT ts - pg_temp.t('0') $$;

-- ev(at, sandbox, type, data): one event as the Runra SDK sends it.
CREATE FUNCTION pg_temp.ev(at timestamptz, sandbox text, type text, data jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object(
        'timestamp', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'sandboxId', sandbox, 'type', type, 'data', data)
$$;
