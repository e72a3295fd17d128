package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// roleEnv is a committed schema with botq's roles granted in it and login
// roles that are members of them.
type roleEnv struct {
	ctx    context.Context
	schema string
	s      *store.Store
	owner  *pgx.Conn
	appID  string
}

// loginAs creates a LOGIN role that is a member of group, with settings
// ("name = value", set on the role by the owner, as a superuser may set
// what the role itself may not), and connects as it.
func (e *roleEnv) loginAs(t *testing.T, group string, settings ...string) (*pgx.Conn, string) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "botq_test_" + hex.EncodeToString(b[:])
	password := hex.EncodeToString(b[:]) + "-pw"
	_, err := e.owner.Exec(e.ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s' IN ROLE %s", name, password, group))
	require.NoError(t, err)
	for _, set := range settings {
		_, err = e.owner.Exec(e.ctx, fmt.Sprintf("ALTER ROLE %s SET %s", name, set))
		require.NoError(t, err)
	}
	cfg, err := pgx.ParseConfig(storetest.DatabaseURL(t))
	require.NoError(t, err)
	cfg.User, cfg.Password = name, password
	cfg.RuntimeParams["search_path"] = e.schema
	conn, err := pgx.ConnectConfig(e.ctx, cfg)
	require.NoError(t, err, "log in as %s", name)
	t.Cleanup(func() {
		_ = conn.Close(context.Background())
		_, _ = e.owner.Exec(context.Background(), "DROP ROLE IF EXISTS "+name)
	})
	return conn, name
}

func setupRoles(t *testing.T) *roleEnv {
	t.Helper()
	ctx := context.Background()
	// The pool, the owner's connection and two login roles' at once.
	storetest.Conns(t, 5)
	schema, pool, s := storetest.NewStore(t, 2)
	owner, err := pgx.Connect(ctx, storetest.DatabaseURL(t))
	require.NoError(t, err)

	created, missing, err := store.RolesEnsure(ctx, owner)
	require.NoError(t, err)
	require.Empty(t, missing, "the test database's user can create roles")
	// Roles are cluster-wide: drop only those this test created, once this
	// schema's grants are gone (the schema is dropped after this cleanup).
	t.Cleanup(func() {
		ctx := context.Background()
		for _, r := range created {
			_, _ = owner.Exec(ctx, fmt.Sprintf("REVOKE ALL ON ALL TABLES IN SCHEMA %s FROM %s", schema, r))
			_, _ = owner.Exec(ctx, fmt.Sprintf("REVOKE USAGE ON SCHEMA %s FROM %s", schema, r))
			if _, err := owner.Exec(ctx, "DROP ROLE "+r); err != nil {
				// Another schema of this database granted it meanwhile.
				_, _ = owner.Exec(ctx, "DROP OWNED BY "+r)
				if _, err := owner.Exec(ctx, "DROP ROLE "+r); err != nil {
					t.Logf("role %s left behind: %v", r, err)
				}
			}
		}
		_ = owner.Close(ctx)
	})
	granted, err := s.RolesGrant(ctx, pool)
	require.NoError(t, err)
	require.ElementsMatch(t, store.DBRoles, granted)

	e := &roleEnv{ctx: ctx, schema: schema, s: s, owner: owner}
	e.appID = storetest.App(ctx, t, s, pool, nil)
	return e
}

func requireDenied(t *testing.T, err error, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.Error(t, err, what)
	require.True(t, errors.As(err, &pgErr), "%s: %v", what, err)
	require.Equal(t, "42501", pgErr.Code, "%s: permission denied, got %s", what, pgErr.Message)
}

// requireRefused accepts a permission error or Postgres's refusal to
// write to a view that is not updatable.
func requireRefused(t *testing.T, err error, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.Error(t, err, what)
	require.True(t, errors.As(err, &pgErr), "%s: %v", what, err)
	require.Contains(t, []string{"42501", "55000"}, pgErr.Code, "%s: refused, got %s", what, pgErr.Message)
}

// relations lists every table and view of the schema with one column each.
func relations(t *testing.T, e *roleEnv) map[string]string {
	t.Helper()
	rows, err := e.owner.Query(e.ctx, `
		SELECT c.relname || CASE WHEN c.relkind = 'v' THEN ':view' ELSE '' END,
		       (SELECT attname FROM pg_attribute
		        WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped AND attidentity = '' AND attgenerated = ''
		        ORDER BY CASE WHEN c.relkind = 'v' THEN -attnum ELSE attnum END LIMIT 1)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'p')`, e.schema)
	require.NoError(t, err)
	out := map[string]string{}
	for rows.Next() {
		var rel, col string
		require.NoError(t, rows.Scan(&rel, &col))
		out[rel] = col
	}
	require.NoError(t, rows.Err())
	require.Contains(t, out, "river_job")
	require.Contains(t, out, "action_history:view")
	return out
}

// requireCannotWrite checks that conn can neither update nor delete nor
// truncate any table or view of the schema, nor run the functions that
// change lanes and jobs.
func requireCannotWrite(t *testing.T, e *roleEnv, conn *pgx.Conn) {
	t.Helper()
	for name, col := range relations(t, e) {
		rel, isView := strings.CutSuffix(name, ":view")
		denied := requireDenied
		if isView {
			// Postgres refuses writes to a view that cannot be updated before
			// it checks privileges.
			denied = requireRefused
		}
		_, err := conn.Exec(e.ctx, fmt.Sprintf("UPDATE %s SET %s = %s", rel, col, col))
		denied(t, err, "update "+rel)
		_, err = conn.Exec(e.ctx, "DELETE FROM "+rel)
		denied(t, err, "delete from "+rel)
		_, err = conn.Exec(e.ctx, "TRUNCATE "+rel)
		if err != nil {
			var pgErr *pgconn.PgError
			require.True(t, errors.As(err, &pgErr))
			require.Contains(t, []string{"42501", "42809"}, pgErr.Code, "truncate %s: %s", rel, pgErr.Message)
		} else {
			t.Fatalf("truncate %s succeeded", rel)
		}
	}
	for _, call := range []string{
		"SELECT lane_unblock('x', 'y')",
		"SELECT lane_release_next('x', 'y')",
		"SELECT notify_insert(ARRAY['botq'])",
		"SELECT grant_roles()",
	} {
		_, err := conn.Exec(e.ctx, call)
		requireDenied(t, err, call)
	}
}

// TestRoles logs in as members of botq's roles. Roles are cluster-wide, so
// the cases share one setup: a second one could drop them under the first.
func TestRoles(t *testing.T) {
	t.Parallel()
	e := setupRoles(t)
	t.Run("Enqueuer", func(t *testing.T) { testRolesEnqueuer(t, e) })
	t.Run("Auditor", func(t *testing.T) { testRolesAuditor(t, e) })
	t.Run("GrantIdempotent", func(t *testing.T) {
		for range 2 {
			granted, err := e.s.RolesGrant(e.ctx, e.owner)
			require.NoError(t, err)
			require.ElementsMatch(t, store.DBRoles, granted)
		}
		_, missing, err := store.RolesEnsure(e.ctx, e.owner)
		require.NoError(t, err)
		require.Empty(t, missing)
		require.Contains(t, store.RolesCreateSQL(store.DBRoles), "CREATE ROLE botq_auditor NOLOGIN;")
	})
}

func testRolesEnqueuer(t *testing.T, e *roleEnv) {
	bot, botName := e.loginAs(t, store.DBRoleEnqueuer)
	other, otherName := e.loginAs(t, store.DBRoleEnqueuer)
	for _, name := range []string{botName, otherName} {
		_, err := e.s.GrantAdd(e.ctx, e.owner, name, e.appID, store.ScopeConversation, "test", "")
		require.NoError(t, err)
	}

	insert := func(conn *pgx.Conn, key string) (int64, error) {
		var id int64
		err := conn.QueryRow(e.ctx, `INSERT INTO action (app_id, kind, payload, idempotency_key) VALUES ($1, 'respond', $2, $3) RETURNING id`,
			e.appID, storetest.RespondPayload("author-"+key, "hi"), key).Scan(&id)
		return id, err
	}
	mine, err := insert(bot, "bot-1")
	require.NoError(t, err, "an enqueuer inserts actions")
	_, err = bot.Exec(e.ctx, `INSERT INTO action (app_id, kind, payload, lane) VALUES ($1, 'respond', $2, 'my-lane')`,
		e.appID, storetest.RespondPayload("a", "hi"))
	require.NoError(t, err, "and may choose the lane")
	theirs, err := insert(other, "other-1")
	require.NoError(t, err)

	var state, createdBy string
	require.NoError(t, bot.QueryRow(e.ctx, `SELECT state FROM action_status WHERE action_id = $1`, mine).Scan(&state))
	require.Equal(t, "queued", state)
	require.NoError(t, e.owner.QueryRow(e.ctx, fmt.Sprintf(`SELECT created_by FROM %s.action WHERE id = $1`, e.schema), mine).Scan(&createdBy))
	require.Equal(t, botName, createdBy, "created_by is the login role")

	var n int
	require.NoError(t, bot.QueryRow(e.ctx, `SELECT count(*) FROM action_status WHERE action_id = $1`, theirs).Scan(&n))
	require.Zero(t, n, "another bot's actions are invisible")
	require.NoError(t, bot.QueryRow(e.ctx, `SELECT count(*) FROM action_status`).Scan(&n))
	require.Equal(t, 2, n, "only its own actions")

	tests := []struct {
		give string
		sql  string
	}{
		{"read payloads", `SELECT payload FROM action`},
		{"read the audit views", `SELECT * FROM action_history`},
		{"read requests", `SELECT * FROM request`},
		{"read River's jobs", `SELECT * FROM river_job`},
		{"set its own state", `INSERT INTO action (app_id, kind, payload, state) VALUES ('x', 'respond', '{}', 'succeeded')`},
		{"pose as another creator", `INSERT INTO action (app_id, kind, payload, created_by) VALUES ('x', 'respond', '{}', 'someone')`},
		{"link a replay", `INSERT INTO action (app_id, kind, payload, replay_of) VALUES ('x', 'respond', '{}', 1)`},
		{"insert events", `INSERT INTO event (kind, actor) VALUES ('pause', 'me')`},
		{"insert apps", `INSERT INTO app (id) VALUES ('mine')`},
	}
	for _, tt := range tests {
		_, err := bot.Exec(e.ctx, tt.sql)
		requireDenied(t, err, tt.give)
	}
	requireCannotWrite(t, e, bot)

	// The Go API and the enqueue functions need no more: ids and "existed"
	// come back, created_by is the bot, and nobody can pose as another.
	note := []byte(`{"coordinate":{"companyKey":"acme","networkKey":"f","externalId":"p"},"author":{"id":"a"},"note":"n"}`)
	_, err = e.s.ActionEnqueue(e.ctx, bot, []store.ActionInsertParams{
		{AppID: e.appID, Kind: "note", Payload: note, IdempotencyKey: "go-0", CreatedBy: "someone-else"},
	})
	require.ErrorIs(t, err, store.ErrForbidden, "a bot may not enqueue in another's name")
	res, err := e.s.ActionEnqueue(e.ctx, bot, []store.ActionInsertParams{
		{AppID: e.appID, Kind: "note", Payload: note, IdempotencyKey: "go-1"},
		{AppID: e.appID, Kind: "respond", Payload: storetest.RespondPayload("author-bot-1", "hi"), IdempotencyKey: "bot-1"},
	})
	require.NoError(t, err, "an enqueuer enqueues through the Go API")
	require.False(t, res[0].Existed)
	require.True(t, res[1].Existed, "a known key gives back the existing action")
	require.Equal(t, mine, res[1].ID)
	require.NoError(t, e.owner.QueryRow(e.ctx, fmt.Sprintf(`SELECT created_by FROM %s.action WHERE id = $1`, e.schema), res[0].ID).Scan(&createdBy))
	require.Equal(t, botName, createdBy)
	var sqlID int64
	var existed bool
	require.NoError(t, bot.QueryRow(e.ctx, `SELECT action_id, existed FROM enqueue($1, 'note', '{"coordinate":{"companyKey":"acme","networkKey":"f","externalId":"p"},"author":{"id":"b"},"note":"n"}', 'sql-1')`, e.appID).Scan(&sqlID, &existed))
	require.False(t, existed)
	_, err = bot.Exec(e.ctx, `SELECT * FROM enqueue($1, 'note', '{}', 'x', NULL, 'postgres')`, e.appID)
	requireDenied(t, err, "enqueue as a role it is not")

	require.NoError(t, e.owner.QueryRow(e.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.action`, e.schema)).Scan(&n))
	require.Equal(t, 5, n, "nothing was deleted")
}

func testRolesAuditor(t *testing.T, e *roleEnv) {
	auditor, _ := e.loginAs(t, store.DBRoleAuditor)

	pool := e.owner
	_, err := e.s.ActionInsert(e.ctx, pool, store.ActionInsertParams{
		AppID: e.appID, Kind: "respond", Payload: storetest.RespondPayload("a", "hello"), IdempotencyKey: "k1",
	})
	require.NoError(t, err)
	_, err = e.s.EventInsert(e.ctx, pool, store.EventInsertParams{AppID: e.appID, Kind: "pause", Actor: "op"})
	require.NoError(t, err)

	for _, view := range []string{"action_history", "attempt_history", "request_history", "event_log"} {
		_, err := auditor.Exec(e.ctx, "SELECT * FROM "+view)
		require.NoError(t, err, "an auditor reads %s", view)
	}
	var n int
	require.NoError(t, auditor.QueryRow(e.ctx, `SELECT count(*) FROM action_history`).Scan(&n))
	require.GreaterOrEqual(t, n, 1)

	tests := []struct {
		give string
		sql  string
	}{
		{"read the action table", `SELECT * FROM action`},
		{"read the app table (tokens)", `SELECT token_ciphertext FROM app`},
		{"read River's jobs", `SELECT * FROM river_job`},
		{"read an enqueuer's view", `SELECT * FROM action_status`},
		{"enqueue", `INSERT INTO action (app_id, kind, payload) VALUES ('x', 'respond', '{}')`},
		{"insert events", `INSERT INTO event (kind, actor) VALUES ('pause', 'me')`},
	}
	for _, tt := range tests {
		_, err := auditor.Exec(e.ctx, tt.sql)
		requireDenied(t, err, tt.give)
	}
	requireCannotWrite(t, e, auditor)
}
