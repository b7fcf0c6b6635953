-- ===========================================================================
-- Alerting, part 3: notifications.
--
-- An evaluation queues one notification per contact point of the rule when
-- something is worth telling: an alert fired or resolved, or (with
-- repeat_interval) alerts are still firing and were last told about that
-- long ago.  One notification carries every alert of the rule (a group,
-- as Grafana and Alertmanager group by alertname), so an error storm over
-- two thousand sandboxes is one message, not two thousand.
--
-- Alertmanager keeps no state of its own: as Prometheus does, its contact
-- points get the firing alerts again every resendInterval with an endsAt
-- ahead (four resend intervals or evaluation intervals, whichever is
-- longer), and resolved alerts, with their endsAt, for resolvedResendFor.
--
-- The alert worker sends what is queued (src/alert/alert_worker.c) with
-- the forwarders' transport and retry policy; a contact point that answers
-- a 4xx (other than 408 and 429) gets the notification dead-lettered with
-- its answer, the others are retried with backoff (and Retry-After) for
-- max_retry_ms.
-- ===========================================================================

CREATE TABLE runra_obs.alert_notifications (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_point_id int         NOT NULL REFERENCES runra_obs.contact_points ON DELETE CASCADE,
    rule_id          int         NOT NULL,
    rule_name        text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',
    body             jsonb       NOT NULL,
    created_at       timestamptz NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    done_at          timestamptz,
    last_error       text,
    answer           text,
    CONSTRAINT alert_notifications_status_check CHECK (status IN ('pending', 'sent', 'dead', 'superseded'))
);
CREATE INDEX alert_notifications_due_idx ON runra_obs.alert_notifications (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX alert_notifications_created_idx ON runra_obs.alert_notifications (created_at);
COMMENT ON TABLE runra_obs.alert_notifications IS
    'Notifications to contact points: pending (queued or being retried), sent, dead (refused, or failing past max_retry_ms; see requeue_alert_notifications()), or superseded (an Alertmanager one a newer one replaced before it was sent)';
COMMENT ON COLUMN runra_obs.alert_notifications.body IS
    'What is sent: Slack''s message, Grafana''s webhook payload (version 1), or Alertmanager''s list of alerts';
COMMENT ON COLUMN runra_obs.alert_notifications.answer IS
    'The contact point''s last answer body (at most 4 kB), for a dead letter its refusal';
GRANT SELECT ON runra_obs.alert_notifications TO runra_obs_reader;

-- When each rule last notified each contact point (repeats, resends).
CREATE TABLE runra_obs.alert_deliveries (
    rule_id          int         NOT NULL REFERENCES runra_obs.alert_rules ON DELETE CASCADE,
    contact_point_id int         NOT NULL REFERENCES runra_obs.contact_points ON DELETE CASCADE,
    last_queued_at   timestamptz NOT NULL,
    PRIMARY KEY (rule_id, contact_point_id)
);
COMMENT ON TABLE runra_obs.alert_deliveries IS
    'When each alert rule last queued a notification for each of its contact points';
GRANT SELECT ON runra_obs.alert_deliveries TO runra_obs_reader;

-- A time as the payloads write it: RFC 3339 in UTC.
CREATE FUNCTION runra_obs._alert_time(ts timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '0001-01-01T00:00:00Z')
$$;

-- The labels (or annotations) every alert of a group shares.
CREATE FUNCTION runra_obs._alert_common(maps jsonb[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}')
    FROM (SELECT kv.key, kv.value
          FROM unnest(maps) AS m, jsonb_each(m) AS kv
          GROUP BY kv.key, kv.value
          HAVING count(*) = cardinality(maps)) AS e
$$;

-- One alert in Grafana's webhook form (Alertmanager's fields and more).
CREATE FUNCTION runra_obs._alert_json(i runra_obs.alert_instances)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'status', CASE WHEN i.state = 'firing' THEN 'firing' ELSE 'resolved' END,
        'labels', i.labels,
        'annotations', i.annotations,
        'startsAt', runra_obs._alert_time(i.fired_at),
        'endsAt', runra_obs._alert_time(i.resolved_at),
        'generatorURL', '',
        'fingerprint', left(i.fingerprint, 16),
        'silenceURL', '',
        'dashboardURL', '',
        'panelURL', '',
        'values', jsonb_strip_nulls(jsonb_build_object('A', i.value)) || i."values",
        'valueString', format('[ var=''A'' labels=%s value=%s ]', i.labels, runra_obs._alert_format_number(i.value)))
$$;

-- The title of a group: "[FIRING:2] name" (and resolved ones).
CREATE FUNCTION runra_obs._alert_title(rule_name text, alerts jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN firing > 0
                THEN format('[FIRING:%s] %s', firing, rule_name)
                     || CASE WHEN resolved > 0 THEN format(' (%s resolved)', resolved) ELSE '' END
                ELSE format('[RESOLVED] %s', rule_name)
           END
    FROM (SELECT count(*) FILTER (WHERE a ->> 'status' = 'firing') AS firing,
                 count(*) FILTER (WHERE a ->> 'status' = 'resolved') AS resolved
          FROM jsonb_array_elements(alerts) AS a) AS n
$$;

-- Grafana's webhook payload, version 1, for the alerts of one rule (at
-- most 100; truncatedAlerts says how many more).
CREATE FUNCTION runra_obs._alert_webhook_body(cp runra_obs.contact_points, r runra_obs.alert_rules,
                                              alerts jsonb, truncated integer)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'receiver', cp.name,
        'status', CASE WHEN g.firing THEN 'firing' ELSE 'resolved' END,
        'orgId', 1,
        'alerts', alerts,
        'groupLabels', jsonb_build_object('alertname', r.name),
        'commonLabels', runra_obs._alert_common(ARRAY(SELECT a -> 'labels' FROM jsonb_array_elements(alerts) AS a)),
        'commonAnnotations', runra_obs._alert_common(ARRAY(SELECT a -> 'annotations' FROM jsonb_array_elements(alerts) AS a)),
        'externalURL', '',
        'version', '1',
        'groupKey', format('{}:{alertname=%s}', to_jsonb(r.name)),
        'truncatedAlerts', truncated,
        'title', runra_obs._alert_title(r.name, alerts),
        'state', CASE WHEN g.firing THEN 'alerting' ELSE 'ok' END,
        'message', runra_obs._alert_text(alerts, truncated))
    -- whether any alert of the group fires, asked once for status and state
    FROM (SELECT EXISTS (SELECT FROM jsonb_array_elements(alerts) AS a WHERE a ->> 'status' = 'firing') AS firing) AS g
$$;

-- The alerts of a group as lines of text: each one's summary (or its
-- labels), at most ten, then how many more.
CREATE FUNCTION runra_obs._alert_text(alerts jsonb, truncated integer)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%s: %s', upper(a ->> 'status'),
                             coalesce(a -> 'annotations' ->> 'summary', (a -> 'labels')::text)), E'\n' ORDER BY n)
           || CASE WHEN jsonb_array_length(alerts) + truncated > 10
                   THEN format(E'\n… and %s more', jsonb_array_length(alerts) + truncated - 10) ELSE '' END
    FROM jsonb_array_elements(alerts) WITH ORDINALITY AS x(a, n)
    WHERE n <= 10
$$;

-- Text as Slack's mrkdwn takes it literally: &, < and > escaped, so labels
-- and annotations that come from event data cannot mention @channel or
-- hide a link.
CREATE FUNCTION runra_obs._alert_slack_escape(value text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT replace(replace(replace(value, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')
$$;

-- A Slack incoming-webhook message: text (what notifications show) and
-- blocks (a header, one section per alert up to ten, a context line).
CREATE FUNCTION runra_obs._alert_slack_body(cp runra_obs.contact_points, r runra_obs.alert_rules,
                                            alerts jsonb, truncated integer)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'text', left(runra_obs._alert_slack_escape(runra_obs._alert_title(r.name, alerts) || E'\n'
                                                   || runra_obs._alert_text(alerts, truncated)), 3000),
        'channel', cp.settings -> 'channel',
        'username', cp.settings -> 'username',
        'icon_emoji', cp.settings -> 'iconEmoji',
        'blocks',
        jsonb_build_array(jsonb_build_object('type', 'header', 'text',
                jsonb_build_object('type', 'plain_text', 'text', left(runra_obs._alert_title(r.name, alerts), 150))))
        || coalesce((SELECT jsonb_agg(jsonb_build_object('type', 'section', 'text',
                         jsonb_build_object('type', 'mrkdwn', 'text', left(runra_obs._alert_slack_escape(format(E'*%s* %s\n%s',
                             upper(a ->> 'status'),
                             coalesce(a -> 'annotations' ->> 'summary', r.name),
                             (SELECT string_agg(format('`%s=%s`', l.key, l.value), ' ' ORDER BY l.key)
                              FROM jsonb_each_text(a -> 'labels') AS l WHERE l.key <> 'alertname'))), 3000))) ORDER BY n)
                     FROM jsonb_array_elements(alerts) WITH ORDINALITY AS x(a, n) WHERE n <= 10), '[]')
        || CASE WHEN jsonb_array_length(alerts) + truncated > 10
                THEN jsonb_build_array(jsonb_build_object('type', 'context', 'elements', jsonb_build_array(
                         jsonb_build_object('type', 'mrkdwn', 'text',
                             format('… and %s more', jsonb_array_length(alerts) + truncated - 10)))))
                ELSE '[]'::jsonb END))
$$;

-- Alertmanager's POST /api/v2/alerts body: the alerts, each with an endsAt
-- (ahead for a firing one, as Prometheus sends them).
CREATE FUNCTION runra_obs._alert_alertmanager_body(r runra_obs.alert_rules, at timestamptz, resend interval,
                                                   instances runra_obs.alert_instances[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'labels', i.labels,
               'annotations', i.annotations,
               'startsAt', runra_obs._alert_time(i.fired_at),
               'endsAt', runra_obs._alert_time(CASE WHEN i.state = 'firing'
                                                    THEN at + 4 * greatest(r.every, resend)
                                                    ELSE i.resolved_at END))
             ORDER BY i.fingerprint), '[]')
    FROM unnest(instances) AS i
$$;

-- Queues what rule `r`'s contact points must hear after the evaluation at
-- `at` (changed: the instances that fired or resolved in it), and forgets
-- resolved instances nobody needs any more.
CREATE FUNCTION runra_obs._alert_notify(r runra_obs.alert_rules, at timestamptz,
                                        changed runra_obs.alert_instances[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cp runra_obs.contact_points;
    last_queued timestamptz;
    resend interval;
    keep_resolved interval := '0';
    group_now runra_obs.alert_instances[];
    body jsonb;
BEGIN
    FOR cp IN SELECT * FROM runra_obs.contact_points AS c WHERE c.name = ANY (r.contact_points) ORDER BY c.id LOOP
        SELECT d.last_queued_at INTO last_queued FROM runra_obs.alert_deliveries AS d
        WHERE d.rule_id = r.id AND d.contact_point_id = cp.id;
        body := NULL;
        IF cp.kind = 'alertmanager' THEN
            resend := make_interval(secs => (cp.settings ->> 'resendInterval')::double precision);
            keep_resolved := greatest(keep_resolved,
                                      make_interval(secs => (cp.settings ->> 'resolvedResendFor')::double precision));
            group_now := ARRAY(
                SELECT i FROM runra_obs.alert_instances AS i
                WHERE i.rule_id = r.id
                  AND (i.state = 'firing'
                       OR (i.state = 'inactive'
                           AND i.resolved_at >= at - make_interval(secs => (cp.settings ->> 'resolvedResendFor')::double precision))));
            IF cardinality(changed) > 0
               OR (cardinality(group_now) > 0 AND (last_queued IS NULL OR last_queued <= at - resend)) THEN
                body := runra_obs._alert_alertmanager_body(r, at, resend, group_now);
            END IF;
        ELSE
            group_now := ARRAY(
                SELECT i FROM runra_obs.alert_instances AS i
                WHERE i.rule_id = r.id
                  AND (i.state = 'firing' OR (i.state = 'inactive' AND i.resolved_at = at AND r.notify_resolved))
                ORDER BY i.state, i.value DESC NULLS LAST, i.fingerprint);
            IF EXISTS (SELECT FROM unnest(changed) AS c WHERE c.state = 'firing' OR r.notify_resolved)
               OR (r.repeat_interval IS NOT NULL
                   AND EXISTS (SELECT FROM unnest(group_now) AS i WHERE i.state = 'firing')
                   AND (last_queued IS NULL OR last_queued <= at - r.repeat_interval)) THEN
                body := runra_obs._alert_group_body(cp, r, group_now);
            END IF;
        END IF;
        CONTINUE WHEN body IS NULL;
        IF cp.kind = 'alertmanager' THEN
            -- each carries the whole group as it is now: older ones are stale
            UPDATE runra_obs.alert_notifications AS n SET status = 'superseded', done_at = at
            WHERE n.contact_point_id = cp.id AND n.rule_id = r.id AND n.status = 'pending';
        END IF;
        INSERT INTO runra_obs.alert_notifications (contact_point_id, rule_id, rule_name, body, created_at, next_attempt_at)
        VALUES (cp.id, r.id, r.name, body, at, at);
        INSERT INTO runra_obs.alert_deliveries AS d (rule_id, contact_point_id, last_queued_at)
        VALUES (r.id, cp.id, at)
        ON CONFLICT (rule_id, contact_point_id) DO UPDATE SET last_queued_at = EXCLUDED.last_queued_at;
        UPDATE runra_obs.alert_instances AS i SET last_sent_at = at
        WHERE i.rule_id = r.id AND i.fingerprint IN (SELECT g.fingerprint FROM unnest(group_now) AS g);
    END LOOP;
    DELETE FROM runra_obs.alert_instances AS i
    WHERE i.rule_id = r.id AND i.state = 'inactive' AND i.resolved_at < at - keep_resolved + interval '1 microsecond';
END
$$;

-- The body for a Slack, webhook or function contact point: the first 100
-- alerts of the group (truncatedAlerts counts the rest).
CREATE FUNCTION runra_obs._alert_group_body(cp runra_obs.contact_points, r runra_obs.alert_rules,
                                            group_now runra_obs.alert_instances[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE cp.kind
        WHEN 'slack' THEN runra_obs._alert_slack_body(cp, r, alerts, truncated)
        ELSE runra_obs._alert_webhook_body(cp, r, alerts, truncated)
    END
    FROM (SELECT coalesce(jsonb_agg(runra_obs._alert_json(group_now[n]) ORDER BY n)
                              FILTER (WHERE n <= 100), '[]') AS alerts,
                 greatest(coalesce(cardinality(group_now), 0) - 100, 0) AS truncated
          FROM generate_subscripts(group_now, 1) AS n) AS g
$$;

-- ---------------------------------------------------------------------------
-- Delivery, for the alert worker.
-- ---------------------------------------------------------------------------

-- The notifications due at `at`: for each contact point and rule the oldest
-- pending one, when it is due and none of theirs is in flight (being sent),
-- so a contact point hears of a rule's alerts in the order they happened
-- (a retried FIRING never lands after the RESOLVED that followed it).
-- Where and how to send each.
CREATE FUNCTION runra_obs._alert_outbox(at timestamptz, max_notifications integer, in_flight bigint[] DEFAULT '{}')
RETURNS TABLE (id bigint, contact_point text, kind text, url text, authorization_header text,
               handler regprocedure, timeout_ms integer, body text, attempts integer, changed_by regrole)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.id, c.name, c.kind,
           CASE c.kind
               WHEN 'alertmanager' THEN runra_obs._url_or_path(c.secrets ->> 'url', '/api/v2/alerts')
               ELSE c.secrets ->> 'url'
           END,
           c.secrets ->> 'authorization', c.handler, c.timeout_ms, n.body::text, n.attempts, c.changed_by
    FROM (SELECT DISTINCT ON (p.contact_point_id, p.rule_id) p.*
          FROM runra_obs.alert_notifications AS p
          WHERE p.status = 'pending'
          ORDER BY p.contact_point_id, p.rule_id, p.id) AS n
    JOIN runra_obs.contact_points AS c ON c.id = n.contact_point_id
    WHERE n.next_attempt_at <= at
      AND NOT EXISTS (SELECT FROM runra_obs.alert_notifications AS f
                      WHERE f.id = ANY (in_flight) AND f.contact_point_id = n.contact_point_id
                        AND f.rule_id = n.rule_id)
    ORDER BY n.next_attempt_at, n.id
    LIMIT max_notifications
$$;

-- Records how an attempt went: sent (2xx), refused for good (dead at
-- once), or failed (tried again after retry_ms, dead past max_retry_ms).
CREATE FUNCTION runra_obs._alert_attempted(notification bigint, at timestamptz, outcome text,
                                           error text, answer text, retry_ms bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE runra_obs.alert_notifications AS n
    SET attempts = n.attempts + 1,
        status = CASE
            WHEN outcome = 'sent' THEN 'sent'
            WHEN outcome = 'refused' THEN 'dead'
            WHEN extract(epoch FROM at - n.created_at) * 1000 >= c.max_retry_ms THEN 'dead'
            ELSE 'pending' END,
        done_at = CASE WHEN outcome = 'sent' OR outcome = 'refused'
                         OR extract(epoch FROM at - n.created_at) * 1000 >= c.max_retry_ms THEN at END,
        next_attempt_at = at + make_interval(secs => coalesce(retry_ms, 0) / 1000.0),
        last_error = CASE
            WHEN outcome = 'sent' THEN NULL
            WHEN outcome = 'failed' AND extract(epoch FROM at - n.created_at) * 1000 >= c.max_retry_ms
            THEN format('still failing after %s ms (maxRetryMs): %s', c.max_retry_ms, error)
            ELSE error END,
        answer = left(_alert_attempted.answer, 4096)
    FROM runra_obs.contact_points AS c
    WHERE n.id = notification AND c.id = n.contact_point_id;
END
$$;

CREATE FUNCTION runra_obs.requeue_alert_notifications(contact_point text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE runra_obs.alert_notifications AS a
    SET status = 'pending', next_attempt_at = now(), created_at = now(), attempts = 0, done_at = NULL
    FROM runra_obs.contact_points AS c
    WHERE a.status = 'dead' AND c.id = a.contact_point_id
      AND (contact_point IS NULL OR c.name = contact_point);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM runra_obs._alert_wake();
    RETURN n;
END
$$;
COMMENT ON FUNCTION runra_obs.requeue_alert_notifications(text) IS
    'Sends the dead-lettered notifications (of one contact point, or all) again; returns how many';

-- Notifications and history past runra_obs.alert_retention (run_maintenance).
CREATE FUNCTION runra_obs._expire_alerts()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon timestamptz := now() - runra_obs.setting_interval('runra_obs.alert_retention');
    n1 bigint;
    n2 bigint;
BEGIN
    DELETE FROM runra_obs.alert_history WHERE at < horizon;
    GET DIAGNOSTICS n1 = ROW_COUNT;
    DELETE FROM runra_obs.alert_notifications WHERE created_at < horizon AND status <> 'pending';
    GET DIAGNOSTICS n2 = ROW_COUNT;
    RETURN n1 + n2;
END
$$;

-- ---------------------------------------------------------------------------
-- Who may do what.  Admins run the rule and contact point functions with
-- their own rights (the BEFORE triggers check and stamp what they write),
-- so they need the helpers those call; evaluation and delivery are the
-- worker's alone.  Readers see rules, states, history and notifications.
-- ---------------------------------------------------------------------------
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
        WHERE p.pronamespace = 'runra_obs'::regnamespace
          AND (p.proname LIKE '%alert%' OR p.proname LIKE '%contact_point%')
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
        WHERE p.pronamespace = 'runra_obs'::regnamespace
          AND (p.proname LIKE '%alert%' OR p.proname LIKE '%contact_point%')
          AND p.prorettype <> 'trigger'::regtype
          AND p.proname NOT IN ('_alert_evaluate', '_alert_failed', '_alert_due', '_alert_sleep_ms',
                                '_alert_outbox', '_alert_attempted', '_expire_alerts', '_alert_step',
                                '_alert_current', '_alert_notify', '_alert_transition', '_alert_ran',
                                '_alert_wake')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO runra_obs_admin', f);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION runra_obs._check_option(text, jsonb, text, text, boolean, numeric, numeric),
                          runra_obs._glob_to_like(text),
                          runra_obs._raw_size(jsonb)
    TO runra_obs_admin;
-- column by column: an id, an owner or a writer is never chosen by hand
GRANT SELECT, DELETE ON runra_obs.alert_rules TO runra_obs_admin;
GRANT INSERT (name, kind, params, every, for_duration, keep_firing_for, labels, annotations, contact_points,
              no_data, evaluation_delay, repeat_interval, notify_resolved, max_instances, paused),
      UPDATE (name, kind, params, every, for_duration, keep_firing_for, labels, annotations, contact_points,
              no_data, evaluation_delay, repeat_interval, notify_resolved, max_instances, paused)
    ON runra_obs.alert_rules TO runra_obs_admin;
GRANT SELECT (id, name, kind, settings, handler, timeout_ms, max_retry_ms, changed_by, created_at),
      INSERT (name, kind, settings, secrets, handler, timeout_ms, max_retry_ms),
      UPDATE (name, kind, settings, secrets, handler, timeout_ms, max_retry_ms),
      DELETE
    ON runra_obs.contact_points TO runra_obs_admin;
GRANT SELECT ON runra_obs.contact_point_list TO runra_obs_reader;
