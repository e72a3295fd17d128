package console

import (
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

// Overview ----------------------------------------------------------------

// overviewApp is one app's line of the overview.
type overviewApp struct {
	App      api.App
	InFlight int64
	Failed   int64
	// Token is "ok", "expiring" (within a week), "expired" or "none".
	Token string
}

type overviewData struct {
	Apps []overviewApp
	Plot *plot
}

// Throughput plot: the last 6 hours in 15-minute bars.
const (
	plotSpan = 6 * time.Hour
	plotStep = 15 * time.Minute
)

func (c *Console) overview(w http.ResponseWriter, r *http.Request, u *user) error {
	ctx := r.Context()
	now := c.cfg.Now().UTC()
	apps, err := api.LoadApps(ctx, c.cfg.Store, c.cfg.DB, "", c.cfg.ExternalToken, now)
	if err != nil {
		return err
	}
	acts, err := c.cfg.Store.AppActivityList(ctx, c.cfg.DB, now.Add(-time.Hour))
	if err != nil {
		return err
	}
	activity := map[string]store.AppActivity{}
	for _, a := range acts {
		activity[a.AppID] = a
	}
	to := now.Truncate(plotStep).Add(plotStep)
	buckets, err := c.cfg.Store.Throughput(ctx, c.cfg.DB, to.Add(-plotSpan), to, plotStep)
	if err != nil {
		return err
	}
	data := overviewData{Plot: newPlot(buckets, plotStep)}
	for _, a := range apps {
		data.Apps = append(data.Apps, overviewApp{App: a, InFlight: activity[a.ID].InFlight, Failed: activity[a.ID].Failed,
			Token: tokenState(a.Token, now)})
	}
	c.render(w, r, u, http.StatusOK, "overview", "Overview", data)
	return nil
}

func tokenState(t api.AppToken, now time.Time) string {
	switch {
	case t.Source == "none":
		return "none"
	case t.ExpiresAt == nil:
		return "ok"
	case !t.ExpiresAt.After(now):
		return "expired"
	case t.ExpiresAt.Sub(now) < 7*24*time.Hour:
		return "expiring"
	}
	return "ok"
}

// Actions ------------------------------------------------------------------

type actionsData struct {
	Query   *actionQuery
	Apps    []*store.App
	Kinds   []string
	States  []string
	Actions []api.Action
	Next    template.URL
	Error   string
}

var actionStateNames = []string{"queued", "running", "retrying", "sent", "unknown", "succeeded", "failed", "cancelled"}

func (c *Console) actions(w http.ResponseWriter, r *http.Request, u *user) error {
	ctx := r.Context()
	apps, err := c.cfg.Store.AppList(ctx, c.cfg.DB)
	if err != nil {
		return err
	}
	data := actionsData{Apps: apps, Kinds: c.cfg.Kinds, States: actionStateNames}
	q, err := c.readActionQuery(r.URL.Query())
	data.Query = q
	if err != nil {
		return c.renderFormError(w, r, u, "actions", "Actions", &data, &data.Error, err)
	}
	before, err := parseActionCursor(r.URL.Query().Get("before"))
	if err != nil {
		return err
	}
	list, more, err := c.cfg.Store.ActionPage(ctx, c.cfg.DB, store.ActionPageParams{Filter: q.filter, Before: before, Limit: pageSize})
	if err != nil {
		return err
	}
	data.Actions = api.NewActions(list)
	if more {
		last := list[len(list)-1]
		data.Next = withParam("/actions", q.values(), "before", actionCursorText(store.ActionCursor{CreatedAt: last.CreatedAt, ID: last.ID}))
	}
	c.render(w, r, u, http.StatusOK, "actions", "Actions", data)
	return nil
}

// renderFormError shows a listing's page with the filter's error in its
// form (a 400) rather than an error page, so the filter can be fixed.
func (c *Console) renderFormError(w http.ResponseWriter, r *http.Request, u *user, page, title string, data any, msg *string, err error) error {
	he, ok := err.(*httpError)
	if !ok {
		return err
	}
	*msg = he.Message
	c.render(w, r, u, he.Status, page, title, data)
	return nil
}

// One action ---------------------------------------------------------------

type actionData struct {
	*api.ActionDetail
	Payload string
	// Chain is the actions this one replays, oldest first.
	Chain []api.Action
	// Options are the replay options that apply to this action.
	Options   []string
	CanReplay bool
	CanCancel bool
	Replayed  int64
	Cancelled bool
	Warning   string
}

// maxChain bounds how far up a replay chain the page follows.
const maxChain = 20

func (c *Console) action(w http.ResponseWriter, r *http.Request, u *user) error {
	id, err := parseID(r.PathValue("id"), "an action")
	if err != nil {
		return err
	}
	ctx := r.Context()
	a, err := c.cfg.Store.ActionView(ctx, c.cfg.DB, id)
	if err != nil {
		return err
	}
	d, err := api.LoadActionDetail(ctx, c.cfg.Store, c.cfg.DB, a)
	if err != nil {
		return err
	}
	data := actionData{ActionDetail: d, Payload: prettyJSON(d.Action.Payload),
		CanReplay: a.State.Final(), CanCancel: cancellable(a.State)}
	for p := a.ReplayOf; p != nil && len(data.Chain) < maxChain; {
		orig, err := c.cfg.Store.ActionView(ctx, c.cfg.DB, *p)
		if err != nil {
			break // retention deleted it; replay_of keeps its id
		}
		data.Chain = append([]api.Action{api.NewAction(orig)}, data.Chain...)
		p = orig.ReplayOf
	}
	data.Options = replayOptionsFor(a, len(d.Replays) > 0)
	if a.PossiblySent {
		data.Warning = "Cancelled, possibly sent: its call reached Khoros with no answer, and Khoros could not say whether it arrived. " +
			"The message may have reached the customer, so a replay needs “" + optionLabel(store.ReplayOptionPossiblySent) + "”."
	}
	if n, err := strconv.ParseInt(r.URL.Query().Get("replayed"), 10, 64); err == nil && n > 0 {
		data.Replayed = n
	}
	data.Cancelled = r.URL.Query().Get("cancelled") != ""
	c.render(w, r, u, http.StatusOK, "action", "Action "+strconv.FormatInt(id, 10), data)
	return nil
}

// cancellable reports whether an action in state s may be cancelled: not
// once its call is over or while it is being made.
func cancellable(s store.ActionState) bool {
	return s == store.ActionQueued || s == store.ActionRetrying || s == store.ActionUnknown
}

// replayOptionsFor lists the refusals a replay of a would meet, as the
// options that lift them: the form shows only those.
func replayOptionsFor(a *store.Action, replayed bool) []string {
	var out []string
	if a.State == store.ActionSucceeded {
		out = append(out, store.ReplayOptionSucceeded)
	}
	if a.PossiblySent {
		out = append(out, store.ReplayOptionPossiblySent)
	}
	if a.ReplayOf != nil {
		out = append(out, store.ReplayOptionReplayOfReplay)
	}
	if replayed {
		out = append(out, store.ReplayOptionReplayed)
	}
	return out
}

// Requests -----------------------------------------------------------------

type requestsData struct {
	Query     *requestQuery
	Apps      []*store.App
	Kinds     []string
	Requests  []api.Request
	Next      template.URL
	Error     string
	RequestID string
}

func (c *Console) requests(w http.ResponseWriter, r *http.Request, u *user) error {
	ctx := r.Context()
	if id := r.URL.Query().Get("request_id"); id != "" {
		http.Redirect(w, r, "/requests/"+url.PathEscape(id), http.StatusSeeOther)
		return nil
	}
	apps, err := c.cfg.Store.AppList(ctx, c.cfg.DB)
	if err != nil {
		return err
	}
	data := requestsData{Apps: apps, Kinds: c.cfg.Kinds}
	q, err := c.readRequestQuery(r.URL.Query())
	data.Query = q
	if err != nil {
		return c.renderFormError(w, r, u, "requests", "Requests", &data, &data.Error, err)
	}
	after, err := parseRequestCursor(r.URL.Query().Get("before"))
	if err != nil {
		return err
	}
	items, more, err := c.cfg.Store.RequestList(ctx, c.cfg.DB, store.RequestListParams{Filter: q.filter, After: after, Limit: pageSize})
	if err != nil {
		return err
	}
	for _, it := range items {
		data.Requests = append(data.Requests, api.NewRequest(&it.Request, it.Kind))
	}
	if more {
		last := items[len(items)-1]
		data.Next = withParam("/requests", q.values(), "before", requestCursorText(store.RequestCursor{FirstSeenAt: last.FirstSeenAt, RequestID: last.RequestID}))
	}
	c.render(w, r, u, http.StatusOK, "requests", "Requests", data)
	return nil
}

func (c *Console) request(w http.ResponseWriter, r *http.Request, u *user) error {
	it, err := c.cfg.Store.RequestView(r.Context(), c.cfg.DB, r.PathValue("id"))
	if err != nil {
		return err
	}
	rq := api.NewRequest(&it.Request, it.Kind)
	c.render(w, r, u, http.StatusOK, "request", "Request "+rq.RequestID, rq)
	return nil
}

// Events -------------------------------------------------------------------

type eventsData struct {
	Query  *eventQuery
	Apps   []*store.App
	Kinds  []string
	Events []api.Event
	Next   template.URL
	Error  string
}

func (c *Console) events(w http.ResponseWriter, r *http.Request, u *user) error {
	ctx := r.Context()
	apps, err := c.cfg.Store.AppList(ctx, c.cfg.DB)
	if err != nil {
		return err
	}
	data := eventsData{Apps: apps, Kinds: api.EventKinds}
	q, err := c.readEventQuery(r.URL.Query())
	data.Query = q
	if err != nil {
		return c.renderFormError(w, r, u, "events", "Events", &data, &data.Error, err)
	}
	var before int64
	if s := r.URL.Query().Get("before"); s != "" {
		if before, err = parseID(s, "an event"); err != nil {
			return err
		}
	}
	evs, more, err := c.cfg.Store.EventQuery(ctx, c.cfg.DB, store.EventQueryParams{Filter: q.filter, AfterID: before, Limit: pageSize})
	if err != nil {
		return err
	}
	data.Events = api.NewEvents(evs)
	if more {
		data.Next = withParam("/events", q.values(), "before", strconv.FormatInt(evs[len(evs)-1].ID, 10))
	}
	c.render(w, r, u, http.StatusOK, "events", "Events", data)
	return nil
}

// Apps ---------------------------------------------------------------------

type appsData struct {
	Apps []overviewApp
}

func (c *Console) apps(w http.ResponseWriter, r *http.Request, u *user) error {
	now := c.cfg.Now().UTC()
	apps, err := api.LoadApps(r.Context(), c.cfg.Store, c.cfg.DB, "", c.cfg.ExternalToken, now)
	if err != nil {
		return err
	}
	var data appsData
	for _, a := range apps {
		data.Apps = append(data.Apps, overviewApp{App: a, Token: tokenState(a.Token, now)})
	}
	c.render(w, r, u, http.StatusOK, "apps", "Apps", data)
	return nil
}
