package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RetentionResult counts what a purge deleted.
type RetentionResult struct {
	Cutoff   time.Time
	Actions  int64
	Attempts int64
	Requests int64
	Events   int64
	// Failed lists the parts of the purge that failed; the counts are what
	// was deleted all the same.
	Failed []RetentionFailure
	// EventID is the `retention` event that records the purge.
	EventID int64
}

// RetentionFailure is a part of a purge (events, requests, actions) that
// failed, with its error. A failed part stops at its failed batch; the
// batches before it stay deleted, and the other parts still run.
type RetentionFailure struct {
	Part  string `json:"part"`
	Error string `json:"error"`
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

// retentionEventTimeout bounds the write of a purge's event once the run's
// context has ended (a run cut off by its deadline is recorded too).
const retentionEventTimeout = 10 * time.Second

// RetentionPurge deletes audit rows older than olderThan in batches of at
// most batch rows per statement: events and settled request records first
// seen before it, and finished actions (succeeded, failed, cancelled) that
// finished before it, with their attempts, except an action a lane still
// points at. A replay of a purged action keeps its replay_of (the purged
// id: replay_of is not a foreign key). With a pool each batch commits on its
// own; in a transaction each batch runs in a savepoint and everything
// commits together.
//
// Every run records exactly one `retention` event with the counts (even
// when nothing was deleted) and, when a part failed, which part and why; a
// part that fails does not stop the others, because what the parts before
// it deleted is gone either way and must be on record. It returns the
// counts, and the failed parts and a failed event write joined as the
// error. River's own rows are River's job cleaner's business.
func (s *Store) RetentionPurge(ctx context.Context, db DBTX, olderThan time.Time, batch int) (*RetentionResult, error) {
	if batch <= 0 {
		batch = 1000
	}
	res := &RetentionResult{Cutoff: olderThan}
	var errs []error
	purge := func(part string, step func(DBTX) (done bool, err error)) {
		for {
			var done bool
			err := inSavepoint(ctx, db, func(db DBTX) error {
				var err error
				done, err = step(db)
				return err
			})
			if err == nil && !done {
				err = ctx.Err()
			}
			if err != nil {
				err = fmt.Errorf("purge %s: %w", part, mapError(err))
				res.Failed = append(res.Failed, RetentionFailure{Part: part, Error: err.Error()})
				errs = append(errs, err)
				return
			}
			if done {
				return
			}
		}
	}
	deleteBatch := func(sql string, count *int64) func(DBTX) (bool, error) {
		return func(db DBTX) (bool, error) {
			tag, err := db.Exec(ctx, s.q(sql), olderThan, batch)
			if err != nil {
				return false, err
			}
			*count += tag.RowsAffected()
			return tag.RowsAffected() < int64(batch), nil
		}
	}
	purge("events", deleteBatch(retentionEventsSQL, &res.Events))
	purge("requests", deleteBatch(retentionRequestsSQL, &res.Requests))
	purge("actions", func(db DBTX) (bool, error) {
		var actions, attempts int64
		if err := db.QueryRow(ctx, s.q(retentionActionsSQL), olderThan, batch).Scan(&actions, &attempts); err != nil {
			return false, err
		}
		res.Actions += actions
		res.Attempts += attempts
		return actions < int64(batch), nil
	})

	after := map[string]any{
		"cutoff": olderThan.UTC(), "actions": res.Actions, "attempts": res.Attempts,
		"requests": res.Requests, "events": res.Events,
	}
	if len(res.Failed) > 0 {
		after["failed"] = res.Failed
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), retentionEventTimeout)
	defer cancel()
	id, err := s.EventInsert(ectx, db, EventInsertParams{
		Kind: "retention", Actor: "botq", Reason: "audit rows older than the retention period", After: after,
	})
	if err != nil {
		errs = append(errs, err)
	}
	res.EventID = id
	return res, errors.Join(errs...)
}

// inSavepoint runs fn in a savepoint when db is a transaction, so that a
// failed statement leaves the transaction usable for what follows; on
// anything else it runs fn on db.
func inSavepoint(ctx context.Context, db DBTX, fn func(DBTX) error) error {
	tx, ok := db.(pgx.Tx)
	if !ok {
		return fn(db)
	}
	return pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { return fn(sp) })
}
