package main

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// soakHistory fills the schema with n finished actions of the last 23
// hours, each with its attempt, its settled request record and its
// completed River job, as a production database holds them, so a soak
// measures the tables (vacuum, scans) at a size a fresh schema never has.
// BOTQ_SOAK_HISTORY=<n> asks for it. The rows are written with triggers off
// (session_replication_role replica: the full soak's own cluster), then
// vacuumed and analyzed, as a database in its steady state would be.
func soakHistory(t *testing.T, c *cluster) {
	t.Helper()
	v := os.Getenv("BOTQ_SOAK_HISTORY")
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "BOTQ_SOAK_HISTORY is a number of actions")
	start := time.Now()
	conn, err := c.pool.Acquire(c.ctx)
	require.NoError(t, err)
	defer conn.Release()
	s := c.schema
	step := (23 * time.Hour / time.Duration(n)).Microseconds()
	require.NoError(t, pgx.BeginFunc(c.ctx, conn, func(tx pgx.Tx) error {
		for _, q := range []string{
			`SET LOCAL session_replication_role = replica`,
			fmt.Sprintf(`INSERT INTO %[1]s.action (app_id, kind, payload, idempotency_key, lane, state, river_job_id, attempt_count,
				request_id, created_at, updated_at, finished_at)
			SELECT 'soak-' || (1 + i %% 2), 'respond',
				jsonb_build_object('coordinate', jsonb_build_object('companyKey', 'acme', 'networkKey', 'facebook', 'externalId', 'page-1', 'scope', 'PRIVATE'),
					'author', jsonb_build_object('id', 'history-customer-' || (i %% 2000)), 'text', 'history message ' || i),
				'history-' || i, 'facebook/page-1/history-customer-' || (i %% 2000), 'succeeded', nextval('%[1]s.river_job_id_seq'), 1,
				'history-request-' || i, t, t + interval '2 seconds', t + interval '2 seconds'
			FROM generate_series(1, %[2]d) i, LATERAL (SELECT now() - interval '23 hours' + i * interval '%[3]d microseconds' AS t) x`, s, n, step),
			fmt.Sprintf(`INSERT INTO %[1]s.attempt (action_id, number, river_job_id, job_attempt, started_at, duration_ms, wire_sent, http_status,
				request_id, outcome, worker, created_at)
			SELECT id, 1, river_job_id, 1, created_at, 20, true, 202, request_id, 'ok', 'history', created_at
			FROM %[1]s.action WHERE idempotency_key LIKE 'history-%%'`, s),
			fmt.Sprintf(`INSERT INTO %[1]s.request (request_id, app_id, action_id, origin, state, http_status, first_seen_at, last_checked_at,
				check_count, finalized_at)
			SELECT request_id, app_id, id, 'BOT', 'SUCCESS', 202, created_at, finished_at, 0, finished_at
			FROM %[1]s.action WHERE idempotency_key LIKE 'history-%%'`, s),
			fmt.Sprintf(`INSERT INTO %[1]s.river_job (id, args, kind, max_attempts, priority, queue, state, scheduled_at, created_at,
				attempted_at, finalized_at, attempt)
			SELECT river_job_id, jsonb_build_object('action_id', id), 'botq_respond', 25, 1, 'botq', 'completed', created_at, created_at,
				created_at, finished_at, 1
			FROM %[1]s.action WHERE idempotency_key LIKE 'history-%%'`, s),
		} {
			if _, err := tx.Exec(c.ctx, q); err != nil {
				return fmt.Errorf("%w: %s", err, q)
			}
		}
		return nil
	}))
	for _, tb := range []string{"action", "attempt", "request", "river_job"} {
		_, err := conn.Exec(c.ctx, fmt.Sprintf(`VACUUM ANALYZE %s.%s`, s, tb))
		require.NoError(t, err)
	}
	t.Logf("history: %d finished actions with their attempts, request records and River jobs, written and vacuumed in %s",
		n, time.Since(start).Round(time.Second))
}

// soakAutovacuumDefault resets the per-table autovacuum settings of
// the schema's migration when BOTQ_SOAK_AUTOVACUUM=default, to measure Postgres'
// defaults against them.
func soakAutovacuumDefault(t *testing.T, c *cluster) {
	t.Helper()
	if os.Getenv("BOTQ_SOAK_AUTOVACUUM") != "default" {
		return
	}
	for _, tb := range []string{"river_job", "action", "request"} {
		_, err := c.pool.Exec(c.ctx, fmt.Sprintf(`ALTER TABLE %s.%s RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
			autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)`, c.schema, tb))
		require.NoError(t, err)
	}
	_, err := c.pool.Exec(c.ctx, fmt.Sprintf(`ALTER TABLE %s.attempt RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold)`, c.schema))
	require.NoError(t, err)
	t.Log("autovacuum: Postgres' defaults for every table")
}
