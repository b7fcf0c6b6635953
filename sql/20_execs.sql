-- The analyst's SQL API over executions: slow_execs(), exec_latency(),
-- error_rate() and top_failing_commands().
BEGIN;
\i test/analytics_fixture.sql

-- Executions in the window [10:00, 11:00) (F = failed):
--   10:00         sb_x npm test       exit 0    4521 ms
--   10:05         sb_x npm test       exit 1    7000 ms   F
--   10:10         sb_x npm run build  exit 0    5000 ms
--   10:15         sb_x npm run build  exit 0    5001 ms
--   10:20         sb_x npm test       exit "0"  "fast" (not a number: skipped)
--   10:30         sb_x sleep 999      timed out (command from exec.started 10:25)  F
--   10:40         sb_y npm test       exit 0    "12000" (a numeric string: 12000)
--   10:45         sb_y pip install    exec.failed (command from exec.started 10:44)  F
--   10:50         sb_x lint           exit "zero", durationMs {"ms": 3}   F (no usable exit code)
--   10:56         sb_y make           exit 1    100 ms    F
--   10:59:59.999999 sb_y make         exit 2    9000 ms   F
-- and outside it: 09:59:59 and 11:00 (make, 88888 and 99999 ms).
SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(pg_temp.t('09:59:30'), 'sb_x', 'exec.started', '{"command": "npm test", "cwd": "/app"}'),
    pg_temp.ev(pg_temp.t('10:00'), 'sb_x', 'exec.completed', '{"command": "npm test", "exitCode": 0, "durationMs": 4521}'),
    pg_temp.ev(pg_temp.t('10:05'), 'sb_x', 'exec.completed', '{"command": "npm test", "exitCode": 1, "durationMs": 7000}'),
    pg_temp.ev(pg_temp.t('10:10'), 'sb_x', 'exec.completed', '{"command": "npm run build", "exitCode": 0, "durationMs": 5000}'),
    pg_temp.ev(pg_temp.t('10:15'), 'sb_x', 'exec.completed', '{"command": "npm run build", "exitCode": 0, "durationMs": 5001}'),
    pg_temp.ev(pg_temp.t('10:20'), 'sb_x', 'exec.completed', '{"command": "npm test", "exitCode": "0", "durationMs": "fast"}'),
    pg_temp.ev(pg_temp.t('10:25'), 'sb_x', 'exec.started', '{"command": "sleep 999"}'),
    pg_temp.ev(pg_temp.t('10:30'), 'sb_x', 'exec.timed_out', '{"timeoutMs": 300000, "signal": "SIGKILL"}'),
    pg_temp.ev(pg_temp.t('10:40'), 'sb_y', 'exec.completed', '{"command": "npm test", "exitCode": 0, "durationMs": "12000"}'),
    pg_temp.ev(pg_temp.t('10:44'), 'sb_y', 'exec.started', '{"command": "pip install"}'),
    pg_temp.ev(pg_temp.t('10:45'), 'sb_y', 'exec.failed', '{"error": "container gone"}'),
    pg_temp.ev(pg_temp.t('10:50'), 'sb_x', 'exec.completed', '{"command": "lint", "exitCode": "zero", "durationMs": {"ms": 3}}'),
    pg_temp.ev(pg_temp.t('10:56'), 'sb_y', 'exec.completed', '{"command": "make", "exitCode": 1, "durationMs": 100}'),
    pg_temp.ev(pg_temp.t('10:59:59.999999'), 'sb_y', 'exec.completed', '{"command": "make", "exitCode": 2, "durationMs": 9000}'),
    pg_temp.ev(pg_temp.t('11:00'), 'sb_y', 'exec.completed', '{"command": "make", "exitCode": 0, "durationMs": 99999}'),
    pg_temp.ev(pg_temp.t('09:59:59'), 'sb_y', 'exec.completed', '{"command": "make", "exitCode": 0, "durationMs": 88888}')));

-- slow_execs: exec.completed above 5000 ms, newest first: 9000 (10:59:59.999999),
-- 12000 (10:40), 5001 (10:15), 7000 (10:05).  5000 is not above 5000.
SELECT pg_temp.rel("time") AS at, sandbox_id, command, duration_ms, exit_code
FROM runra_obs.slow_execs(5000, pg_temp.t('10:00'), pg_temp.t('11:00'));
-- max_rows keeps the newest two; a threshold of 8000 keeps 9000 and 12000.
SELECT pg_temp.rel("time") AS at, duration_ms
FROM runra_obs.slow_execs(5000, pg_temp.t('10:00'), pg_temp.t('11:00'), 2);
SELECT pg_temp.rel("time") AS at, duration_ms
FROM runra_obs.slow_execs(8000, pg_temp.t('10:00'), pg_temp.t('11:00'));

-- exec_latency, per command (nearest rank: the first duration whose rank/n
-- reaches the fraction; executions without a numeric duration count as
-- executions but not in the percentiles):
--   npm test:      4 executions (10:00, 10:05, 10:20, 10:40), 1 failure;
--                  durations 4521, 7000, 12000: p50 = 7000 (2/3 >= 0.5),
--                  p95 = p99 = max = 12000
--   make:          2, 2 failures; 100, 9000: p50 = 100 (1/2 >= 0.5), p95 = p99 = max = 9000
--   npm run build: 2, 0; 5000, 5001: p50 = 5000, p95 = p99 = max = 5001
--   lint, pip install: 1 execution, 1 failure, no duration
--   sleep 999: 1 execution, 1 failure, 300000 (a timeout lasts its timeoutMs)
-- Ordered by executions descending, then command.
SELECT * FROM runra_obs.exec_latency(pg_temp.t('10:00'), pg_temp.t('11:00'));

-- error_rate in 30-minute buckets:
--   10:00: 10:00, 10:05 F, 10:10, 10:15, 10:20 -> 5 executions, 1 failure, rate 0.2
--   10:30: 10:30 F, 10:40, 10:45 F, 10:50 F, 10:56 F, 10:59:59.999999 F -> 6, 5, 5/6
-- Both are above the default threshold 0.05.
SELECT pg_temp.rel("time") AS bucket, executions, failures, rate, threshold, above_threshold
FROM runra_obs.error_rate(pg_temp.t('10:00'), pg_temp.t('11:00'), '30 minutes');
-- The threshold is runra_obs.error_rate_threshold, and "above" is strict,
-- as in the seed's monitor (rate > 0.05): at 0.2 the first bucket is not above.
SET LOCAL runra_obs.error_rate_threshold = 0.2;
SELECT pg_temp.rel("time") AS bucket, rate, threshold, above_threshold
FROM runra_obs.error_rate(pg_temp.t('10:00'), pg_temp.t('11:00'), '30 minutes');
RESET runra_obs.error_rate_threshold;
-- The default bucket is 5 minutes: only buckets with executions appear,
-- and 10:56 and 10:59:59.999999 share the 10:55 bucket (2 executions, 2 failures).
SELECT pg_temp.rel("time") AS bucket, executions, failures, rate, above_threshold
FROM runra_obs.error_rate(pg_temp.t('10:00'), pg_temp.t('11:00'));

-- top_failing_commands: make (2 of 2: exit codes 1 and 2, latest "exit code 2"
-- at 10:59:59.999999), npm test (1 of 4), then the 1-of-1 commands by name:
-- lint (no usable exit code), pip install (exec.failed), sleep 999 (timeout).
SELECT command, failures, executions, failure_rate, exit_failures, errors, timeouts,
       pg_temp.rel(last_failure_at) AS last_failure, last_error
FROM runra_obs.top_failing_commands(pg_temp.t('10:00'), pg_temp.t('11:00'));
SELECT command FROM runra_obs.top_failing_commands(pg_temp.t('10:00'), pg_temp.t('11:00'), 3);

-- Bad data never makes a query fail.  The seed's own cast does, on the
-- "fast" and {"ms": 3} durations above:
DO $$
BEGIN
    PERFORM count(*) FROM runra_obs.sandbox_events
    WHERE event_type = 'exec.completed' AND (data->>'durationMs')::int > 5000;
    RAISE NOTICE 'the seed''s cast went through';
EXCEPTION WHEN invalid_text_representation THEN
    RAISE NOTICE 'the seed''s cast fails: %', SQLSTATE;
END
$$;
-- while the API skips what is not a number.  Of the 11 exec.completed
-- (inside and outside the window), all but "fast" and {"ms": 3} have a
-- duration above 0 ms: 9.
SELECT count(*) FROM runra_obs.slow_execs(0, NULL, NULL);

-- A timeout's command comes from the latest exec.started of its sandbox in
-- the window: sb_z started "long job" at 10:33 (and sb_w "other job" at
-- 10:34), and sb_z timed out at 10:35.  Over [10:30, 11:00) that timeout is
-- "long job"'s, while sb_x's timeout at 10:30 has its start (10:25) outside
-- the window: command unknown (NULL).  Over [10:34, 11:00) sb_z's start is
-- outside the window too.
SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(pg_temp.t('10:33'), 'sb_z', 'exec.started', '{"command": "long job"}'),
    pg_temp.ev(pg_temp.t('10:34'), 'sb_w', 'exec.started', '{"command": "other job"}'),
    pg_temp.ev(pg_temp.t('10:35'), 'sb_z', 'exec.timed_out', '{"timeoutMs": 60000}')));
SELECT command, failures, timeouts, last_error
FROM runra_obs.top_failing_commands(pg_temp.t('10:30'), pg_temp.t('11:00'))
WHERE timeouts > 0;
SELECT command, failures, timeouts, last_error
FROM runra_obs.top_failing_commands(pg_temp.t('10:34'), pg_temp.t('11:00'))
WHERE timeouts > 0;

ROLLBACK;
