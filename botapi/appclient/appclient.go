// Package appclient gives each app its Bot v3 client, authenticated with the
// app's token: one stored encrypted in botq.app (refreshable by botq), or
// one supplied by the environment or a file (never stored; refreshing it is
// the operator's business). Workers and the reconciler share it, so a token
// refresh happens once per app across the whole fleet.
package appclient

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/store"
)

// ErrNoToken is returned when an app has no token botq can use.
var ErrNoToken = errors.New("app has no token (set one with botq token set, or token_env/token_file in the config)")

// Config configures a Registry.
type Config struct {
	Pool  *pgxpool.Pool
	Store *store.Store
	// Keyring opens stored tokens; nil when no encryption key is configured.
	Keyring *store.Keyring
	// External holds tokens from the environment or files, by app id; those
	// apps never use a stored token.
	External map[string]botapi.TokenSource
	// HTTPTimeout bounds one Bot v3 call.
	HTTPTimeout time.Duration
	// MaxConnsPerHost bounds open connections to one gateway (0: 512).
	MaxConnsPerHost int
	// Transport, when set, replaces the default transport (tests).
	Transport http.RoundTripper
}

// Registry hands out per-app clients. It is safe for concurrent use.
type Registry struct {
	cfg  Config
	http *http.Client
	mu   sync.Mutex
	apps map[string]*appEntry
}

type appEntry struct {
	base    string
	client  *botapi.Client
	tokenMu sync.Mutex
	version int
	token   string
}

// New returns a Registry.
func New(cfg Config) *Registry {
	if cfg.HTTPTimeout <= 0 {
		cfg.HTTPTimeout = 20 * time.Second
	}
	if cfg.MaxConnsPerHost <= 0 {
		cfg.MaxConnsPerHost = 512
	}
	tr := cfg.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.MaxConnsPerHost,
			MaxIdleConnsPerHost: cfg.MaxConnsPerHost,
			MaxConnsPerHost:     cfg.MaxConnsPerHost,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
		}
	}
	return &Registry{
		cfg: cfg,
		http: &http.Client{
			Timeout:   cfg.HTTPTimeout,
			Transport: tr,
			// A followed redirect would be a second, unaudited attempt.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		apps: map[string]*appEntry{},
	}
}

// BaseURL returns the gateway of app.
func BaseURL(app *store.App) (string, error) {
	if app.Region == "CUSTOM" {
		return app.BaseURL, nil
	}
	r, err := botapi.ParseRegion(app.Region)
	if err != nil {
		return "", err
	}
	return r.BaseURL(), nil
}

// Client returns the app's client, with the app's current token taken from
// app (as just loaded from the database).
func (r *Registry) Client(app *store.App) (*botapi.Client, error) {
	e, err := r.entry(app)
	if err != nil {
		return nil, err
	}
	if _, ok := r.cfg.External[app.ID]; !ok {
		if err := e.setStored(r.cfg.Keyring, app); err != nil {
			return nil, err
		}
	}
	return e.client, nil
}

func (r *Registry) entry(app *store.App) (*appEntry, error) {
	base, err := BaseURL(app)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.apps[app.ID]; ok && e.base == base {
		return e, nil
	}
	e := &appEntry{base: base}
	var src botapi.TokenSource = tokenFunc(e.current)
	if ext, ok := r.cfg.External[app.ID]; ok {
		src = ext
	}
	c, err := botapi.New(botapi.Config{BaseURL: base, HTTPClient: r.http, Tokens: src})
	if err != nil {
		return nil, err
	}
	e.client = c
	r.apps[app.ID] = e
	return e, nil
}

// setStored takes the token of a freshly loaded app row, opening it only
// when its version changed.
func (e *appEntry) setStored(k *store.Keyring, app *store.App) error {
	e.tokenMu.Lock()
	defer e.tokenMu.Unlock()
	if app.TokenVersion < e.version || (app.TokenVersion == e.version && e.token != "") {
		return nil
	}
	if len(app.TokenCiphertext) == 0 {
		e.version, e.token = app.TokenVersion, ""
		return nil
	}
	if k == nil {
		return fmt.Errorf("app %q has a stored token but no encryption key is configured (BOTQ_ENCRYPTION_KEY)", app.ID)
	}
	tok, err := k.Open(app.ID, app.TokenKeyID, app.TokenCiphertext)
	if err != nil {
		return err
	}
	e.version, e.token = app.TokenVersion, tok
	return nil
}

func (e *appEntry) current(context.Context) (string, error) {
	e.tokenMu.Lock()
	defer e.tokenMu.Unlock()
	if e.token == "" {
		return "", ErrNoToken
	}
	return e.token, nil
}

// tokenFunc adapts a function to botapi.TokenSource.
type tokenFunc func(context.Context) (string, error)

func (f tokenFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// String keeps the token out of formatted output.
func (f tokenFunc) String() string { return "appclient.token([redacted])" }

// External reports whether the app's token comes from outside the database.
func (r *Registry) External(appID string) bool {
	_, ok := r.cfg.External[appID]
	return ok
}

// RefreshResult says what Refresh did.
type RefreshResult struct {
	// Refreshed is true when this call obtained a new token; false when
	// another process had already replaced the token the caller saw.
	Refreshed bool
	App       *store.App
	Response  *botapi.Response
}

// ErrExternalToken is returned when asked to refresh a token botq does not
// own.
var ErrExternalToken = errors.New("the app's token comes from the environment or a file; botq cannot store a refreshed one")

// Refresh exchanges the app's stored token for a new one (PUT
// /bots/v3/tokens/appId/{appId}) and stores it, unless the stored token is
// no longer the one the caller saw (version seenVersion): then another
// process refreshed it already and nothing is called. A per-app advisory lock
// held across the call makes sure two processes never refresh one app at
// once. The refresh is recorded as an event by actor.
func (r *Registry) Refresh(ctx context.Context, appID string, seenVersion int, actor, reason string) (*RefreshResult, error) {
	if r.External(appID) {
		return nil, ErrExternalToken
	}
	if r.cfg.Keyring == nil {
		return nil, errors.New("refresh token: no encryption key is configured (BOTQ_ENCRYPTION_KEY)")
	}
	var res RefreshResult
	err := pgx.BeginFunc(ctx, r.cfg.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(r.cfg.Store.Schema(), appID)); err != nil {
			return fmt.Errorf("lock token of app %q: %w", appID, err)
		}
		app, err := r.cfg.Store.AppGet(ctx, tx, appID)
		if err != nil {
			return err
		}
		if app.TokenVersion != seenVersion {
			res.App = app
			return nil
		}
		c, err := r.Client(app)
		if err != nil {
			return err
		}
		issued, resp, err := c.RefreshToken(ctx, appID)
		res.Response = resp
		if err != nil {
			return fmt.Errorf("refresh token of app %q: %w", appID, err)
		}
		var exp *time.Time
		if t := issued.ExpiresAt(); !t.IsZero() {
			exp = &t
		} else if t, err := botapi.TokenExpiry(issued.Token); err == nil {
			exp = &t
		}
		app, err = r.cfg.Store.AppSetToken(ctx, tx, appID, r.cfg.Keyring.Seal(appID, issued.Token), r.cfg.Keyring.ID(), exp)
		if err != nil {
			return err
		}
		reqID := ""
		if resp != nil {
			reqID = resp.RequestID
		}
		if _, err := r.cfg.Store.EventInsert(ctx, tx, store.EventInsertParams{
			AppID: appID, Kind: "token_refresh", Actor: actor, Reason: reason,
			After: map[string]any{"expires_at": exp, "token_version": app.TokenVersion, "request_id": reqID},
		}); err != nil {
			return err
		}
		res.Refreshed, res.App = true, app
		return nil
	})
	if err != nil {
		return &res, err
	}
	return &res, nil
}

// lockKey is the advisory lock of an app's token.
func lockKey(schema, appID string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("botq-token:" + schema + ":" + appID))
	return int64(h.Sum64() >> 1)
}

// Keyring returns the keyring stored tokens are sealed with (nil if none).
func (r *Registry) Keyring() *store.Keyring { return r.cfg.Keyring }
