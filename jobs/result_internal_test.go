package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

// The writer keeps its connections between batches while results wait; if
// that backend is terminated meanwhile (a failover, pg_terminate_backend), the next batch
// begins on a fresh connection instead of failing its results.
func TestResultWriterReplacesKilledConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool, s := storetest.NewStore(t, 4)
	w := newResultWriter(pool, s, zerolog.Nop(), 0)
	defer w.releaseIdle()

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	pid := conn.Conn().PgConn().PID()
	w.idle <- conn // kept from a batch before
	var killed bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&killed))
	require.True(t, killed)
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n))
		return n == 0
	}, 5*time.Second, 10*time.Millisecond)

	var again uint32
	require.NoError(t, w.inTx(ctx, func(tx pgx.Tx) error { again = tx.Conn().PgConn().PID(); return nil }))
	require.NotEqual(t, pid, again)
}
