-- An action cancelled while its send's fate was unknown may have reached
-- Khoros. An `unknown` action (a respond, form or note whose call reached
-- the wire with no answer) could be cancelled and then replayed like any
-- other cancelled action, so a message Khoros had in fact delivered, whose
-- record the reconciler could not see yet (its listing failing), was sent a
-- second time. A cancel of an unknown action now asks Khoros first (one
-- listing of the app's BOT-origin records): a record found settles the
-- action and refuses the cancel; no record after the grace period means the
-- send never arrived and the cancel is clean. Where Khoros cannot answer
-- (the listing fails, no usable token, the app paused, or still within the
-- grace period) the action is cancelled with possibly_sent, and a replay of
-- it needs the operator's explicit allow_possibly_sent.
--
-- possibly_sent is set only together with the move into cancelled (a
-- constraint keeps it on cancelled actions only, and a trigger refuses any
-- other change of it): clearing it would let a plain replay send the message
-- again. It is not among the enqueued columns action_history_guard keeps
-- (it is not what was enqueued), and no statement of the result writer sets
-- it, so that trigger's UPDATE OF list keeps it off the hot path.

-- +goose Up
ALTER TABLE action ADD COLUMN possibly_sent boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT action_possibly_sent_cancelled CHECK (NOT possibly_sent OR state = 'cancelled');

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION action_update_refused() RETURNS trigger
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

CREATE TRIGGER action_possibly_sent_guard BEFORE UPDATE OF possibly_sent ON action
    FOR EACH ROW
    WHEN (NEW.possibly_sent IS DISTINCT FROM OLD.possibly_sent
          AND NOT (NEW.possibly_sent AND OLD.state <> 'cancelled' AND NEW.state = 'cancelled'))
    EXECUTE FUNCTION action_update_refused('possibly_sent');

-- Auditors and enqueuers see the flag: a bot that finds its action
-- cancelled must not take that as "not sent" when it is set.
CREATE OR REPLACE VIEW action_history AS
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
       a.finished_at,
       a.possibly_sent
FROM action a
LEFT JOIN river_job j ON j.id = a.river_job_id
LEFT JOIN request r ON r.request_id = a.request_id;

CREATE OR REPLACE VIEW action_status WITH (security_barrier) AS
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
       a.finished_at,
       a.possibly_sent
FROM action a
LEFT JOIN river_job j ON j.id = a.river_job_id
LEFT JOIN request r ON r.request_id = a.request_id
WHERE a.created_by = current_user;

-- +goose Down
DROP VIEW action_status;
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

DROP VIEW action_history;
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

-- The views were dropped with their grants.
SELECT grant_roles();

DROP TRIGGER action_possibly_sent_guard ON action;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION action_update_refused() RETURNS trigger
LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
BEGIN
    IF TG_ARGV[0] = 'history' THEN
        RAISE EXCEPTION 'botq: action % can change only its state and outcome; what was enqueued is history', OLD.id
            USING ERRCODE = 'BQ002';
    END IF;
    RAISE EXCEPTION 'botq: action % cannot go from % to %', OLD.id, OLD.state, NEW.state
        USING ERRCODE = 'BQ001', COLUMN = 'state';
END
$$;
-- +goose StatementEnd

ALTER TABLE action DROP COLUMN possibly_sent;
