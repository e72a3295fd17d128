package storetest

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTB records what Conns asks of a test: its cleanups, and a fatal
// error (which ends the goroutine, as testing's FailNow does).
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	fatal    string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// end runs the cleanups, last first, as a test's end does.
func (f *fakeTB) end() {
	f.mu.Lock()
	fns := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// run calls fn as the body of a test and reports its fatal error ("" for
// none) once fn returns or stops.
func (f *fakeTB) run(fn func()) <-chan string {
	done := make(chan string, 1)
	go func() {
		defer func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			done <- f.fatal
		}()
		fn()
	}()
	return done
}

// A test waits while others hold the budget, and goes on once they end.
func TestConnsWaitsForTheBudget(t *testing.T) {
	a, b := &fakeTB{TB: t}, &fakeTB{TB: t}
	if msg := <-a.run(func() { Conns(a, ConnsMax) }); msg != "" {
		t.Fatal(msg)
	}
	got := b.run(func() { Conns(b, 1) })
	select {
	case msg := <-got:
		t.Fatalf("reserved a connection beyond the budget (%q)", msg)
	case <-time.After(200 * time.Millisecond):
	}
	a.end()
	select {
	case msg := <-got:
		if msg != "" {
			t.Fatal(msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the other test ended")
	}
	b.end()
}

// Reserving in two steps, or holding more than reserved, fails the test at
// once rather than risk waiting forever.
func TestConnsRefusesASecondReservation(t *testing.T) {
	tests := []struct {
		name string
		give func(tb testing.TB)
		want string
	}{
		{name: "twice", give: func(tb testing.TB) { Conns(tb, 2); Conns(tb, 2) }, want: "reserved twice"},
		{name: "more than reserved", give: func(tb testing.TB) { Conns(tb, 2); use(tb, 2); use(tb, 1) }, want: "reserved 2 connections and would hold 3"},
		{name: "beyond the budget", give: func(tb testing.TB) { Conns(tb, ConnsMax+1) }, want: "can reserve 1 to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTB{TB: t}
			msg := <-f.run(func() { tt.give(f) })
			f.end()
			if msg == "" || !strings.Contains(msg, tt.want) {
				t.Fatalf("got %q, want a failure saying %q", msg, tt.want)
			}
		})
	}
	// Everything reserved was given back.
	if !connSem.TryAcquire(ConnsMax) {
		t.Fatal("the budget was not given back")
	}
	connSem.Release(ConnsMax)
}
