package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/botq/botq/api"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/server/console"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// consoleBenchActions is the size of the history BenchmarkConsolePages
// generates: go test -run '^$' -bench ConsolePages -console.actions 1000000 ./server/
var consoleBenchActions = flag.Int("console.actions", 200000, "actions in the history BenchmarkConsolePages generates")

// genHistory fills schema with n actions over 90 days, two apps, a
// conversation per 8 consecutive actions, an attempt per action that was
// executed, a request record per action that reached Khoros, a
// KHOROS-origin record per conversation and an event per 500 actions. It
// writes the rows directly, as the schema's owner with triggers off (the
// enqueue path would take far longer and is not what is measured).
func genHistory(ctx context.Context, b *testing.B, pool *pgxpool.Pool, s *store.Store, n int) {
	b.Helper()
	for _, app := range []string{"app-a", "app-b"} {
		if _, err := s.AppUpsert(ctx, pool, store.AppUpsertParams{ID: app, CompanyKey: "acme"}); err != nil {
			b.Fatal(err)
		}
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	steps := []string{
		`SET session_replication_role = replica`,
		fmt.Sprintf(`INSERT INTO action (app_id, kind, payload, idempotency_key, lane, state, river_job_id, attempt_count,
				request_id, last_error, created_at, created_by, updated_at, finished_at)
			SELECT CASE WHEN c %% 3 = 0 THEN 'app-b' ELSE 'app-a' END,
			       CASE WHEN i %% 20 = 0 THEN 'note' WHEN i %% 20 = 1 THEN 'tag' ELSE 'respond' END,
			       jsonb_build_object('coordinate', jsonb_build_object('companyKey', 'acme', 'networkKey', 'facebook',
			           'externalId', 'page-' || (c %% 50), 'scope', 'PRIVATE'),
			           'author', jsonb_build_object('id', 'author-' || c),
			           'text', 'Message ' || i || ' about your order #' || (i %% 100000) || '; it ships this week.'),
			       'k-' || i, 'facebook/page-' || (c %% 50) || '/author-' || c, st, 1000000000 + i,
			       CASE WHEN st = 'queued' THEN 0 ELSE 1 END, CASE WHEN st <> 'queued' THEN 'r-' || i END,
			       CASE WHEN st = 'failed' THEN 'botapi: POST /bots/v3/respond: 400 Bad Request' END,
			       t, 'api:bench', t + interval '2 seconds',
			       CASE WHEN st IN ('succeeded', 'failed', 'cancelled') THEN t + interval '2 seconds' END
			FROM (SELECT i, i / 8 AS c, now() - interval '90 days' + (i::float8 / %[1]d) * interval '90 days' AS t,
			             CASE WHEN i > %[1]d - 200 THEN 'queued' WHEN i %% 25 = 0 THEN 'failed'
			                  WHEN i %% 33 = 0 THEN 'cancelled' ELSE 'succeeded' END AS st
			      FROM generate_series(1, %[1]d) i) g
			ORDER BY i`, n),
		`INSERT INTO attempt (action_id, number, river_job_id, job_attempt, started_at, duration_ms, wire_sent, http_status,
				request_id, outcome, error, worker, created_at)
			SELECT id, 1, river_job_id, 1, created_at + interval '1 second', 120, true,
			       CASE state WHEN 'failed' THEN 400 ELSE 202 END, request_id,
			       CASE state WHEN 'failed' THEN 'cancel' ELSE 'ok' END, last_error, 'bench', created_at + interval '1 second'
			FROM action WHERE state <> 'queued' ORDER BY id`,
		`INSERT INTO request (request_id, app_id, action_id, origin, state, http_status, details, first_seen_at, finalized_at,
				khoros_created_at, khoros_completed_at, last_checked_at, check_count)
			SELECT request_id, app_id, id, 'BOT', CASE state WHEN 'failed' THEN 'ERROR' ELSE 'SUCCESS' END,
			       CASE state WHEN 'failed' THEN 400 ELSE 202 END,
			       CASE state WHEN 'failed' THEN '{"code": "400", "message": "Bad Request"}'::jsonb END,
			       created_at + interval '1 second', created_at + interval '3 seconds', created_at + interval '1 second',
			       created_at + interval '2 seconds', created_at + interval '3 seconds', 1
			FROM action WHERE state IN ('succeeded', 'failed') ORDER BY id`,
		`INSERT INTO request (request_id, app_id, origin, state, payload, first_seen_at, finalized_at, khoros_created_at,
				khoros_completed_at, check_count)
			SELECT 'in-' || id, app_id, 'KHOROS', 'SUCCESS',
			       jsonb_build_object('coordinate', payload -> 'coordinate', 'author', payload -> 'author',
			           'text', 'Where is my order?', 'type', 'message'),
			       created_at - interval '20 seconds', created_at - interval '19 seconds', created_at - interval '30 seconds',
			       created_at - interval '29 seconds', 1
			FROM action WHERE id % 8 = 1 ORDER BY id`,
		`INSERT INTO event (at, app_id, action_id, kind, actor, reason)
			SELECT created_at + interval '1 hour', app_id, id, 'replay', 'console:ops', 'the customer asked again'
			FROM action WHERE id % 500 = 0 ORDER BY id`,
		`SET session_replication_role = origin`,
		`ANALYZE`,
	}
	for _, q := range steps {
		if _, err := conn.Exec(ctx, q); err != nil {
			b.Fatalf("generate history: %v\n%s", err, q)
		}
	}
}

// BenchmarkConsolePages measures the server time of each console page on a
// generated history (-console.actions, default 200,000): the handler is
// called in process, so the figure is botq's and Postgres' time, without
// the network or the browser. It reports p50 and p99 per page besides the
// mean.
func BenchmarkConsolePages(b *testing.B) {
	ctx := context.Background()
	storetest.Conns(b, 4)
	schema, pool := storetest.NewSchema(b, 4)
	s, err := store.New(schema)
	if err != nil {
		b.Fatal(err)
	}
	n := *consoleBenchActions
	start := time.Now()
	genHistory(ctx, b, pool, s, n)
	var size string
	if err := pool.QueryRow(ctx, `SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c
		JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE ns.nspname = $1 AND c.relkind = 'r'`, schema).Scan(&size); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d actions in %s: %s on disk (dropped at the end)", n, time.Since(start).Round(time.Second), size)

	c, err := console.New(console.Config{DB: pool, Store: s, Kinds: jobs.Kinds(), Logger: zerolog.Nop(), RiverUI: "/riverui",
		SignIn: func(string) (api.Principal, []byte, bool) { return api.Principal{}, nil, false },
		Lookup: func([]byte) (api.Principal, bool) { return api.Principal{Name: "ops", Role: api.RoleOperator}, true }})
	if err != nil {
		b.Fatal(err)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	hash := sha256.Sum256(raw)
	if _, err := s.ConsoleSessionStart(ctx, pool, &store.ConsoleSession{TokenHash: hash[:], Principal: "ops", Role: "operator",
		KeyFingerprint: hash[:]}, time.Hour); err != nil {
		b.Fatal(err)
	}
	cookie := &http.Cookie{Name: "botq_session", Value: base64.RawURLEncoding.EncodeToString(raw)}

	mid := int64(n / 2)
	conv := mid / 8
	lane := url.QueryEscape(fmt.Sprintf("facebook/page-%d/author-%d", conv%50, conv))
	app := "app-a"
	if conv%3 == 0 {
		app = "app-b"
	}
	day := time.Now().Add(-45 * 24 * time.Hour).UTC().Format("2006-01-02T15:04")
	pages := []struct{ name, path string }{
		{"overview", "/"},
		{"actions", "/actions"},
		{"actions_app_failed_30d", "/actions?app=app-a&state=failed&span=30d"},
		{"actions_30d_page2", "/actions?span=30d&before=" + url.QueryEscape(fmt.Sprintf("%d.%d", time.Now().Add(-10*24*time.Hour).UnixNano(), n))},
		{"actions_kind_note_1d_ago45d", "/actions?kind=note&span=1d&to=" + day},
		{"actions_author_1d", "/actions?author=" + fmt.Sprintf("author-%d", (n-1000)/8) + "&span=1d"},
		{"actions_text_1d", "/actions?q=" + url.QueryEscape("order #12345") + "&span=1d"},
		{"action", fmt.Sprintf("/actions/%d", mid)},
		{"requests", "/requests"},
		{"requests_error_7d", "/requests?app=app-a&state=ERROR&span=7d"},
		{"requests_khoros_1d", "/requests?origin=KHOROS&span=1d"},
		{"request", fmt.Sprintf("/requests/r-%d", mid)},
		{"events", "/events"},
		{"apps", "/apps"},
		{"replay_plan_app_failed_7d", "/replay?app=app-a&state=failed&span=7d"},
		{"conversation", "/conversation?app=" + app + "&lane=" + lane},
	}
	run := func(name, path string) {
		b.Run(name, func(b *testing.B) {
			serve := func() time.Duration {
				req := httptest.NewRequest("GET", path, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				t0 := time.Now()
				c.ServeHTTP(rec, req)
				d := time.Since(t0)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d\n%s", path, rec.Code, rec.Body.String())
				}
				return d
			}
			serve() // warm
			ds := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				ds = append(ds, serve())
			}
			slices.Sort(ds)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(ds[len(ds)/2]), "p50-ms")
			b.ReportMetric(ms(ds[len(ds)*99/100]), "p99-ms")
		})
	}
	for _, p := range pages {
		run(p.name, p.path)
	}
}
