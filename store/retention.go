package store

import (
	"context"
	"fmt"
	"time"
)

// RetentionResult counts what a purge deleted.
type RetentionResult struct {
	Cutoff   time.Time
	Actions  int64
	Attempts int64
	Requests int64
	Events   int64
	// EventID is the `retention` event that records the purge.
	EventID int64
}

// Each purge statement deletes at most one batch, so with a pool every batch
// commits on its own and no lock is held for long.
const (
	retentionEventsSQL = `
WITH doomed AS (
	SELECT id FROM botq.event WHERE at < $1 ORDER BY at LIMIT $2
)
DELETE FROM botq.event e USING doomed WHERE e.id = doomed.id`

	retentionRequestsSQL = `
WITH doomed AS (
	SELECT request_id FROM botq.request
	WHERE first_seen_at < $1 AND state <> 'PENDING'
	ORDER BY first_seen_at
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
DELETE FROM botq.request r USING doomed WHERE r.request_id = doomed.request_id`

	// A lane's head and the failed action that blocks a lane are kept: the
	// lane row points at them. finished_at >= created_at, so the created_at
	// bound only lets the state index find the candidates.
	retentionActionsSQL = `
WITH doomed AS (
	SELECT a.id FROM botq.action a
	WHERE a.state IN ('succeeded', 'failed', 'cancelled')
	  AND a.created_at < $1 AND a.finished_at < $1
	  AND NOT EXISTS (SELECT 1 FROM botq.lane l
	                  WHERE l.app_id = a.app_id AND l.lane = a.lane
	                    AND (l.head_action_id = a.id OR l.blocked_by = a.id))
	ORDER BY a.created_at
	LIMIT $2
	FOR UPDATE SKIP LOCKED
), attempts AS (
	DELETE FROM botq.attempt t USING doomed WHERE t.action_id = doomed.id
	RETURNING 1
), actions AS (
	DELETE FROM botq.action a USING doomed WHERE a.id = doomed.id
	RETURNING 1
)
SELECT (SELECT count(*) FROM actions), (SELECT count(*) FROM attempts)`
)

// RetentionPurge deletes audit rows older than olderThan in batches of at
// most batch rows per statement: events and settled request records first
// seen before it, and finished actions (succeeded, failed, cancelled) that
// finished before it, with their attempts, except an action a lane still
// points at. With a pool each batch commits on its own; in a transaction
// everything commits together. It records one `retention` event with the
// counts (even when nothing was deleted) and returns them. River's own rows
// are River's job cleaner's business.
func (s *Store) RetentionPurge(ctx context.Context, db DBTX, olderThan time.Time, batch int) (*RetentionResult, error) {
	if batch <= 0 {
		batch = 1000
	}
	res := &RetentionResult{Cutoff: olderThan}
	purge := func(what string, sql string, count *int64) error {
		for {
			tag, err := db.Exec(ctx, s.q(sql), olderThan, batch)
			if err != nil {
				return fmt.Errorf("purge %s: %w", what, mapError(err))
			}
			*count += tag.RowsAffected()
			if tag.RowsAffected() < int64(batch) {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	if err := purge("events", retentionEventsSQL, &res.Events); err != nil {
		return res, err
	}
	if err := purge("requests", retentionRequestsSQL, &res.Requests); err != nil {
		return res, err
	}
	for {
		var actions, attempts int64
		if err := db.QueryRow(ctx, s.q(retentionActionsSQL), olderThan, batch).Scan(&actions, &attempts); err != nil {
			return res, fmt.Errorf("purge actions: %w", mapError(err))
		}
		res.Actions += actions
		res.Attempts += attempts
		if actions < int64(batch) {
			break
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	id, err := s.EventInsert(ctx, db, EventInsertParams{
		Kind: "retention", Actor: "botq", Reason: "audit rows older than the retention period",
		After: map[string]any{
			"cutoff": olderThan.UTC(), "actions": res.Actions, "attempts": res.Attempts,
			"requests": res.Requests, "events": res.Events,
		},
	})
	if err != nil {
		return res, err
	}
	res.EventID = id
	return res, nil
}
