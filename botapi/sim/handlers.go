package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/botq/botq/botapi"
)

// Error and success bodies, in the shapes of reference §6.1.
type errBody struct {
	Error     errInner `json:"error"`
	RequestID string   `json:"requestId,omitempty"`
}

type errInner struct {
	Message   string   `json:"message,omitempty"`
	Messages  []string `json:"messages,omitempty"`
	RequestID string   `json:"requestId,omitempty"`
}

type errList struct {
	Errors []string `json:"errors"`
}

type idBody struct {
	RequestID string `json:"requestId"`
}

type careStatus struct {
	Status  string     `json:"status"`
	Message string     `json:"message,omitempty"`
	Data    *tokenBody `json:"data,omitempty"`
}

type tokenBody struct {
	Token           string `json:"token"`
	ExpiresAtMillis int64  `json:"expiresAtMillis"`
}

func errorMessages(msgs ...string) errBody { return errBody{Error: errInner{Messages: msgs}} }

func errorsWithID(id string, msgs ...string) errBody {
	return errBody{Error: errInner{Messages: msgs}, RequestID: id}
}

func unauthorized(c *call) reply {
	return reply{status: http.StatusUnauthorized, body: errBody{Error: errInner{Message: "Unauthorized", RequestID: c.id}}, record: recNone}
}

func bad(nk, ext string, msgs ...string) reply {
	return reply{status: http.StatusBadRequest, body: errorMessages(msgs...), nk: nk, ext: ext, msg: msgs[0]}
}

func accepted(c *call, nk, ext string) reply {
	return reply{status: http.StatusAccepted, body: idBody{c.id}, nk: nk, ext: ext}
}

// knownNetworks are the network keys seen in Khoros docs and third-party code.
var knownNetworks = map[string]bool{
	"apple": true, "facebook": true, "twitter": true, "smooch": true, "brandmessenger": true, "lia": true,
	"googlemessages": true, "sms": true, "wechat": true, "whatsapp": true, "instagram": true,
}

// actionBody holds every field of every conversation-action payload; each
// handler reads its own.
type actionBody struct {
	Type                  string              `json:"type"`
	Coordinate            *botapi.Coordinate  `json:"coordinate"`
	Author                *botapi.Author      `json:"author"`
	Text                  string              `json:"text"`
	List                  json.RawMessage     `json:"list"`
	Payload               json.RawMessage     `json:"payload"`
	Media                 botapi.MediaList    `json:"media"`
	RichContent           *botapi.RichContent `json:"richContent"`
	ProcessSynchronously  bool                `json:"processSynchronously"`
	Owner                 *botapi.Owner       `json:"owner"`
	Comment               string              `json:"comment"`
	ConversationDisplayID botapi.FlexString   `json:"conversationDisplayId"`
	LastUpdateTS          botapi.EpochMillis  `json:"lastUpdateTS"`
	NewPriority           *int                `json:"newPriority"`
	EntityType            string              `json:"entityType"`
	TagIDs                []int64             `json:"tagIds"`
	Note                  string              `json:"note"`
	NewWorkQueue          *int64              `json:"newWorkQueue"`
	Disposition           string              `json:"disposition"`
	Properties            map[string]string   `json:"properties"`
	UpdatedName           string              `json:"updatedName"`
	SecureFormID          string              `json:"secureFormId"`
}

func (b *actionBody) page() (string, string) {
	if b.Coordinate == nil {
		return "", ""
	}
	return b.Coordinate.NetworkKey, b.Coordinate.ExternalID
}

// decodeAction parses and checks the fields every action shares. wantTypes
// lists the accepted "type" values (empty: checked by the caller).
func (s *Server) decodeAction(c *call, b *actionBody, wantTypes ...string) *reply {
	if err := json.Unmarshal(c.body, b); err != nil {
		r := bad("", "", "Unable to parse request body")
		return &r
	}
	nk, ext := b.page()
	var msgs []string
	if len(wantTypes) > 0 && !slices.Contains(wantTypes, b.Type) {
		msgs = append(msgs, fmt.Sprintf("type must be %s", wantTypes[0]))
	}
	if b.Coordinate == nil {
		msgs = append(msgs, "coordinate may not be null")
	} else {
		switch {
		case b.Coordinate.NetworkKey == "":
			msgs = append(msgs, "coordinate.networkKey may not be empty")
		case !knownNetworks[b.Coordinate.NetworkKey]:
			msgs = append(msgs, "Invalid networkKey "+b.Coordinate.NetworkKey)
		}
		if b.Coordinate.ExternalID == "" {
			msgs = append(msgs, "coordinate.externalId may not be empty")
		}
		if b.Coordinate.CompanyKey == "" {
			msgs = append(msgs, "coordinate.companyKey may not be empty")
		}
	}
	if b.Author == nil || b.Author.ID == "" {
		msgs = append(msgs, "author.id may not be empty")
	}
	if len(msgs) > 0 {
		r := bad(nk, ext, msgs...)
		return &r
	}
	if b.Coordinate.CompanyKey != c.app.company {
		msg := fmt.Sprintf("companyKey %s does not match the token", b.Coordinate.CompanyKey)
		return &reply{status: http.StatusForbidden, body: errorsWithID(c.id, msg), nk: nk, ext: ext, msg: msg}
	}
	return nil
}

func (b *actionBody) conv() convKey {
	return convKey{b.Coordinate.CompanyKey, b.Coordinate.NetworkKey, b.Coordinate.ExternalID, b.Author.ID}
}

// liveOnPageLocked returns the appId of the page's LIVE registration, or "".
func (s *Server) liveOnPageLocked(pk pageKey) string {
	for _, id := range s.st.pages[pk] {
		if r := s.st.regs[regKey{pk.company, pk.nk, pk.ext, id}]; r != nil && r.Mode == botapi.ModeLive {
			return id
		}
	}
	return ""
}

func (s *Server) hRespond(c *call) reply {
	var b actionBody
	if r := s.decodeAction(c, &b); r != nil {
		return *r
	}
	nk, ext := b.page()
	switch b.Type {
	case botapi.RespondMessage:
		if b.Text == "" && len(b.Media) == 0 && len(b.List) == 0 && len(b.Payload) == 0 && b.RichContent == nil {
			return bad(nk, ext, "text, media, list, payload or richContent is required")
		}
		if len(b.List) > 0 && len(b.Payload) > 0 {
			return bad(nk, ext, "A raw passthrough and a listpicker cannot be set in the same message payload.")
		}
	case botapi.RespondTypingStart, botapi.RespondTypingStop:
	default:
		return bad(nk, ext, "Invalid type "+b.Type)
	}
	key := b.conv()
	if !s.ownsLocked(c.app, key) {
		cd := b.Coordinate
		msg := fmt.Sprintf("This bot doesn't own the conversation {companyKey=%s, networkKey=%s, externalId=%s, authorId=%s}",
			cd.CompanyKey, cd.NetworkKey, cd.ExternalID, b.Author.ID)
		return reply{status: http.StatusForbidden, body: errorsWithID(c.id, msg), nk: nk, ext: ext, msg: msg}
	}
	if s.st.controls[key] == nil {
		// The first answer makes the default ownership explicit, so a later
		// LIVE registration of another bot does not take the conversation.
		s.st.controls[key] = &botapi.ControlRecord{
			Type: "control", Owner: botapi.Owner{Type: botapi.OwnerBot, AppID: c.app.id},
			Author: botapi.Author{ID: b.Author.ID, FullName: b.Author.FullName}, Coordinate: pageCoordinate(key),
			LastUpdatedTS: botapi.EpochMillis(c.nowMs),
		}
	}
	if b.ProcessSynchronously {
		s.st.messageID++
		res := botapi.RespondResult{MessageID: strconv.FormatInt(s.st.messageID, 10), PayloadType: b.Type, RequestState: botapi.StateSuccess}
		return reply{status: http.StatusOK, body: struct {
			Data      botapi.RespondResult `json:"data"`
			RequestID string               `json:"requestId"`
		}{res, c.id}, nk: nk, ext: ext, record: recSync}
	}
	return accepted(c, nk, ext)
}

// ownsLocked is the ownership rule: a bot that is registered on the page in
// MONITORING or MAINTENANCE never owns; a control record decides when there
// is one; otherwise the caller owns unless another app is LIVE on the page.
func (s *Server) ownsLocked(a *app, k convKey) bool {
	if reg := s.st.regs[regKey{k.company, k.nk, k.ext, a.id}]; reg != nil && reg.Mode != botapi.ModeLive {
		return false
	}
	if ctl := s.st.controls[k]; ctl != nil {
		return ctl.Owner.Type == botapi.OwnerBot && ctl.Owner.AppID == a.id
	}
	live := s.liveOnPageLocked(pageKey{k.company, k.nk, k.ext})
	return live == "" || live == a.id
}

func pageCoordinate(k convKey) botapi.Coordinate {
	return botapi.Coordinate{CompanyKey: k.company, NetworkKey: k.nk, ExternalID: k.ext}
}

func (s *Server) hControl(c *call) reply {
	var b actionBody
	if r := s.decodeAction(c, &b, "control"); r != nil {
		return *r
	}
	nk, ext := b.page()
	switch {
	case b.Owner == nil:
		return bad(nk, ext, "owner may not be null")
	case b.Owner.Type != botapi.OwnerAgent && b.Owner.Type != botapi.OwnerBot:
		return bad(nk, ext, "Invalid owner type "+b.Owner.Type)
	case b.Owner.Type == botapi.OwnerBot && b.Owner.AppID == "":
		return bad(nk, ext, "owner.appId may not be empty")
	}
	owner := *b.Owner
	if owner.Type == botapi.OwnerAgent {
		owner.AppID = ""
	}
	key := b.conv()
	s.st.controls[key] = &botapi.ControlRecord{
		Type: "control", Owner: owner, Author: botapi.Author{ID: b.Author.ID, FullName: b.Author.FullName},
		Coordinate: pageCoordinate(key), Comment: b.Comment, ConversationDisplayID: b.ConversationDisplayID,
		LastUpdatedTS: botapi.EpochMillis(c.nowMs),
	}
	ts := b.LastUpdateTS
	if ts == 0 {
		ts = botapi.EpochMillis(c.nowMs)
	}
	echo := botapi.ControlRecord{
		Type: "control", Owner: owner, Author: *b.Author, Coordinate: *b.Coordinate,
		ConversationDisplayID: b.ConversationDisplayID, LastUpdateTS: ts,
	}
	return reply{status: http.StatusOK, body: struct {
		Data botapi.ControlRecord `json:"data"`
	}{echo}, nk: nk, ext: ext, record: recSync}
}

func (s *Server) hControlGet(c *call) reply {
	nk, ext, author := c.r.PathValue("nk"), c.r.PathValue("ext"), c.r.PathValue("author")
	if !knownNetworks[nk] {
		return bad(nk, ext, "Invalid networkKey "+nk)
	}
	ctl := s.st.controls[convKey{c.app.company, nk, ext, author}]
	if ctl == nil {
		msg := fmt.Sprintf("No control record found for author %s on network %s external id %s", author, nk, ext)
		return reply{status: http.StatusNotFound, body: errorMessages(msg), nk: nk, ext: ext, msg: msg}
	}
	out := *ctl
	out.Comment, out.ConversationDisplayID = "", ""
	return reply{status: http.StatusOK, body: struct {
		Data botapi.ControlRecord `json:"data"`
	}{out}, nk: nk, ext: ext}
}

var actionTypes = map[uint8][]string{
	epPriority:         {"priority"},
	epTag:              {"tag"},
	epTagRemove:        {"remove_tag"},
	epNote:             {"note"},
	epWorkQueue:        {"workqueue"},
	epResolve:          {"resolve"},
	epAuthorAttributes: {"author_attributes", "author"},
	epAuthorUpdate:     {"author_update"},
	epForm:             {"secure_form"},
}

// action handles the 202 conversation actions. None needs ownership: Khoros
// lets any bot (even MONITORING) tag, note, prioritise and so on.
func (s *Server) action(ep uint8) handler {
	return func(c *call) reply {
		var b actionBody
		if r := s.decodeAction(c, &b, actionTypes[ep]...); r != nil {
			return *r
		}
		nk, ext := b.page()
		switch ep {
		case epPriority:
			if b.NewPriority == nil {
				return bad(nk, ext, "newPriority may not be null")
			}
			if *b.NewPriority < 0 || *b.NewPriority > 5 {
				return bad(nk, ext, "newPriority must be between 0 and 5")
			}
		case epTag, epTagRemove:
			if len(b.TagIDs) == 0 {
				return bad(nk, ext, "tagIds may not be empty")
			}
		case epNote:
			if b.Note == "" {
				return bad(nk, ext, "note may not be empty")
			}
		case epWorkQueue:
			if b.NewWorkQueue == nil {
				return bad(nk, ext, "newWorkQueue may not be null")
			}
		case epAuthorAttributes:
			if len(b.Payload) == 0 || string(b.Payload) == "null" {
				return bad(nk, ext, "payload may not be null")
			}
		case epForm:
			if b.Comment == "" {
				return bad(nk, ext, "comment may not be empty")
			}
			if b.SecureFormID == "" {
				return bad(nk, ext, "secureFormId may not be empty")
			}
		case epResolve:
			// Closing resets the owner; dropping the record restores the default rule.
			delete(s.st.controls, b.conv())
		}
		return accepted(c, nk, ext)
	}
}

// Registrations.

func (s *Server) decodeRegistration(c *call) (*botapi.Registration, *reply) {
	var reg botapi.Registration
	if err := json.Unmarshal(c.body, &reg); err != nil {
		return nil, &reply{status: http.StatusBadRequest, body: errorMessages("Unable to parse request body"), msg: "Unable to parse request body"}
	}
	msgs := registrationErrors(&reg)
	if len(msgs) > 0 {
		return nil, &reply{status: http.StatusUnprocessableEntity, body: errList{msgs}, nk: reg.NetworkKey, ext: reg.ExternalID, msg: msgs[0]}
	}
	if reg.CompanyKey != c.app.company || reg.AppID != c.app.id {
		msg := fmt.Sprintf("Token is not valid for company %s appId %s", reg.CompanyKey, reg.AppID)
		return nil, &reply{status: http.StatusForbidden, body: errorsWithID(c.id, msg), nk: reg.NetworkKey, ext: reg.ExternalID, msg: msg}
	}
	return &reg, nil
}

// registrationErrors checks a registration as Khoros does, in its words,
// and normalises its mode (LIVE when absent).
func registrationErrors(reg *botapi.Registration) []string {
	var msgs []string
	cred := reg.Credentials
	if cred == nil {
		cred = &botapi.Credentials{}
	}
	for _, f := range []struct{ v, name string }{
		{reg.Platform, "platform"}, {reg.CompanyKey, "companyKey"}, {reg.NetworkKey, "networkKey"},
		{reg.ExternalID, "externalId"}, {reg.AppID, "appId"}, {reg.Name, "name"}, {reg.CallbackURL, "callbackUrl"},
		{cred.Type, "credentials.type"}, {cred.Identity, "credentials.identity"}, {cred.Secret, "credentials.secret"},
	} {
		if strings.TrimSpace(f.v) == "" {
			msgs = append(msgs, f.name+" may not be empty")
		}
	}
	if reg.Platform != "" && reg.Platform != "LITHIUM" && reg.Platform != "EXTERNAL" {
		msgs = append(msgs, "Invalid platform "+reg.Platform)
	}
	if reg.NetworkKey != "" && !knownNetworks[reg.NetworkKey] {
		msgs = append(msgs, "Invalid networkKey "+reg.NetworkKey)
	}
	if cred.Type != "" && cred.Type != "BASIC_AUTH" && cred.Type != "HMAC" {
		msgs = append(msgs, "Invalid credentials.type "+cred.Type)
	}
	if reg.CallbackURL != "" {
		if u, err := url.Parse(reg.CallbackURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			msgs = append(msgs, "callbackUrl must be an http or https URL")
		}
	}
	mode := strings.ToUpper(reg.Mode)
	switch mode {
	case "":
		mode = botapi.ModeLive
	case botapi.ModeLive, botapi.ModeMaintenance, botapi.ModeMonitoring:
	default:
		msgs = append(msgs, "Invalid mode: "+reg.Mode)
	}
	reg.Mode = mode
	return msgs
}

func (s *Server) hRegCreate(c *call) reply { return s.putRegistration(c, false) }
func (s *Server) hRegUpdate(c *call) reply { return s.putRegistration(c, true) }

func (s *Server) putRegistration(c *call, upsert bool) reply {
	reg, rep := s.decodeRegistration(c)
	if rep != nil {
		return *rep
	}
	k := regKey{reg.CompanyKey, reg.NetworkKey, reg.ExternalID, reg.AppID}
	pk := pageKey{k.company, k.nk, k.ext}
	old := s.st.regs[k]
	conflict := func(msg string) reply {
		return reply{status: http.StatusConflict, body: errList{[]string{msg}}, nk: k.nk, ext: k.ext, msg: msg}
	}
	if old != nil && !upsert {
		return conflict(fmt.Sprintf("A registration for appId %s on network %s external id %s already exists", k.app, k.nk, k.ext))
	}
	if old == nil && len(s.st.pages[pk]) >= 10 {
		return conflict(fmt.Sprintf("At most 10 bots can be registered on network %s external id %s", k.nk, k.ext))
	}
	if reg.Mode == botapi.ModeLive {
		if live := s.liveOnPageLocked(pk); live != "" && live != k.app {
			return conflict(fmt.Sprintf("Only one LIVE bot is allowed on network %s external id %s; %s is LIVE", k.nk, k.ext, live))
		}
	}
	reg.NetworkInstance = "www." + reg.NetworkKey + ".com"
	reg.CreatedEpochMillis = botapi.EpochMillis(c.nowMs)
	if old != nil {
		reg.CreatedEpochMillis = old.CreatedEpochMillis
		if old.Mode == botapi.ModeLive && reg.Mode != botapi.ModeLive {
			s.handOffLocked(pk, k.app)
		}
	} else {
		s.st.pages[pk] = append(s.st.pages[pk], k.app)
	}
	reg.LastUpdatedEpochMillis = botapi.EpochMillis(c.nowMs)
	s.st.regs[k] = reg
	return accepted(c, k.nk, k.ext)
}

// handOffLocked gives the app's conversations on the page to agents, as
// Khoros does when a bot leaves LIVE or is deleted.
func (s *Server) handOffLocked(pk pageKey, appID string) {
	for k, ctl := range s.st.controls {
		if k.company == pk.company && k.nk == pk.nk && k.ext == pk.ext && ctl.Owner.AppID == appID {
			ctl.Owner = botapi.Owner{Type: botapi.OwnerAgent}
		}
	}
}

func (s *Server) hRegList(c *call) reply {
	out := []botapi.Registration{}
	for _, r := range s.st.regs {
		if r.CompanyKey == c.app.company {
			out = append(out, *r)
		}
	}
	slices.SortFunc(out, func(a, b botapi.Registration) int {
		return strings.Compare(a.NetworkKey+"\x00"+a.ExternalID+"\x00"+a.AppID, b.NetworkKey+"\x00"+b.ExternalID+"\x00"+b.AppID)
	})
	return reply{status: http.StatusOK, body: struct {
		Data      []botapi.Registration `json:"data"`
		RequestID string                `json:"requestId"`
	}{out, c.id}}
}

func noRegistration(nk, ext string) reply {
	return reply{status: http.StatusNotFound, body: errBody{Error: errInner{Message: "No bot registration found"}}, nk: nk, ext: ext, msg: "No bot registration found"}
}

func (s *Server) hRegPage(c *call) reply {
	nk, ext := c.r.PathValue("nk"), c.r.PathValue("ext")
	var out []botapi.Registration
	for _, id := range s.st.pages[pageKey{c.app.company, nk, ext}] {
		out = append(out, *s.st.regs[regKey{c.app.company, nk, ext, id}])
	}
	if len(out) == 0 {
		return noRegistration(nk, ext)
	}
	return reply{status: http.StatusOK, body: struct {
		Data []botapi.Registration `json:"data"`
	}{out}, nk: nk, ext: ext}
}

func (s *Server) pathReg(c *call) (regKey, *botapi.Registration) {
	k := regKey{c.app.company, c.r.PathValue("nk"), c.r.PathValue("ext"), c.r.PathValue("app")}
	return k, s.st.regs[k]
}

func (s *Server) hRegGet(c *call) reply {
	k, reg := s.pathReg(c)
	if reg == nil {
		return noRegistration(k.nk, k.ext)
	}
	return reply{status: http.StatusOK, body: struct {
		Data botapi.Registration `json:"data"`
	}{*reg}, nk: k.nk, ext: k.ext}
}

func notYourApp(c *call, k regKey) *reply {
	if k.app == c.app.id {
		return nil
	}
	msg := "Token is not valid for appId " + k.app
	return &reply{status: http.StatusForbidden, body: errorsWithID(c.id, msg), nk: k.nk, ext: k.ext, msg: msg}
}

func (s *Server) hRegDelete(c *call) reply {
	k, reg := s.pathReg(c)
	if r := notYourApp(c, k); r != nil {
		return *r
	}
	if reg == nil {
		return noRegistration(k.nk, k.ext)
	}
	pk := pageKey{k.company, k.nk, k.ext}
	delete(s.st.regs, k)
	s.st.pages[pk] = slices.DeleteFunc(s.st.pages[pk], func(id string) bool { return id == k.app })
	if len(s.st.pages[pk]) == 0 {
		delete(s.st.pages, pk)
	}
	s.handOffLocked(pk, k.app)
	return reply{status: http.StatusNoContent, nk: k.nk, ext: k.ext}
}

func (s *Server) hMode(c *call) reply {
	k, reg := s.pathReg(c)
	raw := c.r.PathValue("mode")
	mode := strings.ToUpper(raw)
	if mode != botapi.ModeLive && mode != botapi.ModeMaintenance && mode != botapi.ModeMonitoring {
		return bad(k.nk, k.ext, "Invalid mode: "+raw)
	}
	if r := notYourApp(c, k); r != nil {
		return *r
	}
	if reg == nil {
		msg := fmt.Sprintf("No such bot %s for company %s network %s external id %s", k.app, k.company, k.nk, k.ext)
		return reply{status: http.StatusNotFound, body: errorMessages(msg), nk: k.nk, ext: k.ext, msg: msg}
	}
	pk := pageKey{k.company, k.nk, k.ext}
	if mode == botapi.ModeLive {
		if live := s.liveOnPageLocked(pk); live != "" && live != k.app {
			msg := fmt.Sprintf("Only one LIVE bot is allowed on network %s external id %s; %s is LIVE", k.nk, k.ext, live)
			return reply{status: http.StatusConflict, body: errList{[]string{msg}}, nk: k.nk, ext: k.ext, msg: msg}
		}
	}
	if reg.Mode == botapi.ModeLive && mode != botapi.ModeLive {
		s.handOffLocked(pk, k.app)
	}
	upd := *reg
	upd.Mode = mode
	upd.LastUpdatedEpochMillis = botapi.EpochMillis(c.nowMs)
	s.st.regs[k] = &upd
	return accepted(c, k.nk, k.ext)
}

// Request records.

func (s *Server) hRequestGet(c *call) reply {
	id := c.r.PathValue("id")
	r := s.st.records[id]
	if r == nil || r.app.company != c.app.company {
		msg := id + " not found"
		return reply{status: http.StatusNotFound, body: errorMessages(msg), msg: msg}
	}
	return reply{status: http.StatusOK, body: struct {
		Data wireRecord `json:"data"`
	}{r.wire(c.nowMs)}, nk: r.nk, ext: r.ext}
}

// parseFrom reads the "from" window in milliseconds: ^\d+[mhd]$, at most 31 days.
func parseFrom(v string) (int64, bool) {
	if v == "" {
		return 24 * 3600 * 1000, true
	}
	if len(v) < 2 || len(v) > 12 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 || v[0] < '0' || v[0] > '9' {
		return 0, false
	}
	var unit int64
	switch v[len(v)-1] {
	case 'm':
		unit = 60 * 1000
	case 'h':
		unit = 3600 * 1000
	case 'd':
		unit = 24 * 3600 * 1000
	default:
		return 0, false
	}
	const maxMs = 31 * 24 * 3600 * 1000
	if n > maxMs/unit {
		return 0, false
	}
	return n * unit, true
}

func (s *Server) hRequestList(c *call) reply {
	q := c.r.URL.Query()
	fromMs, ok := parseFrom(q.Get("from"))
	if !ok {
		return bad("", "", `Incorrect syntax in "from"`)
	}
	states := q["state"]
	for _, st := range states {
		if st != botapi.StatePending && st != botapi.StateSuccess && st != botapi.StateError {
			return bad("", "", "Invalid state "+st)
		}
	}
	origin := q.Get("origin")
	if origin != "" && origin != botapi.OriginBot && origin != botapi.OriginKhoros {
		return bad("", "", "Invalid origin "+origin)
	}
	out := []wireRecord{}
	if a := s.st.apps[c.r.PathValue("app")]; a != nil && a.company == c.app.company {
		for _, r := range a.listLocked(c.nowMs-fromMs, func(r *record) bool {
			return (origin == "" || r.origin == origin) && (len(states) == 0 || slices.Contains(states, r.stateAt(c.nowMs)))
		}) {
			out = append(out, r.wire(c.nowMs))
		}
	}
	s.st.listed += uint64(len(out))
	return reply{status: http.StatusOK, body: struct {
		Data []wireRecord `json:"data"`
	}{out}}
}

func (s *Server) hHealth(c *call) reply {
	id := c.r.PathValue("app")
	out := []botapi.Health{}
	if a := s.st.apps[id]; a != nil && a.health != nil {
		out = append(out, a.health...)
	} else {
		for k := range s.st.regs {
			if k.company == c.app.company && k.app == id {
				out = append(out, botapi.Health{Status: botapi.HealthHealthy})
			}
		}
		if len(out) == 0 {
			out = append(out, botapi.Health{Status: botapi.HealthHealthy})
		}
	}
	return reply{status: http.StatusOK, body: struct {
		Data []botapi.Health `json:"data"`
	}{out}}
}

// Tokens.

func (s *Server) hTokenRefresh(c *call) reply {
	// Only the current token of its own app refreshes; one already superseded
	// (in its grace period) does not (reference U16).
	if c.r.PathValue("app") != c.app.id || c.app.current != c.tok {
		return unauthorized(c)
	}
	c.tok.graceMs = c.nowMs + s.opts.TokenGrace.Milliseconds()
	t, err := s.mintLocked(c.app, c.nowMs, s.opts.TokenTTL.Milliseconds())
	if err != nil {
		return reply{status: http.StatusInternalServerError, body: gatewayMessage{"Internal server error"}}
	}
	return reply{status: http.StatusOK, body: struct {
		Data      tokenBody `json:"data"`
		RequestID string    `json:"requestId"`
	}{tokenBody{t.s, t.expMs}, c.id}, record: recSync}
}

func (s *Server) hTokenRevoke(c *call) reply {
	if c.r.PathValue("app") != c.app.id {
		return unauthorized(c)
	}
	for _, t := range c.app.tokens {
		t.revoked = true
	}
	c.app.current = nil
	return reply{status: http.StatusOK, raw: []byte("{}"), record: recSync}
}

func (s *Server) hBootstrap(c *call) reply {
	a, err := s.appLocked(c.r.PathValue("app"), "")
	if err != nil {
		return reply{status: http.StatusInternalServerError, body: careStatus{Status: "fail", Message: err.Error()}, record: recNone}
	}
	if a.current != nil && a.current.valid(c.nowMs) {
		return reply{status: http.StatusConflict, body: careStatus{Status: "fail", Message: "A token at this path already exists."}, record: recNone}
	}
	t, err := s.mintLocked(a, c.nowMs, s.opts.TokenTTL.Milliseconds())
	if err != nil {
		return reply{status: http.StatusInternalServerError, body: careStatus{Status: "fail", Message: "Unable to create token"}, record: recNone}
	}
	return reply{status: http.StatusOK, body: careStatus{Status: "success", Data: &tokenBody{t.s, t.expMs}}, record: recNone}
}

func (s *Server) hBootstrapGet(c *call) reply {
	a := s.st.apps[c.r.PathValue("app")]
	if a == nil || a.current == nil || !a.current.valid(c.nowMs) {
		return reply{status: http.StatusNotFound, body: careStatus{Status: "fail", Message: "No token exists at this path."}, record: recNone}
	}
	return reply{status: http.StatusOK, body: careStatus{Status: "success", Data: &tokenBody{a.current.s, a.current.expMs}}, record: recNone}
}
