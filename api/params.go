package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/botq/botq/store"
)

// query reads a request's query parameters, refusing unknown ones so that
// a misspelt filter is an error rather than silently ignored.
type query struct {
	v url.Values
}

func newQuery(r *http.Request, known ...string) (*query, error) {
	v := r.URL.Query()
	for name := range v {
		if !slices.Contains(known, name) {
			// The name is echoed back: keep it printable and bounded.
			if len(name) > 64 {
				name = name[:64] + "…"
			}
			name = strings.ToValidUTF8(name, "\uFFFD")
			return nil, badFilter(name, "is not a filter of %s (known: %s)", r.URL.Path, strings.Join(known, ", "))
		}
	}
	return &query{v: v}, nil
}

func (q *query) str(name string) string { return strings.TrimSpace(q.v.Get(name)) }

// list reads a parameter given repeatedly or comma-separated.
func (q *query) list(name string) []string {
	var out []string
	for _, v := range q.v[name] {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func (q *query) id(name string) (*int64, error) {
	s := q.str(name)
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return nil, badFilter(name, "must be a positive integer, not %q", s)
	}
	return &n, nil
}

func (q *query) timeRange() (from, to time.Time, err error) {
	if s := q.str("from"); s != "" {
		if from, err = ParseTime(s); err != nil {
			return from, to, badFilter("from", "%v", err)
		}
	}
	if s := q.str("to"); s != "" {
		if to, err = ParseTime(s); err != nil {
			return from, to, badFilter("to", "%v", err)
		}
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return from, to, badFilter("to", "must be after from (%s)", from.Format(time.RFC3339))
	}
	return from, to, nil
}

// MaxLimit bounds a page.
const MaxLimit = 1000

func (q *query) limit() (int, error) {
	s := q.str("limit")
	if s == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, badFilter("limit", "must be an integer from 1 to %d, not %q", MaxLimit, s)
	}
	return n, nil
}

// ParseTime parses a time given as RFC 3339 (2025-01-31T12:00:00Z) or a
// date (2025-01-31, midnight UTC).
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time like 2025-01-31T12:00:00Z or a date like 2025-01-31", s)
}

// ParseDuration parses a duration as Go writes it (90s, 30m, 2h45m) with
// days as well (7d, 1d12h): botq's one duration syntax, for the
// configuration, the CLI and the HTTP API alike. A day is 24 hours.
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration like 30s, 5m, 2h or 7d", s)
	days, rest := time.Duration(0), strings.TrimSpace(s)
	if i := strings.IndexByte(rest, 'd'); i > 0 {
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/int64(24*time.Hour) {
			return 0, bad
		}
		days, rest = time.Duration(n)*24*time.Hour, rest[i+1:]
		if rest == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil || (days > 0 && (d < 0 || days+d < days)) {
		return 0, bad
	}
	return days + d, nil
}

// ParseActionStates checks action states (running included); upper case
// is accepted, as for request states.
func ParseActionStates(ss []string) ([]store.ActionState, error) {
	out := make([]store.ActionState, 0, len(ss))
	for _, s := range ss {
		l := strings.ToLower(strings.TrimSpace(s))
		if !store.ValidActionState(l) {
			return nil, fmt.Errorf("%q is not an action state (one of %s)", s, actionStateNames())
		}
		out = append(out, store.ActionState(l))
	}
	return out, nil
}

func actionStateNames() string {
	names := []string{string(store.ActionRunning)}
	for _, s := range store.ActionStates {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

// ParseRequestStates checks request states; lower case is accepted.
func ParseRequestStates(ss []string) ([]store.RequestState, error) {
	out := make([]store.RequestState, 0, len(ss))
	for _, s := range ss {
		u := strings.ToUpper(strings.TrimSpace(s))
		if !store.ValidRequestState(u) {
			return nil, fmt.Errorf("%q is not a request state (one of PENDING, SUCCESS, ERROR, EXPIRED, ABSENT)", s)
		}
		out = append(out, store.RequestState(u))
	}
	return out, nil
}

// CheckKind checks an action kind against kinds.
func CheckKind(kind string, kinds []string) error {
	if kind == "" || slices.Contains(kinds, kind) {
		return nil
	}
	return fmt.Errorf("%q is not an action kind (one of %s)", kind, strings.Join(kinds, ", "))
}

// actionFilter reads the action filters of a query.
func (s *Server) actionFilter(q *query) (store.ActionFilter, error) {
	f := store.ActionFilter{AppID: q.str("app"), Kind: q.str("kind"), Lane: q.str("lane"), CreatedBy: q.str("created_by")}
	if err := CheckKind(f.Kind, s.cfg.Kinds); err != nil {
		return f, badFilter("kind", "%v", err)
	}
	states, err := ParseActionStates(q.list("state"))
	if err != nil {
		return f, badFilter("state", "%v", err)
	}
	f.States = states
	if f.ReplayOf, err = q.id("replay_of"); err != nil {
		return f, err
	}
	if f.From, f.To, err = q.timeRange(); err != nil {
		return f, err
	}
	return f, nil
}

var actionFilterParams = []string{"app", "kind", "state", "lane", "created_by", "replay_of", "from", "to"}

func (s *Server) requestFilter(q *query) (store.RequestFilter, error) {
	f := store.RequestFilter{AppID: q.str("app"), Kind: q.str("kind"), Lane: q.str("lane"), Origin: strings.ToUpper(q.str("origin"))}
	if err := CheckKind(f.Kind, s.cfg.Kinds); err != nil {
		return f, badFilter("kind", "%v", err)
	}
	if f.Origin != "" && f.Origin != "BOT" && f.Origin != "KHOROS" {
		return f, badFilter("origin", "must be BOT or KHOROS, not %q", q.str("origin"))
	}
	states, err := ParseRequestStates(q.list("state"))
	if err != nil {
		return f, badFilter("state", "%v", err)
	}
	f.States = states
	if f.ActionID, err = q.id("action_id"); err != nil {
		return f, err
	}
	if f.From, f.To, err = q.timeRange(); err != nil {
		return f, err
	}
	return f, nil
}

var requestFilterParams = []string{"app", "kind", "state", "lane", "origin", "action_id", "from", "to"}

// cursor is where a page ended. It is opaque to clients (base64url JSON)
// and names the listing it belongs to, so a cursor of one listing is
// refused by another.
type cursor struct {
	Listing   string     `json:"l"`
	ID        int64      `json:"id,omitempty"`
	At        *time.Time `json:"t,omitempty"`
	RequestID string     `json:"r,omitempty"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (q *query) cursor(listing string) (*cursor, error) {
	s := q.str("cursor")
	if s == "" {
		return nil, nil
	}
	bad := &Error{Status: http.StatusBadRequest, Code: "invalid_cursor", Field: "cursor",
		Message: "cursor: is not a next_cursor this listing returned"}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.Listing != listing {
		return nil, bad
	}
	if (listing == "requests") != (c.At != nil && c.RequestID != "") || (listing != "requests" && c.ID <= 0) {
		return nil, bad
	}
	return &c, nil
}
