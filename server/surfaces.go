package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"riverqueue.com/riverui"

	"github.com/botq/botq/api"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/server/console"
)

// apiAuthenticator resolves bearer tokens against the configured keys,
// which are held as SHA-256 hashes only.
func apiAuthenticator(keys []APIKey) api.Authenticator {
	return func(token string) (api.Principal, bool) {
		k, ok := matchAPIKey(keys, token)
		if !ok {
			return api.Principal{}, false
		}
		return api.Principal{Name: k.Name, Role: k.Role}, true
	}
}

// openSurfaces builds what the HTTP server serves besides health: the /v1
// API, the web console and the River UI (with roles.api), and metrics. It runs after open,
// with the context of the whole run: the River UI's background services
// stop with it.
func (m *Main) openSurfaces(ctx context.Context) error {
	keys, err := ParseAPIKeys(m.Config.HTTP.APIKeys)
	if err != nil {
		return fmt.Errorf("http.api_keys: %w", err)
	}
	m.auth = apiAuthenticator(keys)
	if m.Metrics == nil {
		m.Metrics = NewMetrics(m.Pool, m.Store, m.Logger)
	}
	if !m.Config.Roles.API {
		return nil
	}
	if len(keys) == 0 {
		m.Logger.Warn().Msg("botq: No API keys configured (BOTQ_API_KEYS or http.api_keys_file): /v1, the console and /riverui/ refuse every request")
	}
	if m.Reconciler == nil {
		if m.Reconciler, err = m.newReconciler(); err != nil {
			return err
		}
	}
	m.API, err = api.New(api.Config{
		DB: m.Pool, Store: m.Store, Auth: m.auth, Kinds: jobs.Kinds(), Logger: m.Logger,
		ExternalToken: m.Apps.External, CheckSend: m.Reconciler.CheckSend,
		TrustedOrigins: m.Config.HTTP.TrustedOrigins,
	})
	if err != nil {
		return err
	}
	if m.uiGuard, err = api.NewCrossOriginGuard(m.Config.HTTP.TrustedOrigins); err != nil {
		return fmt.Errorf("http.trusted_origins: %w", err)
	}
	m.Console, err = console.New(console.Config{
		DB: m.Pool, Store: m.Store, SignIn: consoleSignIn(keys), Lookup: consoleLookup(keys),
		Kinds: jobs.Kinds(), CheckSend: m.Reconciler.CheckSend, ExternalToken: m.Apps.External,
		TrustedOrigins: m.Config.HTTP.TrustedOrigins, RiverUI: riverUIPrefix, Logger: m.Logger,
	})
	if err != nil {
		return err
	}
	// River UI needs a River client; a process that works no jobs has
	// none, and an insert-only client (no queues) serves.
	client := m.River
	if client == nil {
		if client, err = river.NewClient(riverpgxv5.New(m.Pool), &river.Config{
			Schema: m.Config.Database.Schema, Logger: SlogFor(m.Logger),
		}); err != nil {
			return fmt.Errorf("new River client for River UI: %w", err)
		}
	}
	ui, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints[pgx.Tx](client, nil),
		Logger:    SlogFor(m.Logger),
		Prefix:    riverUIPrefix,
	})
	if err != nil {
		return fmt.Errorf("new River UI: %w", err)
	}
	if err := ui.Start(ctx); err != nil {
		return fmt.Errorf("start River UI: %w", err)
	}
	m.RiverUI = ui
	m.uiRiver = client
	return nil
}

// everyRole is any valid API key.
var everyRole = []api.Role{api.RoleEnqueuer, api.RoleAuditor, api.RoleOperator}

// mountSurfaces adds the console, the API, the River UI and metrics to
// mux. The console is served at / (every path the others do not take).
// River UI has
// no authentication of its own: auditors may look (GET, HEAD), only
// operators may act (cancel, retry or delete jobs, pause queues), and on
// the jobs of botq's actions by botq's rules (auditRiverUI). Browsers are
// asked for Basic credentials there, with the API key as password.
func (m *Main) mountSurfaces(mux *http.ServeMux) {
	if m.Metrics == nil {
		return // openSurfaces did not run: health only
	}
	metrics := m.Metrics.Handler()
	if m.Config.HTTP.MetricsPublic {
		mux.Handle("GET /metrics", metrics)
	} else {
		mux.Handle("GET /metrics", api.Authorize(m.auth, everyRole, func(w http.ResponseWriter, r *http.Request, _ api.Principal) {
			metrics.ServeHTTP(w, r)
		}))
	}
	if m.API != nil {
		mux.Handle("/v1/", m.API)
	}
	if m.Console != nil {
		mux.Handle("/", m.Console)
	}
	if m.RiverUI != nil {
		ui := m.RiverUI
		look := api.AuthorizeBrowser(m.auth, []api.Role{api.RoleAuditor, api.RoleOperator}, func(w http.ResponseWriter, r *http.Request, _ api.Principal) {
			ui.ServeHTTP(w, r)
		})
		act := api.AuthorizeBrowser(m.auth, []api.Role{api.RoleOperator}, func(w http.ResponseWriter, r *http.Request, p api.Principal) {
			m.auditRiverUI(w, r, p, ui)
		})
		mux.Handle("/riverui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// A browser's write from another site's page, with the
			// operator's Basic credentials the browser cached, is refused
			// before anything else, in River UI's error shape.
			if e := m.uiGuard.Check(r); e != nil {
				writeRiverUIError(w, riverUIError{e.Status, e.Message})
				return
			}
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				look.ServeHTTP(w, r)
				return
			}
			act.ServeHTTP(w, r)
		}))
	}
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
