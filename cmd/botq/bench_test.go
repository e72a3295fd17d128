package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

// The drain scenarios re-execute the running binary as `botq bench child`;
// in this test binary that lands here.
func init() {
	if os.Getenv(benchChildEnv) == "1" {
		os.Exit(benchChildMain())
	}
}

// benchFigureKeys are the figures a full `botq bench` reports; the smoke
// run must report every one of them, each with a value.
var benchFigureKeys = []string{
	"r0.rate", "r0.enqueue_rate",
	"r1.rate", "r1.enqueue_rate",
	"sql.rate", "sql.rate_vs_r0", "sql.enqueue_rate",
	"batch.rate", "batch.enqueue_rate",
	"http.rate", "http.enqueue_rate",
	"r2.rate", "r2.seconds", "r2.peak_rss", "r2.enqueue_rate",
	"drain.rate", "drain.seconds", "drain.peak_rss", "drain.enqueue_rate",
	"latency.light_p50", "latency.light_p90", "latency.light_p99",
	"latency.half_rate", "latency.half_p50", "latency.half_p90", "latency.half_p99",
	"reconciler.calls_per_settled", "reconciler.lag_p50", "reconciler.lag_p90", "reconciler.lag_p99",
	"reconciler.settled", "reconciler.calls", "reconciler.pending_peak",
	"slow.river_rate", "slow.total_vs_river", "slow.total_rate", "slow.app_a_rate", "slow.app_b_rate", "slow.apps_total_rate",
}

// TestBenchSmoke runs `botq bench --smoke`, a seconds-long run of every
// scenario, and checks that the JSON holds every figure with a value, its
// baselines and targets, and what the figures depend on (machine,
// Postgres, River settings). The figures themselves mean nothing here.
func TestBenchSmoke(t *testing.T) {
	url := storetest.DatabaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"bench", "--smoke", "--database-url", url, "--out", out}, nil, &stdout, &stderr)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())

	data, err := os.ReadFile(out)
	require.NoError(t, err)
	var rep benchReport
	require.NoError(t, json.Unmarshal(data, &rep))
	require.True(t, rep.Smoke)
	require.ElementsMatch(t, benchFigureKeys, rep.Expected, "the figures a full run expects")
	byKey := map[string]*benchFigure{}
	for _, f := range rep.Figures {
		byKey[f.Key] = f
	}
	for _, k := range benchFigureKeys {
		f, ok := byKey[k]
		if !assertFigure(t, k, ok, f) {
			continue
		}
		if f.Baseline != "" {
			require.NotNil(t, f.BaselineValue, "%s: baseline %s has no value", k, f.Baseline)
			require.NotNil(t, f.Ratio, "%s: no ratio", k)
		}
		for _, tg := range f.Targets {
			require.NotNil(t, tg.Pass, "%s: target %s not evaluated", k, tg)
		}
	}
	for _, k := range []string{"sql.rate", "drain.rate", "latency.light_p99", "reconciler.calls_per_settled", "slow.total_rate"} {
		require.NotEmpty(t, byKey[k].Targets, "%s has the issue's target", k)
	}
	require.NotEmpty(t, rep.Machine.CPUModel)
	require.Positive(t, rep.Machine.Cores)
	require.Positive(t, rep.Machine.MemoryMB)
	require.NotEmpty(t, rep.Machine.Kernel)
	require.NotEmpty(t, rep.Postgres.Version)
	for _, k := range []string{"shared_buffers", "synchronous_commit", "max_connections"} {
		require.NotEmpty(t, rep.Postgres.Settings[k], "Postgres setting %s", k)
	}
	river, ok := rep.Settings["river"].(map[string]any)
	require.True(t, ok, "settings.river")
	for _, k := range []string{"max_workers", "fetch_cooldown", "fetch_poll_interval"} {
		require.NotNil(t, river[k], "settings.river.%s", k)
	}
	require.NotNil(t, rep.Settings["go_gc_percent"], "settings.go_gc_percent: the collector target botq and the baselines ran with")
	require.NotEmpty(t, rep.Go)
	require.NotEqual(t, "unknown", rep.River)
	require.Contains(t, stdout.String(), "SCENARIO", "the table")
}

func assertFigure(t *testing.T, key string, ok bool, f *benchFigure) bool {
	t.Helper()
	if !ok {
		t.Errorf("figure %s is missing", key)
		return false
	}
	if f.Value == nil || math.IsNaN(*f.Value) {
		t.Errorf("figure %s has no value", key)
		return false
	}
	return true
}
