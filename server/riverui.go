package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/botq/botq/api"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/store"
)

// River UI writes to River only: its Cancel, Retry and Delete of a job
// would move an action's River job behind botq's back (a cancelled running
// job still sends once the reconciler releases its ambiguous send, a retried
// lane follower skips its lane, a cancelled or deleted parked job leaves its
// action unknown). So botq answers those three endpoints itself for jobs
// that execute botq actions:
//
//   - Cancel is botq's cancel (as `botq actions cancel`): the action is
//     cancelled with its job, or the cancel is refused (in flight, sent,
//     finished, or unknown and found at Khoros). An unknown action's send is
//     checked at Khoros first, and one Khoros cannot answer for is cancelled
//     possibly sent; River UI shows no warning on success, so the answer's
//     `warning` and the action's cancel event are where that is said.
//   - Retry is refused: botq runs an action's job when its lane, its app's
//     limits, its retry schedule and the ambiguous-send rules allow, and
//     never resends a finished action; `botq replay` sends one again.
//   - Delete is refused unless the job is finalized (completed, cancelled,
//     discarded), which River's own cleaner deletes anyway.
//
// Other jobs (the maintenance queue's) and queue writes are River UI's, as
// River does them. Every write that changes something is a `riverui` event:
// one per botq action it touched, with the action's app and id, and one
// without an action for the rest.
const riverUIPrefix = "/riverui"

// riverUIJobWrites are River UI's job endpoints that write.
var riverUIJobWrites = map[string]string{
	riverUIPrefix + "/api/jobs/cancel": "cancel",
	riverUIPrefix + "/api/jobs/retry":  "retry",
	riverUIPrefix + "/api/jobs/delete": "delete",
}

// riverUIIDs is River UI's job write request: {"ids": ["1", 2]}, decoded
// as River UI decodes it.
type riverUIIDs struct {
	IDs []riverUIID `json:"ids"`
}

type riverUIID int64

func (i *riverUIID) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) > 1 && s[0] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("job id %s: %w", b, err)
	}
	*i = riverUIID(n)
	return nil
}

// riverUIError is an answer River UI shows: its API's error body.
type riverUIError struct {
	Status  int
	Message string
}

func writeRiverUIError(w http.ResponseWriter, e riverUIError) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": e.Message})
}

// auditRiverUI serves an operator's write through River UI (cancel, retry
// or delete jobs, pause or resume a queue): botq's rules for the jobs of its
// actions, River's for the rest, and a riverui event for what changed.
func (m *Main) auditRiverUI(w http.ResponseWriter, r *http.Request, p api.Principal, ui http.Handler) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if api.IsReadTimeout(err) {
		writeRiverUIError(w, riverUIError{http.StatusRequestTimeout, "The request body did not arrive in time (http.read_timeout)."})
		return
	}
	if err != nil {
		http.Error(w, "read request body", http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if op, ok := riverUIJobWrites[r.URL.Path]; ok && r.Method == http.MethodPost {
		m.riverUIJobWrite(w, r, p, ui, op, body)
		return
	}
	m.passRiverUI(w, r, p, ui, body, nil)
}

// passRiverUI lets River UI serve the request and, when it succeeds,
// records it: one event per action whose job it touched (touched), and one
// without an action when it touched anything else (or touched is nil: a
// queue write).
func (m *Main) passRiverUI(w http.ResponseWriter, r *http.Request, p api.Principal, ui http.Handler, body []byte, touched []*store.RiverJob) {
	rec := &statusRecorder{ResponseWriter: w}
	ui.ServeHTTP(rec, r)
	if rec.status >= 400 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	err := pgx.BeginFunc(ctx, m.Pool, func(tx pgx.Tx) error {
		others := touched == nil
		for _, j := range touched {
			if !isActionJob(j) {
				others = true
				continue
			}
			if err := m.riverUIEvent(ctx, tx, r, p, body, j); err != nil {
				return err
			}
		}
		if others {
			return m.riverUIEvent(ctx, tx, r, p, body, nil)
		}
		return nil
	})
	if err != nil {
		m.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("api: Recording a River UI write as an event failed")
	}
}

// riverUIEvent records a River UI write; j, when not nil, is the job of the
// action it touched.
func (m *Main) riverUIEvent(ctx context.Context, db store.DBTX, r *http.Request, p api.Principal, body []byte, j *store.RiverJob) error {
	after := map[string]any{"method": r.Method, "path": r.URL.Path}
	if json.Valid(body) && len(body) > 0 {
		after["body"] = json.RawMessage(body)
	}
	ev := store.EventInsertParams{Kind: "riverui", Actor: p.Actor(), After: after}
	if j != nil {
		after["job_id"] = j.ID
		ev.AppID, ev.ActionID = j.AppID, &j.ActionID
		ev.Before = map[string]any{"state": j.ActionState, "job_state": j.State}
	}
	_, err := m.Store.EventInsert(ctx, db, ev)
	return err
}

// isActionJob reports whether j executes a botq action.
func isActionJob(j *store.RiverJob) bool {
	_, ok := jobs.ActionKindOf(j.Kind)
	return ok && j.ActionID != 0
}

// riverUIJobWrite serves River UI's Cancel, Retry or Delete of jobs.
func (m *Main) riverUIJobWrite(w http.ResponseWriter, r *http.Request, p api.Principal, ui http.Handler, op string, body []byte) {
	var req riverUIIDs
	if err := json.Unmarshal(body, &req); err != nil {
		writeRiverUIError(w, riverUIError{http.StatusBadRequest, "Invalid request body: " + err.Error()})
		return
	}
	if len(req.IDs) == 0 {
		m.passRiverUI(w, r, p, ui, body, nil) // River UI refuses it
		return
	}
	ids := make([]int64, len(req.IDs))
	for i, id := range req.IDs {
		ids[i] = int64(id)
	}
	list, err := m.Store.RiverJobList(r.Context(), m.Pool, ids)
	if err != nil {
		m.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("api: Looking up River UI's jobs failed")
		writeRiverUIError(w, riverUIError{http.StatusInternalServerError, "botq could not look up the jobs; see botq's log"})
		return
	}
	var actionJobs []*store.RiverJob
	for _, j := range list {
		if isActionJob(j) {
			actionJobs = append(actionJobs, j)
		}
	}
	if len(actionJobs) == 0 {
		m.passRiverUI(w, r, p, ui, body, list)
		return
	}
	switch op {
	case "retry":
		writeRiverUIError(w, riverUIError{http.StatusConflict, refusalMessage(actionJobs, retryRefusal)})
	case "delete":
		var live []*store.RiverJob
		for _, j := range actionJobs {
			if !j.Finalized() {
				live = append(live, j)
			}
		}
		if len(live) > 0 {
			writeRiverUIError(w, riverUIError{http.StatusConflict, refusalMessage(live, deleteRefusal)})
			return
		}
		m.passRiverUI(w, r, p, ui, body, list)
	case "cancel":
		if missing := missingIDs(ids, list); len(missing) > 0 {
			writeRiverUIError(w, riverUIError{http.StatusNotFound, fmt.Sprintf("Job(s) %s not found; nothing was cancelled.", joinIDs(missing))})
			return
		}
		m.riverUICancel(w, r, p, body, list)
	}
}

// riverUICancel cancels the jobs of a River UI Cancel: an action's job by
// botq's cancel, each in its own transaction with its riverui event; the
// other jobs as River UI does, in one. A refused cancel does not stop the
// others; the answer names each refused one and why.
func (m *Main) riverUICancel(w http.ResponseWriter, r *http.Request, p api.Principal, body []byte, list []*store.RiverJob) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	var others []*store.RiverJob
	var done, warnings []string
	worst := riverUIError{Status: http.StatusOK}
	var refused []string
	for _, j := range list {
		if !isActionJob(j) {
			others = append(others, j)
			continue
		}
		warning, err := m.riverUICancelAction(r, p, body, j)
		if err == nil {
			done = append(done, fmt.Sprintf("action %d (job %d)", j.ActionID, j.ID))
			if warning != "" {
				warnings = append(warnings, fmt.Sprintf("botq action %d (job %d) was %s.", j.ActionID, j.ID, warning))
			}
			continue
		}
		e := m.cancelRefusal(j, err)
		refused = append(refused, e.Message)
		worst.Status = max(worst.Status, e.Status)
	}
	if len(others) > 0 {
		err := pgx.BeginFunc(ctx, m.Pool, func(tx pgx.Tx) error {
			for _, j := range others {
				if _, err := m.uiRiver.JobCancelTx(ctx, tx, j.ID); err != nil {
					return fmt.Errorf("cancel job %d: %w", j.ID, err)
				}
			}
			return m.riverUIEvent(ctx, tx, r, p, body, nil)
		})
		if err != nil {
			m.Logger.Error().Err(err).Msg("api: River UI's Cancel of jobs failed")
			refused = append(refused, fmt.Sprintf("Jobs %s were not cancelled: an internal error; see botq's log.", joinJobIDs(others)))
			worst.Status = http.StatusInternalServerError
		} else {
			done = append(done, "job(s) "+joinJobIDs(others))
		}
	}
	if len(refused) == 0 {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		ok := map[string]string{"status": "ok"}
		if len(warnings) > 0 {
			ok["warning"] = strings.Join(warnings, " ")
		}
		_ = json.NewEncoder(w).Encode(ok)
		return
	}
	worst.Message = strings.Join(refused, " ")
	if len(done) > 0 {
		worst.Message += " Cancelled: " + strings.Join(done, ", ") + "."
	}
	writeRiverUIError(w, worst)
}

// riverUICancelAction cancels the action of job j by botq's cancel, with
// its riverui event, after asking Khoros about its send when it is unknown
// (outside the transaction: the listing's own timeout, khoros.http_timeout,
// ends one that hangs, and the check's context outlasts it). warning says
// when it was cancelled possibly sent.
func (m *Main) riverUICancelAction(r *http.Request, p api.Principal, body []byte, j *store.RiverJob) (warning string, err error) {
	base := context.WithoutCancel(r.Context())
	var check *store.SendCheck
	if m.Reconciler != nil {
		cctx, cancel := context.WithTimeout(base, m.Config.Khoros.HTTPTimeout+10*time.Second)
		check, err = m.Reconciler.CheckSend(cctx, j.ActionID)
		cancel()
		if err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(base, 10*time.Second)
	defer cancel()
	err = pgx.BeginFunc(ctx, m.Pool, func(tx pgx.Tx) error {
		a, note, err := m.Store.ActionCancelChecked(ctx, tx, j.ActionID, p.Actor(), fmt.Sprintf("River UI: Cancel of job %d", j.ID), check)
		if err != nil {
			return err
		}
		warning = api.PossiblySentWarning(a, note, fmt.Sprintf("`botq replay %d --possibly-sent` (API: %s)", a.ID, store.ReplayOptionPossiblySent))
		return m.riverUIEvent(ctx, tx, r, p, body, j)
	})
	return warning, err
}

// cancelRefusal says why botq's cancel refused an action's job.
func (m *Main) cancelRefusal(j *store.RiverJob, err error) riverUIError {
	what := fmt.Sprintf("botq action %d (job %d)", j.ActionID, j.ID)
	why := strings.TrimPrefix(err.Error(), fmt.Sprintf("cancel action %d: ", j.ActionID))
	switch {
	case errors.Is(err, store.ErrInFlight):
		return riverUIError{http.StatusConflict, what + " was not cancelled: its Bot v3 call is being made right now, and cutting the call would not stop a message that reached Khoros. " +
			fmt.Sprintf("Try again when it is not in flight, here or with `botq actions cancel %d --reason ...`.", j.ActionID)}
	case errors.Is(err, store.ErrNotFound):
		return riverUIError{http.StatusNotFound, what + " was not cancelled: " + why + "."}
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrIllegalTransition):
		return riverUIError{http.StatusConflict, what + " was not cancelled: " + why + ". See `botq actions show " + strconv.FormatInt(j.ActionID, 10) + "`."}
	}
	m.Logger.Error().Err(err).Int64("action_id", j.ActionID).Int64("job_id", j.ID).Msg("api: River UI's Cancel of an action's job failed")
	return riverUIError{http.StatusInternalServerError, what + " was not cancelled: an internal error; see botq's log."}
}

// retryRefusal says why River UI's Retry of an action's job is refused and
// what to do instead.
func retryRefusal(j *store.RiverJob) string {
	what := fmt.Sprintf("botq action %d (job %d) is %s", j.ActionID, j.ID, j.ActionState)
	cancel := fmt.Sprintf("to stop it, `botq actions cancel %d --reason ...`", j.ActionID)
	switch j.ActionState {
	case store.ActionQueued, store.ActionRetrying:
		return what + ": botq runs its job when its lane's order, its app's limits and its retry schedule allow, and a Retry would bypass them; " + cancel + "."
	case store.ActionUnknown:
		return what + ": its send may have reached Khoros, and only the reconciler releases it (when no record of it shows up within reconciler.ambiguous_grace), so a Retry could send it twice; " + cancel + "."
	case store.ActionSent:
		return what + ": Khoros accepted it and the reconciler settles its final status; there is nothing to retry."
	case store.ActionSucceeded:
		return what + fmt.Sprintf(": to send it again, `botq replay %d --allow-succeeded --reason ...` (a new action, in its lane's order).", j.ActionID)
	}
	return what + fmt.Sprintf(": a Retry of its job would not send it (botq does not resend a finished action); to send it again, `botq replay %d --reason ...` (a new action, in its lane's order).", j.ActionID)
}

// deleteRefusal says why River UI's Delete of an action's unfinished job is
// refused.
func deleteRefusal(j *store.RiverJob) string {
	return fmt.Sprintf("botq action %d (job %d) is %s and its job %s: deleting the job would leave the action %s for good; to stop it, `botq actions cancel %d --reason ...` (its job can be deleted once it is finalized).",
		j.ActionID, j.ID, j.ActionState, j.State, j.ActionState, j.ActionID)
}

func refusalMessage(list []*store.RiverJob, why func(*store.RiverJob) string) string {
	msgs := make([]string, 0, len(list)+1)
	msgs = append(msgs, "Nothing was done.")
	for _, j := range list {
		msgs = append(msgs, why(j))
	}
	return strings.Join(msgs, " ")
}

func missingIDs(ids []int64, list []*store.RiverJob) []int64 {
	found := make(map[int64]bool, len(list))
	for _, j := range list {
		found[j.ID] = true
	}
	var out []int64
	for _, id := range ids {
		if !found[id] {
			out = append(out, id)
		}
	}
	return out
}

func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ", ")
}

func joinJobIDs(list []*store.RiverJob) string {
	ids := make([]int64, len(list))
	for i, j := range list {
		ids[i] = j.ID
	}
	return joinIDs(ids)
}
