package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botq/botq/migrations"
	"github.com/botq/botq/store"
)

// `botq bench history` asks an audit history of N actions the auditor's
// questions. The history is made in a schema of its own by botq's
// migrations and filled by set-based SQL, as months of botq would have
// left it: every action finished, with its attempts, the request record
// of each call, KHOROS-origin records of no action, and events.

// HistoryOptions are the flags of `botq bench history`.
type HistoryOptions struct {
	DatabaseURL string
	// Actions are the history sizes, run one after the other, each in a
	// schema of its own that is dropped before the next is made.
	Actions []int
	// Samples is how many random keys each query is timed with.
	Samples int
	// QueryBudget bounds the time spent timing one query at one size; a
	// query that needs more stops early, with at least 10 samples.
	QueryBudget time.Duration
	Out         string
	Keep        bool
}

// DefaultHistoryOptions are the defaults of `botq bench history`.
func DefaultHistoryOptions() HistoryOptions {
	return HistoryOptions{Actions: []int{5_000_000}, Samples: 200, QueryBudget: 60 * time.Second}
}

// Validate returns every problem with the options, naming their flags.
func (o *HistoryOptions) Validate() error {
	var problems []string
	if o.DatabaseURL == "" {
		problems = append(problems, "--database-url (or DATABASE_URL) is required")
	}
	if len(o.Actions) == 0 {
		problems = append(problems, "--actions needs at least one size")
	}
	for _, n := range o.Actions {
		if n < 1000 || n > 100_000_000 {
			problems = append(problems, fmt.Sprintf("--actions: %d is not from 1,000 to 100,000,000", n))
		}
	}
	if o.Samples < 10 {
		problems = append(problems, "--samples must be at least 10")
	}
	if o.QueryBudget <= 0 {
		problems = append(problems, "--query-budget must be positive")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// The targets of the audit questions (docs/benchmarks.md).
const (
	historyDays           = 90
	targetTimelineP99     = 20.0 // ms
	targetRequestP99      = 5.0  // ms
	targetFailedDayP99    = 50.0 // ms
	targetExportRate      = 50_000.0
	targetExportRSS       = 100.0 // MB
	targetGrowth          = 1.5   // p99 at the largest size over p99 at the smallest
	historyRetentionBatch = 1000  // retention.batch_size's default
)

// historyApps are the apps of the history: 60%, 30% and 10% of the
// conversations (historyapp in the fill).
var historyApps = []string{"hist-a", "hist-b", "hist-c"}

// historyReport is the JSON of `botq bench history`.
type historyReport struct {
	Tool       string        `json:"tool"`
	StartedAt  time.Time     `json:"started_at"`
	FinishedAt time.Time     `json:"finished_at"`
	Botq       string        `json:"botq_version"`
	Machine    benchMachine  `json:"machine"`
	Postgres   benchPostgres `json:"postgres"`
	Method     string        `json:"method"`
	Runs       []*historyRun `json:"runs"`
	// Growth is each query's p99 at the largest size over its p99 at the
	// smallest, when more than one size ran.
	Growth []historyGrowth `json:"growth,omitempty"`
}

// historyRun is one history size.
type historyRun struct {
	Schema        string           `json:"schema"`
	Actions       int              `json:"actions"`
	Conversations int              `json:"conversations"`
	Authors       int              `json:"authors"`
	Days          int              `json:"days"`
	Rows          map[string]int64 `json:"rows"`
	LoadSeconds   float64          `json:"load_seconds"`
	// DiskMB is the schema's size on disk (tables, TOAST and indexes)
	// once filled, and DiskMBPerMillion that per million actions.
	DiskMB           float64           `json:"disk_mb"`
	DiskMBPerMillion float64           `json:"disk_mb_per_million_actions"`
	Tables           []historyTable    `json:"tables"`
	Queries          []*historyQuery   `json:"queries"`
	Export           *historyExport    `json:"export"`
	Retention        *historyRetention `json:"retention"`
	LoadBefore       string            `json:"load_before"`
	LoadAfter        string            `json:"load_after"`
}

// historyTable is one table's size.
type historyTable struct {
	Name    string  `json:"name"`
	Rows    int64   `json:"rows"`
	TableMB float64 `json:"table_mb"`
	IndexMB float64 `json:"index_mb"`
}

// historyQuery is the timing of one auditor question.
type historyQuery struct {
	Name string `json:"name"`
	// Path is the store calls timed: those the CLI and the HTTP API make.
	Path     string  `json:"path"`
	Samples  int     `json:"samples"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
	MaxMS    float64 `json:"max_ms"`
	RowsMean float64 `json:"rows_mean"`
	// TargetP99MS is the bound on p99 (0: none).
	TargetP99MS float64 `json:"target_p99_ms,omitempty"`
	Met         *bool   `json:"met,omitempty"`
}

// historyExport is a day's request records exported as CSV by a child
// process, as `botq requests export` does.
type historyExport struct {
	Day        string  `json:"day"`
	Rows       int64   `json:"rows"`
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_second"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	Met        bool    `json:"met"`
}

// historyRetention is botq's retention (store.RetentionPurge) of the
// oldest month.
type historyRetention struct {
	Cutoff    time.Time `json:"cutoff"`
	BatchSize int       `json:"batch_size"`
	Seconds   float64   `json:"seconds"`
	Deleted   struct {
		Actions  int64 `json:"actions"`
		Attempts int64 `json:"attempts"`
		Requests int64 `json:"requests"`
		Events   int64 `json:"events"`
	} `json:"deleted"`
	Batches int `json:"batches"`
	// LongestBatchMS is the longest purge statement: each commits on its
	// own, so it is the longest time a batch's row locks were held. The
	// tables themselves are locked ROW EXCLUSIVE only, which blocks no
	// read or write.
	LongestBatchMS float64 `json:"longest_batch_ms"`
	// WALMB is the WAL the cluster wrote during the purge; BackgroundWALMB
	// is what it wrote in as long a time just before (other writers),
	// and NetWALMB the difference.
	WALMB           float64        `json:"wal_mb"`
	BackgroundWALMB float64        `json:"background_wal_mb"`
	NetWALMB        float64        `json:"net_wal_mb"`
	Before          []historyTable `json:"before"`
	After           []historyTable `json:"after"`
	// AfterVacuum is after a plain VACUUM of the four tables, which
	// VacuumSeconds took: space is reusable, not returned.
	AfterVacuum   []historyTable `json:"after_vacuum"`
	VacuumSeconds float64        `json:"vacuum_seconds"`
	Shrank        bool           `json:"shrank"`
}

// historyGrowth compares one query's p99 across sizes.
type historyGrowth struct {
	Query      string  `json:"query"`
	FromSize   int     `json:"from_actions"`
	ToSize     int     `json:"to_actions"`
	Ratio      float64 `json:"p99_ratio"`
	TargetMax  float64 `json:"target_max"`
	Met        bool    `json:"met"`
	ToTargetMS float64 `json:"p99_ms_at_largest"`
}

// historyBench is one run of `botq bench history`.
type historyBench struct {
	o     HistoryOptions
	log   io.Writer
	admin *pgxpool.Pool
}

// RunHistory runs `botq bench history`: for each size, it fills a schema,
// times the auditor's questions, runs retention of the oldest month and
// drops the schema; it prints a table and, with Out, writes JSON.
func RunHistory(ctx context.Context, o HistoryOptions, stdout, stderr io.Writer) error {
	if o.Out != "" {
		if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	h := &historyBench{o: o, log: stderr}
	var err error
	if h.admin, err = store.NewPool(ctx, o.DatabaseURL, "public", store.PoolOptions{MaxConns: 4, AppName: "botq-bench-history"}); err != nil {
		return err
	}
	defer h.admin.Close()
	rep := &historyReport{Tool: "botq bench history", StartedAt: time.Now().UTC(), Botq: moduleVersion("github.com/botq/botq"),
		Machine: readMachine(), Method: historyMethod}
	if rep.Postgres, err = readPostgres(ctx, h.admin); err != nil {
		return err
	}
	var runErr error
	for _, n := range o.Actions {
		run, err := h.run(ctx, n)
		if run != nil {
			rep.Runs = append(rep.Runs, run)
		}
		// A large size takes an hour or more: what is done is kept
		// should a later size not finish.
		if o.Out != "" && err == nil {
			rep.Growth = historyGrowthOf(rep.Runs)
			if err := writeJSON(o.Out, rep); err != nil {
				return err
			}
		}
		if err != nil {
			runErr = fmt.Errorf("history of %d actions: %w", n, err)
			break
		}
	}
	rep.FinishedAt = time.Now().UTC()
	rep.Machine.LoadAfter = loadString()
	rep.Growth = historyGrowthOf(rep.Runs)
	rep.writeTable(stdout)
	if o.Out != "" {
		if err := writeJSON(o.Out, rep); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench history: results written to %s\n", o.Out)
	}
	return runErr
}

const historyMethod = "Each size is a schema made by botq's migrations and filled by set-based SQL " +
	"(INSERT ... SELECT generate_series, with session_replication_role = replica so that no trigger runs and " +
	"the secondary indexes built after the load), then VACUUM ANALYZE. Every action is finished " +
	"(95% succeeded, 3% failed, 2% cancelled), 90 days, 3 apps (60/30/10% of conversations), N/10 conversations " +
	"(each a lane: network/page/author, about 10 actions within minutes), 6 conversations per author; " +
	"1 attempt per attempted action, 2 for 8%, 3 for 2%, one request record per attempt, N/5 KHOROS-origin " +
	"records of no action, an event per cancelled action and an hourly token refresh per app. River's tables are " +
	"empty (River keeps a day of finished jobs). Queries are timed through the store functions the CLI and the HTTP " +
	"API call, with random keys, one at a time, on a warm cache."

func (h *historyBench) logf(format string, args ...any) {
	fmt.Fprintf(h.log, "bench history: "+format+"\n", args...)
}

// run makes, measures and drops the history of n actions.
func (h *historyBench) run(ctx context.Context, n int) (*historyRun, error) {
	run := &historyRun{Actions: n, Days: historyDays, LoadBefore: loadString()}
	schema := fmt.Sprintf("bench_%d_%s_history", time.Now().Unix(), randomHex(2))
	run.Schema = schema
	if _, err := h.admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", schema, err)
	}
	defer func() {
		if h.o.Keep {
			h.logf("kept schema %s", schema)
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if _, err := h.admin.Exec(dctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			h.logf("drop schema %s: %v", schema, err)
		}
	}()
	pool, err := store.NewPool(ctx, h.o.DatabaseURL, schema, store.PoolOptions{MaxConns: 4, AppName: "botq-bench-history"})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if _, err := migrations.Up(ctx, pool, schema, nil); err != nil {
		return nil, err
	}
	st, err := store.New(schema)
	if err != nil {
		return nil, err
	}
	// The history ends at the start of today.
	end := time.Now().UTC().Truncate(24 * time.Hour)
	g := historyGen{n: n, start: end.AddDate(0, 0, -historyDays)}
	g.conversations = max(n/10, 6)
	run.Conversations, run.Authors = g.conversations, (g.conversations+5)/6

	h.logf("%d actions in %s: filling (load %s)", n, schema, loadString())
	start := time.Now()
	if run.Rows, err = h.fill(ctx, pool, schema, g); err != nil {
		return run, err
	}
	run.LoadSeconds = time.Since(start).Seconds()
	if run.Tables, err = tableSizes(ctx, h.admin, schema); err != nil {
		return run, err
	}
	if err := h.admin.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) / 1048576.0 FROM pg_class c
		WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'm')`, schema).Scan(&run.DiskMB); err != nil {
		return run, err
	}
	run.DiskMBPerMillion = run.DiskMB / (float64(n) / 1e6)
	h.logf("filled in %.0fs: %.0f MB on disk (load %s)", run.LoadSeconds, run.DiskMB, loadString())

	q := historyQueries{h: h, pool: pool, st: st, g: g, rng: rand.New(rand.NewPCG(uint64(n), 27))}
	if run.Queries, err = q.all(ctx); err != nil {
		return run, err
	}
	if run.Export, err = h.export(ctx, schema, g); err != nil {
		return run, err
	}
	if run.Retention, err = h.retention(ctx, pool, st, schema, g); err != nil {
		return run, err
	}
	run.LoadAfter = loadString()
	return run, nil
}

// historyGen holds what the generating SQL needs.
type historyGen struct {
	n             int
	conversations int
	start         time.Time
}

// historyKhorosShare is the KHOROS-origin records per action.
const historyKhorosShare = 5

// The generating statements. $1 is the first action id of a chunk, $2 the
// last, $3 the actions in all, $4 the conversations, $5 the history's
// start. Conversation k (of app (k/6) % 10: 0-5 hist-a, 6-8 hist-b, 9
// hist-c) has author u<k/6> on network k%2 and page k%3, so an author has
// six conversations; action i belongs to a conversation near i/N of the
// way through the 90 days.
var historyFillSQL = []struct {
	what   string
	params int
	sql    string
}{
	{"actions", 5, `
INSERT INTO action (id, app_id, kind, payload, idempotency_key, lane, state, river_job_id, attempt_count,
                    request_id, last_error, created_at, created_by, updated_at, finished_at)
OVERRIDING SYSTEM VALUE
SELECT i, app, kind,
       jsonb_build_object('coordinate', jsonb_build_object('companyKey', 'acme', 'networkKey', net, 'externalId', page, 'scope', 'PRIVATE'),
                          'author', jsonb_build_object('id', author))
         || CASE kind WHEN 'respond' THEN jsonb_build_object('text', 'Thanks for your message about order ' || i || ', we are looking into it.')
                      WHEN 'note' THEN jsonb_build_object('note', 'customer called about order ' || i)
                      WHEN 'tag' THEN '{"tagIds": [12, 40]}'::jsonb
                      WHEN 'control' THEN '{"owner": "agent"}'::jsonb
                      ELSE '{}'::jsonb END,
       'h' || i, net || '/' || page || '/' || author, state, i, attempts,
       CASE WHEN attempts > 0 THEN md5(i || '-' || attempts)::uuid::text END,
       CASE state WHEN 'failed' THEN 'Bot v3 answered 400: conversation is closed' END,
       at, 'bench', at + took, at + took
FROM (
    SELECT i, at, took, state, attempts, kind,
           historyapp((k / 6) % 10) AS app,
           CASE k % 2 WHEN 0 THEN 'facebook' ELSE 'twitter' END AS net,
           'page-' || (k % 3) AS page, 'u' || (k / 6) AS author
    FROM (
        SELECT i, $5::timestamptz + (i::float8 / $3::bigint * 90) * interval '1 day' AS at,
               least(floor(i::float8 / $3::bigint * $4::bigint + r1 * 50)::bigint, $4::bigint - 1) AS k,
               CASE WHEN r2 < 0.95 THEN 'succeeded' WHEN r2 < 0.98 THEN 'failed' ELSE 'cancelled' END AS state,
               CASE WHEN r2 >= 0.98 THEN 0 WHEN r4 < 0.9 THEN 1 WHEN r4 < 0.98 THEN 2 ELSE 3 END AS attempts,
               CASE WHEN r3 < 0.70 THEN 'respond' WHEN r3 < 0.80 THEN 'tag' WHEN r3 < 0.90 THEN 'control'
                    WHEN r3 < 0.95 THEN 'note' ELSE 'resolve' END AS kind,
               (0.3 + r4 * 2) * interval '1 second' AS took
        FROM (SELECT i, random() AS r1, random() AS r2, random() AS r3, random() AS r4
              FROM generate_series($1::bigint, $2::bigint) AS i OFFSET 0) r
        OFFSET 0) s
    OFFSET 0) t`},
	{"attempts and requests", 2, `
WITH src AS MATERIALIZED (
    SELECT a.id, a.app_id, a.river_job_id, n, a.attempt_count, a.state,
           a.created_at + (n - 1) * interval '1.5 seconds' AS started,
           a.created_at + (n - 1) * interval '1.5 seconds' + (150 + a.id % 300) * interval '1 millisecond' AS ended,
           md5(a.id || '-' || n)::uuid::text AS request_id,
           CASE WHEN n < a.attempt_count THEN 'retry' WHEN a.state = 'failed' THEN 'cancel' ELSE 'ok' END AS outcome
    FROM action a CROSS JOIN LATERAL generate_series(1, a.attempt_count) AS n
    WHERE a.id BETWEEN $1 AND $2
), att AS (
    INSERT INTO attempt (action_id, number, river_job_id, job_attempt, started_at, duration_ms, wire_sent, http_status,
                         request_id, outcome, error, response_excerpt, worker, created_at)
    SELECT id, n, river_job_id, n, started, 150 + id % 300, true,
           CASE outcome WHEN 'retry' THEN 503 WHEN 'cancel' THEN 400 ELSE 200 END,
           request_id, outcome,
           CASE outcome WHEN 'retry' THEN 'gateway answered 503' WHEN 'cancel' THEN 'Bot v3 answered 400: conversation is closed' END,
           '{"requestId":"' || request_id || '","status":"' || CASE outcome WHEN 'ok' THEN 'SUCCESS' ELSE 'ERROR' END || '"}',
           'bench-host-1', ended
    FROM src
)
INSERT INTO request (request_id, app_id, action_id, origin, state, details, http_status, khoros_created_at,
                     khoros_completed_at, khoros_updated_at, first_seen_at, last_checked_at, check_count, finalized_at, reason)
SELECT request_id, app_id, id, 'BOT',
       CASE outcome WHEN 'ok' THEN 'SUCCESS' WHEN 'cancel' THEN 'ERROR' ELSE 'ABSENT' END,
       CASE outcome WHEN 'retry' THEN NULL
            ELSE jsonb_build_object('status', CASE outcome WHEN 'ok' THEN 'SUCCESS' ELSE 'ERROR' END, 'statusCode', CASE outcome WHEN 'ok' THEN 200 ELSE 400 END) END,
       CASE outcome WHEN 'retry' THEN 503 WHEN 'cancel' THEN 400 ELSE 200 END,
       CASE WHEN outcome <> 'retry' THEN started END, CASE WHEN outcome <> 'retry' THEN ended END, CASE WHEN outcome <> 'retry' THEN ended END,
       ended, ended + interval '2 seconds', 1, ended + interval '2 seconds',
       CASE outcome WHEN 'retry' THEN 'the gateway answered 503: Bot v3 keeps no record' END
FROM src`},
	{"KHOROS-origin records", 6, `
INSERT INTO request (request_id, app_id, origin, state, payload, khoros_created_at, khoros_completed_at, khoros_updated_at,
                     first_seen_at, check_count, finalized_at)
SELECT md5('k' || j)::uuid::text, historyapp((k / 6) % 10), 'KHOROS', 'SUCCESS',
       jsonb_build_object('coordinate', jsonb_build_object('companyKey', 'acme', 'networkKey', CASE k % 2 WHEN 0 THEN 'facebook' ELSE 'twitter' END,
                                                           'externalId', 'page-' || (k % 3), 'scope', 'PRIVATE'),
                          'author', jsonb_build_object('id', 'u' || (k / 6)), 'text', 'Where is my order ' || j || '?'),
       at, at, at, at + interval '5 seconds', 0, at + interval '5 seconds'
FROM (
    SELECT j, $5::timestamptz + (j::float8 * $6::bigint / $3::bigint * 90) * interval '1 day' AS at,
           least(floor(j::float8 * $6::bigint / $3::bigint * $4::bigint + random() * 50)::bigint, $4::bigint - 1) AS k
    FROM generate_series(($1::bigint + $6::bigint - 1) / $6::bigint, $2::bigint / $6::bigint) AS j OFFSET 0) s`},
	{"events", 2, `
INSERT INTO event (at, app_id, action_id, kind, actor, reason)
SELECT finished_at, app_id, id, 'cancel', 'ops@acme', 'customer asked us to stop'
FROM action WHERE id BETWEEN $1 AND $2 AND state = 'cancelled'`},
}

// historyAppSQL maps a conversation's app class (0-9) to its app.
const historyAppSQL = `CREATE FUNCTION historyapp(c bigint) RETURNS text LANGUAGE sql IMMUTABLE AS
	$$ SELECT CASE WHEN c < 6 THEN 'hist-a' WHEN c < 9 THEN 'hist-b' ELSE 'hist-c' END $$`

// historyTables are the audit tables the history fills.
var historyTables = []string{"action", "attempt", "request", "event"}

// fill makes the history and returns the rows of each table.
func (h *historyBench) fill(ctx context.Context, pool *pgxpool.Pool, schema string, g historyGen) (map[string]int64, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	// The connection is made unusable for anything else by these settings:
	// it goes back to the pool closed.
	defer func() { _ = conn.Conn().Close(context.WithoutCancel(ctx)) }()
	for _, s := range []string{
		"SET session_replication_role = replica", "SET synchronous_commit = off",
		"SET maintenance_work_mem = '512MB'", "SET work_mem = '64MB'", historyAppSQL,
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
	}
	for _, app := range historyApps {
		if _, err := conn.Exec(ctx, `INSERT INTO app (id, company_key) VALUES ($1, 'acme')`, app); err != nil {
			return nil, err
		}
	}
	indexes, err := dropSecondaryIndexes(ctx, conn, schema)
	if err != nil {
		return nil, err
	}
	const chunk = 250_000
	for _, step := range historyFillSQL {
		start := time.Now()
		for lo := int64(1); lo <= int64(g.n); lo += chunk {
			hi := min(lo+chunk-1, int64(g.n))
			args := []any{lo, hi, g.n, g.conversations, g.start, historyKhorosShare}
			if _, err := conn.Exec(ctx, step.sql, args[:step.params]...); err != nil {
				return nil, fmt.Errorf("fill %s: %w", step.what, err)
			}
		}
		h.logf("  %s: %.0fs", step.what, time.Since(start).Seconds())
	}
	if _, err := conn.Exec(ctx, `INSERT INTO event (at, app_id, kind, actor, reason)
		SELECT t, a, 'token_refresh', 'botq', 'scheduled refresh'
		FROM unnest($1::text[]) AS a, generate_series($2::timestamptz, $2::timestamptz + interval '90 days' - interval '1 hour', interval '1 hour') AS t`,
		historyApps, g.start); err != nil {
		return nil, fmt.Errorf("fill token events: %w", err)
	}
	start := time.Now()
	for _, ix := range indexes {
		if _, err := conn.Exec(ctx, ix.def); err != nil {
			return nil, fmt.Errorf("build %s: %w", ix.name, err)
		}
	}
	h.logf("  indexes: %.0fs", time.Since(start).Seconds())
	for _, s := range []string{
		"SELECT setval(pg_get_serial_sequence('action', 'id'), $1)",
		"DROP FUNCTION historyapp(bigint)",
		"VACUUM (ANALYZE) action, attempt, request, event",
	} {
		start := time.Now()
		var args []any
		if strings.Contains(s, "$1") {
			args = []any{g.n}
		}
		if _, err := conn.Exec(ctx, s, args...); err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		if strings.HasPrefix(s, "VACUUM") {
			h.logf("  vacuum analyze: %.0fs", time.Since(start).Seconds())
		}
	}
	return countRows(ctx, conn)
}

// historyIndex is an index dropped for the load.
type historyIndex struct{ name, def string }

// dropSecondaryIndexes drops the audit tables' indexes that enforce
// nothing and returns their definitions: building them after the load is
// faster than maintaining them row by row. The unique ones stay.
func dropSecondaryIndexes(ctx context.Context, conn *pgxpool.Conn, schema string) ([]historyIndex, error) {
	rows, err := conn.Query(ctx, `
		SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
		FROM pg_index i
		WHERE i.indrelid = ANY($1::regclass[]) AND NOT i.indisunique`, qualifyAll(schema, historyTables))
	if err != nil {
		return nil, err
	}
	indexes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (historyIndex, error) {
		var ix historyIndex
		return ix, r.Scan(&ix.name, &ix.def)
	})
	if err != nil {
		return nil, err
	}
	for _, ix := range indexes {
		if _, err := conn.Exec(ctx, "DROP INDEX "+ix.name); err != nil {
			return nil, err
		}
	}
	return indexes, nil
}

// countRows counts the rows of each audit table, and the KHOROS-origin
// records.
func countRows(ctx context.Context, conn *pgxpool.Conn) (map[string]int64, error) {
	counts := map[string]int64{}
	for _, t := range historyTables {
		var c int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+t).Scan(&c); err != nil {
			return nil, err
		}
		counts[t] = c
	}
	var khoros int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM request WHERE origin = 'KHOROS'").Scan(&khoros); err != nil {
		return nil, err
	}
	counts["request_khoros"] = khoros
	return counts, nil
}

func qualifyAll(schema string, tables []string) []string {
	out := make([]string, len(tables))
	for i, t := range tables {
		out[i] = schema + "." + t
	}
	return out
}

// tableSizes returns the size of each audit table and its indexes.
func tableSizes(ctx context.Context, admin *pgxpool.Pool, schema string) ([]historyTable, error) {
	rows, err := admin.Query(ctx, `
		SELECT t, c.reltuples::bigint, pg_table_size(c.oid) / 1048576.0, pg_indexes_size(c.oid) / 1048576.0
		FROM unnest($1::text[]) WITH ORDINALITY AS u(t, o)
		JOIN pg_class c ON c.oid = ($2 || '.' || t)::regclass
		ORDER BY o`, historyTables, schema)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (historyTable, error) {
		var t historyTable
		return t, r.Scan(&t.Name, &t.Rows, &t.TableMB, &t.IndexMB)
	})
}

// retention runs botq's retention of the oldest month.
func (h *historyBench) retention(ctx context.Context, pool *pgxpool.Pool, st *store.Store, schema string, g historyGen) (*historyRetention, error) {
	r := &historyRetention{Cutoff: g.start.AddDate(0, 0, 30), BatchSize: historyRetentionBatch}
	var err error
	if r.Before, err = tableSizes(ctx, h.admin, schema); err != nil {
		return nil, err
	}
	lsn := func() (string, error) {
		var s string
		return s, h.admin.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s)
	}
	walMB := func(from, to string) (float64, error) {
		var mb float64
		return mb, h.admin.QueryRow(ctx, "SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn) / 1048576.0", from, to).Scan(&mb)
	}
	h.logf("retention of the month before %s (load %s)", r.Cutoff.Format(time.DateOnly), loadString())
	db := &timedDB{DBTX: pool}
	l0, err := lsn()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res, err := st.RetentionPurge(ctx, db, r.Cutoff, r.BatchSize)
	took := time.Since(start)
	if err != nil {
		return nil, err
	}
	l1, err := lsn()
	if err != nil {
		return nil, err
	}
	r.Seconds = took.Seconds()
	r.Deleted.Actions, r.Deleted.Attempts, r.Deleted.Requests, r.Deleted.Events = res.Actions, res.Attempts, res.Requests, res.Events
	r.Batches, r.LongestBatchMS = db.calls, db.longest.Seconds()*1000
	if r.WALMB, err = walMB(l0, l1); err != nil {
		return nil, err
	}
	// Other writers' WAL in as long a time (at most a minute, scaled).
	bg := min(took, time.Minute)
	b0, err := lsn()
	if err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(bg):
	}
	b1, err := lsn()
	if err != nil {
		return nil, err
	}
	if r.BackgroundWALMB, err = walMB(b0, b1); err != nil {
		return nil, err
	}
	r.BackgroundWALMB *= took.Seconds() / bg.Seconds()
	r.NetWALMB = max(r.WALMB-r.BackgroundWALMB, 0)
	if r.After, err = tableSizes(ctx, h.admin, schema); err != nil {
		return nil, err
	}
	start = time.Now()
	if _, err := pool.Exec(ctx, "VACUUM action, attempt, request, event"); err != nil {
		return nil, err
	}
	r.VacuumSeconds = time.Since(start).Seconds()
	if r.AfterVacuum, err = tableSizes(ctx, h.admin, schema); err != nil {
		return nil, err
	}
	r.Shrank = true
	for i, t := range r.AfterVacuum {
		if t.TableMB >= r.Before[i].TableMB || t.IndexMB >= r.Before[i].IndexMB {
			r.Shrank = false
		}
	}
	h.logf("  %.1fs, %d batches, longest %.0f ms, %.0f MB WAL (%.0f MB net of other writers)",
		r.Seconds, r.Batches, r.LongestBatchMS, r.WALMB, r.NetWALMB)
	return r, nil
}

// timedDB times each QueryRow to the end of its Scan: retention runs one
// batch per QueryRow.
type timedDB struct {
	store.DBTX
	calls   int
	longest time.Duration
}

func (d *timedDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	start := time.Now()
	return &timedRow{Row: d.DBTX.QueryRow(ctx, sql, args...), d: d, start: start}
}

type timedRow struct {
	pgx.Row
	d     *timedDB
	start time.Time
}

func (r *timedRow) Scan(dest ...any) error {
	err := r.Row.Scan(dest...)
	r.d.calls++
	r.d.longest = max(r.d.longest, time.Since(r.start))
	return err
}

var _ store.DBTX = (*timedDB)(nil)

// historyGrowthOf compares each query's p99 at the largest size with its
// p99 at the smallest.
func historyGrowthOf(runs []*historyRun) []historyGrowth {
	if len(runs) < 2 {
		return nil
	}
	lo, hi := runs[0], runs[0]
	for _, r := range runs {
		if r.Actions < lo.Actions {
			lo = r
		}
		if r.Actions > hi.Actions {
			hi = r
		}
	}
	var out []historyGrowth
	for _, qh := range hi.Queries {
		i := slices.IndexFunc(lo.Queries, func(q *historyQuery) bool { return q.Name == qh.Name })
		if i < 0 || lo.Queries[i].P99MS <= 0 {
			continue
		}
		ratio := qh.P99MS / lo.Queries[i].P99MS
		out = append(out, historyGrowth{Query: qh.Name, FromSize: lo.Actions, ToSize: hi.Actions, Ratio: ratio,
			TargetMax: targetGrowth, Met: ratio <= targetGrowth, ToTargetMS: qh.P99MS})
	}
	return out
}

// writeTable prints the figures of every size.
func (r *historyReport) writeTable(w io.Writer) {
	fmt.Fprintf(w, "botq bench history: %s, %d cores, Postgres %s, load %s -> %s\n",
		r.Machine.CPUModel, r.Machine.Cores, r.Postgres.Version, r.Machine.LoadBefore, r.Machine.LoadAfter)
	for _, run := range r.Runs {
		fmt.Fprintf(w, "\n%s actions (%s conversations, %d days): filled in %.0fs, %.0f MB on disk (%.0f MB per million), load %s -> %s\n",
			fmtNum(float64(run.Actions)), fmtNum(float64(run.Conversations)), run.Days, run.LoadSeconds, run.DiskMB,
			run.DiskMBPerMillion, run.LoadBefore, run.LoadAfter)
		fmt.Fprintf(w, "  %-12s %10s %10s %10s %10s %8s %8s  %s\n", "query", "samples", "p50 ms", "p99 ms", "max ms", "rows", "target", "met")
		for _, q := range run.Queries {
			target, met := "", ""
			if q.TargetP99MS > 0 {
				target = fmt.Sprintf("<=%g", q.TargetP99MS)
				met = fmt.Sprint(*q.Met)
			}
			fmt.Fprintf(w, "  %-12s %10d %10.2f %10.2f %10.2f %8.1f %8s  %s\n", q.Name, q.Samples, q.P50MS, q.P99MS, q.MaxMS, q.RowsMean, target, met)
		}
		if e := run.Export; e != nil {
			fmt.Fprintf(w, "  export of %s: %d rows in %.2fs = %.0f rows/s, peak RSS %.1f MB (target >= %.0f rows/s at <= %.0f MB: %v)\n",
				e.Day, e.Rows, e.Seconds, e.RowsPerSec, e.PeakRSSMB, targetExportRate, targetExportRSS, e.Met)
		}
		if rt := run.Retention; rt != nil {
			fmt.Fprintf(w, "  retention before %s: %.1fs, %d batches of %d, longest %.0f ms; deleted %d actions, %d attempts, %d requests, %d events; WAL %.0f MB (%.0f MB net of other writers); vacuum %.1fs; shrank: %v\n",
				rt.Cutoff.Format(time.DateOnly), rt.Seconds, rt.Batches, rt.BatchSize, rt.LongestBatchMS, rt.Deleted.Actions, rt.Deleted.Attempts,
				rt.Deleted.Requests, rt.Deleted.Events, rt.WALMB, rt.NetWALMB, rt.VacuumSeconds, rt.Shrank)
			for i, t := range rt.Before {
				fmt.Fprintf(w, "    %-8s table %8.1f -> %8.1f -> %8.1f MB, indexes %8.1f -> %8.1f -> %8.1f MB (before, after, after vacuum)\n",
					t.Name, t.TableMB, rt.After[i].TableMB, rt.AfterVacuum[i].TableMB, t.IndexMB, rt.After[i].IndexMB, rt.AfterVacuum[i].IndexMB)
			}
		}
	}
	for _, g := range r.Growth {
		fmt.Fprintf(w, "growth %-12s p99 x%.2f from %s to %s actions (target <= %.1f: %v)\n",
			g.Query, g.Ratio, fmtNum(float64(g.FromSize)), fmtNum(float64(g.ToSize)), g.TargetMax, g.Met)
	}
}
