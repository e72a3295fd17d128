package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Every statement botq runs on River's own tables is in this file. River
// owns them: botq changes a job's state only where River's API has no call
// for what botq needs in the same transaction as its own rows (a result
// batch, a cancel, a parked job released by the reconciler), and always as
// River would (a job River still runs is left to River, except in JobsEnd,
// which writes what its worker would return; see jobs/handoff.go). The
// enqueue triggers in the migrations create the jobs.

// riverJobJoin joins an action (aliased a) with its River job (aliased j),
// for listings that show a running action as running.
const riverJobJoin = `LEFT JOIN botq.river_job j ON j.id = a.river_job_id`

// JobEnd is a River job's new state, written with its result by JobsEnd.
type JobEnd struct {
	ID          int64
	Attempt     int
	State       string // a river_job_state: completed, cancelled, discarded or pending
	FinalizedAt *time.Time
	ErrData     []byte // one element of the job's errors (JSON), or nil
}

// HandoffError is the error River records for a job whose worker went
// before its result committed (jobs.errHandedOff); JobsEnd removes it.
const HandoffError = "botq: result written, commit pending"

// jobsEndSQL is River's JobSetStateIfRunningMany for the states botq sets
// (completed, cancelled, discarded, pending), without returning the rows
// (River's own query sends every job row back), and for the job's execution
// only: same attempt, and running or, when River wrote what a handed-off
// worker returned first (its transaction had rolled back), retryable or
// available with HandoffError last in its errors, which is removed.
const jobsEndSQL = `
UPDATE botq.river_job j
SET state = e.state::botq.river_job_state,
    finalized_at = coalesce(e.finalized_at, j.finalized_at),
    errors = CASE
        WHEN j.state <> 'running' AND e.err IS NULL THEN nullif(j.errors[:cardinality(j.errors)-1], '{}')
        WHEN j.state <> 'running' THEN j.errors[:cardinality(j.errors)-1] || e.err::jsonb
        WHEN e.err IS NULL THEN j.errors
        ELSE array_append(j.errors, e.err::jsonb) END
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[], $5::int[]) AS e(id, state, finalized_at, err, attempt)
WHERE j.id = e.id AND j.attempt = e.attempt
  AND (j.state = 'running'
       OR (j.state IN ('retryable', 'available') AND j.errors[cardinality(j.errors)]->>'error' = $6))`

// JobsEnd sets River jobs' new states with their results (see jobsEndSQL);
// db must be the results' transaction. A job no longer in the execution that
// made its result (River ran it again, an operator moved it) makes it fail
// with ErrConflict: the result belongs to an execution that is over.
func (s *Store) JobsEnd(ctx context.Context, db DBTX, jobs []JobEnd) error {
	var (
		ids    = make([]int64, len(jobs))
		states = make([]string, len(jobs))
		final  = make([]*time.Time, len(jobs))
		errs   = make([]*string, len(jobs))
		att    = make([]int32, len(jobs))
	)
	for i, j := range jobs {
		ids[i], states[i], final[i], att[i] = j.ID, j.State, j.FinalizedAt, int32(j.Attempt)
		if j.ErrData != nil {
			e := string(j.ErrData)
			errs[i] = &e
		}
	}
	tag, err := db.Exec(ctx, s.q(jobsEndSQL), ids, states, final, errs, att, HandoffError)
	if err != nil {
		return fmt.Errorf("end %d jobs: %w", len(jobs), mapError(err))
	}
	if n := tag.RowsAffected(); n != int64(len(jobs)) {
		return fmt.Errorf("end %d jobs: %d are still in the execution that made their result: %w", len(jobs), n, ErrConflict)
	}
	return nil
}

// AppWake makes the app's snoozed (scheduled) jobs available now.
func (s *Store) AppWake(ctx context.Context, db DBTX, appID string) error {
	_, err := db.Exec(ctx, s.q(`
		UPDATE botq.river_job j SET state = 'available', scheduled_at = now()
		FROM botq.action a
		WHERE a.app_id = $1 AND a.state IN ('queued', 'retrying') AND j.id = a.river_job_id
		  AND j.state IN ('scheduled', 'available', 'retryable') AND j.scheduled_at > now()`), appID)
	if err != nil {
		return fmt.Errorf("wake jobs of app %q: %w", appID, mapError(err))
	}
	return nil
}

// AppSlotWait records a running River job as parked until one of its app's
// concurrency slots frees, with the scheduled_at it has (its place in the
// queue). The worker then snoozes the job for long; a release makes it
// available again at its old place once River has made it scheduled
// (app_slot_wake). ok is false when the job was not running.
func (s *Store) AppSlotWait(ctx context.Context, db DBTX, appID string, jobID int64) (ok bool, err error) {
	tag, err := db.Exec(ctx, s.q(`
		INSERT INTO botq.app_slot_wait (app_id, river_job_id, scheduled_at)
		SELECT $1, id, scheduled_at FROM botq.river_job WHERE id = $2 AND state = 'running'
		ON CONFLICT (app_id, river_job_id) DO UPDATE SET since = now()`), appID, jobID)
	if err != nil {
		return false, fmt.Errorf("wait for a concurrency slot of app %q: %w", appID, mapError(err))
	}
	return tag.RowsAffected() == 1, nil
}

// ActionCancelRunning honours River's JobCancel of a running job (River UI,
// another River client, SQL with River's NOTIFY), which cancels only the
// worker's context and leaves the job to its worker: the job, still running
// at attempt, is cancelled, then the action by ActionCancel, in one
// transaction. Its worker calls it once its execution is over and sent
// nothing (its call was never made, or its result was written); a job no
// longer running at attempt is ErrConflict and nothing changes. The job is
// locked before the action, the order of a result batch. ActionCancel's
// errors apply (an action that is sent or finished is ErrConflict).
func (s *Store) ActionCancelRunning(ctx context.Context, db TxDB, actionID, jobID int64, attempt int, actor, reason string) (*Action, error) {
	var out *Action
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, s.q(`
			UPDATE botq.river_job SET state = 'cancelled', finalized_at = now()
			WHERE id = $1 AND attempt = $2 AND state = 'running'`), jobID, attempt)
		if err != nil {
			return fmt.Errorf("cancel running job %d: %w", jobID, mapError(err))
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("cancel running job %d: %w: it is no longer running attempt %d", jobID, ErrConflict, attempt)
		}
		out, err = s.ActionCancel(ctx, tx, actionID, actor, reason)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// jobLockAndCancel locks the River job of an action being cancelled and
// cancels it unless it is finalized, returning its state before ("" when
// it does not exist). A running or locked job is ErrInFlight.
func (s *Store) jobLockAndCancel(ctx context.Context, tx pgx.Tx, a *Action) (string, error) {
	var jobState string
	err := tx.QueryRow(ctx, s.q(`SELECT state::text FROM botq.river_job WHERE id = $1 FOR UPDATE NOWAIT`), a.RiverJobID).Scan(&jobState)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "55P03": // lock_not_available
		return "", fmt.Errorf("cancel action %d: %w", a.ID, ErrInFlight)
	case errors.Is(err, pgx.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("cancel action %d: lock job: %w", a.ID, mapError(err))
	case jobState == "running":
		return "", fmt.Errorf("cancel action %d: %w", a.ID, ErrInFlight)
	case jobState == "cancelled", jobState == "completed", jobState == "discarded":
		return jobState, nil
	}
	if _, err := tx.Exec(ctx, s.q(`
		UPDATE botq.river_job SET state = 'cancelled', finalized_at = now()
		WHERE id = $1`), a.RiverJobID); err != nil {
		return "", fmt.Errorf("cancel action %d: cancel job: %w", a.ID, mapError(err))
	}
	return jobState, nil
}

// jobCompleteParked completes the parked (pending) job of an ambiguous
// send that Khoros' record settled.
func (s *Store) jobCompleteParked(ctx context.Context, db DBTX, jobID int64) error {
	_, err := db.Exec(ctx, s.q(`
		UPDATE botq.river_job SET state = 'completed', finalized_at = now()
		WHERE id = $1 AND state = 'pending'`), jobID)
	return mapError(err)
}

// jobCancelWaiting cancels a job that is not running nor finalized.
func (s *Store) jobCancelWaiting(ctx context.Context, db DBTX, jobID int64) error {
	_, err := db.Exec(ctx, s.q(`
		UPDATE botq.river_job SET state = 'cancelled', finalized_at = now()
		WHERE id = $1 AND state IN ('pending', 'available', 'scheduled', 'retryable')`), jobID)
	return mapError(err)
}

// jobRelease makes a job that is not running nor finalized available now
// and wakes its queue's workers.
func (s *Store) jobRelease(ctx context.Context, db DBTX, jobID int64) error {
	var queue string
	err := db.QueryRow(ctx, s.q(`
		UPDATE botq.river_job SET state = 'available', scheduled_at = now()
		WHERE id = $1 AND state IN ('pending', 'available', 'scheduled', 'retryable')
		RETURNING queue`), jobID).Scan(&queue)
	if err != nil {
		return mapError(err)
	}
	if _, err := db.Exec(ctx, s.q(`SELECT botq.notify_insert(ARRAY[$1])`), queue); err != nil {
		return fmt.Errorf("wake workers: %w", mapError(err))
	}
	return nil
}

// JobPark returns a running job to pending, where only the reconciler
// moves it: a job made available by hand while its action waits for the
// reconciler.
func (s *Store) JobPark(ctx context.Context, db DBTX, jobID int64) error {
	_, err := db.Exec(ctx, s.q(`UPDATE botq.river_job SET state = 'pending' WHERE id = $1 AND state = 'running'`), jobID)
	if err != nil {
		return fmt.Errorf("park job %d: %w", jobID, mapError(err))
	}
	return nil
}

func (s *Store) parkedJob(ctx context.Context, db DBTX, jobID int64) (parkedJobState, error) {
	var j parkedJobState
	err := db.QueryRow(ctx, s.q(`
		SELECT state::text, metadata ? 'cancel_attempted_at' FROM botq.river_job WHERE id = $1`), jobID).Scan(&j.state, &j.cancelRequested)
	if errors.Is(err, pgx.ErrNoRows) {
		return parkedJobState{}, nil
	}
	if err != nil {
		return j, fmt.Errorf("read parked job %d: %w", jobID, mapError(err))
	}
	return j, nil
}

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

// RiverJobsPruneCompleted deletes at most limit jobs of queue that
// completed before olderThan, and returns how many it deleted. River's
// cleaner keeps every completed job for one retention period, whatever its
// queue; botq's maintenance jobs, dozens a minute, would fill River UI's
// completed list and hide the action jobs there, and nothing in them is
// needed once they completed (a failed run stays as River keeps it). Its
// equalities on state and queue lead River's fetch index, so it reads the
// queue's completed jobs only, not every completed job.
func (s *Store) RiverJobsPruneCompleted(ctx context.Context, db DBTX, queue string, olderThan time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, s.q(`
		DELETE FROM botq.river_job
		WHERE id IN (
			SELECT id FROM botq.river_job
			WHERE state = 'completed' AND queue = $1 AND finalized_at < $2
			LIMIT $3)`), queue, olderThan, limit)
	if err != nil {
		return 0, fmt.Errorf("prune completed jobs of queue %s: %w", queue, mapError(err))
	}
	return tag.RowsAffected(), nil
}
