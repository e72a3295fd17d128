package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

// mixedActions returns n actions over apps, three quarters of them
// non-idempotent (respond, note, form), each with a unique text so the
// simulator's records show what reached Khoros.
func mixedActions(run string, apps []string, n int) []jobs.Action {
	out := make([]jobs.Action, n)
	for i := range out {
		app := apps[i%len(apps)]
		author := fmt.Sprintf("%s-customer-%d", run, i%200)
		conv := fmt.Sprintf(`"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":%q}`, author)
		switch i % 4 {
		case 0:
			out[i] = respondAction(app, author, respondText(run, i))
		case 1:
			out[i] = jobs.Action{AppID: app, Kind: jobs.KindNote, Payload: json.RawMessage(fmt.Sprintf(`{%s,"note":%q}`, conv, respondText(run, i)))}
		case 2:
			out[i] = jobs.Action{AppID: app, Kind: jobs.KindForm, Payload: json.RawMessage(fmt.Sprintf(`{%s,"comment":%q,"secureFormId":"form-1"}`, conv, respondText(run, i)))}
		default:
			out[i] = jobs.Action{AppID: app, Kind: jobs.KindTag, Payload: json.RawMessage(fmt.Sprintf(`{%s,"tagIds":[%d]}`, conv, i))}
		}
	}
	return out
}

// appliedTexts counts, per text (respond's text, note's note, form's
// comment), the requests Khoros applied across apps.
func appliedTexts(s *sim.Server, apps []string) map[string]int {
	out := map[string]int{}
	for _, app := range apps {
		for _, r := range s.Records(sim.RecordFilter{AppID: app, Origin: "BOT"}) {
			var p struct {
				Text    string `json:"text"`
				Note    string `json:"note"`
				Comment string `json:"comment"`
			}
			if json.Unmarshal(r.Payload, &p) == nil {
				for _, s := range []string{p.Text, p.Note, p.Comment} {
					if s != "" {
						out[s]++
					}
				}
			}
		}
	}
	return out
}

// checkNothingLostNoDuplicate asserts every action succeeded and every
// respond, note and form reached Khoros exactly once. One outcome besides
// success is correct: an ambiguous send that was not found at Khoros, sent
// once more, and was ambiguous again fails without a third send ("not sent
// again"). It is rare (in a fault storm both sends must hang unapplied, 0.5%
// of calls each), but it is the design, so the check allows it, only with
// that reason, and requires such an action to have reached Khoros at most
// once.
func checkNothingLostNoDuplicate(t *testing.T, c *cluster, run string, apps []string, actions []jobs.Action, ids []int64) {
	t.Helper()
	require.Len(t, ids, len(actions), "every action was enqueued")
	st := c.states(ids)
	notResent := c.failedNotSentAgain(ids)
	require.Equal(t, len(actions), st["succeeded"]+len(notResent), "every action succeeded: %v\n%s", st, c.unsucceeded(ids))
	if len(notResent) > 0 {
		t.Logf("%d action(s) ambiguous twice and failed without a third send", len(notResent))
	}
	applied := appliedTexts(c.sim, apps)
	dups := 0
	for i, a := range actions {
		if a.Kind == jobs.KindTag {
			continue
		}
		n := applied[respondText(run, i)]
		if !notResent[ids[i]] {
			require.GreaterOrEqual(t, n, 1, "action %d (%s) reached Khoros", i, a.Kind)
		}
		if n > 1 {
			dups++
			t.Errorf("action %d (%s) reached Khoros %d times", i, a.Kind, n)
		}
	}
	require.Zero(t, dups)
}

// kill -9 of botq processes at random moments during a run, repeatedly:
// afterwards every action is final, none is lost, and no respond, form or note
// reached Khoros twice. BOTQ_CHAOS=full runs 10,000 actions and more kills.
func TestChaosRandomKills(t *testing.T) {
	t.Parallel()
	n, kills, spread := 1500, 4, 6*time.Second
	if chaosFull() {
		n, kills, spread = 10000, 12, 60*time.Second
	}
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 41, SettleDelayMax: time.Second, MaxCallLog: -1}, maxWorkers: 20, procs: 3})
	apps := []string{"app-1", "app-2"}
	for _, a := range apps {
		c.addApp(a, nil)
	}
	// Calls take up to 300 ms, so every kill finds some in flight.
	require.NoError(t, c.sim.SetFault("*", sim.Fault{Latency: sim.Duration(20 * time.Millisecond), Jitter: sim.Duration(280 * time.Millisecond)}))
	procs := []*proc{c.start("p0"), c.start("p1"), c.start("p2")}
	actions := mixedActions("kills", apps, n)

	// Enqueue throughout the run, while processes die and come back.
	idsCh := make(chan []int64, 1)
	go func() {
		var ids []int64
		const batch = 50
		pause := spread / time.Duration(n/batch)
		for start := 0; start < n; start += batch {
			ids = append(ids, c.enqueue(actions[start:min(start+batch, n)])...)
			time.Sleep(pause)
		}
		idsCh <- ids
	}()
	rng := rand.New(rand.NewPCG(7, 7))
	for k := range kills {
		time.Sleep(spread / time.Duration(kills+1) * time.Duration(50+rng.IntN(100)) / 100)
		i := rng.IntN(len(procs))
		procs[i].kill9()
		var inFlight int
		_ = c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.river_job WHERE state = 'running'`, c.schema)).Scan(&inFlight)
		t.Logf("kill %d: %s with %d jobs running", k+1, procs[i].name, inFlight)
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		procs[i] = c.start(fmt.Sprintf("p%d-%d", i, k+1))
	}
	ids := <-idsCh
	c.waitFinal(ids, 5*time.Minute)
	checkNothingLostNoDuplicate(t, c, "kills", apps, actions, ids)
	var unknown int
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.attempt WHERE outcome = 'unknown'`, c.schema)).Scan(&unknown))
	t.Logf("%d actions, %d kills, %d sends were ambiguous and reconciled", n, kills, unknown)
}

// kill -9 of a process while an app at its concurrency limit has jobs
// parked for a slot and calls in flight: the killed holders' slots come back
// when their leases end, the parked jobs are woken, and every action is
// delivered exactly once.
func TestChaosKillWhileParked(t *testing.T) {
	t.Parallel()
	n := 300
	if chaosFull() {
		n = 2000
	}
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 44, SettleDelayMax: time.Second, MaxCallLog: -1}, maxWorkers: 20, procs: 2})
	limit := 4
	c.addApp("limited", func(p *store.AppUpsertParams) { p.ConcurrencyLimit = &limit })
	require.NoError(t, c.sim.SetFault("*", sim.Fault{Latency: sim.Duration(50 * time.Millisecond), Jitter: sim.Duration(100 * time.Millisecond)}))
	procs := []*proc{c.start("p0"), c.start("p1")}
	apps := []string{"limited"}
	actions := mixedActions("parked", apps, n)
	ids := c.enqueue(actions)

	var parked int
	require.Eventually(t, func() bool {
		require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.app_slot_wait`, c.schema)).Scan(&parked))
		return parked > 0
	}, 20*time.Second, 20*time.Millisecond, "jobs park while the app is at its limit")
	time.Sleep(300 * time.Millisecond)
	procs[0].kill9()
	var held int
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.app_slot WHERE holder IS NOT NULL`, c.schema)).Scan(&held))
	t.Logf("killed p0 with %d jobs parked and %d slots held", parked, held)
	procs[0] = c.start("p0-again")
	c.waitFinal(ids, 3*time.Minute)
	checkNothingLostNoDuplicate(t, c, "parked", apps, actions, ids)
	var left int
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.app_slot_wait`, c.schema)).Scan(&left))
	require.Zero(t, left, "nothing is left parked")
}

// Postgres restarted in the middle of a run: botq reconnects by itself and
// finishes; nothing is lost. The test runs its own throwaway cluster, so
// the restart disturbs nothing else.
func TestChaosPostgresRestart(t *testing.T) {
	t.Parallel()
	db, err := server.ThrowawayCluster(context.Background(), t.TempDir(), os.Stderr)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("start a throwaway Postgres cluster: %v", err)
		}
		t.Skipf("no throwaway Postgres cluster here: %v", err)
	}
	t.Cleanup(db.Stop)
	c := newClusterAt(t, db.URL, clusterOpts{sim: sim.Options{Seed: 42, SettleDelayMax: time.Second}, procs: 2})
	c.addApp("app-1", nil)
	c.start("p0")
	c.start("p1")
	n := 600
	if chaosFull() {
		n = 5000
	}
	actions := mixedActions("pgrestart", []string{"app-1"}, n)
	ids := c.enqueue(actions[:n/2])
	time.Sleep(500 * time.Millisecond)
	c.pool.Reset()
	require.NoError(t, db.Restart())
	t.Logf("Postgres restarted (%v)", c.states(ids))
	// Enqueue the rest after the restart, through the same pool.
	require.Eventually(t, func() bool { return c.pool.Ping(c.ctx) == nil }, 30*time.Second, 100*time.Millisecond)
	ids = append(ids, c.enqueue(actions[n/2:])...)
	c.waitFinal(ids, 3*time.Minute)
	checkNothingLostNoDuplicate(t, c, "pgrestart", []string{"app-1"}, actions, ids)
	for _, p := range c.procs {
		require.True(t, p.alive(), "%s survived the restart", p.name)
	}
}

// A fault storm (30% 5xx, 5% 429 with Retry-After, 2% apply-then-drop,
// latency spikes, hangs): every action ends correct; the ambiguous sends were
// reconciled, not resent.
func TestChaosFaultStorm(t *testing.T) {
	t.Parallel()
	// 600 actions made as few as 2 ambiguous sends (apply-then-drop and
	// hangs are 2.5% of calls, and only responds, notes and forms park),
	// too few for the checks below to be sure of one resolved by a record.
	n := 1200
	if chaosFull() {
		n = 6000
	}
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 43, SettleDelayMax: time.Second, MaxCallLog: -1}, procs: 2})
	apps := []string{"app-1", "app-2", "app-3", "app-4"}
	for _, a := range apps {
		c.addApp(a, nil)
	}
	require.NoError(t, c.sim.SetFault("*", sim.Fault{
		ErrorRate: 0.30, ErrorCode: 503, RateLimitRate: 0.05, RetryAfter: "1", DropRate: 0.02, HangRate: 0.005,
		Jitter: sim.Duration(50 * time.Millisecond),
	}))
	// The reconciler's own calls must get through sometimes too.
	require.NoError(t, c.sim.SetFault("request_list", sim.Fault{ErrorRate: 0.3, ErrorCode: 502}))
	c.start("p0")
	c.start("p1")
	actions := mixedActions("storm", apps, n)
	ids := c.enqueue(actions)
	c.waitFinal(ids, 4*time.Minute)
	checkNothingLostNoDuplicate(t, c, "storm", apps, actions, ids)

	var dropped, resolved, snoozed int
	calls := c.sim.Calls(sim.CallFilter{})
	_ = calls
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT
		(SELECT count(*) FROM %[1]s.attempt WHERE outcome = 'unknown'),
		(SELECT count(*) FROM %[1]s.event WHERE kind = 'ambiguous_resolved'),
		(SELECT count(*) FROM %[1]s.attempt WHERE outcome = 'snooze')`, c.schema)).Scan(&dropped, &resolved, &snoozed))
	t.Logf("%d ambiguous sends, %d resolved by matching a record, %d 429 snoozes", dropped, resolved, snoozed)
	require.Positive(t, dropped)
	require.Positive(t, resolved)
	require.Positive(t, snoozed)
}

// A revoked token mid-run: the app pauses (an event says why), other apps
// keep going, and once a new token is set its work resumes with no attempt
// spent meanwhile. The victim's token was last refreshed long ago, so every
// job that gets a 401 tries a refresh; each takes 150 ms, as a real one may,
// and they run one after the other under the app's lock, so the last jobs
// run out of time (job_timeout) waiting for theirs.
func TestChaosTokenRevoked(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 44, SettleDelayMax: 500 * time.Millisecond}})
	c.addApp("victim", nil)
	c.addApp("bystander", nil)
	// Without this the path taken would depend on the machine's speed: a
	// token set less than a minute before the 401 is not refreshed.
	_, err := c.pool.Exec(c.ctx, fmt.Sprintf(`UPDATE %s.app SET token_refreshed_at = now() - interval '1 hour' WHERE id = 'victim'`, c.schema))
	require.NoError(t, err)
	require.NoError(t, c.sim.SetFault("token_refresh", sim.Fault{Latency: sim.Duration(150 * time.Millisecond)}))
	c.start("p0")

	app, err := c.store.AppGet(c.ctx, c.pool, "victim")
	require.NoError(t, err)
	tok, err := c.keyring.Open("victim", app.TokenKeyID, app.TokenCiphertext)
	require.NoError(t, err)
	khoros, err := botapi.New(botapi.Config{BaseURL: c.simURL, Tokens: botapi.StaticToken(tok)})
	require.NoError(t, err)
	_, err = khoros.RevokeTokens(c.ctx, "victim")
	require.NoError(t, err)

	victim := make([]jobs.Action, 40)
	bystander := make([]jobs.Action, 40)
	for i := range victim {
		victim[i] = respondAction("victim", fmt.Sprintf("v-%d", i), respondText("victim", i))
		bystander[i] = respondAction("bystander", fmt.Sprintf("b-%d", i), respondText("bystander", i))
	}
	vIDs := c.enqueue(victim)
	bIDs := c.enqueue(bystander)
	c.waitFinal(bIDs, 30*time.Second)

	require.Eventually(t, func() bool {
		a, err := c.store.AppGet(c.ctx, c.pool, "victim")
		return err == nil && a.PausedUntil != nil
	}, 15*time.Second, 50*time.Millisecond, "the app pauses")
	events, err := c.store.EventList(c.ctx, c.pool, store.EventListParams{AppID: "victim", Kind: "token_unauthorized"})
	require.NoError(t, err)
	require.Len(t, events, 1, "one event says why")
	require.Contains(t, c.metrics(c.procs[0]), `botq_app_paused{app="victim"} 1`, "and a metric")
	// The token is set once every victim job waits out the pause (snoozed for
	// its paused recheck, 30 s): a job still running then, waiting for its
	// refresh, is not woken by the resume and would look again only after
	// its recheck.
	require.Eventually(t, func() bool {
		var running int
		err := c.pool.QueryRow(c.ctx, fmt.Sprintf(`
			SELECT count(*) FROM %[1]s.river_job j JOIN %[1]s.action a ON a.river_job_id = j.id
			WHERE a.id = ANY($1) AND NOT (j.state = 'scheduled' AND j.scheduled_at > now() + interval '10 seconds')`, c.schema), vIDs).Scan(&running)
		return err == nil && running == 0
	}, 30*time.Second, 100*time.Millisecond, "the victim's jobs wait for the pause to end")
	require.Zero(t, c.states(vIDs)["succeeded"])

	// A new token, set the way an operator does.
	fresh, err := c.sim.MintToken("victim", sim.MintOptions{})
	require.NoError(t, err)
	set := runCLI(t, c, fresh.Token, "token", "set", "victim")
	require.Zero(t, set.code, "token set: %s", set.stderr)
	st := c.waitFinal(vIDs, 30*time.Second)
	require.Equal(t, len(vIDs), st["succeeded"])

	var maxAttempt int
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT max(j.attempt) FROM %[1]s.river_job j JOIN %[1]s.action a ON a.river_job_id = j.id WHERE a.id = ANY($1)`, c.schema), vIDs).Scan(&maxAttempt))
	require.Equal(t, 1, maxAttempt, "the 401s used none of the jobs' attempts: %s", c.jobErrors(vIDs))
	require.NotEmpty(t, c.sim.Calls(sim.CallFilter{AppID: "victim", Endpoint: "token_refresh"}), "a refresh was tried")
}

// jobErrors lists the errors River recorded for the jobs of actions ids,
// for a failing test's message.
func (c *cluster) jobErrors(ids []int64) string {
	c.t.Helper()
	var errs string
	require.NoError(c.t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`
		SELECT coalesce(string_agg(DISTINCT e->>'error', '; '), '')
		FROM %[1]s.river_job j JOIN %[1]s.action a ON a.river_job_id = j.id, unnest(j.errors) e
		WHERE a.id = ANY($1)`, c.schema), ids).Scan(&errs))
	return errs
}

// Nothing secret and no message text reaches the logs of a full run with
// faults, at debug level: not the tokens, the API keys, the encryption key,
// nor what customers were sent.
func TestChaosLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 45, SettleDelayMax: 200 * time.Millisecond}})
	c.addApp("app-1", nil)
	require.NoError(t, c.sim.SetFault("*", sim.Fault{ErrorRate: 0.2, DropRate: 0.05, RateLimitRate: 0.05, RetryAfter: "1"}))
	p0 := c.start("p0")
	actions := mixedActions("secret", []string{"app-1"}, 150)
	ids := c.enqueue(actions)
	c.waitFinal(ids, 2*time.Minute)
	// A token refresh passes through the logs too.
	refresh := c.enqueue([]jobs.Action{{AppID: "app-1", Kind: jobs.KindTokenRefresh, Payload: json.RawMessage(`{}`)}})
	c.waitFinal(refresh, time.Minute)
	// What else leaves the process: metrics, and errors (a bad request).
	metrics := c.metrics(p0)
	req, err := http.NewRequest(http.MethodGet, "http://"+p0.addr+"/v1/actions?state=bogus", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+strings.SplitN(strings.Split(c.apiKeys, "\n")[0], ":", 3)[2])
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	apiErr, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	require.Equal(t, http.StatusBadRequest, res.StatusCode, string(apiErr))
	for _, p := range c.procs {
		require.NoError(t, p.interrupt(t))
	}

	logs := c.logs()
	require.NotEmpty(t, logs)
	var secrets []string
	app, err := c.store.AppGet(c.ctx, c.pool, "app-1")
	require.NoError(t, err)
	tok, err := c.keyring.Open("app-1", app.TokenKeyID, app.TokenCiphertext)
	require.NoError(t, err)
	secrets = append(secrets, tok, c.key)
	for _, line := range strings.Split(c.apiKeys, "\n") {
		secrets = append(secrets, line[strings.LastIndex(line, ":")+1:])
	}
	for i, a := range actions {
		if a.Kind != jobs.KindTag {
			secrets = append(secrets, respondText("secret", i))
		}
	}
	var stored string
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT coalesce(string_agg(coalesce(error, '') || ' ' || coalesce(response_excerpt, ''), E'\n'), '') FROM %s.attempt`, c.schema)).Scan(&stored))
	for i, s := range secrets {
		require.NotContains(t, logs, s)
		require.NotContains(t, metrics, s)
		require.NotContains(t, string(apiErr), s)
		if i < 2 {
			require.NotContains(t, stored, s, "the token and the encryption key are not in attempt errors or excerpts")
		}
	}
	for what, text := range map[string]string{"logs": logs, "metrics": metrics, "API errors": string(apiErr), "attempt errors and excerpts": stored} {
		require.NotContains(t, text, "eyJ", "nothing token-shaped in the %s", what)
	}
	files, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	t.Logf("scanned %d log files (%d bytes), metrics (%d bytes), an API error and %d bytes of attempt errors for %d secrets", len(files), len(logs), len(metrics), len(stored), len(secrets))
}

// conversationActions returns n responds, notes and forms, each with a
// unique text, over convs conversations.
func conversationActions(run string, app string, n, convs int) []jobs.Action {
	out := make([]jobs.Action, n)
	for i := range out {
		author := fmt.Sprintf("%s-customer-%d", run, i%convs)
		conv := fmt.Sprintf(`"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":%q}`, author)
		switch i % 3 {
		case 0:
			out[i] = respondAction(app, author, respondText(run, i))
		case 1:
			out[i] = jobs.Action{AppID: app, Kind: jobs.KindNote, Payload: json.RawMessage(fmt.Sprintf(`{%s,"note":%q}`, conv, respondText(run, i)))}
		default:
			out[i] = jobs.Action{AppID: app, Kind: jobs.KindForm, Payload: json.RawMessage(fmt.Sprintf(`{%s,"comment":%q,"secureFormId":"form-1"}`, conv, respondText(run, i)))}
		}
		out[i].IdempotencyKey = fmt.Sprintf("%s-%d", run, i)
	}
	return out
}

// Every fault at once, as production meets them: two botq processes, one
// of them killed (kill -9) every 1-3 s and started again, while Khoros
// answers 503s, 429s with Retry-After, applies calls and drops or stalls
// their answers, hangs others and adds latency, and Postgres restarts once
// in the middle. Every respond, note and form reaches Khoros exactly once
// (by its unique text, from the simulator's records), every action
// succeeds, and the reconciler makes few calls per request it settles.
// BOTQ_CHAOS=full runs 3,000 actions over 300 conversations with at least
// 10 kills; the short run, 600 over 60 with 4.
func TestChaosCombinedFaults(t *testing.T) {
	t.Parallel()
	n, convs, minKills := 600, 60, 4
	if chaosFull() {
		n, convs, minKills = 3000, 300, 10
	}
	db, err := server.ThrowawayCluster(context.Background(), t.TempDir(), os.Stderr)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("start a throwaway Postgres cluster: %v", err)
		}
		t.Skipf("no throwaway Postgres cluster here: %v", err)
	}
	t.Cleanup(db.Stop)
	c := newClusterAt(t, db.URL, clusterOpts{
		sim:               sim.Options{Seed: 71, SettleDelayMax: time.Second, MaxCallLog: -1},
		maxWorkers:        20,
		procs:             2,
		reconcileInterval: 2 * time.Second,
	})
	const app = "app-1"
	c.addApp(app, nil)
	require.NoError(t, c.sim.SetFault("*", sim.Fault{
		ErrorRate: 0.05, ErrorCode: 503, RateLimitRate: 0.02, RetryAfter: "1", DropRate: 0.05, HangRate: 0.02, StallRate: 0.01,
		Latency: sim.Duration(5 * time.Millisecond), Jitter: sim.Duration(100 * time.Millisecond),
	}))
	require.NoError(t, c.sim.SetFault("request_list", sim.Fault{ErrorRate: 0.1, ErrorCode: 502}))
	require.NoError(t, c.sim.SetFault("request_get", sim.Fault{ErrorRate: 0.1, ErrorCode: 502}))
	procs := []*proc{c.start("p0"), c.start("p1")}
	actions := conversationActions("combined", app, n, convs)
	started := time.Now()

	// Enqueue over the run, retrying a batch the restart refused: the
	// idempotency keys make a retry return the actions already made.
	idsCh := make(chan []int64, 1)
	go func() {
		enq, err := jobs.NewEnqueuer(c.schema)
		if err != nil {
			idsCh <- nil
			return
		}
		var ids []int64
		const batch = 50
		for start := 0; start < n; start += batch {
			for {
				res, err := enq.EnqueueMany(c.ctx, c.pool, actions[start:min(start+batch, n)])
				if err == nil {
					for _, r := range res {
						ids = append(ids, r.ActionID)
					}
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
		}
		idsCh <- ids
	}()

	rng := rand.New(rand.NewPCG(71, 71))
	var ids []int64
	kills, restarted := 0, false
	for ids == nil || kills < minKills {
		time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
		i := rng.IntN(len(procs))
		procs[i].kill9()
		kills++
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		if !restarted && kills == minKills/2 {
			c.pool.Reset()
			require.NoError(t, db.Restart())
			restarted = true
			t.Logf("Postgres restarted after kill %d", kills)
		}
		procs[i] = c.start(fmt.Sprintf("p%d-%d", i, kills))
		select {
		case ids = <-idsCh:
		default:
		}
	}
	require.Len(t, ids, n, "every action was enqueued")
	st := c.waitFinal(ids, 6*time.Minute)
	elapsed := time.Since(started)

	require.Equal(t, n, st["succeeded"], "every action succeeded: %v\n%s", st, c.unsucceeded(ids))
	applied := appliedTexts(c.sim, []string{app})
	dups := 0
	for i := range actions {
		if got := applied[respondText("combined", i)]; got != 1 {
			dups++
			t.Errorf("action %d (%s) reached Khoros %d times", i, actions[i].Kind, got)
		}
	}
	require.Zero(t, dups)

	var unknown, resolved, released, snoozed, settled int
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT
		(SELECT count(*) FROM %[1]s.attempt WHERE outcome = 'unknown'),
		(SELECT count(*) FROM %[1]s.event WHERE kind = 'ambiguous_resolved'),
		(SELECT count(*) FROM %[1]s.event WHERE kind = 'ambiguous_released'),
		(SELECT count(*) FROM %[1]s.attempt WHERE outcome = 'snooze'),
		(SELECT count(*) FROM %[1]s.request WHERE state IN ('SUCCESS', 'ERROR'))`, c.schema)).Scan(&unknown, &resolved, &released, &snoozed, &settled))
	var pending int
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.request WHERE state = 'PENDING'`, c.schema)).Scan(&pending))
	reconcileCalls := c.sim.CallCount(sim.CallFilter{Endpoint: "request_list"}) + c.sim.CallCount(sim.CallFilter{Endpoint: "request_get"})
	perSettled := float64(reconcileCalls) / float64(settled)
	t.Logf("%d actions over %d conversations in %s: %d kills, Postgres restarted once; %d ambiguous sends "+
		"(%d resolved by a record, %d released), %d 429/401 snoozes; reconciler %d calls for %d settled requests "+
		"(%.4f per request), %d left pending",
		n, convs, elapsed.Round(time.Second), kills, unknown, resolved, released, snoozed, reconcileCalls, settled, perSettled, pending)
	require.Positive(t, resolved, "some ambiguous sends were resolved by Khoros' record")
	require.LessOrEqual(t, perSettled, 0.05, "the reconciler's calls per settled request")
}
