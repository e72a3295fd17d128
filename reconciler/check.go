package reconciler

import (
	"context"
	"fmt"
	"time"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/store"
)

// AmbiguousNow is what ResolveAmbiguousNow learnt of an app's ambiguous
// sends.
type AmbiguousNow struct {
	// Listed: Khoros answered the listing.
	Listed bool
	// Resolved counts the sends matched to a record, whose actions took the
	// record's state.
	Resolved int
	// NeverArrived are the sends the listing shows never reached Khoros:
	// their grace period is over and no record matches them. They are left
	// unknown, as they were when listed (the next reconcile run releases
	// them).
	NeverArrived []store.UnknownAction
	// Waiting are the sends with no record yet, within their grace period:
	// one may still appear.
	Waiting []store.UnknownAction
}

// ResolveAmbiguousNow asks Khoros about the app's ambiguous sends at once,
// with one listing of its BOT-origin records covering them, and settles
// those it finds a record of, as a reconcile run does (the same matching);
// unlike a run it releases nothing. An error says that Khoros could not be
// asked (a paused app is not called, as a run does not call it; no usable
// token) or that the listing failed, and then Listed is false; a send that
// could not be settled is an error too, joined, with the rest of the
// result still valid. Safe to call while a reconcile run works on the same
// app: a send both settle is settled once.
func (r *Reconciler) ResolveAmbiguousNow(ctx context.Context, appID string) (AmbiguousNow, error) {
	var out AmbiguousNow
	now := r.cfg.Now()
	app, err := r.cfg.Store.AppGet(ctx, r.cfg.Pool, appID)
	if err != nil {
		return out, err
	}
	if app.PausedUntil != nil && app.PausedUntil.After(now) {
		return out, fmt.Errorf("app %q is paused until %s (%s): botq makes no calls for it", appID,
			app.PausedUntil.UTC().Format(time.RFC3339), app.PauseReason)
	}
	client, err := r.cfg.Apps.Client(app)
	if err != nil {
		return out, err
	}
	m, err := r.newAmbiguousMatch(ctx, appID)
	if err != nil || len(m.unknown) == 0 {
		return out, err
	}
	since := m.unknown[0].CreatedAt
	for _, u := range m.unknown {
		since = minTime(since, u.CreatedAt)
	}
	opts := &botapi.ListRequestsOptions{From: listWindow(now, since, r.cfg.MaxWindow), Origin: botapi.OriginBot}
	read := 0
	start := time.Now()
	res, err := client.ListRequestsEach(ctx, appID, opts, func(rec *botapi.RequestRecord) error {
		read++
		m.consider(rec)
		return nil
	})
	r.observeCall(appID, "list", res, time.Since(start))
	r.observeFetched(appID, "list", read)
	if err != nil {
		return out, fmt.Errorf("list requests: %w", err)
	}
	out.Listed = true
	st, err := r.resolveAmbiguous(ctx, m, now, &out)
	out.Resolved = st.Resolved
	return out, err
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// CheckSend asks Khoros, just before the action is cancelled, about its
// send when it is unknown (ResolveAmbiguousNow on its app), for
// store.ActionCancelChecked; it returns nil for an action that is not
// unknown. A send Khoros holds a record of settles the action by that
// record, and CheckSend returns an error matching store.ErrConflict that
// names the request: the message reached Khoros, and the cancel is refused.
// Otherwise the check says whether the send never arrived (a listing made
// after its grace period holds no record of it) or may have (Khoros could
// not answer, or the grace period is not over); Khoros' failures are told in
// the check's Note, not returned. Errors are the database's, or
// store.ErrNotFound for an unknown id.
func (r *Reconciler) CheckSend(ctx context.Context, actionID int64) (*store.SendCheck, error) {
	a, err := r.cfg.Store.ActionGet(ctx, r.cfg.Pool, actionID)
	if err != nil || a.State != store.ActionUnknown {
		return nil, err
	}
	res, askErr := r.ResolveAmbiguousNow(ctx, a.AppID)
	a, err = r.cfg.Store.ActionGet(ctx, r.cfg.Pool, actionID)
	if err != nil {
		return nil, err
	}
	switch a.State {
	case store.ActionUnknown:
	case store.ActionSent, store.ActionSucceeded, store.ActionFailed:
		r.cfg.Logger.Info().Str("app_id", a.AppID).Int64("action_id", a.ID).Str("request_id", a.RequestID).Str("state", string(a.State)).
			Msg("reconciler: An unknown action about to be cancelled reached Khoros: it is settled by its request record, not cancelled")
		return nil, fmt.Errorf("cancel action %d: %w: it reached Khoros: request %s matches its unanswered send, and the action is %s by it",
			a.ID, store.ErrConflict, a.RequestID, a.State)
	default:
		return nil, nil // released meanwhile: the cancel goes by its new state
	}
	check := &store.SendCheck{ReleaseCount: a.ReleaseCount}
	grace := r.cfg.AmbiguousGrace
	for _, u := range res.NeverArrived {
		if u.ID == a.ID && u.ReleaseCount == a.ReleaseCount {
			check.NotSent = true
			check.Note = fmt.Sprintf("Khoros holds no record matching the send, %s (reconciler.ambiguous_grace) after it: it never reached Khoros", grace)
			return check, nil
		}
	}
	for _, u := range res.Waiting {
		if u.ID == a.ID {
			check.Note = fmt.Sprintf("Khoros holds no record of the send yet, and one may still appear until %s (reconciler.ambiguous_grace, %s, after the send)",
				u.SentAt.Add(grace).UTC().Format(time.RFC3339), grace)
			return check, nil
		}
	}
	switch {
	case !res.Listed:
		check.Note = "Khoros could not be asked whether the send arrived: " + askErr.Error()
	case askErr != nil:
		check.Note = "Khoros was asked whether the send arrived, but its answer could not be applied: " + askErr.Error()
	default:
		// Not among the app's unknown actions when they were read: it
		// became unknown again (released and sent) meanwhile.
		check.Note = "it was sent again while Khoros was asked about its previous send"
	}
	return check, nil
}
