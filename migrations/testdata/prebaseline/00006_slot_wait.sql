-- Fair turns for apps at their concurrency limit, and for lanes.
--
-- River fetches jobs in (priority, scheduled_at, id) order. A job that found
-- its app's slots all taken used to snooze briefly, which set its
-- scheduled_at to a moment later than every job already queued: in a
-- backlog, an app at its limit went to the back of the whole queue after its
-- first turn, and its free slots stood idle until the other apps' backlog was
-- worked off. Such a job now parks: it records itself in app_slot_wait with
-- the scheduled_at it had, and snoozes for long (River's completer makes it
-- scheduled, without using an attempt). A freed slot makes the oldest parked
-- job available again with its old scheduled_at: it comes back at the head of
-- the queue, where it was. If nothing wakes it, the long snooze ends anyway.
--
-- The job is woken only once River's completer has made it scheduled. River
-- completes jobs asynchronously and only checks that a job is running: a job
-- woken and fetched again before the completer handled its previous run
-- would be marked completed by that stale completion while it runs.
--
-- For the same reason as above, the next action of a lane keeps its place
-- (the time it was enqueued) instead of taking a new one when its lane moves
-- on.

-- +goose Up
CREATE TABLE app_slot_wait (
    app_id       text NOT NULL REFERENCES app (id) ON DELETE CASCADE,
    river_job_id bigint NOT NULL,
    scheduled_at timestamptz NOT NULL,
    since        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, river_job_id)
);

-- app_slot_wake makes up to n of the app's oldest parked jobs available and
-- returns how many it woke. Waiters another transaction is waking are
-- skipped, not waited for; so is a job still running (River's completer has
-- not handled its snooze yet). A waiter whose job went on without it
-- (cancelled, or its snooze ran out) is dropped without using up a wake-up.
-- One primary-key lookup per waiter: a join of the waiters to river_job is
-- planned as a scan of river_job, on every release.
-- +goose StatementBegin
CREATE FUNCTION app_slot_wake(p_app_id text, p_n integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    w      record;
    st     river_job_state;
    q      text;
    queues text[] := '{}';
    woken  integer := 0;
BEGIN
    IF p_n <= 0 THEN
        RETURN 0;
    END IF;
    FOR w IN
        SELECT river_job_id, scheduled_at FROM app_slot_wait
        WHERE app_id = p_app_id
        ORDER BY river_job_id
        FOR UPDATE SKIP LOCKED
    LOOP
        SELECT state INTO st FROM river_job WHERE id = w.river_job_id;
        IF st = 'running' THEN
            CONTINUE;
        END IF;
        IF st = 'scheduled' THEN
            UPDATE river_job SET state = 'available', scheduled_at = w.scheduled_at
            WHERE id = w.river_job_id
            RETURNING queue INTO q;
            woken := woken + 1;
            IF NOT q = ANY (queues) THEN
                queues := queues || q;
            END IF;
        END IF;
        DELETE FROM app_slot_wait WHERE app_id = p_app_id AND river_job_id = w.river_job_id;
        EXIT WHEN woken >= p_n;
    END LOOP;
    IF woken > 0 THEN
        PERFORM notify_insert(queues);
    END IF;
    RETURN woken;
END
$$;
-- +goose StatementEnd

-- app_slot_wake_free wakes, for one app or for every app with waiters, as
-- many waiters as the app has free slots (all of them when it has no limit
-- any more). A worker calls it after it starts waiting, so a slot freed
-- meanwhile is not missed; periodic maintenance calls it (for every app) for
-- slots whose holder died and whose lease ran out.
-- +goose StatementBegin
CREATE FUNCTION app_slot_wake_free(p_app_id text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    r     record;
    free  integer;
    total integer := 0;
BEGIN
    FOR r IN
        SELECT w.app_id, count(*)::integer AS waiting, max(a.concurrency_limit) AS lim
        FROM app_slot_wait w JOIN app a ON a.id = w.app_id
        WHERE p_app_id IS NULL OR w.app_id = p_app_id
        GROUP BY w.app_id
    LOOP
        IF r.lim IS NULL THEN
            free := r.waiting;
        ELSE
            SELECT count(*) INTO free FROM app_slot
            WHERE app_id = r.app_id AND (holder IS NULL OR lease_until < clock_timestamp());
        END IF;
        total := total + app_slot_wake(r.app_id, least(free, r.waiting));
    END LOOP;
    RETURN total;
END
$$;
-- +goose StatementEnd

-- A raised or removed limit frees slots at once.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION app_slot_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM app_slot WHERE app_id = NEW.id AND slot > coalesce(NEW.concurrency_limit, 0);
    INSERT INTO app_slot (app_id, slot)
    SELECT NEW.id, s FROM generate_series(1, coalesce(NEW.concurrency_limit, 0)) AS s
    ON CONFLICT DO NOTHING;
    PERFORM app_slot_wake_free(NEW.id);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lane_release_next(p_app_id text, p_lane text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    next_id bigint;
    next_job bigint;
    next_queue text;
BEGIN
    SELECT id, river_job_id INTO next_id, next_job
    FROM action
    WHERE app_id = p_app_id AND lane = p_lane AND state = 'queued'
    ORDER BY id
    LIMIT 1;
    IF NOT FOUND THEN
        DELETE FROM lane WHERE app_id = p_app_id AND lane = p_lane;
        RETURN NULL;
    END IF;
    UPDATE lane SET head_action_id = next_id, blocked_by = NULL, updated_at = now()
    WHERE app_id = p_app_id AND lane = p_lane;
    UPDATE river_job SET state = 'available', scheduled_at = least(scheduled_at, now())
    WHERE id = next_job AND state = 'pending'
    RETURNING queue INTO next_queue;
    IF next_queue IS NOT NULL THEN
        PERFORM notify_insert(ARRAY[next_queue]);
    END IF;
    RETURN next_id;
END
$$;
-- +goose StatementEnd

REVOKE EXECUTE ON FUNCTION app_slot_wake(text, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION app_slot_wake_free(text) FROM PUBLIC;

-- +goose Down
-- Parked jobs go back to River as they would have before: available.
UPDATE river_job j SET state = 'available', scheduled_at = w.scheduled_at
FROM app_slot_wait w
WHERE j.id = w.river_job_id AND j.state = 'scheduled';

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lane_release_next(p_app_id text, p_lane text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    next_id bigint;
    next_job bigint;
    next_queue text;
BEGIN
    SELECT id, river_job_id INTO next_id, next_job
    FROM action
    WHERE app_id = p_app_id AND lane = p_lane AND state = 'queued'
    ORDER BY id
    LIMIT 1;
    IF NOT FOUND THEN
        DELETE FROM lane WHERE app_id = p_app_id AND lane = p_lane;
        RETURN NULL;
    END IF;
    UPDATE lane SET head_action_id = next_id, blocked_by = NULL, updated_at = now()
    WHERE app_id = p_app_id AND lane = p_lane;
    UPDATE river_job SET state = 'available', scheduled_at = now()
    WHERE id = next_job AND state = 'pending'
    RETURNING queue INTO next_queue;
    IF next_queue IS NOT NULL THEN
        PERFORM notify_insert(ARRAY[next_queue]);
    END IF;
    RETURN next_id;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION app_slot_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM app_slot WHERE app_id = NEW.id AND slot > coalesce(NEW.concurrency_limit, 0);
    INSERT INTO app_slot (app_id, slot)
    SELECT NEW.id, s FROM generate_series(1, coalesce(NEW.concurrency_limit, 0)) AS s
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

DROP FUNCTION app_slot_wake_free(text);
DROP FUNCTION app_slot_wake(text, integer);
DROP TABLE app_slot_wait;
