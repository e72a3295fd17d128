package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

func envOf(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "botq.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func problems(t *testing.T, err error) []string {
	t.Helper()
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	return ce.Problems
}

// config.example.yaml documents every key, each with its default.
func TestConfigExampleIsTheDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig("../../config.example.yaml", envOf())
	require.NoError(t, err)
	want := DefaultConfig()
	want.Kinds = map[string]KindConfig{}
	want.Apps = []AppConfig{}
	require.Equal(t, want, cfg)

	example, err := os.ReadFile("../../config.example.yaml")
	require.NoError(t, err)
	var missing []string
	var walk func(t reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		for i := 0; i < typ.NumField(); i++ {
			tag := strings.Split(typ.Field(i).Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			if !bytes.Contains(example, []byte(tag+":")) {
				missing = append(missing, prefix+tag)
			}
			ft := typ.Field(i).Type
			switch ft.Kind() {
			case reflect.Struct:
				walk(ft, prefix+tag+".")
			case reflect.Map, reflect.Slice:
				if ft.Elem().Kind() == reflect.Struct {
					walk(ft.Elem(), prefix+tag+"[].")
				}
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	require.Empty(t, missing, "keys not documented in config.example.yaml")
}

func TestConfigBadFileNamesKeyAndLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give string
		want []string
	}{
		{name: "wrong type", give: "river:\n  fetch_cooldown: fast\n", want: []string{"line 2", "river.fetch_cooldown", "fast"}},
		{name: "unknown key", give: "http:\n  listen: 127.0.0.1:1\n  lisen: x\n", want: []string{"line 3", "http.lisen", "not found"}},
		{name: "not a number", give: "database:\n  max_conns: many\n", want: []string{"line 2", "database.max_conns"}},
		{name: "list item", give: "apps:\n  - id: a\n    rate_limit: fast\n", want: []string{"line 3", "apps[0].rate_limit"}},
		{name: "broken YAML", give: "http: [\n", want: []string{"botq.yaml", "line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadConfig(writeConfig(t, tt.give), envOf())
			msg := strings.Join(problems(t, err), "\n")
			for _, w := range tt.want {
				require.Contains(t, msg, w)
			}
		})
	}
}

func TestConfigValidationListsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := LoadConfig(writeConfig(t, `
database:
  url: ""
  schema: Bad-Schema
log:
  level: loud
river:
  job_timeout: 10s
  rescue_stuck_after: 5s
reconciler:
  max_window: 800h
  ambiguous_grace: 5s
kinds:
  shout: {max_attempts: 3}
apps:
  - id: a
    base_url: http://khoros.example.com
  - id: a
`), envOf())
	got := strings.Join(problems(t, err), "\n")
	for _, want := range []string{
		"database.url: is required", "database.schema", "log.level", "river.rescue_stuck_after",
		"reconciler.max_window", "reconciler.ambiguous_grace: must be at least khoros.http_timeout", "kinds.shout: is not an action kind", "apps[0].base_url", "clear text", `apps[1].id: "a" is listed twice`,
	} {
		require.Contains(t, got, want)
	}
}

func TestConfigEnvironment(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig("", envOf("DATABASE_URL", "postgres://u:secret@db:5432/x", "BOTQ_HTTP_LISTEN", "0.0.0.0:9000",
		"BOTQ_RIVER_JOB_TIMEOUT", "30s", "BOTQ_ROLES_API", "false", "BOTQ_ENCRYPTION_KEY", "f4ZhAwJ7AGmSHXy8pQ5JYvq3NCnAu3MKoYlYthS7WTs="))
	require.NoError(t, err)
	require.Equal(t, "0.0.0.0:9000", cfg.HTTP.Listen)
	require.Equal(t, "30s", cfg.River.JobTimeout.String())
	require.False(t, cfg.Roles.API)

	out, err := cfg.Dump()
	require.NoError(t, err)
	require.NotContains(t, string(out), "secret")
	require.NotContains(t, string(out), "f4ZhAwJ7AGmSHXy8pQ5JYvq3NCnAu3MKoYlYthS7WTs=")
	require.Contains(t, string(out), "u:xxxxx@db")

	_, err = LoadConfig("", envOf("BOTQ_RIVER_JOB_TIMEOUT", "soon", "BOTQ_DATABASE_MAX_CONNS", "lots"))
	got := strings.Join(problems(t, err), "\n")
	require.Contains(t, got, "BOTQ_RIVER_JOB_TIMEOUT")
	require.Contains(t, got, "BOTQ_DATABASE_MAX_CONNS")
}

// The refusal reads the environment it is given, not the process's: a
// DATABASE_URL exported in the shell changes neither this test nor botq's
// answer for the environment it was given.
func TestConfigRefusesPasswordInFile(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "database:\n  url: postgres://u:hunter2@db/x\n")
	_, err := LoadConfig(path, envOf())
	got := strings.Join(problems(t, err), "\n")
	require.Contains(t, got, "database.url: holds a password")
	require.NotContains(t, got, "hunter2")

	for _, name := range []string{"DATABASE_URL", "BOTQ_DATABASE_URL"} {
		cfg, err := LoadConfig(path, envOf(name, "postgres://u:from-env@db/y"))
		require.NoError(t, err, "the URL, password and all, comes from %s", name)
		require.Equal(t, "postgres://u:from-env@db/y", cfg.Database.URL)
	}
}

// Bad input at the command line gets one clear message and a non-zero exit,
// never a stack trace.
func TestCLIBadInput(t *testing.T) {
	t.Parallel()
	url := storetest.DatabaseURL(t)
	storetest.Conns(t, 2) // serve's pool in "schema behind"
	behindSchema := "t_behind_" + randomHex(4)
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		want     []string
	}{
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 1, want: []string{"unknown command"}},
		{name: "unknown flag", args: []string{"serve", "--colour"}, wantCode: 2, want: []string{"unknown flag: --colour"}},
		{name: "extra argument", args: []string{"version", "now"}, wantCode: 2, want: []string{"version"}},
		{name: "malformed config", args: []string{"config", "check", "--config", "testdata/bad.yaml"}, wantCode: 1,
			want: []string{"line 4, key river.fetch_cooldown"}},
		{name: "missing config file", args: []string{"config", "check", "--config", "testdata/nope.yaml"}, wantCode: 1,
			want: []string{"nope.yaml"}},
		{name: "unreachable database", args: []string{"migrate", "status"}, env: []string{"DATABASE_URL", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"},
			wantCode: 1, want: []string{"127.0.0.1:1", "is Postgres running"}},
		{name: "schema behind", args: []string{"serve"}, env: []string{"DATABASE_URL", url, "BOTQ_DATABASE_SCHEMA", behindSchema, "BOTQ_HTTP_LISTEN", "127.0.0.1:0", "BOTQ_DATABASE_MAX_CONNS", "2"},
			wantCode: 1, want: []string{"behind", "botq migrate up"}},
		{name: "bad sim flag", args: []string{"sim", "--error-rate", "2"}, wantCode: 2, want: []string{"--error-rate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runEnv(context.Background(), tt.args, envOf(tt.env...), strings.NewReader(""), &out, &errb)
			require.Equal(t, tt.wantCode, code, errb.String())
			msg := errb.String()
			for _, w := range tt.want {
				require.Contains(t, msg, w)
			}
			require.NotContains(t, msg, "goroutine ")
			require.NotContains(t, msg, ".go:")
			require.LessOrEqual(t, strings.Count(strings.TrimSpace(msg), "\n"), 3, "one short message: %s", msg)
		})
	}
}
