package store_test

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
)

func TestConsoleSessions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hash := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	fp := hash("key")

	exp, err := b.s.ConsoleSessionStart(b.ctx, b.tx, &store.ConsoleSession{
		TokenHash: hash("a"), Principal: "ops", Role: "operator", KeyFingerprint: fp}, time.Hour)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), exp, time.Minute)
	got, err := b.s.ConsoleSessionGet(b.ctx, b.tx, hash("a"))
	require.NoError(t, err)
	require.Equal(t, "ops", got.Principal)
	require.Equal(t, "operator", got.Role)
	require.Equal(t, fp, got.KeyFingerprint)
	_, err = b.s.ConsoleSessionGet(b.ctx, b.tx, hash("b"))
	require.ErrorIs(t, err, store.ErrNotFound)

	// Only auditors and operators sign in; the token is a SHA-256.
	for _, bad := range []*store.ConsoleSession{
		{TokenHash: hash("c"), Principal: "bot", Role: "enqueuer", KeyFingerprint: fp},
		{TokenHash: []byte("short"), Principal: "ops", Role: "operator", KeyFingerprint: fp},
	} {
		sp, err := b.tx.Begin(b.ctx)
		require.NoError(t, err)
		_, err = b.s.ConsoleSessionStart(b.ctx, sp, bad, time.Hour)
		require.Error(t, err)
		require.NoError(t, sp.Rollback(b.ctx))
	}

	ended, err := b.s.ConsoleSessionEnd(b.ctx, b.tx, hash("a"))
	require.NoError(t, err)
	require.True(t, ended)
	ended, err = b.s.ConsoleSessionEnd(b.ctx, b.tx, hash("a"))
	require.NoError(t, err)
	require.False(t, ended)
	_, err = b.s.ConsoleSessionGet(b.ctx, b.tx, hash("a"))
	require.ErrorIs(t, err, store.ErrNotFound)

	// An expired session is not found, and the next sign-in deletes it.
	_, err = b.tx.Exec(b.ctx, fmt.Sprintf(`INSERT INTO %s.console_session (token_hash, principal, role, key_fingerprint, created_at, expires_at)
		VALUES ($1, 'old', 'auditor', $2, now() - interval '2 hours', now() - interval '1 hour')`, b.s.Schema()), hash("old"), fp)
	require.NoError(t, err)
	_, err = b.s.ConsoleSessionGet(b.ctx, b.tx, hash("old"))
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.s.ConsoleSessionStart(b.ctx, b.tx, &store.ConsoleSession{
		TokenHash: hash("d"), Principal: "audit", Role: "auditor", KeyFingerprint: fp}, time.Hour)
	require.NoError(t, err)
	var n int
	require.NoError(t, b.tx.QueryRow(b.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.console_session WHERE principal = 'old'`, b.s.Schema())).Scan(&n))
	require.Zero(t, n)
}

func TestActionPageAndFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ids []int64
	for i := range 5 {
		ids = append(ids, b.insert(t, fmt.Sprintf("page-%d", i)).Action.ID)
	}
	// Another text and author.
	res, err := b.s.ActionInsert(b.ctx, b.tx, store.ActionInsertParams{AppID: b.appID, Kind: "respond",
		Payload: []byte(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":"ada"},"text":"Your order 100%_done"}`)})
	require.NoError(t, err)
	ada := res.Action.ID

	var seen []int64
	var before *store.ActionCursor
	for {
		page, more, err := b.s.ActionPage(b.ctx, b.tx, store.ActionPageParams{Filter: store.ActionFilter{AppID: b.appID}, Before: before, Limit: 2})
		require.NoError(t, err)
		for _, a := range page {
			seen = append(seen, a.ID)
		}
		if !more {
			break
		}
		last := page[len(page)-1]
		before = &store.ActionCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	require.Equal(t, []int64{ada, ids[4], ids[3], ids[2], ids[1], ids[0]}, seen, "newest first, ties by id")

	tests := []struct {
		give store.ActionFilter
		want []int64
	}{
		{store.ActionFilter{AppID: b.appID, Author: "ada"}, []int64{ada}},
		{store.ActionFilter{AppID: b.appID, Author: "author-page-2"}, []int64{ids[2]}},
		{store.ActionFilter{AppID: b.appID, Text: "ORDER"}, []int64{ada}},
		{store.ActionFilter{AppID: b.appID, Text: "100%_d"}, []int64{ada}},
		{store.ActionFilter{AppID: b.appID, Text: "1000"}, nil},
		{store.ActionFilter{AppID: b.appID, Text: "%"}, []int64{ada}}, // a wildcard is a character
		{store.ActionFilter{AppID: b.appID, Text: "hello"}, []int64{ids[4], ids[3], ids[2], ids[1], ids[0]}},
	}
	for _, tt := range tests {
		got, _, err := b.s.ActionPage(b.ctx, b.tx, store.ActionPageParams{Filter: tt.give})
		require.NoError(t, err)
		var gotIDs []int64
		for _, a := range got {
			gotIDs = append(gotIDs, a.ID)
		}
		require.Equal(t, tt.want, gotIDs, "%+v", tt.give)
	}
}

func TestTimelineLoaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a1, a2 := b.insert(t, "tl-1").Action, b.insert(t, "tl-2").Action
	for _, a := range []*store.Action{a1, a2, a1} {
		_, err := b.s.AttemptRecord(b.ctx, b.tx, &store.AttemptRecordParams{ActionID: a.ID, RiverJobID: a.RiverJobID, JobAttempt: 1,
			WireSent: true, HTTPStatus: 503, Outcome: store.OutcomeRetry, Error: "unavailable", Worker: "test"})
		require.NoError(t, err)
	}
	atts, err := b.s.AttemptListByActions(b.ctx, b.tx, []int64{a1.ID, a2.ID})
	require.NoError(t, err)
	require.Len(t, atts, 3)
	require.Equal(t, []int64{a1.ID, a1.ID, a2.ID}, []int64{atts[0].ActionID, atts[1].ActionID, atts[2].ActionID})
	require.Equal(t, []int{1, 2, 1}, []int{atts[0].Number, atts[1].Number, atts[2].Number})

	b.request(t, "tl-r1", &a1.ID, store.RequestSuccess)
	b.request(t, "tl-r2", &a2.ID, store.RequestPending)
	b.request(t, "tl-other", nil, store.RequestError)
	reqs, err := b.s.RequestListByActions(b.ctx, b.tx, []int64{a1.ID, a2.ID})
	require.NoError(t, err)
	require.Len(t, reqs, 2)

	for _, id := range []int64{a1.ID, a2.ID, a1.ID} {
		_, err := b.s.EventInsert(b.ctx, b.tx, store.EventInsertParams{AppID: b.appID, ActionID: &id, Kind: "cancel", Actor: "test"})
		require.NoError(t, err)
	}
	evs, _, err := b.s.EventQuery(b.ctx, b.tx, store.EventQueryParams{Filter: store.EventFilter{ActionIDs: []int64{a1.ID}}})
	require.NoError(t, err)
	require.Len(t, evs, 2)

	// A KHOROS-origin record belongs to the conversation its payload names.
	_, err = b.s.RequestRecordKhoros(b.ctx, b.tx, time.Now(), []store.KhorosRecord{
		{Settlement: store.Settlement{RequestID: "in-1", State: store.RequestSuccess}, AppID: b.appID,
			Payload: []byte(`{"coordinate":{"networkKey":"facebook","externalId":"page-1"},"author":{"id":"author-tl-1"},"text":"hi"}`)},
		{Settlement: store.Settlement{RequestID: "in-2", State: store.RequestSuccess}, AppID: b.appID,
			Payload: []byte(`{"coordinate":{"networkKey":"facebook","externalId":"page-1"},"author":{"id":"someone-else"},"text":"hi"}`)},
	})
	require.NoError(t, err)
	in, _, err := b.s.RequestList(b.ctx, b.tx, store.RequestListParams{Filter: store.RequestFilter{AppID: b.appID, Origin: "KHOROS", Conversation: a1.Lane}})
	require.NoError(t, err)
	require.Len(t, in, 1)
	require.Equal(t, "in-1", in[0].RequestID)
}

func TestAppActivityAndThroughput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a1, a2 := b.insert(t, "act-1").Action, b.insert(t, "act-2").Action
	b.setJobState(t, a1.RiverJobID, "running")
	b.finish(t, a2.ID, store.ActionFailed)
	_, err := b.s.AttemptRecord(b.ctx, b.tx, &store.AttemptRecordParams{ActionID: a2.ID, RiverJobID: a2.RiverJobID, JobAttempt: 1,
		WireSent: true, HTTPStatus: 400, Outcome: store.OutcomeCancel, Worker: "test"})
	require.NoError(t, err)

	acts, err := b.s.AppActivityList(b.ctx, b.tx, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	var mine *store.AppActivity
	for i := range acts {
		if acts[i].AppID == b.appID {
			mine = &acts[i]
		}
	}
	require.NotNil(t, mine)
	require.EqualValues(t, 1, mine.InFlight)
	require.EqualValues(t, 1, mine.Failed)
	acts, err = b.s.AppActivityList(b.ctx, b.tx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	for _, a := range acts {
		require.Zero(t, a.Failed, "nothing failed since a time to come")
	}

	to := time.Now().Truncate(time.Minute).Add(time.Minute)
	buckets, err := b.s.Throughput(b.ctx, b.tx, to.Add(-10*time.Minute), to, time.Minute)
	require.NoError(t, err)
	require.Len(t, buckets, 10, "every bucket, empty ones too")
	var enq, ok, failed int64
	for _, bk := range buckets {
		enq, ok, failed = enq+bk.Enqueued, ok+bk.CallsOK, failed+bk.CallsFailed
	}
	// Other tests' actions share the table (their transactions are not
	// visible): these two and one failed call are this test's.
	require.EqualValues(t, 2, enq)
	require.EqualValues(t, 0, ok)
	require.EqualValues(t, 1, failed)
}

func TestRiverJobsPruneCompleted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	insert := func(queue, state string, finishedAgo time.Duration) int64 {
		t.Helper()
		var id int64
		err := b.tx.QueryRow(b.ctx, fmt.Sprintf(`INSERT INTO %[1]s.river_job (args, kind, max_attempts, queue, state, finalized_at)
			VALUES ('{}', 'botq_maintenance', 1, $1, $2::text::%[1]s.river_job_state, $3) RETURNING id`, b.s.Schema()),
			queue, state, time.Now().Add(-finishedAgo)).Scan(&id)
		require.NoError(t, err)
		return id
	}
	old := insert("prune_q", "completed", 10*time.Minute)
	recent := insert("prune_q", "completed", 10*time.Second)
	failed := insert("prune_q", "discarded", 10*time.Minute)
	other := insert("prune_other", "completed", 10*time.Minute)
	n, err := b.s.RiverJobsPruneCompleted(b.ctx, b.tx, "prune_q", time.Now().Add(-time.Minute), 100)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Empty(t, jobState(b.ctx, t, b.s, b.tx, old))
	for _, id := range []int64{recent, failed, other} {
		require.NotEmpty(t, jobState(b.ctx, t, b.s, b.tx, id), "job %d is kept", id)
	}
}
