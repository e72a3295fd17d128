package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The web console's sessions and the reads its pages need beyond the API's:
// pages by creation time, a conversation's rows in a few statements, and the
// overview's figures.

// ConsoleSession is a browser signed in to the console. TokenHash is the
// SHA-256 of the token its cookie holds; KeyFingerprint identifies the API
// key it was opened with (see console_session in
// migrations/00002_botq_tables.sql).
type ConsoleSession struct {
	TokenHash      []byte
	Principal      string
	Role           string
	KeyFingerprint []byte
	CreatedAt      time.Time
	ExpiresAt      time.Time
}

// ConsoleSessionStart records a new session that ends after ttl, deletes
// the expired ones, and returns when the new one expires.
func (s *Store) ConsoleSessionStart(ctx context.Context, db DBTX, cs *ConsoleSession, ttl time.Duration) (time.Time, error) {
	var exp time.Time
	err := db.QueryRow(ctx, s.q(`SELECT botq.console_session_start($1, $2, $3, $4, $5)`),
		cs.TokenHash, cs.Principal, cs.Role, cs.KeyFingerprint, ttl).Scan(&exp)
	if err != nil {
		return time.Time{}, fmt.Errorf("start console session: %w", mapError(err))
	}
	return exp, nil
}

// ConsoleSessionGet returns the unexpired session whose token has the hash
// tokenHash, or ErrNotFound.
func (s *Store) ConsoleSessionGet(ctx context.Context, db DBTX, tokenHash []byte) (*ConsoleSession, error) {
	cs := ConsoleSession{TokenHash: tokenHash}
	err := db.QueryRow(ctx, s.q(`
		SELECT principal, role, key_fingerprint, created_at, expires_at
		FROM botq.console_session WHERE token_hash = $1 AND expires_at > now()`), tokenHash).
		Scan(&cs.Principal, &cs.Role, &cs.KeyFingerprint, &cs.CreatedAt, &cs.ExpiresAt)
	if err != nil {
		return nil, fmt.Errorf("get console session: %w", mapError(err))
	}
	return &cs, nil
}

// ConsoleSessionEnd ends the session whose token has the hash tokenHash
// (sign-out); ended is false when there was none.
func (s *Store) ConsoleSessionEnd(ctx context.Context, db DBTX, tokenHash []byte) (ended bool, err error) {
	if err := db.QueryRow(ctx, s.q(`SELECT botq.console_session_end($1)`), tokenHash).Scan(&ended); err != nil {
		return false, fmt.Errorf("end console session: %w", mapError(err))
	}
	return ended, nil
}

// ActionCursor is where a page of ActionPage ends.
type ActionCursor struct {
	CreatedAt time.Time
	ID        int64
}

// ActionPageParams pages through actions matching Filter, newest first by
// creation time: the order the creation-time indexes give, so that a page
// of a bounded time range reads that range's index entries only. Before
// continues after the last action of the previous page; Limit defaults to
// 100.
type ActionPageParams struct {
	Filter ActionFilter
	Before *ActionCursor
	Limit  int
}

// ActionPage returns one page of actions, as ActionList shows them. More is
// true when another page follows.
func (s *Store) ActionPage(ctx context.Context, db DBTX, p ActionPageParams) (actions []*Action, more bool, err error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	var w sqlWhere
	p.Filter.apply(&w)
	if p.Before != nil {
		w.add("(a.created_at, a.id) < (" + w.arg(p.Before.CreatedAt) + ", " + w.arg(p.Before.ID) + ")")
	}
	rows, err := db.Query(ctx, s.q(actionPageSQL(&w, "a.created_at DESC, a.id DESC", p.Limit+1)), w.args...)
	if err != nil {
		return nil, false, fmt.Errorf("page actions: %w", mapError(err))
	}
	actions, err = collectActions(rows)
	if err != nil {
		return nil, false, fmt.Errorf("page actions: %w", mapError(err))
	}
	if len(actions) > p.Limit {
		return actions[:p.Limit], true, nil
	}
	return actions, false, nil
}

// AttemptListByActions returns the attempts of the actions with ids, by
// action and number.
func (s *Store) AttemptListByActions(ctx context.Context, db DBTX, ids []int64) ([]*Attempt, error) {
	rows, err := db.Query(ctx, s.q(`
		SELECT id, action_id, number, river_job_id, job_attempt, started_at, duration_ms, wire_sent,
		       coalesce(http_status, 0), coalesce(request_id, ''), outcome, coalesce(error, ''),
		       coalesce(response_excerpt, ''), worker, created_at
		FROM botq.attempt WHERE action_id = ANY($1::bigint[]) ORDER BY action_id, number`), ids)
	if err != nil {
		return nil, fmt.Errorf("list attempts of %d actions: %w", len(ids), mapError(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Attempt, error) {
		var a Attempt
		var ms float64
		var outcome string
		err := row.Scan(&a.ID, &a.ActionID, &a.Number, &a.RiverJobID, &a.JobAttempt, &a.StartedAt, &ms, &a.WireSent,
			&a.HTTPStatus, &a.RequestID, &outcome, &a.Error, &a.ResponseExcerpt, &a.Worker, &a.CreatedAt)
		a.Duration = time.Duration(ms * float64(time.Millisecond))
		a.Outcome = AttemptOutcome(outcome)
		return &a, err
	})
	if err != nil {
		return nil, fmt.Errorf("list attempts of %d actions: %w", len(ids), mapError(err))
	}
	return out, nil
}

// RequestListByActions returns the request records of the actions with
// ids, oldest first.
func (s *Store) RequestListByActions(ctx context.Context, db DBTX, ids []int64) ([]*Request, error) {
	rows, err := db.Query(ctx, s.q(`SELECT `+requestColumns+` FROM botq.request
		WHERE action_id = ANY($1::bigint[]) ORDER BY first_seen_at, request_id`), ids)
	if err != nil {
		return nil, fmt.Errorf("list requests of %d actions: %w", len(ids), mapError(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Request, error) { return scanRequest(row) })
	if err != nil {
		return nil, fmt.Errorf("list requests of %d actions: %w", len(ids), mapError(err))
	}
	return out, nil
}

// AppActivity is what an app is doing now.
type AppActivity struct {
	AppID string
	// InFlight counts the app's actions whose River job is running: a call
	// being made, or about to be.
	InFlight int64
	// Failed counts the app's actions that failed since the time asked.
	Failed int64
}

// AppActivityList returns the activity of every app with any, by app. The
// failures come from action_failed_idx: the last hour's, not every failed
// action kept.
func (s *Store) AppActivityList(ctx context.Context, db DBTX, failedSince time.Time) ([]AppActivity, error) {
	rows, err := db.Query(ctx, s.q(`
		SELECT app_id, sum(in_flight)::bigint, sum(failed)::bigint FROM (
			SELECT a.app_id, count(*) AS in_flight, 0 AS failed
			FROM botq.river_job j JOIN botq.action a ON a.river_job_id = j.id
			WHERE j.state = 'running'
			GROUP BY a.app_id
			UNION ALL
			SELECT app_id, 0, count(*)
			FROM botq.action
			WHERE state = 'failed' AND finished_at >= $1
			GROUP BY app_id
		) t
		GROUP BY app_id
		ORDER BY app_id`), failedSince)
	if err != nil {
		return nil, fmt.Errorf("app activity: %w", mapError(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AppActivity, error) {
		var a AppActivity
		err := row.Scan(&a.AppID, &a.InFlight, &a.Failed)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("app activity: %w", mapError(err))
	}
	return out, nil
}

// ThroughputBucket counts what happened in one interval: actions enqueued,
// and calls made to Khoros by their outcome.
type ThroughputBucket struct {
	Start    time.Time
	Enqueued int64
	// CallsOK were accepted by Khoros; CallsFailed were answered with an
	// error or not at all (outcomes retry, cancel, unknown); snoozed calls
	// (429, a pause) count in neither.
	CallsOK     int64
	CallsFailed int64
}

// Throughput counts, per step from from until to, the actions enqueued and
// the calls made. Every bucket of the range is returned, empty ones too.
func (s *Store) Throughput(ctx context.Context, db DBTX, from, to time.Time, step time.Duration) ([]ThroughputBucket, error) {
	if step <= 0 || !from.Before(to) {
		return nil, fmt.Errorf("throughput: the step must be positive and from before to")
	}
	rows, err := db.Query(ctx, s.q(`
		WITH b AS (
			SELECT date_bin($3::interval, created_at, $1) AS start, count(*) AS enqueued, 0 AS ok, 0 AS failed
			FROM botq.action WHERE created_at >= $1 AND created_at < $2
			GROUP BY 1
			UNION ALL
			SELECT date_bin($3::interval, created_at, $1), 0,
			       count(*) FILTER (WHERE outcome = 'ok'),
			       count(*) FILTER (WHERE outcome IN ('retry', 'cancel', 'unknown'))
			FROM botq.attempt WHERE created_at >= $1 AND created_at < $2
			GROUP BY 1
		)
		SELECT g.start, coalesce(sum(b.enqueued), 0)::bigint, coalesce(sum(b.ok), 0)::bigint, coalesce(sum(b.failed), 0)::bigint
		FROM generate_series($1::timestamptz, $2::timestamptz - $3::interval, $3::interval) AS g(start)
		LEFT JOIN b ON b.start = g.start
		GROUP BY g.start
		ORDER BY g.start`), from, to, step)
	if err != nil {
		return nil, fmt.Errorf("throughput: %w", mapError(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ThroughputBucket, error) {
		var b ThroughputBucket
		err := row.Scan(&b.Start, &b.Enqueued, &b.CallsOK, &b.CallsFailed)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("throughput: %w", mapError(err))
	}
	return out, nil
}
