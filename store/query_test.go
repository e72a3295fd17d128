package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// finish moves a queued action to state.
func (b *testBundle) finish(t *testing.T, id int64, state store.ActionState) {
	t.Helper()
	_, err := b.s.ActionSetState(b.ctx, b.tx, store.ActionSetStateParams{ID: id, To: state})
	require.NoError(t, err)
}

func (b *testBundle) setJobState(t *testing.T, jobID int64, state string) {
	t.Helper()
	_, err := b.tx.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.river_job SET state = $2, attempt = 1, attempted_at = now() WHERE id = $1`, b.s.Schema()), jobID, state)
	require.NoError(t, err)
}

func TestActionListFiltersAndPages(t *testing.T) {
	t.Parallel()
	b := setup(t)

	var ids []int64
	for i := range 5 {
		ids = append(ids, b.insert(t, fmt.Sprintf("list-%d", i)).Action.ID)
	}
	b.finish(t, ids[0], store.ActionFailed)
	b.finish(t, ids[1], store.ActionSucceeded)
	running := b.insert(t, "list-running").Action
	b.setJobState(t, running.RiverJobID, "running")

	tests := []struct {
		give    store.ActionFilter
		wantIDs []int64
	}{
		{store.ActionFilter{AppID: b.appID}, []int64{running.ID, ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{store.ActionFilter{AppID: b.appID, States: []store.ActionState{store.ActionFailed}}, []int64{ids[0]}},
		{store.ActionFilter{AppID: b.appID, States: []store.ActionState{store.ActionRunning}}, []int64{running.ID}},
		{store.ActionFilter{AppID: b.appID, States: []store.ActionState{store.ActionQueued}}, []int64{ids[4], ids[3], ids[2]}},
		{store.ActionFilter{AppID: b.appID, States: []store.ActionState{store.ActionSucceeded, store.ActionFailed}}, []int64{ids[1], ids[0]}},
		{store.ActionFilter{AppID: b.appID, Kind: "note"}, nil},
		{store.ActionFilter{AppID: b.appID, Lane: "facebook/page-1/author-list-3"}, []int64{ids[3]}},
		{store.ActionFilter{AppID: b.appID, From: time.Now().Add(time.Hour)}, nil},
		{store.ActionFilter{AppID: b.appID, To: time.Now().Add(-time.Hour)}, nil},
	}
	for _, tt := range tests {
		got, more, err := b.s.ActionList(b.ctx, b.tx, store.ActionListParams{Filter: tt.give})
		require.NoError(t, err)
		require.False(t, more)
		var gotIDs []int64
		for _, a := range got {
			gotIDs = append(gotIDs, a.ID)
		}
		require.Equal(t, tt.wantIDs, gotIDs, "%+v", tt.give)
		n, err := b.s.ActionCount(b.ctx, b.tx, tt.give)
		require.NoError(t, err)
		require.EqualValues(t, len(tt.wantIDs), n)
	}

	v, err := b.s.ActionView(b.ctx, b.tx, running.ID)
	require.NoError(t, err)
	require.Equal(t, store.ActionRunning, v.State)

	// Pages of two, newest first, then oldest first.
	var seen []int64
	var after int64
	for {
		page, more, err := b.s.ActionList(b.ctx, b.tx, store.ActionListParams{Filter: store.ActionFilter{AppID: b.appID}, AfterID: after, Limit: 2})
		require.NoError(t, err)
		for _, a := range page {
			seen = append(seen, a.ID)
		}
		if !more {
			break
		}
		after = page[len(page)-1].ID
	}
	require.Equal(t, []int64{running.ID, ids[4], ids[3], ids[2], ids[1], ids[0]}, seen)
	page, more, err := b.s.ActionList(b.ctx, b.tx, store.ActionListParams{Filter: store.ActionFilter{AppID: b.appID}, AfterID: ids[1], Ascending: true, Limit: 2})
	require.NoError(t, err)
	require.True(t, more)
	require.Equal(t, ids[2], page[0].ID)
	require.Equal(t, ids[3], page[1].ID)
}

func (b *testBundle) request(t *testing.T, id string, actionID *int64, state store.RequestState) {
	t.Helper()
	require.NoError(t, b.s.RequestUpsert(b.ctx, b.tx, &store.RequestUpsertParams{
		RequestID: id, AppID: b.appID, ActionID: actionID, State: state, Details: []byte(`{"message":"ok"}`),
	}))
}

func TestRequestListExportAndView(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.insert(t, "req").Action
	b.request(t, "req-1", &a.ID, store.RequestSuccess)
	b.request(t, "req-2", &a.ID, store.RequestPending)
	b.request(t, "req-3", nil, store.RequestError)

	all, more, err := b.s.RequestList(b.ctx, b.tx, store.RequestListParams{Filter: store.RequestFilter{AppID: b.appID}})
	require.NoError(t, err)
	require.False(t, more)
	require.Len(t, all, 3)
	require.Equal(t, "req-3", all[0].RequestID, "newest first (same time: by request id)")

	tests := []struct {
		give store.RequestFilter
		want []string
	}{
		{store.RequestFilter{AppID: b.appID, States: []store.RequestState{store.RequestPending}}, []string{"req-2"}},
		{store.RequestFilter{AppID: b.appID, Kind: "respond"}, []string{"req-2", "req-1"}},
		{store.RequestFilter{AppID: b.appID, ActionID: &a.ID}, []string{"req-2", "req-1"}},
		{store.RequestFilter{AppID: b.appID, Lane: a.Lane}, []string{"req-2", "req-1"}},
		{store.RequestFilter{AppID: b.appID, Lane: "another/lane"}, nil},
		{store.RequestFilter{AppID: b.appID, Origin: "KHOROS"}, nil},
		{store.RequestFilter{AppID: b.appID, From: time.Now().Add(time.Hour)}, nil},
	}
	for _, tt := range tests {
		got, _, err := b.s.RequestList(b.ctx, b.tx, store.RequestListParams{Filter: tt.give})
		require.NoError(t, err)
		var ids []string
		for _, r := range got {
			ids = append(ids, r.RequestID)
		}
		require.Equal(t, tt.want, ids, "%+v", tt.give)
		n, err := b.s.RequestCount(b.ctx, b.tx, tt.give)
		require.NoError(t, err)
		require.EqualValues(t, len(tt.want), n)
	}

	page, more, err := b.s.RequestList(b.ctx, b.tx, store.RequestListParams{Filter: store.RequestFilter{AppID: b.appID}, Limit: 2})
	require.NoError(t, err)
	require.True(t, more)
	last := page[1]
	rest, more, err := b.s.RequestList(b.ctx, b.tx, store.RequestListParams{Filter: store.RequestFilter{AppID: b.appID},
		After: &store.RequestCursor{FirstSeenAt: last.FirstSeenAt, RequestID: last.RequestID}})
	require.NoError(t, err)
	require.False(t, more)
	require.Equal(t, "req-1", rest[0].RequestID)

	var exported []string
	n, err := b.s.RequestExport(b.ctx, b.tx, store.RequestFilter{AppID: b.appID}, func(it *store.RequestItem) error {
		exported = append(exported, it.RequestID+"/"+it.Kind)
		return nil
	})
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	require.Equal(t, []string{"req-1/respond", "req-2/respond", "req-3/"}, exported, "oldest first, with the action's kind")

	v, err := b.s.RequestView(b.ctx, b.tx, "req-1")
	require.NoError(t, err)
	require.Equal(t, "respond", v.Kind)
	_, err = b.s.RequestView(b.ctx, b.tx, "nope")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestAppStatusAndEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.insert(t, "st-1").Action
	b.insert(t, "st-2")
	b.request(t, "st-req", &a.ID, store.RequestPending)

	st, err := b.s.AppStatusList(b.ctx, b.tx, b.appID)
	require.NoError(t, err)
	require.Len(t, st, 1)
	require.EqualValues(t, 2, st[0].QueueDepth)
	require.NotNil(t, st[0].OldestQueued)
	require.EqualValues(t, 1, st[0].PendingRequests)
	_, err = b.s.AppStatusList(b.ctx, b.tx, "no-such-app")
	require.ErrorIs(t, err, store.ErrNotFound)

	for i := range 3 {
		_, err := b.s.EventInsert(b.ctx, b.tx, store.EventInsertParams{AppID: b.appID, Kind: "pause", Actor: fmt.Sprintf("op-%d", i)})
		require.NoError(t, err)
	}
	evs, more, err := b.s.EventQuery(b.ctx, b.tx, store.EventQueryParams{Filter: store.EventFilter{AppID: b.appID}, Limit: 2})
	require.NoError(t, err)
	require.True(t, more)
	require.Equal(t, "op-2", evs[0].Actor)
	evs, more, err = b.s.EventQuery(b.ctx, b.tx, store.EventQueryParams{Filter: store.EventFilter{AppID: b.appID, Actor: "op-0"}, AfterID: evs[1].ID})
	require.NoError(t, err)
	require.False(t, more)
	require.Len(t, evs, 1)

	counts, err := b.s.ActionCounts(b.ctx, b.tx)
	require.NoError(t, err)
	require.NotEmpty(t, counts)
	for _, c := range counts {
		require.NotEmpty(t, c.AppID, "counted by app")
	}
	_ = storetest.RespondPayload
}
