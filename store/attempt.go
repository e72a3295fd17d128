package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// AttemptOutcome is what botq made of one HTTP call.
type AttemptOutcome string

// Attempt outcomes.
const (
	OutcomeOK      AttemptOutcome = "ok"      // Khoros accepted the call
	OutcomeRetry   AttemptOutcome = "retry"   // retried with backoff (5xx, timeout before sending, control 409)
	OutcomeSnooze  AttemptOutcome = "snooze"  // retried later without using an attempt (429, Retry-After)
	OutcomeCancel  AttemptOutcome = "cancel"  // not retried (4xx)
	OutcomeUnknown AttemptOutcome = "unknown" // sent, no answer: the reconciler decides
)

// Attempt is one HTTP call made for an action. Attempts are never changed.
type Attempt struct {
	ID              int64
	ActionID        int64
	Number          int
	RiverJobID      int64
	JobAttempt      int
	StartedAt       time.Time
	Duration        time.Duration
	WireSent        bool
	HTTPStatus      int // 0 when no response arrived
	RequestID       string
	Outcome         AttemptOutcome
	Error           string
	ResponseExcerpt string
	Worker          string
	CreatedAt       time.Time
}

// MaxResponseExcerpt bounds the response excerpt kept per attempt.
const MaxResponseExcerpt = 2048

// AttemptRecordParams is one finished call and what it does to its action.
type AttemptRecordParams struct {
	ActionID        int64
	RiverJobID      int64
	JobAttempt      int
	StartedAt       time.Time
	Duration        time.Duration
	WireSent        bool
	HTTPStatus      int
	RequestID       string
	Outcome         AttemptOutcome
	Error           string
	ResponseExcerpt string
	Worker          string
	// NewState moves the action ("" leaves it). LastError replaces the
	// action's last error when non-nil.
	NewState  ActionState
	LastError *string
}

const attemptRecordSQL = `
WITH a AS (
	UPDATE botq.action
	SET attempt_count = attempt_count + 1,
	    state = coalesce(nullif($11, ''), state),
	    last_error = CASE WHEN $12::boolean THEN nullif($13, '') ELSE last_error END,
	    request_id = coalesce(nullif($8, ''), request_id)
	WHERE id = $1
	RETURNING id, attempt_count
)
INSERT INTO botq.attempt (action_id, number, river_job_id, job_attempt, started_at, duration_ms, wire_sent,
	http_status, request_id, outcome, error, response_excerpt, worker)
SELECT a.id, a.attempt_count, $2, $3, $4, $5, $6, nullif($7, 0), nullif($8, ''), $9, nullif($10, ''),
	nullif(left($14, 2048), ''), $15
FROM a
RETURNING number`

func (p *AttemptRecordParams) args() []any {
	lastErr := ""
	if p.LastError != nil {
		lastErr = CleanText(*p.LastError, 4096)
	}
	return []any{p.ActionID, p.RiverJobID, p.JobAttempt, p.StartedAt, float64(p.Duration) / float64(time.Millisecond),
		p.WireSent, p.HTTPStatus, p.RequestID, string(p.Outcome), CleanText(p.Error, 4096), string(p.NewState),
		p.LastError != nil, lastErr, CleanText(p.ResponseExcerpt, MaxResponseExcerpt), p.Worker}
}

// CleanText makes text from outside (error bodies, messages) storable: valid
// UTF-8, no NUL bytes (Postgres text refuses both), at most max bytes.
func CleanText(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "")
}

// AttemptRecord appends the attempt, counts it on its action and applies the
// action's new state, in one statement. It returns the attempt's number.
func (s *Store) AttemptRecord(ctx context.Context, db DBTX, p *AttemptRecordParams) (int, error) {
	var n int
	if err := db.QueryRow(ctx, s.q(attemptRecordSQL), p.args()...).Scan(&n); err != nil {
		return 0, fmt.Errorf("record attempt of action %d: %w", p.ActionID, mapError(err))
	}
	return n, nil
}

// AttemptList returns an action's attempts in order.
func (s *Store) AttemptList(ctx context.Context, db DBTX, actionID int64) ([]*Attempt, error) {
	rows, err := db.Query(ctx, s.q(`
		SELECT id, action_id, number, river_job_id, job_attempt, started_at, duration_ms, wire_sent,
		       coalesce(http_status, 0), coalesce(request_id, ''), outcome, coalesce(error, ''),
		       coalesce(response_excerpt, ''), worker, created_at
		FROM botq.attempt WHERE action_id = $1 ORDER BY number`), actionID)
	if err != nil {
		return nil, fmt.Errorf("list attempts of action %d: %w", actionID, mapError(err))
	}
	defer rows.Close()
	var out []*Attempt
	for rows.Next() {
		var a Attempt
		var ms float64
		var outcome string
		if err := rows.Scan(&a.ID, &a.ActionID, &a.Number, &a.RiverJobID, &a.JobAttempt, &a.StartedAt, &ms, &a.WireSent,
			&a.HTTPStatus, &a.RequestID, &outcome, &a.Error, &a.ResponseExcerpt, &a.Worker, &a.CreatedAt); err != nil {
			return nil, fmt.Errorf("list attempts of action %d: %w", actionID, err)
		}
		a.Duration = time.Duration(ms * float64(time.Millisecond))
		a.Outcome = AttemptOutcome(outcome)
		out = append(out, &a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list attempts of action %d: %w", actionID, mapError(err))
	}
	return out, nil
}
