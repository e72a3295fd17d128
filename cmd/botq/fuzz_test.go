package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/botq/botq/store"
)

// The configuration file is outside input: whatever it holds, loading it
// returns a Config or a *ConfigError, never panics, and never repeats a
// password it was given.
func FuzzLoadConfig(f *testing.F) {
	for _, seed := range []string{
		"", "http:\n  listen: 127.0.0.1:8080\n", "river:\n  fetch_cooldown: fast\n", "apps:\n  - id: a\n    rate_limit: -1\n",
		"database:\n  url: postgres://u:pw@h/d\n", "kinds:\n  respond: {max_attempts: 99999}\n", "[", "a: &x [*x]\n",
		"log:\n  level: \"\\u0000\"\n", "retention:\n  period: 9999999999h\n",
	} {
		f.Add(seed)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(p, envOf())
		if err != nil && strings.Contains(body, "hunter2secret") && strings.Contains(err.Error(), "hunter2secret") {
			t.Fatalf("a password reached the error: %v", err)
		}
	})
}

// API keys come from the environment or a file.
func FuzzParseAPIKeys(f *testing.F) {
	for _, seed := range []string{"", "op:operator:0123456789abcdef0123", "a:auditor:sha256:" + strings.Repeat("ab", 32),
		"x:root:k", "::", "a:enqueuer:short", "#comment\nb:operator:0123456789abcdefg", "a:operator:k1k1k1k1k1k1k1k1,a:operator:k2k2k2k2k2k2k2k2"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseAPIKeys(s)
		if err != nil {
			if strings.Contains(s, "topsecretkey123456") && strings.Contains(err.Error(), "topsecretkey123456") {
				t.Fatalf("a key reached the error: %v", err)
			}
			return
		}
		for _, k := range keys {
			if k.Role != RoleEnqueuer && k.Role != RoleAuditor && k.Role != RoleOperator {
				t.Fatalf("accepted role %q", k.Role)
			}
		}
	})
}

// The token encryption key comes from the environment.
func FuzzParseEncryptionKey(f *testing.F) {
	for _, seed := range []string{"", "f4ZhAwJ7AGmSHXy8pQ5JYvq3NCnAu3MKoYlYthS7WTs=", strings.Repeat("ab", 32), "not a key", strings.Repeat("A", 44)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := ParseEncryptionKey(s)
		if err != nil {
			return
		}
		if len(key) != 32 {
			t.Fatalf("accepted a %d-byte key", len(key))
		}
		k, err := store.NewKeyring(key)
		if err != nil {
			t.Fatal(err)
		}
		sealed := k.Seal("app", "tok")
		if got, err := k.Open("app", k.ID(), sealed); err != nil || got != "tok" {
			t.Fatalf("round trip: %q %v", got, err)
		}
	})
}

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
		reqs, err := decodeActions(strings.NewReader(body))
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
