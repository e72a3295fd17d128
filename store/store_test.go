package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

type testBundle struct {
	ctx   context.Context
	s     *store.Store
	tx    pgx.Tx
	appID string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	s := storetest.Store(t)
	tx := storetest.Tx(t)
	return &testBundle{ctx: ctx, s: s, tx: tx, appID: storetest.App(ctx, t, s, tx, nil)}
}

func (b *testBundle) insert(t *testing.T, key string) *store.ActionInsertResult {
	t.Helper()
	res, err := b.s.ActionInsert(b.ctx, b.tx, store.ActionInsertParams{
		AppID: b.appID, Kind: "respond", Payload: storetest.RespondPayload("author-"+key, "hello"), IdempotencyKey: key,
	})
	require.NoError(t, err)
	return res
}

func jobState(ctx context.Context, t *testing.T, s *store.Store, db store.DBTX, jobID int64) string {
	t.Helper()
	var state string
	err := db.QueryRow(ctx, fmt.Sprintf(`SELECT state::text FROM %s.river_job WHERE id = $1`, s.Schema()), jobID).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	require.NoError(t, err)
	return state
}

func TestActionInsert(t *testing.T) {
	t.Parallel()
	b := setup(t)

	res := b.insert(t, "k1")
	require.False(t, res.Existed)
	a := res.Action
	require.Equal(t, store.ActionQueued, a.State)
	require.Equal(t, "facebook/page-1/author-k1", a.Lane, "default lane is the conversation")
	require.NotZero(t, a.RiverJobID)
	require.Equal(t, "available", jobState(b.ctx, t, b.s, b.tx, a.RiverJobID), "the action's River job exists in the same transaction")

	var payload map[string]any
	require.NoError(t, json.Unmarshal(a.Payload, &payload))
	require.Equal(t, "message", payload["type"], "the Bot v3 type is filled in")
}

func TestActionInsertIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)

	first := b.insert(t, "same-key")
	second := b.insert(t, "same-key")
	require.True(t, second.Existed)
	require.Equal(t, first.Action.ID, second.Action.ID)

	var n int
	require.NoError(t, b.tx.QueryRow(b.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.action WHERE app_id = $1`, b.s.Schema()), b.appID).Scan(&n))
	require.Equal(t, 1, n)

	// A plain SQL insert of the same request is skipped too, and reports 0
	// rows; the same key with another payload is refused (BQ003).
	insert := fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload, idempotency_key) VALUES ($1, 'respond', $2, 'same-key')`, b.s.Schema())
	tag, err := b.tx.Exec(b.ctx, insert, b.appID, first.Action.Payload)
	require.NoError(t, err)
	require.Zero(t, tag.RowsAffected())
	_, err = b.tx.Exec(b.ctx, "SAVEPOINT s")
	require.NoError(t, err)
	_, err = b.tx.Exec(b.ctx, insert, b.appID, storetest.RespondPayload("x", "again"))
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "BQ003", pgErr.Code)
	require.NotContains(t, pgErr.Message, fmt.Sprint(first.Action.ID), "the other action is not shown")
	_, err = b.tx.Exec(b.ctx, "ROLLBACK TO SAVEPOINT s")
	require.NoError(t, err)
}

func TestActionInsertManyDuplicatesInBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := func(key, author string) store.ActionInsertParams {
		return store.ActionInsertParams{AppID: b.appID, Kind: "respond", Payload: storetest.RespondPayload(author, "hi"), IdempotencyKey: key}
	}
	res, err := b.s.ActionInsertMany(b.ctx, b.tx, []store.ActionInsertParams{p("a", "1"), p("b", "2"), p("a", "1")})
	require.NoError(t, err)
	require.Len(t, res, 3)
	require.False(t, res[0].Existed)
	require.False(t, res[1].Existed)
	require.True(t, res[2].Existed)
	require.Equal(t, res[0].Action.ID, res[2].Action.ID)

	// A key repeated with another payload is another request: refused, and
	// nothing of the batch is stored.
	_, err = b.s.ActionInsertMany(b.ctx, b.tx, []store.ActionInsertParams{p("c", "1"), p("c", "3")})
	require.ErrorIs(t, err, store.ErrKeyReused)
}

// enqueue_many (ActionEnqueue) answers, in input order, the new actions,
// the ones whose key was known before the call, and repeats of a key within
// the call, which get its first occurrence's action.
func TestActionEnqueueKnownAndRepeatedKeys(t *testing.T) {
	t.Parallel()
	type result struct {
		id      int64
		existed bool
	}
	// Both ways of enqueueing many: enqueue_many (Go's Enqueue) and the
	// service's own INSERT (the HTTP API, the CLI).
	ways := map[string]func(b *testBundle, ps []store.ActionInsertParams) ([]result, error){
		"enqueue_many": func(b *testBundle, ps []store.ActionInsertParams) ([]result, error) {
			res, err := b.s.ActionEnqueue(b.ctx, b.tx, ps)
			out := make([]result, len(res))
			for i, r := range res {
				out[i] = result{r.ID, r.Existed}
			}
			return out, err
		},
		"insert": func(b *testBundle, ps []store.ActionInsertParams) ([]result, error) {
			res, err := b.s.ActionInsertMany(b.ctx, b.tx, ps)
			out := make([]result, len(res))
			for i, r := range res {
				out[i] = result{r.Action.ID, r.Existed}
			}
			return out, err
		},
	}
	for name, enqueue := range ways {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			p := func(key, author string) store.ActionInsertParams {
				return store.ActionInsertParams{AppID: b.appID, Kind: "respond", Payload: storetest.RespondPayload(author, "hi"), IdempotencyKey: key}
			}
			first, err := enqueue(b, []store.ActionInsertParams{p("k1", "0")})
			require.NoError(t, err)
			require.Len(t, first, 1)
			require.False(t, first[0].existed)

			// Actions without a key (a, b, c) between keyed ones: each is new,
			// and each result is its own action.
			res, err := enqueue(b, []store.ActionInsertParams{p("", "a"), p("k2", "1"), p("k1", "0"), p("", "b"), p("k2", "1"), p("k3", "4"), p("", "c")})
			require.NoError(t, err)
			require.Len(t, res, 7)
			existed := make([]bool, len(res))
			for i, r := range res {
				existed[i] = r.existed
			}
			require.Equal(t, []bool{false, false, true, false, true, false, false}, existed)
			require.Equal(t, first[0].id, res[2].id, "a known key gives back its action")
			require.Equal(t, res[1].id, res[4].id, "a repeated key gives back its first occurrence's action")
			require.NotEqual(t, res[1].id, res[5].id)
			for i, author := range map[int]string{0: "a", 3: "b", 6: "c"} {
				a, err := b.s.ActionGet(b.ctx, b.tx, res[i].id)
				require.NoError(t, err)
				require.Contains(t, string(a.Payload), `"id": "`+author+`"`, "result %d", i)
				require.Len(t, a.IdempotencyKey, 36, "a fresh key")
			}
			var n int
			require.NoError(t, b.tx.QueryRow(b.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.action WHERE app_id = $1`, b.s.Schema()), b.appID).Scan(&n))
			require.Equal(t, 6, n)
		})
	}
}

func TestActionNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.s.ActionGet(b.ctx, b.tx, 987654321)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.s.ActionGetByKey(b.ctx, b.tx, b.appID, "nope")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.s.ActionSetState(b.ctx, b.tx, store.ActionSetStateParams{ID: 987654321, To: store.ActionSent})
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.s.AppGet(b.ctx, b.tx, "no-such-app")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.s.RequestGet(b.ctx, b.tx, "no-such-request")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// legalTransitions is the state machine as documented; the test checks the
// database enforces exactly this.
var legalTransitions = map[store.ActionState][]store.ActionState{
	store.ActionQueued:    {store.ActionRetrying, store.ActionSent, store.ActionSucceeded, store.ActionFailed, store.ActionUnknown, store.ActionCancelled},
	store.ActionRetrying:  {store.ActionQueued, store.ActionSent, store.ActionSucceeded, store.ActionFailed, store.ActionUnknown, store.ActionCancelled},
	store.ActionUnknown:   {store.ActionQueued, store.ActionSent, store.ActionSucceeded, store.ActionFailed, store.ActionCancelled},
	store.ActionSent:      {store.ActionSucceeded, store.ActionFailed},
	store.ActionSucceeded: nil,
	store.ActionFailed:    nil,
	store.ActionCancelled: nil,
}

// pathTo lists the moves that bring a new (queued) action to state.
var pathTo = map[store.ActionState][]store.ActionState{
	store.ActionQueued:    nil,
	store.ActionRetrying:  {store.ActionRetrying},
	store.ActionUnknown:   {store.ActionUnknown},
	store.ActionSent:      {store.ActionSent},
	store.ActionSucceeded: {store.ActionSucceeded},
	store.ActionFailed:    {store.ActionFailed},
	store.ActionCancelled: {store.ActionCancelled},
}

func TestActionTransitions(t *testing.T) {
	t.Parallel()
	for _, from := range store.ActionStates {
		for _, to := range store.ActionStates {
			if from == to {
				continue
			}
			legal := false
			for _, l := range legalTransitions[from] {
				legal = legal || l == to
			}
			t.Run(fmt.Sprintf("%s_to_%s", from, to), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				a := b.insert(t, "k").Action
				for _, step := range pathTo[from] {
					_, err := b.s.ActionSetState(b.ctx, b.tx, store.ActionSetStateParams{ID: a.ID, To: step})
					require.NoError(t, err)
				}
				// A savepoint, so the transaction survives the refusal.
				sp, err := b.tx.Begin(b.ctx)
				require.NoError(t, err)
				got, err := b.s.ActionSetState(b.ctx, sp, store.ActionSetStateParams{ID: a.ID, From: from, To: to})
				if !legal {
					require.ErrorIs(t, err, store.ErrIllegalTransition)
					require.NoError(t, sp.Rollback(b.ctx))
					cur, err := b.s.ActionGet(b.ctx, b.tx, a.ID)
					require.NoError(t, err)
					require.Equal(t, from, cur.State, "a refused move changes nothing")
					return
				}
				require.NoError(t, err)
				require.Equal(t, to, got.State)
				require.Equal(t, to.Final(), got.FinishedAt != nil)
			})
		}
	}
}

// The moves action_transition lists are the ones the update trigger allows
// (TestActionTransitions): the migration that creates the trigger builds
// its condition from the table's rows, and a change to one without the other would make
// the table lie.
func TestActionTransitionTable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rows, err := b.tx.Query(b.ctx, fmt.Sprintf(`SELECT from_state, to_state FROM %s.action_transition`, b.s.Schema()))
	require.NoError(t, err)
	got := map[store.ActionState][]store.ActionState{}
	for rows.Next() {
		var from, to string
		require.NoError(t, rows.Scan(&from, &to))
		got[store.ActionState(from)] = append(got[store.ActionState(from)], store.ActionState(to))
	}
	require.NoError(t, rows.Err())
	for _, from := range store.ActionStates {
		require.ElementsMatch(t, legalTransitions[from], got[from], "moves from %s", from)
	}
}

// A refused move names both states, and what was enqueued stays as it was
// even when the update also makes a legal move.
func TestActionUpdateRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.insert(t, "k").Action
	q := func(sql string) error {
		sp, err := b.tx.Begin(b.ctx)
		require.NoError(t, err)
		defer func() { _ = sp.Rollback(b.ctx) }()
		_, err = sp.Exec(b.ctx, fmt.Sprintf(sql, b.s.Schema()), a.ID)
		return err
	}
	// Every column of what was enqueued (the identity id refuses changes
	// itself), alone and with a legal move.
	for _, set := range []string{"app_id = 'other-app'", "kind = 'tag'", "payload = '{}'", "idempotency_key = 'other'",
		"lane = 'other'", "river_job_id = river_job_id + 1000000", "replay_of = id", "created_at = created_at - interval '1 day'",
		"created_by = 'someone'"} {
		for _, also := range []string{"", ", state = 'sent'"} {
			err := q(`UPDATE %s.action SET ` + set + also + ` WHERE id = $1`)
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr, set+also)
			require.Equal(t, "BQ002", pgErr.Code, set+also)
			require.Contains(t, pgErr.Message, "what was enqueued is history")
		}
	}
	err := q(`UPDATE %s.action SET state = 'succeeded', payload = payload WHERE id = $1`)
	require.NoError(t, err, "setting a column to its own value changes nothing")
	_, err = b.s.ActionSetState(b.ctx, b.tx, store.ActionSetStateParams{ID: a.ID, To: store.ActionSent})
	require.NoError(t, err)
	err = q(`UPDATE %s.action SET state = 'queued' WHERE id = $1`)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "BQ001", pgErr.Code)
	require.Equal(t, "state", pgErr.ColumnName)
	require.Contains(t, pgErr.Message, "cannot go from sent to queued")
}

func TestActionSetStateConditional(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.insert(t, "k").Action
	_, err := b.s.ActionSetState(b.ctx, b.tx, store.ActionSetStateParams{ID: a.ID, From: store.ActionSent, To: store.ActionSucceeded})
	require.ErrorIs(t, err, store.ErrConflict)
}

func TestActionImmutable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.insert(t, "k").Action
	_, err := b.tx.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.action SET payload = '{}' WHERE id = $1`, b.s.Schema()), a.ID)
	require.Error(t, err)
	require.Contains(t, err.Error(), "what was enqueued is history")
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "test_noop" }

// An action insert and a River InsertTx in one transaction commit or roll
// back together.
func TestActionAndRiverInsertShareTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, s := storetest.NewStore(t, 4)
	appID := storetest.App(ctx, t, s, pool, nil)
	client, err := river.NewClient(riverpgxv5.New(nil), &river.Config{Schema: schema})
	require.NoError(t, err)

	count := func() (actions, jobs int) {
		require.NoError(t, pool.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s.action), (SELECT count(*) FROM %[1]s.river_job)`, schema)).Scan(&actions, &jobs))
		return actions, jobs
	}
	enqueue := func(tx pgx.Tx, key string) {
		_, err := s.ActionInsert(ctx, tx, store.ActionInsertParams{AppID: appID, Kind: "note", IdempotencyKey: key,
			Payload: []byte(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"p"},"author":{"id":"a"},"note":"n"}`)})
		require.NoError(t, err)
		_, err = client.InsertTx(ctx, tx, noopArgs{}, nil)
		require.NoError(t, err)
	}

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	enqueue(tx, "rolled-back")
	require.NoError(t, tx.Rollback(ctx))
	actions, jobs := count()
	require.Zero(t, actions)
	require.Zero(t, jobs)

	tx, err = pool.Begin(ctx)
	require.NoError(t, err)
	enqueue(tx, "committed")
	require.NoError(t, tx.Commit(ctx))
	actions, jobs = count()
	require.Equal(t, 1, actions)
	require.Equal(t, 2, jobs, "the action's own job and the explicit InsertTx job")
}

func TestValidationErrorNamesField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.s.ActionInsert(b.ctx, b.tx, store.ActionInsertParams{
		AppID: b.appID, Kind: "priority", IdempotencyKey: "p",
		Payload: []byte(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"p"},"author":{"id":"a"},"newPriority":"high"}`),
	})
	var verr *store.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, "payload.newPriority", verr.Field)
	require.Equal(t, "22023", verr.Code)
	require.Contains(t, verr.Message, "must be an integer")
}

func TestAttemptRecordAndRequest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.insert(t, "k").Action

	n, err := b.s.AttemptRecord(b.ctx, b.tx, &store.AttemptRecordParams{
		ActionID: a.ID, RiverJobID: a.RiverJobID, JobAttempt: 1, WireSent: true, HTTPStatus: 202, RequestID: "req-1",
		Outcome: store.OutcomeOK, Worker: "test", NewState: store.ActionSent,
	})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, b.s.RequestUpsert(b.ctx, b.tx, &store.RequestUpsertParams{RequestID: "req-1", AppID: b.appID, ActionID: &a.ID, State: store.RequestPending, HTTPStatus: 202}))

	got, err := b.s.ActionGet(b.ctx, b.tx, a.ID)
	require.NoError(t, err)
	require.Equal(t, store.ActionSent, got.State)
	require.Equal(t, 1, got.AttemptCount)
	require.Equal(t, "req-1", got.RequestID)

	// A final state is never overwritten by PENDING.
	require.NoError(t, b.s.RequestUpsert(b.ctx, b.tx, &store.RequestUpsertParams{RequestID: "req-1", AppID: b.appID, State: store.RequestSuccess}))
	require.NoError(t, b.s.RequestUpsert(b.ctx, b.tx, &store.RequestUpsertParams{RequestID: "req-1", AppID: b.appID, State: store.RequestPending}))
	r, err := b.s.RequestGet(b.ctx, b.tx, "req-1")
	require.NoError(t, err)
	require.Equal(t, store.RequestSuccess, r.State)
	require.Equal(t, a.ID, *r.ActionID)
	require.NotNil(t, r.FinalizedAt)

	attempts, err := b.s.AttemptList(b.ctx, b.tx, a.ID)
	require.NoError(t, err)
	require.Len(t, attempts, 1)
	require.Equal(t, store.OutcomeOK, attempts[0].Outcome)
}

// A payload holding \u0000 is refused before Postgres (which cannot store
// it) and names the payload; an escaped backslash followed by u0000 is text.
func TestActionInsertEscapedNUL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.s.ActionInsert(b.ctx, b.tx, store.ActionInsertParams{AppID: b.appID, Kind: "respond", Payload: []byte(strings.Replace(string(storetest.RespondPayload("a", "hi")), `"hi"`, `"a\u0000b"`, 1))})
	var verr *store.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, "payload", verr.Field)
	require.Contains(t, verr.Message, "NUL")
	res, err := b.s.ActionInsert(b.ctx, b.tx, store.ActionInsertParams{AppID: b.appID, Kind: "respond", Payload: []byte(strings.Replace(string(storetest.RespondPayload("a", "hi")), `"hi"`, `"a\\u0000b"`, 1))})
	require.NoError(t, err, "a backslash, then u0000, is only text")
	require.Contains(t, string(res.Action.Payload), `\\u0000`)
}

// WorkLoad answers a batch of job executions in one query, each in its
// place: a missing action is nil, and PreviousRecorded tells whether the
// execution before this one (job attempt - 1) left an attempt row.
func TestWorkLoadBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recorded, lost := b.insert(t, "recorded").Action, b.insert(t, "lost").Action
	_, err := b.s.AttemptRecord(b.ctx, b.tx, &store.AttemptRecordParams{
		ActionID: recorded.ID, RiverJobID: recorded.RiverJobID, JobAttempt: 1, Outcome: store.OutcomeRetry, Worker: "test",
		NewState: store.ActionRetrying,
	})
	require.NoError(t, err)

	keys := []store.WorkKey{
		{ActionID: lost.ID, JobID: lost.RiverJobID, JobAttempt: 2},
		{ActionID: -1, JobID: 1, JobAttempt: 1},
		{ActionID: recorded.ID, JobID: recorded.RiverJobID, JobAttempt: 2},
		{ActionID: recorded.ID, JobID: recorded.RiverJobID, JobAttempt: 1},
	}
	items, err := b.s.WorkLoad(b.ctx, b.tx, keys)
	require.NoError(t, err)
	require.Len(t, items, len(keys))
	require.Equal(t, lost.ID, items[0].Action.ID)
	require.False(t, items[0].PreviousRecorded, "attempt 1 of lost's job left no row")
	require.Nil(t, items[1], "no such action")
	require.Equal(t, recorded.ID, items[2].Action.ID)
	require.Equal(t, store.ActionRetrying, items[2].Action.State)
	require.True(t, items[2].PreviousRecorded)
	require.True(t, items[3].PreviousRecorded, "a first attempt has nothing before it")
	require.Equal(t, b.appID, items[3].App.ID)
	require.NotSame(t, items[2], items[3])
}

// One statement that finishes the heads of several lanes moves each lane on
// as finishing them one at a time would: the next queued action becomes the
// head and its job available, an emptied lane is dropped, a failed head of an
// app under lane_on_failure 'block' blocks its lane, and a head cancelled
// together with its only follower leaves nothing to run.
func TestLanesAdvanceInOneStatement(t *testing.T) {
	t.Parallel()
	b := setup(t)
	blocking := storetest.App(b.ctx, t, b.s, b.tx, nil)
	_, err := b.tx.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.app SET lane_on_failure = 'block' WHERE id = $1`, b.s.Schema()), blocking)
	require.NoError(t, err)
	enqueue := func(app, author string, n int) []*store.Action {
		var out []*store.Action
		for i := range n {
			res, err := b.s.ActionInsert(b.ctx, b.tx, store.ActionInsertParams{
				AppID: app, Kind: "respond", Payload: storetest.RespondPayload(author, fmt.Sprint(i)),
			})
			require.NoError(t, err)
			out = append(out, res.Action)
		}
		return out
	}
	three, one, blocked, pair := enqueue(b.appID, "three", 3), enqueue(b.appID, "one", 1), enqueue(blocking, "blocked", 2), enqueue(b.appID, "pair", 2)
	require.Equal(t, "pending", jobState(b.ctx, t, b.s, b.tx, three[1].RiverJobID))

	_, err = b.tx.Exec(b.ctx, fmt.Sprintf(`
		UPDATE %s.action a SET state = v.state
		FROM (VALUES ($1::bigint, 'succeeded'), ($2, 'sent'), ($3, 'failed'), ($4, 'cancelled'), ($5, 'cancelled')) AS v(id, state)
		WHERE a.id = v.id`, b.s.Schema()), three[0].ID, one[0].ID, blocked[0].ID, pair[0].ID, pair[1].ID)
	require.NoError(t, err)

	lane := func(a *store.Action) (exists bool, head, blockedBy *int64) {
		err := b.tx.QueryRow(b.ctx, fmt.Sprintf(`SELECT head_action_id, blocked_by FROM %s.lane WHERE app_id = $1 AND lane = $2`, b.s.Schema()),
			a.AppID, a.Lane).Scan(&head, &blockedBy)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil, nil
		}
		require.NoError(t, err)
		return true, head, blockedBy
	}
	exists, head, _ := lane(three[0])
	require.True(t, exists)
	require.Equal(t, three[1].ID, *head)
	require.Equal(t, "available", jobState(b.ctx, t, b.s, b.tx, three[1].RiverJobID))
	require.Equal(t, "pending", jobState(b.ctx, t, b.s, b.tx, three[2].RiverJobID), "only the new head runs")

	exists, _, _ = lane(one[0])
	require.False(t, exists, "an emptied lane is dropped")
	exists, _, _ = lane(pair[0])
	require.False(t, exists, "the follower was cancelled with its head")

	exists, head, blockedBy := lane(blocked[0])
	require.True(t, exists)
	require.Nil(t, head)
	require.Equal(t, blocked[0].ID, *blockedBy)
	require.Equal(t, "pending", jobState(b.ctx, t, b.s, b.tx, blocked[1].RiverJobID), "a blocked lane holds its follower")
	events, err := b.s.EventList(b.ctx, b.tx, store.EventListParams{AppID: blocking, Kind: "lane_blocked"})
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, blocked[0].ID, *events[0].ActionID)

	// Finishing a head again changes nothing: the lane already moved on.
	_, err = b.tx.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.action SET last_error = 'x' WHERE id = $1`, b.s.Schema()), three[0].ID)
	require.NoError(t, err)
	_, head, _ = lane(three[0])
	require.Equal(t, three[1].ID, *head)
	require.Equal(t, "pending", jobState(b.ctx, t, b.s, b.tx, three[2].RiverJobID))
}

// A follower cancelled while its head's result is being written: the head's
// transaction has made the follower the lane's head but not committed yet.
// The cancel must wait for the lane and then move it past the follower; had
// it compared heads before waiting, the lane would stay headed by a
// cancelled action and its later actions would never run. Cancelled by plain
// SQL (an operator's UPDATE) and by ActionCancel.
func TestLaneFollowerCancelledWhileHeadFinishes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, s := storetest.NewStore(t, 4)
	app := storetest.App(ctx, t, s, pool, nil)

	for _, how := range []string{"sql", "ActionCancel"} {
		t.Run(how, func(t *testing.T) {
			var acts []*store.Action
			for i := range 3 {
				res, err := s.ActionInsert(ctx, pool, store.ActionInsertParams{
					AppID: app, Kind: "respond", Payload: storetest.RespondPayload("lane-"+how, fmt.Sprint(i)),
				})
				require.NoError(t, err)
				acts = append(acts, res.Action)
			}
			head, follower, next := acts[0], acts[1], acts[2]

			finish, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = finish.Rollback(ctx) }()
			_, err = finish.Exec(ctx, fmt.Sprintf(`UPDATE %s.action SET state = 'succeeded' WHERE id = $1`, schema), head.ID)
			require.NoError(t, err)

			conn, err := pool.Acquire(ctx)
			require.NoError(t, err)
			defer conn.Release()
			pid := conn.Conn().PgConn().PID()
			done := make(chan error, 1)
			go func() {
				if how == "sql" {
					_, err := conn.Exec(ctx, fmt.Sprintf(`UPDATE %s.action SET state = 'cancelled' WHERE id = $1`, schema), follower.ID)
					done <- err
					return
				}
				_, err := s.ActionCancel(ctx, conn, follower.ID, "test", "race")
				done <- err
			}()
			require.Eventually(t, func() bool {
				var waiting bool
				require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting))
				return waiting
			}, 5*time.Second, 10*time.Millisecond, "the cancel waits for the lane the head's transaction holds")
			require.NoError(t, finish.Commit(ctx))
			require.NoError(t, <-done)

			var laneHead int64
			require.NoError(t, pool.QueryRow(ctx, fmt.Sprintf(`SELECT head_action_id FROM %s.lane WHERE app_id = $1 AND lane = $2`, schema),
				app, follower.Lane).Scan(&laneHead))
			require.Equal(t, next.ID, laneHead, "the lane moved past the cancelled follower")
			require.Equal(t, "available", jobState(ctx, t, s, pool, next.RiverJobID))
		})
	}
}
