package store

import (
	"context"
	"fmt"
	"strings"
)

// WorkItem is what a worker needs to execute an action: the action, its app,
// and how many of the job's earlier attempts left an attempt row.
type WorkItem struct {
	Action *Action
	App    *App
	// PreviousRecorded reports whether the job's previous River attempt
	// (attempt-1) left an attempt row. River counts an attempt when it fetches
	// the job and gives it back when the job snoozes, so the previous attempt
	// was an execution that ended with a retry; without a row, it ended
	// without writing its result: the process died, perhaps after its call
	// reached Khoros. True for a first attempt.
	PreviousRecorded bool
}

// qualify prefixes the column names of a column list with alias.
func qualify(cols, alias string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if strings.HasPrefix(p, "coalesce(") {
			p = "coalesce(" + alias + "." + strings.TrimPrefix(p, "coalesce(")
		} else if !strings.HasPrefix(p, "'") {
			p = alias + "." + p
		}
		parts[i] = p
	}
	return strings.Join(parts, ", ")
}

var workLoadSQL = `
SELECT ` + qualify(actionColumns, "a") + `, ` + qualify(appColumns, "p") + `,
	($3 <= 1 OR EXISTS (SELECT 1 FROM botq.attempt t
	 WHERE t.action_id = a.id AND t.river_job_id = $2 AND t.job_attempt = $3 - 1))
FROM botq.action a
JOIN botq.app p ON p.id = a.app_id
WHERE a.id = $1`

// WorkLoad loads the action with its app for the River job jobID at attempt
// jobAttempt.
func (s *Store) WorkLoad(ctx context.Context, db DBTX, actionID, jobID int64, jobAttempt int) (*WorkItem, error) {
	var a Action
	var p App
	var state string
	var item WorkItem
	err := db.QueryRow(ctx, s.q(workLoadSQL), actionID, jobID, jobAttempt).Scan(
		&a.ID, &a.AppID, &a.Kind, &a.Payload, &a.IdempotencyKey, &a.Lane, &state, &a.RiverJobID,
		&a.ReplayOf, &a.AttemptCount, &a.ReleaseCount, &a.RequestID, &a.LastError,
		&a.CreatedAt, &a.CreatedBy, &a.UpdatedAt, &a.FinishedAt,
		&p.ID, &p.Region, &p.BaseURL, &p.CompanyKey, &p.TokenCiphertext, &p.TokenKeyID,
		&p.TokenExpiresAt, &p.TokenRefreshedAt, &p.TokenVersion, &p.RateLimit, &p.RateBurst, &p.ConcurrencyLimit,
		&p.PausedUntil, &p.PauseReason, &p.ThrottledUntil, &p.LaneOnFailure, &p.HealthStatus,
		&p.HealthCheckedAt, &p.CreatedAt, &p.UpdatedAt,
		&item.PreviousRecorded)
	if err != nil {
		return nil, fmt.Errorf("load action %d for work: %w", actionID, mapError(err))
	}
	a.State = ActionState(state)
	item.Action, item.App = &a, &p
	return &item, nil
}
