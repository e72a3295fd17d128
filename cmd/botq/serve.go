package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/cmd/botq/api"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/jobs/appclient"
	"github.com/botq/botq/migrations"
	"github.com/botq/botq/reconciler"
	"github.com/botq/botq/store"
)

func newServeCmd(env *cliEnv) *cobra.Command {
	var noAPI, noWorkers, noReconciler bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run botq: the HTTP API, the workers that execute actions, and the reconciler",
		Long: `Runs botq until SIGINT or SIGTERM, then stops gracefully: no new jobs are taken, running
calls finish and their results are written. Each role can be switched off (flags or roles: in the
config) to scale out: run as many processes as you like against one database.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := env.config()
			if err != nil {
				return err
			}
			if noAPI {
				cfg.Roles.API = false
			}
			if noWorkers {
				cfg.Roles.Workers = false
			}
			if noReconciler {
				cfg.Roles.Reconciler = false
			}
			m := NewMain(cfg, newLogger(cfg.Log, env.stderr))
			m.LookupEnv = env.lookupEnv
			return m.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&noAPI, "no-api", false, "do not serve the HTTP API (health and metrics are still served)")
	cmd.Flags().BoolVar(&noWorkers, "no-workers", false, "do not execute actions")
	cmd.Flags().BoolVar(&noReconciler, "no-reconciler", false, "do not run the reconciler")
	return cmd
}

// Main is one running botq process, wired from its Config.
type Main struct {
	Config Config
	Logger zerolog.Logger
	// LookupEnv reads the environment (token_env of apps); default os.LookupEnv.
	LookupEnv func(string) (string, bool)

	Pool       *pgxpool.Pool
	Store      *store.Store
	Keyring    *store.Keyring
	Apps       *appclient.Registry
	Executor   *jobs.Executor
	Reconciler *reconciler.Reconciler
	River      *river.Client[pgx.Tx]
	HTTP       *http.Server
	// Metrics is the Prometheus registry; API and RiverUI are served with
	// roles.api (surfaces.go).
	Metrics *Metrics
	API     *api.Server
	RiverUI http.Handler
	// uiRiver is River UI's River client (River when this process works
	// jobs), for the job writes botq answers itself.
	uiRiver *river.Client[pgx.Tx]
	auth    api.Authenticator

	// Addr is the HTTP server's address once listening.
	Addr  atomic.Pointer[string]
	ready atomic.Bool
}

// NewMain returns a Main for cfg.
func NewMain(cfg Config, logger zerolog.Logger) *Main {
	return &Main{Config: cfg, Logger: logger, LookupEnv: os.LookupEnv}
}

// Run starts every configured role and blocks until ctx is done, then stops
// them in order: HTTP, River (running calls finish), the result writer.
func (m *Main) Run(ctx context.Context) error {
	if err := m.open(ctx); err != nil {
		m.close()
		return err
	}
	defer m.close()

	ln, err := net.Listen("tcp", m.Config.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (http.listen): %w", m.Config.HTTP.Listen, err)
	}
	addr := ln.Addr().String()
	m.Addr.Store(&addr)
	if err := m.openSurfaces(ctx); err != nil {
		return err
	}
	m.HTTP = &http.Server{Handler: m.handler(), ReadHeaderTimeout: 10 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- m.HTTP.Serve(ln) }()

	if m.Executor != nil {
		m.Executor.Start()
	}
	if m.River != nil {
		if err := m.River.Start(ctx); err != nil {
			return fmt.Errorf("start River: %w", err)
		}
	}
	m.ready.Store(true)
	m.Logger.Info().Str("addr", addr).Str("schema", m.Config.Database.Schema).
		Bool("api", m.Config.Roles.API).Bool("workers", m.Config.Roles.Workers).Bool("reconciler", m.Config.Roles.Reconciler).
		Str("version", version).Msg("botq: Serving")

	select {
	case <-ctx.Done():
	case err := <-httpErr:
		if !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error().Err(err).Msg("botq: HTTP server failed")
		}
	}
	m.ready.Store(false)
	m.Logger.Info().Msg("botq: Shutting down")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), softStopTimeout(m.Config)+m.Config.HTTP.ShutdownTimeout)
	defer cancel()
	_ = m.HTTP.Shutdown(stopCtx)
	var errs []error
	if m.River != nil {
		if err := m.River.Stop(stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("stop River: %w", err))
		}
	}
	if m.Executor != nil {
		if err := m.Executor.Stop(stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("stop result writer: %w", err))
		}
	}
	m.Logger.Info().Msg("botq: Stopped")
	return errors.Join(errs...)
}

// open connects, checks the schema and builds every component.
func (m *Main) open(ctx context.Context) error {
	cfg := m.Config
	pool, err := store.NewPool(ctx, cfg.Database.URL, cfg.Database.Schema, store.PoolOptions{MaxConns: cfg.Database.MaxConns, AppName: "botq"})
	if err != nil {
		return err
	}
	m.Pool = pool
	if cfg.Database.AutoMigrate {
		if _, err := migrations.Up(ctx, pool, cfg.Database.Schema, slogFor(m.Logger)); err != nil {
			return err
		}
	}
	if err := checkSchema(ctx, pool, cfg.Database.Schema); err != nil {
		return err
	}
	if m.Store, err = store.New(cfg.Database.Schema); err != nil {
		return err
	}
	m.Metrics = NewMetrics(pool, m.Store, m.Logger)
	if cfg.Encryption.Key != "" {
		key, err := store.ParseKey(cfg.Encryption.Key)
		if err != nil {
			return fmt.Errorf("encryption.key: %w", err)
		}
		if m.Keyring, err = store.NewKeyring(key); err != nil {
			return err
		}
	}
	if err := m.syncConfig(ctx); err != nil {
		return err
	}
	m.Apps = appclient.New(appclient.Config{
		Pool: pool, Store: m.Store, Keyring: m.Keyring, External: externalTokens(cfg, m.LookupEnv),
		HTTPTimeout: cfg.Khoros.HTTPTimeout,
	})

	if !cfg.Roles.Workers && !cfg.Roles.Reconciler {
		return nil
	}
	workers := river.NewWorkers()
	queues := map[string]river.QueueConfig{}
	if cfg.Roles.Workers {
		retry := map[string]jobs.RetryPolicy{}
		for kind, kc := range cfg.Kinds {
			if kc.RetryBase > 0 || kc.RetryMax > 0 {
				p := jobs.DefaultRetryPolicy
				if kc.RetryBase > 0 {
					p.Base = kc.RetryBase
				}
				if kc.RetryMax > 0 {
					p.Max = kc.RetryMax
				}
				retry[kind] = p
			}
		}
		m.Executor, err = jobs.NewExecutor(jobs.Config{
			Pool: pool, Store: m.Store, Apps: m.Apps, Logger: m.Logger, Retry: retry,
			SlotLease: cfg.River.JobTimeout + 30*time.Second, Observer: m.Metrics,
		})
		if err != nil {
			return err
		}
		if err := m.Executor.Register(workers); err != nil {
			return err
		}
		for name, q := range cfg.River.Queues {
			if name != maintenanceQueue {
				queues[name] = river.QueueConfig{MaxWorkers: q.MaxWorkers}
			}
		}
	}
	if cfg.Roles.Reconciler {
		queues[maintenanceQueue] = river.QueueConfig{MaxWorkers: cfg.River.Queues[maintenanceQueue].MaxWorkers}
	}
	periodic, err := m.registerMaintenance(workers)
	if err != nil {
		return err
	}
	m.River, err = river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema:            cfg.Database.Schema,
		Logger:            riverLogger(m.Logger),
		Queues:            queues,
		Workers:           workers,
		PeriodicJobs:      periodic,
		FetchCooldown:     cfg.River.FetchCooldown,
		FetchPollInterval: cfg.River.FetchPollInterval,
		JobTimeout:        cfg.River.JobTimeout,
		// Without it, cancelling the context River was started with (the
		// signal) would cancel every running job's context: calls in flight
		// would be cut off and left for the reconciler instead of finishing.
		SoftStopTimeout:             softStopTimeout(cfg),
		RescueStuckJobsAfter:        cfg.River.RescueStuckAfter,
		CompletedJobRetentionPeriod: cfg.River.CompletedRetention,
		// Every kind's worker is registered in every process that works
		// actions, but a process without the reconciler role must not take
		// the maintenance queue's jobs.
		FetchOnlyKnownKinds: true,
	})
	if err != nil {
		return fmt.Errorf("new River client: %w", err)
	}
	return nil
}

// softStopTimeout is how long a stopping process lets running jobs finish
// before it cancels them: a call is bounded by khoros.http_timeout, and its
// result still has to be written.
func softStopTimeout(cfg Config) time.Duration { return cfg.Khoros.HTTPTimeout + 5*time.Second }

const maintenanceQueue = reconciler.Queue

func (m *Main) close() {
	if m.Pool != nil {
		m.Pool.Close()
	}
}

// checkSchema refuses to run on a schema that is not at this binary's version.
func checkSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	migrated, err := migrations.Migrated(ctx, pool, schema)
	if err != nil {
		return err
	}
	if !migrated {
		return fmt.Errorf("schema %s: %w: it was never migrated; run `botq migrate up` (or set database.auto_migrate)", schema, migrations.ErrBehind)
	}
	p, err := migrations.Open(ctx, pool, schema, nil)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := migrations.CheckCurrent(ctx, p); err != nil {
		if errors.Is(err, migrations.ErrBehind) {
			return fmt.Errorf("schema %s: %w; run `botq migrate up` (or set database.auto_migrate)", schema, err)
		}
		return fmt.Errorf("schema %s: %w", schema, err)
	}
	return nil
}

// syncConfig writes the configured kinds and apps to the database, where
// the SQL enqueue path and every other process read them.
func (m *Main) syncConfig(ctx context.Context) error {
	return pgx.BeginFunc(ctx, m.Pool, func(tx pgx.Tx) error {
		for kind, kc := range m.Config.Kinds {
			if err := m.Store.KindConfigUpdate(ctx, tx, store.KindConfigParams{
				Kind: kind, MaxAttempts: kc.MaxAttempts, Queue: kc.Queue, Priority: kc.Priority,
			}); err != nil {
				return err
			}
		}
		for _, a := range m.Config.Apps {
			p := store.AppUpsertParams{
				ID: a.ID, Region: appRegion(a), BaseURL: a.BaseURL, CompanyKey: a.CompanyKey,
				RateBurst: a.RateBurst, LaneOnFailure: a.LaneOnFailure,
			}
			if a.RateLimit > 0 {
				p.RateLimit = &a.RateLimit
			}
			if a.Concurrency > 0 {
				p.ConcurrencyLimit = &a.Concurrency
			}
			if _, err := m.Store.AppUpsert(ctx, tx, p); err != nil {
				return err
			}
		}
		return nil
	})
}

func appRegion(a AppConfig) string {
	if a.BaseURL != "" {
		return "CUSTOM"
	}
	if a.Region == "" {
		return "US"
	}
	r, err := botapi.ParseRegion(a.Region)
	if err != nil {
		return a.Region
	}
	return string(r)
}

// externalTokens builds the token sources of apps whose token comes from the
// environment or a file.
func externalTokens(cfg Config, env func(string) (string, bool)) map[string]botapi.TokenSource {
	out := map[string]botapi.TokenSource{}
	for _, a := range cfg.Apps {
		switch {
		case a.TokenFile != "":
			out[a.ID] = botapi.FileToken(a.TokenFile)
		case a.TokenEnv != "":
			v, _ := env(a.TokenEnv)
			out[a.ID] = botapi.StaticToken(v)
		}
	}
	return out
}

func (m *Main) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !m.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("starting or stopping\n"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := m.Pool.Ping(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("database unreachable\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	m.mountSurfaces(mux)
	m.mountPprof(mux)
	return mux
}
