-- A cheaper enqueue. 00004 gave action_before_insert custom plans for all of
-- its queries (and the payload checks it calls), which cost 0.13 ms per
-- insert; only the idempotency lookup needs one: a generic plan made while
-- the table was small (before ANALYZE, or with autovacuum off) scans the
-- app's actions through (app_id, created_at) instead of the unique index.
-- That lookup now lives in a function of its own with a custom plan.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION action_by_key(p_app_id text, p_key text) RETURNS bigint
LANGUAGE sql STABLE SET plan_cache_mode = force_custom_plan SET search_path FROM CURRENT AS $$
    SELECT id FROM action WHERE app_id = p_app_id AND idempotency_key = p_key
$$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION action_by_key(text, text) FROM PUBLIC;

ALTER FUNCTION action_before_insert() RESET plan_cache_mode;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION action_before_insert() RETURNS trigger
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

    existing := action_by_key(NEW.app_id, NEW.idempotency_key);
    IF existing IS NOT NULL THEN
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

-- +goose Down
ALTER FUNCTION action_before_insert() SET plan_cache_mode = force_custom_plan;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION action_before_insert() RETURNS trigger
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
DROP FUNCTION action_by_key(text, text);
