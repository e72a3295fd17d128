package main

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/botq/botq/bench"
)

func newBenchCmd(env *cliEnv) *cobra.Command {
	o := bench.DefaultOptions()
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
botq and River:
  writes      rows, index entries and WAL per action over --writes actions, enqueue and result apart

Each scenario works in its own schemas of the database (created, truncated between scenarios, dropped at
the end), so use a database of its own (for example botq_bench). The run takes a few minutes and stops by
itself. With --rounds, a ratio's median is that of the ratios paired by round, shown with its range.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := env.defaultDatabaseURL(&o.DatabaseURL); err != nil {
				return err
			}
			if scenarios != "" {
				o.Scenarios = nil
				for _, s := range strings.Split(scenarios, ",") {
					s = strings.TrimSpace(s)
					if !slices.Contains(bench.ScenarioNames, s) {
						return usagef("--scenarios: unknown scenario %q (one of %s)", s, strings.Join(bench.ScenarioNames, ", "))
					}
					o.Scenarios = append(o.Scenarios, s)
				}
			}
			if o.Smoke {
				o.ApplySmoke()
			}
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			return bench.Run(cmd.Context(), o, env.stdout, env.stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DatabaseURL, "database-url", "", "Postgres to benchmark on (default: DATABASE_URL, or database.url of the config)")
	durationVar(f, &o.Duration, "duration", o.Duration, "length of each throughput scenario (its first --warmup is not measured)")
	durationVar(f, &o.Warmup, "warmup", 0, "part of each throughput scenario left out of its rate (default: a fifth of --duration, at least 1s)")
	f.IntVar(&o.Drain, "drain", o.Drain, "actions (and River jobs) in the backlog-drain scenarios")
	f.BoolVar(&o.DrainMillion, "drain-million", false, "also drain 1,000,000 actions (adds several minutes)")
	f.StringVar(&scenarios, "scenarios", "", "comma-separated subset of scenarios to run (default all: "+strings.Join(bench.ScenarioNames, ",")+")")
	f.BoolVar(&o.Smoke, "smoke", false, "a seconds-long run of every scenario (CI): every figure is present, none is meaningful")
	f.StringVar(&o.Out, "out", "", "write the results as JSON to this file")
	f.IntVar(&o.MaxWorkers, "max-workers", o.MaxWorkers, "River MaxWorkers of the work queue, in every scenario")
	durationVar(f, &o.FetchCooldown, "fetch-cooldown", o.FetchCooldown, "River FetchCooldown, in every scenario")
	durationVar(f, &o.FetchPollInterval, "fetch-poll-interval", o.FetchPollInterval, "River FetchPollInterval, in every scenario")
	f.BoolVar(&o.PollOnly, "poll-only", false, "run botq with river.poll_only (no LISTEN; the River baselines keep theirs)")
	f.Int32Var(&o.MaxConns, "max-conns", o.MaxConns, "database pool size of botq and of the River baselines")
	f.IntVar(&o.SQLClients, "sql-clients", o.SQLClients, "concurrent enqueuing clients (SQL, HTTP, batches)")
	f.IntVar(&o.BatchSize, "batch-size", o.BatchSize, "actions per EnqueueMany batch in the batch scenario")
	f.Float64Var(&o.LightRate, "light-rate", o.LightRate, "enqueue rate (per second) of the light-load latency run")
	f.IntVar(&o.ReconcilerRequests, "reconciler-requests", o.ReconcilerRequests, "pending requests in the reconciler scenario")
	durationVar(f, &o.ReconcilerInterval, "reconciler-interval", o.ReconcilerInterval, "the reconciler's poll interval in the reconciler scenario")
	durationVar(f, &o.SlowLatency, "slow-latency", o.SlowLatency, "simulator latency in the slow scenario")
	f.IntVar(&o.Writes, "writes", o.Writes, "actions (and River jobs) the writes scenario counts the writes of, after a tenth as many to warm up")
	f.StringVar(&o.WALDump, "pg-waldump", "", "pg_waldump of the server's version, for the writes scenario's WAL by relation (default: on PATH, else /usr/lib/postgresql/<version>/bin)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of each scenario's measured window to <this>-<scenario>.pprof")
	f.BoolVar(&o.PGStats, "pg-stats", false, "sample Postgres wait events (pg_stat_activity, every 100ms) and pg_stat_statements, if loaded, per scenario")
	f.Float64Var(&o.MaxLoad, "max-load", 0, "before the run, wait (up to 10 minutes) until the 1-minute load average is below this (0: do not wait)")
	f.Float64Var(&o.MaxBusy, "max-busy", 0, "before each scenario, wait (up to 3 minutes) until fewer than this many cores are busy (0: do not wait)")
	f.BoolVar(&o.Keep, "keep", false, "keep the benchmark's schemas at the end")
	f.IntVar(&o.Rounds, "rounds", o.Rounds, "run the selected scenarios this many times (1 to 9), round after round, and report medians (the million drain runs in the first round only)")
	cmd.AddCommand(newBenchChildCmd(env), newBenchHistoryCmd(env))
	return cmd
}

func newBenchHistoryCmd(env *cliEnv) *cobra.Command {
	o := bench.DefaultHistoryOptions()
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Time the auditor's questions and retention on a generated audit history",
		Long: `Fills a schema of its own (made by botq's migrations) with an audit history of --actions actions over
90 days: attempts, request records (and KHOROS-origin records of no action) and events, for 3 apps, N/10
conversations and N/60 authors. It then times, with --samples random keys each: a conversation's timeline
(its actions, their attempts and request records), its request records, one request id, one app's failed
actions in one day and an author's actions; exports one day of request records in a child process (rows/s,
peak RSS); runs botq's retention of the oldest month (time, longest batch, WAL, sizes before and after) and
drops the schema. Several sizes (--actions 1000000,5000000) run one after the other and are compared.

The fill sets session_replication_role (a superuser's right) so that no trigger runs: use a database of its
own, on a disk with room (about 1.6 GB per million actions, and the WAL of the fill).`,
		Example: `  botq bench history --actions 1000000,5000000 --out docs/bench-history.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := env.defaultDatabaseURL(&o.DatabaseURL); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			return bench.RunHistory(cmd.Context(), o, env.stdout, env.stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DatabaseURL, "database-url", "", "Postgres to benchmark on (default: DATABASE_URL, or database.url of the config)")
	f.IntSliceVar(&o.Actions, "actions", o.Actions, "history sizes in actions, run one after the other")
	f.IntVar(&o.Samples, "samples", o.Samples, "random keys each question is timed with")
	durationVar(f, &o.QueryBudget, "query-budget", o.QueryBudget, "at most this long timing one question at one size (at least 10 samples)")
	f.StringVar(&o.Out, "out", "", "write the results as JSON to this file")
	f.BoolVar(&o.Keep, "keep", false, "keep each size's schema")
	return cmd
}

func newBenchChildCmd(env *cliEnv) *cobra.Command {
	return &cobra.Command{
		Use:    "child",
		Short:  "Drain a backlog for botq bench (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench.RunChild(cmd.Context(), env.stdin, env.stdout, env.stderr)
		},
	}
}

// defaultDatabaseURL sets url, when --database-url did not, to the
// configuration's (DATABASE_URL, or database.url).
func (e *cliEnv) defaultDatabaseURL(url *string) error {
	if *url != "" {
		return nil
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	*url = cfg.Database.URL
	return nil
}
