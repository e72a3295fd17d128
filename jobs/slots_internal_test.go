package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

// A slot freed while another worker of the process waits for the app goes
// straight to that worker, with no release and acquire in the database in
// between (the lease stays its first holder's). The taker renews a lease
// that could run out before its own deadline, gets no lease when it was
// lost meanwhile or its slot is above the app's limit, and a slot freed
// with nobody waiting goes back to the database.
func TestSlotHandedToWaitingWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, s := storetest.NewStore(t, 4)
	app := storetest.App(ctx, t, s, pool, nil)
	setLimit := func(n int) {
		_, err := pool.Exec(ctx, fmt.Sprintf(`UPDATE %s.app SET concurrency_limit = $2 WHERE id = $1`, schema), app, n)
		require.NoError(t, err)
	}
	setLimit(1)
	const lease = 20 * time.Second
	e := &Executor{cfg: Config{Store: s, Pool: pool, Logger: zerolog.Nop(), SlotLease: lease, SlotMaxWait: 20 * time.Second}}

	type slotRow struct {
		holder *int64
		left   time.Duration
	}
	row := func() slotRow {
		var r slotRow
		var secs *float64
		require.NoError(t, pool.QueryRow(ctx, fmt.Sprintf(`
			SELECT holder, extract(epoch FROM lease_until - clock_timestamp())::float8 FROM %s.app_slot WHERE app_id = $1 AND slot = 1`, schema), app).Scan(&r.holder, &secs))
		if secs != nil {
			r.left = time.Duration(*secs * float64(time.Second))
		}
		return r
	}
	setLeaseLeft := func(d time.Duration) {
		_, err := pool.Exec(ctx, fmt.Sprintf(`UPDATE %s.app_slot SET lease_until = clock_timestamp() + make_interval(secs => $2) WHERE app_id = $1`, schema), app, d.Seconds())
		require.NoError(t, err)
	}
	type taken struct {
		l   *slotLease
		err error
	}
	// handOver starts a worker waiting for the app's slot (with ctx) and
	// hands it l once it waits.
	handOver := func(wctx context.Context, l *slotLease) taken {
		got := make(chan taken, 1)
		go func() {
			l, err := e.acquireSlot(wctx, app, 1, 100)
			got <- taken{l, err}
		}()
		require.Eventually(t, func() bool { return e.slots.handOver(l) }, 5*time.Second, time.Millisecond)
		return <-got
	}
	soon, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()

	first, err := e.acquireSlot(ctx, app, 1, 1)
	require.NoError(t, err)
	require.NotNil(t, first)
	require.Equal(t, int64(1), *row().holder)

	// The lease outlasts the taker's deadline: used as it is.
	setLeaseLeft(15 * time.Second)
	got := handOver(soon, first)
	require.NoError(t, got.err)
	require.Equal(t, first, got.l)
	r := row()
	require.Equal(t, int64(1), *r.holder, "no release and acquire in between")
	require.Less(t, r.left, 16*time.Second, "not renewed")

	// It might not (here: the taker has no deadline): renewed first.
	setLeaseLeft(time.Second)
	got = handOver(ctx, first)
	require.NoError(t, got.err)
	require.NotNil(t, got.l)
	require.Greater(t, row().left, lease-2*time.Second, "renewed")
	require.Greater(t, time.Until(got.l.until), lease-2*time.Second)

	// Lost meanwhile (it ran out and another process took the slot): no lease.
	_, err = pool.Exec(ctx, fmt.Sprintf(`UPDATE %s.app_slot SET holder = 99 WHERE app_id = $1`, schema), app)
	require.NoError(t, err)
	got = handOver(ctx, first)
	require.NoError(t, got.err)
	require.Nil(t, got.l, "a lost lease is no lease")
	require.Equal(t, int64(99), *row().holder)

	// A slot above the app's limit (it shrank from 2 to 1): no lease.
	_, err = pool.Exec(ctx, fmt.Sprintf(`UPDATE %s.app_slot SET holder = NULL, lease_until = NULL WHERE app_id = $1`, schema), app)
	require.NoError(t, err)
	setLimit(2)
	one, err := e.acquireSlot(ctx, app, 2, 1)
	require.NoError(t, err)
	two, err := e.acquireSlot(ctx, app, 2, 2)
	require.NoError(t, err)
	require.Equal(t, 2, two.slot)
	setLimit(1)
	got = handOver(soon, two)
	require.NoError(t, got.err)
	require.Nil(t, got.l, "slot 2 is gone")

	// Nobody waiting: back to the database.
	e.releaseSlot(ctx, one)
	require.Nil(t, row().holder, "released in the database")
}
