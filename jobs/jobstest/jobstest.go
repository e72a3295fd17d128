// Package jobstest runs botq's real execution path for tests: a fresh
// migrated schema, the Bot v3 simulator over real HTTP, apps with stored
// (encrypted) tokens, the executor and a real River client. Only tests may
// import it.
package jobstest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/rs/zerolog"

	"github.com/botq/botq/botapi/appclient"
	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// Options tune Start; zero values get defaults.
type Options struct {
	Sim        sim.Options
	Apps       []string // default one app, "app-1"
	MaxWorkers int      // default 50
	MaxConns   int32    // default 12
	Retry      map[string]jobs.RetryPolicy
	// HTTPTimeout bounds one Bot v3 call (default 5s).
	HTTPTimeout time.Duration
	// NoWorkers starts no River client (for tests that drive things by hand).
	NoWorkers bool
	// Configure edits the River config before the client is built.
	Configure func(*river.Config)
	// Observer receives the executor's measurements.
	Observer jobs.Observer
	// ResultRetry is the executor's ResultRetry (default 1m).
	ResultRetry time.Duration
}

// Env is a running botq execution path.
type Env struct {
	Ctx      context.Context
	Schema   string
	Pool     *pgxpool.Pool
	Store    *store.Store
	Sim      *sim.Server
	SimURL   string
	Keyring  *store.Keyring
	Apps     *appclient.Registry
	Executor *jobs.Executor
	River    *river.Client[pgx.Tx]
	Enqueuer *jobs.Enqueuer
	AppIDs   []string
}

// Start builds and starts an Env; everything stops when the test ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	ctx := context.Background()
	if opts.MaxConns == 0 {
		opts.MaxConns = 12
	}
	if opts.MaxWorkers == 0 {
		opts.MaxWorkers = 50
	}
	if opts.HTTPTimeout == 0 {
		opts.HTTPTimeout = 5 * time.Second
	}
	if len(opts.Apps) == 0 {
		opts.Apps = []string{"app-1"}
	}
	schema, pool, s := storetest.NewStore(t, opts.MaxConns)
	simSrv := sim.New(opts.Sim)
	hs := httptest.NewServer(simSrv)
	t.Cleanup(func() {
		_ = simSrv.Close()
		hs.Close()
	})
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	kr, err := store.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Ctx: ctx, Schema: schema, Pool: pool, Store: s, Sim: simSrv, SimURL: hs.URL, Keyring: kr, AppIDs: opts.Apps}
	for _, id := range opts.Apps {
		env.AddApp(t, id)
	}
	env.Enqueuer, err = jobs.NewEnqueuer(schema)
	if err != nil {
		t.Fatal(err)
	}
	env.Apps = appclient.New(appclient.Config{Pool: pool, Store: s, Keyring: kr, HTTPTimeout: opts.HTTPTimeout})
	if opts.NoWorkers {
		return env
	}
	env.Executor, err = jobs.NewExecutor(jobs.Config{
		Pool: pool, Store: s, Apps: env.Apps, Logger: zerolog.Nop(), Retry: opts.Retry,
		PausedRecheck: 500 * time.Millisecond, Observer: opts.Observer, ResultRetry: opts.ResultRetry,
	})
	if err != nil {
		t.Fatal(err)
	}
	workers := river.NewWorkers()
	if err := env.Executor.Register(workers); err != nil {
		t.Fatal(err)
	}
	cfg := &river.Config{
		Schema:            schema,
		Queues:            map[string]river.QueueConfig{"botq": {MaxWorkers: opts.MaxWorkers}},
		Workers:           workers,
		FetchCooldown:     5 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		JobTimeout:        opts.HTTPTimeout + 5*time.Second,
		TestOnly:          true,
		Logger:            nil,
	}
	if opts.Configure != nil {
		opts.Configure(cfg)
	}
	env.River, err = river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		t.Fatal(err)
	}
	env.Executor.Start()
	if err := env.River.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = env.River.Stop(stopCtx)
		_ = env.Executor.Stop(stopCtx)
	})
	return env
}

// AddApp creates an app on the simulator and in botq, with a stored token.
func (e *Env) AddApp(t testing.TB, id string) {
	t.Helper()
	tok, err := e.Sim.MintToken(id, sim.MintOptions{CompanyKey: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.AppUpsert(e.Ctx, e.Pool, store.AppUpsertParams{ID: id, Region: "CUSTOM", BaseURL: e.SimURL, CompanyKey: "acme"}); err != nil {
		t.Fatal(err)
	}
	exp := tok.ExpiresAt()
	if _, err := e.Store.AppSetToken(e.Ctx, e.Pool, id, e.Keyring.Seal(id, tok.Token), e.Keyring.ID(), &exp); err != nil {
		t.Fatal(err)
	}
}

// Payload returns a payload of kind for author in the test conversation
// space (company acme, network facebook, page page-1).
func Payload(kind, author string) string {
	conv := fmt.Sprintf(`"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":%q}`, author)
	switch kind {
	case jobs.KindRespond:
		return `{` + conv + `,"text":"Hello from botq"}`
	case jobs.KindForm:
		return `{` + conv + `,"comment":"Please fill this in","secureFormId":"form-1"}`
	case jobs.KindNote:
		return `{` + conv + `,"note":"internal note"}`
	case jobs.KindControl:
		return `{` + conv + `,"owner":{"type":"AGENT"},"comment":"handing over"}`
	case jobs.KindPriority:
		return `{` + conv + `,"newPriority":2}`
	case jobs.KindTag, jobs.KindTagRemove:
		return `{` + conv + `,"tagIds":[1,2]}`
	case jobs.KindWorkQueue:
		return `{` + conv + `,"newWorkQueue":21}`
	case jobs.KindResolve:
		return `{` + conv + `,"comment":"done"}`
	case jobs.KindAuthorAttributes:
		return `{` + conv + `,"payload":{"attributes":{"occupation":["tester"]}}}`
	case jobs.KindAuthorUpdate:
		return `{` + conv + `,"updatedName":"Ada"}`
	case jobs.KindRegistrationCreate, jobs.KindRegistrationUpdate:
		return `{"companyKey":"acme","platform":"LITHIUM","networkKey":"facebook","externalId":"page-` + author +
			`","name":"Test bot","callbackUrl":"https://bot.example.com/hook","mode":"MAINTENANCE",` +
			`"credentials":{"type":"BASIC_AUTH","identity":"u","secret":"s"}}`
	case jobs.KindRegistrationDelete:
		return `{"networkKey":"facebook","externalId":"page-` + author + `"}`
	case jobs.KindMode:
		return `{"networkKey":"facebook","externalId":"page-` + author + `","mode":"LIVE"}`
	case jobs.KindTokenRefresh, jobs.KindTokenRevoke:
		return `{}`
	}
	panic("jobstest: no payload for kind " + kind)
}

// Enqueue enqueues one action and returns its id.
func (e *Env) Enqueue(t testing.TB, a jobs.Action) int64 {
	t.Helper()
	id, _, err := e.Enqueuer.Enqueue(e.Ctx, e.Pool, a)
	if err != nil {
		t.Fatalf("enqueue %s: %v", a.Kind, err)
	}
	return id
}

// WaitStates waits until every action is in one of states, failing the test
// after timeout with the states seen.
func (e *Env) WaitStates(t testing.TB, ids []int64, timeout time.Duration, states ...store.ActionState) {
	t.Helper()
	want := make([]string, len(states))
	for i, s := range states {
		want[i] = string(s)
	}
	deadline := time.Now().Add(timeout)
	for {
		var pending int
		err := e.Pool.QueryRow(e.Ctx, fmt.Sprintf(`SELECT count(*) FROM %s.action WHERE id = ANY($1) AND NOT state = ANY($2)`, e.Schema), ids, want).Scan(&pending)
		if err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			rows, _ := e.Pool.Query(e.Ctx, fmt.Sprintf(`SELECT state, count(*) FROM %s.action WHERE id = ANY($1) GROUP BY state`, e.Schema), ids)
			counts, _ := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
				var s string
				var n int
				err := r.Scan(&s, &n)
				return fmt.Sprintf("%s=%d", s, n), err
			})
			t.Fatalf("after %s, %d of %d actions are not in %v (states: %v)", timeout, pending, len(ids), want, counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Action returns the action with id.
func (e *Env) Action(t testing.TB, id int64) *store.Action {
	t.Helper()
	a, err := e.Store.ActionGet(e.Ctx, e.Pool, id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// StartClient starts another executor and River client on env's database,
// as a second botq process would, and stops them when the test ends.
func StartClient(t testing.TB, env *Env, maxWorkers int) *river.Client[pgx.Tx] {
	t.Helper()
	apps := appclient.New(appclient.Config{Pool: env.Pool, Store: env.Store, Keyring: env.Keyring, HTTPTimeout: 5 * time.Second})
	ex, err := jobs.NewExecutor(jobs.Config{Pool: env.Pool, Store: env.Store, Apps: apps, Logger: zerolog.Nop(), WorkerID: "second"})
	if err != nil {
		t.Fatal(err)
	}
	workers := river.NewWorkers()
	if err := ex.Register(workers); err != nil {
		t.Fatal(err)
	}
	c, err := river.NewClient(riverpgxv5.New(env.Pool), &river.Config{
		Schema: env.Schema, Queues: map[string]river.QueueConfig{"botq": {MaxWorkers: maxWorkers}}, Workers: workers,
		FetchCooldown: 5 * time.Millisecond, FetchPollInterval: 50 * time.Millisecond, TestOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ex.Start()
	if err := c.Start(env.Ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = c.Stop(stopCtx)
		_ = ex.Stop(stopCtx)
	})
	return c
}
