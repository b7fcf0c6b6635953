-- The SDK's Postgres exporter: INSERT INTO sandbox_events through a login
-- made by create_login().  A multi-row INSERT keeps its good rows, rejects
-- the bad ones into rejected_events with reasons, and writes with one COPY
-- at the end of the statement.  Times are relative to now, so the answers
-- are the same on any day.
SET client_min_messages = warning;

-- ---- create_login ---------------------------------------------------------
SELECT login,
       password ~ '^[0-9a-f]{64}$' AS password_is_hex,
       database_url ~ ('^postgresql://sdk_writer:' || password || '@[^:/]+:[0-9]+/contrib_regression$') AS url_ok
FROM runra_obs.create_login('sdk_writer');
SELECT login FROM runra_obs.create_login('sdk_reader', 'reader');

-- what each login gets at connection time
SELECT r.rolname, unnest(s.setconfig) AS setting
FROM pg_db_role_setting AS s JOIN pg_roles AS r ON r.oid = s.setrole
WHERE r.rolname IN ('sdk_writer', 'sdk_reader')
ORDER BY 1, 2;
SELECT r.rolname, g.rolname AS member_of, r.rolcanlogin
FROM pg_auth_members AS m
JOIN pg_roles AS r ON r.oid = m.member
JOIN pg_roles AS g ON g.oid = m.roleid
WHERE r.rolname IN ('sdk_writer', 'sdk_reader')
ORDER BY 1;

-- refused, each with a reason
SELECT runra_obs.create_login('sdk_writer');
SELECT runra_obs.create_login('bad name; drop', 'writer');
SELECT runra_obs.create_login('sdk_admin', 'superuser');
-- it runs with the caller's rights: a writer cannot make logins
SET ROLE sdk_writer;
SELECT runra_obs.create_login('sdk_sneaky', 'reader');
RESET ROLE;

-- ---- the exporter's INSERT, as the writer login sees it -------------------
SET ROLE sdk_writer;
SET search_path = runra_obs_sdk, runra_obs;
SET timezone = 'UTC';
SELECT to_char(date_trunc('hour', now()) - interval '1 hour', 'YYYY-MM-DD"T"HH24:MI:SS') AS t0,
       to_char(date_trunc('hour', now()) - interval '1 hour', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS t0z,
       to_char(date_trunc('hour', now()) - interval '1 hour', 'YYYY-MM-DD"T"HH24:MI:SS"+02:00"') AS t0p \gset

-- five rows: three good, then a bad type and a missing sandbox id
INSERT INTO sandbox_events (sandbox_id, event_type, data, created_at)
VALUES ('sb_sdk_1', 'exec.completed', '{"command":"npm test","exitCode":0,"durationMs":4521}', :'t0z'),
       ('sb_sdk_1', 'sandbox.paused', '{"runtimeDurationMs":120000}', :'t0p'),
       ('sb_sdk_2', 'exec.started', '{"command":"ls"}', :'t0z'),
       ('sb_sdk_2', 'Exec.Started', '{}', :'t0z'),
       (NULL, 'exec.started', '{}', :'t0z')
RETURNING sandbox_id, event_type, id IS NULL AS id_is_null;
RESET ROLE;

SELECT sandbox_id, event_type, (created_at AT TIME ZONE 'UTC') - :'t0'::timestamp AS after_t0, data
FROM runra_obs.sandbox_events WHERE sandbox_id LIKE 'sb_sdk_%' ORDER BY id;
SELECT source, position, reason FROM runra_obs.rejected_events
WHERE source = 'insert' ORDER BY id;

-- the seed's own query, through the writer's sandbox_events
SET ROLE sdk_writer;
SELECT sandbox_id, data->>'command' AS command, data->>'durationMs' AS duration_ms
FROM sandbox_events
WHERE event_type = 'exec.completed' AND (data->>'durationMs')::int > 4000
  AND sandbox_id LIKE 'sb_sdk_%'
ORDER BY created_at DESC LIMIT 20;

-- the same rules as every way in: nesting past runra_obs.max_json_depth
-- is refused here too, though jsonb itself would take it
INSERT INTO sandbox_events (sandbox_id, event_type, data, created_at)
VALUES ('sb_sdk_3', 'cost.runtime', (repeat('{"a":', 70) || '1' || repeat('}', 70))::jsonb, now()),
       ('sb_sdk_3', 'cost.runtime', '{"cost":0.25}', now());
-- id and ingested_at are the store's, not the writer's
INSERT INTO sandbox_events (id, sandbox_id, event_type, created_at)
VALUES (1, 'sb_sdk_3', 'exec.started', now());
RESET ROLE;
SELECT reason FROM runra_obs.rejected_events WHERE source = 'insert' AND position = 0
ORDER BY id DESC LIMIT 1;

-- ---- statements that fail or roll back keep nothing ----------------------
SET ROLE sdk_writer;
BEGIN;
INSERT INTO sandbox_events (sandbox_id, event_type, created_at)
VALUES ('sb_sdk_4', 'exec.started', now());
SAVEPOINT s;
INSERT INTO sandbox_events (sandbox_id, event_type, created_at)
VALUES ('sb_sdk_4', 'exec.failed', now());
ROLLBACK TO s;
-- a statement that errors after queueing rows: its rows go with it
SAVEPOINT t;
INSERT INTO sandbox_events (sandbox_id, event_type, data, created_at)
SELECT 'sb_sdk_4', 'exec.completed', jsonb_build_object('exitCode', 10 / (2 - g)), now()
FROM generate_series(1, 3) AS g;
ROLLBACK TO t;
INSERT INTO sandbox_events (sandbox_id, event_type, created_at)
VALUES ('sb_sdk_4', 'exec.timed_out', now());
COMMIT;
BEGIN;
INSERT INTO sandbox_events (sandbox_id, event_type, created_at)
VALUES ('sb_sdk_4', 'tool.failed', now());
ROLLBACK;
RESET ROLE;
SELECT event_type, data FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_sdk_4' ORDER BY id;

-- ---- a big statement: one write, every row ---------------------------------
SET ROLE sdk_writer;
INSERT INTO sandbox_events (sandbox_id, event_type, data, created_at)
SELECT 'sb_sdk_5_' || (g % 50), 'resource.memory',
       jsonb_build_object('memoryUsedMb', g % 512, 'memoryLimitMb', 512), now() - g * interval '1 ms'
FROM generate_series(1, 5000) AS g;
RESET ROLE;
SELECT count(*), count(DISTINCT sandbox_id), count(DISTINCT id)
FROM runra_obs.sandbox_events WHERE sandbox_id LIKE 'sb_sdk_5_%';

-- ---- the reader login reads the table itself -------------------------------
SET ROLE sdk_reader;
SELECT count(*) > 0 AS reads FROM runra_obs.sandbox_events WHERE sandbox_id LIKE 'sb_sdk_%';
INSERT INTO runra_obs_sdk.sandbox_events (sandbox_id, event_type, created_at)
VALUES ('sb_sdk_6', 'exec.started', now());
RESET ROLE;
RESET search_path;
RESET timezone;
DROP ROLE sdk_writer, sdk_reader;
