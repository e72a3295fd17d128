package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

// docBlock is one fenced code block of a document.
type docBlock struct {
	doc  string
	lang string
	body string
	line int
}

func docBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []docBlock
	var cur *docBlock
	for i, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &docBlock{doc: filepath.Base(path), lang: strings.TrimPrefix(trimmed, "```"), line: i + 1}
		case cur != nil && trimmed == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	return out
}

// devRun is a `botq dev` (what make run runs) started by a test.
type devRun struct {
	dir     string // where it runs, as a clone's root
	mu      sync.Mutex
	out     []string
	printed chan struct{} // closed once the banner is out
}

func (d *devRun) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.out, "\n")
}

// startDev runs `botq dev` in a fresh directory on the test database's
// schema, stopping it (Ctrl-C) at cleanup.
func startDev(t *testing.T, url, schema string) *devRun {
	t.Helper()
	d := &devRun{dir: t.TempDir(), printed: make(chan struct{})}
	cmd := osexec.Command(botqBinary(t), "dev", "--sim-listen", "127.0.0.1:0")
	cmd.Dir = d.dir
	cmd.Env = childEnv("DATABASE_URL="+url, "BOTQ_DATABASE_SCHEMA="+schema,
		fmt.Sprintf("BOTQ_DATABASE_MAX_CONNS=%d", procMaxConns), "BOTQ_HTTP_LISTEN=127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			d.mu.Lock()
			d.out = append(d.out, sc.Text())
			d.mu.Unlock()
			if strings.Contains(sc.Text(), "curl -s -H") { // the banner's last line
				once.Do(func() { close(d.printed) })
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
		_ = cmd.Wait()
	})
	select {
	case <-d.printed:
	case <-done:
		t.Fatalf("botq dev stopped:\n%s", d.output())
	case <-time.After(2 * time.Minute):
		t.Fatalf("botq dev printed no banner:\n%s", d.output())
	}
	return d
}

// Every example of the README and of docs/operations-api.md works as
// written, in order, in the shell that `make run`'s banner describes: a
// running `botq dev`, and a shell that did `source .botq/env` and nothing
// else (no DATABASE_URL, BOTQ_* or PG* of its own). The SQL runs against
// the database the env file names; the Go example is the body of
// jobs.ExampleEnqueue, which TestExampleEnqueue runs. Then every action the
// examples enqueued must succeed against the simulator, but the one they
// cancel. Blocks marked `console`, `text` or `yaml` are shown, not run
// (make run, make test, go install and real-Khoros setup have their own
// tests or need Khoros).
func TestREADMEExamplesInTheMakeRunShell(t *testing.T) {
	t.Parallel()
	url := storetest.DatabaseURL(t)
	// The test's pool, botq dev's own, its botq serve's, one CLI command.
	storetest.Conns(t, 2+4+procMaxConns+cliConns)
	schema, pool := storetest.NewSchema(t, 2)
	dev := startDev(t, url, schema)
	banner := dev.output()
	require.Contains(t, banner, "source .botq/env", "the banner names the one line a second shell needs")

	shell := func(script string) *osexec.Cmd {
		cmd := osexec.Command("bash", "-euo", "pipefail", "-c", "source .botq/env\n"+script)
		cmd.Dir, cmd.Env = dev.dir, childEnv()
		return cmd
	}
	out, err := shell(`printf '%s\n' "$DATABASE_URL" "$BOTQ_DATABASE_SCHEMA" "$(command -v botq)"`).CombinedOutput()
	require.NoError(t, err, "%s", out)
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Equal(t, []string{url, schema, botqBinary(t)}, got, ".botq/env names botq dev's database and botq")

	// The documents use the default schema, botq; this run's is another.
	schemaRe := regexp.MustCompile(`\bbotq\.`)
	ran := map[string]int{}
	blocks := append(docBlocks(t, "../../README.md"), docBlocks(t, "../../docs/operations-api.md")...)
	for _, b := range blocks {
		where := fmt.Sprintf("%s line %d", b.doc, b.line)
		switch b.lang {
		case "sql":
			_, err := pool.Exec(context.Background(), schemaRe.ReplaceAllString(b.body, schema+"."))
			require.NoError(t, err, "%s: SQL example fails", where)
		case "sh":
			out, err := shell(b.body).CombinedOutput()
			require.NoError(t, err, "%s: shell example fails:\n%s\n--- botq dev:\n%s", where, out, lastLines(dev.output(), 30))
		case "go":
			example, err := os.ReadFile("../../jobs/example_test.go")
			require.NoError(t, err)
			require.Contains(t, normalizeSpace(string(example)), normalizeSpace(b.body), "%s: the Go example is jobs.ExampleEnqueue's body", where)
		case "console", "text", "yaml":
			continue
		default:
			t.Fatalf("%s: code block of unknown kind %q (sql, sh and go run; console, text and yaml are shown)", where, b.lang)
		}
		ran[b.doc+" "+b.lang]++
	}
	require.Positive(t, ran["README.md sql"])
	require.Positive(t, ran["README.md sh"])
	require.Positive(t, ran["operations-api.md sh"])
	require.Equal(t, 1, ran["README.md go"])

	// The examples enqueued one action of every kind; all succeed but the
	// one operations-api.md cancels ("customer left").
	failed := waitAllFinal(t, pool, schema, 90*time.Second)
	require.Empty(t, failed)
	var kinds int
	require.NoError(t, pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT count(DISTINCT kind) FROM %s.action`, schema)).Scan(&kinds))
	require.Equal(t, 17, kinds, "the README shows every kind")
	for _, f := range []string{"requests.csv", "jan.csv", "token.txt"} {
		_, err = os.Stat(filepath.Join(dev.dir, f))
		require.NoError(t, err, "the examples wrote %s", f)
	}
}

// waitAllFinal waits until every action of schema is final and returns
// those that did not succeed, but for cancels by an operator.
func waitAllFinal(t *testing.T, pool *pgxpool.Pool, schema string, timeout time.Duration) []string {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		var open int
		require.NoError(t, pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.action WHERE state NOT IN ('succeeded', 'failed', 'cancelled')`, schema)).Scan(&open))
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %d actions are not final", timeout, open)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rows, err := pool.Query(ctx, fmt.Sprintf(`SELECT id, kind, state, coalesce(last_error, '') FROM %s.action
		WHERE state = 'failed' OR (state = 'cancelled' AND NOT EXISTS (
			SELECT 1 FROM %s.event e WHERE e.action_id = action.id AND e.kind = 'cancel' AND e.reason = 'customer left'))`, schema, schema))
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int64
		var kind, state, e string
		require.NoError(t, rows.Scan(&id, &kind, &state, &e))
		out = append(out, fmt.Sprintf("%d %s %s: %s", id, kind, state, e))
	}
	require.NoError(t, rows.Err())
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func normalizeSpace(s string) string { return strings.Join(strings.Fields(s), " ") }
