package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// A worker that asks for its action after the executor stopped (River's
// stop gave up waiting for it) is refused at once, not left waiting until
// its job's deadline.
func TestLoaderRefusesAfterStop(t *testing.T) {
	t.Parallel()
	_, pool, s := storetest.NewStore(t, 2)
	l := newLoader(pool, s, 0)
	stop := make(chan struct{})
	go l.run(stop)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := l.load(ctx, store.WorkKey{ActionID: -1, JobID: 1, JobAttempt: 1})
	require.ErrorIs(t, err, store.ErrNotFound, "the loader answers while running")

	close(stop)
	<-l.stopped
	start := time.Now()
	_, err = l.load(ctx, store.WorkKey{ActionID: -1, JobID: 1, JobAttempt: 1})
	require.ErrorIs(t, err, errLoaderStopped)
	require.Less(t, time.Since(start), 5*time.Second)
}
