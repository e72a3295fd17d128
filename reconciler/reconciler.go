// Package reconciler settles the final status of every Bot v3 request botq
// made, resolves ambiguous sends, refreshes app tokens before they expire and
// polls app health.
//
// It runs as River periodic jobs on the maintenance queue. Every process
// registers them, River's elected leader enqueues them, and their unique
// options keep one run of each at a time across the fleet, so leadership can
// move without anything running twice.
//
// Settling is cheap by design, counted in records read: a listing
// (GET /bots/v3/request/appId/{appId}?from=...&origin=BOT) returns every
// record of its window, which always runs up to now. An app's fresh records
// (never checked) are listed together, once they are a large enough share of
// the listing's window or the oldest has waited ListMaxWait, in one window
// reaching back to the oldest of them; a record a listing covered a minute
// after the call and that is still pending becomes a straggler, looked up by
// single GETs with per-record backoff, so it never holds the window back.
// Single GETs are also used when only a few records are due. Records older than the
// 31-day window Khoros keeps become EXPIRED. An ambiguous send (a respond,
// form or note that reached the wire with no answer) is matched by payload
// against the BOT-origin records around its send time: found, it takes that
// record's state; not found after a grace period, it never reached Khoros and
// is sent once more (at most MaxReleases times), or is cancelled if its River job was
// cancelled (River's JobCancel) or deleted outside botq meanwhile. An
// operator's cancel of an ambiguous send asks Khoros the same way first
// (CheckSend), so that a send Khoros holds a record of is settled by it
// rather than cancelled and replayed.
//
// Everything timed reads the injected clock (Config.Now).
package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/appclient"
	"github.com/botq/botq/store"
)

// Config configures a Reconciler; zero values get the defaults noted.
type Config struct {
	Pool   *pgxpool.Pool
	Store  *store.Store
	Apps   *appclient.Registry
	Logger zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Interval is how often settling runs (default 2s).
	Interval time.Duration
	// SingleGetMax: an app with at most this many due records (and no
	// ambiguous sends) is checked with single GETs; more use one listing
	// (default 2).
	SingleGetMax int
	// ListRatio and ListMaxWait pace listings (see listingDue): an app's
	// fresh records are listed once the listing would read at most
	// ListRatio records per record it may settle (default 4), or once the
	// oldest has waited ListMaxWait (default 30s).
	ListRatio   int
	ListMaxWait time.Duration
	// StragglerGets bounds the single GETs of stragglers (records a
	// listing left pending) per app and run (default 20).
	StragglerGets int
	// MaxWindow is the oldest Khoros keeps request records (default and
	// maximum 31 days); pending records older than it become EXPIRED.
	MaxWindow time.Duration
	// AmbiguousGrace is how long an ambiguous send waits for its record to
	// show up before it is deemed never sent (default 2m).
	AmbiguousGrace time.Duration
	// MaxReleases bounds how many times one action is resent after ambiguous
	// sends that left no record (default DefaultMaxReleases).
	MaxReleases int
	// RecordKhorosOrigin also stores KHOROS-origin records (webhook
	// deliveries to the bot).
	RecordKhorosOrigin bool
	// TokenRefreshBefore refreshes a stored token this long before it expires
	// (default 7 days).
	TokenRefreshBefore time.Duration
	// Observer receives measurements; nil for none.
	Observer Observer
	// CompletedJobRetention is how long the maintenance queue's completed
	// jobs are kept; 0 leaves them to River's cleaner and its completed
	// retention, which keeps every queue's for as long.
	CompletedJobRetention time.Duration
}

// DefaultMaxReleases is how many times an action is sent again, by
// default, after ambiguous sends that left no record. Each release follows a
// grace period that showed the previous send never reached Khoros, so a
// release is as safe as the first; the bound only stops an action whose
// sends keep vanishing (a process killed again and again mid-call, a
// network that hangs its calls) from being sent for ever.
const DefaultMaxReleases = 3

// Reconciler does the reconciler's work; its methods are safe to call from
// River jobs (one run of each at a time).
type Reconciler struct {
	cfg Config
}

// New returns a Reconciler.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Pool == nil || cfg.Store == nil || cfg.Apps == nil {
		return nil, errors.New("new reconciler: Pool, Store and Apps are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.SingleGetMax < 0 {
		cfg.SingleGetMax = 0
	} else if cfg.SingleGetMax == 0 {
		cfg.SingleGetMax = 2
	}
	if cfg.ListRatio <= 0 {
		cfg.ListRatio = 4
	}
	if cfg.ListMaxWait <= 0 {
		cfg.ListMaxWait = 30 * time.Second
	}
	if cfg.StragglerGets <= 0 {
		cfg.StragglerGets = 20
	}
	if cfg.MaxWindow <= 0 || cfg.MaxWindow > botapi.MaxListWindow {
		cfg.MaxWindow = botapi.MaxListWindow
	}
	if cfg.AmbiguousGrace <= 0 {
		cfg.AmbiguousGrace = 2 * time.Minute
	}
	if cfg.MaxReleases <= 0 {
		cfg.MaxReleases = DefaultMaxReleases
	}
	if cfg.TokenRefreshBefore <= 0 {
		cfg.TokenRefreshBefore = 7 * 24 * time.Hour
	}
	return &Reconciler{cfg: cfg}, nil
}

// Stats says what one RunOnce did.
type Stats struct {
	Apps  int
	Calls int // Bot v3 calls made
	// Fetched counts the request records the calls returned: every record
	// of a listing, one per GET that found its record.
	Fetched  int
	Settled  int // records that reached a final state (EXPIRED included)
	Expired  int
	Resolved int // ambiguous sends matched to a record
	Released int // ambiguous sends sent once more
	Failed   int // ambiguous sends failed after their last release
	// Cancelled counts ambiguous sends cancelled because their River job was
	// cancelled (or deleted) outside botq and no record of them showed up.
	Cancelled int
}

func (s *Stats) add(o Stats) {
	s.Apps += o.Apps
	s.Calls += o.Calls
	s.Fetched += o.Fetched
	s.Settled += o.Settled
	s.Expired += o.Expired
	s.Resolved += o.Resolved
	s.Released += o.Released
	s.Failed += o.Failed
	s.Cancelled += o.Cancelled
}

// RunOnce settles what is due for every app and resolves ambiguous sends.
// An error with one app does not stop the others; the errors are joined.
func (r *Reconciler) RunOnce(ctx context.Context) (Stats, error) {
	now := r.cfg.Now()
	apps, err := r.cfg.Store.ReconcileDueApps(ctx, r.cfg.Pool, now)
	if err != nil {
		return Stats{}, err
	}
	var total Stats
	var errs []error
	for _, due := range apps {
		st, err := r.reconcileApp(ctx, due, now)
		total.add(st)
		if err != nil {
			errs = append(errs, fmt.Errorf("app %q: %w", due.AppID, err))
		}
	}
	total.Apps = len(apps)
	return total, errors.Join(errs...)
}

func (r *Reconciler) reconcileApp(ctx context.Context, due store.DueApp, now time.Time) (Stats, error) {
	var st Stats
	app, err := r.cfg.Store.AppGet(ctx, r.cfg.Pool, due.AppID)
	if err != nil {
		return st, err
	}
	if app.PausedUntil != nil && app.PausedUntil.After(now) {
		return st, nil // its token is refused; calls would fail
	}
	client, err := r.cfg.Apps.Client(app)
	if err != nil {
		return st, err
	}

	// Records older than Khoros keeps will never settle.
	cutoff := now.Add(-r.cfg.MaxWindow)
	if !due.OldestPending.IsZero() && due.OldestPending.Before(cutoff) {
		var expired []store.SettledAction
		err := r.inTx(ctx, func(tx pgx.Tx) error {
			var err error
			expired, err = r.cfg.Store.RequestExpire(ctx, tx, app.ID, cutoff, now)
			return err
		})
		if err != nil {
			return st, err
		}
		st.Expired += len(expired)
		st.Settled += len(expired)
	}

	if due.Unknown == 0 && due.Due <= r.cfg.SingleGetMax {
		pending, err := r.cfg.Store.RequestPendingList(ctx, r.cfg.Pool, app.ID, now, true)
		if err != nil {
			return st, err
		}
		return r.singleGets(ctx, client, app.ID, pending, now, st)
	}
	var errs []error
	if due.Fresh > 0 || due.Unknown > 0 {
		list, err := r.listingDue(ctx, app.ID, due, now)
		if err == nil && list {
			st, err = r.listing(ctx, client, app.ID, due, now, st)
		}
		errs = append(errs, err)
	}
	if due.StragglersDue > 0 {
		stragglers, err := r.cfg.Store.RequestStragglersDue(ctx, r.cfg.Pool, app.ID, now, r.cfg.StragglerGets)
		if err == nil {
			st, err = r.singleGets(ctx, client, app.ID, stragglers, now, st)
		}
		errs = append(errs, err)
	}
	return st, errors.Join(errs...)
}

// listingDue decides whether the app's fresh records (and ambiguous sends)
// are listed now. A listing returns every record of its window, which
// reaches from the oldest of them (less the clock-skew margin, in whole
// minutes) to now, whatever settled meanwhile, so it waits until the
// records it may settle are at least a ListRatio-th of those it will read,
// or until the oldest has waited ListMaxWait. Under a steady flow that
// lists about every ListMaxWait whatever the throughput; a backlog or a
// burst is listed at once.
func (r *Reconciler) listingDue(ctx context.Context, appID string, due store.DueApp, now time.Time) (bool, error) {
	since := r.listSince(due, now)
	if now.Sub(since) >= r.cfg.ListMaxWait {
		return true, nil
	}
	window := listWindow(now, since, r.cfg.MaxWindow)
	n, err := r.cfg.Store.RequestCountSince(ctx, r.cfg.Pool, appID, now.Add(-window))
	if err != nil {
		return false, err
	}
	return n <= r.cfg.ListRatio*(due.Fresh+due.Unknown), nil
}

// listSince is the oldest moment a listing must cover: the oldest fresh
// record, or the creation of the oldest ambiguous send. Stragglers are
// left to single GETs, so they never hold the window back.
func (r *Reconciler) listSince(due store.DueApp, now time.Time) time.Time {
	since := now
	if due.Fresh > 0 && !due.OldestFresh.IsZero() {
		since = due.OldestFresh
	}
	if due.Unknown > 0 && due.OldestUnknown.Before(since) {
		since = due.OldestUnknown
	}
	return since
}

// inTx runs fn in a transaction.
func (r *Reconciler) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, r.cfg.Pool, fn)
}

// backoff is the wait before a still-pending record is looked at again by a
// single GET: the interval, doubled per check, at most 5 minutes.
func (r *Reconciler) backoff(checks int) time.Duration {
	d := r.cfg.Interval
	for i := 0; i < checks && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// singleGets looks pending records up one by one: a few due ones, or the
// stragglers a listing left.
func (r *Reconciler) singleGets(ctx context.Context, client *botapi.Client, appID string, pending []store.PendingRequest, now time.Time, st Stats) (Stats, error) {
	var settled []store.Settlement
	var stillIDs []string
	var stillNext []time.Time
	var errs []error
	for _, p := range pending {
		start := time.Now()
		rec, res, err := client.GetRequest(ctx, p.RequestID)
		st.Calls++
		r.observeCall(appID, "get", res, time.Since(start))
		if rec != nil {
			st.Fetched++
			r.observeFetched(appID, "get", 1)
		}
		switch {
		case err == nil && rec != nil && rec.State != botapi.StatePending:
			settled = append(settled, settlementOf(rec))
			r.observeSettled(appID, rec, now)
		case errors.Is(err, botapi.ErrNotFound) && absentAfter(p, now):
			settled = append(settled, absent(p.RequestID, "GET answered 404"))
		case err == nil || errors.Is(err, botapi.ErrNotFound):
			// Still pending, or not visible yet. A refused call's record is
			// looked up again once the clock-skew margin is over, when its
			// absence settles it.
			wait := r.backoff(p.CheckCount)
			if p.HTTPStatus >= 400 {
				wait = min(wait, max(p.FirstSeenAt.Add(clockSkew).Sub(now), r.cfg.Interval))
			}
			next := now.Add(wait)
			stillIDs = append(stillIDs, p.RequestID)
			stillNext = append(stillNext, next)
		default:
			errs = append(errs, err)
		}
	}
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		if err := r.cfg.Store.RequestChecked(ctx, tx, now, stillIDs, stillNext); err != nil {
			return err
		}
		_, err := r.cfg.Store.RequestSettle(ctx, tx, now, settled)
		return err
	})
	if err != nil {
		return st, err
	}
	st.Settled += len(settled)
	return st, errors.Join(errs...)
}

// clockSkew is how far botq's clock and Khoros' may disagree: listings
// reach back this much further than the records they look for, and a
// refused call's record is deemed absent only once a check this long after
// the call has not found it.
const clockSkew = time.Minute

// absentAfter reports whether a pending record that a check did not find is
// absent: the answer that carried its id refused the call (a 4xx, which
// Khoros settles at once if it keeps a record at all), and the check came
// late enough that a record would have shown.
func absentAfter(p store.PendingRequest, now time.Time) bool {
	return p.HTTPStatus >= 400 && now.Sub(p.FirstSeenAt) >= clockSkew
}

// absent is the settlement of a refused call's record that Khoros does not
// keep; how tells how botq looked.
func absent(requestID, how string) store.Settlement {
	return store.Settlement{RequestID: requestID, State: store.RequestAbsent,
		Reason: "Khoros refused the call and keeps no record of it (" + how + " a minute after the call)"}
}

// listWindow is the `from` window that covers since, with a margin for
// clock skew, rounded up to a whole minute and at most max.
func listWindow(now, since time.Time, limit time.Duration) time.Duration {
	d := now.Sub(since) + clockSkew
	d = (d + time.Minute - 1) / time.Minute * time.Minute
	return min(max(d, time.Minute), limit)
}

// listing settles the app's fresh records, and matches its ambiguous sends,
// with one listing of Khoros' records since the oldest of them. A fresh
// record the listing covered a clock-skew margin after botq first saw it,
// and that is still pending, becomes a straggler: single GETs look for it
// from then on, with backoff, so it never holds the next listings' window
// back.
func (r *Reconciler) listing(ctx context.Context, client *botapi.Client, appID string, due store.DueApp, now time.Time, st Stats) (Stats, error) {
	opts := &botapi.ListRequestsOptions{From: listWindow(now, r.listSince(due, now), r.cfg.MaxWindow), Origin: botapi.OriginBot}
	if due.Unknown == 0 {
		// Only final records can settle anything; skip the pending ones.
		opts.States = []string{botapi.StateSuccess, botapi.StateError}
	}
	// What the listing is read against is loaded first, so the listing is
	// read as it arrives and only what matches is kept: memory follows the
	// app's pending records, not the listing's size.
	pending, err := r.cfg.Store.RequestPendingList(ctx, r.cfg.Pool, appID, now, false)
	if err != nil {
		return st, err
	}
	pendingSet := make(map[string]bool, len(pending))
	for _, p := range pending {
		pendingSet[p.RequestID] = true
	}
	var amb *ambiguousMatch
	if due.Unknown > 0 {
		if amb, err = r.newAmbiguousMatch(ctx, appID); err != nil {
			return st, err
		}
	}
	var settled []store.Settlement
	final := map[string]bool{}
	read := 0
	start := time.Now()
	res, err := client.ListRequestsEach(ctx, appID, opts, func(rec *botapi.RequestRecord) error {
		read++
		if rec.State != botapi.StatePending && pendingSet[rec.ID] {
			final[rec.ID] = true
			settled = append(settled, settlementOf(rec))
			r.observeSettled(appID, rec, now)
		}
		amb.consider(rec)
		return nil
	})
	st.Calls++
	st.Fetched += read
	r.observeCall(appID, "list", res, time.Since(start))
	r.observeFetched(appID, "list", read)
	if err != nil {
		return st, fmt.Errorf("list requests: %w", err)
	}
	// The listing covers every fresh record's time (and a listing of final
	// records holds every record Khoros settled at once, as it does a
	// refused call's), so a refused call's record it does not show, a
	// clock-skew margin after the call, is absent. Fresh records still
	// pending that long after the call become stragglers; younger ones are
	// not written and the next listing covers them again.
	var stillIDs []string
	var stillNext []time.Time
	for _, p := range pending {
		switch {
		case final[p.RequestID]:
		case absentAfter(p, now):
			settled = append(settled, absent(p.RequestID, "not in a listing covering its time"))
		case p.CheckCount == 0 && now.Sub(p.FirstSeenAt) >= clockSkew:
			stillIDs = append(stillIDs, p.RequestID)
			stillNext = append(stillNext, now.Add(r.backoff(0)))
		}
	}
	if err := r.inTx(ctx, func(tx pgx.Tx) error {
		if err := r.cfg.Store.RequestChecked(ctx, tx, now, stillIDs, stillNext); err != nil {
			return err
		}
		_, err := r.cfg.Store.RequestSettle(ctx, tx, now, settled)
		return err
	}); err != nil {
		return st, err
	}
	st.Settled += len(settled)

	if amb != nil {
		res, err := r.resolveAmbiguous(ctx, amb, now, nil)
		st.Resolved += res.Resolved
		st.Released += res.Released
		st.Failed += res.Failed
		st.Cancelled += res.Cancelled
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// ambiguousMatch gathers, from a listing as it is read, the records that
// may be one of the app's ambiguous sends: those with the payload of one of
// them.
type ambiguousMatch struct {
	unknown []store.UnknownAction
	wants   map[string]bool // canonical payloads of the unknown actions
	cands   []*candidate
}

// candidate is a listed record an ambiguous send may match, with its
// payload canonicalised once.
type candidate struct {
	rec     botapi.RequestRecord
	payload []byte
	used    bool
}

func (r *Reconciler) newAmbiguousMatch(ctx context.Context, appID string) (*ambiguousMatch, error) {
	unknown, err := r.cfg.Store.ActionUnknownList(ctx, r.cfg.Pool, appID)
	if err != nil {
		return nil, err
	}
	m := &ambiguousMatch{unknown: unknown, wants: make(map[string]bool, len(unknown))}
	for _, u := range unknown {
		m.wants[string(canonicalJSON(u.Payload))] = true
	}
	return m, nil
}

// consider keeps rec (a copy) if its payload is an unknown action's.
func (m *ambiguousMatch) consider(rec *botapi.RequestRecord) {
	if m == nil || len(rec.Payload) == 0 {
		return
	}
	if p := canonicalJSON(rec.Payload); m.wants[string(p)] {
		m.cands = append(m.cands, &candidate{rec: *rec, payload: p})
	}
}

// resolveAmbiguous matches the app's unknown actions against the listed
// BOT-origin records with their payloads: created no earlier than the
// action, and not already linked to another action. Oldest actions match
// first, each to the oldest record left, so two identical messages pair in
// order. A match settles its action; an action with none after the grace
// period is released (store.AmbiguousRelease), unless held is not nil: then
// nothing is released, and the actions without a record are added to held
// (never arrived, or waiting within their grace period).
func (r *Reconciler) resolveAmbiguous(ctx context.Context, m *ambiguousMatch, now time.Time, held *AmbiguousNow) (Stats, error) {
	var st Stats
	cands, err := r.candidates(ctx, m.cands)
	if err != nil {
		return st, err
	}
	var errs []error
	for _, u := range m.unknown {
		if match := r.match(&u, cands); match != nil {
			match.used = true
			set := settlementOf(&match.rec)
			err := pgx.BeginFunc(ctx, r.cfg.Pool, func(tx pgx.Tx) error {
				_, err := r.cfg.Store.AmbiguousResolve(ctx, tx, u.ID, set, "reconciler")
				return err
			})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			st.Resolved++
			continue
		}
		switch {
		case now.Sub(u.SentAt) < r.cfg.AmbiguousGrace: // its record may still appear
			if held != nil {
				held.Waiting = append(held.Waiting, u)
			}
		case held != nil:
			held.NeverArrived = append(held.NeverArrived, u)
		default:
			if err := r.release(ctx, &u, &st); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return st, errors.Join(errs...)
}

// candidates returns the gathered records not linked to an action yet,
// oldest first.
func (r *Reconciler) candidates(ctx context.Context, all []*candidate) ([]*candidate, error) {
	ids := make([]string, len(all))
	for i, c := range all {
		ids[i] = c.rec.ID
	}
	links, err := r.cfg.Store.RequestLinks(ctx, r.cfg.Pool, ids)
	if err != nil {
		return nil, err
	}
	cands := slices.DeleteFunc(all, func(c *candidate) bool {
		_, linked := links[c.rec.ID]
		return linked
	})
	slices.SortFunc(cands, func(a, b *candidate) int { return int(a.rec.CreatedEpochMillis - b.rec.CreatedEpochMillis) })
	return cands, nil
}

// match returns the oldest unused candidate that is u's send, or nil.
func (r *Reconciler) match(u *store.UnknownAction, cands []*candidate) *candidate {
	want := canonicalJSON(u.Payload)
	// The record of one of this action's sends was created between the
	// action's creation and its last send's end (a call lasts less than
	// the grace), give or take clock skew: an identical message sent
	// later by someone else is not this one.
	from, until := u.CreatedAt.Add(-clockSkew), u.SentAt.Add(clockSkew+r.cfg.AmbiguousGrace)
	for _, c := range cands {
		created := time.UnixMilli(int64(c.rec.CreatedEpochMillis))
		if c.used || created.Before(from) || created.After(until) {
			continue
		}
		if bytes.Equal(c.payload, want) {
			return c
		}
	}
	return nil
}

// release ends the wait of an ambiguous send whose record did not show up
// within the grace period (store.AmbiguousRelease) and counts the outcome
// in st.
func (r *Reconciler) release(ctx context.Context, u *store.UnknownAction, st *Stats) error {
	var state store.ActionState
	err := pgx.BeginFunc(ctx, r.cfg.Pool, func(tx pgx.Tx) error {
		var err error
		state, err = r.cfg.Store.AmbiguousRelease(ctx, tx, u.ID, r.cfg.MaxReleases, "reconciler")
		return err
	})
	if err != nil {
		return err
	}
	switch state {
	case store.ActionFailed:
		st.Failed++
	case store.ActionQueued:
		st.Released++
	case store.ActionCancelled:
		st.Cancelled++
		r.cfg.Logger.Warn().Str("app_id", u.AppID).Int64("action_id", u.ID).Int64("job_id", u.RiverJobID).
			Msg("reconciler: An ambiguous send's River job was cancelled or deleted outside botq and no record of the send showed up: the action is cancelled, not sent again")
	}
	return nil
}

// canonicalJSON re-encodes a JSON value with sorted object keys, so two
// encodings of the same value compare equal.
func canonicalJSON(b []byte) []byte {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return out
}

func settlementOf(rec *botapi.RequestRecord) store.Settlement {
	s := store.Settlement{RequestID: rec.ID, State: store.RequestState(rec.State)}
	if rec.Details != nil {
		s.Details, _ = json.Marshal(rec.Details)
		if rec.State == botapi.StateError {
			s.Reason = strings.TrimSpace("Khoros reported ERROR: " + string(rec.Details.Code) + " " + rec.Details.Message)
		}
	} else if rec.State == botapi.StateError {
		s.Reason = "Khoros reported ERROR"
	}
	s.KhorosCreatedAt = epochPtr(rec.CreatedEpochMillis)
	s.KhorosCompletedAt = epochPtr(rec.CompletedEpochMillis)
	s.KhorosUpdatedAt = epochPtr(rec.LastUpdatedEpochMillis)
	return s
}

func epochPtr(ms botapi.EpochMillis) *time.Time {
	if ms <= 0 {
		return nil
	}
	t := time.UnixMilli(int64(ms))
	return &t
}

func (r *Reconciler) observeCall(appID, op string, res *botapi.Response, d time.Duration) {
	if r.cfg.Observer == nil {
		return
	}
	status := 0
	if res != nil {
		status = res.StatusCode
	}
	r.cfg.Observer.Call(appID, op, status, d)
}

func (r *Reconciler) observeFetched(appID, op string, n int) {
	if r.cfg.Observer != nil && n > 0 {
		r.cfg.Observer.Fetched(appID, op, n)
	}
}

func (r *Reconciler) observeSettled(appID string, rec *botapi.RequestRecord, now time.Time) {
	if r.cfg.Observer == nil {
		return
	}
	var lag time.Duration
	if rec.CompletedEpochMillis > 0 {
		lag = max(now.Sub(time.UnixMilli(int64(rec.CompletedEpochMillis))), 0)
	}
	r.cfg.Observer.Settled(appID, rec.State, lag)
}
