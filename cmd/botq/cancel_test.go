package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/api"
	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/store"
)

// droppedUnknown enqueues a respond whose call Khoros applies and whose
// answer is dropped, and waits until it is unknown.
func (c *cluster) droppedUnknown(run string) (int64, string) {
	c.t.Helper()
	require.NoError(c.t, c.sim.SetFault("respond", sim.Fault{DropRate: 1, Times: 1}))
	text := respondText(run, 0)
	id := c.enqueue([]jobs.Action{respondAction("app-1", "customer-"+run, text)})[0]
	c.waitState(id, store.ActionUnknown, 20*time.Second)
	require.Equal(c.t, 1, c.deliveries("app-1")[text], "Khoros applied the dropped call: the customer has the message")
	return id, text
}

// api posts to the API of p with the operator key and decodes the answer.
func (c *cluster) api(p *proc, path, body string, out any) int {
	c.t.Helper()
	resp, raw := send(c.t, "POST", "http://"+p.addr+path, bearerKey(c.operatorKey()), body)
	if out != nil {
		require.NoError(c.t, json.Unmarshal([]byte(raw), out), raw)
	}
	return resp.StatusCode
}

// The measurement against `botq dev`: a respond's answer was dropped (the
// action went unknown) while Khoros' request listings failed, so nothing
// could see the SUCCESS record Khoros held. The operator cancelled it and
// replayed it, and the customer got the text twice. Now the cancel asks
// Khoros first: with listings failing it cancels the action "possibly
// sent" and says so, and a replay (one, bulk, dry run) refuses it without
// the explicit option, by the CLI and the API. With listings working the
// cancel finds the record: the action succeeds and the cancel is refused,
// by the CLI, the API and River UI; the customer has the text once.
func TestCancelUnknownThenReplayIsNotSentTwice(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 71, SettleDelayMax: -1}})
	c.addApp("app-1", nil)
	// No reconciler run: only the cancel asks Khoros (the measurement's
	// reconciler could not list either).
	p := c.start("serve", "serve", "--no-reconciler")
	require.NoError(t, c.sim.SetFault("request_list", sim.Fault{ErrorRate: 1}))

	// CLI.
	id, text := c.droppedUnknown("cli")
	r := runCLI(t, c, "", "actions", "cancel", fmt.Sprint(id), "--reason", "customer asked")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, fmt.Sprintf("cancelled action %d", id))
	require.Contains(t, r.stderr, "possibly sent")
	require.Contains(t, r.stderr, "Khoros could not be asked")
	require.Contains(t, r.stderr, "--possibly-sent")
	a := c.action(id)
	require.Equal(t, store.ActionCancelled, a.State)
	require.True(t, a.PossiblySent)
	r = runCLI(t, c, "", "actions", "show", fmt.Sprint(id))
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "YES: cancelled while its send's fate was unknown")

	r = runCLI(t, c, "", "replay", fmt.Sprint(id), "--reason", "customer says nothing came")
	require.Equal(t, 1, r.code, r.stdout)
	require.Contains(t, r.stderr, "possibly sent")
	require.Contains(t, r.stderr, "pass --possibly-sent")
	r = runCLI(t, c, "", "replay", "--app", "app-1", "--state", "cancelled", "--dry-run", "--reason", "resend")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "1 action matched, 0 would be replayed")
	require.Contains(t, r.stdout, "skipped 1: possibly sent --possibly-sent")
	r = runCLI(t, c, "", "replay", "--app", "app-1", "--state", "cancelled", "--reason", "resend")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "replayed 0 of 1")
	require.Equal(t, 1, c.deliveries("app-1")[text], "nothing sent twice")

	// API.
	id2, text2 := c.droppedUnknown("api")
	var cancelled api.CancelResponse
	require.Equal(t, http.StatusOK, c.api(p, fmt.Sprintf("/v1/actions/%d/cancel", id2), `{"reason":"customer asked"}`, &cancelled))
	require.Equal(t, "cancelled", cancelled.Action.State)
	require.True(t, cancelled.Action.PossiblySent)
	require.Contains(t, cancelled.Warning, "allow_possibly_sent")
	var refused struct {
		Error struct{ Code, Message, Field string } `json:"error"`
	}
	require.Equal(t, http.StatusConflict, c.api(p, fmt.Sprintf("/v1/actions/%d/replay", id2), `{"reason":"resend"}`, &refused))
	require.Equal(t, "allow_possibly_sent", refused.Error.Field)
	var plan api.BulkReplayResponse
	require.Equal(t, http.StatusOK, c.api(p, "/v1/replay", fmt.Sprintf(`{"filter":{"ids":[%d,%d]},"reason":"resend","dry_run":true}`, id, id2), &plan))
	require.Zero(t, plan.Eligible)
	require.Equal(t, map[string]int64{"allow_possibly_sent": 2}, plan.Skipped)
	require.Equal(t, 1, c.deliveries("app-1")[text2], "nothing sent twice")

	// With the option, the operator's explicit choice: the message goes out
	// again.
	var replayed api.ReplayResponse
	require.Equal(t, http.StatusCreated, c.api(p, fmt.Sprintf("/v1/actions/%d/replay", id2),
		`{"reason":"customer confirmed nothing arrived","allow_possibly_sent":true}`, &replayed))
	r = runCLI(t, c, "", "replay", fmt.Sprint(id), "--reason", "customer confirmed nothing arrived", "--possibly-sent")
	require.Equal(t, 0, r.code, r.stderr)
	require.Eventually(t, func() bool { d := c.deliveries("app-1"); return d[text] == 2 && d[text2] == 2 }, 30*time.Second, 50*time.Millisecond,
		"sent again on the operator's explicit choice")

	// Listings work: the cancel finds the record of the send.
	c.sim.ClearFaults("request_list")
	cases := []struct {
		name   string
		cancel func(id int64) string // the refusal's message
	}{
		{"cli", func(id int64) string {
			r := runCLI(t, c, "", "actions", "cancel", fmt.Sprint(id), "--reason", "customer asked")
			require.Equal(t, 1, r.code, r.stdout)
			return r.stderr
		}},
		{"api", func(id int64) string {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			require.Equal(t, http.StatusConflict, c.api(p, fmt.Sprintf("/v1/actions/%d/cancel", id), `{"reason":"customer asked"}`, &e))
			require.Equal(t, "conflict", e.Error.Code)
			return e.Error.Message
		}},
		{"riverui", func(id int64) string {
			resp, body := c.riverUI(p, "cancel", c.action(id).RiverJobID)
			require.Equal(t, http.StatusConflict, resp.StatusCode, body)
			return riverUIMessage(t, resp, body)
		}},
	}
	for _, tt := range cases {
		id, text := c.droppedUnknown("found-" + tt.name)
		msg := tt.cancel(id)
		a := c.action(id)
		require.Equal(t, store.ActionSucceeded, a.State, "%s: settled by its record, not cancelled", tt.name)
		require.False(t, a.PossiblySent)
		require.Contains(t, msg, "it reached Khoros: request "+a.RequestID, tt.name)
		events, err := c.store.EventList(c.ctx, c.pool, store.EventListParams{ActionID: &id})
		require.NoError(t, err)
		kinds := []string{}
		for _, e := range events {
			kinds = append(kinds, e.Kind)
		}
		require.Equal(t, []string{"ambiguous_resolved"}, kinds, "%s: no cancel", tt.name)
		require.Equal(t, 1, c.deliveries("app-1")[text], "%s: the customer has the text once", tt.name)
		r := runCLI(t, c, "", "replay", fmt.Sprint(id), "--reason", "resend")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "--allow-succeeded", tt.name)
	}
	require.Equal(t, 0, strings.Count(c.logs(), `"level":"error"`), "no errors logged")
}
