-- One lane index for both the lane's next action and the conversation's
-- history.
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
-- The build takes a SHARE lock on action: enqueues wait for it (the reads
-- do not). On a large history, apply it when few enqueue.

-- +goose Up
CREATE INDEX action_lane_idx ON action (app_id, lane, state, id) WHERE lane IS NOT NULL;
DROP INDEX action_lane_queued_idx;

-- +goose Down
CREATE INDEX action_lane_queued_idx ON action (app_id, lane, id) WHERE state = 'queued' AND lane IS NOT NULL;
DROP INDEX action_lane_idx;
