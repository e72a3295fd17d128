-- Postgres roles: botq_enqueuer (bots) inserts actions (or calls enqueue and
-- enqueue_many) for the apps it was granted and reads the status of its own;
-- botq_auditor reads the audit views. Neither can update or delete anything.
-- botq_runtime (botq serve and the CLI's service commands run as a member)
-- runs botq without owning anything, so it cannot rewrite audit history
-- (see "Trust boundaries" in 00003_botq_functions.sql). The role that
-- migrates owns everything.
--
-- Roles are cluster-wide and creating them needs CREATEROLE, which the
-- migrating role may lack, so this migration does not create them: `botq
-- migrate up` creates them first when it can (or prints the SQL for a DBA),
-- and grant_roles() grants them this schema's rights when they exist. It runs
-- here and again on every `botq migrate up`, so roles created later get their
-- grants too, and each botq schema of a cluster grants its own.

-- +goose Up

-- grant_roles grants botq's roles their rights in this schema, for those
-- that exist, and returns their names. Idempotent. botq_runtime (botq serve
-- and the CLI's service commands run as a member) gets what running botq
-- needs and nothing that rewrites history: no UPDATE or DELETE on attempt
-- and event, no DELETE on action and request (retention_purge_part does
-- that), and enqueues only through enqueue_many.
-- +goose StatementBegin
CREATE FUNCTION grant_roles() RETURNS text[]
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
REVOKE EXECUTE ON FUNCTION grant_roles() FROM PUBLIC;

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
        EXECUTE format('REVOKE SELECT ON %I.action_status FROM botq_enqueuer', s);
        EXECUTE format('REVOKE ALL ON %I.action FROM botq_enqueuer', s);
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM botq_enqueuer', s);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_auditor') THEN
        EXECUTE format('REVOKE SELECT ON %I.action_history, %I.attempt_history, %I.request_history, %I.event_log FROM botq_auditor', s, s, s, s);
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM botq_auditor', s);
    END IF;
END
$$;
-- +goose StatementEnd
DROP FUNCTION grant_roles();
