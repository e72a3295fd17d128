package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botq/botq/store"
)

// loader loads the actions of starting jobs in batches. River starts the
// jobs of one fetch together, and each loading its action alone took a pool
// connection and a round trip: with many workers on a smaller pool, the
// workers waited for connections more than for their queries. One query
// for whatever is waiting answers them all.
type loader struct {
	pool     *pgxpool.Pool
	store    *store.Store
	in       chan *loadRequest
	maxBatch int
	stopped  chan struct{}
}

type loadRequest struct {
	key  store.WorkKey
	done chan loadResult // buffered: the loader never waits for a worker
}

type loadResult struct {
	item *store.WorkItem
	err  error
}

func newLoader(pool *pgxpool.Pool, s *store.Store, maxBatch int) *loader {
	if maxBatch <= 0 {
		maxBatch = 500
	}
	return &loader{pool: pool, store: s, in: make(chan *loadRequest, maxBatch), maxBatch: maxBatch, stopped: make(chan struct{})}
}

// run answers load requests until stop is closed. Workers should have
// stopped by then; one still starting (River's stop gave up waiting) is
// refused, not left waiting for its job's deadline.
func (l *loader) run(stop <-chan struct{}) {
	defer func() {
		close(l.stopped)
		for {
			select {
			case r := <-l.in:
				r.done <- loadResult{err: errLoaderStopped}
			default:
				return
			}
		}
	}()
	batch := make([]*loadRequest, 0, l.maxBatch)
	for {
		select {
		case r := <-l.in:
			batch = append(batch[:0], r)
		case <-stop:
			return
		}
		l.answer(gather(l.in, batch, l.maxBatch))
	}
}

const loadTimeout = 30 * time.Second

func (l *loader) answer(batch []*loadRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	keys := make([]store.WorkKey, len(batch))
	for i, r := range batch {
		keys[i] = r.key
	}
	items, err := l.store.WorkLoad(ctx, l.pool, keys)
	for i, r := range batch {
		switch {
		case err != nil:
			r.done <- loadResult{err: err}
		case items[i] == nil:
			r.done <- loadResult{err: fmt.Errorf("load action %d for work: %w", r.key.ActionID, store.ErrNotFound)}
		default:
			r.done <- loadResult{item: items[i]}
		}
	}
}

// load returns the action and app for one job execution. A worker whose
// context ends stops waiting; the answer, when it comes, is dropped.
func (l *loader) load(ctx context.Context, key store.WorkKey) (*store.WorkItem, error) {
	r := &loadRequest{key: key, done: make(chan loadResult, 1)}
	select {
	case l.in <- r:
	case <-l.stopped:
		return nil, errLoaderStopped
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.item, res.err
	case <-l.stopped:
		// Answered on the way out, or never: the request may have arrived
		// after the loader drained its queue.
		select {
		case res := <-r.done:
			return res.item, res.err
		default:
			return nil, errLoaderStopped
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var errLoaderStopped = errors.New("the executor has stopped")

// gather adds to batch what is already waiting in ch, without waiting for
// more, up to max.
func gather[T any](ch <-chan T, batch []T, max int) []T {
	for len(batch) < max {
		select {
		case v := <-ch:
			batch = append(batch, v)
		default:
			return batch
		}
	}
	return batch
}
