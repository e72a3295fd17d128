package main

import (
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/store"
)

// readmeBlock is one fenced code block of the README.
type readmeBlock struct {
	lang string
	body string
	line int
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	var out []readmeBlock
	var cur *readmeBlock
	for i, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &readmeBlock{lang: strings.TrimPrefix(trimmed, "```"), line: i + 1}
		case cur != nil && trimmed == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	return out
}

// Every example in the README runs: the SQL against a real schema, the
// shell (curl, the CLI) against a running botq, and the Go example is the
// body of jobs.ExampleEnqueue, which TestExampleEnqueue runs. Then every
// action the examples enqueued must succeed against the simulator.
// Blocks marked `console` or `text` are shown, not run (make run, make
// test and real-Khoros setup have their own tests or need Khoros).
func TestREADMEExamples(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{sim: sim.Options{Seed: 51, SettleDelayMax: 300 * time.Millisecond}})
	mycompany := func(p *store.AppUpsertParams) { p.CompanyKey = "mycompany" }
	c.addAppCompany("my-bot", "mycompany", mycompany)
	c.addAppCompany("retired-bot", "mycompany", mycompany)
	p := c.start("readme")

	work := t.TempDir()
	binDir := filepath.Dir(botqBinary(t))
	apiKey := strings.SplitN(strings.Split(c.apiKeys, "\n")[0], ":", 3)[2]
	env := append(c.env(),
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"BOTQ_DATABASE_SCHEMA="+c.schema,
		"BOTQ_URL=http://"+p.addr,
		"BOTQ_API_KEY="+apiKey,
	)
	schemaRe := regexp.MustCompile(`\bbotq\.`)
	ran := map[string]int{}
	for _, b := range readmeBlocks(t) {
		switch b.lang {
		case "sql":
			_, err := c.pool.Exec(c.ctx, schemaRe.ReplaceAllString(b.body, c.schema+"."))
			require.NoError(t, err, "README.md line %d: SQL example fails", b.line)
		case "sh":
			cmd := osexec.Command("bash", "-euo", "pipefail", "-c", b.body)
			cmd.Env, cmd.Dir = env, work
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "README.md line %d: shell example fails:\n%s", b.line, out)
		case "go":
			example, err := os.ReadFile("../../jobs/example_test.go")
			require.NoError(t, err)
			require.Contains(t, normalizeSpace(string(example)), normalizeSpace(b.body),
				"README.md line %d: the Go example is jobs.ExampleEnqueue's body", b.line)
		case "console", "text", "yaml":
			continue
		default:
			t.Fatalf("README.md line %d: code block of unknown kind %q (sql, sh and go run; console, text and yaml are shown)", b.line, b.lang)
		}
		ran[b.lang]++
	}
	require.Positive(t, ran["sql"])
	require.Positive(t, ran["sh"])
	require.Equal(t, 1, ran["go"])

	// The examples enqueued one action of every kind; they all succeed.
	var ids []int64
	rows, err := c.pool.Query(c.ctx, fmt.Sprintf(`SELECT id FROM %s.action`, c.schema))
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	st := c.waitFinal(ids, 60*time.Second)
	var failed []string
	if st["failed"]+st["cancelled"] > 0 {
		frows, _ := c.pool.Query(c.ctx, fmt.Sprintf(`SELECT id, kind, coalesce(last_error, '') FROM %s.action WHERE state <> 'succeeded'`, c.schema))
		for frows.Next() {
			var id int64
			var kind, e string
			_ = frows.Scan(&id, &kind, &e)
			failed = append(failed, fmt.Sprintf("%d %s: %s", id, kind, e))
		}
		frows.Close()
	}
	require.Empty(t, failed)
	var kinds int
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(DISTINCT kind) FROM %s.action`, c.schema)).Scan(&kinds))
	require.Equal(t, 17, kinds, "the README shows every kind")
	_, err = os.Stat(filepath.Join(work, "requests.csv"))
	require.NoError(t, err, "the export example wrote its file")
}

func normalizeSpace(s string) string { return strings.Join(strings.Fields(s), " ") }
