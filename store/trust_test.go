package store_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// requireCode checks that err is a Postgres error with SQLSTATE code whose
// message contains each of want.
func requireCode(t *testing.T, err error, code string, want ...string) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	require.Error(t, err)
	require.True(t, errors.As(err, &pgErr), "want SQLSTATE %s, got %v", code, err)
	require.Equal(t, code, pgErr.Code, pgErr.Message)
	for _, w := range want {
		require.Contains(t, pgErr.Message, w)
	}
	return pgErr
}

// Two bots of different owners, each granted its own app and one shared
// app, try to act for each other, through SQL and through the Go API: every
// attempt is refused, names the app, and stores nothing.
func TestTrustBotsActOnlyForTheirApps(t *testing.T) {
	t.Parallel()
	e := setupRoles(t)
	ctx := e.ctx
	botA, nameA := e.loginAs(t, store.DBRoleEnqueuer)
	botB, nameB := e.loginAs(t, store.DBRoleEnqueuer)
	appA, appB, shared := e.appID, storetest.App(ctx, t, e.s, e.owner, nil), storetest.App(ctx, t, e.s, e.owner, nil)
	unknownToAll := storetest.App(ctx, t, e.s, e.owner, nil)
	for _, g := range []struct{ who, app string }{{nameA, appA}, {nameB, appB}, {nameA, shared}, {nameB, shared}} {
		_, err := e.s.GrantAdd(ctx, e.owner, g.who, g.app, store.ScopeConversation, "ops", "test")
		require.NoError(t, err)
	}
	count := func() (n int) {
		require.NoError(t, e.owner.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.action`, e.schema)).Scan(&n))
		return n
	}
	insertSQL := `INSERT INTO action (app_id, kind, payload, idempotency_key) VALUES ($1, $2, $3, $4)`
	respond := func(author string) []byte { return []byte(storetest.RespondPayload(author, "hello")) }
	regUpdate := []byte(`{"platform":"EXTERNAL","companyKey":"acme","networkKey":"facebook","externalId":"page-1","appId":"x","name":"n","callbackUrl":"https://evil.example/cb","credentials":{"type":"BASIC_AUTH","identity":"i","secret":"s"}}`)

	before := count()
	// SQL, the function and Go: another owner's app, and an app nobody granted.
	for _, app := range []string{appB, unknownToAll} {
		_, err := botA.Exec(ctx, insertSQL, app, "respond", respond("a"), "k-"+app)
		requireCode(t, err, "42501", app, nameA)
		_, err = botA.Exec(ctx, `SELECT * FROM enqueue($1, 'respond', $2)`, app, respond("a"))
		requireCode(t, err, "42501", app)
		_, err = e.s.ActionEnqueue(ctx, botA, []store.ActionInsertParams{{AppID: app, Kind: "respond", Payload: respond("a")}})
		require.ErrorIs(t, err, store.ErrForbidden)
		require.Contains(t, err.Error(), app)
	}
	// Kinds beyond a conversation need an explicit grant.
	for _, kind := range []string{"registration_update", "registration_delete", "token_revoke", "mode"} {
		_, err := botA.Exec(ctx, insertSQL, appA, kind, regUpdate, "k-"+kind)
		requireCode(t, err, "42501", appA, kind)
	}
	// B in the shared app is fine; in A's app it is refused too.
	_, err := botB.Exec(ctx, insertSQL, shared, "respond", respond("b"), "b-shared")
	require.NoError(t, err)
	_, err = botB.Exec(ctx, insertSQL, appA, "respond", respond("b"), "b-in-a")
	requireCode(t, err, "42501", appA, nameB)
	require.Equal(t, before+1, count(), "only what was granted was stored")

	// Within its grants a bot enqueues; with --all-kinds it may manage.
	_, err = botA.Exec(ctx, insertSQL, appA, "respond", respond("a"), "mine")
	require.NoError(t, err)
	_, err = e.s.GrantAdd(ctx, e.owner, nameA, appA, store.ScopeAll, "ops", "provisioning")
	require.NoError(t, err)
	_, err = botA.Exec(ctx, insertSQL, appA, "token_refresh", []byte(`{}`), "refresh-1")
	require.NoError(t, err)
	// A grant taken away is gone.
	require.NoError(t, e.s.GrantRemove(ctx, e.owner, nameA, appA, "ops", "offboarded"))
	_, err = botA.Exec(ctx, insertSQL, appA, "respond", respond("a"), "after")
	requireCode(t, err, "42501")

	// Grants are audited with their actor.
	evs, err := e.s.EventList(ctx, e.owner, store.EventListParams{AppID: appA})
	require.NoError(t, err)
	kinds := map[string]string{}
	for _, ev := range evs {
		kinds[ev.Kind] = ev.Actor
	}
	require.Equal(t, "ops", kinds["grant"])
	require.Equal(t, "ops", kinds["grant_revoke"])
}

// An idempotency key is one request of one principal (Stripe's rule): the
// same principal retrying gets its own action back; another principal's
// use of the key, or a different kind, payload or lane, is refused with
// BQ003, which shows nothing of the other action.
func TestTrustIdempotencyKeyIsPerPrincipal(t *testing.T) {
	t.Parallel()
	e := setupRoles(t)
	ctx := e.ctx
	botA, nameA := e.loginAs(t, store.DBRoleEnqueuer)
	botB, nameB := e.loginAs(t, store.DBRoleEnqueuer)
	for _, who := range []string{nameA, nameB} {
		_, err := e.s.GrantAdd(ctx, e.owner, who, e.appID, store.ScopeConversation, "ops", "")
		require.NoError(t, err)
	}
	payload := []byte(storetest.RespondPayload("cust", "Your order shipped"))
	res, err := e.s.ActionEnqueue(ctx, botA, []store.ActionInsertParams{{AppID: e.appID, Kind: "respond", Payload: payload, IdempotencyKey: "order-42"}})
	require.NoError(t, err)
	mine := res[0].ID

	again, err := e.s.ActionEnqueue(ctx, botA, []store.ActionInsertParams{{AppID: e.appID, Kind: "respond", Payload: payload, IdempotencyKey: "order-42"}})
	require.NoError(t, err)
	require.True(t, again[0].Existed)
	require.Equal(t, mine, again[0].ID, "the same principal's retry gets its own action")
	tag, err := botA.Exec(ctx, `INSERT INTO action (app_id, kind, payload, idempotency_key) VALUES ($1, 'respond', $2, 'order-42')`, e.appID, payload)
	require.NoError(t, err)
	require.Zero(t, tag.RowsAffected(), "a retried SQL insert is skipped")

	refused := []struct {
		name string
		conn *pgx.Conn
		p    store.ActionInsertParams
	}{
		{"another principal", botB, store.ActionInsertParams{AppID: e.appID, Kind: "respond", Payload: payload, IdempotencyKey: "order-42"}},
		{"another payload", botA, store.ActionInsertParams{AppID: e.appID, Kind: "respond", Payload: []byte(storetest.RespondPayload("cust", "other")), IdempotencyKey: "order-42"}},
		{"another kind", botA, store.ActionInsertParams{AppID: e.appID, Kind: "note", Payload: []byte(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1"},"author":{"id":"cust"},"note":"x"}`), IdempotencyKey: "order-42"}},
		{"another lane", botA, store.ActionInsertParams{AppID: e.appID, Kind: "respond", Payload: payload, IdempotencyKey: "order-42", Lane: "elsewhere"}},
	}
	for _, tt := range refused {
		_, err := e.s.ActionEnqueue(ctx, tt.conn, []store.ActionInsertParams{tt.p})
		require.ErrorIs(t, err, store.ErrKeyReused, tt.name)
		require.NotContains(t, err.Error(), "action "+strconv.FormatInt(mine, 10), "%s: the other action is not shown", tt.name)
		require.NotContains(t, err.Error(), nameA, "%s: nor its principal", tt.name)
	}
	// The plain SQL path of another principal, with its own SQLSTATE.
	_, err = botB.Exec(ctx, `INSERT INTO action (app_id, kind, payload, idempotency_key) VALUES ($1, 'respond', $2, 'order-42')`, e.appID, payload)
	requireCode(t, err, "BQ003", "order-42")

	var n int
	require.NoError(t, e.owner.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.action WHERE idempotency_key = 'order-42'`, e.schema)).Scan(&n))
	require.Equal(t, 1, n)
}

// Columns botq sets are refused at the INSERT, even from the schema's
// owner, as state is; an empty or whitespace-only respond text is refused
// naming the field.
func TestTrustCallerSetColumnsAndEmptyText(t *testing.T) {
	t.Parallel()
	e := setupRoles(t)
	ctx := e.ctx
	payload := storetest.RespondPayload("a", "hi")
	for col, val := range map[string]any{"river_job_id": 123456789, "replay_of": 1, "created_by": "someone-else"} {
		_, err := e.owner.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload, %s) VALUES ($1, 'respond', $2, $3)`, e.schema, col),
			e.appID, payload, val)
		pgErr := requireCode(t, err, "22023", col)
		require.Equal(t, col, pgErr.ColumnName)
	}
	for _, text := range []string{"", "   ", "\n\t"} {
		body := fmt.Sprintf(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":"a"},"text":%q}`, text)
		_, err := e.owner.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload) VALUES ($1, 'respond', $2)`, e.schema), e.appID, body)
		pgErr := requireCode(t, err, "22023", "payload.text")
		require.Equal(t, "payload.text", pgErr.ColumnName)
		_, err = e.s.ActionInsert(ctx, e.owner, store.ActionInsertParams{AppID: e.appID, Kind: "respond", Payload: []byte(body)})
		var ve *store.ValidationError
		require.ErrorAs(t, err, &ve, "text %q", text)
		require.Equal(t, "payload.text", ve.Field)
	}
}

// botq runs as botq_runtime, which may write what running botq needs but
// not rewrite history: attempts and events are never updated or deleted,
// actions and request records are deleted only by retention (which runs as
// the owner), and a request record moves only along its life.
func TestTrustAuditIsAppendOnlyForTheRuntimeRole(t *testing.T) {
	t.Parallel()
	e := setupRoles(t)
	ctx := e.ctx
	rt, _ := e.loginAs(t, store.DBRoleRuntime)
	_, err := rt.Exec(ctx, "SET ROLE "+store.DBRoleRuntime)
	require.NoError(t, err)

	// What botq writes, the runtime role writes.
	res, err := e.s.ActionInsert(ctx, rt, store.ActionInsertParams{AppID: e.appID, Kind: "respond", Payload: []byte(storetest.RespondPayload("a", "hi")), CreatedBy: "api:x"})
	require.NoError(t, err, "the service enqueues in an API key's name")
	a := res.Action
	tx, err := rt.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, e.s.ResultRecord(ctx, tx, []*store.AttemptRecordParams{{
		ActionID: a.ID, RiverJobID: a.RiverJobID, JobAttempt: 1, Worker: "w", Outcome: store.OutcomeOK, HTTPStatus: 202, RequestID: "req-1",
		NewState: store.ActionSent, WireSent: true,
	}}, []*store.RequestUpsertParams{{RequestID: "req-1", AppID: e.appID, ActionID: &a.ID, State: store.RequestPending, HTTPStatus: 202}}))
	require.NoError(t, tx.Commit(ctx))
	_, err = e.s.EventInsert(ctx, rt, store.EventInsertParams{AppID: e.appID, Kind: "pause", Actor: "op"})
	require.NoError(t, err)
	// A pending record is checked and settled; then it is final.
	require.NoError(t, e.s.RequestChecked(ctx, rt, a.CreatedAt, []string{"req-1"}, []time.Time{a.CreatedAt}))
	_, err = e.s.RequestSettle(ctx, rt, a.CreatedAt, []store.Settlement{{RequestID: "req-1", State: store.RequestSuccess}})
	require.NoError(t, err)

	rewrites := []struct {
		sql  string
		code string
	}{
		{`UPDATE attempt SET error = 'nothing happened'`, "42501"},
		{`DELETE FROM attempt`, "42501"},
		{`UPDATE event SET actor = 'nobody'`, "42501"},
		{`DELETE FROM event`, "42501"},
		{`DELETE FROM request`, "42501"},
		{`DELETE FROM action`, "42501"},
		{`UPDATE request SET state = 'ERROR' WHERE request_id = 'req-1'`, "BQ004"},
		{`UPDATE request SET details = '{"code":"403"}' WHERE request_id = 'req-1'`, "BQ004"},
		{`UPDATE request SET app_id = app_id || 'x' WHERE request_id = 'req-1'`, "BQ004"},
		{`UPDATE action SET payload = '{}'`, "BQ002"},
		{`TRUNCATE attempt`, "42501"},
	}
	for _, tt := range rewrites {
		_, err := rt.Exec(ctx, tt.sql)
		requireCode(t, err, tt.code)
	}
	// Retention deletes, as the owner, on the runtime role's behalf.
	purged, err := e.s.RetentionPurge(ctx, rt, a.CreatedAt.AddDate(0, 0, 1), 10)
	require.NoError(t, err)
	require.Equal(t, int64(1), purged.Events)
	require.Equal(t, int64(1), purged.Requests)
}

// The caller checks cost an INSERT little: a trusted role's (botq's own)
// skips the checks' function, and neither a trusted role's nor a bot's
// calls a SQL-language function that is not inlined, which Postgres 15
// parses and plans again in every transaction.
func TestTrustChecksCallNoPlannedSQLFunction(t *testing.T) {
	t.Parallel()
	e := setupRoles(t)
	ctx := e.ctx
	bot, name := e.loginAs(t, store.DBRoleEnqueuer, "track_functions = 'all'")
	_, err := e.s.GrantAdd(ctx, e.owner, name, e.appID, store.ScopeConversation, "ops", "test")
	require.NoError(t, err)
	_, err = e.owner.Exec(ctx, "SET track_functions = 'all'")
	require.NoError(t, err)

	// calls waits until want has n calls counted and returns the calls of
	// this schema's functions by name; none may be a SQL function.
	calls := func(want string, n int64) map[string]int64 {
		t.Helper()
		var got map[string]int64
		var sqlFns []string
		for deadline := time.Now().Add(10 * time.Second); got[want] != n && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			_, err := e.owner.Exec(ctx, "SELECT pg_stat_clear_snapshot()")
			require.NoError(t, err)
			rows, err := e.owner.Query(ctx, `
				SELECT p.proname, l.lanname, s.calls
				FROM pg_stat_user_functions s
				JOIN pg_proc p ON p.oid = s.funcid
				JOIN pg_language l ON l.oid = p.prolang
				WHERE p.pronamespace = $1::regnamespace`, e.schema)
			require.NoError(t, err)
			got, sqlFns = map[string]int64{}, nil
			for rows.Next() {
				var fn, lang string
				var c int64
				require.NoError(t, rows.Scan(&fn, &lang, &c))
				got[fn] = c
				if lang == "sql" {
					sqlFns = append(sqlFns, fn)
				}
			}
			require.NoError(t, rows.Err())
		}
		require.Equal(t, n, got[want], "calls of %s", want)
		require.Empty(t, sqlFns, "SQL functions called by an enqueue")
		return got
	}

	payload := storetest.RespondPayload("a", "hi")
	insert := fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload) VALUES ($1, 'respond', $2)`, e.schema)
	_, err = e.owner.Exec(ctx, insert, e.appID, payload)
	require.NoError(t, err)
	_, err = e.owner.Exec(ctx, "SELECT pg_stat_force_next_flush()")
	require.NoError(t, err)
	got := calls("action_before_insert", 1)
	require.Zero(t, got["action_caller_columns"], "a trusted role's plain INSERT runs no caller check")

	_, err = bot.Exec(ctx, insert, e.appID, payload)
	require.NoError(t, err)
	_, err = bot.Exec(ctx, "SELECT pg_stat_force_next_flush()")
	require.NoError(t, err)
	got = calls("action_before_insert", 2)
	require.Equal(t, int64(1), got["action_caller_columns"], "a bot's INSERT is checked")
	require.Equal(t, int64(1), got["may_enqueue_as"], "against its grants")
}
