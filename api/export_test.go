package api_test

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

// ExportRequests streams every record of the filter, oldest first, and
// tells its progress every thousand records (botq requests export's bar).
func TestExportRequestsCountsAndProgress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.pool.Exec(b.ctx, fmt.Sprintf(`INSERT INTO %s.request (request_id, app_id, origin, state, finalized_at, first_seen_at)
		SELECT 'prog-' || $1 || '-' || g, $1, 'KHOROS', 'SUCCESS', now(), now() - make_interval(secs => 3000 - g)
		FROM generate_series(1, 2500) g`, b.s.Schema()), b.appID)
	require.NoError(t, err)

	var out bytes.Buffer
	var told []int64
	n, err := api.ExportRequests(b.ctx, b.s, b.pool, store.RequestFilter{AppID: b.appID}, "csv", &out, func(n int64) { told = append(told, n) })
	require.NoError(t, err)
	require.EqualValues(t, 2500, n)
	require.Equal(t, []int64{1000, 2000}, told)
	rows, err := csv.NewReader(&out).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 2501)
	require.Equal(t, api.CSVHeader, rows[0])
	require.Equal(t, "prog-"+b.appID+"-1", rows[1][0], "oldest first")

	_, err = api.ExportRequests(b.ctx, b.s, b.pool, store.RequestFilter{AppID: b.appID}, "xml", &out, nil)
	require.Error(t, err)
}
