package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// DevDatabase is where `botq dev` keeps its data, and how to give it back.
type DevDatabase struct {
	URL    string
	Source string // "DATABASE_URL", "local Postgres" or "throwaway cluster"
	stop   func()
	// restart restarts a throwaway cluster (fault tests restart Postgres).
	restart func() error
}

func (d *DevDatabase) Stop() {
	if d.stop != nil {
		d.stop()
	}
}

// errNoPostgres is the one message a machine without Postgres gets.
var errNoPostgres = errors.New(`no Postgres found: set DATABASE_URL, start Postgres on 127.0.0.1:5432, or install it so that initdb and pg_ctl are on PATH (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql)`)

// findDevDatabase picks the database for `botq dev`: DATABASE_URL if set;
// else Postgres on the local address (database botq_dev, created if
// missing); else, or when that Postgres refuses user postgres without a
// password, a throwaway cluster under dir, started with the machine's initdb
// and pg_ctl and stopped by Stop.
func findDevDatabase(ctx context.Context, env func(string) (string, bool), dir string, log io.Writer) (*DevDatabase, error) {
	if v, ok := env("DATABASE_URL"); ok && v != "" {
		return &DevDatabase{URL: v, Source: "DATABASE_URL"}, nil
	}
	local, _ := env("BOTQ_DEV_LOCAL_PG")
	if local == "" {
		local = "127.0.0.1:5432"
	}
	u, err := localDatabase(ctx, local)
	if err == nil {
		return &DevDatabase{URL: u, Source: "local Postgres at " + local}, nil
	}
	db, terr := ThrowawayCluster(ctx, dir, log)
	switch {
	case errors.Is(err, errUnreachable):
		return db, terr
	case terr != nil:
		return nil, fmt.Errorf("%w; and no throwaway cluster either: %v", err, terr)
	}
	// A stock Postgres asks for a password: not a reason to give up.
	fmt.Fprintf(log, "botq dev: %v; using a throwaway cluster instead\n", err)
	return db, nil
}

var errUnreachable = errors.New("unreachable")

// localDatabase connects to Postgres at addr as user postgres and makes
// sure database botq_dev exists.
func localDatabase(ctx context.Context, addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", errUnreachable
	}
	_ = c.Close()
	admin := "postgres://postgres@" + addr + "/postgres?sslmode=disable&connect_timeout=5"
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("the Postgres on %s refuses user postgres without a password (%v): set DATABASE_URL to use it", addr, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'botq_dev')").Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE botq_dev"); err != nil {
			return "", fmt.Errorf("create database botq_dev on %s: %w", addr, err)
		}
	}
	return "postgres://postgres@" + addr + "/botq_dev?sslmode=disable", nil
}

// pgBinary finds a Postgres server program on PATH or in Debian's
// /usr/lib/postgresql/<version>/bin.
func pgBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errNoPostgres
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ThrowawayCluster starts (creating it the first time) a cluster in
// dir/pg on a free loopback port. Postgres refuses to run as root, so as
// root the cluster belongs to the postgres user.
func ThrowawayCluster(ctx context.Context, dir string, log io.Writer) (*DevDatabase, error) {
	initdb, err := pgBinary("initdb")
	if err != nil {
		return nil, err
	}
	pgctl, err := pgBinary("pg_ctl")
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(filepath.Join(dir, "pg"))
	if err != nil {
		return nil, err
	}
	// run builds a command as the cluster's owner; stopping uses a
	// background context, because it must work after Ctrl-C cancelled ctx.
	var run func(ctx context.Context, name string, args ...string) *exec.Cmd
	asUser := ""
	temporary := false // the cluster lives in a temporary directory, removed at stop
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, errors.New("running as root, and Postgres will not run as root: create a postgres user, run botq dev as another user, or set DATABASE_URL")
		}
		asUser = u.Username
		// The postgres user must be able to reach the directory; if it
		// cannot, the cluster lives in a fresh temporary directory instead.
		if !reachableBy(abs, u) {
			if abs, err = os.MkdirTemp("", "botq-dev-pg-"); err != nil {
				return nil, err
			}
			temporary = true
			fmt.Fprintf(log, "botq dev: user postgres cannot reach %s; the cluster goes to %s\n", dir, abs)
		} else if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(abs, uid, gid); err != nil {
			return nil, err
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			return nil, errors.New("running as root needs runuser to start Postgres as the postgres user; set DATABASE_URL instead")
		}
		run = func(ctx context.Context, name string, args ...string) *exec.Cmd {
			return exec.CommandContext(ctx, runuser, append([]string{"-u", asUser, "--", name}, args...)...)
		}
	} else {
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, err
		}
		run = func(ctx context.Context, name string, args ...string) *exec.Cmd {
			return exec.CommandContext(ctx, name, args...)
		}
	}
	data := filepath.Join(abs, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		fmt.Fprintf(log, "botq dev: creating a throwaway Postgres cluster in %s\n", data)
		out, err := run(ctx, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("initdb: %v: %s", err, lastLines(out, 5))
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile := filepath.Join(abs, "postgres.log")
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", port, data)
	out, err := run(ctx, pgctl, "-D", data, "-l", logFile, "-o", opts, "-w", "-t", "60", "start").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("pg_ctl start: %v: %s (see %s)", err, lastLines(out, 5), logFile)
	}
	stop := func() {
		_ = run(context.Background(), pgctl, "-D", data, "-m", "fast", "-w", "stop").Run()
		if temporary {
			_ = os.RemoveAll(abs)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	u, err := localDatabase(ctx, addr)
	if err != nil {
		stop()
		return nil, err
	}
	restart := func() error {
		out, err := run(context.Background(), pgctl, "-D", data, "-l", logFile, "-m", "fast", "-w", "-t", "60", "restart").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_ctl restart: %v: %s", err, lastLines(out, 5))
		}
		return nil
	}
	return &DevDatabase{URL: u, Source: "throwaway cluster in " + data, stop: stop, restart: restart}, nil
}

// reachableBy reports whether every parent of dir can be searched by u.
func reachableBy(dir string, u *user.User) bool {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil && fi.Mode().Perm()&0o001 == 0 {
			if st, ok := fi.Sys().(*syscall.Stat_t); !ok || strconv.Itoa(int(st.Uid)) != u.Uid {
				return false
			}
		}
		if d == "/" || d == "." {
			return true
		}
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Restart restarts a throwaway cluster (pg_ctl restart -m fast), as a
// fault test restarts Postgres under botq.
func (d *DevDatabase) Restart() error {
	if d.restart == nil {
		return errors.New("only a throwaway cluster can be restarted")
	}
	return d.restart()
}
