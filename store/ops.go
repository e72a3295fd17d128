package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrInFlight is returned when an action cannot be changed because its Bot
// v3 call is being made right now. It matches ErrConflict.
var ErrInFlight = fmt.Errorf("%w: in flight; try again when it is not", ErrConflict)

// ActionCancel cancels an action that is not in flight without asking
// Khoros anything: ActionCancelChecked with no check. An unknown action is
// then cancelled possibly sent.
func (s *Store) ActionCancel(ctx context.Context, db TxDB, id int64, actor, reason string) (*Action, error) {
	a, _, err := s.ActionCancelChecked(ctx, db, id, actor, reason, nil)
	return a, err
}

// SendCheck is what Khoros said, just before a cancel, of an unknown
// action's send that it does not hold a record of (reconciler's CheckSend
// asks it; a record found settles the action instead, and the cancel is
// refused).
type SendCheck struct {
	// ReleaseCount is the action's release count when Khoros was asked. A
	// check speaks of that send only: the action may have been released and
	// sent again since, and then NotSent says nothing of the new send.
	ReleaseCount int
	// NotSent: a listing of the app's BOT-origin records covering the send,
	// made once its grace period was over, holds no record matching it, so
	// the send never reached Khoros (the reconciler would release it).
	NotSent bool
	// Note says how Khoros was asked and what came of it, for the cancel's
	// event and answer: why the send may have arrived, or why it did not.
	Note string
}

// CancelNoCheck is the note of a cancel of an unknown action that did not
// ask Khoros.
const CancelNoCheck = "Khoros was not asked whether the send arrived"

// ActionCancelChecked cancels an action that is not in flight: queued,
// retrying or unknown (parked for the reconciler), with a River job that is
// not running. The action becomes cancelled, its River job cancelled, and a
// `cancel` event records actor and reason, all in one transaction (a
// savepoint when db is a transaction). A job still running after
// inFlightWait is ErrInFlight; an action that is sent or finished is
// ErrConflict; an unknown id ErrNotFound.
//
// An unknown action's call reached the wire and no answer came back, so
// its message may have been delivered. check is what Khoros said of that
// send: only when it shows that the send never arrived (NotSent, for the
// send the action is still waiting on) is the cancel clean; otherwise (no
// check, Khoros could not answer, the grace period is not over) the action
// is cancelled possibly sent (Action.PossiblySent), which a replay needs an
// explicit option for. note is what the cancel event records of the send
// ("" for an action that was not unknown).
func (s *Store) ActionCancelChecked(ctx context.Context, db TxDB, id int64, actor, reason string, check *SendCheck) (a *Action, note string, err error) {
	if actor == "" {
		return nil, "", &ValidationError{Field: "actor", Message: "botq: cancel needs an actor"}
	}
	// A job whose execution ended without a call (a paused app, a snooze)
	// stays running until River's completer writes its new state, a
	// fraction of a second later, and a job whose result is being written
	// is locked for a few milliseconds: neither is a call in flight, so
	// the cancel looks again for a moment before it says so.
	deadline := time.Now().Add(inFlightWait)
	for {
		a, note, err = s.actionCancelOnce(ctx, db, id, actor, reason, check)
		if !errors.Is(err, ErrInFlight) || time.Now().After(deadline) {
			return a, note, err
		}
		t := time.NewTimer(inFlightPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, "", err
		case <-t.C:
		}
	}
}

// inFlightWait is how long a cancel waits for a running job to end before
// it answers ErrInFlight, looking every inFlightPoll.
const (
	inFlightWait = 1500 * time.Millisecond
	inFlightPoll = 100 * time.Millisecond
)

func (s *Store) actionCancelOnce(ctx context.Context, db TxDB, id int64, actor, reason string, check *SendCheck) (a *Action, note string, err error) {
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		// Lock the action, then its lane, then its job. A result batch locks
		// the actions it finishes, then their lanes, then the jobs of the
		// followers it makes available: a cancel that took a follower's job
		// before the lane would wait for the batch while the batch waited
		// for it. The batch locks its own running jobs first (JobsEnd), so
		// a job locked here is in flight: NOWAIT, not a wait in a circle.
		// River's fetch skips locked jobs, so the job cannot start while
		// this runs.
		before, err := scanAction(tx.QueryRow(ctx, s.q(`SELECT `+actionColumns+` FROM botq.action WHERE id = $1 FOR UPDATE`), id))
		if err != nil {
			return fmt.Errorf("cancel action %d: %w", id, mapError(err))
		}
		switch before.State {
		case ActionQueued, ActionRetrying, ActionUnknown:
		case ActionSent:
			return fmt.Errorf("cancel action %d: %w: Khoros accepted it already; its request awaits its final status", id, ErrConflict)
		case ActionSucceeded:
			return fmt.Errorf("cancel action %d: %w: it has already succeeded", id, ErrConflict)
		case ActionFailed:
			return fmt.Errorf("cancel action %d: %w: it has already failed", id, ErrConflict)
		default:
			return fmt.Errorf("cancel action %d: %w: it is already %s", id, ErrConflict, before.State)
		}
		jobState, err := s.cancelJob(ctx, tx, before)
		if err != nil {
			return err
		}
		possiblySent := false
		if before.State == ActionUnknown {
			possiblySent, note = sendVerdict(before, check)
		}
		if a, err = s.ActionSetState(ctx, tx, ActionSetStateParams{ID: id, From: before.State, To: ActionCancelled, PossiblySent: possiblySent}); err != nil {
			return err
		}
		after := map[string]any{"state": ActionCancelled}
		if before.State == ActionUnknown {
			after["possibly_sent"] = possiblySent
			after["send"] = note
		}
		_, err = s.EventInsert(ctx, tx, EventInsertParams{
			AppID: before.AppID, ActionID: &before.ID, Kind: "cancel", Actor: actor, Reason: reason,
			Before: map[string]any{"state": before.State, "job_state": jobState},
			After:  after,
		})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return a, note, nil
}

// cancelJob locks the cancelled action's lane and River job and cancels the
// job unless it is finalized, returning the job's state before ("" when it
// does not exist). A running or locked job is ErrInFlight.
func (s *Store) cancelJob(ctx context.Context, tx pgx.Tx, a *Action) (string, error) {
	if a.Lane != "" {
		if _, err := tx.Exec(ctx, s.q(`SELECT 1 FROM botq.lane WHERE app_id = $1 AND lane = $2 FOR UPDATE`), a.AppID, a.Lane); err != nil {
			return "", fmt.Errorf("cancel action %d: lock its lane: %w", a.ID, mapError(err))
		}
	}
	return s.jobLockAndCancel(ctx, tx, a)
}

// sendVerdict decides whether the cancel of the unknown action a leaves it
// possibly sent, given what Khoros said (check), and says why.
func sendVerdict(a *Action, check *SendCheck) (possiblySent bool, note string) {
	switch {
	case check == nil:
		return true, CancelNoCheck
	case check.ReleaseCount != a.ReleaseCount:
		return true, fmt.Sprintf("it was sent again (release %d) after Khoros was asked about its previous send", a.ReleaseCount)
	case check.NotSent:
		return false, check.Note
	}
	return true, check.Note
}

// AppUpsertAudited creates the app or replaces its configured settings (see
// AppUpsert) and records an `app_upsert` event by actor with the settings
// it now has, in one transaction.
func (s *Store) AppUpsertAudited(ctx context.Context, db TxDB, p AppUpsertParams, actor string) (*App, error) {
	var out *App
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		a, err := s.AppUpsert(ctx, tx, p)
		if err != nil {
			return err
		}
		out = a
		_, err = s.EventInsert(ctx, tx, EventInsertParams{
			AppID: a.ID, Kind: "app_upsert", Actor: actor,
			After: map[string]any{"region": a.Region, "base_url": a.BaseURL, "company_key": a.CompanyKey, "rate_limit": a.RateLimit,
				"rate_burst": a.RateBurst, "concurrency_limit": a.ConcurrencyLimit, "lane_on_failure": a.LaneOnFailure},
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AppPauseAudited pauses the app until until (Forever: until resumed) and
// records a `pause` event by actor, in one transaction.
func (s *Store) AppPauseAudited(ctx context.Context, db TxDB, appID string, until time.Time, actor, reason string) (*App, error) {
	var out *App
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		before, err := s.appLock(ctx, tx, appID)
		if err != nil {
			return err
		}
		if out, err = s.AppPause(ctx, tx, appID, until, reason); err != nil {
			return err
		}
		_, err = s.EventInsert(ctx, tx, EventInsertParams{
			AppID: appID, Kind: "pause", Actor: actor, Reason: reason,
			Before: map[string]any{"paused_until": before.PausedUntil, "pause_reason": before.PauseReason},
			After:  map[string]any{"paused_until": until},
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AppResumeAudited resumes the app (see AppResume) and records a `resume`
// event by actor, in one transaction.
func (s *Store) AppResumeAudited(ctx context.Context, db TxDB, appID, actor, reason string) (*App, error) {
	var out *App
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		before, err := s.appLock(ctx, tx, appID)
		if err != nil {
			return err
		}
		if out, err = s.AppResume(ctx, tx, appID); err != nil {
			return err
		}
		_, err = s.EventInsert(ctx, tx, EventInsertParams{
			AppID: appID, Kind: "resume", Actor: actor, Reason: reason,
			Before: map[string]any{"paused_until": before.PausedUntil, "pause_reason": before.PauseReason,
				"throttled_until": before.ThrottledUntil},
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AppSetTokenAudited stores a sealed token (see AppSetToken), records a
// `token_set` event by actor and, when the app was paused because Khoros
// refused its token, resumes it. resumed says whether it did.
func (s *Store) AppSetTokenAudited(ctx context.Context, db TxDB, appID string, sealed []byte, keyID string, expiresAt *time.Time, actor, reason string) (app *App, resumed bool, err error) {
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		before, err := s.appLock(ctx, tx, appID)
		if err != nil {
			return err
		}
		if app, err = s.AppSetToken(ctx, tx, appID, sealed, keyID, expiresAt); err != nil {
			return err
		}
		if _, err = s.EventInsert(ctx, tx, EventInsertParams{
			AppID: appID, Kind: "token_set", Actor: actor, Reason: reason,
			Before: map[string]any{"token_version": before.TokenVersion, "expires_at": before.TokenExpiresAt},
			After:  map[string]any{"token_version": app.TokenVersion, "expires_at": expiresAt, "key_id": keyID},
		}); err != nil {
			return err
		}
		if !pausedForToken(before) {
			return nil
		}
		if app, err = s.AppResume(ctx, tx, appID); err != nil {
			return err
		}
		resumed = true
		_, err = s.EventInsert(ctx, tx, EventInsertParams{
			AppID: appID, Kind: "resume", Actor: actor, Reason: "a new token was set",
			Before: map[string]any{"paused_until": before.PausedUntil, "pause_reason": before.PauseReason},
		})
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return app, resumed, nil
}

// AppRevokeTokenAudited forgets the app's stored token after Khoros revoked
// it, pauses the app until an operator sets a new one, and records a
// `token_revoke` event by actor.
func (s *Store) AppRevokeTokenAudited(ctx context.Context, db TxDB, appID, actor, reason string) (*App, error) {
	var out *App
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		before, err := s.appLock(ctx, tx, appID)
		if err != nil {
			return err
		}
		if err := s.AppClearToken(ctx, tx, appID); err != nil {
			return err
		}
		if out, err = s.AppPause(ctx, tx, appID, Forever, "token revoked; set a new one with botq token set or bootstrap"); err != nil {
			return err
		}
		_, err = s.EventInsert(ctx, tx, EventInsertParams{
			AppID: appID, Kind: "token_revoke", Actor: actor, Reason: reason,
			Before: map[string]any{"token_version": before.TokenVersion, "expires_at": before.TokenExpiresAt},
			After:  map[string]any{"token_version": out.TokenVersion, "paused_until": "until resumed"},
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// pausedForToken reports whether the app is paused because Khoros refused
// or revoked its token, which a new token cures.
func pausedForToken(a *App) bool {
	if a.PausedUntil == nil || !a.PausedUntil.After(time.Now()) {
		return false
	}
	// The worker's pause reasons for a refused token mention the 401, and a
	// revoke's mentions the token.
	return strings.Contains(a.PauseReason, "401") || strings.Contains(a.PauseReason, "token")
}

// AppPauseUnlessPaused pauses the app until resumed and records an event
// of kind by botq about actionID, unless the app is paused already. The app
// row is locked first: workers refused at the same moment would otherwise
// each see it unpaused and each record a pause. paused reports whether this
// call paused it.
func (s *Store) AppPauseUnlessPaused(ctx context.Context, db TxDB, appID string, actionID int64, kind, reason string) (paused bool, err error) {
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		before, err := s.appLock(ctx, tx, appID)
		if err != nil {
			return err
		}
		if before.PausedUntil != nil && before.PausedUntil.After(time.Now()) {
			return nil // already paused; one event is enough
		}
		paused = true
		if _, err := s.AppPause(ctx, tx, appID, Forever, reason); err != nil {
			return err
		}
		_, err = s.EventInsert(ctx, tx, EventInsertParams{
			AppID: appID, ActionID: &actionID, Kind: kind, Actor: "botq", Reason: reason,
			After: map[string]any{"paused_until": "until resumed"},
		})
		return err
	})
	return paused && err == nil, err
}

func (s *Store) appLock(ctx context.Context, tx pgx.Tx, appID string) (*App, error) {
	a, err := scanApp(tx.QueryRow(ctx, s.q(`SELECT `+appColumns+` FROM botq.app WHERE id = $1 FOR UPDATE`), appID))
	if err != nil {
		return nil, fmt.Errorf("get app %q: %w", appID, mapError(err))
	}
	return a, nil
}
