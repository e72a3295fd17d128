package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

var operator = store.ReplayOptions{Actor: "cli:alice", Reason: "Khoros outage"}

func TestActionReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orig := b.insert(t, "rp").Action
	b.finish(t, orig.ID, store.ActionFailed)

	r, err := b.s.ActionReplay(b.ctx, b.tx, orig.ID, operator)
	require.NoError(t, err)
	replay, err := b.s.ActionGet(b.ctx, b.tx, r.ActionID)
	require.NoError(t, err)
	require.Equal(t, orig.ID, *replay.ReplayOf)
	require.Equal(t, "rp#replay-1", replay.IdempotencyKey)
	require.Equal(t, "cli:alice", replay.CreatedBy)
	require.Equal(t, orig.Lane, replay.Lane)
	require.Equal(t, orig.Kind, replay.Kind)
	require.JSONEq(t, string(orig.Payload), string(replay.Payload))
	require.Equal(t, store.ActionQueued, replay.State)
	require.Equal(t, "available", jobState(b.ctx, t, b.s, b.tx, replay.RiverJobID))

	evs, err := b.s.EventList(b.ctx, b.tx, store.EventListParams{ActionID: &orig.ID, Kind: "replay"})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "cli:alice", evs[0].Actor)
	require.Equal(t, "Khoros outage", evs[0].Reason)
	require.JSONEq(t, fmt.Sprintf(`{"action_id":%d}`, replay.ID), string(evs[0].After))
	require.JSONEq(t, fmt.Sprintf(`{"action_id":%d,"state":"failed"}`, orig.ID), string(evs[0].Before))

	after, err := b.s.ActionGet(b.ctx, b.tx, orig.ID)
	require.NoError(t, err)
	require.Equal(t, orig.IdempotencyKey, after.IdempotencyKey)
	require.Equal(t, store.ActionFailed, after.State, "the original is untouched")

	// Replaying again needs allow_replayed; the second replay gets key #2.
	_, err = b.s.ActionReplay(b.ctx, b.tx, orig.ID, operator)
	refused, ok := store.IsReplayRefused(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, store.ReplayOptionReplayed, refused.Option)
	again := operator
	again.AllowReplayed = true
	r2, err := b.s.ActionReplay(b.ctx, b.tx, orig.ID, again)
	require.NoError(t, err)
	a2, err := b.s.ActionGet(b.ctx, b.tx, r2.ActionID)
	require.NoError(t, err)
	require.Equal(t, "rp#replay-2", a2.IdempotencyKey)
}

func TestActionReplayRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	succeeded := b.insert(t, "ok").Action
	b.finish(t, succeeded.ID, store.ActionSucceeded)
	queued := b.insert(t, "q").Action
	failed := b.insert(t, "f").Action
	b.finish(t, failed.ID, store.ActionFailed)
	r, err := b.s.ActionReplay(b.ctx, b.tx, failed.ID, operator)
	require.NoError(t, err)
	b.finish(t, r.ActionID, store.ActionFailed)

	tests := []struct {
		give       int64
		giveOpts   store.ReplayOptions
		wantOption string
	}{
		{succeeded.ID, operator, store.ReplayOptionSucceeded},
		{queued.ID, store.ReplayOptions{Actor: "a", Reason: "r", AllowSucceeded: true, AllowReplayOfReplay: true, AllowReplayed: true}, ""},
		{r.ActionID, operator, store.ReplayOptionReplayOfReplay},
	}
	for _, tt := range tests {
		_, err := b.s.ActionReplay(b.ctx, b.tx, tt.give, tt.giveOpts)
		refused, ok := store.IsReplayRefused(err)
		require.True(t, ok, "%v", err)
		require.ErrorIs(t, err, store.ErrConflict)
		require.Equal(t, tt.wantOption, refused.Option, refused.Error())
	}

	allow := operator
	allow.AllowSucceeded = true
	_, err = b.s.ActionReplay(b.ctx, b.tx, succeeded.ID, allow)
	require.NoError(t, err)
	allow.AllowReplayOfReplay = true
	rr, err := b.s.ActionReplay(b.ctx, b.tx, r.ActionID, allow)
	require.NoError(t, err)
	a, err := b.s.ActionGet(b.ctx, b.tx, rr.ActionID)
	require.NoError(t, err)
	require.Equal(t, "f#replay-1#replay-1", a.IdempotencyKey)

	_, err = b.s.ActionReplay(b.ctx, b.tx, 1<<60, operator)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.s.ActionReplay(b.ctx, b.tx, failed.ID, store.ReplayOptions{Actor: "a"})
	var ve *store.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "reason", ve.Field)
}

func TestActionReplayLongKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := strings.Repeat("k", 255)
	orig := b.insert(t, key).Action
	b.finish(t, orig.ID, store.ActionCancelled)
	r, err := b.s.ActionReplay(b.ctx, b.tx, orig.ID, operator)
	require.NoError(t, err)
	a, err := b.s.ActionGet(b.ctx, b.tx, r.ActionID)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("action-%d#replay-1", orig.ID), a.IdempotencyKey)
}

func TestActionReplayBulk(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 1200
	ps := make([]store.ActionInsertParams, n)
	for i := range ps {
		ps[i] = store.ActionInsertParams{AppID: b.appID, Kind: "respond", IdempotencyKey: fmt.Sprintf("bulk-%d", i),
			Payload: []byte(fmt.Sprintf(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1"},"author":{"id":"a-%d"},"text":"hi"}`, i))}
	}
	res, err := b.s.ActionInsertMany(b.ctx, b.tx, ps)
	require.NoError(t, err)
	// Fail all but the last ten (which stay queued, and are skipped).
	_, err = b.tx.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.action SET state = 'failed' WHERE app_id = $1 AND id < $2`, b.s.Schema()),
		b.appID, res[n-10].Action.ID)
	require.NoError(t, err)
	filter := store.ActionFilter{AppID: b.appID}

	plan, err := b.s.ActionReplayPlan(b.ctx, b.tx, filter, operator, 5)
	require.NoError(t, err)
	require.EqualValues(t, n, plan.Matched)
	require.EqualValues(t, n-10, plan.Eligible)
	require.Equal(t, map[string]int64{"unfinished": 10}, plan.Skipped)
	require.Len(t, plan.Sample, 5)
	require.Equal(t, res[0].Action.ID, plan.Sample[0].ID)

	var calls []int64
	out, err := b.s.ActionReplayBulk(b.ctx, b.tx, store.ReplayBulkParams{
		Filter: filter, Options: operator, BatchSize: 500,
		Progress: func(done, total int64) { calls = append(calls, done) },
	})
	require.NoError(t, err)
	require.EqualValues(t, n-10, out.Replayed)
	require.Equal(t, []int64{0, 500, 1000, n - 10}, calls)

	var replays, linked, events int
	require.NoError(t, b.tx.QueryRow(b.ctx, fmt.Sprintf(`
		SELECT count(*), count(DISTINCT replay_of),
		       (SELECT count(*) FROM %[1]s.event WHERE kind = 'replay' AND app_id = $1)
		FROM %[1]s.action WHERE app_id = $1 AND replay_of IS NOT NULL`, b.s.Schema()), b.appID).Scan(&replays, &linked, &events))
	require.Equal(t, n-10, replays)
	require.Equal(t, n-10, linked)
	require.Equal(t, n-10, events)

	// A second run finds everything replayed already.
	plan, err = b.s.ActionReplayPlan(b.ctx, b.tx, store.ActionFilter{AppID: b.appID, States: []store.ActionState{store.ActionFailed}}, operator, 0)
	require.NoError(t, err)
	require.Zero(t, plan.Eligible)
	require.Equal(t, map[string]int64{store.ReplayOptionReplayed: n - 10}, plan.Skipped)
}

func TestActionCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	head := b.insert(t, "c-head").Action
	// A follower in the same lane waits as pending.
	res, err := b.s.ActionInsert(b.ctx, b.tx, store.ActionInsertParams{AppID: b.appID, Kind: "respond", IdempotencyKey: "c-next",
		Payload: head.Payload})
	require.NoError(t, err)
	next := res.Action
	require.Equal(t, "pending", jobState(b.ctx, t, b.s, b.tx, next.RiverJobID))

	got, err := b.s.ActionCancel(b.ctx, b.tx, head.ID, "api:ops", "customer left")
	require.NoError(t, err)
	require.Equal(t, store.ActionCancelled, got.State)
	require.Equal(t, "cancelled", jobState(b.ctx, t, b.s, b.tx, head.RiverJobID))
	require.Equal(t, "available", jobState(b.ctx, t, b.s, b.tx, next.RiverJobID), "the lane moves on")
	evs, err := b.s.EventList(b.ctx, b.tx, store.EventListParams{ActionID: &head.ID, Kind: "cancel"})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "api:ops", evs[0].Actor)

	_, err = b.s.ActionCancel(b.ctx, b.tx, head.ID, "api:ops", "")
	require.ErrorIs(t, err, store.ErrConflict, "already cancelled")

	b.setJobState(t, next.RiverJobID, "running")
	_, err = b.s.ActionCancel(b.ctx, b.tx, next.ID, "api:ops", "")
	require.ErrorIs(t, err, store.ErrInFlight)
	require.ErrorIs(t, err, store.ErrConflict)

	_, err = b.s.ActionCancel(b.ctx, b.tx, 1<<60, "api:ops", "")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// An app set by an operator is recorded with the settings it ends with,
// defaults included.
func TestAppUpsertAudited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rate := 5.0
	a, err := b.s.AppUpsertAudited(b.ctx, b.tx, store.AppUpsertParams{ID: "set-app", CompanyKey: "acme", RateLimit: &rate}, "cli:bob")
	require.NoError(t, err)
	require.Equal(t, "US", a.Region)
	require.Equal(t, 1, a.RateBurst)
	evs, err := b.s.EventList(b.ctx, b.tx, store.EventListParams{AppID: "set-app", Kind: "app_upsert"})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "cli:bob", evs[0].Actor)
	require.JSONEq(t, `{"region": "US", "base_url": "", "company_key": "acme", "rate_limit": 5, "rate_burst": 1,
		"concurrency_limit": null, "lane_on_failure": "continue"}`, string(evs[0].After))

	_, err = b.s.AppUpsertAudited(b.ctx, b.tx, store.AppUpsertParams{ID: "set-app", Region: "MARS"}, "cli:bob")
	require.Error(t, err, "a region the database refuses writes nothing")
}

func TestAppPauseResumeAudited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, err := b.s.AppPauseAudited(b.ctx, b.tx, b.appID, store.Forever, "cli:bob", "maintenance")
	require.NoError(t, err)
	require.NotNil(t, a.PausedUntil)
	a, err = b.s.AppResumeAudited(b.ctx, b.tx, b.appID, "cli:bob", "done")
	require.NoError(t, err)
	require.Nil(t, a.PausedUntil)
	evs, err := b.s.EventList(b.ctx, b.tx, store.EventListParams{AppID: b.appID})
	require.NoError(t, err)
	require.Len(t, evs, 2)
	require.Equal(t, "resume", evs[0].Kind)
	require.Equal(t, "pause", evs[1].Kind)
	require.Equal(t, "maintenance", evs[1].Reason)
	_, err = b.s.AppPauseAudited(b.ctx, b.tx, "no-such-app", store.Forever, "x", "")
	require.ErrorIs(t, err, store.ErrNotFound)

	// A token set resumes an app paused for a refused token.
	_, err = b.s.AppPause(b.ctx, b.tx, b.appID, store.Forever, "Khoros refused the app's token (401)")
	require.NoError(t, err)
	exp := time.Now().Add(time.Hour)
	a, resumed, err := b.s.AppSetTokenAudited(b.ctx, b.tx, b.appID, []byte("sealed"), "key", &exp, "cli:bob", "rotated")
	require.NoError(t, err)
	require.True(t, resumed)
	require.Nil(t, a.PausedUntil)
	require.Equal(t, 1, a.TokenVersion)

	a, err = b.s.AppRevokeTokenAudited(b.ctx, b.tx, b.appID, "cli:bob", "leaked")
	require.NoError(t, err)
	require.NotNil(t, a.PausedUntil)
	require.Empty(t, a.TokenCiphertext)
	evs, err = b.s.EventList(b.ctx, b.tx, store.EventListParams{AppID: b.appID, Kind: "token_revoke"})
	require.NoError(t, err)
	require.Len(t, evs, 1)
}

func TestRetentionPurge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := func(sql string) string { return strings.ReplaceAll(sql, "botq.", b.s.Schema()+".") }
	old := b.insert(t, "old").Action
	b.finish(t, old.ID, store.ActionFailed)
	_, err := b.s.AttemptRecord(b.ctx, b.tx, &store.AttemptRecordParams{ActionID: old.ID, RiverJobID: old.RiverJobID, JobAttempt: 1,
		StartedAt: time.Now(), Outcome: store.OutcomeCancel, Worker: "w"})
	require.NoError(t, err)
	b.request(t, "old-req", &old.ID, store.RequestError)
	b.request(t, "old-pending", nil, store.RequestPending)
	kept := b.insert(t, "new").Action
	b.finish(t, kept.ID, store.ActionSucceeded)
	// A failed head blocks its lane under lane_on_failure block: the lane
	// row points at it, so it is kept.
	_, err = b.s.AppUpsert(b.ctx, b.tx, store.AppUpsertParams{ID: b.appID, CompanyKey: "acme", LaneOnFailure: "block"})
	require.NoError(t, err)
	head := b.insert(t, "head").Action
	b.finish(t, head.ID, store.ActionFailed)
	var blockedBy int64
	require.NoError(t, b.tx.QueryRow(b.ctx, q(`SELECT blocked_by FROM botq.lane WHERE app_id = $1 AND lane = $2`), b.appID, head.Lane).Scan(&blockedBy))
	require.Equal(t, head.ID, blockedBy)
	_, err = b.s.EventInsert(b.ctx, b.tx, store.EventInsertParams{AppID: b.appID, Kind: "pause", Actor: "x"})
	require.NoError(t, err)

	// Age everything but `kept` by two years (with triggers off: created_at
	// is immutable).
	for _, sql := range []string{
		`SET LOCAL session_replication_role = replica`,
		`UPDATE botq.action SET created_at = created_at - interval '2 years', finished_at = finished_at - interval '2 years' WHERE id <> $1 AND app_id = $2`,
		`UPDATE botq.request SET first_seen_at = first_seen_at - interval '2 years' WHERE app_id = $2 AND $1::bigint IS NOT NULL`,
		`UPDATE botq.event SET at = at - interval '2 years' WHERE app_id = $2 AND $1::bigint IS NOT NULL`,
		`SET LOCAL session_replication_role = origin`,
	} {
		var err error
		if strings.HasPrefix(sql, "SET") {
			_, err = b.tx.Exec(b.ctx, sql)
		} else {
			_, err = b.tx.Exec(b.ctx, q(sql), kept.ID, b.appID)
		}
		require.NoError(t, err)
	}

	res, err := b.s.RetentionPurge(b.ctx, b.tx, time.Now().Add(-400*24*time.Hour), 1)
	require.NoError(t, err)
	require.GreaterOrEqual(t, res.Actions, int64(1))
	require.GreaterOrEqual(t, res.Attempts, int64(1))
	require.GreaterOrEqual(t, res.Requests, int64(1))
	require.GreaterOrEqual(t, res.Events, int64(1))

	_, err = b.s.ActionGet(b.ctx, b.tx, old.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	for _, id := range []int64{kept.ID, head.ID} {
		_, err = b.s.ActionGet(b.ctx, b.tx, id)
		require.NoError(t, err, "action %d is kept", id)
	}
	_, err = b.s.RequestGet(b.ctx, b.tx, "old-req")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.s.RequestGet(b.ctx, b.tx, "old-pending")
	require.NoError(t, err, "a pending request is kept")
	atts, err := b.s.AttemptList(b.ctx, b.tx, old.ID)
	require.NoError(t, err)
	require.Empty(t, atts)

	evs, err := b.s.EventList(b.ctx, b.tx, store.EventListParams{Kind: "retention"})
	require.NoError(t, err)
	require.Equal(t, res.EventID, evs[0].ID)
	require.Contains(t, string(evs[0].After), `"actions":`)
}

// A job that found every slot of its app taken parks: it is recorded with
// its place in the queue, River snoozes it, and a release, a sweep or a
// removed limit makes it available again at that place, but never while it
// still runs (River's completer has not handled its snooze yet).
func TestAppSlotWaitAndWake(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.tx.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.app SET concurrency_limit = 1 WHERE id = $1`, b.s.Schema()), b.appID)
	require.NoError(t, err)
	job := func(id int64) (state string, scheduled time.Time) {
		t.Helper()
		require.NoError(t, b.tx.QueryRow(b.ctx, fmt.Sprintf(`SELECT state::text, scheduled_at FROM %s.river_job WHERE id = $1`, b.s.Schema()), id).Scan(&state, &scheduled))
		return state, scheduled
	}
	waiting := func() int {
		t.Helper()
		var n int
		require.NoError(t, b.tx.QueryRow(b.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.app_slot_wait WHERE app_id = $1`, b.s.Schema()), b.appID).Scan(&n))
		return n
	}
	// snoozed does what River's completer does with the worker's snooze.
	snoozed := func(id int64) {
		t.Helper()
		_, err := b.tx.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.river_job SET state = 'scheduled', scheduled_at = now() + interval '1 minute', attempt = attempt - 1 WHERE id = $1 AND state = 'running'`, b.s.Schema()), id)
		require.NoError(t, err)
	}
	start := func(key string) int64 {
		t.Helper()
		id := b.insert(t, key).Action.RiverJobID
		b.setJobState(t, id, "running")
		return id
	}
	park := func(id int64) {
		t.Helper()
		ok, err := b.s.AppSlotWait(b.ctx, b.tx, b.appID, id)
		require.NoError(t, err)
		require.True(t, ok)
	}
	take := func(id int64) int {
		t.Helper()
		slot, ok, err := b.s.AppSlotAcquire(b.ctx, b.tx, b.appID, id, time.Minute)
		require.NoError(t, err)
		require.True(t, ok)
		return slot
	}

	holder, first, second := start("holder"), start("first"), start("second")
	slot := take(holder)
	_, ok, err := b.s.AppSlotAcquire(b.ctx, b.tx, b.appID, first, time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "the only slot is taken")
	_, firstPlace := job(first)
	park(first)
	park(second)
	require.Equal(t, 2, waiting())
	queued := b.insert(t, "not-running").Action.RiverJobID
	ok, err = b.s.AppSlotWait(b.ctx, b.tx, b.appID, queued)
	require.NoError(t, err)
	require.False(t, ok, "a job that is not running is not parked")

	require.NoError(t, b.s.AppSlotRelease(b.ctx, b.tx, b.appID, slot, holder, 1))
	state, _ := job(first)
	require.Equal(t, "running", state, "a job River has not snoozed yet is not woken: its stale completion would complete it")
	require.Equal(t, 2, waiting(), "nor dropped")

	snoozed(first)
	snoozed(second)
	n, err := b.s.AppSlotWakeFree(b.ctx, b.tx, b.appID)
	require.NoError(t, err)
	require.Equal(t, 1, n, "one slot is free")
	state, place := job(first)
	require.Equal(t, "available", state, "the oldest parked job is woken")
	require.True(t, place.Equal(firstPlace), "at its old place in the queue: %s, was %s", place, firstPlace)
	state, _ = job(second)
	require.Equal(t, "scheduled", state, "one free slot wakes one job")
	require.Equal(t, 1, waiting())

	// The woken job takes the slot. The other parked job is cancelled, and
	// a third parks behind it: the cancelled one does not use up the next
	// wake-up.
	b.setJobState(t, first, "running")
	slot = take(first)
	_, err = b.s.ActionCancel(b.ctx, b.tx, b.actionOfJob(t, second), "api:ops", "")
	require.NoError(t, err, "a parked job is not running: it can be cancelled")
	third := start("third")
	park(third)
	snoozed(third)
	require.Equal(t, 2, waiting())
	require.NoError(t, b.s.AppSlotRelease(b.ctx, b.tx, b.appID, slot, first, 1))
	state, _ = job(third)
	require.Equal(t, "available", state, "the wake-up passes over the cancelled job")
	require.Zero(t, waiting(), "whose record is dropped")

	b.setJobState(t, third, "running")
	take(third)
	fourth := start("fourth")
	park(fourth)
	snoozed(fourth)
	n, err = b.s.AppSlotWakeFree(b.ctx, b.tx, "")
	require.NoError(t, err)
	require.Zero(t, n, "no slot is free")
	_, err = b.tx.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.app SET concurrency_limit = NULL WHERE id = $1`, b.s.Schema()), b.appID)
	require.NoError(t, err)
	state, _ = job(fourth)
	require.Equal(t, "available", state, "removing the limit wakes every parked job")
	require.Zero(t, waiting())
}

// actionOfJob returns the id of the action a River job works.
func (b *testBundle) actionOfJob(t *testing.T, jobID int64) int64 {
	t.Helper()
	var id int64
	require.NoError(t, b.tx.QueryRow(b.ctx, fmt.Sprintf(`SELECT id FROM %s.action WHERE river_job_id = $1`, b.s.Schema()), jobID).Scan(&id))
	return id
}

// A result batch locks its running jobs first and its actions later; a
// cancel that waited for such a job while holding its action would wait in
// a circle. It answers ErrInFlight at once instead.
func TestActionCancelDoesNotWaitForALockedJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, s := storetest.NewStore(t, 4)
	app := storetest.App(ctx, t, s, pool, nil)
	res, err := s.ActionInsert(ctx, pool, store.ActionInsertParams{AppID: app, Kind: "respond", Payload: storetest.RespondPayload("locked", "hi")})
	require.NoError(t, err)

	holder, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(ctx) }()
	_, err = holder.Exec(ctx, fmt.Sprintf(`SELECT 1 FROM %s.river_job WHERE id = $1 FOR UPDATE`, schema), res.Action.RiverJobID)
	require.NoError(t, err)

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = s.ActionCancel(cctx, pool, res.Action.ID, "api:ops", "")
	require.ErrorIs(t, err, store.ErrInFlight)
	require.NoError(t, holder.Rollback(ctx))
	got, err := s.ActionCancel(ctx, pool, res.Action.ID, "api:ops", "")
	require.NoError(t, err)
	require.Equal(t, store.ActionCancelled, got.State)
}

// A job whose execution ended without a call stays running until River's
// completer writes its new state: a cancel in that moment waits for it
// rather than answering in flight, and still answers in flight for a job
// that stays running.
func TestActionCancelWaitsForAJobThatIsEnding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, s := storetest.NewStore(t, 4)
	app := storetest.App(ctx, t, s, pool, nil)
	ending, err := s.ActionInsert(ctx, pool, store.ActionInsertParams{AppID: app, Kind: "respond", Payload: storetest.RespondPayload("ending", "hi")})
	require.NoError(t, err)
	running, err := s.ActionInsert(ctx, pool, store.ActionInsertParams{AppID: app, Kind: "respond", Payload: storetest.RespondPayload("running", "hi")})
	require.NoError(t, err)
	setJob := func(jobID int64, state string) {
		_, err := pool.Exec(ctx, fmt.Sprintf(`UPDATE %s.river_job SET state = $2, attempt = 1, attempted_at = now() WHERE id = $1`, schema), jobID, state)
		require.NoError(t, err)
	}
	setJob(ending.Action.RiverJobID, "running")
	setJob(running.Action.RiverJobID, "running")
	go func() {
		time.Sleep(300 * time.Millisecond)
		setJob(ending.Action.RiverJobID, "scheduled")
	}()
	got, err := s.ActionCancel(ctx, pool, ending.Action.ID, "api:ops", "")
	require.NoError(t, err)
	require.Equal(t, store.ActionCancelled, got.State)
	_, err = s.ActionCancel(ctx, pool, running.Action.ID, "api:ops", "")
	require.ErrorIs(t, err, store.ErrInFlight)
}

// An unknown action's send may have reached Khoros. Its cancel is clean only
// when a check of Khoros' records shows the send (the one the action still
// waits on) never arrived; otherwise it is cancelled possibly sent, and a
// replay needs allow_possibly_sent, which the bulk plan counts.
func TestActionCancelUnknownPossiblySent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	unknown := func(key string) *store.Action {
		t.Helper()
		a := b.insert(t, key).Action
		b.finish(t, a.ID, store.ActionUnknown)
		b.setJobState(t, a.RiverJobID, "pending")
		return a
	}
	tests := []struct {
		name      string
		giveCheck *store.SendCheck
		want      bool
		wantNote  string
	}{
		{"no check", nil, true, store.CancelNoCheck},
		{"khoros could not answer", &store.SendCheck{Note: "Khoros could not be asked: list requests: 503"}, true, "503"},
		{"within the grace period", &store.SendCheck{Note: "no record yet"}, true, "no record yet"},
		{"never arrived", &store.SendCheck{NotSent: true, Note: "never reached Khoros"}, false, "never reached Khoros"},
		{"sent again since", &store.SendCheck{NotSent: true, ReleaseCount: 1, Note: "never reached Khoros"}, true, "sent again"},
	}
	ids := map[bool][]int64{}
	for i, tt := range tests {
		a := unknown(fmt.Sprintf("unknown-%d", i))
		got, note, err := b.s.ActionCancelChecked(b.ctx, b.tx, a.ID, "api:ops", "customer left", tt.giveCheck)
		require.NoError(t, err, tt.name)
		require.Equal(t, store.ActionCancelled, got.State, tt.name)
		require.Equal(t, tt.want, got.PossiblySent, tt.name)
		require.Contains(t, note, tt.wantNote, tt.name)
		require.Equal(t, "cancelled", jobState(b.ctx, t, b.s, b.tx, a.RiverJobID), tt.name)
		evs, err := b.s.EventList(b.ctx, b.tx, store.EventListParams{ActionID: &a.ID, Kind: "cancel"})
		require.NoError(t, err)
		require.Len(t, evs, 1, tt.name)
		require.Contains(t, string(evs[0].After), fmt.Sprintf(`"possibly_sent": %t`, tt.want), tt.name)
		require.Contains(t, string(evs[0].After), tt.wantNote, tt.name)
		ids[tt.want] = append(ids[tt.want], a.ID)
	}
	// A queued action's cancel says nothing of a send.
	q := b.insert(t, "queued").Action
	got, note, err := b.s.ActionCancelChecked(b.ctx, b.tx, q.ID, "api:ops", "", nil)
	require.NoError(t, err)
	require.False(t, got.PossiblySent)
	require.Empty(t, note)

	// Replays: refused without the option, allowed with it.
	possibly := ids[true][0]
	_, err = b.s.ActionReplay(b.ctx, b.tx, possibly, operator)
	refused, ok := store.IsReplayRefused(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, store.ReplayOptionPossiblySent, refused.Option)
	require.Contains(t, refused.Error(), "possibly sent")
	_, err = b.s.ActionReplay(b.ctx, b.tx, ids[false][0], operator)
	require.NoError(t, err, "a clean cancel replays as any cancelled action")

	all := append(append([]int64{}, ids[true]...), ids[false]...)
	plan, err := b.s.ActionReplayPlan(b.ctx, b.tx, store.ActionFilter{IDs: all}, operator, 10)
	require.NoError(t, err)
	require.EqualValues(t, len(all), plan.Matched)
	require.Zero(t, plan.Eligible)
	require.Equal(t, map[string]int64{store.ReplayOptionPossiblySent: int64(len(ids[true])), store.ReplayOptionReplayed: 1}, plan.Skipped)
	allow := operator
	allow.AllowPossiblySent = true
	plan, err = b.s.ActionReplayPlan(b.ctx, b.tx, store.ActionFilter{IDs: all}, allow, 10)
	require.NoError(t, err)
	require.EqualValues(t, len(ids[true]), plan.Eligible)
	require.Len(t, plan.Sample, len(ids[true]))
	require.Equal(t, map[string]int64{store.ReplayOptionReplayed: 1}, plan.Skipped)
	res, err := b.s.ActionReplayBulk(b.ctx, b.tx, store.ReplayBulkParams{Filter: store.ActionFilter{IDs: all}, Options: operator})
	require.NoError(t, err)
	require.Zero(t, res.Replayed, "a bulk replay without the option skips them")
	r, err := b.s.ActionReplay(b.ctx, b.tx, possibly, allow)
	require.NoError(t, err)
	require.Equal(t, possibly, r.OriginalID)

	// The flag is set only by that cancel, and never cleared.
	for _, sql := range []string{
		`UPDATE botq.action SET possibly_sent = false WHERE id = $1`,
		`UPDATE botq.action SET possibly_sent = true WHERE id = $2`,
	} {
		_, err := b.tx.Exec(b.ctx, "SAVEPOINT flag")
		require.NoError(t, err)
		_, err = b.tx.Exec(b.ctx, strings.ReplaceAll(sql, "botq.", b.s.Schema()+"."), possibly, ids[false][0])
		require.Error(t, err, sql)
		_, err = b.tx.Exec(b.ctx, "ROLLBACK TO SAVEPOINT flag")
		require.NoError(t, err)
	}
	live := b.insert(t, "live").Action
	_, err = b.s.ActionSetState(b.ctx, b.tx, store.ActionSetStateParams{ID: live.ID, To: store.ActionFailed, PossiblySent: true})
	require.Error(t, err, "only a cancelled action may be possibly sent")
}
