package reconciler_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/jobs/jobstest"
	"github.com/botq/botq/reconciler"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// clock is real time plus an offset the test moves forward.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }
func (c *clock) Offset() time.Duration   { return time.Duration(c.off.Load()) }
func newReconciler(t *testing.T, env *jobstest.Env, c *clock, mod func(*reconciler.Config)) *reconciler.Reconciler {
	t.Helper()
	cfg := reconciler.Config{Pool: env.Pool, Store: env.Store, Apps: env.Apps, Now: c.Now, Interval: time.Second}
	if mod != nil {
		mod(&cfg)
	}
	r, err := reconciler.New(cfg)
	require.NoError(t, err)
	return r
}

func respond(author, text string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":%q},"text":%q}`, author, text))
}

// Every request record botq holds ends up equal to the simulator's own
// record: state and details, with no mismatch, after settle delays of up to
// 30 s and 10% of records ending in ERROR.
func TestSettleMatchesKhoros(t *testing.T) {
	t.Parallel()
	n := 10000
	if testing.Short() {
		n = 2000
	}
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{
		Sim:        sim.Options{Seed: 11, SettleDelayMin: 0, SettleDelayMax: 30 * time.Second, ErrorRate: 0.1, Now: c.Now, MaxCallLog: -1},
		MaxWorkers: 100,
	})
	actions := make([]jobs.Action, n)
	for i := range actions {
		actions[i] = jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond(fmt.Sprintf("author-%d", i%500), fmt.Sprintf("message %d", i))}
	}
	var ids []int64
	for start := 0; start < n; start += 1000 {
		res, err := env.Enqueuer.EnqueueMany(env.Ctx, env.Pool, actions[start:min(start+1000, n)])
		require.NoError(t, err)
		for _, r := range res {
			ids = append(ids, r.ActionID)
		}
	}
	env.WaitStates(t, ids, 90*time.Second, store.ActionSent, store.ActionSucceeded, store.ActionFailed)

	r := newReconciler(t, env, c, nil)
	// Reconcile while Khoros is still settling, then after every delay has
	// passed.
	st1, err := r.RunOnce(env.Ctx)
	require.NoError(t, err)
	c.Advance(31 * time.Second)
	st2, err := r.RunOnce(env.Ctx)
	require.NoError(t, err)
	settled := st1.Settled + st2.Settled
	require.Equal(t, n, settled)
	t.Logf("%d requests settled with %d Bot v3 calls (%.4f calls per settled request)", settled, st1.Calls+st2.Calls,
		float64(st1.Calls+st2.Calls)/float64(settled))

	khoros := map[string]botapi.RequestRecord{}
	for _, rec := range env.Sim.Records(sim.RecordFilter{AppID: "app-1", Origin: botapi.OriginBot}) {
		khoros[rec.ID] = rec
	}
	rows, err := env.Pool.Query(env.Ctx, fmt.Sprintf(`
		SELECT r.request_id, r.state, coalesce(r.details::text, ''), a.state
		FROM %[1]s.request r JOIN %[1]s.action a ON a.id = r.action_id`, env.Schema))
	require.NoError(t, err)
	defer rows.Close()
	var checked, mismatches, errors int
	for rows.Next() {
		var id, state, details, actionState string
		require.NoError(t, rows.Scan(&id, &state, &details, &actionState))
		k, ok := khoros[id]
		checked++
		wantDetails := ""
		if k.Details != nil {
			b, _ := json.Marshal(k.Details)
			wantDetails = string(b)
		}
		if !ok || k.State != state || !sameJSON(details, wantDetails) {
			mismatches++
			if mismatches < 5 {
				t.Errorf("request %s: botq has %s %s, Khoros %s %s", id, state, details, k.State, wantDetails)
			}
		}
		wantAction := "succeeded"
		if state == "ERROR" {
			wantAction = "failed"
			errors++
		}
		if actionState != wantAction {
			mismatches++
		}
	}
	require.NoError(t, rows.Err())
	require.Equal(t, n, checked)
	require.Zero(t, mismatches)
	require.InDelta(t, 0.1, float64(errors)/float64(n), 0.03, "about 10%% end in ERROR")
}

func sameJSON(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(bx) == string(by)
}

// A respond that Khoros applied but whose answer was lost is linked to its
// request record, and the customer got exactly one message.
func TestApplyThenDropIsReconciledNotResent(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 12, Now: c.Now, SettleDelayMax: -1}})
	require.NoError(t, env.Sim.SetFault("respond", sim.Fault{DropRate: 1, Times: 1}))
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("dropped", "Your order shipped")})
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionUnknown)
	// Another action with a different text must not be mistaken for it.
	other := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("someone-else", "Hello")})
	env.WaitStates(t, []int64{other}, 10*time.Second, store.ActionSent, store.ActionSucceeded)

	r := newReconciler(t, env, c, nil)
	st, err := r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.Resolved)
	a := env.Action(t, id)
	require.Equal(t, store.ActionSucceeded, a.State)
	require.Empty(t, a.LastError, "the unanswered send's error went with its doubt")
	calls := env.Sim.Calls(sim.CallFilter{Endpoint: "respond"})
	require.Len(t, calls, 2, "one call per action: nothing was resent")
	require.True(t, calls[0].Dropped)
	require.Equal(t, calls[0].RequestID, a.RequestID, "linked to the request Khoros recorded for the dropped call")

	// The parked job completed; nothing runs it again.
	var jobState string
	require.NoError(t, env.Pool.QueryRow(env.Ctx, fmt.Sprintf(`SELECT state::text FROM %s.river_job WHERE id = $1`, env.Schema), a.RiverJobID).Scan(&jobState))
	require.Equal(t, "completed", jobState)
}

// A send that hung (the request was written, Khoros never applied it) has
// no record: after the grace period it is sent exactly once more.
func TestNeverArrivedIsSentOnceMore(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 13, Now: c.Now, SettleDelayMax: -1}, HTTPTimeout: 500 * time.Millisecond})
	require.NoError(t, env.Sim.SetFault("respond", sim.Fault{HangRate: 1, Times: 1}))
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("hung", "Are you there?")})
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionUnknown)

	r := newReconciler(t, env, c, func(cfg *reconciler.Config) { cfg.AmbiguousGrace = time.Minute })
	st, err := r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Zero(t, st.Released, "within the grace period it waits")
	require.Equal(t, store.ActionUnknown, env.Action(t, id).State)

	c.Advance(2 * time.Minute)
	st, err = r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.Released)
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionSent, store.ActionSucceeded)
	calls := env.Sim.Calls(sim.CallFilter{Endpoint: "respond"})
	require.Len(t, calls, 2, "the hung call, then exactly one more")
	require.Equal(t, "hang", calls[0].Fault)
	require.Equal(t, 1, env.Action(t, id).ReleaseCount)
	events, err := env.Store.EventList(env.Ctx, env.Pool, store.EventListParams{ActionID: &id})
	require.NoError(t, err)
	require.Equal(t, "ambiguous_released", events[0].Kind)
}

// An identical message sent long after an ambiguous send, by someone else
// with the same app, is not taken for it: the send is released and sent once
// more, not marked delivered with another's record.
func TestLaterIdenticalRecordIsNotTheAmbiguousSend(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 14, Now: c.Now, SettleDelayMax: -1}, HTTPTimeout: 500 * time.Millisecond})
	require.NoError(t, env.Sim.SetFault("respond", sim.Fault{HangRate: 1, Times: 1}))
	payload := respond("repeat", "Thanks for waiting")
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: payload})
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionUnknown)

	c.Advance(10 * time.Minute)
	app, err := env.Store.AppGet(env.Ctx, env.Pool, "app-1")
	require.NoError(t, err)
	client, err := env.Apps.Client(app)
	require.NoError(t, err)
	_, err = client.Do(env.Ctx, http.MethodPost, "/bots/v3/respond", json.RawMessage(env.Action(t, id).Payload), nil)
	require.NoError(t, err, "another sender's identical message, ten minutes later")

	r := newReconciler(t, env, c, func(cfg *reconciler.Config) { cfg.AmbiguousGrace = time.Minute })
	st, err := r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Zero(t, st.Resolved, "the later record is not this send's")
	require.Equal(t, 1, st.Released)
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionSent, store.ActionSucceeded)
	require.Len(t, env.Sim.Calls(sim.CallFilter{Endpoint: "respond"}), 3, "the hung call, the other sender's, and this action's second send")
}

// A pending record older than the 31 days Khoros keeps becomes EXPIRED and
// its action fails; it does not stay pending for ever.
func TestOldRecordExpires(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 14, Now: c.Now}, NoWorkers: true})
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindNote, Payload: jobstest.Payload(jobs.KindNote, "old")})
	_, err := env.Pool.Exec(env.Ctx, fmt.Sprintf(`
		WITH a AS (UPDATE %[1]s.action SET state = 'sent', request_id = 'req-old' WHERE id = $1 RETURNING id)
		INSERT INTO %[1]s.request (request_id, app_id, action_id, state, first_seen_at, next_check_at)
		SELECT 'req-old', 'app-1', id, 'PENDING', now() - interval '32 days', now() FROM a`, env.Schema), id)
	require.NoError(t, err)

	r := newReconciler(t, env, c, nil)
	st, err := r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.Expired)
	req, err := env.Store.RequestGet(env.Ctx, env.Pool, "req-old")
	require.NoError(t, err)
	require.Equal(t, store.RequestExpired, req.State)
	a := env.Action(t, id)
	require.Equal(t, store.ActionFailed, a.State)
	require.Contains(t, a.LastError, "never reported a final state")
}

// A few pending records are checked one by one, with backoff.
func TestFewPendingUseSingleGets(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 15, Now: c.Now, SettleDelayMin: 10 * time.Second, SettleDelayMax: 10 * time.Second}})
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindTag, Payload: jobstest.Payload(jobs.KindTag, "single")})
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionSent)
	r := newReconciler(t, env, c, nil)
	before := env.Sim.CallCount(sim.CallFilter{Endpoint: "request_get"})
	st, err := r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.Calls)
	require.Zero(t, st.Settled)
	// Not due again until its backoff passes.
	st, err = r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Zero(t, st.Calls)
	c.Advance(15 * time.Second)
	st, err = r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.Settled)
	require.Equal(t, before+2, env.Sim.CallCount(sim.CallFilter{Endpoint: "request_get"}))
	require.Equal(t, store.ActionSucceeded, env.Action(t, id).State)
}

// A token close to expiry is refreshed once, before it expires; the old token
// keeps working through Khoros' grace period.
func TestTokenRefreshedOnceBeforeExpiry(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 16, Now: c.Now}})
	// The app's token expires in an hour.
	short, err := env.Sim.MintToken("app-1", sim.MintOptions{TTL: time.Hour})
	require.NoError(t, err)
	exp := short.ExpiresAt()
	app, err := env.Store.AppSetToken(env.Ctx, env.Pool, "app-1", env.Keyring.Seal("app-1", short.Token), env.Keyring.ID(), &exp)
	require.NoError(t, err)
	oldToken, err := env.Keyring.Open("app-1", app.TokenKeyID, app.TokenCiphertext)
	require.NoError(t, err)

	r := newReconciler(t, env, c, nil)
	n, err := r.RefreshTokens(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = r.RefreshTokens(env.Ctx)
	require.NoError(t, err)
	require.Zero(t, n, "the new token is far from expiry: no second refresh")

	app2, err := env.Store.AppGet(env.Ctx, env.Pool, "app-1")
	require.NoError(t, err)
	require.Equal(t, app.TokenVersion+1, app2.TokenVersion)
	require.True(t, app2.TokenExpiresAt.After(c.Now().Add(80*24*time.Hour)))
	require.Equal(t, 1, env.Sim.CallCount(sim.CallFilter{Endpoint: "token_refresh"}))

	// Workers use the new token; a process still holding the old one keeps
	// working through the grace period.
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("after-refresh", "hi")})
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionSent, store.ActionSucceeded)
	stale, err := botapi.New(botapi.Config{BaseURL: env.SimURL, Tokens: botapi.StaticToken(oldToken)})
	require.NoError(t, err)
	_, res, err := stale.GetHealth(env.Ctx, "app-1")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	c.Advance(11 * time.Minute)
	_, _, err = stale.GetHealth(env.Ctx, "app-1")
	require.ErrorIs(t, err, botapi.ErrUnauthorized, "after the grace the old token is refused")

	events, err := env.Store.EventList(env.Ctx, env.Pool, store.EventListParams{AppID: "app-1", Kind: "token_refresh"})
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.NotContains(t, string(events[0].After), oldToken[:20])
}

func TestHealthChangesAreEvents(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 17, Now: c.Now}, NoWorkers: true})
	r := newReconciler(t, env, c, nil)
	require.NoError(t, r.PollHealth(env.Ctx))
	require.NoError(t, r.PollHealth(env.Ctx))
	require.NoError(t, env.Sim.SetHealth("app-1", []botapi.Health{{Status: botapi.HealthDown, FailureCount: 12}}))
	require.NoError(t, r.PollHealth(env.Ctx))
	events, err := env.Store.EventList(env.Ctx, env.Pool, store.EventListParams{AppID: "app-1", Kind: "health_change"})
	require.NoError(t, err)
	require.Len(t, events, 2, "first reading, then the change to DOWN; the unchanged poll adds nothing")
	require.True(t, strings.Contains(string(events[0].After), `"DOWN"`))
	app, err := env.Store.AppGet(env.Ctx, env.Pool, "app-1")
	require.NoError(t, err)
	require.Equal(t, "DOWN", app.HealthStatus)
}

func TestInboundRecordsAreKept(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 18, Now: c.Now}, NoWorkers: true})
	rec, err := env.Sim.InjectInbound(sim.Inbound{AppID: "app-1", NetworkKey: "facebook", ExternalID: "page-1", Payload: json.RawMessage(`{"type":"message","text":"hi bot"}`)})
	require.NoError(t, err)
	r := newReconciler(t, env, c, func(cfg *reconciler.Config) { cfg.RecordKhorosOrigin = true })
	n, err := r.RecordInbound(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	got, err := env.Store.RequestGet(env.Ctx, env.Pool, rec.ID)
	require.NoError(t, err)
	require.Equal(t, "KHOROS", got.Origin)
	require.Nil(t, got.ActionID)
	require.JSONEq(t, `{"type":"message","text":"hi bot"}`, string(got.Payload))
}

// The request id of a refused call settles in bounded time: the gateway's
// refusals (503, 429: no record at Khoros) are ABSENT at once; Bot v3's own
// refusals stay PENDING until a check finds Khoros' ERROR record, or, a
// clock-skew margin after the call, does not (ABSENT). Whether the check is
// a single GET or a listing, nothing is left waiting and the listing makes
// no call once nothing is pending.
func TestRefusedCallRecordsSettle(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		singleGet int
	}{{"single GETs", 10}, {"listing", -1}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &clock{}
			env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 17, Now: c.Now, SettleDelayMax: -1}})
			ctx := env.Ctx
			requestOf := func(id int64, status int) *store.Request {
				t.Helper()
				var rid string
				require.NoError(t, env.Pool.QueryRow(ctx, fmt.Sprintf(
					`SELECT request_id FROM %s.attempt WHERE action_id = $1 AND http_status = $2`, env.Schema), id, status).Scan(&rid))
				req, err := env.Store.RequestGet(ctx, env.Pool, rid)
				require.NoError(t, err)
				return req
			}

			// Bot v3 refuses: the conversation is an agent's (403, ERROR record).
			owned := sim.Conversation{CompanyKey: "acme", NetworkKey: "facebook", ExternalID: "page-1", AuthorID: "agent-owned"}
			_, err := env.Sim.SetOwner(owned, botapi.Owner{Type: botapi.OwnerAgent})
			require.NoError(t, err)
			found := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("agent-owned", "Not yours")})
			env.WaitStates(t, []int64{found}, 10*time.Second, store.ActionFailed)
			// Bot v3 refuses with its own body but keeps no record (400).
			require.NoError(t, env.Sim.SetFault("respond", sim.Fault{ErrorRate: 1, ErrorCode: 400, Times: 1}))
			missing := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("refused", "Refused")})
			env.WaitStates(t, []int64{missing}, 10*time.Second, store.ActionFailed)
			// The gateway refuses (503, then 429): nothing to look for.
			require.NoError(t, env.Sim.SetFault("respond", sim.Fault{ErrorRate: 1, ErrorCode: 503, Times: 1}))
			retried := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("gateway", "Retried")})
			env.WaitStates(t, []int64{retried}, 20*time.Second, store.ActionSent, store.ActionSucceeded)
			require.NoError(t, env.Sim.SetFault("respond", sim.Fault{RateLimitRate: 1, RetryAfter: "1", Times: 1}))
			snoozed := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("throttled", "Snoozed")})
			env.WaitStates(t, []int64{snoozed}, 20*time.Second, store.ActionSent, store.ActionSucceeded)

			for id, status := range map[int64]int{retried: 503, snoozed: 429} {
				req := requestOf(id, status)
				require.Equal(t, store.RequestAbsent, req.State, "HTTP %d", status)
				require.Contains(t, req.Reason, "gateway refused")
				require.NotNil(t, req.FinalizedAt)
			}
			require.Equal(t, store.RequestPending, requestOf(found, 403).State)
			require.Equal(t, store.RequestPending, requestOf(missing, 400).State)

			r := newReconciler(t, env, c, func(cfg *reconciler.Config) { cfg.SingleGetMax = tt.singleGet })
			_, err = r.RunOnce(ctx)
			require.NoError(t, err)
			f := requestOf(found, 403)
			require.Equal(t, store.RequestError, f.State, "Khoros' ERROR record is found")
			require.Empty(t, f.Reason)
			require.Equal(t, store.RequestPending, requestOf(missing, 400).State, "not absent before the clock-skew margin")

			c.Advance(61 * time.Second)
			_, err = r.RunOnce(ctx)
			require.NoError(t, err)
			m := requestOf(missing, 400)
			require.Equal(t, store.RequestAbsent, m.State)
			require.Contains(t, m.Reason, "keeps no record")
			require.Equal(t, store.ActionFailed, env.Action(t, missing).State, "the answer decided the action")

			// Nothing pending is left (the two successes settle too), and
			// then no run makes a call.
			c.Advance(time.Minute)
			_, err = r.RunOnce(ctx)
			require.NoError(t, err)
			var pending int
			require.NoError(t, env.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.request WHERE state = 'PENDING'`, env.Schema)).Scan(&pending))
			require.Zero(t, pending)
			st, err := r.RunOnce(ctx)
			require.NoError(t, err)
			require.Zero(t, st.Calls, "nothing pending, no call")
		})
	}
}

// An ambiguous send whose parked River job was cancelled or deleted behind
// botq's back (River's JobCancel, River UI, SQL) made every reconcile run
// fail ("release parked job ...: not found") and left the action unknown
// for good. With no record of the send after the grace period it is
// cancelled now, with an event; with a record it is settled as usual.
func TestParkedJobChangedOutsideBotq(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 15, Now: c.Now, SettleDelayMax: -1}, HTTPTimeout: 500 * time.Millisecond})
	unknown := func(fault sim.Fault, author string) *store.Action {
		t.Helper()
		require.NoError(t, env.Sim.SetFault("respond", fault))
		id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond(author, "Hello "+author)})
		env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionUnknown)
		return env.Action(t, id)
	}
	hang := sim.Fault{HangRate: 1, Times: 1}
	cancelled := unknown(hang, "cancelled")
	deleted := unknown(hang, "deleted")
	arrived := unknown(sim.Fault{DropRate: 1, Times: 1}, "arrived") // applied, answer lost
	_, err := env.River.JobCancel(env.Ctx, cancelled.RiverJobID)
	require.NoError(t, err)
	_, err = env.River.JobCancel(env.Ctx, arrived.RiverJobID)
	require.NoError(t, err)
	_, err = env.River.JobDelete(env.Ctx, deleted.RiverJobID)
	require.NoError(t, err)

	r := newReconciler(t, env, c, func(cfg *reconciler.Config) { cfg.AmbiguousGrace = time.Minute })
	st, err := r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.Resolved, "the send that arrived is settled as usual")
	require.Zero(t, st.Cancelled, "within the grace period the others wait")
	require.Equal(t, store.ActionSucceeded, env.Action(t, arrived.ID).State)

	c.Advance(2 * time.Minute)
	st, err = r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 2, st.Cancelled)
	require.Zero(t, st.Released)
	for _, a := range []*store.Action{cancelled, deleted} {
		got := env.Action(t, a.ID)
		require.Equal(t, store.ActionCancelled, got.State)
		require.Contains(t, got.LastError, "not sent")
		events, err := env.Store.EventList(env.Ctx, env.Pool, store.EventListParams{ActionID: &a.ID, Kind: "cancel"})
		require.NoError(t, err)
		require.Len(t, events, 1)
		require.Equal(t, "reconciler", events[0].Actor)
	}
	st, err = r.RunOnce(env.Ctx)
	require.NoError(t, err, "nothing left failing")
	require.Len(t, env.Sim.Calls(sim.CallFilter{Endpoint: "respond"}), 3, "nothing sent again")
}

// inboundEnv is a simulator sharing the reconciler's clock, and helpers to
// create and find KHOROS-origin records.
type inboundEnv struct {
	*jobstest.Env
	c *clock
}

func startInbound(t *testing.T, seed int64, apps ...string) *inboundEnv {
	t.Helper()
	c := &clock{}
	return &inboundEnv{Env: jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: seed, Now: c.Now}, NoWorkers: true, Apps: apps}), c: c}
}

// reconciler is a new Reconciler, as in a new process; its clock runs
// behind Khoros' by behind.
func (e *inboundEnv) reconciler(t *testing.T, behind time.Duration) *reconciler.Reconciler {
	t.Helper()
	return newReconciler(t, e.Env, e.c, func(cfg *reconciler.Config) {
		cfg.RecordKhorosOrigin = true
		cfg.Now = func() time.Time { return e.c.Now().Add(-behind) }
	})
}

func (e *inboundEnv) inject(t *testing.T, app, text string) string {
	t.Helper()
	rec, err := e.Sim.InjectInbound(sim.Inbound{AppID: app, NetworkKey: "facebook", ExternalID: "page-1",
		Payload: json.RawMessage(fmt.Sprintf(`{"type":"message","text":%q}`, text))})
	require.NoError(t, err)
	return rec.ID
}

// stored returns which of ids botq holds as KHOROS-origin records.
func (e *inboundEnv) stored(t *testing.T, ids []string) []string {
	t.Helper()
	rows, err := e.Pool.Query(e.Ctx, fmt.Sprintf(`SELECT request_id FROM %s.request WHERE origin = 'KHOROS' AND request_id = ANY($1) ORDER BY request_id`, e.Schema), ids)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return got
}

func (e *inboundEnv) listings(app string) int {
	return e.Sim.CallCount(sim.CallFilter{AppID: app, Endpoint: "request_list"})
}

func sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// A paused app is not called while paused; the records Khoros created for
// it meanwhile, over many poll intervals, are all read by the first listing
// after the pause, and the other apps are recorded throughout.
func TestInboundRecordsSurviveAPause(t *testing.T) {
	t.Parallel()
	e := startInbound(t, 19, "app-1", "app-2")
	r := e.reconciler(t, 0)
	first := []string{e.inject(t, "app-1", "before the pause")}
	n, err := r.RecordInbound(e.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, first, e.stored(t, first))

	_, err = e.Store.AppPauseAudited(e.Ctx, e.Pool, "app-1", e.c.Now().Add(24*time.Hour), "cli:bob", "maintenance at the bot")
	require.NoError(t, err)
	callsBefore := e.listings("app-1")
	var paused, other []string
	// Three hours, the task running every ten minutes of it.
	for i := range 18 {
		paused = append(paused, e.inject(t, "app-1", fmt.Sprintf("paused %d", i)))
		other = append(other, e.inject(t, "app-2", fmt.Sprintf("other %d", i)))
		e.c.Advance(10 * time.Minute)
		_, err := r.RecordInbound(e.Ctx)
		require.NoError(t, err)
	}
	require.Equal(t, callsBefore, e.listings("app-1"), "a paused app is not called")
	require.Empty(t, e.stored(t, paused))
	require.Equal(t, sorted(other), e.stored(t, other), "the other app is recorded meanwhile")

	_, err = e.Store.AppResumeAudited(e.Ctx, e.Pool, "app-1", "cli:bob", "done")
	require.NoError(t, err)
	n, err = r.RecordInbound(e.Ctx)
	require.NoError(t, err)
	require.Equal(t, len(paused), n, "every record of the pause, and nothing stored before again")
	require.Equal(t, sorted(paused), e.stored(t, paused))
}

// The cursor lives in the database: a new process (a new Reconciler, as
// after a restart or a leader change) reads everything since the last
// stored listing, however long the gap, up to the listing's 31 days, and
// stores nothing twice. One app's failing listing does not stop the others
// and it catches up once it works again.
func TestInboundRecordsSurviveARestart(t *testing.T) {
	t.Parallel()
	e := startInbound(t, 20, "app-1", "app-2")
	all := []string{e.inject(t, "app-1", "first")}
	n, err := e.reconciler(t, 0).RecordInbound(e.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// The leader changes to a process whose clock is 50 s behind the
	// first's. 10m30s later by Khoros' clock it reads from its own clock's
	// 9m40s after the cursor, plus the margin, rounded up: 11 minutes,
	// which reach back to before the record created just after the last
	// listing; without the margin, 10 minutes would not.
	all = append(all, e.inject(t, "app-1", "just after the listing"))
	e.c.Advance(10*time.Minute + 30*time.Second)
	n, err = e.reconciler(t, 50*time.Second).RecordInbound(e.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, sorted(all), e.stored(t, all))

	// The process is down for two hours, then another one starts.
	for i := range 12 {
		all = append(all, e.inject(t, "app-1", fmt.Sprintf("while down %d", i)))
		e.c.Advance(10 * time.Minute)
	}
	r := e.reconciler(t, 0)
	n, err = r.RecordInbound(e.Ctx)
	require.NoError(t, err)
	require.Equal(t, 12, n)
	require.Equal(t, sorted(all), e.stored(t, all))
	n, err = r.RecordInbound(e.Ctx)
	require.NoError(t, err)
	require.Zero(t, n, "records listed again are not stored again")

	// app-2's token is refused: its listing fails, app-1 is still recorded,
	// and app-2 reads what it missed once it has a good token again.
	exp := e.c.Now().Add(24 * time.Hour)
	_, err = e.Store.AppSetToken(e.Ctx, e.Pool, "app-2", e.Keyring.Seal("app-2", "not-a-token"), e.Keyring.ID(), &exp)
	require.NoError(t, err)
	missed := []string{e.inject(t, "app-2", "while refused")}
	one := []string{e.inject(t, "app-1", "meanwhile")}
	e.c.Advance(5 * time.Minute)
	n, err = r.RecordInbound(e.Ctx)
	require.ErrorIs(t, err, botapi.ErrUnauthorized)
	require.ErrorContains(t, err, `app "app-2"`)
	require.Equal(t, 1, n)
	require.Equal(t, one, e.stored(t, one))
	require.Empty(t, e.stored(t, missed))
	e.AddApp(t, "app-2")
	e.c.Advance(time.Hour)
	n, err = r.RecordInbound(e.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, missed, e.stored(t, missed))

	// A gap longer than the listing's 31 days: the listing asks for 31 days
	// (Khoros refuses more) and reads what they hold.
	tooOld := []string{e.inject(t, "app-1", "40 days ago")}
	e.c.Advance(9 * 24 * time.Hour)
	inReach := []string{e.inject(t, "app-1", "31 days ago")}
	e.c.Advance(31*24*time.Hour - time.Hour)
	n, err = r.RecordInbound(e.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, inReach, e.stored(t, inReach))
	require.Empty(t, e.stored(t, tooOld))
}

// enqueueResponds enqueues n responds of app-1 and waits until each is
// sent (or already settled).
func enqueueResponds(t *testing.T, env *jobstest.Env, run string, n int) []int64 {
	t.Helper()
	actions := make([]jobs.Action, n)
	for i := range actions {
		actions[i] = jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond(fmt.Sprintf("%s-author-%d", run, i), fmt.Sprintf("%s %d", run, i))}
	}
	res, err := env.Enqueuer.EnqueueMany(env.Ctx, env.Pool, actions)
	require.NoError(t, err)
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.ActionID
	}
	env.WaitStates(t, ids, 30*time.Second, store.ActionSent, store.ActionSucceeded)
	return ids
}

// listingWindows sends app-1's calls through a proxy of the simulator that
// records the `from` of every listing.
func listingWindows(t *testing.T, env *jobstest.Env) func() []string {
	t.Helper()
	var mu sync.Mutex
	var froms []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/bots/v3/request/appId/") {
			mu.Lock()
			froms = append(froms, r.URL.Query().Get("from"))
			mu.Unlock()
		}
		env.Sim.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	_, err := env.Store.AppUpsert(env.Ctx, env.Pool, store.AppUpsertParams{ID: "app-1", Region: "CUSTOM", BaseURL: proxy.URL, CompanyKey: "acme"})
	require.NoError(t, err)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(froms)
	}
}

// A listing returns every record of its window, settled or not: a few
// fresh records behind many settled ones wait instead of being listed with
// them all, until the oldest has waited ListMaxWait.
func TestListingWaitsUntilWorthReading(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 16, Now: c.Now, SettleDelayMax: -1}})
	r := newReconciler(t, env, c, func(cfg *reconciler.Config) { cfg.ListMaxWait = time.Minute })

	enqueueResponds(t, env, "many", 200)
	st, err := r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.Calls, "one listing for a backlog")
	require.Equal(t, 200, st.Settled)
	require.Equal(t, 200, st.Fetched)

	ids := enqueueResponds(t, env, "few", 10)
	st, err = r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Zero(t, st.Calls, "10 due would read 210 records: they wait")

	c.Advance(time.Minute)
	st, err = r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.Calls, "their wait is over: one listing")
	require.Equal(t, 10, st.Settled)
	for _, id := range ids {
		require.Equal(t, store.ActionSucceeded, env.Action(t, id).State)
	}
}

// A record Khoros never settles does not hold the listing's window back:
// once a listing covered it a minute after the call it is a straggler,
// looked up by single GETs with backoff, and later listings reach back
// only to the oldest fresh record.
func TestStragglersDoNotHoldTheListingBack(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 17, Now: c.Now, SettleDelayMax: -1}})
	froms := listingWindows(t, env)
	// Three accepted calls whose records Khoros lost, ten minutes ago.
	_, err := env.Pool.Exec(env.Ctx, fmt.Sprintf(`
		INSERT INTO %s.request (request_id, app_id, state, http_status, next_check_at, first_seen_at)
		SELECT 'lost-' || i, 'app-1', 'PENDING', 202, now() - interval '10 minutes', now() - interval '10 minutes'
		FROM generate_series(1, 3) i`, env.Schema))
	require.NoError(t, err)
	r := newReconciler(t, env, c, nil)

	st, err := r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.Calls, "three fresh records, waiting ten minutes: one listing")
	require.Equal(t, []string{"12m"}, froms())
	var checks []int
	require.NoError(t, pgx.BeginFunc(env.Ctx, env.Pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(env.Ctx, fmt.Sprintf(`SELECT check_count FROM %s.request WHERE request_id LIKE 'lost-%%' ORDER BY 1`, env.Schema))
		if err != nil {
			return err
		}
		checks, err = pgx.CollectRows(rows, pgx.RowTo[int])
		return err
	}))
	require.Equal(t, []int{1, 1, 1}, checks, "not found by a listing a minute after the call: stragglers")

	enqueueResponds(t, env, "fresh", 100)
	c.Advance(2 * time.Second)
	st, err = r.RunOnce(env.Ctx)
	require.NoError(t, err)
	require.Equal(t, 100, st.Settled)
	require.Equal(t, 4, st.Calls, "one listing for the fresh records, one GET per straggler")
	require.Equal(t, []string{"12m", "2m"}, froms(), "the second listing reaches back to the fresh records only")
}
