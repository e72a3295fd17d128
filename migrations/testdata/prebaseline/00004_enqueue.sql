-- enqueue() and enqueue_many(): enqueue that returns each action's id and
-- whether it existed already, for bots whose role may insert actions but not
-- read other bots' rows (botq_enqueuer), from SQL or through jobs.Enqueue.
--
-- And custom plans for the trigger functions' queries: a plan cached while
-- a table was small (a fresh schema, before ANALYZE) looked an app's actions
-- up through the wrong index, making every insert linear in the app's action
-- count until the session ended.

-- +goose Up
ALTER FUNCTION action_before_insert() SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION lane_release_next(text, text) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION action_lane_advance() SET plan_cache_mode = force_custom_plan;

-- enqueue_many inserts actions in one statement (the triggers validate them
-- and create their River jobs) and returns, in input order, each one's id
-- and whether its idempotency key was known already (then nothing was
-- inserted for it). p_as, defaulted at the call to the caller's current
-- role, becomes created_by; only a role that may update actions (the
-- service role) may name another author in p_created_by.
-- +goose StatementBegin
CREATE FUNCTION enqueue_many(
    p_app_ids text[], p_kinds text[], p_payloads jsonb[], p_keys text[] DEFAULT NULL, p_lanes text[] DEFAULT NULL,
    p_created_by text[] DEFAULT NULL, p_as text DEFAULT current_user)
RETURNS TABLE (ord bigint, action_id bigint, existed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    n integer := coalesce(cardinality(p_app_ids), 0);
    keys text[] := coalesce(p_keys, array_fill(NULL::text, ARRAY[n]));
    lanes text[] := coalesce(p_lanes, array_fill(NULL::text, ARRAY[n]));
    authors text[] := array_fill(p_as, ARRAY[n]);
    inserted bigint[];
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
        RETURNING id
    )
    SELECT array_agg(id) INTO inserted FROM ins;

    -- A new statement sees the rows just inserted; a key repeated in the
    -- input was inserted once, for its first occurrence.
    RETURN QUERY
    SELECT t.o, a.id,
           NOT (a.id = ANY (coalesce(inserted, '{}'))) OR row_number() OVER (PARTITION BY t.a, t.key ORDER BY t.o) > 1
    FROM unnest(p_app_ids, keys) WITH ORDINALITY AS t(a, key, o)
    JOIN action a ON a.app_id = t.a AND a.idempotency_key = t.key
    ORDER BY t.o;
END
$$;
-- +goose StatementEnd

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

REVOKE EXECUTE ON FUNCTION enqueue_many(text[], text[], jsonb[], text[], text[], text[], text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION enqueue(text, text, jsonb, text, text, text) FROM PUBLIC;

-- grant_roles also lets botq_enqueuer run the enqueue functions.
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

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_enqueuer') THEN
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %I.enqueue_many(text[], text[], jsonb[], text[], text[], text[], text), %I.enqueue(text, text, jsonb, text, text, text) FROM botq_enqueuer',
            current_schema(), current_schema());
    END IF;
END
$$;
-- +goose StatementEnd
DROP FUNCTION enqueue(text, text, jsonb, text, text, text);
DROP FUNCTION enqueue_many(text[], text[], jsonb[], text[], text[], text[], text);
ALTER FUNCTION action_before_insert() RESET plan_cache_mode;
ALTER FUNCTION lane_release_next(text, text) RESET plan_cache_mode;
ALTER FUNCTION action_lane_advance() RESET plan_cache_mode;
-- grant_roles() goes back to its 00003 body; the enqueue grant it adds is
-- revoked above.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION grant_roles() RETURNS text[]
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s text := current_schema();
    granted text[] := '{}';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_enqueuer') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO botq_enqueuer', s);
        EXECUTE format('GRANT INSERT (app_id, kind, payload, idempotency_key, lane), SELECT (id) ON %I.action TO botq_enqueuer', s);
        EXECUTE format('GRANT SELECT ON %I.action_status TO botq_enqueuer', s);
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
