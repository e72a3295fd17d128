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

// Each purge statement deletes at most one batch (retention_purge_part,
// which runs as the schema's owner: the runtime role may not delete audit
// rows itself), so with a pool every batch commits on its own and no lock
// is held for long.
const retentionPartSQL = `SELECT deleted, attempts FROM botq.retention_purge_part($1, $2, $3)`

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
	part := func(name string, count *int64) func(DBTX) (bool, error) {
		return func(db DBTX) (bool, error) {
			var deleted, attempts int64
			if err := db.QueryRow(ctx, s.q(retentionPartSQL), name, olderThan, batch).Scan(&deleted, &attempts); err != nil {
				return false, err
			}
			*count += deleted
			res.Attempts += attempts
			return deleted < int64(batch), nil
		}
	}
	purge("events", part("events", &res.Events))
	purge("requests", part("requests", &res.Requests))
	purge("actions", part("actions", &res.Actions))

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
