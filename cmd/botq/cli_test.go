package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/api"
	"github.com/botq/botq/botapi/appclient"
	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// cliBundle runs botq commands in process against a fresh schema and the
// simulator.
type cliBundle struct {
	ctx    context.Context
	schema string
	pool   *pgxpool.Pool
	s      *store.Store
	sim    *sim.Server
	simURL string
	vars   map[string]string
}

func setupCLI(t *testing.T) *cliBundle {
	t.Helper()
	// The test's pool and one command's (cli.go) at a time.
	storetest.Conns(t, 2+cliConns)
	schema, pool, s := storetest.NewStore(t, 2)
	simSrv := sim.New(sim.Options{Seed: 1})
	hs := httptest.NewServer(simSrv)
	t.Cleanup(func() {
		_ = simSrv.Close()
		hs.Close()
	})
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	b := &cliBundle{ctx: context.Background(), schema: schema, pool: pool, s: s, sim: simSrv, simURL: hs.URL, vars: map[string]string{
		"DATABASE_URL":              storetest.DatabaseURL(t),
		"BOTQ_DATABASE_SCHEMA":      schema,
		"BOTQ_ENCRYPTION_KEY":       base64.StdEncoding.EncodeToString(key),
		"BOTQ_KHOROS_CARE_BASE_URL": hs.URL,
		"BOTQ_ACTOR":                "cli:tester",
	}}
	return b
}

// app creates an app served by the simulator (no token yet).
func (b *cliBundle) app(t *testing.T, id string) {
	t.Helper()
	_, err := b.s.AppUpsert(b.ctx, b.pool, store.AppUpsertParams{ID: id, Region: "CUSTOM", BaseURL: b.simURL, CompanyKey: "acme"})
	require.NoError(t, err)
}

type runResult struct {
	code           int
	stdout, stderr string
}

// botq runs one command line in process, as main's run does.
func (b *cliBundle) botq(t *testing.T, stdin string, args ...string) runResult {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cliEnv{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, lookupEnv: func(k string) (string, bool) {
		v, ok := b.vars[k]
		return v, ok
	}}
	root := newRootCmd(env)
	root.SetArgs(args)
	root.SetIn(env.stdin)
	root.SetOut(&out)
	root.SetErr(&errb)
	res := runResult{}
	if err := root.ExecuteContext(b.ctx); err != nil {
		fmt.Fprintln(&errb, errorLine(err))
		res.code = exitCode(err)
	}
	res.stdout, res.stderr = out.String(), errb.String()
	return res
}

func (b *cliBundle) ok(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := b.botq(t, stdin, args...)
	require.Equal(t, 0, r.code, "botq %v: %s%s", args, r.stdout, r.stderr)
	return r.stdout
}

func TestCLIUsageErrorsNameTheFlag(t *testing.T) {
	t.Parallel()
	b := setupCLI(t)
	tests := []struct {
		give     []string
		wantCode int
		wantText string
	}{
		{[]string{"actions", "list", "--state", "exploded"}, 2, "--state"},
		{[]string{"actions", "list", "--kind", "fax"}, 2, "--kind"},
		{[]string{"actions", "list", "--from", "yesterday"}, 2, "--from"},
		{[]string{"actions", "list", "--since", "1h", "--from", "2h"}, 2, "--since"},
		{[]string{"actions", "list", "--from", "1h", "--to", "2h"}, 2, "--to"},
		{[]string{"actions", "list", "--limit", "0"}, 2, "--limit"},
		{[]string{"actions", "list", "-o", "xml"}, 2, "--output"},
		{[]string{"actions", "list", "--colour", "red"}, 2, "--colour"},
		{[]string{"actions", "show", "abc"}, 2, "action id"},
		{[]string{"actions", "cancel", "1"}, 2, "--reason"},
		{[]string{"requests", "list", "--state", "DONE"}, 2, "--state"},
		{[]string{"requests", "list", "--origin", "ME"}, 2, "--origin"},
		{[]string{"requests", "export", "--format", "xml"}, 2, "--format"},
		{[]string{"replay", "1"}, 2, "--reason"},
		{[]string{"replay", "--reason", "x"}, 2, "filter flags"},
		{[]string{"replay", "1", "--app", "a", "--reason", "x"}, 2, "not both"},
		{[]string{"replay", "1", "--reason", "x", "--batch-size", "0"}, 2, "--batch-size"},
		{[]string{"app", "pause", "a"}, 2, "--reason"},
		{[]string{"app", "pause", "a", "--reason", "x", "--until", "soon"}, 2, "--until"},
		{[]string{"app", "pause", "a", "--reason", "x", "--for", "1w"}, 2, "--for"},
		{[]string{"app", "frobnicate"}, 2, `unknown command "frobnicate" for "botq app"`},
		{[]string{"app", "lst"}, 2, "did you mean list"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"events", "--kind", "party"}, 2, "--kind"},
		{[]string{"mode", "a", "LIVE"}, 2, "--network"},
		{[]string{"mode", "a", "ASLEEP", "--network", "n", "--external-id", "e"}, 2, "mode must be"},
		{[]string{"registration", "list", "a", "--network", "n"}, 2, "--external-id"},
		{[]string{"token", "set", "a"}, 2, "stdin"},
		{[]string{"token", "revoke", "a"}, 2, "--reason"},
		{[]string{"enqueue"}, 2, "no JSON"},
		{[]string{"enqueue"}, 2, "no JSON"},
	}
	for _, tt := range tests {
		r := b.botq(t, "", tt.give...)
		require.Equal(t, tt.wantCode, r.code, "%v: %s", tt.give, r.stderr)
		require.Contains(t, r.stderr, tt.wantText, "%v", tt.give)
		require.Equal(t, 1, strings.Count(strings.TrimSpace(r.stderr), "\n")+1, "one line: %q", r.stderr)
	}
	r := b.botq(t, `{"app_id":"a","kind":"respond","payload":{},"colour":1}`, "enqueue")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "colour")
}

func TestCLIActionsReplayAndCancel(t *testing.T) {
	t.Parallel()
	b := setupCLI(t)
	b.app(t, "cli-app")

	out := b.ok(t, `[{"app_id":"cli-app","kind":"respond","payload":`+string(storetest.RespondPayload("a1", "hi"))+`,"idempotency_key":"k1"},
		{"app_id":"cli-app","kind":"respond","payload":`+string(storetest.RespondPayload("a2", "hi"))+`,"idempotency_key":"k2"}]`,
		"enqueue", "-o", "json")
	var enq []api.EnqueueResponse
	require.NoError(t, json.Unmarshal([]byte(out), &enq))
	require.Len(t, enq, 2)
	require.Equal(t, "cli:tester", enq[0].Action.CreatedBy)
	again := b.ok(t, `{"app_id":"cli-app","kind":"respond","payload":`+string(storetest.RespondPayload("a1", "hi"))+`,"idempotency_key":"k1"}`, "enqueue")
	require.Contains(t, again, "true", "existed")
	r := b.botq(t, `{"app_id":"cli-app","kind":"respond","payload":{"author":{"id":"x"}}}`, "enqueue")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "payload.coordinate")

	first, second := enq[0].Action.ID, enq[1].Action.ID
	longError := "HTTP 500: " + strings.Repeat("the gateway said something long about it; ", 4) + "the end"
	_, err := b.s.ActionSetState(b.ctx, b.pool, store.ActionSetStateParams{ID: first, To: store.ActionFailed, LastError: &longError})
	require.NoError(t, err)

	out = b.ok(t, "", "actions", "list", "--app", "cli-app", "--state", "failed")
	require.Contains(t, out, "HTTP 500")
	require.NotContains(t, out, "the end", "a listing cuts long cells")
	require.Equal(t, 2, strings.Count(out, "\n"), "header and one action: %s", out)
	require.Equal(t, out, b.ok(t, "", "actions", "list", "--app", "cli-app", "--state", "FAILED"), "states in any case")
	out = b.ok(t, "", "actions", "show", fmt.Sprint(first))
	require.Contains(t, out, longError, "show never cuts")
	out = b.ok(t, "", "actions", "show", fmt.Sprint(first), "-o", "json")
	var d api.ActionDetail
	require.NoError(t, json.Unmarshal([]byte(out), &d))
	require.Equal(t, "failed", d.Action.State)

	out = b.ok(t, "", "replay", "--app", "cli-app", "--state", "failed", "--dry-run", "--reason", "outage")
	require.Contains(t, out, "1 would be replayed")
	out = b.ok(t, "", "replay", fmt.Sprint(first), "--reason", "outage")
	require.Contains(t, out, "replayed action")
	r = b.botq(t, "", "replay", fmt.Sprint(first), "--reason", "again")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "it was replayed already (once); pass --allow-replayed")

	_, err = b.s.ActionSetState(b.ctx, b.pool, store.ActionSetStateParams{ID: second, To: store.ActionSucceeded})
	require.NoError(t, err)
	r = b.botq(t, "", "replay", fmt.Sprint(second), "--reason", "resend")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "--allow-succeeded")
	b.ok(t, "", "replay", fmt.Sprint(second), "--reason", "resend", "--allow-succeeded")

	// Bulk, by filter, with the progress bar forced onto stderr.
	for _, key := range []string{"k3", "k4", "k5"} {
		res, err := b.s.ActionInsert(b.ctx, b.pool, actionParams("cli-app", key))
		require.NoError(t, err)
		_, err = b.s.ActionSetState(b.ctx, b.pool, store.ActionSetStateParams{ID: res.Action.ID, To: store.ActionFailed})
		require.NoError(t, err)
	}
	r = b.botq(t, "", "replay", "--app", "cli-app", "--state", "failed", "--reason", "bulk", "--batch-size", "2", "--progress")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "replayed 3 of 4 actions matched")
	require.Contains(t, r.stdout, "skipped 1: replayed --allow-replayed")
	require.Regexp(t, `new actions: \d+, \d+, \d+; see one with: botq actions show \d+`, r.stdout)
	require.NotContains(t, r.stdout, "...")
	require.Contains(t, r.stderr, "replaying")

	out = b.ok(t, "", "events", "--kind", "replay", "--app", "cli-app", "-o", "json")
	var evs api.EventList
	require.NoError(t, json.Unmarshal([]byte(out), &evs))
	require.Len(t, evs.Events, 5)
	require.Equal(t, "cli:tester", evs.Events[0].Actor)

	// The replays are queued: cancel one.
	d = api.ActionDetail{}
	require.NoError(t, json.Unmarshal([]byte(b.ok(t, "", "actions", "show", fmt.Sprint(first), "-o", "json")), &d))
	require.Len(t, d.Replays, 1)
	out = b.ok(t, "", "actions", "cancel", fmt.Sprint(d.Replays[0].ID), "--reason", "not needed")
	require.Contains(t, out, "cancelled")
	r = b.botq(t, "", "actions", "cancel", fmt.Sprint(d.Replays[0].ID), "--reason", "again")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "already cancelled")
	r = b.botq(t, "", "actions", "cancel", fmt.Sprint(second), "--reason", "too late")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "it has already succeeded")
}

func TestCLIAppsTokensRegistrationsHealth(t *testing.T) {
	t.Parallel()
	b := setupCLI(t)
	b.app(t, "tok-app")
	tok, err := b.sim.MintToken("tok-app", sim.MintOptions{CompanyKey: "acme"})
	require.NoError(t, err)

	r := b.botq(t, "", "health", "tok-app")
	require.Equal(t, 1, r.code, "no token yet")
	out := b.ok(t, tok.Token+"\n", "token", "set", "tok-app", "--reason", "first token")
	require.Contains(t, out, "stored token version 1")
	require.NotContains(t, out, tok.Token)
	out = b.ok(t, "", "token", "status", "-o", "json")
	require.NotContains(t, out, tok.Token)
	var st []appclient.TokenStatus
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Equal(t, "stored", st[0].Source)
	require.True(t, *st[0].KeyOK)
	require.NotNil(t, st[0].ExpiresAt)

	out = b.ok(t, "", "token", "refresh", "tok-app")
	require.Contains(t, out, "version 2")
	out = b.ok(t, "", "health", "tok-app")
	require.Contains(t, out, "tok-app")
	out = b.ok(t, "", "registration", "list", "tok-app", "-o", "json")
	require.Equal(t, "[]\n", out)

	out = b.ok(t, "", "mode", "tok-app", "live", "--network", "facebook", "--external-id", "page-1")
	require.Contains(t, out, "enqueued action")
	out = b.ok(t, `{"companyKey":"acme","platform":"LITHIUM","networkKey":"facebook","externalId":"page-2","name":"Bot",
		"callbackUrl":"https://bot.example.com/hook","credentials":{"type":"BASIC_AUTH","identity":"u","secret":"s3cret"}}`,
		"registration", "create", "tok-app", "-o", "json")
	var enq api.EnqueueResponse
	require.NoError(t, json.Unmarshal([]byte(out), &enq))
	require.Equal(t, "registration_create", enq.Action.Kind)
	require.NotContains(t, out, "s3cret", "secrets are redacted")

	out = b.ok(t, "", "app", "pause", "tok-app", "--reason", "maintenance", "--for", "1d")
	_, untilText, found := strings.Cut(strings.TrimSpace(out), "paused app tok-app until ")
	require.True(t, found, out)
	until, err := time.Parse(time.RFC3339, strings.Fields(untilText)[0])
	require.NoError(t, err, out)
	require.WithinDuration(t, time.Now().Add(24*time.Hour), until, time.Minute, "--for 1d is a day")
	out = b.ok(t, "", "app", "list", "-o", "json")
	var apps api.AppList
	require.NoError(t, json.Unmarshal([]byte(out), &apps))
	require.True(t, apps.Apps[0].Paused)
	require.EqualValues(t, 2, apps.Apps[0].Queue.Depth)
	b.ok(t, "", "app", "resume", "tok-app")

	out = b.ok(t, "", "token", "revoke", "tok-app", "--reason", "leaked")
	require.Contains(t, out, "paused until a new token")
	require.Equal(t, 1, b.sim.CallCount(sim.CallFilter{Endpoint: "token_revoke"}), "one DELETE reached Khoros")

	// Bootstrap a first token from Care (Basic credentials on stdin); the
	// app paused by the revoke resumes.
	out = b.ok(t, sim.DefaultBootstrapUser+"\n"+sim.DefaultBootstrapPassword+"\n", "token", "bootstrap", "tok-app")
	require.Contains(t, out, "stored token version")
	require.Contains(t, out, "resumed")
	b.vars["BOTQ_CARE_USERNAME"], b.vars["BOTQ_CARE_PASSWORD"] = "botq", "wrong"
	r = b.botq(t, "", "token", "bootstrap", "tok-app", "--existing")
	require.Equal(t, 1, r.code)

	out = b.ok(t, "", "events", "--app", "tok-app")
	for _, kind := range []string{"token_set", "token_refresh", "token_revoke", "pause", "resume"} {
		require.Contains(t, out, kind)
	}
}

func TestCLIRequestsListShowExport(t *testing.T) {
	t.Parallel()
	b := setupCLI(t)
	b.app(t, "req-app")
	res, err := b.s.ActionInsert(b.ctx, b.pool, actionParams("req-app", "r1"))
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, b.s.RequestUpsert(b.ctx, b.pool, &store.RequestUpsertParams{RequestID: fmt.Sprintf("rq-%d", i),
			AppID: "req-app", ActionID: &res.Action.ID, State: store.RequestSuccess, Details: []byte(`{"message":"ok"}`)}))
	}
	out := b.ok(t, "", "requests", "list", "--app", "req-app", "--kind", "respond")
	require.Equal(t, 4, strings.Count(out, "\n"))
	// Pages: the hint names the next page's --after.
	r := b.botq(t, "", "requests", "list", "--app", "req-app", "--limit", "2", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var page api.RequestList
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &page))
	require.Len(t, page.Requests, 2)
	last := page.Requests[1].RequestID
	require.Contains(t, r.stderr, "--after "+last)
	r = b.botq(t, "", "requests", "list", "--app", "req-app", "--limit", "2", "--after", last, "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &page))
	require.Len(t, page.Requests, 1, "the third record")
	require.NotEqual(t, last, page.Requests[0].RequestID)
	r = b.botq(t, "", "requests", "list", "--after", "nope")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--after")
	out = b.ok(t, "", "requests", "show", "rq-1")
	require.Contains(t, out, "SUCCESS")
	out = b.ok(t, "", "requests", "export", "--app", "req-app")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 4)
	path := filepath.Join(t.TempDir(), "out.json")
	r = b.botq(t, "", "requests", "export", "--app", "req-app", "--format", "json", "--out", path, "--progress")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "exported 3 request records")
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var recs []api.Request
	require.NoError(t, json.Unmarshal(raw, &recs))
	require.Len(t, recs, 3)
}

// exportChildEnv makes the test binary, run again, do one export and exit:
// its peak RSS is the export's (plus the test binary's own baseline).
const exportChildEnv = "BOTQ_TEST_EXPORT_CHILD"

// TestExportFlatMemory exports 100,000 request records through `botq
// requests export` in a child process and checks its peak RSS stays under
// 100 MB: rows stream from Postgres to the file, never held together.
func TestExportFlatMemory(t *testing.T) {
	if args := os.Getenv(exportChildEnv); args != "" {
		b := &cliBundle{ctx: context.Background(), vars: map[string]string{
			"DATABASE_URL": os.Getenv("TEST_DATABASE_URL"), "BOTQ_DATABASE_SCHEMA": os.Getenv("BOTQ_TEST_SCHEMA")}}
		var argv []string
		require.NoError(t, json.Unmarshal([]byte(args), &argv))
		b.ok(t, "", argv...)
		// VmHWM of this process image: exec started a new one, so unlike the
		// parent's rusage of a vforked child it excludes the parent's memory.
		status, err := os.ReadFile("/proc/self/status")
		require.NoError(t, err)
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				fmt.Printf("\nPEAK_RSS_KB=%s\n", strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			}
		}
		return
	}
	if testing.Short() {
		t.Skip("exports 100,000 records; skipped with -short")
	}
	t.Parallel()
	// The test's pool and the child's export command's.
	storetest.Conns(t, 2+cliConns)
	schema, pool := storetest.NewSchema(t, 2)
	ctx := context.Background()
	const n = 100_000
	start := time.Now()
	_, err := pool.Exec(ctx, fmt.Sprintf(`
		INSERT INTO %[1]s.app (id, company_key) VALUES ('export-app', 'acme');
		INSERT INTO %[1]s.request (request_id, app_id, origin, state, details, payload, http_status, khoros_created_at,
		                           khoros_completed_at, first_seen_at, last_checked_at, check_count, finalized_at)
		SELECT 'req-' || lpad(i::text, 8, '0'), 'export-app', 'KHOROS', 'SUCCESS',
		       jsonb_build_object('message', 'Message delivered to the customer', 'code', 200, 'n', i),
		       jsonb_build_object('text', repeat('x', 120), 'author', jsonb_build_object('id', 'author-' || i)),
		       202, now() - interval '1 day', now() - interval '1 day', now() - (i || ' seconds')::interval, now(), 1, now()
		FROM generate_series(1, %[2]d) AS i`, schema, n))
	require.NoError(t, err)
	t.Logf("inserted %d request records in %s", n, time.Since(start).Round(time.Millisecond))

	for _, format := range []string{"csv", "json"} {
		path := filepath.Join(t.TempDir(), "export."+format)
		args, err := json.Marshal([]string{"requests", "export", "--app", "export-app", "--format", format, "--out", path})
		require.NoError(t, err)
		cmd := osexec.Command(os.Args[0], "-test.run=^TestExportFlatMemory$", "-test.count=1")
		cmd.Env = childEnv(exportChildEnv+"="+string(args), "BOTQ_TEST_SCHEMA="+schema)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		require.NoError(t, err, "%s", out)
		_, kb, ok := strings.Cut(string(out), "PEAK_RSS_KB=")
		require.True(t, ok, "the child reports its peak RSS: %s", out)
		kb, _, _ = strings.Cut(kb, "\n")
		peakKB, err := strconv.Atoi(strings.TrimSpace(kb))
		require.NoError(t, err)
		peakMB := float64(peakKB) / 1024
		info, err := os.Stat(path)
		require.NoError(t, err)
		t.Logf("%s export of %d records: %.1f MB file in %s, child peak RSS %.1f MB",
			format, n, float64(info.Size())/(1<<20), took.Round(time.Millisecond), peakMB)
		require.Less(t, peakMB, 100.0, "peak RSS of the export")

		f, err := os.Open(path)
		require.NoError(t, err)
		if format == "csv" {
			r := csv.NewReader(f)
			rows := 0
			for {
				rec, err := r.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
				if rows == 1 {
					require.Equal(t, "req-00100000", rec[0], "oldest first")
				}
				rows++
			}
			require.Equal(t, n+1, rows)
		} else {
			var recs []json.RawMessage
			require.NoError(t, json.NewDecoder(f).Decode(&recs))
			require.Len(t, recs, n)
		}
		_ = f.Close()
	}
}

// A command run against a schema that was never migrated says what to run.
func TestCLIUnmigratedSchemaSaysMigrate(t *testing.T) {
	t.Parallel()
	b := setupCLI(t)
	b.vars["BOTQ_DATABASE_SCHEMA"] = b.schema + "_absent"
	r := b.botq(t, "", "actions", "list")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "botq migrate up", r.stderr)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %s", r.stderr)
}

// Commands that change an app print it, with --output json, as app list
// shows it.
func TestCLIAppChangesAsJSON(t *testing.T) {
	t.Parallel()
	b := setupCLI(t)
	decode := func(out string) api.App {
		t.Helper()
		var a api.App
		require.NoError(t, json.Unmarshal([]byte(out), &a), out)
		return a
	}
	a := decode(b.ok(t, "", "app", "set", "js-app", "--region", "CUSTOM", "--base-url", b.simURL, "--company-key", "acme", "--concurrency", "3", "-o", "json"))
	require.Equal(t, "js-app", a.ID)
	require.Equal(t, 3, *a.ConcurrencyLimit)
	require.Equal(t, "none", a.Token.Source)

	tok, err := b.sim.MintToken("js-app", sim.MintOptions{CompanyKey: "acme"})
	require.NoError(t, err)
	a = decode(b.ok(t, tok.Token, "token", "set", "js-app", "--output", "json"))
	require.Equal(t, "stored", a.Token.Source)
	require.Equal(t, 1, a.Token.Version)
	require.NotContains(t, b.ok(t, "", "app", "list", "js-app", "-o", "json"), tok.Token)

	a = decode(b.ok(t, "", "app", "pause", "js-app", "--reason", "maintenance", "-o", "json"))
	require.True(t, a.Paused)
	require.Equal(t, "maintenance", a.PauseReason)
	a = decode(b.ok(t, "", "app", "resume", "js-app", "-o", "json"))
	require.False(t, a.Paused)

	require.Contains(t, b.ok(t, "", "app", "resume", "js-app"), "resumed app js-app", "a sentence without --output json")
	r := b.botq(t, "", "app", "resume", "js-app", "-o", "yaml")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--output")

	r = b.botq(t, "", "app", "set", "js-app", "--region", "US", "--company-key", "acme", "--lane-on-failure", "maybe")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--lane-on-failure: must be continue or block", "the flag, as the user typed it")
}

// migrate status only looks: on a schema never migrated it lists every
// migration as pending and creates nothing.
func TestCLIMigrateStatusWritesNothing(t *testing.T) {
	t.Parallel()
	b := setupCLI(t)
	absent := b.schema + "_never"
	b.vars["BOTQ_DATABASE_SCHEMA"] = absent
	out := b.ok(t, "", "migrate", "status")
	require.Contains(t, out, "was never migrated")
	require.Contains(t, out, "pending")
	var exists bool
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, absent).Scan(&exists))
	require.False(t, exists, "status created the schema")

	b.vars["BOTQ_DATABASE_SCHEMA"] = b.schema
	out = b.ok(t, "", "migrate", "status")
	require.NotContains(t, out, "pending", "a migrated schema: %s", out)
	require.Contains(t, out, "applied")
}

// botq grant: an operator grants a principal an app, lists and revokes it,
// each recorded with the actor; a key without the grant is refused, and the
// operator at the CLI enqueues for any app.
func TestCLIGrants(t *testing.T) {
	t.Parallel()
	b := setupCLI(t)
	b.app(t, "shop-bot")
	require.Contains(t, b.ok(t, "", "grant", "add", "api:acme", "shop-bot", "--reason", "acme's bot"), "granted api:acme app shop-bot (conversation kinds)")
	require.Contains(t, b.ok(t, "", "grant", "add", "bot_b", "shop-bot", "--all-kinds"), "(all kinds)")
	list := b.ok(t, "", "grant", "list")
	require.Contains(t, list, "api:acme")
	require.Contains(t, list, "cli:tester")
	require.Contains(t, b.ok(t, "", "grant", "list", "bot_b", "-o", "json"), `"scope": "all"`)
	require.Contains(t, b.ok(t, "", "grant", "remove", "bot_b", "shop-bot"), "revoked bot_b app shop-bot")
	r := b.botq(t, "", "grant", "remove", "bot_b", "shop-bot")
	require.Equal(t, 1, r.code, "nothing left to revoke")
	r = b.botq(t, "", "grant", "add", "api:acme", "no-such-app")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "no-such-app")
	events := b.ok(t, "", "events", "--app", "shop-bot", "-o", "json")
	require.Contains(t, events, `"kind": "grant_revoke"`)
	require.Contains(t, events, `"actor": "cli:tester"`)

	// The operator at the CLI needs no grant.
	out := b.ok(t, `{"app_id":"shop-bot","kind":"respond","payload":`+string(storetest.RespondPayload("a", "hi"))+`}`, "enqueue")
	require.Contains(t, out, "shop-bot")
}
