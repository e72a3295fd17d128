package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/rs/zerolog"

	"github.com/botq/botq/store"
)

// result is everything one finished call writes: its attempt and the
// action's new state, its request record, and the River job's new state when
// it leaves `running` for good (completed, cancelled, discarded) or is parked
// (`pending`, for an ambiguous send). All of it commits in one transaction,
// or none of it does.
type result struct {
	attempt store.AttemptRecordParams
	request *store.RequestUpsertParams
	// job is nil when River itself moves the job (retry, snooze): River's
	// completer runs after Work returns, and a job made available by this
	// transaction could be fetched again before River's update arrived.
	job *store.JobEnd
	// extra runs in the same transaction (token updates, events).
	extra func(ctx context.Context, tx pgx.Tx) error

	// early lets the worker go once the job's new state is written, before
	// the commit (see errHandedOff); released records that it went.
	early    bool
	released bool
	done     chan error
}

// resultWriter commits results in batches: while one transaction commits, the
// next batch gathers, as River's own completer batches completions. No
// worker hears its result is saved before the commit, except one whose job
// has left `running` in the batch's transaction (see errHandedOff).
type resultWriter struct {
	pool     *pgxpool.Pool
	store    *store.Store
	driver   *riverpgxv5.Driver
	logger   zerolog.Logger
	in       chan *result
	maxBatch int
	stopped  chan struct{}
	// conn is kept from one batch to the next while results keep coming:
	// under load the pool is often empty (workers loading their actions),
	// and each batch waited for a connection. Only run touches it.
	conn *pgxpool.Conn
}

func newResultWriter(pool *pgxpool.Pool, s *store.Store, logger zerolog.Logger, maxBatch int) *resultWriter {
	if maxBatch <= 0 {
		maxBatch = 500
	}
	return &resultWriter{
		pool:     pool,
		store:    s,
		driver:   riverpgxv5.New(pool),
		logger:   logger,
		in:       make(chan *result, maxBatch),
		maxBatch: maxBatch,
		stopped:  make(chan struct{}),
	}
}

// run writes batches until stop is closed and every submitted result is
// written.
func (w *resultWriter) run(stop <-chan struct{}) {
	defer close(w.stopped)
	defer w.releaseConn()
	batch := make([]*result, 0, w.maxBatch)
	for {
		var first *result
		select {
		case first = <-w.in:
		case <-stop:
			// Workers have stopped; write whatever is left.
			for {
				select {
				case r := <-w.in:
					w.commit([]*result{r})
				default:
					return
				}
			}
		}
		batch = gather(w.in, append(batch[:0], first), w.maxBatch)
		w.commit(batch)
		if len(w.in) == 0 {
			// Nothing waits: give the connection back, so that a small pool
			// is never short of it while the writer idles.
			w.releaseConn()
		}
	}
}

// inTx runs fn in a transaction on the writer's connection, acquiring one
// if it has none. A kept connection that fails to begin (its backend was
// terminated between two batches) is replaced once: nothing was sent on it.
func (w *resultWriter) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	var tx pgx.Tx
	for {
		kept := w.conn != nil
		if !kept {
			conn, err := w.pool.Acquire(ctx)
			if err != nil {
				return fmt.Errorf("acquire a connection for results: %w", err)
			}
			w.conn = conn
		}
		var err error
		if tx, err = w.conn.Begin(ctx); err == nil {
			break
		}
		w.releaseConn()
		if !kept {
			return fmt.Errorf("begin a result transaction: %w", err)
		}
	}
	err := fn(tx)
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		_ = tx.Rollback(ctx)
		// The connection may be broken (or closed by a cancelled query); the
		// next transaction starts on another.
		w.releaseConn()
	}
	return err
}

func (w *resultWriter) releaseConn() {
	if w.conn != nil {
		w.conn.Release()
		w.conn = nil
	}
}

// submit hands a result to the writer and waits until it is committed, or
// for an early result until its job's new state is written. It
// does not give up when ctx ends: the call it records has happened, and its
// record must not be lost because the job's own deadline passed.
func (w *resultWriter) submit(r *result) error {
	r.done = make(chan error, 1)
	w.in <- r
	return <-r.done
}

const writeTimeout = 30 * time.Second

func (w *resultWriter) commit(batch []*result) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	err := w.inTx(ctx, func(tx pgx.Tx) error { return w.write(ctx, tx, batch) })
	if err == nil || len(batch) == 1 {
		for _, r := range batch {
			w.done(r, err)
		}
		return
	}
	// One bad result (a state another writer changed meanwhile) must not
	// fail the others: write each alone.
	w.logger.Warn().Err(err).Int("batch", len(batch)).Msg("jobs: Batch of results failed; writing them one by one")
	for _, r := range batch {
		w.done(r, w.inTx(ctx, func(tx pgx.Tx) error { return w.write(ctx, tx, []*result{r}) }))
	}
}

// done tells r's worker the outcome of its result, once: a worker released
// early hears nothing more, and a failure after its release is logged.
func (w *resultWriter) done(r *result, err error) {
	if r.released {
		if err != nil {
			w.logger.Warn().Err(err).Int64("action_id", r.attempt.ActionID).Int64("job_id", r.job.ID).
				Msg("jobs: A result was not recorded; its job runs again later")
		}
		return
	}
	r.released = true
	r.done <- err
}

func (w *resultWriter) write(ctx context.Context, tx pgx.Tx, batch []*result) error {
	attempts := make([]*store.AttemptRecordParams, len(batch))
	var (
		requests []*store.RequestUpsertParams
		ends     []store.JobEnd
	)
	for i, r := range batch {
		attempts[i] = &r.attempt
		if r.request != nil {
			requests = append(requests, r.request)
		}
		if r.job != nil {
			ends = append(ends, *r.job)
		}
	}
	if len(ends) > 0 {
		if err := w.store.JobsEnd(ctx, tx, ends); err != nil {
			return err
		}
		// The jobs are locked and out of `running` in this transaction:
		// River's completer, which runs once a worker returns, waits for
		// its commit and then finds nothing to do; if it rolls back, River
		// makes the job retryable (the worker returned an error), and not
		// completed. So workers that may go do not wait for the rest.
		for _, r := range batch {
			if r.early {
				w.done(r, nil)
			}
		}
	}
	if err := w.store.ResultRecord(ctx, tx, attempts, requests); err != nil {
		return err
	}
	for _, r := range batch {
		if r.extra != nil {
			if err := r.extra(ctx, tx); err != nil {
				return err
			}
		}
	}
	return nil
}

// errResultNotSaved wraps a failure to record a result. The call it describes
// happened; the job's next attempt sees the missing attempt row.
var errResultNotSaved = errors.New("result not recorded")
