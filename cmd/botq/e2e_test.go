package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/store"
)

// kill -9 of a worker process with calls in flight, then a restart: every
// action ends final, and no customer got a message twice.
func TestKillWorkerMidFlight(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 31, SettleDelayMax: 500 * time.Millisecond}})
	c.addApp("app-1", nil)
	require.NoError(t, c.sim.SetFault("respond", sim.Fault{Latency: sim.Duration(200 * time.Millisecond), Jitter: sim.Duration(200 * time.Millisecond)}))
	p1 := c.start("worker-1")

	const n = 300
	actions := make([]jobs.Action, n)
	for i := range actions {
		actions[i] = respondAction("app-1", fmt.Sprintf("customer-%d", i), respondText("kill", i))
	}
	ids := c.enqueue(actions)
	// Kill while calls are in flight.
	require.Eventually(t, func() bool { return c.sim.CallCount(sim.CallFilter{Endpoint: "respond"}) >= 60 }, 20*time.Second, 10*time.Millisecond)
	p1.kill9()
	inFlight := c.states(ids)
	t.Logf("killed with %v", inFlight)

	c.start("worker-2")
	st := c.waitFinal(ids, 120*time.Second)
	require.Equal(t, n, st["succeeded"], "every action succeeded: %v", st)

	got := c.deliveries("app-1")
	for i := range n {
		require.Equal(t, 1, got[respondText("kill", i)], "message %d reached the customer exactly once", i)
	}
}

// Two botq processes share an app's rate limit: the simulator sees at most
// 20 calls per second (±10%).
func TestRateLimitAcrossProcesses(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 32}, procs: 2})
	limit := 20.0
	c.addApp("app-1", func(p *store.AppUpsertParams) { p.RateLimit = &limit })
	c.start("a")
	c.start("b")
	const n = 100
	actions := make([]jobs.Action, n)
	for i := range actions {
		actions[i] = respondAction("app-1", fmt.Sprintf("customer-%d", i), respondText("rate", i))
	}
	ids := c.enqueue(actions)
	c.waitFinal(ids, 60*time.Second)

	calls := c.sim.Calls(sim.CallFilter{AppID: "app-1", Endpoint: "respond"})
	require.Len(t, calls, n)
	times := make([]time.Time, len(calls))
	for i, cl := range calls {
		times[i] = cl.Time
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	maxInSecond := 0
	for i := range times {
		k := sort.Search(len(times), func(j int) bool { return !times[j].Before(times[i].Add(time.Second)) }) - i
		maxInSecond = max(maxInSecond, k)
	}
	require.LessOrEqual(t, maxInSecond, 22)
	require.GreaterOrEqual(t, maxInSecond, 18, "and the limit is used, not starved")
	t.Logf("max %d calls in any second; %d calls over %s", maxInSecond, n, times[n-1].Sub(times[0]))
}

// Killing the River leader moves leadership to another process, and
// settling continues.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 33, SettleDelayMin: time.Second, SettleDelayMax: 2 * time.Second}, procs: 2})
	c.addApp("app-1", nil)
	procs := []*proc{c.start("a"), c.start("b")}
	leader := func() string {
		var id string
		_ = c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT leader_id FROM %s.river_leader`, c.schema)).Scan(&id)
		return id
	}
	require.Eventually(t, func() bool { return leader() != "" }, 30*time.Second, 100*time.Millisecond)
	first := leader()
	var lp, other *proc
	for _, p := range procs {
		if p.clientID == first {
			lp = p
		} else {
			other = p
		}
	}
	require.NotNil(t, lp, "the leader %q is one of ours", first)

	batch := func(run string) []int64 {
		actions := make([]jobs.Action, 50)
		for i := range actions {
			actions[i] = respondAction("app-1", fmt.Sprintf("%s-%d", run, i), respondText(run, i))
		}
		return c.enqueue(actions)
	}
	before := batch("before")
	c.waitFinal(before, 30*time.Second)

	lp.kill9()
	after := batch("after")
	require.Eventually(t, func() bool { return leader() == other.clientID }, 45*time.Second, 200*time.Millisecond, "the other process takes over")
	st := c.waitFinal(after, 60*time.Second)
	require.Equal(t, 50, st["succeeded"])
	var settledAfter int
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.request WHERE action_id = ANY($1) AND state = 'SUCCESS'`, c.schema), after).Scan(&settledAfter))
	require.Equal(t, 50, settledAfter, "the new leader's reconciler settled them")
}

// Three processes sharing one database: lane order and the concurrency
// limit hold for the whole fleet.
func TestFleetLaneOrderAndConcurrency(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 34, CallLogBodies: true}, maxWorkers: 20, procs: 3})
	c.addApp("lanes", nil)
	limit := 4
	c.addApp("limited", func(p *store.AppUpsertParams) { p.ConcurrencyLimit = &limit })
	require.NoError(t, c.sim.SetFault("respond", sim.Fault{Jitter: sim.Duration(30 * time.Millisecond)}))
	require.NoError(t, c.sim.SetFault("tag", sim.Fault{Latency: sim.Duration(100 * time.Millisecond)}))
	c.start("a")
	c.start("b")
	c.start("c")

	const lanes, perLane = 30, 15
	var actions []jobs.Action
	for seq := range perLane {
		for l := range lanes {
			actions = append(actions, respondAction("lanes", fmt.Sprintf("lane-%d", l), fmt.Sprintf("%d/%d", l, seq)))
		}
	}
	for i := range 40 {
		actions = append(actions, jobs.Action{AppID: "limited", Kind: jobs.KindTag, Payload: json.RawMessage(fmt.Sprintf(
			`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1"},"author":{"id":"t-%d"},"tagIds":[1]}`, i))})
	}
	ids := c.enqueue(actions)
	c.waitFinal(ids, 90*time.Second)

	seen := make([]int, lanes)
	for _, call := range c.sim.Calls(sim.CallFilter{AppID: "lanes", Endpoint: "respond"}) {
		var body struct{ Text string }
		require.NoError(t, json.Unmarshal(call.Body, &body))
		var l, seq int
		_, err := fmt.Sscanf(body.Text, "%d/%d", &l, &seq)
		require.NoError(t, err)
		require.Equal(t, seen[l], seq, "lane %d out of order", l)
		seen[l]++
	}
	calls := c.sim.Calls(sim.CallFilter{AppID: "limited", Endpoint: "tag"})
	require.Equal(t, 40, len(calls))
	maxInFlight := 0
	for _, a := range calls {
		k := 0
		for _, b := range calls {
			if !b.Time.After(a.Time) && b.Time.Add(100*time.Millisecond).After(a.Time) {
				k++
			}
		}
		maxInFlight = max(maxInFlight, k)
	}
	require.LessOrEqual(t, maxInFlight, limit)
	t.Logf("lanes in order across 3 processes; at most %d of %d calls in flight", maxInFlight, limit)
}

// SIGTERM while calls are in flight: they finish and their results are
// written before the process exits; none is cut off and left ambiguous.
func TestGracefulStopFinishesCalls(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 37}})
	c.addApp("app-1", nil)
	require.NoError(t, c.sim.SetFault("respond", sim.Fault{Latency: sim.Duration(1500 * time.Millisecond)}))
	p := c.start("worker-1")

	const n = 10
	actions := make([]jobs.Action, n)
	for i := range actions {
		actions[i] = respondAction("app-1", fmt.Sprintf("customer-%d", i), respondText("term", i))
	}
	ids := c.enqueue(actions)
	// The simulator counts a call when it answers: wait for the jobs to run
	// and their calls (1.5 s each) to be under way.
	require.Eventually(t, func() bool {
		var running int
		require.NoError(t, c.pool.QueryRow(c.ctx, `SELECT count(*) FROM river_job WHERE state = 'running'`).Scan(&running))
		return running == n
	}, 20*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	require.Zero(t, c.sim.CallCount(sim.CallFilter{Endpoint: "respond"}), "no call has finished before the stop")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill9()
		t.Fatalf("botq did not stop within 30s of SIGTERM:\n%s", tail(p.log, 30))
	}
	require.NoError(t, p.exitErr, "botq exits 0 after SIGTERM:\n%s", tail(p.log, 30))

	st := c.states(ids)
	require.Equal(t, n, st["succeeded"]+st["sent"], "every call in flight finished and was recorded: %v", st)
	var cut int
	require.NoError(t, c.pool.QueryRow(c.ctx, `SELECT count(*) FROM attempt WHERE outcome <> 'ok'`).Scan(&cut))
	require.Zero(t, cut, "no attempt was cut off by the stop")
}
