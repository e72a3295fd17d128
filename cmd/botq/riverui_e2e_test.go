package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/store"
)

// operatorKey is the cluster's operator API key.
func (c *cluster) operatorKey() string {
	return strings.SplitN(strings.Split(c.apiKeys, "\n")[0], ":", 3)[2]
}

// riverUI posts River UI's Cancel, Retry or Delete (op) of jobs to p and
// returns the answer.
func (c *cluster) riverUI(p *proc, op string, jobIDs ...int64) (*http.Response, string) {
	c.t.Helper()
	return send(c.t, "POST", "http://"+p.addr+"/riverui/api/jobs/"+op, bearerKey(c.operatorKey()), riverUIIDsBody(jobIDs...))
}

func (c *cluster) action(id int64) *store.Action {
	c.t.Helper()
	a, err := c.store.ActionGet(c.ctx, c.pool, id)
	require.NoError(c.t, err)
	return a
}

// waitState waits until the action is in state.
func (c *cluster) waitState(id int64, state store.ActionState, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		a := c.action(id)
		if a.State == state {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("after %s action %d is %s, not %s (%s)\n%s", timeout, id, a.State, state, a.LastError, c.tailAll(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCallHanging waits until the simulator holds a call of the one-off
// hang fault (SetFault with Times 1): the fault is gone once a call took it.
func (c *cluster) waitCallHanging() {
	c.t.Helper()
	require.Eventually(c.t, func() bool { return len(c.sim.Faults()) == 0 }, 20*time.Second, 5*time.Millisecond, "a call reached the simulator")
}

// A River UI Cancel of a running action job is refused: the call is in
// flight, and cutting it would not stop a message that reached Khoros (it
// went unknown, and the reconciler released it into a send anyway). The
// action then runs by botq's rules: sent exactly once.
func TestRiverUICancelOfRunningJobIsRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 61, SettleDelayMax: -1}})
	c.addApp("app-1", nil)
	require.NoError(t, c.sim.SetFault("respond", sim.Fault{HangRate: 1, Times: 1}))
	p := c.start("serve")
	text := respondText("running", 0)
	id := c.enqueue([]jobs.Action{respondAction("app-1", "customer-1", text)})[0]
	c.waitCallHanging()

	a := c.action(id)
	resp, body := c.riverUI(p, "cancel", a.RiverJobID)
	require.Equal(t, http.StatusConflict, resp.StatusCode, body)
	msg := riverUIMessage(t, resp, body)
	require.Contains(t, msg, "in flight")
	require.Contains(t, msg, fmt.Sprintf("botq actions cancel %d", id))

	// Not cancelled: the hung call ends unanswered, the reconciler finds no
	// record and releases it, and it is sent once.
	st := c.waitFinal([]int64{id}, 60*time.Second)
	require.Equal(t, 1, st["succeeded"], st)
	require.Equal(t, 1, c.deliveries("app-1")[text])
	events, err := c.store.EventList(c.ctx, c.pool, store.EventListParams{ActionID: &id})
	require.NoError(t, err)
	for _, e := range events {
		require.NotEqual(t, "riverui", e.Kind, "a refused write is no event")
		require.NotEqual(t, "cancel", e.Kind)
	}
}

// River's own JobCancel of a running job (River UI did it before botq
// answered its Cancel; another River client or SQL still can) cuts the
// worker's call: the send is ambiguous and parked. The cancel is honoured:
// when no record of the send shows up, the action is cancelled, not
// released into a send.
func TestRiverJobCancelOfRunningSendIsNotResent(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 62, SettleDelayMax: -1}})
	c.addApp("app-1", nil)
	require.NoError(t, c.sim.SetFault("respond", sim.Fault{HangRate: 1, Times: 1}))
	c.start("serve")
	text := respondText("cut", 0)
	id := c.enqueue([]jobs.Action{respondAction("app-1", "customer-1", text)})[0]
	c.waitCallHanging()

	client, err := river.NewClient(riverpgxv5.New(c.pool), &river.Config{Schema: c.schema})
	require.NoError(t, err)
	_, err = client.JobCancel(c.ctx, c.action(id).RiverJobID)
	require.NoError(t, err)

	c.waitState(id, store.ActionCancelled, 30*time.Second)
	// Well past the grace period, nothing was sent.
	time.Sleep(4 * time.Second)
	require.Equal(t, store.ActionCancelled, c.action(id).State)
	require.Zero(t, c.deliveries("app-1")[text], "the cancelled action never reached the customer")
	require.Equal(t, 1, c.sim.CallCount(sim.CallFilter{Endpoint: "respond"}), "only the cut call")
	events, err := c.store.EventList(c.ctx, c.pool, store.EventListParams{ActionID: &id, Kind: "cancel"})
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, "reconciler", events[0].Actor)
	require.Contains(t, events[0].Reason, "not sent")
}

// The parked job of an unknown action cancelled behind botq's back left the
// action unknown for good and the reconcile task failing on every run. A
// River UI Cancel is botq's cancel now, which asks Khoros about the send
// first: while Khoros cannot answer (its listing fails) the action is
// cancelled possibly sent, which the answer and the cancel event say; once
// the grace period is over with no record, the cancel is clean. River's own
// JobCancel of the parked job is settled by the reconciler: no record of the
// send, so cancelled, with an event and a warning.
func TestCancelledParkedJobSettlesItsAction(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 63, SettleDelayMax: -1}, procs: 2})
	c.addApp("app-1", nil)
	// No reconciler yet: it would release the parked jobs before the test
	// cancels them.
	p := c.start("serve", "serve", "--no-reconciler")
	client, err := river.NewClient(riverpgxv5.New(c.pool), &river.Config{Schema: c.schema})
	require.NoError(t, err)

	unknown := func(run string) (int64, string) {
		require.NoError(t, c.sim.SetFault("respond", sim.Fault{HangRate: 1, Times: 1}))
		text := respondText(run, 0)
		id := c.enqueue([]jobs.Action{respondAction("app-1", "customer-"+run, text)})[0]
		c.waitState(id, store.ActionUnknown, 20*time.Second) // khoros.http_timeout cut the hung call
		require.Equal(t, "pending", jobState(t, c.pool, c.schema, c.action(id).RiverJobID), "parked for the reconciler")
		return id, text
	}

	// River UI, while Khoros' listing fails.
	id, text := unknown("ui")
	require.NoError(t, c.sim.SetFault("request_list", sim.Fault{ErrorRate: 1, Times: 1}))
	resp, body := c.riverUI(p, "cancel", c.action(id).RiverJobID)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `"warning"`)
	require.Contains(t, body, fmt.Sprintf("botq replay %d --possibly-sent", id))
	c.waitState(id, store.ActionCancelled, 10*time.Second)
	require.True(t, c.action(id).PossiblySent, "Khoros could not say whether the send arrived")
	events, err := c.store.EventList(c.ctx, c.pool, store.EventListParams{ActionID: &id, Kind: "riverui"})
	require.NoError(t, err)
	require.Len(t, events, 1, "the River UI write names its action")
	require.Equal(t, "app-1", events[0].AppID)
	events, err = c.store.EventList(c.ctx, c.pool, store.EventListParams{ActionID: &id, Kind: "cancel"})
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Contains(t, string(events[0].After), `"possibly_sent": true`)
	require.Contains(t, string(events[0].After), "Khoros could not be asked")

	// River UI, after the grace period (reconciler.ambiguous_grace, 3s
	// here) with Khoros answering: the send never arrived.
	idLate, textLate := unknown("ui-late")
	time.Sleep(3 * time.Second)
	resp, body = c.riverUI(p, "cancel", c.action(idLate).RiverJobID)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.NotContains(t, body, "warning")
	require.Equal(t, store.ActionCancelled, c.action(idLate).State)
	require.False(t, c.action(idLate).PossiblySent)

	// River's JobCancel, not through botq.
	id2, text2 := unknown("river")
	_, err = client.JobCancel(c.ctx, c.action(id2).RiverJobID)
	require.NoError(t, err)
	c.start("reconciler", "serve", "--no-api", "--no-workers")
	c.waitState(id2, store.ActionCancelled, 30*time.Second)
	events, err = c.store.EventList(c.ctx, c.pool, store.EventListParams{ActionID: &id2, Kind: "cancel"})
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, "reconciler", events[0].Actor)

	time.Sleep(2 * time.Second) // a few more reconciler runs
	for _, x := range []struct {
		id   int64
		text string
	}{{id, text}, {idLate, textLate}, {id2, text2}} {
		require.Equal(t, store.ActionCancelled, c.action(x.id).State)
		require.Zero(t, c.deliveries("app-1")[x.text])
	}
	logs := c.logs()
	require.NotContains(t, logs, "release parked job", "the reconcile task no longer fails on it")
	require.Contains(t, logs, `"level":"warn"`)
	require.Contains(t, logs, "was cancelled or deleted outside botq")
}

// A River UI Retry of a lane follower's pending job sent it out of order:
// past a failed head under lane_on_failure block, past an unknown head
// under continue. It is refused now, and the lanes keep their order.
func TestRiverUIRetryKeepsLaneOrder(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 64, SettleDelayMax: -1}, procs: 2})
	c.addApp("app-block", func(p *store.AppUpsertParams) { p.LaneOnFailure = "block" })
	c.addApp("app-cont", nil)
	// No reconciler until the end: the unknown head must stay unknown.
	p := c.start("serve", "serve", "--no-reconciler")
	followerRefused := func(follower int64) {
		t.Helper()
		f := c.action(follower)
		require.Equal(t, store.ActionQueued, f.State)
		require.Equal(t, "pending", jobState(t, c.pool, c.schema, f.RiverJobID), "waits for its turn")
		resp, body := c.riverUI(p, "retry", f.RiverJobID)
		require.Equal(t, http.StatusConflict, resp.StatusCode, body)
		msg := riverUIMessage(t, resp, body)
		require.Contains(t, msg, "lane")
		require.Contains(t, msg, fmt.Sprintf("botq actions cancel %d", follower))
		resp, body = c.riverUI(p, "delete", f.RiverJobID)
		require.Equal(t, http.StatusConflict, resp.StatusCode, body)
		time.Sleep(time.Second)
		require.Equal(t, "pending", jobState(t, c.pool, c.schema, f.RiverJobID))
	}

	// block: the head fails (a 4xx), the lane is blocked by it.
	require.NoError(t, c.sim.SetFault("respond", sim.Fault{ErrorRate: 1, ErrorCode: 400, Times: 1}))
	ids := c.enqueue([]jobs.Action{
		respondAction("app-block", "customer-b", respondText("block", 0)),
		respondAction("app-block", "customer-b", respondText("block", 1)),
	})
	c.waitState(ids[0], store.ActionFailed, 20*time.Second)
	followerRefused(ids[1])
	require.Zero(t, c.deliveries("app-block")[respondText("block", 1)], "not sent past the failed head")
	var blockedBy *int64
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT blocked_by FROM %s.lane WHERE app_id = 'app-block'`, c.schema)).Scan(&blockedBy))
	require.NotNil(t, blockedBy)
	require.Equal(t, ids[0], *blockedBy)
	// Retrying the failed head's job does not send it again either.
	head := c.action(ids[0])
	resp, body := c.riverUI(p, "retry", head.RiverJobID)
	require.Equal(t, http.StatusConflict, resp.StatusCode, body)
	require.Contains(t, riverUIMessage(t, resp, body), fmt.Sprintf("botq replay %d", head.ID))

	// continue: the head's send is ambiguous (unknown) until the reconciler
	// decides; its follower waits for it.
	require.NoError(t, c.sim.SetFault("respond", sim.Fault{HangRate: 1, Times: 1}))
	ids = c.enqueue([]jobs.Action{
		respondAction("app-cont", "customer-c", respondText("cont", 0)),
		respondAction("app-cont", "customer-c", respondText("cont", 1)),
	})
	c.waitState(ids[0], store.ActionUnknown, 20*time.Second)
	followerRefused(ids[1])
	require.Equal(t, store.ActionUnknown, c.action(ids[0]).State, "the head is still unknown")
	require.Zero(t, c.deliveries("app-cont")[respondText("cont", 1)], "not sent while its head is unknown")
	c.start("reconciler", "serve", "--no-api", "--no-workers")
	c.waitFinal(ids, 60*time.Second)
	var texts []string
	for _, r := range c.sim.Records(sim.RecordFilter{AppID: "app-cont", Origin: "BOT"}) {
		var p struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(r.Payload, &p) == nil && p.Text != "" {
			texts = append(texts, p.Text)
		}
	}
	require.Equal(t, []string{respondText("cont", 0), respondText("cont", 1)}, texts, "sent once each, in lane order")
}
