-- Alerting: contact points, rules and their validation, every kind with
-- hand-worked figures, the state machine (for, keep_firing_for, no data,
-- late data, errors), the payloads, and who may do what.  Evaluations are
-- called with explicit times (anchor offsets), so nothing depends on the
-- clock; the alert worker itself is tested in t/060_alerts.pl.
BEGIN;
\i test/analytics_fixture.sql
SET LOCAL client_min_messages = warning;
\set SHOW_CONTEXT never
-- query rules are written by an admin: a superuser may not own one
CREATE ROLE alert_admin_test IN ROLE runra_obs_admin;

-- eval(rule, at): one evaluation of a rule at `at`, the log read to its end.
CREATE FUNCTION pg_temp.eval(rule text, at timestamptz)
RETURNS text
LANGUAGE sql
AS $$
    SELECT runra_obs._alert_evaluate((SELECT id FROM runra_obs.alert_rules WHERE name = rule), at,
                                     runra_obs._alert_log_head())
$$;

-- states(rule): its instances now, times as anchor offsets.
CREATE FUNCTION pg_temp.states(rule text)
RETURNS TABLE (state text, labels jsonb, value double precision, since interval, fired interval, resolved interval)
LANGUAGE sql
AS $$
    SELECT i.state, i.labels - 'alertname', i.value, pg_temp.rel(i.active_since), pg_temp.rel(i.fired_at),
           pg_temp.rel(i.resolved_at)
    FROM runra_obs.alert_instances AS i JOIN runra_obs.alert_rules AS r ON r.id = i.rule_id
    WHERE r.name = rule ORDER BY i.labels::text
$$;

-- history(rule): its transitions, in order.
CREATE FUNCTION pg_temp.history(rule text)
RETURNS TABLE (at interval, labels jsonb, from_state text, to_state text, value double precision)
LANGUAGE sql
AS $$
    SELECT pg_temp.rel(h.at), h.labels - 'alertname', h.from_state, h.to_state, h.value
    FROM runra_obs.alert_history AS h WHERE h.rule_name = rule ORDER BY h.id
$$;

-- ---------------------------------------------------------------------------
-- Contact points.
-- ---------------------------------------------------------------------------
SELECT runra_obs.add_contact_point('ops-slack', 'slack',
    '{"url": "https://hooks.slack.com/services/T0/B0/secret", "channel": "#ops"}');
SELECT runra_obs.add_contact_point('hook', 'webhook',
    '{"url": "https://hooks.example.com/alerts", "authorization": "Bearer s3cret"}');
SELECT runra_obs.add_contact_point('am', 'alertmanager', '{"url": "http://127.0.0.1:9093/", "resendInterval": "1 minute"}');
SELECT runra_obs.add_contact_point('keyed-hook', 'webhook',
    '{"url": "https://hooks.example.com/in?channel=ops&access_token=t0ken-in-url"}');
-- readers see them without the URL of Slack or the Authorization
SELECT name, kind, url, settings, has_authorization FROM runra_obs.contact_point_list ORDER BY name;
SELECT secrets ->> 'url' AS configured FROM runra_obs.contact_points WHERE name = 'keyed-hook';
SELECT runra_obs.remove_contact_point('keyed-hook');
-- what the worker posts to
SELECT contact_point, url FROM runra_obs._alert_outbox('infinity', 10);

-- bad contact points, each refused with what and where
SAVEPOINT s;
SELECT runra_obs.add_contact_point('x', 'pagerduty', '{}');
ROLLBACK TO s;
SELECT runra_obs.add_contact_point('x', 'slack', '{}');
ROLLBACK TO s;
SELECT runra_obs.add_contact_point('x', 'webhook', '{"url": "https://user:pw@example.com/"}');
ROLLBACK TO s;
SELECT runra_obs.add_contact_point('x', 'webhook', '{"url": "https://example.com/", "retries": 3}');
ROLLBACK TO s;
SELECT runra_obs.add_contact_point('x', 'alertmanager', '{"url": "http://am:9093", "resendInterval": "soon"}');
ROLLBACK TO s;
SELECT runra_obs.add_contact_point('hook', 'webhook', '{"url": "https://example.com/"}');
ROLLBACK TO s;
-- a direct INSERT is checked too
INSERT INTO runra_obs.contact_points (name, kind, settings) VALUES ('x', 'webhook', '{"url": "ftp://x"}');
ROLLBACK TO s;

-- ---------------------------------------------------------------------------
-- Rules refused at creation, saying what and where.
-- ---------------------------------------------------------------------------
SELECT runra_obs.create_alert('r', 'error_budget');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'error_rate', '{"treshold": 0.1}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'error_rate', '{"threshold": 5}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'error_rate', '{"window": "five minutes"}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'error_rate', '{}', '{"for": "5 minutes", "every": "0s"}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'error_rate', '{}', '{"annotations": {"summary": "rate {{ value }"}}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'error_rate', '{}', '{"annotations": {"summary": "rate {{ value }} of {{ labels.sandbox-id }}"}}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'error_rate', '{}', '{"annotations": {"summary": "rate }} {{ value }}"}}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'error_rate', '{}', '{"labels": {"team name": "infra"}}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'error_rate', '{}', '{"contactPoints": ["pager"]}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'match', '{}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'match', '{"eventTypes": ["exec.completed"], "condition": "$.exitCode !="}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'absence', '{"scope": "fleet"}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'query', '{"sql": "SELECT 1 AS value"}');
ROLLBACK TO s;
RELEASE s;
SET LOCAL ROLE alert_admin_test;
SAVEPOINT s;
SELECT runra_obs.create_alert('r', 'query', '{"sql": "SELEC 1 AS value"}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'query', '{"sql": "SELECT 1 AS value; DROP TABLE runra_obs.alert_rules"}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'query', '{"sql": "DELETE FROM runra_obs.alert_history RETURNING id AS value"}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'query', '{"sql": "WITH d AS (DELETE FROM runra_obs.alert_history RETURNING id) SELECT count(*) AS value FROM d"}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'query', '{"sql": "SELECT sandbox_id FROM runra_obs.sandbox_events"}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'query', '{"sql": "SELECT count(*), sum(id) FROM runra_obs.sandbox_events"}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'query', '{"sql": "SELECT sandbox_id AS \"sandbox id\", 1 AS value FROM runra_obs.sandbox_events"}');
ROLLBACK TO s;
SELECT runra_obs.create_alert('r', 'query', '{"sql": "SELECT 1 AS value FROM runra_obs.no_such_table"}');
ROLLBACK TO s;
RELEASE s;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- The events every kind below is worked out on.  Anchor offsets; the
-- windows end at 12:05 (5 minutes: [12:00, 12:05)).
-- ---------------------------------------------------------------------------
SELECT runra_obs.create_alert('failed make', 'match',
    '{"eventTypes": ["exec.completed"], "condition": "$.exitCode != 0", "by": ["sandbox_id", "command"]}',
    '{"annotations": {"summary": "{{ labels.command }} failed in {{ labels.sandbox_id }} (exit {{ values.lastEvent.data.exitCode }})"}}');
SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_array(
    -- sb_a: 4 executions, 1 failure (exit 2)
    pg_temp.ev(pg_temp.t('12:00'), 'sb_a', 'exec.completed', '{"command": "make", "exitCode": 0}'),
    pg_temp.ev(pg_temp.t('12:01'), 'sb_a', 'exec.completed', '{"command": "make", "exitCode": 2}'),
    pg_temp.ev(pg_temp.t('12:02'), 'sb_a', 'exec.completed', '{"command": "ls", "exitCode": 0}'),
    pg_temp.ev(pg_temp.t('12:03'), 'sb_a', 'exec.completed', '{"command": "ls", "exitCode": 0}'),
    -- sb_b: 2 executions, both failed (one timed out after its exec.started named the command)
    pg_temp.ev(pg_temp.t('12:00:30'), 'sb_b', 'exec.started', '{"command": "pytest"}'),
    pg_temp.ev(pg_temp.t('12:01:30'), 'sb_b', 'exec.timed_out', '{"timeoutMs": 60000}'),
    pg_temp.ev(pg_temp.t('12:02:30'), 'sb_b', 'exec.failed', '{"command": "make", "error": "oom"}'),
    -- outside the window: before it, and at its end
    pg_temp.ev(pg_temp.t('11:59:59'), 'sb_a', 'exec.failed', '{"command": "make"}'),
    pg_temp.ev(pg_temp.t('12:05'), 'sb_a', 'exec.failed', '{"command": "make"}'),
    -- memory: sb_m's latest sample in the window is 1900 / 2048 = 92.77 %, sb_n's 50 %
    pg_temp.ev(pg_temp.t('12:00'), 'sb_m', 'resource.memory', '{"memoryUsedMb": 512, "memoryLimitMb": 2048}'),
    pg_temp.ev(pg_temp.t('12:04'), 'sb_m', 'resource.memory', '{"memoryUsedMb": 1900, "memoryLimitMb": 2048}'),
    pg_temp.ev(pg_temp.t('12:04'), 'sb_n', 'resource.memory', '{"memoryUsedMb": 1024, "memoryLimitMb": 2048}'),
    pg_temp.ev(pg_temp.t('12:04'), 'sb_o', 'resource.memory', '{"memoryUsedMb": 1024}'),
    -- lifecycle: sb_a and sb_m run, sb_q ran and was terminated
    pg_temp.ev(pg_temp.t('11:00'), 'sb_a', 'sandbox.started', '{}'),
    pg_temp.ev(pg_temp.t('11:00'), 'sb_m', 'sandbox.started', '{}'),
    pg_temp.ev(pg_temp.t('11:00'), 'sb_q', 'sandbox.started', '{}'),
    pg_temp.ev(pg_temp.t('11:30'), 'sb_q', 'sandbox.terminated', '{}')));

-- error_rate, fleet-wide: 3 failures of 6 executions = 0.5
SELECT runra_obs.create_alert('errors', 'error_rate', '{"threshold": 0.05}');
SELECT labels - 'alertname' AS labels, value, "values", active FROM runra_obs.preview_alert('errors', pg_temp.t('12:05'));
-- per sandbox: sb_a 1/4 = 0.25, sb_b 2/2 = 1; with minExecutions 3 only sb_a counts
SELECT runra_obs.create_alert('errors by sandbox', 'error_rate', '{"threshold": 0.3, "by": "sandbox", "minExecutions": 3}');
SELECT labels - 'alertname' AS labels, value, active FROM runra_obs.preview_alert('errors by sandbox', pg_temp.t('12:05'));
-- per command: the timeout is pytest's (named by its exec.started); make 2/3
SELECT runra_obs.create_alert('errors by command', 'error_rate', '{"threshold": 0.5, "by": "command"}');
SELECT labels - 'alertname' AS labels, value, active FROM runra_obs.preview_alert('errors by command', pg_temp.t('12:05'));

-- exec_timeouts: 1 in the window; above 0 is active
SELECT runra_obs.create_alert('timeouts', 'exec_timeouts', '{"above": 0, "by": "sandbox"}');
SELECT labels - 'alertname' AS labels, value, "values", active FROM runra_obs.preview_alert('timeouts', pg_temp.t('12:05'));

-- resource: the latest sample of each sandbox; sb_o has no limit, so no figure
SELECT runra_obs.create_alert('memory', 'resource', '{"resource": "memory", "abovePercent": 90}',
    '{"labels": {"severity": "warning"}}');
SELECT labels - 'alertname' AS labels, round(value::numeric, 4) AS value, active
FROM runra_obs.preview_alert('memory', pg_temp.t('12:05'));

-- match: both failed make runs... of exec.completed with a non-zero exit: one
SELECT labels - 'alertname' AS labels, value, "values" -> 'lastEvent' -> 'data' AS last, active
FROM runra_obs.preview_alert('failed make', pg_temp.t('12:05'));

-- absence, per sandbox: running sandboxes silent for 30 minutes at 12:40
-- (at 12:30 nobody is: no series, and that is no lack of data)
-- (sb_a's last event 12:05 -> 35 min; sb_m's 12:04 -> 36 min; sb_q terminated)
SELECT runra_obs.create_alert('silent sandbox', 'absence', '{"scope": "sandbox", "duration": "30 minutes"}');
SELECT labels - 'alertname' AS labels, value, active FROM runra_obs.preview_alert('silent sandbox', pg_temp.t('12:40'));
SELECT labels - 'alertname' AS labels, value, active FROM runra_obs.preview_alert('silent sandbox', pg_temp.t('12:30'));
-- absence, fleet: by arrival (ingested_at is now(), this transaction's)
SELECT runra_obs.create_alert('silent fleet', 'absence', '{"duration": "10 minutes"}');
SELECT value, active FROM runra_obs.preview_alert('silent fleet', now() + interval '9 minutes');
SELECT value, active FROM runra_obs.preview_alert('silent fleet', now() + interval '10 minutes');

-- query: rows are instances, text columns labels, the number the value
SET LOCAL ROLE alert_admin_test;
SELECT runra_obs.create_alert('failures per sandbox', 'query',
    '{"sql": "SELECT sandbox_id, count(*) FILTER (WHERE runra_obs.event_failed(event_type, data)) AS failures FROM runra_obs.sandbox_events GROUP BY sandbox_id", "above": 1}');
RESET ROLE;
SELECT labels - 'alertname' AS labels, value, active FROM runra_obs.preview_alert('failures per sandbox', pg_temp.t('12:05'));

-- cost anomaly: the hour before 12:00 against the same hour on the 3 days
-- before (0.10, 0.20 and none: baseline 0.15 over 2 days); 0.40 is above
-- 0.15 * (1 + 0.5) = 0.225
SELECT ingested FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(pg_temp.t('11:10'), 'sb_c', 'cost.runtime', '{"cost": 0.25}'),
    pg_temp.ev(pg_temp.t('11:20'), 'sb_c', 'cost.storage', '{"cost": 0.15}'),
    pg_temp.ev(pg_temp.t('11:30'), 'sb_c', 'cost.total', '{"sandboxCost": 99}'),
    pg_temp.ev(pg_temp.t('-12:50'), 'sb_c', 'cost.runtime', '{"cost": 0.10}'),
    pg_temp.ev(pg_temp.t('-36:50'), 'sb_c', 'cost.runtime', '{"cost": 0.20}'),
    pg_temp.ev(pg_temp.t('-36:00'), 'sb_c', 'cost.runtime', '{"cost": 5}')));
SELECT runra_obs.create_alert('cost spike', 'cost_anomaly', '{"days": 3, "tolerance": 0.5}');
SELECT value, "values", active FROM runra_obs.preview_alert('cost spike', pg_temp.t('12:00'));
-- no history at all (13:00: none of the 3 days before had cost then): no alert
SELECT value, "values", active FROM runra_obs.preview_alert('cost spike', pg_temp.t('14:00'));

-- ---------------------------------------------------------------------------
-- States: for and keep_firing_for, as Prometheus has them.
-- ---------------------------------------------------------------------------
SELECT runra_obs.change_alert('memory', NULL,
    '{"for": "2 minutes", "keepFiringFor": "1 minute", "contactPoints": ["hook", "am"]}');
-- 12:05 active -> pending; 12:06 still pending; 12:07 for has passed -> firing
SELECT pg_temp.eval('memory', pg_temp.t('12:05'));
SELECT * FROM pg_temp.states('memory');
SELECT pg_temp.eval('memory', pg_temp.t('12:06'));
SELECT pg_temp.eval('memory', pg_temp.t('12:07'));
SELECT * FROM pg_temp.states('memory');
-- a new sample below the limit at 12:07:30: not active at 12:07:45, but
-- firing on for keep_firing_for, counted (as Prometheus does) from 12:07:45,
-- the first evaluation that missed it: still firing at 12:08, resolved at
-- 12:08:45
SELECT ingested FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(pg_temp.t('12:07:30'), 'sb_m', 'resource.memory', '{"memoryUsedMb": 100, "memoryLimitMb": 2048}')));
SELECT pg_temp.eval('memory', pg_temp.t('12:07:45'));
SELECT * FROM pg_temp.states('memory');
SELECT pg_temp.eval('memory', pg_temp.t('12:08'));
SELECT * FROM pg_temp.states('memory');
SELECT pg_temp.eval('memory', pg_temp.t('12:08:45'));
SELECT * FROM pg_temp.states('memory');
SELECT * FROM pg_temp.history('memory');

-- a pending alert that lapses is dropped, nobody told (at 12:30 the
-- window [12:25, 12:30) has no executions)
SELECT runra_obs.change_alert('errors by command', NULL, '{"for": "10 minutes", "contactPoints": ["hook"]}');
SELECT pg_temp.eval('errors by command', pg_temp.t('12:05'));
SELECT pg_temp.eval('errors by command', pg_temp.t('12:30'));
SELECT * FROM pg_temp.history('errors by command');
SELECT count(*) AS notifications FROM runra_obs.alert_notifications WHERE rule_name = 'errors by command';

-- ---------------------------------------------------------------------------
-- What contact points get.
-- ---------------------------------------------------------------------------
-- the webhook: Grafana's payload, version 1 (firing, then resolved)
SELECT n.body ->> 'title' AS title, n.body ->> 'status' AS status, n.body ->> 'version' AS version,
       n.body -> 'commonLabels' AS common_labels, jsonb_array_length(n.body -> 'alerts') AS alerts,
       n.body -> 'alerts' -> 0 -> 'annotations' ->> 'summary' AS summary,
       n.body -> 'alerts' -> 0 ->> 'endsAt' = '0001-01-01T00:00:00Z' AS open_ended,
       (n.body -> 'alerts' -> 0 -> 'values') - 'sampledAt' AS "values",
       n.status, pg_temp.rel(n.created_at) AS queued
FROM runra_obs.alert_notifications AS n JOIN runra_obs.contact_points AS c ON c.id = n.contact_point_id
WHERE n.rule_name = 'memory' AND c.name = 'hook' ORDER BY n.id;
SELECT array_agg(k ORDER BY k) AS webhook_keys
FROM runra_obs.alert_notifications AS n, jsonb_object_keys(n.body) AS k
WHERE n.rule_name = 'memory' AND n.contact_point_id = (SELECT id FROM runra_obs.contact_points WHERE name = 'hook')
  AND n.id = (SELECT min(id) FROM runra_obs.alert_notifications WHERE rule_name = 'memory');
-- Alertmanager: firing with endsAt four resend intervals ahead (12:07 + 4 min),
-- told again a resend interval later (12:08, endsAt moved), then resolved
-- with endsAt its resolution; resent while resolvedResendFor lasts
SELECT pg_temp.rel((a ->> 'startsAt')::timestamptz) AS starts, pg_temp.rel((a ->> 'endsAt')::timestamptz) AS ends,
       a -> 'labels' AS labels, pg_temp.rel(n.created_at) AS queued
FROM runra_obs.alert_notifications AS n JOIN runra_obs.contact_points AS c ON c.id = n.contact_point_id,
     jsonb_array_elements(n.body) AS a
WHERE n.rule_name = 'memory' AND c.name = 'am' ORDER BY n.id;
SELECT pg_temp.eval('memory', pg_temp.t('12:09:30'));
SELECT pg_temp.eval('memory', pg_temp.t('12:10'));
SELECT pg_temp.rel(n.created_at) AS queued, pg_temp.rel((n.body -> 0 ->> 'endsAt')::timestamptz) AS ends
FROM runra_obs.alert_notifications AS n JOIN runra_obs.contact_points AS c ON c.id = n.contact_point_id
WHERE n.rule_name = 'memory' AND c.name = 'am' ORDER BY n.id;

-- Slack: text plus blocks, the URL from the secrets
SELECT runra_obs.create_alert('slack errors', 'error_rate', '{"by": "sandbox"}', '{"contactPoints": ["ops-slack"]}');
SELECT pg_temp.eval('slack errors', pg_temp.t('12:05'));
SELECT n.body ->> 'text' AS text, n.body ->> 'channel' AS channel,
       jsonb_path_query_array(n.body, '$.blocks[*].type') AS blocks,
       n.body -> 'blocks' -> 1 -> 'text' ->> 'text' AS first_section
FROM runra_obs.alert_notifications AS n WHERE n.rule_name = 'slack errors';

-- match rules tell every evaluation with new matches (one message for all),
-- and by default not the resolutions
SELECT runra_obs.change_alert('failed make', NULL, '{"contactPoints": ["hook"]}');
SELECT pg_temp.eval('failed make', pg_temp.t('12:05'));
SELECT pg_temp.eval('failed make', pg_temp.t('12:06'));
SELECT ingested FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(pg_temp.t('12:06'), 'sb_a', 'exec.completed', '{"command": "make", "exitCode": 1}'),
    pg_temp.ev(pg_temp.t('12:06'), 'sb_b', 'exec.completed', '{"command": "make", "exitCode": 1}')));
SELECT pg_temp.eval('failed make', pg_temp.t('12:07'));
SELECT pg_temp.rel(n.created_at) AS queued, n.body ->> 'title' AS title, n.body ->> 'message' AS message
FROM runra_obs.alert_notifications AS n WHERE n.rule_name = 'failed make' ORDER BY n.id;

-- repeatInterval: told again while firing, no more often
SELECT runra_obs.change_alert('timeouts', NULL, '{"contactPoints": ["hook"], "repeatInterval": "10 minutes", "evaluationDelay": "0"}');
SELECT pg_temp.eval('timeouts', pg_temp.t('12:05'));
SELECT pg_temp.eval('timeouts', pg_temp.t('12:06'));
SELECT pg_temp.eval('timeouts', pg_temp.t('12:15'));
SELECT pg_temp.rel(n.created_at) AS queued, n.body ->> 'title' AS title
FROM runra_obs.alert_notifications AS n WHERE n.rule_name = 'timeouts' ORDER BY n.id;

-- ---------------------------------------------------------------------------
-- No data, late data, failures.
-- ---------------------------------------------------------------------------
-- no executions after 13:00: no data; alerting on it makes one alert
SELECT runra_obs.create_alert('quiet errors', 'error_rate', '{}', '{"noData": "alerting"}');
SELECT pg_temp.eval('quiet errors', pg_temp.t('14:00'));
SELECT * FROM pg_temp.states('quiet errors');
SELECT health FROM runra_obs.alert_rule_runs WHERE rule_id = (SELECT id FROM runra_obs.alert_rules WHERE name = 'quiet errors');
-- keep_state leaves the firing memory alert alone when there is no data
SELECT runra_obs.change_alert('errors', NULL, '{"noData": "keep_state"}');
SELECT pg_temp.eval('errors', pg_temp.t('12:05'));
SELECT pg_temp.eval('errors', pg_temp.t('14:00'));
SELECT state, labels - 'alertname' AS labels FROM pg_temp.states('errors');

-- late data: with evaluationDelay 2 minutes the 12:05 evaluation reads
-- [11:58, 12:03), so a timeout at 11:59 that arrived late is in it, and
-- the one at 12:01:30 too; without the delay only the latter is
SELECT runra_obs.create_alert('late', 'exec_timeouts', '{"above": 1}', '{"evaluationDelay": "2 minutes"}');
SELECT ingested FROM runra_obs.ingest(jsonb_build_array(
    pg_temp.ev(pg_temp.t('11:59'), 'sb_b', 'exec.timed_out', '{"command": "pytest"}')));
SELECT value, active FROM runra_obs.preview_alert('late', pg_temp.t('12:05'));
SELECT value, active FROM runra_obs.preview_alert('timeouts', pg_temp.t('12:05'));

-- a query that fails when it runs: the rule is in the error state with the
-- message, its alerts as they were, and the next evaluation may recover
SET LOCAL ROLE alert_admin_test;
SELECT runra_obs.create_alert('broken', 'query',
    '{"sql": "SELECT sandbox_id, 1 / (count(*) - count(*)) AS value FROM runra_obs.sandbox_events GROUP BY 1"}');
RESET ROLE;
SAVEPOINT before_eval;
SELECT pg_temp.eval('broken', pg_temp.t('12:05'));
ROLLBACK TO before_eval;
SELECT runra_obs._alert_failed((SELECT id FROM runra_obs.alert_rules WHERE name = 'broken'), pg_temp.t('12:05'),
                               'division by zero');
SELECT rule, state, error FROM runra_obs.alert_states WHERE rule = 'broken';
SELECT * FROM pg_temp.history('broken');

-- ---------------------------------------------------------------------------
-- Who may do what.
-- ---------------------------------------------------------------------------
CREATE ROLE alert_reader_test IN ROLE runra_obs_reader;
CREATE TABLE public.private_costs (sandbox_id text, cost numeric);
CREATE FUNCTION public.not_mine(n jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
ALTER FUNCTION public.not_mine(jsonb) OWNER TO alert_reader_test;
INSERT INTO public.private_costs VALUES ('sb_x', 12);
SET LOCAL ROLE alert_reader_test;
SELECT count(*) > 0 AS reader_sees_rules FROM runra_obs.alert_rules;
SELECT count(*) >= 0 AS reader_sees_history FROM runra_obs.alert_history;
SAVEPOINT r;
SELECT runra_obs.create_alert('reader rule', 'error_rate');
ROLLBACK TO r;
SELECT secrets FROM runra_obs.contact_points;
ROLLBACK TO r;
RESET ROLE;
SET LOCAL ROLE alert_admin_test;
-- admins write contact points and rules, never read the secrets
SELECT runra_obs.add_contact_point('admin hook', 'webhook', '{"url": "https://example.com/a", "authorization": "Bearer x"}');
SAVEPOINT a;
SELECT secrets FROM runra_obs.contact_points;
ROLLBACK TO a;
-- a query the admin may not run is refused at creation
SELECT runra_obs.create_alert('private', 'query', '{"sql": "SELECT sandbox_id, cost AS value FROM public.private_costs"}');
ROLLBACK TO a;
-- an owner or an id is never written by hand; the writer is the owner
INSERT INTO runra_obs.alert_rules (name, kind, params, owner)
VALUES ('forged', 'query', '{"sql": "SELECT 1 AS value"}', 10::oid::regrole);
ROLLBACK TO a;
INSERT INTO runra_obs.alert_rules (id, name, kind, params) OVERRIDING SYSTEM VALUE
VALUES (2147483647, 'forged', 'query', '{"sql": "SELECT 1 AS value"}');
ROLLBACK TO a;
INSERT INTO runra_obs.alert_rules (name, kind, params) VALUES ('forged', 'query', '{"sql": "SELECT 1 AS value"}');
SELECT name, owner FROM runra_obs.alert_rules WHERE name = 'forged';
-- a direct write is checked as the functions check it
SAVEPOINT a;
INSERT INTO runra_obs.contact_points (name, kind, settings, secrets)
VALUES ('bad am', 'alertmanager', '{"resendInterval": "soon"}', '{"url": "http://am:9093"}');
ROLLBACK TO a;
-- a handler is only what its writer could run as its owner (and takes one jsonb)
INSERT INTO runra_obs.contact_points (name, kind, handler) VALUES ('reload', 'function', 'pg_catalog.pg_reload_conf()');
ROLLBACK TO a;
INSERT INTO runra_obs.contact_points (name, kind, handler) VALUES ('cat', 'function', 'public.not_mine(jsonb)');
ROLLBACK TO a;
-- the URL goes with the secrets: pointing a webhook elsewhere drops its Authorization
UPDATE runra_obs.contact_points SET secrets = '{"url": "https://attacker.example/"}' WHERE name = 'hook';
SELECT name, url, has_authorization FROM runra_obs.contact_point_list WHERE name = 'hook';
ROLLBACK TO a;
-- a contact point a rule notifies is not removed or renamed under it
DELETE FROM runra_obs.contact_points WHERE name = 'hook';
ROLLBACK TO a;
UPDATE runra_obs.contact_points SET name = 'hook2' WHERE name = 'hook';
ROLLBACK TO a;
RESET ROLE;
-- a superuser pausing an admin's query rule does not become its owner
SELECT runra_obs.pause_alert('forged'), runra_obs.resume_alert('forged');
SELECT name, owner FROM runra_obs.alert_rules WHERE name = 'forged';
-- granted, created, then revoked: the worker runs it as its owner, who
-- may no longer read the table, so the evaluation fails
GRANT SELECT ON public.private_costs TO alert_admin_test;
SET LOCAL ROLE alert_admin_test;
SELECT runra_obs.create_alert('private', 'query', '{"sql": "SELECT sandbox_id, cost AS value FROM public.private_costs"}');
RESET ROLE;
SELECT labels - 'alertname' AS labels, value FROM runra_obs.preview_alert('private');
REVOKE SELECT ON public.private_costs FROM alert_admin_test;
SAVEPOINT p;
SELECT pg_temp.eval('private', pg_temp.t('12:05'));
ROLLBACK TO p;
-- a superuser's preview runs it as the owner too; an admin's as the admin
SAVEPOINT p;
SELECT * FROM runra_obs.preview_alert('private');
ROLLBACK TO p;

-- Slack's text is escaped: event data cannot mention @channel or hide a link
SELECT runra_obs._alert_slack_escape('<!channel> & <http://x|y>') AS escaped;

-- the outbox offers each contact point the oldest pending notification of
-- each rule, and nothing of a pair that has one in flight: a retried FIRING
-- never lands after the RESOLVED that followed it; an Alertmanager's older
-- ones were superseded by the newest (it carries the whole group)
SELECT o.contact_point, n.rule_name, n.body ->> 'title' AS title, pg_temp.rel(n.created_at) AS queued
FROM runra_obs._alert_outbox('infinity', 100) AS o JOIN runra_obs.alert_notifications AS n USING (id)
ORDER BY 1, 2;
SELECT count(*) AS offered_while_in_flight
FROM runra_obs._alert_outbox('infinity', 100, ARRAY(SELECT id FROM runra_obs._alert_outbox('infinity', 100)));
SELECT n.status, count(*) FROM runra_obs.alert_notifications AS n
JOIN runra_obs.contact_points AS c ON c.id = n.contact_point_id
WHERE c.name = 'am' GROUP BY 1 ORDER BY 1;

-- more active series than maxInstances is an error, as Prometheus's limit
SELECT runra_obs.create_alert('too many', 'error_rate', '{"threshold": 0, "by": "sandbox"}', '{"maxInstances": 1}');
SAVEPOINT m;
SELECT pg_temp.eval('too many', pg_temp.t('12:05'));
ROLLBACK TO m;

-- each rule's health and counts
SELECT name, kind, health, last_error, evaluations, failures, firing, pending, owner <> current_user::text AS not_mine
FROM runra_obs.alert_rule_status ORDER BY name;

-- history and notifications older than runra_obs.alert_retention go at maintenance
SET LOCAL runra_obs.alert_retention = '1h';
SELECT runra_obs._expire_alerts() > 0 AS expired;
SELECT (SELECT count(*) FROM runra_obs.alert_history) AS history_left,
       (SELECT count(*) FROM runra_obs.alert_notifications WHERE status <> 'pending') AS done_left;
RESET runra_obs.alert_retention;

-- pause, resume, remove
SELECT runra_obs.pause_alert('memory');
SELECT runra_obs._alert_evaluate(id, pg_temp.t('13:00'), 0) FROM runra_obs.alert_rules WHERE name = 'memory';
SELECT runra_obs.resume_alert('memory');
SELECT runra_obs.remove_alert('memory');
SELECT count(*) AS memory_instances FROM runra_obs.alert_instances AS i
WHERE NOT EXISTS (SELECT FROM runra_obs.alert_rules AS r WHERE r.id = i.rule_id);
SAVEPOINT c;
SELECT runra_obs.remove_contact_point('hook');
ROLLBACK TO c;
SELECT runra_obs.requeue_alert_notifications('hook');

ROLLBACK;
