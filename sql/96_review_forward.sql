-- Review of forwarding: who may use the selection trigger's function.
--
-- runra_obs._forward_select() is SECURITY DEFINER and writes the outbox.
-- CREATE TRIGGER checks EXECUTE on the function, so a role that may run it
-- could put it on a table of its own (a temporary one will do) and queue
-- any event id it likes for every destination, as the extension's owner.
SET client_min_messages = warning;
CREATE ROLE runra_review_snoop IN ROLE runra_obs_reader, runra_obs_writer;

SELECT has_function_privilege('runra_obs_reader', 'runra_obs._forward_select()', 'EXECUTE') AS reader_may,
       has_function_privilege('runra_obs_writer', 'runra_obs._forward_select()', 'EXECUTE') AS writer_may,
       has_function_privilege('public', 'runra_obs._forward_select()', 'EXECUTE') AS public_may;

SET ROLE runra_review_snoop;
CREATE TEMP TABLE fake_events (id bigint, created_at timestamptz, sandbox_id text, event_type text);
\set VERBOSITY terse
CREATE TRIGGER fake_select AFTER INSERT ON fake_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION runra_obs._forward_select();
\set VERBOSITY default
DROP TABLE fake_events;
RESET ROLE;
DROP ROLE runra_review_snoop;

-- The trigger the extension itself creates still fires for a writer's insert.
SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS today \gset
SELECT runra_obs.add_destination('review_jsonl', 'jsonl', '{"filePath": "/nonexistent/review.jsonl"}');
CREATE ROLE runra_review_writer IN ROLE runra_obs_writer;
SET ROLE runra_review_writer;
SELECT ingested FROM runra_obs.ingest(jsonb_build_object(
    'timestamp', :'today' || 'T04:00:00Z', 'sandboxId', 'sb_review_fwd', 'type', 'exec.started'));
INSERT INTO runra_obs.sandbox_events (sandbox_id, event_type, created_at)
VALUES ('sb_review_fwd', 'exec.completed', now());
RESET ROLE;
SELECT o.sandbox_id, count(*) AS queued
FROM runra_obs.outbox AS o JOIN runra_obs.destinations AS d ON d.id = o.destination_id
WHERE d.name = 'review_jsonl' GROUP BY o.sandbox_id;
SELECT runra_obs.remove_destination('review_jsonl');
DROP ROLE runra_review_writer;

-- An Axiom token goes into the Authorization header as it is: libcurl
-- does not check it, so a trailing line break would end the header block
-- early and every batch would be refused (and dead-lettered).
\set SHOW_CONTEXT never
SELECT runra_obs.add_destination('review_ax', 'axiom',
    jsonb_build_object('dataset', 'd', 'token', E'xaat-123\n'));
SELECT runra_obs.add_destination('review_ax', 'axiom', '{"dataset": "d", "token": "xaat-123"}');
SELECT runra_obs.change_destination('review_ax', jsonb_build_object('token', E'xaat-456\r\nX-Other: 1'));
SELECT secrets->>'token' AS token FROM runra_obs.destinations WHERE name = 'review_ax';
SELECT runra_obs.remove_destination('review_ax');
\set SHOW_CONTEXT errors
