package reconciler

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/store"
)

// RefreshTokens refreshes every stored token that expires within
// TokenRefreshBefore. appclient.Registry.Refresh holds a per-app lock across
// the call and skips an app whose token another process just replaced, so an
// app is never refreshed twice at once.
func (r *Reconciler) RefreshTokens(ctx context.Context) (int, error) {
	now := r.cfg.Now()
	apps, err := r.cfg.Store.AppTokenDue(ctx, r.cfg.Pool, now.Add(r.cfg.TokenRefreshBefore))
	if err != nil {
		return 0, err
	}
	var n int
	var errs []error
	for _, app := range apps {
		if r.cfg.Apps.External(app.ID) || (app.PausedUntil != nil && app.PausedUntil.After(now)) {
			continue
		}
		start := time.Now()
		res, err := r.cfg.Apps.Refresh(ctx, app.ID, app.TokenVersion, "reconciler",
			fmt.Sprintf("token expires at %s", app.TokenExpiresAt.UTC().Format(time.RFC3339)))
		var resp *botapi.Response
		if res != nil {
			resp = res.Response
		}
		r.observeCall(app.ID, "token_refresh", resp, time.Since(start))
		if err != nil {
			errs = append(errs, fmt.Errorf("app %q: %w", app.ID, err))
			continue
		}
		if res.Refreshed {
			n++
			if r.cfg.Observer != nil && res.App.TokenExpiresAt != nil {
				r.cfg.Observer.TokenExpiry(app.ID, *res.App.TokenExpiresAt)
			}
			r.cfg.Logger.Info().Str("app_id", app.ID).Msg("reconciler: Token refreshed")
		}
	}
	return n, errors.Join(errs...)
}

// worstHealth folds the per-registration entries of GET /health into one
// status: the worst of them.
func worstHealth(hs []botapi.Health) string {
	rank := map[string]int{botapi.HealthHealthy: 1, botapi.HealthDegraded: 2, botapi.HealthDown: 3}
	worst := ""
	for _, h := range hs {
		if rank[h.Status] > rank[worst] {
			worst = h.Status
		}
	}
	return worst
}

// PollHealth reads every active app's health and records changes as
// events.
func (r *Reconciler) PollHealth(ctx context.Context) error {
	apps, err := r.cfg.Store.AppList(ctx, r.cfg.Pool)
	if err != nil {
		return err
	}
	now := r.cfg.Now()
	var errs []error
	for _, app := range apps {
		if app.PausedUntil != nil && app.PausedUntil.After(now) {
			continue
		}
		if len(app.TokenCiphertext) == 0 && !r.cfg.Apps.External(app.ID) {
			continue
		}
		client, err := r.cfg.Apps.Client(app)
		if err != nil {
			errs = append(errs, fmt.Errorf("app %q: %w", app.ID, err))
			continue
		}
		start := time.Now()
		hs, res, err := client.GetHealth(ctx, app.ID)
		r.observeCall(app.ID, "health", res, time.Since(start))
		if err != nil {
			errs = append(errs, fmt.Errorf("app %q: health: %w", app.ID, err))
			continue
		}
		status := worstHealth(hs)
		if status == "" {
			continue
		}
		if r.cfg.Observer != nil {
			r.cfg.Observer.Health(app.ID, status)
		}
		var changed bool
		err = r.inTx(ctx, func(tx pgx.Tx) error {
			var err error
			changed, err = r.cfg.Store.AppSetHealth(ctx, tx, app.ID, status, now, hs)
			return err
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if changed {
			r.cfg.Logger.Info().Str("app_id", app.ID).Str("status", status).Msg("reconciler: App health changed")
		}
	}
	return errors.Join(errs...)
}

// Inbound listings: a listing's window is relative to the moment Khoros
// answers it (from=<minutes>), so each app keeps a cursor, the moment its
// last stored listing was asked for, and the next listing reaches back to
// it, plus inboundSkew. The margin covers the two clocks' difference and a
// record that shows up in listings a little after the time Khoros gives it.
const (
	inboundSkew = time.Minute
	// inboundFirstWindow is how far back the first listing of an app with
	// no cursor yet reads (an app just added, or recording just turned on).
	inboundFirstWindow = time.Hour
)

// inboundWindow is how far back the listing asked for at now reads: from
// the cursor less inboundSkew, rounded up to whole minutes, at most the
// listing's limit (clipped is then true).
func inboundWindow(now time.Time, cursor time.Time, hasCursor bool) (window time.Duration, clipped bool) {
	window = inboundFirstWindow
	if hasCursor {
		window = now.Sub(cursor) + inboundSkew
	}
	window = (window + time.Minute - 1).Truncate(time.Minute)
	if window > botapi.MaxListWindow {
		return botapi.MaxListWindow, hasCursor
	}
	return max(window, time.Minute), false
}

// RecordInbound stores the KHOROS-origin records (webhook deliveries to the
// bot), so auditors see both directions, and returns how many it stored or
// updated. Each app's listing covers everything since its cursor, so
// nothing is missed over a pause, a restart, a leader change or any gap up
// to the listing's 31 days. A paused app is not called (a pause for a
// refused token would fail anyway, and an operator's pause stops every
// call); its cursor stays, and the first listing after the pause covers it.
// An app whose listing fails keeps its cursor and does not stop the others;
// the errors are joined.
func (r *Reconciler) RecordInbound(ctx context.Context) (int, error) {
	apps, err := r.cfg.Store.AppList(ctx, r.cfg.Pool)
	if err != nil {
		return 0, err
	}
	cursors, err := r.cfg.Store.InboundCursorList(ctx, r.cfg.Pool)
	if err != nil {
		return 0, err
	}
	now := r.cfg.Now()
	var n int
	var errs []error
	for _, app := range apps {
		if (app.PausedUntil != nil && app.PausedUntil.After(now)) || (len(app.TokenCiphertext) == 0 && !r.cfg.Apps.External(app.ID)) {
			continue
		}
		cursor, ok := cursors[app.ID]
		got, err := r.recordInboundApp(ctx, app, cursor, ok)
		n += got
		if err != nil {
			errs = append(errs, fmt.Errorf("app %q: %w", app.ID, err))
		}
	}
	return n, errors.Join(errs...)
}

// recordInboundApp reads one app's KHOROS-origin records since its cursor,
// stores them and advances the cursor in one transaction.
func (r *Reconciler) recordInboundApp(ctx context.Context, app *store.App, cursor time.Time, hasCursor bool) (int, error) {
	client, err := r.cfg.Apps.Client(app)
	if err != nil {
		return 0, err
	}
	asked := r.cfg.Now()
	window, clipped := inboundWindow(asked, cursor, hasCursor)
	start := time.Now()
	recs, res, err := client.ListRequests(ctx, app.ID, &botapi.ListRequestsOptions{From: window, Origin: botapi.OriginKhoros})
	r.observeCall(app.ID, "list", res, time.Since(start))
	if err != nil {
		return 0, fmt.Errorf("list inbound: %w", err)
	}
	r.observeFetched(app.ID, "list_khoros", len(recs))
	out := make([]store.KhorosRecord, 0, len(recs))
	for i := range recs {
		out = append(out, store.KhorosRecord{Settlement: settlementOf(&recs[i]), AppID: app.ID, Payload: recs[i].Payload})
	}
	var n int
	err = r.inTx(ctx, func(tx pgx.Tx) error {
		if len(out) > 0 {
			var err error
			if n, err = r.cfg.Store.RequestRecordKhoros(ctx, tx, asked, out); err != nil {
				return err
			}
		}
		return r.cfg.Store.InboundCursorAdvance(ctx, tx, app.ID, asked)
	})
	if err != nil {
		return 0, err
	}
	if clipped {
		// Khoros lists no further back: the records of the gap's start are
		// beyond reach, and the cursor has moved past them.
		r.cfg.Logger.Warn().Str("app_id", app.ID).Time("read_until", cursor).Dur("window", window).
			Msg("reconciler: KHOROS-origin records older than the listing's limit were not read")
	}
	return n, nil
}

// Tasks of the reconciler's periodic job.
const (
	TaskReconcile = "reconcile"
	TaskTokens    = "tokens"
	TaskHealth    = "health"
	TaskInbound   = "inbound"
)

// Queue is the River queue the reconciler's jobs run in, apart from actions
// so that a backlog of actions never delays reconciliation.
const Queue = "botq_maintenance"

// TaskArgs are the arguments of the maintenance job: Task names the work.
type TaskArgs struct {
	Task string `json:"task"`
}

// Kind is the River kind of every maintenance job.
func (TaskArgs) Kind() string { return "botq_maintenance" }

// uniquePerRun keeps one job per task and period queued or running. A job
// left running by a crashed process blocks only its own period, so the next
// leader's next run is never held back waiting for River's rescuer.
func uniquePerRun(every time.Duration) river.UniqueOpts {
	return river.UniqueOpts{
		ByArgs:   true,
		ByPeriod: max(every, time.Second), // River's minimum
		ByState: []rivertype.JobState{
			rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
			rivertype.JobStateRetryable, rivertype.JobStateScheduled,
		},
	}
}

// Schedule says how often each periodic task runs.
type Schedule struct {
	Reconcile time.Duration
	Tokens    time.Duration
	Health    time.Duration
	// Inbound is zero unless KHOROS-origin records are recorded.
	Inbound time.Duration
	// Extra is periodic work owned elsewhere (retention) that runs on the
	// same queue, one at a time.
	Extra []ExtraTask
}

// ExtraTask is periodic work owned elsewhere.
type ExtraTask struct {
	Task     string
	Interval time.Duration
	Run      func(ctx context.Context) error
}

// Periodic registers the maintenance worker and returns the periodic jobs.
// Every process must call it with the same schedule, so that whichever is
// elected leader enqueues them; only processes that work Queue run them.
func (r *Reconciler) Periodic(workers *river.Workers, sch Schedule) ([]*river.PeriodicJob, error) {
	w := &taskWorker{r: r, extra: map[string]ExtraTask{}}
	if err := river.AddWorkerSafely(workers, river.Worker[TaskArgs](w)); err != nil {
		return nil, err
	}
	job := func(task string, every time.Duration) *river.PeriodicJob {
		return river.NewPeriodicJob(river.PeriodicInterval(every), func() (river.JobArgs, *river.InsertOpts) {
			return TaskArgs{Task: task}, &river.InsertOpts{Queue: Queue, UniqueOpts: uniquePerRun(every), MaxAttempts: 1}
		}, &river.PeriodicJobOpts{ID: task, RunOnStart: true})
	}
	jobs := []*river.PeriodicJob{job(TaskReconcile, sch.Reconcile), job(TaskTokens, sch.Tokens), job(TaskHealth, sch.Health)}
	if sch.Inbound > 0 {
		jobs = append(jobs, job(TaskInbound, sch.Inbound))
	}
	for _, t := range sch.Extra {
		w.extra[t.Task] = t
		jobs = append(jobs, job(t.Task, t.Interval))
	}
	return jobs, nil
}

type taskWorker struct {
	river.WorkerDefaults[TaskArgs]
	r     *Reconciler
	extra map[string]ExtraTask
}

func (w *taskWorker) Timeout(*river.Job[TaskArgs]) time.Duration { return 2 * time.Minute }

// Work runs one task and reports its failure. River logs a worker's error
// only at info level, and a maintenance job is never retried (its next
// period runs it again), so a failed run is logged at error level here and
// counted (Observer.TaskFailed), then returned for River to record on the
// job.
func (w *taskWorker) Work(ctx context.Context, job *river.Job[TaskArgs]) error {
	err := w.work(ctx, job)
	if err != nil {
		w.r.cfg.Logger.Error().Err(err).Str("task", job.Args.Task).Int64("job_id", job.ID).
			Msg("reconciler: Maintenance task failed")
		if w.r.cfg.Observer != nil {
			w.r.cfg.Observer.TaskFailed(job.Args.Task)
		}
	}
	return err
}

// work runs one task, unless another run of it holds its lock: a session
// advisory lock, released by Postgres the moment a crashed holder's
// connection drops, so runs never overlap and never wait for a dead one.
func (w *taskWorker) work(ctx context.Context, job *river.Job[TaskArgs]) error {
	conn, err := w.r.cfg.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	key := lockKey(w.r.cfg.Store.Schema(), job.Args.Task)
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&locked); err != nil {
		return err
	}
	if !locked {
		return nil
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key); err != nil {
			// The lock would outlive the run on a pooled connection.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	err = w.run(ctx, job)
	if err != nil && ctx.Err() == nil {
		// River logs a failed job at info level; a task that keeps failing
		// (an action it cannot settle) must show up.
		w.r.cfg.Logger.Error().Err(err).Str("task", job.Args.Task).Int("attempt", job.Attempt).
			Msg("reconciler: Maintenance task failed")
	}
	return err
}

// pruneCompletedJobs deletes the maintenance queue's jobs that completed
// more than CompletedJobRetention ago. The reconcile task, which runs every
// couple of seconds, does it after each run, so the queue keeps about that
// long of completed runs instead of River's retention of them (a day by
// default, tens of thousands of rows): in River UI they would bury the jobs
// of actions, which are what an operator looks for there. A run that failed
// is discarded, not completed, and stays as River keeps it. A failed prune
// is only logged: the next run prunes the same rows.
func (r *Reconciler) pruneCompletedJobs(ctx context.Context) {
	if r.cfg.CompletedJobRetention <= 0 {
		return
	}
	n, err := r.cfg.Store.RiverJobsPruneCompleted(ctx, r.cfg.Pool, Queue, r.cfg.Now().Add(-r.cfg.CompletedJobRetention), 1000)
	if err != nil && ctx.Err() == nil {
		r.cfg.Logger.Warn().Err(err).Msg("reconciler: Could not prune completed maintenance jobs")
		return
	}
	if n > 0 {
		r.cfg.Logger.Debug().Int64("jobs", n).Msg("reconciler: Pruned completed maintenance jobs")
	}
}

func lockKey(schema, task string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("botq-maintenance:" + schema + ":" + task))
	return int64(h.Sum64() >> 1)
}

func (w *taskWorker) run(ctx context.Context, job *river.Job[TaskArgs]) error {
	switch job.Args.Task {
	case TaskReconcile:
		st, err := w.r.RunOnce(ctx)
		if st.Settled+st.Resolved+st.Released+st.Failed+st.Cancelled > 0 {
			w.r.cfg.Logger.Debug().Int("calls", st.Calls).Int("settled", st.Settled).Int("expired", st.Expired).
				Int("resolved", st.Resolved).Int("released", st.Released).Int("cancelled", st.Cancelled).Msg("reconciler: Settled")
		}
		w.r.pruneCompletedJobs(ctx)
		return err
	case TaskTokens:
		_, err := w.r.RefreshTokens(ctx)
		return err
	case TaskHealth:
		return w.r.PollHealth(ctx)
	case TaskInbound:
		_, err := w.r.RecordInbound(ctx)
		return err
	}
	if t, ok := w.extra[job.Args.Task]; ok {
		return t.Run(ctx)
	}
	return river.JobCancel(fmt.Errorf("unknown maintenance task %q", job.Args.Task))
}
