package server

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botq/botq/store"
)

// SetupRoles creates botq's Postgres roles (botq_enqueuer, botq_auditor)
// when they are missing and grants them their rights in schema. A migrating
// role without CREATEROLE is not an error: the SQL a DBA should run is
// printed instead, and the next `botq migrate up` grants the roles.
func SetupRoles(ctx context.Context, w io.Writer, pool *pgxpool.Pool, schema string) error {
	created, missing, err := store.RolesEnsure(ctx, pool)
	if err != nil {
		return err
	}
	if len(created) > 0 {
		fmt.Fprintf(w, "created roles %s\n", strings.Join(created, ", "))
	}
	if len(missing) > 0 {
		fmt.Fprintf(w, "could not create roles %s: the database user lacks CREATEROLE. Ask a DBA to run:\n\n%s\nthen run `botq migrate up` again to grant them.\n",
			strings.Join(missing, ", "), indent(store.RolesCreateSQL(missing)))
	}
	s, err := store.New(schema)
	if err != nil {
		return err
	}
	granted, err := s.RolesGrant(ctx, pool)
	if err != nil {
		return err
	}
	if len(granted) > 0 {
		fmt.Fprintf(w, "granted %s their rights in schema %s\n", strings.Join(granted, ", "), schema)
	}
	return nil
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}
