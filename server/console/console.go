package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Config configures a Console.
type Config struct {
	// DB is the pool the console reads and acts on.
	DB    store.TxDB
	Store *store.Store
	// SignIn resolves the API key a person signs in with: the principal it
	// names and the key's fingerprint, which the session keeps (see
	// console_session in migrations/00002_botq_tables.sql); ok is false for
	// an unknown key.
	SignIn func(key string) (p api.Principal, fingerprint []byte, ok bool)
	// Lookup resolves a session's key fingerprint to the principal that
	// key names now; ok is false when no configured key has it any more.
	Lookup func(fingerprint []byte) (p api.Principal, ok bool)
	// Kinds are the action kinds filters offer.
	Kinds []string
	// CheckSend asks Khoros, before an unknown action is cancelled, whether
	// its send arrived (as api.Config's); nil asks nothing.
	CheckSend func(ctx context.Context, actionID int64) (*store.SendCheck, error)
	// ExternalToken reports whether an app's token comes from the
	// environment or a file; nil means never.
	ExternalToken func(appID string) bool
	// TrustedOrigins are browser origins whose writes are accepted although
	// they are not the server's own (api.CrossOriginGuard).
	TrustedOrigins []string
	// RiverUI is River UI's path prefix ("/riverui"), for links to an
	// action's River job; "" shows none.
	RiverUI string
	// SessionTTL is how long a session lasts (default 8h).
	SessionTTL time.Duration
	// ReplayBatchSize bounds the actions a replay by filter commits per
	// transaction (default 500).
	ReplayBatchSize int
	Logger          zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Console serves the console's pages. It is safe for concurrent use.
type Console struct {
	cfg    Config
	mux    *http.ServeMux
	guard  *api.CrossOriginGuard
	pages  map[string]*template.Template
	static http.Handler
}

// DefaultSessionTTL is how long a session lasts unless configured: a
// working day, after which the key is asked for again.
const DefaultSessionTTL = 8 * time.Hour

// New returns a Console.
func New(cfg Config) (*Console, error) {
	if cfg.DB == nil || cfg.Store == nil || cfg.SignIn == nil || cfg.Lookup == nil {
		return nil, errors.New("new console: DB, Store, SignIn and Lookup are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.ReplayBatchSize <= 0 {
		cfg.ReplayBatchSize = 500
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ExternalToken == nil {
		cfg.ExternalToken = func(string) bool { return false }
	}
	guard, err := api.NewCrossOriginGuard(cfg.TrustedOrigins)
	if err != nil {
		return nil, fmt.Errorf("new console: trusted origins: %w", err)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("new console: %w", err)
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, mux: http.NewServeMux(), guard: guard, pages: pages,
		static: http.StripPrefix("/static/", http.FileServerFS(static))}
	c.routes()
	return c, nil
}

// readers may look; operators may also act.
var (
	readers   = []api.Role{api.RoleAuditor, api.RoleOperator}
	operators = []api.Role{api.RoleOperator}
)

func (c *Console) routes() {
	c.mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		c.static.ServeHTTP(w, r)
	})
	c.mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	c.mux.HandleFunc("GET /signin", c.signInPage)
	c.mux.HandleFunc("POST /signin", c.signIn)
	c.mux.Handle("POST /signout", c.page(readers, c.signOut))
	c.mux.Handle("GET /{$}", c.page(readers, c.overview))
	c.mux.Handle("GET /actions", c.page(readers, c.actions))
	c.mux.Handle("GET /actions/export", c.page(readers, c.exportActions))
	c.mux.Handle("GET /actions/{id}", c.page(readers, c.action))
	c.mux.Handle("POST /actions/{id}/replay", c.page(operators, c.replay))
	c.mux.Handle("POST /actions/{id}/cancel", c.page(operators, c.cancel))
	c.mux.Handle("GET /replay", c.page(operators, c.replayPlan))
	c.mux.Handle("POST /replay", c.page(operators, c.replayBulk))
	c.mux.Handle("GET /conversation", c.page(readers, c.conversation))
	c.mux.Handle("GET /requests", c.page(readers, c.requests))
	c.mux.Handle("GET /requests/export", c.page(readers, c.exportRequests))
	c.mux.Handle("GET /requests/{id}", c.page(readers, c.request))
	c.mux.Handle("GET /events", c.page(readers, c.events))
	c.mux.Handle("GET /apps", c.page(readers, c.apps))
	c.mux.Handle("POST /apps/{id}/pause", c.page(operators, c.pause))
	c.mux.Handle("POST /apps/{id}/resume", c.page(operators, c.resume))
	c.mux.Handle("/", c.page(readers, func(http.ResponseWriter, *http.Request, *user) error {
		return &httpError{Status: http.StatusNotFound, Message: "There is no such page."}
	}))
}

// contentSecurityPolicy allows the console's own stylesheet and forms and
// nothing else: no script at all, no frame, no other origin.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP serves the console; mount it at /. A browser's POST from
// another site's page is refused before anything else.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	tw := &timingWriter{ResponseWriter: w, start: time.Now()}
	if e := c.guard.Check(r); e != nil {
		c.renderError(tw, r, nil, &httpError{Status: e.Status, Message: e.Message})
		return
	}
	c.mux.ServeHTTP(tw, r)
}

// timingWriter adds the time the server took until the answer's headers
// as Server-Timing (app;dur=milliseconds), which a browser's developer
// tools show.
type timingWriter struct {
	http.ResponseWriter
	start   time.Time
	written bool
}

func (t *timingWriter) WriteHeader(code int) {
	if !t.written {
		t.written = true
		ms := float64(time.Since(t.start).Microseconds()) / 1000
		t.Header().Set("Server-Timing", "app;dur="+strconv.FormatFloat(ms, 'f', 1, 64))
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *timingWriter) Write(b []byte) (int, error) {
	if !t.written {
		t.WriteHeader(http.StatusOK)
	}
	return t.ResponseWriter.Write(b)
}

// Flush lets an export stream.
func (t *timingWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// user is the signed-in person of a request.
type user struct {
	api.Principal
	// CSRF is the token every form of the session carries.
	CSRF string
}

// Operator reports whether the user may act.
func (u *user) Operator() bool { return u != nil && u.Role == api.RoleOperator }

// Actor is how the user is recorded in events.
func (u *user) Actor() string { return "console:" + u.Name }

// handler is a page: it writes its answer or returns an error, which is
// shown as an error page (see fail).
type handler func(w http.ResponseWriter, r *http.Request, u *user) error

// page admits signed-in users of roles: a request without a session is
// sent to the sign-in page (a GET) or refused (a POST, which also needs
// the session's CSRF token).
func (c *Console) page(roles []api.Role, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := c.currentUser(r)
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		if u == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/signin?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.renderError(w, r, nil, &httpError{Status: http.StatusUnauthorized,
				Message: "You are not signed in, or your session has ended: sign in again, then repeat what you did."})
			return
		}
		if !hasRole(u.Role, roles) {
			c.renderError(w, r, u, &httpError{Status: http.StatusForbidden,
				Message: fmt.Sprintf("Your key's role, %s, may not do this: only an operator may act.", u.Role)})
			return
		}
		if r.Method == http.MethodPost && !validCSRF(r.PostFormValue("csrf"), u.CSRF) {
			c.renderError(w, r, u, &httpError{Status: http.StatusForbidden,
				Message: "This form's security token is missing or wrong (a form from an earlier session, or from another site); nothing was done. Reload the page and try again."})
			return
		}
		if err := h(w, r, u); err != nil {
			c.fail(w, r, u, err)
		}
	})
}

func hasRole(r api.Role, roles []api.Role) bool {
	for _, x := range roles {
		if r == x {
			return true
		}
	}
	return false
}

// httpError is an error page: a status and what to tell the person.
type httpError struct {
	Status  int
	Message string
}

func (e *httpError) Error() string { return e.Message }

func badRequest(format string, args ...any) *httpError {
	return &httpError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// fail shows err as an error page: botq's refusals as what they are,
// anything unexpected as a 500, logged.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, u *user, err error) {
	var he *httpError
	var ve *store.ValidationError
	refused, isRefused := store.IsReplayRefused(err)
	switch {
	case errors.As(err, &he):
	case isRefused:
		msg := refused.Error()
		if refused.Option != "" {
			msg += ". Tick “" + optionLabel(refused.Option) + "” to replay it anyway."
		}
		he = &httpError{Status: http.StatusConflict, Message: msg}
	case errors.As(err, &ve):
		he = badRequest("%s", strings.TrimPrefix(ve.Error(), "botq: "))
	case errors.Is(err, store.ErrNotFound):
		he = &httpError{Status: http.StatusNotFound, Message: "Not found: " + err.Error()}
	case errors.Is(err, store.ErrInFlight), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrIllegalTransition):
		he = &httpError{Status: http.StatusConflict, Message: err.Error()}
	case r.Context().Err() != nil:
		return // the browser went away
	default:
		c.cfg.Logger.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("console: Request failed")
		he = &httpError{Status: http.StatusInternalServerError, Message: "Something went wrong; botq's log says what."}
	}
	c.renderError(w, r, u, he)
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, u *user, e *httpError) {
	c.render(w, r, u, e.Status, "error", http.StatusText(e.Status), e)
}

// view is what every page's template gets.
type view struct {
	Title   string
	Nav     string
	User    *user
	RiverUI string
	Now     time.Time
	Data    any
}

// navOf is the navigation entry a page belongs to.
var navOf = map[string]string{
	"overview": "overview", "actions": "actions", "action": "actions", "conversation": "actions",
	"replay_plan": "actions", "replay_done": "actions", "requests": "requests", "request": "requests",
	"events": "events", "apps": "apps",
}

// render writes the page name with data. The page is rendered whole
// before anything is sent, so a template error is a clean 500.
func (c *Console) render(w http.ResponseWriter, r *http.Request, u *user, status int, name, title string, data any) {
	t, ok := c.pages[name]
	if !ok {
		panic("console: no page template " + name)
	}
	var buf bytes.Buffer
	v := view{Title: title, Nav: navOf[name], User: u, RiverUI: c.cfg.RiverUI, Now: c.cfg.Now().UTC(), Data: data}
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		c.cfg.Logger.Error().Err(err).Str("page", name).Msg("console: Page failed to render")
		http.Error(w, "the page failed to render; botq's log says why", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// parsePages parses each page's template with the layout.
func parsePages() (map[string]*template.Template, error) {
	files, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "templates/"), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/partials.html", f)
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}
