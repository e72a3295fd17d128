package server

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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

func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	return ce.Problems
}

// config.example.yaml documents every key, each with its default.
func TestConfigExampleIsTheDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig("../config.example.yaml", envOf())
	require.NoError(t, err)
	want := DefaultConfig()
	want.Kinds = map[string]KindConfig{}
	want.Apps = []AppConfig{}
	want.HTTP.TrustedOrigins = []string{}
	require.Equal(t, want, cfg)

	example, err := os.ReadFile("../config.example.yaml")
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
		{name: "wrong type", give: "river:\n  fetch_cooldown: fast\n",
			want: []string{"line 2, key river.fetch_cooldown: \"fast\" is not a duration", "for example fetch_cooldown: 10ms"}},
		{name: "unknown key", give: "http:\n  listen: 127.0.0.1:1\n  lisen: x\n",
			want: []string{"line 3, key http.lisen: lisen is not a key of section http (did you mean listen?); its keys are listen, metrics_public"}},
		{name: "unknown section", give: "log:\n  level: info\nretenton:\n  period: 1d\n",
			want: []string{"line 3, key retenton: retenton is not a key of the top level (did you mean retention?)"}},
		{name: "not a number", give: "database:\n  max_conns: many\n",
			want: []string{"line 2, key database.max_conns: \"many\" is not a whole number; for example max_conns: 20"}},
		{name: "not a bool", give: "http:\n  metrics_public: maybe\n", want: []string{"line 2", "\"maybe\" is not true or false"}},
		{name: "list item", give: "apps:\n  - id: a\n    rate_limit: fast\n", want: []string{"line 3, key apps[0].rate_limit: \"fast\" is not a number"}},
		{name: "a list for a value", give: "log:\n  level: [info, debug]\n", want: []string{"line 2, key log.level: a list is not a single value"}},
		{name: "unclosed list on line 2", give: "log:\n  level: [info\nhttp:\n  listen: x\n",
			want: []string{"botq.yaml line 2: a list opened with [ is not closed with ]"}},
		{name: "tab on line 3", give: "log:\n  level: info\n\tformat: json\n", want: []string{"botq.yaml line 3:", "never tabs"}},
		{name: "bad indentation on line 3", give: "log:\n  level: info\n   format: json\n", want: []string{"botq.yaml line 3: an unexpected ':'"}},
		{name: "broken YAML", give: "http: [\n", want: []string{"botq.yaml", "line 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadConfig(writeConfig(t, tt.give), envOf())
			msg := strings.Join(problemsOf(t, err), "\n")
			for _, w := range tt.want {
				require.Contains(t, msg, w)
			}
			for _, internal := range []string{"server.", "!!", "time.Duration", "int32", "float64", "unmarshal", "not found in type"} {
				require.NotContains(t, msg, internal, "no Go or YAML internals")
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
	got := strings.Join(problemsOf(t, err), "\n")
	for _, want := range []string{
		"database.url: is required", "database.schema", "log.level", "river.rescue_stuck_after",
		"reconciler.max_window", "reconciler.ambiguous_grace: must be at least khoros.http_timeout", "kinds.shout: is not an action kind", "apps[0].base_url", "clear text", `apps[1].id: "a" is listed twice`,
	} {
		require.Contains(t, got, want)
	}
}

// Durations take days, in the file and the environment, as everywhere
// else in botq; quoted or not.
func TestConfigDurationsInDays(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(writeConfig(t, "retention:\n  period: 30d\n  interval: \"1d12h\"\nreconciler:\n  token_refresh_before: '3d'\n"),
		envOf("BOTQ_RIVER_COMPLETED_RETENTION", "2d"))
	require.NoError(t, err)
	require.Equal(t, 30*24*time.Hour, cfg.Retention.Period)
	require.Equal(t, 36*time.Hour, cfg.Retention.Interval)
	require.Equal(t, 3*24*time.Hour, cfg.Reconciler.TokenRefreshBefore)
	require.Equal(t, 48*time.Hour, cfg.River.CompletedRetention)
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
	got := strings.Join(problemsOf(t, err), "\n")
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
	got := strings.Join(problemsOf(t, err), "\n")
	require.Contains(t, got, "database.url: holds a password")
	require.NotContains(t, got, "hunter2")

	for _, name := range []string{"DATABASE_URL", "BOTQ_DATABASE_URL"} {
		cfg, err := LoadConfig(path, envOf(name, "postgres://u:from-env@db/y"))
		require.NoError(t, err, "the URL, password and all, comes from %s", name)
		require.Equal(t, "postgres://u:from-env@db/y", cfg.Database.URL)
	}
}

func TestConfigHTTPReadsAndOrigins(t *testing.T) {
	t.Parallel()
	_, err := LoadConfig(writeConfig(t, `
http:
  read_header_timeout: 10s
  read_timeout: 5s
  trusted_origins: ["https://ok.example.com", "https://bad.example.com/path"]
`), envOf())
	got := strings.Join(problemsOf(t, err), "\n")
	require.Contains(t, got, "http.read_timeout: must be at least http.read_header_timeout")
	require.Contains(t, got, "http.trusted_origins[1]")
	require.NotContains(t, got, "http.trusted_origins[0]")

	cfg, err := LoadConfig("", envOf("BOTQ_HTTP_READ_TIMEOUT", "1m", "BOTQ_RIVER_POLL_ONLY", "true"))
	require.NoError(t, err)
	require.Equal(t, time.Minute, cfg.HTTP.ReadTimeout)
	require.True(t, cfg.River.PollOnly)
}
