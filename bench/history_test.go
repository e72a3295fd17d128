package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// TestBenchHistory runs `botq bench history` on two tiny histories and
// checks that every figure is there: each question timed, the export made
// by the child process, retention of the oldest month, the sizes compared,
// and the schemas dropped. The figures themselves mean nothing here.
func TestBenchHistory(t *testing.T) {
	url := storetest.DatabaseURL(t)
	// The bench's admin and schema pools (4 each) and the export child's 2.
	storetest.Conns(t, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "history.json")
	o := DefaultHistoryOptions()
	o.DatabaseURL, o.Actions, o.Samples, o.Out = url, []int{2000, 3000}, 10, out
	require.NoError(t, o.Validate())
	var stdout, stderr bytes.Buffer
	require.NoError(t, RunHistory(ctx, o, &stdout, &stderr), "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())

	data, err := os.ReadFile(out)
	require.NoError(t, err)
	var rep historyReport
	require.NoError(t, json.Unmarshal(data, &rep))
	require.Len(t, rep.Runs, 2)
	require.NotEmpty(t, rep.Postgres.Version)
	for _, run := range rep.Runs {
		require.Equal(t, run.Actions, int(run.Rows["action"]), "every action is made")
		require.Greater(t, run.Rows["attempt"], run.Rows["action"]*9/10, "attempts")
		require.Positive(t, run.Rows["request_khoros"], "KHOROS-origin records")
		require.Greater(t, run.Rows["request"], run.Rows["request_khoros"], "BOT-origin records")
		require.Positive(t, run.Rows["event"])
		require.Positive(t, run.DiskMB)
		names := []string{}
		for _, q := range run.Queries {
			names = append(names, q.Name)
			require.Equal(t, 10, q.Samples, q.Name)
			require.Positive(t, q.P99MS, q.Name)
			require.GreaterOrEqual(t, q.P99MS, q.P50MS, q.Name)
			require.Positive(t, q.RowsMean, "%s finds what it asks for", q.Name)
		}
		require.Equal(t, []string{"timeline", "lane_requests", "request_id", "failed_day", "author"}, names)
		require.Positive(t, run.Export.Rows, "the export child exported the day")
		require.Positive(t, run.Export.PeakRSSMB)
		rt := run.Retention
		require.Positive(t, rt.Deleted.Actions)
		require.Positive(t, rt.Deleted.Requests)
		require.Positive(t, rt.Batches)
		require.Positive(t, rt.LongestBatchMS)
		require.Positive(t, rt.WALMB)
		require.Len(t, rt.AfterVacuum, len(historyTables))
	}
	require.Len(t, rep.Growth, 5, "each question compared across the sizes")
	require.Contains(t, stdout.String(), "timeline")

	admin, err := store.NewPool(ctx, url, "public", store.PoolOptions{MaxConns: 1})
	require.NoError(t, err)
	defer admin.Close()
	for _, run := range rep.Runs {
		var left bool
		require.NoError(t, admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, run.Schema).Scan(&left))
		require.False(t, left, "schema %s is dropped", run.Schema)
	}
}
