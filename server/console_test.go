package server

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/api"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/server/console"
	"github.com/botq/botq/store"
)

// browserClient is a client with cookies that does not follow redirects,
// as the console's forms are used by a browser.
type browserClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowserClient(t *testing.T, base string) *browserClient {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browserClient{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browserClient) do(method, path string, form url.Values, header ...string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	require.NoError(b.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.c.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return resp, string(out)
}

func (b *browserClient) get(path string) (*http.Response, string) { return b.do("GET", path, nil) }

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the page body.
func csrf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	require.NotNil(t, m, "a form with a CSRF token")
	return m[1]
}

// signIn signs in with key and returns the sign-in's answer.
func (b *browserClient) signIn(key string) *http.Response {
	b.t.Helper()
	_, page := b.get("/signin")
	resp, _ := b.do("POST", "/signin", url.Values{"csrf": {csrf(b.t, page)}, "key": {key}, "next": {"/actions"}})
	return resp
}

// token is the CSRF token of the signed-in session.
func (b *browserClient) token() string {
	b.t.Helper()
	_, page := b.get("/apps")
	return csrf(b.t, page)
}

func TestConsoleSignIn(t *testing.T) {
	t.Parallel()
	_, base := startAPIMain(t, nil)

	// Signed out, a page sends the browser to the sign-in page and back.
	b := newBrowserClient(t, base)
	resp, _ := b.get("/actions?app=x")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/signin?next=%2Factions%3Fapp%3Dx", resp.Header.Get("Location"))

	// Unknown key, an enqueuer's key, no CSRF token: no session.
	require.Equal(t, http.StatusUnauthorized, b.signIn("not-a-key-0123456789").StatusCode)
	require.Equal(t, http.StatusForbidden, b.signIn(testKeyEnqueuer).StatusCode)
	resp, body := b.do("POST", "/signin", url.Values{"key": {testKeyOperator}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "security token")
	resp, _ = b.get("/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "still signed out")

	// An operator signs in: the session cookie is HttpOnly, SameSite=Strict
	// and expiring, and Secure when the browser came over TLS.
	resp = b.signIn(testKeyOperator)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/actions", resp.Header.Get("Location"))
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "botq_session" {
			session = c
		}
	}
	require.NotNil(t, session)
	require.True(t, session.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, session.SameSite)
	require.Equal(t, "/", session.Path)
	require.False(t, session.Secure, "plain HTTP")
	require.InDelta(t, console.DefaultSessionTTL.Seconds(), session.MaxAge, 5)
	resp, body = b.get("/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "operator")
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")
	require.Contains(t, resp.Header.Get("Server-Timing"), "app;dur=")

	tls := newBrowserClient(t, base)
	_, page := tls.get("/signin")
	resp, _ = tls.do("POST", "/signin", url.Values{"csrf": {csrf(t, page)}, "key": {testKeyAuditor}}, "X-Forwarded-Proto", "https")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.True(t, resp.Cookies()[0].Secure, "behind a TLS proxy")

	// Sign-out ends the session, also for a copy of its cookie.
	u, err := url.Parse(base)
	require.NoError(t, err)
	stolen := newBrowserClient(t, base)
	stolen.c.Jar.SetCookies(u, b.c.Jar.Cookies(u))
	resp, _ = stolen.get("/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = b.do("POST", "/signout", url.Values{"csrf": {b.token()}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, _ = stolen.get("/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the session ended in the database, not only in the browser")
}

// A session lasts only while its key is configured with a role that may
// sign in: the key removed or demoted, the session ends.
func TestConsoleSessionFollowsItsKey(t *testing.T) {
	t.Parallel()
	m, _ := startAPIMain(t, nil)
	keys, err := ParseAPIKeys("ops:operator:" + testKeyOperator)
	require.NoError(t, err)
	current := keys
	c, err := console.New(console.Config{DB: m.Pool, Store: m.Store, Kinds: jobs.Kinds(), Logger: zerolog.Nop(),
		SignIn: consoleSignIn(keys),
		Lookup: func(fp []byte) (api.Principal, bool) { return consoleLookup(current)(fp) }})
	require.NoError(t, err)
	srv := httptest.NewServer(c)
	defer srv.Close()
	b := newBrowserClient(t, srv.URL)
	require.Equal(t, http.StatusSeeOther, b.signIn(testKeyOperator).StatusCode)
	resp, _ := b.get("/")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	current, err = ParseAPIKeys("ops:enqueuer:" + testKeyOperator)
	require.NoError(t, err)
	resp, _ = b.get("/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "demoted to enqueuer")
	current, err = ParseAPIKeys("ops:operator:another-key-0123456789")
	require.NoError(t, err)
	resp, _ = b.get("/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the key replaced")
	current = keys
	resp, _ = b.get("/")
	require.Equal(t, http.StatusOK, resp.StatusCode, "the key back")
}

// consoleFixture is an API-only botq with an app, a failed action and a
// queued one.
type consoleFixture struct {
	m              *Main
	base           string
	app            string
	failed, queued int64
}

func newConsoleFixture(t *testing.T) *consoleFixture {
	t.Helper()
	m, base := startAPIMain(t, nil)
	ctx := context.Background()
	f := &consoleFixture{m: m, base: base, app: "cons-app"}
	_, err := m.Store.AppUpsert(ctx, m.Pool, store.AppUpsertParams{ID: f.app, CompanyKey: "acme"})
	require.NoError(t, err)
	res, err := m.Store.ActionInsert(ctx, m.Pool, actionParams(f.app, "c-failed"))
	require.NoError(t, err)
	f.failed = res.Action.ID
	_, err = m.Store.ActionSetState(ctx, m.Pool, store.ActionSetStateParams{ID: f.failed, To: store.ActionFailed})
	require.NoError(t, err)
	res, err = m.Store.ActionInsert(ctx, m.Pool, actionParams(f.app, "c-queued"))
	require.NoError(t, err)
	f.queued = res.Action.ID
	return f
}

func (f *consoleFixture) events(t *testing.T, kind string) []*store.Event {
	t.Helper()
	evs, _, err := f.m.Store.EventQuery(context.Background(), f.m.Pool, store.EventQueryParams{Filter: store.EventFilter{Kind: kind}})
	require.NoError(t, err)
	return evs
}

// Every form needs the session's CSRF token, and only an operator acts.
func TestConsoleWritesNeedTheTokenAndTheRole(t *testing.T) {
	t.Parallel()
	f := newConsoleFixture(t)
	ops := newBrowserClient(t, f.base)
	ops.signIn(testKeyOperator)
	replay := fmt.Sprintf("/actions/%d/replay", f.failed)
	for _, form := range []url.Values{{"reason": {"x"}}, {"reason": {"x"}, "csrf": {"forged"}}} {
		resp, body := ops.do("POST", replay, form)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		require.Contains(t, body, "security token")
	}
	// Another site's page: refused before anything else.
	resp, body := ops.do("POST", replay, url.Values{"reason": {"x"}, "csrf": {ops.token()}}, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "cross-site request refused")
	resp, _ = ops.do("POST", replay, url.Values{"reason": {"x"}, "csrf": {ops.token()}}, "Origin", "https://evil.example")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	audit := newBrowserClient(t, f.base)
	audit.signIn(testKeyAuditor)
	_, page := audit.get(fmt.Sprintf("/actions/%d", f.failed))
	require.NotContains(t, page, `action="`+replay+`"`, "an auditor sees no replay form")
	resp, body = audit.do("POST", replay, url.Values{"reason": {"x"}, "csrf": {audit.token()}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "only an operator may act")
	resp, _ = audit.get("/replay?app=" + f.app)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "nor plans a replay")
	require.Empty(t, f.events(t, "replay"), "nothing was replayed")
}

func TestConsoleOperatorActions(t *testing.T) {
	t.Parallel()
	f := newConsoleFixture(t)
	ctx := context.Background()
	ops := newBrowserClient(t, f.base)
	ops.signIn(testKeyOperator)
	post := func(path string, form url.Values) (*http.Response, string) {
		t.Helper()
		form.Set("csrf", ops.token())
		return ops.do("POST", path, form)
	}

	// A reason is required for each.
	for _, path := range []string{fmt.Sprintf("/actions/%d/replay", f.failed), fmt.Sprintf("/actions/%d/cancel", f.queued),
		"/apps/" + f.app + "/pause", "/apps/" + f.app + "/resume"} {
		resp, body := post(path, url.Values{"reason": {"  "}})
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, path)
		require.Contains(t, body, "A reason is required", path)
	}

	// Replay one, then see it on the action's page.
	resp, _ := post(fmt.Sprintf("/actions/%d/replay", f.failed), url.Values{"reason": {"customer asked"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Location"), fmt.Sprintf("/actions/%d?replayed=", f.failed))
	evs := f.events(t, "replay")
	require.Len(t, evs, 1)
	require.Equal(t, "console:ops", evs[0].Actor)
	require.Equal(t, "customer asked", evs[0].Reason)
	_, page := ops.get(resp.Header.Get("Location"))
	require.Contains(t, page, "Replayed as")
	require.Contains(t, page, "customer asked")
	// Again: refused, naming the option that allows it.
	resp, body := post(fmt.Sprintf("/actions/%d/replay", f.failed), url.Values{"reason": {"again"}})
	require.Equal(t, http.StatusConflict, resp.StatusCode)
	require.Contains(t, body, "Replay again although it was replayed")

	// Cancel the queued one.
	resp, _ = post(fmt.Sprintf("/actions/%d/cancel", f.queued), url.Values{"reason": {"duplicate"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	a, err := f.m.Store.ActionGet(ctx, f.m.Pool, f.queued)
	require.NoError(t, err)
	require.Equal(t, store.ActionCancelled, a.State)
	require.Equal(t, "console:ops", f.events(t, "cancel")[0].Actor)

	// Pause for an hour, then resume.
	resp, _ = post("/apps/"+f.app+"/pause", url.Values{"reason": {"Khoros maintenance"}, "for": {"1h"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	app, err := f.m.Store.AppGet(ctx, f.m.Pool, f.app)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), *app.PausedUntil, time.Minute)
	_, page = ops.get("/apps")
	require.Contains(t, page, "Khoros maintenance")
	resp, _ = post("/apps/"+f.app+"/resume", url.Values{"reason": {"maintenance over"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "console:ops", f.events(t, "pause")[0].Actor)
	require.Equal(t, "maintenance over", f.events(t, "resume")[0].Reason)
	resp, _ = post("/apps/no-such-app/pause", url.Values{"reason": {"x"}})
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// A replay by filter shows its dry run's count first, and replays what it
// counted.
func TestConsoleReplayByFilter(t *testing.T) {
	t.Parallel()
	f := newConsoleFixture(t)
	ctx := context.Background()
	for i := range 3 {
		res, err := f.m.Store.ActionInsert(ctx, f.m.Pool, actionParams(f.app, fmt.Sprintf("bulk-%d", i)))
		require.NoError(t, err)
		_, err = f.m.Store.ActionSetState(ctx, f.m.Pool, store.ActionSetStateParams{ID: res.Action.ID, To: store.ActionFailed})
		require.NoError(t, err)
	}
	ops := newBrowserClient(t, f.base)
	ops.signIn(testKeyOperator)
	_, list := ops.get("/actions?app=" + f.app + "&state=failed")
	require.Contains(t, list, "Replay these")
	resp, plan := ops.get("/replay?app=" + f.app + "&state=failed&span=1h")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, plan, `<strong id="eligible">4</strong>`)
	require.Empty(t, f.events(t, "replay"), "a dry run replays nothing")

	// The confirmation carries the range the dry run counted, not "the last
	// hour": an action created meanwhile is not replayed.
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`).FindAllStringSubmatch(plan[strings.Index(plan, `action="/replay"`):], -1) {
		form.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
	}
	require.NotEmpty(t, form.Get("from"))
	require.NotEmpty(t, form.Get("to"))
	time.Sleep(10 * time.Millisecond)
	late, err := f.m.Store.ActionInsert(ctx, f.m.Pool, actionParams(f.app, "bulk-late"))
	require.NoError(t, err)
	_, err = f.m.Store.ActionSetState(ctx, f.m.Pool, store.ActionSetStateParams{ID: late.Action.ID, To: store.ActionFailed})
	require.NoError(t, err)
	resp, _ = ops.do("POST", "/replay", form)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "without a reason")
	form.Set("reason", "Khoros was down")
	resp, done := ops.do("POST", "/replay", form)
	require.Equal(t, http.StatusOK, resp.StatusCode, done)
	require.Contains(t, done, "4 actions replayed")
	evs := f.events(t, "replay")
	require.Len(t, evs, 4)
	for _, e := range evs {
		require.Equal(t, "console:ops", e.Actor)
		require.Equal(t, "Khoros was down", e.Reason)
		require.NotEqual(t, late.Action.ID, *e.ActionID)
	}
}

// An action cancelled possibly sent says so, and its replay needs the
// explicit option, which its page offers.
func TestConsolePossiblySent(t *testing.T) {
	t.Parallel()
	f := newConsoleFixture(t)
	ctx := context.Background()
	_, err := f.m.Store.ActionSetState(ctx, f.m.Pool, store.ActionSetStateParams{ID: f.queued, To: store.ActionUnknown})
	require.NoError(t, err)
	ops := newBrowserClient(t, f.base)
	ops.signIn(testKeyOperator)
	_, page := ops.get(fmt.Sprintf("/actions/%d", f.queued))
	require.Contains(t, page, "botq asks Khoros first", "the cancel form says what a cancel of an unknown action does")
	// The app has no token: Khoros cannot be asked, so the cancel leaves
	// the action possibly sent.
	resp, _ := ops.do("POST", fmt.Sprintf("/actions/%d/cancel", f.queued), url.Values{"reason": {"stuck"}, "csrf": {ops.token()}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	a, err := f.m.Store.ActionGet(ctx, f.m.Pool, f.queued)
	require.NoError(t, err)
	require.True(t, a.PossiblySent)
	_, page = ops.get(fmt.Sprintf("/actions/%d", f.queued))
	require.Contains(t, page, "Cancelled, possibly sent")
	require.Contains(t, page, `name="allow_possibly_sent"`)
	resp, body := ops.do("POST", fmt.Sprintf("/actions/%d/replay", f.queued), url.Values{"reason": {"resend"}, "csrf": {ops.token()}})
	require.Equal(t, http.StatusConflict, resp.StatusCode)
	require.Contains(t, body, "Replay although it may have reached the customer")
	resp, _ = ops.do("POST", fmt.Sprintf("/actions/%d/replay", f.queued), url.Values{"reason": {"resend"}, "allow_possibly_sent": {"on"}, "csrf": {ops.token()}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

// Every page renders for an auditor; filters that no index serves need a
// short range; exports stream the filter's rows.
func TestConsolePagesAndExports(t *testing.T) {
	t.Parallel()
	f := newConsoleFixture(t)
	ctx := context.Background()
	require.NoError(t, f.m.Store.RequestUpsert(ctx, f.m.Pool, &store.RequestUpsertParams{
		RequestID: "cons-req-1", AppID: f.app, ActionID: &f.failed, State: store.RequestError, Details: []byte(`{"code":"400","message":"bad"}`)}))
	b := newBrowserClient(t, f.base)
	b.signIn(testKeyAuditor)
	lane := url.QueryEscape("facebook/page-1/author-c-failed")
	for path, want := range map[string]string{
		"/":                        "Throughput",
		"/actions":                 fmt.Sprintf("#%d", f.failed),
		"/actions?q=hello&span=1d": fmt.Sprintf("#%d", f.failed),
		"/actions?author=author-c-failed&span=1h":      fmt.Sprintf("#%d", f.failed),
		fmt.Sprintf("/actions/%d", f.failed):           "cons-req-1",
		"/conversation?app=" + f.app + "&lane=" + lane: "enqueued by",
		"/requests":                       "cons-req-1",
		"/requests?request_id=cons-req-1": "",
		"/requests/cons-req-1":            "bad",
		"/events":                         "Events",
		"/apps":                           f.app,
	} {
		resp, body := b.get(path)
		if path == "/requests?request_id=cons-req-1" {
			require.Equal(t, "/requests/cons-req-1", resp.Header.Get("Location"))
			continue
		}
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, body, want, path)
	}
	for path, want := range map[string]string{
		"/actions?q=hello&span=7d":         "narrow the range",
		"/actions?kind=nope":               "not an action kind",
		"/requests?origin=KHOROS&span=30d": "narrow the range",
		"/actions?from=yesterday":          "is not a time",
	} {
		resp, body := b.get(path)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, path)
		require.Contains(t, body, want, path)
	}
	resp, _ := b.get("/actions/999999")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = b.get("/no-such-page")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	resp, body := b.get("/actions/export?app=" + f.app + "&format=csv")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Disposition"), "attachment")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 3, "the header and two actions")
	require.Equal(t, "id", rows[0][0])
	resp, body = b.get("/actions/export?app=" + f.app + "&format=json")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var actions []api.Action
	require.NoError(t, json.Unmarshal([]byte(body), &actions))
	require.Len(t, actions, 2)
	resp, body = b.get("/actions/export?app=no-such-app&format=json")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.JSONEq(t, "[]", body)
	resp, body = b.get("/requests/export?app=" + f.app + "&format=csv")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "cons-req-1")
}
