package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
)

// sendBrowser sends what a browser would: a body of contentType and the
// given headers (Origin, Sec-Fetch-Site), with auth.
func sendBrowser(t *testing.T, method, url string, auth authHow, contentType, body string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	auth(req)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// A browser's write from another site's page carries the Basic credentials
// the browser cached for River UI; River UI and /v1 refuse it (403, with
// nothing done), whichever header shows it, while writes from botq's own
// pages and from clients that are not browsers (no Origin, no
// Sec-Fetch-Site) go through.
func TestCrossSiteWritesAreRefused(t *testing.T) {
	t.Parallel()
	m, base := startAPIMain(t, func(c *Config) {
		c.Apps = []AppConfig{{ID: "xs-app", BaseURL: "http://127.0.0.1:1", CompanyKey: "acme"}}
	})
	ctx := context.Background()
	res, err := m.Store.ActionInsert(ctx, m.Pool, actionParams("xs-app", "xs-1"))
	require.NoError(t, err)
	a := res.Action
	op := basicKey(testKeyOperator)
	cancelBody := riverUIIDsBody(a.RiverJobID)
	const evil = "https://evil.example"

	refused := []struct {
		give        string
		giveMethod  string
		givePath    string
		giveAuth    authHow
		giveBody    string
		giveHeaders map[string]string
		wantField   string // the API's error field; "" for River UI
	}{
		// The outside tester's request: a form-style text/plain POST.
		{"River UI, Sec-Fetch-Site cross-site", "POST", "/riverui/api/jobs/cancel", op, cancelBody,
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": evil}, ""},
		{"River UI, foreign Origin", "POST", "/riverui/api/jobs/cancel", op, cancelBody,
			map[string]string{"Origin": evil}, ""},
		{"River UI, Origin null", "POST", "/riverui/api/jobs/cancel", op, cancelBody,
			map[string]string{"Origin": "null"}, ""},
		{"River UI, same-site", "POST", "/riverui/api/jobs/delete", op, cancelBody,
			map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other.127.0.0.1.example"}, ""},
		{"River UI, queue pause", "PUT", "/riverui/api/queues/botq/pause", op, `{}`,
			map[string]string{"Sec-Fetch-Site": "cross-site"}, ""},
		{"API, Sec-Fetch-Site cross-site", "POST", "/v1/apps/xs-app/pause", op, `{"reason":"csrf"}`,
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": evil}, "Sec-Fetch-Site"},
		{"API, foreign Origin", "POST", "/v1/apps/xs-app/pause", op, `{"reason":"csrf"}`,
			map[string]string{"Origin": evil}, "Origin"},
		{"API, enqueue", "POST", "/v1/actions", basicKey(testKeyEnqueuer),
			`{"app_id":"xs-app","kind":"respond","payload":{"text":"csrf"}}`,
			map[string]string{"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site"},
		{"API, cancel", "POST", fmt.Sprintf("/v1/actions/%d/cancel", a.ID), op, `{"reason":"csrf"}`,
			map[string]string{"Origin": "null"}, "Origin"},
	}
	for _, tt := range refused {
		resp, body := sendBrowser(t, tt.giveMethod, base+tt.givePath, tt.giveAuth, "text/plain", tt.giveBody, tt.giveHeaders)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %s", tt.give, body)
		require.Contains(t, resp.Header.Get("Content-Type"), "application/json", tt.give)
		if tt.wantField == "" {
			require.Contains(t, riverUIMessage(t, resp, body), "request refused", tt.give)
			continue
		}
		var e struct {
			Error struct{ Code, Message, Field string }
		}
		require.NoError(t, json.Unmarshal([]byte(body), &e), tt.give)
		require.Equal(t, "cross_origin", e.Error.Code, tt.give)
		require.Equal(t, tt.wantField, e.Error.Field, tt.give)
		require.Contains(t, e.Error.Message, "botq accepts writes only from its own pages", tt.give)
	}

	// Nothing was done.
	got, err := m.Store.ActionGet(ctx, m.Pool, a.ID)
	require.NoError(t, err)
	require.Equal(t, store.ActionQueued, got.State)
	require.Equal(t, "available", jobState(t, m.Pool, m.Config.Database.Schema, a.RiverJobID))
	app, err := m.Store.AppGet(ctx, m.Pool, "xs-app")
	require.NoError(t, err)
	require.Nil(t, app.PausedUntil, "the app was not paused")
	var actions, events int
	require.NoError(t, m.Pool.QueryRow(ctx, `SELECT count(*) FROM action`).Scan(&actions))
	require.NoError(t, m.Pool.QueryRow(ctx, `SELECT count(*) FROM event WHERE kind IN ('pause', 'cancel', 'riverui')`).Scan(&events))
	require.Equal(t, 1, actions, "nothing was enqueued")
	require.Zero(t, events)

	// Reads are not writes: a cross-site GET is answered (CORS keeps the
	// answer from the other site's page).
	resp, body := sendBrowser(t, "GET", base+"/v1/apps/xs-app", op, "", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": evil})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)

	// botq's own pages, and clients that are not browsers, write.
	self := base // the Origin a page served by botq sends: scheme://host:port
	allowed := []struct {
		give        string
		giveMethod  string
		givePath    string
		giveBody    string
		giveHeaders map[string]string
	}{
		{"API, same-origin", "POST", "/v1/apps/xs-app/pause", `{"reason":"maintenance"}`,
			map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": self}},
		{"API, Origin of the server (plain HTTP, no Sec-Fetch-Site)", "POST", "/v1/apps/xs-app/resume", `{}`,
			map[string]string{"Origin": self}},
		{"API, typed by the user (Sec-Fetch-Site none)", "POST", "/v1/apps/xs-app/pause", `{"reason":"maintenance"}`,
			map[string]string{"Sec-Fetch-Site": "none"}},
		{"API, not a browser", "POST", "/v1/apps/xs-app/resume", `{}`, nil},
		{"River UI, not a browser", "POST", "/riverui/api/jobs/cancel", cancelBody, nil},
	}
	for _, tt := range allowed {
		resp, body := sendBrowser(t, tt.giveMethod, base+tt.givePath, op, "application/json", tt.giveBody, tt.giveHeaders)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", tt.give, body)
	}
	got, err = m.Store.ActionGet(ctx, m.Pool, a.ID)
	require.NoError(t, err)
	require.Equal(t, store.ActionCancelled, got.State, "River UI's Cancel without browser headers went through")
}

// A trusted origin (a proxy's public origin when it changes the Host
// header) writes although it is not the Host.
func TestCrossSiteTrustedOrigin(t *testing.T) {
	t.Parallel()
	const proxy = "https://botq.example.com"
	_, base := startAPIMain(t, func(c *Config) {
		c.Apps = []AppConfig{{ID: "xs-app", BaseURL: "http://127.0.0.1:1", CompanyKey: "acme"}}
		c.HTTP.TrustedOrigins = []string{proxy}
	})
	op := basicKey(testKeyOperator)
	resp, body := sendBrowser(t, "POST", base+"/v1/apps/xs-app/pause", op, "application/json", `{"reason":"x"}`, map[string]string{"Origin": proxy})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	resp, body = sendBrowser(t, "PUT", base+"/riverui/api/queues/botq/resume", op, "application/json", `{}`, map[string]string{"Origin": proxy})
	require.NotEqual(t, http.StatusForbidden, resp.StatusCode, body)
	resp, body = sendBrowser(t, "POST", base+"/v1/apps/xs-app/resume", op, "application/json", `{}`, map[string]string{"Origin": "https://evil.example"})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, body)
}

// A client that sends half a body and stalls is cut off after
// http.read_timeout: its request ends 408, nothing is done, and the
// connection is closed, on the API and on River UI alike.
func TestSlowRequestBodyIsCutOff(t *testing.T) {
	t.Parallel()
	const readTimeout = 700 * time.Millisecond
	m, base := startAPIMain(t, func(c *Config) {
		c.Apps = []AppConfig{{ID: "slow-app", BaseURL: "http://127.0.0.1:1", CompanyKey: "acme"}}
		c.HTTP.ReadHeaderTimeout = readTimeout
		c.HTTP.ReadTimeout = readTimeout
	})
	addr := strings.TrimPrefix(base, "http://")
	for _, path := range []string{"/v1/apps/slow-app/pause", "/riverui/api/jobs/cancel"} {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		half := `{"reason":"stalled`
		_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			path, addr, testKeyOperator, 2*len(half), half)
		require.NoError(t, err)
		start := time.Now()
		// Without the timeout the server would wait for the rest for ever;
		// the test gives up well before that.
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(readTimeout+10*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err, "%s: the server answered", path)
		took := time.Since(start)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusRequestTimeout, resp.StatusCode, "%s: %s", path, body)
		require.Contains(t, string(body), "http.read_timeout", path)
		require.Less(t, took, readTimeout+5*time.Second, path)
		require.True(t, resp.Close || resp.Header.Get("Connection") == "close", "%s: the connection is closed", path)
		_, err = conn.Read(make([]byte, 1))
		require.Error(t, err, "%s: the connection is closed", path)
	}
	app, err := m.Store.AppGet(context.Background(), m.Pool, "slow-app")
	require.NoError(t, err)
	require.Nil(t, app.PausedUntil, "nothing was done")

	// A whole body sent in time is served as before.
	resp, body := send(t, "POST", base+"/v1/apps/slow-app/pause", bearerKey(testKeyOperator), `{"reason":"in time"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
}
