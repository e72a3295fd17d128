package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/migrations"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	storetest.Cleanup()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// botqBinary builds the botq binary once per test run: end-to-end tests run
// real processes, so that kill -9 kills a real process.
func botqBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "botq-e2e-bin")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "botq")
		out, err := osexec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// chaosFull reports whether the long versions of the fault tests run
// (make test/chaos sets BOTQ_CHAOS=full).
func chaosFull() bool { return os.Getenv("BOTQ_CHAOS") == "full" }

// cluster is one botq deployment for a test: a fresh schema, the Bot v3
// simulator (in this process, on loopback), apps with stored tokens, and any
// number of `botq serve` processes sharing the database.
type cluster struct {
	t       *testing.T
	ctx     context.Context
	url     string
	schema  string
	pool    *pgxpool.Pool
	store   *store.Store
	sim     *sim.Server
	simURL  string
	key     string
	keyring *store.Keyring
	config  string
	dir     string
	apiKeys string

	mu       sync.Mutex
	procs    []*proc
	maxProcs int
}

type clusterOpts struct {
	sim        sim.Options
	maxWorkers int
	// callTimeout bounds a Bot v3 call (default 2s); the job timeout, the
	// rescue and the ambiguous sends' grace are set a little above it.
	callTimeout time.Duration
	// reconcileInterval is how often the reconciler runs (default 500ms).
	reconcileInterval time.Duration
	// procs is the most botq serve processes running at once (default 1):
	// the test reserves their connections up front.
	procs int
	// listMaxWait is reconciler.list_max_wait (default 5s, for quick
	// tests).
	listMaxWait time.Duration
	// yaml is appended to the processes' config file.
	yaml string
	// logLevel is the processes' log level (default debug).
	logLevel string
	// wrapSim, when set, wraps the simulator's handler (e.g. to delay
	// some calls).
	wrapSim func(http.Handler) http.Handler
}

// The connections a cluster holds on the test database (storetest.Conns).
const (
	clusterPoolConns = 4 // the test's own pool: enqueues and checks
	procMaxConns     = 6 // database.max_conns of each botq serve process
	cliConns         = 4 // one botq CLI command (or psql) at a time
)

func newCluster(t *testing.T, opts clusterOpts) *cluster {
	t.Helper()
	url := storetest.DatabaseURL(t)
	storetest.Conns(t, clusterPoolConns+max(opts.procs, 1)*procMaxConns+cliConns)
	schema, pool := storetest.NewSchema(t, clusterPoolConns)
	return setupCluster(t, url, schema, pool, opts)
}

// newClusterAt is newCluster on another database (a throwaway cluster), out
// of the test database's connection budget.
func newClusterAt(t *testing.T, url string, opts clusterOpts) *cluster {
	t.Helper()
	ctx := context.Background()
	schema := "e2e_" + randomHex(4)
	pool, err := store.NewPool(ctx, url, schema, store.PoolOptions{MaxConns: clusterPoolConns})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	// Its botq processes act as botq_runtime, as storetest's schemas do.
	_, _, err = store.RolesEnsure(ctx, pool)
	require.NoError(t, err)
	_, err = migrations.Up(ctx, pool, schema, nil)
	require.NoError(t, err)
	return setupCluster(t, url, schema, pool, opts)
}

func setupCluster(t *testing.T, url, schema string, pool *pgxpool.Pool, opts clusterOpts) *cluster {
	t.Helper()
	s, err := store.New(schema)
	require.NoError(t, err)
	simSrv := sim.New(opts.sim)
	var simHandler http.Handler = simSrv
	if opts.wrapSim != nil {
		simHandler = opts.wrapSim(simSrv)
	}
	hs := httptest.NewServer(simHandler)
	t.Cleanup(func() {
		_ = simSrv.Close()
		hs.Close()
	})
	rawKey := make([]byte, 32)
	_, _ = rand.Read(rawKey)
	kr, err := store.NewKeyring(rawKey)
	require.NoError(t, err)
	if opts.maxWorkers == 0 {
		opts.maxWorkers = 50
	}
	if opts.callTimeout == 0 {
		opts.callTimeout = 2 * time.Second
	}
	if opts.reconcileInterval == 0 {
		opts.reconcileInterval = 500 * time.Millisecond
	}
	if opts.listMaxWait == 0 {
		opts.listMaxWait = 5 * time.Second
	}
	if opts.logLevel == "" {
		opts.logLevel = "debug"
	}
	c := &cluster{
		t: t, ctx: context.Background(), url: url, schema: schema, pool: pool, store: s, sim: simSrv, simURL: hs.URL, maxProcs: max(opts.procs, 1),
		key: base64.StdEncoding.EncodeToString(rawKey), keyring: kr, dir: t.TempDir(),
		apiKeys: "op:operator:" + randomHex(16) + "\naud:auditor:" + randomHex(16) + "\nenq:enqueuer:" + randomHex(16),
	}
	c.config = filepath.Join(c.dir, "botq.yaml")
	cfg := fmt.Sprintf(`database:
  schema: %s
  max_conns: %d
log:
  level: %s
http:
  listen: 127.0.0.1:0
  shutdown_timeout: 5s
  pprof: true
river:
  queues:
    botq: {max_workers: %d}
    botq_maintenance: {max_workers: 2}
  fetch_cooldown: 10ms
  fetch_poll_interval: 100ms
  job_timeout: %s
  rescue_stuck_after: %s
khoros:
  http_timeout: %s
reconciler:
  interval: %s
  list_max_wait: %s
  ambiguous_grace: %s
  health_interval: 5s
kinds:
  respond: {retry_base: 100ms, retry_max: 1s}
  note: {retry_base: 100ms, retry_max: 1s}
  form: {retry_base: 100ms, retry_max: 1s}
  tag: {retry_base: 100ms, retry_max: 1s}
  control: {retry_base: 100ms, retry_max: 1s}
`, schema, procMaxConns, opts.logLevel, opts.maxWorkers, 2*opts.callTimeout, 3*opts.callTimeout, opts.callTimeout, opts.reconcileInterval, opts.listMaxWait, opts.callTimeout+time.Second) + opts.yaml
	require.NoError(t, os.WriteFile(c.config, []byte(cfg), 0o600))
	t.Cleanup(c.stopAll)
	return c
}

// addApp creates an app of company acme on the simulator and in botq, with
// a stored token.
func (c *cluster) addApp(id string, mod func(*store.AppUpsertParams)) {
	c.t.Helper()
	c.addAppCompany(id, "acme", mod)
}

// addAppCompany is addApp for another company.
func (c *cluster) addAppCompany(id, company string, mod func(*store.AppUpsertParams)) {
	c.t.Helper()
	tok, err := c.sim.MintToken(id, sim.MintOptions{CompanyKey: company})
	require.NoError(c.t, err)
	p := store.AppUpsertParams{ID: id, Region: "CUSTOM", BaseURL: c.simURL, CompanyKey: company}
	if mod != nil {
		mod(&p)
	}
	_, err = c.store.AppUpsert(c.ctx, c.pool, p)
	require.NoError(c.t, err)
	exp := tok.ExpiresAt()
	_, err = c.store.AppSetToken(c.ctx, c.pool, id, c.keyring.Seal(id, tok.Token), c.keyring.ID(), &exp)
	require.NoError(c.t, err)
}

// proc is one running `botq` process.
type proc struct {
	name     string
	cmd      *osexec.Cmd
	log      string
	done     chan struct{}
	exitErr  error
	addr     string
	clientID string
}

// childEnv is the environment of a process a test starts: this process's
// (PATH, HOME, the Go and proxy settings a build needs), less whatever would
// configure botq or a Postgres client behind the test's back (DATABASE_URL,
// BOTQ_*, PG*: `make run` invites exporting DATABASE_URL), plus set.
func childEnv(set ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "DATABASE_URL" || strings.HasPrefix(k, "BOTQ_") || strings.HasPrefix(k, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, set...)
}

func (c *cluster) env() []string {
	return childEnv(
		"DATABASE_URL="+c.url,
		"BOTQ_ENCRYPTION_KEY="+c.key,
		"BOTQ_API_KEYS="+c.apiKeys,
		"BOTQ_CONFIG="+c.config,
	)
}

// start runs `botq <args>` (default: serve) in the background and waits
// until it serves.
func (c *cluster) start(name string, args ...string) *proc {
	c.t.Helper()
	if len(args) == 0 {
		args = []string{"serve"}
	}
	bin := botqBinary(c.t)
	c.mu.Lock()
	alive := 0
	for _, p := range c.procs {
		if p.alive() {
			alive++
		}
	}
	c.mu.Unlock()
	if alive >= c.maxProcs {
		c.t.Fatalf("start %s: %d processes are running, and the cluster reserved connections for %d (clusterOpts.procs)", name, alive, c.maxProcs)
	}
	p := &proc{name: name, log: filepath.Join(c.dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano())), done: make(chan struct{})}
	f, err := os.Create(p.log)
	require.NoError(c.t, err)
	p.cmd = osexec.Command(bin, args...)
	p.cmd.Env = c.env()
	p.cmd.Stdout, p.cmd.Stderr = f, f
	require.NoError(c.t, p.cmd.Start())
	go func() {
		p.exitErr = p.cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for p.addr == "" || p.clientID == "" {
		select {
		case <-p.done:
			c.t.Fatalf("%s exited while starting: %v\n%s", name, p.exitErr, tail(p.log, 30))
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not start in 30s:\n%s", name, tail(p.log, 30))
		}
		time.Sleep(20 * time.Millisecond)
		p.scanLog()
	}
	return p
}

// scanLog reads the serving address and River client id from the log.
func (p *proc) scanLog() {
	f, err := os.Open(p.log)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		switch line["message"] {
		case "botq: Serving":
			p.addr, _ = line["addr"].(string)
		case "River client started":
			p.clientID, _ = line["client_id"].(string)
		}
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill9 kills the process at once, as a crash would.
func (p *proc) kill9() {
	if p.alive() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// interrupt stops the process with SIGINT and returns how it exited.
func (p *proc) interrupt(t *testing.T) error {
	t.Helper()
	if !p.alive() {
		return p.exitErr
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(30 * time.Second):
		p.kill9()
		t.Fatalf("%s did not stop within 30s of SIGINT:\n%s", p.name, tail(p.log, 30))
		return nil
	}
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		if p.alive() {
			_ = p.cmd.Process.Signal(syscall.SIGINT)
		}
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.kill9()
		}
	}
}

// logs returns everything every process of the cluster logged.
func (c *cluster) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, p := range c.procs {
		data, _ := os.ReadFile(p.log)
		b.Write(data)
	}
	return b.String()
}

func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// respondText is the unique text of the i-th test message, so the
// simulator's records tell exactly what reached the customer.
func respondText(run string, i int) string { return fmt.Sprintf("msg %s %d", run, i) }

func respondAction(app, author, text string) jobs.Action {
	return jobs.Action{AppID: app, Kind: jobs.KindRespond, Payload: json.RawMessage(fmt.Sprintf(
		`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":%q},"text":%q}`, author, text))}
}

// enqueue enqueues actions in batches and returns their ids.
func (c *cluster) enqueue(actions []jobs.Action) []int64 {
	c.t.Helper()
	enq, err := jobs.NewEnqueuer(c.schema)
	require.NoError(c.t, err)
	var ids []int64
	for start := 0; start < len(actions); start += 500 {
		res, err := enq.EnqueueMany(c.ctx, c.pool, actions[start:min(start+500, len(actions))])
		require.NoError(c.t, err)
		for _, r := range res {
			ids = append(ids, r.ActionID)
		}
	}
	return ids
}

// states counts actions by state.
func (c *cluster) states(ids []int64) map[string]int {
	c.t.Helper()
	rows, err := c.pool.Query(c.ctx, fmt.Sprintf(`SELECT state, count(*) FROM %s.action WHERE id = ANY($1) GROUP BY state`, c.schema), ids)
	require.NoError(c.t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		require.NoError(c.t, rows.Scan(&s, &n))
		out[s] = n
	}
	return out
}

// unsucceeded describes the actions among ids that did not succeed (at most
// ten): state, last error and their attempts, for a failing test's message.
func (c *cluster) unsucceeded(ids []int64) string {
	c.t.Helper()
	rows, err := c.pool.Query(c.ctx, fmt.Sprintf(`
		SELECT a.id, a.kind, a.state, coalesce(a.last_error, ''),
		       coalesce((SELECT string_agg(format('#%%s %%s %%s %%s', t.number, t.outcome, coalesce(t.http_status, 0), coalesce(t.error, '')), '; ' ORDER BY t.number)
		                 FROM %[1]s.attempt t WHERE t.action_id = a.id), '')
		FROM %[1]s.action a WHERE a.id = ANY($1) AND a.state <> 'succeeded' ORDER BY a.id LIMIT 10`, c.schema), ids)
	require.NoError(c.t, err)
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id int64
		var kind, state, lastErr, attempts string
		require.NoError(c.t, rows.Scan(&id, &kind, &state, &lastErr, &attempts))
		fmt.Fprintf(&b, "action %d (%s) %s: %s; attempts: %s\n", id, kind, state, lastErr, attempts)
	}
	require.NoError(c.t, rows.Err())
	return b.String()
}

// failedNotSentAgain returns the actions among ids the reconciler failed
// after a resend was ambiguous too (store.AmbiguousRelease).
func (c *cluster) failedNotSentAgain(ids []int64) map[int64]bool {
	c.t.Helper()
	rows, err := c.pool.Query(c.ctx, fmt.Sprintf(`
		SELECT id FROM %s.action WHERE id = ANY($1) AND state = 'failed' AND last_error LIKE '%%; not sent again'`, c.schema), ids)
	require.NoError(c.t, err)
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var id int64
		require.NoError(c.t, rows.Scan(&id))
		out[id] = true
	}
	require.NoError(c.t, rows.Err())
	return out
}

// waitFinal waits until every action is in a final state.
func (c *cluster) waitFinal(ids []int64, timeout time.Duration) map[string]int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := c.states(ids)
		if st["succeeded"]+st["failed"]+st["cancelled"] == len(ids) {
			return st
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("after %s not every action is final: %v\n%s", timeout, st, c.tailAll(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cluster) tailAll(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", p.name, p.log, tail(p.log, n))
	}
	return b.String()
}

// deliveries counts, per message text, the respond requests Khoros applied
// (its BOT-origin records with that payload): what reached the customer.
func (c *cluster) deliveries(app string) map[string]int {
	out := map[string]int{}
	for _, r := range c.sim.Records(sim.RecordFilter{AppID: app, Origin: "BOT"}) {
		var p struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(r.Payload, &p) == nil && p.Text != "" {
			out[p.Text]++
		}
	}
	return out
}

// cliResult is how one botq command ended.
type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs `botq <args>` against the cluster with stdin, and waits.
func runCLI(t *testing.T, c *cluster, stdin string, args ...string) cliResult {
	t.Helper()
	cmd := osexec.Command(botqBinary(t), args...)
	cmd.Env = c.env()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := cliResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*osexec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run botq %v: %v", args, err)
	}
	return res
}

// metrics scrapes a process's /metrics with the operator key.
func (c *cluster) metrics(p *proc) string {
	c.t.Helper()
	key := strings.SplitN(strings.Split(c.apiKeys, "\n")[0], ":", 3)[2]
	req, err := http.NewRequest(http.MethodGet, "http://"+p.addr+"/metrics", nil)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	require.Equal(c.t, http.StatusOK, res.StatusCode, string(body))
	return string(body)
}
