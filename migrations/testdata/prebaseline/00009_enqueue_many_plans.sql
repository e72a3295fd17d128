-- enqueue_many no longer forces custom plans. Its SET applied to everything
-- fired inside it, the foreign-key checks of every inserted row among them,
-- planned again for each row. It needed custom plans for one lookup: the
-- join of its input to action by (app_id, idempotency_key), whose generic
-- plan made on an empty table uses action_app_created_idx. Keys it inserted
-- are now matched against the INSERT's own RETURNING rows, and keys that
-- existed before go through action_by_key, which keeps its custom plan.

-- +goose Up
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

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION enqueue_many(
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
