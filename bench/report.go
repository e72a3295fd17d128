package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/server"
)

// benchFigure is one measured figure, compared with its baseline (another
// figure of the same run, or a computed expectation) and its targets.
type benchFigure struct {
	Key      string   `json:"key"`
	Scenario string   `json:"scenario"`
	Label    string   `json:"label"`
	Value    *float64 `json:"value"`
	Unit     string   `json:"unit"`
	// Baseline names what the value is compared with; BaselineValue is its
	// value and Ratio is Value / BaselineValue.
	Baseline      string        `json:"baseline,omitempty"`
	BaselineValue *float64      `json:"baseline_value,omitempty"`
	Ratio         *float64      `json:"ratio,omitempty"`
	Targets       []benchTarget `json:"targets,omitempty"`
	// In a run of more than one round (--rounds), Rounds holds the value of
	// each round (null where a round had none) and RoundRatios each round's
	// ratio to its baseline in the same round; Value and Ratio are their
	// medians. A ratio of two medians would pair a good round of botq with
	// a bad one of River.
	Rounds      []*float64 `json:"rounds,omitempty"`
	RoundRatios []*float64 `json:"round_ratios,omitempty"`
}

// benchTarget is a bound on a figure's value or ratio, from an issue.
type benchTarget struct {
	Source string   `json:"source"` // what the target is about, e.g. "throughput"
	On     string   `json:"on"`     // "value" or "ratio"
	Min    *float64 `json:"min,omitempty"`
	Max    *float64 `json:"max,omitempty"`
	Pass   *bool    `json:"pass"`
}

func (t benchTarget) String() string {
	subject := "value"
	if t.On == "ratio" {
		subject = "ratio"
	}
	switch {
	case t.Min != nil && t.Max != nil:
		return fmt.Sprintf("%s in [%s, %s] (%s)", subject, fmtNum(*t.Min), fmtNum(*t.Max), t.Source)
	case t.Min != nil:
		return fmt.Sprintf("%s ≥ %s (%s)", subject, fmtNum(*t.Min), t.Source)
	case t.Max != nil:
		return fmt.Sprintf("%s ≤ %s (%s)", subject, fmtNum(*t.Max), t.Source)
	}
	return ""
}

func atLeast(source, on string, v float64) benchTarget {
	return benchTarget{Source: source, On: on, Min: &v}
}
func atMost(source, on string, v float64) benchTarget {
	return benchTarget{Source: source, On: on, Max: &v}
}
func within(source, on string, lo, hi float64) benchTarget {
	return benchTarget{Source: source, On: on, Min: &lo, Max: &hi}
}

func fptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// figure records a figure (replacing one with the same key).
func (b *bench) figure(f benchFigure) {
	p, ok := b.byKey[f.Key]
	if !ok {
		p = &benchFigure{}
		b.figures = append(b.figures, p)
		b.byKey[f.Key] = p
	}
	rounds := p.Rounds
	*p = f
	for len(rounds) <= b.round {
		rounds = append(rounds, nil)
	}
	rounds[b.round] = f.Value
	p.Rounds = rounds
}

// value returns a figure's value in the round running: a scenario that
// needs another's figure must not take an earlier round's.
func (b *bench) value(key string) (float64, bool) {
	if f, ok := b.byKey[key]; ok && b.round < len(f.Rounds) && f.Rounds[b.round] != nil {
		return *f.Rounds[b.round], true
	}
	return 0, false
}

// finish computes ratios against baseline figures and every target; in a
// run of more than one round, each figure's value and ratio are the medians
// of its rounds'.
func (b *bench) finish() {
	multi := b.o.Rounds > 1
	for _, f := range b.figures {
		if multi {
			f.Value = median(f.Rounds)
		} else {
			f.Rounds = nil
		}
	}
	for _, f := range b.figures {
		base, baseIsFigure := b.byKey[f.Baseline]
		if baseIsFigure && base.Value != nil && (multi || f.BaselineValue == nil) {
			f.BaselineValue = fptr(*base.Value)
		}
		f.Ratio, f.RoundRatios = nil, nil
		switch {
		case multi:
			f.roundRatios(base, baseIsFigure)
		case f.Value != nil && f.BaselineValue != nil && *f.BaselineValue != 0:
			f.Ratio = fptr(*f.Value / *f.BaselineValue)
		}
		f.checkTargets()
	}
}

// roundRatios sets the figure's ratio of each round, against base's value
// of the same round (or the fixed baseline), and their median.
func (f *benchFigure) roundRatios(base *benchFigure, baseIsFigure bool) {
	for i, v := range f.Rounds {
		var bv *float64
		switch {
		case baseIsFigure && i < len(base.Rounds):
			bv = base.Rounds[i]
		case !baseIsFigure:
			// A fixed baseline (MaxWorkers/latency): the same in every
			// round.
			bv = f.BaselineValue
		}
		var r *float64
		if v != nil && bv != nil && *bv != 0 {
			r = fptr(*v / *bv)
		}
		f.RoundRatios = append(f.RoundRatios, r)
	}
	if f.Ratio = median(f.RoundRatios); f.Ratio == nil {
		f.RoundRatios = nil
	}
}

// checkTargets decides whether the figure meets each of its targets.
func (f *benchFigure) checkTargets() {
	for i := range f.Targets {
		t := &f.Targets[i]
		v := f.Value
		if t.On == "ratio" {
			v = f.Ratio
		}
		t.Pass = nil
		if v == nil {
			continue
		}
		pass := (t.Min == nil || *v >= *t.Min) && (t.Max == nil || *v <= *t.Max)
		t.Pass = &pass
	}
}

// median is the median of the values that are set, nil if none is.
func median(vs []*float64) *float64 {
	xs := setValues(vs)
	if len(xs) == 0 {
		return nil
	}
	slices.Sort(xs)
	m := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		m = (xs[len(xs)/2-1] + m) / 2
	}
	return &m
}

// spread is "(min–max)" of the values that are set, for the table; empty
// unless two or more are.
func spread(vs []*float64, format func(float64) string) string {
	xs := setValues(vs)
	if len(xs) < 2 {
		return ""
	}
	return " (" + format(slices.Min(xs)) + "–" + format(slices.Max(xs)) + ")"
}

// setValues returns the values of a figure's rounds that are set.
func setValues(vs []*float64) []float64 {
	var xs []float64
	for _, v := range vs {
		if v != nil {
			xs = append(xs, *v)
		}
	}
	return xs
}

// benchScenario is what one scenario did, beyond its figures.
type benchScenario struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	StartedAt   time.Time      `json:"started_at"`
	Seconds     float64        `json:"seconds"`
	LoadBefore  string         `json:"load_before"`
	LoadAfter   string         `json:"load_after"`
	Details     map[string]any `json:"details"`
	Timeline    []benchSample  `json:"timeline,omitempty"`
	Postgres    *pgStats       `json:"postgres,omitempty"`
	Error       string         `json:"error,omitempty"`
	// Round is the scenario's round (from 1) in a run of more than one.
	Round int `json:"round,omitempty"`
}

// benchSample is one point of a throughput scenario's timeline.
type benchSample struct {
	T         float64 `json:"t"`
	Enqueued  int64   `json:"enqueued"`
	Completed int64   `json:"completed"`
}

type benchMachine struct {
	CPUModel   string `json:"cpu_model"`
	Cores      int    `json:"cores"`
	MemoryMB   int64  `json:"memory_mb"`
	Kernel     string `json:"kernel"`
	Hostname   string `json:"hostname"`
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
}

type benchPostgres struct {
	Version  string            `json:"version"`
	Settings map[string]string `json:"settings"`
	// StatStatements says whether pg_stat_statements could be read.
	StatStatements string `json:"pg_stat_statements"`
}

type benchReport struct {
	Tool       string           `json:"tool"`
	StartedAt  time.Time        `json:"started_at"`
	FinishedAt time.Time        `json:"finished_at"`
	Smoke      bool             `json:"smoke"`
	Botq       string           `json:"botq_version"`
	Go         string           `json:"go_version"`
	River      string           `json:"river_version"`
	Pgx        string           `json:"pgx_version"`
	Machine    benchMachine     `json:"machine"`
	Postgres   benchPostgres    `json:"postgres"`
	Settings   map[string]any   `json:"settings"`
	Figures    []*benchFigure   `json:"figures"`
	Scenarios  []*benchScenario `json:"scenarios"`
	Expected   []string         `json:"expected_figures"`
}

func (b *bench) report() *benchReport {
	b.finish()
	b.machine.LoadAfter = loadString()
	o := b.o
	return &benchReport{
		Tool:       "botq bench",
		StartedAt:  b.started.UTC(),
		FinishedAt: time.Now().UTC(),
		Smoke:      o.Smoke,
		Botq:       botapi.Version,
		Go:         runtime.Version(),
		River:      moduleVersion("github.com/riverqueue/river"),
		Pgx:        moduleVersion("github.com/jackc/pgx/v5"),
		Machine:    b.machine,
		Postgres:   b.postgres,
		Settings: map[string]any{
			"river": map[string]any{
				"max_workers":         o.MaxWorkers,
				"fetch_cooldown":      o.FetchCooldown.String(),
				"fetch_poll_interval": o.FetchPollInterval.String(),
				"botq_poll_only":      o.PollOnly,
				"job_timeout":         server.DefaultConfig().River.JobTimeout.String(),
				"queue":               benchQueue,
			},
			"db_max_conns":        o.MaxConns,
			"duration":            o.Duration.String(),
			"warmup":              o.Warmup.String(),
			"drain":               o.Drain,
			"drain_million":       o.DrainMillion,
			"sql_clients":         o.SQLClients,
			"batch_size":          o.BatchSize,
			"light_rate":          o.LightRate,
			"reconciler_requests": o.ReconcilerRequests,
			"reconciler_interval": o.ReconcilerInterval.String(),
			"slow_latency":        o.SlowLatency.String(),
			"writes":              o.Writes,
			"rounds":              o.Rounds,
			"scenarios":           b.ranScenarios(),
			"simulator":           "botapi/sim in the bench process, loopback HTTP, no added latency unless stated, call log off",
			// The bench process and both kinds of drain child (botq's and
			// River's) run with the same collector target.
			"go_gc_percent": goGCPercent(),
		},
		Figures:   b.figures,
		Scenarios: b.results,
		Expected:  b.expectedFigures(),
	}
}

// goGCPercent is the garbage collector's target of this process: GOGC, or
// the one main set.
func goGCPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return -1
	}
	return int(s[0].Value.Uint64())
}

func (b *bench) ranScenarios() []string {
	var out []string
	for _, s := range b.results {
		if !slices.Contains(out, s.Name) {
			out = append(out, s.Name)
		}
	}
	return out
}

// expectedFigures are the figure keys the selected scenarios must produce.
func (b *bench) expectedFigures() []string {
	var out []string
	add := func(scenario string, keys ...string) {
		if b.o.selected(scenario) {
			out = append(out, keys...)
		}
	}
	add("r0", "r0.rate", "r0.enqueue_rate")
	add("r1", "r1.rate", "r1.enqueue_rate")
	add("sql", "sql.rate", "sql.rate_vs_r0", "sql.enqueue_rate")
	add("batch", "batch.rate", "batch.enqueue_rate")
	add("http", "http.rate", "http.enqueue_rate")
	add("r2", "r2.rate", "r2.seconds", "r2.peak_rss", "r2.enqueue_rate")
	add("drain", "drain.rate", "drain.seconds", "drain.peak_rss", "drain.enqueue_rate")
	if b.o.DrainMillion {
		add("drain", "drain1m.rate", "drain1m.seconds", "drain1m.peak_rss", "drain1m.enqueue_rate")
	}
	add("latency", "latency.light_p50", "latency.light_p90", "latency.light_p99",
		"latency.half_rate", "latency.half_p50", "latency.half_p90", "latency.half_p99")
	add("reconciler", "reconciler.calls_per_settled", "reconciler.lag_p50", "reconciler.lag_p90", "reconciler.lag_p99",
		"reconciler.records_per_settled", "reconciler.settled", "reconciler.calls", "reconciler.pending_peak")
	add("slow", "slow.river_rate", "slow.total_vs_river", "slow.total_rate", "slow.app_a_rate", "slow.app_b_rate", "slow.apps_total_rate")
	add("writes", writesFigureKeys()...)
	return out
}

// missing lists the expected figures without a value.
func (r *benchReport) missing() []string {
	have := map[string]bool{}
	for _, f := range r.Figures {
		if f.Value != nil {
			have[f.Key] = true
		}
	}
	var out []string
	for _, k := range r.Expected {
		if !have[k] {
			out = append(out, k)
		}
	}
	return out
}

// fmtRatio prints a ratio, or a round's, with two decimals.
func fmtRatio(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func (r *benchReport) writeTable(w io.Writer) {
	fmt.Fprintf(w, "\nbotq bench %s (%s, River %s, Postgres %s; %d cores, %s, load %s → %s)\n",
		r.Botq, r.Go, r.River, r.Postgres.Version, r.Machine.Cores, r.Machine.CPUModel, r.Machine.LoadBefore, r.Machine.LoadAfter)
	rs := r.Settings["river"].(map[string]any)
	pollOnly := ""
	if po, _ := rs["botq_poll_only"].(bool); po {
		pollOnly = "; botq's River client poll-only (no LISTEN), the baselines' not"
	}
	fmt.Fprintf(w, "River: MaxWorkers %v, FetchCooldown %v, FetchPollInterval %v; Go GC target %v%% (botq and River alike)%s\n\n",
		rs["max_workers"], rs["fetch_cooldown"], rs["fetch_poll_interval"], r.Settings["go_gc_percent"], pollOnly)
	if n, _ := r.Settings["rounds"].(int); n > 1 {
		fmt.Fprintf(w, "%d rounds: each value, baseline and ratio is the median of the rounds'; a ratio is the median of each round's ratio, not value / baseline; (min–max) over the rounds\n\n", n)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFIGURE\tVALUE\tBASELINE\tRATIO\tTARGET\tRESULT")
	for _, f := range r.Figures {
		value := "-"
		if f.Value != nil {
			value = fmtNum(*f.Value) + " " + f.Unit
		}
		base := ""
		if f.Baseline != "" {
			base = f.Baseline
			if f.BaselineValue != nil {
				base += " = " + fmtNum(*f.BaselineValue)
			}
		}
		ratio := ""
		if f.Ratio != nil {
			ratio = fmtRatio(*f.Ratio) + spread(f.RoundRatios, fmtRatio)
		}
		if f.Value != nil && len(f.Rounds) > 1 && f.Ratio == nil {
			value += spread(f.Rounds, fmtNum)
		}
		targets := []benchTarget{{}}
		if len(f.Targets) > 0 {
			targets = f.Targets
		}
		for i, t := range targets {
			result := ""
			if t.Pass != nil {
				result = "FAIL"
				if *t.Pass {
					result = "pass"
				}
			} else if t.Source != "" {
				result = "n/a"
			}
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Scenario, f.Label, value, base, ratio, t.String(), result)
			} else {
				fmt.Fprintf(tw, "\t\t\t\t\t%s\t%s\n", t.String(), result)
			}
		}
	}
	_ = tw.Flush()
	for _, s := range r.Scenarios {
		if s.Error != "" {
			fmt.Fprintf(w, "\n%s: ERROR %s", s.Name, s.Error)
		}
	}
	fmt.Fprintln(w)
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path == path {
			if d.Replace != nil {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "unknown"
}

func readMachine() benchMachine {
	m := benchMachine{Cores: runtime.NumCPU(), LoadBefore: loadString()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				m.MemoryMB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Hostname, _ = os.Hostname()
	return m
}

func loadAvg() [3]float64 {
	var out [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	for i, f := range strings.Fields(string(b)) {
		if i >= 3 {
			break
		}
		out[i], _ = strconv.ParseFloat(f, 64)
	}
	return out
}

func loadString() string {
	l := loadAvg()
	return fmt.Sprintf("%.2f %.2f %.2f", l[0], l[1], l[2])
}

func readPostgres(ctx context.Context, db *pgxpool.Pool) (benchPostgres, error) {
	p := benchPostgres{Settings: map[string]string{}}
	if err := db.QueryRow(ctx, "SHOW server_version").Scan(&p.Version); err != nil {
		return p, fmt.Errorf("read Postgres version: %w", err)
	}
	names := []string{"shared_buffers", "synchronous_commit", "max_connections", "fsync", "wal_level",
		"max_wal_size", "checkpoint_timeout", "work_mem", "effective_cache_size", "shared_preload_libraries",
		"autovacuum", "commit_delay"}
	rows, err := db.Query(ctx, "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1)", names)
	if err != nil {
		return p, fmt.Errorf("read Postgres settings: %w", err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return p, err
		}
		p.Settings[k] = v
	}
	rows.Close()
	var n int64
	if err := db.QueryRow(ctx, "SELECT count(*) FROM pg_stat_statements").Scan(&n); err != nil {
		p.StatStatements = "unavailable: " + err.Error()
	} else {
		p.StatStatements = "available"
	}
	return p, nil
}

// pgStats is what Postgres did during a scenario's measured window: the
// database's commit and row counters, and (with --pg-stats) sampled wait
// events and the top statements.
type pgStats struct {
	Commits       int64         `json:"commits"`
	Rollbacks     int64         `json:"rollbacks"`
	RowsInserted  int64         `json:"rows_inserted"`
	RowsUpdated   int64         `json:"rows_updated"`
	RowsDeleted   int64         `json:"rows_deleted"`
	BlocksRead    int64         `json:"blocks_read"`
	BlocksHit     int64         `json:"blocks_hit"`
	WaitSamples   int           `json:"wait_samples,omitempty"`
	WaitEvents    []pgWait      `json:"wait_events,omitempty"`
	TopStatements []pgStatement `json:"top_statements,omitempty"`
	// ActiveStatements is what the active backends were running, summed over
	// the samples (a sampling profile of Postgres by statement, for when
	// pg_stat_statements is not loaded).
	ActiveStatements []pgActive       `json:"active_statements,omitempty"`
	Backends         map[string]int64 `json:"active_backends_by_app,omitempty"`
	StatementsNote   string           `json:"statements_note,omitempty"`
	// CPU is where the machine's CPU went in the window.
	CPU *cpuUse `json:"cpu"`
}

type pgWait struct {
	Type  string `json:"type"`
	Event string `json:"event"`
	// Backends is the number of active backends seen in that state, summed
	// over the samples; divide by WaitSamples for the average.
	Backends int64 `json:"backends"`
}

type pgActive struct {
	App      string `json:"app"`
	Query    string `json:"query"`
	Backends int64  `json:"backends"`
}

type pgStatement struct {
	Query     string  `json:"query"`
	Calls     int64   `json:"calls"`
	TotalMs   float64 `json:"total_ms"`
	MeanMs    float64 `json:"mean_ms"`
	RowsTotal int64   `json:"rows"`
}

type pgCounters [7]int64

func (b *bench) pgCounters(ctx context.Context) pgCounters {
	var c pgCounters
	_ = b.admin.QueryRow(ctx, `SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, blks_read, blks_hit
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6])
	return c
}

// pgWatch samples Postgres during a measured window.
type pgWatch struct {
	b       *bench
	cpu     *cpuWatch
	before  pgCounters
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples int
	waits   map[[2]string]int64
	apps    map[string]int64
	queries map[[2]string]int64
}

func (b *bench) watchPostgres(ctx context.Context) *pgWatch {
	w := &pgWatch{b: b, stop: make(chan struct{}), done: make(chan struct{}), waits: map[[2]string]int64{}, apps: map[string]int64{}, queries: map[[2]string]int64{}}
	if b.o.PGStats && b.postgres.StatStatements == "available" {
		_, _ = b.admin.Exec(ctx, "SELECT pg_stat_statements_reset()")
	}
	w.before = b.pgCounters(ctx)
	w.cpu = b.watchCPU(ctx)
	if !b.o.PGStats {
		close(w.done)
		return w
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			rows, err := b.admin.Query(ctx, `
				SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, 'running'), coalesce(application_name, ''),
				       left(regexp_replace(query, '\s+', ' ', 'g'), 90)
				FROM pg_stat_activity
				WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()`)
			if err != nil {
				continue
			}
			w.mu.Lock()
			w.samples++
			for rows.Next() {
				var typ, ev, app, query string
				if rows.Scan(&typ, &ev, &app, &query) == nil {
					w.waits[[2]string{typ, ev}]++
					w.apps[app]++
					query = strings.ReplaceAll(strings.ReplaceAll(query, b.botqSchema+".", ""), b.riverSchema+".", "")
					w.queries[[2]string{app, strings.TrimSpace(query)}]++
				}
			}
			w.mu.Unlock()
			rows.Close()
		}
	}()
	return w
}

func (w *pgWatch) finish(ctx context.Context) *pgStats {
	if w.b.o.PGStats {
		close(w.stop)
	}
	<-w.done
	cpu := w.cpu.finish(ctx)
	after := w.b.pgCounters(ctx)
	s := &pgStats{
		CPU:     cpu,
		Commits: after[0] - w.before[0], Rollbacks: after[1] - w.before[1], RowsInserted: after[2] - w.before[2],
		RowsUpdated: after[3] - w.before[3], RowsDeleted: after[4] - w.before[4], BlocksRead: after[5] - w.before[5],
		BlocksHit: after[6] - w.before[6],
	}
	if !w.b.o.PGStats {
		return s
	}
	s.WaitSamples = w.samples
	for k, n := range w.waits {
		s.WaitEvents = append(s.WaitEvents, pgWait{Type: k[0], Event: k[1], Backends: n})
	}
	slices.SortFunc(s.WaitEvents, func(a, b pgWait) int { return int(b.Backends - a.Backends) })
	s.Backends = w.apps
	for k, n := range w.queries {
		s.ActiveStatements = append(s.ActiveStatements, pgActive{App: k[0], Query: k[1], Backends: n})
	}
	slices.SortFunc(s.ActiveStatements, func(a, b pgActive) int { return int(b.Backends - a.Backends) })
	if len(s.ActiveStatements) > 15 {
		s.ActiveStatements = s.ActiveStatements[:15]
	}
	if w.b.postgres.StatStatements != "available" {
		s.StatementsNote = "pg_stat_statements " + w.b.postgres.StatStatements
		return s
	}
	rows, err := w.b.admin.Query(ctx, `
		SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 300), calls, total_exec_time, mean_exec_time, rows
		FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		ORDER BY total_exec_time DESC LIMIT 20`)
	if err != nil {
		s.StatementsNote = err.Error()
		return s
	}
	s.TopStatements, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgStatement, error) {
		var st pgStatement
		err := r.Scan(&st.Query, &st.Calls, &st.TotalMs, &st.MeanMs, &st.RowsTotal)
		return st, err
	})
	if err != nil {
		s.StatementsNote = err.Error()
	}
	return s
}

// percentile is the nearest-rank q-quantile of sorted values.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
