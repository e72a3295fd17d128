// Package storetest gives tests a real, migrated Postgres schema: one schema per
// test package, migrated once, with one rolled-back transaction per test
// (Tx), and fresh schemas for tests that must commit (NewSchema). The tests
// hold at most Budget connections to the server at once (see Conns).
//
// The database comes from TEST_DATABASE_URL. Without it a test skips, unless
// CI is set: then it fails, so a CI run without a database can never pass
// while testing nothing. Only tests may import this package.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botq/botq/migrations"
	"github.com/botq/botq/store"
)

// schemaPrefix starts every schema storetest creates, so stale ones can be
// found and dropped.
const schemaPrefix = "t_"

var (
	pkgOnce   sync.Once
	pkgSchema string
	pkgPool   *pgxpool.Pool
	pkgErr    error

	createdMu sync.Mutex
	created   []string
)

var (
	reachOnce sync.Once
	reachErr  error
)

// DatabaseURL returns TEST_DATABASE_URL, skipping the test when it is unset
// or the database cannot be reached; when CI is set, either fails the test
// instead.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("TEST_DATABASE_URL")
	ci := os.Getenv("CI") != ""
	if url == "" {
		if ci {
			tb.Fatal("TEST_DATABASE_URL is not set, and CI is: tests that need Postgres must not be skipped in CI")
		}
		tb.Skip("TEST_DATABASE_URL not set; skipping a test that needs Postgres")
	}
	if err := lockServer(url); err != nil {
		tb.Fatalf("storetest: %v", err)
	}
	reachOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			reachErr = err
			return
		}
		reachErr = conn.Ping(ctx)
		_ = conn.Close(ctx)
	})
	if reachErr != nil {
		if ci {
			tb.Fatalf("Postgres at TEST_DATABASE_URL is unreachable, and CI is set: %v", reachErr)
		}
		tb.Skipf("Postgres at TEST_DATABASE_URL is unreachable; skipping: %v", reachErr)
	}
	return url
}

// Main runs a package's tests and then drops the schemas they created. Call
// it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// Cleanup drops the schemas this test binary created; Main calls it.
func Cleanup() {
	createdMu.Lock()
	defer createdMu.Unlock()
	if len(created) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, os.Getenv("TEST_DATABASE_URL"))
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	if pkgPool != nil {
		pkgPool.Close()
	}
	for _, s := range created {
		_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+s+" CASCADE")
	}
	created = nil
}

func newSchemaName() string {
	pkg := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	pkg = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(pkg))
	if len(pkg) > 20 {
		pkg = pkg[:20]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%s_%d_%s", schemaPrefix, pkg, time.Now().Unix(), hex.EncodeToString(b[:]))
}

// dropStale removes schemas storetest made more than a day ago, left behind
// by runs that were killed.
func dropStale(ctx context.Context, pool *pgxpool.Pool) {
	rows, err := pool.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\_%\_%\_%'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-24 * time.Hour).Unix()
	for _, n := range names {
		parts := strings.Split(n, "_")
		if len(parts) < 3 {
			continue
		}
		var ts int64
		if _, err := fmt.Sscan(parts[len(parts)-2], &ts); err != nil || ts >= cutoff || ts < 1_600_000_000 {
			continue
		}
		_, _ = pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+n+" CASCADE")
	}
}

// migrate creates and migrates a new schema and returns a pool whose
// connections use it.
func migrate(ctx context.Context, url string, maxConns int32) (string, *pgxpool.Pool, error) {
	schema := newSchemaName()
	pool, err := store.NewPool(ctx, url, schema, store.PoolOptions{MaxConns: maxConns, AppName: "botq-test"})
	if err != nil {
		return "", nil, err
	}
	createdMu.Lock()
	created = append(created, schema)
	createdMu.Unlock()
	// botq's roles exist before the migration, which grants them their
	// rights in the schema: botq serve acts as botq_runtime.
	if _, _, err := store.RolesEnsure(ctx, pool); err != nil {
		pool.Close()
		return "", nil, err
	}
	if _, err := migrations.Up(ctx, pool, schema, nil); err != nil {
		pool.Close()
		return "", nil, err
	}
	return schema, pool, nil
}

// Schema returns the package's migrated schema and a pool on it.
func Schema(tb testing.TB) (string, *pgxpool.Pool) {
	tb.Helper()
	url := DatabaseURL(tb)
	pkgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var pool *pgxpool.Pool
		pkgSchema, pool, pkgErr = migrate(ctx, url, pkgPoolConns)
		if pkgErr == nil {
			pkgPool = pool
			dropStale(ctx, pool)
		}
	})
	if pkgErr != nil {
		tb.Fatalf("prepare test schema: %v", pkgErr)
	}
	return pkgSchema, pkgPool
}

// Store returns a Store on the package's schema.
func Store(tb testing.TB) *store.Store {
	tb.Helper()
	schema, _ := Schema(tb)
	s, err := store.New(schema)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Tx begins a transaction on the package's schema and rolls it back when the
// test ends, so tests can run in parallel without seeing each other.
func Tx(tb testing.TB) pgx.Tx {
	tb.Helper()
	_, pool := Schema(tb)
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		tb.Fatalf("begin test transaction: %v", err)
	}
	tb.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
	return tx
}

// NewSchema migrates a fresh schema for one test that must commit (a running
// River client, several connections) and drops it when the test ends. Its
// pool of maxConns comes out of the test's reservation (Conns), or is
// reserved now when the test has none.
func NewSchema(tb testing.TB, maxConns int32) (string, *pgxpool.Pool) {
	tb.Helper()
	url := DatabaseURL(tb)
	use(tb, int(maxConns))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	schema, pool, err := migrate(ctx, url, maxConns)
	if err != nil {
		tb.Fatalf("prepare test schema: %v", err)
	}
	tb.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	})
	return schema, pool
}

// NewStore is NewSchema with a Store for the schema.
func NewStore(tb testing.TB, maxConns int32) (string, *pgxpool.Pool, *store.Store) {
	tb.Helper()
	schema, pool := NewSchema(tb, maxConns)
	s, err := store.New(schema)
	if err != nil {
		tb.Fatalf("store for schema %s: %v", schema, err)
	}
	return schema, pool, s
}

// AppOpts customise App; zero values get defaults.
type AppOpts struct {
	ID      string
	Region  string
	BaseURL string
}

// App creates an app (default id "app-<random>") and returns its id.
func App(ctx context.Context, tb testing.TB, s *store.Store, db store.DBTX, opts *AppOpts) string {
	tb.Helper()
	if opts == nil {
		opts = &AppOpts{}
	}
	id := opts.ID
	if id == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		id = "app-" + hex.EncodeToString(b[:])
	}
	if _, err := s.AppUpsert(ctx, db, store.AppUpsertParams{ID: id, Region: opts.Region, BaseURL: opts.BaseURL, CompanyKey: "acme"}); err != nil {
		tb.Fatalf("create app: %v", err)
	}
	return id
}

// RespondPayload returns a valid respond payload for the author in a test
// conversation.
func RespondPayload(author, text string) []byte {
	return fmt.Appendf(nil, `{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":%q},"text":%q}`, author, text)
}
