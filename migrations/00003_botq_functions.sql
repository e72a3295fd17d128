-- botq's functions and triggers, each in its final form. They validate an
-- action and create its River job in the statement that inserts it, keep an
-- action's history and state machine for every writer, move lanes on, and
-- share an app's concurrency slots fairly.
--
-- Functions that read or write tables run as their owner (SECURITY DEFINER)
-- with the schema captured at creation (SET search_path FROM CURRENT), so an
-- INSERT from any session and any role with the right grants behaves the
-- same. Those that touch no table need neither. Functions are executable by
-- PUBLIC by default: the SECURITY DEFINER ones that a bot must not call
-- directly have EXECUTE revoked below, so only the owner (the service role),
-- the triggers and the roles granted them (botq_roles) may run them.
--
-- plan_cache_mode. A function's SET lasts until it returns, so it applies to
-- everything fired inside it, triggers and foreign-key checks included. The
-- per-row trigger functions on action pin `auto`, so that a caller that
-- forces custom plans (a session's setting, or the calling function's SET)
-- does not have every statement of theirs planned again for every row; their
-- lookups have one sensible plan even when it is made while the tables are
-- empty. The one
-- lookup whose cached plan does go wrong, by idempotency key, has a function
-- of its own with custom plans (action_key_holder). migrations_test
-- TestRowTriggersKeepCachedPlans holds the row triggers to this.

-- +goose Up

-- Payload checks --------------------------------------------------------

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

-- payload_string, payload_object and payload_int check one field of a
-- payload (field names it in errors) and return its value, NULL when it is
-- absent (or null) and not required; payload_enum checks a value against
-- the allowed ones.
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
            IF payload_string(p, 'text', 'payload.text', false) ~ '^[[:space:]]*$' THEN
                PERFORM payload_error('payload.text', 'must not be empty or only whitespace');
            END IF;
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
REVOKE EXECUTE ON FUNCTION payload_validate(text, text, jsonb) FROM PUBLIC;

-- payload_respond_plain accepts the action bots send most, a text reply, in
-- one expression that the insert trigger's condition inlines, instead of the
-- dozen calls of plpgsql helpers payload_validate makes (each a statement of
-- its own). It accepts nothing payload_validate refuses (jobs
-- TestRespondFastPathAgrees holds them to that), so the stored payload is the
-- same either way; a payload it does not accept goes through payload_validate,
-- which names the field it refuses.
-- +goose StatementBegin
CREATE FUNCTION payload_respond_plain(p jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    -- One expression, so that it is inlined into the trigger's condition: no
    -- call, no subquery (a subquery would stop the inlining).
    SELECT jsonb_typeof(p -> 'coordinate') = 'object'
       AND jsonb_typeof(p -> 'coordinate' -> 'companyKey') = 'string' AND btrim(p -> 'coordinate' ->> 'companyKey') <> ''
       AND jsonb_typeof(p -> 'coordinate' -> 'networkKey') = 'string' AND btrim(p -> 'coordinate' ->> 'networkKey') <> ''
       AND jsonb_typeof(p -> 'coordinate' -> 'externalId') = 'string' AND btrim(p -> 'coordinate' ->> 'externalId') <> ''
       AND (NOT p -> 'coordinate' ? 'scope' OR p -> 'coordinate' ->> 'scope' IN ('PRIVATE', 'PUBLIC'))
       AND coalesce(jsonb_typeof(p -> 'coordinate' -> 'botId'), 'string') = 'string'
       AND coalesce(jsonb_typeof(p -> 'coordinate' -> 'messageId'), 'string') = 'string'
       AND jsonb_typeof(p -> 'author') = 'object'
       AND jsonb_typeof(p -> 'author' -> 'id') = 'string' AND btrim(p -> 'author' ->> 'id') <> ''
       AND NOT p ?| ARRAY['type', 'media', 'list', 'payload', 'richContent']
       AND jsonb_typeof(p -> 'text') = 'string' AND p ->> 'text' !~ '^[[:space:]]*$'
       AND coalesce(jsonb_typeof(p -> 'processSynchronously'), 'boolean') = 'boolean'
       AND octet_length(p::text) <= 262144
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

-- payload_redacted hides registration secrets from auditors.
-- +goose StatementBegin
CREATE FUNCTION payload_redacted(p jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p #> '{credentials,secret}' IS NOT NULL
                THEN jsonb_set(p, '{credentials,secret}', '"[redacted]"')
                ELSE p END
$$;
-- +goose StatementEnd

-- Waking workers --------------------------------------------------------

-- notify_due says whether the current 10 ms bucket (notify_bucket) may not
-- have been notified yet. It is one expression, which PL/pgSQL inlines and
-- evaluates without a query, checked before notify_insert is called: a call
-- through PERFORM is a query of its own, and under load almost every insert
-- finds its bucket notified already. pg_sequence_last_value is NULL until the
-- first setval, hence IS DISTINCT FROM.
-- +goose StatementBegin
CREATE FUNCTION notify_due() RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 100)::bigint IS DISTINCT FROM pg_sequence_last_value('notify_bucket')
$$;
-- +goose StatementEnd

-- notify_insert wakes River's producers of queues, at most once per 10 ms
-- bucket.
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
REVOKE EXECUTE ON FUNCTION notify_insert(text[]) FROM PUBLIC;

-- Enqueue ---------------------------------------------------------------

-- Trust boundaries: who may enqueue for which app and kind, whose
-- idempotency key is whose, and who may rewrite audit history.
--
-- Principals. The principal of an action is its created_by: the database
-- role that inserted it (a bot's role), or, when botq's service enqueues on
-- someone's behalf through enqueue_many, the name it gives (an API key is
-- "api:<name>", an operator at the CLI "cli:<name>"). A bot cannot name
-- another: it has no INSERT right on created_by, and enqueue_many takes a
-- created_by only from a role that may update actions (the service).
--
-- Grants. A principal may enqueue for an app only with a principal_grant
-- row for it (or for every app, app_id '*'): deny by default. Scope
-- 'conversation' allows the kinds that address a conversation (respond,
-- tag, note, ...); registration, mode and token kinds need scope 'all'.
-- Exempt are the roles that may update actions (the schema's owner, the
-- runtime role, superusers: they run botq itself) and replays, which only
-- botq's replay makes. A refused insert is SQLSTATE 42501 naming the app.
--
-- Idempotency per principal. A key already used in the app by another
-- principal, or by the same one for a different kind, payload or lane, is
-- refused with SQLSTATE BQ003, which shows nothing of the other action; the
-- same principal retrying the same request is skipped (0 rows) and
-- enqueue_many returns its action.
--
-- Caller-set columns. A direct INSERT cannot set river_job_id, replay_of, or
-- a created_by other than its own role; enqueue_many (the service's path)
-- sets them. An empty or whitespace-only respond text is refused.
--
-- Append-only audit. botq serve runs as a member of botq_runtime, which
-- owns nothing: it may insert attempts, events and request records but
-- neither update nor delete attempts and events (no privilege: 42501);
-- request records change only along their life (BQ004 otherwise), and rows
-- are deleted only by retention_purge_part, which runs as the owner.

-- may_enqueue says whether principal holds a grant to enqueue an action of
-- kind for app. Only the triggers and enqueue_many call it: a role may not
-- ask about other principals' grants.
-- +goose StatementBegin
CREATE FUNCTION may_enqueue(p_principal text, p_app_id text, p_kind text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT EXISTS (
        SELECT 1 FROM principal_grant g
        WHERE g.principal = p_principal AND g.app_id IN (p_app_id, '*')
          AND (g.scope = 'all' OR (SELECT k.conversation FROM kind_config k WHERE k.kind = p_kind)))
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION may_enqueue(text, text, text) FROM PUBLIC;

-- may_enqueue_as is may_enqueue for a role the session acts as, which an
-- untrusted role's INSERT asks about itself.
-- +goose StatementBegin
CREATE FUNCTION may_enqueue_as(p_role text, p_app_id text, p_kind text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT pg_has_role(session_user, p_role, 'MEMBER') AND may_enqueue(p_role, p_app_id, p_kind)
$$;
-- +goose StatementEnd

-- trusted says whether a role runs botq itself (the schema's owner, the
-- runtime role, superusers): one that may update actions.
-- +goose StatementBegin
CREATE FUNCTION trusted(p_role text) RETURNS boolean
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT has_table_privilege(p_role, 'action', 'UPDATE')
$$;
-- +goose StatementEnd

-- action_caller_columns runs first, as the inserting role (no SECURITY
-- DEFINER, so current_user is that role). An untrusted role (a bot's) may
-- not set the columns botq sets and must hold a grant for the app and kind.
-- A trusted role's direct INSERT may not set them either: replay_of and
-- another principal's created_by come only through enqueue_many, which
-- runs as the owner, checks its caller and marks its inserts with the
-- transaction-local botq.enqueue setting (a role that sets it by hand gains
-- nothing: only trusted roles reach that branch, and a bot has no INSERT
-- right on those columns anyway).
-- +goose StatementBegin
CREATE FUNCTION action_caller_columns() RETURNS trigger
LANGUAGE plpgsql SET plan_cache_mode = auto SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.river_job_id IS NOT NULL THEN
        RAISE EXCEPTION 'botq: river_job_id is set by botq; leave it out'
            USING ERRCODE = '22023', COLUMN = 'river_job_id';
    END IF;
    IF current_setting('botq.enqueue', true) = 'on' AND trusted(current_user::text) THEN
        RETURN NEW;
    END IF;
    IF NEW.replay_of IS NOT NULL THEN
        RAISE EXCEPTION 'botq: replay_of is set by botq replay; leave it out'
            USING ERRCODE = '22023', COLUMN = 'replay_of';
    END IF;
    IF NEW.created_by IS DISTINCT FROM current_user::text THEN
        RAISE EXCEPTION 'botq: created_by is the inserting role (%); leave it out', current_user
            USING ERRCODE = '22023', COLUMN = 'created_by';
    END IF;
    IF NOT trusted(current_user::text) AND NOT may_enqueue_as(current_user::text, NEW.app_id, NEW.kind) THEN
        RAISE EXCEPTION 'botq: % may not enqueue % actions for app %', current_user, NEW.kind, quote_literal(NEW.app_id) USING
            ERRCODE = '42501', COLUMN = 'app_id',
            HINT = 'an operator grants it: botq grant add <principal> <app> (--all-kinds for registration, mode and token kinds)';
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER action_0_caller_columns BEFORE INSERT ON action
    FOR EACH ROW EXECUTE FUNCTION action_caller_columns();

-- payload_normalized is a valid payload as the insert trigger stores it.
-- +goose StatementBegin
CREATE FUNCTION payload_normalized(p_kind text, p_app_id text, p jsonb) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT payload_validate(p_kind, p_app_id, p)
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION payload_normalized(text, text, jsonb) FROM PUBLIC;

-- key_reused raises BQ003 for an idempotency key of the app that another
-- request holds, naming neither the other action nor its principal.
-- +goose StatementBegin
CREATE FUNCTION key_reused(p_app_id text, p_key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'botq: idempotency key % of app % is already used by another request', quote_literal(p_key), quote_literal(p_app_id)
        USING ERRCODE = 'BQ003', COLUMN = 'idempotency_key',
              HINT = 'a key is one request: the same principal, kind, payload and lane; use a new key for a new request';
END
$$;
-- +goose StatementEnd

-- action_key_holder returns the app's action with the key if it is the same
-- request (principal, kind, normalized payload, lane), NULL when the key is
-- free, and raises BQ003 when another request holds it.
-- +goose StatementBegin
CREATE FUNCTION action_key_holder(p_app_id text, p_key text, p_created_by text, p_kind text, p_payload jsonb, p_lane text)
RETURNS bigint
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan SET search_path FROM CURRENT AS $$
DECLARE
    a action%ROWTYPE;
BEGIN
    SELECT * INTO a FROM action WHERE app_id = p_app_id AND idempotency_key = p_key;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF a.created_by IS DISTINCT FROM p_created_by OR a.kind IS DISTINCT FROM p_kind
       OR a.payload IS DISTINCT FROM p_payload OR a.lane IS DISTINCT FROM p_lane THEN
        PERFORM key_reused(p_app_id, p_key);
    END IF;
    RETURN a.id;
END
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION action_key_holder(text, text, text, text, jsonb, text) FROM PUBLIC;

-- action_before_insert validates a new action and fills its defaults; see
-- "Trust boundaries" above for the grant and the idempotency rules. A second
-- insert of a request already made (same principal, key, kind, payload and
-- lane) is skipped (the statement reports 0 rows and RETURNING returns
-- nothing) so that a bot's retried transaction goes through; a concurrent
-- duplicate still meets the unique constraint. An action inserted without a
-- key (the column's default, chr(1)) gets a random one and is not looked up:
-- a fresh key cannot be taken, and the lookup is a large part of an insert.
-- +goose StatementBegin
CREATE FUNCTION action_before_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET plan_cache_mode = auto AS $$
DECLARE
    existing bigint;
    text_limit integer;
    checked boolean := false;
    fresh boolean;
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
       OR NEW.last_error IS NOT NULL OR NEW.finished_at IS NOT NULL OR NEW.possibly_sent THEN
        PERFORM payload_error('state', 'and the other outcome columns are set by botq; leave them out');
    END IF;
    IF NEW.idempotency_key IS NULL THEN
        PERFORM payload_error('idempotency_key', 'must not be null (omit it to get a random key)', '23502');
    END IF;
    fresh := NEW.idempotency_key = chr(1);
    IF fresh THEN
        -- The column's default, no key given: a fresh one cannot be taken,
        -- so it is not looked up.
        NEW.idempotency_key := gen_random_uuid()::text;
    ELSIF char_length(NEW.idempotency_key) NOT BETWEEN 1 AND 255 OR NEW.idempotency_key ~ '[[:cntrl:]]' THEN
        PERFORM payload_error('idempotency_key', 'must be 1 to 255 characters without control characters');
    END IF;

    -- The common case, a text reply, is checked in one expression; anything
    -- else, or anything it does not accept, goes through payload_validate,
    -- which accepts everything this accepts and names the field it refuses.
    IF NEW.kind = 'respond' AND payload_respond_plain(NEW.payload) THEN
        SELECT max_text_chars INTO text_limit FROM channel_limit
        WHERE network_key IN (lower(NEW.payload -> 'coordinate' ->> 'networkKey'), '*')
        ORDER BY network_key = '*' LIMIT 1;
        checked := char_length(NEW.payload ->> 'text') <= text_limit;
    END IF;
    IF checked THEN
        NEW.payload := NEW.payload || '{"type": "message"}';
    ELSE
        NEW.payload := payload_validate(NEW.kind, NEW.app_id, NEW.payload);
    END IF;
    IF NEW.lane IS NULL THEN
        NEW.lane := payload_lane(NEW.kind, NEW.payload);
    ELSIF char_length(NEW.lane) NOT BETWEEN 1 AND 512 OR NEW.lane ~ '[[:cntrl:]]' THEN
        PERFORM payload_error('lane', 'must be 1 to 512 characters without control characters (or omitted for the default lane)');
    END IF;
    IF NOT fresh THEN
        existing := action_key_holder(NEW.app_id, NEW.idempotency_key, NEW.created_by, NEW.kind, NEW.payload, NEW.lane);
        IF existing IS NOT NULL THEN
            RAISE NOTICE 'botq: app % already has action % with idempotency key %; not enqueued again',
                NEW.app_id, existing, quote_literal(NEW.idempotency_key);
            RETURN NULL;
        END IF;
    END IF;
    NEW.river_job_id := nextval('river_job_id_seq');
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- action_after_insert creates the River job of every inserted action in the
-- same statement, with the lane rule: the first action of an idle lane is
-- available, every other one waits as `pending` until its lane's head
-- finishes (action_lanes_advance). Lanes are locked in a fixed order so two
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
    -- Checked here first: a call of notify_insert is a query of its own.
    IF wake IS NOT NULL AND notify_due() THEN
        PERFORM notify_insert(wake);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER action_before_insert BEFORE INSERT ON action
    FOR EACH ROW EXECUTE FUNCTION action_before_insert();
CREATE TRIGGER action_after_insert AFTER INSERT ON action
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION action_after_insert();

-- +goose StatementBegin
CREATE FUNCTION enqueue_many(
    p_app_ids text[], p_kinds text[], p_payloads jsonb[], p_keys text[] DEFAULT NULL, p_lanes text[] DEFAULT NULL,
    p_created_by text[] DEFAULT NULL, p_as text DEFAULT current_user, p_replay_of bigint[] DEFAULT NULL,
    p_check_grants boolean DEFAULT true)
RETURNS TABLE (ord bigint, action_id bigint, existed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n integer := coalesce(cardinality(p_app_ids), 0);
    keys text[] := coalesce(p_keys, array_fill(NULL::text, ARRAY[n]));
    lanes text[] := coalesce(p_lanes, array_fill(NULL::text, ARRAY[n]));
    replays bigint[] := coalesce(p_replay_of, array_fill(NULL::bigint, ARRAY[n]));
    authors text[] := array_fill(p_as, ARRAY[n]);
    is_trusted boolean;
    ids bigint[];
    ins_ids bigint[];
BEGIN
    IF cardinality(p_kinds) IS DISTINCT FROM n OR cardinality(p_payloads) IS DISTINCT FROM n
       OR cardinality(keys) <> n OR cardinality(lanes) <> n OR cardinality(replays) <> n
       OR (p_created_by IS NOT NULL AND cardinality(p_created_by) <> n) THEN
        RAISE EXCEPTION 'botq: enqueue_many needs arrays of one length' USING ERRCODE = '22023';
    END IF;
    IF NOT pg_has_role(session_user, p_as, 'MEMBER') THEN
        RAISE EXCEPTION 'botq: % cannot enqueue as %', session_user, p_as USING ERRCODE = '42501';
    END IF;
    is_trusted := trusted(p_as);
    FOR i IN 1 .. n LOOP
        IF keys[i] IS NULL OR keys[i] = '' THEN
            keys[i] := chr(1);
        END IF;
        IF p_created_by IS NOT NULL AND nullif(p_created_by[i], '') IS NOT NULL THEN
            IF NOT is_trusted THEN
                RAISE EXCEPTION 'botq: % may not enqueue in the name of another principal', p_as
                    USING ERRCODE = '42501', COLUMN = 'created_by';
            END IF;
            authors[i] := p_created_by[i];
        END IF;
        IF replays[i] IS NOT NULL AND NOT is_trusted THEN
            RAISE EXCEPTION 'botq: replay_of is set by botq replay' USING ERRCODE = '42501', COLUMN = 'replay_of';
        END IF;
        -- Grants bind every principal but botq's own roles. A trusted
        -- caller that names another principal has its grant checked unless
        -- it says the principal needs none (p_check_grants false: an
        -- operator's API key, an operator at the CLI).
        IF (NOT is_trusted OR (p_check_grants AND authors[i] IS DISTINCT FROM p_as)) AND replays[i] IS NULL
           AND NOT may_enqueue(authors[i], p_app_ids[i], p_kinds[i]) THEN
            RAISE EXCEPTION 'botq: % may not enqueue % actions for app %', authors[i], p_kinds[i], quote_literal(p_app_ids[i]) USING
                ERRCODE = '42501', COLUMN = 'app_id',
                HINT = 'an operator grants it: botq grant add <principal> <app> (--all-kinds for registration, mode and token kinds)';
        END IF;
    END LOOP;

    -- Each action's id is taken here, so that an action without a key
    -- (its key made by the insert trigger) is found among the inserted rows.
    SELECT array_agg(nextval('action_id_seq')) INTO ids FROM generate_series(1, n);

    PERFORM set_config('botq.enqueue', 'on', true);
    WITH ins AS (
        INSERT INTO action (id, app_id, kind, payload, idempotency_key, lane, created_by, replay_of) OVERRIDING SYSTEM VALUE
        SELECT t.id, t.a, t.k, t.p, t.key, nullif(t.l, ''), t.c, t.r
        FROM unnest(ids, p_app_ids, p_kinds, p_payloads, keys, lanes, authors, replays) WITH ORDINALITY AS t(id, a, k, p, key, l, c, r, o)
        ORDER BY t.o
        ON CONFLICT (app_id, idempotency_key) DO NOTHING
        RETURNING id
    )
    SELECT array_agg(id) INTO ins_ids FROM ins;
    PERFORM set_config('botq.enqueue', '', true);

    -- An input row whose id was inserted is new. Every other one holds a
    -- key that was taken: earlier in this call, before it (a new statement
    -- sees them, even if another transaction committed them meanwhile), or
    -- by a concurrent insert. Each is looked up and checked to be the same
    -- request; the trigger checked those it skipped, but not a repeat
    -- within the call or one committed while this insert ran.
    RETURN QUERY
    SELECT t.o, coalesce(i.id, action_key_holder(t.a, t.key, t.c, t.k, payload_validate(t.k, t.a, t.p),
                                                  coalesce(nullif(t.l, ''), payload_lane(t.k, payload_validate(t.k, t.a, t.p))))),
           i.id IS NULL
    FROM unnest(p_app_ids, keys, ids, authors, p_kinds, p_payloads, lanes) WITH ORDINALITY AS t(a, key, id, c, k, p, l, o)
    LEFT JOIN unnest(ins_ids) AS i(id) ON i.id = t.id
    ORDER BY t.o;
END
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION enqueue_many(text[], text[], jsonb[], text[], text[], text[], text, bigint[], boolean) FROM PUBLIC;

-- enqueue is enqueue_many for one action.
-- +goose StatementBegin
CREATE FUNCTION enqueue(p_app_id text, p_kind text, p_payload jsonb, p_idempotency_key text DEFAULT NULL,
    p_lane text DEFAULT NULL, p_as text DEFAULT current_user)
RETURNS TABLE (action_id bigint, existed boolean)
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT e.action_id, e.existed
    FROM enqueue_many(ARRAY[p_app_id], ARRAY[p_kind], ARRAY[p_payload], ARRAY[p_idempotency_key], ARRAY[p_lane],
                      NULL, p_as) AS e
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION enqueue(text, text, jsonb, text, text, text) FROM PUBLIC;

-- Updates: history, state machine, timestamps ---------------------------

-- An update of action is checked by the WHEN conditions of two BEFORE UPDATE
-- triggers, which Postgres evaluates itself, calling their function (which
-- only refuses) when a check fails: a change to what was enqueued (BQ002),
-- and a move not in action_transition (BQ001). Every finished call updates
-- its action, so a function call per row would cost every call.
-- action_before_update only sets the timestamps; it reads no table, so it
-- needs neither SECURITY DEFINER nor a search_path of its own.
-- +goose StatementBegin
CREATE FUNCTION action_before_update() RETURNS trigger
LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND NEW.state IN ('succeeded', 'failed', 'cancelled') THEN
        NEW.finished_at := coalesce(NEW.finished_at, now());
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- action_update_refused raises the error of the check whose trigger fired:
-- TG_ARGV[0] names it.
-- +goose StatementBegin
CREATE FUNCTION action_update_refused() RETURNS trigger
LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
BEGIN
    IF TG_ARGV[0] = 'history' THEN
        RAISE EXCEPTION 'botq: action % can change only its state and outcome; what was enqueued is history', OLD.id
            USING ERRCODE = 'BQ002';
    END IF;
    IF TG_ARGV[0] = 'possibly_sent' THEN
        RAISE EXCEPTION 'botq: action % can be marked possibly sent only by the cancel that makes it cancelled, and never unmarked', OLD.id
            USING ERRCODE = 'BQ002', COLUMN = 'possibly_sent';
    END IF;
    RAISE EXCEPTION 'botq: action % cannot go from % to %', OLD.id, OLD.state, NEW.state
        USING ERRCODE = 'BQ001', COLUMN = 'state';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER action_before_update BEFORE UPDATE ON action
    FOR EACH ROW EXECUTE FUNCTION action_before_update();

-- UPDATE OF: the check runs only when the statement sets one of these
-- columns, which no botq statement does. A change another BEFORE trigger
-- made to NEW would not count as set: none of botq's does (the timestamps
-- only), and a new one must not change these columns.
CREATE TRIGGER action_history_guard BEFORE UPDATE OF id, app_id, kind, payload, idempotency_key, lane,
        river_job_id, replay_of, created_at, created_by ON action
    FOR EACH ROW
    WHEN (NEW.id <> OLD.id OR NEW.app_id <> OLD.app_id OR NEW.kind <> OLD.kind
          OR NEW.payload IS DISTINCT FROM OLD.payload OR NEW.idempotency_key <> OLD.idempotency_key
          OR NEW.lane IS DISTINCT FROM OLD.lane OR NEW.river_job_id <> OLD.river_job_id
          OR NEW.replay_of IS DISTINCT FROM OLD.replay_of OR NEW.created_at <> OLD.created_at
          OR NEW.created_by <> OLD.created_by)
    EXECUTE FUNCTION action_update_refused('history');

CREATE TRIGGER action_possibly_sent_guard BEFORE UPDATE OF possibly_sent ON action
    FOR EACH ROW
    WHEN (NEW.possibly_sent IS DISTINCT FROM OLD.possibly_sent
          AND NOT (NEW.possibly_sent AND OLD.state <> 'cancelled' AND NEW.state = 'cancelled'))
    EXECUTE FUNCTION action_update_refused('possibly_sent');

-- action_state_guard's condition is built from action_transition's rows, so
-- the table stays the list of moves; a later change to the table needs a
-- migration that builds the trigger again (store TestActionTransitionTable
-- holds the two to the same list).
-- +goose StatementBegin
DO $$
DECLARE
    moves text[] := (SELECT array_agg(from_state || '>' || to_state ORDER BY from_state, to_state) FROM action_transition);
BEGIN
    -- An empty table would make the condition NULL, which lets every move
    -- through.
    IF moves IS NULL THEN
        RAISE EXCEPTION 'botq: action_transition is empty';
    END IF;
    EXECUTE format(
        'CREATE TRIGGER action_state_guard BEFORE UPDATE OF state ON action FOR EACH ROW '
        'WHEN (NEW.state IS DISTINCT FROM OLD.state AND NOT (OLD.state || %L || NEW.state) = ANY (%L::text[])) '
        'EXECUTE FUNCTION action_update_refused(%L)',
        '>', moves, 'state');
END
$$;
-- +goose StatementEnd

-- Lanes -----------------------------------------------------------------

-- lane_release_next makes the oldest queued action of a locked lane its head
-- and its River job available, or drops the lane row when nothing waits. The
-- job keeps its place in River's queue (the time it was enqueued) rather than
-- taking a new one: River fetches in scheduled_at order, and a lane's next
-- action would otherwise go to the back of a backlog.
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
    UPDATE river_job SET state = 'available', scheduled_at = least(scheduled_at, now())
    WHERE id = next_job AND state = 'pending'
    RETURNING queue INTO next_queue;
    IF next_queue IS NOT NULL THEN
        PERFORM notify_insert(ARRAY[next_queue]);
    END IF;
    RETURN next_id;
END
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION lane_release_next(text, text) FROM PUBLIC;

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
REVOKE EXECUTE ON FUNCTION lane_unblock(text, text) FROM PUBLIC;

-- action_lanes_advance moves lanes on when their head's call is over: for
-- every lane an UPDATE sent or finished the head of, the lane's next queued
-- action becomes available (what lane_release_next does for one lane), and
-- under lane_on_failure 'block' a failed head blocks the lane instead. A
-- finished follower (a cancelled one) changes nothing. It runs once per
-- statement, with two statements for all the lanes (one locks them and keeps
-- those whose head the rows are, one moves them on), rather than a lock, a
-- lookup and a call per finished action.
--
-- It reads only the new rows. An action is its lane's head only while it is
-- queued, retrying or unknown (the head moves on, or the lane is blocked, as
-- soon as it is sent or finished), so a new row that is sent, succeeded,
-- failed or cancelled and is still its lane's head is one whose call just
-- ended. Reading only new rows also avoids a join of the two transition
-- tables.
--
-- The lanes are locked in one statement, in (app_id, lane) order, the order
-- the enqueue trigger and enqueue_many lock them in, so the result writer
-- need not lock a batch's lanes before its update. The lookup of each lane's
-- next queued action is a statement after the lock, so it sees a follower
-- enqueued while the lock was awaited.
--
-- Its two statements use generic plans, planned once per session: with
-- `auto`, Postgres compared each custom plan (which knows how many lanes the
-- arrays hold) with a generic one (which guesses) and kept planning both
-- statements again on every call. The enable_* settings keep those plans on
-- the primary-key and action_lane_queued_idx lookups whatever the tables'
-- statistics were when the session made them; nested loops over index
-- lookups are right for any number of lanes. The settings also apply to what
-- the function calls (notify_insert), which has no other plan.
--
-- A trigger with a transition table cannot name columns, so it fires on
-- every UPDATE of action; an update that sends or finishes no action costs
-- one scan of its new rows.
-- +goose StatementBegin
CREATE FUNCTION action_lanes_advance() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    apps text[];
    lanes text[];
    heads bigint[];
    blocks boolean[];
    queues text[];
BEGIN
    -- Every finished row's lane is locked, its head or not, and the head is
    -- compared after the lock, with the lane's latest version: a head
    -- finishing in another transaction may be making this row the head (a
    -- follower cancelled meanwhile), and a comparison before the lock would
    -- see the old head, skip the lane, and leave it headed by a cancelled
    -- action for good.
    -- (MATERIALIZED keeps Postgres from pushing that comparison into the
    -- locking query.)
    WITH locked AS MATERIALIZED (
        SELECT l.app_id, l.lane, l.head_action_id, n.id,
               n.state = 'failed' AND EXISTS (SELECT 1 FROM app p WHERE p.id = n.app_id AND p.lane_on_failure = 'block') AS block
        FROM new_rows n
        JOIN lane l ON l.app_id = n.app_id AND l.lane = n.lane
        WHERE n.state IN ('sent', 'succeeded', 'failed', 'cancelled')
        ORDER BY l.app_id, l.lane
        FOR UPDATE OF l
    )
    SELECT array_agg(x.app_id), array_agg(x.lane), array_agg(x.id), array_agg(x.block)
    INTO apps, lanes, heads, blocks
    FROM locked x
    WHERE x.head_action_id = x.id;
    IF apps IS NULL THEN
        RETURN NULL;
    END IF;

    IF true = ANY (blocks) THEN
        UPDATE lane l SET head_action_id = NULL, blocked_by = b.id, updated_at = now()
        FROM unnest(apps, lanes, heads, blocks) AS b(app_id, lane, id, block)
        WHERE b.block AND l.app_id = b.app_id AND l.lane = b.lane;
        INSERT INTO event (app_id, action_id, kind, actor, reason, after)
        SELECT b.app_id, b.id, 'lane_blocked', 'botq', 'lane_on_failure is block and the head failed',
               jsonb_build_object('lane', b.lane)
        FROM unnest(apps, lanes, heads, blocks) AS b(app_id, lane, id, block)
        WHERE b.block;
    END IF;

    -- What lane_release_next does for one lane, for all of them.
    WITH nxt AS (
        SELECT b.app_id, b.lane, q.id, q.river_job_id
        FROM unnest(apps, lanes, blocks) AS b(app_id, lane, block)
        LEFT JOIN LATERAL (
            SELECT a.id, a.river_job_id
            FROM action a
            WHERE a.app_id = b.app_id AND a.lane = b.lane AND a.state = 'queued'
            ORDER BY a.id
            LIMIT 1
        ) q ON true
        WHERE NOT b.block
    ), gone AS (
        DELETE FROM lane l USING nxt
        WHERE nxt.id IS NULL AND l.app_id = nxt.app_id AND l.lane = nxt.lane
    ), moved AS (
        UPDATE lane l SET head_action_id = nxt.id, blocked_by = NULL, updated_at = now()
        FROM nxt
        WHERE nxt.id IS NOT NULL AND l.app_id = nxt.app_id AND l.lane = nxt.lane
    ), woken AS (
        UPDATE river_job j SET state = 'available', scheduled_at = least(j.scheduled_at, now())
        FROM nxt
        WHERE j.id = nxt.river_job_id AND j.state = 'pending'
        RETURNING j.queue
    )
    SELECT array_agg(DISTINCT queue) INTO queues FROM woken;
    IF queues IS NOT NULL THEN
        PERFORM notify_insert(queues);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER action_lanes_advance AFTER UPDATE ON action
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION action_lanes_advance();

-- Concurrency slots -----------------------------------------------------

-- app_slot_wake makes up to n of the app's oldest parked jobs (app_slot_wait)
-- available and returns how many it woke. Waiters another transaction is
-- waking are skipped, not waited for; so is a job still running (River's
-- completer has not handled its snooze yet): River completes jobs
-- asynchronously and only checks that a job is running, so a job woken and
-- fetched again before the completer handled its previous run would be
-- marked completed by that stale completion while it runs. A waiter whose job
-- went on without it (cancelled, or its snooze ran out) is dropped without
-- using up a wake-up. One primary-key lookup per waiter: a join of the
-- waiters to river_job is planned as a scan of river_job, on every release.
-- +goose StatementBegin
CREATE FUNCTION app_slot_wake(p_app_id text, p_n integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    w      record;
    st     river_job_state;
    q      text;
    queues text[] := '{}';
    woken  integer := 0;
BEGIN
    IF p_n <= 0 THEN
        RETURN 0;
    END IF;
    FOR w IN
        SELECT river_job_id, scheduled_at FROM app_slot_wait
        WHERE app_id = p_app_id
        ORDER BY river_job_id
        FOR UPDATE SKIP LOCKED
    LOOP
        SELECT state INTO st FROM river_job WHERE id = w.river_job_id;
        IF st = 'running' THEN
            CONTINUE;
        END IF;
        IF st = 'scheduled' THEN
            UPDATE river_job SET state = 'available', scheduled_at = w.scheduled_at
            WHERE id = w.river_job_id
            RETURNING queue INTO q;
            woken := woken + 1;
            IF NOT q = ANY (queues) THEN
                queues := queues || q;
            END IF;
        END IF;
        DELETE FROM app_slot_wait WHERE app_id = p_app_id AND river_job_id = w.river_job_id;
        EXIT WHEN woken >= p_n;
    END LOOP;
    IF woken > 0 THEN
        PERFORM notify_insert(queues);
    END IF;
    RETURN woken;
END
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION app_slot_wake(text, integer) FROM PUBLIC;

-- app_slot_wake_free wakes, for one app or for every app with waiters, as
-- many waiters as the app has free slots (all of them when it has no limit
-- any more). A worker calls it after it starts waiting, so a slot freed
-- meanwhile is not missed; periodic maintenance calls it (for every app) for
-- slots whose holder died and whose lease ran out.
-- +goose StatementBegin
CREATE FUNCTION app_slot_wake_free(p_app_id text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    r     record;
    free  integer;
    total integer := 0;
BEGIN
    FOR r IN
        SELECT w.app_id, count(*)::integer AS waiting, max(a.concurrency_limit) AS lim
        FROM app_slot_wait w JOIN app a ON a.id = w.app_id
        WHERE p_app_id IS NULL OR w.app_id = p_app_id
        GROUP BY w.app_id
    LOOP
        IF r.lim IS NULL THEN
            free := r.waiting;
        ELSE
            SELECT count(*) INTO free FROM app_slot
            WHERE app_id = r.app_id AND (holder IS NULL OR lease_until < clock_timestamp());
        END IF;
        total := total + app_slot_wake(r.app_id, least(free, r.waiting));
    END LOOP;
    RETURN total;
END
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION app_slot_wake_free(text) FROM PUBLIC;

-- app_slot_sync keeps one app_slot row per allowed concurrent call; a raised
-- or removed limit frees slots at once.
-- +goose StatementBegin
CREATE FUNCTION app_slot_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM app_slot WHERE app_id = NEW.id AND slot > coalesce(NEW.concurrency_limit, 0);
    INSERT INTO app_slot (app_id, slot)
    SELECT NEW.id, s FROM generate_series(1, coalesce(NEW.concurrency_limit, 0)) AS s
    ON CONFLICT DO NOTHING;
    PERFORM app_slot_wake_free(NEW.id);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER app_slot_sync AFTER INSERT OR UPDATE OF concurrency_limit ON app
    FOR EACH ROW EXECUTE FUNCTION app_slot_sync();

-- request_update_guard keeps a request record's life: while PENDING it is
-- checked and settled (any column but its identity); once final only a
-- missing action link may be made. Other updates are refused (BQ004) for
-- every role but the schema's owner.
-- +goose StatementBegin
CREATE FUNCTION request_update_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = TG_TABLE_SCHEMA), 'USAGE') THEN
        RETURN NEW;
    END IF;
    IF NEW.request_id IS DISTINCT FROM OLD.request_id OR NEW.app_id IS DISTINCT FROM OLD.app_id
       OR NEW.origin IS DISTINCT FROM OLD.origin OR NEW.first_seen_at IS DISTINCT FROM OLD.first_seen_at
       OR (OLD.action_id IS NOT NULL AND NEW.action_id IS DISTINCT FROM OLD.action_id) THEN
        RAISE EXCEPTION 'botq: request % keeps its identity; its history is append-only', OLD.request_id
            USING ERRCODE = 'BQ004';
    END IF;
    IF OLD.state <> 'PENDING' AND (ROW(NEW.state, NEW.details, NEW.payload, NEW.http_status, NEW.khoros_created_at,
            NEW.khoros_completed_at, NEW.khoros_updated_at, NEW.last_checked_at, NEW.next_check_at, NEW.check_count,
            NEW.finalized_at, NEW.reason)
        IS DISTINCT FROM ROW(OLD.state, OLD.details, OLD.payload, OLD.http_status, OLD.khoros_created_at,
            OLD.khoros_completed_at, OLD.khoros_updated_at, OLD.last_checked_at, OLD.next_check_at, OLD.check_count,
            OLD.finalized_at, OLD.reason)) THEN
        RAISE EXCEPTION 'botq: request % is final (%); its history is append-only', OLD.request_id, OLD.state
            USING ERRCODE = 'BQ004';
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER request_update_guard BEFORE UPDATE ON request
    FOR EACH ROW EXECUTE FUNCTION request_update_guard();

-- retention_purge_part deletes one batch of audit rows older than p_cutoff:
-- 'events', settled 'requests', or finished 'actions' with their attempts
-- (except an action a lane points at). It runs as the schema's owner, the
-- one way the runtime role deletes audit rows; it returns the rows deleted
-- and, for actions, their attempts.
-- +goose StatementBegin
CREATE FUNCTION retention_purge_part(p_part text, p_cutoff timestamptz, p_batch integer, OUT deleted bigint, OUT attempts bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    attempts := 0;
    CASE p_part
    WHEN 'events' THEN
        WITH doomed AS (SELECT id FROM event WHERE at < p_cutoff ORDER BY at LIMIT p_batch)
        DELETE FROM event e USING doomed WHERE e.id = doomed.id;
        GET DIAGNOSTICS deleted = ROW_COUNT;
    WHEN 'requests' THEN
        WITH doomed AS (
            SELECT request_id FROM request
            WHERE first_seen_at < p_cutoff AND state <> 'PENDING'
            ORDER BY first_seen_at LIMIT p_batch
            FOR UPDATE SKIP LOCKED)
        DELETE FROM request r USING doomed WHERE r.request_id = doomed.request_id;
        GET DIAGNOSTICS deleted = ROW_COUNT;
    WHEN 'actions' THEN
        -- finished_at >= created_at, so the created_at bound only lets the
        -- state index find the candidates.
        WITH doomed AS (
            SELECT a.id FROM action a
            WHERE a.state IN ('succeeded', 'failed', 'cancelled')
              AND a.created_at < p_cutoff AND a.finished_at < p_cutoff
              AND NOT EXISTS (SELECT 1 FROM lane l
                              WHERE l.app_id = a.app_id AND l.lane = a.lane
                                AND (l.head_action_id = a.id OR l.blocked_by = a.id))
            ORDER BY a.created_at LIMIT p_batch
            FOR UPDATE SKIP LOCKED
        ), gone_attempts AS (
            DELETE FROM attempt t USING doomed WHERE t.action_id = doomed.id
            RETURNING 1
        ), gone AS (
            DELETE FROM action a USING doomed WHERE a.id = doomed.id
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM gone_attempts) INTO deleted, attempts;
    ELSE
        RAISE EXCEPTION 'botq: retention has no part %', quote_literal(p_part) USING ERRCODE = '22023';
    END CASE;
END
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION retention_purge_part(text, timestamptz, integer) FROM PUBLIC;

-- Console ----------------------------------------------------------------

-- console_session_start opens a session for p_ttl and deletes the expired
-- ones; it returns when the new one expires.
-- +goose StatementBegin
CREATE FUNCTION console_session_start(p_token_hash bytea, p_principal text, p_role text, p_key_fingerprint bytea, p_ttl interval)
RETURNS timestamptz
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    DELETE FROM console_session WHERE expires_at <= now();
    INSERT INTO console_session (token_hash, principal, role, key_fingerprint, expires_at)
    VALUES (p_token_hash, p_principal, p_role, p_key_fingerprint, now() + p_ttl)
    RETURNING expires_at;
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION console_session_start(bytea, text, text, bytea, interval) FROM PUBLIC;

-- console_session_end ends a session (sign-out); it says whether there was
-- one.
-- +goose StatementBegin
CREATE FUNCTION console_session_end(p_token_hash bytea) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    WITH d AS (DELETE FROM console_session WHERE token_hash = p_token_hash RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d);
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION console_session_end(bytea) FROM PUBLIC;

-- +goose Down
DROP FUNCTION console_session_end(bytea);
DROP FUNCTION console_session_start(bytea, text, text, bytea, interval);
DROP FUNCTION retention_purge_part(text, timestamptz, integer);
DROP TRIGGER request_update_guard ON request;
DROP FUNCTION request_update_guard();
DROP TRIGGER action_possibly_sent_guard ON action;
DROP TRIGGER action_0_caller_columns ON action;
DROP TRIGGER app_slot_sync ON app;
DROP TRIGGER action_lanes_advance ON action;
DROP TRIGGER action_state_guard ON action;
DROP TRIGGER action_history_guard ON action;
DROP TRIGGER action_before_update ON action;
DROP TRIGGER action_after_insert ON action;
DROP TRIGGER action_before_insert ON action;
DROP FUNCTION app_slot_sync();
DROP FUNCTION app_slot_wake_free(text);
DROP FUNCTION app_slot_wake(text, integer);
DROP FUNCTION action_lanes_advance();
DROP FUNCTION lane_unblock(text, text);
DROP FUNCTION lane_release_next(text, text);
DROP FUNCTION action_update_refused();
DROP FUNCTION action_before_update();
DROP FUNCTION enqueue(text, text, jsonb, text, text, text);
DROP FUNCTION enqueue_many(text[], text[], jsonb[], text[], text[], text[], text, bigint[], boolean);
DROP FUNCTION action_after_insert();
DROP FUNCTION action_before_insert();
DROP FUNCTION action_key_holder(text, text, text, text, jsonb, text);
DROP FUNCTION key_reused(text, text);
DROP FUNCTION payload_normalized(text, text, jsonb);
DROP FUNCTION action_caller_columns();
DROP FUNCTION trusted(text);
DROP FUNCTION may_enqueue_as(text, text, text);
DROP FUNCTION may_enqueue(text, text, text);
DROP FUNCTION notify_insert(text[]);
DROP FUNCTION notify_due();
DROP FUNCTION payload_redacted(jsonb);
DROP FUNCTION payload_lane(text, jsonb);
DROP FUNCTION payload_respond_plain(jsonb);
DROP FUNCTION payload_validate(text, text, jsonb);
DROP FUNCTION payload_enum(text, text, text[]);
DROP FUNCTION payload_int(jsonb, text, text, boolean, bigint, bigint);
DROP FUNCTION payload_object(jsonb, text, text, boolean);
DROP FUNCTION payload_string(jsonb, text, text, boolean);
DROP FUNCTION payload_error(text, text, text);
