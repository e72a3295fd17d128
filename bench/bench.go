package bench

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
)

// ScenarioNames are the scenarios of `botq bench`, in the order they
// run: each botq scenario runs right after the baseline it is compared with.
var ScenarioNames = []string{"r0", "r1", "sql", "batch", "http", "r2", "drain", "latency", "reconciler", "slow", "writes"}

// Options are the flags of `botq bench`.
type Options struct {
	DatabaseURL       string
	Duration          time.Duration
	Warmup            time.Duration
	Drain             int
	DrainMillion      bool
	Scenarios         []string
	Smoke             bool
	Out               string
	MaxWorkers        int
	FetchCooldown     time.Duration
	FetchPollInterval time.Duration
	// PollOnly runs botq's River client without LISTEN (river.poll_only);
	// the River baselines keep theirs.
	PollOnly           bool
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
	// Role is the role botq acts as (database.role): botq_runtime when the
	// bench's user may make it, else the user itself. The bench sets it.
	Role string
	// Writes is how many actions (and River jobs) the writes scenario
	// counts the writes of; WALDump is pg_waldump (default: found).
	Writes  int
	WALDump string
}

func DefaultOptions() Options {
	return Options{
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
		Writes:             20_000,
		Rounds:             1,
	}
}

// ApplySmoke shrinks every scenario to a seconds-long run that still
// produces every figure.
func (o *Options) ApplySmoke() {
	o.Duration = 1500 * time.Millisecond
	o.Warmup = 500 * time.Millisecond
	o.Drain = 2000
	o.DrainMillion = false
	o.ReconcilerRequests = 300
	o.ReconcilerInterval = time.Second
	o.Writes = 300
}

// Validate fills in the warm-up when it is not set and returns every
// problem with the options, naming their flags.
func (o *Options) Validate() error {
	if o.Warmup == 0 {
		o.Warmup = max(o.Duration/5, time.Second)
	}
	var problems []string
	for _, c := range []struct {
		bad     bool
		problem string
	}{
		{o.DatabaseURL == "", "--database-url (or DATABASE_URL) is required"},
		{o.Duration <= 0 || o.Warmup <= 0 || o.Warmup >= o.Duration,
			fmt.Sprintf("--warmup (%s) must be positive and shorter than --duration (%s)", o.Warmup, o.Duration)},
		{o.Drain < 1, "--drain must be at least 1"},
		{o.MaxWorkers < 2 || o.MaxWorkers > 10000, "--max-workers must be from 2 to 10000"},
		{o.FetchCooldown <= 0 || o.FetchPollInterval <= 0, "--fetch-cooldown and --fetch-poll-interval must be positive"},
		{o.MaxConns < 4, "--max-conns must be at least 4"},
		{o.SQLClients < 1 || o.BatchSize < 1 || o.LightRate <= 0 || o.ReconcilerRequests < 1 ||
			o.ReconcilerInterval <= 0 || o.SlowLatency <= 0,
			"--sql-clients, --batch-size, --light-rate, --reconciler-requests, --reconciler-interval and --slow-latency must be positive"},
		{o.Writes < 10, "--writes must be at least 10"},
		{o.Rounds < 1 || o.Rounds > 9, "--rounds must be from 1 to 9"},
	} {
		if c.bad {
			problems = append(problems, c.problem)
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// selected reports whether scenario s runs.
func (o *Options) selected(s string) bool {
	return len(o.Scenarios) == 0 || slices.Contains(o.Scenarios, s)
}

// Run runs the selected scenarios and reports them.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) error {
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
