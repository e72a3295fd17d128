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
	"github.com/riverqueue/river/rivertype"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/appclient"
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
	err := w.e.work(ctx, job)
	if err != nil && !errors.Is(err, errHandedOff) && !errors.Is(err, errResultNotSaved) && cancelledRemotely(ctx) {
		return w.e.cancelledWhileRunning(job, err)
	}
	return err
}

// cancelledRemotely reports whether River cancelled the execution: River's
// JobCancel of a running job (River UI, another River client, SQL with
// River's NOTIFY) cancels the worker's context and nothing else.
func cancelledRemotely(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), rivertype.ErrJobCancelledRemotely)
}

// cancelledWhileRunning honours River's JobCancel of a job whose execution
// ended without a final result of its own: its call was never made (the
// context ended while it waited for a limit), or it will be retried or
// snoozed. River would cancel the job when Work returns and leave its action
// queued or retrying for ever; the action is cancelled with it instead. An
// execution whose call may have reached Khoros does not come here: its
// result parks the job (the action is unknown), and the reconciler cancels
// it once no record of the send shows up (River's JobCancel marks the job's
// metadata).
func (e *Executor) cancelledWhileRunning(job *river.Job[ActionArgs], err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reason := fmt.Sprintf("River cancelled its job (River's JobCancel) during attempt %d; the execution ended without sending (%v)", job.Attempt, err)
	_, cerr := e.cfg.Store.ActionCancelRunning(ctx, e.cfg.Pool, job.Args.ActionID, job.ID, job.Attempt, "river", reason)
	if cerr != nil {
		e.cfg.Logger.Warn().Err(cerr).Int64("action_id", job.Args.ActionID).Int64("job_id", job.ID).
			Msg("jobs: River cancelled a running job; its action could not be cancelled with it")
		return err
	}
	e.cfg.Logger.Warn().Int64("action_id", job.Args.ActionID).Int64("job_id", job.ID).
		Msg("jobs: River cancelled a running job; its action is cancelled")
	return river.JobCancel(err)
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

// execution is one run of a job: its action and app as loaded, the kind's
// spec, and the attempt row it builds.
type execution struct {
	job  *river.Job[ActionArgs]
	kind string
	spec kindSpec
	item *store.WorkItem
	base store.AttemptRecordParams
}

// call is what one Bot v3 call returned.
type call struct {
	res *botapi.Response
	ok  okBody
	err error
}

// work runs an execution in four stages, the way River splits executing a
// job from reporting it: start (load), check (may it call now?), the call
// with its limits, and the report of its verdict. Each stage that ends the
// execution returns what River should do with the job.
func (e *Executor) work(ctx context.Context, job *river.Job[ActionArgs]) error {
	x, stop := e.start(ctx, job)
	if stop != nil {
		return stop
	}
	if stop := e.check(x); stop != nil {
		return stop
	}
	c, stop := e.callWithLimits(ctx, x)
	if stop != nil {
		return stop
	}
	return e.report(ctx, x, c)
}

// start loads the job's action and app.
func (e *Executor) start(ctx context.Context, job *river.Job[ActionArgs]) (*execution, error) {
	started := time.Now()
	if job.AttemptedAt != nil {
		e.phaseDone(PhasePickup, started.Sub(*job.AttemptedAt))
	}
	kind := strings.TrimPrefix(job.Kind, riverKindPrefix)
	spec, ok := kinds[kind]
	if !ok {
		return nil, river.JobCancel(fmt.Errorf("unknown action kind %q", kind))
	}
	item, err := e.loader.load(ctx, store.WorkKey{ActionID: job.Args.ActionID, JobID: job.ID, JobAttempt: job.Attempt})
	e.phaseDone(PhaseLoad, time.Since(started))
	if errors.Is(err, store.ErrNotFound) {
		return nil, river.JobCancel(fmt.Errorf("action %d does not exist", job.Args.ActionID))
	}
	if err != nil {
		return nil, e.notSent(job, err)
	}
	switch item.Action.State {
	case store.ActionQueued, store.ActionRetrying:
	case store.ActionUnknown:
		// Someone made a parked job available by hand; only the reconciler may
		// release an ambiguous send.
		return nil, e.park(ctx, job)
	default:
		return nil, ranAgain(job, item.Action)
	}
	return &execution{job: job, kind: kind, spec: spec, item: item, base: store.AttemptRecordParams{
		ActionID: item.Action.ID, RiverJobID: job.ID, JobAttempt: job.Attempt, StartedAt: time.Now(), Worker: e.cfg.WorkerID,
	}}, nil
}

// check decides whether the execution may call now: not after an execution
// that may have sent without recording it, not while the app is paused or
// throttled.
func (e *Executor) check(x *execution) error {
	job, app := x.job, x.item.App
	// An earlier execution of this job ended without recording its result:
	// the process died, maybe after its call reached Khoros. A blind resend of
	// a respond, form or note could reach the customer twice.
	// The row written here stands in for the lost result, so this check
	// passes once the reconciler releases the job.
	if !x.spec.idempotent && !x.item.PreviousRecorded {
		reason := fmt.Sprintf("the previous execution (job attempt %d) ended without recording its result; its call may have reached Khoros, so the reconciler decides", job.Attempt-1)
		base := x.base
		base.Outcome, base.Error, base.NewState, base.LastError = store.OutcomeUnknown, reason, store.ActionUnknown, &reason
		return e.finish(job, &result{attempt: base, job: jobEnd(job, rivertype.JobStatePending, nil)}, verdict{outcome: store.OutcomeUnknown})
	}
	now := time.Now()
	if app.PausedUntil != nil && app.PausedUntil.After(now) {
		return river.JobSnooze(min(app.PausedUntil.Sub(now), e.cfg.PausedRecheck))
	}
	if app.ThrottledUntil != nil && app.ThrottledUntil.After(now) {
		return river.JobSnooze(app.ThrottledUntil.Sub(now) + jitter(50*time.Millisecond))
	}
	return nil
}

// callWithLimits takes the app's concurrency and rate slots, then makes the
// call. The concurrency slot counts calls in flight, so it is freed as soon
// as the call returns, not once its result commits.
func (e *Executor) callWithLimits(ctx context.Context, x *execution) (*call, error) {
	app := x.item.App
	var lease *slotLease
	if app.ConcurrencyLimit != nil {
		var err error
		if lease, err = e.acquireSlot(ctx, app.ID, *app.ConcurrencyLimit, x.job.ID); err != nil {
			return nil, e.notSent(x.job, err)
		}
		if lease == nil {
			if err := e.waitForSlot(ctx, app.ID, x.job.ID); err != nil {
				return nil, e.notSent(x.job, err)
			}
			return nil, river.JobSnooze(slotPark)
		}
	}
	defer e.releaseSlot(ctx, lease)
	if app.RateLimit != nil {
		if stop := e.waitForRate(ctx, x); stop != nil {
			return nil, stop
		}
	}
	return e.call(ctx, x)
}

// waitForRate takes the app's next rate slot, sleeping for it when it is
// near and snoozing the job when it is not.
func (e *Executor) waitForRate(ctx context.Context, x *execution) error {
	wait, ok, err := e.cfg.Store.AppRateReserve(ctx, e.cfg.Pool, x.item.App.ID, e.cfg.RateMaxWait)
	if err != nil {
		return e.notSent(x.job, err)
	}
	if !ok {
		return river.JobSnooze(max(wait, time.Millisecond) + jitter(10*time.Millisecond))
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return e.notSent(x.job, ctx.Err())
		}
	}
	return nil
}

// call makes the execution's one Bot v3 call.
func (e *Executor) call(ctx context.Context, x *execution) (*call, error) {
	a, app := x.item.Action, x.item.App
	client, err := e.cfg.Apps.Client(app)
	if errors.Is(err, appclient.ErrNoToken) {
		return nil, e.pauseApp(ctx, app.ID, a.ID, "app has no token; set one with botq token set", "token_unauthorized")
	}
	if err != nil {
		return nil, e.notSent(x.job, err)
	}
	path, err := x.spec.path(app.ID, a.Payload)
	if err != nil {
		return nil, river.JobCancel(fmt.Errorf("build request path: %w", err))
	}
	var body any
	if x.spec.body {
		body = json.RawMessage(a.Payload)
	}
	c := &call{}
	x.base.StartedAt = time.Now()
	c.res, c.err = client.Do(ctx, x.spec.method, path, body, &c.ok)
	x.base.Duration = time.Since(x.base.StartedAt)
	if errors.Is(c.err, appclient.ErrNoToken) {
		// A stored token that is missing is found here, when the call asks
		// for it: nothing was sent, and every retry would fail alike, so
		// the app pauses instead of using the job's attempts.
		return nil, e.pauseApp(ctx, app.ID, a.ID, "app has no token; set one with botq token set", "token_unauthorized")
	}
	return c, nil
}

// report classifies the call, builds its result and hands it to the
// result writer.
func (e *Executor) report(ctx context.Context, x *execution, c *call) error {
	job, a, app := x.job, x.item.Action, x.item.App
	v := classify(x.kind, c.ok, c.res, c.err)
	if o := e.cfg.Observer; o != nil {
		status := 0
		if c.res != nil {
			status = c.res.StatusCode
		}
		o.CallDone(app.ID, x.kind, v.outcome, status, x.base.Duration)
	}
	if v.outcome == store.OutcomeRetry && job.Attempt >= job.MaxAttempts {
		v.state = store.ActionFailed
		v.reason = fmt.Sprintf("gave up after %d attempts: %s", job.Attempt, v.reason)
	}
	att := x.attempt(c, v)
	r := &result{attempt: att, request: requestOf(att, app.ID, v)}
	switch {
	case v.unauthorized:
		return e.unauthorized(ctx, job, x.item, r)
	case v.outcome == store.OutcomeOK:
		r.job = jobEnd(job, rivertype.JobStateCompleted, nil)
		r.extra = e.tokenEffects(x.kind, app.ID, a.ID, c.ok, r.attempt.RequestID)
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

// attempt is the execution's attempt row for call c and its verdict.
func (x *execution) attempt(c *call, v verdict) store.AttemptRecordParams {
	base := x.base
	base.WireSent = c.err == nil || botapi.Sent(c.err)
	base.Outcome = v.outcome
	base.Error = v.reason
	base.ResponseExcerpt = excerpt(c.err)
	if c.res != nil {
		base.HTTPStatus = c.res.StatusCode
		base.RequestID = c.res.RequestID
	}
	base.NewState = v.state
	if v.state != "" {
		reason := v.reason
		base.LastError = &reason
	}
	return base
}

// requestOf is the request record the call's answer leaves, if any (see
// refusedRecord).
func requestOf(att store.AttemptRecordParams, appID string, v verdict) *store.RequestUpsertParams {
	if att.RequestID == "" || v.requestState == "" {
		return nil
	}
	actionID := att.ActionID
	req := &store.RequestUpsertParams{
		RequestID: att.RequestID, AppID: appID, ActionID: &actionID, State: v.requestState,
		HTTPStatus: att.HTTPStatus, Reason: v.requestReason,
	}
	if v.requestState == store.RequestPending {
		next := time.Now()
		req.NextCheckAt = &next
	}
	return req
}

// ranAgain ends the execution of a job whose action is over: River ran the
// job again (River UI's Retry, River's JobRetry, SQL). Nothing is sent. The
// job of a failed or cancelled action is cancelled with the reason in its
// errors, not completed: River UI would show a failed action as completed.
func ranAgain(job *river.Job[ActionArgs], a *store.Action) error {
	switch a.State {
	case store.ActionFailed, store.ActionCancelled:
		return river.JobCancel(fmt.Errorf("action %d is %s: its job ran again outside botq and sent nothing; "+
			"to send it again, replay it (botq replay %d --reason ...)", a.ID, a.State, a.ID))
	}
	return nil // sent or succeeded: River completes the job
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
	if app.TokenRefreshedAt != nil && time.Since(*app.TokenRefreshedAt) < time.Minute {
		// A token that new is not refreshed again: Khoros refused a token
		// it had just issued or been given, and another refresh would only
		// loop.
		return e.pauseApp(ctx, app.ID, item.Action.ID, fmt.Sprintf(
			"Khoros refused the app's token (401), which was set or refreshed %s ago, so botq did not refresh it again; set a new token with botq token set",
			time.Since(*app.TokenRefreshedAt).Round(time.Second)), "token_unauthorized")
	}
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
	return e.pauseApp(ctx, app.ID, item.Action.ID, fmt.Sprintf(
		"Khoros refused the app's token (401) and botq's refresh of it failed (%v); set a new token with botq token set", err),
		"token_unauthorized")
}

// pauseApp pauses the app until an operator acts, records why, and snoozes
// the job without using an attempt. When the pause cannot be written (a
// database error, the job's time run out) the job snoozes briefly instead:
// an error would use one of its attempts for a call that was never made or
// was refused for the app's token, not for the action.
func (e *Executor) pauseApp(ctx context.Context, appID string, actionID int64, reason, event string) error {
	paused, err := e.cfg.Store.AppPauseUnlessPaused(ctx, e.cfg.Pool, appID, actionID, event, reason)
	if err != nil {
		e.cfg.Logger.Warn().Err(err).Str("app_id", appID).Int64("action_id", actionID).
			Msg("jobs: Could not pause the app; the action tries again soon without using an attempt")
		return river.JobSnooze(notSentRetry + jitter(notSentRetry))
	}
	if paused {
		e.cfg.Logger.Warn().Str("app_id", appID).Int64("action_id", actionID).Msg("jobs: App paused: " + reason)
	} else {
		e.cfg.Logger.Debug().Str("app_id", appID).Int64("action_id", actionID).Str("reason", reason).
			Msg("jobs: App already paused; the job waits")
	}
	return river.JobSnooze(e.cfg.PausedRecheck)
}

// park returns a running job to `pending`, where only the reconciler moves
// it. River's update of the job, once the worker returns, then changes
// nothing: it changes only a running job.
func (e *Executor) park(ctx context.Context, job *river.Job[ActionArgs]) error {
	return e.cfg.Store.JobPark(ctx, e.cfg.Pool, job.ID)
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
