package console

import (
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

// A conversation's timeline: every action of one lane of one app, each
// attempt with its status, request id and error, each request record with
// Khoros' final status, the operator events of those actions, and the
// KHOROS-origin records (the deliveries Khoros made to the bot) of the same
// conversation, in time order.

// timelinePage is how many actions one page of a timeline shows.
const timelinePage = 100

// inboundMargin widens the span of a page's actions for the KHOROS-origin
// records around them; inboundMaxSpan bounds that span, since those
// records are matched row by row on their payload.
const (
	inboundMargin  = 10 * time.Minute
	inboundMaxSpan = 48 * time.Hour
)

// entry is one line of a timeline.
type entry struct {
	At time.Time
	// Kind is enqueued, attempt, request, inbound, event or finished.
	Kind     string
	ActionID int64
	Action   *api.Action
	Attempt  *api.Attempt
	Request  *api.Request
	Event    *api.Event
}

// kindOrder orders entries of the same instant as they happen.
var kindOrder = map[string]int{"enqueued": 0, "inbound": 1, "attempt": 2, "request": 3, "finished": 4, "event": 5}

type conversationData struct {
	App, Lane string
	Actions   []api.Action
	Entries   []entry
	Next      template.URL
	// Inbound says which span was searched for KHOROS-origin records ("" when
	// none was: the lane is no conversation).
	Inbound string
}

func (c *Console) conversation(w http.ResponseWriter, r *http.Request, u *user) error {
	q := r.URL.Query()
	app, lane := strings.TrimSpace(q.Get("app")), strings.TrimSpace(q.Get("lane"))
	if app == "" || lane == "" {
		return badRequest("A conversation is an app and a lane: open one from an action or the Actions page.")
	}
	var after int64
	if s := q.Get("after"); s != "" {
		var err error
		if after, err = parseID(s, "an action"); err != nil {
			return err
		}
	}
	ctx := r.Context()
	list, more, err := c.cfg.Store.ActionList(ctx, c.cfg.DB, store.ActionListParams{
		Filter: store.ActionFilter{AppID: app, Lane: lane}, AfterID: after, Ascending: true, Limit: timelinePage})
	if err != nil {
		return err
	}
	data := conversationData{App: app, Lane: lane}
	if more {
		data.Next = href("/conversation", url.Values{"app": {app}, "lane": {lane}, "after": {strconv.FormatInt(list[len(list)-1].ID, 10)}})
	}
	if len(list) > 0 {
		if err := c.fillTimeline(r, &data, list); err != nil {
			return err
		}
	}
	c.render(w, r, u, http.StatusOK, "conversation", "Conversation", data)
	return nil
}

// fillTimeline reads the rows of the actions in list, a few statements in
// all, and orders them in time.
func (c *Console) fillTimeline(r *http.Request, data *conversationData, list []*store.Action) error {
	ctx := r.Context()
	ids := make([]int64, len(list))
	kinds := map[int64]string{}
	first, last := list[0].CreatedAt, list[0].CreatedAt
	data.Actions = make([]api.Action, len(list))
	for i, a := range list {
		ids[i] = a.ID
		kinds[a.ID] = a.Kind
		data.Actions[i] = api.NewAction(a)
		data.Entries = append(data.Entries, entry{At: data.Actions[i].CreatedAt, Kind: "enqueued", ActionID: a.ID, Action: &data.Actions[i]})
		end := a.UpdatedAt
		if a.FinishedAt != nil {
			data.Entries = append(data.Entries, entry{At: a.FinishedAt.UTC(), Kind: "finished", ActionID: a.ID, Action: &data.Actions[i]})
			end = *a.FinishedAt
		}
		if end.After(last) {
			last = end
		}
	}
	atts, err := c.cfg.Store.AttemptListByActions(ctx, c.cfg.DB, ids)
	if err != nil {
		return err
	}
	for _, t := range atts {
		at := api.NewAttempt(t)
		data.Entries = append(data.Entries, entry{At: at.StartedAt, Kind: "attempt", ActionID: t.ActionID, Attempt: &at})
	}
	reqs, err := c.cfg.Store.RequestListByActions(ctx, c.cfg.DB, ids)
	if err != nil {
		return err
	}
	for _, rq := range reqs {
		data.Entries = append(data.Entries, requestEntry(api.NewRequest(rq, kinds[*rq.ActionID]), "request", *rq.ActionID))
	}
	evs, _, err := c.cfg.Store.EventQuery(ctx, c.cfg.DB, store.EventQueryParams{Filter: store.EventFilter{ActionIDs: ids}, Limit: api.MaxLimit})
	if err != nil {
		return err
	}
	for _, e := range evs {
		ev := api.NewEvent(e)
		data.Entries = append(data.Entries, entry{At: ev.At, Kind: "event", ActionID: *e.ActionID, Event: &ev})
	}
	if err := c.addInbound(r, data, first, last); err != nil {
		return err
	}
	slices.SortStableFunc(data.Entries, func(a, b entry) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return kindOrder[a.Kind] - kindOrder[b.Kind]
	})
	return nil
}

// requestEntry places a request record at Khoros' completion, else when
// botq first saw it.
func requestEntry(rq api.Request, kind string, actionID int64) entry {
	at := rq.FirstSeenAt
	if rq.KhorosCompletedAt != nil {
		at = *rq.KhorosCompletedAt
	} else if rq.KhorosCreatedAt != nil {
		at = *rq.KhorosCreatedAt
	}
	return entry{At: at, Kind: kind, ActionID: actionID, Request: &rq}
}

// addInbound adds the conversation's KHOROS-origin records seen from a
// little before first to a little after last, at most inboundMaxSpan (the
// latest part of it).
func (c *Console) addInbound(r *http.Request, data *conversationData, first, last time.Time) error {
	if strings.Count(data.Lane, "/") < 2 || strings.HasPrefix(data.Lane, "registration/") {
		return nil // not a conversation: no delivery belongs to it
	}
	from, to := first.Add(-inboundMargin), last.Add(inboundMargin)
	if to.Sub(from) > inboundMaxSpan {
		from = to.Add(-inboundMaxSpan)
	}
	data.Inbound = fmtTime(from) + " to " + fmtTime(to)
	items, _, err := c.cfg.Store.RequestList(r.Context(), c.cfg.DB, store.RequestListParams{
		Filter: store.RequestFilter{AppID: data.App, Origin: "KHOROS", Conversation: data.Lane, From: from, To: to},
		Limit:  api.MaxLimit})
	if err != nil {
		return err
	}
	for _, it := range items {
		data.Entries = append(data.Entries, requestEntry(api.NewRequest(&it.Request, ""), "inbound", 0))
	}
	return nil
}
