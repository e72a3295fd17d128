package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// TxDB is a DBTX that can begin a transaction: *pgxpool.Pool, *pgx.Conn, or
// a pgx.Tx, whose Begin makes a savepoint. Methods whose statements must
// commit together, or that commit in bounded batches, take one.
type TxDB interface {
	DBTX
	Begin(ctx context.Context) (pgx.Tx, error)
}

// ActionRunning is the state listings show for a queued or retrying action
// whose River job is running, as the action_history view does. It is derived
// from River's job state and never stored.
const ActionRunning ActionState = "running"

// ActionFilter selects actions; zero values match everything. States may
// include ActionRunning.
type ActionFilter struct {
	// IDs selects these actions only.
	IDs       []int64
	AppID     string
	Kind      string
	States    []ActionState
	Lane      string
	CreatedBy string
	// ReplayOf selects the replays of one action.
	ReplayOf *int64
	// Author selects the actions whose payload names this author
	// (author.id): the customer of a conversation kind.
	Author string
	// Text selects the actions whose payload contains it, in any case. No
	// index serves it: bound the time range.
	Text string
	// From and To bound created_at: From <= created_at < To.
	From time.Time
	To   time.Time
}

// sqlWhere accumulates conditions and their arguments.
type sqlWhere struct {
	conds []string
	args  []any
	// job is set when a condition names the River job (aliased j).
	job bool
}

// arg adds an argument and returns its placeholder.
func (w *sqlWhere) arg(v any) string {
	w.args = append(w.args, v)
	return fmt.Sprintf("$%d", len(w.args))
}

func (w *sqlWhere) add(cond string) { w.conds = append(w.conds, cond) }

func (w *sqlWhere) String() string {
	if len(w.conds) == 0 {
		return "true"
	}
	return strings.Join(w.conds, " AND ")
}

// apply adds f's conditions for an action aliased a joined with its River
// job aliased j.
func (f *ActionFilter) apply(w *sqlWhere) {
	if f.IDs != nil {
		w.add("a.id = ANY(" + w.arg(f.IDs) + "::bigint[])")
	}
	if f.AppID != "" {
		w.add("a.app_id = " + w.arg(f.AppID))
	}
	if f.Kind != "" {
		w.add("a.kind = " + w.arg(f.Kind))
	}
	if f.Lane != "" {
		w.add("a.lane = " + w.arg(f.Lane))
	}
	if f.CreatedBy != "" {
		w.add("a.created_by = " + w.arg(f.CreatedBy))
	}
	if f.ReplayOf != nil {
		w.add("a.replay_of = " + w.arg(*f.ReplayOf))
	}
	if f.Author != "" {
		w.add("a.payload -> 'author' ->> 'id' = " + w.arg(f.Author))
		if f.AppID == "" {
			// The author index leads with the app: naming every app (each
			// action's app exists and is never deleted) lets the planner
			// enter it once per app, where it would read every action of
			// the range.
			w.add("a.app_id IN (SELECT id FROM botq.app)")
		}
	}
	if f.Text != "" {
		w.add("a.payload::text ILIKE " + w.arg("%"+likeEscape(f.Text)+"%"))
	}
	if !f.From.IsZero() {
		w.add("a.created_at >= " + w.arg(f.From))
	}
	if !f.To.IsZero() {
		w.add("a.created_at < " + w.arg(f.To))
	}
	if len(f.States) > 0 {
		// Stored states stay a plain `state IN` so the partial indexes of
		// one state serve them; queued and retrying exclude, and running
		// includes, actions whose job is running.
		var plain []string
		var ors []string
		for _, s := range f.States {
			switch s {
			case ActionRunning:
				ors = append(ors, "(a.state IN ('queued', 'retrying') AND j.state = 'running')")
				w.job = true
			case ActionQueued, ActionRetrying:
				ors = append(ors, "(a.state = "+w.arg(string(s))+" AND j.state IS DISTINCT FROM 'running')")
				w.job = true
			default:
				plain = append(plain, string(s))
			}
		}
		if len(plain) > 0 {
			ors = append(ors, statesIn(w, plain))
		}
		w.add("(" + strings.Join(ors, " OR ") + ")")
	}
	if f.AppID == "" {
		f.boundFinish(w)
	}
}

// boundFinish adds that the actions finished at or after From, when every
// state selected is final: a final action finished after it was created,
// so this changes no answer. It bounds the scan of the failures' index by
// finish time (action_failed_idx), which the planner picks for every app's
// failures, and for one app's when it must read each matching row (a
// count, a bulk replay): without the bound it read every failure kept. A
// page of one app's actions (ActionList, ActionPage) does without it: the
// failures' index by app and creation time gives the page's ids alone, and
// the bound would tempt the planner to intersect every app's failures
// since From with the app's actions of the range.
func (f *ActionFilter) boundFinish(w *sqlWhere) {
	if !f.From.IsZero() && len(f.States) > 0 && allFinal(f.States) {
		w.add("a.finished_at >= " + w.arg(f.From))
	}
}

// applyToCount is apply for a statement that reads every matching action
// rather than a page: the finish time is bounded for one app too.
func (f *ActionFilter) applyToCount(w *sqlWhere) {
	f.apply(w)
	if f.AppID != "" {
		f.boundFinish(w)
	}
}

// allFinal reports whether every state of states is final.
func allFinal(states []ActionState) bool {
	for _, s := range states {
		if !s.Final() {
			return false
		}
	}
	return true
}

// statesIn is the condition that an action aliased a is in one of states.
// Stored states are written into the statement rather than passed as an
// argument: the partial indexes of one state (action_failed_app_idx,
// action_unknown_idx) serve only a plan that can see the state, and
// Postgres' generic plan of a prepared statement, which pgx's statement
// cache leads to, sees no argument.
func statesIn(w *sqlWhere, states []string) string {
	for _, st := range states {
		if !slices.Contains(ActionStates, ActionState(st)) {
			return "a.state = ANY(" + w.arg(states) + "::text[])"
		}
	}
	return "a.state IN ('" + strings.Join(states, "', '") + "')"
}

// likeEscape escapes LIKE's wildcards (and its escape character) in s.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ValidActionState reports whether s can be used in an ActionFilter.
func ValidActionState(s string) bool {
	if ActionState(s) == ActionRunning {
		return true
	}
	for _, st := range ActionStates {
		if string(st) == s {
			return true
		}
	}
	return false
}

// actionViewColumns are actionColumns for an action aliased a joined with
// its River job aliased j, with the derived running state.
var actionViewColumns = strings.Replace(qualify(actionColumns, "a"), " a.state,",
	" CASE WHEN a.state IN ('queued', 'retrying') AND j.state = 'running' THEN 'running' ELSE a.state END,", 1)

// ActionListParams pages through actions matching Filter, newest first (or
// oldest first with Ascending). AfterID continues after the last action of
// the previous page; Limit defaults to 100.
type ActionListParams struct {
	Filter    ActionFilter
	AfterID   int64
	Ascending bool
	Limit     int
}

// ActionList returns one page of actions. An action whose River job is
// running has State ActionRunning. More is true when another page follows.
func (s *Store) ActionList(ctx context.Context, db DBTX, p ActionListParams) (actions []*Action, more bool, err error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	var w sqlWhere
	p.Filter.apply(&w)
	order := "DESC"
	if p.Ascending {
		order = "ASC"
		if p.AfterID > 0 {
			w.add("a.id > " + w.arg(p.AfterID))
		}
	} else if p.AfterID > 0 {
		w.add("a.id < " + w.arg(p.AfterID))
	}
	rows, err := db.Query(ctx, s.q(actionPageSQL(&w, "a.id "+order, p.Limit+1)), w.args...)
	if err != nil {
		return nil, false, fmt.Errorf("list actions: %w", mapError(err))
	}
	actions, err = collectActions(rows)
	if err != nil {
		return nil, false, fmt.Errorf("list actions: %w", mapError(err))
	}
	if len(actions) > p.Limit {
		return actions[:p.Limit], true, nil
	}
	return actions, false, nil
}

// actionPageSQL selects a page of the actions matching w, in order, at most
// limit. The page's ids are chosen first, then only their rows are read:
// an index that holds the ids (action_failed_app_idx, action_lane_idx)
// answers the choice alone, where reading every matching row to sort it
// would cost as many table pages as the range has rows. The choice joins
// the River job only when a condition needs it: Postgres drops an unused
// join, but not before it has ruled out reading the ids from the index
// alone.
func actionPageSQL(w *sqlWhere, order string, limit int) string {
	job := ""
	if w.job {
		job = riverJobJoin
	}
	return `
		SELECT ` + actionViewColumns + `
		FROM (
			SELECT a.id FROM botq.action a
			` + job + `
			WHERE ` + w.String() + `
			ORDER BY ` + order + `
			LIMIT ` + w.arg(limit) + `
		) page
		JOIN botq.action a ON a.id = page.id
		` + riverJobJoin + `
		ORDER BY ` + order
}

// ActionView returns the action with id as listings show it (ActionRunning
// while its job runs), or ErrNotFound.
func (s *Store) ActionView(ctx context.Context, db DBTX, id int64) (*Action, error) {
	a, err := scanAction(db.QueryRow(ctx, s.q(`
		SELECT `+actionViewColumns+`
		FROM botq.action a
		`+riverJobJoin+`
		WHERE a.id = $1`), id))
	if err != nil {
		return nil, fmt.Errorf("get action %d: %w", id, mapError(err))
	}
	return a, nil
}

// ActionCount counts the actions matching f.
func (s *Store) ActionCount(ctx context.Context, db DBTX, f ActionFilter) (int64, error) {
	var w sqlWhere
	f.applyToCount(&w)
	var n int64
	err := db.QueryRow(ctx, s.q(`
		SELECT count(*) FROM botq.action a
		`+riverJobJoin+`
		WHERE `+w.String()), w.args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count actions: %w", mapError(err))
	}
	return n, nil
}

// RequestFilter selects request records; zero values match everything.
type RequestFilter struct {
	AppID    string
	Kind     string // the kind of the action that made the request
	States   []RequestState
	Origin   string // BOT or KHOROS
	ActionID *int64
	Lane     string // the lane of the action that made the request
	// Conversation selects the records whose payload is in this
	// conversation (the default lane of a conversation kind,
	// network/externalId/authorId): KHOROS-origin records, which belong to
	// no action. No index serves it: bound the app and the time range.
	Conversation string
	// From and To bound first_seen_at: From <= first_seen_at < To.
	From time.Time
	To   time.Time
}

func (f *RequestFilter) apply(w *sqlWhere) {
	if f.AppID != "" {
		w.add("r.app_id = " + w.arg(f.AppID))
	}
	if f.Kind != "" {
		w.add("a.kind = " + w.arg(f.Kind))
	}
	if len(f.States) > 0 {
		states := make([]string, len(f.States))
		for i, st := range f.States {
			states[i] = string(st)
		}
		w.add("r.state = ANY(" + w.arg(states) + "::text[])")
	}
	if f.Origin != "" {
		w.add("r.origin = " + w.arg(f.Origin))
	}
	if f.ActionID != nil {
		w.add("r.action_id = " + w.arg(*f.ActionID))
	}
	if f.Lane != "" {
		// A record's app is its action's: saying so lets the lane index
		// be entered by app and lane when the app is given, rather than
		// read whole for the lane.
		w.add("a.lane = " + w.arg(f.Lane))
		w.add("a.app_id = r.app_id")
	}
	if f.Conversation != "" {
		w.add("botq.payload_lane('respond', r.payload) = " + w.arg(f.Conversation))
	}
	if !f.From.IsZero() {
		w.add("r.first_seen_at >= " + w.arg(f.From))
	}
	if !f.To.IsZero() {
		w.add("r.first_seen_at < " + w.arg(f.To))
	}
}

// ValidRequestState reports whether s is a request state.
func ValidRequestState(s string) bool {
	switch RequestState(s) {
	case RequestPending, RequestSuccess, RequestError, RequestExpired, RequestAbsent:
		return true
	}
	return false
}

// RequestItem is a request record with the kind of the action that made it
// ("" for records of no known action).
type RequestItem struct {
	Request
	Kind string
}

// requestItemColumns are requestColumns for a request aliased r joined with
// its action aliased a (qualify cannot rewrite coalesce(x, 0)).
const requestItemColumns = `r.request_id, r.app_id, r.action_id, r.origin, r.state, r.details, r.payload,
	coalesce(r.http_status, 0), r.khoros_created_at, r.khoros_completed_at, r.khoros_updated_at, r.first_seen_at,
	r.last_checked_at, r.next_check_at, r.check_count, r.finalized_at, coalesce(r.reason, ''), coalesce(a.kind, '')`

func scanRequestItem(row pgx.Row, it *RequestItem) error {
	r := &it.Request
	var state string
	err := row.Scan(&r.RequestID, &r.AppID, &r.ActionID, &r.Origin, &state, &r.Details, &r.Payload, &r.HTTPStatus,
		&r.KhorosCreatedAt, &r.KhorosCompletedAt, &r.KhorosUpdatedAt, &r.FirstSeenAt, &r.LastCheckedAt, &r.NextCheckAt,
		&r.CheckCount, &r.FinalizedAt, &r.Reason, &it.Kind)
	r.State = RequestState(state)
	return err
}

// RequestCursor is where a page of requests ends: listings are ordered by
// first_seen_at, then request_id.
type RequestCursor struct {
	FirstSeenAt time.Time
	RequestID   string
}

// RequestListParams pages through request records matching Filter, newest
// first. After continues after the last record of the previous page; Limit
// defaults to 100.
type RequestListParams struct {
	Filter RequestFilter
	After  *RequestCursor
	Limit  int
}

// RequestList returns one page of request records. More is true when
// another page follows.
func (s *Store) RequestList(ctx context.Context, db DBTX, p RequestListParams) (items []*RequestItem, more bool, err error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	var w sqlWhere
	p.Filter.apply(&w)
	if p.After != nil {
		w.add("(r.first_seen_at, r.request_id) < (" + w.arg(p.After.FirstSeenAt) + ", " + w.arg(p.After.RequestID) + ")")
	}
	limit := w.arg(p.Limit + 1)
	rows, err := db.Query(ctx, s.q(`
		SELECT `+requestItemColumns+`
		FROM botq.request r
		LEFT JOIN botq.action a ON a.id = r.action_id
		WHERE `+w.String()+`
		ORDER BY r.first_seen_at DESC, r.request_id DESC
		LIMIT `+limit), w.args...)
	if err != nil {
		return nil, false, fmt.Errorf("list requests: %w", mapError(err))
	}
	defer rows.Close()
	for rows.Next() {
		it := &RequestItem{}
		if err := scanRequestItem(rows, it); err != nil {
			return nil, false, fmt.Errorf("list requests: %w", err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("list requests: %w", mapError(err))
	}
	if len(items) > p.Limit {
		return items[:p.Limit], true, nil
	}
	return items, false, nil
}

// RequestView returns one request record with its action's kind, or
// ErrNotFound.
func (s *Store) RequestView(ctx context.Context, db DBTX, requestID string) (*RequestItem, error) {
	it := &RequestItem{}
	err := scanRequestItem(db.QueryRow(ctx, s.q(`
		SELECT `+requestItemColumns+`
		FROM botq.request r
		LEFT JOIN botq.action a ON a.id = r.action_id
		WHERE r.request_id = $1`), requestID), it)
	if err != nil {
		return nil, fmt.Errorf("get request %q: %w", requestID, mapError(err))
	}
	return it, nil
}

// RequestCount counts the request records matching f.
func (s *Store) RequestCount(ctx context.Context, db DBTX, f RequestFilter) (int64, error) {
	var w sqlWhere
	f.apply(&w)
	join := ""
	if f.Kind != "" || f.Lane != "" {
		join = "LEFT JOIN botq.action a ON a.id = r.action_id"
	}
	var n int64
	if err := db.QueryRow(ctx, s.q(`SELECT count(*) FROM botq.request r `+join+` WHERE `+w.String()), w.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count requests: %w", mapError(err))
	}
	return n, nil
}

// EventFilter selects events; zero values match everything.
type EventFilter struct {
	AppID    string
	ActionID *int64
	// ActionIDs selects the events of any of these actions.
	ActionIDs []int64
	Kind      string
	Actor     string
	// From and To bound at: From <= at < To.
	From time.Time
	To   time.Time
}

// EventQueryParams pages through events matching Filter, newest first.
// AfterID continues after the last event of the previous page; Limit
// defaults to 100.
type EventQueryParams struct {
	Filter  EventFilter
	AfterID int64
	Limit   int
}

// EventQuery returns one page of events. More is true when another page
// follows.
func (s *Store) EventQuery(ctx context.Context, db DBTX, p EventQueryParams) (events []*Event, more bool, err error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	var w sqlWhere
	f := p.Filter
	if f.AppID != "" {
		w.add("app_id = " + w.arg(f.AppID))
	}
	if f.ActionID != nil {
		w.add("action_id = " + w.arg(*f.ActionID))
	}
	if f.ActionIDs != nil {
		w.add("action_id = ANY(" + w.arg(f.ActionIDs) + "::bigint[])")
	}
	if f.Kind != "" {
		w.add("kind = " + w.arg(f.Kind))
	}
	if f.Actor != "" {
		w.add("actor = " + w.arg(f.Actor))
	}
	if !f.From.IsZero() {
		w.add("at >= " + w.arg(f.From))
	}
	if !f.To.IsZero() {
		w.add("at < " + w.arg(f.To))
	}
	if p.AfterID > 0 {
		w.add("id < " + w.arg(p.AfterID))
	}
	limit := w.arg(p.Limit + 1)
	rows, err := db.Query(ctx, s.q(`
		SELECT id, at, coalesce(app_id, ''), action_id, kind, actor, coalesce(reason, ''), before, after
		FROM botq.event
		WHERE `+w.String()+`
		ORDER BY id DESC
		LIMIT `+limit), w.args...)
	if err != nil {
		return nil, false, fmt.Errorf("query events: %w", mapError(err))
	}
	defer rows.Close()
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.ID, &e.At, &e.AppID, &e.ActionID, &e.Kind, &e.Actor, &e.Reason, &e.Before, &e.After); err != nil {
			return nil, false, fmt.Errorf("query events: %w", err)
		}
		events = append(events, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("query events: %w", mapError(err))
	}
	if len(events) > p.Limit {
		return events[:p.Limit], true, nil
	}
	return events, false, nil
}

// AppStatus is an app with the state of its queue.
type AppStatus struct {
	App
	// QueueDepth counts actions not yet executed: queued, retrying, unknown.
	QueueDepth int64
	// OldestQueued is the creation time of the oldest of them.
	OldestQueued *time.Time
	// PendingRequests counts request records still PENDING at Khoros.
	PendingRequests int64
	OldestPending   *time.Time
}

// AppStatusList returns every app (appID "") or one app with its queue
// state, by id. One app that does not exist is ErrNotFound.
func (s *Store) AppStatusList(ctx context.Context, db DBTX, appID string) ([]*AppStatus, error) {
	rows, err := db.Query(ctx, s.q(`
		SELECT `+qualify(appColumns, "p")+`,
		       coalesce(q.depth, 0), q.oldest, coalesce(r.pending, 0), r.oldest
		FROM botq.app p
		LEFT JOIN (
			SELECT app_id, count(*) AS depth, min(created_at) AS oldest
			FROM botq.action
			WHERE state IN ('queued', 'retrying', 'unknown') AND ($1 = '' OR app_id = $1)
			GROUP BY app_id
		) q ON q.app_id = p.id
		LEFT JOIN (
			SELECT app_id, count(*) AS pending, min(first_seen_at) AS oldest
			FROM botq.request
			WHERE state = 'PENDING' AND ($1 = '' OR app_id = $1)
			GROUP BY app_id
		) r ON r.app_id = p.id
		WHERE $1 = '' OR p.id = $1
		ORDER BY p.id`), appID)
	if err != nil {
		return nil, fmt.Errorf("list app status: %w", mapError(err))
	}
	defer rows.Close()
	var out []*AppStatus
	for rows.Next() {
		var st AppStatus
		dest := append(st.App.scanFields(), &st.QueueDepth, &st.OldestQueued, &st.PendingRequests, &st.OldestPending)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("list app status: %w", err)
		}
		out = append(out, &st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list app status: %w", mapError(err))
	}
	if appID != "" && len(out) == 0 {
		return nil, fmt.Errorf("get app %q: %w", appID, ErrNotFound)
	}
	return out, nil
}

// ActionCount is one row of ActionCounts.
type ActionCount struct {
	AppID string
	Kind  string
	State ActionState
	Count int64
}

// ActionCounts counts actions by app, kind and stored state. It reads the
// whole table; callers (metrics) cache it.
func (s *Store) ActionCounts(ctx context.Context, db DBTX) ([]ActionCount, error) {
	rows, err := db.Query(ctx, s.q(`SELECT app_id, kind, state, count(*) FROM botq.action GROUP BY app_id, kind, state ORDER BY app_id, kind, state`))
	if err != nil {
		return nil, fmt.Errorf("count actions: %w", mapError(err))
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ActionCount, error) {
		var c ActionCount
		err := r.Scan(&c.AppID, &c.Kind, &c.State, &c.Count)
		return c, err
	})
}
