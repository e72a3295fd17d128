package api_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

func TestReplayOne(t *testing.T) {
	t.Parallel()
	b := setup(t)
	failed := b.enqueue(t, keyOperator, "rp-failed")
	b.setState(t, failed.ID, store.ActionFailed)
	done := b.enqueue(t, keyOperator, "rp-ok")
	b.setState(t, done.ID, store.ActionSucceeded)
	path := func(id int64) string { return fmt.Sprintf("/v1/actions/%d/replay", id) }

	var e apiError
	require.Equal(t, http.StatusForbidden, b.call(t, "POST", path(failed.ID), keyAuditor, map[string]string{"reason": "x"}, &e).StatusCode,
		"an auditor cannot replay")
	require.Equal(t, "forbidden", e.Error.Code)
	require.Equal(t, http.StatusBadRequest, b.call(t, "POST", path(failed.ID), keyOperator, map[string]string{}, &e).StatusCode)
	require.Equal(t, "reason", e.Error.Field)

	var dry api.ReplayResponse
	require.Equal(t, http.StatusOK, b.call(t, "POST", path(failed.ID), keyOperator, map[string]any{"reason": "outage", "dry_run": true}, &dry).StatusCode)
	require.True(t, dry.DryRun)
	var out api.ReplayResponse
	resp := b.call(t, "POST", path(failed.ID), keyOperator, map[string]any{"reason": "outage"}, &out)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Equal(t, failed.ID, *out.Action.ReplayOf)
	require.Equal(t, "api:ops", out.Action.CreatedBy)
	require.Equal(t, "rp-failed#replay-1", out.Action.IdempotencyKey)

	tests := []struct {
		giveID    int64
		giveBody  map[string]any
		wantField string
	}{
		{done.ID, map[string]any{"reason": "again"}, "allow_succeeded"},
		{done.ID, map[string]any{"reason": "again", "dry_run": true}, "allow_succeeded"},
		{out.Action.ID, map[string]any{"reason": "again", "allow_succeeded": true}, ""}, // queued: never
		{failed.ID, map[string]any{"reason": "again"}, "allow_replayed"},
	}
	for _, tt := range tests {
		var e apiError
		resp := b.call(t, "POST", path(tt.giveID), keyOperator, tt.giveBody, &e)
		require.Equal(t, http.StatusConflict, resp.StatusCode, "%v", tt.giveBody)
		require.Equal(t, "replay_refused", e.Error.Code)
		require.Equal(t, tt.wantField, e.Error.Field, e.Error.Message)
	}
	require.Equal(t, http.StatusCreated, b.call(t, "POST", path(done.ID), keyOperator, map[string]any{"reason": "resend", "allow_succeeded": true}, nil).StatusCode)
	require.Equal(t, http.StatusNotFound, b.call(t, "POST", path(1<<60), keyOperator, map[string]any{"reason": "x"}, nil).StatusCode)

	var detail api.ActionDetail
	require.Equal(t, http.StatusOK, b.call(t, "GET", fmt.Sprintf("/v1/actions/%d", failed.ID), keyAuditor, nil, &detail).StatusCode)
	require.Len(t, detail.Replays, 1)
	require.Len(t, detail.Events, 1)
	require.Equal(t, "replay", detail.Events[0].Kind)
	require.Equal(t, "failed", detail.Action.State, "the original is untouched")
}

// TestBulkReplay10k replays 10,000 failed actions by filter through the API:
// every new action is linked to its original, there is one event per
// replay, and the originals are untouched.
func TestBulkReplay10k(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("10,000 actions; skipped with -short")
	}
	b := setup(t)
	const n = 10_000
	ps := make([]store.ActionInsertParams, n)
	for i := range ps {
		ps[i] = store.ActionInsertParams{AppID: b.appID, Kind: "tag", IdempotencyKey: fmt.Sprintf("bulk-%d", i),
			Payload: []byte(fmt.Sprintf(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1"},"author":{"id":"a-%d"},"tagIds":[1]}`, i))}
	}
	// Batches: one statement of 10,000 inserts is much slower than ten of
	// 1,000 (the lane trigger's cost grows with the statement).
	q := func(sql string) string { return strings.ReplaceAll(sql, "botq.", b.s.Schema()+".") }
	for i := 0; i < n; i += 1000 {
		_, err := b.s.ActionInsertMany(b.ctx, b.pool, ps[i:i+1000])
		require.NoError(t, err)
		if i == 0 {
			// See the ANALYZE below.
			_, err = b.pool.Exec(b.ctx, q(`ANALYZE botq.action`))
			require.NoError(t, err)
		}
	}
	_, err := b.pool.Exec(b.ctx, q(`UPDATE botq.action SET state = 'failed', last_error = 'HTTP 500' WHERE app_id = $1`), b.appID)
	require.NoError(t, err)
	// What autovacuum would have done by the time an operator replays: the
	// enqueue trigger's cached plans, made when the table was empty, are
	// replanned with statistics (without them each insert scans the table).
	_, err = b.pool.Exec(b.ctx, q(`ANALYZE botq.action`))
	require.NoError(t, err)
	fingerprint := func() string {
		var s string
		require.NoError(t, b.pool.QueryRow(b.ctx, q(`
			SELECT md5(string_agg(a::text, ',' ORDER BY a.id)) FROM botq.action a
			WHERE app_id = $1 AND replay_of IS NULL`), b.appID).Scan(&s))
		return s
	}
	before := fingerprint()

	body := map[string]any{"filter": map[string]any{"app": b.appID, "kind": "tag", "state": []string{"failed"}}, "reason": "Khoros 500s on 2025-01-31"}
	var e apiError
	require.Equal(t, http.StatusForbidden, b.call(t, "POST", "/v1/replay", keyAuditor, body, &e).StatusCode, "an auditor cannot replay")

	dryBody := map[string]any{"filter": body["filter"], "reason": body["reason"], "dry_run": true, "sample": 3}
	var dry api.BulkReplayResponse
	require.Equal(t, http.StatusOK, b.call(t, "POST", "/v1/replay", keyOperator, dryBody, &dry).StatusCode)
	require.True(t, dry.DryRun)
	require.EqualValues(t, n, dry.Matched)
	require.EqualValues(t, n, dry.Eligible)
	require.Len(t, dry.Sample, 3)
	require.Zero(t, dry.Replayed)

	start := time.Now()
	var out api.BulkReplayResponse
	require.Equal(t, http.StatusOK, b.call(t, "POST", "/v1/replay", keyOperator, body, &out).StatusCode)
	took := time.Since(start)
	t.Logf("bulk replay of %d actions took %s", n, took)
	require.EqualValues(t, n, out.Replayed)
	require.Len(t, out.FirstActionIDs, 100)

	var replays, linked, events, eventsLinked int
	require.NoError(t, b.pool.QueryRow(b.ctx, q(`
		SELECT count(*), count(DISTINCT r.replay_of) FILTER (WHERE o.id IS NOT NULL AND o.app_id = r.app_id AND o.payload = r.payload),
		       (SELECT count(*) FROM botq.event WHERE kind = 'replay' AND app_id = $1),
		       (SELECT count(DISTINCT e.action_id) FROM botq.event e
		        JOIN botq.action r2 ON r2.replay_of = e.action_id AND r2.id = (e.after ->> 'action_id')::bigint
		        WHERE e.kind = 'replay' AND e.app_id = $1 AND e.actor = 'api:ops')
		FROM botq.action r LEFT JOIN botq.action o ON o.id = r.replay_of
		WHERE r.app_id = $1 AND r.replay_of IS NOT NULL`), b.appID).Scan(&replays, &linked, &events, &eventsLinked))
	require.Equal(t, n, replays, "one new action per original")
	require.Equal(t, n, linked, "each linked to its own original, same app and payload")
	require.Equal(t, n, events, "one replay event per replay")
	require.Equal(t, n, eventsLinked, "each event names the original and its replay")
	require.Equal(t, before, fingerprint(), "the originals are untouched")

	// Running it again replays nothing: every original was replayed.
	require.Equal(t, http.StatusOK, b.call(t, "POST", "/v1/replay", keyOperator, body, &out).StatusCode)
	require.Zero(t, out.Replayed)
	require.EqualValues(t, n, out.Skipped["allow_replayed"])

	require.Equal(t, http.StatusBadRequest, b.call(t, "POST", "/v1/replay", keyOperator, map[string]any{"reason": "x"}, &e).StatusCode)
	require.Equal(t, "filter", e.Error.Field)
	require.Equal(t, http.StatusBadRequest, b.call(t, "POST", "/v1/replay", keyOperator,
		map[string]any{"reason": "x", "filter": map[string]any{"state": []string{"late"}}}, &e).StatusCode)
	require.Equal(t, "filter.state", e.Error.Field)
}

func TestExportStreamsCSVAndJSON(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.enqueue(t, keyOperator, "exp")
	for i := range 3 {
		require.NoError(t, b.s.RequestUpsert(b.ctx, b.pool, &store.RequestUpsertParams{
			RequestID: fmt.Sprintf("exp-%s-%d", b.appID, i), AppID: b.appID, ActionID: &a.ID, State: store.RequestSuccess,
			Details: []byte(`{"message":"delivered, \"quoted\""}`), HTTPStatus: 202,
		}))
	}
	get := func(format string) (*http.Response, []byte) {
		req, err := http.NewRequest("GET", b.url+"/v1/requests/export?format="+format+"&app="+b.appID, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+keyAuditor)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, raw
	}
	resp, raw := get("csv")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/csv; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, resp.Header.Get("Content-Disposition"), "attachment")
	rows, err := csv.NewReader(strings.NewReader(string(raw))).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 4)
	require.Equal(t, api.CSVHeader, rows[0])
	require.Equal(t, fmt.Sprintf("exp-%s-0", b.appID), rows[1][0])
	require.Equal(t, "respond", rows[1][3])
	require.Equal(t, `{"message": "delivered, \"quoted\""}`, rows[1][7])

	resp, raw = get("json")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var recs []api.Request
	require.NoError(t, json.Unmarshal(raw, &recs), string(raw))
	require.Len(t, recs, 3)
	require.Equal(t, 202, recs[2].HTTPStatus)

	var page api.RequestList
	require.Equal(t, http.StatusOK, b.call(t, "GET", "/v1/requests?limit=2&app="+b.appID, keyAuditor, nil, &page).StatusCode)
	require.Len(t, page.Requests, 2)
	require.NotEmpty(t, page.NextCursor)
	next := page.NextCursor
	page = api.RequestList{}
	require.Equal(t, http.StatusOK, b.call(t, "GET", "/v1/requests?limit=2&app="+b.appID+"&cursor="+next, keyAuditor, nil, &page).StatusCode)
	require.Len(t, page.Requests, 1)
	require.Empty(t, page.NextCursor)
	var one struct{ Request api.Request }
	require.Equal(t, http.StatusOK, b.call(t, "GET", "/v1/requests/"+page.Requests[0].RequestID, keyAuditor, nil, &one).StatusCode)
	require.Equal(t, page.Requests[0].RequestID, one.Request.RequestID)
}

// An unknown action's cancel asks Khoros first (Config.CheckSend): a send
// found at Khoros refuses the cancel; one Khoros cannot answer for is
// cancelled possibly sent, which the answer, the action and its event say,
// and which a replay, one or bulk, dry run included, needs
// allow_possibly_sent for.
func TestCancelUnknownThenReplay(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var checked []int64
	answer := map[int64]func() (*store.SendCheck, error){}
	b := setupWith(t, func(c *api.Config) {
		c.CheckSend = func(_ context.Context, id int64) (*store.SendCheck, error) {
			mu.Lock()
			defer mu.Unlock()
			checked = append(checked, id)
			if f := answer[id]; f != nil {
				return f()
			}
			return nil, nil
		}
	})
	unknown := func(key string) api.Action {
		t.Helper()
		a := b.enqueue(t, keyOperator, key)
		b.setState(t, a.ID, store.ActionUnknown)
		_, err := b.pool.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.river_job SET state = 'pending' WHERE id = $1`, b.s.Schema()), a.RiverJobID)
		require.NoError(t, err)
		return a
	}
	cancel := func(id int64) string { return fmt.Sprintf("/v1/actions/%d/cancel", id) }

	found := unknown("cu-found")
	answer[found.ID] = func() (*store.SendCheck, error) {
		return nil, fmt.Errorf("cancel action %d: %w: it reached Khoros: request req-1 matches its unanswered send", found.ID, store.ErrConflict)
	}
	var e apiError
	require.Equal(t, http.StatusConflict, b.call(t, "POST", cancel(found.ID), keyOperator, map[string]string{"reason": "r"}, &e).StatusCode)
	require.Equal(t, "conflict", e.Error.Code)
	require.Contains(t, e.Error.Message, "it reached Khoros: request req-1")

	possibly := unknown("cu-possibly")
	mu.Lock()
	answer[possibly.ID] = func() (*store.SendCheck, error) {
		return &store.SendCheck{Note: "Khoros could not be asked whether the send arrived: list requests: 503"}, nil
	}
	mu.Unlock()
	var out api.CancelResponse
	require.Equal(t, http.StatusOK, b.call(t, "POST", cancel(possibly.ID), keyOperator, map[string]string{"reason": "customer left"}, &out).StatusCode)
	require.Equal(t, "cancelled", out.Action.State)
	require.True(t, out.Action.PossiblySent)
	require.Contains(t, out.Warning, "possibly sent")
	require.Contains(t, out.Warning, "503")
	require.Contains(t, out.Warning, "allow_possibly_sent")
	mu.Lock()
	require.Equal(t, []int64{found.ID, possibly.ID}, checked)
	clean := unknown("cu-clean")
	answer[clean.ID] = func() (*store.SendCheck, error) {
		return &store.SendCheck{NotSent: true, Note: "it never reached Khoros"}, nil
	}
	mu.Unlock()
	out = api.CancelResponse{}
	require.Equal(t, http.StatusOK, b.call(t, "POST", cancel(clean.ID), keyOperator, nil, &out).StatusCode)
	require.False(t, out.Action.PossiblySent)
	require.Empty(t, out.Warning)

	var detail api.ActionDetail
	require.Equal(t, http.StatusOK, b.call(t, "GET", fmt.Sprintf("/v1/actions/%d", possibly.ID), keyAuditor, nil, &detail).StatusCode)
	require.True(t, detail.Action.PossiblySent)
	require.Equal(t, "cancel", detail.Events[0].Kind)
	require.Contains(t, string(detail.Events[0].After), `"possibly_sent":true`)

	replay := func(id int64) string { return fmt.Sprintf("/v1/actions/%d/replay", id) }
	for _, body := range []map[string]any{{"reason": "resend"}, {"reason": "resend", "dry_run": true}} {
		e = apiError{}
		require.Equal(t, http.StatusConflict, b.call(t, "POST", replay(possibly.ID), keyOperator, body, &e).StatusCode, "%v", body)
		require.Equal(t, "replay_refused", e.Error.Code)
		require.Equal(t, "allow_possibly_sent", e.Error.Field)
		require.Contains(t, e.Error.Message, "possibly sent")
	}
	var plan api.BulkReplayResponse
	filter := map[string]any{"ids": []int64{possibly.ID, clean.ID}}
	require.Equal(t, http.StatusOK, b.call(t, "POST", "/v1/replay", keyOperator, map[string]any{"filter": filter, "reason": "r", "dry_run": true}, &plan).StatusCode)
	require.EqualValues(t, 1, plan.Eligible)
	require.Equal(t, map[string]int64{"allow_possibly_sent": 1}, plan.Skipped)
	plan = api.BulkReplayResponse{}
	require.Equal(t, http.StatusOK, b.call(t, "POST", "/v1/replay", keyOperator,
		map[string]any{"filter": filter, "reason": "r", "dry_run": true, "allow_possibly_sent": true}, &plan).StatusCode)
	require.EqualValues(t, 2, plan.Eligible)
	require.Empty(t, plan.Skipped)
	var rp api.ReplayResponse
	require.Equal(t, http.StatusCreated, b.call(t, "POST", replay(possibly.ID), keyOperator,
		map[string]any{"reason": "checked with the customer: not received", "allow_possibly_sent": true}, &rp).StatusCode)
	require.Equal(t, possibly.ID, *rp.Action.ReplayOf)

	// Without a check (no CheckSend) an unknown action is cancelled possibly
	// sent: nobody asked Khoros.
	plain := setup(t)
	a := plain.enqueue(t, keyOperator, "cu-plain")
	plain.setState(t, a.ID, store.ActionUnknown)
	out = api.CancelResponse{}
	require.Equal(t, http.StatusOK, plain.call(t, "POST", cancel(a.ID), keyOperator, nil, &out).StatusCode)
	require.True(t, out.Action.PossiblySent)
	require.Contains(t, out.Warning, store.CancelNoCheck)
}
