package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/store"
)

// The console in a real browser: headless Chromium, driven over the
// DevTools protocol (chromedp), against a botq serve with its workers,
// reconciler and the Bot v3 simulator. .ci/run installs Chromium; without
// it the test fails under CI and is skipped elsewhere.
//
// With BOTQ_CONSOLE_SCREENSHOTS set to a directory (relative to the
// repository's root: docs/console), it writes a screenshot of each page
// there, the ones docs/console.md shows.

// chromiumPath finds the browser, or says how to get one.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const how = "no Chromium to drive: install it (apt-get install -y chromium; .ci/run does)"
	if os.Getenv("CI") != "" {
		t.Fatal(how + "; CI must run the browser test")
	}
	t.Skip(how)
	return ""
}

// newBrowser starts headless Chromium with the flags this machine's closed
// network needs (no background connections, no QUIC, no component
// updates), as root (no sandbox).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")), "start Chromium")
	return ctx
}

// screenshots writes name.png of the current page into the directory
// BOTQ_CONSOLE_SCREENSHOTS names, if it is set.
type screenshots struct {
	t   *testing.T
	dir string
}

func newScreenshots(t *testing.T) *screenshots {
	dir := os.Getenv("BOTQ_CONSOLE_SCREENSHOTS")
	if dir != "" && !filepath.IsAbs(dir) {
		dir = filepath.Join("..", dir) // relative to the repository's root
	}
	if dir != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
	}
	return &screenshots{t: t, dir: dir}
}

func (s *screenshots) take(ctx context.Context, name string) {
	s.t.Helper()
	if s.dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(s.t, err)
	require.NoError(s.t, os.WriteFile(filepath.Join(s.dir, name+".png"), png, 0o644))
}

// consoleWorld is a botq with a history to look at: two conversations of
// one app, one of whose actions failed, and a delivery Khoros made to the
// bot.
type consoleWorld struct {
	m       *Main
	base    string
	sim     *sim.Server
	app     string
	lane    string
	failed  int64
	actions []int64
}

func newConsoleWorld(t *testing.T) *consoleWorld {
	t.Helper()
	ctx := context.Background()
	// Records settle at once: the reconciler settles the sent actions on
	// its next run.
	s := sim.New(sim.Options{SettleDelayMax: -1})
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	const app = "shop-bot"
	tok, err := s.MintToken(app, sim.MintOptions{CompanyKey: "acme"})
	require.NoError(t, err)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(tok.Token), 0o600))
	w := &consoleWorld{sim: s, app: app, lane: "facebook/page-1/customer-7"}

	// The customer's message, which Khoros delivered to the bot.
	_, err = s.InjectInbound(sim.Inbound{AppID: app, NetworkKey: "facebook", ExternalID: "page-1",
		Payload: json.RawMessage(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},` +
			`"author":{"id":"customer-7","fullName":"Ada"},"text":"Hi, where is my order #1042?","type":"message"}`)})
	require.NoError(t, err)

	// Every role, with connections for the maintenance tasks (each holds
	// one for its lock while it queries), and one for River's LISTEN.
	w.m, w.base = startMainConns(t, zerolog.Nop(), 1+6, func(c *Config) {
		c.Database.MaxConns = 10
		c.Roles = RolesConfig{API: true, Workers: true, Reconciler: true}
		c.Khoros.HTTPTimeout = 10 * time.Second
		c.Reconciler.RecordKhorosOrigin = true
		c.Apps = []AppConfig{{ID: app, BaseURL: hs.URL, CompanyKey: "acme", TokenFile: tokenFile}}
	})
	enqueue := func(author, text string) int64 {
		t.Helper()
		res, err := w.m.Store.ActionInsert(ctx, w.m.Pool, store.ActionInsertParams{AppID: app, Kind: "respond",
			Payload:   []byte(fmt.Sprintf(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":%q},"text":%q}`, author, text)),
			CreatedBy: "api:shop"})
		require.NoError(t, err)
		w.actions = append(w.actions, res.Action.ID)
		return res.Action.ID
	}
	settle := func(id int64, want store.ActionState) {
		t.Helper()
		require.Equal(t, want, waitState(t, w.m, id, 20*time.Second, want), "action %d", id)
	}
	settle(enqueue("customer-7", "Hi Ada! Let me look up order #1042."), store.ActionSucceeded)
	// Khoros refuses the next call (400): the action fails, and is what the
	// operator replays.
	require.NoError(t, s.SetFault("respond", sim.Fault{ErrorRate: 1, ErrorCode: 400, Times: 1}))
	w.failed = enqueue("customer-7", "Your order #1042 left our warehouse today; it arrives on Friday.")
	settle(w.failed, store.ActionFailed)
	settle(enqueue("customer-9", "Welcome back! How can I help?"), store.ActionSucceeded)
	// The delivery is stored by the reconciler's first listing.
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := w.m.Store.RequestCount(ctx, w.m.Pool, store.RequestFilter{AppID: app, Origin: "KHOROS"})
		require.NoError(t, err)
		if n > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the KHOROS-origin record was never stored")
		time.Sleep(50 * time.Millisecond)
	}
	return w
}

// TestConsoleInABrowser signs in, finds a conversation, opens its failed
// action, replays it with a reason and sees the event; then checks that an
// auditor has no replay control and is refused one, and that a form posted
// from another site's page is refused with 403.
func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	w := newConsoleWorld(t)
	ctx := newBrowser(t)
	shots := newScreenshots(t)
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, steps...))
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err)
		return s
	}
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
		require.NoError(t, err)
		return n
	}

	// Signed out, the console sends the browser to its sign-in page; the
	// keyboard alone signs in (the key field has the focus; Enter submits).
	do(chromedp.Navigate(w.base + "/"))
	do(chromedp.WaitVisible(chromedp.CSS("#key")))
	shots.take(ctx, "signin")
	do(chromedp.SendKeys(chromedp.CSS("#key"), testKeyOperator+"\r"))
	do(chromedp.WaitVisible(`//h1[text()="Overview"]`))
	require.Contains(t, text("main"), w.app)
	shots.take(ctx, "overview")

	// Actions: the failed action's conversation is a link.
	do(chromedp.Click(`//nav//a[text()="Actions"]`), chromedp.WaitVisible(`//h1[text()="Actions"]`))
	require.Contains(t, text("main"), "failed")
	shots.take(ctx, "actions")
	do(chromedp.Click(fmt.Sprintf(`//tr[.//a[text()="#%d"]]//a[text()=%q]`, w.failed, w.lane)))
	do(chromedp.WaitVisible(`//h1[starts-with(., "Conversation")]`))
	timeline := text(".timeline")
	require.Contains(t, timeline, "Hi, where is my order #1042?", "the customer's message, a KHOROS-origin record")
	require.Contains(t, timeline, "HTTP 400", "the failed attempt")
	shots.take(ctx, "conversation")
	conversation, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)

	// A replay by filter shows its dry run's count first.
	do(chromedp.Navigate(fmt.Sprintf("%s/replay?app=%s&state=failed&span=1d", w.base, w.app)), chromedp.WaitVisible(chromedp.CSS("#eligible")))
	require.Equal(t, "1", text("#eligible"))
	shots.take(ctx, "replay-plan")
	do(chromedp.Navigate(conversation), chromedp.WaitVisible(`//h1[starts-with(., "Conversation")]`))

	// The failed action, replayed with a reason.
	do(chromedp.Click(fmt.Sprintf(`//a[strong[text()="#%d respond"]]`, w.failed)))
	do(chromedp.WaitVisible(chromedp.CSS("#replay-reason")))
	shots.take(ctx, "action")
	const why = "Khoros refused it; the customer still waits for the answer"
	do(chromedp.SendKeys(chromedp.CSS("#replay-reason"), why), chromedp.Click(`//button[text()="Replay"]`))
	do(chromedp.WaitVisible(chromedp.CSS(".notice")))
	require.Contains(t, text(".notice"), "Replayed as action #")
	events, err := chromedp.Run(ctx, chromedp.Text(`//section[h2[text()="Events"]]`))
	require.NoError(t, err)
	require.Contains(t, events, "replay")
	require.Contains(t, events, "console:ops")
	require.Contains(t, events, why)
	shots.take(ctx, "action-replayed")
	evs, _, err := w.m.Store.EventQuery(context.Background(), w.m.Pool, store.EventQueryParams{
		Filter: store.EventFilter{ActionID: &w.failed, Kind: "replay"}})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "console:ops", evs[0].Actor)
	require.Equal(t, why, evs[0].Reason)

	// The other pages, each once.
	for _, p := range []struct{ path, h1, shot string }{
		{"/requests", "Requests", "requests"},
		{"/events", "Events", "events"},
		{"/apps", "Apps", "apps"},
	} {
		do(chromedp.Navigate(w.base+p.path), chromedp.WaitVisible(fmt.Sprintf(`//h1[text()=%q]`, p.h1)))
		shots.take(ctx, p.shot)
	}
	plan := fmt.Sprintf("%s/replay?app=%s&state=failed&span=1d", w.base, w.app)
	do(chromedp.Navigate(plan), chromedp.WaitVisible(chromedp.CSS("#eligible")))
	require.Equal(t, "0", text("#eligible"), "the failed action was replayed already")

	// On a phone the action page fits the screen's width.
	do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(fmt.Sprintf("%s/actions/%d", w.base, w.failed)), chromedp.WaitVisible(chromedp.CSS("#replay-reason")))
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	require.NoError(t, err)
	require.False(t, overflow, "the page is wider than the phone's screen")
	shots.take(ctx, "action-phone")
	do(chromedp.EmulateViewport(1280, 900))

	// The keyboard reaches the skip link first, then the navigation.
	do(chromedp.Navigate(w.base+"/"), chromedp.WaitVisible(`//h1[text()="Overview"]`), chromedp.KeyEvent("\t"))
	focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.textContent`))
	require.NoError(t, err)
	require.Equal(t, "Skip to content", focused)

	// Sign out; an auditor signs in and sees no control, and a POST made
	// with its session is refused.
	do(chromedp.Click(`//button[text()="Sign out"]`), chromedp.WaitVisible(chromedp.CSS("#key")))
	do(chromedp.Navigate(fmt.Sprintf("%s/actions/%d", w.base, w.failed)), chromedp.WaitVisible(chromedp.CSS("#key")))
	do(chromedp.SendKeys(chromedp.CSS("#key"), testKeyAuditor+"\r"))
	do(chromedp.WaitVisible(fmt.Sprintf(`//h1[starts-with(., "Action #%d")]`, w.failed)))
	require.Zero(t, count(`form[action$="/replay"], form[action$="/cancel"], #replay-reason`), "an auditor sees no replay control")
	// The page's policy allows no script and no fetch, so the POST is a
	// form the test adds to the page, with the session's CSRF token.
	resp, err := chromedp.RunResponse(ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		const f = document.createElement('form');
		f.method = 'post'; f.action = '/actions/%d/replay';
		for (const [k, v] of [['csrf', document.querySelector('form[action="/signout"] input[name=csrf]').value], ['reason', 'auditor tries']]) {
			const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
		}
		document.body.appendChild(f); f.submit(); return {}; })()`, w.failed)))
	require.NoError(t, err)
	status := resp.Status
	require.EqualValues(t, http.StatusForbidden, status, "an auditor's replay")
	require.Contains(t, text("main"), "only an operator may act")

	// Another site's page posts a replay form to the console: the browser
	// says it is cross-site, and the console refuses it with 403.
	do(chromedp.Click(`//button[text()="Sign out"]`), chromedp.WaitVisible(chromedp.CSS("#key")))
	do(chromedp.SendKeys(chromedp.CSS("#key"), testKeyOperator+"\r"), chromedp.WaitVisible(`//h1[text()="Overview"]`))
	evil := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(rw, `<form method="post" action="%s/actions/%d/replay"><input name="reason" value="forged">
			<input name="allow_replayed" value="on"><button id="go">Win a prize</button></form>`, w.base, w.failed)
	}))
	defer evil.Close()
	// localhost is another site than 127.0.0.1, where botq listens.
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)
	resp, err = chromedp.RunResponse(ctx, chromedp.Navigate(evilURL))
	require.NoError(t, err)
	require.EqualValues(t, http.StatusOK, resp.Status)
	resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS("#go")))
	require.NoError(t, err)
	require.EqualValues(t, http.StatusForbidden, resp.Status, "the cross-site POST")
	require.Contains(t, text("main"), "cross-site request refused")
	replays, _, err := w.m.Store.ActionList(context.Background(), w.m.Pool, store.ActionListParams{Filter: store.ActionFilter{ReplayOf: &w.failed}})
	require.NoError(t, err)
	require.Len(t, replays, 1, "only the operator's own replay")
}
