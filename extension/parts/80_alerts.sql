-- ===========================================================================
-- Alerting, part 1: who may alert, contact points and rules.
--
-- A rule names a kind (error_rate, exec_timeouts, resource, cost_anomaly,
-- match, absence, query) and its parameters; the alert worker
-- (src/alert/alert_worker.c) evaluates it every `every`, turns each series
-- it finds into an alert instance (rule + labels) and keeps the instance's
-- state with Prometheus's semantics (82_alert_eval.sql); transitions are
-- sent to the rule's contact points (84_alert_notify.sql).
--
-- Only members of runra_obs_admin (and the owner) change rules and contact
-- points, through the functions below or by writing the tables directly:
-- either way a BEFORE trigger validates the row and stamps it with the role
-- that wrote it.  A query rule runs with that role's privileges, so
-- creating a rule is never a way to run SQL as the extension owner.
-- Readers see rules, states and history, never a contact point's secrets.
-- ===========================================================================

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'runra_obs_admin') THEN
        CREATE ROLE runra_obs_admin NOLOGIN;
    END IF;
END
$$;
COMMENT ON ROLE runra_obs_admin IS
    'Creates and changes runra_obs alert rules and contact points (and reads what runra_obs_reader reads)';
GRANT runra_obs_reader TO runra_obs_admin;

-- ---------------------------------------------------------------------------
-- Values in a rule's or contact point's options.
-- ---------------------------------------------------------------------------

-- An option given as a duration ("5 minutes", "30s", or seconds as a
-- number) as an interval, its default when absent, or a clear error.
CREATE FUNCTION runra_obs._alert_duration(what text, options jsonb, key text, default_value interval,
                                          low interval DEFAULT '0', high interval DEFAULT '400 days')
RETURNS interval
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v jsonb := options -> key;
    d interval;
BEGIN
    IF v IS NULL OR v = 'null' THEN
        RETURN default_value;
    END IF;
    BEGIN
        d := CASE jsonb_typeof(v)
                 WHEN 'number' THEN make_interval(secs => v::text::double precision)
                 WHEN 'string' THEN (v #>> '{}')::interval
             END;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow
                   OR numeric_value_out_of_range THEN
        d := NULL;
    END;
    IF d IS NULL OR d < low OR d > high THEN
        RAISE EXCEPTION 'option "%" of % must be a duration from % to %', key, what, low, high
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', v),
                  HINT = 'Give it as text such as "5 minutes" or "30s", or as a number of seconds.';
    END IF;
    RETURN d;
END
$$;

-- An option that must be a number in [low, high], its default when absent.
CREATE FUNCTION runra_obs._alert_number(what text, options jsonb, key text, default_value numeric,
                                        low numeric, high numeric)
RETURNS numeric
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v jsonb := options -> key;
BEGIN
    IF v IS NULL OR v = 'null' THEN
        RETURN default_value;
    END IF;
    IF jsonb_typeof(v) <> 'number' OR v::text::numeric NOT BETWEEN low AND high THEN
        RAISE EXCEPTION 'option "%" of % must be a number from % to %', key, what, low, high
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', v);
    END IF;
    RETURN v::text::numeric;
END
$$;

-- An option that must be one of `allowed`, its default when absent.
CREATE FUNCTION runra_obs._alert_choice(what text, options jsonb, key text, allowed text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v jsonb := options -> key;
BEGIN
    IF v IS NULL OR v = 'null' THEN
        RETURN allowed[1];
    END IF;
    IF jsonb_typeof(v) <> 'string' OR NOT (v #>> '{}') = ANY (allowed) THEN
        RAISE EXCEPTION 'option "%" of % must be one of %', key, what, array_to_string(allowed, ', ')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', v);
    END IF;
    RETURN v #>> '{}';
END
$$;

-- Raises a clear error unless every key of `given` is in `known`: a typo
-- in an option name must not pass as "not given".
CREATE FUNCTION runra_obs._alert_known_keys(what text, given jsonb, known text[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    unknown text;
BEGIN
    IF jsonb_typeof(given) <> 'object' THEN
        RAISE EXCEPTION 'the options of % must be a JSON object', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('They are %s.', given);
    END IF;
    SELECT k INTO unknown FROM jsonb_object_keys(given) AS k
    WHERE NOT k = ANY (known) ORDER BY k LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION '% has no option "%"', what, unknown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Its options are: %s.', array_to_string(known, ', '));
    END IF;
END
$$;

-- A map of names to strings (labels, annotations): names as Prometheus and
-- Alertmanager accept them, string values; '{}' when absent.  Labels may
-- not be alertname (the rule's name) or __name__.
CREATE FUNCTION runra_obs._alert_string_map(what text, noun text, map jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad text;
BEGIN
    IF map IS NULL OR map = 'null' THEN
        RETURN '{}';
    END IF;
    IF jsonb_typeof(map) <> 'object' THEN
        RAISE EXCEPTION 'the %s of % must be a JSON object of strings', noun, what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT e.key INTO bad FROM jsonb_each(map) AS e
    WHERE e.key !~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$' OR jsonb_typeof(e.value) <> 'string'
       OR (noun = 'label' AND e.key IN ('alertname', '__name__'))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% "%" of % is not allowed', noun, bad, what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('A %s name has letters, digits and "_" and does not start with a digit; its value is a string%s.',
                                  noun, CASE WHEN noun = 'label' THEN '; alertname is the rule''s name' ELSE '' END);
    END IF;
    RETURN map;
END
$$;

-- ---------------------------------------------------------------------------
-- Templates: annotations may use {{ value }}, {{ rule }}, {{ state }},
-- {{ labels.<name> }} and {{ values.<name>[.<name>...] }}.
-- ---------------------------------------------------------------------------

-- The pieces of a template in order: literal text (expr NULL) and each
-- {{ ... }}'s expression; a clear error, saying where, when it does not
-- parse.  The one definition of the template language: checking a
-- template and rendering it (_alert_template_set, _alert_annotate) both read
-- it through here.
CREATE FUNCTION runra_obs._alert_template_parts(what text, template text)
RETURNS TABLE (n integer, literal text, expr text)
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos integer := 1;
    open_at integer;
    close_at integer;
BEGIN
    n := 0;
    LOOP
        open_at := strpos(substr(template, pos), '{{');
        close_at := strpos(substr(template, pos), '}}');
        IF close_at > 0 AND (open_at = 0 OR close_at < open_at) THEN
            RAISE EXCEPTION 'template % does not parse: "}}" at character % closes nothing', what, pos + close_at - 1
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The template is %L.', template);
        END IF;
        EXIT WHEN open_at = 0;
        open_at := pos + open_at - 1;
        close_at := strpos(substr(template, open_at + 2), '}}');
        IF close_at = 0 THEN
            RAISE EXCEPTION 'template % does not parse: "{{" at character % is not closed', what, open_at
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The template is %L.', template);
        END IF;
        expr := substr(template, open_at + 2, close_at - 1);
        IF expr !~ '^\s*(value|rule|state|labels\.[A-Za-z_][A-Za-z0-9_]*|values(\.[A-Za-z_][A-Za-z0-9_]*)+)\s*$' THEN
            RAISE EXCEPTION 'template % does not parse: {{%}} at character % is not a value', what, expr, open_at
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The template is %L.', template),
                      HINT = 'A template may use {{ value }}, {{ rule }}, {{ state }}, {{ labels.<name> }} and {{ values.<name> }}.';
        END IF;
        n := n + 1;
        literal := substr(template, pos, open_at - pos);
        expr := btrim(expr);
        RETURN NEXT;
        pos := open_at + 2 + close_at + 1;
    END LOOP;
    n := n + 1;
    literal := substr(template, pos);
    expr := NULL;
    RETURN NEXT;
END
$$;

-- Raises a clear error, saying where, unless `template` parses.
CREATE FUNCTION runra_obs._alert_check_template(what text, template text)
RETURNS void
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT FROM runra_obs._alert_template_parts(what, template) HAVING count(*) > 0
$$;

-- A number as a person reads it in a message: no trailing zeros, at most
-- four decimals.
CREATE FUNCTION runra_obs._alert_format_number(value double precision)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN value IS NULL THEN ''
        WHEN value = 'NaN' OR value IN ('Infinity', '-Infinity') THEN value::text
        ELSE trim_scale(round(value::numeric, 4))::text
    END
$$;

-- What one template expression names for an instance ('' when it has no
-- such label or value, or for a piece of literal text, whose expr is NULL).
CREATE FUNCTION runra_obs._alert_template_value(expr text, rule_name text, state text,
                                                labels jsonb, value double precision, "values" jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(CASE jsonb_typeof(part)
                        WHEN 'string' THEN part #>> '{}'
                        WHEN 'number' THEN runra_obs._alert_format_number(part::text::double precision)
                        ELSE part::text
                    END, '')
    FROM (SELECT CASE
                     WHEN expr = 'value' THEN to_jsonb(runra_obs._alert_format_number(value))
                     WHEN expr = 'rule' THEN to_jsonb(rule_name)
                     WHEN expr = 'state' THEN to_jsonb(state)
                     WHEN expr LIKE 'labels.%' THEN labels -> substr(expr, 8)
                     ELSE "values" #> string_to_array(substr(expr, 8), '.')
                 END AS part) AS p
$$;

-- An annotation map: strings that parse as templates.
CREATE FUNCTION runra_obs._alert_check_annotations(what text, annotations jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
BEGIN
    annotations := runra_obs._alert_string_map(what, 'annotation', annotations);
    FOR a IN SELECT e.key, e.value FROM jsonb_each_text(annotations) AS e LOOP
        PERFORM runra_obs._alert_check_template(format('of annotation "%s" of %s', a.key, what), a.value);
    END LOOP;
    RETURN annotations;
END
$$;

-- ---------------------------------------------------------------------------
-- Contact points: where notifications go.
-- ---------------------------------------------------------------------------
CREATE TABLE runra_obs.contact_points (
    id           int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL UNIQUE,
    kind         text        NOT NULL,
    settings     jsonb       NOT NULL DEFAULT '{}',
    secrets      jsonb       NOT NULL DEFAULT '{}',
    handler      regprocedure,
    timeout_ms   integer     NOT NULL DEFAULT 10000,
    max_retry_ms bigint      NOT NULL DEFAULT 3600000,
    changed_by   regrole     NOT NULL DEFAULT current_user::regrole,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contact_points_name_check CHECK (name ~ '^[[:graph:]][[:print:]]{0,199}$'),
    CONSTRAINT contact_points_kind_check CHECK (kind IN ('slack', 'webhook', 'alertmanager', 'function')),
    CONSTRAINT contact_points_handler_check CHECK ((kind = 'function') = (handler IS NOT NULL)),
    CONSTRAINT contact_points_timeout_check CHECK (timeout_ms BETWEEN 100 AND 600000),
    CONSTRAINT contact_points_max_retry_check CHECK (max_retry_ms >= 0)
);
COMMENT ON TABLE runra_obs.contact_points IS
    'Where alert notifications are sent: Slack, a webhook (Grafana''s payload), Alertmanager or a SQL function; secrets readable by the extension owner only';
COMMENT ON COLUMN runra_obs.contact_points.settings IS
    'Options without secrets: resendInterval and resolvedResendFor (alertmanager), channel, username and iconEmoji (slack)';
COMMENT ON COLUMN runra_obs.contact_points.secrets IS
    'The URL and an Authorization header value, always written together (Slack''s URL is itself the secret)';
COMMENT ON COLUMN runra_obs.contact_points.handler IS
    'For kind function: called with each notification (jsonb), as the function''s owner';
COMMENT ON COLUMN runra_obs.contact_points.changed_by IS
    'The role that last wrote the row';

CREATE VIEW runra_obs.contact_point_list AS
SELECT id, name, kind,
       CASE WHEN kind <> 'slack' THEN runra_obs._mask_credentials(secrets ->> 'url') END AS url,
       settings, handler::text AS handler, timeout_ms, max_retry_ms,
       secrets ? 'authorization' AS has_authorization,
       changed_by::text AS changed_by, created_at
FROM runra_obs.contact_points;
COMMENT ON VIEW runra_obs.contact_point_list IS
    'The alert contact points without their secrets (Slack''s URL, Authorization); a webhook''s or Alertmanager''s URL is shown, a credential in it (a token in its query string) as ***';

-- The URL a contact point posts to: http:// or https:// with a host, no
-- control characters or spaces; a webhook's or Alertmanager's carries no
-- user name or password (readers see it in contact_point_list).
CREATE FUNCTION runra_obs._contact_point_check_url(what text, url text, key text, secret boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF url IS NULL THEN
        RAISE EXCEPTION '% needs option "%"', what, key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF url !~ '^https?://[^/?#[:space:][:cntrl:]]+[^[:space:][:cntrl:]]*$' THEN
        RAISE EXCEPTION 'option "%" of % must be an http:// or https:// URL', key, what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = CASE WHEN secret THEN 'The URL is a secret and is not shown.'
                                ELSE format('It is %s.', to_jsonb(url)) END;
    END IF;
    IF NOT secret AND url ~ '^https?://[^/?#]*@' THEN
        RAISE EXCEPTION 'option "%" of % must not hold a user name or password', key, what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Readers see the URL in runra_obs.contact_point_list.',
                  HINT = 'Give the credentials as "authorization" (the Authorization header''s value).';
    END IF;
END
$$;

-- A function contact point's handler: one jsonb argument, and a function
-- the writer could call as its owner themselves (it is a member of the
-- owner and may execute it), so naming it gains no privilege: the worker
-- calls it as its owner.
CREATE FUNCTION runra_obs._contact_point_check_handler(what text, handler regprocedure)
RETURNS regprocedure
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner regrole;
BEGIN
    SELECT p.proowner::regrole INTO owner FROM pg_proc AS p
    WHERE p.oid = handler AND p.pronargs = 1 AND p.proargtypes[0] = 'jsonb'::regtype AND p.prokind = 'f';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'handler % of % must be a function taking one jsonb argument', handler, what
            USING ERRCODE = 'invalid_function_definition';
    END IF;
    IF NOT pg_has_role(current_user, owner, 'USAGE') OR NOT has_function_privilege(current_user, handler, 'EXECUTE') THEN
        RAISE EXCEPTION 'role % may not make % the handler of %', current_user, handler, what
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The handler runs as its owner, %s; only its members may name it.', owner);
    END IF;
    RETURN handler;
END
$$;

-- Splits a contact point's config (the options a user gives) into the
-- row's settings, secrets and handler, refusing what is not valid.
CREATE FUNCTION runra_obs._contact_point_apply(cp runra_obs.contact_points, config jsonb)
RETURNS runra_obs.contact_points
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := format('contact point "%s"', cp.name);
    known text[] := CASE cp.kind
        WHEN 'slack' THEN '{url,channel,username,iconEmoji,timeoutMs,maxRetryMs}'
        WHEN 'webhook' THEN '{url,authorization,timeoutMs,maxRetryMs}'
        WHEN 'alertmanager' THEN '{url,authorization,resendInterval,resolvedResendFor,timeoutMs,maxRetryMs}'
        WHEN 'function' THEN '{handler,timeoutMs,maxRetryMs}'
    END;
    key text;
BEGIN
    IF known IS NULL THEN
        RAISE EXCEPTION 'contact point kind "%" is unknown', cp.kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are slack, webhook, alertmanager and function.';
    END IF;
    PERFORM runra_obs._alert_known_keys(what, config, known);
    cp.timeout_ms := runra_obs._alert_number(what, config, 'timeoutMs', 10000, 100, 600000);
    cp.max_retry_ms := runra_obs._alert_number(what, config, 'maxRetryMs', 3600000, 0, 9223372036854775807);
    cp.settings := '{}';
    cp.secrets := '{}';
    cp.handler := NULL;
    CASE cp.kind
    WHEN 'slack' THEN
        -- the URL holds the credential: a secret
        PERFORM runra_obs._contact_point_check_url(what, config ->> 'url', 'url', true);
        cp.secrets := jsonb_build_object('url', config ->> 'url');
        FOREACH key IN ARRAY '{channel,username,iconEmoji}'::text[] LOOP
            IF config ? key THEN
                PERFORM runra_obs._check_option(what, config, key, 'text');
                cp.settings := cp.settings || jsonb_build_object(key, config -> key);
            END IF;
        END LOOP;
    WHEN 'webhook', 'alertmanager' THEN
        -- the URL is kept with the secrets, so they are always written
        -- together: an admin who may not read the Authorization cannot
        -- point it at a server of their own
        PERFORM runra_obs._contact_point_check_url(what, config ->> 'url', 'url');
        cp.secrets := jsonb_build_object('url', config ->> 'url');
        IF config ? 'authorization' THEN
            PERFORM runra_obs._check_option(what, config, 'authorization', 'text');
            IF config ->> 'authorization' ~ '[[:cntrl:]]' THEN
                RAISE EXCEPTION 'option "authorization" of % must not hold control characters', what
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            cp.secrets := cp.secrets || jsonb_build_object('authorization', config ->> 'authorization');
        END IF;
        IF cp.kind = 'alertmanager' THEN
            cp.settings := cp.settings || jsonb_build_object(
                'resendInterval',
                extract(epoch FROM runra_obs._alert_duration(what, config, 'resendInterval', '1 minute', '1 second', '1 day'))::double precision,
                'resolvedResendFor',
                extract(epoch FROM runra_obs._alert_duration(what, config, 'resolvedResendFor', '15 minutes', '0', '1 day'))::double precision);
        END IF;
    WHEN 'function' THEN
        PERFORM runra_obs._check_option(what, config, 'handler', 'text', true);
        cp.handler := runra_obs._contact_point_check_handler(what, (config ->> 'handler')::regprocedure);
    END CASE;
    RETURN cp;
END
$$;

-- The rule that notifies contact point `name`, if one does.
CREATE FUNCTION runra_obs._contact_point_user(name text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.name FROM runra_obs.alert_rules AS r WHERE $1 = ANY (r.contact_points) ORDER BY r.name LIMIT 1
$$;

-- Every write of a contact point, through the functions or straight into
-- the table: the row is checked again as a config (settings, secrets,
-- handler and limits together, as _contact_point_apply() reads them) and
-- the writer recorded; a contact point a rule notifies is not renamed or
-- removed under it.
CREATE FUNCTION runra_obs._contact_point_stamp()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    user_rule text;
BEGIN
    IF TG_OP <> 'INSERT' AND (TG_OP = 'DELETE' OR NEW.name <> OLD.name) THEN
        user_rule := runra_obs._contact_point_user(OLD.name);
        IF user_rule IS NOT NULL THEN
            RAISE EXCEPTION 'contact point "%" is used by alert rule "%"', OLD.name, user_rule
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Change the rules that notify it first.';
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
    END IF;
    NEW := runra_obs._contact_point_apply(NEW, NEW.settings || NEW.secrets
        || jsonb_strip_nulls(jsonb_build_object('handler', NEW.handler::text,
                                                'timeoutMs', NEW.timeout_ms,
                                                'maxRetryMs', NEW.max_retry_ms)));
    NEW.changed_by := current_user::regrole;
    RETURN NEW;
END
$$;
CREATE TRIGGER contact_points_stamp BEFORE INSERT OR UPDATE OR DELETE ON runra_obs.contact_points
    FOR EACH ROW EXECUTE FUNCTION runra_obs._contact_point_stamp();

CREATE FUNCTION runra_obs.add_contact_point(name text, kind text, config jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cp runra_obs.contact_points;
BEGIN
    cp.name := name;
    cp.kind := kind;
    cp := runra_obs._contact_point_apply(cp, coalesce(config, '{}'));
    INSERT INTO runra_obs.contact_points (name, kind, settings, secrets, handler, timeout_ms, max_retry_ms)
    VALUES (cp.name, cp.kind, cp.settings, cp.secrets, cp.handler, cp.timeout_ms, cp.max_retry_ms);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'contact point "%" already exists', name
        USING ERRCODE = 'duplicate_object',
              HINT = 'Use runra_obs.change_contact_point() to change it.';
END
$$;
COMMENT ON FUNCTION runra_obs.add_contact_point(text, text, jsonb) IS
    'Adds a contact point: kind slack {url}, webhook {url, authorization}, alertmanager {url, authorization, resendInterval, resolvedResendFor} or function {handler}; timeoutMs, maxRetryMs';

-- The contact point called `name`, or a clear error.
CREATE FUNCTION runra_obs._contact_point(name text)
RETURNS runra_obs.contact_points
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    cp runra_obs.contact_points;
BEGIN
    -- not the secrets: admins may write them, never read them
    SELECT c.id, c.name, c.kind, c.settings, c.handler, c.timeout_ms, c.max_retry_ms
    INTO cp.id, cp.name, cp.kind, cp.settings, cp.handler, cp.timeout_ms, cp.max_retry_ms
    FROM runra_obs.contact_points AS c WHERE c.name = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact point "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN cp;
END
$$;

CREATE FUNCTION runra_obs.change_contact_point(name text, config jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    cp runra_obs.contact_points := runra_obs._contact_point(name);
BEGIN
    cp := runra_obs._contact_point_apply(cp, config);
    UPDATE runra_obs.contact_points AS c
    SET settings = cp.settings, secrets = cp.secrets, handler = cp.handler,
        timeout_ms = cp.timeout_ms, max_retry_ms = cp.max_retry_ms
    WHERE c.id = cp.id;
END
$$;
COMMENT ON FUNCTION runra_obs.change_contact_point(text, jsonb) IS
    'Replaces a contact point''s options (the whole config, secrets included)';

CREATE FUNCTION runra_obs.remove_contact_point(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    -- refused by the trigger while a rule notifies it
    DELETE FROM runra_obs.contact_points AS c WHERE c.id = (runra_obs._contact_point(name)).id;
END
$$;
COMMENT ON FUNCTION runra_obs.remove_contact_point(text) IS
    'Removes a contact point that no rule notifies, with its queued notifications';

-- ---------------------------------------------------------------------------
-- Rules.
-- ---------------------------------------------------------------------------
CREATE TABLE runra_obs.alert_rules (
    id               int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text        NOT NULL UNIQUE,
    kind             text        NOT NULL,
    params           jsonb       NOT NULL DEFAULT '{}',
    every            interval    NOT NULL DEFAULT '1 minute',
    for_duration     interval    NOT NULL DEFAULT '0',
    keep_firing_for  interval    NOT NULL DEFAULT '0',
    labels           jsonb       NOT NULL DEFAULT '{}',
    annotations      jsonb       NOT NULL DEFAULT '{}',
    contact_points   text[]      NOT NULL DEFAULT '{}',
    no_data          text        NOT NULL DEFAULT 'ok',
    evaluation_delay interval    NOT NULL DEFAULT '0',
    repeat_interval  interval,
    notify_resolved  boolean     NOT NULL DEFAULT true,
    max_instances    integer     NOT NULL DEFAULT 1000,
    paused           boolean     NOT NULL DEFAULT false,
    owner            regrole     NOT NULL DEFAULT current_user::regrole,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_rules_name_check CHECK (name ~ '^[[:graph:]][[:print:]]{0,199}$'),
    CONSTRAINT alert_rules_kind_check
        CHECK (kind IN ('error_rate', 'exec_timeouts', 'resource', 'cost_anomaly', 'match', 'absence', 'query')),
    CONSTRAINT alert_rules_every_check CHECK (every BETWEEN interval '1 second' AND interval '1 day'),
    CONSTRAINT alert_rules_for_check CHECK (for_duration >= '0' AND keep_firing_for >= '0'),
    CONSTRAINT alert_rules_no_data_check CHECK (no_data IN ('ok', 'alerting', 'keep_state')),
    CONSTRAINT alert_rules_delay_check CHECK (evaluation_delay BETWEEN interval '0' AND interval '1 day'),
    CONSTRAINT alert_rules_repeat_check CHECK (repeat_interval >= interval '1 minute'),
    CONSTRAINT alert_rules_max_instances_check CHECK (max_instances BETWEEN 1 AND 100000)
);
COMMENT ON TABLE runra_obs.alert_rules IS
    'Alert rules: what to watch (kind, params), how often, for how long before firing, and whom to tell';
COMMENT ON COLUMN runra_obs.alert_rules.params IS
    'The kind''s parameters, with their defaults filled in (see the README''s alerting section)';
COMMENT ON COLUMN runra_obs.alert_rules.for_duration IS
    'How long a series must be active before its alert fires (pending until then; Prometheus''s "for")';
COMMENT ON COLUMN runra_obs.alert_rules.keep_firing_for IS
    'How long a firing alert keeps firing after its series stopped being active';
COMMENT ON COLUMN runra_obs.alert_rules.no_data IS
    'When the rule finds no data at all: ok (resolve), alerting (one alert labelled no_data), keep_state';
COMMENT ON COLUMN runra_obs.alert_rules.evaluation_delay IS
    'Windows end this long before the evaluation time, so late events are in them';
COMMENT ON COLUMN runra_obs.alert_rules.repeat_interval IS
    'Notify again while firing at this interval (NULL: only on firing and resolved)';
COMMENT ON COLUMN runra_obs.alert_rules.notify_resolved IS
    'Whether Slack, webhook and function contact points hear of resolved alerts (Alertmanager always does: it ends them); false by default for match rules';
COMMENT ON COLUMN runra_obs.alert_rules.owner IS
    'The role that wrote the rule''s SQL (or created it): a query rule runs with its privileges';
GRANT SELECT ON runra_obs.alert_rules TO runra_obs_reader;

-- The runtime side of each rule, written by the alert worker alone.
CREATE TABLE runra_obs.alert_rule_runs (
    rule_id          int         PRIMARY KEY REFERENCES runra_obs.alert_rules ON DELETE CASCADE,
    next_eval_at     timestamptz NOT NULL,
    last_eval_at     timestamptz,
    last_duration_ms double precision,
    health           text        NOT NULL DEFAULT 'unknown',
    last_error       text,
    error_since      timestamptz,
    evaluations      bigint      NOT NULL DEFAULT 0,
    failures         bigint      NOT NULL DEFAULT 0,
    CONSTRAINT alert_rule_runs_health_check CHECK (health IN ('unknown', 'ok', 'nodata', 'error'))
);
CREATE INDEX alert_rule_runs_due_idx ON runra_obs.alert_rule_runs (next_eval_at);
COMMENT ON TABLE runra_obs.alert_rule_runs IS
    'When each alert rule is evaluated next, how its last evaluation went (health, error), and counters';
GRANT SELECT ON runra_obs.alert_rule_runs TO runra_obs_reader;

-- A rule kind's params with their defaults filled in, or a clear error.
-- Durations are kept as seconds.
CREATE FUNCTION runra_obs._alert_check_params(rule_name text, kind text, params jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := format('%s rule "%s"', kind, rule_name);
    p jsonb := coalesce(params, '{}');
    window_s double precision;
BEGIN
    PERFORM runra_obs._alert_known_keys(what, p, CASE kind
        WHEN 'error_rate' THEN '{threshold,window,by,minExecutions}'
        WHEN 'exec_timeouts' THEN '{above,window,by}'
        WHEN 'resource' THEN '{resource,abovePercent,window}'
        WHEN 'cost_anomaly' THEN '{window,days,tolerance,minCost,by}'
        WHEN 'match' THEN '{eventTypes,condition,failed,by}'
        WHEN 'absence' THEN '{scope,duration,lookback}'
        WHEN 'query' THEN '{sql,above}'
    END::text[]);
    window_s := extract(epoch FROM runra_obs._alert_duration(what, p, 'window',
        CASE kind WHEN 'cost_anomaly' THEN interval '1 hour' ELSE interval '5 minutes' END,
        '1 second', '7 days'));
    CASE kind
    WHEN 'error_rate' THEN
        RETURN jsonb_build_object(
            'threshold', runra_obs._alert_number(what, p, 'threshold', 0.05, 0, 1),
            'window', window_s,
            'by', runra_obs._alert_choice(what, p, 'by', '{fleet,sandbox,command}'),
            'minExecutions', runra_obs._alert_number(what, p, 'minExecutions', 1, 1, 1e9));
    WHEN 'exec_timeouts' THEN
        RETURN jsonb_build_object(
            'above', runra_obs._alert_number(what, p, 'above', 0, 0, 1e12),
            'window', window_s,
            'by', runra_obs._alert_choice(what, p, 'by', '{fleet,sandbox,command}'));
    WHEN 'resource' THEN
        RETURN jsonb_build_object(
            'resource', runra_obs._alert_choice(what, p, 'resource', '{memory,disk,cpu}'),
            'abovePercent', runra_obs._alert_number(what, p, 'abovePercent', 90, 0, 1000),
            'window', window_s);
    WHEN 'cost_anomaly' THEN
        RETURN jsonb_build_object(
            'window', window_s,
            'days', runra_obs._alert_number(what, p, 'days', 7, 1, 28),
            'tolerance', runra_obs._alert_number(what, p, 'tolerance', 0.5, 0, 1e6),
            'minCost', runra_obs._alert_number(what, p, 'minCost', 0, 0, 1e15),
            'by', runra_obs._alert_choice(what, p, 'by', '{fleet,sandbox}'));
    WHEN 'match' THEN
        RETURN runra_obs._alert_check_match(what, p);
    WHEN 'absence' THEN
        IF NOT p ? 'duration' THEN
            RAISE EXCEPTION '% needs option "duration"', what
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'How long without events before it alerts, such as "10 minutes".';
        END IF;
        RETURN jsonb_build_object(
            'scope', runra_obs._alert_choice(what, p, 'scope', '{fleet,sandbox}'),
            'duration', extract(epoch FROM runra_obs._alert_duration(what, p, 'duration', NULL, '1 second', '30 days'))::double precision,
            'lookback', extract(epoch FROM runra_obs._alert_duration(what, p, 'lookback', '24 hours', '1 minute', '7 days'))::double precision);
    WHEN 'query' THEN
        PERFORM runra_obs._check_option(what, p, 'sql', 'text', true);
        RETURN jsonb_strip_nulls(jsonb_build_object(
            'sql', p -> 'sql',
            'above', runra_obs._alert_number(what, p, 'above', NULL, '-1e300', '1e300')));
    ELSE
        RAISE EXCEPTION 'alert rule kind "%" is unknown', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are error_rate, exec_timeouts, resource, cost_anomaly, match, absence and query.';
    END CASE;
END
$$;

-- A match rule's params: event type globs, an optional jsonpath predicate
-- on data, an optional failed filter, the labels to group by.
CREATE FUNCTION runra_obs._alert_check_match(what text, p jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    globs text[];
    group_by text[];
BEGIN
    IF jsonb_typeof(p -> 'eventTypes') IS DISTINCT FROM 'array' OR jsonb_array_length(p -> 'eventTypes') = 0
       OR EXISTS (SELECT FROM jsonb_array_elements(p -> 'eventTypes') AS g WHERE jsonb_typeof(g) <> 'string') THEN
        RAISE EXCEPTION '% needs option "eventTypes", a list of event types or patterns', what
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ["exec.completed"] or ["*.failed"].';
    END IF;
    globs := ARRAY(SELECT jsonb_array_elements_text(p -> 'eventTypes'));
    PERFORM runra_obs._glob_to_like(g) FROM unnest(globs) AS g;
    IF p ? 'condition' THEN
        PERFORM runra_obs._check_option(what, p, 'condition', 'text', true);
        BEGIN
            PERFORM (p ->> 'condition')::jsonpath;
        EXCEPTION WHEN syntax_error OR invalid_text_representation THEN
            RAISE EXCEPTION 'option "condition" of % is not a jsonpath predicate: %', what, SQLERRM
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('It is %s.', p -> 'condition'),
                      HINT = 'It is matched against the event''s data, such as "$.exitCode != 0".';
        END;
    END IF;
    IF p ? 'failed' AND jsonb_typeof(p -> 'failed') <> 'boolean' THEN
        RAISE EXCEPTION 'option "failed" of % must be true or false', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    group_by := CASE WHEN p ? 'by' THEN ARRAY(SELECT jsonb_array_elements_text(p -> 'by'))
                     ELSE '{sandbox_id,event_type}' END;
    IF jsonb_typeof(p -> 'by') IS DISTINCT FROM 'array' AND p ? 'by'
       OR NOT group_by <@ '{sandbox_id,event_type,command,agent_id}'::text[] THEN
        RAISE EXCEPTION 'option "by" of % must list labels from sandbox_id, event_type, command, agent_id', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', p -> 'by');
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'eventTypes', to_jsonb(globs),
        'condition', p -> 'condition',
        'failed', p -> 'failed',
        'by', to_jsonb(group_by)));
END
$$;

-- Checks a query rule's SQL as the calling role (C): one SELECT that this
-- role may run, text columns for labels and one numeric column, the value.
CREATE FUNCTION runra_obs._alert_check_query(rule_name text, sql text)
RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'runra_alert_check_query';
COMMENT ON FUNCTION runra_obs._alert_check_query(text, text) IS
    'Internal: refuses a query rule''s SQL that is not one SELECT the caller may run, or whose columns are not labels and one number';

-- The series of a query rule (C): its SQL run as the rule's owner when the
-- caller is a superuser (the alert worker), else as the caller.
CREATE FUNCTION runra_obs._alert_query_series(rule_id integer)
RETURNS TABLE (labels jsonb, value double precision)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'runra_alert_query_series';
COMMENT ON FUNCTION runra_obs._alert_query_series(integer) IS
    'Internal: runs a query rule''s SQL (as its owner, never a superuser, for the alert worker; as the caller otherwise)';

-- Every write of a rule: its options checked (a direct INSERT too).  A
-- query rule runs with the privileges of its owner: the role that wrote
-- its SQL (on INSERT, or when the SQL or the kind changes; pausing or
-- relabelling someone's rule does not lend them your privileges).  A
-- superuser may not own one: its SQL would run as a superuser on a
-- search_path that anyone who may create in public could take over.
CREATE FUNCTION runra_obs._alert_rule_stamp()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := format('alert rule "%s"', NEW.name);
    missing text;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.kind <> OLD.kind OR NEW.params ->> 'sql' IS DISTINCT FROM OLD.params ->> 'sql' THEN
        NEW.owner := current_user::regrole;
    ELSE
        NEW.owner := OLD.owner;
    END IF;
    NEW.params := runra_obs._alert_check_params(NEW.name, NEW.kind, NEW.params);
    NEW.labels := runra_obs._alert_string_map(what, 'label', NEW.labels);
    NEW.annotations := runra_obs._alert_check_annotations(what, NEW.annotations);
    SELECT c INTO missing FROM unnest(NEW.contact_points) AS c
    WHERE NOT EXISTS (SELECT FROM runra_obs.contact_points AS p WHERE p.name = c) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'contact point "%" of % does not exist', missing, what
            USING ERRCODE = 'undefined_object',
                  HINT = 'Add it with runra_obs.add_contact_point() first.';
    END IF;
    IF NEW.kind = 'query' AND (TG_OP = 'INSERT' OR NEW.owner <> OLD.owner OR NEW.params <> OLD.params) THEN
        IF (SELECT rolsuper FROM pg_roles WHERE oid = NEW.owner) THEN
            RAISE EXCEPTION 'a superuser may not write the SQL of query rule "%"', NEW.name
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'A query rule runs with the privileges of the role that wrote its SQL.',
                      HINT = 'Write it as a role with only the privileges it needs, a member of runra_obs_admin.';
        END IF;
        PERFORM runra_obs._alert_check_query(NEW.name, NEW.params ->> 'sql');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER alert_rules_stamp BEFORE INSERT OR UPDATE ON runra_obs.alert_rules
    FOR EACH ROW EXECUTE FUNCTION runra_obs._alert_rule_stamp();

-- Where a new match rule starts reading the log: the published safe
-- watermark, or (before the workers published one) the newest event.
CREATE FUNCTION runra_obs._alert_log_head()
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT greatest((SELECT l.watermark FROM runra_obs._watermark_lag(0) AS l),
                        (SELECT coalesce(max(e.id), 0) FROM runra_obs.sandbox_events AS e)));
END
$$;

-- After a rule is written: its schedule (a new or changed rule is due at
-- once), a match rule's place in the log (a new or resumed one starts at
-- the present), and the worker woken.  Runs as the owner: admins may not
-- write the runtime tables.
CREATE FUNCTION runra_obs._alert_rule_schedule()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM runra_obs.consumers WHERE name = 'alert:' || OLD.id;
        RETURN NULL;
    END IF;
    INSERT INTO runra_obs.alert_rule_runs AS r (rule_id, next_eval_at) VALUES (NEW.id, now())
    ON CONFLICT (rule_id) DO UPDATE SET next_eval_at = now();
    IF NEW.kind = 'match' AND NOT NEW.paused
       AND (TG_OP = 'INSERT' OR OLD.kind <> 'match' OR OLD.paused) THEN
        INSERT INTO runra_obs.consumers AS c (name, position) VALUES ('alert:' || NEW.id, runra_obs._alert_log_head())
        ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, moved_at = now();
    ELSIF NEW.kind <> 'match' OR NEW.paused THEN
        -- a paused match rule is no consumer: it is not behind
        DELETE FROM runra_obs.consumers WHERE name = 'alert:' || NEW.id;
    END IF;
    PERFORM runra_obs._alert_wake();
    RETURN NULL;
END
$$;
CREATE TRIGGER alert_rules_schedule AFTER INSERT OR UPDATE OR DELETE ON runra_obs.alert_rules
    FOR EACH ROW EXECUTE FUNCTION runra_obs._alert_rule_schedule();

-- Wakes the alert worker when the calling transaction commits (C).
CREATE FUNCTION runra_obs._alert_wake()
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'runra_alert_wake';
COMMENT ON FUNCTION runra_obs._alert_wake() IS
    'Sets the alert worker''s latch when the calling transaction commits';

-- The options of create_alert() and change_alert() written into a rule.
CREATE FUNCTION runra_obs._alert_apply_options(r runra_obs.alert_rules, options jsonb)
RETURNS runra_obs.alert_rules
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := format('alert rule "%s"', r.name);
    o jsonb := coalesce(options, '{}');
BEGIN
    PERFORM runra_obs._alert_known_keys(what, o, '{every,for,keepFiringFor,labels,annotations,contactPoints,noData,evaluationDelay,repeatInterval,notifyResolved,maxInstances}');
    r.every := runra_obs._alert_duration(what, o, 'every', coalesce(r.every, '1 minute'), '1 second', '1 day');
    r.for_duration := runra_obs._alert_duration(what, o, 'for', coalesce(r.for_duration, '0'));
    r.keep_firing_for := runra_obs._alert_duration(what, o, 'keepFiringFor', coalesce(r.keep_firing_for, '0'));
    r.evaluation_delay := runra_obs._alert_duration(what, o, 'evaluationDelay', coalesce(r.evaluation_delay, '0'), '0', '1 day');
    IF o ? 'repeatInterval' THEN
        r.repeat_interval := runra_obs._alert_duration(what, o, 'repeatInterval', NULL, '1 minute', '30 days');
    END IF;
    IF o ? 'labels' THEN r.labels := o -> 'labels'; END IF;
    IF o ? 'annotations' THEN r.annotations := o -> 'annotations'; END IF;
    IF o ? 'contactPoints' THEN
        IF jsonb_typeof(o -> 'contactPoints') <> 'array'
           OR EXISTS (SELECT FROM jsonb_array_elements(o -> 'contactPoints') AS c WHERE jsonb_typeof(c) <> 'string') THEN
            RAISE EXCEPTION 'option "contactPoints" of % must be a list of contact point names', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        r.contact_points := ARRAY(SELECT jsonb_array_elements_text(o -> 'contactPoints'));
    END IF;
    IF o ? 'notifyResolved' THEN
        IF jsonb_typeof(o -> 'notifyResolved') <> 'boolean' THEN
            RAISE EXCEPTION 'option "notifyResolved" of % must be true or false', what
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        r.notify_resolved := (o ->> 'notifyResolved')::boolean;
    END IF;
    IF o ? 'noData' THEN r.no_data := runra_obs._alert_choice(what, o, 'noData', '{ok,alerting,keep_state}'); END IF;
    r.max_instances := runra_obs._alert_number(what, o, 'maxInstances', coalesce(r.max_instances, 1000), 1, 100000);
    RETURN r;
END
$$;

CREATE FUNCTION runra_obs.create_alert(name text, kind text, params jsonb DEFAULT '{}',
                                       options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r runra_obs.alert_rules;
BEGIN
    r.name := name;
    r := runra_obs._alert_apply_options(r, options);
    INSERT INTO runra_obs.alert_rules
        (name, kind, params, every, for_duration, keep_firing_for, labels, annotations,
         contact_points, no_data, evaluation_delay, repeat_interval, notify_resolved, max_instances)
    VALUES (name, kind, params, r.every, r.for_duration, r.keep_firing_for,
            coalesce(r.labels, '{}'), coalesce(r.annotations, '{}'), coalesce(r.contact_points, '{}'),
            coalesce(r.no_data, 'ok'), r.evaluation_delay, r.repeat_interval,
            coalesce(r.notify_resolved, kind IS DISTINCT FROM 'match'), r.max_instances);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'alert rule "%" already exists', name
        USING ERRCODE = 'duplicate_object',
              HINT = 'Use runra_obs.change_alert() to change it.';
END
$$;
COMMENT ON FUNCTION runra_obs.create_alert(text, text, jsonb, jsonb) IS
    'Creates an alert rule: a kind and its params; options every, for, keepFiringFor, labels, annotations, contactPoints, noData, evaluationDelay, repeatInterval, notifyResolved, maxInstances';

-- The rule called `name`, or a clear error.
CREATE FUNCTION runra_obs._alert_rule(name text)
RETURNS runra_obs.alert_rules
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r runra_obs.alert_rules;
BEGIN
    SELECT * INTO r FROM runra_obs.alert_rules AS a WHERE a.name = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert rule "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION runra_obs.change_alert(name text, params jsonb DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r runra_obs.alert_rules := runra_obs._alert_rule(name);
BEGIN
    r := runra_obs._alert_apply_options(r, options);
    UPDATE runra_obs.alert_rules AS a
    SET params = coalesce(params, a.params), every = r.every, for_duration = r.for_duration,
        keep_firing_for = r.keep_firing_for, labels = r.labels, annotations = r.annotations,
        contact_points = r.contact_points, no_data = r.no_data,
        evaluation_delay = r.evaluation_delay, repeat_interval = r.repeat_interval,
        notify_resolved = r.notify_resolved, max_instances = r.max_instances
    WHERE a.id = r.id;
END
$$;
COMMENT ON FUNCTION runra_obs.change_alert(text, jsonb, jsonb) IS
    'Changes an alert rule: new params (NULL: keep them) and the options given (the others are kept); whoever changes a query rule''s SQL becomes its owner';

-- Pauses (true) or resumes (false) the rule called `name`.
CREATE FUNCTION runra_obs._alert_set_paused(name text, paused boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    UPDATE runra_obs.alert_rules AS a SET paused = paused WHERE a.id = (runra_obs._alert_rule(name)).id;
END
$$;

CREATE FUNCTION runra_obs.pause_alert(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT runra_obs._alert_set_paused($1, true) $$;
COMMENT ON FUNCTION runra_obs.pause_alert(text) IS
    'Stops evaluating an alert rule; its alerts keep their state until it is resumed';

CREATE FUNCTION runra_obs.resume_alert(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT runra_obs._alert_set_paused($1, false) $$;
COMMENT ON FUNCTION runra_obs.resume_alert(text) IS
    'Evaluates a paused alert rule again (a match rule from the present: events that came while it was paused are not matched)';

CREATE FUNCTION runra_obs.remove_alert(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    DELETE FROM runra_obs.alert_rules AS a WHERE a.id = (runra_obs._alert_rule(name)).id;
END
$$;
COMMENT ON FUNCTION runra_obs.remove_alert(text) IS
    'Removes an alert rule with its states (its history and queued notifications stay)';
