package console

import (
	"fmt"
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

// Time ranges. Every listing is bounded in time, so that a page reads one
// range of a creation-time index. A filter that no index serves (an
// action's kind, author, text or creator; a request's kind, lane or origin)
// is checked row by row, so its range may span at most MaxScanSpan.
const (
	// DefaultSpan is the range a listing shows unless asked otherwise.
	DefaultSpan = 24 * time.Hour
	// MaxScanSpan is the longest range of a filter no index serves.
	MaxScanSpan = 24 * time.Hour
	// pageSize is the rows of one page of a listing.
	pageSize = 50
)

// spans are the quick ranges the forms offer.
var spans = []struct{ Value, Label string }{
	{"1h", "Last hour"}, {"1d", "Last 24 hours"}, {"7d", "Last 7 days"}, {"30d", "Last 30 days"},
}

// timeWindow is a listing's time range as asked (Span, or From and To) and
// as resolved.
type timeWindow struct {
	Span     string // one of spans, or ""
	From, To string // as typed
	from, to time.Time
}

// timeLayouts are what the range inputs accept: a browser's
// datetime-local value, and what api.ParseTime takes.
var timeLayouts = []string{"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02 15:04:05"}

// parseTime reads a time typed in a form, in UTC unless it says otherwise.
func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return api.ParseTime(s)
}

// readWindow reads span, from and to. A range without a start starts span
// (default def) before its end; without an end it ends now.
func readWindow(q url.Values, now time.Time, def time.Duration) (timeWindow, error) {
	w := timeWindow{Span: strings.TrimSpace(q.Get("span")), From: strings.TrimSpace(q.Get("from")), To: strings.TrimSpace(q.Get("to"))}
	var err error
	if w.From != "" {
		if w.from, err = parseTime(w.From); err != nil {
			return w, badRequest("From: %v", err)
		}
		w.Span = ""
	}
	w.to = now
	if w.To != "" {
		if w.to, err = parseTime(w.To); err != nil {
			return w, badRequest("To: %v", err)
		}
	}
	if w.From == "" {
		if w.Span == "" {
			w.Span = shortDuration(def)
		}
		d, err := api.ParseDuration(w.Span)
		if err != nil || d <= 0 {
			return w, badRequest("Range: %q is not a duration like 1h or 7d", w.Span)
		}
		w.Span, w.from = shortDuration(d), w.to.Add(-d)
	}
	if !w.from.Before(w.to) {
		return w, badRequest("the range must end after it starts (%s to %s)", fmtTime(w.from), fmtTime(w.to))
	}
	return w, nil
}

// span is the range's length.
func (w timeWindow) span() time.Duration { return w.to.Sub(w.from) }

// set adds the range to q as asked, so that links keep it as it was
// asked: "the last 24 hours" stays relative.
func (w timeWindow) set(q url.Values) {
	if w.From == "" {
		q.Set("span", w.Span)
	}
	if w.From != "" {
		q.Set("from", w.From)
	}
	if w.To != "" {
		q.Set("to", w.To)
	}
}

// Describe says which range a listing shows.
func (w timeWindow) Describe() string {
	return fmt.Sprintf("%s to %s UTC", fmtTime(w.from), fmtTime(w.to))
}

// FromInput and ToInput are the resolved range for the form's inputs.
func (w timeWindow) FromInput() string { return w.from.UTC().Format("2006-01-02T15:04") }

// ToInput is the end of the range for the form's input; "" while it is
// "now".
func (w timeWindow) ToInput() string {
	if w.To == "" {
		return ""
	}
	return w.to.UTC().Format("2006-01-02T15:04")
}

// Spans are the quick ranges, for the form.
func (w timeWindow) Spans() []struct{ Value, Label string } { return spans }

func shortDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

// actionQuery is the Actions page's filter.
type actionQuery struct {
	App, Kind, State, Lane, Author, Text, CreatedBy string
	Window                                          timeWindow
	filter                                          store.ActionFilter
}

// readActionQuery reads the Actions filter of q.
func (c *Console) readActionQuery(q url.Values) (*actionQuery, error) {
	get := func(k string) string { return strings.TrimSpace(q.Get(k)) }
	a := &actionQuery{App: get("app"), Kind: get("kind"), State: get("state"), Lane: get("lane"),
		Author: get("author"), Text: get("q"), CreatedBy: get("created_by")}
	var err error
	if a.Window, err = readWindow(q, c.cfg.Now().UTC(), DefaultSpan); err != nil {
		return a, err
	}
	if a.Kind != "" && !slices.Contains(c.cfg.Kinds, a.Kind) {
		return a, badRequest("Kind: %q is not an action kind", a.Kind)
	}
	a.filter = store.ActionFilter{AppID: a.App, Kind: a.Kind, Lane: a.Lane, Author: a.Author, Text: a.Text,
		CreatedBy: a.CreatedBy, From: a.Window.from, To: a.Window.to}
	if a.State != "" {
		states, err := api.ParseActionStates([]string{a.State})
		if err != nil {
			return a, badRequest("State: %v", err)
		}
		a.filter.States = states
	}
	if a.Text != "" && len(a.Text) < 3 {
		return a, badRequest("Text: search for at least 3 characters")
	}
	unindexed := a.Kind != "" || a.Author != "" || a.Text != "" || a.CreatedBy != ""
	if unindexed && a.Lane == "" && a.Window.span() > MaxScanSpan {
		return a, badRequest("Kind, author, text and creator are searched row by row: narrow the range to %s at most (it is %s), or add a conversation.",
			shortDuration(MaxScanSpan), a.Window.span().Round(time.Minute))
	}
	return a, nil
}

// values is the filter as a query, without a cursor.
func (a *actionQuery) values() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"app": a.App, "kind": a.Kind, "state": a.State, "lane": a.Lane,
		"author": a.Author, "q": a.Text, "created_by": a.CreatedBy} {
		if v != "" {
			q.Set(k, v)
		}
	}
	a.Window.set(q)
	return q
}

// absolute is the filter with its resolved range, for a replay by filter:
// what the dry run counted is what the replay replays.
func (a *actionQuery) absolute() url.Values {
	q := a.values()
	q.Del("span")
	q.Set("from", a.Window.from.UTC().Format(time.RFC3339Nano))
	q.Set("to", a.Window.to.UTC().Format(time.RFC3339Nano))
	return q
}

// Link is the Actions page of the filter; Export its export in format.
func (a *actionQuery) Link() template.URL { return href("/actions", a.values()) }

// Export is the export of the filter in format (csv or json).
func (a *actionQuery) Export(format string) template.URL {
	q := a.values()
	q.Set("format", format)
	return href("/actions/export", q)
}

// ReplayLink is the dry run of a replay of the filter.
func (a *actionQuery) ReplayLink() template.URL { return href("/replay", a.absolute()) }

// AbsoluteFields are the filter's fields, with the resolved range, for a
// form's hidden inputs.
func (a *actionQuery) AbsoluteFields() []field { return fields(a.absolute()) }

// Empty reports whether only the range filters.
func (a *actionQuery) Empty() bool {
	return a.App == "" && a.Kind == "" && a.State == "" && a.Lane == "" && a.Author == "" && a.Text == "" && a.CreatedBy == ""
}

type field struct{ Name, Value string }

func fields(q url.Values) []field {
	var out []field
	for k, vs := range q {
		for _, v := range vs {
			out = append(out, field{k, v})
		}
	}
	slices.SortFunc(out, func(a, b field) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// requestQuery is the Requests page's filter.
type requestQuery struct {
	App, Kind, State, Origin, Lane, ActionID string
	Window                                   timeWindow
	filter                                   store.RequestFilter
}

func (c *Console) readRequestQuery(q url.Values) (*requestQuery, error) {
	get := func(k string) string { return strings.TrimSpace(q.Get(k)) }
	rq := &requestQuery{App: get("app"), Kind: get("kind"), State: get("state"), Origin: strings.ToUpper(get("origin")),
		Lane: get("lane"), ActionID: get("action_id")}
	var err error
	if rq.Window, err = readWindow(q, c.cfg.Now().UTC(), DefaultSpan); err != nil {
		return rq, err
	}
	rq.filter = store.RequestFilter{AppID: rq.App, Kind: rq.Kind, Origin: rq.Origin, Lane: rq.Lane,
		From: rq.Window.from, To: rq.Window.to}
	if rq.Kind != "" && !slices.Contains(c.cfg.Kinds, rq.Kind) {
		return rq, badRequest("Kind: %q is not an action kind", rq.Kind)
	}
	if rq.Origin != "" && rq.Origin != "BOT" && rq.Origin != "KHOROS" {
		return rq, badRequest("Origin: must be BOT or KHOROS")
	}
	if rq.State != "" {
		states, err := api.ParseRequestStates([]string{rq.State})
		if err != nil {
			return rq, badRequest("State: %v", err)
		}
		rq.filter.States = states
	}
	if rq.ActionID != "" {
		id, err := strconv.ParseInt(rq.ActionID, 10, 64)
		if err != nil || id <= 0 {
			return rq, badRequest("Action: %q is not an action id", rq.ActionID)
		}
		rq.filter.ActionID = &id
		// One action's records: its index serves them, whenever they were.
		rq.filter.From, rq.filter.To = time.Time{}, time.Time{}
	}
	unindexed := rq.Kind != "" || rq.Lane != "" || rq.Origin != ""
	if unindexed && rq.ActionID == "" && rq.Window.span() > MaxScanSpan {
		return rq, badRequest("Kind, conversation and origin are searched row by row: narrow the range to %s at most (it is %s).",
			shortDuration(MaxScanSpan), rq.Window.span().Round(time.Minute))
	}
	return rq, nil
}

func (rq *requestQuery) values() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"app": rq.App, "kind": rq.Kind, "state": rq.State, "origin": rq.Origin,
		"lane": rq.Lane, "action_id": rq.ActionID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	rq.Window.set(q)
	return q
}

// Export is the export of the filter in format (csv or json).
func (rq *requestQuery) Export(format string) template.URL {
	q := rq.values()
	q.Set("format", format)
	return href("/requests/export", q)
}

// eventQuery is the Events page's filter.
type eventQuery struct {
	App, Kind, Actor, ActionID string
	Window                     timeWindow
	filter                     store.EventFilter
}

func (c *Console) readEventQuery(q url.Values) (*eventQuery, error) {
	get := func(k string) string { return strings.TrimSpace(q.Get(k)) }
	eq := &eventQuery{App: get("app"), Kind: get("kind"), Actor: get("actor"), ActionID: get("action_id")}
	var err error
	if eq.Window, err = readWindow(q, c.cfg.Now().UTC(), 7*24*time.Hour); err != nil {
		return eq, err
	}
	if eq.Kind != "" && !slices.Contains(api.EventKinds, eq.Kind) {
		return eq, badRequest("Kind: %q is not an event kind", eq.Kind)
	}
	eq.filter = store.EventFilter{AppID: eq.App, Kind: eq.Kind, Actor: eq.Actor, From: eq.Window.from, To: eq.Window.to}
	if eq.ActionID != "" {
		id, err := strconv.ParseInt(eq.ActionID, 10, 64)
		if err != nil || id <= 0 {
			return eq, badRequest("Action: %q is not an action id", eq.ActionID)
		}
		eq.filter.ActionID = &id
		eq.filter.From, eq.filter.To = time.Time{}, time.Time{}
	}
	return eq, nil
}

func (eq *eventQuery) values() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"app": eq.App, "kind": eq.Kind, "actor": eq.Actor, "action_id": eq.ActionID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	eq.Window.set(q)
	return q
}

// withParam returns a link to path with q and name set to value.
func withParam(path string, q url.Values, name, value string) template.URL {
	out := url.Values{}
	for k, v := range q {
		out[k] = v
	}
	out.Set(name, value)
	return href(path, out)
}

// Cursors. A page ends at a row; the next page continues after it. They
// travel in links, so they are plain text: "<unix nanoseconds>.<id>".

func actionCursorText(c store.ActionCursor) string {
	return strconv.FormatInt(c.CreatedAt.UnixNano(), 10) + "." + strconv.FormatInt(c.ID, 10)
}

func parseActionCursor(s string) (*store.ActionCursor, error) {
	if s == "" {
		return nil, nil
	}
	ns, id, ok := strings.Cut(s, ".")
	n, err1 := strconv.ParseInt(ns, 10, 64)
	i, err2 := strconv.ParseInt(id, 10, 64)
	if !ok || err1 != nil || err2 != nil || i <= 0 {
		return nil, badRequest("this page's link is broken (before=%q); start again from the first page", s)
	}
	return &store.ActionCursor{CreatedAt: time.Unix(0, n), ID: i}, nil
}

func requestCursorText(c store.RequestCursor) string {
	return strconv.FormatInt(c.FirstSeenAt.UnixNano(), 10) + "." + c.RequestID
}

func parseRequestCursor(s string) (*store.RequestCursor, error) {
	if s == "" {
		return nil, nil
	}
	ns, id, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || id == "" {
		return nil, badRequest("this page's link is broken (before=%q); start again from the first page", s)
	}
	return &store.RequestCursor{FirstSeenAt: time.Unix(0, n), RequestID: id}, nil
}

func parseID(s, what string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, &httpError{Status: http.StatusNotFound, Message: fmt.Sprintf("%q is not %s id.", s, what)}
	}
	return id, nil
}
