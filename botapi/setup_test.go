package botapi_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/sim"
)

const (
	testApp     = "test-bot"
	testCompany = sim.DefaultCompanyKey
)

// clock is an injectable clock for the simulator and token sources.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// captured is one request as it left the client.
type captured struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// recorder is a RoundTripper that keeps a copy of every outgoing request.
type recorder struct {
	mu   sync.Mutex
	reqs []captured
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, captured{req.Method, req.URL.EscapedPath(), req.Header.Clone(), body})
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) last(t *testing.T) captured {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotEmpty(t, r.reqs)
	return r.reqs[len(r.reqs)-1]
}

type testBundle struct {
	sim    *sim.Server
	srv    *httptest.Server
	client *botapi.Client
	token  string
	clock  *clock
	rec    *recorder
}

func setup(t *testing.T, mod ...func(*sim.Options)) *testBundle {
	t.Helper()
	clk := newClock()
	opts := sim.Options{Seed: 1, Now: clk.Now, CallLogBodies: true}
	for _, m := range mod {
		m(&opts)
	}
	s := sim.New(opts)
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		srv.Close()
	})
	tok, err := s.MintToken(testApp, sim.MintOptions{})
	require.NoError(t, err)
	rec := &recorder{}
	c, err := botapi.New(botapi.Config{
		BaseURL:    srv.URL,
		Tokens:     botapi.StaticToken(tok.Token),
		HTTPClient: &http.Client{Transport: rec, Timeout: 5 * time.Second},
	})
	require.NoError(t, err)
	return &testBundle{sim: s, srv: srv, client: c, token: tok.Token, clock: clk, rec: rec}
}

// clientFor returns a client of the bundle's simulator with another token.
func (b *testBundle) clientFor(t *testing.T, token string) *botapi.Client {
	t.Helper()
	c, err := botapi.New(botapi.Config{BaseURL: b.srv.URL, Tokens: botapi.StaticToken(token)})
	require.NoError(t, err)
	return c
}

func coord() botapi.Coordinate {
	return botapi.Coordinate{
		CompanyKey: testCompany, NetworkKey: "apple", ExternalID: "117101b2-e66a-11e7-86ec-b1a405106b73",
		MessageID: "b7bee35c-0cfc-4de9-8a88-9b444d7b0475", BotID: testApp, Scope: botapi.ScopePrivate,
	}
}

func author() botapi.Author {
	return botapi.Author{ID: "urn:mbid:AQAAY1", FullName: "Anonymous Alligator"}
}

func registration() *botapi.Registration {
	return &botapi.Registration{
		Platform: "LITHIUM", CompanyKey: testCompany, NetworkKey: "apple", ExternalID: coord().ExternalID,
		AppID: testApp, Name: "Test bot", AvatarURL: "https://example.com/avatar.png",
		CallbackURL: "https://example.com/bot", Mode: botapi.ModeLive,
		Contact:      &botapi.Contact{Email: "bots@example.com"},
		PublicFilter: &botapi.PublicFilter{IncludeTargeted: true},
		Credentials:  &botapi.Credentials{Type: "BASIC_AUTH", Identity: "user", Secret: "s3cret"},
		Metadata:     map[string]any{"internalBot": false, "botRefUrl": "https://example.com/reference/ABCDEFG"},
	}
}

func simFault429(retryAfter string) sim.Fault {
	return sim.Fault{RateLimitRate: 1, RetryAfter: retryAfter}
}
