package sim

import (
	"encoding/hex"
	"encoding/json"
	"time"
)

// Endpoint names, used for faults and in the call log.
var endpointNames = [...]string{
	epNone:             "",
	epRegCreate:        "registration_create",
	epRegUpdate:        "registration_update",
	epRegList:          "registration_list",
	epRegPage:          "registration_page",
	epRegGet:           "registration_get",
	epRegDelete:        "registration_delete",
	epMode:             "mode",
	epRespond:          "respond",
	epControlGet:       "control_get",
	epControl:          "control",
	epPriority:         "priority",
	epTag:              "tag",
	epTagRemove:        "tag_remove",
	epNote:             "note",
	epWorkQueue:        "workqueue",
	epResolve:          "resolve",
	epAuthorAttributes: "author_attributes",
	epAuthorUpdate:     "author_update",
	epForm:             "form",
	epRequestGet:       "request_get",
	epRequestList:      "request_list",
	epHealth:           "health",
	epTokenRefresh:     "token_refresh",
	epTokenRevoke:      "token_revoke",
	epBootstrap:        "token_bootstrap",
	epBootstrapGet:     "token_bootstrap_get",
	epUnknown:          "unknown",
}

const (
	epNone uint8 = iota
	epRegCreate
	epRegUpdate
	epRegList
	epRegPage
	epRegGet
	epRegDelete
	epMode
	epRespond
	epControlGet
	epControl
	epPriority
	epTag
	epTagRemove
	epNote
	epWorkQueue
	epResolve
	epAuthorAttributes
	epAuthorUpdate
	epForm
	epRequestGet
	epRequestList
	epHealth
	epTokenRefresh
	epTokenRevoke
	epBootstrap
	epBootstrapGet
	epUnknown
	numEndpoints
)

// Endpoints returns the endpoint names the simulator knows, for faults and call-log filters.
func Endpoints() []string {
	return append([]string(nil), endpointNames[1:]...)
}

func endpointByName(name string) uint8 {
	for i, n := range endpointNames {
		if i > 0 && n == name {
			return uint8(i)
		}
	}
	return 0
}

// Fault kinds recorded in the call log.
const (
	faultNone uint8 = iota
	faultLatency
	faultHang
	faultError
	faultRateLimit
	faultDrop
	faultStall
)

var faultNames = [...]string{"", "latency", "hang", "error", "rate_limit", "drop", "stall"}

// Call is one request that reached the simulator's Bot v3 (or Care v2 token)
// surface, in arrival order, duplicates included. Admin calls are not logged.
type Call struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	AppID     string    `json:"appId,omitempty"`
	Endpoint  string    `json:"endpoint"`
	Status    int       `json:"status"`
	RequestID string    `json:"requestId"`
	// Dropped is true when the call was applied and its connection closed
	// without a response (DropRate).
	Dropped bool `json:"dropped,omitempty"`
	// Fault names the fault that decided the outcome: "hang", "error",
	// "rate_limit", "drop", "stall", or "latency" when the client gave up
	// while delayed.
	Fault string `json:"fault,omitempty"`
	// Body is the request body, kept only with Options.CallLogBodies.
	Body json.RawMessage `json:"body,omitempty"`
}

// CallFilter selects calls; zero fields match everything.
type CallFilter struct {
	AppID    string
	Endpoint string
	// Since keeps calls with Seq > Since.
	Since uint64
	// Limit keeps at most this many (the oldest first); 0 means all.
	Limit int
}

// entry is the compact in-memory form of a Call: about 100 bytes plus the
// path, so a million-call log stays in the low hundreds of MB.
type entry struct {
	seq      uint64
	atNanos  int64
	path     string
	app      string
	body     []byte
	rid      [16]byte
	status   uint16
	endpoint uint8
	method   uint8
	fault    uint8
}

var methods = [...]string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "OTHER"}

func methodCode(m string) uint8 {
	for i, v := range methods {
		if v == m {
			return uint8(i)
		}
	}
	return uint8(len(methods) - 1)
}

type appEndpoint struct {
	app      string
	endpoint uint8
}

// callLog is a ring of the last max entries plus exact counters per
// (app, endpoint) that never wrap.
type callLog struct {
	max    int
	seq    uint64
	ring   []entry
	start  int // index of the oldest entry when the ring is full
	counts map[appEndpoint]uint64
}

func newCallLog(max int) *callLog {
	return &callLog{max: max, counts: map[appEndpoint]uint64{}}
}

func (l *callLog) add(e entry) {
	l.seq++
	e.seq = l.seq
	l.counts[appEndpoint{e.app, e.endpoint}]++
	if l.max <= 0 {
		return
	}
	if len(l.ring) < l.max {
		l.ring = append(l.ring, e)
		return
	}
	l.ring[l.start] = e
	l.start = (l.start + 1) % l.max
}

func (l *callLog) each(fn func(*entry) bool) {
	n := len(l.ring)
	for i := 0; i < n; i++ {
		if !fn(&l.ring[(l.start+i)%n]) {
			return
		}
	}
}

func (e *entry) matches(f CallFilter, ep uint8) bool {
	return (f.AppID == "" || e.app == f.AppID) && (f.Endpoint == "" || e.endpoint == ep) && e.seq > f.Since
}

func (e *entry) call() Call {
	c := Call{
		Seq:       e.seq,
		Time:      time.Unix(0, e.atNanos).UTC(),
		Method:    methods[e.method],
		Path:      e.path,
		AppID:     e.app,
		Endpoint:  endpointNames[e.endpoint],
		Status:    int(e.status),
		RequestID: formatID(e.rid),
		Dropped:   e.fault == faultDrop,
		Fault:     faultNames[e.fault],
	}
	if len(e.body) > 0 {
		c.Body = json.RawMessage(e.body)
		if !json.Valid(e.body) {
			c.Body, _ = json.Marshal(string(e.body))
		}
	}
	return c
}

// Calls returns the logged calls that match f, oldest first. Only the last
// Options.MaxCallLog calls are kept; CallCount counts all.
func (s *Server) Calls(f CallFilter) []Call {
	ep := endpointByName(f.Endpoint)
	s.logMu.Lock()
	defer s.logMu.Unlock()
	var out []Call
	s.log.each(func(e *entry) bool {
		if e.matches(f, ep) {
			out = append(out, e.call())
		}
		return f.Limit <= 0 || len(out) < f.Limit
	})
	return out
}

// CallCount counts the calls that match f (AppID and Endpoint only), over the
// whole life of the Server since the last Reset, beyond the bounded log.
func (s *Server) CallCount(f CallFilter) int {
	ep := endpointByName(f.Endpoint)
	if f.Endpoint != "" && ep == 0 {
		return 0
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	var n uint64
	for k, c := range s.log.counts {
		if (f.AppID == "" || k.app == f.AppID) && (f.Endpoint == "" || k.endpoint == ep) {
			n += c
		}
	}
	return int(n)
}

// formatID renders 16 bytes as a hyphenated UUID (version 4 layout).
func formatID(b [16]byte) string {
	var buf [36]byte
	hex.Encode(buf[0:8], b[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], b[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], b[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], b[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], b[10:16])
	return string(buf[:])
}
