package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/botq/botq/jobs"
)

// Query strings are outside input: every filter, cursor, limit and time
// range either parses or is refused as an *Error naming a field, never a
// panic.
func FuzzQueryFilters(f *testing.F) {
	for _, seed := range []string{
		"", "app=my-bot&state=failed&from=24h", "kind=shout", "state=queued,weird", "from=2026-13-45", "to=-5h",
		"limit=0", "limit=999999999999999999999", "cursor=%%%", "cursor=eyJsIjoiYWN0aW9ucyIsImlkIjo1fQ", "replay_of=abc",
		"origin=SOMEONE", "action_id=-1", "unknown=1", "app=%00", "state=" + strings.Repeat("x,", 200),
	} {
		f.Add(seed)
	}
	s := &Server{cfg: Config{Kinds: jobs.Kinds()}}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest(http.MethodGet, "/v1/actions", nil)
		r.URL.RawQuery = raw
		for _, params := range [][]string{append(actionFilterParams, "limit", "cursor"), append(requestFilterParams, "limit", "cursor")} {
			q, err := newQuery(r, params...)
			if err != nil {
				requireAPIError(t, err)
				continue
			}
			if _, err := s.actionFilter(q); err != nil {
				requireAPIError(t, err)
			}
			if _, err := s.requestFilter(q); err != nil {
				requireAPIError(t, err)
			}
			if _, err := q.limit(); err != nil {
				requireAPIError(t, err)
			}
			if _, err := q.cursor("actions"); err != nil {
				requireAPIError(t, err)
			}
		}
	})
}

// Request bodies are outside input: they decode or are refused as an
// *Error, with a message that is valid UTF-8.
func FuzzDecodeBody(f *testing.F) {
	for _, seed := range []string{
		`{"app_id":"a","kind":"note","payload":{}}`, `{"app_id":1}`, `{"payload":[}`, ``, `{} {}`, `{"extra":true}`,
		`{"app_id":"\ud800"}`, "{\"app_id\":\"\xff\"}", `{"idempotency_key":null,"lane":7}`, `[1,2,3]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/actions", strings.NewReader(string(body)))
		var req EnqueueRequest
		if err := decodeBody(httptest.NewRecorder(), r, &req, false); err != nil {
			requireAPIError(t, err)
		}
	})
}

func requireAPIError(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want an *api.Error, got %T: %v", err, err)
	}
	if e.Status < 400 || e.Status > 499 || e.Code == "" || !utf8.ValidString(e.Message) {
		t.Fatalf("bad error: %+v", e)
	}
}
