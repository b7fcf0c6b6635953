-- HTTP ingest's SQL side: tokens (only a hash stored, owner only) and
-- Idempotency-Key expiry.  The HTTP server itself is tested in t/010-013.
SELECT runra_obs.create_ingest_token('fleet') ~ '^rro_[0-9a-f]{64}$' AS token_shape;
SELECT name, octet_length(token_hash) AS hash_bytes FROM runra_obs.ingest_tokens;
-- a second token by the same name is refused with a hint
SELECT runra_obs.create_ingest_token('fleet');
-- two tokens are never the same
SELECT runra_obs.create_ingest_token('a') <> runra_obs.create_ingest_token('b') AS different;
SELECT runra_obs.revoke_ingest_token('a') AS revoked, runra_obs.revoke_ingest_token('a') AS again;
SELECT string_agg(name, ',' ORDER BY name) AS left_over FROM runra_obs.ingest_tokens;
-- only the owner reads tokens and keys; the API roles cannot, nor use the functions
SET ROLE runra_obs_reader;
SELECT count(*) FROM runra_obs.ingest_tokens;
SELECT count(*) FROM runra_obs.idempotency_keys;
SELECT runra_obs.create_ingest_token('sneaky');
RESET ROLE;
SET ROLE runra_obs_writer;
SELECT count(*) FROM runra_obs.ingest_tokens;
SELECT runra_obs.revoke_ingest_token('fleet');
RESET ROLE;
-- expiry: keys older than runra_obs.idempotency_window (24h) go, and are counted
INSERT INTO runra_obs.idempotency_keys (client, key, request_hash, status, response, created_at)
VALUES ('fleet', 'old', '\x00', 200, '{}', now() - interval '25 hours'),
       ('fleet', 'older', '\x00', 200, '{}', now() - interval '3 days'),
       ('fleet', 'new', '\x00', 200, '{}', now() - interval '23 hours');
SELECT runra_obs._expire_idempotency_keys() AS expired;
SELECT key FROM runra_obs.idempotency_keys;
SELECT runra_obs._expire_idempotency_keys() AS expired_again;
