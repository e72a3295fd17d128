package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/server"
)

// benchScenarioFunc is a scenario: its name, what it does, and how.
type benchScenarioFunc struct {
	name, desc string
	fn         func(context.Context, *benchScenario) error
}

// run runs the selected scenarios in order, --rounds times. A failed
// scenario is recorded and the others still run.
func (b *bench) run(ctx context.Context) error {
	all := []benchScenarioFunc{
		{"r0", "plain River: single-row SQL INSERTs into river_job from the SQL clients, no-op worker, worked at the same time", b.runR0},
		{"r1", "plain River: as r0, the worker makes one HTTP call to the simulator", b.runR1},
		{"sql", "botq: single-row SQL INSERTs into action from the SQL clients, end to end", b.runSQL},
		{"batch", "botq: jobs.Enqueuer.EnqueueMany batches from the SQL clients (backlog kept under 5000), end to end", b.runBatch},
		{"http", "botq: POST /v1/actions from the SQL clients, end to end", b.runHTTP},
		{"r2", "plain River: a backlog inserted with InsertMany, drained by a child process, one HTTP call per job", b.runR2},
		{"drain", "botq: a backlog enqueued with EnqueueMany, drained by a child process", b.runDrain},
		{"latency", "botq: enqueue commit (SQL INSERT) to the Bot v3 call arriving at the simulator", b.runLatency},
		{"reconciler", "botq: reconciler calls per settled request and settle lag, with many pending requests", b.runReconciler},
		{"slow", "botq: simulator latency on respond; throughput against River's MaxWorkers and the apps' concurrency limits", b.runSlow},
		{"writes", "botq and plain River: rows, index entries and WAL per action, for the enqueue and for the result", b.runWrites},
	}
	var errs []error
	b.waitLoad(ctx)
	for b.round = 0; b.round < b.o.Rounds && ctx.Err() == nil; b.round++ {
		errs = append(errs, b.runRound(ctx, all)...)
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// selfAnalyzed are the scenarios that analyze their tables themselves:
// the background ANALYZE would write into what they count.
var selfAnalyzed = []string{"writes"}

// runRound runs the selected scenarios once, in order.
func (b *bench) runRound(ctx context.Context, all []benchScenarioFunc) []error {
	var errs []error
	for _, s := range all {
		if !b.o.selected(s.name) {
			continue
		}
		if ctx.Err() != nil {
			return errs
		}
		b.waitQuiet(ctx)
		sc := &benchScenario{Name: s.name, Description: s.desc, StartedAt: time.Now().UTC(), LoadBefore: loadString(), Details: map[string]any{}}
		if b.o.Rounds > 1 {
			sc.Round = b.round + 1
			b.logf("%s: round %d of %d", s.name, sc.Round, b.o.Rounds)
		}
		b.results = append(b.results, sc)
		b.logf("%s: %s", s.name, s.desc)
		start := time.Now()
		err := b.truncate(ctx)
		if err == nil {
			actx, stopAnalyze := context.WithCancel(ctx)
			analyzed := make(chan struct{})
			go func() {
				defer close(analyzed)
				if !slices.Contains(selfAnalyzed, s.name) {
					b.keepAnalyzed(actx)
				}
			}()
			err = s.fn(ctx, sc)
			stopAnalyze()
			<-analyzed
		}
		sc.Seconds = time.Since(start).Seconds()
		sc.LoadAfter = loadString()
		if err != nil {
			sc.Error = err.Error()
			name := s.name
			if sc.Round > 0 {
				name += fmt.Sprintf(" (round %d)", sc.Round)
			}
			errs = append(errs, fmt.Errorf("scenario %s: %w", name, err))
			b.logf("%s: ERROR %v", name, err)
			continue
		}
		b.logf("%s: done in %.1fs (load %s)", s.name, sc.Seconds, sc.LoadAfter)
	}
	return errs
}

// steady runs producers against a running consumer for --duration and
// measures rates over the window after --warmup.
type steady struct {
	enqueued  func() int64
	completed func(context.Context) (int64, error)
	// produce runs until its context ends.
	produce func(context.Context) error
	// atWindow, if set, is called at the window's start and end.
	atWindow func(ctx context.Context, start bool) error
}

type steadyResult struct {
	rate, enqueueRate float64
	windowSeconds     float64
	enqueued          int64
	completed         int64
}

func (b *bench) measureSteady(ctx context.Context, sc *benchScenario, s steady) (steadyResult, error) {
	var res steadyResult
	prodCtx, stopProd := context.WithCancel(ctx)
	defer stopProd()
	prodErr := make(chan error, 1)
	go func() { prodErr <- s.produce(prodCtx) }()

	step := time.Second
	if b.o.Smoke {
		step = 250 * time.Millisecond
	}
	times := []time.Duration{b.o.Warmup, b.o.Duration}
	for t := step; t < b.o.Duration; t += step {
		times = append(times, t)
	}
	slices.Sort(times)
	times = slices.Compact(times)

	start := time.Now()
	var w0, w1 benchSample
	var stopProfile func()
	var watch *pgWatch
	for _, t := range times {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case err := <-prodErr:
			if err == nil {
				err = errors.New("producers stopped early")
			}
			return res, fmt.Errorf("enqueue: %w", err)
		case <-time.After(time.Until(start.Add(t))):
		}
		done, err := s.completed(ctx)
		if err != nil {
			return res, err
		}
		smp := benchSample{T: time.Since(start).Seconds(), Enqueued: s.enqueued(), Completed: done}
		sc.Timeline = append(sc.Timeline, smp)
		switch t {
		case b.o.Warmup:
			w0 = smp
			if s.atWindow != nil {
				if err := s.atWindow(ctx, true); err != nil {
					return res, err
				}
			}
			stopProfile = b.profile(sc.Name)
			watch = b.watchPostgres(ctx)
		case b.o.Duration:
			w1 = smp
			stopProfile()
			sc.Postgres = watch.finish(ctx)
			if s.atWindow != nil {
				if err := s.atWindow(ctx, false); err != nil {
					return res, err
				}
			}
		}
	}
	stopProd()
	if err := <-prodErr; err != nil && !errors.Is(err, context.Canceled) {
		return res, fmt.Errorf("enqueue: %w", err)
	}
	res.windowSeconds = w1.T - w0.T
	res.rate = float64(w1.Completed-w0.Completed) / res.windowSeconds
	res.enqueueRate = float64(w1.Enqueued-w0.Enqueued) / res.windowSeconds
	res.enqueued, res.completed = w1.Enqueued, w1.Completed
	sc.Details["window_seconds"] = res.windowSeconds
	sc.Details["completed_in_window"] = w1.Completed - w0.Completed
	sc.Details["enqueued_in_window"] = w1.Enqueued - w0.Enqueued
	sc.Details["backlog_at_end"] = w1.Enqueued - w1.Completed
	return res, nil
}

// sqlClients runs the SQL clients, each calling fn with a fresh sequence
// number until ctx ends, and counts the calls.
func (b *bench) sqlClients(ctx context.Context, counter *atomic.Int64, fn func(ctx context.Context, conn *pgx.Conn, n int64) error) error {
	err := b.eachSQLClient(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		for ctx.Err() == nil {
			if err := fn(ctx, conn, b.nextSeq(1)); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			counter.Add(1)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return ctx.Err()
}

// eachSQLClient runs fn once for each of --sql-clients clients, at once,
// each on its own connection; the first error stops the others, and a
// connection that cannot be opened stops those already running.
func (b *bench) eachSQLClient(ctx context.Context, fn func(ctx context.Context, conn *pgx.Conn) error) error {
	g, gctx := newGroup(ctx)
	for range b.o.SQLClients {
		conn, err := b.enqueueConn(ctx)
		if err != nil {
			g.cancel()
			return errors.Join(err, g.Wait())
		}
		g.Go(func() error {
			defer conn.Close(context.WithoutCancel(ctx))
			return fn(gctx, conn)
		})
	}
	return g.Wait()
}

// enqueueConn opens one enqueuing client's own connection.
func (b *bench) enqueueConn(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(b.o.DatabaseURL)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "botq-bench-enqueue"
	return pgx.ConnectConfig(ctx, cfg)
}

// Baseline jobs: plain River, kinds of their own.

type benchNoopArgs struct {
	N int64 `json:"n"`
}

func (benchNoopArgs) Kind() string { return "bench_noop" }

type benchNoopWorker struct {
	river.WorkerDefaults[benchNoopArgs]
}

func (benchNoopWorker) Work(context.Context, *river.Job[benchNoopArgs]) error { return nil }

type benchHTTPArgs struct {
	N int64 `json:"n"`
}

func (benchHTTPArgs) Kind() string { return "bench_http" }

// benchHTTPWorker makes the call botq makes for an action, with the same
// HTTP client settings (appclient's), and nothing else.
type benchHTTPWorker struct {
	river.WorkerDefaults[benchHTTPArgs]
	api *botapi.Client
}

func (w *benchHTTPWorker) Work(ctx context.Context, job *river.Job[benchHTTPArgs]) error {
	var out struct {
		Data struct {
			RequestState string `json:"requestState"`
		} `json:"data"`
	}
	_, err := w.api.Do(ctx, http.MethodPost, "/bots/v3/respond", json.RawMessage(respondBody(job.Args.N)), &out)
	return err
}

// benchAPIClient is a Bot v3 client configured as appclient configures
// botq's.
func benchAPIClient(baseURL, token string) (*botapi.Client, error) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		MaxConnsPerHost:     512,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	hc := &http.Client{
		Timeout:       server.DefaultConfig().Khoros.HTTPTimeout,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return botapi.New(botapi.Config{BaseURL: baseURL, HTTPClient: hc, Tokens: botapi.StaticToken(token)})
}

func (b *bench) runR0(ctx context.Context, sc *benchScenario) error {
	return b.runRiverSQL(ctx, sc, false)
}

func (b *bench) runR1(ctx context.Context, sc *benchScenario) error {
	return b.runRiverSQL(ctx, sc, true)
}

// runRiverSQL is r0 (no-op worker) or r1 (one HTTP call per job).
func (b *bench) runRiverSQL(ctx context.Context, sc *benchScenario, withHTTP bool) error {
	b.sim.reset(sim.Options{})
	workers := river.NewWorkers()
	kind := benchNoopArgs{}.Kind()
	if withHTTP {
		tok, err := b.sim.mint(benchApp)
		if err != nil {
			return err
		}
		api, err := benchAPIClient(b.sim.url, tok)
		if err != nil {
			return err
		}
		river.AddWorker(workers, &benchHTTPWorker{api: api})
		kind = benchHTTPArgs{}.Kind()
	} else {
		river.AddWorker(workers, benchNoopWorker{})
	}
	rr, err := startRiver(ctx, b.riverPool, benchRiverConfig(b.o, b.riverSchema, workers, true, b.log))
	if err != nil {
		return err
	}
	defer func() { _ = rr.stop(ctx) }()
	insert := fmt.Sprintf(`INSERT INTO %s.river_job (args, kind, max_attempts, queue, priority, state, scheduled_at)
		VALUES ($1, '%s', 25, '%s', 1, 'available', now())`, b.riverSchema, kind, benchQueue)
	var enqueued atomic.Int64
	res, err := b.measureSteady(ctx, sc, steady{
		enqueued:  enqueued.Load,
		completed: func(context.Context) (int64, error) { return rr.completed.Load(), nil },
		produce: func(ctx context.Context) error {
			return b.sqlClients(ctx, &enqueued, func(ctx context.Context, conn *pgx.Conn, n int64) error {
				_, err := conn.Exec(ctx, insert, `{"n":`+strconv.FormatInt(n, 10)+`}`)
				return err
			})
		},
	})
	if err != nil {
		return err
	}
	name := sc.Name
	label := "no-op worker"
	if withHTTP {
		label = "one HTTP call"
		sc.Details["simulator_respond_calls"] = b.sim.calls("respond")
	}
	b.figure(benchFigure{Key: name + ".rate", Scenario: name, Label: "jobs/s end to end (" + label + ")", Value: fptr(res.rate), Unit: "/s"})
	b.figure(benchFigure{Key: name + ".enqueue_rate", Scenario: name, Label: "SQL INSERTs/s", Value: fptr(res.enqueueRate), Unit: "/s"})
	if withHTTP {
		b.figure(benchFigure{Key: "r1.rate_vs_r0", Scenario: name, Label: "jobs/s, against the no-op worker", Value: fptr(res.rate), Unit: "/s", Baseline: "r0.rate"})
	}
	b.logf("%s: %.0f jobs/s, %.0f inserts/s", name, res.rate, res.enqueueRate)
	return nil
}

// botqSteady runs botq with roles on one app, fed by produce, and records
// its end-to-end rate.
func (b *bench) botqSteady(ctx context.Context, sc *benchScenario, roles server.RolesConfig,
	produce func(ctx context.Context, run *botqRun, enqueued *atomic.Int64) error) (steadyResult, error) {
	b.sim.reset(sim.Options{})
	if err := b.upsertApp(ctx, benchApp, 0); err != nil {
		return steadyResult{}, err
	}
	run, err := b.startBotq(ctx, roles, []benchAppSpec{{id: benchApp}})
	if err != nil {
		return steadyResult{}, err
	}
	var enqueued atomic.Int64
	res, err := b.measureSteady(ctx, sc, steady{
		enqueued:  enqueued.Load,
		completed: b.attemptsDone,
		produce:   func(ctx context.Context) error { return produce(ctx, run, &enqueued) },
	})
	b.recordPhases(sc.Name, sc.Details, run.m.Metrics)
	if stopErr := run.stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return res, err
	}
	sc.Details["simulator_respond_calls"] = b.sim.calls("respond")
	return res, nil
}

func (b *bench) runSQL(ctx context.Context, sc *benchScenario) error {
	insert := fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload) VALUES ($1, 'respond', $2)`, b.botqSchema)
	res, err := b.botqSteady(ctx, sc, server.RolesConfig{Workers: true}, func(ctx context.Context, _ *botqRun, enqueued *atomic.Int64) error {
		return b.sqlClients(ctx, enqueued, func(ctx context.Context, conn *pgx.Conn, n int64) error {
			_, err := conn.Exec(ctx, insert, benchApp, payload(n))
			return err
		})
	})
	if err != nil {
		return err
	}
	b.figure(benchFigure{Key: "sql.rate", Scenario: "sql", Label: "actions/s end to end (SQL INSERT)", Value: fptr(res.rate), Unit: "/s",
		Baseline: "r1.rate", Targets: []benchTarget{atLeast("throughput", "ratio", 0.60)}})
	b.figure(benchFigure{Key: "sql.rate_vs_r0", Scenario: "sql", Label: "actions/s, against the no-op worker", Value: fptr(res.rate), Unit: "/s", Baseline: "r0.rate"})
	b.figure(benchFigure{Key: "sql.enqueue_rate", Scenario: "sql", Label: "SQL INSERTs/s", Value: fptr(res.enqueueRate), Unit: "/s", Baseline: "r1.enqueue_rate"})
	b.logf("sql: %.0f actions/s, %.0f inserts/s", res.rate, res.enqueueRate)
	return nil
}

// batchBacklog bounds the batch scenario's backlog: batches come as fast
// as the workers take them, without piling up.
const batchBacklog = 5000

func (b *bench) runBatch(ctx context.Context, sc *benchScenario) error {
	res, err := b.botqSteady(ctx, sc, server.RolesConfig{Workers: true}, func(ctx context.Context, _ *botqRun, enqueued *atomic.Int64) error {
		var done atomic.Int64
		g, gctx := newGroup(ctx)
		g.Go(func() error {
			for gctx.Err() == nil {
				n, err := b.attemptsApprox(gctx)
				if err != nil {
					return nil
				}
				done.Store(n)
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		})
		for range b.o.SQLClients {
			g.Go(func() error {
				actions := make([]jobs.Action, b.o.BatchSize)
				for gctx.Err() == nil {
					if enqueued.Load()-done.Load() > batchBacklog {
						time.Sleep(5 * time.Millisecond)
						continue
					}
					first := b.nextSeq(len(actions))
					for i := range actions {
						actions[i] = jobs.Action{AppID: benchApp, Kind: jobs.KindRespond, Payload: payload(first + int64(i))}
					}
					if _, err := b.enq.EnqueueMany(gctx, b.botqPool, actions); err != nil {
						if gctx.Err() != nil {
							return nil
						}
						return err
					}
					enqueued.Add(int64(len(actions)))
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	sc.Details["batch_size"] = b.o.BatchSize
	sc.Details["max_backlog"] = batchBacklog
	b.figure(benchFigure{Key: "batch.rate", Scenario: "batch", Label: "actions/s end to end (Go EnqueueMany)", Value: fptr(res.rate), Unit: "/s", Baseline: "r1.rate"})
	b.figure(benchFigure{Key: "batch.enqueue_rate", Scenario: "batch", Label: "actions enqueued/s (capped by the backlog bound)", Value: fptr(res.enqueueRate), Unit: "/s"})
	b.logf("batch: %.0f actions/s", res.rate)
	return nil
}

func (b *bench) runHTTP(ctx context.Context, sc *benchScenario) error {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxIdleConns: 64}}
	defer hc.CloseIdleConnections()
	var statusErrs atomic.Int64
	res, err := b.botqSteady(ctx, sc, server.RolesConfig{API: true, Workers: true}, func(ctx context.Context, run *botqRun, enqueued *atomic.Int64) error {
		g, gctx := newGroup(ctx)
		for range b.o.SQLClients {
			g.Go(func() error {
				for gctx.Err() == nil {
					n := b.nextSeq(1)
					body := `{"app_id":"` + benchApp + `","kind":"respond","payload":` + payload(n) + `}`
					req, err := http.NewRequestWithContext(gctx, http.MethodPost, run.apiURL+"/v1/actions", bytes.NewReader([]byte(body)))
					if err != nil {
						return err
					}
					req.Header.Set("Authorization", "Bearer "+run.apiKey)
					req.Header.Set("Content-Type", "application/json")
					resp, err := hc.Do(req)
					if err != nil {
						if gctx.Err() != nil {
							return nil
						}
						return err
					}
					msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						if statusErrs.Add(1) == 1 {
							return fmt.Errorf("POST /v1/actions: %s: %s", resp.Status, bytes.TrimSpace(msg))
						}
						continue
					}
					enqueued.Add(1)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	sc.Details["route"] = "POST /v1/actions (botq serve's API, role enqueuer)"
	b.figure(benchFigure{Key: "http.rate", Scenario: "http", Label: "actions/s end to end (POST /v1/actions)", Value: fptr(res.rate), Unit: "/s", Baseline: "r1.rate"})
	b.figure(benchFigure{Key: "http.enqueue_rate", Scenario: "http", Label: "enqueue requests/s", Value: fptr(res.enqueueRate), Unit: "/s"})
	b.logf("http: %.0f actions/s, %.0f requests/s", res.rate, res.enqueueRate)
	return nil
}

// parallelBatches calls fn for consecutive batches of total items from two
// goroutines; fn gets the first sequence number and the batch's size.
func parallelBatches(ctx context.Context, total, size int, fn func(ctx context.Context, first, n int) error) error {
	var next atomic.Int64
	g, gctx := newGroup(ctx)
	for range 2 {
		g.Go(func() error {
			for {
				start := int(next.Add(int64(size))) - size
				if start >= total || gctx.Err() != nil {
					return gctx.Err()
				}
				if err := fn(gctx, start, min(size, total-start)); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// enqueueBacklog enqueues n respond actions of benchApp with EnqueueMany,
// 1,000 a batch.
func (b *bench) enqueueBacklog(ctx context.Context, n int) error {
	first := b.nextSeq(n)
	err := parallelBatches(ctx, n, 1000, func(ctx context.Context, off, size int) error {
		actions := make([]jobs.Action, size)
		for i := range actions {
			actions[i] = jobs.Action{AppID: benchApp, Kind: jobs.KindRespond, Payload: payload(first + int64(off+i))}
		}
		_, err := b.enq.EnqueueMany(ctx, b.botqPool, actions)
		return err
	})
	if err != nil {
		return fmt.Errorf("enqueue backlog: %w", err)
	}
	return nil
}

func (b *bench) runR2(ctx context.Context, sc *benchScenario) error {
	b.sim.reset(sim.Options{})
	n := b.o.Drain
	workers := river.NewWorkers()
	river.AddWorker(workers, &benchHTTPWorker{})
	start := time.Now()
	if err := b.insertRiverBacklog(ctx, workers, n); err != nil {
		return err
	}
	insertSecs := time.Since(start).Seconds()
	b.prepareDrain(ctx, b.riverSchema, "river_job")
	res, err := b.drainChild(ctx, sc, benchChildSpec{Mode: "river", Expect: n})
	if err != nil {
		return err
	}
	b.drainFigures("r2", "jobs", res, float64(n)/insertSecs, nil)
	return nil
}

// insertRiverBacklog inserts n plain River jobs, each one call, with
// InsertMany in batches of 1,000.
func (b *bench) insertRiverBacklog(ctx context.Context, workers *river.Workers, n int) error {
	client, err := river.NewClient(riverpgxv5.New(b.riverPool), benchRiverConfig(b.o, b.riverSchema, workers, false, b.log))
	if err != nil {
		return err
	}
	first := b.nextSeq(n)
	err = parallelBatches(ctx, n, 1000, func(ctx context.Context, off, size int) error {
		params := make([]river.InsertManyParams, size)
		for i := range params {
			params[i] = river.InsertManyParams{Args: benchHTTPArgs{N: first + int64(off+i)}, InsertOpts: &river.InsertOpts{Queue: benchQueue}}
		}
		_, err := client.InsertMany(ctx, params)
		return err
	})
	if err != nil {
		return fmt.Errorf("insert backlog: %w", err)
	}
	return nil
}

func (b *bench) runDrain(ctx context.Context, sc *benchScenario) error {
	sizes := []int{b.o.Drain}
	if b.o.DrainMillion && b.round == 0 {
		sizes = append(sizes, 1_000_000)
	}
	for i, n := range sizes {
		if i > 0 {
			if err := b.truncate(ctx); err != nil {
				return err
			}
		}
		b.sim.reset(sim.Options{})
		if err := b.upsertApp(ctx, benchApp, 0); err != nil {
			return err
		}
		start := time.Now()
		if err := b.enqueueBacklog(ctx, n); err != nil {
			return err
		}
		enqueueSecs := time.Since(start).Seconds()
		b.prepareDrain(ctx, b.botqSchema, "action", "river_job", "lane")
		key := "drain"
		var rss []benchTarget
		if n >= 1_000_000 {
			key = "drain1m"
			rss = []benchTarget{atMost("throughput", "value", 200)}
		}
		sub := sc
		if i > 0 {
			sub = &benchScenario{Details: map[string]any{}}
			sc.Details["million"] = sub.Details
		}
		res, err := b.drainChild(ctx, sub, benchChildSpec{Mode: "botq", Expect: n})
		if err != nil {
			return err
		}
		b.drainFigures(key, "actions", res, float64(n)/enqueueSecs, rss)
	}
	return nil
}

func (b *bench) drainFigures(key, what string, res *benchChildResult, enqueueRate float64, rssTargets []benchTarget) {
	f := benchFigure{Key: key + ".rate", Scenario: key, Label: what + "/s draining " + strconv.Itoa(res.Completed), Value: fptr(res.rate()), Unit: "/s"}
	if key != "r2" {
		f.Baseline = "r2.rate"
		f.Targets = []benchTarget{atLeast("throughput", "ratio", 0.60)}
	}
	b.figure(f)
	b.figure(benchFigure{Key: key + ".seconds", Scenario: key, Label: "drain time (child process start to last result)", Value: fptr(res.Seconds), Unit: "s"})
	b.figure(benchFigure{Key: key + ".peak_rss", Scenario: key, Label: "peak RSS of the draining process", Value: fptr(res.PeakRSSMB), Unit: "MB", Targets: rssTargets})
	verb := "enqueued"
	if key == "r2" {
		verb = "inserted (InsertMany)"
	}
	b.figure(benchFigure{Key: key + ".enqueue_rate", Scenario: key, Label: what + " " + verb + "/s, no workers running", Value: fptr(enqueueRate), Unit: "/s"})
	b.logf("%s: %d %s in %.1fs = %.0f/s, peak RSS %.0f MB", key, res.Completed, what, res.Seconds, res.rate(), res.PeakRSSMB)
	if res.PhaseMS != nil {
		b.logPhases(key, res.PhaseMS)
	}
}

// paced enqueues rate actions per second for d by SQL INSERT from the SQL
// clients, each enqueue at its scheduled time (open loop), and records the
// commit time of each in rec.
func (b *bench) paced(ctx context.Context, rate float64, d time.Duration, rec *arrivals) error {
	insert := fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload) VALUES ($1, 'respond', $2)`, b.botqSchema)
	total := len(rec.commit)
	var next atomic.Int64
	start := time.Now()
	g, gctx := newGroup(ctx)
	for range b.o.SQLClients {
		conn, err := b.enqueueConn(ctx)
		if err != nil {
			return err
		}
		g.Go(func() error {
			defer conn.Close(context.WithoutCancel(ctx))
			for {
				i := next.Add(1) - 1
				if i >= int64(total) {
					return nil
				}
				due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
				if wait := time.Until(due); wait > 0 {
					select {
					case <-gctx.Done():
						return gctx.Err()
					case <-time.After(wait):
					}
				}
				n := rec.first + i
				if _, err := conn.Exec(gctx, insert, benchApp, payload(n)); err != nil {
					return err
				}
				rec.committed(n, time.Now())
			}
		})
	}
	return g.Wait()
}

// latencyRun is one load of the latency scenario.
type latencyRun struct {
	Rate      float64 `json:"rate"`
	Enqueued  int     `json:"enqueued"`
	Samples   int     `json:"samples"`
	Missing   int     `json:"missing"`
	P50, P90  float64
	P99, Max  float64
	MeanMs    float64 `json:"mean_ms"`
	Measured  string  `json:"measured"`
	Excluding string  `json:"excluding"`
}

func (b *bench) latencyAt(ctx context.Context, rate float64) (*latencyRun, error) {
	total := int(math.Round(rate * b.o.Duration.Seconds()))
	rec := newArrivals(b.nextSeq(total), total)
	b.sim.rec.Store(rec)
	defer b.sim.rec.Store(nil)
	if err := b.paced(ctx, rate, b.o.Duration, rec); err != nil {
		return nil, err
	}
	// Wait for the last calls.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		missing := 0
		for i := range rec.arrived {
			if rec.arrived[i].Load() == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	warm := int64(b.o.Warmup)
	var lat []float64
	run := &latencyRun{Rate: rate, Enqueued: total, Measured: "enqueue commit (client side, after COMMIT returned) to arrival of the respond call at the simulator, one monotonic clock",
		Excluding: "enqueues committed during the first --warmup"}
	var first int64
	for i := range rec.commit {
		c, a := rec.commit[i].Load(), rec.arrived[i].Load()
		if c == 0 {
			continue
		}
		if first == 0 {
			first = c
		}
		if c-first < warm {
			continue
		}
		if a == 0 {
			run.Missing++
			continue
		}
		lat = append(lat, float64(a-c)/float64(time.Millisecond))
	}
	slices.Sort(lat)
	run.Samples = len(lat)
	run.P50, run.P90, run.P99 = percentile(lat, 0.50), percentile(lat, 0.90), percentile(lat, 0.99)
	if len(lat) > 0 {
		run.Max = lat[len(lat)-1]
		var sum float64
		for _, v := range lat {
			sum += v
		}
		run.MeanMs = sum / float64(len(lat))
	}
	return run, nil
}

func (b *bench) runLatency(ctx context.Context, sc *benchScenario) error {
	sat, ok := b.value("sql.rate")
	if !ok {
		return errors.New("the sql scenario's rate is needed for the 50% load and is missing")
	}
	b.sim.reset(sim.Options{})
	if err := b.upsertApp(ctx, benchApp, 0); err != nil {
		return err
	}
	run, err := b.startBotq(ctx, server.RolesConfig{Workers: true}, []benchAppSpec{{id: benchApp}})
	if err != nil {
		return err
	}
	defer func() { _ = run.stop() }()
	stopProfile := b.profile(sc.Name)
	watch := b.watchPostgres(ctx)
	light, err := b.latencyAt(ctx, b.o.LightRate)
	if err != nil {
		return err
	}
	half, err := b.latencyAt(ctx, sat/2)
	stopProfile()
	sc.Postgres = watch.finish(ctx)
	if err != nil {
		return err
	}
	sc.Details["light"] = light
	sc.Details["half"] = half
	sc.Details["saturation_rate"] = sat
	if light.Missing > 0 || half.Missing > 0 {
		return fmt.Errorf("%d + %d enqueued actions never reached the simulator", light.Missing, half.Missing)
	}
	lightLabel := fmt.Sprintf("at %s/s", fmtNum(b.o.LightRate))
	b.figure(benchFigure{Key: "latency.light_p50", Scenario: "latency", Label: "enqueue commit → Bot v3 call p50 " + lightLabel, Value: fptr(light.P50), Unit: "ms",
		Targets: []benchTarget{atMost("throughput", "value", 10), atMost("latency", "value", 20)}})
	b.figure(benchFigure{Key: "latency.light_p90", Scenario: "latency", Label: "p90 " + lightLabel, Value: fptr(light.P90), Unit: "ms"})
	b.figure(benchFigure{Key: "latency.light_p99", Scenario: "latency", Label: "p99 " + lightLabel, Value: fptr(light.P99), Unit: "ms",
		Targets: []benchTarget{atMost("throughput", "value", 50), atMost("latency", "value", 100)}})
	b.figure(benchFigure{Key: "latency.half_rate", Scenario: "latency", Label: "50% load: enqueues/s (half the sql rate)", Value: fptr(half.Rate), Unit: "/s", Baseline: "sql.rate"})
	b.figure(benchFigure{Key: "latency.half_p50", Scenario: "latency", Label: "p50 at 50% load", Value: fptr(half.P50), Unit: "ms"})
	b.figure(benchFigure{Key: "latency.half_p90", Scenario: "latency", Label: "p90 at 50% load", Value: fptr(half.P90), Unit: "ms"})
	b.figure(benchFigure{Key: "latency.half_p99", Scenario: "latency", Label: "p99 at 50% load", Value: fptr(half.P99), Unit: "ms",
		Targets: []benchTarget{atMost("throughput", "value", 100)}})
	b.logf("latency: %s/s p50 %.1f p99 %.1f ms (%d samples); %.0f/s p50 %.1f p99 %.1f ms (%d samples)",
		fmtNum(b.o.LightRate), light.P50, light.P99, light.Samples, half.Rate, half.P50, half.P99, half.Samples)
	return nil
}

// reconcilerCalls are the endpoints only the reconciler calls.
var reconcilerCalls = []string{"request_get", "request_list", "health", "token_refresh"}

func (b *bench) runReconciler(ctx context.Context, sc *benchScenario) error {
	n := b.o.ReconcilerRequests
	settleMin, settleMax := 2*time.Second, 20*time.Second
	if b.o.Smoke {
		settleMin, settleMax = 200*time.Millisecond, 1500*time.Millisecond
	}
	b.sim.reset(sim.Options{SettleDelayMin: settleMin, SettleDelayMax: settleMax, MaxRecords: max(100_000, 2*n)})
	if err := b.upsertApp(ctx, benchApp, 0); err != nil {
		return err
	}
	run, err := b.startBotq(ctx, server.RolesConfig{Workers: true, Reconciler: true}, []benchAppSpec{{id: benchApp}})
	if err != nil {
		return err
	}
	defer func() { _ = run.stop() }()
	stopProfile := b.profile(sc.Name)
	defer stopProfile()
	watch := b.watchPostgres(ctx)
	callsBefore := b.sim.calls(reconcilerCalls...)
	getsBefore, listedBefore := b.sim.calls("request_get"), b.sim.listed()
	start := time.Now()
	if err := b.enqueueBacklog(ctx, n); err != nil {
		return err
	}

	// Watch settlements as they commit: the time botq recorded a record is
	// when its row is first seen settled (polled every 100ms); Khoros
	// settled it at its completedEpochMillis.
	seen := make(map[string]bool, n)
	var lags []float64
	var since time.Time
	var pendingPeak int64
	var lastPending time.Time
	timeout := settleMax + 10*b.o.ReconcilerInterval + time.Minute
	for len(seen) < n {
		if time.Since(start) > timeout {
			return fmt.Errorf("only %d of %d requests settled in %s", len(seen), n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(lastPending) >= 500*time.Millisecond {
			lastPending = time.Now()
			var p int64
			if err := b.botqPool.QueryRow(ctx, `SELECT count(*) FROM request WHERE state = 'PENDING'`).Scan(&p); err != nil {
				return err
			}
			pendingPeak = max(pendingPeak, p)
		}
		rows, err := b.botqPool.Query(ctx, `
			SELECT request_id, khoros_completed_at, finalized_at FROM request
			WHERE state <> 'PENDING' AND finalized_at >= $1`, since)
		if err != nil {
			return err
		}
		now := time.Now()
		for rows.Next() {
			var id string
			var completed *time.Time
			var finalized time.Time
			if err := rows.Scan(&id, &completed, &finalized); err != nil {
				rows.Close()
				return err
			}
			if finalized.After(since) {
				since = finalized.Add(-time.Second)
			}
			if seen[id] {
				continue
			}
			seen[id] = true
			if completed != nil {
				lags = append(lags, float64(now.Sub(*completed))/float64(time.Millisecond))
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	calls := b.sim.calls(reconcilerCalls...) - callsBefore
	// A GET reads one record, a listing every record of its window.
	read := float64(b.sim.listed()-listedBefore) + float64(b.sim.calls("request_get")-getsBefore)
	sc.Postgres = watch.finish(ctx)
	slices.Sort(lags)
	sc.Details["settle_delay"] = fmt.Sprintf("%s..%s after the call (simulator)", settleMin, settleMax)
	sc.Details["interval"] = b.o.ReconcilerInterval.String()
	sc.Details["seconds_to_settle_all"] = time.Since(start).Seconds()
	sc.Details["calls_by_endpoint"] = map[string]int{
		"request_list": b.sim.calls("request_list"), "request_get": b.sim.calls("request_get"), "health": b.sim.calls("health"),
	}
	sc.Details["lag_max_ms"] = percentile(lags, 1)
	sc.Details["lag_samples"] = len(lags)
	sc.Details["lag_measured"] = "first poll (every 100ms) that sees the request settled in botq, minus Khoros' completedEpochMillis"
	// A listing reads its whole window, so a tail of a few records waits
	// for the listing until reconciler.list_max_wait.
	lagLimit := float64((b.o.ReconcilerInterval + server.DefaultConfig().Reconciler.ListMaxWait + time.Second) / time.Millisecond)
	b.figure(benchFigure{Key: "reconciler.calls_per_settled", Scenario: "reconciler", Label: "Bot v3 calls per settled request",
		Value: fptr(float64(calls) / float64(len(seen))), Unit: "", Targets: []benchTarget{atMost("reconciler", "value", 0.05)}})
	b.figure(benchFigure{Key: "reconciler.lag_p50", Scenario: "reconciler", Label: "settle lag p50 (Khoros settled → botq recorded)", Value: fptr(percentile(lags, 0.5)), Unit: "ms"})
	b.figure(benchFigure{Key: "reconciler.lag_p90", Scenario: "reconciler", Label: "settle lag p90", Value: fptr(percentile(lags, 0.9)), Unit: "ms"})
	b.figure(benchFigure{Key: "reconciler.lag_p99", Scenario: "reconciler", Label: "settle lag p99 (target: interval " + b.o.ReconcilerInterval.String() + " + list_max_wait " + server.DefaultConfig().Reconciler.ListMaxWait.String() + " + 1s)",
		Value: fptr(percentile(lags, 0.99)), Unit: "ms", Targets: []benchTarget{atMost("reconciler", "value", lagLimit)}})
	b.figure(benchFigure{Key: "reconciler.records_per_settled", Scenario: "reconciler", Label: "request records read per settled request (listed + single GETs)",
		Value: fptr(read / float64(len(seen))), Unit: "", Targets: []benchTarget{atMost("soak", "value", 5)}})
	b.figure(benchFigure{Key: "reconciler.settled", Scenario: "reconciler", Label: "requests settled", Value: fptr(float64(len(seen))), Unit: ""})
	b.figure(benchFigure{Key: "reconciler.calls", Scenario: "reconciler", Label: "reconciler Bot v3 calls (list, get, health)", Value: fptr(float64(calls)), Unit: ""})
	b.figure(benchFigure{Key: "reconciler.pending_peak", Scenario: "reconciler", Label: "pending requests at the peak", Value: fptr(float64(pendingPeak)), Unit: ""})
	b.logf("reconciler: %d settled with %d calls (%.4f per request), lag p50 %.0f ms p99 %.0f ms, pending peak %d",
		len(seen), calls, float64(calls)/float64(len(seen)), percentile(lags, 0.5), percentile(lags, 0.99), pendingPeak)
	return nil
}

func (b *bench) runSlow(ctx context.Context, sc *benchScenario) error {
	lat := b.o.SlowLatency
	perSec := func(concurrency int) float64 { return float64(concurrency) / lat.Seconds() }
	backlog := func(rate float64) int { return int(math.Ceil(rate * b.o.Duration.Seconds() * 1.3)) }

	// Plain River, same workers, same slowed simulator: what this machine
	// allows with no bookkeeping at all.
	riverRate, err := b.slowRiver(ctx, sc, backlog(perSec(b.o.MaxWorkers)))
	if err != nil {
		return err
	}
	// One app without a limit: River's MaxWorkers is the concurrency.
	total, _, err := b.slowRun(ctx, sc, "total", []benchAppSpec{{id: benchApp}}, []int{backlog(perSec(b.o.MaxWorkers))})
	if err != nil {
		return err
	}
	// Two apps with concurrency limits, below MaxWorkers together.
	ca, cb := max(b.o.MaxWorkers/5, 1), max(b.o.MaxWorkers/2, 1)
	apps := []benchAppSpec{{id: "slow-a", concurrency: ca}, {id: "slow-b", concurrency: cb}}
	all, per, err := b.slowRun(ctx, sc, "apps", apps, []int{backlog(perSec(ca)), backlog(perSec(cb))})
	if err != nil {
		return err
	}
	// A new slice per figure: finish() writes each target's result in place.
	within10 := func() []benchTarget { return []benchTarget{within("throughput", "ratio", 0.9, 1.1)} }
	b.figure(benchFigure{Key: "slow.river_rate", Scenario: "slow", Label: fmt.Sprintf("River, one HTTP call, MaxWorkers %d, latency %s", b.o.MaxWorkers, lat),
		Value: fptr(riverRate), Unit: "/s", Baseline: "MaxWorkers/latency", BaselineValue: fptr(perSec(b.o.MaxWorkers))})
	b.figure(benchFigure{Key: "slow.total_vs_river", Scenario: "slow", Label: "actions/s, one app, against River",
		Value: fptr(total), Unit: "/s", Baseline: "slow.river_rate"})
	b.figure(benchFigure{Key: "slow.total_rate", Scenario: "slow", Label: fmt.Sprintf("actions/s, one app, MaxWorkers %d, latency %s", b.o.MaxWorkers, lat),
		Value: fptr(total), Unit: "/s", Baseline: "MaxWorkers/latency", BaselineValue: fptr(perSec(b.o.MaxWorkers)), Targets: within10()})
	b.figure(benchFigure{Key: "slow.app_a_rate", Scenario: "slow", Label: fmt.Sprintf("actions/s, app with concurrency %d", ca),
		Value: fptr(per["slow-a"]), Unit: "/s", Baseline: "concurrency/latency", BaselineValue: fptr(perSec(ca)), Targets: within10()})
	b.figure(benchFigure{Key: "slow.app_b_rate", Scenario: "slow", Label: fmt.Sprintf("actions/s, app with concurrency %d", cb),
		Value: fptr(per["slow-b"]), Unit: "/s", Baseline: "concurrency/latency", BaselineValue: fptr(perSec(cb)), Targets: within10()})
	b.figure(benchFigure{Key: "slow.apps_total_rate", Scenario: "slow", Label: "actions/s, both limited apps", Value: fptr(all), Unit: "/s",
		Baseline: "sum of concurrency/latency", BaselineValue: fptr(perSec(ca + cb)), Targets: within10()})
	return nil
}

// slowRiver drains a backlog of plain River jobs, each one call to the
// slowed simulator, and returns the rate over the measured window.
func (b *bench) slowRiver(ctx context.Context, sc *benchScenario, n int) (float64, error) {
	if err := b.truncate(ctx); err != nil {
		return 0, err
	}
	s := b.sim.reset(sim.Options{})
	if err := s.SetFault("respond", sim.Fault{Latency: sim.Duration(b.o.SlowLatency)}); err != nil {
		return 0, err
	}
	tok, err := b.sim.mint(benchApp)
	if err != nil {
		return 0, err
	}
	api, err := benchAPIClient(b.sim.url, tok)
	if err != nil {
		return 0, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &benchHTTPWorker{api: api})
	if err := b.insertRiverBacklog(ctx, workers, n); err != nil {
		return 0, err
	}
	rr, err := startRiver(ctx, b.riverPool, benchRiverConfig(b.o, b.riverSchema, workers, true, b.log))
	if err != nil {
		return 0, err
	}
	sub := &benchScenario{Name: sc.Name + "-river", Details: map[string]any{}}
	res, err := b.measureSteady(ctx, sub, steady{
		enqueued:  func() int64 { return int64(n) },
		completed: func(context.Context) (int64, error) { return rr.completed.Load(), nil },
		produce:   func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
	})
	if stopErr := rr.stop(ctx); err == nil {
		err = stopErr
	}
	if err != nil {
		return 0, err
	}
	if res.completed >= int64(n) {
		return 0, fmt.Errorf("river: the backlog (%d) ran out before the window ended", n)
	}
	sc.Details["river"] = sub.Details
	sc.Details["river_timeline"] = sub.Timeline
	b.logf("slow river: %.0f jobs/s", res.rate)
	return res.rate, nil
}

// interleaved is the apps' backlogs of responds, interleaved so that each
// app always has some at the head of the queue.
func (b *bench) interleaved(apps []benchAppSpec, backlogs []int) []jobs.Action {
	total := 0
	for _, n := range backlogs {
		total += n
	}
	actions := make([]jobs.Action, 0, total)
	first := b.nextSeq(total)
	left := slices.Clone(backlogs)
	for k := int64(0); len(actions) < total; {
		for i, a := range apps {
			if left[i] > 0 {
				left[i]--
				actions = append(actions, jobs.Action{AppID: a.id, Kind: jobs.KindRespond, Payload: payload(first + k)})
				k++
			}
		}
	}
	return actions
}

// attemptsPerApp counts the attempts made so far, by app.
func (b *bench) attemptsPerApp(ctx context.Context) (map[string]int64, error) {
	rows, err := b.botqPool.Query(ctx, `SELECT a.app_id, count(*) FROM attempt t JOIN action a ON a.id = t.action_id GROUP BY 1`)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	var id string
	var c int64
	_, err = pgx.ForEachRow(rows, []any{&id, &c}, func() error { out[id] = c; return nil })
	return out, err
}

// slowRun drains per-app backlogs with the simulator slowed down and
// returns the total and per-app rates over the measured window.
func (b *bench) slowRun(ctx context.Context, sc *benchScenario, name string, apps []benchAppSpec, backlogs []int) (float64, map[string]float64, error) {
	if err := b.truncate(ctx); err != nil {
		return 0, nil, err
	}
	s := b.sim.reset(sim.Options{})
	if err := s.SetFault("respond", sim.Fault{Latency: sim.Duration(b.o.SlowLatency)}); err != nil {
		return 0, nil, err
	}
	for _, a := range apps {
		if err := b.upsertApp(ctx, a.id, a.concurrency); err != nil {
			return 0, nil, err
		}
	}
	actions := b.interleaved(apps, backlogs)
	total := len(actions)
	for chunk := range slices.Chunk(actions, 1000) {
		if _, err := b.enq.EnqueueMany(ctx, b.botqPool, chunk); err != nil {
			return 0, nil, fmt.Errorf("enqueue backlog: %w", err)
		}
	}
	run, err := b.startBotq(ctx, server.RolesConfig{Workers: true}, apps)
	if err != nil {
		return 0, nil, err
	}
	var w0, w1 map[string]int64
	sub := &benchScenario{Name: sc.Name + "-" + name, Details: map[string]any{}}
	res, err := b.measureSteady(ctx, sub, steady{
		enqueued:  func() int64 { return int64(total) },
		completed: b.attemptsDone,
		produce:   func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
		atWindow: func(ctx context.Context, start bool) error {
			m, err := b.attemptsPerApp(ctx)
			if start {
				w0 = m
			} else {
				w1 = m
			}
			return err
		},
	})
	if stopErr := run.stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return 0, nil, err
	}
	rates := map[string]float64{}
	for _, a := range apps {
		rates[a.id] = float64(w1[a.id]-w0[a.id]) / res.windowSeconds
	}
	if res.completed >= int64(total) {
		return 0, nil, fmt.Errorf("%s: the backlog (%d) ran out before the window ended", name, total)
	}
	b.recordPhases("slow "+name, sub.Details, run.m.Metrics)
	sub.Details["backlogs"] = backlogs
	sub.Details["apps"] = fmt.Sprint(apps)
	sub.Details["rates"] = rates
	sub.Details["snoozes_note"] = "jobs of an app at its concurrency limit park in app_slot_wait (no attempt, place in the queue kept) until a slot frees"
	sc.Details[name] = sub.Details
	sc.Details[name+"_timeline"] = sub.Timeline
	if sc.Postgres == nil {
		sc.Postgres = sub.Postgres
	}
	b.logf("slow %s: %.0f actions/s in total, per app %v", name, res.rate, rates)
	return res.rate, rates, nil
}

// group runs goroutines and returns the first error; the first error
// cancels the others' context.
type group struct {
	wg     sync.WaitGroup
	once   sync.Once
	err    error
	cancel context.CancelFunc
}

func newGroup(ctx context.Context) (*group, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	return &group{cancel: cancel}, ctx
}

func (g *group) Go(f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.once.Do(func() {
				g.err = err
				g.cancel()
			})
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}
