package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// A replay is a new action with the original's app, kind, payload and lane,
// linked to it by replay_of and created by the operator; the original is
// never changed. Each replay also writes one `replay` event (actor, reason,
// before: the original, after: the new action).

// ReplayOptions say who replays, why, and which refusals to lift.
type ReplayOptions struct {
	Actor  string
	Reason string
	// AllowReplayOfReplay lets a replay be replayed again.
	AllowReplayOfReplay bool
	// AllowSucceeded lets an action that succeeded be replayed (sending it
	// again).
	AllowSucceeded bool
	// AllowReplayed lets an action that was replayed already be replayed
	// once more; without it a repeated bulk replay does not send everything
	// twice.
	AllowReplayed bool
	// AllowPossiblySent lets an action cancelled possibly sent be replayed:
	// its first send may have reached the customer (Khoros could not say
	// when it was cancelled), so the replay may deliver it twice.
	AllowPossiblySent bool
}

func (o *ReplayOptions) check() error {
	if o.Actor == "" {
		return &ValidationError{Field: "actor", Message: "botq: replay needs an actor"}
	}
	if o.Reason == "" {
		return &ValidationError{Field: "reason", Message: "botq: replay needs a reason"}
	}
	return nil
}

// Options that lift a replay refusal, as named in ReplayRefusedError.Option.
const (
	ReplayOptionReplayOfReplay = "allow_replay_of_replay"
	ReplayOptionSucceeded      = "allow_succeeded"
	ReplayOptionReplayed       = "allow_replayed"
	ReplayOptionPossiblySent   = "allow_possibly_sent"
)

// ReplayRefusedError says why an action cannot be replayed. Option names
// the ReplayOptions field (snake_case) that would allow it, or is "" when
// nothing does (the action is not finished).
type ReplayRefusedError struct {
	ActionID int64
	State    ActionState
	Reason   string
	Option   string
}

func (e *ReplayRefusedError) Error() string {
	return fmt.Sprintf("action %d cannot be replayed: %s", e.ActionID, e.Reason)
}

// Is makes a refusal match ErrConflict.
func (e *ReplayRefusedError) Is(target error) bool { return target == ErrConflict }

// replayCandidate is an original with what decides whether it may be
// replayed.
type replayCandidate struct {
	action  *Action
	replays int64
}

func (c *replayCandidate) refusal(o *ReplayOptions) *ReplayRefusedError {
	a := c.action
	switch {
	case !a.State.Final():
		return &ReplayRefusedError{ActionID: a.ID, State: a.State,
			Reason: fmt.Sprintf("it is still %s; only finished actions are replayed (cancel it first)", a.State)}
	case a.State == ActionSucceeded && !o.AllowSucceeded:
		return &ReplayRefusedError{ActionID: a.ID, State: a.State, Option: ReplayOptionSucceeded,
			Reason: "it succeeded; replaying it sends it again"}
	case a.PossiblySent && !o.AllowPossiblySent:
		return &ReplayRefusedError{ActionID: a.ID, State: a.State, Option: ReplayOptionPossiblySent,
			Reason: "it was cancelled while its send's fate was unknown and may have reached the customer (possibly sent); replaying it may deliver it twice"}
	case a.ReplayOf != nil && !o.AllowReplayOfReplay:
		return &ReplayRefusedError{ActionID: a.ID, State: a.State, Option: ReplayOptionReplayOfReplay,
			Reason: fmt.Sprintf("it is itself a replay of action %d", *a.ReplayOf)}
	case c.replays > 0 && !o.AllowReplayed:
		return &ReplayRefusedError{ActionID: a.ID, State: a.State, Option: ReplayOptionReplayed,
			Reason: "it was replayed already (" + times(c.replays) + ")"}
	}
	return nil
}

// replayKey derives a replay's idempotency key from the original's: the
// n-th replay of key k is "k#replay-n". A key too long for that gets one
// from the original's id, which is as unique.
func replayKey(a *Action, n int64) string {
	suffix := "#replay-" + strconv.FormatInt(n, 10)
	if len(a.IdempotencyKey)+len(suffix) <= 255 {
		return a.IdempotencyKey + suffix
	}
	return "action-" + strconv.FormatInt(a.ID, 10) + suffix
}

// Replayed is one replay made.
type Replayed struct {
	OriginalID    int64
	OriginalState ActionState
	ActionID      int64
	EventID       int64
}

// ReplaySkipped is an action a bulk replay left alone, and why.
type ReplaySkipped = ReplayRefusedError

const replayLockSQL = `
SELECT ` + actionColumns + `
FROM botq.action
WHERE id = ANY($1)
ORDER BY id
FOR NO KEY UPDATE`

// One aggregate rather than a count per original: with stale statistics the
// planner may scan the table for each correlated count.
const replayCountSQL = `
SELECT replay_of, count(*) FROM botq.action WHERE replay_of = ANY($1) GROUP BY replay_of`

const replayEventsSQL = `
INSERT INTO botq.event (app_id, action_id, kind, actor, reason, before, after)
SELECT app, orig, 'replay', $5, $6,
       jsonb_build_object('action_id', orig, 'state', st),
       jsonb_build_object('action_id', new)
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) WITH ORDINALITY AS t(app, orig, st, new, ord)
ORDER BY ord
RETURNING id`

// ActionReplay replays one action, in one transaction (a savepoint when db
// is a transaction). A refusal is a *ReplayRefusedError naming the option
// that would allow it; an unknown id is ErrNotFound.
func (s *Store) ActionReplay(ctx context.Context, db TxDB, id int64, o ReplayOptions) (*Replayed, error) {
	done, skipped, err := s.ActionReplayMany(ctx, db, []int64{id}, o)
	if err != nil {
		return nil, err
	}
	if len(skipped) > 0 {
		return nil, skipped[0]
	}
	if len(done) == 0 {
		return nil, fmt.Errorf("replay action %d: %w", id, ErrNotFound)
	}
	return &done[0], nil
}

// ActionReplayMany replays the actions with ids in one transaction (a
// savepoint when db is a transaction): those that may be replayed are, the
// others are returned as skipped; unknown ids are ignored. The originals are
// locked, so two concurrent replays of one action never derive the same key.
func (s *Store) ActionReplayMany(ctx context.Context, db TxDB, ids []int64, o ReplayOptions) ([]Replayed, []*ReplaySkipped, error) {
	if err := o.check(); err != nil {
		return nil, nil, err
	}
	var done []Replayed
	var skipped []*ReplaySkipped
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		done, skipped = nil, nil
		rows, err := tx.Query(ctx, s.q(replayLockSQL), ids)
		if err != nil {
			return fmt.Errorf("lock actions to replay: %w", mapError(err))
		}
		locked, err := collectActions(rows)
		if err != nil {
			return fmt.Errorf("lock actions to replay: %w", mapError(err))
		}
		rows, err = tx.Query(ctx, s.q(replayCountSQL), ids)
		if err != nil {
			return fmt.Errorf("count earlier replays: %w", mapError(err))
		}
		counts := map[int64]int64{}
		var orig, n int64
		if _, err := pgx.ForEachRow(rows, []any{&orig, &n}, func() error { counts[orig] = n; return nil }); err != nil {
			return fmt.Errorf("count earlier replays: %w", mapError(err))
		}
		cands := make([]replayCandidate, len(locked))
		for i, a := range locked {
			cands[i] = replayCandidate{action: a, replays: counts[a.ID]}
		}

		var params []ActionInsertParams
		var originals []*Action
		for i := range cands {
			if r := cands[i].refusal(&o); r != nil {
				skipped = append(skipped, r)
				continue
			}
			a := cands[i].action
			id := a.ID
			params = append(params, ActionInsertParams{
				AppID: a.AppID, Kind: a.Kind, Payload: a.Payload, Lane: a.Lane,
				IdempotencyKey: replayKey(a, cands[i].replays+1), ReplayOf: &id, CreatedBy: o.Actor,
			})
			originals = append(originals, a)
		}
		if len(params) == 0 {
			return nil
		}
		res, err := s.ActionInsertMany(ctx, tx, params)
		if err != nil {
			return fmt.Errorf("insert replays: %w", err)
		}
		apps := make([]string, len(res))
		origIDs := make([]int64, len(res))
		states := make([]string, len(res))
		newIDs := make([]int64, len(res))
		for i, r := range res {
			if r.Existed {
				return fmt.Errorf("%w: replay key %q of action %d is taken by action %d", ErrConflict,
					params[i].IdempotencyKey, originals[i].ID, r.Action.ID)
			}
			apps[i], origIDs[i], states[i], newIDs[i] = originals[i].AppID, originals[i].ID, string(originals[i].State), r.Action.ID
		}
		rows, err = tx.Query(ctx, s.q(replayEventsSQL), apps, origIDs, states, newIDs, o.Actor, o.Reason)
		if err != nil {
			return fmt.Errorf("insert replay events: %w", mapError(err))
		}
		eventIDs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("insert replay events: %w", mapError(err))
		}
		done = make([]Replayed, len(res))
		for i := range res {
			done[i] = Replayed{OriginalID: origIDs[i], OriginalState: originals[i].State, ActionID: newIDs[i], EventID: eventIDs[i]}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return done, skipped, nil
}

// notReplayedSQL is true for an action aliased a that has no replay.
const notReplayedSQL = "NOT EXISTS (SELECT 1 FROM botq.action x WHERE x.replay_of = a.id)"

// eligibleSQL is the condition under which an action aliased a may be
// replayed with o; it mirrors replayCandidate.refusal. notReplayed says
// that a has no replay. The condition is built from the options rather than
// parameterised, so that NOT EXISTS plans as an anti-join.
func eligibleSQL(o *ReplayOptions, notReplayed string) string {
	states := "a.state IN ('failed', 'cancelled')"
	if o.AllowSucceeded {
		states = "a.state IN ('failed', 'cancelled', 'succeeded')"
	}
	cond := states
	if !o.AllowPossiblySent {
		cond += " AND NOT a.possibly_sent"
	}
	if !o.AllowReplayOfReplay {
		cond += " AND a.replay_of IS NULL"
	}
	if !o.AllowReplayed {
		cond += " AND " + notReplayed
	}
	return "(" + cond + ")"
}

// ReplayPlan is what a bulk replay would do (or did): how many actions
// match the filter, how many are replayed, and how many are skipped and
// why (by the option that would include them; "unfinished" for actions
// still in progress).
type ReplayPlan struct {
	Matched  int64
	Eligible int64
	Skipped  map[string]int64
	// Sample is the first eligible actions, oldest first.
	Sample []*Action
}

// ActionReplayPlan counts what a bulk replay of the actions matching f with
// options o would replay, and returns the first sample of them.
func (s *Store) ActionReplayPlan(ctx context.Context, db DBTX, f ActionFilter, o ReplayOptions, sample int) (*ReplayPlan, error) {
	var w sqlWhere
	f.applyToCount(&w)
	filter := w.String()
	// Inside an aggregate's FILTER, NOT EXISTS would run once per row; a
	// join against the replayed actions runs once.
	eligible := eligibleSQL(&o, "x.replay_of IS NULL")
	finished := "a.state IN ('failed', 'cancelled')"
	refusedSucceeded := "a.state = 'succeeded'"
	if o.AllowSucceeded {
		finished = "a.state IN ('failed', 'cancelled', 'succeeded')"
		refusedSucceeded = "false"
	}
	// Each refused action counts once, under the first refusal that
	// replayCandidate.refusal gives it.
	refusedPossiblySent := "false"
	if !o.AllowPossiblySent {
		refusedPossiblySent = "a.state = 'cancelled' AND a.possibly_sent"
	}
	refusedReplay := "false"
	if !o.AllowReplayOfReplay {
		refusedReplay = finished + " AND a.replay_of IS NOT NULL AND NOT (" + refusedPossiblySent + ")"
	}
	p := &ReplayPlan{Skipped: map[string]int64{}}
	var unfinished, succeeded, possiblySent, replayOfReplay, replayed int64
	err := db.QueryRow(ctx, s.q(`
		SELECT count(*),
		       count(*) FILTER (WHERE `+eligible+`),
		       count(*) FILTER (WHERE a.state NOT IN ('succeeded', 'failed', 'cancelled')),
		       count(*) FILTER (WHERE `+refusedSucceeded+`),
		       count(*) FILTER (WHERE `+refusedPossiblySent+`),
		       count(*) FILTER (WHERE `+refusedReplay+`)
		FROM botq.action a
		`+riverJobJoin+`
		LEFT JOIN (SELECT DISTINCT replay_of FROM botq.action WHERE replay_of IS NOT NULL) x ON x.replay_of = a.id
		WHERE `+filter), w.args...).Scan(&p.Matched, &p.Eligible, &unfinished, &succeeded, &possiblySent, &replayOfReplay)
	if err != nil {
		return nil, fmt.Errorf("plan replay: %w", mapError(err))
	}
	// Whatever is neither eligible nor refused for the reasons above was
	// replayed already.
	replayed = p.Matched - p.Eligible - unfinished - succeeded - possiblySent - replayOfReplay
	for k, v := range map[string]int64{"unfinished": unfinished, ReplayOptionSucceeded: succeeded,
		ReplayOptionPossiblySent: possiblySent, ReplayOptionReplayOfReplay: replayOfReplay, ReplayOptionReplayed: replayed} {
		if v > 0 {
			p.Skipped[k] = v
		}
	}
	if sample > 0 {
		w.add(eligibleSQL(&o, notReplayedSQL))
		rows, err := db.Query(ctx, s.q(`
			SELECT `+actionViewColumns+`
			FROM botq.action a
			`+riverJobJoin+`
			WHERE `+w.String()+`
			ORDER BY a.id
			LIMIT `+w.arg(sample)), w.args...)
		if err != nil {
			return nil, fmt.Errorf("plan replay: %w", mapError(err))
		}
		if p.Sample, err = collectActions(rows); err != nil {
			return nil, fmt.Errorf("plan replay: %w", mapError(err))
		}
	}
	return p, nil
}

// ReplayBulkParams replays every action matching Filter that may be replayed
// with Options.
type ReplayBulkParams struct {
	Filter  ActionFilter
	Options ReplayOptions
	// BatchSize bounds the actions replayed per transaction (default 500).
	BatchSize int
	// Progress, when set, is called after each batch with the number of
	// actions replayed so far and the total expected.
	Progress func(done, total int64)
}

// ReplayBulkResult is what a bulk replay did.
type ReplayBulkResult struct {
	Plan     *ReplayPlan
	Replayed int64
	// Skipped counts actions that became ineligible between the plan and
	// their batch (another operator replayed them meanwhile).
	Skipped int64
	// FirstIDs are the first new actions (at most 100), for the operator to
	// follow.
	FirstIDs []int64
}

// ActionReplayBulk replays every eligible action matching p.Filter, oldest
// first, in batches of p.BatchSize, each in its own transaction (a
// savepoint when db is a transaction), so a huge replay holds no long locks
// and a failure keeps the batches committed before it. Actions created
// after the replay started (its own replays among them) are never picked up.
func (s *Store) ActionReplayBulk(ctx context.Context, db TxDB, p ReplayBulkParams) (*ReplayBulkResult, error) {
	if err := p.Options.check(); err != nil {
		return nil, err
	}
	if p.BatchSize <= 0 {
		p.BatchSize = 500
	}
	var maxID int64
	if err := db.QueryRow(ctx, s.q(`SELECT coalesce(max(id), 0) FROM botq.action`)).Scan(&maxID); err != nil {
		return nil, fmt.Errorf("replay: %w", mapError(err))
	}
	plan, err := s.ActionReplayPlan(ctx, db, p.Filter, p.Options, 0)
	if err != nil {
		return nil, err
	}
	res := &ReplayBulkResult{Plan: plan}
	if p.Progress != nil {
		p.Progress(0, plan.Eligible)
	}
	var after int64
	for {
		var w sqlWhere
		p.Filter.applyToCount(&w)
		w.add(eligibleSQL(&p.Options, notReplayedSQL))
		w.add("a.id > " + w.arg(after))
		w.add("a.id <= " + w.arg(maxID))
		rows, err := db.Query(ctx, s.q(`
			SELECT a.id FROM botq.action a
			`+riverJobJoin+`
			WHERE `+w.String()+`
			ORDER BY a.id
			LIMIT `+w.arg(p.BatchSize)), w.args...)
		if err != nil {
			return res, fmt.Errorf("select actions to replay: %w", mapError(err))
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return res, fmt.Errorf("select actions to replay: %w", mapError(err))
		}
		if len(ids) == 0 {
			return res, nil
		}
		after = ids[len(ids)-1]
		done, skipped, err := s.ActionReplayMany(ctx, db, ids, p.Options)
		if err != nil {
			return res, fmt.Errorf("replay batch after action %d: %w", ids[0]-1, err)
		}
		res.Replayed += int64(len(done))
		res.Skipped += int64(len(skipped))
		for _, d := range done {
			if len(res.FirstIDs) < 100 {
				res.FirstIDs = append(res.FirstIDs, d.ActionID)
			}
		}
		if p.Progress != nil {
			p.Progress(res.Replayed, plan.Eligible)
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
}

// IsReplayRefused returns the refusal in err, if any.
func IsReplayRefused(err error) (*ReplayRefusedError, bool) {
	var r *ReplayRefusedError
	ok := errors.As(err, &r)
	return r, ok
}

// times says how often: once, twice, 3 times.
func times(n int64) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}
