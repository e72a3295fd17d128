package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

// historyQueries times the auditor's questions on one history.
type historyQueries struct {
	h    *historyBench
	pool *pgxpool.Pool
	st   *store.Store
	g    historyGen
	rng  *rand.Rand
}

// historyQuery's sample: it returns the rows it read.
type historySample func(ctx context.Context, i int) (int, error)

// all times every question.
func (q *historyQueries) all(ctx context.Context) ([]*historyQuery, error) {
	n := q.h.o.Samples
	// Three keys more than samples: the first three calls of each question
	// are not timed (connection warm-up, prepared statements).
	const warm = 3
	lanes, err := q.laneKeys(ctx, n+warm)
	if err != nil {
		return nil, err
	}
	requestIDs, err := q.requestKeys(ctx, n+warm)
	if err != nil {
		return nil, err
	}
	days := make([]time.Time, n+warm)
	dayApps := make([]string, n+warm)
	authors := make([][2]string, n+warm)
	for i := range days {
		days[i] = q.g.start.AddDate(0, 0, q.rng.IntN(historyDays))
		dayApps[i] = historyApps[q.rng.IntN(len(historyApps))]
		k := q.rng.IntN(q.g.conversations)
		authors[i] = [2]string{historyAppOf(k), fmt.Sprintf("u%d", k/6)}
	}
	questions := []struct {
		name, path string
		target     float64
		fn         historySample
	}{
		{"timeline", "ActionList{AppID, Lane} (GET /v1/actions?app=&lane=, botq actions list --app --lane), then " +
			"AttemptListByActions and RequestListByActions of the page's actions", targetTimelineP99,
			func(ctx context.Context, i int) (int, error) { return q.timeline(ctx, lanes[i]) }},
		{"lane_requests", "RequestList{AppID, Lane} (GET /v1/requests?app=&lane=, botq requests list --app --lane)", 0,
			func(ctx context.Context, i int) (int, error) {
				items, _, err := q.st.RequestList(ctx, q.pool, store.RequestListParams{
					Filter: store.RequestFilter{AppID: lanes[i][0], Lane: lanes[i][1]}, Limit: historyPage})
				return len(items), err
			}},
		{"request_id", "RequestView (GET /v1/requests/{id}, botq requests show)", targetRequestP99,
			func(ctx context.Context, i int) (int, error) {
				_, err := q.st.RequestView(ctx, q.pool, requestIDs[i])
				return 1, err
			}},
		{"failed_day", "ActionList{AppID, States: failed, From, To: one day} (GET /v1/actions?app=&state=failed&from=&to=, " +
			"botq actions list --app --state failed --from --to)", targetFailedDayP99,
			func(ctx context.Context, i int) (int, error) {
				actions, _, err := q.st.ActionList(ctx, q.pool, store.ActionListParams{Filter: store.ActionFilter{
					AppID: dayApps[i], States: []store.ActionState{store.ActionFailed}, From: days[i], To: days[i].AddDate(0, 0, 1)},
					Limit: historyPage})
				return len(actions), err
			}},
		{"author", "ActionPage{AppID, Author} (the console's author filter)", 0,
			func(ctx context.Context, i int) (int, error) {
				actions, _, err := q.st.ActionPage(ctx, q.pool, store.ActionPageParams{
					Filter: store.ActionFilter{AppID: authors[i][0], Author: authors[i][1]}, Limit: historyPage})
				return len(actions), err
			}},
	}
	var out []*historyQuery
	for _, qu := range questions {
		r, err := q.time(ctx, qu.name, warm, n, qu.fn)
		if err != nil {
			return nil, err
		}
		r.Path = qu.path
		if qu.target > 0 {
			r.TargetP99MS = qu.target
			met := r.P99MS <= qu.target
			r.Met = &met
		}
		out = append(out, r)
	}
	return out, nil
}

// time runs fn for warm untimed keys, then for up to n timed ones (fewer
// when the query budget runs out, but at least 10).
func (q *historyQueries) time(ctx context.Context, name string, warm, n int, fn historySample) (*historyQuery, error) {
	for i := range warm {
		if _, err := fn(ctx, n+i); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	var ms []float64
	rows := 0
	start := time.Now()
	for i := range n {
		if i >= 10 && time.Since(start) > q.h.o.QueryBudget {
			break
		}
		t := time.Now()
		k, err := fn(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ms = append(ms, float64(time.Since(t).Microseconds())/1000)
		rows += k
	}
	slices.Sort(ms)
	r := &historyQuery{Name: name, Samples: len(ms), P50MS: percentile(ms, 0.5), P99MS: percentile(ms, 0.99),
		MaxMS: ms[len(ms)-1], RowsMean: float64(rows) / float64(len(ms))}
	q.h.logf("  %-13s p50 %7.2f ms  p99 %7.2f ms  (%d samples, %.1f rows, load %s)", name, r.P50MS, r.P99MS, r.Samples, r.RowsMean, loadString())
	return r, nil
}

// timeline reads one conversation's actions, their attempts and their
// request records.
func (q *historyQueries) timeline(ctx context.Context, lane [2]string) (int, error) {
	actions, _, err := q.st.ActionList(ctx, q.pool, store.ActionListParams{
		Filter: store.ActionFilter{AppID: lane[0], Lane: lane[1]}, Limit: historyPage})
	if err != nil {
		return 0, err
	}
	ids := make([]int64, len(actions))
	for i, a := range actions {
		ids[i] = a.ID
	}
	atts, err := q.st.AttemptListByActions(ctx, q.pool, ids)
	if err != nil {
		return 0, err
	}
	reqs, err := q.st.RequestListByActions(ctx, q.pool, ids)
	if err != nil {
		return 0, err
	}
	return len(actions) + len(atts) + len(reqs), nil
}

// laneKeys returns the app and lane of n random actions.
func (q *historyQueries) laneKeys(ctx context.Context, n int) ([][2]string, error) {
	rows, err := q.pool.Query(ctx, `SELECT app_id, lane FROM action WHERE id = ANY($1)`, q.randomIDs(n, q.g.n))
	if err != nil {
		return nil, err
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var k [2]string
		return k, r.Scan(&k[0], &k[1])
	})
	if err != nil {
		return nil, err
	}
	q.rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	return keys, nil
}

// requestKeys returns n random request ids: four of five of BOT-origin
// records, one of KHOROS-origin ones.
func (q *historyQueries) requestKeys(ctx context.Context, n int) ([]string, error) {
	rows, err := q.pool.Query(ctx, `
		SELECT request_id FROM request WHERE action_id = ANY($1)
		UNION ALL
		SELECT request_id FROM request WHERE request_id = ANY(SELECT md5('k' || j)::uuid::text FROM unnest($2::bigint[]) AS j)`,
		q.randomIDs(n, q.g.n), q.randomIDs(n/4+1, q.g.n/historyKhorosShare))
	if err != nil {
		return nil, err
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	q.rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	if len(keys) < n {
		return nil, fmt.Errorf("found %d request ids, not %d", len(keys), n)
	}
	return keys[:n], nil
}

// randomIDs returns n distinct random numbers from 1 to max.
func (q *historyQueries) randomIDs(n, maxID int) []int64 {
	seen := map[int64]bool{}
	out := make([]int64, 0, n)
	for len(out) < n && len(out) < maxID {
		id := int64(q.rng.IntN(maxID)) + 1
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// historyAppOf is the app of conversation k (historyapp in the fill).
func historyAppOf(k int) string {
	switch c := (k / 6) % 10; {
	case c < 6:
		return historyApps[0]
	case c < 9:
		return historyApps[1]
	default:
		return historyApps[2]
	}
}

// historyExportSpec is the day a history export child exports.
type historyExportSpec struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// export has a child process export one day's request records, the
// middle day of the history, as `botq requests export --format csv` does.
func (h *historyBench) export(ctx context.Context, schema string, g historyGen) (*historyExport, error) {
	day := g.start.AddDate(0, 0, historyDays/2)
	spec := benchChildSpec{Mode: "history_export", Schema: schema, Options: Options{DatabaseURL: h.o.DatabaseURL},
		History: &historyExportSpec{From: day, To: day.AddDate(0, 0, 1)}}
	cmd, out, err := childCommand(ctx, spec, h.log)
	if err != nil {
		return nil, err
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("export child: %w", err)
	}
	var res benchChildResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("export child said %q: %w", out.String(), err)
	}
	e := &historyExport{Day: day.Format(time.DateOnly), Rows: int64(res.Completed), Seconds: res.Seconds,
		RowsPerSec: float64(res.Completed) / res.Seconds, PeakRSSMB: res.VmHWMMB}
	e.Met = e.RowsPerSec >= targetExportRate && e.PeakRSSMB <= targetExportRSS
	h.logf("  export of %s: %d rows, %.0f rows/s, peak RSS %.1f MB (load %s)", e.Day, e.Rows, e.RowsPerSec, e.PeakRSSMB, loadString())
	return e, nil
}

// childHistoryExport exports the spec's day of request records as CSV to
// nowhere, through the store and the writer `botq requests export` uses.
func childHistoryExport(ctx context.Context, spec benchChildSpec) (*benchChildResult, error) {
	if spec.History == nil {
		return nil, fmt.Errorf("history export without a day")
	}
	pool, err := store.NewPool(ctx, spec.Options.DatabaseURL, spec.Schema, store.PoolOptions{MaxConns: 2, AppName: "botq-bench-export"})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	st, err := store.New(spec.Schema)
	if err != nil {
		return nil, err
	}
	rw, err := api.NewRequestWriter(io.Discard, "csv")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	n, err := st.RequestExport(ctx, pool, store.RequestFilter{From: spec.History.From, To: spec.History.To}, rw.Write)
	if err != nil {
		return nil, err
	}
	if err := rw.Close(); err != nil {
		return nil, err
	}
	return &benchChildResult{Completed: int(n), Seconds: time.Since(start).Seconds(), VmHWMMB: vmHWM()}, nil
}

// writeJSON writes v, indented, to path.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// historyPage is the page size the questions ask for: the HTTP API's
// default (the CLI's is 50).
const historyPage = 100
