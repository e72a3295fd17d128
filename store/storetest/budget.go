package storetest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/semaphore"
)

// The connection budget. A stock Postgres allows 100 connections, and other
// databases of the server often hold a good part of them; a test that fails
// with "too many clients" (53300) tells nothing about botq. So the tests
// hold at most Budget connections to the test server at once, the botq
// processes they start included:
//
//   - one test binary at a time uses the server (lockServer): go test runs
//     several packages' binaries at once (-p);
//   - within it, every test reserves the connections it may hold before it
//     opens them (Conns, NewSchema), and waits while other tests hold them.

// Budget is the most connections the tests hold on the test server at once.
const Budget = 45

const (
	pkgPoolConns = 8 // the package schema's pool (Schema, Tx)
	spareConns   = 2 // short-lived: the reachability check, dropping schemas
)

// ConnsMax is the most connections one test can reserve.
const ConnsMax = Budget - pkgPoolConns - spareConns

var (
	connSem    = semaphore.NewWeighted(ConnsMax)
	reservedMu sync.Mutex
	reserved   = map[testing.TB]*reservation{}
)

type reservation struct{ total, used int }

// Conns reserves n connections of the budget for the test until it ends,
// waiting while other tests hold them. A test that opens connections
// besides NewSchema's pool (a pool of its own, botq processes, CLI commands)
// reserves every connection it may hold at once with one call, after
// t.Parallel and before NewSchema, whose pool then comes out of the
// reservation. Reserving twice fails the test: two tests each holding part
// of what they need while waiting for the rest would wait forever.
func Conns(tb testing.TB, n int) {
	tb.Helper()
	if n < 1 || n > ConnsMax {
		tb.Fatalf("storetest: a test can reserve 1 to %d connections, not %d", ConnsMax, n)
	}
	reservedMu.Lock()
	_, twice := reserved[tb]
	reservedMu.Unlock()
	if twice {
		tb.Fatalf("storetest: connections reserved twice in one test: reserve them all with one Conns call, before NewSchema")
	}
	if err := connSem.Acquire(context.Background(), int64(n)); err != nil {
		tb.Fatalf("storetest: reserve %d connections: %v", n, err)
	}
	reservedMu.Lock()
	reserved[tb] = &reservation{total: n}
	reservedMu.Unlock()
	// Registered first, so it runs last: after the test's pools are closed
	// and its schema dropped.
	tb.Cleanup(func() {
		reservedMu.Lock()
		delete(reserved, tb)
		reservedMu.Unlock()
		connSem.Release(int64(n))
	})
}

// use takes n connections out of the test's reservation, reserving them
// when the test has none.
func use(tb testing.TB, n int) {
	tb.Helper()
	reservedMu.Lock()
	r := reserved[tb]
	reservedMu.Unlock()
	if r == nil {
		Conns(tb, n)
		reservedMu.Lock()
		r = reserved[tb]
		reservedMu.Unlock()
	}
	reservedMu.Lock()
	defer reservedMu.Unlock()
	if r.used+n > r.total {
		tb.Fatalf("storetest: the test reserved %d connections and would hold %d: reserve them all with one Conns call, before NewSchema", r.total, r.used+n)
	}
	r.used += n
}

var (
	lockOnce sync.Once
	lockErr  error
)

// lockServer waits until no other test binary uses the server of url, and
// keeps it for this one until it exits. It is a file lock (flock) on a file
// descriptor that is never closed, so the kernel releases it however the
// process ends. A test's child process must not call DatabaseURL: it would
// wait for its parent.
func lockServer(url string) error {
	lockOnce.Do(func() {
		key := url
		if cfg, err := pgconn.ParseConfig(url); err == nil {
			key = fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
		}
		h := fnv.New64a()
		_, _ = h.Write([]byte(key))
		name := filepath.Join(os.TempDir(), fmt.Sprintf("botq-test-%x.lock", h.Sum64()))
		// Read-only: a lock file another user created locks all the same.
		fd, err := syscall.Open(name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if errors.Is(err, syscall.ENOENT) {
			fd, err = syscall.Open(name, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_CLOEXEC, 0o644)
		}
		if err != nil {
			lockErr = fmt.Errorf("open %s: %w", name, err)
			return
		}
		err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			fmt.Fprintf(os.Stderr, "storetest: waiting for another test binary to finish with Postgres at %s (%s)\n", key, name)
			err = syscall.Flock(fd, syscall.LOCK_EX)
		}
		if err != nil {
			_ = syscall.Close(fd)
			lockErr = fmt.Errorf("lock %s: %w", name, err)
		}
	})
	return lockErr
}
