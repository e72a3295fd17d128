package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/store"
)

// Every way an execution of a job ends without a call, or with an answer
// that gives River's attempt back, followed by an execution whose call
// Khoros applies and whose process dies before its result is written: the
// new process takes the job for one whose call may have reached Khoros, and
// each message reaches Khoros exactly once. Each path has an app of its own
// (the simulator's faults are per app), so one kill covers them all.
func TestCrashAfterAnExecutionWithoutACall(t *testing.T) {
	t.Parallel()
	// Calls wait for their answer longer than the paths take to reach their
	// stalled calls, so that none has given up when the process is killed.
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 61, SettleDelayMax: 200 * time.Millisecond}, callTimeout: 15 * time.Second})
	stall := sim.Fault{StallRate: 1}
	paths := []struct {
		app   string
		fault sim.Fault
		mod   func(*store.AppUpsertParams)
	}{
		// The first execution of each path's respond:
		{app: "first"}, // is the one that stalls (no earlier execution)
		{app: "rate-limited", fault: sim.Fault{ // gets a 429 (a snooze with an attempt row)
			RateLimitRate: 1, RetryAfter: "1", Times: 1, Next: &stall}},
		{app: "unauthorized", fault: sim.Fault{ // gets a 401, refreshes the token (an attempt row)
			ErrorRate: 1, ErrorCode: 401, Times: 1, Next: &stall}},
		{app: "unauthorized-new", fault: sim.Fault{ // gets a 401 on a new token: the app pauses (an attempt row)
			ErrorRate: 1, ErrorCode: 401, Times: 1, Next: &stall}},
		{app: "paused"},    // finds the app paused (no row)
		{app: "throttled"}, // finds the app throttled by an earlier 429 (no row)
		{app: "slot", mod: func(p *store.AppUpsertParams) { // waits for a concurrency slot and parks
			one := 1
			p.ConcurrencyLimit = &one
		}},
		{app: "rate-slot", mod: func(p *store.AppUpsertParams) { // snoozes for a rate slot
			r := 0.2
			p.RateLimit, p.RateBurst = &r, 1
		}},
		{app: "no-token"},  // fails before its call: its token cannot be opened
		{app: "tokenless"}, // finds no token: the app pauses
	}
	for _, p := range paths {
		c.addApp(p.app, p.mod)
		f := stall
		if p.fault.Times > 0 {
			f = p.fault
		}
		f.AppID = p.app
		require.NoError(t, c.sim.SetFault("respond", f))
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := c.pool.Exec(c.ctx, fmt.Sprintf(sql, c.schema), args...)
		require.NoError(t, err)
	}
	_, err := c.store.AppPause(c.ctx, c.pool, "paused", store.Forever, "test")
	require.NoError(t, err)
	require.NoError(t, c.store.AppThrottle(c.ctx, c.pool, "throttled", time.Now().Add(3*time.Second)))
	// A token set less than a minute ago is not refreshed after a 401.
	exec(`UPDATE %s.app SET token_refreshed_at = now() - interval '1 hour' WHERE id = 'unauthorized'`)
	exec(`UPDATE %s.app SET token_ciphertext = '\x00', token_version = token_version + 1 WHERE id = 'no-token'`)
	require.NoError(t, c.store.AppClearToken(c.ctx, c.pool, "tokenless"))
	require.NoError(t, c.sim.SetFault("tag", sim.Fault{AppID: "slot", Latency: sim.Duration(1500 * time.Millisecond)}))

	p1 := c.start("p1")
	// The slot and the rate slot are taken by a tag on another lane first.
	tagIDs := c.enqueue([]jobs.Action{
		{AppID: "slot", Kind: jobs.KindTag, Payload: []byte(jobsPayloadTag("holder"))},
		{AppID: "rate-slot", Kind: jobs.KindTag, Payload: []byte(jobsPayloadTag("holder"))},
	})
	require.Eventually(t, func() bool {
		var held int
		require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.app_slot WHERE app_id = 'slot' AND holder IS NOT NULL`, c.schema)).Scan(&held))
		return held == 1 && c.sim.CallCount(sim.CallFilter{AppID: "rate-slot", Endpoint: "tag"}) == 1
	}, 20*time.Second, 10*time.Millisecond, "the tags hold the slot and took the rate slot")

	actions := make([]jobs.Action, len(paths))
	for i, p := range paths {
		actions[i] = respondAction(p.app, "customer-"+p.app, "crash after "+p.app)
	}
	ids := c.enqueue(actions)
	// The paused app's and the tokenless app's jobs have run and snoozed
	// (River gave their attempts back); now let them call.
	snoozed := func(app string) bool {
		t.Helper()
		var ok bool
		require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`
			SELECT j.attempted_at IS NOT NULL AND j.attempt = 0 FROM %[1]s.river_job j JOIN %[1]s.action a ON a.river_job_id = j.id
			WHERE a.app_id = $1 AND a.kind = 'respond'`, c.schema), app).Scan(&ok))
		return ok
	}
	waiting := []string{"paused", "no-token", "tokenless", "unauthorized-new"}
	require.Eventually(t, func() bool {
		for _, app := range waiting {
			if !snoozed(app) {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "the jobs of paused and tokenless apps snoozed")
	for _, app := range []string{"no-token", "tokenless"} {
		tok, err := c.sim.MintToken(app, sim.MintOptions{CompanyKey: "acme"})
		require.NoError(t, err)
		exp := tok.ExpiresAt()
		_, err = c.store.AppSetToken(c.ctx, c.pool, app, c.keyring.Seal(app, tok.Token), c.keyring.ID(), &exp)
		require.NoError(t, err)
	}
	for _, app := range []string{"paused", "tokenless", "unauthorized-new"} {
		_, err = c.store.AppResume(c.ctx, c.pool, app)
		require.NoError(t, err)
	}

	// Every respond is applied at Khoros and waiting for its answer.
	require.Eventually(t, func() bool {
		for _, p := range paths {
			if c.deliveries(p.app)["crash after "+p.app] == 0 {
				return false
			}
		}
		return true
	}, 40*time.Second, 10*time.Millisecond, "every respond applied and stalled:\n%s", c.tailAll(20))
	p1.kill9()
	c.sim.ClearFaults()
	for _, p := range paths[1:] {
		before := c.sim.Calls(sim.CallFilter{AppID: p.app, Endpoint: "respond"})
		require.GreaterOrEqual(t, len(before), 1)
		require.Equal(t, "stall", before[len(before)-1].Fault, "%s: its last call stalled", p.app)
	}

	c.start("p2")
	st := c.waitFinal(append(ids, tagIDs...), 2*time.Minute)
	require.Equal(t, len(ids)+len(tagIDs), st["succeeded"], "every action succeeded: %v\n%s", st, c.unsucceeded(ids))
	for _, p := range paths {
		require.Equal(t, 1, c.deliveries(p.app)["crash after "+p.app], "%s: the message reached Khoros exactly once", p.app)
	}
	// Each was taken for a possible send, and the reconciler found its record.
	var unknown int
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(DISTINCT action_id) FROM %s.attempt WHERE outcome = 'unknown' AND action_id = ANY($1)`, c.schema), ids).Scan(&unknown))
	require.Equal(t, len(ids), unknown)
}

func jobsPayloadTag(author string) string {
	return fmt.Sprintf(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":%q},"tagIds":[1]}`, author)
}
