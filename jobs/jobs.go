// Package jobs enqueues botq actions and executes them as River jobs against
// Bot v3.
//
// Enqueueing is an INSERT into botq.action, from SQL, from Go (Enqueue, on a
// pool or inside the caller's pgx transaction) or over HTTP; database
// triggers validate the action, create its River job in the same statement
// and wake a worker at commit (see action_before_insert and action_after_insert
// in migrations/).
//
// One River worker serves every kind. It is thin: load the action and its
// app; pass the gates (app paused or throttled, fleet-wide concurrency and
// rate limits); make one Bot v3 call; classify the answer (outcome.go, the
// one place API answers become queue decisions); and write the attempt, the
// request record, the action's new state and the job's final state in one
// transaction, batched with other jobs' results by the result writer.
//
// Per-conversation order comes from lanes: only a lane's head has an
// available River job, the others wait as `pending` until the head's call is
// over, when a database trigger releases the next one. Nothing polls.
package jobs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/rs/zerolog"

	"github.com/botq/botq/botapi/appclient"
	"github.com/botq/botq/store"
)

// ActionArgs are the arguments of every botq River job: the action's id.
// The payload lives once, in botq.action. One args type serves all kinds:
// its Kind is botq_respond and the other kinds are its aliases, so one
// registered worker executes every kind.
type ActionArgs struct {
	ActionID int64 `json:"action_id"`
}

// Kind is the River kind the type is registered under.
func (ActionArgs) Kind() string { return RiverKind(KindRespond) }

// KindAliases are the River kinds of every other action kind.
func (ActionArgs) KindAliases() []string {
	out := make([]string, 0, len(kinds)-1)
	for _, k := range Kinds() {
		if k != KindRespond {
			out = append(out, RiverKind(k))
		}
	}
	return out
}

// RetryPolicy is a kind's backoff between failed attempts: Base doubled per
// failure, capped at Max, with ±10% jitter.
type RetryPolicy struct {
	Base time.Duration
	Max  time.Duration
}

// DefaultRetryPolicy spreads 25 attempts over about three days.
var DefaultRetryPolicy = RetryPolicy{Base: time.Second, Max: 6 * time.Hour}

func (p RetryPolicy) next(failures int) time.Duration {
	d := p.Base
	for i := 1; i < failures && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	jitter := time.Duration((rand.Float64()*0.2 - 0.1) * float64(d))
	return max(d+jitter, time.Millisecond)
}

// Config configures an Executor.
type Config struct {
	Pool   *pgxpool.Pool
	Store  *store.Store
	Apps   *appclient.Registry
	Logger zerolog.Logger
	// WorkerID identifies this process in attempt rows (default host:pid).
	WorkerID string
	// Retry holds per-kind retry policies; kinds without one use
	// DefaultRetryPolicy.
	Retry map[string]RetryPolicy
	// RateMaxWait is how long a worker waits in process for its app's next
	// rate-limit slot before snoozing instead (default 1s).
	RateMaxWait time.Duration
	// SlotLease bounds how long a concurrency slot stays taken if its holder
	// dies (default 2m).
	SlotLease time.Duration
	// PausedRecheck is how often a paused app's jobs look again (default 30s).
	PausedRecheck time.Duration
	// SlotMaxWait is how long a worker waits in process for one of its app's
	// concurrency slots before it parks in the database (default 500ms).
	SlotMaxWait time.Duration
	// MaxBatch bounds the results committed in one transaction, and the
	// actions loaded in one query (default 500).
	MaxBatch int
	// ResultRetry is how long a job waits before it runs again when its
	// worker went before its result committed (see errHandedOff) and the
	// commit then failed (default 1m): time for the writer to write the
	// result again alone. A write that comes after River ran the job again
	// fails (store.JobsEnd), so this is a delay, not a guarantee.
	ResultRetry time.Duration
	// Observer receives measurements (metrics); nil for none.
	Observer Observer
}

// Observer receives what the executor measures. Implementations must be
// fast and safe for concurrent use.
type Observer interface {
	// CallDone reports one Bot v3 call.
	CallDone(appID, kind string, outcome store.AttemptOutcome, status int, d time.Duration)
	// PhaseDone reports how long one job execution spent in phase.
	PhaseDone(phase Phase, d time.Duration)
}

// Phase is a part of a job execution, other than its Bot v3 call, that holds
// one of River's workers: under load these, not the call, can be most of it.
type Phase string

const (
	// PhasePickup is from River's fetch of the job (its attempted_at, by
	// Postgres' clock) to the worker starting it.
	PhasePickup Phase = "pickup"
	// PhaseLoad is the worker waiting for its action and app to load.
	PhaseLoad Phase = "load"
	// PhaseResult is the worker waiting for its result to be written: for a
	// job its result ends (completes, cancels, discards or parks), until the
	// job's new state is written in the result's transaction; otherwise until
	// the commit.
	PhaseResult Phase = "result"
)

// Executor executes actions. Register its worker with a River client, and
// Start it before the client and Stop it after.
type Executor struct {
	cfg    Config
	writer *resultWriter
	loader *loader
	slots  slotWaiters
	stop   chan struct{}
	// handedOff holds the job executions whose workers returned
	// errHandedOff, for NextRetry; by attempt, so that an entry River never
	// asked for (it skips NextRetry for a job cancelled meanwhile) does not
	// apply to a later error.
	handedOff sync.Map
}

type handoffKey struct {
	jobID   int64
	attempt int
}

// NewExecutor returns an Executor.
func NewExecutor(cfg Config) (*Executor, error) {
	if cfg.Pool == nil || cfg.Store == nil || cfg.Apps == nil {
		return nil, fmt.Errorf("new executor: Pool, Store and Apps are required")
	}
	if cfg.WorkerID == "" {
		host, _ := os.Hostname()
		cfg.WorkerID = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if cfg.RateMaxWait <= 0 {
		cfg.RateMaxWait = time.Second
	}
	if cfg.SlotLease <= 0 {
		cfg.SlotLease = 2 * time.Minute
	}
	if cfg.PausedRecheck <= 0 {
		cfg.PausedRecheck = 30 * time.Second
	}
	if cfg.ResultRetry <= 0 {
		cfg.ResultRetry = time.Minute
	}
	if cfg.SlotMaxWait <= 0 {
		cfg.SlotMaxWait = 500 * time.Millisecond
	}
	for k := range cfg.Retry {
		if _, ok := kinds[k]; !ok {
			return nil, fmt.Errorf("new executor: retry policy for unknown kind %q", k)
		}
	}
	return &Executor{
		cfg:    cfg,
		writer: newResultWriter(cfg.Pool, cfg.Store, cfg.Logger, cfg.MaxBatch),
		loader: newLoader(cfg.Pool, cfg.Store, cfg.MaxBatch),
		stop:   make(chan struct{}),
	}, nil
}

// Register adds the action worker to workers.
func (e *Executor) Register(workers *river.Workers) error {
	return river.AddWorkerSafely(workers, &actionWorker{e: e})
}

// Start starts the result writer, the action loader and the sweep of jobs
// waiting for slots.
func (e *Executor) Start() {
	go e.writer.run(e.stop)
	go e.loader.run(e.stop)
	go e.sweepSlots(e.stop)
}

// slotSweep is how often an executor wakes parked jobs for free slots that
// no release woke them for: the job was still running when the last slot
// was released (River had not handled its snooze), or the holder died and
// its lease ran out.
const slotSweep = time.Second

func (e *Executor) sweepSlots(stop <-chan struct{}) {
	t := time.NewTicker(slotSweep)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), slotSweep)
		if n, err := e.cfg.Store.AppSlotWakeFree(ctx, e.cfg.Pool, ""); err != nil {
			e.cfg.Logger.Warn().Err(err).Msg("jobs: Waking jobs that wait for a concurrency slot failed")
		} else if n > 0 {
			e.cfg.Logger.Debug().Int("woken", n).Msg("jobs: Woke jobs waiting for free concurrency slots")
		}
		cancel()
	}
}

// Stop waits for every submitted result to be written. Call it after the
// River client has stopped.
func (e *Executor) Stop(ctx context.Context) error {
	close(e.stop)
	select {
	case <-e.writer.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
