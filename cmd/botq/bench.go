package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// benchScenarioNames are the scenarios of `botq bench`, in the order they
// run: each botq scenario runs right after the baseline it is compared with.
var benchScenarioNames = []string{"r0", "r1", "sql", "batch", "http", "r2", "drain", "latency", "reconciler", "slow"}

// benchOptions are the flags of `botq bench`.
type benchOptions struct {
	DatabaseURL        string
	Duration           time.Duration
	Warmup             time.Duration
	Drain              int
	DrainMillion       bool
	Scenarios          []string
	Smoke              bool
	Out                string
	MaxWorkers         int
	FetchCooldown      time.Duration
	FetchPollInterval  time.Duration
	MaxConns           int32
	SQLClients         int
	BatchSize          int
	LightRate          float64
	ReconcilerRequests int
	ReconcilerInterval time.Duration
	SlowLatency        time.Duration
	CPUProfile         string
	PGStats            bool
	MaxLoad            float64
	MaxBusy            float64
	Keep               bool
	Rounds             int
}

func defaultBenchOptions() benchOptions {
	return benchOptions{
		Duration:           15 * time.Second,
		Drain:              100_000,
		MaxWorkers:         100,
		FetchCooldown:      10 * time.Millisecond,
		FetchPollInterval:  100 * time.Millisecond,
		MaxConns:           20,
		SQLClients:         4,
		BatchSize:          100,
		LightRate:          20,
		ReconcilerRequests: 10_000,
		ReconcilerInterval: 2 * time.Second,
		SlowLatency:        100 * time.Millisecond,
		Rounds:             1,
	}
}

// applySmoke shrinks every scenario to a seconds-long run that still
// produces every figure.
func (o *benchOptions) applySmoke() {
	o.Duration = 1500 * time.Millisecond
	o.Warmup = 500 * time.Millisecond
	o.Drain = 2000
	o.DrainMillion = false
	o.ReconcilerRequests = 300
	o.ReconcilerInterval = time.Second
}

func newBenchCmd(env *cliEnv) *cobra.Command {
	o := defaultBenchOptions()
	var scenarios string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark botq against plain River on this machine, in one run, and report ratios",
		Long: `Runs every scenario of docs/benchmarks.md against one Postgres database, with the Bot v3 simulator
in this process on a loopback listener (real HTTP), and prints a table of figures, baselines, ratios and
targets; --out also writes them as JSON with the machine, the Postgres settings and the River settings.

Baselines (plain River, same Postgres, same River settings, same simulator):
  r0          single-row SQL INSERTs into river_job from 4 clients, no-op worker, worked at the same time
  r1          as r0, the worker makes one HTTP call to the simulator
  r2          InsertMany batches, one HTTP call per job: a backlog drained (in a child process)
botq:
  sql         single-row SQL INSERTs into action from 4 clients, end to end (call made, results committed)
  batch       jobs.Enqueuer.EnqueueMany batches, end to end
  http        POST /v1/actions from 4 clients, end to end
  drain       a backlog of --drain actions drained by a child process: time, rate, peak RSS
  latency     enqueue commit to Bot v3 call at 20/s and at 50% of the sql scenario's rate
  reconciler  Bot v3 calls per settled request and settle lag with --reconciler-requests pending
  slow        simulator latency 100ms: throughput against River's and the apps' concurrency

Each scenario works in its own schemas of the database (created, truncated between scenarios, dropped at
the end), so use a database of its own (for example botq_bench). The run takes a few minutes and stops by
itself; --smoke runs every scenario for about a second. --rounds N runs the scenarios N times, one round
after the other, and reports each figure's median (and each ratio's, paired by round) with its range.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.DatabaseURL == "" {
				cfg, err := env.config()
				if err != nil {
					return err
				}
				o.DatabaseURL = cfg.Database.URL
			}
			if scenarios != "" {
				o.Scenarios = nil
				for _, s := range strings.Split(scenarios, ",") {
					s = strings.TrimSpace(s)
					if !slices.Contains(benchScenarioNames, s) {
						return usagef("--scenarios: unknown scenario %q (one of %s)", s, strings.Join(benchScenarioNames, ", "))
					}
					o.Scenarios = append(o.Scenarios, s)
				}
			}
			if o.Smoke {
				o.applySmoke()
			}
			if err := o.validate(); err != nil {
				return usageError{err}
			}
			return runBench(cmd.Context(), o, env.stdout, env.stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DatabaseURL, "database-url", "", "Postgres to benchmark on (default: DATABASE_URL, or database.url of the config)")
	f.DurationVar(&o.Duration, "duration", o.Duration, "length of each throughput scenario (its first --warmup is not measured)")
	f.DurationVar(&o.Warmup, "warmup", 0, "part of each throughput scenario left out of its rate (default: a fifth of --duration, at least 1s)")
	f.IntVar(&o.Drain, "drain", o.Drain, "actions (and River jobs) in the backlog-drain scenarios")
	f.BoolVar(&o.DrainMillion, "drain-million", false, "also drain 1,000,000 actions (adds several minutes)")
	f.StringVar(&scenarios, "scenarios", "", "comma-separated subset of scenarios to run (default all: "+strings.Join(benchScenarioNames, ",")+")")
	f.BoolVar(&o.Smoke, "smoke", false, "a seconds-long run of every scenario (CI): every figure is present, none is meaningful")
	f.StringVar(&o.Out, "out", "", "write the results as JSON to this file")
	f.IntVar(&o.MaxWorkers, "max-workers", o.MaxWorkers, "River MaxWorkers of the work queue, in every scenario")
	f.DurationVar(&o.FetchCooldown, "fetch-cooldown", o.FetchCooldown, "River FetchCooldown, in every scenario")
	f.DurationVar(&o.FetchPollInterval, "fetch-poll-interval", o.FetchPollInterval, "River FetchPollInterval, in every scenario")
	f.Int32Var(&o.MaxConns, "max-conns", o.MaxConns, "database pool size of botq and of the River baselines")
	f.IntVar(&o.SQLClients, "sql-clients", o.SQLClients, "concurrent enqueuing clients (SQL, HTTP, batches)")
	f.IntVar(&o.BatchSize, "batch-size", o.BatchSize, "actions per EnqueueMany batch in the batch scenario")
	f.Float64Var(&o.LightRate, "light-rate", o.LightRate, "enqueue rate (per second) of the light-load latency run")
	f.IntVar(&o.ReconcilerRequests, "reconciler-requests", o.ReconcilerRequests, "pending requests in the reconciler scenario")
	f.DurationVar(&o.ReconcilerInterval, "reconciler-interval", o.ReconcilerInterval, "the reconciler's poll interval in the reconciler scenario")
	f.DurationVar(&o.SlowLatency, "slow-latency", o.SlowLatency, "simulator latency in the slow scenario")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of each scenario's measured window to <this>-<scenario>.pprof")
	f.BoolVar(&o.PGStats, "pg-stats", false, "sample Postgres wait events (pg_stat_activity, every 100ms) and pg_stat_statements, if loaded, per scenario")
	f.Float64Var(&o.MaxLoad, "max-load", 0, "before the run, wait (up to 10 minutes) until the 1-minute load average is below this (0: do not wait)")
	f.Float64Var(&o.MaxBusy, "max-busy", 0, "before each scenario, wait (up to 3 minutes) until fewer than this many cores are busy (0: do not wait)")
	f.BoolVar(&o.Keep, "keep", false, "keep the benchmark's schemas at the end")
	f.IntVar(&o.Rounds, "rounds", o.Rounds, "run the selected scenarios this many times (1 to 9), round after round, and report medians (the million drain runs in the first round only)")
	cmd.AddCommand(newBenchChildCmd(env))
	return cmd
}

func (o *benchOptions) validate() error {
	if o.Warmup == 0 {
		o.Warmup = max(o.Duration/5, time.Second)
	}
	var problems []string
	if o.DatabaseURL == "" {
		problems = append(problems, "--database-url (or DATABASE_URL) is required")
	}
	if o.Duration <= 0 || o.Warmup <= 0 || o.Warmup >= o.Duration {
		problems = append(problems, fmt.Sprintf("--warmup (%s) must be positive and shorter than --duration (%s)", o.Warmup, o.Duration))
	}
	if o.Drain < 1 {
		problems = append(problems, "--drain must be at least 1")
	}
	if o.MaxWorkers < 2 || o.MaxWorkers > 10000 {
		problems = append(problems, "--max-workers must be from 2 to 10000")
	}
	if o.FetchCooldown <= 0 || o.FetchPollInterval <= 0 {
		problems = append(problems, "--fetch-cooldown and --fetch-poll-interval must be positive")
	}
	if o.MaxConns < 4 {
		problems = append(problems, "--max-conns must be at least 4")
	}
	if o.SQLClients < 1 || o.BatchSize < 1 || o.LightRate <= 0 || o.ReconcilerRequests < 1 ||
		o.ReconcilerInterval <= 0 || o.SlowLatency <= 0 {
		problems = append(problems, "--sql-clients, --batch-size, --light-rate, --reconciler-requests, --reconciler-interval and --slow-latency must be positive")
	}
	if o.Rounds < 1 || o.Rounds > 9 {
		problems = append(problems, "--rounds must be from 1 to 9")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// selected reports whether scenario s runs.
func (o *benchOptions) selected(s string) bool {
	return len(o.Scenarios) == 0 || slices.Contains(o.Scenarios, s)
}

// runBench runs the selected scenarios and reports them.
func runBench(ctx context.Context, o benchOptions, stdout, stderr io.Writer) error {
	// The latency scenario's second load is half the sql scenario's rate.
	if o.selected("latency") && !o.selected("sql") {
		o.Scenarios = append(o.Scenarios, "sql")
	}
	if o.Out != "" {
		if dir := filepath.Dir(o.Out); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
		}
	}
	b, err := newBench(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	runErr := b.run(ctx)
	rep := b.report()
	rep.writeTable(stdout)
	if o.Out != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode results: %w", err)
		}
		if err := os.WriteFile(o.Out, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		fmt.Fprintf(stderr, "bench: results written to %s\n", o.Out)
	}
	if runErr != nil {
		return runErr
	}
	if missing := rep.missing(); len(missing) > 0 {
		return fmt.Errorf("bench: figures without a value: %s", strings.Join(missing, ", "))
	}
	return nil
}
