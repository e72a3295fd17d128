package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
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
	"reconciler.records_per_settled", "reconciler.settled", "reconciler.calls", "reconciler.pending_peak",
	"slow.river_rate", "slow.total_vs_river", "slow.total_rate", "slow.app_a_rate", "slow.app_b_rate", "slow.apps_total_rate",
	"writes.river_enqueue_wal_bytes", "writes.enqueue_wal_bytes", "writes.river_enqueue_wal_records", "writes.enqueue_wal_records",
	"writes.river_enqueue_rows", "writes.enqueue_rows", "writes.river_enqueue_index_entries", "writes.enqueue_index_entries",
	"writes.river_result_wal_bytes", "writes.result_wal_bytes", "writes.river_result_wal_records", "writes.result_wal_records",
	"writes.river_result_rows", "writes.result_rows", "writes.river_result_index_entries", "writes.result_index_entries",
	"writes.river_enqueue_postgres_cpu", "writes.enqueue_postgres_cpu", "writes.river_result_postgres_cpu", "writes.result_postgres_cpu",
}

// TestBenchSmoke runs `botq bench --smoke`, a seconds-long run of every
// scenario, and checks that the JSON holds every figure with a value, its
// baselines and targets, and what the figures depend on (machine,
// Postgres, River settings). The figures themselves mean nothing here.
func TestBenchSmoke(t *testing.T) {
	rep, stdout := runBenchSmoke(t, nil)
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
			// CPU is counted in clock ticks (10 ms): River's side of a
			// smoke-sized phase can take none, and a ratio to zero is none.
			if !(strings.HasSuffix(k, "_postgres_cpu") && *f.BaselineValue == 0) {
				require.NotNil(t, f.Ratio, "%s: no ratio", k)
			}
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
	for _, k := range []string{"max_workers", "fetch_cooldown", "fetch_poll_interval", "botq_poll_only"} {
		require.NotNil(t, river[k], "settings.river.%s", k)
	}
	require.NotNil(t, rep.Settings["go_gc_percent"], "settings.go_gc_percent: the collector target botq and the baselines ran with")
	require.NotEmpty(t, rep.Go)
	// A test binary of this package carries no module list in its build
	// info; botq's binary does, and the report names River's version there.
	if info, ok := debug.ReadBuildInfo(); ok && len(info.Deps) > 0 {
		require.NotEqual(t, "unknown", rep.River)
	}
	require.Contains(t, stdout, "SCENARIO", "the table")
	requireWrites(t, rep)
}

// requireWrites checks the writes scenario's counts, which are exact
// whatever the machine: every phase found the rows its work must write.
func requireWrites(t *testing.T, rep benchReport) {
	t.Helper()
	for _, sc := range rep.Scenarios {
		if sc.Name != "writes" {
			continue
		}
		sides := map[string]*writesSide{}
		for _, k := range []string{"botq", "river"} {
			data, err := json.Marshal(sc.Details[k])
			require.NoError(t, err)
			var side writesSide
			require.NoError(t, json.Unmarshal(data, &side))
			sides[k] = &side
			for _, p := range []*writesPhase{side.Enqueue, side.Result} {
				require.Equal(t, 300, p.Actions)
				require.Positive(t, p.WALBytes, k)
				require.Positive(t, p.PerAction.IndexEntries, k)
			}
		}
		botq, rv := sides["botq"], sides["river"]
		require.EqualValues(t, 300, botq.Enqueue.Tables["action"].Inserted, "one action per INSERT")
		require.EqualValues(t, 300, botq.Enqueue.Tables["river_job"].Inserted, "and its job")
		require.Nil(t, botq.Enqueue.Tables["attempt"], "no worker runs during the enqueue")
		require.EqualValues(t, 300, botq.Result.Tables["attempt"].Inserted, "one attempt per action")
		require.EqualValues(t, 300, rv.Enqueue.Tables["river_job"].Inserted)
		require.GreaterOrEqual(t, rv.Result.Tables["river_job"].Updated, int64(600), "running, then completed")
		require.Greater(t, botq.Result.PerAction.Rows, rv.Result.PerAction.Rows)
		return
	}
	t.Fatal("no writes scenario")
}

// runBenchSmoke runs the bench's smoke run, with its options changed by
// edit, and returns its JSON report and its table.
func runBenchSmoke(t *testing.T, edit func(*Options)) (benchReport, string) {
	t.Helper()
	url := storetest.DatabaseURL(t)
	// All a test may reserve (the bench tests are not parallel anyway). The
	// bench's pools could hold more (botq's and River's are 20 each, and its
	// drain child has its own), but they are never all full at once; the
	// README's testing section gives the suite's measured peak.
	storetest.Conns(t, storetest.ConnsMax)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	o := DefaultOptions()
	o.Smoke, o.DatabaseURL, o.Out = true, url, out
	o.ApplySmoke()
	if edit != nil {
		edit(&o)
	}
	require.NoError(t, o.Validate())
	err := Run(ctx, o, &stdout, &stderr)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	var rep benchReport
	require.NoError(t, json.Unmarshal(data, &rep))
	return rep, stdout.String()
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

// TestBenchRoundsMedians checks how a run of several rounds reports a
// figure: the median of its rounds' values, and the median of its ratios
// paired by round, not the ratio of two medians.
func TestBenchRoundsMedians(t *testing.T) {
	b := &bench{o: Options{Rounds: 3}, byKey: map[string]*benchFigure{}}
	target := func() []benchTarget { return []benchTarget{atLeast("throughput", "ratio", 0.6)} }
	// River and botq; the third round's River rate is replaced below by
	// 7,000, so the rounds' ratios are 0.5, 0.6 and 0.5, while the ratio of
	// the medians (4,800 / 8,000) would be 0.6.
	for i, v := range [][2]float64{{10000, 5000}, {8000, 4800}, {5000, 3500}} {
		b.round = i
		_, ok := b.value("r2.rate")
		require.False(t, ok, "round %d: no value of this round yet", i)
		b.figure(benchFigure{Key: "r2.rate", Value: fptr(v[0])})
		got, ok := b.value("r2.rate")
		require.True(t, ok)
		require.InDelta(t, v[0], got, 0, "the value of the round running")
		if i == 0 {
			// The million drain runs in the first round only.
			b.figure(benchFigure{Key: "drain1m.rate", Value: fptr(4000), Baseline: "r2.rate"})
		}
		b.figure(benchFigure{Key: "drain.rate", Value: fptr(v[1]), Baseline: "r2.rate", Targets: target()})
		// A figure one round had no value for, against a fixed baseline.
		var lag *float64
		if i != 1 {
			lag = fptr(float64(1000 * (i + 1)))
		}
		b.figure(benchFigure{Key: "lag", Value: lag, Baseline: "interval", BaselineValue: fptr(1000)})
	}
	// Recorded twice in one round: the second value replaces the first.
	b.figure(benchFigure{Key: "r2.rate", Value: fptr(7000)})
	b.finish()

	r2, drain, lag := b.byKey["r2.rate"], b.byKey["drain.rate"], b.byKey["lag"]
	require.Len(t, r2.Rounds, 3)
	require.InDelta(t, 7000, *r2.Rounds[2], 0)
	require.InDelta(t, 8000, *r2.Value, 0, "median of 10,000, 8,000 and 7,000")
	require.InDelta(t, 4800, *drain.Value, 0)
	require.InDelta(t, 8000, *drain.BaselineValue, 0, "the baseline's median")
	require.Len(t, drain.RoundRatios, 3)
	require.InDelta(t, 0.5, *drain.RoundRatios[0], 1e-9)
	require.InDelta(t, 0.5, *drain.RoundRatios[2], 1e-9)
	require.InDelta(t, 0.5, *drain.Ratio, 1e-9, "median of the rounds' ratios 0.5, 0.6 and 0.5")
	require.False(t, *drain.Targets[0].Pass)
	require.Nil(t, lag.Rounds[1])
	require.InDelta(t, 2000, *lag.Value, 0, "median of the two rounds with a value")
	require.InDelta(t, 2, *lag.Ratio, 1e-9)
	require.Nil(t, lag.RoundRatios[1])
	m := b.byKey["drain1m.rate"]
	require.Len(t, m.RoundRatios, 1)
	require.InDelta(t, 0.4, *m.Ratio, 1e-9, "against River's drain of its own round, 10,000")

	// One round: no rounds in the JSON, ratio of the values.
	one := &bench{o: Options{Rounds: 1}, byKey: map[string]*benchFigure{}}
	one.figure(benchFigure{Key: "r2.rate", Value: fptr(8000)})
	one.figure(benchFigure{Key: "drain.rate", Value: fptr(4000), Baseline: "r2.rate"})
	one.finish()
	require.Nil(t, one.byKey["drain.rate"].Rounds)
	require.Nil(t, one.byKey["drain.rate"].RoundRatios)
	require.InDelta(t, 0.5, *one.byKey["drain.rate"].Ratio, 1e-9)
}

// TestBenchRounds runs two smoke rounds of the drain and its baseline and
// checks that the JSON holds both rounds' scenarios and values.
func TestBenchRounds(t *testing.T) {
	rep, stdout := runBenchSmoke(t, func(o *Options) { o.Rounds, o.Scenarios = 2, []string{"r2", "drain"} })
	var rounds []string
	for _, sc := range rep.Scenarios {
		rounds = append(rounds, sc.Name+"/"+strconv.Itoa(sc.Round))
	}
	require.Equal(t, []string{"r2/1", "drain/1", "r2/2", "drain/2"}, rounds)
	for _, f := range rep.Figures {
		if f.Key != "drain.rate" {
			continue
		}
		require.Len(t, f.Rounds, 2)
		require.Len(t, f.RoundRatios, 2)
		for i := range 2 {
			require.NotNil(t, f.Rounds[i], "round %d", i+1)
			require.NotNil(t, f.RoundRatios[i], "round %d", i+1)
		}
		require.InDelta(t, (*f.RoundRatios[0]+*f.RoundRatios[1])/2, *f.Ratio, 1e-9)
		require.Contains(t, stdout, "2 rounds")
		return
	}
	t.Fatal("no drain.rate figure")
}

func TestMain(m *testing.M) { storetest.Main(m) }
