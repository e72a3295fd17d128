package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/api"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// Keys of the test server: one per role, and a second enqueuer.
const (
	keyEnqueuer  = "enqueuer-key-0123456789"
	keyEnqueuer2 = "enqueuer2-key-0123456789"
	keyAuditor   = "auditor-key-0123456789"
	keyOperator  = "operator-key-0123456789"
)

var principals = map[string]api.Principal{
	keyEnqueuer:  {Name: "bot", Role: api.RoleEnqueuer},
	keyEnqueuer2: {Name: "bot2", Role: api.RoleEnqueuer},
	keyAuditor:   {Name: "audit", Role: api.RoleAuditor},
	keyOperator:  {Name: "ops", Role: api.RoleOperator},
}

var keyOf = map[api.Role]string{api.RoleEnqueuer: keyEnqueuer, api.RoleAuditor: keyAuditor, api.RoleOperator: keyOperator}

// testBundle is an API server on the package's schema. Tests commit, so
// each works on its own app.
type testBundle struct {
	ctx   context.Context
	s     *store.Store
	pool  *pgxpool.Pool
	url   string
	appID string
}

var (
	poolOnce sync.Once
	pool     *pgxpool.Pool
	poolErr  error
)

// testPool is a small pool on the package's schema. The package's tests
// open no other connection, so with the package pool it stays within the
// tests' connection budget (storetest.Budget) without reserving.
func testPool(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	schema, _ := storetest.Schema(t)
	poolOnce.Do(func() {
		pool, poolErr = store.NewPool(context.Background(), storetest.DatabaseURL(t), schema, store.PoolOptions{MaxConns: 4, AppName: "botq-api-test"})
	})
	require.NoError(t, poolErr)
	return schema, pool
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return setupWith(t, nil)
}

// setupWith is setup with a change to the server's config.
func setupWith(t *testing.T, mod func(*api.Config)) *testBundle {
	t.Helper()
	ctx := context.Background()
	schema, pool := testPool(t)
	s, err := store.New(schema)
	require.NoError(t, err)
	cfg := api.Config{
		DB: pool, Store: s, Kinds: jobs.Kinds(), Logger: zerolog.Nop(),
		Auth: func(token string) (api.Principal, bool) { p, ok := principals[token]; return p, ok },
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := api.New(cfg)
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	b := &testBundle{ctx: ctx, s: s, pool: pool, url: hs.URL, appID: storetest.App(ctx, t, s, pool, nil)}
	// The enqueuer keys act for the test's app (a key acts for no app until
	// granted one); the operator's needs no grant.
	for _, p := range principals {
		if p.Role == api.RoleEnqueuer {
			_, err := s.GrantAdd(ctx, pool, p.Actor(), b.appID, store.ScopeConversation, "test", "")
			require.NoError(t, err)
		}
	}
	return b
}

// call sends a request with key ("" for none) and body (nil for none) and
// decodes a JSON answer into out (when not nil).
func (b *testBundle) call(t *testing.T, method, path, key string, body any, out any) *http.Response {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		buf, err := json.Marshal(v)
		require.NoError(t, err)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(b.ctx, method, b.url+path, rd)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out), "%s %s: %s", method, path, raw)
	}
	return resp
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

func (b *testBundle) enqueue(t *testing.T, key, idem string) api.Action {
	t.Helper()
	var out api.EnqueueResponse
	resp := b.call(t, "POST", "/v1/actions", key, api.EnqueueRequest{
		AppID: b.appID, Kind: "respond", Payload: storetest.RespondPayload("author-"+idem, "hello"), IdempotencyKey: idem,
	}, &out)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	return out.Action
}

func (b *testBundle) setState(t *testing.T, id int64, state store.ActionState) {
	t.Helper()
	_, err := b.s.ActionSetState(b.ctx, b.pool, store.ActionSetStateParams{ID: id, To: state})
	require.NoError(t, err)
}

// samplePath fills a route pattern's wildcards with ids no test's row has:
// the package's tests share a schema, and an operator's POST to a real id
// (a cancel of action 1) would act on another test's action.
func samplePath(pattern string) string {
	return strings.NewReplacer("{id}", "999999999999", "{request_id}", "req-none").Replace(pattern)
}

func TestEveryRouteNeedsAKeyOfAnAllowedRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, rt := range api.Routes() {
		path := samplePath(rt.Pattern)
		var e apiError
		resp := b.call(t, rt.Method, path, "", nil, &e)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s without a key", rt.Method, path)
		require.Equal(t, "unauthorized", e.Error.Code)
		require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")

		resp = b.call(t, rt.Method, path, "not-a-key-of-ours-at-all", nil, &e)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s with an unknown key", rt.Method, path)

		for role, key := range keyOf {
			allowed := false
			for _, r := range rt.Roles {
				allowed = allowed || r == role
			}
			resp := b.call(t, rt.Method, path, key, nil, nil)
			if allowed {
				require.NotContains(t, []int{401, 403}, resp.StatusCode, "%s %s as %s", rt.Method, path, role)
				continue
			}
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s %s as %s", rt.Method, path, role)
		}
	}
	// Unknown endpoints answer 401 first, then a JSON 404.
	require.Equal(t, http.StatusUnauthorized, b.call(t, "GET", "/v1/nope", "", nil, nil).StatusCode)
	var e apiError
	require.Equal(t, http.StatusNotFound, b.call(t, "GET", "/v1/nope", keyAuditor, nil, &e).StatusCode)
	require.Equal(t, "not_found", e.Error.Code)
}

func TestInvalidFiltersNameTheField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		give      string
		wantCode  string
		wantField string
	}{
		{"/v1/actions?state=exploded", "invalid_filter", "state"},
		{"/v1/actions?state=failed,nope", "invalid_filter", "state"},
		{"/v1/actions?kind=email", "invalid_filter", "kind"},
		{"/v1/actions?from=yesterday", "invalid_filter", "from"},
		{"/v1/actions?to=2020-13-01", "invalid_filter", "to"},
		{"/v1/actions?from=2025-02-01&to=2025-01-01", "invalid_filter", "to"},
		{"/v1/actions?limit=0", "invalid_filter", "limit"},
		{"/v1/actions?limit=5000", "invalid_filter", "limit"},
		{"/v1/actions?replay_of=x", "invalid_filter", "replay_of"},
		{"/v1/actions?colour=red", "invalid_filter", "colour"},
		{"/v1/actions?cursor=garbage", "invalid_cursor", "cursor"},
		{"/v1/requests?state=DONE", "invalid_filter", "state"},
		{"/v1/requests?origin=ME", "invalid_filter", "origin"},
		{"/v1/requests?action_id=-3", "invalid_filter", "action_id"},
		{"/v1/requests?cursor=eyJsIjoiYWN0aW9ucyIsImlkIjo1fQ", "invalid_cursor", "cursor"},
		{"/v1/requests/export?format=xml", "invalid_filter", "format"},
		{"/v1/requests/export?state=nope", "invalid_filter", "state"},
		{"/v1/events?kind=party", "invalid_filter", "kind"},
		{"/v1/events?action_id=0", "invalid_filter", "action_id"},
		{"/v1/apps?app=x", "invalid_filter", "app"},
		{"/v1/actions/abc", "invalid_path", "id"},
	}
	for _, tt := range tests {
		var e apiError
		resp := b.call(t, "GET", tt.give, keyOperator, nil, &e)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, tt.give)
		require.Equal(t, tt.wantCode, e.Error.Code, tt.give)
		require.Equal(t, tt.wantField, e.Error.Field, tt.give)
		require.Contains(t, e.Error.Message, tt.wantField, tt.give)
	}
}

func TestEnqueueIdempotentAndOwnActions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := api.EnqueueRequest{AppID: b.appID, Kind: "respond", Payload: storetest.RespondPayload("x", "hi")}
	post := func(key, idem string, out any) *http.Response {
		req, err := http.NewRequest("POST", b.url+"/v1/actions", bytes.NewReader(must(json.Marshal(body))))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Idempotency-Key", idem)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
		return resp
	}
	var first, second api.EnqueueResponse
	resp := post(keyEnqueuer, "idem-1", &first)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.False(t, first.Existed)
	require.Equal(t, "api:bot", first.Action.CreatedBy)
	require.Equal(t, "idem-1", first.Action.IdempotencyKey)
	require.Equal(t, "queued", first.Action.State)
	resp = post(keyEnqueuer, "idem-1", &second)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, second.Existed)
	require.Equal(t, first.Action.ID, second.Action.ID)

	path := fmt.Sprintf("/v1/actions/%d", first.Action.ID)
	var own api.ActionDetail
	require.Equal(t, http.StatusOK, b.call(t, "GET", path, keyEnqueuer, nil, &own).StatusCode)
	require.Equal(t, first.Action.ID, own.Action.ID)
	require.Nil(t, own.Attempts, "an enqueuer reads status, not the audit trail")
	require.Nil(t, own.Events)
	require.Equal(t, http.StatusNotFound, b.call(t, "GET", path, keyEnqueuer2, nil, nil).StatusCode, "another bot's action")
	var full api.ActionDetail
	require.Equal(t, http.StatusOK, b.call(t, "GET", path, keyAuditor, nil, &full).StatusCode)
	require.NotNil(t, full.Attempts)

	var mine, theirs api.ActionList
	require.Equal(t, http.StatusOK, b.call(t, "GET", "/v1/actions?app="+b.appID, keyEnqueuer, nil, &mine).StatusCode)
	require.Len(t, mine.Actions, 1)
	require.Equal(t, http.StatusOK, b.call(t, "GET", "/v1/actions?app="+b.appID, keyEnqueuer2, nil, &theirs).StatusCode)
	require.Empty(t, theirs.Actions)
	require.Equal(t, http.StatusForbidden, b.call(t, "GET", "/v1/actions?created_by=api:bot", keyEnqueuer2, nil, nil).StatusCode)

	tests := []struct {
		give      any
		wantCode  string
		wantField string
	}{
		{`{"app_id":"x"`, "invalid_body", ""},
		{map[string]any{"app_id": b.appID, "kind": "respond"}, "invalid_body", "payload"},
		{map[string]any{"kind": "respond", "payload": map[string]any{}}, "invalid_body", "app_id"},
		{map[string]any{"app_id": b.appID, "kind": "fax", "payload": map[string]any{}}, "invalid_body", "kind"},
		{map[string]any{"app_id": b.appID, "kind": "respond", "payload": map[string]any{}, "colour": 1}, "invalid_body", "colour"},
		{map[string]any{"app_id": b.appID, "kind": "respond", "payload": map[string]any{"author": map[string]any{"id": "a"}}}, "invalid_action", "payload.coordinate"},
		{map[string]any{"app_id": "no-such-app", "kind": "token_refresh", "payload": map[string]any{}}, "invalid_action", "app_id"},
	}
	for _, tt := range tests {
		var e apiError
		resp := b.call(t, "POST", "/v1/actions", keyOperator, tt.give, &e)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%v: %+v", tt.give, e)
		require.Equal(t, tt.wantCode, e.Error.Code, "%v", tt.give)
		require.Equal(t, tt.wantField, e.Error.Field, "%v", tt.give)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestListPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var want []int64
	for i := range 5 {
		want = append([]int64{b.enqueue(t, keyOperator, fmt.Sprintf("page-%d", i)).ID}, want...)
	}
	var got []int64
	path := "/v1/actions?limit=2&app=" + b.appID
	for pages := 0; ; pages++ {
		require.Less(t, pages, 4)
		var l api.ActionList
		require.Equal(t, http.StatusOK, b.call(t, "GET", path, keyAuditor, nil, &l).StatusCode)
		for _, a := range l.Actions {
			got = append(got, a.ID)
		}
		if l.NextCursor == "" {
			break
		}
		path = "/v1/actions?limit=2&app=" + b.appID + "&cursor=" + l.NextCursor
	}
	require.Equal(t, want, got, "newest first, every action once")

	var l api.ActionList
	b.setState(t, want[0], store.ActionFailed)
	require.Equal(t, http.StatusOK, b.call(t, "GET", "/v1/actions?state=failed&app="+b.appID, keyAuditor, nil, &l).StatusCode)
	require.Len(t, l.Actions, 1)
}

func TestCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.enqueue(t, keyOperator, "cancel-me")
	path := fmt.Sprintf("/v1/actions/%d/cancel", a.ID)
	var out api.ActionDetail
	require.Equal(t, http.StatusOK, b.call(t, "POST", path, keyOperator, map[string]string{"reason": "wrong text"}, &out).StatusCode)
	require.Equal(t, "cancelled", out.Action.State)
	var e apiError
	require.Equal(t, http.StatusConflict, b.call(t, "POST", path, keyOperator, nil, &e).StatusCode)
	require.Equal(t, "conflict", e.Error.Code)

	busy := b.enqueue(t, keyOperator, "busy")
	_, err := b.pool.Exec(b.ctx, fmt.Sprintf(`UPDATE %s.river_job SET state = 'running', attempt = 1, attempted_at = now() WHERE id = $1`, b.s.Schema()), busy.RiverJobID)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, b.call(t, "POST", fmt.Sprintf("/v1/actions/%d/cancel", busy.ID), keyOperator, nil, &e).StatusCode)
	require.Equal(t, "in_flight", e.Error.Code)
	require.Contains(t, e.Error.Message, "try again when it is not")

	var evs api.EventList
	require.Equal(t, http.StatusOK, b.call(t, "GET", fmt.Sprintf("/v1/events?kind=cancel&action_id=%d", a.ID), keyAuditor, nil, &evs).StatusCode)
	require.Len(t, evs.Events, 1)
	require.Equal(t, "api:ops", evs.Events[0].Actor)
	require.Equal(t, "wrong text", evs.Events[0].Reason)
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var out api.AppDetail
	path := "/v1/apps/" + b.appID
	var e apiError
	require.Equal(t, http.StatusBadRequest, b.call(t, "POST", path+"/pause", keyOperator, map[string]string{}, &e).StatusCode)
	require.Equal(t, "reason", e.Error.Field)
	require.Equal(t, http.StatusBadRequest, b.call(t, "POST", path+"/pause", keyOperator, map[string]string{"reason": "x", "for": "soon"}, &e).StatusCode)
	require.Equal(t, "for", e.Error.Field)
	require.Equal(t, http.StatusOK, b.call(t, "POST", path+"/pause", keyOperator, map[string]string{"reason": "Khoros maintenance", "for": "1h"}, &out).StatusCode)
	require.True(t, out.App.Paused)
	require.Equal(t, http.StatusOK, b.call(t, "POST", path+"/resume", keyOperator, nil, &out).StatusCode)
	require.False(t, out.App.Paused)
	require.Equal(t, http.StatusNotFound, b.call(t, "POST", "/v1/apps/no-such-app/resume", keyOperator, nil, nil).StatusCode)

	var evs api.EventList
	require.Equal(t, http.StatusOK, b.call(t, "GET", "/v1/events?app="+b.appID, keyAuditor, nil, &evs).StatusCode)
	evs.Events = slices.DeleteFunc(evs.Events, func(e api.Event) bool { return e.Kind == "grant" })
	require.Len(t, evs.Events, 2)
	require.Equal(t, "resume", evs.Events[0].Kind)
	require.Equal(t, "pause", evs.Events[1].Kind)
	for _, ev := range evs.Events {
		require.Equal(t, "api:ops", ev.Actor)
	}

	var apps api.AppList
	require.Equal(t, http.StatusOK, b.call(t, "GET", "/v1/apps", keyAuditor, nil, &apps).StatusCode)
	found := false
	for _, a := range apps.Apps {
		found = found || a.ID == b.appID
	}
	require.True(t, found)
}

// Hostile enqueue bodies over HTTP: each is refused with a JSON error naming
// what is wrong, and nothing is stored.
func TestEnqueueRefusesHostileBodies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	conv := `"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":"a"}`
	action := func(payload string) string {
		return `{"app_id":"` + b.appID + `","kind":"respond","payload":{` + conv + `,` + payload + `}}`
	}
	tests := []struct {
		name       string
		give       string
		wantStatus int
		wantField  string
	}{
		{"body over 1 MiB", action(`"text":"` + strings.Repeat("x", 2<<20) + `"`), http.StatusRequestEntityTooLarge, ""},
		{"text over the channel limit", action(`"text":"` + strings.Repeat("x", 300<<10) + `"`), http.StatusBadRequest, "payload"},
		{"invalid UTF-8", action("\"text\":\"\xff\xfe\""), http.StatusBadRequest, ""},
		{"NUL in the text", action(`"text":"a\u0000b"`), http.StatusBadRequest, "payload"},
		{"an array, not an action", `[` + action(`"text":"hi"`) + `]`, http.StatusBadRequest, ""},
		{"two objects", action(`"text":"hi"`) + action(`"text":"hi"`), http.StatusBadRequest, ""},
		{"a number for the kind", `{"app_id":"` + b.appID + `","kind":7,"payload":{}}`, http.StatusBadRequest, "kind"},
		// Not granted to the key: refused without saying whether it exists.
		{"SQL in the app id", `{"app_id":"x'; DROP TABLE action; --","kind":"respond","payload":{` + conv + `,"text":"hi"}}`, http.StatusForbidden, "app_id"},
		{"control characters in the lane", `{"app_id":"` + b.appID + `","kind":"respond","lane":"a\nb","payload":{` + conv + `,"text":"hi"}}`, http.StatusBadRequest, "lane"},
		{"a key of 10,000 characters", `{"app_id":"` + b.appID + `","kind":"respond","idempotency_key":"` + strings.Repeat("k", 10000) + `","payload":{` + conv + `,"text":"hi"}}`, http.StatusBadRequest, "idempotency_key"},
	}
	// Only the test's own app: other tests insert into the schema meanwhile.
	count := func() int {
		var n int
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM action WHERE app_id = $1`, b.appID).Scan(&n))
		return n
	}
	before := count()
	for _, tt := range tests {
		var e apiError
		resp := b.call(t, "POST", "/v1/actions", keyEnqueuer, tt.give, &e)
		require.Equal(t, tt.wantStatus, resp.StatusCode, "%s: %+v", tt.name, e)
		require.NotEmpty(t, e.Error.Code, tt.name)
		require.NotEmpty(t, e.Error.Message, tt.name)
		if tt.wantField != "" {
			require.Contains(t, e.Error.Field, tt.wantField, "%s: %+v", tt.name, e)
		}
	}
	require.Equal(t, before, count(), "nothing was stored")
}

// Two API keys of different owners: each enqueues only for the apps it was
// granted, only the kinds of its grant, and cannot use the other's
// idempotency key to see or take the other's action (409, nothing shown).
func TestTrustKeysActOnlyForTheirApps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other := storetest.App(b.ctx, t, b.s, b.pool, nil)
	_, err := b.s.GrantAdd(b.ctx, b.pool, "api:bot2", other, store.ScopeConversation, "test", "")
	require.NoError(t, err)
	count := func() (n int) {
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM action WHERE app_id = ANY($1)`, []string{b.appID, other}).Scan(&n))
		return n
	}
	before := count()
	var e apiError
	resp := b.call(t, "POST", "/v1/actions", keyEnqueuer, api.EnqueueRequest{AppID: other, Kind: "respond", Payload: storetest.RespondPayload("x", "hi")}, &e)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "%+v", e)
	require.Equal(t, "forbidden", e.Error.Code)
	require.Contains(t, e.Error.Message, other)
	require.Equal(t, "app_id", e.Error.Field)
	reg := json.RawMessage(`{"platform":"EXTERNAL","companyKey":"acme","networkKey":"facebook","externalId":"page-1","appId":"x","name":"n","callbackUrl":"https://evil.example/cb","credentials":{"type":"BASIC_AUTH","identity":"i","secret":"s"}}`)
	for _, kind := range []string{"registration_update", "token_revoke"} {
		resp = b.call(t, "POST", "/v1/actions", keyEnqueuer2, api.EnqueueRequest{AppID: other, Kind: kind, Payload: reg}, &e)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %+v", kind, e)
	}
	require.Equal(t, before, count(), "nothing was stored")

	// bot's key, then bot2 with bot's idempotency key in the app both hold.
	mine := b.enqueue(t, keyEnqueuer, "order-7")
	var raw json.RawMessage
	resp = b.call(t, "POST", "/v1/actions", keyEnqueuer2, api.EnqueueRequest{
		AppID: b.appID, Kind: "note", Payload: json.RawMessage(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1"},"author":{"id":"z"},"note":"mine now"}`),
		IdempotencyKey: "order-7"}, &raw)
	require.Equal(t, http.StatusConflict, resp.StatusCode, string(raw))
	require.Contains(t, string(raw), `"idempotency_key_reused"`)
	require.NotContains(t, string(raw), fmt.Sprintf(`"id":%d`, mine.ID), "the other action is not shown")
	require.NotContains(t, string(raw), "hello", "nor its text")
	require.NotContains(t, string(raw), "api:bot\"", "nor its principal")
	require.Equal(t, before+1, count(), "and bot2's action was not stored")
}
