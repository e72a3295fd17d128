package console

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

// The operator's actions. Each needs a reason, is done by the store
// function the API uses, and is recorded as an event whose actor is
// "console:<key name>".

// maxReason bounds a reason, as a sentence or two.
const maxReason = 1000

// reason reads the form's required reason.
func reason(r *http.Request, what string) (string, error) {
	s := strings.TrimSpace(r.PostFormValue("reason"))
	if s == "" {
		return "", badRequest("A reason is required: say why %s. Nothing was done.", what)
	}
	if len([]rune(s)) > maxReason {
		return "", badRequest("The reason is longer than %d characters. Nothing was done.", maxReason)
	}
	return s, nil
}

// replayOptions reads the replay options ticked in a form (or given in a
// query).
func replayOptions(v url.Values, u *user, why string) store.ReplayOptions {
	on := func(k string) bool { return v.Get(k) == "on" || v.Get(k) == "true" }
	return store.ReplayOptions{Actor: u.Actor(), Reason: why,
		AllowSucceeded: on(store.ReplayOptionSucceeded), AllowPossiblySent: on(store.ReplayOptionPossiblySent),
		AllowReplayOfReplay: on(store.ReplayOptionReplayOfReplay), AllowReplayed: on(store.ReplayOptionReplayed)}
}

func (c *Console) replay(w http.ResponseWriter, r *http.Request, u *user) error {
	id, err := parseID(r.PathValue("id"), "an action")
	if err != nil {
		return err
	}
	why, err := reason(r, "this action is sent again")
	if err != nil {
		return err
	}
	rp, err := c.cfg.Store.ActionReplay(r.Context(), c.cfg.DB, id, replayOptions(r.PostForm, u, why))
	if err != nil {
		return err
	}
	c.cfg.Logger.Info().Str("actor", u.Actor()).Int64("action_id", id).Int64("replay_id", rp.ActionID).Msg("console: Replayed")
	http.Redirect(w, r, fmt.Sprintf("/actions/%d?replayed=%d", id, rp.ActionID), http.StatusSeeOther)
	return nil
}

func (c *Console) cancel(w http.ResponseWriter, r *http.Request, u *user) error {
	id, err := parseID(r.PathValue("id"), "an action")
	if err != nil {
		return err
	}
	why, err := reason(r, "this action is cancelled")
	if err != nil {
		return err
	}
	ctx := r.Context()
	var check *store.SendCheck
	if c.cfg.CheckSend != nil {
		if check, err = c.cfg.CheckSend(ctx, id); err != nil {
			return err
		}
	}
	a, _, err := c.cfg.Store.ActionCancelChecked(ctx, c.cfg.DB, id, u.Actor(), why, check)
	if err != nil {
		return err
	}
	c.cfg.Logger.Info().Str("actor", u.Actor()).Int64("action_id", id).Bool("possibly_sent", a.PossiblySent).Msg("console: Cancelled")
	http.Redirect(w, r, fmt.Sprintf("/actions/%d?cancelled=1", id), http.StatusSeeOther)
	return nil
}

// replayPlanData is the dry run of a replay by filter.
type replayPlanData struct {
	Query   *actionQuery
	Plan    *store.ReplayPlan
	Sample  []api.Action
	Skipped []skippedCount
	// Options are the options that would include skipped actions, with
	// whether each is ticked.
	Options []planOption
	Error   string
}

type skippedCount struct {
	Why    string
	Count  int64
	Option string
}

type planOption struct {
	Name    string
	Label   string
	Checked bool
}

// planSample is how many of the actions a dry run lists.
const planSample = 20

func (c *Console) replayPlan(w http.ResponseWriter, r *http.Request, u *user) error {
	v := r.URL.Query()
	q, err := c.readActionQuery(v)
	if err != nil {
		return err
	}
	opts := replayOptions(v, u, "dry run")
	plan, err := c.cfg.Store.ActionReplayPlan(r.Context(), c.cfg.DB, q.filter, opts, planSample)
	if err != nil {
		return err
	}
	data := replayPlanData{Query: q, Plan: plan, Sample: api.NewActions(plan.Sample)}
	for _, k := range []string{"unfinished", store.ReplayOptionSucceeded, store.ReplayOptionPossiblySent,
		store.ReplayOptionReplayOfReplay, store.ReplayOptionReplayed} {
		if n := plan.Skipped[k]; n > 0 {
			opt := k
			if k == "unfinished" {
				opt = ""
			}
			data.Skipped = append(data.Skipped, skippedCount{Why: optionLabel(k), Count: n, Option: opt})
		}
	}
	for _, k := range []string{store.ReplayOptionSucceeded, store.ReplayOptionPossiblySent, store.ReplayOptionReplayOfReplay, store.ReplayOptionReplayed} {
		data.Options = append(data.Options, planOption{Name: k, Label: optionLabel(k), Checked: v.Get(k) == "on"})
	}
	c.render(w, r, u, http.StatusOK, "replay_plan", "Replay by filter", data)
	return nil
}

// replayDoneData is what a replay by filter did.
type replayDoneData struct {
	Query    *actionQuery
	Result   *store.ReplayBulkResult
	Skipped  []skippedCount
	FirstIDs []int64
	Reason   string
	Link     template.URL
	// More is true when more were replayed than FirstIDs lists.
	More bool
}

func (c *Console) replayBulk(w http.ResponseWriter, r *http.Request, u *user) error {
	q, err := c.readActionQuery(r.PostForm)
	if err != nil {
		return err
	}
	if r.PostForm.Get("from") == "" || r.PostForm.Get("to") == "" {
		return badRequest("A replay by filter replays the range its dry run counted: open the dry run again. Nothing was done.")
	}
	why, err := reason(r, "these actions are sent again")
	if err != nil {
		return err
	}
	opts := replayOptions(r.PostForm, u, why)
	res, err := c.cfg.Store.ActionReplayBulk(r.Context(), c.cfg.DB, store.ReplayBulkParams{Filter: q.filter, Options: opts, BatchSize: c.cfg.ReplayBatchSize})
	c.cfg.Logger.Info().Err(err).Str("actor", u.Actor()).Int64("replayed", replayedOf(res)).Msg("console: Replayed by filter")
	if err != nil {
		return err
	}
	data := replayDoneData{Query: q, Result: res, FirstIDs: res.FirstIDs, Reason: why, Link: q.Link(),
		More: res.Replayed > int64(len(res.FirstIDs))}
	for k, n := range res.Plan.Skipped {
		data.Skipped = append(data.Skipped, skippedCount{Why: optionLabel(k), Count: n})
	}
	if res.Skipped > 0 {
		data.Skipped = append(data.Skipped, skippedCount{Why: optionLabel("changed_meanwhile"), Count: res.Skipped})
	}
	c.render(w, r, u, http.StatusOK, "replay_done", "Replayed", data)
	return nil
}

func replayedOf(res *store.ReplayBulkResult) int64 {
	if res == nil {
		return 0
	}
	return res.Replayed
}

func (c *Console) pause(w http.ResponseWriter, r *http.Request, u *user) error {
	id := r.PathValue("id")
	why, err := reason(r, "the app is paused")
	if err != nil {
		return err
	}
	until := store.Forever
	if s := strings.TrimSpace(r.PostFormValue("for")); s != "" {
		d, err := api.ParseDuration(s)
		if err != nil || d <= 0 {
			return badRequest("For: %q is not a duration like 30m, 2h or 1d. Nothing was done.", s)
		}
		until = c.cfg.Now().Add(d)
	}
	if _, err := c.cfg.Store.AppPauseAudited(r.Context(), c.cfg.DB, id, until, u.Actor(), why); err != nil {
		return err
	}
	c.cfg.Logger.Info().Str("actor", u.Actor()).Str("app_id", id).Time("until", until).Msg("console: Paused")
	http.Redirect(w, r, "/apps#app-"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

func (c *Console) resume(w http.ResponseWriter, r *http.Request, u *user) error {
	id := r.PathValue("id")
	why, err := reason(r, "the app is resumed")
	if err != nil {
		return err
	}
	if _, err := c.cfg.Store.AppResumeAudited(r.Context(), c.cfg.DB, id, u.Actor(), why); err != nil {
		return err
	}
	c.cfg.Logger.Info().Str("actor", u.Actor()).Str("app_id", id).Msg("console: Resumed")
	http.Redirect(w, r, "/apps#app-"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}
