package server

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// The console format has no colour when it is not written to a terminal
// (make run > file), and is still the console format.
func TestConsoleLogPlainWhenNotATerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := NewLogger(LogConfig{Level: "info", Format: "console"}, &buf)
	l.Error().Str("app", "demo-bot").Msg("Something failed")
	require.Contains(t, buf.String(), "Something failed")
	require.Contains(t, buf.String(), "app=demo-bot")
	require.NotContains(t, buf.String(), "\x1b[", "no escape sequences in a redirected log")
}

// River's timer-driven info lines (job counts, maintenance runs) are debug
// lines: absent at log.level info, present at debug. Its other info lines
// stay at info.
func TestRiverRoutineLinesAtDebug(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range []struct {
		level     string
		wantQuiet bool
	}{{"info", true}, {"debug", false}} {
		var buf bytes.Buffer
		l := riverLogger(NewLogger(LogConfig{Level: tt.level, Format: "json"}, &buf))
		l.InfoContext(ctx, "producer: Producer job counts", "num_jobs_running", 3)
		l.InfoContext(ctx, "JobScheduler: Ran successfully", "num_jobs_scheduled", 1)
		if tt.wantQuiet {
			require.Empty(t, buf.String(), "level %s", tt.level)
		} else {
			require.Regexp(t, `"level":"debug","num_jobs_running":3,.*"message":"producer: Producer job counts"`, buf.String())
			require.Regexp(t, `"level":"debug",.*"message":"JobScheduler: Ran successfully"`, buf.String())
		}
		buf.Reset()
		l.InfoContext(ctx, "River client started", "client_id", "x")
		require.Contains(t, buf.String(), `"level":"info"`, "level %s", tt.level)
	}
}
