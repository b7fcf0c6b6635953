-- Forwarding configuration: destinations, validation, each destination's
-- cursor, the selection applied when reading, privileges and the status
-- view.  (No worker runs under pg_regress: cursors stay where
-- add_destination put them, and _forward_batch() shows what the worker
-- would read.)
CREATE ROLE forward_writer LOGIN IN ROLE runra_obs_writer;
CREATE ROLE forward_reader LOGIN IN ROLE runra_obs_reader;

-- an event with a given type and sandbox, at now()
CREATE FUNCTION ev(type text, sandbox text DEFAULT 'sb_1') RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('timestamp', now(), 'sandboxId', sandbox, 'type', type,
                              'data', jsonb_build_object('n', 1))
$$;

-- forwarding reads the log: nothing is attached to the event table
SELECT count(*) AS triggers FROM pg_trigger
WHERE tgrelid = 'runra_obs.sandbox_events'::regclass;

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
SELECT runra_obs.add_destination('x', 'otel', '{"endpoint": "http://x", "resourceAttributes": {"": 1}}');
SELECT runra_obs.add_destination('x', 'otel', '{"endpoint": "http://x", "resourceAttributes": {"service.name": 5}}');
SELECT runra_obs.add_destination('x', 'otel', '{"endpoint": "http://x", "signal": "metrics"}');
SELECT runra_obs.add_destination('x', 'otel', '{"endpoint": "http://x/v1/traces/", "signal": "logs"}');
SELECT runra_obs.add_destination('x', 'otel', '{"endpoint": "http://x/v1/logs"}');
SELECT runra_obs.add_destination('x', 'otel', '{"endpoint": "https://user:secret@x"}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "maxFiles": 0}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "maxFileSizeMb": -1}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "batchSize": 1.5}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "batchSize": 20000}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "timeoutMs": 5}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x"}', '{Exec.*}');
SELECT runra_obs.add_destination('x', 'function', '{"handler": "now()"}');
SELECT runra_obs.add_destination('x', 'jsonl', '[]');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "startAt": "soon"}');
SELECT runra_obs.add_destination('x', 'jsonl', '{"filePath": "/tmp/x", "startAt": 5}');
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
-- still no trigger; each destination is a consumer, at "now" (the safe
-- watermark when it was added)
SELECT count(*) AS triggers FROM pg_trigger
WHERE tgrelid = 'runra_obs.sandbox_events'::regclass;
SELECT c.name ~ '^destination:\d+$' AS named, c.position = (SELECT last_value FROM runra_obs.sandbox_events_id_seq) AS at_now
FROM runra_obs.consumers AS c WHERE c.name LIKE 'destination:%' ORDER BY c.name;

-- ---- selection, applied when reading: each destination reads only its types ----
SELECT last_value AS before FROM runra_obs.sandbox_events_id_seq \gset
SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    ev('exec.completed'), ev('sandbox.created'), ev('tool.failed'), ev('cost.runtime'),
    ev('cost_x.total'), ev('costyx.total')));
-- a direct INSERT by a writer (the SDK's Postgres exporter) is read too
SET ROLE forward_writer;
INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data)
VALUES (now(), 'sb_sdk', 'exec.started', '{}');
RESET ROLE;
-- a rolled-back insert is never read
BEGIN;
SELECT ingested FROM runra_obs.ingest(ev('exec.failed'));
ROLLBACK;
SELECT d.name, string_agg(b.event_type || '/' || b.sandbox_id, ', ' ORDER BY b.id) AS reads
FROM runra_obs.destinations AS d,
     runra_obs._forward_batch(d.id, :before, :before + 100, 1000, 16777216) AS b
GROUP BY d.name ORDER BY d.name;
-- at most max_events, the first ones by id
SELECT string_agg(b.event_type, ', ' ORDER BY b.id) AS first_two
FROM runra_obs._forward_batch((SELECT id FROM runra_obs.destinations WHERE name = 'ot'),
                              :before, :before + 100, 2, 16777216) AS b;
-- and ending with the event that takes the batch's stored data to
-- max_bytes (the first event always goes), saying it was cut there
SELECT sum(runra_obs._raw_size(b.data)) AS three_events_bytes
FROM runra_obs._forward_batch((SELECT id FROM runra_obs.destinations WHERE name = 'ot'),
                              :before, :before + 100, 3, 16777216) AS b \gset
SELECT count(*) AS events, string_agg(b.cut::text, ',' ORDER BY b.id) AS cut
FROM runra_obs._forward_batch((SELECT id FROM runra_obs.destinations WHERE name = 'ot'),
                              :before, :before + 100, 1000, :three_events_bytes) AS b;
SELECT count(*) AS events, string_agg(b.cut::text, ',' ORDER BY b.id) AS cut
FROM runra_obs._forward_batch((SELECT id FROM runra_obs.destinations WHERE name = 'ot'),
                              :before, :before + 100, 1000, :three_events_bytes + 1) AS b;
SELECT count(*) AS events, string_agg(b.cut::text, ',' ORDER BY b.id) AS cut
FROM runra_obs._forward_batch((SELECT id FROM runra_obs.destinations WHERE name = 'ot'),
                              :before, :before + 100, 1000, 1) AS b;
SELECT count(*) AS events, bool_or(b.cut) AS cut
FROM runra_obs._forward_batch((SELECT id FROM runra_obs.destinations WHERE name = 'ot'),
                              :before, :before + 100, 1000, 16777216) AS b;
-- the stored size, read without detoasting: a value of 1 MB is stored
-- compressed to a few kB, but it is 1 MB that a request would carry
CREATE TEMP TABLE squeezed AS SELECT jsonb_build_object('x', repeat('a', 1048576)) AS v;
SELECT pg_column_size(v) < 100000 AS stored_compressed, runra_obs._raw_size(v) > 1048576 AS raw_size_is_uncompressed
FROM squeezed;

-- each event comes with whether it failed, by the one definition
-- (runra_obs.event_failed(): the OTLP span status reads it)
SELECT :'before'::bigint AS before_failed \gset
SELECT ingested FROM runra_obs.ingest(jsonb_build_array(
    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_f', 'type', 'exec.completed', 'data', '{"exitCode": 0}'::jsonb),
    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_f', 'type', 'exec.completed', 'data', '{"exitCode": 2}'::jsonb),
    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_f', 'type', 'exec.completed', 'data', '{}'::jsonb),
    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_f', 'type', 'exec.timed_out', 'data', '{}'::jsonb)));
SELECT string_agg(b.data::text || ' ' || b.failed, ', ' ORDER BY b.id) AS failed_as_read
FROM runra_obs._forward_batch((SELECT id FROM runra_obs.destinations WHERE name = 'ot'),
                              :before_failed, :before_failed + 1000, 1000, 16777216) AS b
WHERE b.sandbox_id = 'sb_f';

-- ... and the duration it reports, by the one definition
-- (runra_obs.event_duration_ms(): the OTLP span start reads it)
SELECT last_value AS before_duration FROM runra_obs.sandbox_events_id_seq \gset
SELECT ingested FROM runra_obs.ingest(jsonb_build_array(
    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_d', 'type', 'sandbox.started', 'data', '{"startupDurationMs": 1200, "durationMs": 5}'::jsonb),
    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_d', 'type', 'exec.timed_out', 'data', '{"timeoutMs": 30000}'::jsonb),
    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_d', 'type', 'exec.completed', 'data', '{"durationMs": "abc"}'::jsonb)));
SELECT string_agg(b.event_type || ' ' || coalesce(b.duration_ms::text, 'none')
                  || ' ' || (b.ingested_at IS NOT NULL), ', ' ORDER BY b.id) AS duration_as_read
FROM runra_obs._forward_batch((SELECT id FROM runra_obs.destinations WHERE name = 'ot'),
                              :before_duration, :before_duration + 1000, 1000, 16777216) AS b;

-- ---- where each destination's requests go (_forward_url; Axiom's are
-- compared with @axiomhq/js's in t/032_forward_axiom_edge.pl) ----
SELECT s AS settings, runra_obs._forward_url('otel', s::jsonb) AS url
FROM (VALUES ('{"endpoint": "https://otlp.example.com"}'),
             ('{"endpoint": "https://otlp.example.com/otlp/"}'),
             ('{"endpoint": "https://otlp.example.com/v1/traces"}'),
             ('{"endpoint": "https://otlp.example.com", "signal": "logs"}'),
             ('{"endpoint": "https://otlp.example.com/v1/logs/", "signal": "logs"}')) AS v (s);
SELECT s AS settings, runra_obs._forward_url('axiom', s::jsonb) AS url
FROM (VALUES ('{"dataset": "d"}'),
             ('{"dataset": "d", "url": "https://api.axiom.co/"}'),
             ('{"dataset": "d", "edge": "eu-central-1.aws.edge.axiom.co"}'),
             ('{"dataset": "d", "edgeUrl": "https://eu-central-1.aws.edge.axiom.co", "url": "https://x"}')) AS v (s);
SELECT runra_obs._forward_headers('axiom', '{"orgId": "org-1"}', '{}') AS axiom_org,
       runra_obs._forward_headers('axiom', '{}', '{}') AS axiom_none,
       runra_obs._forward_headers('otel', '{}', '{"headers": {"a": "1", "b": "2"}}') AS otel;

-- ---- a paused destination says so; its cursor stays ----
SELECT runra_obs.pause_destination('ax');
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
SELECT destination, provider, enabled, position > 0 AS has_position, behind_events, behind_seconds,
       redelivering, sent, failed, dead_lettered, last_success, last_error
FROM runra_obs.forward_status ORDER BY destination;

-- ---- privileges: readers see destinations without secrets ----
-- (a collector that wants its key in the query string gets it; readers see ***)
SELECT runra_obs.add_destination('keyed', 'otel',
    '{"endpoint": "https://collector.example.com/v1/traces?region=eu&api_key=k3y-in-url&X-Token=t0k"}');
SET ROLE forward_reader;
SELECT * FROM runra_obs.destinations;
SELECT name, settings FROM runra_obs.destination_list ORDER BY name;
SELECT destination, behind_events FROM runra_obs.forward_status ORDER BY destination;
SELECT runra_obs.add_destination('y', 'jsonl', '{"filePath": "/tmp/y"}');
SELECT runra_obs.requeue_dead_letters();
RESET ROLE;
-- the worker still sends to the URL as configured
SELECT settings ->> 'endpoint' AS configured FROM runra_obs.destinations WHERE name = 'keyed';
SELECT runra_obs.remove_destination('keyed');
SELECT count(*) AS secret_columns FROM information_schema.columns
WHERE table_schema = 'runra_obs' AND table_name = 'destination_list'
  AND column_name IN ('secrets', 'token', 'headers');

-- ---- dead letters: one call puts them back, to be sent again behind the cursor ----
INSERT INTO runra_obs.dead_letters (destination_id, event_id, created_at, sandbox_id, queued_at, attempts, error)
SELECT d.id, e.id, e.created_at, e.sandbox_id, now(), 3, 'HTTP 400: test'
FROM runra_obs.destinations AS d, runra_obs.sandbox_events AS e
WHERE d.name = 'file' AND e.id > :before;
SELECT destination, redelivering, dead_lettered FROM runra_obs.forward_status WHERE destination = 'file';
SELECT runra_obs.requeue_dead_letters('file') AS requeued;
SELECT destination, redelivering, dead_lettered FROM runra_obs.forward_status WHERE destination = 'file';

-- ---- removal takes the cursor, redeliveries and counters along ----
SELECT runra_obs.remove_destination('ax');
SELECT runra_obs.remove_destination('ot');
SELECT runra_obs.remove_destination('file');
SELECT (SELECT count(*) FROM runra_obs.redeliveries) AS redeliveries,
       (SELECT count(*) FROM runra_obs.forward_counters) AS counters,
       (SELECT count(*) FROM runra_obs.consumers WHERE name LIKE 'destination:%') AS cursors;

-- ---- a start time: the destination replays from the beginning of the log,
-- up to the watermark when it was added with created_at >= startAt, and
-- everything after that.  The start time lies past the last partition, so
-- no stored event can be after it, whatever the time of day (other files
-- store events at fixed times of today, which are ahead of now() just
-- after midnight).
SELECT runra_obs.add_destination('replay', 'jsonl',
    jsonb_build_object('filePath', '/tmp/replay.jsonl', 'startAt', now() + interval '40 days'));
SELECT d.start_at > now() AS starts_later, d.replay_to = (SELECT last_value FROM runra_obs.sandbox_events_id_seq) AS replays_to_now,
       c.position AS position
FROM runra_obs.destinations AS d JOIN runra_obs.consumers AS c ON c.name = 'destination:' || d.id;
-- the history before the start time is not read; what arrived after the
-- destination was added is, whatever its created_at
SELECT count(*) AS history_read
FROM runra_obs._forward_batch((SELECT id FROM runra_obs.destinations WHERE name = 'replay'), 0, 1000000, 1000, 16777216);
SELECT ingested FROM runra_obs.ingest(ev('exec.late'));
SELECT string_agg(b.event_type, ', ') AS after_replay_to
FROM runra_obs.destinations AS d,
     runra_obs._forward_batch(d.id, d.replay_to, d.replay_to + 100, 1000, 16777216) AS b WHERE d.name = 'replay';
SELECT runra_obs.remove_destination('replay');

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
