-- Validation of the event envelope, table-driven: each case is one JSONL
-- line sent through runra_obs.ingest_jsonl(); TODAY stands for the current
-- UTC date, so every timestamp is inside the partition window.
SET client_min_messages = warning;
SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS today \gset

CREATE TEMP TABLE cases (name text, line text);
INSERT INTO cases VALUES
  ('valid, Z zone',           '{"timestamp":"TODAYT01:00:00.000Z","sandboxId":"sb_1","type":"exec.completed","data":{"command":"npm test","exitCode":0,"durationMs":4521}}'),
  ('valid, offset zone',      '{"timestamp":"TODAYT03:00:00+02:00","sandboxId":"sb_1","type":"sandbox.paused","data":{"runtimeDurationMs":120000}}'),
  ('valid, compact offset',   '{"timestamp":"TODAYT01:00:00.5-0130","sandboxId":"sb_1","type":"sandbox.resumed"}'),
  ('valid, no data',          '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"sandbox.started"}'),
  ('valid, null data',        '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"sandbox.started","data":null}'),
  ('valid, unknown type',     '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"gpu.sample_taken","data":{}}'),
  ('valid, trace id',         '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"tool.invoked","traceId":"4BF92F3577B34DA6A3CE929D0E0E4736"}'),
  ('bad trace id is dropped', '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"tool.invoked","traceId":"abc"}'),
  ('zero trace id dropped',   '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"tool.invoked","traceId":"00000000000000000000000000000000"}'),
  ('trace id 31 hex and a g', '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"tool.invoked","traceId":"4bf92f3577b34da6a3ce929d0e0e473g"}'),
  ('trace id a G, uppercase', '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"tool.invoked","traceId":"G4BF92F3577B34DA6A3CE929D0E0E473"}'),
  ('NUL escape replaced',     '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_nul","type":"exec.completed","data":{"stdout":"a\u0000b"}}'),
  ('lone surrogates replaced','{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_sur","type":"exec.completed","data":{"stdout":"\ud800x\udc00","ok":"\ud83d\ude00"}}'),
  ('NUL in sandboxId refused', '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_\u0000a","type":"exec.started"}'),
  ('surrogate sandboxId refused','{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_\udc00","type":"exec.started"}'),
  ('U+FFFD id, body repaired','{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_\ufffd","type":"exec.started"}'),
  ('escaped key and value',   '{"time\u0073tamp" : "TODAYT01:00:00Z" , "sandboxId":"sb_\u00e9\"q\\","type"  :"exec.started"}'),
  ('no zone',                 '{"timestamp":"TODAYT01:00:00","sandboxId":"sb_1","type":"exec.started"}'),
  ('not a date',              '{"timestamp":"yesterday","sandboxId":"sb_1","type":"exec.started"}'),
  ('impossible date',         '{"timestamp":"2026-02-30T01:00:00Z","sandboxId":"sb_1","type":"exec.started"}'),
  ('offset colon, no minutes','{"timestamp":"TODAYT01:00:00+05:","sandboxId":"sb_1","type":"exec.started"}'),
  ('hour 24',                 '{"timestamp":"TODAYT24:00:00Z","sandboxId":"sb_1","type":"exec.started"}'),
  ('timestamp a number',      '{"timestamp":1750000000,"sandboxId":"sb_1","type":"exec.started"}'),
  ('missing timestamp',       '{"sandboxId":"sb_1","type":"exec.started"}'),
  ('too old',                 '{"timestamp":"2001-01-01T00:00:00Z","sandboxId":"sb_1","type":"exec.started"}'),
  ('too far ahead',           '{"timestamp":"2099-01-01T00:00:00Z","sandboxId":"sb_1","type":"exec.started"}'),
  ('missing sandboxId',       '{"timestamp":"TODAYT01:00:00Z","type":"exec.started"}'),
  ('empty sandboxId',         '{"timestamp":"TODAYT01:00:00Z","sandboxId":"","type":"exec.started"}'),
  ('sandboxId not a string',  '{"timestamp":"TODAYT01:00:00Z","sandboxId":42,"type":"exec.started"}'),
  ('sandboxId too long',      '{"timestamp":"TODAYT01:00:00Z","sandboxId":"' || repeat('x', 257) || '","type":"exec.started"}'),
  ('sandboxId at the limit',  '{"timestamp":"TODAYT01:00:00Z","sandboxId":"' || repeat('x', 256) || '","type":"exec.started"}'),
  ('type uppercase',          '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"Exec.Started"}'),
  ('type without family',     '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"started"}'),
  ('type empty segment',      '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"exec..started"}'),
  ('type too long',           '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"a.' || repeat('b', 127) || '"}'),
  ('data an array',           '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"exec.started","data":[1,2]}'),
  ('data a string',           '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"exec.started","data":"x"}'),
  ('unknown field',           '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"exec.started","sandboxID":"sb_2"}'),
  ('huge exponent',           '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"cost.runtime","data":{"cost":1e5000}}'),
  ('too deep',                '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"exec.started","data":' || repeat('{"a":', 70) || '1' || repeat('}', 70) || '}'),
  ('deep but allowed',        '{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_deep","type":"exec.started","data":' || repeat('{"a":', 62) || '1' || repeat('}', 62) || '}'),
  ('not JSON',                '{"timestamp":'),
  ('an array line',           '[{"timestamp":"TODAYT01:00:00Z","sandboxId":"sb_1","type":"exec.started"}]');

-- one case per line, in order
SELECT string_agg(replace(line, 'TODAY', :'today'), E'\n' ORDER BY ord) AS body
FROM (SELECT line, row_number() OVER () AS ord FROM cases) AS c \gset

CREATE TEMP TABLE outcome AS SELECT * FROM runra_obs.ingest_jsonl(:'body');
SELECT ingested, failed FROM outcome;

-- what each case got: an error, a warning, or nothing (stored)
SELECT c.ord - 1 AS index, c.name,
       replace(regexp_replace(coalesce(f->>'error', 'stored' || coalesce(' with warning: ' || (f->>'warning'), '')),
                              '\d{4}-\d\d-\d\d \d\d:[0-9:.+-]+', '<time>', 'g'),
               :'today', 'TODAY') AS outcome
FROM (SELECT name, row_number() OVER () AS ord FROM cases) AS c
LEFT JOIN (SELECT jsonb_array_elements(failures) AS f FROM outcome) AS x
       ON (x.f->>'index')::int = c.ord - 1
ORDER BY c.ord;

-- every rejected case is kept with its reason and raw text
SELECT count(*) AS rejected_rows, count(DISTINCT position) AS positions,
       bool_and(source = 'jsonl') AS all_jsonl, bool_and(raw <> '') AS all_raw
FROM runra_obs.rejected_events WHERE source = 'jsonl';

-- what was stored
SELECT sandbox_id, event_type, created_at AT TIME ZONE 'UTC' - :'today'::timestamp AS time_of_day,
       data, trace_id
FROM runra_obs.sandbox_events
WHERE length(sandbox_id) < 20 AND sandbox_id NOT IN ('sb_deep', 'sb_gap')
ORDER BY id;
SELECT jsonb_path_query(data, 'strict $.**.a ? (@ == 1)') AS deepest_value
FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_deep';

-- ingest() of a JSON array: same rules, positions are array indexes
SELECT * FROM runra_obs.ingest(jsonb_build_array(
    jsonb_build_object('timestamp', :'today' || 'T02:00:00Z', 'sandboxId', 'sb_2', 'type', 'exec.started',
                       'data', jsonb_build_object('command', 'ls', 'cwd', '/')),
    42,
    jsonb_build_object('timestamp', :'today' || 'T02:00:00Z', 'sandboxId', 'sb_2')));
-- one object on its own
SELECT * FROM runra_obs.ingest(jsonb_build_object(
    'timestamp', :'today' || 'T02:00:01Z', 'sandboxId', 'sb_2', 'type', 'exec.completed'));
-- numbers numeric holds are kept, even when JSONB prints them in full
-- (1e1000 comes back as 1001 digits)
SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_object(
    'timestamp', :'today' || 'T02:00:02Z', 'sandboxId', 'sb_big', 'type', 'cost.total',
    'data', '{"sandboxCost": 1e1000, "tiny": 1e-1000}'::jsonb));
SELECT length((data->>'sandboxCost')) AS digits FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_big';
-- a sandboxId with a real U+FFFD is kept when nothing in its body was
-- repaired (with a repair elsewhere in the same body it is refused, as in
-- the table above: the repaired text and the real one look alike)
SELECT ingested, failed FROM runra_obs.ingest_jsonl(
    '{"timestamp":"' || :'today' || 'T02:00:03Z","sandboxId":"sb_\ufffd_real","type":"exec.started"}');
-- a body of 1500 non-events: the first 1000 kept and reported one by one,
-- the rest counted, and the whole body kept once (not 1500 rows)
SELECT ingested, failed, jsonb_array_length(failures) AS reported, failures -> 1000 AS last_reported
FROM runra_obs.ingest((SELECT jsonb_agg(1) FROM generate_series(1, 1500)));
SELECT count(*) FILTER (WHERE raw = '1') AS one_by_one,
       count(*) FILTER (WHERE position = 1000 AND raw LIKE '[1, 1, %') AS whole_body
FROM runra_obs.rejected_events WHERE source = 'sql';
-- a JSON value that is not an event at all
SELECT * FROM runra_obs.ingest('"hello"');
SELECT * FROM runra_obs.ingest('[]');

-- the table refuses what validation refuses, for direct INSERTs too
\set VERBOSITY sqlstate
INSERT INTO runra_obs.sandbox_events (sandbox_id, event_type, data, created_at)
VALUES ('sb_x', 'NotAType', '{}', now());
INSERT INTO runra_obs.sandbox_events (sandbox_id, event_type, data, created_at)
VALUES ('sb_x', 'exec.started', '[]', now());
INSERT INTO runra_obs.sandbox_events (sandbox_id, event_type, data, created_at)
VALUES ('sb_x', 'exec.started', '{}', '2001-01-01');
\set VERBOSITY default
-- the SDK's Postgres exporter: a direct INSERT of its four columns works
INSERT INTO runra_obs.sandbox_events (sandbox_id, event_type, data, created_at)
VALUES ('sb_sdk', 'exec.started', '{"command":"ls"}', now());
SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_sdk';

-- data is stored as the JSONB that jsonb_in makes of the same text (the
-- parser builds it while validating): escapes, duplicate keys (the last
-- wins), JSONB's key order, numbers as written, nesting, long strings
CREATE TEMP TABLE data_cases (name text, data text);
INSERT INTO data_cases VALUES
  ('escapes',  '{"a\"b":"x\ny\t\u00e9\ud83d\ude00 \\ \/","\u0041":1,"":""}'),
  ('dupkeys',  '{"k":1,"j":{"x":1,"x":[2]},"k":"last"}'),
  ('order',    '{"bbb":1,"a":2,"cc":3,"B":4}'),
  ('numbers',  '{"n":[0,-0,1.50,1e5,1E-5,-12345678901234567890.123456789,2.5e+3]}'),
  ('bignum',   '{"n":1e1000,"m":-1e-1000}'),
  ('mixed',    '{"arr":[1,"two",true,false,null,[],{},[[1.50]],{"z":1,"a":2}],"t":true,"f":false,"z":null}'),
  ('spaces',   E'{ "a" : [ 1 , 2 ] ,\t"b" : { } }'),
  ('empty',    '{}'),
  ('long',     '{"s":"' || repeat('0123456789', 1000) || '","k":' || repeat('[', 40) || repeat(']', 40) || '}');
SELECT string_agg('{"timestamp":"' || :'today' || 'T03:00:00Z","sandboxId":"sb_data_' || name
                  || '","type":"exec.completed","data":' || data || '}', E'\n') AS body
FROM data_cases \gset
SELECT ingested, failed FROM runra_obs.ingest_jsonl(:'body');
SELECT c.name, e.data::text = c.data::jsonb::text AND e.data = c.data::jsonb AS same_as_jsonb_in,
       CASE WHEN length(e.data::text) < 120 THEN e.data::text ELSE length(e.data::text) || ' characters' END AS data
FROM data_cases c LEFT JOIN runra_obs.sandbox_events e ON e.sandbox_id = 'sb_data_' || c.name
ORDER BY c.name;
-- a second data field replaces the first, as a duplicate key does; a bad
-- number deep inside data rejects that event only, and the next line is
-- built from scratch
SELECT ingested, failed, failures FROM runra_obs.ingest_jsonl(
    '{"timestamp":"' || :'today' || 'T03:00:01Z","sandboxId":"sb_data_twice","type":"exec.started","data":{"x":1},"data":{"y":[2]}}' || E'\n' ||
    '{"timestamp":"' || :'today' || 'T03:00:01Z","sandboxId":"sb_data_null","type":"exec.started","data":{"x":1},"data":null}' || E'\n' ||
    '{"timestamp":"' || :'today' || 'T03:00:02Z","sandboxId":"sb_data_bad","type":"exec.started","data":{"a":[1,{"b":[2,1e5000,3]}],"c":"after"}}' || E'\n' ||
    '{"timestamp":"' || :'today' || 'T03:00:03Z","sandboxId":"sb_data_next","type":"exec.started","data":{"a":[1,{"b":[2]}]}}');
SELECT sandbox_id, data FROM runra_obs.sandbox_events
WHERE sandbox_id IN ('sb_data_twice', 'sb_data_null', 'sb_data_bad', 'sb_data_next') ORDER BY id;
