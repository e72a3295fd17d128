package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DueApp is an app with reconciliation work: pending request records due
// for a check, or ambiguous sends (actions in unknown).
type DueApp struct {
	AppID string
	// Due counts pending BOT-origin records whose next check is due.
	Due int
	// OldestPending is when botq first saw the app's oldest pending record
	// (due or not); zero when none is pending.
	OldestPending time.Time
	// Fresh counts pending BOT-origin records never checked yet (no
	// listing or GET has looked for them), and OldestFresh is when botq
	// first saw the oldest of them. The others are stragglers: a check
	// found them still pending (or not yet visible), and StragglersDue
	// counts those whose next check is due.
	Fresh         int
	OldestFresh   time.Time
	StragglersDue int
	// Unknown counts the app's actions waiting in state unknown, and
	// OldestUnknown is when the oldest of them was created.
	Unknown       int
	OldestUnknown time.Time
}

// ReconcileDueApps lists the apps that have reconciliation work at now.
func (s *Store) ReconcileDueApps(ctx context.Context, db DBTX, now time.Time) ([]DueApp, error) {
	rows, err := db.Query(ctx, s.q(`
		WITH pending AS (
			SELECT app_id, count(*) FILTER (WHERE next_check_at <= $1) AS due, min(first_seen_at) AS oldest,
			       count(*) FILTER (WHERE check_count = 0) AS fresh,
			       min(first_seen_at) FILTER (WHERE check_count = 0) AS oldest_fresh,
			       count(*) FILTER (WHERE check_count > 0 AND next_check_at <= $1) AS stragglers_due
			FROM botq.request
			WHERE state = 'PENDING' AND origin = 'BOT'
			GROUP BY app_id
		), unknown AS (
			SELECT app_id, count(*) AS n, min(created_at) AS oldest
			FROM botq.action
			WHERE state = 'unknown'
			GROUP BY app_id
		)
		SELECT coalesce(p.app_id, u.app_id), coalesce(p.due, 0), p.oldest, coalesce(u.n, 0), u.oldest,
		       coalesce(p.fresh, 0), p.oldest_fresh, coalesce(p.stragglers_due, 0)
		FROM pending p
		FULL JOIN unknown u ON u.app_id = p.app_id
		WHERE coalesce(p.due, 0) > 0 OR coalesce(u.n, 0) > 0
		ORDER BY 1`), now)
	if err != nil {
		return nil, fmt.Errorf("list apps to reconcile: %w", mapError(err))
	}
	defer rows.Close()
	var out []DueApp
	for rows.Next() {
		var d DueApp
		var oldestPending, oldestUnknown, oldestFresh *time.Time
		if err := rows.Scan(&d.AppID, &d.Due, &oldestPending, &d.Unknown, &oldestUnknown, &d.Fresh, &oldestFresh, &d.StragglersDue); err != nil {
			return nil, fmt.Errorf("list apps to reconcile: %w", err)
		}
		if oldestPending != nil {
			d.OldestPending = *oldestPending
		}
		if oldestUnknown != nil {
			d.OldestUnknown = *oldestUnknown
		}
		if oldestFresh != nil {
			d.OldestFresh = *oldestFresh
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// PendingRequest is a request record waiting for its final state.
type PendingRequest struct {
	RequestID   string
	ActionID    *int64
	FirstSeenAt time.Time
	NextCheckAt *time.Time
	CheckCount  int
	// HTTPStatus is the status of the answer that carried the id: a refusal
	// (4xx) may have left an ERROR record at Khoros, or none.
	HTTPStatus int
}

// RequestPendingList returns the app's pending BOT-origin records, oldest
// first; dueOnly keeps those whose next check is due at now.
func (s *Store) RequestPendingList(ctx context.Context, db DBTX, appID string, now time.Time, dueOnly bool) ([]PendingRequest, error) {
	rows, err := db.Query(ctx, s.q(`
		SELECT request_id, action_id, first_seen_at, next_check_at, check_count, coalesce(http_status, 0)
		FROM botq.request
		WHERE app_id = $1 AND state = 'PENDING' AND origin = 'BOT' AND (NOT $3 OR next_check_at <= $2)
		ORDER BY first_seen_at`), appID, now, dueOnly)
	if err != nil {
		return nil, fmt.Errorf("list pending requests of app %q: %w", appID, mapError(err))
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PendingRequest, error) {
		var p PendingRequest
		err := r.Scan(&p.RequestID, &p.ActionID, &p.FirstSeenAt, &p.NextCheckAt, &p.CheckCount, &p.HTTPStatus)
		return p, err
	})
}

// RequestStragglersDue returns up to limit of the app's pending BOT-origin
// records that were checked before and are due for their next check,
// the longest due first.
func (s *Store) RequestStragglersDue(ctx context.Context, db DBTX, appID string, now time.Time, limit int) ([]PendingRequest, error) {
	rows, err := db.Query(ctx, s.q(`
		SELECT request_id, action_id, first_seen_at, next_check_at, check_count, coalesce(http_status, 0)
		FROM botq.request
		WHERE app_id = $1 AND state = 'PENDING' AND origin = 'BOT' AND next_check_at <= $2 AND check_count > 0
		ORDER BY next_check_at
		LIMIT $3`), appID, now, limit)
	if err != nil {
		return nil, fmt.Errorf("list stragglers of app %q: %w", appID, mapError(err))
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PendingRequest, error) {
		var p PendingRequest
		err := r.Scan(&p.RequestID, &p.ActionID, &p.FirstSeenAt, &p.NextCheckAt, &p.CheckCount, &p.HTTPStatus)
		return p, err
	})
}

// RequestCountSince counts the app's BOT-origin records (every state) that
// botq first saw at or after since: about what a listing of Khoros'
// records reaching back to since returns.
func (s *Store) RequestCountSince(ctx context.Context, db DBTX, appID string, since time.Time) (int, error) {
	var n int
	err := db.QueryRow(ctx, s.q(`
		SELECT count(*) FROM botq.request WHERE app_id = $1 AND first_seen_at >= $2 AND origin = 'BOT'`), appID, since).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count requests of app %q: %w", appID, mapError(err))
	}
	return n, nil
}

// Settlement is a request record's final state as Khoros reported it, or
// as botq decided it (EXPIRED, ABSENT).
type Settlement struct {
	RequestID         string
	State             RequestState
	Details           json.RawMessage
	KhorosCreatedAt   *time.Time
	KhorosCompletedAt *time.Time
	KhorosUpdatedAt   *time.Time
	// Reason becomes the action's last error when it fails; for EXPIRED and
	// ABSENT it is also the record's reason.
	Reason string
}

// SettledAction is an action whose state a settlement decided.
type SettledAction struct {
	ActionID  int64
	RequestID string
	State     ActionState
}

// RequestSettle records final states of pending records in one statement,
// and moves each linked action that is `sent` to succeeded (SUCCESS) or
// failed (ERROR, EXPIRED) in the same transaction (db should be one); an
// ABSENT record moves no action (only a refused call's record ends ABSENT,
// and its answer already decided the action). A record that is no longer
// pending is left as it is.
func (s *Store) RequestSettle(ctx context.Context, db DBTX, now time.Time, settled []Settlement) ([]SettledAction, error) {
	if len(settled) == 0 {
		return nil, nil
	}
	ids := make([]string, len(settled))
	states := make([]string, len(settled))
	details := make([]*string, len(settled))
	created := make([]*time.Time, len(settled))
	completed := make([]*time.Time, len(settled))
	updated := make([]*time.Time, len(settled))
	reasons := make([]string, len(settled))
	for i, st := range settled {
		ids[i], states[i], reasons[i] = st.RequestID, string(st.State), CleanText(st.Reason, 4096)
		if d := nullJSON(st.Details); d != nil {
			v := d.(string)
			details[i] = &v
		}
		created[i], completed[i], updated[i] = st.KhorosCreatedAt, st.KhorosCompletedAt, st.KhorosUpdatedAt
	}
	rows, err := db.Query(ctx, s.q(`
		WITH input AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::text[])
				AS t(request_id, state, details, created, completed, updated, reason)
		), settled AS (
			UPDATE botq.request r
			SET state = i.state, details = coalesce(i.details, r.details),
			    khoros_created_at = coalesce(i.created, r.khoros_created_at),
			    khoros_completed_at = coalesce(i.completed, r.khoros_completed_at),
			    khoros_updated_at = coalesce(i.updated, r.khoros_updated_at),
			    last_checked_at = $8, check_count = r.check_count + 1, next_check_at = NULL, finalized_at = $8,
			    reason = CASE WHEN i.state IN ('EXPIRED', 'ABSENT') THEN nullif(i.reason, '') END
			FROM input i
			WHERE r.request_id = i.request_id AND r.state = 'PENDING'
			RETURNING r.request_id, r.action_id, r.state, i.reason
		), moved AS (
			UPDATE botq.action a
			SET state = CASE WHEN s.state = 'SUCCESS' THEN 'succeeded' ELSE 'failed' END,
			    last_error = CASE WHEN s.state = 'SUCCESS' THEN NULL ELSE nullif(s.reason, '') END
			FROM settled s
			WHERE a.id = s.action_id AND a.state = 'sent' AND a.request_id = s.request_id AND s.state <> 'ABSENT'
			RETURNING a.id, s.request_id, a.state
		)
		SELECT id, request_id, state FROM moved`),
		ids, states, details, created, completed, updated, reasons, now)
	if err != nil {
		return nil, fmt.Errorf("settle %d requests: %w", len(settled), mapError(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SettledAction, error) {
		var a SettledAction
		var state string
		err := r.Scan(&a.ActionID, &a.RequestID, &state)
		a.State = ActionState(state)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("settle %d requests: %w", len(settled), mapError(err))
	}
	return out, nil
}

// RequestChecked records that records were checked and are still pending,
// each with its next check time.
func (s *Store) RequestChecked(ctx context.Context, db DBTX, now time.Time, ids []string, next []time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.Exec(ctx, s.q(`
		UPDATE botq.request r
		SET last_checked_at = $3, check_count = r.check_count + 1, next_check_at = t.next
		FROM unnest($1::text[], $2::timestamptz[]) AS t(request_id, next)
		WHERE r.request_id = t.request_id AND r.state = 'PENDING'`), ids, next, now)
	if err != nil {
		return fmt.Errorf("record checks of %d requests: %w", len(ids), mapError(err))
	}
	return nil
}

// RequestLinks returns, for the given request ids, the action each is
// linked to (ids botq does not know, or knows unlinked, are absent).
func (s *Store) RequestLinks(ctx context.Context, db DBTX, ids []string) (map[string]int64, error) {
	out := map[string]int64{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, s.q(`SELECT request_id, action_id FROM botq.request WHERE request_id = ANY($1) AND action_id IS NOT NULL`), ids)
	if err != nil {
		return nil, fmt.Errorf("look up request links: %w", mapError(err))
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var action int64
		if err := rows.Scan(&id, &action); err != nil {
			return nil, err
		}
		out[id] = action
	}
	return out, rows.Err()
}

// UnknownAction is an ambiguous send waiting for the reconciler.
type UnknownAction struct {
	ID           int64
	AppID        string
	Kind         string
	Payload      json.RawMessage
	RiverJobID   int64
	ReleaseCount int
	CreatedAt    time.Time
	// SentAt is when its last attempt started (the call that got no answer).
	SentAt time.Time
}

// ActionUnknownList returns the app's actions in state unknown, oldest first.
func (s *Store) ActionUnknownList(ctx context.Context, db DBTX, appID string) ([]UnknownAction, error) {
	rows, err := db.Query(ctx, s.q(`
		SELECT a.id, a.app_id, a.kind, a.payload, a.river_job_id, a.release_count, a.created_at,
		       coalesce((SELECT max(t.started_at) FROM botq.attempt t WHERE t.action_id = a.id), a.created_at)
		FROM botq.action a
		WHERE a.app_id = $1 AND a.state = 'unknown'
		ORDER BY a.id`), appID)
	if err != nil {
		return nil, fmt.Errorf("list unknown actions of app %q: %w", appID, mapError(err))
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (UnknownAction, error) {
		var u UnknownAction
		err := r.Scan(&u.ID, &u.AppID, &u.Kind, &u.Payload, &u.RiverJobID, &u.ReleaseCount, &u.CreatedAt, &u.SentAt)
		return u, err
	})
}

// AmbiguousResolve links an ambiguous action to the request record Khoros
// holds for it, takes the record's state (PENDING: sent; SUCCESS:
// succeeded; ERROR: failed) and completes its parked River job. db should be
// a transaction.
func (s *Store) AmbiguousResolve(ctx context.Context, db DBTX, actionID int64, rec Settlement, actor string) (ActionState, error) {
	a, err := s.ActionGet(ctx, db, actionID)
	if err != nil {
		return "", err
	}
	if a.State != ActionUnknown {
		return "", fmt.Errorf("%w: action %d is %s, not unknown", ErrConflict, actionID, a.State)
	}
	state := ActionSent
	switch rec.State {
	case RequestSuccess:
		state = ActionSucceeded
	case RequestError:
		state = ActionFailed
	}
	if err := s.RequestUpsert(ctx, db, &RequestUpsertParams{
		RequestID: rec.RequestID, AppID: a.AppID, ActionID: &actionID, State: RequestPending, NextCheckAt: &time.Time{},
	}); err != nil {
		return "", err
	}
	if rec.State != RequestPending {
		if _, err := s.RequestSettle(ctx, db, time.Now(), []Settlement{rec}); err != nil {
			return "", err
		}
	}
	// The unanswered send's error no longer says what happened: the
	// record does.
	noErr := ""
	lastErr := &noErr
	if state == ActionFailed {
		lastErr = &rec.Reason
	}
	if _, err := s.ActionSetState(ctx, db, ActionSetStateParams{ID: actionID, From: ActionUnknown, To: state, RequestID: &rec.RequestID, LastError: lastErr}); err != nil {
		return "", err
	}
	if err := s.jobCompleteParked(ctx, db, a.RiverJobID); err != nil {
		return "", fmt.Errorf("complete parked job of action %d: %w", actionID, err)
	}
	if _, err := s.EventInsert(ctx, db, EventInsertParams{
		AppID: a.AppID, ActionID: &actionID, Kind: "ambiguous_resolved", Actor: actor,
		Reason: "Khoros holds a request record matching the unanswered send",
		After:  map[string]any{"request_id": rec.RequestID, "request_state": rec.State, "action_state": state},
	}); err != nil {
		return "", err
	}
	return state, nil
}

// AmbiguousRelease gives an ambiguous action one more attempt (its call
// never reached Khoros), or fails it when it has had maxReleases already.
// An action whose parked River job was cancelled behind botq's back (River's
// JobCancel, from River UI, another client or SQL, of the running job or of
// the parked one), or deleted or finished, is cancelled instead: no record
// shows the send arrived, and someone asked for it not to be sent. It then
// returns ActionCancelled with a `cancel` event. A job that a worker is
// running again (made runnable by hand; the worker parks it again) leaves
// the action unknown for a later run: ActionUnknown and no error. db should
// be a transaction.
func (s *Store) AmbiguousRelease(ctx context.Context, db DBTX, actionID int64, maxReleases int, actor string) (ActionState, error) {
	a, err := s.ActionGet(ctx, db, actionID)
	if err != nil {
		return "", err
	}
	if a.State != ActionUnknown {
		return "", fmt.Errorf("%w: action %d is %s, not unknown", ErrConflict, actionID, a.State)
	}
	job, err := s.parkedJob(ctx, db, a.RiverJobID)
	if err != nil {
		return "", fmt.Errorf("release action %d: %w", actionID, err)
	}
	switch {
	case job.state == "running":
		return ActionUnknown, nil
	case job.cancelled():
		return s.ambiguousCancel(ctx, db, a, job, actor)
	}
	if a.ReleaseCount >= maxReleases {
		reason := fmt.Sprintf("no answer and no matching request record, again after %d resend(s); not sent again", a.ReleaseCount)
		if _, err := s.ActionSetState(ctx, db, ActionSetStateParams{ID: actionID, From: ActionUnknown, To: ActionFailed, LastError: &reason}); err != nil {
			return "", err
		}
		if err := s.jobCancelWaiting(ctx, db, a.RiverJobID); err != nil {
			return "", fmt.Errorf("cancel parked job of action %d: %w", actionID, err)
		}
		return ActionFailed, nil
	}
	if _, err := db.Exec(ctx, s.q(`
		UPDATE botq.action SET state = 'queued', release_count = release_count + 1
		WHERE id = $1 AND state = 'unknown'`), actionID); err != nil {
		return "", fmt.Errorf("release action %d: %w", actionID, mapError(err))
	}
	// A job made runnable by hand (River UI's Retry, SQL) is released as if
	// it were parked: the worker would only park it again.
	if err := s.jobRelease(ctx, db, a.RiverJobID); err != nil {
		return "", fmt.Errorf("release parked job %d of action %d (it was %s a moment ago): %w", a.RiverJobID, actionID, job.state, err)
	}
	if _, err := s.EventInsert(ctx, db, EventInsertParams{
		AppID: a.AppID, ActionID: &actionID, Kind: "ambiguous_released", Actor: actor,
		Reason: "no request record matches the unanswered send after the grace period: it never reached Khoros",
		After:  map[string]any{"release": a.ReleaseCount + 1},
	}); err != nil {
		return "", err
	}
	return ActionQueued, nil
}

// parkedJobState is what AmbiguousRelease reads of an ambiguous action's
// River job.
type parkedJobState struct {
	state string // "" when the job does not exist
	// cancelRequested: River's JobCancel reached the job (River records
	// cancel_attempted_at in its metadata; for a running job that is all it
	// does besides cancelling the worker's context).
	cancelRequested bool
}

// cancelled reports whether the job will never run the action again by
// botq's rules: deleted, finished, or its cancel requested.
func (j parkedJobState) cancelled() bool {
	switch j.state {
	case "", "cancelled", "completed", "discarded":
		return true
	}
	return j.cancelRequested
}

// ambiguousCancel cancels an ambiguous action whose job was cancelled,
// deleted or finished behind botq's back, after the grace period found no
// record of its send.
func (s *Store) ambiguousCancel(ctx context.Context, db DBTX, a *Action, job parkedJobState, actor string) (ActionState, error) {
	how := "cancelled (River's JobCancel: River UI, another River client or SQL)"
	switch {
	case job.state == "":
		how = "deleted"
	case job.state != "cancelled" && !job.cancelRequested:
		how = "made " + job.state
	}
	reason := "its River job was " + how + " outside botq, and no request record matches its unanswered send after the grace period: not sent"
	if _, err := s.ActionSetState(ctx, db, ActionSetStateParams{ID: a.ID, From: ActionUnknown, To: ActionCancelled, LastError: &reason}); err != nil {
		return "", err
	}
	if err := s.jobCancelWaiting(ctx, db, a.RiverJobID); err != nil {
		return "", fmt.Errorf("cancel parked job of action %d: %w", a.ID, err)
	}
	jobState := job.state
	if jobState == "" {
		jobState = "deleted"
	}
	if _, err := s.EventInsert(ctx, db, EventInsertParams{
		AppID: a.AppID, ActionID: &a.ID, Kind: "cancel", Actor: actor, Reason: reason,
		Before: map[string]any{"state": ActionUnknown, "job_state": jobState, "job_cancel_requested": job.cancelRequested},
		After:  map[string]any{"state": ActionCancelled},
	}); err != nil {
		return "", err
	}
	return ActionCancelled, nil
}

// RequestExpire marks the app's pending records first seen before cutoff
// as EXPIRED (Khoros no longer returns them) and fails their `sent`
// actions.
func (s *Store) RequestExpire(ctx context.Context, db DBTX, appID string, cutoff, now time.Time) ([]SettledAction, error) {
	rows, err := db.Query(ctx, s.q(`
		SELECT request_id FROM botq.request
		WHERE app_id = $1 AND state = 'PENDING' AND origin = 'BOT' AND first_seen_at < $2`), appID, cutoff)
	if err != nil {
		return nil, fmt.Errorf("find expired requests of app %q: %w", appID, mapError(err))
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	settled := make([]Settlement, len(ids))
	for i, id := range ids {
		settled[i] = Settlement{RequestID: id, State: RequestExpired,
			Reason: "Khoros never reported a final state for request " + id + " within its retention window"}
	}
	return s.RequestSettle(ctx, db, now, settled)
}

// KhorosRecord is a KHOROS-origin record (a webhook delivery to the bot).
type KhorosRecord struct {
	Settlement
	AppID   string
	Payload json.RawMessage
}

// RequestRecordKhoros stores KHOROS-origin records, updating the state of
// ones already known and still PENDING, and returns how many it inserted or
// updated: a record listed again unchanged counts for nothing.
func (s *Store) RequestRecordKhoros(ctx context.Context, db DBTX, now time.Time, recs []KhorosRecord) (int, error) {
	b := &pgx.Batch{}
	for _, r := range recs {
		final := any(nil)
		if r.State != RequestPending {
			final = now
		}
		b.Queue(s.q(`
			INSERT INTO botq.request (request_id, app_id, origin, state, details, payload, khoros_created_at,
				khoros_completed_at, khoros_updated_at, last_checked_at, check_count, finalized_at)
			VALUES ($1, $2, 'KHOROS', $3, $4, $5, $6, $7, $8, $9, 1, $10)
			ON CONFLICT (request_id) DO UPDATE SET
				state = EXCLUDED.state, details = EXCLUDED.details, khoros_completed_at = EXCLUDED.khoros_completed_at,
				khoros_updated_at = EXCLUDED.khoros_updated_at, last_checked_at = EXCLUDED.last_checked_at,
				finalized_at = coalesce(botq.request.finalized_at, EXCLUDED.finalized_at)
			WHERE botq.request.origin = 'KHOROS' AND botq.request.state = 'PENDING'`),
			r.RequestID, r.AppID, string(r.State), nullJSON(r.Details), nullJSON(r.Payload),
			r.KhorosCreatedAt, r.KhorosCompletedAt, r.KhorosUpdatedAt, now, final)
	}
	br := db.SendBatch(ctx, b)
	var n int
	for range recs {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return n, fmt.Errorf("record %d KHOROS-origin requests: %w", len(recs), mapError(err))
		}
		n += int(tag.RowsAffected())
	}
	if err := br.Close(); err != nil {
		return n, fmt.Errorf("record %d KHOROS-origin requests: %w", len(recs), mapError(err))
	}
	return n, nil
}

// InboundCursorList returns each app's inbound cursor: when the last
// listing of its KHOROS-origin records that is stored was asked for. An app
// never read has none.
func (s *Store) InboundCursorList(ctx context.Context, db DBTX) (map[string]time.Time, error) {
	rows, err := db.Query(ctx, s.q(`SELECT app_id, read_until FROM botq.inbound_cursor`))
	if err != nil {
		return nil, fmt.Errorf("list inbound cursors: %w", mapError(err))
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, fmt.Errorf("list inbound cursors: %w", err)
		}
		out[id] = at
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list inbound cursors: %w", mapError(err))
	}
	return out, nil
}

// InboundCursorAdvance moves the app's inbound cursor to readUntil, never
// back. Call it in the transaction that stores the records of the listing
// asked for at readUntil, so the cursor never passes records not stored.
func (s *Store) InboundCursorAdvance(ctx context.Context, db DBTX, appID string, readUntil time.Time) error {
	_, err := db.Exec(ctx, s.q(`
		INSERT INTO botq.inbound_cursor AS c (app_id, read_until) VALUES ($1, $2)
		ON CONFLICT (app_id) DO UPDATE SET read_until = greatest(c.read_until, EXCLUDED.read_until), updated_at = now()`),
		appID, readUntil)
	if err != nil {
		return fmt.Errorf("advance inbound cursor of app %q: %w", appID, mapError(err))
	}
	return nil
}

// AppTokenDue returns apps with a stored token that expires before before.
func (s *Store) AppTokenDue(ctx context.Context, db DBTX, before time.Time) ([]*App, error) {
	rows, err := db.Query(ctx, s.q(`SELECT `+appColumns+` FROM botq.app WHERE token_ciphertext IS NOT NULL AND token_expires_at < $1 ORDER BY id`), before)
	if err != nil {
		return nil, fmt.Errorf("list apps with expiring tokens: %w", mapError(err))
	}
	defer rows.Close()
	var out []*App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// AppSetHealth records an app's polled health and, when it changed, a
// health_change event. It reports whether it changed.
func (s *Store) AppSetHealth(ctx context.Context, db DBTX, appID, status string, now time.Time, detail any) (bool, error) {
	var before *string
	err := db.QueryRow(ctx, s.q(`
		UPDATE botq.app a SET health_status = $2, health_checked_at = $3
		FROM (SELECT id, health_status FROM botq.app WHERE id = $1 FOR UPDATE) old
		WHERE a.id = old.id
		RETURNING old.health_status`), appID, status, now).Scan(&before)
	if err != nil {
		return false, fmt.Errorf("set health of app %q: %w", appID, mapError(err))
	}
	if before != nil && *before == status {
		return false, nil
	}
	prev := ""
	if before != nil {
		prev = *before
	}
	_, err = s.EventInsert(ctx, db, EventInsertParams{
		AppID: appID, Kind: "health_change", Actor: "botq", Reason: "GET /bots/v3/health",
		Before: map[string]any{"status": prev}, After: map[string]any{"status": status, "detail": detail},
	})
	return true, err
}
