package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/jobs/appclient"
	"github.com/botq/botq/store"
)

type actionWorker struct {
	river.WorkerDefaults[ActionArgs]
	e *Executor
}

// NextRetry applies the kind's retry policy, or ResultRetry to a job whose
// worker handed off its result (errHandedOff).
func (w *actionWorker) NextRetry(job *river.Job[ActionArgs]) time.Time {
	if _, ok := w.e.handedOff.LoadAndDelete(handoffKey{job.ID, job.Attempt}); ok {
		return time.Now().Add(w.e.cfg.ResultRetry)
	}
	p, ok := w.e.cfg.Retry[strings.TrimPrefix(job.Kind, riverKindPrefix)]
	if !ok {
		p = DefaultRetryPolicy
	}
	return time.Now().Add(p.next(len(job.Errors) + 1))
}

func (w *actionWorker) Work(ctx context.Context, job *river.Job[ActionArgs]) error {
	return w.e.work(ctx, job)
}

// errData is a River errors element for a job state this package sets.
func errData(job *river.Job[ActionArgs], msg string) []byte {
	b, _ := json.Marshal(rivertype.AttemptError{At: time.Now().UTC(), Attempt: job.Attempt, Error: msg})
	return b
}

// jobEnd is the River job's new state written with a result: finalized
// unless it is parked (pending), with errData added to its errors when given.
func jobEnd(job *river.Job[ActionArgs], state rivertype.JobState, errData []byte) *store.JobEnd {
	end := &store.JobEnd{ID: job.ID, Attempt: job.Attempt, State: string(state), ErrData: errData}
	if state != rivertype.JobStatePending {
		now := time.Now()
		end.FinalizedAt = &now
	}
	return end
}

func (e *Executor) work(ctx context.Context, job *river.Job[ActionArgs]) error {
	started := time.Now()
	if job.AttemptedAt != nil {
		e.phaseDone(PhasePickup, started.Sub(*job.AttemptedAt))
	}
	kind := strings.TrimPrefix(job.Kind, riverKindPrefix)
	spec, ok := kinds[kind]
	if !ok {
		return river.JobCancel(fmt.Errorf("unknown action kind %q", kind))
	}
	item, err := e.loader.load(ctx, store.WorkKey{ActionID: job.Args.ActionID, JobID: job.ID, JobAttempt: job.Attempt})
	e.phaseDone(PhaseLoad, time.Since(started))
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("action %d does not exist", job.Args.ActionID))
	}
	if err != nil {
		return e.notSent(job, err)
	}
	a, app := item.Action, item.App

	switch a.State {
	case store.ActionQueued, store.ActionRetrying:
	case store.ActionUnknown:
		// Someone made a parked job available by hand; only the reconciler may
		// release an ambiguous send.
		return e.park(ctx, job)
	default:
		return nil // already done; River completes the job
	}

	base := store.AttemptRecordParams{
		ActionID: a.ID, RiverJobID: job.ID, JobAttempt: job.Attempt, StartedAt: time.Now(), Worker: e.cfg.WorkerID,
	}

	// An earlier execution of this job ended without recording its result:
	// the process died, maybe after its call reached Khoros. A blind resend of
	// a respond, form or note could reach the customer twice.
	// The row written here stands in for the lost result, so this check
	// passes once the reconciler releases the job.
	if !spec.idempotent && !item.PreviousRecorded {
		reason := fmt.Sprintf("the previous execution (job attempt %d) ended without recording its result; its call may have reached Khoros, so the reconciler decides", job.Attempt-1)
		base.Outcome = store.OutcomeUnknown
		base.Error = reason
		base.NewState = store.ActionUnknown
		base.LastError = &reason
		return e.finish(job, &result{attempt: base, job: jobEnd(job, rivertype.JobStatePending, nil)}, verdict{outcome: store.OutcomeUnknown})
	}

	now := time.Now()
	if app.PausedUntil != nil && app.PausedUntil.After(now) {
		return river.JobSnooze(min(app.PausedUntil.Sub(now), e.cfg.PausedRecheck))
	}
	if app.ThrottledUntil != nil && app.ThrottledUntil.After(now) {
		return river.JobSnooze(app.ThrottledUntil.Sub(now) + jitter(50*time.Millisecond))
	}

	var lease *slotLease
	if app.ConcurrencyLimit != nil {
		var err error
		if lease, err = e.acquireSlot(ctx, app.ID, *app.ConcurrencyLimit, job.ID); err != nil {
			return e.notSent(job, err)
		}
		if lease == nil {
			if err := e.waitForSlot(ctx, app.ID, job.ID); err != nil {
				return e.notSent(job, err)
			}
			return river.JobSnooze(slotPark)
		}
	}
	releaseEarly := func() { e.releaseSlot(ctx, lease) }
	if app.RateLimit != nil {
		wait, ok, err := e.cfg.Store.AppRateReserve(ctx, e.cfg.Pool, app.ID, e.cfg.RateMaxWait)
		if err != nil {
			releaseEarly()
			return e.notSent(job, err)
		}
		if !ok {
			releaseEarly()
			return river.JobSnooze(max(wait, time.Millisecond) + jitter(10*time.Millisecond))
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				releaseEarly()
				return e.notSent(job, ctx.Err())
			}
		}
	}

	client, err := e.cfg.Apps.Client(app)
	if errors.Is(err, appclient.ErrNoToken) {
		releaseEarly()
		return e.pauseApp(ctx, app.ID, a.ID, "app has no token; set one with botq token set", "token_unauthorized")
	}
	if err != nil {
		releaseEarly()
		return e.notSent(job, err)
	}
	path, err := spec.path(app.ID, a.Payload)
	if err != nil {
		releaseEarly()
		return river.JobCancel(fmt.Errorf("build request path: %w", err))
	}
	var body any
	if spec.body {
		body = json.RawMessage(a.Payload)
	}

	base.StartedAt = time.Now()
	var okb okBody
	res, callErr := client.Do(ctx, spec.method, path, body, &okb)
	base.Duration = time.Since(base.StartedAt)
	// The limit counts calls in flight: the call is over, so its slot is
	// free now, not once its result commits.
	releaseEarly()
	v := classify(kind, okb, res, callErr)
	if o := e.cfg.Observer; o != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		o.CallDone(app.ID, kind, v.outcome, status, base.Duration)
	}

	r := &result{}
	base.WireSent = callErr == nil || botapi.Sent(callErr)
	base.Outcome = v.outcome
	base.Error = v.reason
	base.ResponseExcerpt = excerpt(callErr)
	if res != nil {
		base.HTTPStatus = res.StatusCode
		base.RequestID = res.RequestID
	}
	if v.outcome == store.OutcomeRetry && job.Attempt >= job.MaxAttempts {
		v.state = store.ActionFailed
		v.reason = fmt.Sprintf("gave up after %d attempts: %s", job.Attempt, v.reason)
	}
	base.NewState = v.state
	if v.state != "" {
		reason := v.reason
		base.LastError = &reason
	}
	r.attempt = base
	if base.RequestID != "" && v.requestState != "" {
		next := time.Now()
		r.request = &store.RequestUpsertParams{
			RequestID: base.RequestID, AppID: app.ID, ActionID: &a.ID, State: v.requestState,
			HTTPStatus: base.HTTPStatus, NextCheckAt: &next,
		}
	}

	switch {
	case v.unauthorized:
		return e.unauthorized(ctx, job, item, r)
	case v.outcome == store.OutcomeOK:
		r.job = jobEnd(job, rivertype.JobStateCompleted, nil)
		r.extra = e.tokenEffects(kind, app.ID, a.ID, okb, base.RequestID)
	case v.outcome == store.OutcomeCancel:
		r.job = jobEnd(job, rivertype.JobStateCancelled, errData(job, v.reason))
	case v.outcome == store.OutcomeRetry && v.state == store.ActionFailed:
		r.job = jobEnd(job, rivertype.JobStateDiscarded, errData(job, v.reason))
	case v.outcome == store.OutcomeUnknown:
		r.job = jobEnd(job, rivertype.JobStatePending, nil)
	}
	if v.throttle > 0 {
		until := time.Now().Add(v.throttle)
		appID := app.ID
		r.extra = chain(r.extra, func(ctx context.Context, tx pgx.Tx) error {
			return e.cfg.Store.AppThrottle(ctx, tx, appID, until)
		})
	}
	return e.finish(job, r, v)
}

// notSentRetry is how soon a job that failed before its call tries again.
const notSentRetry = time.Second

// notSent ends an execution that failed before its call (a database error,
// no client, the context ending while it waited for a limit) with a snooze,
// not an error: an error would use up the attempt without an attempt row,
// and the next execution would take the job for one whose call may have
// reached Khoros (a respond, form or note would wait for the reconciler).
// Nothing was sent, so nothing is recorded; the log says why.
func (e *Executor) notSent(job *river.Job[ActionArgs], err error) error {
	e.cfg.Logger.Warn().Err(err).Int64("action_id", job.Args.ActionID).Int64("job_id", job.ID).
		Msg("jobs: An action failed before its call; it tries again soon without using an attempt")
	return river.JobSnooze(notSentRetry + jitter(notSentRetry))
}

// finish writes the result and returns what River should do with the job.
func (e *Executor) finish(job *river.Job[ActionArgs], r *result, v verdict) error {
	// On its last attempt River would discard the job on an error, so its
	// worker waits for the commit.
	r.early = r.job != nil && job.Attempt < job.MaxAttempts
	if r.early {
		e.handedOff.Store(handoffKey{job.ID, job.Attempt}, struct{}{})
	}
	if err := e.submit(r); err != nil {
		e.handedOff.Delete(handoffKey{job.ID, job.Attempt})
		return fmt.Errorf("%w: %v", errResultNotSaved, err)
	}
	switch {
	case r.early:
		return errHandedOff
	case v.outcome == store.OutcomeSnooze:
		return river.JobSnooze(v.snooze)
	case v.outcome == store.OutcomeRetry && r.job == nil:
		return errors.New(v.reason)
	}
	return nil
}

// submit hands r to the result writer and waits until it is written (see
// result.early).
func (e *Executor) submit(r *result) error {
	start := time.Now()
	err := e.writer.submit(r)
	e.phaseDone(PhaseResult, time.Since(start))
	return err
}

// phaseDone reports a phase to the observer. A negative pickup (Postgres'
// clock ahead of this machine's) is reported as zero.
func (e *Executor) phaseDone(p Phase, d time.Duration) {
	if o := e.cfg.Observer; o != nil {
		o.PhaseDone(p, max(d, 0))
	}
}

// unauthorized handles a 401: the attempt is recorded without using one of
// the job's attempts; then the token is reloaded or refreshed once, and if
// that fails the app is paused (with an event) instead of burning attempts.
func (e *Executor) unauthorized(ctx context.Context, job *river.Job[ActionArgs], item *store.WorkItem, r *result) error {
	app := item.App
	if err := e.submit(r); err != nil {
		return fmt.Errorf("%w: %v", errResultNotSaved, err)
	}
	if e.cfg.Apps.External(app.ID) {
		return e.pauseApp(ctx, app.ID, item.Action.ID, "Khoros refused the app's token (401); it comes from the environment or a file: replace it, then botq app resume", "token_unauthorized")
	}
	recently := app.TokenRefreshedAt != nil && time.Since(*app.TokenRefreshedAt) < time.Minute
	if !recently {
		res, err := e.cfg.Apps.Refresh(ctx, app.ID, app.TokenVersion, "botq",
			fmt.Sprintf("Khoros answered 401 to action %d", item.Action.ID))
		if err == nil && res.App != nil {
			// A new token (ours, or another process's): try again now.
			return river.JobSnooze(0)
		}
		if ctx.Err() != nil {
			// The job's time ran out before its refresh was tried: the jobs that
			// got a 401 together refresh one after the other under the app's
			// lock. Whether a refresh helps is not known yet, so the app is not
			// paused; the job looks again soon (paused by then, or with a new
			// token) without using an attempt.
			e.cfg.Logger.Warn().Err(err).Str("app_id", app.ID).Int64("action_id", item.Action.ID).
				Msg("jobs: No time left to refresh the token after a 401; the action tries again soon without using an attempt")
			return river.JobSnooze(notSentRetry + jitter(notSentRetry))
		}
		e.cfg.Logger.Warn().Err(err).Str("app_id", app.ID).Msg("jobs: Token refresh after a 401 failed")
	}
	return e.pauseApp(ctx, app.ID, item.Action.ID, "Khoros refused the app's token (401) and a refresh did not help; set a new token with botq token set", "token_unauthorized")
}

// pauseApp pauses the app until an operator acts, records why, and snoozes
// the job without using an attempt. When the pause cannot be written (a
// database error, the job's time run out) the job snoozes briefly instead:
// an error would use one of its attempts for a call that was never made or
// was refused for the app's token, not for the action.
func (e *Executor) pauseApp(ctx context.Context, appID string, actionID int64, reason, event string) error {
	if err := e.cfg.Store.AppPauseUnlessPaused(ctx, e.cfg.Pool, appID, actionID, event, reason); err != nil {
		e.cfg.Logger.Warn().Err(err).Str("app_id", appID).Int64("action_id", actionID).
			Msg("jobs: Could not pause the app; the action tries again soon without using an attempt")
		return river.JobSnooze(notSentRetry + jitter(notSentRetry))
	}
	e.cfg.Logger.Warn().Str("app_id", appID).Int64("action_id", actionID).Msg("jobs: App paused: " + reason)
	return river.JobSnooze(e.cfg.PausedRecheck)
}

// park returns a running job to `pending`, where only the reconciler moves
// it.
func (e *Executor) park(ctx context.Context, job *river.Job[ActionArgs]) error {
	return pgx.BeginFunc(ctx, e.cfg.Pool, func(tx pgx.Tx) error {
		_, err := e.writer.driver.UnwrapExecutor(tx).JobSetStateIfRunningMany(ctx, &riverdriver.JobSetStateIfRunningManyParams{
			ID: []int64{job.ID}, Attempt: []*int{nil}, ErrData: [][]byte{nil}, FinalizedAt: []*time.Time{nil},
			MetadataDoMerge: []bool{false}, MetadataUpdates: [][]byte{nil}, ScheduledAt: []*time.Time{nil},
			State: []rivertype.JobState{rivertype.JobStatePending}, Schema: e.cfg.Store.Schema(),
		})
		return err
	})
}

// tokenEffects are the database side effects of a successful token action.
func (e *Executor) tokenEffects(kind, appID string, actionID int64, okb okBody, requestID string) func(context.Context, pgx.Tx) error {
	switch kind {
	case KindTokenRefresh:
		tok := okb.Data.Token
		if tok == "" || e.cfg.Apps.External(appID) {
			return nil
		}
		return func(ctx context.Context, tx pgx.Tx) error {
			k := e.cfg.Apps.Keyring()
			if k == nil {
				return errors.New("store refreshed token: no encryption key is configured (BOTQ_ENCRYPTION_KEY)")
			}
			var exp *time.Time
			if okb.Data.ExpiresAtMillis > 0 {
				t := time.UnixMilli(okb.Data.ExpiresAtMillis)
				exp = &t
			} else if t, err := botapi.TokenExpiry(tok); err == nil {
				exp = &t
			}
			app, err := e.cfg.Store.AppSetToken(ctx, tx, appID, k.Seal(appID, tok), k.ID(), exp)
			if err != nil {
				return err
			}
			_, err = e.cfg.Store.EventInsert(ctx, tx, store.EventInsertParams{
				AppID: appID, ActionID: &actionID, Kind: "token_refresh", Actor: "botq", Reason: "token_refresh action",
				After: map[string]any{"expires_at": exp, "token_version": app.TokenVersion, "request_id": requestID},
			})
			return err
		}
	case KindTokenRevoke:
		return func(ctx context.Context, tx pgx.Tx) error {
			if err := e.cfg.Store.AppClearToken(ctx, tx, appID); err != nil {
				return err
			}
			reason := "tokens revoked by a token_revoke action; bootstrap a new one and set it with botq token set"
			if _, err := e.cfg.Store.AppPause(ctx, tx, appID, store.Forever, reason); err != nil {
				return err
			}
			_, err := e.cfg.Store.EventInsert(ctx, tx, store.EventInsertParams{
				AppID: appID, ActionID: &actionID, Kind: "token_revoke", Actor: "botq", Reason: reason,
				After: map[string]any{"request_id": requestID},
			})
			return err
		}
	}
	return nil
}

func chain(fs ...func(context.Context, pgx.Tx) error) func(context.Context, pgx.Tx) error {
	return func(ctx context.Context, tx pgx.Tx) error {
		for _, f := range fs {
			if f == nil {
				continue
			}
			if err := f(ctx, tx); err != nil {
				return err
			}
		}
		return nil
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}
