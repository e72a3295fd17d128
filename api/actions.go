package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/botq/botq/store"
)

// EnqueueRequest is the body of POST /v1/actions.
type EnqueueRequest struct {
	AppID          string          `json:"app_id"`
	Kind           string          `json:"kind"`
	Payload        json.RawMessage `json:"payload"`
	Lane           string          `json:"lane,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// EnqueueResponse answers POST /v1/actions: 201 with the new action, or 200
// with the existing one when the app had used the idempotency key.
type EnqueueResponse struct {
	Action  Action `json:"action"`
	Existed bool   `json:"existed"`
}

func (s *Server) enqueue(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req EnqueueRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	switch {
	case key != "" && req.IdempotencyKey != "" && key != req.IdempotencyKey:
		return badBody("idempotency_key", "differs from the Idempotency-Key header; send one of them")
	case key != "":
		req.IdempotencyKey = key
	}
	if req.AppID == "" {
		return badBody("app_id", "is required")
	}
	if req.Kind == "" {
		return badBody("kind", "is required")
	}
	if err := CheckKind(req.Kind, s.cfg.Kinds); err != nil {
		return badBody("kind", "%v", err)
	}
	if len(req.Payload) == 0 {
		return badBody("payload", "is required (a JSON object; {} for kinds without a body)")
	}
	res, err := s.cfg.Store.ActionInsert(r.Context(), s.cfg.DB, store.ActionInsertParams{
		AppID: req.AppID, Kind: req.Kind, Payload: req.Payload, IdempotencyKey: req.IdempotencyKey,
		Lane: req.Lane, CreatedBy: p.Actor(),
		// An operator's key may act for every app; any other key only for
		// the apps it was granted (botq grant add api:<name> <app>).
		CheckGrant: p.Role != RoleOperator,
	})
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if res.Existed {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/v1/actions/"+strconv.FormatInt(res.Action.ID, 10))
	writeJSON(w, status, EnqueueResponse{Action: NewAction(res.Action), Existed: res.Existed})
	return nil
}

// ActionList answers GET /v1/actions.
type ActionList struct {
	Actions    []Action `json:"actions"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

func (s *Server) listActions(w http.ResponseWriter, r *http.Request, p Principal) error {
	q, err := newQuery(r, append(actionFilterParams, "limit", "cursor")...)
	if err != nil {
		return err
	}
	f, err := s.actionFilter(q)
	if err != nil {
		return err
	}
	if p.Role == RoleEnqueuer {
		// An enqueuer reads its own actions only.
		if f.CreatedBy != "" && f.CreatedBy != p.Actor() {
			return &Error{Status: http.StatusForbidden, Code: "forbidden", Field: "created_by",
				Message: "created_by: an enqueuer lists only its own actions (" + p.Actor() + ")"}
		}
		f.CreatedBy = p.Actor()
	}
	limit, err := q.limit()
	if err != nil {
		return err
	}
	c, err := q.cursor("actions")
	if err != nil {
		return err
	}
	lp := store.ActionListParams{Filter: f, Limit: limit}
	if c != nil {
		lp.AfterID = c.ID
	}
	actions, more, err := s.cfg.Store.ActionList(r.Context(), s.cfg.DB, lp)
	if err != nil {
		return err
	}
	out := ActionList{Actions: NewActions(actions)}
	if more {
		out.NextCursor = encodeCursor(cursor{Listing: "actions", ID: actions[len(actions)-1].ID})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ActionDetail answers GET /v1/actions/{id}. An enqueuer gets the action
// only (ActionStatus).
type ActionDetail struct {
	Action   Action    `json:"action"`
	Attempts []Attempt `json:"attempts"`
	Requests []Request `json:"requests"`
	Events   []Event   `json:"events"`
	// Replays are the actions replaying this one.
	Replays []Action `json:"replays"`
}

// ActionStatus answers GET /v1/actions/{id} for an enqueuer, and the
// writes on one action.
type ActionStatus struct {
	Action Action `json:"action"`
}

func pathID(r *http.Request) (int64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, &Error{Status: http.StatusBadRequest, Code: "invalid_path", Field: "id", Message: "id: must be a positive integer, not " + strconv.Quote(s)}
	}
	return id, nil
}

func (s *Server) getAction(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	a, err := s.cfg.Store.ActionView(ctx, s.cfg.DB, id)
	if err != nil {
		return err
	}
	if p.Role == RoleEnqueuer {
		if a.CreatedBy != p.Actor() {
			// Not "forbidden": whether another's action exists is not the
			// enqueuer's business.
			return store.ErrNotFound
		}
		writeJSON(w, http.StatusOK, ActionStatus{Action: NewAction(a)})
		return nil
	}
	out, err := LoadActionDetail(ctx, s.cfg.Store, s.cfg.DB, a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// LoadActionDetail reads what GET /v1/actions/{id} (and botq actions show)
// shows of the action a: its attempts, request records, events and
// replays.
func LoadActionDetail(ctx context.Context, s *store.Store, db store.DBTX, a *store.Action) (*ActionDetail, error) {
	id := a.ID
	out := &ActionDetail{Action: NewAction(a), Attempts: []Attempt{}, Requests: []Request{}, Events: []Event{}, Replays: []Action{}}
	atts, err := s.AttemptList(ctx, db, id)
	if err != nil {
		return nil, err
	}
	for _, t := range atts {
		out.Attempts = append(out.Attempts, NewAttempt(t))
	}
	reqs, err := s.RequestListByAction(ctx, db, id)
	if err != nil {
		return nil, err
	}
	for _, rq := range reqs {
		out.Requests = append(out.Requests, NewRequest(rq, a.Kind))
	}
	evs, _, err := s.EventQuery(ctx, db, store.EventQueryParams{Filter: store.EventFilter{ActionID: &id}, Limit: MaxLimit})
	if err != nil {
		return nil, err
	}
	out.Events = NewEvents(evs)
	replays, _, err := s.ActionList(ctx, db, store.ActionListParams{Filter: store.ActionFilter{ReplayOf: &id}, Ascending: true, Limit: MaxLimit})
	if err != nil {
		return nil, err
	}
	out.Replays = NewActions(replays)
	return out, nil
}

// CancelRequest is the optional body of POST /v1/actions/{id}/cancel.
type CancelRequest struct {
	Reason string `json:"reason,omitempty"`
}

// CancelResponse answers POST /v1/actions/{id}/cancel: the cancelled
// action and, when it was cancelled possibly sent, a warning that says why.
type CancelResponse struct {
	Action  Action `json:"action"`
	Warning string `json:"warning,omitempty"`
}

func (s *Server) cancelAction(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var req CancelRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	var check *store.SendCheck
	if s.cfg.CheckSend != nil {
		if check, err = s.cfg.CheckSend(r.Context(), id); err != nil {
			return err
		}
	}
	a, note, err := s.cfg.Store.ActionCancelChecked(r.Context(), s.cfg.DB, id, p.Actor(), req.Reason, check)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, CancelResponse{Action: NewAction(a), Warning: PossiblySentWarning(a, note, store.ReplayOptionPossiblySent)})
	return nil
}

// PossiblySentWarning is what a cancel tells the operator of an action it
// cancelled possibly sent ("" for any other): why (note, from the cancel),
// and that a replay needs option (the replay option as the caller's
// interface names it).
func PossiblySentWarning(a *store.Action, note, option string) string {
	if !a.PossiblySent {
		return ""
	}
	return "cancelled, possibly sent: its call reached Khoros with no answer, and " + note +
		"; the message may have reached the customer, so replaying it needs " + option
}

// ReplayOptions are the options of both replay endpoints.
type ReplayOptions struct {
	// Reason is required and recorded in each replay's event.
	Reason              string `json:"reason"`
	AllowReplayOfReplay bool   `json:"allow_replay_of_replay,omitempty"`
	AllowSucceeded      bool   `json:"allow_succeeded,omitempty"`
	AllowReplayed       bool   `json:"allow_replayed,omitempty"`
	// AllowPossiblySent replays actions cancelled possibly sent, which may
	// deliver their message twice.
	AllowPossiblySent bool `json:"allow_possibly_sent,omitempty"`
	// DryRun answers what would be replayed without replaying.
	DryRun bool `json:"dry_run,omitempty"`
}

func (o ReplayOptions) store(p Principal) (store.ReplayOptions, error) {
	if strings.TrimSpace(o.Reason) == "" {
		return store.ReplayOptions{}, badBody("reason", "is required: say why these actions are replayed")
	}
	return store.ReplayOptions{Actor: p.Actor(), Reason: o.Reason, AllowReplayOfReplay: o.AllowReplayOfReplay,
		AllowSucceeded: o.AllowSucceeded, AllowReplayed: o.AllowReplayed, AllowPossiblySent: o.AllowPossiblySent}, nil
}

// ReplayResponse answers POST /v1/actions/{id}/replay: 201 with the new
// action; with dry_run, 200 and whether it would be replayed.
type ReplayResponse struct {
	DryRun     bool    `json:"dry_run"`
	OriginalID int64   `json:"original_id"`
	Action     *Action `json:"action,omitempty"`
	EventID    int64   `json:"event_id,omitempty"`
}

func (s *Server) replayAction(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var req ReplayOptions
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	opts, err := req.store(p)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if req.DryRun {
		// The same checks as a replay, without the writes: a refusal is
		// answered as one.
		done, skipped, err := s.dryReplay(r, id, opts)
		if err != nil {
			return err
		}
		if skipped != nil {
			return skipped
		}
		if !done {
			return store.ErrNotFound
		}
		writeJSON(w, http.StatusOK, ReplayResponse{DryRun: true, OriginalID: id})
		return nil
	}
	rp, err := s.cfg.Store.ActionReplay(ctx, s.cfg.DB, id, opts)
	if err != nil {
		return err
	}
	a, err := s.cfg.Store.ActionGet(ctx, s.cfg.DB, rp.ActionID)
	if err != nil {
		return err
	}
	out := NewAction(a)
	w.Header().Set("Location", "/v1/actions/"+strconv.FormatInt(a.ID, 10))
	writeJSON(w, http.StatusCreated, ReplayResponse{OriginalID: id, Action: &out, EventID: rp.EventID})
	return nil
}

// dryReplay replays id in a transaction it rolls back, so a dry run applies
// exactly the checks a replay does.
func (s *Server) dryReplay(r *http.Request, id int64, opts store.ReplayOptions) (ok bool, refused error, err error) {
	tx, err := s.cfg.DB.Begin(r.Context())
	if err != nil {
		return false, nil, err
	}
	defer func() { _ = tx.Rollback(r.Context()) }()
	_, err = s.cfg.Store.ActionReplay(r.Context(), tx, id, opts)
	if _, isRefusal := store.IsReplayRefused(err); isRefusal {
		return false, err, nil
	}
	if errors.Is(err, store.ErrNotFound) {
		return false, nil, nil
	}
	return err == nil, nil, err
}

// BulkReplayRequest is the body of POST /v1/replay.
type BulkReplayRequest struct {
	Filter BulkFilter `json:"filter"`
	ReplayOptions
	// Sample is how many of the actions a dry run lists (default 20, at
	// most 1000).
	Sample int `json:"sample,omitempty"`
}

// BulkFilter selects the actions a bulk replay replays. At least one field
// must be set.
type BulkFilter struct {
	IDs   []int64  `json:"ids,omitempty"`
	App   string   `json:"app,omitempty"`
	Kind  string   `json:"kind,omitempty"`
	State []string `json:"state,omitempty"`
	Lane  string   `json:"lane,omitempty"`
	From  string   `json:"from,omitempty"`
	To    string   `json:"to,omitempty"`
}

// BulkReplayResponse answers POST /v1/replay.
type BulkReplayResponse struct {
	DryRun bool `json:"dry_run"`
	// Matched counts the actions the filter selects; Eligible those that
	// may be replayed; Skipped the others, by the option that would include
	// them ("unfinished" for actions still in progress; allow_possibly_sent
	// for actions cancelled possibly sent).
	Matched  int64            `json:"matched"`
	Eligible int64            `json:"eligible"`
	Skipped  map[string]int64 `json:"skipped"`
	// Sample (dry run) lists the first actions that would be replayed.
	Sample []Action `json:"sample,omitempty"`
	// Replayed counts the new actions; FirstActionIDs are the first of them.
	Replayed       int64   `json:"replayed"`
	FirstActionIDs []int64 `json:"first_action_ids,omitempty"`
}

func (f BulkFilter) store(kinds []string) (store.ActionFilter, error) {
	out := store.ActionFilter{IDs: f.IDs, AppID: f.App, Kind: f.Kind, Lane: f.Lane}
	if f.IDs == nil && f.App == "" && f.Kind == "" && len(f.State) == 0 && f.Lane == "" && f.From == "" && f.To == "" {
		return out, badBody("filter", "is required: select the actions to replay (ids, app, kind, state, lane, from, to)")
	}
	if err := CheckKind(f.Kind, kinds); err != nil {
		return out, badBody("filter.kind", "%v", err)
	}
	states, err := ParseActionStates(f.State)
	if err != nil {
		return out, badBody("filter.state", "%v", err)
	}
	out.States = states
	if f.From != "" {
		if out.From, err = ParseTime(f.From); err != nil {
			return out, badBody("filter.from", "%v", err)
		}
	}
	if f.To != "" {
		if out.To, err = ParseTime(f.To); err != nil {
			return out, badBody("filter.to", "%v", err)
		}
	}
	if !out.From.IsZero() && !out.To.IsZero() && !out.From.Before(out.To) {
		return out, badBody("filter.to", "must be after filter.from")
	}
	return out, nil
}

func (s *Server) replayBulk(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req BulkReplayRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	f, err := req.Filter.store(s.cfg.Kinds)
	if err != nil {
		return err
	}
	opts, err := req.ReplayOptions.store(p)
	if err != nil {
		return err
	}
	if req.Sample == 0 {
		req.Sample = 20
	}
	if req.Sample < 0 || req.Sample > MaxLimit {
		return badBody("sample", "must be from 1 to %d", MaxLimit)
	}
	ctx := r.Context()
	if req.DryRun {
		plan, err := s.cfg.Store.ActionReplayPlan(ctx, s.cfg.DB, f, opts, req.Sample)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, NewReplayPlan(plan))
		return nil
	}
	res, err := s.cfg.Store.ActionReplayBulk(ctx, s.cfg.DB, store.ReplayBulkParams{Filter: f, Options: opts, BatchSize: s.cfg.ReplayBatchSize})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, NewReplayResult(res))
	return nil
}

// NewReplayPlan answers the dry run of a bulk replay (POST /v1/replay,
// botq replay --dry-run).
func NewReplayPlan(plan *store.ReplayPlan) BulkReplayResponse {
	return BulkReplayResponse{DryRun: true, Matched: plan.Matched, Eligible: plan.Eligible, Skipped: plan.Skipped, Sample: NewActions(plan.Sample)}
}

// NewReplayResult answers a bulk replay that ran. Its skipped counts
// include the actions that changed while it ran (changed_meanwhile).
func NewReplayResult(res *store.ReplayBulkResult) BulkReplayResponse {
	skipped := res.Plan.Skipped
	if res.Skipped > 0 {
		skipped["changed_meanwhile"] = res.Skipped
	}
	return BulkReplayResponse{Matched: res.Plan.Matched, Eligible: res.Plan.Eligible, Skipped: skipped,
		Replayed: res.Replayed, FirstActionIDs: res.FirstIDs}
}
