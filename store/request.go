package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequestState is a Khoros request record's state, plus botq's EXPIRED for a
// record Khoros stopped returning before it settled and ABSENT for a request
// id under which Khoros keeps no record (a call it did not accept).
type RequestState string

// Request states.
const (
	RequestPending RequestState = "PENDING"
	RequestSuccess RequestState = "SUCCESS"
	RequestError   RequestState = "ERROR"
	RequestExpired RequestState = "EXPIRED"
	RequestAbsent  RequestState = "ABSENT"
)

// Request is botq's copy of one Khoros request record (one requestId).
type Request struct {
	RequestID         string
	AppID             string
	ActionID          *int64
	Origin            string // BOT or KHOROS
	State             RequestState
	Details           json.RawMessage
	Payload           json.RawMessage
	HTTPStatus        int
	KhorosCreatedAt   *time.Time
	KhorosCompletedAt *time.Time
	KhorosUpdatedAt   *time.Time
	FirstSeenAt       time.Time
	LastCheckedAt     *time.Time
	NextCheckAt       *time.Time
	CheckCount        int
	FinalizedAt       *time.Time
	// Reason says why botq, not Khoros, ended the record (ABSENT, EXPIRED).
	Reason string
}

const requestColumns = `request_id, app_id, action_id, origin, state, details, payload, coalesce(http_status, 0),
	khoros_created_at, khoros_completed_at, khoros_updated_at, first_seen_at, last_checked_at, next_check_at,
	check_count, finalized_at, coalesce(reason, '')`

func scanRequest(row pgx.Row) (*Request, error) {
	var r Request
	var state string
	err := row.Scan(&r.RequestID, &r.AppID, &r.ActionID, &r.Origin, &state, &r.Details, &r.Payload, &r.HTTPStatus,
		&r.KhorosCreatedAt, &r.KhorosCompletedAt, &r.KhorosUpdatedAt, &r.FirstSeenAt, &r.LastCheckedAt, &r.NextCheckAt,
		&r.CheckCount, &r.FinalizedAt, &r.Reason)
	if err != nil {
		return nil, err
	}
	r.State = RequestState(state)
	return &r, nil
}

// RequestUpsertParams is what a call taught botq about a request record.
type RequestUpsertParams struct {
	RequestID  string
	AppID      string
	ActionID   *int64
	Origin     string // "" means BOT
	State      RequestState
	Details    json.RawMessage
	Payload    json.RawMessage
	HTTPStatus int
	// NextCheckAt is when the reconciler should first look at a PENDING
	// record.
	NextCheckAt *time.Time
	// Reason says why a record botq ends itself is final (ABSENT).
	Reason string
}

// A final state is never overwritten by PENDING, and an action link, once
// made, is kept.
const requestUpsertSQL = `
INSERT INTO botq.request (request_id, app_id, action_id, origin, state, details, payload, http_status,
	next_check_at, finalized_at, reason)
VALUES ($1, $2, $3, coalesce(nullif($4, ''), 'BOT'), $5, $6, $7, nullif($8, 0), $9,
	CASE WHEN $5 = 'PENDING' THEN NULL ELSE now() END, nullif($10, ''))
ON CONFLICT (request_id) DO UPDATE SET
	action_id = coalesce(botq.request.action_id, EXCLUDED.action_id),
	http_status = coalesce(EXCLUDED.http_status, botq.request.http_status),
	state = CASE WHEN botq.request.state = 'PENDING' THEN EXCLUDED.state ELSE botq.request.state END,
	details = CASE WHEN botq.request.state = 'PENDING' THEN coalesce(EXCLUDED.details, botq.request.details) ELSE botq.request.details END,
	finalized_at = CASE WHEN botq.request.state = 'PENDING' THEN EXCLUDED.finalized_at ELSE botq.request.finalized_at END,
	reason = CASE WHEN botq.request.state = 'PENDING' THEN EXCLUDED.reason ELSE botq.request.reason END`

func (p *RequestUpsertParams) args() []any {
	return []any{p.RequestID, p.AppID, p.ActionID, p.Origin, string(p.State), nullJSON(p.Details), nullJSON(p.Payload),
		p.HTTPStatus, p.NextCheckAt, CleanText(p.Reason, 4096)}
}

// RequestUpsert records a request record, or updates botq's copy.
func (s *Store) RequestUpsert(ctx context.Context, db DBTX, p *RequestUpsertParams) error {
	if _, err := db.Exec(ctx, s.q(requestUpsertSQL), p.args()...); err != nil {
		return fmt.Errorf("upsert request %q: %w", p.RequestID, mapError(err))
	}
	return nil
}

// RequestGet returns botq's copy of a request record, or ErrNotFound.
func (s *Store) RequestGet(ctx context.Context, db DBTX, requestID string) (*Request, error) {
	r, err := scanRequest(db.QueryRow(ctx, s.q(`SELECT `+requestColumns+` FROM botq.request WHERE request_id = $1`), requestID))
	if err != nil {
		return nil, fmt.Errorf("get request %q: %w", requestID, mapError(err))
	}
	return r, nil
}

// RequestListByAction returns the request records of an action, oldest first.
func (s *Store) RequestListByAction(ctx context.Context, db DBTX, actionID int64) ([]*Request, error) {
	rows, err := db.Query(ctx, s.q(`SELECT `+requestColumns+` FROM botq.request WHERE action_id = $1 ORDER BY first_seen_at, request_id`), actionID)
	if err != nil {
		return nil, fmt.Errorf("list requests of action %d: %w", actionID, mapError(err))
	}
	defer rows.Close()
	var out []*Request
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("list requests of action %d: %w", actionID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list requests of action %d: %w", actionID, mapError(err))
	}
	return out, nil
}

// nullJSON keeps an absent JSON value NULL rather than the JSON null.
func nullJSON(b json.RawMessage) any {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return string(b)
}
