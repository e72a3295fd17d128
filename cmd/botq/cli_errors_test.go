package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

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
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, want: []string{"unknown command"}},
		{name: "unknown subcommand", args: []string{"token", "frobnicate"}, wantCode: 2, want: []string{`unknown command "frobnicate" for "botq token"`}},
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
