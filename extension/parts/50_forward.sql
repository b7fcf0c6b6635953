-- ===========================================================================
-- Forwarding: destinations, each a consumer of the event log, the events
-- to send again, dead letters and what the forward worker reports.
--
-- A destination is a consumer (10_consume.sql): its cursor is the row
-- destination:<id> of runra_obs.consumers.  The forward worker reads the
-- events after the cursor and at or below the safe watermark, in id order,
-- keeps those its event_types select, sends them in batches (several
-- requests in flight), and moves the cursor only over batches the
-- destination accepted, dead-lettered or, for a SQL handler, handled.
-- Nothing is written when an event is inserted: ingest costs the same
-- whatever is forwarded.
--
-- A new destination starts at "now" (the safe watermark when it was added)
-- or, given startAt, replays the events stored then whose created_at is at
-- or after startAt, and then everything that arrives later (late events
-- with an older created_at included: they are new to the log).
-- ===========================================================================

CREATE TABLE runra_obs.destinations (
    id                int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text        NOT NULL UNIQUE,
    provider          text        NOT NULL,
    enabled           boolean     NOT NULL DEFAULT true,
    event_types       text[]      NOT NULL DEFAULT '{}',
    like_patterns     text[]      NOT NULL DEFAULT '{}',
    batch_size        integer     NOT NULL DEFAULT 1000,
    flush_interval_ms integer     NOT NULL DEFAULT 1000,
    max_retry_ms      bigint      NOT NULL DEFAULT 86400000,
    timeout_ms        integer     NOT NULL DEFAULT 30000,
    settings          jsonb       NOT NULL DEFAULT '{}',
    secrets           jsonb       NOT NULL DEFAULT '{}',
    handler           regprocedure,
    handler_role      regrole,
    start_at          timestamptz,
    replay_to         bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT destinations_name_check
        CHECK (name ~ '^[[:graph:]][[:print:]]{0,199}$'),
    CONSTRAINT destinations_provider_check
        CHECK (provider IN ('axiom', 'otel', 'jsonl', 'function')),
    CONSTRAINT destinations_batch_size_check CHECK (batch_size BETWEEN 1 AND 10000),
    CONSTRAINT destinations_flush_interval_check CHECK (flush_interval_ms BETWEEN 0 AND 3600000),
    CONSTRAINT destinations_max_retry_check CHECK (max_retry_ms >= 0),
    CONSTRAINT destinations_timeout_check CHECK (timeout_ms BETWEEN 100 AND 600000),
    CONSTRAINT destinations_handler_check CHECK ((provider = 'function') = (handler IS NOT NULL)),
    CONSTRAINT destinations_replay_check CHECK ((start_at IS NULL) = (replay_to IS NULL))
);
COMMENT ON TABLE runra_obs.destinations IS
    'Where selected events are forwarded (secrets included: readable by the extension owner only)';
COMMENT ON COLUMN runra_obs.destinations.event_types IS
    'Globs selecting event types, such as sandbox.* (empty: every event)';
COMMENT ON COLUMN runra_obs.destinations.like_patterns IS
    'event_types as LIKE patterns (what the forward worker reads with)';
COMMENT ON COLUMN runra_obs.destinations.batch_size IS
    'A batch is sent once this many events wait (or flush_interval_ms passed); a destination that is behind sends up to 10000 per request';
COMMENT ON COLUMN runra_obs.destinations.settings IS
    'Provider options without secrets: dataset, url, edge, edgeUrl, orgId, endpoint, signal, resourceAttributes, filePath, maxFileSizeMb, maxFiles';
COMMENT ON COLUMN runra_obs.destinations.secrets IS
    'Provider secrets: the Axiom token, the OTLP headers';
COMMENT ON COLUMN runra_obs.destinations.handler IS
    'For provider function: the function called with each event row';
COMMENT ON COLUMN runra_obs.destinations.handler_role IS
    'For provider function: the role that registered the handler (it runs as the function''s owner)';
COMMENT ON COLUMN runra_obs.destinations.start_at IS
    'startAt: the destination replays the events stored when it was added whose created_at is at or after it (NULL: it started at "now")';
COMMENT ON COLUMN runra_obs.destinations.replay_to IS
    'With start_at: the safe watermark when the destination was added; events with ids up to it are sent only if created at or after start_at';

-- What looks like a credential in a text, as ***: a URL's user:password@,
-- the value of a query parameter whose name says token, key, secret ...
-- (the masker that also cleans stored error texts, src/worker/secret_mask.c).
-- The list views show configured URLs through it: a receiver that wants its
-- key in the query string gets it, and readers do not.
CREATE FUNCTION runra_obs._mask_credentials(text)
RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_mask_credentials';
COMMENT ON FUNCTION runra_obs._mask_credentials(text) IS
    'Internal: the text with what looks like a credential (URL user:password@, a token-named query parameter''s value) as ***';
REVOKE ALL ON FUNCTION runra_obs._mask_credentials(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runra_obs._mask_credentials(text) TO runra_obs_reader;

-- What runra_obs_reader may see of the destinations: everything but secrets,
-- and the options' strings (URLs) with what looks like a credential masked.
CREATE VIEW runra_obs.destination_list AS
SELECT d.name, d.provider, d.enabled, d.event_types, d.batch_size, d.flush_interval_ms,
       d.max_retry_ms, d.timeout_ms,
       (SELECT coalesce(jsonb_object_agg(o.key, CASE WHEN jsonb_typeof(o.value) = 'string'
                                                     THEN to_jsonb(runra_obs._mask_credentials(o.value #>> '{}'))
                                                     ELSE o.value END), '{}')
        FROM jsonb_each(d.settings) AS o) AS settings,
       d.handler::text AS handler, d.start_at, d.created_at
FROM runra_obs.destinations AS d;
COMMENT ON VIEW runra_obs.destination_list IS
    'The forwarding destinations without their secrets (token, headers); a credential in an option (a token in a URL''s query string) shows as ***';
GRANT SELECT ON runra_obs.destination_list TO runra_obs_reader;

-- Events behind a destination's cursor to send again: requeued dead
-- letters, and events a SQL handler failed on (the cursor moved past them
-- so the rest of the log is not held up).
CREATE TABLE runra_obs.redeliveries (
    destination_id int         NOT NULL,
    event_id       bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    sandbox_id     text        NOT NULL,
    queued_at      timestamptz NOT NULL DEFAULT now(),
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    PRIMARY KEY (destination_id, event_id)
);
COMMENT ON TABLE runra_obs.redeliveries IS
    'Events behind a destination''s cursor to send again (requeued dead letters, events a SQL handler failed on)';
COMMENT ON COLUMN runra_obs.redeliveries.attempts IS 'Failed delivery attempts so far';

CREATE TABLE runra_obs.dead_letters (
    destination_id int         NOT NULL,
    event_id       bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    sandbox_id     text        NOT NULL,
    queued_at      timestamptz NOT NULL,
    attempts       integer     NOT NULL,
    dead_at        timestamptz NOT NULL DEFAULT now(),
    error          text        NOT NULL,
    PRIMARY KEY (destination_id, event_id)
);
COMMENT ON TABLE runra_obs.dead_letters IS
    'Events a destination refused for good, or failed for longer than its max_retry_ms; see requeue_dead_letters()';
COMMENT ON COLUMN runra_obs.dead_letters.queued_at IS
    'When the first delivery attempt of the event''s batch was made';

CREATE TABLE runra_obs.forward_counters (
    destination_id int         PRIMARY KEY,
    sent           bigint      NOT NULL DEFAULT 0,
    failed         bigint      NOT NULL DEFAULT 0,
    last_success   timestamptz,
    last_error     text,
    last_error_at  timestamptz
);
COMMENT ON TABLE runra_obs.forward_counters IS
    'Delivery counters per destination, updated by the forward worker with each outcome';

-- Wakes the forward worker when the calling transaction commits (C), so a
-- change of the destinations or a requeue is seen at once.
CREATE FUNCTION runra_obs._forward_wake()
RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'runra_forward_wake';
COMMENT ON FUNCTION runra_obs._forward_wake() IS
    'Sets the forward worker''s latch when the calling transaction commits';

-- A seed glob (sandbox.*, *.failed, *) as a LIKE pattern.
CREATE FUNCTION runra_obs._glob_to_like(glob text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF glob !~ '^[a-z0-9_.*-]+$' THEN
        RAISE EXCEPTION 'invalid event type pattern "%"', glob
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A pattern has lowercase letters, digits, "_", "-", "." and "*" (any characters).',
                  HINT = 'Examples: sandbox.*, exec.completed, *.failed.';
    END IF;
    RETURN replace(replace(glob, '_', '\_'), '*', '%');
END
$$;

-- config's startAt as a time (NULL when not given), or a clear error.
CREATE FUNCTION runra_obs._start_time(provider text, config jsonb)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (config ->> 'startAt')::timestamptz;
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
    RAISE EXCEPTION 'option "startAt" of % destination must be a time, such as 2026-06-15T00:00:00Z', provider
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = format('It is %s.', config -> 'startAt');
END
$$;

-- ---------------------------------------------------------------------------
-- Configuration.
-- ---------------------------------------------------------------------------

-- Raises a clear error unless config[key] is a JSON value of the wanted kind.
CREATE FUNCTION runra_obs._check_option(provider text, config jsonb, key text,
                                        kind text, required boolean DEFAULT false,
                                        low numeric DEFAULT 0,
                                        high numeric DEFAULT 9223372036854775807)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v jsonb := config -> key;
    ok boolean;
BEGIN
    IF v IS NULL OR v = 'null' THEN
        IF required THEN
            RAISE EXCEPTION '% destination needs option "%"', provider, key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN;
    END IF;
    ok := CASE kind
        WHEN 'text' THEN jsonb_typeof(v) = 'string' AND v #>> '{}' <> ''
        WHEN 'integer' THEN jsonb_typeof(v) = 'number' AND (v::numeric) = trunc(v::numeric)
                            AND v::numeric BETWEEN low AND high
        WHEN 'positive' THEN jsonb_typeof(v) = 'number' AND v::numeric > 0
        WHEN 'string map' THEN jsonb_typeof(v) = 'object'
             AND NOT EXISTS (SELECT FROM jsonb_each(v) AS e
                             WHERE jsonb_typeof(e.value) <> 'string'
                                OR e.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$'
                                OR e.value #>> '{}' ~ '[\r\n]')
        WHEN 'attribute map' THEN jsonb_typeof(v) = 'object'
             AND NOT EXISTS (SELECT FROM jsonb_each(v) AS e
                             WHERE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean'))
    END;
    IF NOT ok THEN
        RAISE EXCEPTION 'option "%" of % destination must be %', key, provider,
            CASE kind WHEN 'text' THEN 'a non-empty string'
                      WHEN 'integer' THEN format('a whole number from %s to %s', low, high)
                      WHEN 'positive' THEN 'a number above 0'
                      WHEN 'string map' THEN 'an object of header names and one-line string values'
                      ELSE 'an object whose values are strings, numbers or booleans' END
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', v);
    END IF;
END
$$;

-- Validates a destination's full config (seed option names) and returns it.
CREATE FUNCTION runra_obs._check_config(provider text, config jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    common  text[] := '{batchSize,flushIntervalMs,maxRetryMs,timeoutMs,eventTypes,startAt}';
    allowed text[];
    key     text;
BEGIN
    IF config IS NULL OR jsonb_typeof(config) <> 'object' THEN
        RAISE EXCEPTION 'config must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    allowed := CASE provider
        WHEN 'axiom'    THEN '{dataset,token,url,edge,edgeUrl,orgId}'::text[]
        WHEN 'otel'     THEN '{endpoint,headers,resourceAttributes,signal}'::text[]
        WHEN 'jsonl'    THEN '{filePath,maxFileSizeMb,maxFiles}'::text[]
        WHEN 'function' THEN '{handler}'::text[]
    END || common;
    IF provider IS NULL OR provider NOT IN ('axiom', 'otel', 'jsonl', 'function') THEN
        RAISE EXCEPTION 'unknown provider "%"', provider
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A provider is axiom, otel, jsonl or function.';
    END IF;
    FOR key IN SELECT jsonb_object_keys(config) LOOP
        IF key <> ALL (allowed) THEN
            RAISE EXCEPTION 'unknown option "%" for % destination', key, provider
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Options of %s: %s.', provider, array_to_string(allowed, ', '));
        END IF;
    END LOOP;
    PERFORM runra_obs._check_option(provider, config, 'batchSize', 'integer', false, 1, 10000),
            runra_obs._check_option(provider, config, 'flushIntervalMs', 'integer', false, 0, 3600000),
            runra_obs._check_option(provider, config, 'maxRetryMs', 'integer'),
            runra_obs._check_option(provider, config, 'timeoutMs', 'integer', false, 100, 600000);
    PERFORM runra_obs._check_option(provider, config, 'startAt', 'text'),
            runra_obs._start_time(provider, config);
    IF config ? 'eventTypes' AND jsonb_typeof(config -> 'eventTypes') <> 'array' THEN
        RAISE EXCEPTION 'option "eventTypes" of % destination must be an array of patterns', provider
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CASE provider
    WHEN 'axiom' THEN
        PERFORM runra_obs._check_option(provider, config, 'dataset', 'text', true),
                runra_obs._check_option(provider, config, 'token', 'text', true),
                runra_obs._check_option(provider, config, 'url', 'text'),
                runra_obs._check_option(provider, config, 'edge', 'text'),
                runra_obs._check_option(provider, config, 'edgeUrl', 'text'),
                runra_obs._check_option(provider, config, 'orgId', 'text');
        PERFORM runra_obs._check_axiom(config);
    WHEN 'otel' THEN
        PERFORM runra_obs._check_option(provider, config, 'endpoint', 'text', true),
                runra_obs._check_option(provider, config, 'headers', 'string map'),
                runra_obs._check_option(provider, config, 'resourceAttributes', 'attribute map'),
                runra_obs._check_option(provider, config, 'signal', 'text');
        PERFORM runra_obs._check_otel(config);
    WHEN 'jsonl' THEN
        PERFORM runra_obs._check_option(provider, config, 'filePath', 'text', true),
                runra_obs._check_option(provider, config, 'maxFileSizeMb', 'positive'),
                runra_obs._check_option(provider, config, 'maxFiles', 'integer', false, 1, 1000);
    WHEN 'function' THEN
        PERFORM runra_obs._check_option(provider, config, 'handler', 'text', true);
    END CASE;
    RETURN config;
END
$$;

-- Raises a clear error unless config[key], when given, is an http:// or
-- https:// URL with a host and no user name or password: destination_list
-- shows the URLs to readers, so credentials belong in token or headers.
CREATE FUNCTION runra_obs._check_url(provider text, config jsonb, key text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    url text := config ->> key;
BEGIN
    IF url !~ '^https?://[^/?#[:space:][:cntrl:]]+[^[:space:][:cntrl:]]*$' THEN
        RAISE EXCEPTION 'option "%" of % destination must be an http:// or https:// URL', key, provider
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', config -> key);
    END IF;
    IF url ~ '^https?://[^/?#]*@' THEN
        RAISE EXCEPTION 'option "%" of % destination must not hold a user name or password', key, provider
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Readers see the URL in runra_obs.destination_list.',
                  HINT = CASE provider WHEN 'axiom' THEN 'Give the credentials as "token".'
                                       ELSE 'Give the credentials in "headers".' END;
    END IF;
END
$$;

-- The Axiom options beyond their types: a dataset name and header values
-- that go into the request as they are, and the places to send to.
CREATE FUNCTION runra_obs._check_axiom(config jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key text;
BEGIN
    IF config ->> 'dataset' !~ '^[A-Za-z0-9._-]+$' THEN
        RAISE EXCEPTION 'option "dataset" of axiom destination must be a dataset name, not "%"',
            config ->> 'dataset'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A dataset name has letters, digits, ".", "_" and "-"; it goes into the ingest URL.';
    END IF;
    FOREACH key IN ARRAY '{token,orgId}'::text[] LOOP
        IF config ->> key ~ '[[:cntrl:]]' THEN
            RAISE EXCEPTION 'option "%" of axiom destination must not hold control characters', key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'It is sent as it is in a request header, where a line break (often left over from a file) ends the header early.';
        END IF;
    END LOOP;
    PERFORM runra_obs._check_url('axiom', config, 'url'),
            runra_obs._check_url('axiom', config, 'edgeUrl');
    -- as in @axiomhq/js: edge is a domain, https:// is put before it
    IF config ->> 'edge' !~ '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$' THEN
        RAISE EXCEPTION 'option "edge" of axiom destination must be a domain, such as eu-central-1.aws.edge.axiom.co'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', config -> 'edge'),
                  HINT = 'A full URL (http:// or https://) goes in "edgeUrl".';
    END IF;
END
$$;

-- The OTLP options beyond their types: the signal, an endpoint that does
-- not name the other signal's path, resource attribute names.
CREATE FUNCTION runra_obs._check_otel(config jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    signal text := coalesce(config ->> 'signal', 'traces');
    path   text := substring(rtrim(config ->> 'endpoint', '/') FROM '/v1/(traces|logs)$');
BEGIN
    IF signal NOT IN ('traces', 'logs') THEN
        RAISE EXCEPTION 'option "signal" of otel destination must be "traces" or "logs"'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', config -> 'signal');
    END IF;
    PERFORM runra_obs._check_url('otel', config, 'endpoint');
    IF path <> signal THEN
        RAISE EXCEPTION 'option "endpoint" of otel destination ends in /v1/%, but "signal" is %', path, signal
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Give the base URL (without /v1/%s), or the URL ending in /v1/%s.', path, signal);
    END IF;
    IF EXISTS (SELECT FROM jsonb_object_keys(coalesce(config -> 'resourceAttributes', '{}')) AS k
               WHERE k = '') THEN
        RAISE EXCEPTION 'option "resourceAttributes" of otel destination must not have an empty name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'OTLP attribute keys are non-empty.';
    END IF;
    IF jsonb_typeof(config #> '{resourceAttributes,service.name}') <> 'string'
       OR config #>> '{resourceAttributes,service.name}' = '' THEN
        RAISE EXCEPTION 'resource attribute "service.name" of otel destination must be a non-empty string'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is %s.', config #> '{resourceAttributes,service.name}'),
                  HINT = 'Leave it out for the default, runra-sandbox.';
    END IF;
END
$$;

-- url with its own path when it has one (trailing slashes trimmed), else
-- with `path` (how @axiomhq/js builds ingest URLs).
CREATE FUNCTION runra_obs._url_or_path(url text, path text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m[1] || CASE WHEN m[2] ~ '^/*$' THEN path ELSE rtrim(m[2], '/') END || m[3]
    FROM regexp_match(url, '^(https?://[^/?#]+)([^?#]*)(.*)$') AS m
$$;

-- Where a destination's requests go, from its settings.  Axiom, as
-- @axiomhq/js 2.x resolves it: edgeUrl, else edge, else url, else
-- https://api.axiom.co; an edge endpoint takes /v1/ingest/{dataset}, the
-- others (US East only) /v1/datasets/{dataset}/ingest, and a URL with a
-- path of its own is used as it is.  OTLP: the endpoint as it is when it
-- ends in the signal's path (/v1/traces, /v1/logs), as the exporter spec's
-- OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is; else a base URL, the signal's
-- path appended, as OTEL_EXPORTER_OTLP_ENDPOINT is.
CREATE FUNCTION runra_obs._forward_url(provider text, settings jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE provider
        WHEN 'axiom' THEN CASE
            WHEN settings ? 'edgeUrl'
            THEN runra_obs._url_or_path(settings ->> 'edgeUrl', '/v1/ingest/' || (settings ->> 'dataset'))
            WHEN settings ? 'edge'
            THEN 'https://' || (settings ->> 'edge') || '/v1/ingest/' || (settings ->> 'dataset')
            ELSE runra_obs._url_or_path(coalesce(settings ->> 'url', 'https://api.axiom.co'),
                                        '/v1/datasets/' || (settings ->> 'dataset') || '/ingest')
        END
        WHEN 'otel' THEN rtrim(settings ->> 'endpoint', '/')
            || CASE WHEN rtrim(settings ->> 'endpoint', '/') ~ '/v1/(traces|logs)$' THEN ''
                    ELSE '/v1/' || coalesce(settings ->> 'signal', 'traces') END
    END
$$;

-- The extra request headers of a destination, one "Name: value" a line:
-- OTLP's configured headers; Axiom's organization for a personal token.
CREATE FUNCTION runra_obs._forward_headers(provider text, settings jsonb, secrets jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE provider
        WHEN 'axiom' THEN 'X-AXIOM-ORG-ID: ' || (settings ->> 'orgId')
        WHEN 'otel' THEN (SELECT string_agg(h.key || ': ' || h.value, E'\n')
                          FROM jsonb_each_text(secrets -> 'headers') AS h)
    END
$$;

-- Checks that a handler takes one runra_obs.sandbox_events row.
CREATE FUNCTION runra_obs._check_handler(handler regprocedure)
RETURNS regprocedure
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_proc AS p
                   WHERE p.oid = handler AND p.pronargs = 1
                     AND p.proargtypes[0] = 'runra_obs.sandbox_events'::regtype) THEN
        RAISE EXCEPTION 'handler % must take exactly one argument of type runra_obs.sandbox_events', handler
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Declare it as f(e runra_obs.sandbox_events).';
    END IF;
    RETURN handler;
END
$$;

-- Writes a validated config into the row of destination `dest`.
CREATE FUNCTION runra_obs._apply_config(dest integer, provider text, config jsonb,
                                        event_types text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    types text[] := coalesce(event_types,
                             ARRAY(SELECT jsonb_array_elements_text(config -> 'eventTypes')));
BEGIN
    PERFORM runra_obs._check_config(provider, config);
    UPDATE runra_obs.destinations AS d SET
        event_types       = coalesce(types, '{}'),
        like_patterns     = ARRAY(SELECT runra_obs._glob_to_like(t) FROM unnest(types) AS t),
        batch_size        = coalesce((config ->> 'batchSize')::integer, 1000),
        flush_interval_ms = coalesce((config ->> 'flushIntervalMs')::integer, 1000),
        max_retry_ms      = coalesce((config ->> 'maxRetryMs')::bigint, 86400000),
        timeout_ms        = coalesce((config ->> 'timeoutMs')::integer, 30000),
        settings          = config - '{token,headers,handler,eventTypes,batchSize,flushIntervalMs,maxRetryMs,timeoutMs,startAt}'::text[],
        secrets           = jsonb_strip_nulls(jsonb_build_object('token', config -> 'token',
                                                                 'headers', config -> 'headers')),
        handler           = CASE WHEN provider = 'function'
                                 THEN runra_obs._check_handler((config ->> 'handler')::regprocedure) END
    WHERE d.id = dest;
    PERFORM runra_obs._forward_wake();
END
$$;

CREATE FUNCTION runra_obs.add_destination(name text, provider text, config jsonb,
                                          event_types text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    dest  integer;
    start timestamptz;
    now_id bigint;
BEGIN
    -- one change of the destination set at a time
    LOCK TABLE runra_obs.destinations IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT FROM runra_obs.destinations AS d WHERE d.name = add_destination.name) THEN
        RAISE EXCEPTION 'destination "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Use runra_obs.change_destination() to change it.';
    END IF;
    PERFORM runra_obs._check_config(provider, config);
    start := runra_obs._start_time(provider, config);
    -- "now": every event visible at or below it is the past; what commits
    -- from here on has a higher id (waits for the inserts running now)
    now_id := runra_obs.safe_watermark();
    INSERT INTO runra_obs.destinations (name, provider, handler, handler_role, start_at, replay_to)
    VALUES (name, provider,
            CASE WHEN provider = 'function'
                 THEN runra_obs._check_handler((config ->> 'handler')::regprocedure) END,
            CASE WHEN provider = 'function' THEN current_user::regrole END,
            start, CASE WHEN start IS NOT NULL THEN now_id END)
    RETURNING id INTO dest;
    PERFORM runra_obs._apply_config(dest, provider, config,
                                    CASE WHEN event_types = '{}' THEN NULL ELSE event_types END);
    INSERT INTO runra_obs.forward_counters (destination_id) VALUES (dest);
    INSERT INTO runra_obs.consumers (name, position)
    VALUES ('destination:' || dest, CASE WHEN start IS NULL THEN now_id ELSE 0 END);
END
$$;
COMMENT ON FUNCTION runra_obs.add_destination(text, text, jsonb, text[]) IS
    'Adds a destination: provider axiom, otel, jsonl or function, with the seed''s option names in config; it starts at now, or replays from config startAt';

-- The destination called `name`, or a clear error.
CREATE FUNCTION runra_obs._destination(name text)
RETURNS runra_obs.destinations
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    d runra_obs.destinations;
BEGIN
    SELECT * INTO d FROM runra_obs.destinations AS x WHERE x.name = _destination.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'destination "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM runra_obs.destination_list shows the destinations.';
    END IF;
    RETURN d;
END
$$;

CREATE FUNCTION runra_obs.change_destination(name text, config jsonb,
                                             event_types text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    d runra_obs.destinations := runra_obs._destination(name);
    merged jsonb;
BEGIN
    IF config ? 'startAt' THEN
        RAISE EXCEPTION 'option "startAt" can only be given when a destination is added'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'To replay history into it, remove the destination and add it again with startAt.';
    END IF;
    -- the old options, with each key of config replacing (or, when null, removing) one
    merged := d.settings || d.secrets
              || jsonb_build_object('batchSize', d.batch_size, 'flushIntervalMs', d.flush_interval_ms,
                                    'maxRetryMs', d.max_retry_ms, 'timeoutMs', d.timeout_ms)
              || CASE WHEN d.provider = 'function'
                      THEN jsonb_build_object('handler', d.handler::text) ELSE '{}' END
              || coalesce(config, '{}');
    merged := jsonb_strip_nulls(merged);
    PERFORM runra_obs._apply_config(d.id, d.provider, merged,
                                    coalesce(event_types, d.event_types));
END
$$;
COMMENT ON FUNCTION runra_obs.change_destination(text, jsonb, text[]) IS
    'Changes options of a destination (keys given replace the old ones, null removes one); event_types too when given, for the events after its cursor';

-- Pauses (false) or resumes (true) the destination called `name`.
CREATE FUNCTION runra_obs._set_enabled(name text, enabled boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE runra_obs.destinations AS d SET enabled = _set_enabled.enabled
    WHERE d.id = (runra_obs._destination(_set_enabled.name)).id;
    PERFORM runra_obs._forward_wake();
END
$$;

CREATE FUNCTION runra_obs.pause_destination(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT runra_obs._set_enabled($1, false) $$;
COMMENT ON FUNCTION runra_obs.pause_destination(text) IS
    'Stops delivering to a destination; its cursor stays where it is and it falls behind';

CREATE FUNCTION runra_obs.resume_destination(name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT runra_obs._set_enabled($1, true) $$;
COMMENT ON FUNCTION runra_obs.resume_destination(text) IS
    'Resumes delivering to a paused destination, from its cursor (what arrived meanwhile first)';

CREATE FUNCTION runra_obs.remove_destination(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    d runra_obs.destinations;
BEGIN
    LOCK TABLE runra_obs.destinations IN SHARE ROW EXCLUSIVE MODE;
    d := runra_obs._destination(name);
    DELETE FROM runra_obs.redeliveries WHERE destination_id = d.id;
    DELETE FROM runra_obs.dead_letters WHERE destination_id = d.id;
    DELETE FROM runra_obs.forward_counters WHERE destination_id = d.id;
    DELETE FROM runra_obs.consumers WHERE consumers.name = 'destination:' || d.id;
    DELETE FROM runra_obs.destinations WHERE id = d.id;
    PERFORM runra_obs._forward_wake();
END
$$;
COMMENT ON FUNCTION runra_obs.remove_destination(text) IS
    'Removes a destination with its cursor, redeliveries, dead letters and counters';

CREATE FUNCTION runra_obs.on(event_pattern text, handler regprocedure)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    name text := format('on:%s:%s', event_pattern, handler::oid);
BEGIN
    PERFORM runra_obs.add_destination(name, 'function',
                                      jsonb_build_object('handler', handler::text,
                                                         'batchSize', 100,
                                                         'flushIntervalMs', 0),
                                      ARRAY[event_pattern]);
    RETURN name;
END
$$;
COMMENT ON FUNCTION runra_obs.on(text, regprocedure) IS
    'Calls handler(event) for each new event matching event_pattern (the SQL twin of runra.on); returns the destination name';

CREATE FUNCTION runra_obs.requeue_dead_letters(destination text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    dest integer := CASE WHEN destination IS NOT NULL
                         THEN (runra_obs._destination(destination)).id END;
    moved bigint;
BEGIN
    WITH gone AS (
        DELETE FROM runra_obs.dead_letters AS l
        WHERE dest IS NULL OR l.destination_id = dest
        RETURNING l.destination_id, l.event_id, l.created_at, l.sandbox_id
    )
    INSERT INTO runra_obs.redeliveries (destination_id, event_id, created_at, sandbox_id)
    SELECT * FROM gone
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS moved = ROW_COUNT;
    PERFORM runra_obs._forward_wake();
    RETURN moved;
END
$$;
COMMENT ON FUNCTION runra_obs.requeue_dead_letters(text) IS
    'Moves the dead letters of one destination (or of all, given NULL) to runra_obs.redeliveries, to be sent again; returns how many';

-- ---------------------------------------------------------------------------
-- Reading, for the forward worker.
-- ---------------------------------------------------------------------------

-- The events a destination selects with ids in (after_id, up_to_id], in id
-- order, at most max_events.  The bounds are values (EXECUTE), and seqscans
-- are off, so that partitions without statistics are still read through
-- the BRIN index on id; parallel workers are off (starting them costs more
-- than reading 10,000 rows).  A replay (start_at) reads up to replay_to with
-- created_at >= start_at, which prunes the partitions before it; the
-- worker never asks for a range that crosses replay_to.  Each event comes
-- with what it means as 15_event_facts.sql defines it (failed, its
-- duration), so the encoders never decide that themselves.
CREATE FUNCTION runra_obs._forward_batch(destination integer, after_id bigint,
                                         up_to_id bigint, max_events integer,
                                         max_bytes bigint)
RETURNS TABLE (id bigint, created_at timestamptz, sandbox_id text, event_type text,
               data jsonb, trace_id text, sandbox_trace_id text, failed boolean,
               duration_ms numeric, ingested_at timestamptz, cut boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET max_parallel_workers_per_gather = 0
AS $$
DECLARE
    d         runra_obs.destinations;
    replaying boolean;
BEGIN
    SELECT * INTO STRICT d FROM runra_obs.destinations AS x WHERE x.id = destination;
    -- the history a start time replays has its own bound on created_at
    replaying := d.start_at IS NOT NULL AND after_id < d.replay_to;
    -- The batch ends with the event that takes the stored size of its data
    -- to max_bytes (so it always has one): one huge event, or many big
    -- ones, cannot make a request the worker cannot hold.  Events after it
    -- are read, and their data detoasted, only by the next batch.  One
    -- running sum, streamed: the common batch, far under max_bytes, costs
    -- what it cost without it.
    RETURN QUERY EXECUTE format($rows$
        SELECT b.id, b.created_at, b.sandbox_id, b.event_type, b.data, b.trace_id, md5(b.sandbox_id),
               runra_obs.event_failed(b.event_type, b.data),
               runra_obs.event_duration_ms(b.event_type, b.data), b.ingested_at,
               b.bytes_upto >= $6
        FROM (SELECT e.*, sum(runra_obs._raw_size(e.data)) OVER (ORDER BY e.id ROWS UNBOUNDED PRECEDING)
                            AS bytes_upto
              FROM (SELECT e.id, e.created_at, e.sandbox_id, e.event_type, e.data, e.trace_id, e.ingested_at
                    FROM runra_obs.sandbox_events AS e
                    WHERE e.id > $1 AND e.id <= $2 %s
                      AND ($3 = '{}' OR e.event_type LIKE ANY ($3))
                    ORDER BY e.id LIMIT $4) AS e) AS b
        WHERE b.bytes_upto - runra_obs._raw_size(b.data) < $6
        ORDER BY b.id
        $rows$, CASE WHEN replaying THEN 'AND e.created_at >= $5' ELSE '' END)
    USING after_id, CASE WHEN replaying THEN least(up_to_id, d.replay_to) ELSE up_to_id END,
          d.like_patterns, max_events, d.start_at, max_bytes;
END
$$;
COMMENT ON FUNCTION runra_obs._forward_batch(integer, bigint, bigint, integer, bigint) IS
    'Internal: the events destination selects with ids in (after_id, up_to_id], in id order, at most max_events, ending with the one that takes their stored data to max_bytes; cut says the batch reached max_bytes';

-- The size of a value as stored uncompressed, without detoasting it.
CREATE FUNCTION runra_obs._raw_size(value jsonb)
RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'runra_raw_size';
COMMENT ON FUNCTION runra_obs._raw_size(jsonb) IS
    'Internal: the uncompressed stored size of a jsonb value, read from its header (no detoasting)';

REVOKE ALL ON FUNCTION
    runra_obs.add_destination(text, text, jsonb, text[]),
    runra_obs.change_destination(text, jsonb, text[]),
    runra_obs.pause_destination(text),
    runra_obs.resume_destination(text),
    runra_obs.remove_destination(text),
    runra_obs.on(text, regprocedure),
    runra_obs.requeue_dead_letters(text),
    runra_obs._forward_wake(),
    runra_obs._forward_batch(integer, bigint, bigint, integer, bigint),
    runra_obs._raw_size(jsonb),
    runra_obs._glob_to_like(text),
    runra_obs._start_time(text, jsonb),
    runra_obs._check_option(text, jsonb, text, text, boolean, numeric, numeric),
    runra_obs._check_config(text, jsonb),
    runra_obs._check_url(text, jsonb, text),
    runra_obs._check_axiom(jsonb),
    runra_obs._check_otel(jsonb),
    runra_obs._url_or_path(text, text),
    runra_obs._forward_url(text, jsonb),
    runra_obs._forward_headers(text, jsonb, jsonb),
    runra_obs._check_handler(regprocedure),
    runra_obs._apply_config(integer, text, jsonb, text[]),
    runra_obs._destination(text),
    runra_obs._set_enabled(text, boolean)
FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Seeing it.
-- ---------------------------------------------------------------------------
CREATE VIEW runra_obs.forward_status AS
SELECT d.name                          AS destination,
       d.provider                      AS provider,
       d.enabled                       AS enabled,
       c.position                      AS position,
       w.ids_behind                    AS behind_events,
       w.seconds_behind                AS behind_seconds,
       coalesce(r.redelivering, 0)::bigint AS redelivering,
       coalesce(k.sent, 0)::bigint     AS sent,
       coalesce(k.failed, 0)::bigint   AS failed,
       coalesce(l.dead, 0)::bigint     AS dead_lettered,
       k.last_success                  AS last_success,
       k.last_error                    AS last_error
FROM runra_obs.destinations AS d
JOIN runra_obs.consumers AS c ON c.name = 'destination:' || d.id
CROSS JOIN LATERAL runra_obs._watermark_lag(c.position) AS w
LEFT JOIN runra_obs.forward_counters AS k ON k.destination_id = d.id
LEFT JOIN LATERAL (SELECT count(*) AS redelivering
                   FROM runra_obs.redeliveries AS x WHERE x.destination_id = d.id) AS r ON true
LEFT JOIN LATERAL (SELECT count(*) AS dead
                   FROM runra_obs.dead_letters AS x WHERE x.destination_id = d.id) AS l ON true;
COMMENT ON VIEW runra_obs.forward_status IS
    'Per destination: its cursor and lag behind the safe watermark (events, seconds), events to send again, events sent, failed attempts, dead letters, last success and last error';
COMMENT ON COLUMN runra_obs.forward_status.position IS
    'The destination''s cursor: every event with an id at or below it was accepted, dead-lettered or skipped by the selection';
COMMENT ON COLUMN runra_obs.forward_status.behind_events IS
    'Event ids between the cursor and the safe watermark: events not read yet or not yet accepted (those the selection skips included)';
COMMENT ON COLUMN runra_obs.forward_status.behind_seconds IS
    'How long the events after the cursor have been safe to read and not delivered; 0 when caught up';
COMMENT ON COLUMN runra_obs.forward_status.redelivering IS
    'Events in runra_obs.redeliveries for this destination (requeued dead letters, handler failures)';
COMMENT ON COLUMN runra_obs.forward_status.failed IS
    'Events in delivery attempts that failed (each attempt counts)';
COMMENT ON COLUMN runra_obs.forward_status.dead_lettered IS
    'Events now in runra_obs.dead_letters for this destination';
GRANT SELECT ON runra_obs.forward_status TO runra_obs_reader;
