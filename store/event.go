package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Event is one operator or system event: who did what, why, and what changed.
// Events are never changed.
type Event struct {
	ID       int64
	At       time.Time
	AppID    string
	ActionID *int64
	Kind     string
	Actor    string
	Reason   string
	Before   json.RawMessage
	After    json.RawMessage
}

// EventInsertParams is a new event.
type EventInsertParams struct {
	AppID    string
	ActionID *int64
	Kind     string
	Actor    string
	Reason   string
	Before   any // marshalled to JSON; nil for none
	After    any
}

// EventInsert appends an event.
func (s *Store) EventInsert(ctx context.Context, db DBTX, p EventInsertParams) (int64, error) {
	before, err := marshalOptional(p.Before)
	if err != nil {
		return 0, fmt.Errorf("insert %s event: %w", p.Kind, err)
	}
	after, err := marshalOptional(p.After)
	if err != nil {
		return 0, fmt.Errorf("insert %s event: %w", p.Kind, err)
	}
	var id int64
	err = db.QueryRow(ctx, s.q(`
		INSERT INTO botq.event (app_id, action_id, kind, actor, reason, before, after)
		VALUES (nullif($1, ''), $2, $3, $4, nullif($5, ''), $6, $7)
		RETURNING id`), p.AppID, p.ActionID, p.Kind, p.Actor, p.Reason, before, after).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert %s event: %w", p.Kind, mapError(err))
	}
	return id, nil
}

// EventListParams filters events; zero values mean no filter.
type EventListParams struct {
	AppID    string
	ActionID *int64
	Kind     string
	Limit    int
}

// EventList returns events, newest first.
func (s *Store) EventList(ctx context.Context, db DBTX, p EventListParams) ([]*Event, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	rows, err := db.Query(ctx, s.q(`
		SELECT id, at, coalesce(app_id, ''), action_id, kind, actor, coalesce(reason, ''), before, after
		FROM botq.event
		WHERE ($1 = '' OR app_id = $1) AND ($2::bigint IS NULL OR action_id = $2) AND ($3 = '' OR kind = $3)
		ORDER BY id DESC
		LIMIT $4`), p.AppID, p.ActionID, p.Kind, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", mapError(err))
	}
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.ID, &e.At, &e.AppID, &e.ActionID, &e.Kind, &e.Actor, &e.Reason, &e.Before, &e.After); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", mapError(err))
	}
	return out, nil
}

func marshalOptional(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		return nullJSON(raw), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}
