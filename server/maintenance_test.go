package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
)

// lockedBuffer is a log sink the test reads while botq writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A retention run that fails in part is logged at error level, counted in
// /metrics, and recorded as one `retention` event that names the failure,
// with what the other parts deleted.
func TestMaintenanceRetentionFailureIsLoggedAndCounted(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	m, base := startMain(t, zerolog.New(&logs), func(cfg *Config) {
		cfg.Roles = RolesConfig{API: true, Reconciler: true}
		cfg.Database.MaxConns = 8
		cfg.Retention.Interval = time.Second
		cfg.Retention.BatchSize = 1
	})
	_, body := send(t, "GET", base+"/metrics", bearerKey(testKeyOperator), "")
	require.Contains(t, body, `botq_maintenance_failures_total{task="retention"} 0`, "the series exists before any failure")

	// An old settled request record that Postgres refuses to delete, and an
	// old event that the same run purges.
	ctx, schema := t.Context(), m.Store.Schema()
	_, err := m.Store.AppUpsert(ctx, m.Pool, store.AppUpsertParams{ID: "app-r", CompanyKey: "acme"})
	require.NoError(t, err)
	require.NoError(t, m.Store.RequestUpsert(ctx, m.Pool, &store.RequestUpsertParams{RequestID: "stuck", AppID: "app-r", State: store.RequestSuccess}))
	_, err = m.Store.EventInsert(ctx, m.Pool, store.EventInsertParams{AppID: "app-r", Kind: "pause", Actor: "x"})
	require.NoError(t, err)
	require.NoError(t, pgx.BeginFunc(ctx, ownerPool(m), func(tx pgx.Tx) error {
		for _, sql := range []string{
			`SET LOCAL session_replication_role = replica`,
			fmt.Sprintf(`UPDATE %s.request SET first_seen_at = first_seen_at - interval '2 years'`, schema),
			fmt.Sprintf(`UPDATE %s.event SET at = at - interval '2 years' WHERE kind = 'pause'`, schema),
			fmt.Sprintf(`CREATE FUNCTION %s.refuse_delete() RETURNS trigger LANGUAGE plpgsql AS
				$$ BEGIN RAISE EXCEPTION 'deleting request %% refused by the test', OLD.request_id; END $$`, schema),
			fmt.Sprintf(`CREATE TRIGGER refuse_delete BEFORE DELETE ON %[1]s.request FOR EACH ROW
				EXECUTE FUNCTION %[1]s.refuse_delete()`, schema),
		} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	}))

	for deadline := time.Now().Add(30 * time.Second); ; {
		_, body = send(t, "GET", base+"/metrics", bearerKey(testKeyOperator), "")
		if !strings.Contains(body, `botq_maintenance_failures_total{task="retention"} 0`) {
			break
		}
		require.True(t, time.Now().Before(deadline), "a failed retention run is counted")
		time.Sleep(100 * time.Millisecond)
	}
	require.Contains(t, body, `botq_maintenance_failures_total{task="retention"}`)

	var failed map[string]any
	for line := range strings.SplitSeq(logs.String(), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && e["level"] == "error" && e["task"] == taskRetention {
			failed = e
			break
		}
	}
	require.NotNil(t, failed, "logged at error level: %s", logs.String())
	require.Contains(t, failed["error"], "purge requests")
	require.Contains(t, failed["error"], "refused by the test")

	evs, err := m.Store.EventList(ctx, m.Pool, store.EventListParams{Kind: "retention", Limit: 1000})
	require.NoError(t, err)
	// The run that failed also purged the old event, unless it read the
	// events before the test's commit; then the next run did.
	var purgedByAFailedRun bool
	for _, e := range evs {
		var after struct {
			Events int64
			Failed []store.RetentionFailure
		}
		require.NoError(t, json.Unmarshal(e.After, &after))
		if len(after.Failed) > 0 {
			require.Len(t, after.Failed, 1)
			require.Equal(t, "requests", after.Failed[0].Part)
			purgedByAFailedRun = purgedByAFailedRun || after.Events == 1
		}
	}
	require.True(t, purgedByAFailedRun, "a run whose requests part failed recorded the events it purged")
}

// The maintenance queue keeps its completed jobs for
// river.maintenance_retention only: the reconciler's runs, dozens a
// minute, would otherwise stay for river.completed_retention and bury the
// jobs of actions in River UI.
func TestMaintenanceJobsDoNotPileUp(t *testing.T) {
	t.Parallel()
	// run starts a reconciler that runs every 100ms and waits until it has
	// taken 40 job ids (a unique insert it skips takes one too); it returns how many completed ones are kept.
	run := func(t *testing.T, retention time.Duration) int64 {
		// A pool of 8 (each running task holds a connection for its lock
		// while it queries) and River's LISTEN.
		m, _ := startMainConns(t, zerolog.Nop(), 5, func(cfg *Config) {
			cfg.Roles = RolesConfig{Reconciler: true}
			cfg.Database.MaxConns = 8
			cfg.Reconciler.Interval = 100 * time.Millisecond
			cfg.River.MaintenanceRetention = retention
		})
		deadline := time.Now().Add(30 * time.Second)
		for {
			var kept, inserted int64
			require.NoError(t, m.Pool.QueryRow(t.Context(), fmt.Sprintf(`SELECT
				(SELECT count(*) FROM %[1]s.river_job WHERE queue = 'botq_maintenance' AND state = 'completed'),
				(SELECT last_value FROM %[1]s.river_job_id_seq)`, m.Store.Schema())).Scan(&kept, &inserted))
			if inserted >= 40 {
				return kept
			}
			require.True(t, time.Now().Before(deadline), "the reconciler did not run 40 times in 30s")
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Run("pruned", func(t *testing.T) {
		t.Parallel()
		require.LessOrEqual(t, run(t, time.Millisecond), int64(3), "completed maintenance jobs are deleted once their retention is over")
	})
	t.Run("River's retention", func(t *testing.T) {
		t.Parallel()
		require.GreaterOrEqual(t, run(t, 0), int64(10), "without it every run stays")
	})
}
