package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// A Postgres on the local address that will not let user postgres in (a
// stock cluster asks for a password) does not stop `botq dev`: it says so and
// starts a throwaway cluster instead.
func TestDevFallsBackWhenLocalPostgresRefuses(t *testing.T) {
	t.Parallel()
	// Accepts connections and closes them: to pgx, a server that refuses.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	env := func(k string) (string, bool) {
		if k == "BOTQ_DEV_LOCAL_PG" {
			return ln.Addr().String(), true
		}
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log bytes.Buffer
	db, err := findDevDatabase(ctx, env, t.TempDir(), &log)
	if err != nil && os.Getenv("CI") == "" && strings.Contains(err.Error(), "no throwaway cluster") {
		t.Skipf("no throwaway cluster here: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(db.Stop)
	require.Contains(t, db.Source, "throwaway cluster")
	require.Contains(t, log.String(), "using a throwaway cluster instead")
	conn, err := pgx.Connect(ctx, db.URL)
	require.NoError(t, err)
	require.NoError(t, conn.Ping(ctx))
	_ = conn.Close(ctx)
}
