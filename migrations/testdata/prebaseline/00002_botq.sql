-- botq's own tables, functions and views. Everything is created unqualified in
-- the schema goose runs in (search_path is "<schema>, pg_temp"); see
-- migrations.go. River's tables (river_job etc.) already exist here
-- (version 1).

-- +goose Up

-- app: one row per Bot v3 appId.
CREATE TABLE app (
    id                 text PRIMARY KEY
                       CONSTRAINT app_id_format CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$'),
    region             text NOT NULL DEFAULT 'US'
                       CONSTRAINT app_region_valid CHECK (region IN ('US', 'EMEA', 'APAC', 'CUSTOM')),
    -- base_url is set for region CUSTOM only (the simulator, a proxy). Plain
    -- http is accepted for loopback addresses only: tokens travel in headers.
    base_url           text
                       CONSTRAINT app_base_url_valid CHECK (
                           (region = 'CUSTOM') = (base_url IS NOT NULL)
                           AND (base_url IS NULL
                                OR base_url ~ '^https://[^/\s]+'
                                OR base_url ~ '^http://(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?(/.*)?$')),
    company_key        text NOT NULL DEFAULT '',
    -- The token is AES-GCM ciphertext (nonce || sealed) under the key named by
    -- token_key_id; the key itself lives only in the environment.
    token_ciphertext   bytea,
    token_key_id       text,
    token_expires_at   timestamptz,
    token_refreshed_at timestamptz,
    token_version      integer NOT NULL DEFAULT 0,
    -- Fleet-wide limits (every botq process shares them through this row).
    rate_limit         double precision CONSTRAINT app_rate_limit_positive CHECK (rate_limit IS NULL OR rate_limit > 0),
    rate_burst         integer NOT NULL DEFAULT 1 CONSTRAINT app_rate_burst_positive CHECK (rate_burst >= 1),
    rate_tat           timestamptz, -- GCRA theoretical arrival time of the next call
    concurrency_limit  integer CONSTRAINT app_concurrency_limit_positive CHECK (concurrency_limit IS NULL OR concurrency_limit > 0),
    paused_until       timestamptz,
    pause_reason       text,
    throttled_until    timestamptz,
    lane_on_failure    text NOT NULL DEFAULT 'continue'
                       CONSTRAINT app_lane_on_failure_valid CHECK (lane_on_failure IN ('continue', 'block')),
    health_status      text CONSTRAINT app_health_status_valid CHECK (health_status IN ('HEALTHY', 'DEGRADED', 'DOWN')),
    health_checked_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- kind_config: the action kinds botq executes, with the River settings the SQL
-- enqueue path needs (it cannot read botq's config file). `botq serve` writes
-- the configured values here at start-up.
CREATE TABLE kind_config (
    kind         text PRIMARY KEY,
    max_attempts smallint NOT NULL DEFAULT 25 CONSTRAINT kind_config_max_attempts_positive CHECK (max_attempts > 0),
    queue        text NOT NULL DEFAULT 'botq'
                 CONSTRAINT kind_config_queue_valid CHECK (queue ~ '^[a-z0-9]+([_|-]?[a-z0-9]+)*$'),
    priority     smallint NOT NULL DEFAULT 1 CONSTRAINT kind_config_priority_valid CHECK (priority BETWEEN 1 AND 4),
    -- idempotent: a blind resend is harmless. The others (a second customer
    -- message, a second note) are reconciled before any resend.
    idempotent   boolean NOT NULL,
    -- conversation: the payload addresses a conversation (coordinate + author).
    conversation boolean NOT NULL
);

INSERT INTO kind_config (kind, idempotent, conversation) VALUES
    ('respond', false, true),
    ('form', false, true),
    ('note', false, true),
    ('control', true, true),
    ('priority', true, true),
    ('tag', true, true),
    ('tag_remove', true, true),
    ('workqueue', true, true),
    ('resolve', true, true),
    ('author_attributes', true, true),
    ('author_update', true, true),
    ('registration_create', true, false),
    ('registration_update', true, false),
    ('registration_delete', true, false),
    ('mode', true, false),
    -- A refresh whose answer was lost left us without the new token; the old
    -- one works for the 10-minute grace, so refreshing again is the only
    -- recovery and is safe.
    ('token_refresh', true, false),
    ('token_revoke', true, false);

-- channel_limit: the longest text botq accepts per network, checked at
-- enqueue. These are botq's assumptions (Khoros documents none); edit the rows
-- to suit. '*' applies to networks without a row.
CREATE TABLE channel_limit (
    network_key    text PRIMARY KEY,
    max_text_chars integer NOT NULL CONSTRAINT channel_limit_positive CHECK (max_text_chars > 0)
);

INSERT INTO channel_limit (network_key, max_text_chars) VALUES
    ('*', 10000),
    ('twitter', 10000),
    ('facebook', 2000),
    ('instagram', 1000),
    ('whatsapp', 4096),
    ('sms', 1600),
    ('apple', 10000),
    ('googlemessages', 3072),
    ('wechat', 2048),
    ('smooch', 4096),
    ('brandmessenger', 10000),
    ('lia', 10000);

CREATE TABLE action (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id          text NOT NULL REFERENCES app (id),
    kind            text NOT NULL REFERENCES kind_config (kind),
    payload         jsonb NOT NULL DEFAULT '{}',
    idempotency_key text NOT NULL DEFAULT gen_random_uuid()::text,
    lane            text,
    state           text NOT NULL DEFAULT 'queued'
                    CONSTRAINT action_state_valid CHECK (state IN ('queued', 'retrying', 'sent', 'succeeded', 'failed', 'unknown', 'cancelled')),
    -- The River job's id is taken from River's own sequence by the BEFORE
    -- INSERT trigger (never from the caller), so the AFTER INSERT trigger can
    -- create the job without a second write to this row.
    river_job_id    bigint NOT NULL UNIQUE,
    replay_of       bigint REFERENCES action (id) ON DELETE SET NULL,
    attempt_count   integer NOT NULL DEFAULT 0,
    release_count   integer NOT NULL DEFAULT 0,
    request_id      text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL DEFAULT current_user,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT action_idempotency_key_unique UNIQUE (app_id, idempotency_key),
    CONSTRAINT action_finished_at_terminal CHECK ((finished_at IS NOT NULL) = (state IN ('succeeded', 'failed', 'cancelled')))
);

CREATE INDEX action_app_created_idx ON action (app_id, created_at);
CREATE INDEX action_state_created_idx ON action (state, created_at);
CREATE INDEX action_created_idx ON action (created_at);
CREATE INDEX action_replay_of_idx ON action (replay_of) WHERE replay_of IS NOT NULL;
-- The next action of a lane: the oldest queued one.
CREATE INDEX action_lane_queued_idx ON action (app_id, lane, id) WHERE state = 'queued' AND lane IS NOT NULL;
-- Ambiguous sends waiting for the reconciler.
CREATE INDEX action_unknown_idx ON action (app_id, updated_at) WHERE state = 'unknown';

-- action_transition: the action state machine. The guard trigger below refuses
-- every state change not listed here, whoever makes it.
CREATE TABLE action_transition (
    from_state text NOT NULL,
    to_state   text NOT NULL,
    PRIMARY KEY (from_state, to_state)
);

INSERT INTO action_transition (from_state, to_state) VALUES
    ('queued', 'retrying'), ('queued', 'sent'), ('queued', 'succeeded'), ('queued', 'failed'),
    ('queued', 'unknown'), ('queued', 'cancelled'),
    ('retrying', 'queued'), ('retrying', 'sent'), ('retrying', 'succeeded'), ('retrying', 'failed'),
    ('retrying', 'unknown'), ('retrying', 'cancelled'),
    ('unknown', 'queued'), ('unknown', 'sent'), ('unknown', 'succeeded'), ('unknown', 'failed'),
    ('unknown', 'cancelled'),
    ('sent', 'succeeded'), ('sent', 'failed');

CREATE TABLE attempt (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action_id        bigint NOT NULL REFERENCES action (id) ON DELETE CASCADE,
    number           integer NOT NULL,
    river_job_id     bigint NOT NULL,
    job_attempt      integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      double precision NOT NULL CONSTRAINT attempt_duration_nonnegative CHECK (duration_ms >= 0),
    wire_sent        boolean NOT NULL,
    http_status      integer,
    request_id       text,
    outcome          text NOT NULL CONSTRAINT attempt_outcome_valid CHECK (outcome IN ('ok', 'retry', 'snooze', 'cancel', 'unknown')),
    error            text,
    response_excerpt text CONSTRAINT attempt_response_excerpt_bounded CHECK (length(response_excerpt) <= 2048),
    worker           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT attempt_number_unique UNIQUE (action_id, number)
);

CREATE INDEX attempt_created_idx ON attempt (created_at);
CREATE INDEX attempt_request_idx ON attempt (request_id) WHERE request_id IS NOT NULL;

CREATE TABLE request (
    request_id           text PRIMARY KEY,
    app_id               text NOT NULL REFERENCES app (id),
    action_id            bigint REFERENCES action (id) ON DELETE SET NULL,
    origin               text NOT NULL DEFAULT 'BOT' CONSTRAINT request_origin_valid CHECK (origin IN ('BOT', 'KHOROS')),
    state                text NOT NULL CONSTRAINT request_state_valid CHECK (state IN ('PENDING', 'SUCCESS', 'ERROR', 'EXPIRED')),
    details              jsonb,
    -- payload is kept for KHOROS-origin records (what Khoros delivered to the
    -- bot); for BOT-origin ones the action holds what was sent.
    payload              jsonb,
    http_status          integer,
    khoros_created_at    timestamptz,
    khoros_completed_at  timestamptz,
    khoros_updated_at    timestamptz,
    first_seen_at        timestamptz NOT NULL DEFAULT now(),
    last_checked_at      timestamptz,
    next_check_at        timestamptz,
    check_count          integer NOT NULL DEFAULT 0,
    finalized_at         timestamptz,
    CONSTRAINT request_finalized_iff_final CHECK ((state = 'PENDING') = (finalized_at IS NULL))
);

CREATE INDEX request_pending_idx ON request (app_id, next_check_at) WHERE state = 'PENDING';
CREATE INDEX request_app_seen_idx ON request (app_id, first_seen_at);
CREATE INDEX request_state_seen_idx ON request (state, first_seen_at);
CREATE INDEX request_seen_idx ON request (first_seen_at);
CREATE INDEX request_action_idx ON request (action_id) WHERE action_id IS NOT NULL;

CREATE TABLE event (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    app_id    text,
    action_id bigint,
    kind      text NOT NULL CONSTRAINT event_kind_valid CHECK (kind IN (
                  'replay', 'cancel', 'pause', 'resume', 'throttle',
                  'token_set', 'token_refresh', 'token_revoke', 'token_unauthorized',
                  'registration', 'mode_change', 'health_change',
                  'lane_blocked', 'lane_unblocked', 'ambiguous_resolved', 'ambiguous_released',
                  'app_upsert', 'retention')),
    actor     text NOT NULL,
    reason    text,
    before    jsonb,
    after     jsonb
);

CREATE INDEX event_at_idx ON event (at);
CREATE INDEX event_app_at_idx ON event (app_id, at);
CREATE INDEX event_action_idx ON event (action_id) WHERE action_id IS NOT NULL;

-- lane: one row per lane that has unfinished actions. head_action_id is the one
-- action of the lane whose River job may run; the others wait in River's
-- `pending` state. The row lock serialises concurrent inserts into one lane.
CREATE TABLE lane (
    app_id         text NOT NULL,
    lane           text NOT NULL,
    head_action_id bigint,
    blocked_by     bigint,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, lane)
);

-- app_slot: leases for the per-app concurrency limit, one row per allowed
-- in-flight call. A lease expires, so a killed process never holds a slot for
-- ever.
CREATE TABLE app_slot (
    app_id      text NOT NULL REFERENCES app (id) ON DELETE CASCADE,
    slot        integer NOT NULL,
    holder      bigint,
    lease_until timestamptz,
    PRIMARY KEY (app_id, slot)
);

-- notify_bucket remembers the last 10 ms bucket in which an insert NOTIFY was
-- sent. setval is not transactional, so it works as a lock-free register:
-- per-row NOTIFY serialises commits (river-notes 2.2.1) and a debounce keeps
-- the latency without that cost; River's poll interval covers the rare wake-up
-- a debounced insert misses.
CREATE SEQUENCE notify_bucket MINVALUE 0 START WITH 0;

-- +goose StatementBegin
CREATE FUNCTION notify_insert(queues text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bucket bigint := (extract(epoch FROM clock_timestamp()) * 100)::bigint;
BEGIN
    IF queues IS NULL OR bucket = (SELECT last_value FROM notify_bucket) THEN
        RETURN;
    END IF;
    PERFORM setval('notify_bucket', bucket);
    PERFORM pg_notify(current_schema() || '.river_insert', json_build_object('queue', q)::text)
    FROM unnest(queues) AS q;
END
$$;
-- +goose StatementEnd

-- payload_error raises the error every enqueue check uses: SQLSTATE code, the
-- offending field in the COLUMN field (pgx: PgError.ColumnName) and in the
-- message.
-- +goose StatementBegin
CREATE FUNCTION payload_error(field text, problem text, code text DEFAULT '22023') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'botq: % %', field, problem USING ERRCODE = code, COLUMN = field;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION payload_string(obj jsonb, key text, field text, required boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF obj IS NULL OR NOT obj ? key OR jsonb_typeof(obj -> key) = 'null' THEN
        IF required THEN
            PERFORM payload_error(field, 'is required');
        END IF;
        RETURN NULL;
    END IF;
    IF jsonb_typeof(obj -> key) <> 'string' THEN
        PERFORM payload_error(field, 'must be a string, not ' || jsonb_typeof(obj -> key));
    END IF;
    IF required AND btrim(obj ->> key) = '' THEN
        PERFORM payload_error(field, 'must not be empty');
    END IF;
    RETURN obj ->> key;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION payload_object(obj jsonb, key text, field text, required boolean) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF obj IS NULL OR NOT obj ? key OR jsonb_typeof(obj -> key) = 'null' THEN
        IF required THEN
            PERFORM payload_error(field, 'is required');
        END IF;
        RETURN NULL;
    END IF;
    IF jsonb_typeof(obj -> key) <> 'object' THEN
        PERFORM payload_error(field, 'must be an object, not ' || jsonb_typeof(obj -> key));
    END IF;
    RETURN obj -> key;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION payload_int(obj jsonb, key text, field text, required boolean, min_value bigint, max_value bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v numeric;
BEGIN
    IF obj IS NULL OR NOT obj ? key OR jsonb_typeof(obj -> key) = 'null' THEN
        IF required THEN
            PERFORM payload_error(field, 'is required');
        END IF;
        RETURN NULL;
    END IF;
    IF jsonb_typeof(obj -> key) <> 'number' THEN
        PERFORM payload_error(field, 'must be an integer, not ' || jsonb_typeof(obj -> key));
    END IF;
    v := (obj ->> key)::numeric;
    IF v <> trunc(v) OR v < min_value OR v > max_value THEN
        PERFORM payload_error(field, format('must be an integer from %s to %s, not %s', min_value, max_value, v));
    END IF;
    RETURN v::bigint;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION payload_enum(value text, field text, allowed text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF value IS NOT NULL AND NOT value = ANY (allowed) THEN
        PERFORM payload_error(field, format('must be one of %s, not %L', array_to_string(allowed, ', '), value));
    END IF;
END
$$;
-- +goose StatementEnd

-- payload_validate checks a payload for its kind and returns it with the Bot v3
-- `type` field filled in where the kind implies it, so the stored payload is
-- exactly the body botq sends.
-- +goose StatementBegin
CREATE FUNCTION payload_validate(p_kind text, p_app_id text, p jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    is_conversation boolean;
    want_type text;
    coord jsonb;
    network text;
    owner jsonb;
    media jsonb;
    item jsonb;
    i integer;
    text_limit integer;
    msg_type text;
BEGIN
    IF jsonb_typeof(p) <> 'object' THEN
        PERFORM payload_error('payload', 'must be a JSON object, not ' || jsonb_typeof(p));
    END IF;
    IF octet_length(p::text) > 262144 THEN
        PERFORM payload_error('payload', 'is larger than 256 KiB', '54000');
    END IF;

    SELECT conversation INTO is_conversation FROM kind_config WHERE kind = p_kind;

    IF is_conversation THEN
        coord := payload_object(p, 'coordinate', 'payload.coordinate', true);
        PERFORM payload_string(coord, 'companyKey', 'payload.coordinate.companyKey', true);
        network := payload_string(coord, 'networkKey', 'payload.coordinate.networkKey', true);
        PERFORM payload_string(coord, 'externalId', 'payload.coordinate.externalId', true);
        PERFORM payload_enum(payload_string(coord, 'scope', 'payload.coordinate.scope', false),
                             'payload.coordinate.scope', ARRAY['PRIVATE', 'PUBLIC']);
        PERFORM payload_string(coord, 'botId', 'payload.coordinate.botId', false);
        PERFORM payload_string(coord, 'messageId', 'payload.coordinate.messageId', false);
        PERFORM payload_string(payload_object(p, 'author', 'payload.author', true), 'id', 'payload.author.id', true);

        want_type := CASE p_kind
            WHEN 'respond' THEN 'message'
            WHEN 'form' THEN 'secure_form'
            WHEN 'tag_remove' THEN 'remove_tag'
            ELSE p_kind
        END;
        IF p_kind = 'respond' THEN
            msg_type := coalesce(payload_string(p, 'type', 'payload.type', false), 'message');
            PERFORM payload_enum(msg_type, 'payload.type', ARRAY['message', 'typing_start', 'typing_stop']);
            want_type := msg_type;
        ELSIF p ? 'type' AND payload_string(p, 'type', 'payload.type', false) IS DISTINCT FROM want_type THEN
            PERFORM payload_error('payload.type', format('must be %L for kind %s', want_type, p_kind));
        END IF;
        p := p || jsonb_build_object('type', want_type);
    END IF;

    CASE p_kind
    WHEN 'respond' THEN
        IF msg_type = 'message' THEN
            IF NOT (p ? 'text' OR p ? 'media' OR p ? 'list' OR p ? 'payload' OR p ? 'richContent') THEN
                PERFORM payload_error('payload', 'needs one of text, media, list, payload or richContent for a message');
            END IF;
            IF p ? 'list' AND p ? 'payload' THEN
                PERFORM payload_error('payload.payload', 'cannot be sent together with payload.list (Bot v3 refuses a passthrough with a listpicker)');
            END IF;
        END IF;
        IF p ? 'text' THEN
            PERFORM payload_string(p, 'text', 'payload.text', false);
            SELECT max_text_chars INTO text_limit FROM channel_limit
            WHERE network_key IN (lower(network), '*') ORDER BY network_key = '*' LIMIT 1;
            IF char_length(p ->> 'text') > text_limit THEN
                PERFORM payload_error('payload.text',
                    format('is %s characters, over the %s-character limit for network %s', char_length(p ->> 'text'), text_limit, network),
                    '22001');
            END IF;
        END IF;
        IF p ? 'media' THEN
            media := p -> 'media';
            IF jsonb_typeof(media) = 'object' THEN
                media := jsonb_build_array(media);
            ELSIF jsonb_typeof(media) <> 'array' THEN
                PERFORM payload_error('payload.media', 'must be an array of media objects, not ' || jsonb_typeof(media));
            END IF;
            FOR i IN 0 .. jsonb_array_length(media) - 1 LOOP
                item := media -> i;
                IF jsonb_typeof(item) <> 'object' THEN
                    PERFORM payload_error(format('payload.media[%s]', i), 'must be an object');
                END IF;
                PERFORM payload_string(item, 'url', format('payload.media[%s].url', i), true);
                PERFORM payload_enum(payload_string(item, 'mediaType', format('payload.media[%s].mediaType', i), false),
                                     format('payload.media[%s].mediaType', i), ARRAY['IMAGE', 'VIDEO']);
            END LOOP;
        END IF;
        PERFORM payload_object(p, 'list', 'payload.list', false);
        PERFORM payload_object(p, 'richContent', 'payload.richContent', false);
        IF p ? 'payload' AND jsonb_typeof(p -> 'payload') NOT IN ('string', 'object') THEN
            PERFORM payload_error('payload.payload', 'must be a string or an object, not ' || jsonb_typeof(p -> 'payload'));
        END IF;
        IF p ? 'processSynchronously' AND jsonb_typeof(p -> 'processSynchronously') <> 'boolean' THEN
            PERFORM payload_error('payload.processSynchronously', 'must be a boolean');
        END IF;
    WHEN 'form' THEN
        PERFORM payload_string(p, 'comment', 'payload.comment', true);
        PERFORM payload_string(p, 'secureFormId', 'payload.secureFormId', true);
    WHEN 'control' THEN
        owner := payload_object(p, 'owner', 'payload.owner', true);
        PERFORM payload_enum(payload_string(owner, 'type', 'payload.owner.type', true), 'payload.owner.type', ARRAY['AGENT', 'BOT']);
        IF owner ->> 'type' = 'BOT' THEN
            PERFORM payload_string(owner, 'appId', 'payload.owner.appId', true);
        END IF;
        PERFORM payload_string(p, 'comment', 'payload.comment', false);
        IF p ? 'conversationDisplayId' AND jsonb_typeof(p -> 'conversationDisplayId') NOT IN ('string', 'number') THEN
            PERFORM payload_error('payload.conversationDisplayId', 'must be a string or a number');
        END IF;
    WHEN 'priority' THEN
        PERFORM payload_int(p, 'newPriority', 'payload.newPriority', true, 0, 5);
    WHEN 'tag', 'tag_remove' THEN
        IF NOT p ? 'tagIds' THEN
            PERFORM payload_error('payload.tagIds', 'is required');
        END IF;
        IF jsonb_typeof(p -> 'tagIds') <> 'array' OR jsonb_array_length(p -> 'tagIds') = 0 THEN
            PERFORM payload_error('payload.tagIds', 'must be a non-empty array of integer tag ids');
        END IF;
        FOR i IN 0 .. jsonb_array_length(p -> 'tagIds') - 1 LOOP
            PERFORM payload_int(jsonb_build_object('v', p -> 'tagIds' -> i), 'v', format('payload.tagIds[%s]', i), true, 0, 9223372036854775807);
        END LOOP;
        PERFORM payload_string(p, 'entityType', 'payload.entityType', false);
    WHEN 'note' THEN
        PERFORM payload_string(p, 'note', 'payload.note', true);
        IF char_length(p ->> 'note') > 10000 THEN
            PERFORM payload_error('payload.note', 'is over the 10000-character limit', '22001');
        END IF;
    WHEN 'workqueue' THEN
        PERFORM payload_int(p, 'newWorkQueue', 'payload.newWorkQueue', true, 0, 9223372036854775807);
        PERFORM payload_string(p, 'comment', 'payload.comment', false);
        IF p ? 'conversationDisplayId' AND NOT (jsonb_typeof(p -> 'conversationDisplayId') = 'number'
                OR (jsonb_typeof(p -> 'conversationDisplayId') = 'string' AND p ->> 'conversationDisplayId' ~ '^[0-9]+$')) THEN
            PERFORM payload_error('payload.conversationDisplayId', 'must be an integer');
        END IF;
    WHEN 'resolve' THEN
        PERFORM payload_string(p, 'comment', 'payload.comment', false);
        PERFORM payload_string(p, 'disposition', 'payload.disposition', false);
    WHEN 'author_attributes' THEN
        PERFORM payload_object(p, 'payload', 'payload.payload', true);
    WHEN 'author_update' THEN
        IF NOT (p ? 'properties' OR p ? 'updatedName') THEN
            PERFORM payload_error('payload', 'needs properties or updatedName for kind author_update');
        END IF;
        PERFORM payload_object(p, 'properties', 'payload.properties', false);
        PERFORM payload_string(p, 'updatedName', 'payload.updatedName', false);
    WHEN 'registration_create', 'registration_update' THEN
        PERFORM payload_string(p, 'companyKey', 'payload.companyKey', true);
        PERFORM payload_enum(payload_string(p, 'platform', 'payload.platform', true), 'payload.platform', ARRAY['LITHIUM', 'EXTERNAL']);
        PERFORM payload_string(p, 'networkKey', 'payload.networkKey', true);
        PERFORM payload_string(p, 'externalId', 'payload.externalId', true);
        PERFORM payload_string(p, 'name', 'payload.name', true);
        IF payload_string(p, 'callbackUrl', 'payload.callbackUrl', true) !~ '^https?://[^/\s]+' THEN
            PERFORM payload_error('payload.callbackUrl', 'must be an http(s) URL');
        END IF;
        PERFORM payload_enum(upper(payload_string(p, 'mode', 'payload.mode', false)), 'payload.mode', ARRAY['LIVE', 'MAINTENANCE', 'MONITORING']);
        owner := payload_object(p, 'credentials', 'payload.credentials', true);
        PERFORM payload_enum(payload_string(owner, 'type', 'payload.credentials.type', true), 'payload.credentials.type', ARRAY['BASIC_AUTH', 'HMAC']);
        PERFORM payload_string(owner, 'identity', 'payload.credentials.identity', true);
        PERFORM payload_string(owner, 'secret', 'payload.credentials.secret', true);
        PERFORM payload_object(p, 'metadata', 'payload.metadata', false);
        PERFORM payload_object(p, 'publicFilter', 'payload.publicFilter', false);
        PERFORM payload_object(p, 'contact', 'payload.contact', false);
        IF coalesce(payload_string(p, 'appId', 'payload.appId', false), p_app_id) <> p_app_id THEN
            PERFORM payload_error('payload.appId', format('must be the action''s app_id %L', p_app_id));
        END IF;
        p := p || jsonb_build_object('appId', p_app_id);
    WHEN 'registration_delete', 'mode' THEN
        PERFORM payload_string(p, 'networkKey', 'payload.networkKey', true);
        PERFORM payload_string(p, 'externalId', 'payload.externalId', true);
        IF coalesce(payload_string(p, 'appId', 'payload.appId', false), p_app_id) <> p_app_id THEN
            PERFORM payload_error('payload.appId', format('must be the action''s app_id %L', p_app_id));
        END IF;
        IF p_kind = 'mode' THEN
            PERFORM payload_enum(upper(payload_string(p, 'mode', 'payload.mode', true)), 'payload.mode', ARRAY['LIVE', 'MAINTENANCE', 'MONITORING']);
        END IF;
    WHEN 'token_refresh', 'token_revoke' THEN
        IF p <> '{}'::jsonb THEN
            PERFORM payload_error('payload', format('must be empty for kind %s', p_kind));
        END IF;
    ELSE
        NULL;
    END CASE;
    RETURN p;
END
$$;
-- +goose StatementEnd

-- payload_lane is the default lane of an action: its conversation (network,
-- page, author) for conversation kinds, the page for registration changes,
-- and one lane for an app's token changes.
-- +goose StatementBegin
CREATE FUNCTION payload_lane(p_kind text, p jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_kind IN ('registration_create', 'registration_update', 'registration_delete', 'mode')
            THEN 'registration/' || (p ->> 'networkKey') || '/' || (p ->> 'externalId')
        WHEN p_kind IN ('token_refresh', 'token_revoke') THEN 'token'
        WHEN p ? 'coordinate'
            THEN (p -> 'coordinate' ->> 'networkKey') || '/' || (p -> 'coordinate' ->> 'externalId') || '/' || (p -> 'author' ->> 'id')
    END
$$;
-- +goose StatementEnd

-- action_before_insert validates a new action and fills its defaults. A
-- second insert of an idempotency key already used by the app is skipped
-- (the statement reports 0 rows and RETURNING returns nothing) so that a
-- bot's retried transaction goes through; a concurrent duplicate still meets
-- the unique constraint.
-- +goose StatementBegin
CREATE FUNCTION action_before_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    existing bigint;
BEGIN
    IF NEW.app_id IS NULL THEN
        PERFORM payload_error('app_id', 'is required', '23502');
    END IF;
    IF NEW.kind IS NULL THEN
        PERFORM payload_error('kind', 'is required', '23502');
    END IF;
    IF NEW.payload IS NULL THEN
        PERFORM payload_error('payload', 'is required', '23502');
    END IF;
    IF NEW.idempotency_key IS NULL THEN
        PERFORM payload_error('idempotency_key', 'must not be null (omit it to get a random key)', '23502');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM kind_config WHERE kind = NEW.kind) THEN
        RAISE EXCEPTION 'botq: kind % is not an action kind', quote_literal(NEW.kind) USING
            ERRCODE = '22023', COLUMN = 'kind',
            HINT = 'one of: ' || (SELECT string_agg(kind, ', ' ORDER BY kind) FROM kind_config);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM app WHERE id = NEW.app_id) THEN
        RAISE EXCEPTION 'botq: app_id % is not a known app', quote_literal(NEW.app_id) USING
            ERRCODE = '23503', COLUMN = 'app_id',
            HINT = 'add the app to botq first (botq app set, or apps: in the config file)';
    END IF;
    IF NEW.state IS DISTINCT FROM 'queued' OR NEW.attempt_count IS DISTINCT FROM 0
       OR NEW.release_count IS DISTINCT FROM 0 OR NEW.request_id IS NOT NULL
       OR NEW.last_error IS NOT NULL OR NEW.finished_at IS NOT NULL THEN
        PERFORM payload_error('state', 'and the other outcome columns are set by botq; leave them out');
    END IF;
    IF char_length(NEW.idempotency_key) NOT BETWEEN 1 AND 255 OR NEW.idempotency_key ~ '[[:cntrl:]]' THEN
        PERFORM payload_error('idempotency_key', 'must be 1 to 255 characters without control characters');
    END IF;

    SELECT id INTO existing FROM action WHERE app_id = NEW.app_id AND idempotency_key = NEW.idempotency_key;
    IF FOUND THEN
        RAISE NOTICE 'botq: app % already has action % with idempotency key %; not enqueued again',
            NEW.app_id, existing, quote_literal(NEW.idempotency_key);
        RETURN NULL;
    END IF;

    NEW.payload := payload_validate(NEW.kind, NEW.app_id, NEW.payload);
    NEW.river_job_id := nextval('river_job_id_seq');
    IF NEW.lane IS NULL THEN
        NEW.lane := payload_lane(NEW.kind, NEW.payload);
    ELSIF char_length(NEW.lane) NOT BETWEEN 1 AND 512 OR NEW.lane ~ '[[:cntrl:]]' THEN
        PERFORM payload_error('lane', 'must be 1 to 512 characters without control characters (or omitted for the default lane)');
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- action_after_insert creates the River job of every inserted action in the
-- same statement, with the lane rule: the first action of an idle lane is
-- available, every other one waits as `pending` until its lane's head
-- finishes (action_lane_advance). Lanes are locked in a fixed order so two
-- multi-lane inserts cannot deadlock.
-- +goose StatementBegin
CREATE FUNCTION action_after_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    wake text[];
BEGIN
    WITH laned AS (
        -- unblocker: a replay of the action that blocks its lane (under
        -- lane_on_failure 'block') takes the blocked head's place.
        SELECT r.app_id, r.lane, min(r.id) AS first_id,
               min(r.id) FILTER (WHERE r.replay_of IS NOT NULL AND r.replay_of = b.blocked_by) AS unblocker,
               min(b.blocked_by) FILTER (WHERE r.replay_of IS NOT NULL AND r.replay_of = b.blocked_by) AS unblocks
        FROM new_rows r
        LEFT JOIN lane b ON b.app_id = r.app_id AND b.lane = r.lane
        WHERE r.lane IS NOT NULL
        GROUP BY r.app_id, r.lane
    ), heads AS (
        -- blocked_by of the proposed row carries the blocker a replay
        -- unblocks, for the conflict branch to compare.
        INSERT INTO lane AS l (app_id, lane, head_action_id, blocked_by)
        SELECT app_id, lane, coalesce(unblocker, first_id), unblocks FROM laned ORDER BY app_id, lane
        ON CONFLICT (app_id, lane) DO UPDATE
            SET head_action_id = CASE
                    WHEN l.head_action_id IS NULL AND l.blocked_by IS NULL THEN EXCLUDED.head_action_id
                    WHEN l.head_action_id IS NULL AND l.blocked_by = EXCLUDED.blocked_by THEN EXCLUDED.head_action_id
                    ELSE l.head_action_id
                END,
                blocked_by = CASE WHEN l.blocked_by = EXCLUDED.blocked_by THEN NULL ELSE l.blocked_by END,
                updated_at = now()
        RETURNING l.head_action_id
    ), jobs AS (
        INSERT INTO river_job (id, args, kind, max_attempts, priority, queue, state, scheduled_at)
        SELECT r.river_job_id,
               jsonb_build_object('action_id', r.id),
               'botq_' || r.kind,
               k.max_attempts,
               k.priority,
               k.queue,
               CASE WHEN r.lane IS NULL OR r.id IN (SELECT head_action_id FROM heads)
                    THEN 'available' ELSE 'pending' END::river_job_state,
               now()
        FROM new_rows r
        JOIN kind_config k ON k.kind = r.kind
        ORDER BY r.id
        RETURNING queue, state
    )
    SELECT array_agg(DISTINCT queue) FILTER (WHERE state = 'available') INTO wake FROM jobs;
    PERFORM notify_insert(wake);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION action_before_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.app_id <> OLD.app_id OR NEW.kind <> OLD.kind
       OR NEW.payload IS DISTINCT FROM OLD.payload OR NEW.idempotency_key <> OLD.idempotency_key
       OR NEW.lane IS DISTINCT FROM OLD.lane OR NEW.river_job_id <> OLD.river_job_id
       OR NEW.replay_of IS DISTINCT FROM OLD.replay_of OR NEW.created_at <> OLD.created_at
       OR NEW.created_by <> OLD.created_by THEN
        RAISE EXCEPTION 'botq: action % can change only its state and outcome; what was enqueued is history', OLD.id
            USING ERRCODE = 'BQ002';
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF NOT EXISTS (SELECT 1 FROM action_transition WHERE from_state = OLD.state AND to_state = NEW.state) THEN
            RAISE EXCEPTION 'botq: action % cannot go from % to %', OLD.id, OLD.state, NEW.state
                USING ERRCODE = 'BQ001', COLUMN = 'state';
        END IF;
        IF NEW.state IN ('succeeded', 'failed', 'cancelled') THEN
            NEW.finished_at := coalesce(NEW.finished_at, now());
        END IF;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- action_lane_advance runs when an action's call is over (it left queued,
-- retrying or unknown for sent or a final state). If it was its lane's head,
-- the lane's next queued action becomes available; under lane_on_failure
-- 'block' a failed head blocks the lane instead. A finished follower (a
-- cancelled one) changes nothing.
-- +goose StatementBegin
CREATE FUNCTION action_lane_advance() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    head bigint;
BEGIN
    SELECT head_action_id INTO head FROM lane WHERE app_id = NEW.app_id AND lane = NEW.lane FOR UPDATE;
    IF NOT FOUND OR head IS DISTINCT FROM NEW.id THEN
        RETURN NULL;
    END IF;
    IF NEW.state = 'failed' AND (SELECT lane_on_failure FROM app WHERE id = NEW.app_id) = 'block' THEN
        UPDATE lane SET head_action_id = NULL, blocked_by = NEW.id, updated_at = now()
        WHERE app_id = NEW.app_id AND lane = NEW.lane;
        INSERT INTO event (app_id, action_id, kind, actor, reason, after)
        VALUES (NEW.app_id, NEW.id, 'lane_blocked', 'botq', 'lane_on_failure is block and the head failed',
                jsonb_build_object('lane', NEW.lane));
        RETURN NULL;
    END IF;
    PERFORM lane_release_next(NEW.app_id, NEW.lane);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- lane_release_next makes the oldest queued action of a locked lane its head
-- and its River job available, or drops the lane row when nothing waits.
-- +goose StatementBegin
CREATE FUNCTION lane_release_next(p_app_id text, p_lane text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    next_id bigint;
    next_job bigint;
    next_queue text;
BEGIN
    SELECT id, river_job_id INTO next_id, next_job
    FROM action
    WHERE app_id = p_app_id AND lane = p_lane AND state = 'queued'
    ORDER BY id
    LIMIT 1;
    IF NOT FOUND THEN
        DELETE FROM lane WHERE app_id = p_app_id AND lane = p_lane;
        RETURN NULL;
    END IF;
    UPDATE lane SET head_action_id = next_id, blocked_by = NULL, updated_at = now()
    WHERE app_id = p_app_id AND lane = p_lane;
    UPDATE river_job SET state = 'available', scheduled_at = now()
    WHERE id = next_job AND state = 'pending'
    RETURNING queue INTO next_queue;
    IF next_queue IS NOT NULL THEN
        PERFORM notify_insert(ARRAY[next_queue]);
    END IF;
    RETURN next_id;
END
$$;
-- +goose StatementEnd

-- lane_unblock lets a lane blocked by a failed head (lane_on_failure
-- 'block') continue with its next queued action, skipping the failed one.
-- +goose StatementBegin
CREATE FUNCTION lane_unblock(p_app_id text, p_lane text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    blocker bigint;
BEGIN
    SELECT blocked_by INTO blocker FROM lane WHERE app_id = p_app_id AND lane = p_lane FOR UPDATE;
    IF blocker IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO event (app_id, action_id, kind, actor, reason, after)
    VALUES (p_app_id, blocker, 'lane_unblocked', current_user, 'lane released past its failed head',
            jsonb_build_object('lane', p_lane));
    RETURN lane_release_next(p_app_id, p_lane);
END
$$;
-- +goose StatementEnd

CREATE TRIGGER action_before_insert BEFORE INSERT ON action
    FOR EACH ROW EXECUTE FUNCTION action_before_insert();
CREATE TRIGGER action_after_insert AFTER INSERT ON action
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION action_after_insert();
CREATE TRIGGER action_before_update BEFORE UPDATE ON action
    FOR EACH ROW EXECUTE FUNCTION action_before_update();
CREATE TRIGGER action_lane_advance AFTER UPDATE OF state ON action
    FOR EACH ROW
    WHEN (NEW.lane IS NOT NULL
          AND OLD.state IN ('queued', 'retrying', 'unknown')
          AND NEW.state IN ('sent', 'succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION action_lane_advance();

-- app_slot_sync keeps one app_slot row per allowed concurrent call.
-- +goose StatementBegin
CREATE FUNCTION app_slot_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM app_slot WHERE app_id = NEW.id AND slot > coalesce(NEW.concurrency_limit, 0);
    INSERT INTO app_slot (app_id, slot)
    SELECT NEW.id, s FROM generate_series(1, coalesce(NEW.concurrency_limit, 0)) AS s
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER app_slot_sync AFTER INSERT OR UPDATE OF concurrency_limit ON app
    FOR EACH ROW EXECUTE FUNCTION app_slot_sync();

-- payload_redacted hides registration secrets from auditors.
-- +goose StatementBegin
CREATE FUNCTION payload_redacted(p jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p #> '{credentials,secret}' IS NOT NULL
                THEN jsonb_set(p, '{credentials,secret}', '"[redacted]"')
                ELSE p END
$$;
-- +goose StatementEnd

-- Views for auditors: what was asked, what was tried, what Khoros said.
-- `running` is derived from River's job state: River's fetch commit is the
-- durable "being worked" marker, so botq does not write it a second time.
CREATE VIEW action_history AS
SELECT a.id AS action_id,
       a.app_id,
       a.kind,
       CASE WHEN a.state IN ('queued', 'retrying') AND j.state = 'running' THEN 'running' ELSE a.state END AS state,
       a.lane,
       a.idempotency_key,
       payload_redacted(a.payload) AS payload,
       a.replay_of,
       a.attempt_count,
       a.request_id,
       r.state AS request_state,
       r.details AS request_details,
       a.last_error,
       a.created_at,
       a.created_by,
       a.updated_at,
       a.finished_at
FROM action a
LEFT JOIN river_job j ON j.id = a.river_job_id
LEFT JOIN request r ON r.request_id = a.request_id;

CREATE VIEW attempt_history AS
SELECT t.id AS attempt_id, t.action_id, a.app_id, a.kind, t.number, t.started_at, t.duration_ms,
       t.wire_sent, t.http_status, t.request_id, t.outcome, t.error, t.response_excerpt, t.worker
FROM attempt t
JOIN action a ON a.id = t.action_id;

CREATE VIEW request_history AS
SELECT r.request_id, r.app_id, r.action_id, a.kind, r.origin, r.state, r.details, r.payload, r.http_status,
       r.khoros_created_at, r.khoros_completed_at, r.khoros_updated_at, r.first_seen_at,
       r.last_checked_at, r.check_count, r.finalized_at
FROM request r
LEFT JOIN action a ON a.id = r.action_id;

CREATE VIEW event_log AS
SELECT id AS event_id, at, app_id, action_id, kind, actor, reason, before, after
FROM event;

-- +goose Down
DROP VIEW event_log;
DROP VIEW request_history;
DROP VIEW attempt_history;
DROP VIEW action_history;
DROP TABLE app_slot;
DROP TABLE lane;
DROP TABLE event;
DROP TABLE request;
DROP TABLE attempt;
DROP TABLE action_transition;
DROP TABLE action;
DROP TABLE channel_limit;
DROP TABLE kind_config;
DROP TABLE app;
DROP FUNCTION payload_redacted(jsonb);
DROP FUNCTION app_slot_sync();
DROP FUNCTION lane_unblock(text, text);
DROP FUNCTION lane_release_next(text, text);
DROP FUNCTION action_lane_advance();
DROP FUNCTION action_before_update();
DROP FUNCTION action_after_insert();
DROP FUNCTION action_before_insert();
DROP FUNCTION payload_lane(text, jsonb);
DROP FUNCTION payload_validate(text, text, jsonb);
DROP FUNCTION payload_enum(text, text, text[]);
DROP FUNCTION payload_int(jsonb, text, text, boolean, bigint, bigint);
DROP FUNCTION payload_object(jsonb, text, text, boolean);
DROP FUNCTION payload_string(jsonb, text, text, boolean);
DROP FUNCTION payload_error(text, text, text);
DROP FUNCTION notify_insert(text[]);
DROP SEQUENCE notify_bucket;
