-- Forwarding configuration: destinations, validation, selection into the
-- outbox, privileges and the status view.  (No worker runs under
-- pg_regress: what the outbox holds is exactly what the trigger queued.)
CREATE ROLE forward_writer LOGIN IN ROLE runra_obs_writer;
CREATE ROLE forward_reader LOGIN IN ROLE runra_obs_reader;

-- an event with a given type and sandbox, at now()
CREATE FUNCTION ev(type text, sandbox text DEFAULT 'sb_1') RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('timestamp', now(), 'sandboxId', sandbox, 'type', type,
                              'data', jsonb_build_object('n', 1))
$$;

-- no destination, no trigger (it would make COPY insert row by row)
SELECT count(*) AS triggers FROM pg_trigger
WHERE tgrelid = 'runra_obs.sandbox_events'::regclass AND tgname = 'forward_select';

-- ---- validation: every mistake names what and where ----
\set SHOW_CONTEXT never
SELECT runra_obs.add_destination('x', 'datadog', '{}');
SELECT runra_obs.add_destination('x', 'axiom', '{"dataset": "d", "token": "t", "endpoint": "http://x"}');
SELECT runra_obs.add_destination('x', 'axiom', '{"token": "t"}');
SELECT runra_obs.add_destination('x', 'axiom', '{"dataset": "d", "token": 42}');
SELECT runra_obs.add_destination('x', 'axiom', '{"dataset": "d", "token": "t", "url": "ftp://x"}');
SELECT runra_obs.add_destination('x', 'axiom', '{"dataset": "a/../b", "token": "t"}');
SELECT runra_obs.add_destination('x', 'otel', '{"endpoint": "http://x", "headers": {"api-key": 1}}');
SELECT runra_obs.add_destination('x', 'otel', '{"endpoint": "http://x", "headers": {"a": "b\nInjected: 1"}}');
SELECT runra_obs.add_destination('x', 'otel', '{"endpoint": "http://x", "resourceAttributes": {"a": [1]}}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "maxFiles": 0}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "maxFileSizeMb": -1}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "batchSize": 1.5}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "batchSize": 20000}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "timeoutMs": 5}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x"}', '{Exec.*}');
SELECT runra_obs.add_destination('x', 'function', '{"handler": "now()"}');
SELECT runra_obs.add_destination('x', 'jsonl', '[]');
SELECT count(*) AS destinations_after_mistakes FROM runra_obs.destinations;

-- ---- three destinations, the seed's option names ----
SELECT runra_obs.add_destination('ax', 'axiom',
    '{"dataset": "runra-sandbox-events", "token": "xaat-secret", "batchSize": 500}',
    '{exec.*,sandbox.*}');
SELECT runra_obs.add_destination('ot', 'otel',
    '{"endpoint": "https://otlp.example.com/v1/traces", "headers": {"api-key": "otel-secret"},
      "resourceAttributes": {"service.name": "my-agent-platform", "service.version": "1.0.0"}}');
SELECT runra_obs.add_destination('file', 'jsonl',
    '{"filePath": "./runra-events.jsonl", "maxFileSizeMb": 100, "maxFiles": 10,
      "eventTypes": ["*.failed", "cost_x.*"]}');
SELECT runra_obs.add_destination('ax', 'axiom', '{"dataset": "d", "token": "t"}');
SELECT name, provider, enabled, event_types, like_patterns, batch_size, flush_interval_ms,
       settings, secrets
FROM runra_obs.destinations ORDER BY id;
SELECT count(*) AS triggers FROM pg_trigger
WHERE tgrelid = 'runra_obs.sandbox_events'::regclass AND tgname = 'forward_select';

-- ---- selection: each event queued once per destination that selects it ----
SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    ev('exec.completed'), ev('sandbox.created'), ev('tool.failed'), ev('cost.runtime'),
    ev('cost_x.total'), ev('costyx.total')));
SELECT d.name, string_agg(e.event_type, ', ' ORDER BY e.id) AS queued
FROM runra_obs.outbox o
JOIN runra_obs.destinations d ON d.id = o.destination_id
JOIN runra_obs.sandbox_events e ON e.id = o.event_id
GROUP BY d.name ORDER BY d.name;

-- a rolled-back insert queues nothing
BEGIN;
SELECT ingested FROM runra_obs.ingest(ev('exec.started'));
ROLLBACK;
SELECT count(*) AS queued FROM runra_obs.outbox;

-- a direct INSERT by a writer (the SDK's Postgres exporter) is queued too,
-- though the writer may not read the destinations or the outbox
SET ROLE forward_writer;
INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data)
VALUES (now(), 'sb_sdk', 'exec.started', '{}');
SELECT count(*) FROM runra_obs.outbox;
RESET ROLE;
SELECT d.name FROM runra_obs.outbox o JOIN runra_obs.destinations d ON d.id = o.destination_id
WHERE o.sandbox_id = 'sb_sdk' ORDER BY 1;

-- ---- a paused destination keeps queueing, and says it is paused ----
SELECT runra_obs.pause_destination('ax');
SELECT ingested FROM runra_obs.ingest(ev('exec.started', 'sb_paused'));
SELECT count(*) AS queued_while_paused FROM runra_obs.outbox o
JOIN runra_obs.destinations d ON d.id = o.destination_id
WHERE d.name = 'ax' AND o.sandbox_id = 'sb_paused';
SELECT destination, enabled FROM runra_obs.forward_status ORDER BY destination;
SELECT runra_obs.resume_destination('ax');
SELECT runra_obs.pause_destination('nope');

-- ---- change: given keys replace, null removes, the rest stays ----
SELECT runra_obs.change_destination('ax', '{"token": "xaat-new", "batchSize": null, "url": "http://127.0.0.1:9"}');
SELECT batch_size, settings, secrets FROM runra_obs.destinations WHERE name = 'ax';
SELECT runra_obs.change_destination('ax', '{"endpoint": "http://x"}');
SELECT runra_obs.change_destination('ax', '{}', '{tool.*}');
SELECT event_types, like_patterns FROM runra_obs.destinations WHERE name = 'ax';

-- ---- the status view: exactly the columns the dashboards use ----
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = 'runra_obs' AND table_name = 'forward_status'
ORDER BY ordinal_position;
SELECT destination, provider, enabled, queued, oldest_queued_age >= interval '0' AS has_age,
       sent, failed, dead_lettered, last_success, last_error
FROM runra_obs.forward_status ORDER BY destination;

-- ---- privileges: readers see destinations without secrets ----
SET ROLE forward_reader;
SELECT * FROM runra_obs.destinations;
SELECT name, settings FROM runra_obs.destination_list ORDER BY name;
SELECT destination, queued FROM runra_obs.forward_status ORDER BY destination;
SELECT runra_obs.add_destination('y', 'jsonl', '{"filePath": "/tmp/y"}');
SELECT runra_obs.requeue_dead_letters();
RESET ROLE;
SELECT count(*) AS secret_columns FROM information_schema.columns
WHERE table_schema = 'runra_obs' AND table_name = 'destination_list'
  AND column_name IN ('secrets', 'token', 'headers');

-- ---- dead letters: one call puts them back ----
WITH moved AS (
    DELETE FROM runra_obs.outbox o USING runra_obs.destinations d
    WHERE d.id = o.destination_id AND d.name = 'file'
    RETURNING o.*)
INSERT INTO runra_obs.dead_letters (destination_id, event_id, created_at, sandbox_id, queued_at, attempts, error)
SELECT destination_id, event_id, created_at, sandbox_id, queued_at, 3, 'HTTP 400: test' FROM moved;
SELECT destination, queued, dead_lettered FROM runra_obs.forward_status WHERE destination = 'file';
SELECT runra_obs.requeue_dead_letters('file') AS requeued;
SELECT destination, queued, dead_lettered FROM runra_obs.forward_status WHERE destination = 'file';

-- ---- removal takes the queue along; the last one takes the trigger ----
SELECT runra_obs.remove_destination('ax');
SELECT runra_obs.remove_destination('ot');
SELECT runra_obs.remove_destination('file');
SELECT (SELECT count(*) FROM runra_obs.outbox) AS queued,
       (SELECT count(*) FROM runra_obs.forward_counters) AS counters,
       (SELECT count(*) FROM pg_trigger
        WHERE tgrelid = 'runra_obs.sandbox_events'::regclass AND tgname = 'forward_select') AS triggers;

-- runra_obs.on: a function destination named after its pattern and handler
CREATE FUNCTION note_event(e runra_obs.sandbox_events) RETURNS void
LANGUAGE sql AS $$ SELECT $$;
SELECT runra_obs.on('exec.completed', 'note_event(runra_obs.sandbox_events)') ~ '^on:exec\.completed:\d+$' AS named;
SELECT provider, event_types, handler, handler_role = current_user::regrole AS runs_as_registrant, flush_interval_ms
FROM runra_obs.destinations;
SELECT runra_obs.remove_destination(name) FROM runra_obs.destinations;

DROP FUNCTION note_event(runra_obs.sandbox_events);
DROP FUNCTION ev(text, text);
DROP ROLE forward_writer;
DROP ROLE forward_reader;
