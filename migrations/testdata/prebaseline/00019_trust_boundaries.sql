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
-- enqueue_many returns its action, as before.
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

-- +goose Up
CREATE TABLE principal_grant (
    principal  text NOT NULL CONSTRAINT principal_grant_principal_valid
               CHECK (char_length(principal) BETWEEN 1 AND 200 AND principal !~ '[[:cntrl:]]'),
    -- '*' grants every app (operators' API keys).
    app_id     text NOT NULL,
    scope      text NOT NULL DEFAULT 'conversation' CONSTRAINT principal_grant_scope_valid
               CHECK (scope IN ('conversation', 'all')),
    granted_by text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, app_id)
);

ALTER TABLE event DROP CONSTRAINT event_kind_valid, ADD CONSTRAINT event_kind_valid CHECK (kind IN (
    'replay', 'cancel', 'pause', 'resume', 'throttle',
    'token_set', 'token_refresh', 'token_revoke', 'token_unauthorized',
    'registration', 'mode_change', 'health_change',
    'lane_blocked', 'lane_unblocked', 'ambiguous_resolved', 'ambiguous_released',
    'app_upsert', 'retention', 'riverui', 'grant', 'grant_revoke'));

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

-- An empty or whitespace-only text is refused (Bot v3 refuses it later,
-- with a 400): the fast check of text replies no longer accepts it, and the
-- full check names the field.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION payload_respond_plain(p jsonb) RETURNS boolean
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION payload_validate(p_kind text, p_app_id text, p jsonb) RETURNS jsonb
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
DROP FUNCTION action_by_key(text, text);

-- action_before_insert validates a new action and fills its defaults; see
-- the top of this file for the grant and the idempotency rules. A second
-- insert of a request already made (same principal, key, kind, payload and
-- lane) is skipped (the statement reports 0 rows and RETURNING returns
-- nothing) so that a bot's retried transaction goes through; a concurrent
-- duplicate still meets the unique constraint. An action inserted without a
-- key (the column's default, chr(1)) gets a random one and is not looked up:
-- a fresh key cannot be taken, and the lookup is a large part of an insert.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION action_before_insert() RETURNS trigger
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

-- enqueue_many inserts actions in one statement (the triggers validate them
-- and create their River jobs) and returns, in input order, each one's id
-- and whether the same request was made already (then nothing was inserted
-- for it). Every enqueue goes through it: bots whose role may insert
-- actions but not read other bots' rows (botq_enqueuer), from SQL or
-- through jobs.Enqueue, and botq's own service (HTTP, CLI, replays). p_as,
-- defaulted at the call to the caller's current role, becomes created_by;
-- only a role that may update actions (the service) may name another
-- principal in p_created_by, or a replay's original in p_replay_of. A
-- missing key is passed on as chr(1), the column's default, so the trigger
-- makes it without a lookup.
--
-- It does not force custom plans: its SET would apply to everything fired
-- inside it, the foreign-key checks of every inserted row among them, planned
-- again for each row. Its own lookups need none: the actions it inserted are
-- matched to the INSERT's RETURNING rows by the ids it takes up front, and
-- the keys taken otherwise go through action_key_holder.
DROP FUNCTION enqueue(text, text, jsonb, text, text, text);
DROP FUNCTION enqueue_many(text[], text[], jsonb[], text[], text[], text[], text);
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

-- grant_roles grants botq's roles their rights in this schema, for those
-- that exist, and returns their names. Idempotent. botq_runtime (botq serve
-- and the CLI's service commands run as a member) gets what running botq
-- needs and nothing that rewrites history: no UPDATE or DELETE on attempt
-- and event, no DELETE on action and request (retention_purge_part does
-- that), and enqueues only through enqueue_many.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION grant_roles() RETURNS text[]
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s text := current_schema();
    granted text[] := '{}';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_enqueuer') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO botq_enqueuer', s);
        -- INSERT ... RETURNING id needs SELECT on id; nothing else of other
        -- bots' actions is readable.
        EXECUTE format('GRANT INSERT (app_id, kind, payload, idempotency_key, lane), SELECT (id) ON %I.action TO botq_enqueuer', s);
        EXECUTE format('GRANT SELECT ON %I.action_status TO botq_enqueuer', s);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %I.enqueue_many(text[], text[], jsonb[], text[], text[], text[], text, bigint[], boolean), %I.enqueue(text, text, jsonb, text, text, text) TO botq_enqueuer', s, s);
        granted := granted || 'botq_enqueuer'::text;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_auditor') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO botq_auditor', s);
        EXECUTE format('GRANT SELECT ON %I.action_history, %I.attempt_history, %I.request_history, %I.event_log TO botq_auditor', s, s, s, s);
        granted := granted || 'botq_auditor'::text;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_runtime') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO botq_runtime', s);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO botq_runtime', s);
        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO botq_runtime', s);
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %I.river_job, %I.river_leader, %I.river_queue, %I.river_notification TO botq_runtime', s, s, s, s);
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %I.lane, %I.app_slot, %I.app_slot_wait, %I.inbound_cursor, %I.principal_grant TO botq_runtime', s, s, s, s, s);
        EXECUTE format('GRANT INSERT, UPDATE ON %I.app, %I.kind_config, %I.request TO botq_runtime', s, s, s);
        EXECUTE format('GRANT INSERT ON %I.attempt, %I.event TO botq_runtime', s, s);
        EXECUTE format('GRANT UPDATE ON %I.action TO botq_runtime', s);
        EXECUTE format('GRANT INSERT (app_id, kind, payload, idempotency_key, lane) ON %I.action TO botq_runtime', s);
        EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %I TO botq_runtime', s);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %I.grant_roles() FROM botq_runtime', s);
        granted := granted || 'botq_runtime'::text;
    END IF;
    RETURN granted;
END
$$;
-- +goose StatementEnd

SELECT grant_roles();

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    s text := current_schema();
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_runtime') THEN
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM botq_runtime', s);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM botq_runtime', s);
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM botq_runtime', s);
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM botq_runtime', s);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_enqueuer') THEN
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %I.enqueue_many(text[], text[], jsonb[], text[], text[], text[], text, bigint[], boolean), %I.enqueue(text, text, jsonb, text, text, text) FROM botq_enqueuer', s, s);
    END IF;
END
$$;
-- +goose StatementEnd
DROP FUNCTION retention_purge_part(text, timestamptz, integer);
DROP TRIGGER request_update_guard ON request;
DROP FUNCTION request_update_guard();
DROP FUNCTION enqueue(text, text, jsonb, text, text, text);
DROP FUNCTION enqueue_many(text[], text[], jsonb[], text[], text[], text[], text, bigint[], boolean);
DROP TRIGGER action_0_caller_columns ON action;
DROP FUNCTION action_caller_columns();
DROP FUNCTION action_key_holder(text, text, text, text, jsonb, text);
DROP FUNCTION key_reused(text, text);
DROP FUNCTION payload_normalized(text, text, jsonb);
DROP FUNCTION trusted(text);
DROP FUNCTION may_enqueue_as(text, text, text);
DROP FUNCTION may_enqueue(text, text, text);
DROP TABLE principal_grant;
DELETE FROM event WHERE kind IN ('grant', 'grant_revoke');
ALTER TABLE event DROP CONSTRAINT event_kind_valid, ADD CONSTRAINT event_kind_valid CHECK (kind IN (
    'replay', 'cancel', 'pause', 'resume', 'throttle',
    'token_set', 'token_refresh', 'token_revoke', 'token_unauthorized',
    'registration', 'mode_change', 'health_change',
    'lane_blocked', 'lane_unblocked', 'ambiguous_resolved', 'ambiguous_released',
    'app_upsert', 'retention', 'riverui'));
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION action_before_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET plan_cache_mode = auto AS $$
DECLARE
    existing bigint;
    text_limit integer;
    checked boolean := false;
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
       OR NEW.last_error IS NOT NULL OR NEW.finished_at IS NOT NULL THEN
        PERFORM payload_error('state', 'and the other outcome columns are set by botq; leave them out');
    END IF;
    IF NEW.idempotency_key IS NULL THEN
        PERFORM payload_error('idempotency_key', 'must not be null (omit it to get a random key)', '23502');
    END IF;
    IF NEW.idempotency_key = chr(1) THEN
        -- The column's default, no key given: a fresh one cannot be taken,
        -- so it is not looked up.
        NEW.idempotency_key := gen_random_uuid()::text;
    ELSE
        IF char_length(NEW.idempotency_key) NOT BETWEEN 1 AND 255 OR NEW.idempotency_key ~ '[[:cntrl:]]' THEN
            PERFORM payload_error('idempotency_key', 'must be 1 to 255 characters without control characters');
        END IF;
        existing := action_by_key(NEW.app_id, NEW.idempotency_key);
        IF existing IS NOT NULL THEN
            RAISE NOTICE 'botq: app % already has action % with idempotency key %; not enqueued again',
                NEW.app_id, existing, quote_literal(NEW.idempotency_key);
            RETURN NULL;
        END IF;
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
-- +goose StatementBegin
CREATE FUNCTION enqueue_many(
    p_app_ids text[], p_kinds text[], p_payloads jsonb[], p_keys text[] DEFAULT NULL, p_lanes text[] DEFAULT NULL,
    p_created_by text[] DEFAULT NULL, p_as text DEFAULT current_user)
RETURNS TABLE (ord bigint, action_id bigint, existed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n integer := coalesce(cardinality(p_app_ids), 0);
    keys text[] := coalesce(p_keys, array_fill(NULL::text, ARRAY[n]));
    lanes text[] := coalesce(p_lanes, array_fill(NULL::text, ARRAY[n]));
    authors text[] := array_fill(p_as, ARRAY[n]);
    ids bigint[];
    ins_ids bigint[];
    ins_apps text[];
    ins_keys text[];
BEGIN
    IF cardinality(p_kinds) IS DISTINCT FROM n OR cardinality(p_payloads) IS DISTINCT FROM n
       OR cardinality(keys) <> n OR cardinality(lanes) <> n
       OR (p_created_by IS NOT NULL AND cardinality(p_created_by) <> n) THEN
        RAISE EXCEPTION 'botq: enqueue_many needs arrays of one length' USING ERRCODE = '22023';
    END IF;
    IF NOT pg_has_role(session_user, p_as, 'MEMBER') THEN
        RAISE EXCEPTION 'botq: % cannot enqueue as %', session_user, p_as USING ERRCODE = '42501';
    END IF;
    FOR i IN 1 .. n LOOP
        IF keys[i] IS NULL OR keys[i] = '' THEN
            keys[i] := chr(1);
        END IF;
        IF p_created_by IS NOT NULL AND nullif(p_created_by[i], '') IS NOT NULL
           AND has_table_privilege(session_user, 'action', 'UPDATE') THEN
            authors[i] := p_created_by[i];
        END IF;
    END LOOP;

    -- Each action's id is taken here, so that an action without a key
    -- (its key made by the insert trigger) is found among the inserted rows.
    SELECT array_agg(nextval('action_id_seq')) INTO ids FROM generate_series(1, n);

    WITH ins AS (
        INSERT INTO action (id, app_id, kind, payload, idempotency_key, lane, created_by) OVERRIDING SYSTEM VALUE
        SELECT t.id, t.a, t.k, t.p, t.key, nullif(t.l, ''), t.c
        FROM unnest(ids, p_app_ids, p_kinds, p_payloads, keys, lanes, authors) WITH ORDINALITY AS t(id, a, k, p, key, l, c, o)
        ORDER BY t.o
        ON CONFLICT (app_id, idempotency_key) DO NOTHING
        RETURNING id, app_id, idempotency_key
    )
    SELECT array_agg(id), array_agg(app_id), array_agg(idempotency_key) INTO ins_ids, ins_apps, ins_keys FROM ins;

    -- An input row whose id was inserted is new. A key repeated in the
    -- input was inserted once, for its first occurrence, and its other
    -- occurrences are matched to that row in memory; the other keys existed
    -- before (a new statement sees them, even if another transaction
    -- committed them meanwhile) and are looked up one by one.
    RETURN QUERY
    SELECT t.o, coalesce(i.id, f.id, action_by_key(t.a, t.key)), i.id IS NULL
    FROM unnest(p_app_ids, keys, ids) WITH ORDINALITY AS t(a, key, id, o)
    LEFT JOIN unnest(ins_ids) AS i(id) ON i.id = t.id
    LEFT JOIN unnest(ins_ids, ins_apps, ins_keys) AS f(id, a, key) ON i.id IS NULL AND f.a = t.a AND f.key = t.key
    ORDER BY t.o;
END
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION enqueue_many(text[], text[], jsonb[], text[], text[], text[], text) FROM PUBLIC;
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION grant_roles() RETURNS text[]
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s text := current_schema();
    granted text[] := '{}';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_enqueuer') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO botq_enqueuer', s);
        -- INSERT ... RETURNING id needs SELECT on id; nothing else of other
        -- bots' actions is readable.
        EXECUTE format('GRANT INSERT (app_id, kind, payload, idempotency_key, lane), SELECT (id) ON %I.action TO botq_enqueuer', s);
        EXECUTE format('GRANT SELECT ON %I.action_status TO botq_enqueuer', s);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %I.enqueue_many(text[], text[], jsonb[], text[], text[], text[], text), %I.enqueue(text, text, jsonb, text, text, text) TO botq_enqueuer', s, s);
        granted := granted || 'botq_enqueuer'::text;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_auditor') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO botq_auditor', s);
        EXECUTE format('GRANT SELECT ON %I.action_history, %I.attempt_history, %I.request_history, %I.event_log TO botq_auditor', s, s, s, s);
        granted := granted || 'botq_auditor'::text;
    END IF;
    RETURN granted;
END
$$;
-- +goose StatementEnd
SELECT grant_roles();
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION payload_respond_plain(p jsonb) RETURNS boolean
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
       AND jsonb_typeof(p -> 'text') = 'string'
       AND coalesce(jsonb_typeof(p -> 'processSynchronously'), 'boolean') = 'boolean'
       AND octet_length(p::text) <= 262144
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION payload_validate(p_kind text, p_app_id text, p jsonb) RETURNS jsonb
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
-- +goose StatementBegin
CREATE FUNCTION action_by_key(p_app_id text, p_key text) RETURNS bigint
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan SET search_path FROM CURRENT AS $$
DECLARE
    found_id bigint;
BEGIN
    SELECT id INTO found_id FROM action WHERE app_id = p_app_id AND idempotency_key = p_key;
    RETURN found_id;
END
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION action_by_key(text, text) FROM PUBLIC;
