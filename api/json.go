package api

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/botq/botq/store"
)

// The API's JSON is botq's own, so its names are snake_case; payloads are
// Bot v3 bodies and keep Khoros' names.

// Action is an action as the API shows it.
type Action struct {
	ID             int64           `json:"id"`
	AppID          string          `json:"app_id"`
	Kind           string          `json:"kind"`
	State          string          `json:"state"`
	Payload        json.RawMessage `json:"payload"`
	IdempotencyKey string          `json:"idempotency_key"`
	Lane           string          `json:"lane,omitempty"`
	RiverJobID     int64           `json:"river_job_id"`
	ReplayOf       *int64          `json:"replay_of,omitempty"`
	AttemptCount   int             `json:"attempt_count"`
	RequestID      string          `json:"request_id,omitempty"`
	LastError      string          `json:"last_error,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	CreatedBy      string          `json:"created_by"`
	UpdatedAt      time.Time       `json:"updated_at"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
	// PossiblySent: cancelled while its send's fate was unknown, and Khoros
	// could not say whether it arrived; a replay needs allow_possibly_sent.
	PossiblySent bool `json:"possibly_sent"`
}

// NewAction converts a stored action; registration secrets are redacted.
func NewAction(a *store.Action) Action {
	return Action{
		ID: a.ID, AppID: a.AppID, Kind: a.Kind, State: string(a.State), Payload: RedactPayload(a.Payload),
		IdempotencyKey: a.IdempotencyKey, Lane: a.Lane, RiverJobID: a.RiverJobID, ReplayOf: a.ReplayOf,
		AttemptCount: a.AttemptCount, RequestID: a.RequestID, LastError: a.LastError,
		CreatedAt: a.CreatedAt.UTC(), CreatedBy: a.CreatedBy, UpdatedAt: a.UpdatedAt.UTC(), FinishedAt: utc(a.FinishedAt),
		PossiblySent: a.PossiblySent,
	}
}

// NewActions converts stored actions; none is an empty list, never null.
func NewActions(as []*store.Action) []Action {
	out := make([]Action, len(as))
	for i, a := range as {
		out[i] = NewAction(a)
	}
	return out
}

// RedactPayload hides a registration's webhook secret, as the
// action_history view does.
func RedactPayload(p json.RawMessage) json.RawMessage {
	if !bytes.Contains(p, []byte(`"credentials"`)) {
		return p
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(p, &m) != nil {
		return p
	}
	var creds map[string]json.RawMessage
	if json.Unmarshal(m["credentials"], &creds) != nil || creds["secret"] == nil {
		return p
	}
	creds["secret"] = json.RawMessage(`"[redacted]"`)
	m["credentials"], _ = json.Marshal(creds)
	out, err := json.Marshal(m)
	if err != nil {
		return p
	}
	return out
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Attempt is one HTTP call made for an action.
type Attempt struct {
	Number          int       `json:"number"`
	StartedAt       time.Time `json:"started_at"`
	DurationMS      float64   `json:"duration_ms"`
	WireSent        bool      `json:"wire_sent"`
	HTTPStatus      int       `json:"http_status,omitempty"`
	RequestID       string    `json:"request_id,omitempty"`
	Outcome         string    `json:"outcome"`
	Error           string    `json:"error,omitempty"`
	ResponseExcerpt string    `json:"response_excerpt,omitempty"`
	Worker          string    `json:"worker"`
	RiverJobID      int64     `json:"river_job_id"`
	JobAttempt      int       `json:"job_attempt"`
}

// NewAttempt converts a stored attempt.
func NewAttempt(a *store.Attempt) Attempt {
	return Attempt{
		Number: a.Number, StartedAt: a.StartedAt.UTC(), DurationMS: float64(a.Duration) / float64(time.Millisecond),
		WireSent: a.WireSent, HTTPStatus: a.HTTPStatus, RequestID: a.RequestID, Outcome: string(a.Outcome),
		Error: a.Error, ResponseExcerpt: a.ResponseExcerpt, Worker: a.Worker, RiverJobID: a.RiverJobID, JobAttempt: a.JobAttempt,
	}
}

// Request is botq's copy of a Khoros request record.
type Request struct {
	RequestID         string          `json:"request_id"`
	AppID             string          `json:"app_id"`
	ActionID          *int64          `json:"action_id,omitempty"`
	Kind              string          `json:"kind,omitempty"`
	Origin            string          `json:"origin"`
	State             string          `json:"state"`
	Details           json.RawMessage `json:"details,omitempty"`
	Payload           json.RawMessage `json:"payload,omitempty"`
	HTTPStatus        int             `json:"http_status,omitempty"`
	KhorosCreatedAt   *time.Time      `json:"khoros_created_at,omitempty"`
	KhorosCompletedAt *time.Time      `json:"khoros_completed_at,omitempty"`
	KhorosUpdatedAt   *time.Time      `json:"khoros_updated_at,omitempty"`
	FirstSeenAt       time.Time       `json:"first_seen_at"`
	LastCheckedAt     *time.Time      `json:"last_checked_at,omitempty"`
	CheckCount        int             `json:"check_count"`
	FinalizedAt       *time.Time      `json:"finalized_at,omitempty"`
	// Reason says why botq, not Khoros, ended the record (ABSENT, EXPIRED).
	Reason string `json:"reason,omitempty"`
}

// NewRequest converts a stored request record; kind is its action's.
func NewRequest(r *store.Request, kind string) Request {
	return Request{
		RequestID: r.RequestID, AppID: r.AppID, ActionID: r.ActionID, Kind: kind, Origin: r.Origin, State: string(r.State),
		Details: nullable(r.Details), Payload: nullable(r.Payload), HTTPStatus: r.HTTPStatus,
		KhorosCreatedAt: utc(r.KhorosCreatedAt), KhorosCompletedAt: utc(r.KhorosCompletedAt), KhorosUpdatedAt: utc(r.KhorosUpdatedAt),
		FirstSeenAt: r.FirstSeenAt.UTC(), LastCheckedAt: utc(r.LastCheckedAt), CheckCount: r.CheckCount, FinalizedAt: utc(r.FinalizedAt),
		Reason: r.Reason,
	}
}

// NewRequests converts request records with their actions' kinds; none is
// an empty list, never null.
func NewRequests(items []*store.RequestItem) []Request {
	out := make([]Request, len(items))
	for i, it := range items {
		out[i] = NewRequest(&it.Request, it.Kind)
	}
	return out
}

func nullable(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return b
}

// Event is one operator or system event.
type Event struct {
	ID       int64           `json:"id"`
	At       time.Time       `json:"at"`
	AppID    string          `json:"app_id,omitempty"`
	ActionID *int64          `json:"action_id,omitempty"`
	Kind     string          `json:"kind"`
	Actor    string          `json:"actor"`
	Reason   string          `json:"reason,omitempty"`
	Before   json.RawMessage `json:"before,omitempty"`
	After    json.RawMessage `json:"after,omitempty"`
}

// NewEvent converts a stored event.
func NewEvent(e *store.Event) Event {
	return Event{ID: e.ID, At: e.At.UTC(), AppID: e.AppID, ActionID: e.ActionID, Kind: e.Kind, Actor: e.Actor,
		Reason: e.Reason, Before: nullable(e.Before), After: nullable(e.After)}
}

// NewEvents converts stored events; none is an empty list, never null.
func NewEvents(es []*store.Event) []Event {
	out := make([]Event, len(es))
	for i, e := range es {
		out[i] = NewEvent(e)
	}
	return out
}

// App is an app with its token, health and queue, never the token itself.
type App struct {
	ID               string     `json:"id"`
	Region           string     `json:"region"`
	BaseURL          string     `json:"base_url,omitempty"`
	CompanyKey       string     `json:"company_key"`
	Token            AppToken   `json:"token"`
	RateLimit        *float64   `json:"rate_limit,omitempty"`
	RateBurst        int        `json:"rate_burst"`
	ConcurrencyLimit *int       `json:"concurrency_limit,omitempty"`
	LaneOnFailure    string     `json:"lane_on_failure"`
	Paused           bool       `json:"paused"`
	PausedUntil      *time.Time `json:"paused_until,omitempty"`
	PauseReason      string     `json:"pause_reason,omitempty"`
	ThrottledUntil   *time.Time `json:"throttled_until,omitempty"`
	Health           AppHealth  `json:"health"`
	Queue            AppQueue   `json:"queue"`
}

// AppToken describes an app's token without revealing it.
type AppToken struct {
	// Source is "stored" (encrypted in botq.app), "external" (environment
	// or file) or "none".
	Source      string     `json:"source"`
	Version     int        `json:"version"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RefreshedAt *time.Time `json:"refreshed_at,omitempty"`
}

// AppHealth is the app's health as the reconciler last polled it.
type AppHealth struct {
	Status    string     `json:"status,omitempty"`
	CheckedAt *time.Time `json:"checked_at,omitempty"`
}

// AppQueue is the app's backlog.
type AppQueue struct {
	Depth                  int64    `json:"depth"`
	OldestAgeSeconds       *float64 `json:"oldest_age_seconds,omitempty"`
	PendingRequests        int64    `json:"pending_requests"`
	OldestPendingAgeSecond *float64 `json:"oldest_pending_age_seconds,omitempty"`
}

// NewApp converts an app's status; external says whether its token comes
// from outside the database.
func NewApp(st *store.AppStatus, external bool, now time.Time) App {
	a := &st.App
	tok := AppToken{Source: "none", Version: a.TokenVersion, ExpiresAt: utc(a.TokenExpiresAt), RefreshedAt: utc(a.TokenRefreshedAt)}
	switch {
	case external:
		tok.Source = "external"
	case len(a.TokenCiphertext) > 0:
		tok.Source = "stored"
	}
	age := func(t *time.Time) *float64 {
		if t == nil {
			return nil
		}
		s := now.Sub(*t).Seconds()
		return &s
	}
	return App{
		ID: a.ID, Region: a.Region, BaseURL: a.BaseURL, CompanyKey: a.CompanyKey, Token: tok,
		RateLimit: a.RateLimit, RateBurst: a.RateBurst, ConcurrencyLimit: a.ConcurrencyLimit, LaneOnFailure: a.LaneOnFailure,
		Paused:      a.PausedUntil != nil && a.PausedUntil.After(now),
		PausedUntil: utc(a.PausedUntil), PauseReason: a.PauseReason, ThrottledUntil: utc(a.ThrottledUntil),
		Health: AppHealth{Status: a.HealthStatus, CheckedAt: utc(a.HealthCheckedAt)},
		Queue: AppQueue{Depth: st.QueueDepth, OldestAgeSeconds: age(st.OldestQueued),
			PendingRequests: st.PendingRequests, OldestPendingAgeSecond: age(st.OldestPending)},
	}
}
