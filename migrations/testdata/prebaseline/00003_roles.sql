-- Postgres roles for bots and auditors: botq_enqueuer inserts actions and
-- reads the status of its own; botq_auditor reads the audit views. Neither
-- can update or delete anything. The service role (the one that migrates)
-- owns everything else.
--
-- Roles are cluster-wide and creating them needs CREATEROLE, which the
-- migrating role may lack, so this migration does not create them: `botq
-- migrate up` creates them first when it can (or prints the SQL for a DBA),
-- and grant_roles() grants them this schema's rights when they exist. It runs
-- here and again on every `botq migrate up`, so roles created later get their
-- grants too, and each botq schema of a cluster grants its own.

-- +goose Up

-- action_status is what an enqueuer may read: the status of the actions it
-- inserted itself (created_by defaults to the inserting role and is not among
-- the columns it may set). security_barrier keeps a caller's functions from
-- seeing rows the filter hides.
CREATE VIEW action_status WITH (security_barrier) AS
SELECT a.id AS action_id,
       a.app_id,
       a.kind,
       a.idempotency_key,
       a.lane,
       CASE WHEN a.state IN ('queued', 'retrying') AND j.state = 'running' THEN 'running' ELSE a.state END AS state,
       a.replay_of,
       a.attempt_count,
       a.request_id,
       r.state AS request_state,
       a.last_error,
       a.created_at,
       a.updated_at,
       a.finished_at
FROM action a
LEFT JOIN river_job j ON j.id = a.river_job_id
LEFT JOIN request r ON r.request_id = a.request_id
WHERE a.created_by = current_user;

-- Functions are executable by PUBLIC by default. These change lanes and
-- jobs as their owner (SECURITY DEFINER), so only the service role and the
-- triggers may run them.
REVOKE EXECUTE ON FUNCTION notify_insert(text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION lane_release_next(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION lane_unblock(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION payload_validate(text, text, jsonb) FROM PUBLIC;

-- grant_roles grants botq_enqueuer and botq_auditor their rights in this
-- schema, for those of the two that exist, and returns their names.
-- Idempotent.
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

REVOKE EXECUTE ON FUNCTION grant_roles() FROM PUBLIC;

SELECT grant_roles();

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    s text := current_schema();
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'botq_enqueuer') THEN
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
GRANT EXECUTE ON FUNCTION notify_insert(text[]) TO PUBLIC;
GRANT EXECUTE ON FUNCTION lane_release_next(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION lane_unblock(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION payload_validate(text, text, jsonb) TO PUBLIC;
DROP VIEW action_status;
