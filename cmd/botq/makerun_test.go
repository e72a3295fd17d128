package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

// From a fresh clone, `make run` alone starts everything on a fresh
// throwaway database (the machine's initdb and pg_ctl: the test points the
// local-Postgres probe at a port where nothing listens), the sample
// actions succeed with request ids, and SIGINT leaves no process behind.
func TestMakeRunFromFreshClone(t *testing.T) {
	t.Parallel()
	storetest.DatabaseURL(t) // Postgres itself must be installed here
	if _, err := osexec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := osexec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	clone := filepath.Join(t.TempDir(), "botq")
	out, err := osexec.Command("git", "clone", "-q", strings.TrimSpace(string(root)), clone).CombinedOutput()
	require.NoError(t, err, "git clone: %s", out)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	noPG := ln.Addr().String()
	require.NoError(t, ln.Close())

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := osexec.CommandContext(ctx, "make", "run")
	cmd.Dir = clone
	cmd.Env = childEnv("BOTQ_DEV_LOCAL_PG=" + noPG)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })

	var mu sync.Mutex
	var lines []string
	settled := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var collecting []string
		inSettled := false
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			lines = append(lines, line)
			mu.Unlock()
			switch {
			case strings.HasPrefix(line, "Sample actions settled:"):
				inSettled = true
			case inSettled && strings.HasPrefix(line, "  action "):
				collecting = append(collecting, line)
			case inSettled:
				settled <- collecting
				inSettled = false
			}
		}
	}()
	dump := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(lines, "\n")
	}

	var got []string
	select {
	case got = <-settled:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the sample actions did not settle:\n%s", dump())
	}
	re := regexp.MustCompile(`action \d+ (\w+)\s+succeeded request (\S+)`)
	kinds := map[string]bool{}
	for _, l := range got {
		m := re.FindStringSubmatch(l)
		require.NotNil(t, m, "sample action did not succeed with a request id: %q\n%s", l, dump())
		kinds[m[1]] = true
	}
	require.Equal(t, map[string]bool{"respond": true, "tag": true, "note": true}, kinds, "one sample each by SQL, Go and HTTP")
	all := dump()
	require.Contains(t, all, "throwaway cluster", "make run fell back to its own cluster")
	for _, want := range []string{"/v1", "/riverui/", "/metrics", "psql ", "requests list"} {
		require.Contains(t, all, want, "the banner shows %s", want)
	}

	// Ctrl-C: SIGINT to the whole process group, as a terminal sends it.
	require.NoError(t, syscall.Kill(-pgid, syscall.SIGINT))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("make run did not stop within 60s of SIGINT:\n%s", dump())
	}
	// Nothing it started is still running: no process in its group, no
	// postgres serving its data directory. Only its own cluster counts:
	// other tests create throwaway clusters of their own meanwhile.
	m := regexp.MustCompile(`creating a throwaway Postgres cluster in (\S+)`).FindStringSubmatch(all)
	require.NotNil(t, m, "make run names its cluster's data directory:\n%s", all)
	data := m[1]
	time.Sleep(500 * time.Millisecond)
	left := processes(func(pgrp int, cmdline string) bool {
		return pgrp == pgid || strings.Contains(cmdline, clone) || strings.Contains(cmdline, data)
	})
	require.Empty(t, left, "processes left behind after SIGINT")
	_, err = net.DialTimeout("tcp", noPG, 200*time.Millisecond)
	require.Error(t, err)
}

// processes lists "pid cmdline" of live processes that match.
func processes(match func(pgrp int, cmdline string) bool) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name: state ppid pgrp ...
		s := string(stat)
		rest := s[strings.LastIndexByte(s, ')')+2:]
		var state string
		var ppid, pgrp int
		if _, err := fmt.Sscan(rest, &state, &ppid, &pgrp); err != nil || state == "Z" {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		c := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if match(pgrp, c) {
			out = append(out, filepath.Base(d)+" "+c)
		}
	}
	return out
}
