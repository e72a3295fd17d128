package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/jobs"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

const (
	testKeyOperator = "operator-key-0123456789"
	testKeyAuditor  = "auditor-key-0123456789"
	testKeyEnqueuer = "enqueuer-key-0123456789"
)

// startAPIMain runs a Main with only the API role (so River UI uses an
// insert-only River client) on a fresh schema and returns its base URL.
func startAPIMain(t *testing.T, edit func(*Config)) (*Main, string) {
	t.Helper()
	return startMain(t, zerolog.Nop(), edit)
}

// owners holds each test Main's schema owner's pool: the Main acts as
// botq_runtime, which may not change what a test sets up by hand.
var owners sync.Map

// ownerPool is the pool of m's schema's owner.
func ownerPool(m *Main) *pgxpool.Pool {
	p, _ := owners.Load(m)
	return p.(*pgxpool.Pool)
}

// startMain is startAPIMain with the Main's logger.
func startMain(t *testing.T, logger zerolog.Logger, edit func(*Config)) (*Main, string) {
	t.Helper()
	return startMainConns(t, logger, 0, edit)
}

// startMainConns is startMain for a test that opens extra connections of
// its own besides the Main's (River's LISTEN connection counts as one).
func startMainConns(t *testing.T, logger zerolog.Logger, extra int, edit func(*Config)) (*Main, string) {
	t.Helper()
	storetest.Conns(t, 2+4+extra)
	schema, owner := storetest.NewSchema(t, 2)
	cfg := DefaultConfig()
	cfg.Database.URL = storetest.DatabaseURL(t)
	cfg.Database.Schema = schema
	cfg.Database.MaxConns = 4
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.APIKeys = "ops:operator:" + testKeyOperator + ",audit:auditor:" + testKeyAuditor + ",bot:enqueuer:" + testKeyEnqueuer
	cfg.Roles = RolesConfig{API: true}
	if edit != nil {
		edit(&cfg)
	}
	m := NewMain(cfg, logger)
	owners.Store(m, owner)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Error("botq did not stop")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if a := m.Addr.Load(); a != nil {
			resp, err := http.Get("http://" + *a + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return m, "http://" + *a
				}
			}
		}
		select {
		case err := <-done:
			t.Fatalf("botq stopped: %v", err)
		default:
		}
		require.True(t, time.Now().Before(deadline), "botq did not become ready")
		time.Sleep(20 * time.Millisecond)
	}
}

func actionParams(appID, key string) store.ActionInsertParams {
	return store.ActionInsertParams{AppID: appID, Kind: "respond", IdempotencyKey: key,
		Payload: storetest.RespondPayload("author-"+key, "hello")}
}

type authHow func(*http.Request)

func bearerKey(k string) authHow {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+k) }
}
func basicKey(k string) authHow { return func(r *http.Request) { r.SetBasicAuth("anyone", k) } }
func noAuth(*http.Request)      {}

func send(t *testing.T, method, url string, auth authHow, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	auth(req)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestSurfacesBehindAPIKeys(t *testing.T) {
	t.Parallel()
	m, base := startAPIMain(t, nil)

	tests := []struct {
		give       string
		giveMethod string
		giveAuth   authHow
		giveBody   string
		wantStatus int
	}{
		// Health stays public.
		{"/healthz", "GET", noAuth, "", 200},
		// The API is mounted.
		{"/v1/actions", "GET", noAuth, "", 401},
		{"/v1/actions", "GET", bearerKey(testKeyAuditor), "", 200},
		// Metrics: any valid key.
		{"/metrics", "GET", noAuth, "", 401},
		{"/metrics", "GET", bearerKey("wrong-key-0123456789"), "", 401},
		{"/metrics", "GET", bearerKey(testKeyEnqueuer), "", 200},
		// River UI: auditors and operators look, only operators act.
		{"/riverui/", "GET", noAuth, "", 401},
		{"/riverui/", "GET", bearerKey(testKeyEnqueuer), "", 403},
		{"/riverui/", "GET", bearerKey(testKeyAuditor), "", 200},
		{"/riverui/", "GET", basicKey(testKeyOperator), "", 200},
		{"/riverui/api/jobs?state=available", "GET", basicKey(testKeyAuditor), "", 200},
		{"/riverui/api/jobs/cancel", "POST", noAuth, `{"job_ids":["1"]}`, 401},
		{"/riverui/api/jobs/cancel", "POST", bearerKey(testKeyEnqueuer), `{"job_ids":["1"]}`, 403},
		{"/riverui/api/jobs/cancel", "POST", bearerKey(testKeyAuditor), `{"job_ids":["1"]}`, 403},
		{"/riverui/api/jobs/delete", "POST", basicKey(testKeyAuditor), `{"job_ids":["1"]}`, 403},
		{"/riverui/api/queues/botq/pause", "PUT", bearerKey(testKeyAuditor), `{}`, 403},
	}
	for _, tt := range tests {
		resp, body := send(t, tt.giveMethod, base+tt.give, tt.giveAuth, tt.giveBody)
		require.Equal(t, tt.wantStatus, resp.StatusCode, "%s %s: %s", tt.giveMethod, tt.give, body)
	}

	resp, _ := send(t, "GET", base+"/riverui/", noAuth, "")
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic", "a browser is asked for the key")
	resp, body := send(t, "POST", base+"/riverui/api/jobs/cancel", bearerKey(testKeyOperator), `{"job_ids":["1"]}`)
	require.NotContains(t, []int{401, 403}, resp.StatusCode, body)

	// Counters appear once something is observed.
	m.Metrics.CallDone("app-x", "respond", "ok", 202, 30*time.Millisecond)
	m.Metrics.PhaseDone(jobs.PhaseResult, 4*time.Millisecond)
	_, body = send(t, "GET", base+"/metrics", bearerKey(testKeyAuditor), "")
	for _, name := range []string{"botq_metrics_db_up 1", "botq_botapi_request_duration_seconds_bucket", "go_goroutines",
		`botq_job_phase_seconds_bucket{phase="result",le="0.005"} 1`} {
		require.Contains(t, body, name)
	}
	require.Contains(t, body, `botq_attempts_total{app="app-x",kind="respond",outcome="ok",status="202"} 1`)
}

func TestMetricsPublicAndQueueGauges(t *testing.T) {
	t.Parallel()
	m, base := startAPIMain(t, func(c *Config) {
		c.HTTP.MetricsPublic = true
		c.Apps = []AppConfig{{ID: "gauge-app", BaseURL: "http://127.0.0.1:1", CompanyKey: "acme"}}
	})
	_, err := m.Store.ActionInsert(context.Background(), m.Pool, actionParams("gauge-app", "g-1"))
	require.NoError(t, err)
	resp, body := send(t, "GET", base+"/metrics", noAuth, "")
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, body, `botq_queue_depth{app="gauge-app"} 1`)
	require.Contains(t, body, `botq_actions{app="gauge-app",kind="respond",state="queued"} 1`)
	require.Contains(t, body, `botq_app_paused{app="gauge-app"} 0`)
	require.Contains(t, body, `botq_requests_pending{app="gauge-app"} 0`)
	// River UI and the API still need a key.
	resp, _ = send(t, "GET", base+"/riverui/", noAuth, "")
	require.Equal(t, 401, resp.StatusCode)
}

// An operator's write through River UI is recorded as an event, like every
// other operator write; a refused one is not.
func TestRiverUIWritesAreEvents(t *testing.T) {
	t.Parallel()
	m, base := startAPIMain(t, func(c *Config) {
		c.Apps = []AppConfig{{ID: "ui-app", BaseURL: "http://127.0.0.1:1", CompanyKey: "acme"}}
	})
	ctx := context.Background()
	res, err := m.Store.ActionInsert(ctx, m.Pool, actionParams("ui-app", "ui-1"))
	require.NoError(t, err)
	jobID := fmt.Sprint(res.Action.RiverJobID)

	resp, body := send(t, "POST", base+"/riverui/api/jobs/cancel", bearerKey(testKeyAuditor), `{"ids":["`+jobID+`"]}`)
	require.Equal(t, 403, resp.StatusCode, body)
	resp, body = send(t, "POST", base+"/riverui/api/jobs/cancel", basicKey(testKeyOperator), `{"ids":["`+jobID+`"]}`)
	require.Less(t, resp.StatusCode, 300, body)

	evs, err := m.Store.EventList(ctx, m.Pool, store.EventListParams{Kind: "riverui"})
	require.NoError(t, err)
	require.Len(t, evs, 1, "the operator's cancel, not the auditor's refused one")
	require.Equal(t, "api:ops", evs[0].Actor)
	require.Contains(t, string(evs[0].After), "/riverui/api/jobs/cancel")
	require.Contains(t, string(evs[0].After), jobID)
	var state string
	require.NoError(t, m.Pool.QueryRow(ctx, `SELECT state::text FROM river_job WHERE id = $1`, res.Action.RiverJobID).Scan(&state))
	require.Equal(t, "cancelled", state, "River UI did what it was asked")
}
