package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// retentionBundle is a schema of its own, written through a pool: each
// purge batch commits on its own, as in production, and the purge sees
// every committed row of the schema.
type retentionBundle struct {
	ctx   context.Context
	s     *store.Store
	pool  *pgxpool.Pool
	appID string
}

func setupRetention(t *testing.T) *retentionBundle {
	t.Helper()
	ctx := context.Background()
	_, pool, s := storetest.NewStore(t, 4)
	return &retentionBundle{ctx: ctx, s: s, pool: pool, appID: storetest.App(ctx, t, s, pool, nil)}
}

// action enqueues an action (its own lane) and moves it to state unless
// that is queued.
func (b *retentionBundle) action(t *testing.T, key string, state store.ActionState) int64 {
	t.Helper()
	res, err := b.s.ActionInsert(b.ctx, b.pool, store.ActionInsertParams{
		AppID: b.appID, Kind: "respond", Payload: storetest.RespondPayload("author-"+key, "hello"), IdempotencyKey: key,
	})
	require.NoError(t, err)
	b.finish(t, res.Action.ID, state)
	return res.Action.ID
}

func (b *retentionBundle) finish(t *testing.T, id int64, state store.ActionState) {
	t.Helper()
	if state == store.ActionQueued {
		return
	}
	_, err := b.s.ActionSetState(b.ctx, b.pool, store.ActionSetStateParams{ID: id, To: state})
	require.NoError(t, err)
}

// replay replays id and moves the replay to state.
func (b *retentionBundle) replay(t *testing.T, id int64, state store.ActionState) int64 {
	t.Helper()
	r, err := b.s.ActionReplay(b.ctx, b.pool, id, store.ReplayOptions{Actor: "cli:alice", Reason: "Khoros outage",
		AllowReplayOfReplay: true, AllowSucceeded: true, AllowReplayed: true})
	require.NoError(t, err)
	b.finish(t, r.ActionID, state)
	return r.ActionID
}

// age moves the given actions two years into the past, with triggers off
// (created_at is immutable).
func (b *retentionBundle) age(t *testing.T, ids ...int64) {
	t.Helper()
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(b.ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(b.ctx, fmt.Sprintf(`
			UPDATE %s.action SET created_at = created_at - interval '2 years', finished_at = finished_at - interval '2 years'
			WHERE id = ANY($1)`, b.s.Schema()), ids)
		return err
	})
	require.NoError(t, err)
}

func (b *retentionBundle) exists(t *testing.T, id int64) bool {
	t.Helper()
	_, err := b.s.ActionGet(b.ctx, b.pool, id)
	if errors.Is(err, store.ErrNotFound) {
		return false
	}
	require.NoError(t, err)
	return true
}

func (b *retentionBundle) retentionEvents(t *testing.T) []*store.Event {
	t.Helper()
	evs, err := b.s.EventList(b.ctx, b.pool, store.EventListParams{Kind: "retention"})
	require.NoError(t, err)
	return evs
}

// An original whose replay is newer than the cutoff is purged and the
// replay keeps its replay_of, unchanged, as a reference to a purged action;
// a replay older than the cutoff goes with its original. Batches of two, so
// originals and replays land in different batches.
func TestRetentionPurgeReplaysOlderAndNewerThanTheCutoff(t *testing.T) {
	t.Parallel()
	b := setupRetention(t)
	const F, S, Q = store.ActionFailed, store.ActionSucceeded, store.ActionQueued

	// Both old: both go.
	bothOld := b.action(t, "both-old", F)
	bothOldReplay := b.replay(t, bothOld, F)
	// An old original with a finished replay inside the period.
	newFinished := b.action(t, "new-finished", F)
	newFinishedReplay := b.replay(t, newFinished, S)
	// An old original with a replay not yet executed.
	newQueued := b.action(t, "new-queued", F)
	newQueuedReplay := b.replay(t, newQueued, Q)
	// A chain: the original and its first replay are old, the second is not.
	chain := b.action(t, "chain", F)
	chain1 := b.replay(t, chain, F)
	chain2 := b.replay(t, chain1, F)
	// Inside the period: both stay.
	fresh := b.action(t, "fresh", F)
	freshReplay := b.replay(t, fresh, S)
	// Old actions with no replay, so that the purge takes several batches.
	var plain []int64
	for i := range 5 {
		plain = append(plain, b.action(t, fmt.Sprintf("plain-%d", i), S))
	}
	old := append([]int64{bothOld, bothOldReplay, newFinished, newQueued, chain, chain1}, plain...)
	b.age(t, old...)

	res, err := b.s.RetentionPurge(b.ctx, b.pool, time.Now().Add(-400*24*time.Hour), 2)
	require.NoError(t, err)
	require.Empty(t, res.Failed)
	require.Equal(t, int64(len(old)), res.Actions)

	for _, id := range old {
		require.False(t, b.exists(t, id), "old action %d is purged", id)
	}
	kept := map[int64]int64{newFinishedReplay: newFinished, newQueuedReplay: newQueued, chain2: chain1, freshReplay: fresh}
	for id, of := range kept {
		a, err := b.s.ActionGet(b.ctx, b.pool, id)
		require.NoError(t, err, "replay %d is kept", id)
		require.NotNil(t, a.ReplayOf)
		require.Equal(t, of, *a.ReplayOf, "replay %d still names what it replayed", id)
	}
	require.True(t, b.exists(t, fresh))

	// The replay not yet executed still runs to its end.
	_, err = b.s.ActionSetState(b.ctx, b.pool, store.ActionSetStateParams{ID: newQueuedReplay, To: S})
	require.NoError(t, err)
	// A replay whose original was purged can be replayed again.
	b.replay(t, newFinishedReplay, Q)

	evs := b.retentionEvents(t)
	require.Len(t, evs, 1, "one event per run")
	require.Equal(t, res.EventID, evs[0].ID)
	var after map[string]any
	require.NoError(t, json.Unmarshal(evs[0].After, &after))
	require.EqualValues(t, len(old), after["actions"])
	require.NotContains(t, after, "failed")

	// The next run finds nothing more and records so.
	res, err = b.s.RetentionPurge(b.ctx, b.pool, time.Now().Add(-400*24*time.Hour), 2)
	require.NoError(t, err)
	require.Zero(t, res.Actions)
	require.Len(t, b.retentionEvents(t), 2)
}

// A part of the purge that fails does not undo or hide the others: the
// run goes on with the next part and records one `retention` event with
// what was deleted and what failed, and returns the failure. In a
// transaction too, where each batch runs in a savepoint.
func TestRetentionPurgeRecordsAFailedPart(t *testing.T) {
	t.Parallel()
	b := setupRetention(t)
	schema := b.s.Schema()
	// Postgres refuses to delete one request record.
	for _, sql := range []string{
		fmt.Sprintf(`CREATE FUNCTION %s.refuse_delete() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'deleting request %% refused by the test', OLD.request_id; END $$`, schema),
		fmt.Sprintf(`CREATE TRIGGER refuse_delete BEFORE DELETE ON %[1]s.request FOR EACH ROW
			WHEN (OLD.request_id = 'stuck') EXECUTE FUNCTION %[1]s.refuse_delete()`, schema),
	} {
		_, err := b.pool.Exec(b.ctx, sql)
		require.NoError(t, err)
	}
	var actions []int64
	for i := range 3 {
		actions = append(actions, b.action(t, fmt.Sprintf("a-%d", i), store.ActionFailed))
	}
	for _, id := range []string{"stuck", "r-1", "r-2"} {
		require.NoError(t, b.s.RequestUpsert(b.ctx, b.pool, &store.RequestUpsertParams{RequestID: id, AppID: b.appID, State: store.RequestSuccess}))
	}
	for range 3 {
		_, err := b.s.EventInsert(b.ctx, b.pool, store.EventInsertParams{AppID: b.appID, Kind: "pause", Actor: "x"})
		require.NoError(t, err)
	}
	b.age(t, actions...)
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(b.ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		// "stuck" is the oldest, so the requests part fails at its first batch.
		if _, err := tx.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.request SET first_seen_at = first_seen_at - interval '2 years'
			- CASE WHEN request_id = 'stuck' THEN interval '1 day' ELSE interval '0' END`, schema)); err != nil {
			return err
		}
		_, err := tx.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.event SET at = at - interval '2 years'`, schema))
		return err
	})
	require.NoError(t, err)
	cutoff := time.Now().Add(-400 * 24 * time.Hour)

	// In a transaction: the failed batch is rolled back to its savepoint,
	// and the rest of the run and its event go on in the transaction.
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	res, err := b.s.RetentionPurge(b.ctx, tx, cutoff, 1)
	require.ErrorContains(t, err, "purge requests")
	require.Equal(t, []store.RetentionFailure{{Part: "requests", Error: res.Failed[0].Error}}, res.Failed)
	require.Equal(t, int64(3), res.Actions)
	require.Equal(t, int64(3), res.Events)
	require.NotZero(t, res.EventID)
	require.NoError(t, tx.Rollback(b.ctx))

	// Through the pool, as botq runs it.
	res, err = b.s.RetentionPurge(b.ctx, b.pool, cutoff, 1)
	require.ErrorContains(t, err, "purge requests")
	require.ErrorContains(t, err, "refused by the test")
	require.Equal(t, int64(3), res.Actions, "the actions are purged after the requests failed")
	require.Equal(t, int64(3), res.Events)
	require.Zero(t, res.Requests)
	for _, id := range actions {
		require.False(t, b.exists(t, id))
	}
	_, err = b.s.RequestGet(b.ctx, b.pool, "r-1")
	require.NoError(t, err, "the requests part stopped at its failed batch")

	evs := b.retentionEvents(t)
	require.Len(t, evs, 1, "one event for the run, and the purged events did not take it")
	require.Equal(t, res.EventID, evs[0].ID)
	var after struct {
		Actions, Events, Requests int64
		Failed                    []store.RetentionFailure
	}
	require.NoError(t, json.Unmarshal(evs[0].After, &after))
	require.Equal(t, int64(3), after.Actions)
	require.Equal(t, int64(3), after.Events)
	require.Zero(t, after.Requests)
	require.Len(t, after.Failed, 1)
	require.Equal(t, "requests", after.Failed[0].Part)
	require.Contains(t, after.Failed[0].Error, "refused by the test")
}
