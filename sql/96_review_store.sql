-- Review of the event store: inputs that once crashed the server or
-- stored an event that was also reported as rejected.
SET client_min_messages = warning;
SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS today \gset
SELECT count(*) AS rejected_before FROM runra_obs.rejected_events \gset

-- An array whose first element is an array holding a string: the parser
-- took the string for a timestamp before any key was read (a NULL pointer).
SELECT * FROM runra_obs.ingest('[["x"]]');
SELECT * FROM runra_obs.ingest(jsonb_build_array(
    jsonb_build_array('x', jsonb_build_object('timestamp', 'y')),
    jsonb_build_object('timestamp', :'today' || 'T03:00:00Z', 'sandboxId', 'sb_rev_1', 'type', 'exec.started')));
SELECT count(*) AS stored_after_nested_array
FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_rev_1';

-- A JSONL line holding a valid event followed by more JSON is rejected as
-- a whole: the event must not be stored too, nor counted twice.
SELECT ingested, failed, failures
FROM runra_obs.ingest_jsonl(
    '{"timestamp":"' || :'today' || 'T03:00:00Z","sandboxId":"sb_rev_2","type":"exec.started"} 1' || E'\n' ||
    '{"timestamp":"' || :'today' || 'T03:00:00Z","sandboxId":"sb_rev_2","type":"exec.started","traceId":"x"}'
    || '{"timestamp":"' || :'today' || 'T03:00:01Z","sandboxId":"sb_rev_2","type":"exec.started"}' || E'\n' ||
    '{"timestamp":"' || :'today' || 'T03:00:02Z","sandboxId":"sb_rev_3","type":"exec.started"}');
SELECT sandbox_id, count(*) AS stored
FROM runra_obs.sandbox_events WHERE sandbox_id IN ('sb_rev_2', 'sb_rev_3')
GROUP BY sandbox_id ORDER BY sandbox_id;
SELECT source, position, left(reason, 40) AS reason, raw LIKE '%sb_rev_2%' AS raw_kept
FROM runra_obs.rejected_events
ORDER BY id OFFSET :rejected_before;
