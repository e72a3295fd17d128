package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/migrations"
	"github.com/botq/botq/store"
)

// devApp is the demo app `botq dev` creates on the simulator, with company
// key devCompany; devRetiredApp is a second one, whose token the README's
// token_revoke example revokes without stopping the first.
const (
	devApp        = "demo-bot"
	devRetiredApp = "retired-bot"
	devCompany    = "demo"
)

// DevOptions are what `botq dev` runs with.
type DevOptions struct {
	// Config is the configuration as loaded (file and environment); Dev
	// fills in the database, the keys and the addresses it finds.
	Config Config
	// LookupEnv reads the environment (os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Dir holds the throwaway cluster and the dev encryption key.
	Dir string
	// SimListen is the simulator's address (a free port if it is taken).
	SimListen      string
	Stdout, Stderr io.Writer
}

// RunDev runs botq's main job on embedded defaults: Postgres (found or
// started), the Bot v3 simulator with a demo app, botq serve and sample
// actions, until ctx ends.
func RunDev(ctx context.Context, o DevOptions) error {
	cfg, env, dir, simListen := o.Config, o.LookupEnv, o.Dir, o.SimListen
	var err error
	out := o.Stdout
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--dir %s: %w", dir, err)
	}
	db, err := findDevDatabase(ctx, env, dir, out)
	if err != nil {
		return err
	}
	defer db.Stop()
	cfg.Database.URL = db.URL
	cfg.Database.AutoMigrate = true
	if _, set := env("BOTQ_LOG_FORMAT"); !set {
		cfg.Log.Format = "console"
	}
	keyFile := ""
	if cfg.Encryption.Key == "" {
		keyFile = filepath.Join(dir, "dev.key")
		if cfg.Encryption.Key, err = devKey(keyFile); err != nil {
			return err
		}
	}
	apiKey := ""
	if cfg.HTTP.APIKeys == "" {
		apiKey = "dev-" + randomHex(16)
		cfg.HTTP.APIKeys = "dev:operator:" + apiKey
	}
	if cfg.HTTP.Listen, err = freeOr(cfg.HTTP.Listen); err != nil {
		return err
	}
	if simListen, err = freeOr(simListen); err != nil {
		return err
	}
	if problems := cfg.Validate(); len(problems) > 0 {
		return &ConfigError{Problems: problems}
	}

	// The simulator, with the demo app and its token.
	simSrv := sim.New(sim.Options{Seed: time.Now().UnixNano(), CallLogBodies: true, MaxRecords: 200000})
	simLn, err := net.Listen("tcp", simListen)
	if err != nil {
		return fmt.Errorf("simulator --sim-listen %s: %w", simListen, err)
	}
	// Apps call the simulator over loopback (botq refuses plain http to any
	// other host), even when it listens on every interface for a container.
	_, simPort, _ := net.SplitHostPort(simLn.Addr().String())
	simURL := "http://127.0.0.1:" + simPort
	simCtx, stopSim := context.WithCancel(context.WithoutCancel(ctx))
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Serve(simCtx, simLn, simSrv) }()
	defer func() {
		stopSim()
		<-simDone
	}()

	pool, err := store.NewPool(ctx, db.URL, cfg.Database.Schema, store.PoolOptions{MaxConns: 4, AppName: "botq-dev"})
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrations.Up(ctx, pool, cfg.Database.Schema, nil); err != nil {
		return err
	}
	if cfg.Database.Role, err = devRole(ctx, pool, cfg, out); err != nil {
		return err
	}
	for _, app := range []string{devApp, devRetiredApp} {
		if err := setupDevApp(ctx, pool, cfg, simSrv, simURL, app); err != nil {
			return err
		}
	}

	m := NewMain(cfg, NewLogger(cfg.Log, o.Stderr))
	m.LookupEnv = env
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()
	if err := m.WaitReady(ctx, runErr); err != nil {
		return err
	}
	apiURL := "http://" + reachable(*m.Addr.Load())

	ids, err := enqueueSamples(ctx, pool, cfg, apiURL, apiKey)
	if err != nil {
		fmt.Fprintf(o.Stderr, "botq dev: enqueue samples: %v\n", err)
	}
	shell := devEnv{DatabaseURL: db.URL, Schema: cfg.Database.Schema, KeyFile: keyFile, APIURL: apiURL, APIKey: apiKey,
		SimURL: "http://" + reachable(simLn.Addr().String())}
	envFile, err := shell.write(dir)
	if err != nil {
		fmt.Fprintf(o.Stderr, "botq dev: %v\n", err)
	}
	printDevBanner(out, cfg, db, shell, envFile, ids)
	go reportSamples(ctx, pool, cfg.Database.Schema, ids, out)

	err = <-runErr
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	fmt.Fprintln(out, "botq dev: stopped")
	return err
}

// devKey returns the token encryption key kept in path, creating it once.
func devKey(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s := base64.StdEncoding.EncodeToString(key)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write dev encryption key: %w", err)
	}
	return s, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freeOr returns addr if it can be listened on, else the same host on a
// free port.
func freeOr(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		_ = ln.Close()
		return addr, nil
	}
	host, _, splitErr := net.SplitHostPort(addr)
	if splitErr != nil {
		return "", fmt.Errorf("%q is not host:port", addr)
	}
	ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func setupDevApp(ctx context.Context, pool *pgxpool.Pool, cfg Config, s *sim.Server, simURL, app string) error {
	st, err := store.New(cfg.Database.Schema)
	if err != nil {
		return err
	}
	key, err := store.ParseKey(cfg.Encryption.Key)
	if err != nil {
		return fmt.Errorf("encryption key: %w", err)
	}
	kr, err := store.NewKeyring(key)
	if err != nil {
		return err
	}
	tok, err := s.MintToken(app, sim.MintOptions{CompanyKey: devCompany})
	if err != nil {
		return err
	}
	if _, err := st.AppUpsert(ctx, pool, store.AppUpsertParams{ID: app, Region: "CUSTOM", BaseURL: simURL, CompanyKey: devCompany}); err != nil {
		return err
	}
	exp := tok.ExpiresAt()
	if _, err := st.AppSetToken(ctx, pool, app, kr.Seal(app, tok.Token), kr.ID(), &exp); err != nil {
		return err
	}
	_, err = st.AppResume(ctx, pool, app)
	return err
}

// devRole makes botq's roles and returns the role botq runs as: the
// configured one (botq_runtime) when the login user may act as it, else the
// login user, with a note saying why.
func devRole(ctx context.Context, pool *pgxpool.Pool, cfg Config, out io.Writer) (string, error) {
	role := cfg.Database.Role
	if role == "" {
		return "", nil
	}
	var b strings.Builder
	if err := SetupRoles(ctx, &b, pool, cfg.Database.Schema); err != nil {
		return "", err
	}
	var member bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AND pg_has_role(current_user, $1, 'MEMBER')`, role).Scan(&member)
	if err != nil {
		return "", err
	}
	if !member {
		fmt.Fprintf(out, "botq dev: runs as the login user: it cannot act as %s (%s)\n", role, strings.TrimSpace(b.String()))
		return "", nil
	}
	return role, nil
}

// WaitReady waits until m serves, or its Run (whose result runErr receives)
// ends first; the error is put back on runErr for the caller.
func (m *Main) WaitReady(ctx context.Context, runErr chan error) error {
	for {
		if m.ready.Load() {
			return nil
		}
		select {
		case err := <-runErr:
			if err == nil {
				err = errors.New("botq stopped while starting")
			}
			runErr <- err
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func samplePayload(author, field string, value any) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"coordinate": map[string]any{"companyKey": devCompany, "networkKey": "facebook", "externalId": "demo-page", "scope": "PRIVATE"},
		"author":     map[string]any{"id": author, "fullName": "Demo Customer"},
		field:        value,
	})
	return b
}

// enqueueSamples enqueues one action through each enqueue path.
func enqueueSamples(ctx context.Context, pool *pgxpool.Pool, cfg Config, apiURL, apiKey string) ([]int64, error) {
	schema := cfg.Database.Schema
	run := randomHex(4)
	var ids []int64
	// SQL, as a bot in any language would, in its own transaction.
	var id int64
	err := pool.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload, idempotency_key) VALUES ($1, 'respond', $2, $3) RETURNING id`, schema),
		devApp, samplePayload("customer-1", "text", "Hello from botq (enqueued by SQL)"), "dev-sql-"+run).Scan(&id)
	if err != nil {
		return ids, fmt.Errorf("enqueue by SQL: %w", err)
	}
	ids = append(ids, id)
	// Go, with the jobs package.
	enq, err := jobs.NewEnqueuer(schema)
	if err != nil {
		return ids, err
	}
	id, _, err = enq.Enqueue(ctx, pool, jobs.Action{AppID: devApp, Kind: jobs.KindTag, IdempotencyKey: "dev-go-" + run,
		Payload: samplePayload("customer-1", "tagIds", []int{101, 102}), CreatedBy: "botq dev"})
	if err != nil {
		return ids, fmt.Errorf("by Go (jobs.Enqueue): %w", err)
	}
	ids = append(ids, id)
	// HTTP.
	if apiKey == "" {
		return ids, nil
	}
	body, _ := json.Marshal(map[string]any{"app_id": devApp, "kind": "note", "payload": samplePayload("customer-1", "note", "Enqueued over HTTP by botq dev")})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/v1/actions", bytes.NewReader(body))
	if err != nil {
		return ids, err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "dev-http-"+run)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return ids, fmt.Errorf("enqueue over HTTP: %w", err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode/100 != 2 {
		return ids, fmt.Errorf("enqueue over HTTP: POST /v1/actions: %s: %s", res.Status, strings.TrimSpace(string(raw)))
	}
	var got struct {
		Action struct {
			ID int64 `json:"id"`
		} `json:"action"`
	}
	if err := json.Unmarshal(raw, &got); err != nil || got.Action.ID == 0 {
		return ids, fmt.Errorf("enqueue over HTTP: POST /v1/actions answered %s", strings.TrimSpace(string(raw)))
	}
	return append(ids, got.Action.ID), nil
}

// reachable turns a listening address into one to connect to: an
// unspecified host (0.0.0.0 or [::], as in a container) becomes the
// loopback address, where the port is also published.
func reachable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// devEnv are the settings a second shell needs to use what `botq dev`
// started: the CLI, psql and curl of the README and docs/operations-api.md.
type devEnv struct {
	DatabaseURL, Schema string
	KeyFile             string // "" when the key came from the environment or the config
	APIURL, APIKey      string // APIKey "" when BOTQ_API_KEYS gave the keys
	SimURL              string
}

// devEnvFile is the file in --dir that `source` reads.
const devEnvFile = "env"

// write writes the settings as a shell file in dir (mode 0600: it holds the
// database URL and an API key) and returns its path as dir names it.
func (e devEnv) write(dir string) (string, error) {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	var b strings.Builder
	b.WriteString("# Written by `botq dev` (make run) for another shell: source this file, then the CLI,\n" +
		"# psql and curl examples of README.md and docs/operations-api.md work against it.\n")
	fmt.Fprintf(&b, "export DATABASE_URL=%s\n", q(e.DatabaseURL))
	fmt.Fprintf(&b, "export BOTQ_DATABASE_SCHEMA=%s\n", q(e.Schema))
	if e.KeyFile != "" {
		abs, err := filepath.Abs(e.KeyFile)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "export BOTQ_ENCRYPTION_KEY_FILE=%s\n", q(abs))
	} else {
		b.WriteString("# BOTQ_ENCRYPTION_KEY (or encryption.key_file): the one botq dev was started with\n")
	}
	fmt.Fprintf(&b, "export BOTQ_URL=%s\n", q(e.APIURL))
	if e.APIKey != "" {
		fmt.Fprintf(&b, "export BOTQ_API_KEY=%s\n", q(e.APIKey))
	} else {
		b.WriteString("# BOTQ_API_KEY: one of the keys of BOTQ_API_KEYS, which botq dev was started with\n")
	}
	fmt.Fprintf(&b, "export BOTQ_SIM_URL=%s\n", q(e.SimURL))
	// The simulator plays Khoros Care too, for botq token bootstrap: its
	// Care user is a fixed one, and only the simulator knows it.
	fmt.Fprintf(&b, "export BOTQ_KHOROS_CARE_BASE_URL=%s BOTQ_CARE_USERNAME=%s BOTQ_CARE_PASSWORD=%s\n",
		q(e.SimURL), q(sim.DefaultBootstrapUser), q(sim.DefaultBootstrapPassword))
	if exe, err := os.Executable(); err == nil {
		fmt.Fprintf(&b, "export PATH=%s:\"$PATH\"\n", q(filepath.Dir(exe)))
	}
	path := filepath.Join(dir, devEnvFile)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

func printDevBanner(w io.Writer, cfg Config, db *DevDatabase, env devEnv, envFile string, ids []int64) {
	schema := cfg.Database.Schema
	apiURL := env.APIURL
	fmt.Fprintf(w, `
botq is running (Ctrl-C stops everything it started)

  Postgres       %s  (%s)
  Console        %s/  (sign in with the API key below)
  HTTP API       %s/v1
  River UI       %s/riverui/
  Metrics        %s/metrics
  Health         %s/healthz
  Bot v3 sim     %s  (admin: %s/_sim/calls)
  Apps           %s and %s (company key %s), on the simulator
`, redactURL(db.URL), db.Source, apiURL, apiURL, apiURL, apiURL, apiURL, env.SimURL, env.SimURL, devApp, devRetiredApp, devCompany)
	if env.APIKey != "" {
		fmt.Fprintf(w, "  API key        %s  (operator; a new one each run)\n", env.APIKey)
	}
	how := "one by SQL, one by Go, one over HTTP"
	if env.APIKey == "" {
		how = "one by SQL, one by Go; none over HTTP, since BOTQ_API_KEYS gives the keys and botq dev has none of its own"
	}
	fmt.Fprintf(w, "\nSample actions %v (%s) are on their way to the simulator.\n", ids, how)
	if envFile == "" {
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintf(w, `
In another shell, in this directory, load the settings the README's examples use (database,
dev encryption key, BOTQ_URL, BOTQ_API_KEY, and this botq on PATH):
  source %s

Then enqueue one more with psql:
  psql "$DATABASE_URL" -c "INSERT INTO %s.action (app_id, kind, payload) VALUES ('%s', 'respond', '{\"coordinate\":{\"companyKey\":\"%s\",\"networkKey\":\"facebook\",\"externalId\":\"demo-page\",\"scope\":\"PRIVATE\"},\"author\":{\"id\":\"customer-1\"},\"text\":\"Hi again\"}')"

See the request history:
  botq requests list --app %s
  psql "$DATABASE_URL" -c "SELECT action_id, kind, state, request_id, request_state FROM %s.action_history ORDER BY action_id DESC LIMIT 10"
  curl -s -H "Authorization: Bearer $BOTQ_API_KEY" "$BOTQ_URL/v1/actions?app=%s"

`, envFile, schema, devApp, devCompany, devApp, schema, devApp)
}

// reportSamples prints once the sample actions have settled.
func reportSamples(ctx context.Context, pool *pgxpool.Pool, schema string, ids []int64, w io.Writer) {
	if len(ids) == 0 {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		rows, err := pool.Query(ctx, fmt.Sprintf(`SELECT id, kind, state, coalesce(request_id, '') FROM %s.action WHERE id = ANY($1) ORDER BY id`, schema), ids)
		if err != nil {
			return
		}
		var lines []string
		done := true
		for rows.Next() {
			var id int64
			var kind, state, rid string
			if rows.Scan(&id, &kind, &state, &rid) != nil {
				break
			}
			done = done && store.ActionState(state).Final()
			lines = append(lines, fmt.Sprintf("  action %d %-8s %-9s request %s", id, kind, state, rid))
		}
		rows.Close()
		if done && len(lines) == len(ids) {
			fmt.Fprintf(w, "Sample actions settled:\n%s\n\n", strings.Join(lines, "\n"))
			return
		}
	}
}
