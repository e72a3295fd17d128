package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
)

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

type testBundle struct {
	sim   *sim.Server
	srv   *httptest.Server
	clock *clock
	token string
}

func setup(t *testing.T, mod ...func(*sim.Options)) *testBundle {
	t.Helper()
	clk := newClock()
	opts := sim.Options{Seed: 7, Now: clk.Now}
	for _, m := range mod {
		m(&opts)
	}
	s := sim.New(opts)
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		srv.Close()
	})
	tok, err := s.MintToken("my-bot", sim.MintOptions{})
	require.NoError(t, err)
	return &testBundle{sim: s, srv: srv, clock: clk, token: tok.Token}
}

type result struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request; token "" sends no Authorization header.
func (b *testBundle) do(t *testing.T, method, path, token, body string) result {
	t.Helper()
	var rdr io.Reader
	if body != "" {
		rdr = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.srv.URL+path, rdr)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return result{res.StatusCode, res.Header, raw}
}

// requireShape checks got against want, where the string "*" in want matches
// any present value. Objects must have exactly want's keys.
func requireShape(t *testing.T, want string, got []byte) {
	t.Helper()
	if want == "" {
		require.Empty(t, bytes.TrimSpace(got))
		return
	}
	var w, g any
	require.NoError(t, json.Unmarshal([]byte(want), &w), "want: %s", want)
	require.NoError(t, json.Unmarshal(got, &g), "got: %s", got)
	if msg := shapeDiff("$", w, g); msg != "" {
		t.Fatalf("%s\nwant shape: %s\ngot:        %s", msg, want, got)
	}
}

func shapeDiff(path string, w, g any) string {
	if s, ok := w.(string); ok && s == "*" {
		if g == nil {
			return path + ": missing"
		}
		return ""
	}
	switch w := w.(type) {
	case map[string]any:
		gm, ok := g.(map[string]any)
		if !ok {
			return path + ": not an object"
		}
		for k := range gm {
			if _, ok := w[k]; !ok {
				return path + "." + k + ": unexpected key"
			}
		}
		for k, wv := range w {
			gv, ok := gm[k]
			if !ok {
				return path + "." + k + ": missing key"
			}
			if d := shapeDiff(path+"."+k, wv, gv); d != "" {
				return d
			}
		}
		return ""
	case []any:
		ga, ok := g.([]any)
		if !ok || len(ga) != len(w) {
			return path + ": array length differs"
		}
		for i := range w {
			if d := shapeDiff(path, w[i], ga[i]); d != "" {
				return d
			}
		}
		return ""
	}
	wj, _ := json.Marshal(w)
	gj, _ := json.Marshal(g)
	if !bytes.Equal(wj, gj) {
		return path + ": " + string(gj) + " != " + string(wj)
	}
	return ""
}

const (
	pageExt  = "117101b2-e66a-11e7-86ec-b1a405106b73"
	authorID = "urn:mbid:AQAAY1"
)

func coordJSON(company string) string {
	return `{"companyKey":"` + company + `","networkKey":"apple","externalId":"` + pageExt + `","botId":"my-bot","scope":"PRIVATE"}`
}

func actionJSON(typ, extra string) string {
	s := `{"type":"` + typ + `","coordinate":` + coordJSON(sim.DefaultCompanyKey) + `,"author":{"id":"` + authorID + `","fullName":"Anonymous Alligator"}`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func registrationJSON(app, mode string) string {
	return `{"companyKey":"` + sim.DefaultCompanyKey + `","platform":"LITHIUM","networkKey":"apple","externalId":"` + pageExt + `","appId":"` + app +
		`","name":"My bot","contact":{"email":"a@example.com"},"mode":"` + mode + `","publicFilter":{"includeTargeted":true},` +
		`"callbackUrl":"https://example.com/bot","credentials":{"type":"BASIC_AUTH","identity":"user","secret":"secret"},` +
		`"metadata":{"internalBot":false,"botRefUrl":"https://example.com/reference/ABCDEFG"}}`
}

func readResult(t *testing.T, res *http.Response) result {
	t.Helper()
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return result{res.StatusCode, res.Header, raw}
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}

func listen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}
