package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// RiverJob is a River job as seen by botq: its kind and state and, when
// its args name an existing action ({"action_id": N}), that action.
type RiverJob struct {
	ID    int64
	Kind  string
	State string // a river_job_state
	// CancelRequested: River's JobCancel reached the job
	// (cancel_attempted_at in its metadata).
	CancelRequested bool
	// ActionID is 0 when the args name no existing action.
	ActionID    int64
	AppID       string
	ActionState ActionState
	// ActionJob reports whether the action's own job is this one.
	ActionJob bool
}

// Finalized reports whether River will not run the job again by itself
// (completed, cancelled, discarded): River's cleaner deletes such jobs
// after its retention periods.
func (j *RiverJob) Finalized() bool {
	switch j.State {
	case "completed", "cancelled", "discarded":
		return true
	}
	return false
}

// RiverJobList returns the River jobs of ids that exist, in id order, each
// with the action its args name.
func (s *Store) RiverJobList(ctx context.Context, db DBTX, ids []int64) ([]*RiverJob, error) {
	rows, err := db.Query(ctx, s.q(`
		SELECT j.id, j.kind, j.state::text, j.metadata ? 'cancel_attempted_at',
		       coalesce(a.id, 0), coalesce(a.app_id, ''), coalesce(a.state, ''), coalesce(a.river_job_id = j.id, false)
		FROM botq.river_job j
		LEFT JOIN botq.action a ON a.id = CASE WHEN j.args->>'action_id' ~ '^[0-9]{1,18}$' THEN (j.args->>'action_id')::bigint END
		WHERE j.id = ANY($1)
		ORDER BY j.id`), ids)
	if err != nil {
		return nil, fmt.Errorf("list River jobs: %w", mapError(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*RiverJob, error) {
		var j RiverJob
		var state string
		err := r.Scan(&j.ID, &j.Kind, &j.State, &j.CancelRequested, &j.ActionID, &j.AppID, &state, &j.ActionJob)
		j.ActionState = ActionState(state)
		return &j, err
	})
	if err != nil {
		return nil, fmt.Errorf("list River jobs: %w", mapError(err))
	}
	return out, nil
}
