-- Indexes for the auditor's questions: one lane index for both the lane's
-- next action and the conversation's history, and one for an app's
-- failures.
--
-- A lane is a conversation (payload_lane), and the auditor's first
-- question is what botq sent to one conversation. The lane index was
-- partial (queued actions only), so that question read the whole action
-- table: its cost grew with the history kept. This index covers every
-- state, and keeps state before id in its key: the lane's next queued
-- action (lane_release_next, action_lanes_advance) is still found by one
-- descent straight to the lane's queued entries, without stepping over the
-- lane's finished actions, so that lookup stays the same however long the
-- conversation's history; a conversation's timeline reads the lane's
-- entries (a few, or a few hundred) and sorts them.
--
-- It costs one index entry per row version of an action with a lane where
-- the partial index had one per queued version. No update of an action
-- was HOT before (state is in action_state_created_idx), so no update
-- becomes more expensive in kind, only by that entry.
--
-- One app's failed actions of a time range (`botq actions list --app A
-- --state failed --from --to`, the same through /v1/actions) were every
-- app's failures of the range, read from the state index and filtered by
-- app. action_failed_app_idx has the app's failures only, by creation
-- time. Only failed actions have an entry, and the move into failed is an
-- update that writes every index already, so the rest pays nothing.
-- action_failed_idx (by finish time) stays for the console's overview.
--
-- The builds take a SHARE lock on action: enqueues wait for them (the
-- reads do not). On a large history, apply it when few enqueue.

-- +goose Up
CREATE INDEX action_lane_idx ON action (app_id, lane, state, id) WHERE lane IS NOT NULL;
DROP INDEX action_lane_queued_idx;
CREATE INDEX action_failed_app_idx ON action (app_id, created_at) WHERE state = 'failed';

-- +goose Down
DROP INDEX action_failed_app_idx;
CREATE INDEX action_lane_queued_idx ON action (app_id, lane, id) WHERE state = 'queued' AND lane IS NOT NULL;
DROP INDEX action_lane_idx;
