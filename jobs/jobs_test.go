package jobs_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/jobs/jobstest"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var fastRetry = map[string]jobs.RetryPolicy{}

func init() {
	for _, k := range jobs.Kinds() {
		fastRetry[k] = jobs.RetryPolicy{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	}
}

// sqlInsert enqueues through plain SQL, as a bot in any language would.
func sqlInsert(t *testing.T, env *jobstest.Env, appID, kind, payload, key string) int64 {
	t.Helper()
	var id int64
	err := env.Pool.QueryRow(env.Ctx, fmt.Sprintf(
		`INSERT INTO %s.action (app_id, kind, payload, idempotency_key) VALUES ($1, $2, $3, $4) RETURNING id`, env.Schema),
		appID, kind, payload, key).Scan(&id)
	require.NoError(t, err, "insert %s", kind)
	return id
}

func TestEveryKindBySQL(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Apps: []string{"app-1", "app-tokens"}, Sim: sim.Options{Seed: 1}})

	var ids []int64
	byKind := map[int64]string{}
	// Registration changes of one page share a lane, so they run in this
	// order: create, mode, update, delete.
	order := []string{jobs.KindRegistrationCreate, jobs.KindMode, jobs.KindRegistrationUpdate, jobs.KindRegistrationDelete}
	for _, kind := range jobs.Kinds() {
		if !strings.HasPrefix(kind, "registration_") && kind != jobs.KindMode {
			order = append(order, kind)
		}
	}
	for _, kind := range order {
		app, author := "app-1", "kinds-"+kind
		switch {
		case strings.HasPrefix(kind, "token_"):
			app = "app-tokens"
		case strings.HasPrefix(kind, "registration_"), kind == jobs.KindMode:
			author = "reg"
		}
		id := sqlInsert(t, env, app, kind, jobstest.Payload(kind, author), "k-"+kind)
		ids = append(ids, id)
		byKind[id] = kind
	}
	env.WaitStates(t, ids, 20*time.Second, store.ActionSent, store.ActionSucceeded, store.ActionFailed)

	for _, id := range ids {
		a := env.Action(t, id)
		require.NotEqual(t, store.ActionFailed, a.State, "%s failed: %s", byKind[id], a.LastError)
		require.NotEmpty(t, a.RequestID, "%s has its requestId", byKind[id])
		require.Equal(t, 1, a.AttemptCount, byKind[id])
		reqs, err := env.Store.RequestListByAction(env.Ctx, env.Pool, id)
		require.NoError(t, err)
		require.Len(t, reqs, 1, byKind[id])
		require.Equal(t, a.RequestID, reqs[0].RequestID)
	}
	// Each kind reached its own Bot v3 endpoint exactly once.
	require.Equal(t, len(ids), env.Sim.CallCount(sim.CallFilter{}))

	// The token actions changed the stored token: refreshed, then revoked
	// (which pauses the app until a new token is set).
	app, err := env.Store.AppGet(env.Ctx, env.Pool, "app-tokens")
	require.NoError(t, err)
	require.Nil(t, app.TokenCiphertext)
	require.NotNil(t, app.PausedUntil)
	events, err := env.Store.EventList(env.Ctx, env.Pool, store.EventListParams{AppID: "app-tokens"})
	require.NoError(t, err)
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	require.ElementsMatch(t, []string{"token_refresh", "token_revoke"}, kinds)
}

func TestKindsMatchDatabase(t *testing.T) {
	t.Parallel()
	s := storetest.Store(t)
	_, pool := storetest.Schema(t)
	rows, err := s.KindConfigList(t.Context(), pool)
	require.NoError(t, err)
	var dbKinds []string
	for _, k := range rows {
		dbKinds = append(dbKinds, k.Kind)
		require.Equal(t, jobs.Idempotent(k.Kind), k.Idempotent, "idempotency of %s", k.Kind)
	}
	require.Equal(t, jobs.Kinds(), dbKinds)
}

func TestIdempotencyAcrossSQLAndGo(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 2}})
	payload := jobstest.Payload(jobs.KindRespond, "idem")
	id1 := sqlInsert(t, env, "app-1", jobs.KindRespond, payload, "order-42")
	id2, existed, err := env.Enqueuer.Enqueue(env.Ctx, env.Pool, jobs.Action{
		AppID: "app-1", Kind: jobs.KindRespond, Payload: json.RawMessage(payload), IdempotencyKey: "order-42",
	})
	require.NoError(t, err)
	require.True(t, existed)
	require.Equal(t, id1, id2)
	env.WaitStates(t, []int64{id1}, 10*time.Second, store.ActionSent, store.ActionSucceeded)
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, 1, env.Sim.CallCount(sim.CallFilter{Endpoint: "respond"}))
}

func TestServerErrorsRetriedThenSucceed(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 3}, Retry: fastRetry})
	require.NoError(t, env.Sim.SetFault("respond", sim.Fault{ErrorRate: 1, ErrorCode: 503, Times: 3}))
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: jobstest.Payload(jobs.KindRespond, "storm")})
	env.WaitStates(t, []int64{id}, 15*time.Second, store.ActionSent, store.ActionSucceeded)
	attempts, err := env.Store.AttemptList(env.Ctx, env.Pool, id)
	require.NoError(t, err)
	require.Len(t, attempts, 4)
	for _, a := range attempts[:3] {
		require.Equal(t, store.OutcomeRetry, a.Outcome)
		require.Equal(t, 503, a.HTTPStatus)
	}
	require.Equal(t, store.OutcomeOK, attempts[3].Outcome)
	state, finalized, errs := riverJob(t, env, env.Action(t, id).RiverJobID)
	require.Equal(t, "completed", state)
	require.True(t, finalized)
	require.Len(t, errs, 3, "River records the three retried attempts")
}

func TestClientErrorFailsAtOnce(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 4}, Retry: fastRetry})
	// The conversation belongs to an agent: Khoros answers 403 to a respond.
	_, err := env.Sim.SetOwner(sim.Conversation{CompanyKey: "acme", NetworkKey: "facebook", ExternalID: "page-1", AuthorID: "agent-owned"},
		ownerAgent())
	require.NoError(t, err)
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: jobstest.Payload(jobs.KindRespond, "agent-owned")})
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionFailed)
	a := env.Action(t, id)
	require.Equal(t, 1, a.AttemptCount)
	require.Contains(t, a.LastError, "403")
	attempts, err := env.Store.AttemptList(env.Ctx, env.Pool, id)
	require.NoError(t, err)
	require.Equal(t, store.OutcomeCancel, attempts[0].Outcome)
	require.Contains(t, attempts[0].ResponseExcerpt, "doesn't own the conversation")

	// The result statement ends the River job: cancelled, not completed by
	// River's completer after Work returned, with the reason in its errors.
	state, finalized, errs := riverJob(t, env, a.RiverJobID)
	require.Equal(t, "cancelled", state)
	require.True(t, finalized)
	require.Len(t, errs, 1)
	require.Contains(t, errs[0], "403")
}

// riverJob reads a River job's state, whether it is finalized, and its
// errors' messages.
func riverJob(t *testing.T, env *jobstest.Env, id int64) (state string, finalized bool, errs []string) {
	t.Helper()
	require.NoError(t, env.Pool.QueryRow(env.Ctx, fmt.Sprintf(
		`SELECT state::text, finalized_at IS NOT NULL, coalesce((SELECT array_agg(e->>'error') FROM unnest(errors) e), '{}')
		 FROM %s.river_job WHERE id = $1`, env.Schema), id).Scan(&state, &finalized, &errs))
	return state, finalized, errs
}

func TestRateLimitedSnoozesWithoutUsingAttempt(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 5}})
	require.NoError(t, env.Sim.SetFault("respond", sim.Fault{RateLimitRate: 1, RetryAfter: "5", Times: 1}))
	start := time.Now()
	first := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: jobstest.Payload(jobs.KindRespond, "throttled-1")})
	// Wait until botq has recorded the 429 (a call made while it was on
	// its way back could not know of it), then enqueue a second action of
	// the same app.
	require.Eventually(t, func() bool {
		var throttled bool
		require.NoError(t, env.Pool.QueryRow(env.Ctx, fmt.Sprintf(`SELECT throttled_until IS NOT NULL FROM %s.app WHERE id = 'app-1'`, env.Schema)).Scan(&throttled))
		return throttled
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, env.Sim.CallCount(sim.CallFilter{AppID: "app-1"}))
	second := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: jobstest.Payload(jobs.KindRespond, "throttled-2")})
	env.WaitStates(t, []int64{first, second}, 15*time.Second, store.ActionSent, store.ActionSucceeded)

	calls := env.Sim.Calls(sim.CallFilter{AppID: "app-1"})
	require.Len(t, calls, 3)
	require.Equal(t, 429, calls[0].Status)
	for _, c := range calls[1:] {
		require.GreaterOrEqual(t, c.Time.Sub(calls[0].Time), 5*time.Second, "no call to the app before Retry-After passed")
	}
	require.GreaterOrEqual(t, time.Since(start), 5*time.Second)
	var jobAttempt int
	require.NoError(t, env.Pool.QueryRow(env.Ctx, fmt.Sprintf(`SELECT j.attempt FROM %[1]s.river_job j JOIN %[1]s.action a ON a.river_job_id = j.id WHERE a.id = $1`, env.Schema), first).Scan(&jobAttempt))
	require.Equal(t, 1, jobAttempt, "the 429 did not use one of the job's attempts")
	attempts, err := env.Store.AttemptList(env.Ctx, env.Pool, first)
	require.NoError(t, err)
	require.Equal(t, store.OutcomeSnooze, attempts[0].Outcome)
}

func ownerAgent() botapi.Owner { return botapi.Owner{Type: "AGENT"} }

// A respond whose execution fails before its call (here: its stored token
// cannot be decrypted) tries again without using an attempt, so once the
// token is replaced it is sent as usual: nothing reached Khoros, so it must
// not be taken for an ambiguous send.
func TestFailureBeforeCallUsesNoAttempt(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 5}})
	exp := time.Now().Add(time.Hour)
	_, err := env.Store.AppSetToken(env.Ctx, env.Pool, "app-1", []byte("not a sealed token"), env.Keyring.ID(), &exp)
	require.NoError(t, err)
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: jobstest.Payload(jobs.KindRespond, "before-call")})

	// Several executions fail before the call meanwhile (one a second).
	time.Sleep(2500 * time.Millisecond)
	a := env.Action(t, id)
	require.Equal(t, store.ActionQueued, a.State)
	require.Zero(t, a.AttemptCount, "no attempt is recorded: nothing was sent")
	require.Empty(t, env.Sim.Calls(sim.CallFilter{Endpoint: "respond"}))

	tok, err := env.Sim.MintToken("app-1", sim.MintOptions{CompanyKey: "acme"})
	require.NoError(t, err)
	exp = tok.ExpiresAt()
	_, err = env.Store.AppSetToken(env.Ctx, env.Pool, "app-1", env.Keyring.Seal("app-1", tok.Token), env.Keyring.ID(), &exp)
	require.NoError(t, err)
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionSent, store.ActionSucceeded)
	attempts, err := env.Store.AttemptList(env.Ctx, env.Pool, id)
	require.NoError(t, err)
	require.Len(t, attempts, 1)
	require.Equal(t, store.OutcomeOK, attempts[0].Outcome, "sent once, not parked as ambiguous")
	var jobAttempt int
	require.NoError(t, env.Pool.QueryRow(env.Ctx, fmt.Sprintf(`SELECT attempt FROM %s.river_job WHERE id = $1`, env.Schema), env.Action(t, id).RiverJobID).Scan(&jobAttempt))
	require.Equal(t, 1, jobAttempt, "the failed executions used no attempt")
}

// The result writer keeps its connection from one batch to the next while
// results keep coming, and gives it back when none wait: with a pool of
// three, 300 actions still all finish, and once they have, nothing holds a
// connection (a writer that kept its own fails here).
func TestResultWriterOnASmallPool(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{MaxConns: 3, MaxWorkers: 30, Sim: sim.Options{Seed: 1}})
	var ids []int64
	for i := range 300 {
		ids = append(ids, sqlInsert(t, env, "app-1", jobs.KindTag, jobstest.Payload(jobs.KindTag, fmt.Sprintf("small-%d", i)), fmt.Sprintf("small-%d", i)))
	}
	env.WaitStates(t, ids, 60*time.Second, store.ActionSent, store.ActionSucceeded)
	require.Eventually(t, func() bool { return env.Pool.Stat().AcquiredConns() == 0 }, 10*time.Second, 10*time.Millisecond,
		"connections still held once every result is written")
}

// A River job whose action does not exist (a job inserted by hand) is
// cancelled, and jobs loaded in the same batch are not disturbed.
func TestJobWithoutActionIsCancelled(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 1}})
	var orphan int64
	require.NoError(t, env.Pool.QueryRow(env.Ctx, fmt.Sprintf(`INSERT INTO %s.river_job (args, kind, max_attempts, queue, priority, state, scheduled_at)
		VALUES ('{"action_id": -5}', 'botq_tag', 25, 'botq', 1, 'available', now()) RETURNING id`, env.Schema)).Scan(&orphan))
	var ids []int64
	for i := range 20 {
		ids = append(ids, sqlInsert(t, env, "app-1", jobs.KindTag, jobstest.Payload(jobs.KindTag, fmt.Sprintf("orphan-%d", i)), fmt.Sprintf("orphan-%d", i)))
	}
	env.WaitStates(t, ids, 20*time.Second, store.ActionSent, store.ActionSucceeded)
	require.Eventually(t, func() bool {
		var state string
		require.NoError(t, env.Pool.QueryRow(env.Ctx, fmt.Sprintf(`SELECT state::text FROM %s.river_job WHERE id = $1`, env.Schema), orphan).Scan(&state))
		return state == "cancelled"
	}, 10*time.Second, 20*time.Millisecond)
}

// phaseRecorder is a jobs.Observer that keeps what it is told.
type phaseRecorder struct {
	mu     sync.Mutex
	calls  int
	phases map[jobs.Phase][]time.Duration
}

func (r *phaseRecorder) CallDone(string, string, store.AttemptOutcome, int, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
}

func (r *phaseRecorder) PhaseDone(p jobs.Phase, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phases[p] = append(r.phases[p], d)
}

// Every execution reports the parts of its time on its worker besides the
// call: pickup, load and the wait for its result's commit (the metrics'
// botq_job_phase_seconds).
func TestExecutorReportsPhases(t *testing.T) {
	t.Parallel()
	rec := &phaseRecorder{phases: map[jobs.Phase][]time.Duration{}}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 11}, Observer: rec})
	var ids []int64
	for i := range 3 {
		ids = append(ids, env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: jobstest.Payload(jobs.KindRespond, fmt.Sprintf("phases-%d", i))}))
	}
	env.WaitStates(t, ids, 10*time.Second, store.ActionSent, store.ActionSucceeded)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Equal(t, 3, rec.calls)
	for _, p := range []jobs.Phase{jobs.PhasePickup, jobs.PhaseLoad, jobs.PhaseResult} {
		require.Len(t, rec.phases[p], 3, "phase %s", p)
		for _, d := range rec.phases[p] {
			require.GreaterOrEqual(t, d, time.Duration(0), "phase %s", p)
			require.Less(t, d, 10*time.Second, "phase %s", p)
		}
	}
	for _, d := range append(rec.phases[jobs.PhaseLoad], rec.phases[jobs.PhaseResult]...) {
		require.Positive(t, d, "a load and a commit take time")
	}
}

// A 401 pauses the app with a reason that says what botq did: a token set a
// moment ago is not refreshed again; an older one is refreshed once, and a
// failed refresh is named as such.
func TestUnauthorizedPauseSaysWhatWasDone(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 9}})
	env.AddApp(t, "app-2")
	_, err := env.Pool.Exec(env.Ctx, fmt.Sprintf(`UPDATE %s.app SET token_refreshed_at = now() - interval '1 hour' WHERE id = 'app-2'`, env.Schema))
	require.NoError(t, err)
	for _, app := range []string{"app-1", "app-2"} {
		require.NoError(t, env.Sim.SetFault("respond", sim.Fault{AppID: app, ErrorRate: 1, ErrorCode: 401, Times: 1}))
	}
	require.NoError(t, env.Sim.SetFault("token_refresh", sim.Fault{AppID: "app-2", ErrorRate: 1, ErrorCode: 500}))
	for _, app := range []string{"app-1", "app-2"} {
		env.Enqueue(t, jobs.Action{AppID: app, Kind: jobs.KindRespond, Payload: jobstest.Payload(jobs.KindRespond, "unauthorized")})
	}
	paused := func(app string) string {
		a, err := env.Store.AppGet(env.Ctx, env.Pool, app)
		require.NoError(t, err)
		return a.PauseReason
	}
	require.Eventually(t, func() bool { return paused("app-1") != "" && paused("app-2") != "" }, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, paused("app-1"), "did not refresh it again")
	require.Zero(t, env.Sim.CallCount(sim.CallFilter{AppID: "app-1", Endpoint: "token_refresh"}), "no refresh was tried")
	require.Contains(t, paused("app-2"), "refresh of it failed")
	require.Equal(t, 1, env.Sim.CallCount(sim.CallFilter{AppID: "app-2", Endpoint: "token_refresh"}), "one refresh was tried")
	for _, app := range []string{"app-1", "app-2"} {
		events, err := env.Store.EventList(env.Ctx, env.Pool, store.EventListParams{AppID: app, Kind: "token_unauthorized"})
		require.NoError(t, err)
		require.Len(t, events, 1)
		require.Equal(t, paused(app), events[0].Reason, "the event says what the pause says")
	}
}
