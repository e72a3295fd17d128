package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		"retention:\n  period: 30d\n  interval: '1d12h'\n", "log:\n  level: [info\n", "log:\n\tlevel: info\n",
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
