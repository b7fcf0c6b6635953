-- ===========================================================================
-- HTTP ingest: bearer tokens and idempotency keys.
--
-- The HTTP workers (src/ingest/) accept POST /v1/events from clients holding
-- a token made by runra_obs.create_ingest_token().  Only a SHA-256 hash of
-- each token is stored, in a table nobody but its owner can read.
-- ===========================================================================

CREATE TABLE runra_obs.ingest_tokens (
    name        text        PRIMARY KEY,
    token_hash  bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ingest_tokens_name_check
        CHECK (name <> '' AND octet_length(name) <= 128),
    CONSTRAINT ingest_tokens_hash_check
        CHECK (octet_length(token_hash) = 32)
);
COMMENT ON TABLE runra_obs.ingest_tokens IS
    'Bearer tokens of the HTTP ingest API: a name and the SHA-256 of the token (the token itself is never stored); owner only';
COMMENT ON COLUMN runra_obs.ingest_tokens.name IS 'Who the token is for; also scopes its Idempotency-Keys';
COMMENT ON COLUMN runra_obs.ingest_tokens.token_hash IS 'sha256 of the token text';
REVOKE ALL ON runra_obs.ingest_tokens FROM PUBLIC;

CREATE FUNCTION runra_obs.create_ingest_token(name text)
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- two version 4 UUIDs: 244 random bits from the server's strong random source
    token text := 'rro_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
BEGIN
    INSERT INTO runra_obs.ingest_tokens (name, token_hash)
    VALUES (create_ingest_token.name, sha256(convert_to(token, 'UTF8')));
    RETURN token;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'ingest token "%" already exists', create_ingest_token.name
        USING ERRCODE = 'duplicate_object',
              HINT = 'Revoke it first with runra_obs.revoke_ingest_token(), or choose another name.';
END
$$;
COMMENT ON FUNCTION runra_obs.create_ingest_token(text) IS
    'Creates a bearer token for POST /v1/events and returns it; this is the only time it can be read';

CREATE FUNCTION runra_obs.revoke_ingest_token(name text)
RETURNS boolean
LANGUAGE sql VOLATILE STRICT
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM runra_obs.ingest_tokens AS t
        WHERE t.name = revoke_ingest_token.name
        RETURNING 1
    )
    SELECT count(*) > 0 FROM gone
$$;
COMMENT ON FUNCTION runra_obs.revoke_ingest_token(text) IS
    'Revokes a bearer token (requests using it get 401 from their next batch on); false if there was none by that name';

REVOKE ALL ON FUNCTION runra_obs.create_ingest_token(text),
                       runra_obs.revoke_ingest_token(text) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Idempotency keys: a request re-sent with the same Idempotency-Key is
-- answered with the first answer and stored once.  The row is written in the
-- same transaction as the events, so it exists exactly when they do.
-- ---------------------------------------------------------------------------
CREATE TABLE runra_obs.idempotency_keys (
    client       text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       integer     NOT NULL,
    response     text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON runra_obs.idempotency_keys (created_at);
COMMENT ON TABLE runra_obs.idempotency_keys IS
    'Idempotency-Key headers seen by the HTTP ingest API within runra_obs.idempotency_window, with the answer given';
COMMENT ON COLUMN runra_obs.idempotency_keys.client IS 'Name of the token the request used (empty when unauthenticated)';
COMMENT ON COLUMN runra_obs.idempotency_keys.key IS 'The Idempotency-Key header';
COMMENT ON COLUMN runra_obs.idempotency_keys.request_hash IS 'sha256 of the request''s media type and decoded body';
COMMENT ON COLUMN runra_obs.idempotency_keys.status IS 'HTTP status of the first answer';
COMMENT ON COLUMN runra_obs.idempotency_keys.response IS 'Body of the first answer (JSON)';
REVOKE ALL ON runra_obs.idempotency_keys FROM PUBLIC;

CREATE FUNCTION runra_obs._expire_idempotency_keys()
RETURNS bigint
LANGUAGE sql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM runra_obs.idempotency_keys
        WHERE created_at < now() - runra_obs.setting_interval('runra_obs.idempotency_window')
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
COMMENT ON FUNCTION runra_obs._expire_idempotency_keys() IS
    'Deletes Idempotency-Keys older than runra_obs.idempotency_window; returns how many (called by run_maintenance)';
REVOKE ALL ON FUNCTION runra_obs._expire_idempotency_keys() FROM PUBLIC;
