package sim

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults of [Options].
const (
	DefaultSettleDelayMax    = 2 * time.Second
	DefaultTokenTTL          = 90 * 24 * time.Hour
	DefaultTokenGrace        = 10 * time.Minute
	DefaultCompanyKey        = "botq-sim"
	DefaultBootstrapUser     = "botq"
	DefaultBootstrapPassword = "botq"
	DefaultMaxCallLog        = 100_000
	DefaultListen            = "127.0.0.1:8089"
	maxRequestBody           = 1 << 20
)

// Options configures a [Server]. The zero value is usable.
type Options struct {
	// Seed drives every random choice (request ids, settle delays, record
	// errors, faults, token ids, the signing secret): the same seed and the
	// same sequence of calls give the same answers.
	Seed int64
	// Now is the clock. Records settle and tokens expire by it, computed
	// lazily when read (there are no timers). Default time.Now.
	Now func() time.Time
	// SettleDelayMin and SettleDelayMax bound the delay, drawn per record,
	// after which an accepted (202) request leaves PENDING. Both zero means
	// 0..2s. A negative SettleDelayMax settles records at creation.
	SettleDelayMin time.Duration
	SettleDelayMax time.Duration
	// ErrorRate is the fraction of accepted requests whose record ends in
	// ERROR (details {"code","message"}) instead of SUCCESS.
	ErrorRate float64
	// TokenTTL is the lifetime of issued tokens (default 90 days) and
	// TokenGrace how long a refreshed token stays valid (default 10 minutes).
	TokenTTL   time.Duration
	TokenGrace time.Duration
	// BootstrapUser and BootstrapPassword are the HTTP Basic credentials the
	// Care v2 token endpoint accepts (default "botq"/"botq").
	BootstrapUser     string
	BootstrapPassword string
	// CompanyKey is the company of apps created without one (default "botq-sim").
	CompanyKey string
	// MaxCallLog bounds the call log (default 100,000 calls, oldest dropped
	// first; negative keeps none). Counts are exact regardless.
	MaxCallLog int
	// CallLogBodies keeps request bodies in the call log.
	CallLogBodies bool
	// MaxRecords bounds the request records kept, oldest evicted first
	// (0 = unlimited). Each record holds its request body.
	MaxRecords int
	// Listen is the address [Server.ListenAndServe] uses (default 127.0.0.1:8089).
	Listen string
}

// Server is the Bot v3 simulator: an http.Handler plus its state. It serves
// /bots/v3/..., /tokens/appId/{appId} (the token paths without the prefix),
// the Care v2 bootstrap /api/v2/tokens/khorosapi/ownerId/{appId}, and the
// admin API under /_sim/. It is safe for concurrent use.
type Server struct {
	opts   Options
	now    func() time.Time
	secret []byte
	mux    *http.ServeMux

	rndMu sync.Mutex
	rnd   *rand.Rand

	mu sync.Mutex // guards the simulated Khoros state below
	st *state

	faultMu sync.Mutex
	faults  map[faultKey]*faultRule

	logMu sync.Mutex
	log   *callLog

	closeOnce sync.Once
	closed    chan struct{}
}

// New returns a Server for opts.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SettleDelayMin == 0 && opts.SettleDelayMax == 0 {
		opts.SettleDelayMax = DefaultSettleDelayMax
	}
	if opts.SettleDelayMax > 0 && opts.SettleDelayMax < opts.SettleDelayMin {
		opts.SettleDelayMax = opts.SettleDelayMin
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.TokenGrace <= 0 {
		opts.TokenGrace = DefaultTokenGrace
	}
	if opts.BootstrapUser == "" {
		opts.BootstrapUser = DefaultBootstrapUser
	}
	if opts.BootstrapPassword == "" {
		opts.BootstrapPassword = DefaultBootstrapPassword
	}
	if opts.CompanyKey == "" {
		opts.CompanyKey = DefaultCompanyKey
	}
	if opts.MaxCallLog == 0 {
		opts.MaxCallLog = DefaultMaxCallLog
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	sum := sha512.Sum512(binary.LittleEndian.AppendUint64([]byte("botq-sim-secret"), uint64(opts.Seed)))
	s := &Server{
		opts:   opts,
		now:    opts.Now,
		secret: sum[:],
		closed: make(chan struct{}),
	}
	s.resetLocked()
	s.routes()
	return s
}

// resetLocked (re)creates all state; callers hold no lock or all locks.
func (s *Server) resetLocked() {
	s.rnd = rand.New(rand.NewPCG(uint64(s.opts.Seed), 0x62_6f_74_71)) // "botq"
	s.st = newState()
	s.faults = map[faultKey]*faultRule{}
	s.log = newCallLog(s.opts.MaxCallLog)
}

// Reset forgets every app, token, registration, conversation, record, fault
// and logged call, and reseeds the generator.
func (s *Server) Reset() {
	// Lock order everywhere: mu or faultMu before rndMu; logMu alone.
	s.mu.Lock()
	s.faultMu.Lock()
	s.logMu.Lock()
	s.rndMu.Lock()
	s.resetLocked()
	s.rndMu.Unlock()
	s.logMu.Unlock()
	s.faultMu.Unlock()
	s.mu.Unlock()
}

// Close releases calls blocked by a hang fault. The Server keeps answering
// other calls; closing it twice is harmless.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

func (s *Server) float64() float64 {
	s.rndMu.Lock()
	defer s.rndMu.Unlock()
	return s.rnd.Float64()
}

func (s *Server) int64n(n int64) int64 {
	s.rndMu.Lock()
	defer s.rndMu.Unlock()
	return s.rnd.Int64N(n)
}

func (s *Server) newID() [16]byte {
	var b [16]byte
	s.rndMu.Lock()
	binary.LittleEndian.PutUint64(b[0:8], s.rnd.Uint64())
	binary.LittleEndian.PutUint64(b[8:16], s.rnd.Uint64())
	s.rndMu.Unlock()
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return b
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// ListenAndServe serves on s.Options.Listen until ctx is done; see [ListenAndServe].
func (s *Server) ListenAndServe(ctx context.Context) error {
	return ListenAndServe(ctx, s.opts.Listen, s)
}

// ListenAndServe serves s on addr until ctx is done, then shuts down within
// five seconds (hung calls are released first).
func ListenAndServe(ctx context.Context, addr string, s *Server) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return Serve(ctx, ln, s)
}

// Serve is ListenAndServe on an existing listener.
func Serve(ctx context.Context, ln net.Listener, s *Server) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve simulator: %w", err)
	case <-ctx.Done():
	}
	_ = s.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down simulator: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve simulator: %w", err)
	}
	return nil
}

// call is one API request in flight.
type call struct {
	ep    uint8
	r     *http.Request
	now   time.Time
	nowMs int64
	rid   [16]byte
	id    string
	body  []byte
	tok   *token // the presented token, if the simulator issued it (valid or not)
	app   *app   // the token's app when the token is valid
}

// reply is a handler's answer. body is marshalled after the state lock is
// released; raw, when set, is written as is.
type reply struct {
	status int
	body   any
	raw    []byte
	header map[string]string
	// record decides the request record: recAuto follows the status,
	// recNone creates none, recSync settles a 2xx at once.
	record uint8
	nk     string
	ext    string
	// msg is the first error message, for the ERROR record's details.
	msg string
}

const (
	recAuto uint8 = iota
	recNone
	recSync
)

type handler func(c *call) reply

const (
	authBearer = iota
	authBasic
)

func (s *Server) routes() {
	m := http.NewServeMux()
	api := func(pattern string, ep uint8, auth int, h handler) {
		m.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { s.serveAPI(w, r, ep, auth, h) })
	}
	const reg = "/bots/v3/registrations"
	const regOne = reg + "/network/{nk}/externalId/{ext}/appId/{app}"
	api("POST "+reg, epRegCreate, authBearer, s.hRegCreate)
	api("PUT "+reg, epRegUpdate, authBearer, s.hRegUpdate)
	api("GET "+reg, epRegList, authBearer, s.hRegList)
	api("GET "+reg+"/network/{nk}/externalId/{ext}", epRegPage, authBearer, s.hRegPage)
	api("GET "+regOne, epRegGet, authBearer, s.hRegGet)
	api("DELETE "+regOne, epRegDelete, authBearer, s.hRegDelete)
	api("PUT "+regOne+"/mode/{mode}", epMode, authBearer, s.hMode)
	api("POST /bots/v3/respond", epRespond, authBearer, s.hRespond)
	api("GET /bots/v3/control/network/{nk}/externalId/{ext}/author/{author}", epControlGet, authBearer, s.hControlGet)
	api("PUT /bots/v3/control", epControl, authBearer, s.hControl)
	api("PUT /bots/v3/priority", epPriority, authBearer, s.action(epPriority))
	api("PUT /bots/v3/tag", epTag, authBearer, s.action(epTag))
	api("PUT /bots/v3/tag/remove", epTagRemove, authBearer, s.action(epTagRemove))
	api("PUT /bots/v3/note", epNote, authBearer, s.action(epNote))
	api("PUT /bots/v3/workqueue", epWorkQueue, authBearer, s.action(epWorkQueue))
	api("PUT /bots/v3/resolve", epResolve, authBearer, s.action(epResolve))
	api("PUT /bots/v3/authors/attributes", epAuthorAttributes, authBearer, s.action(epAuthorAttributes))
	api("PUT /bots/v3/authors", epAuthorUpdate, authBearer, s.action(epAuthorUpdate))
	api("POST /bots/v3/form", epForm, authBearer, s.action(epForm))
	api("GET /bots/v3/request/{id}", epRequestGet, authBearer, s.hRequestGet)
	api("GET /bots/v3/request/appId/{app}", epRequestList, authBearer, s.hRequestList)
	api("GET /bots/v3/health/appId/{app}", epHealth, authBearer, s.hHealth)
	for _, prefix := range []string{"/bots/v3", ""} {
		api("PUT "+prefix+"/tokens/appId/{app}", epTokenRefresh, authBearer, s.hTokenRefresh)
		api("DELETE "+prefix+"/tokens/appId/{app}", epTokenRevoke, authBearer, s.hTokenRevoke)
	}
	api("POST /api/v2/tokens/khorosapi/ownerId/{app}", epBootstrap, authBasic, s.hBootstrap)
	api("GET /api/v2/tokens/khorosapi/ownerId/{app}", epBootstrapGet, authBasic, s.hBootstrapGet)
	s.adminRoutes(m)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.serveAPI(w, r, epUnknown, authBasic, func(*call) reply {
			return reply{status: http.StatusNotFound, body: gatewayMessage{"Not Found"}, record: recNone}
		})
	})
	s.mux = m
}

type gatewayMessage struct {
	Message string `json:"message"`
}

// serveAPI is the pipeline of every simulated call: id, body, faults,
// authentication, the handler under the state lock, the request record, the
// response (or a drop), the call log.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, ep uint8, auth int, h handler) {
	now := s.now()
	c := &call{ep: ep, r: r, now: now, nowMs: now.UnixMilli(), rid: s.newID()}
	c.id = formatID(c.rid)
	lc := &loggedCall{s: s, c: c, entry: entry{atNanos: now.UnixNano(), path: r.URL.Path, rid: c.rid, endpoint: ep, method: methodCode(r.Method)}}
	defer lc.done()

	if !s.readBody(c, lc, auth) {
		return
	}
	p := s.plan(endpointNames[ep], lc.app)
	if !s.delay(r, p, lc) {
		return
	}
	if p.hang {
		lc.fault = faultHang
		s.holdUntilGone(r)
	}
	w.Header().Set("x-amzn-RequestId", c.id)
	if p.errCode != 0 || p.rateLimit {
		s.writeFault(w, c, p, lc)
		return
	}
	rep := s.answer(c, auth, h)
	lc.status = uint16(rep.status)
	switch {
	case p.drop:
		lc.fault, lc.status = faultDrop, 0
		lc.done()
		drop(w)
	case p.stall:
		lc.fault, lc.status = faultStall, 0
		lc.done()
		s.holdUntilGone(r)
	default:
		lc.done()
		s.write(w, rep)
	}
}

// loggedCall is a call's entry in the call log, added once. The call is
// logged before its answer (or drop) goes out: a client that reads the log
// as soon as its call returns must find it there. Calls that end without an
// answer are logged on return.
type loggedCall struct {
	entry
	s      *Server
	c      *call
	logged bool
}

func (lc *loggedCall) done() {
	if lc.logged {
		return
	}
	lc.logged = true
	if lc.s.opts.CallLogBodies && len(lc.c.body) > 0 {
		lc.body = lc.c.body
	}
	lc.s.logMu.Lock()
	lc.s.log.add(lc.entry)
	lc.s.logMu.Unlock()
}

// readBody reads the call's body and identifies its app; false when the
// body could not be read.
func (s *Server) readBody(c *call, lc *loggedCall, auth int) bool {
	body, err := io.ReadAll(io.LimitReader(c.r.Body, maxRequestBody+1))
	if err != nil {
		lc.status = 400
		return false
	}
	if cap(body)-len(body) > 32 {
		body = bytes.Clone(body) // records keep the body: do not keep ReadAll's slack too
	}
	c.body = body
	if auth == authBearer {
		s.identify(c)
		if c.tok != nil {
			lc.app = c.tok.app.id
		}
	} else if c.ep == epBootstrap || c.ep == epBootstrapGet {
		lc.app = c.r.PathValue("app")
	}
	return true
}

// delay sleeps the call's planned latency; false when the client gave up
// meanwhile (nothing is applied).
func (s *Server) delay(r *http.Request, p faultPlan, lc *loggedCall) bool {
	if p.delay <= 0 {
		return true
	}
	t := time.NewTimer(p.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		lc.fault = faultLatency
		return false
	}
}

// holdUntilGone blocks until the client goes away or the Server is closed,
// then closes the connection with no response.
func (s *Server) holdUntilGone(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.closed:
	}
	panic(http.ErrAbortHandler)
}

// writeFault answers an injected error or 429, applying nothing.
func (s *Server) writeFault(w http.ResponseWriter, c *call, p faultPlan, lc *loggedCall) {
	if p.errCode != 0 {
		lc.fault, lc.status = faultError, uint16(p.errCode)
		lc.done()
		s.write(w, faultReply(c, p.errCode))
		return
	}
	lc.fault, lc.status = faultRateLimit, http.StatusTooManyRequests
	w.Header().Set("Retry-After", p.retryAfter)
	lc.done()
	s.write(w, reply{status: http.StatusTooManyRequests, body: gatewayMessage{"Too Many Requests"}})
}

// answer authenticates the call and runs its handler under the state lock,
// creating its request record.
func (s *Server) answer(c *call, auth int, h handler) reply {
	r := c.r
	switch {
	case len(c.body) > maxRequestBody:
		return reply{status: http.StatusRequestEntityTooLarge, body: gatewayMessage{"Request Too Long"}, record: recNone}
	case auth == authBearer && r.Header.Get("Authorization") == "":
		// API Gateway answers anonymous calls itself.
		return reply{status: http.StatusForbidden, body: gatewayMessage{"Forbidden"}, record: recNone}
	case auth == authBearer && c.app == nil:
		return unauthorized(c)
	case auth == authBasic && (c.ep == epBootstrap || c.ep == epBootstrapGet) && !s.basicOK(r):
		return reply{status: http.StatusUnauthorized, body: careStatus{Status: "fail", Message: "Unauthorized"}, record: recNone}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := h(c)
	if c.app != nil && rep.record != recNone {
		s.addRecordLocked(c, rep)
	}
	return rep
}

// drop closes the connection without a response, after the request was applied.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func (s *Server) write(w http.ResponseWriter, rep reply) {
	h := w.Header()
	for k, v := range rep.header {
		h.Set(k, v)
	}
	if rep.status == http.StatusNoContent {
		w.WriteHeader(rep.status)
		return
	}
	b := rep.raw
	if b == nil && rep.body != nil {
		var err error
		if b, err = json.Marshal(rep.body); err != nil {
			rep.status, b = http.StatusInternalServerError, []byte(`{"message":"Internal server error"}`)
		}
	}
	if b != nil {
		h.Set("Content-Type", "application/json")
	}
	w.WriteHeader(rep.status)
	_, _ = w.Write(b)
}

func (s *Server) basicOK(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	return ok && u == s.opts.BootstrapUser && p == s.opts.BootstrapPassword
}

// identify resolves the bearer token; c.app is set only when it is valid now.
func (s *Server) identify(c *call) {
	h := c.r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.st.tokens[strings.TrimSpace(tok)]
	if t == nil {
		return
	}
	c.tok = t
	if t.valid(c.nowMs) {
		c.app = t.app
	}
}

func faultReply(c *call, code int) reply {
	switch {
	case code == http.StatusConflict && c.ep == epControl:
		return reply{status: code, body: errorsWithID(c.id, "A (possibly transient) conflict occurred. No change was made. This request may be retried.")}
	case code < 500:
		return reply{status: code, body: errorMessages("Injected fault")}
	case code == http.StatusInternalServerError:
		return reply{status: code, body: gatewayMessage{"Internal server error"}}
	}
	return reply{status: code, body: gatewayMessage{http.StatusText(code)}}
}
