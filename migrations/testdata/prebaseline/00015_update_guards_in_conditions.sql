-- An action's update is checked by trigger conditions, not by a function
-- call per row (issue 12). action_before_update, a SECURITY DEFINER plpgsql
-- function with a search_path of its own, ran for every updated row: it
-- compared the enqueued columns, looked the move up in action_transition
-- with a query, and set updated_at and finished_at. Every finished call
-- updates its action, so it ran once per call in the result statement.
-- EXPLAIN ANALYZE of that statement for 50 finished actions (a scratch
-- schema after a 100,000 drain, nine runs each, medians over four rounds):
-- 6.4-6.8 ms with the function, 5.6-5.9 ms with this migration's triggers.
--
-- Now the two checks are the WHEN conditions of two BEFORE UPDATE triggers,
-- which Postgres evaluates itself, calling their function (which only
-- refuses) when a check fails: a change to what was enqueued (BQ002), and a
-- move not in action_transition (BQ001). The table stays the list of moves:
-- the condition is built from its rows here, and a later change to the table
-- needs a migration that builds it again (store TestActionTransitionTable
-- holds the two to the same list). action_before_update keeps only the
-- timestamps, with no SECURITY DEFINER and no search_path of its own, which
-- it no longer needs: it reads no table. (Its plan_cache_mode stays pinned, as
-- 00008 pinned every row trigger's on action: measured, it costs nothing
-- here, within the noise.)

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION action_before_update() RETURNS trigger
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

-- +goose StatementBegin
-- action_update_refused raises the error of the check whose trigger fired:
-- TG_ARGV[0] names it.
CREATE FUNCTION action_update_refused() RETURNS trigger
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

-- +goose Down
DROP TRIGGER action_state_guard ON action;
DROP TRIGGER action_history_guard ON action;
DROP FUNCTION action_update_refused();

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION action_before_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET plan_cache_mode = auto AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.app_id <> OLD.app_id OR NEW.kind <> OLD.kind
       OR NEW.payload IS DISTINCT FROM OLD.payload OR NEW.idempotency_key <> OLD.idempotency_key
       OR NEW.lane IS DISTINCT FROM OLD.lane OR NEW.river_job_id <> OLD.river_job_id
       OR NEW.replay_of IS DISTINCT FROM OLD.replay_of OR NEW.created_at <> OLD.created_at
       OR NEW.created_by <> OLD.created_by THEN
        RAISE EXCEPTION 'botq: action % can change only its state and outcome; what was enqueued is history', OLD.id
            USING ERRCODE = 'BQ002';
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF NOT EXISTS (SELECT 1 FROM action_transition WHERE from_state = OLD.state AND to_state = NEW.state) THEN
            RAISE EXCEPTION 'botq: action % cannot go from % to %', OLD.id, OLD.state, NEW.state
                USING ERRCODE = 'BQ001', COLUMN = 'state';
        END IF;
        IF NEW.state IN ('succeeded', 'failed', 'cancelled') THEN
            NEW.finished_at := coalesce(NEW.finished_at, now());
        END IF;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
-- +goose StatementEnd
