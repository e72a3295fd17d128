-- Lanes advance once per statement, not once per finished action (issue 12).
-- auto_explain of the result writer's statement during a drain (30 finished
-- actions per statement, each alone in its lane) put the row trigger
-- action_lane_advance at 41% of the statement: 117 us per action for a lock,
-- a lookup and a delete, each a statement of its own in plpgsql, and a call of
-- lane_release_next. action_lanes_advance does the same for every lane a
-- statement finished the head of with two statements: one locks the lanes of
-- the rows the statement sent or finished and keeps those whose head they
-- are, one moves them on.
--
-- It reads only the new rows. An action is its lane's head only while it is
-- queued, retrying or unknown (the head moves on, or the lane is blocked, as
-- soon as it is sent or finished), so a new row that is sent, succeeded, failed
-- or cancelled and is still its lane's head is one whose call just ended: the
-- row trigger's condition on the old state adds nothing. Reading only new rows
-- also avoids a join of the two transition tables.
--
-- The lanes are locked in one statement, in (app_id, lane) order, the order
-- the enqueue triggers and enqueue_many lock them in; so the result writer no
-- longer locks a batch's lanes before its update (a row trigger locked them in
-- the order the update visited the rows). The lookup of each lane's next
-- queued action is a statement after the lock, so it sees a follower enqueued
-- while the lock was awaited.
--
-- Its two statements use generic plans (force_generic_plan), planned once
-- per session: with `auto`, Postgres compared each custom plan (which knows
-- how many lanes the arrays hold) with a generic one (which guesses 10) and
-- kept planning both statements again on every call. pgbench, one client, an
-- INSERT and a single-row UPDATE to sent per transaction: 1.37-1.54 ms with
-- the row trigger, 2.12-2.26 with `auto`, 1.46-1.92 (as before, within the
-- noise of this machine) with generic plans. The enable_* settings keep those
-- plans on the primary-key and action_lane_queued_idx lookups the row trigger
-- used, whatever the tables' statistics were when the session made them; a
-- precaution (in a trial, the tables analyzed while empty and then 200,000
-- lanes added, the plans stayed on the indexes without them too). Nested
-- loops over index lookups are right for any number of lanes.
--
-- Unlike the row trigger it fires on every UPDATE of action (a trigger with a
-- transition table cannot name columns); an update that sends or finishes no
-- action costs one scan of its new rows. The planner settings also apply to
-- what the function calls (notify_insert), which has no other plan.
--
-- action_lane_advance() stays (unused) for the Down migration; lane_unblock
-- still uses lane_release_next.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION action_lanes_advance() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    apps text[];
    lanes text[];
    heads bigint[];
    blocks boolean[];
    queues text[];
BEGIN
    -- Every finished row's lane is locked, its head or not, and the head is
    -- compared after the lock, with the lane's latest version: a head
    -- finishing in another transaction may be making this row the head (a
    -- follower cancelled meanwhile), and a comparison before the lock would
    -- see the old head, skip the lane, and leave it headed by a cancelled
    -- action for good.
    -- (MATERIALIZED keeps Postgres from pushing that comparison into the
    -- locking query.)
    WITH locked AS MATERIALIZED (
        SELECT l.app_id, l.lane, l.head_action_id, n.id,
               n.state = 'failed' AND EXISTS (SELECT 1 FROM app p WHERE p.id = n.app_id AND p.lane_on_failure = 'block') AS block
        FROM new_rows n
        JOIN lane l ON l.app_id = n.app_id AND l.lane = n.lane
        WHERE n.state IN ('sent', 'succeeded', 'failed', 'cancelled')
        ORDER BY l.app_id, l.lane
        FOR UPDATE OF l
    )
    SELECT array_agg(x.app_id), array_agg(x.lane), array_agg(x.id), array_agg(x.block)
    INTO apps, lanes, heads, blocks
    FROM locked x
    WHERE x.head_action_id = x.id;
    IF apps IS NULL THEN
        RETURN NULL;
    END IF;

    IF true = ANY (blocks) THEN
        UPDATE lane l SET head_action_id = NULL, blocked_by = b.id, updated_at = now()
        FROM unnest(apps, lanes, heads, blocks) AS b(app_id, lane, id, block)
        WHERE b.block AND l.app_id = b.app_id AND l.lane = b.lane;
        INSERT INTO event (app_id, action_id, kind, actor, reason, after)
        SELECT b.app_id, b.id, 'lane_blocked', 'botq', 'lane_on_failure is block and the head failed',
               jsonb_build_object('lane', b.lane)
        FROM unnest(apps, lanes, heads, blocks) AS b(app_id, lane, id, block)
        WHERE b.block;
    END IF;

    -- What lane_release_next does for one lane, for all of them.
    WITH nxt AS (
        SELECT b.app_id, b.lane, q.id, q.river_job_id
        FROM unnest(apps, lanes, blocks) AS b(app_id, lane, block)
        LEFT JOIN LATERAL (
            SELECT a.id, a.river_job_id
            FROM action a
            WHERE a.app_id = b.app_id AND a.lane = b.lane AND a.state = 'queued'
            ORDER BY a.id
            LIMIT 1
        ) q ON true
        WHERE NOT b.block
    ), gone AS (
        DELETE FROM lane l USING nxt
        WHERE nxt.id IS NULL AND l.app_id = nxt.app_id AND l.lane = nxt.lane
    ), moved AS (
        UPDATE lane l SET head_action_id = nxt.id, blocked_by = NULL, updated_at = now()
        FROM nxt
        WHERE nxt.id IS NOT NULL AND l.app_id = nxt.app_id AND l.lane = nxt.lane
    ), woken AS (
        UPDATE river_job j SET state = 'available', scheduled_at = least(j.scheduled_at, now())
        FROM nxt
        WHERE j.id = nxt.river_job_id AND j.state = 'pending'
        RETURNING j.queue
    )
    SELECT array_agg(DISTINCT queue) INTO queues FROM woken;
    IF queues IS NOT NULL THEN
        PERFORM notify_insert(queues);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

DROP TRIGGER action_lane_advance ON action;
CREATE TRIGGER action_lanes_advance AFTER UPDATE ON action
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION action_lanes_advance();

-- +goose Down
DROP TRIGGER action_lanes_advance ON action;
DROP FUNCTION action_lanes_advance();
CREATE TRIGGER action_lane_advance AFTER UPDATE OF state ON action
    FOR EACH ROW
    WHEN (NEW.lane IS NOT NULL
          AND OLD.state IN ('queued', 'retrying', 'unknown')
          AND NEW.state IN ('sent', 'succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION action_lane_advance();
