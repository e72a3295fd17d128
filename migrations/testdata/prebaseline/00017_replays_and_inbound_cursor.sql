-- Two maintenance promises that the schema broke: retention once an action
-- was replayed, and KHOROS-origin records after a gap.
--
-- Retention and replays. A replay's replay_of was a foreign key to the
-- original with ON DELETE SET NULL: purging an original whose replay was
-- still kept made Postgres set the replay's replay_of to NULL, an update
-- that action_history_guard refuses (BQ002: what was enqueued is history),
-- so the batch failed, and every later run failed on the same original.
-- replay_of is now a plain historical reference: the id of the action the
-- replay was made from, kept as it was enqueued, which may name an action
-- that retention has deleted since. Keeping the original until its replays
-- go instead would keep rows (a payload is message text) past the
-- retention period for as long as a chain of replays, or a replay waiting
-- in a blocked lane, lives on; the replay itself holds the same payload.
-- Nothing needs the key: only botq's replay sets replay_of (the enqueuer
-- role may not), and it locks the original (FOR NO KEY UPDATE) in the
-- transaction that inserts the replay, while the purge skips locked rows,
-- so a replay never names an action that did not exist when it was made.
--
-- KHOROS-origin records. The reconciler stores the webhook deliveries Khoros
-- lists for each app (origin=KHOROS). It looked back a fixed two intervals,
-- so a record created during a pause, a restart, a leader change or any
-- longer gap was never read. inbound_cursor holds, per app, the time up to
-- which the listings have been read and stored; it is advanced in the
-- transaction that stores the records, so a crash between the listing and
-- the commit reads them again (they are upserted). A table of its own, not a
-- column of app: the app row is updated by every call (the rate limiter),
-- and the cursor's update must not hold that row's lock while a large
-- listing is stored.

-- +goose Up
ALTER TABLE action DROP CONSTRAINT action_replay_of_fkey;

CREATE TABLE inbound_cursor (
    app_id     text PRIMARY KEY REFERENCES app (id) ON DELETE CASCADE,
    -- When the last listing whose records are stored was asked for (by
    -- botq's clock); the next one reads from there, less a clock-skew
    -- margin.
    read_until timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE inbound_cursor;
-- NOT VALID: replays whose original was purged meanwhile keep their
-- replay_of (it cannot be changed); new rows are checked again.
ALTER TABLE action ADD CONSTRAINT action_replay_of_fkey
    FOREIGN KEY (replay_of) REFERENCES action (id) ON DELETE SET NULL NOT VALID;
