package migrations_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

// explain returns the plan of sql as text.
func explain(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(ctx, "EXPLAIN "+sql, args...)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return strings.Join(lines, "\n")
}

// On a history of finished actions (20,000 of two apps, in 2,000
// conversations, over 55 days, stored in creation order), vacuumed as
// autovacuum leaves a history, one index
// serves both a conversation's timeline (the lane's actions, newest first,
// as ActionList reads them) and the lane's next queued action (as
// lane_release_next and action_lanes_advance look it up, with the latter's
// generic plan and settings), which descends to the lane's queued entries
// without reading its finished ones; an app's failures of a day come from
// the index of failures by app without reading the table, an author's
// actions from the author index, and the live backlog from the index of
// live actions.
func TestLaneIndexServesTimelineAndAdvance(t *testing.T) {
	ctx := context.Background()
	_, pool := storetest.NewSchema(t, 2)
	c, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer c.Release()
	conn := c.Conn()
	var super bool
	require.NoError(t, conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super))
	if !super {
		t.Skip("the history is inserted without triggers (session_replication_role), a superuser's right")
	}
	for _, s := range []string{
		"SET session_replication_role = replica",
		"INSERT INTO app (id) VALUES ('lane-app'), ('other-app')",
		`INSERT INTO action (app_id, kind, payload, idempotency_key, lane, state, river_job_id, created_at, finished_at)
		 SELECT CASE WHEN i % 5 = 0 THEN 'lane-app' ELSE 'other-app' END, 'respond',
		        jsonb_build_object('author', jsonb_build_object('id', 'u' || (i % 2000))), 'k' || i,
		        'facebook/page-1/u' || (i % 2000),
		        CASE WHEN i > 19990 THEN 'queued' WHEN i % 20 < 2 THEN 'failed' ELSE 'succeeded' END, -i,
		        now() - (20000 - i) * interval '4 minutes',
		        CASE WHEN i <= 19990 THEN now() - (20000 - i) * interval '4 minutes' + interval '1 second' END
		 FROM generate_series(1, 20000) AS i`,
		"RESET session_replication_role",
		"VACUUM ANALYZE action", "ANALYZE app",
	} {
		_, err := conn.Exec(ctx, s)
		require.NoError(t, err, s)
	}

	timeline := explain(ctx, t, conn, `SELECT a.id FROM action a LEFT JOIN river_job j ON j.id = a.river_job_id
		WHERE a.app_id = $1 AND a.lane = $2 ORDER BY a.id DESC LIMIT 101`, "lane-app", "facebook/page-1/u5")
	require.Contains(t, timeline, "action_lane_idx", timeline)

	for _, s := range []string{
		"SET plan_cache_mode = force_generic_plan", "SET enable_seqscan = off",
		"SET enable_hashjoin = off", "SET enable_mergejoin = off",
		`PREPARE lane_next(text, text) AS SELECT a.id, a.river_job_id FROM action a
		 WHERE a.app_id = $1 AND a.lane = $2 AND a.state = 'queued' ORDER BY a.id LIMIT 1`,
	} {
		_, err := conn.Exec(ctx, s)
		require.NoError(t, err, s)
	}
	next := explain(ctx, t, conn, "EXECUTE lane_next('lane-app', 'facebook/page-1/u7')")
	require.Contains(t, next, "action_lane_idx", next)
	require.Regexp(t, `Index Cond: .*\(state = 'queued'::text\)`, next, "the lane's queued entries are found by the index, not filtered")
	require.NotContains(t, next, "Sort", next)
	_, err = conn.Exec(ctx, "DEALLOCATE lane_next")
	require.NoError(t, err)

	// One app's failures in a time range, as ActionList writes the state.
	for _, s := range []string{"RESET plan_cache_mode", "RESET enable_seqscan", "RESET enable_hashjoin", "RESET enable_mergejoin"} {
		_, err := conn.Exec(ctx, s)
		require.NoError(t, err, s)
	}
	// The page's ids come from the index alone (ActionList's actionPageSQL).
	failed := explain(ctx, t, conn, `SELECT a.id FROM action a
		WHERE a.app_id = $1 AND (a.state IN ('failed')) AND a.created_at >= now() - interval '1 day' AND a.created_at < now()
		ORDER BY a.id DESC LIMIT 101`, "lane-app")
	require.Contains(t, failed, "Index Only Scan using action_failed_app_idx", failed)

	// An author's actions, newest first, as the console pages them.
	author := explain(ctx, t, conn, `SELECT a.id FROM action a
		WHERE a.app_id = $1 AND a.payload -> 'author' ->> 'id' = $2
		ORDER BY a.created_at DESC, a.id DESC LIMIT 101`, "lane-app", "u5")
	require.Contains(t, author, "action_author_idx", author)
	// Of every app, as the console asks (ActionFilter names every app).
	author = explain(ctx, t, conn, `SELECT a.id FROM action a
		WHERE a.payload -> 'author' ->> 'id' = $1 AND a.app_id IN (SELECT id FROM app)
		ORDER BY a.created_at DESC, a.id DESC LIMIT 101`, "u5")
	require.Contains(t, author, "action_author_idx", author)

	// The live backlog per app (AppStatusList) reads live actions only.
	live := explain(ctx, t, conn, `SELECT app_id, count(*), min(created_at) FROM action
		WHERE state IN ('queued', 'retrying', 'unknown') AND ($1 = '' OR app_id = $1) GROUP BY app_id`, "")
	require.Contains(t, live, "action_live_idx", live)
}
