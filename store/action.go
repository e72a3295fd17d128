package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// ActionState is the state of an action. The legal moves between states are
// the rows of the action_transition table.
type ActionState string

// Action states. An action is `queued` until its call is made; `retrying`
// between failed attempts; `sent` once Khoros accepted the call and the
// request awaits its final status; `unknown` when a non-idempotent call
// reached the wire and no answer came back (the reconciler decides);
// `succeeded`, `failed` and `cancelled` are final.
const (
	ActionQueued    ActionState = "queued"
	ActionRetrying  ActionState = "retrying"
	ActionSent      ActionState = "sent"
	ActionSucceeded ActionState = "succeeded"
	ActionFailed    ActionState = "failed"
	ActionUnknown   ActionState = "unknown"
	ActionCancelled ActionState = "cancelled"
)

// ActionStates lists every action state.
var ActionStates = []ActionState{ActionQueued, ActionRetrying, ActionSent, ActionSucceeded, ActionFailed, ActionUnknown, ActionCancelled}

// Final reports whether s is a final state.
func (s ActionState) Final() bool {
	return s == ActionSucceeded || s == ActionFailed || s == ActionCancelled
}

// Action is one logical action a bot asked for.
type Action struct {
	ID             int64
	AppID          string
	Kind           string
	Payload        json.RawMessage
	IdempotencyKey string
	Lane           string // "" when the action is in no lane
	State          ActionState
	RiverJobID     int64
	ReplayOf       *int64
	AttemptCount   int
	ReleaseCount   int
	RequestID      string
	LastError      string
	CreatedAt      time.Time
	CreatedBy      string
	UpdatedAt      time.Time
	FinishedAt     *time.Time
	// PossiblySent marks an action cancelled while its send's fate was
	// unknown and Khoros could not say whether the send arrived (see
	// ActionCancelChecked): the message may have reached the customer, and
	// a replay of it needs ReplayOptions.AllowPossiblySent.
	PossiblySent bool
}

const actionColumns = `id, app_id, kind, payload, idempotency_key, coalesce(lane, ''), state, river_job_id,
	replay_of, attempt_count, release_count, coalesce(request_id, ''), coalesce(last_error, ''),
	created_at, created_by, updated_at, finished_at, possibly_sent`

// scanFields are the scan destinations of actionColumns, in order; state
// receives the state's text.
func (a *Action) scanFields(state *string) []any {
	return []any{&a.ID, &a.AppID, &a.Kind, &a.Payload, &a.IdempotencyKey, &a.Lane, state, &a.RiverJobID,
		&a.ReplayOf, &a.AttemptCount, &a.ReleaseCount, &a.RequestID, &a.LastError,
		&a.CreatedAt, &a.CreatedBy, &a.UpdatedAt, &a.FinishedAt, &a.PossiblySent}
}

func scanAction(row pgx.Row) (*Action, error) {
	var a Action
	var state string
	if err := row.Scan(a.scanFields(&state)...); err != nil {
		return nil, err
	}
	a.State = ActionState(state)
	return &a, nil
}

// ActionInsertParams is a new action.
type ActionInsertParams struct {
	AppID   string
	Kind    string
	Payload json.RawMessage
	// IdempotencyKey makes the insert idempotent per app; "" gets a random key.
	IdempotencyKey string
	// Lane orders the action after the lane's earlier actions; "" means the
	// default lane of its kind (its conversation).
	Lane      string
	ReplayOf  *int64
	CreatedBy string // "" records the database role
	// CheckGrant checks CreatedBy's grant for the app and kind when a
	// trusted caller (botq's service) names it: an API key that is not an
	// operator's. Untrusted callers (bots' roles) are always checked.
	CheckGrant bool
}

// ActionInsertResult is the outcome of one insert: the action, and whether it
// existed already under the same idempotency key (then nothing was inserted).
type ActionInsertResult struct {
	Action  *Action
	Existed bool
}

// check refuses what Postgres would refuse with a less helpful message:
// invalid JSON, invalid UTF-8, and NUL characters, which text cannot hold.
func (p *ActionInsertParams) check() error {
	if p.Payload == nil {
		p.Payload = json.RawMessage(`{}`)
	}
	if !utf8.Valid(p.Payload) {
		return &ValidationError{Field: "payload", Message: "botq: payload is not valid UTF-8", Code: "22021"}
	}
	if !json.Valid(p.Payload) {
		return &ValidationError{Field: "payload", Message: "botq: payload is not valid JSON", Code: "22P02"}
	}
	if hasEscapedNUL(p.Payload) {
		return &ValidationError{Field: "payload", Message: `botq: payload holds a NUL character (\u0000), which Postgres cannot store`, Code: "22P05"}
	}
	for _, f := range []struct{ name, v string }{
		{"app_id", p.AppID}, {"kind", p.Kind}, {"idempotency_key", p.IdempotencyKey}, {"lane", p.Lane}, {"created_by", p.CreatedBy},
	} {
		if !utf8.ValidString(f.v) || strings.ContainsRune(f.v, 0) {
			return &ValidationError{Field: f.name, Message: "botq: " + f.name + " must be valid UTF-8 without NUL characters", Code: "22021"}
		}
	}
	return nil
}

// hasEscapedNUL reports whether JSON text holds the escape \u0000 (a
// backslash that is not itself escaped, then u0000).
func hasEscapedNUL(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		j += i
		n := 0
		for k := j; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 1 {
			return true
		}
		i = j + 1
	}
}

// ActionInsert enqueues one action (ActionInsertMany).
func (s *Store) ActionInsert(ctx context.Context, db DBTX, p ActionInsertParams) (*ActionInsertResult, error) {
	res, err := s.ActionInsertMany(ctx, db, []ActionInsertParams{p})
	if err != nil {
		return nil, err
	}
	return &res[0], nil
}

// ActionInsertMany enqueues actions through ActionEnqueue, the one enqueue
// path, and returns them whole, in the order of ps: the service's callers
// (HTTP, CLI, replays) answer with the actions. A request made already
// returns its action with Existed set.
func (s *Store) ActionInsertMany(ctx context.Context, db DBTX, ps []ActionInsertParams) ([]ActionInsertResult, error) {
	enq, err := s.ActionEnqueue(ctx, db, ps)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(enq))
	for i, e := range enq {
		ids[i] = e.ID
	}
	rows, err := db.Query(ctx, s.q(`SELECT `+actionColumns+` FROM botq.action WHERE id = ANY($1)`), ids)
	if err != nil {
		return nil, mapError(err)
	}
	found, err := collectActions(rows)
	if err != nil {
		return nil, mapError(err)
	}
	byID := make(map[int64]*Action, len(found))
	for _, a := range found {
		byID[a.ID] = a
	}
	out := make([]ActionInsertResult, len(enq))
	for i, e := range enq {
		if out[i].Action = byID[e.ID]; out[i].Action == nil {
			return nil, fmt.Errorf("enqueue: action %d was made but cannot be read: %w", e.ID, ErrNotFound)
		}
		out[i].Existed = e.Existed
	}
	return out, nil
}

func collectActions(rows pgx.Rows) ([]*Action, error) {
	defer rows.Close()
	var out []*Action
	for rows.Next() {
		a, err := scanAction(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ActionGet returns the action with id, or ErrNotFound.
func (s *Store) ActionGet(ctx context.Context, db DBTX, id int64) (*Action, error) {
	a, err := scanAction(db.QueryRow(ctx, s.q(`SELECT `+actionColumns+` FROM botq.action WHERE id = $1`), id))
	if err != nil {
		return nil, fmt.Errorf("get action %d: %w", id, mapError(err))
	}
	return a, nil
}

// ActionGetByKey returns the app's action with the idempotency key, or
// ErrNotFound.
func (s *Store) ActionGetByKey(ctx context.Context, db DBTX, appID, key string) (*Action, error) {
	a, err := scanAction(db.QueryRow(ctx, s.q(`SELECT `+actionColumns+` FROM botq.action WHERE app_id = $1 AND idempotency_key = $2`), appID, key))
	if err != nil {
		return nil, fmt.Errorf("get action %q/%q: %w", appID, key, mapError(err))
	}
	return a, nil
}

// ActionSetStateParams moves an action to a new state. From, when set, makes
// the move conditional: if the action is no longer in From the result is
// ErrConflict and nothing changes.
type ActionSetStateParams struct {
	ID   int64
	From ActionState
	To   ActionState
	// LastError replaces the action's last error; nil keeps it, "" clears
	// it.
	LastError *string
	RequestID *string
	// PossiblySent marks the action possibly sent; only a move from unknown
	// into cancelled may (see ActionCancelChecked).
	PossiblySent bool
}

// ActionSetState moves an action to p.To. A move the state machine does not
// allow is ErrIllegalTransition.
func (s *Store) ActionSetState(ctx context.Context, db DBTX, p ActionSetStateParams) (*Action, error) {
	a, err := scanAction(db.QueryRow(ctx, s.q(`
		UPDATE botq.action
		SET state = $2,
		    last_error = nullif(coalesce($3, last_error), ''),
		    request_id = coalesce($4, request_id),
		    possibly_sent = possibly_sent OR $6
		WHERE id = $1 AND ($5 = '' OR state = $5)
		RETURNING `+actionColumns), p.ID, p.To, p.LastError, p.RequestID, p.From, p.PossiblySent))
	if err == nil {
		return a, nil
	}
	err = mapError(err)
	if errors.Is(err, ErrNotFound) && p.From != "" {
		cur, getErr := s.ActionGet(ctx, db, p.ID)
		if getErr != nil {
			return nil, getErr
		}
		return nil, fmt.Errorf("%w: action %d is %s, not %s", ErrConflict, p.ID, cur.State, p.From)
	}
	return nil, fmt.Errorf("set action %d state %s: %w", p.ID, p.To, err)
}

// Enqueued is one action of ActionEnqueue: its id, and whether its
// idempotency key was known already (then nothing was inserted).
type Enqueued struct {
	ID      int64
	Existed bool
}

// ActionEnqueue enqueues actions through botq.enqueue_many, the one enqueue
// path of every caller: SQL (enqueue, enqueue_many), Go (jobs.Enqueue) and
// botq's service (HTTP, CLI, replays, through ActionInsertMany). The
// database checks each action, its principal's grant and its idempotency
// key; results are in the order of ps. The database role becomes
// created_by unless the caller may update actions (the service role) and
// names another principal; only such a caller may set ReplayOf.
func (s *Store) ActionEnqueue(ctx context.Context, db DBTX, ps []ActionInsertParams) ([]Enqueued, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	apps := make([]string, len(ps))
	kinds := make([]string, len(ps))
	payloads := make([]string, len(ps))
	keys := make([]string, len(ps))
	lanes := make([]string, len(ps))
	creators := make([]string, len(ps))
	replays := make([]*int64, len(ps))
	check := false
	for i := range ps {
		if err := ps[i].check(); err != nil {
			if len(ps) > 1 {
				return nil, fmt.Errorf("action %d: %w", i, err)
			}
			return nil, err
		}
		apps[i], kinds[i], payloads[i], keys[i] = ps[i].AppID, ps[i].Kind, string(ps[i].Payload), ps[i].IdempotencyKey
		lanes[i], creators[i], replays[i] = ps[i].Lane, ps[i].CreatedBy, ps[i].ReplayOf
		check = check || ps[i].CheckGrant
	}
	rows, err := db.Query(ctx, s.q(`SELECT action_id, existed FROM botq.enqueue_many($1, $2, $3::text[]::jsonb[], $4, $5, $6,
		p_replay_of => $7, p_check_grants => $8)`),
		apps, kinds, payloads, keys, lanes, creators, replays, check)
	if err != nil {
		return nil, mapError(err)
	}
	invisible := false
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Enqueued, error) {
		var e Enqueued
		var id *int64
		err := r.Scan(&id, &e.Existed)
		if id == nil {
			invisible = true
		} else {
			e.ID = *id
		}
		return e, err
	})
	if err != nil {
		return nil, mapError(err)
	}
	if invisible || len(out) != len(ps) {
		// A conflicting row belongs to a transaction this one cannot see
		// (REPEATABLE READ or SERIALIZABLE started before it committed):
		// enqueue_many finds no action for its key.
		return nil, fmt.Errorf("%w: an idempotency key is taken by an action this transaction cannot see", ErrConflict)
	}
	return out, nil
}
