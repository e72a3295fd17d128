-- Fair turns for apps at their concurrency limit, and for lanes.
--
-- River fetches jobs in (priority, scheduled_at, id) order. A job that found
-- its app's slots all taken used to snooze, which set its scheduled_at to a
-- moment later than every job already queued: in a backlog, an app at its
-- limit went to the back of the whole queue after its first turn, and its
-- free slots stood idle until the other apps' backlog was worked off. Such a
-- job now waits in app_slot_wait with its River job pending, keeping its
-- scheduled_at, and a freed slot makes the oldest waiter available again: it
-- comes back at the head of the queue, where it was.
--
-- For the same reason, the next action of a lane keeps its place (the time it
-- was enqueued) instead of taking a new one when its lane moves on.

-- +goose Up
CREATE TABLE app_slot_wait (
    app_id       text NOT NULL REFERENCES app (id) ON DELETE CASCADE,
    river_job_id bigint NOT NULL,
    since        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, river_job_id)
);

-- app_slot_wake makes up to n of the app's oldest waiting jobs available and
-- returns how many it woke. Waiters another transaction is waking are
-- skipped, not waited for. A waiter whose job no longer waits (cancelled
-- meanwhile) is dropped without using up a wake-up: the loop takes the next.
-- The waiters are not joined to river_job to skip those: that join is
-- planned as a scan of river_job, on every release.
-- +goose StatementBegin
CREATE FUNCTION app_slot_wake(p_app_id text, p_n integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    queues  text[];
    taken   integer;
    woken   integer;
    total   integer := 0;
BEGIN
    WHILE total < p_n LOOP
        WITH w AS (
            DELETE FROM app_slot_wait
            WHERE (app_id, river_job_id) IN (
                SELECT app_id, river_job_id FROM app_slot_wait
                WHERE app_id = p_app_id
                ORDER BY river_job_id
                LIMIT p_n - total
                FOR UPDATE SKIP LOCKED)
            RETURNING river_job_id
        ), j AS (
            UPDATE river_job SET state = 'available'
            WHERE id IN (SELECT river_job_id FROM w) AND state = 'pending'
            RETURNING queue
        )
        SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM j), (SELECT array_agg(DISTINCT queue) FROM j)
        INTO taken, woken, queues;
        IF queues IS NOT NULL THEN
            PERFORM notify_insert(queues);
        END IF;
        total := total + woken;
        EXIT WHEN taken = 0;
    END LOOP;
    RETURN total;
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
-- Waiting jobs go back to River as they would have before: available.
UPDATE river_job SET state = 'available'
WHERE id IN (SELECT river_job_id FROM app_slot_wait) AND state = 'pending';

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
