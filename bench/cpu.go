package bench

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Other programs share this machine's cores (and Postgres' WAL). Each
// measured window reports where the CPU went, so a reader can tell a clean
// figure from one taken while something else was busy.

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100

// cpuUse is where the machine's CPU went during a window, in cores (CPU
// seconds per second).
type cpuUse struct {
	WindowSeconds float64 `json:"window_seconds"`
	// BusyCores is the whole machine (user, nice, system, irq), without
	// iowait and steal.
	BusyCores float64 `json:"busy_cores"`
	// BenchCores is this process: the bench, the simulator, and botq or
	// River when they run in process.
	BenchCores float64 `json:"bench_cores"`
	// ChildCores is the drain's child process, when there is one.
	ChildCores float64 `json:"child_cores,omitempty"`
	// PostgresCores is the Postgres backends serving the bench's database.
	PostgresCores float64 `json:"postgres_cores"`
	// OthersCores is the rest: other programs, and Postgres' background
	// processes (WAL writer, checkpointer, autovacuum) that serve every
	// database.
	OthersCores float64 `json:"others_cores"`
	StealCores  float64 `json:"steal_cores"`
}

type cpuWatch struct {
	b     *bench
	start time.Time
	stat0 [2]uint64 // busy, steal
	self0 uint64
	mu    sync.Mutex
	pids  map[int][2]uint64 // first and last CPU ticks seen
	child int
	// childSecs, when set, is the child's whole CPU time (getrusage),
	// which replaces the sampled one.
	childSecs float64
	stop      chan struct{}
	done      chan struct{}
	result    *cpuUse
}

func procStat() (busy, steal uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	v := make([]uint64, len(f))
	for i := 1; i < len(f); i++ {
		v[i], _ = strconv.ParseUint(f[i], 10, 64)
	}
	// user nice system idle iowait irq softirq steal
	return v[1] + v[2] + v[3] + v[6] + v[7], v[8]
}

// pidCPU is a process's user+system CPU ticks.
func pidCPU(pid string) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// After the command: state(3) ... utime(14) stime(15), so 11 and 12 here.
	if len(f) < 13 {
		return 0, false
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st, true
}

func (b *bench) watchCPU(ctx context.Context) *cpuWatch {
	w := &cpuWatch{b: b, start: time.Now(), pids: map[int][2]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	w.stat0[0], w.stat0[1] = procStat()
	w.self0, _ = pidCPU("self")
	w.sample(ctx, true)
	go func() {
		defer close(w.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.sample(ctx, false)
			}
		}
	}()
	return w
}

// setChild counts a child process's CPU from now on.
func (w *cpuWatch) setChild(pid int) {
	w.mu.Lock()
	w.child = pid
	w.mu.Unlock()
}

// setChildCPU sets the child's CPU time as getrusage reported it.
func (w *cpuWatch) setChildCPU(secs float64) {
	w.mu.Lock()
	w.childSecs = secs
	w.mu.Unlock()
}

// sample reads the CPU of the Postgres backends of the bench's database and
// of the child. A process first seen after the window started counts all
// its CPU: it started within the window.
func (w *cpuWatch) sample(ctx context.Context, first bool) {
	var pids []int
	rows, err := w.b.admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err == nil {
		for rows.Next() {
			var p int
			if rows.Scan(&p) == nil {
				pids = append(pids, p)
			}
		}
		rows.Close()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.child != 0 {
		pids = append(pids, -w.child) // negative: the child, not a backend
	}
	for _, p := range pids {
		pid := p
		if pid < 0 {
			pid = -pid
		}
		ticks, ok := pidCPU(strconv.Itoa(pid))
		if !ok {
			continue
		}
		v, seen := w.pids[p]
		if !seen {
			v[0] = 0
			if first {
				v[0] = ticks
			}
		}
		v[1] = ticks
		w.pids[p] = v
	}
}

// finish ends the window. A child must be sampled before it exits: call
// finish, or sample, before waiting for it.
func (w *cpuWatch) finish(ctx context.Context) *cpuUse {
	if w.result != nil {
		return w.result
	}
	w.sample(ctx, false)
	close(w.stop)
	<-w.done
	secs := time.Since(w.start).Seconds()
	busy, steal := procStat()
	self, _ := pidCPU("self")
	w.mu.Lock()
	defer w.mu.Unlock()
	var backends, child uint64
	for p, v := range w.pids {
		if p < 0 {
			child += v[1] - v[0]
		} else {
			backends += v[1] - v[0]
		}
	}
	cores := func(ticks uint64) float64 { return float64(ticks) / clockTicks / secs }
	u := &cpuUse{
		WindowSeconds: secs,
		BusyCores:     cores(busy - w.stat0[0]),
		BenchCores:    cores(self - w.self0),
		ChildCores:    cores(child),
		PostgresCores: cores(backends),
		StealCores:    cores(steal - w.stat0[1]),
	}
	if w.childSecs > 0 {
		u.ChildCores = w.childSecs / secs
	}
	u.OthersCores = max(u.BusyCores-u.BenchCores-u.ChildCores-u.PostgresCores, 0)
	w.result = u
	return u
}

// machineBusy is the machine's busy cores over d.
func machineBusy(ctx context.Context, d time.Duration) float64 {
	b0, _ := procStat()
	start := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	b1, _ := procStat()
	return float64(b1-b0) / clockTicks / time.Since(start).Seconds()
}
