package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/rs/zerolog"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/migrations"
	"github.com/botq/botq/reconciler"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

// bench is one run of `botq bench`: its database schemas, the simulator and
// everything measured so far.
type bench struct {
	o   Options
	log io.Writer

	started time.Time
	runID   string
	// botqSchema holds botq's tables (and its River tables); riverSchema
	// holds River's tables only, for the baselines.
	botqSchema, riverSchema string
	admin                   *pgxpool.Pool // no search_path: schemas, statistics
	botqPool                *pgxpool.Pool // the bench's own work in botqSchema (enqueue, counts)
	riverPool               *pgxpool.Pool // the baselines' River clients
	store                   *store.Store
	enq                     *jobs.Enqueuer
	sim                     *simHost

	// seq numbers every enqueued action or job of the run; the number is
	// in the message text, where the simulator's wrapper reads it.
	seq atomic.Int64

	machine  benchMachine
	postgres benchPostgres
	figures  []*benchFigure
	byKey    map[string]*benchFigure
	results  []*benchScenario
	// round is the round running (from 0; see --rounds).
	round int
}

const (
	benchApp     = "bench-1"
	benchCompany = "bench"
	benchQueue   = "botq"
)

func newBench(ctx context.Context, o Options, log io.Writer) (*bench, error) {
	b := &bench{o: o, log: log, started: time.Now(), byKey: map[string]*benchFigure{}}
	b.runID = fmt.Sprintf("%d_%s", b.started.Unix(), randomHex(2))
	b.botqSchema = "bench_" + b.runID + "_botq"
	b.riverSchema = "bench_" + b.runID + "_river"
	var err error
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.admin, err = store.NewPool(ctx, o.DatabaseURL, "public", store.PoolOptions{MaxConns: 4, AppName: "botq-bench-admin"}); err != nil {
		return nil, err
	}
	b.machine = readMachine()
	if b.postgres, err = readPostgres(ctx, b.admin); err != nil {
		return nil, err
	}
	b.dropStaleSchemas(ctx)
	b.logf("run %s: Postgres %s, %d cores, load %s", b.runID, b.postgres.Version, b.machine.Cores, b.machine.LoadBefore)

	if _, err = b.admin.Exec(ctx, "CREATE SCHEMA "+b.botqSchema); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", b.botqSchema, err)
	}
	if _, err = b.admin.Exec(ctx, "CREATE SCHEMA "+b.riverSchema); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", b.riverSchema, err)
	}
	if b.botqPool, err = store.NewPool(ctx, o.DatabaseURL, b.botqSchema, store.PoolOptions{MaxConns: int32(max(o.SQLClients, 4)) + 2, AppName: "botq-bench"}); err != nil {
		return nil, err
	}
	// botq runs as botq_runtime, as deployed, when the bench's user may
	// make the role; the HTTP scenario's key acts for every app.
	_, missing, err := store.RolesEnsure(ctx, b.botqPool)
	if err != nil {
		return nil, err
	}
	if len(missing) == 0 {
		b.o.Role = store.DBRoleRuntime
	}
	if _, err = migrations.Up(ctx, b.botqPool, b.botqSchema, nil); err != nil {
		return nil, err
	}
	if _, err = b.botqPool.Exec(ctx, `INSERT INTO principal_grant (principal, app_id, granted_by) VALUES ('api:bench', '*', 'bench')`); err != nil {
		return nil, fmt.Errorf("grant the bench's API key: %w", err)
	}
	if b.riverPool, err = store.NewPool(ctx, o.DatabaseURL, b.riverSchema, store.PoolOptions{MaxConns: o.MaxConns, AppName: "botq-bench-river"}); err != nil {
		return nil, err
	}
	m, err := rivermigrate.New(riverpgxv5.New(b.riverPool), &rivermigrate.Config{Schema: b.riverSchema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	if _, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("migrate River in %s: %w", b.riverSchema, err)
	}
	if b.store, err = store.New(b.botqSchema); err != nil {
		return nil, err
	}
	if b.enq, err = jobs.NewEnqueuer(b.botqSchema); err != nil {
		return nil, err
	}
	if b.sim, err = startSimHost(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b.sim != nil {
		b.sim.close()
	}
	for _, p := range []*pgxpool.Pool{b.botqPool, b.riverPool} {
		if p != nil {
			p.Close()
		}
	}
	if b.admin != nil {
		if !b.o.Keep && b.botqSchema != "" {
			for _, s := range []string{b.botqSchema, b.riverSchema} {
				if _, err := b.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+s+" CASCADE"); err != nil {
					b.logf("drop schema %s: %v", s, err)
				}
			}
		}
		b.admin.Close()
	}
}

// dropStaleSchemas drops the schemas of bench runs that started more than a
// day ago and were not cleaned up (killed runs).
func (b *bench) dropStaleSchemas(ctx context.Context) {
	rows, err := b.admin.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\_%\_%\_%'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		parts := strings.Split(n, "_")
		if len(parts) != 4 {
			continue
		}
		sec, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)) < 24*time.Hour {
			continue
		}
		_, _ = b.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+n+" CASCADE")
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

// nextSeq reserves n sequence numbers and returns the first.
func (b *bench) nextSeq(n int) int64 { return b.seq.Add(int64(n)) - int64(n) + 1 }

// payload is the respond body of action number n: its own conversation
// (so its own lane), and a text that carries n.
func payload(n int64) string {
	return `{"coordinate":{"companyKey":"` + benchCompany + `","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},` +
		`"author":{"id":"a` + strconv.FormatInt(n, 10) + `"},"text":"m` + strconv.FormatInt(n, 10) + `"}`
}

// respondBody is the body botq sends for payload(n) (the enqueue trigger
// adds the type); the baselines send the same.
func respondBody(n int64) []byte {
	p := payload(n)
	return []byte(p[:len(p)-1] + `,"type":"message"}`)
}

// textSeq finds the number in the "text" field of a respond body, however
// the JSON is spaced (Postgres returns jsonb as `"text": "m12"`).
func textSeq(body []byte) (int64, bool) {
	i := bytes.Index(body, []byte(`"text"`))
	if i < 0 {
		return 0, false
	}
	rest := body[i+len(`"text"`):]
	rest = bytes.TrimLeft(rest, " :")
	if !bytes.HasPrefix(rest, []byte(`"m`)) {
		return 0, false
	}
	rest = rest[2:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n, err == nil
}

// truncate empties botq's tables (and its River jobs) and the baselines'
// River jobs, restarting every id sequence: every scenario starts from empty
// tables without dead rows from the previous one.
func (b *bench) truncate(ctx context.Context) error {
	_, err := b.admin.Exec(ctx, fmt.Sprintf(`
		TRUNCATE %[1]s.attempt, %[1]s.request, %[1]s.event, %[1]s.lane, %[1]s.action, %[1]s.river_job, %[1]s.app_slot_wait,
		         %[2]s.river_job RESTART IDENTITY CASCADE`, b.botqSchema, b.riverSchema))
	if err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	_, err = b.admin.Exec(ctx, fmt.Sprintf(`UPDATE %s.app_slot SET holder = NULL, lease_until = NULL`, b.botqSchema))
	return err
}

// keepAnalyzed runs ANALYZE on every table the scenarios write at 0.5s,
// 1s, 2s, 4s, ... 32s into a scenario. Each scenario starts from
// truncated tables, whose statistics say nothing; plans cached by long-lived
// sessions (plpgsql in the triggers, prepared statements of pgx) while a
// table is empty are sequential scans, and they stay until the statistics
// change, so a table that grows from empty in seconds would be scanned once
// per row. In production the tables are not empty and autovacuum keeps their
// statistics; its one-minute naptime is too slow for a benchmark, and CI's
// Postgres runs without autovacuum. botq and the baselines get the same
// treatment.
func (b *bench) keepAnalyzed(ctx context.Context) {
	tables := []string{
		b.botqSchema + ".action", b.botqSchema + ".attempt", b.botqSchema + ".request", b.botqSchema + ".lane",
		b.botqSchema + ".river_job", b.botqSchema + ".app_slot", b.botqSchema + ".app_slot_wait", b.riverSchema + ".river_job",
	}
	start := time.Now()
	for at := 500 * time.Millisecond; at <= 32*time.Second; at *= 2 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(at))):
		}
		b.analyze(ctx, tables)
	}
}

func (b *bench) analyze(ctx context.Context, tables []string) {
	if _, err := b.admin.Exec(ctx, "ANALYZE "+strings.Join(tables, ", ")); err != nil && ctx.Err() == nil {
		b.logf("analyze: %v", err)
	}
}

// prepareDrain makes the tables of a freshly filled backlog look alike for
// botq and the baseline: statistics analyzed, dirty pages checkpointed.
func (b *bench) prepareDrain(ctx context.Context, schema string, tables ...string) {
	for _, t := range tables {
		_, _ = b.admin.Exec(ctx, "ANALYZE "+schema+"."+t)
	}
	_, _ = b.admin.Exec(ctx, "CHECKPOINT")
}

// upsertApp creates (or updates) a bench app pointing at the simulator.
func (b *bench) upsertApp(ctx context.Context, id string, concurrency int) error {
	p := store.AppUpsertParams{ID: id, Region: "CUSTOM", BaseURL: b.sim.url, CompanyKey: benchCompany}
	if concurrency > 0 {
		p.ConcurrencyLimit = &concurrency
	}
	_, err := b.store.AppUpsert(ctx, b.botqPool, p)
	return err
}

// attemptsDone is how many action calls have their results committed: the
// attempt rows (one per call in every scenario here; snoozes write none).
func (b *bench) attemptsDone(ctx context.Context) (int64, error) {
	var n int64
	err := b.botqPool.QueryRow(ctx, "SELECT count(*) FROM attempt").Scan(&n)
	return n, err
}

// attemptsApprox is attemptsDone read in constant time: the largest
// attempt id. Result writers commit concurrently, so an id can be visible
// before a smaller one commits; good enough to pace enqueues.
func (b *bench) attemptsApprox(ctx context.Context) (int64, error) {
	var n int64
	err := b.botqPool.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM attempt").Scan(&n)
	return n, err
}

// waitLoad waits (up to 10 minutes) until the 1-minute load average is
// below --max-load, before the run.
func (b *bench) waitLoad(ctx context.Context) {
	if b.o.MaxLoad <= 0 {
		return
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		l := loadAvg()
		if l[0] < b.o.MaxLoad {
			return
		}
		if time.Now().After(deadline) {
			b.logf("load %.2f is still above --max-load %.2f after 10 minutes; going on", l[0], b.o.MaxLoad)
			return
		}
		b.logf("load %.2f is above --max-load %.2f; waiting", l[0], b.o.MaxLoad)
		select {
		case <-ctx.Done():
			return
		case <-time.After(15 * time.Second):
		}
	}
}

// waitQuiet waits (up to 3 minutes) until the machine's busy cores, over
// 2 seconds, are below --max-busy; between scenarios the bench itself is
// idle, so what is busy is someone else.
func (b *bench) waitQuiet(ctx context.Context) {
	if b.o.MaxBusy <= 0 {
		return
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		busy := machineBusy(ctx, 2*time.Second)
		if busy < b.o.MaxBusy || ctx.Err() != nil {
			return
		}
		if time.Now().After(deadline) {
			b.logf("%.2f cores are still busy after 3 minutes (--max-busy %.2f); going on", busy, b.o.MaxBusy)
			return
		}
		b.logf("%.2f cores busy (--max-busy %.2f); waiting", busy, b.o.MaxBusy)
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
	}
}

// simHost serves the current simulator on one loopback listener for the
// whole run; a scenario swaps in a fresh simulator (fresh state, bounded
// memory) without changing the URL the apps point at. While a recorder is
// set, it timestamps the arrival of every respond call.
type simHost struct {
	url string
	srv *http.Server
	cur atomic.Pointer[sim.Server]
	rec atomic.Pointer[arrivals]
}

func startSimHost() (*simHost, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("simulator listener: %w", err)
	}
	h := &simHost{url: "http://" + ln.Addr().String()}
	h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	h.reset(sim.Options{})
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *simHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rec := h.rec.Load(); rec != nil && r.Method == http.MethodPost && r.URL.Path == "/bots/v3/respond" {
		at := time.Now()
		body, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err == nil {
			if n, ok := textSeq(body); ok {
				rec.mark(n, at)
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	h.cur.Load().ServeHTTP(w, r)
}

// reset installs a fresh simulator: no call log, bounded records.
func (h *simHost) reset(o sim.Options) *sim.Server {
	o.Seed = 12
	o.MaxCallLog = -1
	if o.MaxRecords == 0 {
		o.MaxRecords = 100_000
	}
	if o.SettleDelayMin == 0 && o.SettleDelayMax == 0 {
		o.SettleDelayMin, o.SettleDelayMax = 200*time.Millisecond, 2*time.Second
	}
	s := sim.New(o)
	if old := h.cur.Swap(s); old != nil {
		_ = old.Close()
	}
	return s
}

func (h *simHost) mint(appID string) (string, error) {
	tok, err := h.cur.Load().MintToken(appID, sim.MintOptions{CompanyKey: benchCompany})
	if err != nil {
		return "", err
	}
	return tok.Token, nil
}

func (h *simHost) calls(endpoints ...string) int {
	s := h.cur.Load()
	n := 0
	for _, ep := range endpoints {
		n += s.CallCount(sim.CallFilter{Endpoint: ep})
	}
	return n
}

// listed counts the records listings returned.
func (h *simHost) listed() uint64 { return h.cur.Load().ListedRecords() }

func (h *simHost) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
	_ = h.cur.Load().Close()
}

// arrivals records enqueue commit and simulator arrival times of actions
// numbered first..first+len-1, on one monotonic clock.
type arrivals struct {
	t0      time.Time
	first   int64
	commit  []atomic.Int64 // nanoseconds since t0; 0 = not yet
	arrived []atomic.Int64
}

func newArrivals(first int64, n int) *arrivals {
	return &arrivals{t0: time.Now(), first: first, commit: make([]atomic.Int64, n), arrived: make([]atomic.Int64, n)}
}

func (a *arrivals) index(n int64) (int, bool) {
	i := n - a.first
	return int(i), i >= 0 && i < int64(len(a.commit))
}

func (a *arrivals) mark(n int64, at time.Time) {
	if i, ok := a.index(n); ok {
		a.arrived[i].CompareAndSwap(0, int64(at.Sub(a.t0))+1)
	}
}

func (a *arrivals) committed(n int64, at time.Time) {
	if i, ok := a.index(n); ok {
		a.commit[i].Store(int64(at.Sub(a.t0)) + 1)
	}
}

// botqRun is botq running in this process, wired exactly as `botq serve`
// wires it (Main), with the bench's River settings.
type botqRun struct {
	m      *server.Main
	cancel context.CancelFunc
	done   chan error
	apiURL string
	apiKey string
}

// benchAppSpec is an app of a scenario: its id and its concurrency limit (0:
// none).
type benchAppSpec struct {
	id          string
	concurrency int
}

// benchBotqConfig is the configuration of botq in every scenario: botq's
// defaults, with the bench's database, River settings and apps (whose
// tokens come from BOTQ_BENCH_TOKEN_<i>).
func benchBotqConfig(o Options, schema, simURL string, roles server.RolesConfig, apps []benchAppSpec) server.Config {
	cfg := server.DefaultConfig()
	cfg.Database.URL = o.DatabaseURL
	cfg.Database.Role = o.Role
	cfg.Database.Schema = schema
	cfg.Database.MaxConns = o.MaxConns
	cfg.Log.Level = "warn"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Roles = roles
	cfg.River.Queues = map[string]server.QueueConfig{benchQueue: {MaxWorkers: o.MaxWorkers}, reconciler.Queue: {MaxWorkers: 4}}
	cfg.River.FetchCooldown = o.FetchCooldown
	cfg.River.FetchPollInterval = o.FetchPollInterval
	cfg.River.PollOnly = o.PollOnly
	cfg.Reconciler.Interval = o.ReconcilerInterval
	for i, a := range apps {
		cfg.Apps = append(cfg.Apps, server.AppConfig{
			ID: a.id, BaseURL: simURL, CompanyKey: benchCompany, Concurrency: a.concurrency,
			TokenEnv: fmt.Sprintf("BOTQ_BENCH_TOKEN_%d", i),
		})
	}
	return cfg
}

// startBotq starts botq with roles for apps, whose tokens the current
// simulator issues, and waits until it is ready.
func (b *bench) startBotq(ctx context.Context, roles server.RolesConfig, apps []benchAppSpec) (*botqRun, error) {
	cfg := benchBotqConfig(b.o, b.botqSchema, b.sim.url, roles, apps)
	env := map[string]string{}
	for i, a := range apps {
		tok, err := b.sim.mint(a.id)
		if err != nil {
			return nil, err
		}
		env[fmt.Sprintf("BOTQ_BENCH_TOKEN_%d", i)] = tok
	}
	run := &botqRun{apiKey: "bench-" + randomHex(16)}
	if roles.API {
		cfg.HTTP.APIKeys = "bench:enqueuer:" + run.apiKey
	}
	if problems := cfg.Validate(); len(problems) > 0 {
		return nil, &server.ConfigError{Problems: problems}
	}
	run.m = server.NewMain(cfg, server.NewLogger(cfg.Log, b.log))
	run.m.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	run.cancel = cancel
	run.done = make(chan error, 1)
	go func() { run.done <- run.m.Run(runCtx) }()
	if err := run.m.WaitReady(ctx, run.done); err != nil {
		cancel()
		return nil, fmt.Errorf("start botq: %w", err)
	}
	run.apiURL = "http://" + *run.m.Addr.Load()
	return run, nil
}

// stop stops botq gracefully: running calls finish and their results are
// written.
func (r *botqRun) stop() error {
	r.cancel()
	if err := <-r.done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// riverRun is a plain River client on the baseline schema.
type riverRun struct {
	client    *river.Client[pgx.Tx]
	completed atomic.Int64
	cancelSub func()
	subDone   chan struct{}
}

// benchRiverConfig is River's configuration in the baselines: what botq
// gives its own client (serve.go), minus botq.
func benchRiverConfig(o Options, schema string, workers *river.Workers, work bool, logw io.Writer) *river.Config {
	cfg := server.DefaultConfig()
	rc := &river.Config{
		Schema:                      schema,
		Logger:                      server.SlogFor(zerolog.New(logw).Level(zerolog.WarnLevel)),
		Workers:                     workers,
		FetchCooldown:               o.FetchCooldown,
		FetchPollInterval:           o.FetchPollInterval,
		JobTimeout:                  cfg.River.JobTimeout,
		RescueStuckJobsAfter:        cfg.River.RescueStuckAfter,
		CompletedJobRetentionPeriod: cfg.River.CompletedRetention,
	}
	if work {
		rc.Queues = map[string]river.QueueConfig{benchQueue: {MaxWorkers: o.MaxWorkers}}
	}
	return rc
}

// startRiver starts a plain River client working the baseline queue and
// counts its completed jobs (River's completion events, sent after the
// completion commits).
func startRiver(ctx context.Context, pool *pgxpool.Pool, cfg *river.Config) (*riverRun, error) {
	c, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		return nil, fmt.Errorf("new River client: %w", err)
	}
	r := &riverRun{client: c, subDone: make(chan struct{})}
	events, cancel := c.SubscribeConfig(&river.SubscribeConfig{ChanSize: 1 << 18, Kinds: []river.EventKind{river.EventKindJobCompleted}})
	r.cancelSub = cancel
	go func() {
		defer close(r.subDone)
		for range events {
			r.completed.Add(1)
		}
	}()
	if err := c.Start(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("start River: %w", err)
	}
	return r, nil
}

func (r *riverRun) stop(ctx context.Context) error {
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := r.client.Stop(stopCtx)
	r.cancelSub()
	return err
}

// roundSuffix tells one round's files from another's ("-r2"); empty in a
// run of one round.
func (b *bench) roundSuffix() string {
	if b.o.Rounds <= 1 {
		return ""
	}
	return fmt.Sprintf("-r%d", b.round+1)
}

// profile writes a CPU profile of one measured window when --cpuprofile is
// set; the returned function stops it.
func (b *bench) profile(scenario string) func() {
	if b.o.CPUProfile == "" {
		return func() {}
	}
	path := fmt.Sprintf("%s-%s%s.pprof", b.o.CPUProfile, scenario, b.roundSuffix())
	f, err := os.Create(path)
	if err != nil {
		b.logf("cpuprofile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.logf("cpuprofile: %v", err)
		_ = f.Close()
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		})
	}
}

// recordPhases puts the phases of a botq run in details and the log: where
// a job's time on its worker went besides its call.
func (b *bench) recordPhases(name string, details map[string]any, m *server.Metrics) {
	ph := m.PhaseMeans()
	details["phase_ms"] = ph
	b.logPhases(name, ph)
}

func (b *bench) logPhases(name string, ph map[string]float64) {
	b.logf("%s: per job, pickup %.2f ms, load %.2f ms, waiting for the result %.2f ms", name,
		ph[string(jobs.PhasePickup)], ph[string(jobs.PhaseLoad)], ph[string(jobs.PhaseResult)])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
