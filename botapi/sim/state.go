package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/botq/botq/botapi"
)

// state is the simulated Khoros side; every field is guarded by Server.mu.
type state struct {
	apps      map[string]*app
	tokens    map[string]*token
	regs      map[regKey]*botapi.Registration
	pages     map[pageKey][]string // appIds registered on a page, in registration order
	controls  map[convKey]*botapi.ControlRecord
	records   map[string]*record
	order     []*record // every record in creation order, for MaxRecords eviction
	orderHead int
	messageID int64
	recordSeq uint64
	// listed counts the records every listing returned.
	listed uint64
}

func newState() *state {
	return &state{
		apps:      map[string]*app{},
		tokens:    map[string]*token{},
		regs:      map[regKey]*botapi.Registration{},
		pages:     map[pageKey][]string{},
		controls:  map[convKey]*botapi.ControlRecord{},
		records:   map[string]*record{},
		messageID: 1315739291251000000,
	}
}

type app struct {
	id      string
	company string
	tokens  []*token
	current *token
	recs    []*record // creation order; createdMs never decreases
	head    int       // recs[:head] were evicted
	health  []botapi.Health
}

type token struct {
	s       string
	app     *app
	expMs   int64
	graceMs int64 // when > 0, the token was refreshed and is valid until then
	revoked bool
}

func (t *token) valid(nowMs int64) bool {
	return !t.revoked && nowMs < t.expMs && (t.graceMs == 0 || nowMs < t.graceMs)
}

type regKey struct{ company, nk, ext, app string }
type pageKey struct{ company, nk, ext string }
type convKey struct{ company, nk, ext, author string }

type record struct {
	seq       uint64 // creation order across apps
	id        string
	app       *app
	nk, ext   string
	callback  string
	origin    string
	createdMs int64
	settleMs  int64
	final     string
	details   *botapi.RequestDetails
	payload   []byte
}

func (r *record) stateAt(nowMs int64) string {
	if nowMs >= r.settleMs {
		return r.final
	}
	return botapi.StatePending
}

// wireRecord is a record as the API returns it: payload as a JSON string.
type wireRecord struct {
	ID          string                 `json:"id"`
	CompanyKey  string                 `json:"companyKey"`
	ExternalID  string                 `json:"externalId"`
	NetworkKey  string                 `json:"networkKey"`
	AppID       string                 `json:"appId"`
	CallbackURL string                 `json:"callbackUrl"`
	Origin      string                 `json:"origin"`
	Details     *botapi.RequestDetails `json:"details,omitempty"`
	State       string                 `json:"state"`
	Payload     payloadString          `json:"payload"`
	Created     int64                  `json:"createdEpochMillis"`
	Completed   int64                  `json:"completedEpochMillis,omitempty"`
	LastUpdated int64                  `json:"lastUpdatedEpochMillis"`
}

// payloadString encodes a body as a JSON string holding it, as Khoros does.
type payloadString []byte

func (p payloadString) MarshalJSON() ([]byte, error) { return json.Marshal(string(p)) }

func (r *record) wire(nowMs int64) wireRecord {
	w := wireRecord{
		ID: r.id, CompanyKey: r.app.company, ExternalID: r.ext, NetworkKey: r.nk, AppID: r.app.id,
		CallbackURL: r.callback, Origin: r.origin, State: r.stateAt(nowMs), Payload: r.payload,
		Created: r.createdMs, LastUpdated: r.createdMs,
	}
	if w.State != botapi.StatePending {
		w.Completed, w.LastUpdated = r.settleMs, r.settleMs
		if w.State == botapi.StateError {
			w.Details = r.details
		}
	}
	return w
}

// public is a record as the admin API and Go methods return it: payload raw.
func (r *record) public(nowMs int64) botapi.RequestRecord {
	w := r.wire(nowMs)
	out := botapi.RequestRecord{
		ID: w.ID, CompanyKey: w.CompanyKey, ExternalID: w.ExternalID, NetworkKey: w.NetworkKey, AppID: w.AppID,
		CallbackURL: w.CallbackURL, Origin: w.Origin, Details: w.Details, State: w.State,
		CreatedEpochMillis: botapi.EpochMillis(w.Created), CompletedEpochMillis: botapi.EpochMillis(w.Completed),
		LastUpdatedEpochMillis: botapi.EpochMillis(w.LastUpdated),
	}
	if len(r.payload) > 0 {
		if json.Valid(r.payload) {
			out.Payload = json.RawMessage(r.payload)
		} else {
			out.Payload, _ = json.Marshal(string(r.payload))
		}
	}
	return out
}

// appLocked returns the app, creating it with company when missing.
func (s *Server) appLocked(id, company string) (*app, error) {
	if a := s.st.apps[id]; a != nil {
		if company != "" && a.company != company {
			return nil, fmt.Errorf("app %q belongs to company %q, not %q", id, a.company, company)
		}
		return a, nil
	}
	if company == "" {
		company = s.opts.CompanyKey
	}
	a := &app{id: id, company: company}
	s.st.apps[id] = a
	return a, nil
}

// mintLocked issues a new current token for a.
func (s *Server) mintLocked(a *app, nowMs int64, ttlMs int64) (*token, error) {
	expSec := (nowMs + ttlMs) / 1000
	jti := s.newID()
	claims := jwt.MapClaims{
		"companyKey": a.company,
		"appId":      a.id,
		"ownerId":    a.id,
		"userName":   "botq simulator",
		"awsRegion":  "us-west-2",
		"iat":        nowMs / 1000,
		"exp":        expSec,
		"jti":        formatID(jti),
	}
	str, err := jwt.NewWithClaims(jwt.SigningMethodHS512, claims).SignedString(s.secret)
	if err != nil {
		return nil, fmt.Errorf("sign token: %w", err)
	}
	t := &token{s: str, app: a, expMs: expSec * 1000}
	s.st.tokens[str] = t
	a.tokens = append(a.tokens, t)
	a.current = t
	return t, nil
}

// addRecordLocked creates the request record of a call, following rep.
func (s *Server) addRecordLocked(c *call, rep reply) {
	r := &record{id: c.id, app: c.app, nk: rep.nk, ext: rep.ext, origin: botapi.OriginBot, payload: c.body}
	if rep.nk != "" {
		if reg := s.st.regs[regKey{c.app.company, rep.nk, rep.ext, c.app.id}]; reg != nil {
			r.callback = reg.CallbackURL
		}
	}
	switch {
	case rep.status >= 200 && rep.status < 300:
		if rep.record == recSync || c.r.Method == http.MethodGet || c.r.Method == http.MethodDelete {
			r.final = botapi.StateSuccess
			r.settleMs = c.nowMs
			break
		}
		r.final = botapi.StateSuccess
		r.settleMs = c.nowMs + s.settleDelayMs()
		if s.draw(s.opts.ErrorRate) {
			r.final = botapi.StateError
			r.details = recordErrors[s.int64n(int64(len(recordErrors)))]
		}
	case rep.status >= 400 && rep.status < 500 && rep.status != http.StatusUnauthorized:
		r.final = botapi.StateError
		r.settleMs = c.nowMs
		r.details = &botapi.RequestDetails{Code: botapi.FlexString(strconv.Itoa(rep.status)), Message: rep.msg}
	default:
		return
	}
	s.insertRecordLocked(r, c.nowMs)
}

// recordErrors are the details of records that ErrorRate fails.
var recordErrors = []*botapi.RequestDetails{
	{Code: "500", Message: "Network delivery failed"},
	{Code: "403", Message: "Forbidden"},
	{Code: "400", Message: "Message rejected by network"},
}

func (s *Server) settleDelayMs() int64 {
	lo, hi := s.opts.SettleDelayMin, s.opts.SettleDelayMax
	if hi < 0 {
		return 0
	}
	d := lo
	if hi > lo {
		d += time.Duration(s.int64n(int64(hi-lo) + 1))
	}
	return d.Milliseconds()
}

func (s *Server) insertRecordLocked(r *record, nowMs int64) {
	a := r.app
	s.st.recordSeq++
	r.seq = s.st.recordSeq
	r.createdMs = nowMs
	// Keep each app's slice sorted even if the injected clock steps back.
	if n := len(a.recs); n > a.head && a.recs[n-1].createdMs > r.createdMs {
		r.createdMs = a.recs[n-1].createdMs
	}
	if r.settleMs < r.createdMs {
		r.settleMs = r.createdMs
	}
	a.recs = append(a.recs, r)
	s.st.records[r.id] = r
	if s.opts.MaxRecords <= 0 {
		return
	}
	s.st.order = append(s.st.order, r)
	for len(s.st.order)-s.st.orderHead > s.opts.MaxRecords {
		old := s.st.order[s.st.orderHead]
		s.st.order[s.st.orderHead] = nil
		s.st.orderHead++
		delete(s.st.records, old.id)
		oa := old.app
		oa.recs[oa.head] = nil
		oa.head++
		if oa.head > 1024 && oa.head*2 > len(oa.recs) {
			oa.recs = append([]*record(nil), oa.recs[oa.head:]...)
			oa.head = 0
		}
	}
	if s.st.orderHead > 1024 && s.st.orderHead*2 > len(s.st.order) {
		s.st.order = append([]*record(nil), s.st.order[s.st.orderHead:]...)
		s.st.orderHead = 0
	}
}

// listLocked returns the app's records created at or after fromMs, newest
// first, filtered; a binary search skips older records.
func (a *app) listLocked(fromMs int64, keep func(*record) bool) []*record {
	recs := a.recs[a.head:]
	i := sort.Search(len(recs), func(i int) bool { return recs[i].createdMs >= fromMs })
	var out []*record
	for j := len(recs) - 1; j >= i; j-- {
		if keep(recs[j]) {
			out = append(out, recs[j])
		}
	}
	return out
}
