package migrations_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

// An enqueue takes no lock on its app's or kind's row (action has no
// foreign key to them), and what the keys guarded still holds, for the
// schema's owner too: an app or a kind is never deleted or renamed, and an
// action of an unknown app or kind is refused by name.
func TestAppsAndKindsAreKeptWithoutKeys(t *testing.T) {
	ctx := context.Background()
	tx := storetest.Tx(t)

	var keys int
	require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM pg_constraint
		WHERE conrelid = 'action'::regclass AND confrelid IN ('app'::regclass, 'kind_config'::regclass)`).Scan(&keys))
	require.Zero(t, keys, "action's rows must not lock their app's and kind's rows")

	_, err := tx.Exec(ctx, "INSERT INTO app (id) VALUES ('kept-app')")
	require.NoError(t, err)
	refused := func(sql, want string) {
		t.Helper()
		err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			_, err := sp.Exec(ctx, sql)
			return err
		})
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s: %v", sql, err)
		require.Equal(t, "23503", pgErr.Code, sql)
		require.Contains(t, pgErr.Message, want, sql)
	}
	refused("DELETE FROM app WHERE id = 'kept-app'", "app 'kept-app' is named by the audit history")
	refused("UPDATE app SET id = 'renamed' WHERE id = 'kept-app'", "app 'kept-app' is named by the audit history")
	refused("DELETE FROM kind_config WHERE kind = 'note'", "kind 'note' is named by the audit history")
	refused("UPDATE kind_config SET kind = 'memo' WHERE kind = 'note'", "kind 'note' is named by the audit history")
	refused(`INSERT INTO action (app_id, kind, payload) VALUES ('no-such-app', 'note', '{}')`, "app_id 'no-such-app' is not a known app")

	// An update that keeps the key is not a rename.
	_, err = tx.Exec(ctx, "UPDATE app SET id = id WHERE id = 'kept-app'")
	require.NoError(t, err)
}
