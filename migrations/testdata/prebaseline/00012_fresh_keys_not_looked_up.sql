-- An action enqueued without an idempotency key is not looked up (issue 12).
-- The key's column default made a random key before the insert trigger ran,
-- so the trigger could not tell it from a bot's own key and looked every key
-- up through action_by_key, planned on every call (a cached plan would use
-- the wrong index on an empty table, 00004): pg_stat_statements with
-- track_planning put it at 84 us of planning and 29 us of execution of an
-- 874 us INSERT (four clients), besides the call of a function with SET
-- clauses. Skipping it raised pgbench's rate of single-row INSERTs by 27-44%.
--
-- The column's default is now chr(1), a key no bot can give (keys with
-- control characters are refused): the trigger makes the random key for it
-- and skips the lookup. A NULL key is still refused, since a bot's key
-- expression that is NULL by mistake must not silently lose its idempotency;
-- a key a bot gives is checked and looked up as before. enqueue_many passes
-- a missing key on as chr(1) too, and takes each action's id itself, so that
-- it finds the actions whose keys the trigger made among the inserted rows.

-- +goose Up
ALTER TABLE action ALTER COLUMN idempotency_key SET DEFAULT chr(1);
COMMENT ON COLUMN action.idempotency_key IS
    'unique per app; the default chr(1) means none given: the insert trigger makes a random key';

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
CREATE OR REPLACE FUNCTION enqueue_many(
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

-- +goose Down
ALTER TABLE action ALTER COLUMN idempotency_key SET DEFAULT gen_random_uuid()::text;
COMMENT ON COLUMN action.idempotency_key IS NULL;

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

    existing := action_by_key(NEW.app_id, NEW.idempotency_key);
    IF existing IS NOT NULL THEN
        RAISE NOTICE 'botq: app % already has action % with idempotency key %; not enqueued again',
            NEW.app_id, existing, quote_literal(NEW.idempotency_key);
        RETURN NULL;
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
CREATE OR REPLACE FUNCTION enqueue_many(
    p_app_ids text[], p_kinds text[], p_payloads jsonb[], p_keys text[] DEFAULT NULL, p_lanes text[] DEFAULT NULL,
    p_created_by text[] DEFAULT NULL, p_as text DEFAULT current_user)
RETURNS TABLE (ord bigint, action_id bigint, existed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n integer := coalesce(cardinality(p_app_ids), 0);
    keys text[] := coalesce(p_keys, array_fill(NULL::text, ARRAY[n]));
    lanes text[] := coalesce(p_lanes, array_fill(NULL::text, ARRAY[n]));
    authors text[] := array_fill(p_as, ARRAY[n]);
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
            keys[i] := gen_random_uuid()::text;
        END IF;
        IF p_created_by IS NOT NULL AND nullif(p_created_by[i], '') IS NOT NULL
           AND has_table_privilege(session_user, 'action', 'UPDATE') THEN
            authors[i] := p_created_by[i];
        END IF;
    END LOOP;

    WITH ins AS (
        INSERT INTO action (app_id, kind, payload, idempotency_key, lane, created_by)
        SELECT t.a, t.k, t.p, t.key, nullif(t.l, ''), t.c
        FROM unnest(p_app_ids, p_kinds, p_payloads, keys, lanes, authors) WITH ORDINALITY AS t(a, k, p, key, l, c, o)
        ORDER BY t.o
        ON CONFLICT (app_id, idempotency_key) DO NOTHING
        RETURNING id, app_id, idempotency_key
    )
    SELECT array_agg(id), array_agg(app_id), array_agg(idempotency_key) INTO ins_ids, ins_apps, ins_keys FROM ins;

    -- Keys inserted here are matched in memory; the others existed before
    -- (a new statement sees them, even if another transaction committed
    -- them meanwhile) and are looked up one by one. A key repeated in the
    -- input was inserted once, for its first occurrence.
    RETURN QUERY
    SELECT t.o, coalesce(i.id, action_by_key(t.a, t.key)),
           i.id IS NULL OR row_number() OVER (PARTITION BY t.a, t.key ORDER BY t.o) > 1
    FROM unnest(p_app_ids, keys) WITH ORDINALITY AS t(a, key, o)
    LEFT JOIN unnest(ins_ids, ins_apps, ins_keys) AS i(id, a, key) ON i.a = t.a AND i.key = t.key
    ORDER BY t.o;
END
$$;
-- +goose StatementEnd
