package server

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// The banner counts the samples botq dev enqueued: without a key of its own
// (BOTQ_API_KEYS set) it makes none over HTTP, and says so.
func TestDevBannerSaysWhichSamples(t *testing.T) {
	t.Parallel()
	db := &DevDatabase{URL: "postgres://postgres@127.0.0.1:5432/botq_dev", Source: "local"}
	cfg := DefaultConfig()
	for key, want := range map[string]string{
		"bq_key": "(one by SQL, one by Go, one over HTTP)",
		"":       "(one by SQL, one by Go; none over HTTP",
	} {
		var b strings.Builder
		env := devEnv{DatabaseURL: db.URL, Schema: cfg.Database.Schema, APIURL: "http://127.0.0.1:8080", APIKey: key, SimURL: "http://127.0.0.1:8089"}
		printDevBanner(&b, cfg, db, env, ".botq/env", []int64{1, 2})
		require.Contains(t, b.String(), want)
		require.Contains(t, b.String(), "Console        http://127.0.0.1:8080/ ")
	}
}

// The env file botq dev writes gives a shell exactly its settings, quotes
// and dollars in a password included; the addresses are ones to connect
// to, not the unspecified ones it may listen on (a container).
func TestDevEnvFile(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	dir := t.TempDir()
	e := devEnv{DatabaseURL: `postgres://u:it's$HOME@db:5432/botq_dev`, Schema: "botq", KeyFile: filepath.Join(dir, "dev.key"),
		APIURL: "http://" + reachable("[::]:8080"), APIKey: "dev-1", SimURL: "http://" + reachable("0.0.0.0:8089")}
	path, err := e.write(dir)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "it holds a database URL and an API key")
	cmd := exec.Command("bash", "-c", `source "$1" && printf '%s\n' "$DATABASE_URL" "$BOTQ_ENCRYPTION_KEY_FILE" "$BOTQ_URL" "$BOTQ_API_KEY" "$BOTQ_SIM_URL" "$BOTQ_KHOROS_CARE_BASE_URL"`, "bash", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, []string{e.DatabaseURL, e.KeyFile, "http://127.0.0.1:8080", "dev-1", "http://127.0.0.1:8089", "http://127.0.0.1:8089"},
		strings.Split(strings.TrimSpace(string(out)), "\n"))
}
