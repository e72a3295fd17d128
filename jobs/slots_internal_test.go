package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// A slot freed while another worker of the process waits for the app goes
// straight to that worker, with no release and acquire in the database in
// between (the lease stays its first holder's); a lease that has run half
// its time is renewed on the way, and one lost meanwhile is no lease. A
// slot freed with nobody waiting goes back to the database.
func TestSlotHandedToWaitingWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool := storetest.NewSchema(t, 4)
	s, err := store.New(schema)
	require.NoError(t, err)
	app := storetest.App(ctx, t, s, pool, nil)
	_, err = pool.Exec(ctx, fmt.Sprintf(`UPDATE %s.app SET concurrency_limit = 1 WHERE id = $1`, schema), app)
	require.NoError(t, err)
	const lease = 4 * time.Second
	e := &Executor{cfg: Config{Store: s, Pool: pool, Logger: zerolog.Nop(), SlotLease: lease, SlotMaxWait: 20 * time.Second}}

	type slotRow struct {
		holder *int64
		left   time.Duration
	}
	row := func() slotRow {
		var r slotRow
		var secs *float64
		require.NoError(t, pool.QueryRow(ctx, fmt.Sprintf(`
			SELECT holder, extract(epoch FROM lease_until - clock_timestamp())::float8 FROM %s.app_slot WHERE app_id = $1`, schema), app).Scan(&r.holder, &secs))
		if secs != nil {
			r.left = time.Duration(*secs * float64(time.Second))
		}
		return r
	}
	// waiter starts a worker waiting for the app's slot.
	waiter := func(holder int64) <-chan *slotLease {
		got := make(chan *slotLease, 1)
		before := e.slots.count(app)
		go func() {
			l, err := e.acquireSlot(ctx, app, 1, holder)
			require.NoError(t, err)
			got <- l
		}()
		require.Eventually(t, func() bool { return e.slots.count(app) > before }, 5*time.Second, time.Millisecond)
		return got
	}

	first, err := e.acquireSlot(ctx, app, 1, 1)
	require.NoError(t, err)
	require.NotNil(t, first)

	// Handed over: the database still shows the first holder.
	got := waiter(2)
	e.releaseSlot(ctx, first)
	second := <-got
	require.NotNil(t, second)
	require.Equal(t, first.slot, second.slot)
	require.Equal(t, int64(1), *row().holder, "no release and acquire in between")

	// Half the lease gone: renewed when handed over.
	second.until = time.Now().Add(lease / 4)
	got = waiter(3)
	e.releaseSlot(ctx, second)
	third := <-got
	require.NotNil(t, third)
	require.Greater(t, row().left, lease/2, "the lease was renewed")
	require.Greater(t, time.Until(third.until), lease/2)

	// Lost meanwhile (another process took the slot after the lease ran
	// out): the waiter gets no lease.
	_, err = pool.Exec(ctx, fmt.Sprintf(`UPDATE %s.app_slot SET holder = 99 WHERE app_id = $1`, schema), app)
	require.NoError(t, err)
	third.until = time.Now()
	got = waiter(4)
	e.releaseSlot(ctx, third)
	require.Nil(t, <-got, "a lost lease is no lease")
	require.Equal(t, int64(99), *row().holder)

	// Nobody waiting: back to the database.
	_, err = pool.Exec(ctx, fmt.Sprintf(`UPDATE %s.app_slot SET holder = NULL, lease_until = NULL WHERE app_id = $1`, schema), app)
	require.NoError(t, err)
	last, err := e.acquireSlot(ctx, app, 1, 5)
	require.NoError(t, err)
	require.NotNil(t, last)
	require.Equal(t, int64(5), *row().holder)
	e.releaseSlot(ctx, last)
	require.Nil(t, row().holder, "released in the database")
}
