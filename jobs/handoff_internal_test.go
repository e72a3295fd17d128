package jobs

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRiverLogHandlerDropsHandoffsOnly(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(RiverLogHandler(slog.NewTextHandler(&buf, nil))).With("service", "river")
	log.Info("jobexecutor.JobExecutor: Job errored; retrying", "error", errHandedOff.Error(), "job_id", 1)
	require.Empty(t, buf.String())
	log.Info("jobexecutor.JobExecutor: Job errored; retrying", "error", "Khoros answered 503", "job_id", 2)
	require.Contains(t, buf.String(), "Khoros answered 503")
	log.Warn("jobcompleter.BatchCompleter: Completer error", "error", errHandedOff.Error())
	require.Contains(t, buf.String(), "Completer error")
}
