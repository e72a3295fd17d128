package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/riverqueue/river"

	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

// The backlog drains run in a child process (this binary, `botq bench
// child`), so that the peak RSS measured is the draining process's alone:
// the simulator and the bench stay in the parent.

// benchChildEnv marks a child process; test binaries, which cannot run the
// child command, check it at start-up.
const benchChildEnv = "BOTQ_BENCH_CHILD"

// benchChildSpec is what the parent asks of a child, on its stdin.
type benchChildSpec struct {
	// Mode is "botq" (botq serve's wiring, workers only) or "river" (a
	// plain River client whose worker makes one HTTP call per job).
	Mode       string  `json:"mode"`
	Expect     int     `json:"expect"`
	Options    Options `json:"options"`
	Schema     string  `json:"schema"`
	SimURL     string  `json:"sim_url"`
	AppID      string  `json:"app_id"`
	Token      string  `json:"token"`
	CPUProfile string  `json:"cpuprofile,omitempty"`
	// History is the day a history_export child exports.
	History *historyExportSpec `json:"history,omitempty"`
}

// benchChildResult is what a child reports on its stdout.
type benchChildResult struct {
	Completed    int     `json:"completed"`
	Seconds      float64 `json:"seconds"`
	StartSeconds float64 `json:"start_seconds"`
	// VmHWMMB is the child's peak RSS (VmHWM) when the drain ended.
	VmHWMMB   float64 `json:"vmhwm_mb"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// PhaseMS is the mean time per job of each jobs.Phase (botq only).
	PhaseMS map[string]float64 `json:"phase_ms,omitempty"`
}

func (r *benchChildResult) rate() float64 { return float64(r.Completed) / r.Seconds }

// benchChildMain runs a child in a test binary; see benchChildEnv.
func benchChildMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := RunChild(ctx, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "botq bench child: "+err.Error())
		return 1
	}
	return 0
}

func RunChild(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	var spec benchChildSpec
	if err := json.NewDecoder(stdin).Decode(&spec); err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	if spec.CPUProfile != "" {
		f, err := os.Create(spec.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var res *benchChildResult
	var err error
	switch spec.Mode {
	case "botq":
		res, err = childBotq(ctx, spec, stderr)
	case "river":
		res, err = childRiver(ctx, spec, stderr)
	case "history_export":
		res, err = childHistoryExport(ctx, spec)
	default:
		err = fmt.Errorf("unknown mode %q", spec.Mode)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// writeHeap writes a heap profile next to the CPU profile, if any, while
// the drainer still runs.
func writeHeap(spec benchChildSpec) {
	if spec.CPUProfile == "" {
		return
	}
	if f, err := os.Create(strings.TrimSuffix(spec.CPUProfile, ".pprof") + ".heap.pprof"); err == nil {
		_ = pprof.Lookup("heap").WriteTo(f, 0)
		_ = f.Close()
	}
}

// writeGoroutines writes where every goroutine is, halfway through the
// drain, next to the CPU profile.
func writeGoroutines(spec benchChildSpec) {
	if spec.CPUProfile == "" {
		return
	}
	if f, err := os.Create(strings.TrimSuffix(spec.CPUProfile, ".pprof") + ".goroutines.txt"); err == nil {
		_ = pprof.Lookup("goroutine").WriteTo(f, 1)
		_ = f.Close()
	}
}

// childBotq drains the backlog with botq wired as `botq serve` wires it.
func childBotq(ctx context.Context, spec benchChildSpec, stderr io.Writer) (*benchChildResult, error) {
	o := spec.Options
	cfg := benchBotqConfig(o, spec.Schema, spec.SimURL, server.RolesConfig{Workers: true}, []benchAppSpec{{id: spec.AppID}})
	if problems := cfg.Validate(); len(problems) > 0 {
		return nil, &server.ConfigError{Problems: problems}
	}
	pool, err := store.NewPool(ctx, o.DatabaseURL, spec.Schema, store.PoolOptions{MaxConns: 2, AppName: "botq-bench-watch"})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	m := server.NewMain(cfg, server.NewLogger(cfg.Log, stderr))
	m.LookupEnv = func(k string) (string, bool) {
		if k == cfg.Apps[0].TokenEnv {
			return spec.Token, true
		}
		return "", false
	}
	start := time.Now()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	if err := m.WaitReady(ctx, done); err != nil {
		return nil, err
	}
	res := &benchChildResult{StartSeconds: time.Since(start).Seconds()}
	want := int64(spec.Expect)
	dumped := false
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-done:
			return nil, fmt.Errorf("botq stopped while draining: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		var n int64
		if err := pool.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM attempt").Scan(&n); err != nil {
			return nil, err
		}
		if n < want {
			if n >= want/2 && !dumped {
				dumped = true
				writeGoroutines(spec)
			}
			continue
		}
		at := time.Since(start)
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM attempt").Scan(&n); err != nil {
			return nil, err
		}
		if n >= want {
			res.Seconds, res.Completed = at.Seconds(), int(n)
			break
		}
	}
	res.VmHWMMB = vmHWM()
	res.PhaseMS = m.Metrics.PhaseMeans()
	writeHeap(spec)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	return res, nil
}

// childRiver drains the backlog with a plain River client.
func childRiver(ctx context.Context, spec benchChildSpec, stderr io.Writer) (*benchChildResult, error) {
	o := spec.Options
	pool, err := store.NewPool(ctx, o.DatabaseURL, spec.Schema, store.PoolOptions{MaxConns: o.MaxConns, AppName: "botq-bench-river"})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	api, err := benchAPIClient(spec.SimURL, spec.Token)
	if err != nil {
		return nil, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &benchHTTPWorker{api: api})
	start := time.Now()
	rr, err := startRiver(ctx, pool, benchRiverConfig(o, spec.Schema, workers, true, stderr))
	if err != nil {
		return nil, err
	}
	res := &benchChildResult{StartSeconds: time.Since(start).Seconds()}
	for rr.completed.Load() < int64(spec.Expect) {
		select {
		case <-ctx.Done():
			_ = rr.stop(ctx)
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	res.Seconds, res.Completed = time.Since(start).Seconds(), int(rr.completed.Load())
	res.VmHWMMB = vmHWM()
	writeHeap(spec)
	if err := rr.stop(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// vmHWM is this process's peak resident set size in MB.
func vmHWM() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// drainChild runs a child process for spec and records what it reports.
func (b *bench) drainChild(ctx context.Context, sc *benchScenario, spec benchChildSpec) (*benchChildResult, error) {
	spec.Options = b.o
	spec.SimURL = b.sim.url
	spec.AppID = benchApp
	spec.Schema = b.botqSchema
	if spec.Mode == "river" {
		spec.Schema = b.riverSchema
	}
	tok, err := b.sim.mint(benchApp)
	if err != nil {
		return nil, err
	}
	spec.Token = tok
	if b.o.CPUProfile != "" {
		spec.CPUProfile = fmt.Sprintf("%s-%s-%d%s.pprof", b.o.CPUProfile, sc.Name, spec.Expect, b.roundSuffix())
	}
	cmd, out, err := childCommand(ctx, spec, b.log)
	if err != nil {
		return nil, err
	}
	watch := b.watchPostgres(ctx)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("drain child: %w", err)
	}
	watch.cpu.setChild(cmd.Process.Pid)
	runErr := cmd.Wait()
	wall := time.Since(start)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		watch.cpu.setChildCPU(cpu)
		sc.Details["child_cpu_seconds"] = cpu
	}
	sc.Postgres = watch.finish(ctx)
	if runErr != nil {
		return nil, fmt.Errorf("drain child: %w", runErr)
	}
	var res benchChildResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("drain child said %q: %w", out.String(), err)
	}
	// The peak while draining: VmHWM read by the child itself when the last
	// result committed. getrusage's maxrss is no use here: Linux carries
	// the high-water mark of the address space a child was forked from
	// across exec, so it reports this (parent) process's RSS when that is
	// larger.
	res.PeakRSSMB = res.VmHWMMB
	if res.Completed < spec.Expect {
		return nil, fmt.Errorf("drain child completed %d of %d", res.Completed, spec.Expect)
	}
	sc.Details["mode"] = spec.Mode
	sc.Details["backlog"] = spec.Expect
	sc.Details["child"] = res
	sc.Details["child_wall_seconds"] = wall.Seconds()
	sc.Details["simulator_respond_calls"] = b.sim.calls("respond")
	return &res, nil
}

// childCommand is this executable run as a bench child (`botq bench child`)
// with spec on its stdin: its stdout, the child's JSON result, goes to out,
// and its stderr to stderr. The caller starts it.
func childCommand(ctx context.Context, spec benchChildSpec, stderr io.Writer) (*exec.Cmd, *bytes.Buffer, error) {
	in, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find this executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "bench", "child")
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	cmd.Stdin = bytes.NewReader(in)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, stderr
	return cmd, out, nil
}
