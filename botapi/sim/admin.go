package sim

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/botq/botq/botapi"
)

// MintOptions tune [Server.MintToken].
type MintOptions struct {
	// CompanyKey of a new app (default Options.CompanyKey). For an existing
	// app it must match or be empty.
	CompanyKey string
	// TTL overrides Options.TokenTTL.
	TTL time.Duration
}

// MintToken issues a new token for appID, creating the app as needed. The
// token becomes the app's current one (the one that may refresh); unlike a
// refresh, tokens minted earlier stay valid until they expire, so parallel
// tests can each mint their own.
func (s *Server) MintToken(appID string, o MintOptions) (botapi.IssuedToken, error) {
	if appID == "" {
		return botapi.IssuedToken{}, errors.New("mint token: appId is required")
	}
	ttl := o.TTL
	if ttl <= 0 {
		ttl = s.opts.TokenTTL
	}
	nowMs := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.appLocked(appID, o.CompanyKey)
	if err != nil {
		return botapi.IssuedToken{}, fmt.Errorf("mint token: %w", err)
	}
	t, err := s.mintLocked(a, nowMs, ttl.Milliseconds())
	if err != nil {
		return botapi.IssuedToken{}, fmt.Errorf("mint token: %w", err)
	}
	return botapi.IssuedToken{Token: t.s, ExpiresAtMillis: t.expMs}, nil
}

// ExpireTokens makes every token of appID expire now (as if its 90 days had
// passed); it returns how many were still valid.
func (s *Server) ExpireTokens(appID string) int {
	nowMs := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.apps[appID]
	if a == nil {
		return 0
	}
	n := 0
	for _, t := range a.tokens {
		if t.valid(nowMs) {
			n++
		}
		t.expMs = min(t.expMs, nowMs)
	}
	return n
}

// Conversation names a conversation: a company's author on a network page.
type Conversation struct {
	CompanyKey string `json:"companyKey,omitempty"`
	NetworkKey string `json:"networkKey"`
	ExternalID string `json:"externalId"`
	AuthorID   string `json:"authorId"`
}

func (s *Server) convKey(c Conversation) convKey {
	if c.CompanyKey == "" {
		c.CompanyKey = s.opts.CompanyKey
	}
	return convKey{c.CompanyKey, c.NetworkKey, c.ExternalID, c.AuthorID}
}

// SetOwner sets the conversation's control record, as an agent or Khoros
// would. An owner with an empty Type removes the record, so the default
// ownership rule applies again.
func (s *Server) SetOwner(conv Conversation, owner botapi.Owner) (botapi.ControlRecord, error) {
	if conv.NetworkKey == "" || conv.ExternalID == "" || conv.AuthorID == "" {
		return botapi.ControlRecord{}, errors.New("set owner: networkKey, externalId and authorId are required")
	}
	switch {
	case owner.Type == "":
	case owner.Type == botapi.OwnerAgent:
		owner.AppID = ""
	case owner.Type == botapi.OwnerBot && owner.AppID != "":
	default:
		return botapi.ControlRecord{}, fmt.Errorf("set owner: invalid owner %s/%q", owner.Type, owner.AppID)
	}
	k := s.convKey(conv)
	nowMs := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if owner.Type == "" {
		delete(s.st.controls, k)
		return botapi.ControlRecord{}, nil
	}
	ctl := &botapi.ControlRecord{Type: "control", Owner: owner, Author: botapi.Author{ID: k.author},
		Coordinate: pageCoordinate(k), LastUpdatedTS: botapi.EpochMillis(nowMs)}
	s.st.controls[k] = ctl
	return *ctl, nil
}

// Owner returns the conversation's control record, if it has one.
func (s *Server) Owner(conv Conversation) (botapi.ControlRecord, bool) {
	k := s.convKey(conv)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctl := s.st.controls[k]; ctl != nil {
		return *ctl, true
	}
	return botapi.ControlRecord{}, false
}

// RecordFilter selects request records; zero fields match everything.
type RecordFilter struct {
	AppID  string
	Origin string
	State  string
}

// ListedRecords counts the request records that listings
// (GET /bots/v3/request/appId/{appId}) returned since the Server started or
// was last reset: what reading Khoros' records costs a caller.
func (s *Server) ListedRecords() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.listed
}

// Records returns the simulator's own request records in creation order,
// with their state as of now and payload as raw JSON, to compare with botq's copy.
func (s *Server) Records(f RecordFilter) []botapi.RequestRecord {
	nowMs := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []*record
	add := func(a *app) {
		for _, r := range a.recs[a.head:] {
			if (f.Origin == "" || r.origin == f.Origin) && (f.State == "" || r.stateAt(nowMs) == f.State) {
				recs = append(recs, r)
			}
		}
	}
	if f.AppID != "" {
		if a := s.st.apps[f.AppID]; a != nil {
			add(a)
		}
	} else {
		for _, a := range s.st.apps {
			add(a)
		}
		slices.SortFunc(recs, func(a, b *record) int { return cmp.Compare(a.seq, b.seq) })
	}
	out := make([]botapi.RequestRecord, len(recs))
	for i, r := range recs {
		out[i] = r.public(nowMs)
	}
	return out
}

// SettleAll moves every PENDING record to its final state now and returns how many moved.
func (s *Server) SettleAll() int {
	nowMs := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.st.records {
		if r.settleMs > nowMs {
			r.settleMs = max(nowMs, r.createdMs)
			n++
		}
	}
	return n
}

// SetHealth sets what GET /bots/v3/health/appId/{appID} returns; nil
// restores the default (HEALTHY, one entry per registration).
func (s *Server) SetHealth(appID string, h []botapi.Health) error {
	for _, e := range h {
		if e.Status != botapi.HealthHealthy && e.Status != botapi.HealthDegraded && e.Status != botapi.HealthDown {
			return fmt.Errorf("set health: invalid status %q", e.Status)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.appLocked(appID, "")
	if err != nil {
		return fmt.Errorf("set health: %w", err)
	}
	a.health = append([]botapi.Health(nil), h...)
	if h == nil {
		a.health = nil
	}
	return nil
}

// Inbound is a KHOROS-origin record: a webhook delivery to the bot.
type Inbound struct {
	AppID       string          `json:"appId"`
	NetworkKey  string          `json:"networkKey"`
	ExternalID  string          `json:"externalId"`
	CallbackURL string          `json:"callbackUrl,omitempty"`
	Payload     json.RawMessage `json:"payload"`
	// State is SUCCESS (default), ERROR or PENDING (settles like a 202).
	State   string                 `json:"state,omitempty"`
	Details *botapi.RequestDetails `json:"details,omitempty"`
}

// InjectInbound records a webhook delivery so that listings with
// origin=KHOROS return it. The app is created if needed.
func (s *Server) InjectInbound(in Inbound) (botapi.RequestRecord, error) {
	if in.AppID == "" {
		return botapi.RequestRecord{}, errors.New("inject inbound: appId is required")
	}
	if in.State == "" {
		in.State = botapi.StateSuccess
	}
	if in.State != botapi.StateSuccess && in.State != botapi.StateError && in.State != botapi.StatePending {
		return botapi.RequestRecord{}, fmt.Errorf("inject inbound: invalid state %q", in.State)
	}
	id := formatID(s.newID())
	nowMs := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.appLocked(in.AppID, "")
	if err != nil {
		return botapi.RequestRecord{}, fmt.Errorf("inject inbound: %w", err)
	}
	r := &record{id: id, app: a, nk: in.NetworkKey, ext: in.ExternalID, callback: in.CallbackURL,
		origin: botapi.OriginKhoros, final: in.State, settleMs: nowMs, details: in.Details, payload: []byte(in.Payload)}
	if r.callback == "" {
		if reg := s.st.regs[regKey{a.company, in.NetworkKey, in.ExternalID, a.id}]; reg != nil {
			r.callback = reg.CallbackURL
		}
	}
	if in.State == botapi.StatePending {
		r.final = botapi.StateSuccess
		r.settleMs = nowMs + s.settleDelayMs()
	}
	if r.final == botapi.StateError && r.details == nil {
		r.details = &botapi.RequestDetails{Code: "500", Message: "Bot returned an error"}
	}
	s.insertRecordLocked(r, nowMs)
	return r.public(nowMs), nil
}

// Admin HTTP API.

func (s *Server) adminRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /_sim/{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"endpoints": Endpoints()})
	})
	m.HandleFunc("POST /_sim/tokens", s.adminMint)
	m.HandleFunc("POST /_sim/tokens/expire", s.adminExpire)
	m.HandleFunc("PUT /_sim/owner", s.adminOwner)
	m.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"faults": s.Faults()})
	})
	m.HandleFunc("PUT /_sim/faults", s.adminSetFault)
	m.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults(r.URL.Query()["endpoint"]...)
		writeJSON(w, http.StatusOK, map[string]any{"faults": s.Faults()})
	})
	m.HandleFunc("GET /_sim/calls", s.adminCalls)
	m.HandleFunc("GET /_sim/calls/count", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		writeJSON(w, http.StatusOK, map[string]int{"count": s.CallCount(CallFilter{AppID: q.Get("appId"), Endpoint: q.Get("endpoint")})})
	})
	m.HandleFunc("GET /_sim/records", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		recs := s.Records(RecordFilter{AppID: q.Get("appId"), Origin: q.Get("origin"), State: q.Get("state")})
		if recs == nil {
			recs = []botapi.RequestRecord{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": recs})
	})
	m.HandleFunc("POST /_sim/settle", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"settled": s.SettleAll()})
	})
	m.HandleFunc("PUT /_sim/health", s.adminHealth)
	m.HandleFunc("POST /_sim/inbound", s.adminInbound)
	m.HandleFunc("POST /_sim/reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		writeJSON(w, http.StatusOK, struct{}{})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func adminError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		adminError(w, http.StatusBadRequest, fmt.Errorf("decode request: %w", err))
		return false
	}
	return true
}

func (s *Server) adminMint(w http.ResponseWriter, r *http.Request) {
	var in struct {
		AppID      string   `json:"appId"`
		CompanyKey string   `json:"companyKey"`
		TTL        Duration `json:"ttl"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	t, err := s.MintToken(in.AppID, MintOptions{CompanyKey: in.CompanyKey, TTL: time.Duration(in.TTL)})
	if err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	s.mu.Lock()
	company := s.st.apps[in.AppID].company
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"appId": in.AppID, "companyKey": company, "token": t.Token, "expiresAtMillis": t.ExpiresAtMillis})
}

func (s *Server) adminExpire(w http.ResponseWriter, r *http.Request) {
	var in struct {
		AppID string `json:"appId"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"expired": s.ExpireTokens(in.AppID)})
}

func (s *Server) adminOwner(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Conversation
		Owner *botapi.Owner `json:"owner"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	var owner botapi.Owner
	if in.Owner != nil {
		owner = *in.Owner
	}
	ctl, err := s.SetOwner(in.Conversation, owner)
	if err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	if owner.Type == "" {
		writeJSON(w, http.StatusOK, map[string]any{"data": nil})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": ctl})
}

func (s *Server) adminSetFault(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Endpoint string `json:"endpoint"`
		Fault    Fault  `json:"fault"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if err := s.SetFault(in.Endpoint, in.Fault); err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"faults": s.Faults()})
}

func (s *Server) adminCalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := CallFilter{AppID: q.Get("appId"), Endpoint: q.Get("endpoint")}
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			adminError(w, http.StatusBadRequest, fmt.Errorf("parse since: %w", err))
			return
		}
		f.Since = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			adminError(w, http.StatusBadRequest, fmt.Errorf("parse limit: %w", err))
			return
		}
		f.Limit = n
	}
	calls := s.Calls(f)
	if calls == nil {
		calls = []Call{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": s.CallCount(f), "calls": calls})
}

func (s *Server) adminHealth(w http.ResponseWriter, r *http.Request) {
	var in struct {
		AppID  string          `json:"appId"`
		Health []botapi.Health `json:"health"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if err := s.SetHealth(in.AppID, in.Health); err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": in.Health})
}

func (s *Server) adminInbound(w http.ResponseWriter, r *http.Request) {
	var in Inbound
	if !readJSON(w, r, &in) {
		return
	}
	rec, err := s.InjectInbound(in)
	if err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": rec})
}
