package store

import (
	"context"
	"fmt"
	"time"
)

// resultRecordSQL writes a batch of finished calls in one statement: each
// action's attempt count, state, last error and request id; its attempt row;
// and the request records the calls returned (JobsEnd writes their River
// jobs' states, in the same transaction, first). One statement rather than
// three per call: under load, the per-statement cost was most of the result
// writer's time.
const resultRecordSQL = `
WITH input AS (
	SELECT *
	FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::timestamptz[], $5::float8[], $6::boolean[], $7::int[],
	            $8::text[], $9::text[], $10::text[], $11::text[], $12::boolean[], $13::text[], $14::text[], $15::text[])
	     AS t(action_id, river_job_id, job_attempt, started_at, duration_ms, wire_sent, http_status,
	          request_id, outcome, error, new_state, set_last_error, last_error, excerpt, worker)
), a AS (
	UPDATE botq.action x
	SET attempt_count = x.attempt_count + 1,
	    state = coalesce(nullif(i.new_state, ''), x.state),
	    last_error = CASE WHEN i.set_last_error THEN nullif(i.last_error, '') ELSE x.last_error END,
	    request_id = coalesce(nullif(i.request_id, ''), x.request_id)
	FROM input i
	WHERE x.id = i.action_id
	RETURNING x.id, x.attempt_count
), att AS (
	INSERT INTO botq.attempt (action_id, number, river_job_id, job_attempt, started_at, duration_ms, wire_sent,
		http_status, request_id, outcome, error, response_excerpt, worker)
	SELECT i.action_id, a.attempt_count, i.river_job_id, i.job_attempt, i.started_at, i.duration_ms, i.wire_sent,
		nullif(i.http_status, 0), nullif(i.request_id, ''), i.outcome, nullif(i.error, ''),
		nullif(left(i.excerpt, 2048), ''), i.worker
	FROM input i
	JOIN a ON a.id = i.action_id
	RETURNING 1
), req AS (
	INSERT INTO botq.request (request_id, app_id, action_id, origin, state, http_status, next_check_at, finalized_at, reason)
	SELECT r.request_id, r.app_id, r.action_id, 'BOT', r.state, nullif(r.http_status, 0), r.next_check_at,
		CASE WHEN r.state = 'PENDING' THEN NULL ELSE now() END, nullif(r.reason, '')
	FROM unnest($16::text[], $17::text[], $18::bigint[], $19::text[], $20::int[], $21::timestamptz[], $22::text[])
	     AS r(request_id, app_id, action_id, state, http_status, next_check_at, reason)
	ON CONFLICT (request_id) DO UPDATE SET
		action_id = coalesce(botq.request.action_id, EXCLUDED.action_id),
		http_status = coalesce(EXCLUDED.http_status, botq.request.http_status),
		state = CASE WHEN botq.request.state = 'PENDING' THEN EXCLUDED.state ELSE botq.request.state END,
		finalized_at = CASE WHEN botq.request.state = 'PENDING' THEN EXCLUDED.finalized_at ELSE botq.request.finalized_at END,
		reason = CASE WHEN botq.request.state = 'PENDING' THEN EXCLUDED.reason ELSE botq.request.reason END
	RETURNING 1
)
SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM att), (SELECT count(*) FROM req)`

// ResultRecord records finished calls and the request records they
// returned, in one statement (see AttemptRecord and
// RequestUpsert for one of each); db must be a transaction. An action that does not exist makes it fail with ErrNotFound; a
// move the state machine refuses, with ErrIllegalTransition. The request
// params' Origin, Details and Payload are not used: calls make BOT records.
func (s *Store) ResultRecord(ctx context.Context, db DBTX, attempts []*AttemptRecordParams, requests []*RequestUpsertParams) error {
	n := len(attempts)
	var (
		actionIDs  = make([]int64, n)
		jobIDs     = make([]int64, n)
		jobAtt     = make([]int32, n)
		started    = make([]time.Time, n)
		durations  = make([]float64, n)
		sent       = make([]bool, n)
		statuses   = make([]int32, n)
		reqIDs     = make([]string, n)
		outcomes   = make([]string, n)
		errs       = make([]string, n)
		states     = make([]string, n)
		setLastErr = make([]bool, n)
		lastErrs   = make([]string, n)
		excerpts   = make([]string, n)
		workers    = make([]string, n)
	)
	for i, p := range attempts {
		actionIDs[i], jobIDs[i], jobAtt[i], started[i] = p.ActionID, p.RiverJobID, int32(p.JobAttempt), p.StartedAt
		durations[i] = float64(p.Duration) / float64(time.Millisecond)
		sent[i], statuses[i], reqIDs[i], outcomes[i] = p.WireSent, int32(p.HTTPStatus), p.RequestID, string(p.Outcome)
		errs[i], states[i], excerpts[i], workers[i] = CleanText(p.Error, 4096), string(p.NewState), CleanText(p.ResponseExcerpt, MaxResponseExcerpt), p.Worker
		if p.LastError != nil {
			setLastErr[i], lastErrs[i] = true, CleanText(*p.LastError, 4096)
		}
	}
	m := len(requests)
	var (
		rIDs     = make([]string, m)
		rApps    = make([]string, m)
		rActions = make([]*int64, m)
		rStates  = make([]string, m)
		rStatus  = make([]int32, m)
		rNext    = make([]*time.Time, m)
		rReasons = make([]string, m)
	)
	for i, r := range requests {
		rIDs[i], rApps[i], rActions[i], rStates[i], rStatus[i], rNext[i] = r.RequestID, r.AppID, r.ActionID, string(r.State), int32(r.HTTPStatus), r.NextCheckAt
		rReasons[i] = CleanText(r.Reason, 4096)
	}
	// The update's trigger locks the lanes of the heads it finished in one
	// statement, in the order the enqueue triggers lock lanes in, so a batch
	// and an enqueue never wait for each other in a circle.
	row := db.QueryRow(ctx, s.q(resultRecordSQL),
		actionIDs, jobIDs, jobAtt, started, durations, sent, statuses, reqIDs, outcomes, errs, states, setLastErr, lastErrs, excerpts, workers,
		rIDs, rApps, rActions, rStates, rStatus, rNext, rReasons)
	var updated, inserted, upserted int
	if err := row.Scan(&updated, &inserted, &upserted); err != nil {
		return fmt.Errorf("record %d results: %w", n, mapError(err))
	}
	if updated != n || inserted != n {
		return fmt.Errorf("record %d results: %d of their actions exist: %w", n, updated, ErrNotFound)
	}
	return nil
}
