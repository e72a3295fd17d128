package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// connectAsNewRole creates a login role with no privilege at all and
// connects to the test database as it: any role that can connect can NOTIFY
// on any channel.
func connectAsNewRole(t *testing.T, admin store.DBTX) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	role := "botq_test_stranger_" + hex.EncodeToString(b)
	_, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN")
	require.NoError(t, err)
	u, err := url.Parse(storetest.DatabaseURL(t))
	require.NoError(t, err)
	u.User = url.User(role)
	conn, err := pgx.Connect(ctx, u.String())
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close(context.Background())
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	return conn
}

// waitState waits until action id is in one of states, or the timeout ends,
// and returns its last state.
func waitState(t *testing.T, m *Main, id int64, timeout time.Duration, states ...store.ActionState) store.ActionState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		a, err := m.Store.ActionGet(context.Background(), m.Pool, id)
		require.NoError(t, err)
		for _, s := range states {
			if a.State == s {
				return a.State
			}
		}
		if time.Now().After(deadline) {
			return a.State
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// River's control notifications (pause a queue, cancel a running job) can
// be sent by any role that can connect, one with no privilege at all
// included: Postgres has no privilege on NOTIFY. A process that LISTENs acts
// on them; with river.poll_only it does not, and reads pauses and cancels
// from River's tables only, which such a role cannot write.
func TestPollOnlyIgnoresForgedRiverNotifications(t *testing.T) {
	t.Parallel()
	for _, pollOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("poll_only=%v", pollOnly), func(t *testing.T) {
			t.Parallel()
			testForgedRiverNotifications(t, pollOnly)
		})
	}
}

func testForgedRiverNotifications(t *testing.T, pollOnly bool) {
	ctx := context.Background()
	s := sim.New(sim.Options{})
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	tok, err := s.MintToken("pn-app", sim.MintOptions{CompanyKey: "acme"})
	require.NoError(t, err)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(tok.Token), 0o600))
	// One more connection for River's LISTEN, one for the stranger.
	m, _ := startMainConns(t, zerolog.Nop(), 2, func(c *Config) {
		c.Roles = RolesConfig{Workers: true}
		c.River.PollOnly = pollOnly
		c.Khoros.HTTPTimeout = 10 * time.Second
		c.Apps = []AppConfig{{ID: "pn-app", BaseURL: hs.URL, CompanyKey: "acme", TokenFile: tokenFile}}
	})
	stranger := connectAsNewRole(t, ownerPool(m))
	control := m.Config.Database.Schema + ".river_control"
	notify := func(payload string) {
		t.Helper()
		_, err := stranger.Exec(ctx, "SELECT pg_notify($1, $2)", control, payload)
		require.NoError(t, err)
	}

	// A job cancelled in the middle of its call: the stranger cancels the
	// running job of a respond whose call Khoros takes 2 s to answer.
	require.NoError(t, s.SetFault("respond", sim.Fault{Latency: sim.Duration(2 * time.Second)}))
	res, err := m.Store.ActionInsert(ctx, m.Pool, actionParams("pn-app", "pn-1"))
	require.NoError(t, err)
	jobID := res.Action.RiverJobID
	deadline := time.Now().Add(10 * time.Second)
	for jobState(t, m.Pool, m.Config.Database.Schema, jobID) != "running" {
		require.True(t, time.Now().Before(deadline), "the job never ran")
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // its call is on the wire
	notify(fmt.Sprintf(`{"action":"cancel","job_id":%d,"queue":"botq"}`, jobID))
	state := waitState(t, m, res.Action.ID, 10*time.Second, store.ActionSent, store.ActionUnknown, store.ActionCancelled)
	if pollOnly {
		require.Equal(t, store.ActionSent, state, "the call was answered and the action sent, as if nothing was notified")
		require.Equal(t, 1, s.CallCount(sim.CallFilter{AppID: "pn-app", Endpoint: "respond"}))
	} else {
		require.Equal(t, store.ActionUnknown, state, "the notification cut the call (the exposure poll_only closes)")
	}

	// A queue paused: the stranger pauses every queue, then an action is
	// enqueued. River's own fallback poll (once a minute) would resume
	// them; the test waits 3 s.
	s.ClearFaults()
	notify(`{"action":"pause","queue":"*"}`)
	time.Sleep(300 * time.Millisecond)
	res, err = m.Store.ActionInsert(ctx, m.Pool, actionParams("pn-app", "pn-2"))
	require.NoError(t, err)
	state = waitState(t, m, res.Action.ID, 3*time.Second, store.ActionSent)
	if pollOnly {
		require.Equal(t, store.ActionSent, state, "the queue was not paused")
	} else {
		require.Equal(t, store.ActionQueued, state, "the notification paused the queue (the exposure poll_only closes)")
	}
}
