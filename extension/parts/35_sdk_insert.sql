-- ===========================================================================
-- The SDK's Postgres exporter, with nothing but a connection string.
--
-- The exporter runs INSERT INTO sandbox_events (...) VALUES (...), (...) in
-- batches, with an unqualified table name.  A login made by create_login()
-- has runra_obs_sdk first on its search_path, where sandbox_events is a view
-- over the event table: each row goes through the one validation (C,
-- sdk_insert.c), good rows are written together with one COPY when the
-- statement ends, bad rows go to rejected_events with their reasons.  One
-- bad event no longer fails its 99 neighbours, and the event table itself
-- keeps no trigger (the COPY path HTTP uses is unchanged).
-- ===========================================================================

CREATE SCHEMA runra_obs_sdk;
COMMENT ON SCHEMA runra_obs_sdk IS
    'Where the Runra SDK''s Postgres exporter writes: sandbox_events here validates each inserted row';
GRANT USAGE ON SCHEMA runra_obs_sdk TO runra_obs_writer;

-- The same columns and types as the table, so the seed's queries (which
-- filter on created_at and read data->>'...') also run through it; reading
-- is checked against the caller's own rights on the table.
CREATE VIEW runra_obs_sdk.sandbox_events
WITH (security_invoker = true) AS
SELECT id, created_at, sandbox_id, event_type, data, trace_id, ingested_at
FROM runra_obs.sandbox_events;
COMMENT ON VIEW runra_obs_sdk.sandbox_events IS
    'runra_obs.sandbox_events for the SDK''s Postgres exporter: a multi-row INSERT keeps its good rows and rejects the bad ones into runra_obs.rejected_events (source insert)';

-- Run as the extension's owner, like ingest(): the writer may add events
-- and rejected events through it, nothing else.
CREATE FUNCTION runra_obs_sdk._insert_row()
RETURNS trigger
LANGUAGE c
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'runra_sdk_insert_row';
COMMENT ON FUNCTION runra_obs_sdk._insert_row() IS
    'INSTEAD OF INSERT trigger of runra_obs_sdk.sandbox_events: validates one row and queues it for the statement''s write';

CREATE FUNCTION runra_obs_sdk._insert_statement()
RETURNS trigger
LANGUAGE c
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'runra_sdk_insert_statement';
COMMENT ON FUNCTION runra_obs_sdk._insert_statement() IS
    'AFTER INSERT statement trigger of runra_obs_sdk.sandbox_events: writes the rows the statement queued, with one COPY';

REVOKE ALL ON FUNCTION runra_obs_sdk._insert_row(), runra_obs_sdk._insert_statement() FROM PUBLIC;

CREATE TRIGGER insert_row
    INSTEAD OF INSERT ON runra_obs_sdk.sandbox_events
    FOR EACH ROW EXECUTE FUNCTION runra_obs_sdk._insert_row();
CREATE TRIGGER insert_statement
    AFTER INSERT ON runra_obs_sdk.sandbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION runra_obs_sdk._insert_statement();

-- As on the table: writers give the event's own columns; id and
-- ingested_at are the store's.
GRANT SELECT, INSERT (created_at, sandbox_id, event_type, data, trace_id)
    ON runra_obs_sdk.sandbox_events TO runra_obs_writer;

-- ---------------------------------------------------------------------------
-- create_login: a login role ready for the exporter (writer) or for
-- Grafana and analysts (reader), and the connection string to give it.
-- It runs with the caller's rights: only a role that may create roles can
-- use it, and it grants nothing the caller could not grant by hand.
-- ---------------------------------------------------------------------------
CREATE FUNCTION runra_obs.create_login(name text, access text DEFAULT 'writer',
                                       OUT login text, OUT password text,
                                       OUT database_url text)
RETURNS record
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    listen_first text := trim(split_part(current_setting('listen_addresses'), ',', 1));
BEGIN
    IF name !~ '^[A-Za-z_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'login name "%" is not a plain name', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use letters, digits, _, . and - (at most 63, starting with a letter or _), so the name needs no quoting in a connection URL.';
    END IF;
    IF access NOT IN ('writer', 'reader') THEN
        RAISE EXCEPTION 'access must be writer or reader, not "%"', access
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'writer: the SDK''s Postgres exporter, ingest(); reader: Grafana and the analysis API.';
    END IF;
    IF EXISTS (SELECT FROM pg_roles AS r WHERE r.rolname = name) THEN
        RAISE EXCEPTION 'role "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Choose another name, or give the existing role a password and settings by hand (README: "The SDK''s Postgres exporter").';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles AS r
                   WHERE r.rolname = current_user AND (r.rolsuper OR r.rolcreaterole)) THEN
        RAISE EXCEPTION 'permission denied to create login "%"', name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'create_login runs with your own rights: it needs a superuser or a role with CREATEROLE.';
    END IF;
    -- two version 4 UUIDs: 244 random bits, hex, safe in a URL
    password := replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    BEGIN
        EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE %I',
                       name, password, 'runra_obs_' || access);
    EXCEPTION WHEN OTHERS THEN
        -- raised again from here, so the statement (and the password in
        -- it) is not the error's context in the server log
        RAISE EXCEPTION '%', SQLERRM USING ERRCODE = SQLSTATE;
    END;
    IF access = 'writer' THEN
        -- sandbox_events resolves to the validating view; times the
        -- exporter sends without a zone are read as UTC, the store's zone
        EXECUTE format('ALTER ROLE %I SET search_path = runra_obs_sdk, runra_obs', name);
        EXECUTE format('ALTER ROLE %I SET timezone = %L', name, 'UTC');
    ELSE
        EXECUTE format('ALTER ROLE %I SET search_path = runra_obs', name);
    END IF;
    -- compiling the analysis queries costs seconds and saves nothing here
    EXECUTE format('ALTER ROLE %I SET jit = off', name);
    login := name;
    database_url := format('postgresql://%s:%s@%s:%s/%s', name, password,
                           -- the address this session came in on; over a
                           -- Unix socket, the first address the server listens on
                           coalesce(host(inet_server_addr()),
                                    CASE WHEN listen_first IN ('', '*', '0.0.0.0', '::') THEN 'localhost'
                                         ELSE listen_first END),
                           current_setting('port'),
                           (SELECT string_agg(CASE WHEN c ~ '^[A-Za-z0-9._~-]$' THEN c
                                                   ELSE upper(regexp_replace(encode(convert_to(c, 'UTF8'), 'hex'),
                                                                             '(..)', '%\1', 'g'))
                                              END, '' ORDER BY i)
                            FROM regexp_split_to_table(current_database(), '') WITH ORDINALITY AS t(c, i)));
END
$$;
COMMENT ON FUNCTION runra_obs.create_login(text, text) IS
    'Creates a login role (writer: the SDK''s Postgres exporter; reader: Grafana) with its search_path set, and returns its generated password and a DATABASE_URL; shown once';
