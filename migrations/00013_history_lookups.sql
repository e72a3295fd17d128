-- Indexes for the auditor's questions whose cost grew with the history,
-- paid for by an index the hot path no longer writes on every result.
--
-- One app's failures in a time range are listed newest first by id. The
-- failures' index by app and creation time gave the rows of the range in
-- creation order, so the page read every failure of the range from the
-- table, then sorted them. With the id in the index, the listing picks its
-- page's ids from the index alone and reads only those rows.
--
-- The console filters an app's actions by author (payload author.id).
-- Nothing served that but a read of the app's actions. action_author_idx
-- has an entry for each action whose payload names an author (the
-- conversation kinds), by app, author and creation time: the order the
-- console pages in.
--
-- action_state_created_idx (state, creation time) had an entry for every
-- row version, so an action's result wrote a new one. What read it was the
-- live backlog (queued, retrying, unknown) per app, and retention, which
-- reads the oldest finished actions by creation time (action_created_idx
-- serves it). action_live_idx holds the live actions only: an enqueue
-- writes its entry as before, a result none.
--
-- The builds take a SHARE lock on action: enqueues wait for them (the
-- reads do not). On a large history, apply it when few enqueue.

-- +goose Up
DROP INDEX action_failed_app_idx;
CREATE INDEX action_failed_app_idx ON action (app_id, created_at) INCLUDE (id) WHERE state = 'failed';
CREATE INDEX action_author_idx ON action (app_id, (payload -> 'author' ->> 'id'), created_at)
    WHERE (payload -> 'author' ->> 'id') IS NOT NULL;
CREATE INDEX action_live_idx ON action (app_id, created_at) WHERE state IN ('queued', 'retrying', 'unknown');
DROP INDEX action_state_created_idx;

-- +goose Down
CREATE INDEX action_state_created_idx ON action (state, created_at);
DROP INDEX action_live_idx;
DROP INDEX action_author_idx;
DROP INDEX action_failed_app_idx;
CREATE INDEX action_failed_app_idx ON action (app_id, created_at) WHERE state = 'failed';
