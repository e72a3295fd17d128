package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// genericPlansSQL, sent in the same round trip before the load, makes
// Postgres plan it once per connection: with the default plan_cache_mode it
// compared each custom plan (which knows how many keys the arrays hold) with
// a generic one (which guesses 10) and planned the query again on every
// load, several times the query's execution in planning alone. The enable_* settings
// keep that plan on primary-key lookups even if it is made while the tables
// are empty. The settings are transaction-local: they end with the batch's
// implicit transaction (or with the caller's).
const genericPlansSQL = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true),
	set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)`

// WorkItem is what a worker needs to execute an action: the action, its app,
// and how many of the job's earlier attempts left an attempt row.
type WorkItem struct {
	Action *Action
	App    *App
	// PreviousRecorded reports whether the execution that used the job's
	// previous River attempt (attempt-1) left its result: an attempt row of
	// that attempt number other than a snooze. River counts an attempt when
	// it fetches the job and gives it back when the job snoozes, so several
	// executions can share a number: a snooze row (a 429, a 401) says only
	// that one of them ended without using the attempt, not that the last
	// one ended at all. Without such a row, the execution that used the
	// attempt ended without writing its result: the process died, perhaps
	// after its call reached Khoros. True for a first attempt.
	PreviousRecorded bool
}

// qualify prefixes the column names of a column list with alias.
func qualify(cols, alias string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if strings.HasPrefix(p, "coalesce(") {
			p = "coalesce(" + alias + "." + strings.TrimPrefix(p, "coalesce(")
		} else if !strings.HasPrefix(p, "'") {
			p = alias + "." + p
		}
		parts[i] = p
	}
	return strings.Join(parts, ", ")
}

// WorkKey names the River job execution a worker loads an action for.
type WorkKey struct {
	ActionID   int64
	JobID      int64
	JobAttempt int
}

var workLoadSQL = `
SELECT r.ord, ` + qualify(actionColumns, "a") + `, ` + qualify(appColumns, "p") + `,
	(r.job_attempt <= 1 OR EXISTS (SELECT 1 FROM botq.attempt t
	 WHERE t.action_id = a.id AND t.river_job_id = r.job_id AND t.job_attempt = r.job_attempt - 1
	   AND t.outcome <> 'snooze'))
FROM unnest($1::bigint[], $2::bigint[], $3::int[]) WITH ORDINALITY AS r(action_id, job_id, job_attempt, ord)
JOIN botq.action a ON a.id = r.action_id
JOIN botq.app p ON p.id = a.app_id`

// WorkLoad loads, in one query, the action and its app for each job
// execution in keys. items[i] answers keys[i]; it is nil when the action
// does not exist.
func (s *Store) WorkLoad(ctx context.Context, db DBTX, keys []WorkKey) (items []*WorkItem, err error) {
	actionIDs, jobIDs, attempts := make([]int64, len(keys)), make([]int64, len(keys)), make([]int32, len(keys))
	for i, k := range keys {
		actionIDs[i], jobIDs[i], attempts[i] = k.ActionID, k.JobID, int32(k.JobAttempt)
	}
	b := &pgx.Batch{}
	b.Queue(genericPlansSQL)
	b.Queue(s.q(workLoadSQL), actionIDs, jobIDs, attempts)
	br := db.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("load %d actions for work: %w", len(keys), mapError(err))
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("load %d actions for work: %w", len(keys), mapError(err))
	}
	defer rows.Close()
	items = make([]*WorkItem, len(keys))
	for rows.Next() {
		var (
			a     Action
			p     App
			state string
			item  WorkItem
			ord   int64
		)
		dest := append([]any{&ord}, a.scanFields(&state)...)
		dest = append(dest, p.scanFields()...)
		if err := rows.Scan(append(dest, &item.PreviousRecorded)...); err != nil {
			return nil, fmt.Errorf("load %d actions for work: %w", len(keys), mapError(err))
		}
		a.State = ActionState(state)
		item.Action, item.App = &a, &p
		items[ord-1] = &item
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load %d actions for work: %w", len(keys), mapError(err))
	}
	return items, nil
}
