package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/server"
)

// soakPlan is what one soak run does. The short plan runs in `make test`;
// BOTQ_SOAK=<duration> (make test/soak) runs the full one for that long,
// and BOTQ_SOAK_RATE=<actions/s> changes the steady rate (default 60).
type soakPlan struct {
	duration time.Duration
	// warmup is left out of the memory bounds: RSS grows to its working
	// size over it.
	warmup time.Duration
	every  time.Duration // sampling interval
	rate   int           // actions per second, steady
	convs  int           // conversations (lanes) the actions go to
	burst  int           // actions enqueued at once every burstEvery
	// burstEvery is the time between bursts, the first one included.
	burstEvery time.Duration
	// out is where samples, profiles and the processes' logs are kept
	// (BOTQ_SOAK_OUT); empty: a temporary directory.
	out string
	// throwaway runs Postgres in a cluster of the test's own (autovacuum
	// on, as in production) instead of the shared test server.
	throwaway bool
}

func soakPlanFromEnv(t *testing.T) soakPlan {
	t.Helper()
	p := soakPlan{duration: 50 * time.Second, warmup: 20 * time.Second, every: 2 * time.Second, rate: 60, convs: 2000,
		burst: 1000, burstEvery: 20 * time.Second, out: os.Getenv("BOTQ_SOAK_OUT")}
	if v := os.Getenv("BOTQ_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "BOTQ_SOAK is a duration, e.g. 30m or 2h")
		p.duration, p.every, p.burst, p.burstEvery, p.throwaway = d, 10*time.Second, 5000, 8*time.Minute, true
		p.warmup = min(10*time.Minute, d/3)
	}
	if v := os.Getenv("BOTQ_SOAK_RATE"); v != "" {
		_, err := fmt.Sscan(v, &p.rate)
		require.NoError(t, err, "BOTQ_SOAK_RATE is a number of actions per second")
	}
	return p
}

// Memory bounds of a soak: after the warm-up, a process' RSS stays within
// ±20% of one value (the largest per-minute median is at most 1.5 times
// the smallest: a burst's peak, gone within a minute or two, is not
// growth), and every sample is under 150 MB.
const (
	soakRSSLimit     = 150 << 20
	soakRSSBandRatio = 1.2 / 0.8
	// soakFetchedPerSettled bounds the request records the reconciler
	// reads (listed or fetched one by one) per record it settles.
	soakFetchedPerSettled = 5.0
)

// TestSoak runs two `botq serve` processes under steady load with bursts
// and mild faults, samples what could grow (memory, goroutines, FDs,
// connections, tables, dead tuples, queue depth, latency, the
// reconciler's calls and reads), and fails on growth beyond the bounds.
// The short run is part of `make test`; `make test/soak` runs it for
// BOTQ_SOAK (docs/reliability.md has the figures of a full run).
func TestSoak(t *testing.T) {
	plan := soakPlanFromEnv(t)
	if os.Getenv("BOTQ_SOAK") == "" {
		t.Parallel()
	}
	if plan.out == "" {
		plan.out = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(plan.out, 0o755))

	opts := clusterOpts{
		sim: sim.Options{Seed: 31, MaxCallLog: -1}, maxWorkers: 100, callTimeout: 10 * time.Second, procs: 2,
		reconcileInterval: 2 * time.Second, listMaxWait: 30 * time.Second, logLevel: "info", wrapSim: slowSome(0.3, 20*time.Millisecond),
	}
	var c *cluster
	if plan.throwaway {
		db, err := server.ThrowawayCluster(context.Background(), t.TempDir(), os.Stderr)
		require.NoError(t, err, "the full soak runs on a Postgres cluster of its own (initdb, pg_ctl)")
		t.Cleanup(db.Stop)
		c = newClusterAt(t, db.URL, opts)
	} else {
		c = newCluster(t, opts)
	}
	apps := []string{"soak-1", "soak-2"}
	for _, a := range apps {
		c.addApp(a, nil)
	}
	soakAutovacuumDefault(t, c)
	soakHistory(t, c)
	require.NoError(t, c.sim.SetFault("*", sim.Fault{ErrorRate: 0.02, RateLimitRate: 0.01}))
	procs := []*proc{c.start("p0"), c.start("p1")}

	load := startSoakLoad(c, plan, apps)
	s := newSoakSampler(t, c, procs, plan)
	start := time.Now()
	profiled := map[string]bool{}
	for time.Since(start) < plan.duration {
		time.Sleep(plan.every - time.Since(start)%plan.every)
		s.sample(time.Since(start))
		if el := time.Since(start); el >= plan.warmup && !profiled["warm"] {
			profiled["warm"] = true
			s.heapProfiles("warm")
		} else if m := int(el / (10 * time.Minute)); m > 0 && !profiled[fmt.Sprint(m)] {
			profiled[fmt.Sprint(m)] = true
			s.heapProfiles(fmt.Sprintf("%03dm", m*10))
		}
		require.NoError(t, load.err(), "enqueue")
	}
	ids := load.stop()
	s.heapProfiles("end")
	t.Logf("load stopped after %s: %d actions enqueued; waiting for them to finish", time.Since(start).Round(time.Second), len(ids))
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st := c.states(ids)
		if st["succeeded"]+st["failed"]+st["cancelled"] == len(ids) {
			break
		}
		require.True(t, time.Now().Before(deadline), "not every action finished within 10 minutes of the load's end: %v\n%s", st, c.tailAll(20))
		time.Sleep(plan.every)
		s.sample(time.Since(start))
	}
	s.sample(time.Since(start))
	s.close()

	checkSoakDelivery(t, c, apps, ids)
	s.check()
}

// slowSome delays a share of the Bot v3 calls by d before the simulator
// sees them.
func slowSome(share float64, d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		var mu sync.Mutex
		rng := rand.New(rand.NewPCG(31, 31))
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			slow := rng.Float64() < share
			mu.Unlock()
			if slow && strings.HasPrefix(r.URL.Path, "/bots/v3/") {
				time.Sleep(d)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// soakLoad enqueues plan.rate responds a second, each with a unique text,
// over plan.convs conversations, plus a burst of plan.burst every
// plan.burstEvery.
type soakLoad struct {
	done    chan struct{}
	stopped chan struct{}
	mu      sync.Mutex
	ids     []int64
	failure error
}

func startSoakLoad(c *cluster, plan soakPlan, apps []string) *soakLoad {
	l := &soakLoad{done: make(chan struct{}), stopped: make(chan struct{})}
	enq, err := jobs.NewEnqueuer(c.schema)
	if err != nil {
		l.failure = err
		close(l.stopped)
		return l
	}
	action := func(i int) jobs.Action {
		author := fmt.Sprintf("soak-customer-%d", i%plan.convs)
		return respondAction(apps[i%len(apps)], author, respondText("soak", i))
	}
	enqueue := func(from, to int) error {
		batch := make([]jobs.Action, 0, min(to-from, 500))
		for i := from; i < to; i++ {
			batch = append(batch, action(i))
			if len(batch) == cap(batch) || i == to-1 {
				res, err := enq.EnqueueMany(c.ctx, c.pool, batch)
				if err != nil {
					return err
				}
				l.mu.Lock()
				for _, r := range res {
					l.ids = append(l.ids, r.ActionID)
				}
				l.mu.Unlock()
				batch = batch[:0]
			}
		}
		return nil
	}
	go func() {
		defer close(l.stopped)
		start := time.Now()
		next, steady, bursts := 0, 0, 0
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-tick.C:
			}
			el := time.Since(start)
			want := int(el.Seconds() * float64(plan.rate))
			err := enqueue(next, next+want-steady)
			next, steady = next+want-steady, want
			if err == nil && int(el/plan.burstEvery) > bursts {
				bursts++
				err = enqueue(next, next+plan.burst)
				next += plan.burst
			}
			if err != nil {
				l.mu.Lock()
				l.failure = err
				l.mu.Unlock()
				return
			}
		}
	}()
	return l
}

func (l *soakLoad) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failure
}

func (l *soakLoad) stop() []int64 {
	close(l.done)
	<-l.stopped
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids
}

// checkSoakDelivery asserts every action succeeded and every text reached
// Khoros exactly once.
func checkSoakDelivery(t *testing.T, c *cluster, apps []string, ids []int64) {
	t.Helper()
	st := c.states(ids)
	require.Equal(t, len(ids), st["succeeded"], "every action succeeded: %v\n%s", st, c.unsucceeded(ids))
	applied := appliedTexts(c.sim, apps)
	require.Len(t, applied, len(ids), "every text reached Khoros")
	for text, n := range applied {
		require.Equal(t, 1, n, "%q reached Khoros %d times", text, n)
	}
	var pending int
	require.NoError(t, c.pool.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(*) FROM %s.request WHERE state = 'PENDING'`, c.schema)).Scan(&pending))
	require.Zero(t, pending, "no request record is left PENDING")
}

// soakSample is one sample of a soak run: per process, then fleet-wide.
type soakSample struct {
	At    time.Duration
	Procs []procSample
	// Queue: actions not yet executed (queued, retrying, unknown) and
	// request records PENDING.
	Depth, Pending int64
	Tables         map[string]tableSample
	// LatencyP50 and LatencyP99 (ms): enqueue to the call that delivered
	// it, for the calls recorded since the previous sample.
	LatencyP50, LatencyP99 float64
	Delivered              int64
	// The reconciler over the whole run: listings, single GETs, records
	// the listings returned (at the simulator), records settled, and the
	// listings' mean latency since the previous sample (ms).
	Lists, Gets, Listed, Settled int64
	ListMs                       float64
	Load1                        float64
}

type procSample struct {
	// RSS is the resident set; RSSAnon its anonymous part (heap, stacks:
	// what the process allocated), the rest being mapped files (the
	// binary).
	RSS, RSSAnon, HeapInuse, NextGC int64
	Goroutines, FDs, Postgres       int64
	ListCount, ListSecondsSum       float64
	SettledRecs                     float64
}

type tableSample struct{ Bytes, Live, Dead, Updates, AutoVacuums int64 }

var soakTables = []string{"action", "river_job", "request", "attempt", "lane", "event"}

type soakSampler struct {
	t       *testing.T
	c       *cluster
	procs   []*proc
	plan    soakPlan
	pgPort  string
	csv     *os.File
	samples []soakSample
	prevAt  time.Time
	started time.Time
}

func newSoakSampler(t *testing.T, c *cluster, procs []*proc, plan soakPlan) *soakSampler {
	u, err := url.Parse(c.url)
	require.NoError(t, err)
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	f, err := os.Create(filepath.Join(plan.out, "samples.csv"))
	require.NoError(t, err)
	s := &soakSampler{t: t, c: c, procs: procs, plan: plan, pgPort: port, csv: f, prevAt: time.Now(), started: time.Now()}
	cols := []string{"seconds"}
	for _, p := range procs {
		for _, k := range []string{"rss_mb", "rss_anon_mb", "heap_inuse_mb", "next_gc_mb", "goroutines", "fds", "pg_conns"} {
			cols = append(cols, p.name+"_"+k)
		}
	}
	cols = append(cols, "queue_depth", "requests_pending", "latency_p50_ms", "latency_p99_ms", "delivered",
		"lists", "gets", "records_listed", "settled", "list_ms", "load1")
	for _, tb := range soakTables {
		cols = append(cols, tb+"_mb", tb+"_live", tb+"_dead", tb+"_updates", tb+"_autovacuums")
	}
	fmt.Fprintln(f, strings.Join(cols, ","))
	return s
}

func (s *soakSampler) sample(at time.Duration) {
	s.t.Helper()
	smp := soakSample{At: at, Tables: map[string]tableSample{}}
	for _, p := range s.procs {
		smp.Procs = append(smp.Procs, s.procSample(p))
	}
	db, ctx, schema := s.c.pool, s.c.ctx, s.c.schema
	require.NoError(s.t, db.QueryRow(ctx, fmt.Sprintf(`SELECT
		(SELECT count(*) FROM %[1]s.action WHERE state IN ('queued', 'retrying', 'unknown')),
		(SELECT count(*) FROM %[1]s.request WHERE state = 'PENDING')`, schema)).Scan(&smp.Depth, &smp.Pending))
	now := time.Now()
	require.NoError(s.t, db.QueryRow(ctx, fmt.Sprintf(`
		SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 0), coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 0), count(*)
		FROM (SELECT extract(epoch FROM t.created_at - a.created_at) * 1000 AS ms
		      FROM %[1]s.attempt t JOIN %[1]s.action a ON a.id = t.action_id
		      WHERE t.created_at > $1 AND t.created_at <= $2 AND t.outcome = 'ok') x`, schema), s.prevAt, now).
		Scan(&smp.LatencyP50, &smp.LatencyP99, &smp.Delivered))
	s.prevAt = now
	rows, err := db.Query(ctx, `
		SELECT relname, pg_total_relation_size(relid), n_live_tup, n_dead_tup, n_tup_upd, autovacuum_count
		FROM pg_stat_user_tables WHERE schemaname = $1`, schema)
	require.NoError(s.t, err)
	for rows.Next() {
		var name string
		var ts tableSample
		require.NoError(s.t, rows.Scan(&name, &ts.Bytes, &ts.Live, &ts.Dead, &ts.Updates, &ts.AutoVacuums))
		smp.Tables[name] = ts
	}
	require.NoError(s.t, rows.Err())
	smp.Lists = int64(s.c.sim.CallCount(sim.CallFilter{Endpoint: "request_list"}))
	smp.Gets = int64(s.c.sim.CallCount(sim.CallFilter{Endpoint: "request_get"}))
	smp.Listed = int64(s.c.sim.ListedRecords())
	var listN, listSum float64
	for _, p := range smp.Procs {
		smp.Settled += int64(p.SettledRecs)
		listN += p.ListCount
		listSum += p.ListSecondsSum
	}
	if n := len(s.samples); n > 0 {
		prev := s.samples[n-1]
		var pn, ps float64
		for _, p := range prev.Procs {
			pn += p.ListCount
			ps += p.ListSecondsSum
		}
		if listN > pn {
			smp.ListMs = (listSum - ps) / (listN - pn) * 1000
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		_, _ = fmt.Sscan(string(b), &smp.Load1)
	}
	s.samples = append(s.samples, smp)
	s.write(smp)
	if len(s.samples)%max(1, int(time.Minute/s.plan.every)) == 0 {
		var procs []string
		for i, p := range smp.Procs {
			procs = append(procs, fmt.Sprintf("%s rss %.0f MB heap %.0f MB gor %d fds %d pg %d", s.procs[i].name,
				mb(p.RSS), mb(p.HeapInuse), p.Goroutines, p.FDs, p.Postgres))
		}
		s.t.Logf("%s: %s; depth %d pending %d p99 %.0f ms; lists %d gets %d listed %d settled %d list %.0f ms; load %.1f",
			at.Round(time.Second), strings.Join(procs, "; "), smp.Depth, smp.Pending, smp.LatencyP99,
			smp.Lists, smp.Gets, smp.Listed, smp.Settled, smp.ListMs, smp.Load1)
	}
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func (s *soakSampler) write(smp soakSample) {
	vals := []string{fmt.Sprintf("%.0f", smp.At.Seconds())}
	for _, p := range smp.Procs {
		vals = append(vals, fmt.Sprintf("%.1f", mb(p.RSS)), fmt.Sprintf("%.1f", mb(p.RSSAnon)), fmt.Sprintf("%.1f", mb(p.HeapInuse)), fmt.Sprintf("%.1f", mb(p.NextGC)),
			fmt.Sprint(p.Goroutines), fmt.Sprint(p.FDs), fmt.Sprint(p.Postgres))
	}
	vals = append(vals, fmt.Sprint(smp.Depth), fmt.Sprint(smp.Pending), fmt.Sprintf("%.1f", smp.LatencyP50), fmt.Sprintf("%.1f", smp.LatencyP99),
		fmt.Sprint(smp.Delivered), fmt.Sprint(smp.Lists), fmt.Sprint(smp.Gets), fmt.Sprint(smp.Listed), fmt.Sprint(smp.Settled),
		fmt.Sprintf("%.1f", smp.ListMs), fmt.Sprintf("%.2f", smp.Load1))
	for _, tb := range soakTables {
		ts := smp.Tables[tb]
		vals = append(vals, fmt.Sprintf("%.2f", mb(ts.Bytes)), fmt.Sprint(ts.Live), fmt.Sprint(ts.Dead), fmt.Sprint(ts.Updates), fmt.Sprint(ts.AutoVacuums))
	}
	fmt.Fprintln(s.csv, strings.Join(vals, ","))
}

// procSample reads one process: RSS, FDs and Postgres connections from
// /proc, the rest from its /metrics.
func (s *soakSampler) procSample(p *proc) procSample {
	s.t.Helper()
	var ps procSample
	pid := p.cmd.Process.Pid
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			for key, into := range map[string]*int64{"VmRSS:": &ps.RSS, "RssAnon:": &ps.RSSAnon} {
				if v, ok := strings.CutPrefix(line, key); ok {
					var kb int64
					_, _ = fmt.Sscan(strings.TrimSpace(v), &kb)
					*into = kb << 10
				}
			}
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	ps.FDs = int64(len(fds))
	ps.Postgres = int64(postgresSockets(pid, fds, s.pgPort))
	body := s.c.metrics(p)
	ps.HeapInuse = int64(promValue(body, "go_memstats_heap_inuse_bytes", ""))
	ps.NextGC = int64(promValue(body, "go_memstats_next_gc_bytes", ""))
	ps.Goroutines = int64(promValue(body, "go_goroutines", ""))
	ps.ListCount = promValue(body, "botq_botapi_request_duration_seconds_count", `op="list",source="reconciler"`)
	ps.ListSecondsSum = promValue(body, "botq_botapi_request_duration_seconds_sum", `op="list",source="reconciler"`)
	ps.SettledRecs = promValue(body, "botq_requests_settled_total", "")
	return ps
}

// promValue sums the samples of metric name whose labels contain match.
func promValue(body, name, match string) float64 {
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') || !strings.Contains(rest, match) {
			continue
		}
		var v float64
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			_, _ = fmt.Sscan(rest[i+1:], &v)
		}
		sum += v
	}
	return sum
}

// postgresSockets counts the process' TCP connections to port (Postgres).
func postgresSockets(pid int, fds []os.DirEntry, port string) int {
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var p int
	_, _ = fmt.Sscan(port, &p)
	want := fmt.Sprintf(":%04X", p)
	n := 0
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 9 && strings.HasSuffix(fields[2], want) && inodes[fields[9]] {
				n++
			}
		}
	}
	return n
}

// heapProfiles saves each process' heap profile (after a GC) as
// heap-<proc>-<label>.pb.gz in the output directory.
func (s *soakSampler) heapProfiles(label string) {
	key := strings.SplitN(strings.Split(s.c.apiKeys, "\n")[0], ":", 3)[2]
	for _, p := range s.procs {
		req, err := http.NewRequest(http.MethodGet, "http://"+p.addr+"/debug/pprof/heap?gc=1", nil)
		require.NoError(s.t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		require.NoError(s.t, err)
		f, err := os.Create(filepath.Join(s.plan.out, fmt.Sprintf("heap-%s-%s.pb.gz", p.name, label)))
		require.NoError(s.t, err)
		_, err = f.ReadFrom(res.Body)
		res.Body.Close()
		require.NoError(s.t, err)
		require.NoError(s.t, f.Close())
	}
}

func (s *soakSampler) close() {
	_ = s.csv.Close()
	for _, p := range s.procs {
		data, err := os.ReadFile(p.log)
		if err == nil {
			_ = os.WriteFile(filepath.Join(s.plan.out, p.name+".log"), data, 0o644)
		}
	}
	b, _ := json.MarshalIndent(s.samples[len(s.samples)-1], "", "  ")
	_ = os.WriteFile(filepath.Join(s.plan.out, "last-sample.json"), b, 0o644)
}

// check fails the run on growth beyond the bounds.
func (s *soakSampler) check() {
	t := s.t
	t.Helper()
	var after []soakSample
	for _, smp := range s.samples {
		if smp.At >= s.plan.warmup && smp.At <= s.plan.duration {
			after = append(after, smp)
		}
	}
	require.NotEmpty(t, after)
	window := min(time.Minute, s.plan.duration/10)
	for i, p := range s.procs {
		var peak, maxG, maxFD, maxPG int64
		byWindow := map[time.Duration][]int64{}
		for _, smp := range after {
			ps := smp.Procs[i]
			byWindow[smp.At/window] = append(byWindow[smp.At/window], ps.RSS)
			peak, maxG, maxFD, maxPG = max(peak, ps.RSS), max(maxG, ps.Goroutines), max(maxFD, ps.FDs), max(maxPG, ps.Postgres)
		}
		lo, hi := int64(1<<62), int64(0)
		for _, rss := range byWindow {
			slices.Sort(rss)
			lo, hi = min(lo, rss[len(rss)/2]), max(hi, rss[len(rss)/2])
		}
		t.Logf("%s after the warm-up: RSS medians per %s %.0f-%.0f MB, peak %.0f MB; goroutines ≤ %d, FDs ≤ %d, Postgres connections ≤ %d",
			p.name, window, mb(lo), mb(hi), mb(peak), maxG, maxFD, maxPG)
		require.Less(t, peak, int64(soakRSSLimit), "%s: RSS under 150 MB", p.name)
		require.LessOrEqual(t, float64(hi), soakRSSBandRatio*float64(lo), "%s: RSS stays within ±20%% after the warm-up (medians %.0f-%.0f MB)", p.name, mb(lo), mb(hi))
		require.Less(t, maxG, int64(1000), "%s: goroutines", p.name)
		require.Less(t, maxFD, int64(200), "%s: open files", p.name)
		require.LessOrEqual(t, maxPG, int64(12), "%s: Postgres connections (max_conns 10, plus River's listener)", p.name)
	}
	first, last := after[0], s.samples[len(s.samples)-1]
	settled := last.Settled - first.Settled
	read := (last.Listed - first.Listed) + (last.Gets - first.Gets)
	require.Positive(t, settled)
	perSettled := float64(read) / float64(settled)
	t.Logf("reconciler after the warm-up: %d records settled; %d listings returned %d records, %d single GETs: %.2f records read per settled record",
		settled, last.Lists-first.Lists, last.Listed-first.Listed, last.Gets-first.Gets, perSettled)
	require.LessOrEqual(t, perSettled, soakFetchedPerSettled, "records read per settled record")

	// Listing latency does not grow: the mean of the last third of the
	// run is within twice the first third's, plus 50 ms for noise (the
	// machine is shared). A short run lists too few times to tell.
	third := len(after) / 3
	early, nEarly := meanListMs(after[:third])
	late, nLate := meanListMs(after[len(after)-third:])
	t.Logf("listing latency: %.1f ms in the first third after the warm-up (%d samples with listings), %.1f ms in the last (%d)", early, nEarly, late, nLate)
	if nEarly >= 10 && nLate >= 10 {
		require.LessOrEqual(t, late, 2*early+50, "listing latency does not grow")
	}
}

// meanListMs is the mean listing latency of the samples with listings, and
// their number.
func meanListMs(ss []soakSample) (float64, int) {
	var sum float64
	var n int
	for _, s := range ss {
		if s.ListMs > 0 {
			sum += s.ListMs
			n++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}
