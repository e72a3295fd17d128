-- The caller checks of an enqueue, with the same rules for less work per
-- inserted row.
--
-- action_0_caller_columns ran its function for every row, and the function
-- asked trusted() twice: a SQL function with its own search_path, which
-- Postgres parses and plans again in every transaction, so a single-row
-- INSERT paid for it each time. The trigger now runs its function only
-- when the row may break a rule: a trusted role's (botq's own) INSERT that
-- sets river_job_id, or sets replay_of or another principal's created_by
-- outside enqueue_many, or any INSERT of an untrusted role (a bot's, which
-- needs a grant). A trusted role's plain INSERT, the common case of
-- botq's own paths, skips it. The WHEN clause names the table by its oid
-- (the regclass is resolved when the trigger is made), so it needs no
-- search_path; the function asks the same question of TG_RELID.
--
-- may_enqueue and may_enqueue_as were SQL functions with a search_path of
-- their own, so they too were planned again in every transaction of a
-- bot's INSERT; as PL/pgSQL their plans are kept for the session.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION action_caller_columns() RETURNS trigger
LANGUAGE plpgsql SET plan_cache_mode = auto SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.river_job_id IS NOT NULL THEN
        RAISE EXCEPTION 'botq: river_job_id is set by botq; leave it out'
            USING ERRCODE = '22023', COLUMN = 'river_job_id';
    END IF;
    IF current_setting('botq.enqueue', true) = 'on' AND has_table_privilege(TG_RELID, 'UPDATE') THEN
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
    IF NOT has_table_privilege(TG_RELID, 'UPDATE') AND NOT may_enqueue_as(current_user::text, NEW.app_id, NEW.kind) THEN
        RAISE EXCEPTION 'botq: % may not enqueue % actions for app %', current_user, NEW.kind, quote_literal(NEW.app_id) USING
            ERRCODE = '42501', COLUMN = 'app_id',
            HINT = 'an operator grants it: botq grant add <principal> <app> (--all-kinds for registration, mode and token kinds)';
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- The condition is the function's: true whenever the function would raise
-- or check a grant.
DROP TRIGGER action_0_caller_columns ON action;
CREATE TRIGGER action_0_caller_columns BEFORE INSERT ON action FOR EACH ROW
    WHEN (NEW.river_job_id IS NOT NULL
          OR NOT has_table_privilege('action'::regclass, 'UPDATE')
          OR ((NEW.replay_of IS NOT NULL OR NEW.created_by IS DISTINCT FROM current_user::text)
              AND current_setting('botq.enqueue', true) IS DISTINCT FROM 'on'))
    EXECUTE FUNCTION action_caller_columns();

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION may_enqueue(p_principal text, p_app_id text, p_kind text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM principal_grant g
        WHERE g.principal = p_principal AND g.app_id IN (p_app_id, '*')
          AND (g.scope = 'all' OR (SELECT k.conversation FROM kind_config k WHERE k.kind = p_kind)));
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION may_enqueue_as(p_role text, p_app_id text, p_kind text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN pg_has_role(session_user, p_role, 'MEMBER') AND may_enqueue(p_role, p_app_id, p_kind);
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION may_enqueue_as(p_role text, p_app_id text, p_kind text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT pg_has_role(session_user, p_role, 'MEMBER') AND may_enqueue(p_role, p_app_id, p_kind)
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION may_enqueue(p_principal text, p_app_id text, p_kind text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT EXISTS (
        SELECT 1 FROM principal_grant g
        WHERE g.principal = p_principal AND g.app_id IN (p_app_id, '*')
          AND (g.scope = 'all' OR (SELECT k.conversation FROM kind_config k WHERE k.kind = p_kind)))
$$;
-- +goose StatementEnd

DROP TRIGGER action_0_caller_columns ON action;
CREATE TRIGGER action_0_caller_columns BEFORE INSERT ON action
    FOR EACH ROW EXECUTE FUNCTION action_caller_columns();

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION action_caller_columns() RETURNS trigger
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
