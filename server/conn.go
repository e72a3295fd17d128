package server

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/botq/botq/botapi/appclient"
	"github.com/botq/botq/reconciler"
	"github.com/botq/botq/store"
)

// Conn is one operator command's connection to botq's schema (botq actions,
// app, token, health, ...). Its apps' Bot v3 clients and its check of a send
// are built from the configuration as Main builds its own, so a command
// calls Khoros with the tokens, timeouts and reconciler settings the
// workers use.
type Conn struct {
	Config Config
	Pool   *pgxpool.Pool
	Store  *store.Store
	// Apps holds the per-app clients; without an encryption key only apps
	// whose token comes from the environment or a file can call.
	Apps *appclient.Registry
}

// Connect opens a Conn with a small pool named appName. lookupEnv reads
// the environment (token_env of apps).
func Connect(ctx context.Context, cfg Config, lookupEnv func(string) (string, bool), appName string) (*Conn, error) {
	kr, err := keyringOf(cfg.Encryption)
	if err != nil {
		return nil, err
	}
	pool, err := store.NewPool(ctx, cfg.Database.URL, cfg.Database.Schema, store.PoolOptions{MaxConns: 4, AppName: appName, Role: cfg.Database.Role})
	if err != nil {
		return nil, err
	}
	s, err := store.New(cfg.Database.Schema)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Conn{Config: cfg, Pool: pool, Store: s, Apps: newRegistry(cfg, pool, s, kr, lookupEnv)}, nil
}

// Close closes the pool.
func (c *Conn) Close() { c.Pool.Close() }

// CheckSend asks Khoros about the send of an unknown action before it is
// cancelled (reconciler's CheckSend); nil for any other action.
func (c *Conn) CheckSend(ctx context.Context, actionID int64) (*store.SendCheck, error) {
	r, err := reconciler.New(reconcilerConfig(c.Config, c.Pool, c.Store, c.Apps, zerolog.Nop()))
	if err != nil {
		return nil, err
	}
	return r.CheckSend(ctx, actionID)
}

// newRegistry returns the per-app Bot v3 clients of cfg.
func newRegistry(cfg Config, pool *pgxpool.Pool, s *store.Store, kr *store.Keyring, lookupEnv func(string) (string, bool)) *appclient.Registry {
	return appclient.New(appclient.Config{
		Pool: pool, Store: s, Keyring: kr, External: ExternalTokens(cfg, lookupEnv),
		HTTPTimeout: cfg.Khoros.HTTPTimeout,
	})
}

// reconcilerConfig is the reconciler of cfg's settings.
func reconcilerConfig(cfg Config, pool *pgxpool.Pool, s *store.Store, apps *appclient.Registry, logger zerolog.Logger) reconciler.Config {
	rc := cfg.Reconciler
	return reconciler.Config{
		Pool: pool, Store: s, Apps: apps, Logger: logger,
		Interval: rc.Interval, SingleGetMax: rc.SingleGetMax, ListMaxWait: rc.ListMaxWait, MaxWindow: rc.MaxWindow,
		AmbiguousGrace: rc.AmbiguousGrace, MaxReleases: rc.MaxReleases, RecordKhorosOrigin: rc.RecordKhorosOrigin,
		TokenRefreshBefore:    rc.TokenRefreshBefore,
		CompletedJobRetention: cfg.River.MaintenanceRetention,
	}
}
