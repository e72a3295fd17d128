package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/server"
)

// The writes scenario counts what an action makes Postgres write: rows by
// table, index entries and WAL, for the enqueue and for the execution and
// result apart, against plain River doing the same work (one SQL INSERT into
// river_job; a worker making the same call, the job completed by River).
// They are sums over a fixed number of actions, the workers stopped during
// the enqueue, so the figures per action are exact counts, not rates.
//
// Backends flush their table counters when they exit, or up to 10 seconds
// after they go idle, so a phase ends with its clients' connections closed
// and its counters holding still. It also reports the CPU time of the
// database's backends and of this process per action. The WAL position and
// pg_stat_wal are the whole cluster's: each phase also records the rows
// others wrote meanwhile and whether a checkpoint ran (after one, the first
// change of every page writes a full-page image). Where pg_waldump can read
// the WAL (Postgres on this machine), the phase's WAL is read record by
// record: the records of the schema's relations, and of the transactions
// that wrote them (commits, multixacts), are the side's, whatever else the
// cluster wrote meanwhile; summed by relation, they count index entries
// exactly.

// writesPhase is what one phase wrote.
type writesPhase struct {
	Actions  int     `json:"actions"`
	Seconds  float64 `json:"seconds"`
	LSNStart string  `json:"lsn_start"`
	LSNEnd   string  `json:"lsn_end"`
	// WALBytes, WALRecords and WALFPI are the side's own WAL when it was
	// read (WALFrom), else the cluster's: the WAL position's advance and
	// pg_stat_wal.
	WALBytes          int64  `json:"wal_bytes"`
	WALRecords        int64  `json:"wal_records"`
	WALFPI            int64  `json:"wal_fpi"`
	WALFrom           string `json:"wal_from"`
	ClusterWALBytes   int64  `json:"cluster_wal_bytes"`
	ClusterWALRecords int64  `json:"cluster_wal_records"`
	ClusterWALFPI     int64  `json:"cluster_wal_fpi"`
	// OthersRows is what the rest of the cluster wrote meanwhile (rows of
	// every database, less this schema's); Checkpointed, whether a
	// checkpoint ended.
	OthersRows   int64                   `json:"others_rows"`
	Checkpointed bool                    `json:"checkpointed"`
	Tables       map[string]*tableWrites `json:"tables"`
	PerAction    writesPerAction         `json:"per_action"`
	CPU          *cpuUse                 `json:"cpu"`
	// WALByRelation is the side's WAL by the relation of each record's
	// first block, then the rest of the cluster's (pg_waldump); WALNote
	// says why it is missing.
	WALByRelation []*walRelation `json:"wal_by_relation,omitempty"`
	WALNote       string         `json:"wal_note,omitempty"`
}

// writesPerAction is a phase's totals divided by its actions. IndexEntries
// is counted from the WAL when it was read, else from the tables' counters
// (IndexEntriesFrom says which).
type writesPerAction struct {
	WALBytes   float64 `json:"wal_bytes"`
	WALRecords float64 `json:"wal_records"`
	WALFPI     float64 `json:"wal_fpi"`
	// WALFPIBytes is the part of WALBytes that full-page images take
	// (known from the WAL only): the first change of a page after a
	// checkpoint, so it depends on when checkpoints fall.
	WALFPIBytes      float64 `json:"wal_fpi_bytes"`
	Rows             float64 `json:"rows"`
	IndexEntries     float64 `json:"index_entries"`
	IndexEntriesFrom string  `json:"index_entries_from"`
	// PostgresMicros is the CPU time of the database's backends;
	// BenchMicros, of this process (botq or River, and the simulator).
	PostgresMicros float64 `json:"postgres_cpu_us"`
	BenchMicros    float64 `json:"bench_cpu_us"`
}

// tableWrites is one table's row counters over a phase.
type tableWrites struct {
	Inserted   int64 `json:"inserted"`
	Updated    int64 `json:"updated"`
	HOTUpdated int64 `json:"hot_updated"`
	Deleted    int64 `json:"deleted"`
	Indexes    int   `json:"indexes"`
	Partial    int   `json:"partial_indexes,omitempty"`
	// IndexEntries is (inserted + non-HOT updated) × indexes: a partial
	// index counts as if every row version matched it.
	IndexEntries int64 `json:"index_entries"`
}

// walRelation is the WAL of one relation (or of no relation: commits,
// multixacts) over a phase; Bytes are the space the records take, aligned.
type walRelation struct {
	Relation string `json:"relation"`
	// Others marks the records of other transactions than the side's.
	Others  bool  `json:"others,omitempty"`
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	FPI     int64 `json:"fpi"`
	// FPIBytes is the part of Bytes that full-page images take.
	FPIBytes int64 `json:"fpi_bytes"`
	// Entries are index entries written: B-tree leaf inserts (and the
	// splits that carry one), GIN pending-list appends.
	Entries int64            `json:"index_entries,omitempty"`
	Ops     map[string]int64 `json:"ops"`
}

// writesSide is one side's two phases.
type writesSide struct {
	Enqueue *writesPhase `json:"enqueue"`
	Result  *writesPhase `json:"result"`
}

// writesCounts are a schema's table counters: inserted, updated,
// HOT-updated and deleted rows, by table.
type writesCounts map[string][4]int64

type writesSnap struct {
	lsn, redo                string
	walRecords, walFPI, rows int64
	tables                   writesCounts
}

func (b *bench) runWrites(ctx context.Context, sc *benchScenario) error {
	n := b.o.Writes
	riverSide, err := b.writesRiver(ctx, n)
	if err != nil {
		return fmt.Errorf("river: %w", err)
	}
	botqSide, err := b.writesBotq(ctx, n)
	if err != nil {
		return fmt.Errorf("botq: %w", err)
	}
	sc.Details["actions"] = n
	sc.Details["warmup_actions"] = writesWarmup(n)
	sc.Details["river"] = riverSide
	sc.Details["botq"] = botqSide
	sc.Details["measured"] = "per phase: rows from pg_stat_user_tables of the side's schema once its clients closed and the counters held still; " +
		"WAL from pg_waldump (the records of the schema's relations and of the transactions that wrote them; wal_from), " +
		"else the cluster's WAL position and pg_stat_wal; warm-up actions, ANALYZE and CHECKPOINT before the enqueue, ANALYZE before the result"
	for _, ph := range []struct {
		name        string
		river, botq *writesPhase
	}{{"enqueue", riverSide.Enqueue, botqSide.Enqueue}, {"result", riverSide.Result, botqSide.Result}} {
		for _, m := range writesMetrics {
			rk := "writes.river_" + ph.name + "_" + m.key
			b.figure(benchFigure{Key: rk, Scenario: "writes", Label: "River, " + ph.name + ": " + m.label + " per job", Value: fptr(m.get(ph.river.PerAction)), Unit: m.unit})
			b.figure(benchFigure{Key: "writes." + ph.name + "_" + m.key, Scenario: "writes", Label: ph.name + ": " + m.label + " per action",
				Value: fptr(m.get(ph.botq.PerAction)), Unit: m.unit, Baseline: rk})
		}
		b.logf("writes %s: WAL per action botq %.0f B, River %.0f B; rows %.1f, %.1f; index entries %.1f, %.1f (others wrote %d and %d rows)",
			ph.name, ph.botq.PerAction.WALBytes, ph.river.PerAction.WALBytes, ph.botq.PerAction.Rows, ph.river.PerAction.Rows,
			ph.botq.PerAction.IndexEntries, ph.river.PerAction.IndexEntries, ph.botq.OthersRows, ph.river.OthersRows)
	}
	return nil
}

// writesMetrics are the figures of each phase, botq's against River's.
var writesMetrics = []struct {
	key, label, unit string
	get              func(writesPerAction) float64
}{
	{"wal_bytes", "WAL bytes", "B", func(p writesPerAction) float64 { return p.WALBytes }},
	{"wal_records", "WAL records", "", func(p writesPerAction) float64 { return p.WALRecords }},
	{"rows", "rows written", "", func(p writesPerAction) float64 { return p.Rows }},
	{"index_entries", "index entries", "", func(p writesPerAction) float64 { return p.IndexEntries }},
	{"postgres_cpu", "Postgres CPU", "µs", func(p writesPerAction) float64 { return p.PostgresMicros }},
}

func writesFigureKeys() []string {
	var keys []string
	for _, ph := range []string{"enqueue", "result"} {
		for _, m := range writesMetrics {
			keys = append(keys, "writes.river_"+ph+"_"+m.key, "writes."+ph+"_"+m.key)
		}
	}
	return keys
}

// writesWarmup is how many actions run end to end before a side is
// measured, so that the measured ones find analyzed, non-empty tables and
// warm sessions.
func writesWarmup(n int) int { return max(n/10, 1) }

// writesRiver measures plain River: r1's INSERT, then a River client whose
// worker makes the call.
func (b *bench) writesRiver(ctx context.Context, n int) (*writesSide, error) {
	b.sim.reset(sim.Options{})
	tok, err := b.sim.mint(benchApp)
	if err != nil {
		return nil, err
	}
	api, err := benchAPIClient(b.sim.url, tok)
	if err != nil {
		return nil, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &benchHTTPWorker{api: api})
	insert := fmt.Sprintf(`INSERT INTO %s.river_job (args, kind, max_attempts, queue, priority, state, scheduled_at)
		VALUES ($1, '%s', 25, '%s', 1, 'available', now())`, b.riverSchema, benchHTTPArgs{}.Kind(), benchQueue)
	enqueue := func(ctx context.Context, k int) error {
		return b.insertEach(ctx, k, func(ctx context.Context, conn *pgx.Conn, seq int64) error {
			_, err := conn.Exec(ctx, insert, `{"n":`+strconv.FormatInt(seq, 10)+`}`)
			return err
		})
	}
	execute := func(ctx context.Context, k int) error {
		rr, err := startRiver(ctx, b.riverPool, benchRiverConfig(b.o, b.riverSchema, workers, true, b.log))
		if err != nil {
			return err
		}
		err = waitCount(ctx, int64(k), func(context.Context) (int64, error) { return rr.completed.Load(), nil })
		if stopErr := rr.stop(ctx); err == nil {
			err = stopErr
		}
		return err
	}
	return b.writesSide(ctx, b.riverSchema, n, enqueue, execute, counted("river_job", 0, n), counted("river_job", 1, 2*n))
}

// writesBotq measures botq: the sql scenario's INSERT, then botq serve's
// workers.
func (b *bench) writesBotq(ctx context.Context, n int) (*writesSide, error) {
	b.sim.reset(sim.Options{})
	if err := b.upsertApp(ctx, benchApp, 0); err != nil {
		return nil, err
	}
	insert := fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload) VALUES ($1, 'respond', $2)`, b.botqSchema)
	enqueue := func(ctx context.Context, k int) error {
		return b.insertEach(ctx, k, func(ctx context.Context, conn *pgx.Conn, seq int64) error {
			_, err := conn.Exec(ctx, insert, benchApp, payload(seq))
			return err
		})
	}
	execute := func(ctx context.Context, k int) error {
		before, err := b.attemptsDone(ctx)
		if err != nil {
			return err
		}
		run, err := b.startBotq(ctx, server.RolesConfig{Workers: true}, []benchAppSpec{{id: benchApp}})
		if err != nil {
			return err
		}
		err = waitCount(ctx, before+int64(k), b.attemptsDone)
		if stopErr := run.stop(); err == nil {
			err = stopErr
		}
		return err
	}
	return b.writesSide(ctx, b.botqSchema, n, enqueue, execute, counted("action", 0, n), counted("attempt", 0, n))
}

// counted accepts counts in which table's counter i (0 inserted, 1 updated)
// reached n.
func counted(table string, i, n int) func(writesCounts) bool {
	return func(c writesCounts) bool { return c[table][i] >= int64(n) }
}

// writesSide warms a side up, then measures its enqueue of n and their
// execution.
func (b *bench) writesSide(ctx context.Context, schema string, n int, enqueue, execute func(context.Context, int) error,
	enqueued, executed func(writesCounts) bool) (*writesSide, error) {
	warm := writesWarmup(n)
	if err := enqueue(ctx, warm); err != nil {
		return nil, err
	}
	if err := execute(ctx, warm); err != nil {
		return nil, err
	}
	var tables []string
	rows, err := b.admin.Query(ctx, `SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables WHERE schemaname = $1`, schema)
	if err == nil {
		tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return nil, err
	}
	b.analyze(ctx, tables)
	if _, err := b.admin.Exec(ctx, "CHECKPOINT"); err != nil {
		return nil, err
	}
	indexes := map[string][2]int{}
	rows, err = b.admin.Query(ctx, `
		SELECT c.relname, count(*)::int, (count(*) FILTER (WHERE i.indpred IS NOT NULL))::int
		FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		WHERE c.relnamespace = to_regnamespace($1) GROUP BY c.relname`, schema)
	if err != nil {
		return nil, err
	}
	var name string
	var all, partial int
	if _, err := pgx.ForEachRow(rows, []any{&name, &all, &partial}, func() error { indexes[name] = [2]int{all, partial}; return nil }); err != nil {
		return nil, err
	}
	side := &writesSide{}
	if side.Enqueue, err = b.writesPhase(ctx, schema, n, indexes, enqueue, enqueued); err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	// The backlog's statistics, as autovacuum would soon have them: plans
	// made for the warm-up's few finished rows are slow on a backlog.
	b.analyze(ctx, tables)
	if side.Result, err = b.writesPhase(ctx, schema, n, indexes, execute, executed); err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}
	return side, nil
}

// writesPhase runs work on n actions and counts what it wrote.
func (b *bench) writesPhase(ctx context.Context, schema string, n int, indexes map[string][2]int,
	work func(context.Context, int) error, done func(writesCounts) bool) (*writesPhase, error) {
	// A temporary replication slot keeps the phase's WAL until pg_waldump
	// has read it, however many checkpoints others' writes bring; it goes
	// with its session, even if the bench dies.
	slot, err := b.enqueueConn(ctx)
	if err != nil {
		return nil, err
	}
	defer slot.Close(context.WithoutCancel(ctx))
	var slotNote string
	if _, err := slot.Exec(ctx, `SELECT pg_create_physical_replication_slot('botq_bench_writes_' || pg_backend_pid(), true, true)`); err != nil {
		slotNote = "; no replication slot kept the WAL: " + err.Error()
	}
	before, err := b.writesSettled(ctx, schema, nil, nil)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	cpu := b.watchCPU(ctx)
	if err := work(ctx, n); err != nil {
		cpu.finish(ctx)
		return nil, err
	}
	p := &writesPhase{Actions: n, Seconds: time.Since(start).Seconds(), LSNStart: before.lsn, Tables: map[string]*tableWrites{}, CPU: cpu.finish(ctx)}
	err = b.admin.QueryRow(ctx, `SELECT l::text, pg_wal_lsn_diff(l, $1)::bigint FROM pg_current_wal_lsn() l`, before.lsn).Scan(&p.LSNEnd, &p.ClusterWALBytes)
	if err != nil {
		return nil, err
	}
	after, err := b.writesSettled(ctx, schema, before.tables, done)
	if err != nil {
		return nil, err
	}
	p.ClusterWALRecords, p.ClusterWALFPI = after.walRecords-before.walRecords, after.walFPI-before.walFPI
	p.Checkpointed = after.redo != before.redo
	var rows, entries int64
	for t, c := range after.tables {
		d := [4]int64{}
		for i := range d {
			d[i] = c[i] - before.tables[t][i]
		}
		if d == [4]int64{} {
			continue
		}
		idx := indexes[t]
		tw := &tableWrites{Inserted: d[0], Updated: d[1], HOTUpdated: d[2], Deleted: d[3], Indexes: idx[0], Partial: idx[1],
			IndexEntries: (d[0] + d[1] - d[2]) * int64(idx[0])}
		p.Tables[t] = tw
		rows += d[0] + d[1] + d[3]
		entries += tw.IndexEntries
	}
	p.OthersRows = after.rows - before.rows - rows
	p.WALBytes, p.WALRecords, p.WALFPI = p.ClusterWALBytes, p.ClusterWALRecords, p.ClusterWALFPI
	p.WALFrom = "the cluster's: WAL position, pg_stat_wal"
	entriesFrom := "pg_stat_user_tables × indexes"
	var fpiBytes int64
	if err := b.walByRelation(ctx, p, schema); err != nil {
		p.WALNote = err.Error() + slotNote
	} else {
		p.WALBytes, p.WALRecords, p.WALFPI, entries = 0, 0, 0, 0
		for _, r := range p.WALByRelation {
			if !r.Others {
				p.WALBytes, p.WALRecords, p.WALFPI, entries = p.WALBytes+r.Bytes, p.WALRecords+r.Records, p.WALFPI+r.FPI, entries+r.Entries
				fpiBytes += r.FPIBytes
			}
		}
		p.WALFrom = "the side's: pg_waldump, records of the schema's relations and of the transactions that wrote them"
		entriesFrom = "WAL"
	}
	per := func(v int64) float64 { return float64(v) / float64(n) }
	cpuMicros := func(cores float64) float64 { return cores * p.CPU.WindowSeconds * 1e6 / float64(n) }
	p.PerAction = writesPerAction{WALBytes: per(p.WALBytes), WALRecords: per(p.WALRecords), WALFPI: per(p.WALFPI), WALFPIBytes: per(fpiBytes), Rows: per(rows),
		IndexEntries: per(entries), IndexEntriesFrom: entriesFrom,
		PostgresMicros: cpuMicros(p.CPU.PostgresCores), BenchMicros: cpuMicros(p.CPU.BenchCores)}
	return p, nil
}

// writesSettled waits until the schema's table counters hold still for a
// second and, when done is set, until done accepts the counts since base.
func (b *bench) writesSettled(ctx context.Context, schema string, base writesCounts, done func(writesCounts) bool) (writesSnap, error) {
	// A backend that flushed its counters less than a second before it
	// went idle keeps the next ones for 10 seconds; one that exits flushes
	// them. botq's and River's clients are stopped; the pools left open
	// are closed and reopened.
	b.botqPool.Reset()
	b.riverPool.Reset()
	var prev writesCounts
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-ctx.Done():
			return writesSnap{}, ctx.Err()
		case <-time.After(time.Second):
		}
		s, err := b.writesSnap(ctx, schema)
		if err != nil {
			return s, err
		}
		if maps.Equal(prev, s.tables) && (done == nil || done(s.tables.since(base))) {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, errors.New("the table counters did not settle in 30s")
		}
		prev = s.tables
	}
}

func (c writesCounts) since(base writesCounts) writesCounts {
	d := writesCounts{}
	for t, v := range c {
		for i := range v {
			v[i] -= base[t][i]
		}
		d[t] = v
	}
	return d
}

func (b *bench) writesSnap(ctx context.Context, schema string) (writesSnap, error) {
	s := writesSnap{tables: writesCounts{}}
	err := b.admin.QueryRow(ctx, `
		SELECT pg_current_wal_lsn()::text, (SELECT redo_lsn::text FROM pg_control_checkpoint()), w.wal_records, w.wal_fpi,
		       (SELECT sum(tup_inserted + tup_updated + tup_deleted)::bigint FROM pg_stat_database)
		FROM pg_stat_wal w`).Scan(&s.lsn, &s.redo, &s.walRecords, &s.walFPI, &s.rows)
	if err != nil {
		return s, fmt.Errorf("read WAL statistics: %w", err)
	}
	rows, err := b.admin.Query(ctx, `SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables WHERE schemaname = $1`, schema)
	if err != nil {
		return s, err
	}
	var name string
	var c [4]int64
	_, err = pgx.ForEachRow(rows, []any{&name, &c[0], &c[1], &c[2], &c[3]}, func() error { s.tables[name] = c; return nil })
	return s, err
}

// insertEach runs fn once for each of n fresh sequence numbers, from the
// SQL clients, each on its own connection.
func (b *bench) insertEach(ctx context.Context, n int, fn func(ctx context.Context, conn *pgx.Conn, seq int64) error) error {
	first := b.nextSeq(n)
	var next atomic.Int64
	return b.eachSQLClient(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
			if err := fn(ctx, conn, first+i); err != nil {
				return err
			}
		}
		return nil
	})
}

// waitCount waits (up to 10 minutes) until count reaches want.
func waitCount(ctx context.Context, want int64, count func(context.Context) (int64, error)) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		got, err := count(ctx)
		if err != nil {
			return err
		}
		if got >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d done in 10 minutes", got, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// walByRelation reads the phase's WAL with pg_waldump into
// p.WALByRelation: the side's records by relation, and the others'.
func (b *bench) walByRelation(ctx context.Context, p *writesPhase, schema string) error {
	bin, dir, err := b.walDump(ctx)
	if err != nil {
		return err
	}
	var db string
	names := map[string]walRel{}
	rows, err := b.admin.Query(ctx, `
		SELECT (SELECT oid::text FROM pg_database WHERE datname = current_database()), pg_relation_filenode(c.oid)::text, n.nspname, c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE pg_relation_filenode(c.oid) IS NOT NULL`)
	if err != nil {
		return err
	}
	var node, nsp, rel string
	_, err = pgx.ForEachRow(rows, []any{&db, &node, &nsp, &rel}, func() error {
		if nsp == schema {
			names[node] = walRel{rel, true}
		} else {
			names[node] = walRel{nsp + "." + rel, false}
		}
		return nil
	})
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "--path", dir, "--start", p.LSNStart, "--end", p.LSNEnd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pg_waldump: %w", err)
	}
	rels, parseErr := parseWALDump(out, db, names)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("pg_waldump: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if parseErr != nil {
		return parseErr
	}
	p.WALByRelation = rels
	return nil
}

// walRel is a relation of pg_waldump's output: its name, and whether it
// is the side's.
type walRel struct {
	name string
	ours bool
}

// walDump finds pg_waldump (--pg-waldump, else on PATH, else in Debian's
// place for the server's version) and the server's WAL directory.
func (b *bench) walDump(ctx context.Context) (bin, dir string, err error) {
	bin = b.o.WALDump
	if bin == "" {
		if bin, err = exec.LookPath("pg_waldump"); err != nil {
			var major int
			if err := b.admin.QueryRow(ctx, `SELECT current_setting('server_version_num')::int / 10000`).Scan(&major); err != nil {
				return "", "", err
			}
			bin = fmt.Sprintf("/usr/lib/postgresql/%d/bin/pg_waldump", major)
		}
	}
	if _, err := os.Stat(bin); err != nil {
		return "", "", fmt.Errorf("no pg_waldump (--pg-waldump): %w", err)
	}
	var data string
	if err := b.admin.QueryRow(ctx, `SELECT current_setting('data_directory')`).Scan(&data); err != nil {
		return "", "", fmt.Errorf("WAL directory: %w", err)
	}
	dir = filepath.Join(data, "pg_wal")
	if _, err := os.ReadDir(dir); err != nil {
		return "", "", fmt.Errorf("WAL directory: %w", err)
	}
	return bin, dir, nil
}

// parseWALDump sums pg_waldump's records by the relation of their first
// block, named by names (by relfilenode, in database db). A record is the
// side's when its relation is, or when its transaction wrote to one; the
// others' are summed apart. The side's come first, by bytes.
func parseWALDump(r io.Reader, db string, names map[string]walRel) ([]*walRelation, error) {
	ours := map[string]*walRelation{}
	// byXID holds the records of no relation of the side's until the end,
	// when it is known whether their transaction wrote to one.
	byXID := map[string]map[string]*walRelation{}
	xids := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "rmgr: ")
		if !ok {
			continue
		}
		rmgr, rest, _ := strings.Cut(line, " ")
		_, lens, _ := strings.Cut(rest, "len (rec/tot):")
		lens, _, _ = strings.Cut(lens, ",")
		rec, tot, _ := strings.Cut(lens, "/")
		size, _ := strconv.ParseInt(strings.TrimSpace(tot), 10, 64)
		noImages, _ := strconv.ParseInt(strings.TrimSpace(rec), 10, 64)
		_, xid, _ := strings.Cut(rest, "tx:")
		xid, _, _ = strings.Cut(strings.TrimSpace(xid), ",")
		_, desc, _ := strings.Cut(rest, "desc: ")
		op, _, _ := strings.Cut(desc, " ")
		op = rmgr + " " + strings.TrimSuffix(op, ",")
		rel := walRel{name: "(" + rmgr + ", no relation)"}
		if _, ref, ok := strings.Cut(desc, "blkref #0: rel "); ok {
			ref, _, _ = strings.Cut(ref, " ")
			switch parts := strings.Split(ref, "/"); {
			case len(parts) == 3 && parts[1] == db && names[parts[2]].name != "":
				rel = names[parts[2]]
			default:
				rel.name = "(other relations)"
			}
		}
		m := ours
		if rel.ours {
			if xid != "0" {
				xids[xid] = true
			}
		} else {
			if m = byXID[xid]; m == nil {
				m = map[string]*walRelation{}
				byXID[xid] = m
			}
		}
		w := m[rel.name]
		if w == nil {
			w = &walRelation{Relation: rel.name, Ops: map[string]int64{}}
			m[rel.name] = w
		}
		w.Records++
		w.Bytes += (size + 7) &^ 7
		w.FPI += int64(strings.Count(desc, " FPW"))
		w.FPIBytes += size - noImages
		w.Ops[op]++
		switch op {
		case "Btree INSERT_LEAF", "Btree INSERT_POST", "Btree SPLIT_L", "Btree SPLIT_R", "Gin UPDATE_META_PAGE":
			w.Entries++
		}
	}
	others := &walRelation{Relation: "(other transactions)", Others: true, Ops: map[string]int64{}}
	for xid, m := range byXID {
		for name, w := range m {
			switch o := ours[name]; {
			case !xids[xid]:
				others.add(w)
			case o == nil:
				ours[name] = w
			default:
				o.add(w)
			}
		}
	}
	out := slices.SortedFunc(maps.Values(ours), func(a, b *walRelation) int { return int(b.Bytes - a.Bytes) })
	return append(out, others), sc.Err()
}

func (w *walRelation) add(o *walRelation) {
	w.Records, w.Bytes, w.FPI, w.FPIBytes, w.Entries = w.Records+o.Records, w.Bytes+o.Bytes, w.FPI+o.FPI, w.FPIBytes+o.FPIBytes, w.Entries+o.Entries
	for op, k := range o.Ops {
		w.Ops[op] += k
	}
}
