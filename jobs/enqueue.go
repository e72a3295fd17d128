package jobs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/botq/botq/store"
)

// Action is an action to enqueue.
type Action struct {
	// AppID is the Bot v3 appId the action runs as.
	AppID string
	// Kind is one of the Kind constants.
	Kind string
	// Payload is the Bot v3 request body (or, for registration_delete and
	// mode, the path parameters): a json.RawMessage, []byte, a botapi request
	// struct, or anything that marshals to a JSON object.
	Payload any
	// IdempotencyKey makes the enqueue idempotent per app: a second enqueue
	// with the same key, from any path, returns the first action. "" gets a
	// random key (no idempotency).
	IdempotencyKey string
	// Lane orders the action after earlier actions of the same lane; ""
	// means the kind's default lane (its conversation).
	Lane string
	// CreatedBy is recorded as the action's author ("" records the database
	// role).
	CreatedBy string
}

// Enqueued is the outcome of enqueueing one action.
type Enqueued struct {
	ActionID int64
	// Existed is true when the app had already used the idempotency key;
	// nothing new was enqueued and ActionID is the earlier action.
	Existed bool
}

// ValidationError is an action the database refused, naming the field.
type ValidationError = store.ValidationError

// Enqueuer enqueues actions into one botq schema.
type Enqueuer struct {
	store *store.Store
}

// NewEnqueuer returns an Enqueuer for schema ("" is the default, botq).
func NewEnqueuer(schema string) (*Enqueuer, error) {
	s, err := store.New(schema)
	if err != nil {
		return nil, err
	}
	return &Enqueuer{store: s}, nil
}

var defaultEnqueuer, _ = NewEnqueuer("")

// Enqueue enqueues one action in the default schema (botq) through db: a
// pool, or the caller's pgx transaction, in which case the action and its
// River job commit or roll back with the caller's other writes. It needs no
// more than the botq_enqueuer role. Bad input is a *ValidationError naming
// the field.
func Enqueue(ctx context.Context, db store.DBTX, a Action) (actionID int64, existed bool, err error) {
	return defaultEnqueuer.Enqueue(ctx, db, a)
}

// EnqueueMany enqueues many actions in one statement in the default schema.
func EnqueueMany(ctx context.Context, db store.DBTX, actions []Action) ([]Enqueued, error) {
	return defaultEnqueuer.EnqueueMany(ctx, db, actions)
}

// Enqueue enqueues one action; see the package function Enqueue.
func (e *Enqueuer) Enqueue(ctx context.Context, db store.DBTX, a Action) (int64, bool, error) {
	res, err := e.EnqueueMany(ctx, db, []Action{a})
	if err != nil {
		return 0, false, err
	}
	return res[0].ActionID, res[0].Existed, nil
}

// EnqueueMany enqueues actions in one statement; results are in order. If
// one action is refused, none is enqueued.
func (e *Enqueuer) EnqueueMany(ctx context.Context, db store.DBTX, actions []Action) ([]Enqueued, error) {
	params := make([]store.ActionInsertParams, len(actions))
	for i, a := range actions {
		payload, err := payloadJSON(a.Payload)
		if err != nil {
			if len(actions) > 1 {
				return nil, fmt.Errorf("action %d: %w", i, err)
			}
			return nil, err
		}
		params[i] = store.ActionInsertParams{
			AppID: a.AppID, Kind: a.Kind, Payload: payload, IdempotencyKey: a.IdempotencyKey,
			Lane: a.Lane, CreatedBy: a.CreatedBy,
		}
	}
	res, err := e.store.ActionEnqueue(ctx, db, params)
	if err != nil {
		return nil, err
	}
	out := make([]Enqueued, len(res))
	for i, r := range res {
		out[i] = Enqueued{ActionID: r.ID, Existed: r.Existed}
	}
	return out, nil
}

func payloadJSON(p any) (json.RawMessage, error) {
	switch v := p.(type) {
	case nil:
		return json.RawMessage(`{}`), nil
	case json.RawMessage:
		return v, nil
	case []byte:
		return v, nil
	case string:
		return json.RawMessage(v), nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, &ValidationError{Field: "payload", Message: "botq: payload does not marshal to JSON: " + err.Error(), Code: "22P02"}
	}
	return b, nil
}
