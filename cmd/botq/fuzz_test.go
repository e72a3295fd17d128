package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// `botq enqueue` reads actions as JSON from stdin or a file: whatever it
// gets, it returns actions that each name an app, a kind and a payload, or a
// usage error (exit 2), never a panic.
func FuzzDecodeActions(f *testing.F) {
	for _, seed := range []string{
		`{"app_id":"a","kind":"respond","payload":{"text":"hi"}}`,
		`[{"app_id":"a","kind":"tag","payload":{"tagIds":[1]},"lane":"x","idempotency_key":"k"}]`,
		`[]`, `[`, `{}`, `{"app_id":"a"}`, `{"app_id":"a","kind":"respond","payload":null}`, `{"extra":1}`, "\x00", `[{}, 1]`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		reqs, err := decodeActions([]byte(body))
		if err != nil {
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("not a usage error: %v", err)
			}
			return
		}
		if len(reqs) == 0 {
			t.Fatal("no actions and no error")
		}
		for i, q := range reqs {
			if q.AppID == "" || q.Kind == "" || len(q.Payload) == 0 {
				t.Fatalf("action %d incomplete: %+v", i, q)
			}
		}
	})
}

// Time flags (--from, --to, --since) take RFC 3339, a date or a duration
// ago: anything else is a usage error naming the flag.
func FuzzParseWhen(f *testing.F) {
	for _, seed := range []string{"", "24h", "7d", "-1d", "2026-01-02", "2026-01-02T03:04:05Z", "99999999999d", "1e9h", "d", "now"} {
		f.Add(seed)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		when, err := parseWhen("since", s, now)
		if err != nil {
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--since") {
				t.Fatalf("%q: %v is not a usage error naming --since", s, err)
			}
			return
		}
		if s != "" && when.IsZero() {
			t.Fatalf("%q: no time and no error", s)
		}
	})
}
