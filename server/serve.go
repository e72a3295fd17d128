package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/rs/zerolog"

	"github.com/botq/botq/api"
	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/appclient"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/migrations"
	"github.com/botq/botq/reconciler"
	"github.com/botq/botq/server/console"
	"github.com/botq/botq/store"
)

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
	// Console is the web console, served at / with roles.api.
	Console *console.Console
	// uiRiver is River UI's River client (River when this process works
	// jobs), for the job writes botq answers itself.
	uiRiver *river.Client[pgx.Tx]
	// uiGuard refuses River UI writes from other sites' pages.
	uiGuard *api.CrossOriginGuard
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
	// ReadTimeout bounds a request's headers and body only: net/http lifts
	// the read deadline once the body has been read, so a long answer (an
	// export streaming for minutes) is not cut, and WriteTimeout stays off
	// for the same reason. Idle keep-alive connections end after ReadTimeout
	// too (IdleTimeout's default).
	m.HTTP = &http.Server{
		Handler:           m.handler(),
		ReadHeaderTimeout: m.Config.HTTP.ReadHeaderTimeout,
		ReadTimeout:       m.Config.HTTP.ReadTimeout,
	}
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
		Str("version", botapi.Version).Msg("botq: Serving")

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
// migrate brings the schema up to date as the login user (the schema's
// owner), and creates and grants botq's roles, before botq connects as its
// role.
func (m *Main) migrate(ctx context.Context) error {
	cfg := m.Config.Database
	pool, err := store.NewPool(ctx, cfg.URL, cfg.Schema, store.PoolOptions{MaxConns: 2, AppName: "botq-migrate"})
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrations.Up(ctx, pool, cfg.Schema, SlogFor(m.Logger)); err != nil {
		return err
	}
	var b strings.Builder
	err = SetupRoles(ctx, &b, pool, cfg.Schema)
	if out := strings.TrimSpace(b.String()); out != "" {
		m.Logger.Info().Msg("botq: " + out)
	}
	return err
}

// keyringOf opens the token encryption key, if one is configured.
func keyringOf(c EncryptionConfig) (*store.Keyring, error) {
	if c.Key == "" {
		return nil, nil
	}
	key, err := store.ParseKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("encryption.key: %w", err)
	}
	return store.NewKeyring(key)
}

// retryPolicies are the kinds' retry settings of the configuration.
func retryPolicies(kinds map[string]KindConfig) map[string]jobs.RetryPolicy {
	retry := map[string]jobs.RetryPolicy{}
	for kind, kc := range kinds {
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
	return retry
}

// openWorkers builds the executor of actions, registers its workers and
// adds the action queues.
func (m *Main) openWorkers(workers *river.Workers, queues map[string]river.QueueConfig) error {
	cfg := m.Config
	var err error
	m.Executor, err = jobs.NewExecutor(jobs.Config{
		Pool: m.Pool, Store: m.Store, Apps: m.Apps, Logger: m.Logger, Retry: retryPolicies(cfg.Kinds),
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
	return nil
}

func (m *Main) open(ctx context.Context) error {
	cfg := m.Config
	if cfg.Database.AutoMigrate {
		if err := m.migrate(ctx); err != nil {
			return err
		}
	}
	pool, err := store.NewPool(ctx, cfg.Database.URL, cfg.Database.Schema, store.PoolOptions{
		MaxConns: cfg.Database.MaxConns, AppName: "botq", Role: cfg.Database.Role,
	})
	if err != nil {
		return err
	}
	m.Pool = pool
	if err := checkSchema(ctx, pool, cfg.Database.Schema); err != nil {
		return err
	}
	if m.Store, err = store.New(cfg.Database.Schema); err != nil {
		return err
	}
	m.Metrics = NewMetrics(pool, m.Store, m.Logger)
	if m.Keyring, err = keyringOf(cfg.Encryption); err != nil {
		return err
	}
	if err := m.syncConfig(ctx); err != nil {
		return err
	}
	m.Apps = newRegistry(cfg, pool, m.Store, m.Keyring, m.LookupEnv)

	if !cfg.Roles.Workers && !cfg.Roles.Reconciler {
		return nil
	}
	workers := river.NewWorkers()
	queues := map[string]river.QueueConfig{}
	if cfg.Roles.Workers {
		if err := m.openWorkers(workers, queues); err != nil {
			return err
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
		// Without LISTEN, River acts on no NOTIFY (which any role that can
		// connect may send) and reads pauses, job cancels and leadership
		// from its tables by polling.
		PollOnly: cfg.River.PollOnly,
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
			if _, err := m.Store.AppUpsert(ctx, tx, a.UpsertParams()); err != nil {
				return err
			}
		}
		return nil
	})
}

// UpsertParams are the settings of the app a as stored: what botq serve
// writes for every configured app, and `botq app set` for one.
func (a AppConfig) UpsertParams() store.AppUpsertParams {
	p := store.AppUpsertParams{
		ID: a.ID, Region: AppRegion(a), BaseURL: a.BaseURL, CompanyKey: a.CompanyKey,
		RateBurst: a.RateBurst, LaneOnFailure: a.LaneOnFailure,
	}
	if a.RateLimit > 0 {
		p.RateLimit = &a.RateLimit
	}
	if a.Concurrency > 0 {
		p.ConcurrencyLimit = &a.Concurrency
	}
	return p
}

// AppRegion is the region of a configured app: CUSTOM when it names a
// base URL.
func AppRegion(a AppConfig) string {
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

// ExternalTokens builds the token sources of apps whose token comes from the
// environment or a file.
func ExternalTokens(cfg Config, env func(string) (string, bool)) map[string]botapi.TokenSource {
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
