package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Postgres roles botq grants rights to (grant_roles, in migrations/). They
// are NOLOGIN group roles: give each bot or auditor its own login role and
// make it a member (GRANT botq_enqueuer TO bot_a).
const (
	// DBRoleEnqueuer may insert actions (app_id, kind, payload,
	// idempotency_key, lane) and read the status of its own through the
	// action_status view.
	DBRoleEnqueuer = "botq_enqueuer"
	// DBRoleAuditor may read the views action_history, attempt_history,
	// request_history and event_log.
	DBRoleAuditor = "botq_auditor"
	// DBRoleRuntime is what botq serve runs as (database.role): everything
	// running botq needs, owning nothing, unable to rewrite audit history
	// (no UPDATE or DELETE of attempts and events, no DELETE of actions and
	// request records but through retention).
	DBRoleRuntime = "botq_runtime"
)

// DBRoles lists botq's Postgres roles.
var DBRoles = []string{DBRoleEnqueuer, DBRoleAuditor, DBRoleRuntime}

// RolesCreateSQL is the SQL that creates roles, for a DBA to run when botq
// may not.
func RolesCreateSQL(roles []string) string {
	var b strings.Builder
	for _, r := range roles {
		fmt.Fprintf(&b, "CREATE ROLE %s NOLOGIN;\n", r)
	}
	return b.String()
}

// RolesEnsure creates those of botq's roles that do not exist. Roles are
// cluster-wide, so this is not tied to a schema. When the connected role may
// not create roles (no CREATEROLE), missing lists the ones still missing and
// err is nil: the caller prints RolesCreateSQL(missing) for a DBA.
func RolesEnsure(ctx context.Context, db DBTX) (created, missing []string, err error) {
	for _, r := range DBRoles {
		var exists bool
		if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, r).Scan(&exists); err != nil {
			return created, missing, fmt.Errorf("look up role %s: %w", r, err)
		}
		if exists {
			continue
		}
		// The name is one of our constants; CREATE ROLE takes no parameters.
		_, err := db.Exec(ctx, "CREATE ROLE "+r+" NOLOGIN")
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			created = append(created, r)
		case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
			missing = append(missing, r)
		case errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505"):
			// Another process created it meanwhile.
		default:
			return created, missing, fmt.Errorf("create role %s: %w", r, err)
		}
	}
	return created, missing, nil
}

// RolesGrant grants the existing botq roles their rights in s's schema
// (idempotent) and returns the roles granted.
func (s *Store) RolesGrant(ctx context.Context, db DBTX) ([]string, error) {
	var granted []string
	if err := db.QueryRow(ctx, s.q(`SELECT botq.grant_roles()`)).Scan(&granted); err != nil {
		return nil, fmt.Errorf("grant roles in schema %s: %w", s.schema, mapError(err))
	}
	return granted, nil
}
