// Package api is botq's HTTP API under /v1: JSON over stdlib net/http
// routing, bearer API keys with three roles, JSON errors that name the
// offending field, and keyset (cursor) pagination.
//
// Roles: an enqueuer enqueues actions and reads its own; an auditor reads
// everything (actions with their attempts and request records, requests,
// events, apps); an operator also replays, cancels and pauses. Every write by
// an operator is recorded as a botq.event whose actor is "api:<key name>".
//
// The routes are listed once, in Routes; docs/openapi.yaml documents them
// and a test keeps the two in step.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/botq/botq/store"
)

// Role is what an API key may do.
type Role string

// API roles.
const (
	RoleEnqueuer Role = "enqueuer"
	RoleAuditor  Role = "auditor"
	RoleOperator Role = "operator"
)

// Principal is the caller an API key identifies.
type Principal struct {
	Name string
	Role Role
}

// Actor is how the principal is recorded in events and created_by.
func (p Principal) Actor() string { return "api:" + p.Name }

// Authenticator resolves a presented bearer token; ok is false for an
// unknown one. It must take the same time whichever key matches.
type Authenticator func(token string) (p Principal, ok bool)

// Config configures a Server.
type Config struct {
	// DB is the pool the API works on (bulk replays begin a transaction per
	// batch on it).
	DB    store.TxDB
	Store *store.Store
	Auth  Authenticator
	// Kinds are the action kinds filters accept.
	Kinds []string
	// ExternalToken reports whether an app's token comes from the
	// environment or a file (shown in app listings); nil means never.
	ExternalToken func(appID string) bool
	Logger        zerolog.Logger
	// CheckSend asks Khoros, before an unknown action is cancelled, whether
	// its send arrived (reconciler's CheckSend): an error refuses the cancel
	// (ErrConflict when the send reached Khoros). nil asks nothing, and an
	// unknown action is then cancelled possibly sent.
	CheckSend func(ctx context.Context, actionID int64) (*store.SendCheck, error)
	// TrustedOrigins are browser origins whose writes are accepted although
	// they are not the server's own (see CrossOriginGuard).
	TrustedOrigins []string
	// ReplayBatchSize bounds the actions a bulk replay commits per
	// transaction (default 500).
	ReplayBatchSize int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server serves the API. It is safe for concurrent use.
type Server struct {
	cfg   Config
	mux   *http.ServeMux
	guard *CrossOriginGuard
}

// Route is one endpoint: its method, its path pattern (net/http syntax)
// and the roles allowed to call it.
type Route struct {
	Method  string
	Pattern string
	Roles   []Role
	Summary string
	handle  func(*Server) handlerFunc
}

// handlerFunc is an endpoint: it writes its answer or returns an error,
// which is written as JSON (see writeErr).
type handlerFunc func(w http.ResponseWriter, r *http.Request, p Principal) error

var (
	readers  = []Role{RoleAuditor, RoleOperator}
	everyone = []Role{RoleEnqueuer, RoleAuditor, RoleOperator}
	writers  = []Role{RoleOperator}
)

// Routes returns every API route.
func Routes() []Route {
	return []Route{
		{"POST", "/v1/actions", []Role{RoleEnqueuer, RoleOperator}, "Enqueue an action", func(s *Server) handlerFunc { return s.enqueue }},
		{"GET", "/v1/actions", everyone, "List actions (an enqueuer sees its own)", func(s *Server) handlerFunc { return s.listActions }},
		{"GET", "/v1/actions/{id}", everyone, "Get an action with its attempts, request records, events and replays", func(s *Server) handlerFunc { return s.getAction }},
		{"POST", "/v1/actions/{id}/cancel", writers, "Cancel an action that is not in flight", func(s *Server) handlerFunc { return s.cancelAction }},
		{"POST", "/v1/actions/{id}/replay", writers, "Replay one action", func(s *Server) handlerFunc { return s.replayAction }},
		{"POST", "/v1/replay", writers, "Replay many actions by filter", func(s *Server) handlerFunc { return s.replayBulk }},
		{"GET", "/v1/requests", readers, "List request records", func(s *Server) handlerFunc { return s.listRequests }},
		{"GET", "/v1/requests/export", readers, "Export request records as CSV or JSON (streamed)", func(s *Server) handlerFunc { return s.exportRequests }},
		{"GET", "/v1/requests/{request_id}", readers, "Get one request record", func(s *Server) handlerFunc { return s.getRequest }},
		{"GET", "/v1/events", readers, "List operator and system events", func(s *Server) handlerFunc { return s.listEvents }},
		{"GET", "/v1/apps", readers, "List apps with their health and queue", func(s *Server) handlerFunc { return s.listApps }},
		{"GET", "/v1/apps/{id}", readers, "Get one app with its health and queue", func(s *Server) handlerFunc { return s.getApp }},
		{"POST", "/v1/apps/{id}/pause", writers, "Pause an app's calls", func(s *Server) handlerFunc { return s.pauseApp }},
		{"POST", "/v1/apps/{id}/resume", writers, "Resume an app's calls", func(s *Server) handlerFunc { return s.resumeApp }},
	}
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.DB == nil || cfg.Store == nil || cfg.Auth == nil {
		return nil, errors.New("new API server: DB, Store and Auth are required")
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
	guard, err := NewCrossOriginGuard(cfg.TrustedOrigins)
	if err != nil {
		return nil, fmt.Errorf("new API server: trusted origins: %w", err)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), guard: guard}
	for _, rt := range Routes() {
		h := rt.handle(s)
		s.mux.Handle(rt.Method+" "+rt.Pattern, Authorize(cfg.Auth, rt.Roles, func(w http.ResponseWriter, r *http.Request, p Principal) {
			if err := h(w, r, p); err != nil {
				s.writeErr(w, r, err)
			}
		}))
	}
	// Anything else under /v1 is a JSON 404, after authentication, so the
	// API's shape is not revealed to callers without a key.
	s.mux.Handle("/v1/", Authorize(cfg.Auth, everyone, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		WriteError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path, "")
	}))
	return s, nil
}

// ServeHTTP serves the API; mount it at /v1/. A browser's write from
// another site's page is refused before anything else (CrossOriginGuard).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e := s.guard.Check(r); e != nil {
		WriteError(w, e.Status, e.Code, e.Message, e.Field)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Authorize admits requests with an API key of one of roles: no or an
// unknown key is 401, another role 403, both as JSON errors. The key comes
// as a bearer token, or as the password of HTTP Basic credentials (any user
// name) for browsers.
func Authorize(auth Authenticator, roles []Role, next func(http.ResponseWriter, *http.Request, Principal)) http.Handler {
	return authorize(auth, roles, `Bearer realm="botq"`, next)
}

// AuthorizeBrowser is Authorize for pages a browser opens (River UI): its
// 401 asks for Basic credentials, so the browser prompts for them; give the
// API key as the password.
func AuthorizeBrowser(auth Authenticator, roles []Role, next func(http.ResponseWriter, *http.Request, Principal)) http.Handler {
	return authorize(auth, roles, `Basic realm="botq", charset="UTF-8"`, next)
}

func authorize(auth Authenticator, roles []Role, challenge string, next func(http.ResponseWriter, *http.Request, Principal)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := presentedKey(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", challenge)
			WriteError(w, http.StatusUnauthorized, "unauthorized", "an API key is required: Authorization: Bearer <key>", "Authorization")
			return
		}
		p, ok := auth(token)
		if !ok {
			w.Header().Set("WWW-Authenticate", challenge)
			WriteError(w, http.StatusUnauthorized, "unauthorized", "the API key is not valid", "Authorization")
			return
		}
		for _, role := range roles {
			if p.Role == role {
				next(w, r, p)
				return
			}
		}
		WriteError(w, http.StatusForbidden, "forbidden",
			fmt.Sprintf("role %s may not %s %s (allowed: %s)", p.Role, r.Method, r.URL.Path, joinRoles(roles)), "")
	})
}

func joinRoles(roles []Role) string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = string(r)
	}
	return strings.Join(out, ", ")
}

func presentedKey(r *http.Request) (string, bool) {
	if _, password, ok := r.BasicAuth(); ok {
		return password, password != ""
	}
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// Error is an API error: an HTTP status, a stable code, a message and the
// offending field (a query parameter, a JSON field or a header), if any.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
}

func (e *Error) Error() string { return e.Message }

func badFilter(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_filter", Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

func badBody(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return &Error{Status: http.StatusBadRequest, Code: "invalid_body", Field: field, Message: msg}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// WriteError writes {"error":{"code":...,"message":...,"field":...}}.
func WriteError(w http.ResponseWriter, status int, code, message, field string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message, Field: field}})
}

// writeErr maps an endpoint's error to its JSON answer. Unexpected errors
// are logged and answered without details.
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var apiErr *Error
	var ve *store.ValidationError
	refused, isRefused := store.IsReplayRefused(err)
	switch {
	case errors.As(err, &apiErr):
		WriteError(w, apiErr.Status, apiErr.Code, apiErr.Message, apiErr.Field)
	case errors.As(err, &ve):
		WriteError(w, http.StatusBadRequest, "invalid_action", strings.TrimPrefix(ve.Error(), "botq: "), ve.Field)
	case isRefused:
		msg := refused.Error()
		if refused.Option != "" {
			msg += "; set " + refused.Option + " to replay it anyway"
		}
		WriteError(w, http.StatusConflict, "replay_refused", msg, refused.Option)
	case errors.Is(err, store.ErrNotFound):
		WriteError(w, http.StatusNotFound, "not_found", err.Error(), "")
	case errors.Is(err, store.ErrInFlight):
		WriteError(w, http.StatusConflict, "in_flight", err.Error(), "")
	case errors.Is(err, store.ErrForbidden):
		WriteError(w, http.StatusForbidden, "forbidden", strings.TrimPrefix(err.Error(), "forbidden: "), "app_id")
	case errors.Is(err, store.ErrKeyReused):
		WriteError(w, http.StatusConflict, "idempotency_key_reused", strings.TrimPrefix(err.Error(), "conflict: idempotency key reused: "), "idempotency_key")
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrIllegalTransition):
		WriteError(w, http.StatusConflict, "conflict", err.Error(), "")
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
	default:
		s.cfg.Logger.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("api: Request failed")
		WriteError(w, http.StatusInternalServerError, "internal", "internal error; see botq's log", "")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// IsReadTimeout reports whether err is the end of a request body that did
// not arrive within the server's read timeout.
func IsReadTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// maxBody bounds request bodies; a payload may be 256 KiB.
const maxBody = 1 << 20

// decodeBody decodes a JSON body strictly. An empty body decodes as {}
// when optional.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	if IsReadTimeout(err) {
		return &Error{Status: http.StatusRequestTimeout, Code: "request_timeout",
			Message: "the request body did not arrive in time (http.read_timeout)"}
	}
	switch {
	case err == nil:
		if dec.More() {
			return badBody("", "the body must be one JSON object")
		}
		return nil
	case errors.Is(err, io.EOF) && optional:
		return nil
	case errors.Is(err, io.EOF):
		return badBody("", "a JSON body is required")
	case errors.As(err, &syntax):
		return badBody("", "malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return badBody(typ.Field, "must be %s, not %s", typ.Type, typ.Value)
	case errors.As(err, &tooBig):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "invalid_body", Message: fmt.Sprintf("the body is larger than %d bytes", maxBody)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badBody(field, "is not a known field")
	}
	return badBody("", "%v", err)
}
