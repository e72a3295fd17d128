package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Grant scopes: the kinds a principal may enqueue for an app.
const (
	// ScopeConversation allows the kinds that address a conversation
	// (respond, tag, note, ...): what a bot does.
	ScopeConversation = "conversation"
	// ScopeAll also allows the registration, mode and token kinds.
	ScopeAll = "all"
)

// AllApps is the app of a grant for every app.
const AllApps = "*"

// Grant lets a principal enqueue for an app: a bot's database role, or an
// API key ("api:<name>"). Without one, a principal enqueues for no app.
type Grant struct {
	Principal string    `json:"principal"`
	AppID     string    `json:"app_id"`
	Scope     string    `json:"scope"`
	GrantedBy string    `json:"granted_by"`
	GrantedAt time.Time `json:"granted_at"`
}

// GrantAdd grants principal the app (AllApps for every app) with scope, or
// changes the scope of its grant, and records a `grant` event by actor, in
// one transaction.
func (s *Store) GrantAdd(ctx context.Context, db TxDB, principal, appID, scope, actor, reason string) (*Grant, error) {
	if scope != ScopeConversation && scope != ScopeAll {
		return nil, &ValidationError{Field: "scope", Message: fmt.Sprintf("botq: scope must be %s or %s, not %q", ScopeConversation, ScopeAll, scope), Code: "22023"}
	}
	if appID != AllApps {
		if _, err := s.AppGet(ctx, db, appID); err != nil {
			return nil, err
		}
	}
	var g Grant
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var before *string
		_ = tx.QueryRow(ctx, s.q(`SELECT scope FROM botq.principal_grant WHERE principal = $1 AND app_id = $2 FOR UPDATE`),
			principal, appID).Scan(&before)
		err := tx.QueryRow(ctx, s.q(`
			INSERT INTO botq.principal_grant (principal, app_id, scope, granted_by) VALUES ($1, $2, $3, $4)
			ON CONFLICT (principal, app_id) DO UPDATE SET scope = EXCLUDED.scope, granted_by = EXCLUDED.granted_by, granted_at = now()
			RETURNING principal, app_id, scope, granted_by, granted_at`), principal, appID, scope, actor).
			Scan(&g.Principal, &g.AppID, &g.Scope, &g.GrantedBy, &g.GrantedAt)
		if err != nil {
			return fmt.Errorf("grant %q app %q: %w", principal, appID, mapError(err))
		}
		ev := EventInsertParams{Kind: "grant", Actor: actor, Reason: reason,
			After: map[string]any{"principal": principal, "app_id": appID, "scope": scope}}
		if appID != AllApps {
			ev.AppID = appID
		}
		if before != nil {
			ev.Before = map[string]any{"scope": *before}
		}
		_, err = s.EventInsert(ctx, tx, ev)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &g, nil
}

// GrantRemove takes principal's grant of the app away and records a
// `grant_revoke` event by actor; ErrNotFound when it held none.
func (s *Store) GrantRemove(ctx context.Context, db TxDB, principal, appID, actor, reason string) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var scope string
		err := tx.QueryRow(ctx, s.q(`DELETE FROM botq.principal_grant WHERE principal = $1 AND app_id = $2 RETURNING scope`),
			principal, appID).Scan(&scope)
		if err != nil {
			return fmt.Errorf("revoke %q app %q: %w", principal, appID, mapError(err))
		}
		ev := EventInsertParams{Kind: "grant_revoke", Actor: actor, Reason: reason,
			Before: map[string]any{"principal": principal, "app_id": appID, "scope": scope}}
		if appID != AllApps {
			ev.AppID = appID
		}
		_, err = s.EventInsert(ctx, tx, ev)
		return err
	})
}

// GrantList returns the grants, of one principal when principal is not "".
func (s *Store) GrantList(ctx context.Context, db DBTX, principal string) ([]Grant, error) {
	rows, err := db.Query(ctx, s.q(`
		SELECT principal, app_id, scope, granted_by, granted_at FROM botq.principal_grant
		WHERE $1 = '' OR principal = $1 ORDER BY principal, app_id`), principal)
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", mapError(err))
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Grant, error) {
		var g Grant
		err := r.Scan(&g.Principal, &g.AppID, &g.Scope, &g.GrantedBy, &g.GrantedAt)
		return g, err
	})
}
