package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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

// resultWriter commits results in batches, in two stages that overlap: the
// first begins a batch's transaction and writes its River jobs' new states
// (store.JobsEnd), which lets the workers of jobs that end go (see
// errHandedOff); the second writes the rest of the batch (store.ResultRecord:
// actions, attempts, requests, lanes) and commits. While the second stage
// writes one batch, the first starts the next: a worker waits for a
// statement on a few rows, not for the transaction before its own. No worker
// hears its result is saved before the commit, except one whose job has
// left `running` in its batch's transaction.
//
// The two open transactions do not wait for each other: the first stage
// locks only running jobs, which the second never touches (the jobs a
// batch's lanes release are not running), and only the second stage writes
// actions, lanes and apps, one batch at a time.
type resultWriter struct {
	pool     *pgxpool.Pool
	store    *store.Store
	logger   zerolog.Logger
	in       chan *result
	maxBatch int
	stopped  chan struct{}
	// idle keeps a connection or two from one batch to the next while
	// results keep coming: under load the pool is often empty (workers
	// loading their actions), and each batch waited for a connection.
	idle chan *pgxpool.Conn
	// retrying counts the goroutines writing a failed batch's results alone.
	retrying sync.WaitGroup
}

func newResultWriter(pool *pgxpool.Pool, s *store.Store, logger zerolog.Logger, maxBatch int) *resultWriter {
	if maxBatch <= 0 {
		maxBatch = 500
	}
	return &resultWriter{
		pool:     pool,
		store:    s,
		logger:   logger,
		in:       make(chan *result, maxBatch),
		maxBatch: maxBatch,
		stopped:  make(chan struct{}),
		idle:     make(chan *pgxpool.Conn, 2),
	}
}

// batchTx is a batch between the two stages: its transaction is open and
// its jobs' states are written, unless err says the first stage failed.
type batchTx struct {
	ctx    context.Context
	cancel context.CancelFunc
	conn   *pgxpool.Conn
	tx     pgx.Tx
	batch  []*result
	err    error
}

// run writes batches until stop is closed and every submitted result is
// written. While the second stage writes a batch, the first keeps adding
// the results that arrive to the next one, ending their jobs addMin or more
// at a time, until the second stage takes it.
func (w *resultWriter) run(stop <-chan struct{}) {
	defer close(w.stopped)
	staged := make(chan *batchTx)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for b := range staged {
			w.finish(b)
		}
	}()
	defer func() {
		close(staged)
		<-finished
		w.retrying.Wait()
		w.releaseIdle()
	}()
	var (
		open    *batchTx
		pending []*result // received while open waits, their jobs not ended yet
	)
	for {
		var (
			in   = w.in
			take chan<- *batchTx
		)
		if open != nil {
			take = staged
			if len(open.batch)+len(pending) >= w.maxBatch {
				in = nil
			}
		}
		select {
		case take <- open:
			open = nil
			if len(pending) > 0 {
				open, pending = w.start(pending), nil
			}
		case r := <-in:
			if open == nil {
				open = w.start(gather(w.in, []*result{r}, w.maxBatch))
				break
			}
			if pending = gather(w.in, append(pending, r), w.maxBatch-len(open.batch)); len(pending) >= addMin {
				w.add(open, pending)
				pending = nil
			}
		case <-stop:
			// Workers have stopped; write whatever is left. Results wait in
			// pending only while a batch is open.
			if pending = gather(w.in, pending, len(pending)+cap(w.in)); len(pending) > 0 {
				if open == nil {
					open = w.start(pending)
				} else {
					w.add(open, pending)
				}
			}
			if open != nil {
				staged <- open
			}
			return
		}
	}
}

// addMin is how many results must wait, while the second stage writes a
// batch, before the first ends their jobs in the next one; fewer wait for
// the second stage to take it. Each statement has a fixed cost: ending the
// jobs of each result as it arrived cost the SQL enqueue measurably, where
// Postgres has no CPU to spare, while a backlog drain, whose results arrive
// by the dozen, gains as much from 16 as from 1.
const addMin = 16

const writeTimeout = 30 * time.Second

// start is the first stage: begin the batch's transaction and end its jobs.
func (w *resultWriter) start(batch []*result) *batchTx {
	b := &batchTx{batch: batch}
	b.ctx, b.cancel = context.WithTimeout(context.Background(), writeTimeout)
	b.conn, b.tx, b.err = w.begin(b.ctx)
	if b.err == nil {
		b.err = w.endJobs(b.ctx, b.tx, batch)
	}
	return b
}

// add ends the jobs of more in b's transaction. After a failure the results
// only join the batch: the second stage writes each of them alone.
func (w *resultWriter) add(b *batchTx, more []*result) {
	b.batch = append(b.batch, more...)
	if b.err == nil {
		b.err = w.endJobs(b.ctx, b.tx, more)
	}
}

// finish is the second stage: write the rest of the batch and commit; if
// that fails, write each result alone, so that one bad result (a state
// another writer changed meanwhile) does not fail the others.
func (w *resultWriter) finish(b *batchTx) {
	defer b.cancel()
	// The batch's own deadline began in the first stage, which may have
	// waited for the batch before; this stage gets one of its own.
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	err := b.err
	if err == nil {
		err = w.record(ctx, b.tx, b.batch)
	}
	if b.tx != nil {
		err = w.end(ctx, b.conn, b.tx, err)
	}
	if err == nil || len(b.batch) == 1 {
		for _, r := range b.batch {
			w.done(r, err)
		}
		return
	}
	w.logger.Warn().Err(err).Int("batch", len(b.batch)).Msg("jobs: Batch of results failed; writing them one by one")
	// Not on this goroutine: River's completer may hold jobs of this batch
	// (made retryable after the rollback) while it waits for jobs of the
	// next batch, which the first stage holds until this stage commits it.
	w.retrying.Add(1)
	go func() {
		defer w.retrying.Done()
		for _, r := range b.batch {
			w.done(r, w.alone(r))
		}
	}()
}

// alone writes one result in a transaction of its own.
func (w *resultWriter) alone(r *result) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return w.inTx(ctx, func(tx pgx.Tx) error {
		one := []*result{r}
		if err := w.endJobs(ctx, tx, one); err != nil {
			return err
		}
		return w.record(ctx, tx, one)
	})
}

// begin begins a transaction on a kept connection or a new one. A kept
// connection that fails to begin (its backend was terminated between two
// batches) is replaced once: nothing was sent on it.
func (w *resultWriter) begin(ctx context.Context) (*pgxpool.Conn, pgx.Tx, error) {
	for {
		var conn *pgxpool.Conn
		kept := true
		select {
		case conn = <-w.idle:
		default:
			kept = false
			var err error
			if conn, err = w.pool.Acquire(ctx); err != nil {
				return nil, nil, fmt.Errorf("acquire a connection for results: %w", err)
			}
		}
		tx, err := conn.Begin(ctx)
		if err == nil {
			return conn, tx, nil
		}
		conn.Release()
		if !kept {
			return nil, nil, fmt.Errorf("begin a result transaction: %w", err)
		}
	}
}

// end commits tx if err is nil, and rolls it back otherwise; the connection
// is kept while results wait, given back to the pool when none do, so that
// a small pool is never short of it while the writer idles.
func (w *resultWriter) end(ctx context.Context, conn *pgxpool.Conn, tx pgx.Tx, err error) error {
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		_ = tx.Rollback(ctx)
		// The connection may be broken (or closed by a cancelled query); the
		// next transaction starts on another.
		conn.Release()
		return err
	}
	if len(w.in) == 0 {
		conn.Release()
		return nil
	}
	select {
	case w.idle <- conn:
	default:
		conn.Release()
	}
	return nil
}

// inTx runs fn in a transaction of its own.
func (w *resultWriter) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	conn, tx, err := w.begin(ctx)
	if err != nil {
		return err
	}
	return w.end(ctx, conn, tx, fn(tx))
}

func (w *resultWriter) releaseIdle() {
	for {
		select {
		case conn := <-w.idle:
			conn.Release()
		default:
			return
		}
	}
}

// submit hands a result to the writer and waits until it is committed, or
// for an early result until its job's new state is written. It does not
// give up when ctx ends: the call it records has happened, and its record
// must not be lost because the job's own deadline passed.
func (w *resultWriter) submit(r *result) error {
	r.done = make(chan error, 1)
	w.in <- r
	return <-r.done
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

// endJobs writes the new states of the batch's jobs that end, then lets the
// workers of the early ones go: their jobs are locked and out of `running`
// in tx (see errHandedOff).
func (w *resultWriter) endJobs(ctx context.Context, tx pgx.Tx, batch []*result) error {
	var ends []store.JobEnd
	for _, r := range batch {
		if r.job != nil {
			ends = append(ends, *r.job)
		}
	}
	if len(ends) == 0 {
		return nil
	}
	if err := w.store.JobsEnd(ctx, tx, ends); err != nil {
		return err
	}
	for _, r := range batch {
		if r.early {
			w.done(r, nil)
		}
	}
	return nil
}

// record writes the batch's attempts, actions and requests, and runs its
// extras.
func (w *resultWriter) record(ctx context.Context, tx pgx.Tx, batch []*result) error {
	attempts := make([]*store.AttemptRecordParams, len(batch))
	var requests []*store.RequestUpsertParams
	for i, r := range batch {
		attempts[i] = &r.attempt
		if r.request != nil {
			requests = append(requests, r.request)
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
