package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

const conv = `"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"p1","scope":"PRIVATE"},"author":{"id":"a1"}`

// Every malformed SQL enqueue is refused at the INSERT with a SQLSTATE and a
// message naming the field, and nothing is stored.
func TestMalformedSQLInsertsAreRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		app       any // nil means NULL
		kind      any
		payload   any
		key       any
		lane      any
		extra     string // more columns: ", state" with value
		wantCode  string
		wantField string
	}{
		{name: "unknown kind", kind: "reply", payload: `{}`, wantCode: "22023", wantField: "kind"},
		{name: "unknown app", app: "nobody", wantCode: "23503", wantField: "app_id"},
		{name: "null app", app: nil, wantCode: "23502", wantField: "app_id"},
		{name: "null kind", kind: nil, wantCode: "23502", wantField: "kind"},
		{name: "null payload", payload: nil, wantCode: "23502", wantField: "payload"},
		{name: "payload is an array", payload: `[1,2]`, wantCode: "22023", wantField: "payload"},
		{name: "payload is a string", payload: `"hi"`, wantCode: "22023", wantField: "payload"},
		{name: "no coordinate", payload: `{"author":{"id":"a"},"text":"x"}`, wantCode: "22023", wantField: "payload.coordinate"},
		{name: "coordinate not an object", payload: `{"coordinate":"x","author":{"id":"a"},"text":"x"}`, wantCode: "22023", wantField: "payload.coordinate"},
		{name: "no networkKey", payload: `{"coordinate":{"companyKey":"c","externalId":"e"},"author":{"id":"a"},"text":"x"}`, wantCode: "22023", wantField: "payload.coordinate.networkKey"},
		{name: "bad scope", payload: `{"coordinate":{"companyKey":"c","networkKey":"n","externalId":"e","scope":"SECRET"},"author":{"id":"a"},"text":"x"}`, wantCode: "22023", wantField: "payload.coordinate.scope"},
		{name: "no author id", payload: `{"coordinate":{"companyKey":"c","networkKey":"n","externalId":"e"},"author":{},"text":"x"}`, wantCode: "22023", wantField: "payload.author.id"},
		{name: "author id is a number", payload: `{"coordinate":{"companyKey":"c","networkKey":"n","externalId":"e"},"author":{"id":7},"text":"x"}`, wantCode: "22023", wantField: "payload.author.id"},
		{name: "message without content", payload: `{` + conv + `}`, wantCode: "22023", wantField: "payload"},
		{name: "text is a number", payload: `{` + conv + `,"text":42}`, wantCode: "22023", wantField: "payload.text"},
		{name: "text over the channel limit", payload: `{` + conv + `,"text":"` + strings.Repeat("x", 2001) + `"}`, wantCode: "22001", wantField: "payload.text"},
		{name: "unknown respond type", payload: `{` + conv + `,"type":"shout","text":"x"}`, wantCode: "22023", wantField: "payload.type"},
		{name: "list with passthrough", payload: `{` + conv + `,"list":{},"payload":"raw"}`, wantCode: "22023", wantField: "payload.payload"},
		{name: "media without url", payload: `{` + conv + `,"media":[{"mediaType":"IMAGE"}]}`, wantCode: "22023", wantField: "payload.media[0].url"},
		{name: "media type unknown", payload: `{` + conv + `,"media":[{"url":"https://x/y.png","mediaType":"GIF"}]}`, wantCode: "22023", wantField: "payload.media[0].mediaType"},
		{name: "priority is a string", kind: "priority", payload: `{` + conv + `,"newPriority":"high"}`, wantCode: "22023", wantField: "payload.newPriority"},
		{name: "priority out of range", kind: "priority", payload: `{` + conv + `,"newPriority":9}`, wantCode: "22023", wantField: "payload.newPriority"},
		{name: "priority with another type", kind: "priority", payload: `{` + conv + `,"type":"tag","newPriority":1}`, wantCode: "22023", wantField: "payload.type"},
		{name: "empty tagIds", kind: "tag", payload: `{` + conv + `,"tagIds":[]}`, wantCode: "22023", wantField: "payload.tagIds"},
		{name: "tag id not an integer", kind: "tag", payload: `{` + conv + `,"tagIds":[1,"two"]}`, wantCode: "22023", wantField: "payload.tagIds[1]"},
		{name: "workqueue without queue", kind: "workqueue", payload: `{` + conv + `}`, wantCode: "22023", wantField: "payload.newWorkQueue"},
		{name: "control owner unknown", kind: "control", payload: `{` + conv + `,"owner":{"type":"HUMAN"}}`, wantCode: "22023", wantField: "payload.owner.type"},
		{name: "control to a bot without appId", kind: "control", payload: `{` + conv + `,"owner":{"type":"BOT"}}`, wantCode: "22023", wantField: "payload.owner.appId"},
		{name: "empty note", kind: "note", payload: `{` + conv + `,"note":"  "}`, wantCode: "22023", wantField: "payload.note"},
		{name: "form without comment", kind: "form", payload: `{` + conv + `,"secureFormId":"f"}`, wantCode: "22023", wantField: "payload.comment"},
		{name: "registration with a bad callback", kind: "registration_create", payload: `{"companyKey":"c","platform":"LITHIUM","networkKey":"n","externalId":"e","name":"b","callbackUrl":"ftp://x","credentials":{"type":"BASIC_AUTH","identity":"u","secret":"s"}}`, wantCode: "22023", wantField: "payload.callbackUrl"},
		{name: "registration credentials type", kind: "registration_create", payload: `{"companyKey":"c","platform":"LITHIUM","networkKey":"n","externalId":"e","name":"b","callbackUrl":"https://x","credentials":{"type":"TOKEN","identity":"u","secret":"s"}}`, wantCode: "22023", wantField: "payload.credentials.type"},
		{name: "registration for another app", kind: "registration_update", payload: `{"companyKey":"c","platform":"LITHIUM","networkKey":"n","externalId":"e","appId":"other","name":"b","callbackUrl":"https://x","credentials":{"type":"HMAC","identity":"u","secret":"s"}}`, wantCode: "22023", wantField: "payload.appId"},
		{name: "unknown mode", kind: "mode", payload: `{"networkKey":"n","externalId":"e","mode":"SLEEP"}`, wantCode: "22023", wantField: "payload.mode"},
		{name: "token refresh with a payload", kind: "token_refresh", payload: `{"token":"x"}`, wantCode: "22023", wantField: "payload"},
		{name: "empty lane", lane: "", wantCode: "22023", wantField: "lane"},
		{name: "lane with a newline", lane: "a\nb", wantCode: "22023", wantField: "lane"},
		{name: "key too long", key: strings.Repeat("k", 300), wantCode: "22023", wantField: "idempotency_key"},
		{name: "state set by the caller", extra: "succeeded", wantCode: "22023", wantField: "state"},
		{name: "payload over 256 KiB", payload: `{` + conv + `,"text":"x","padding":"` + strings.Repeat("p", 270000) + `"}`, wantCode: "54000", wantField: "payload"},
		{name: "not JSON", payload: `{"text": `, wantCode: "22P02"},
		{name: "NUL character", payload: `{` + conv + `,"text":"a\u0000b"}`, wantCode: "22P05"},
	}
	ctx := context.Background()
	s := storetest.Store(t)
	tx := storetest.Tx(t)
	appID := storetest.App(ctx, t, s, tx, nil)
	count := func() (n int) {
		require.NoError(t, tx.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s.action) + (SELECT count(*) FROM %[1]s.river_job)`, s.Schema())).Scan(&n))
		return n
	}
	before := count()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, kind, payload, key, lane := any(appID), any("respond"), any(`{`+conv+`,"text":"hi"}`), any("k-"+tt.name), any(nil)
			if tt.name == "null app" || tt.app != nil {
				app = tt.app
			}
			if tt.name == "null kind" || tt.kind != nil {
				kind = tt.kind
			}
			if tt.name == "null payload" || tt.payload != nil {
				payload = tt.payload
			}
			if tt.key != nil {
				key = tt.key
			}
			if tt.name == "empty lane" || tt.lane != nil {
				lane = tt.lane
			}
			state := "queued"
			if tt.extra != "" {
				state = tt.extra
			}
			sp, err := tx.Begin(ctx)
			require.NoError(t, err)
			_, err = sp.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload, idempotency_key, lane, state) VALUES ($1, $2, $3::text::jsonb, $4, $5, $6)`, s.Schema()),
				app, kind, payload, key, lane, state)
			require.NoError(t, sp.Rollback(ctx))
			var pgErr *pgconn.PgError
			require.True(t, errors.As(err, &pgErr), "want a Postgres error, got %v", err)
			require.Equal(t, tt.wantCode, pgErr.Code, pgErr.Message)
			if tt.wantField != "" {
				require.Equal(t, tt.wantField, pgErr.ColumnName)
				require.Contains(t, pgErr.Message, tt.wantField)
				require.True(t, strings.HasPrefix(pgErr.Message, "botq: "), pgErr.Message)
			}
		})
	}
	require.Equal(t, before, count(), "nothing was stored")
	require.GreaterOrEqual(t, len(tests), 20)
}

// A text reply is checked by a one-expression fast path (payload_respond_plain)
// and everything else by payload_validate. For every payload, whichever path
// it takes, the INSERT must store what payload_validate returns or refuse it
// as payload_validate does: the fast path may only accept what the full
// check accepts, and must add the same type.
func TestRespondFastPathAgrees(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.Store(t)
	tx := storetest.Tx(t)
	appID := storetest.App(ctx, t, s, tx, nil)

	base := func() map[string]any {
		return map[string]any{
			"coordinate": map[string]any{"companyKey": "acme", "networkKey": "facebook", "externalId": "p1", "scope": "PRIVATE"},
			"author":     map[string]any{"id": "a1"},
			"text":       "hi",
		}
	}
	const absent = "<absent>"
	paths := [][]string{
		{"coordinate"}, {"coordinate", "companyKey"}, {"coordinate", "networkKey"}, {"coordinate", "externalId"},
		{"coordinate", "scope"}, {"coordinate", "botId"}, {"coordinate", "messageId"}, {"author"}, {"author", "id"},
		{"text"}, {"type"}, {"media"}, {"list"}, {"payload"}, {"richContent"}, {"processSynchronously"},
	}
	values := []any{
		absent, nil, "", " ", "x", "PRIVATE", "PUBLIC", "message", "typing_start", "instagram", "SMS", "nowhere",
		0, 1.5, true, map[string]any{}, []any{}, map[string]any{"id": "a"}, []any{map[string]any{"url": "https://x/y.png"}},
		strings.Repeat("t", 1000), strings.Repeat("t", 1001), strings.Repeat("t", 2001), strings.Repeat("t", 270000),
	}
	set := func(p map[string]any, path []string, v any) bool {
		for _, k := range path[:len(path)-1] {
			next, ok := p[k].(map[string]any)
			if !ok {
				return false
			}
			p = next
		}
		if v == absent {
			delete(p, path[len(path)-1])
		} else {
			p[path[len(path)-1]] = v
		}
		return true
	}
	var payloads []map[string]any
	for _, path := range paths {
		for _, v := range values {
			if p := base(); set(p, path, v) {
				payloads = append(payloads, p)
			}
		}
	}
	// Pairs: a text length against each network's limit, and each field
	// mutation on top of a mutated network.
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 400 {
		p := base()
		for range 2 + rnd.IntN(2) {
			set(p, paths[rnd.IntN(len(paths))], values[rnd.IntN(len(values))])
		}
		payloads = append(payloads, p)
	}

	outcome := func(sql string, args ...any) (string, error) {
		sp, err := tx.Begin(ctx)
		require.NoError(t, err)
		defer func() { require.NoError(t, sp.Rollback(ctx)) }()
		var out string
		err = sp.QueryRow(ctx, sql, args...).Scan(&out)
		if err == nil {
			return out, nil
		}
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "want a Postgres error, got %v", err)
		return "", fmt.Errorf("%s %s %s", pgErr.Code, pgErr.ColumnName, pgErr.Message)
	}
	var fast, full, refused int
	for i, p := range payloads {
		body, err := json.Marshal(p)
		require.NoError(t, err)
		want, wantErr := outcome(fmt.Sprintf(`SELECT %s.payload_validate('respond', $1, $2::text::jsonb)::text`, s.Schema()), appID, string(body))
		got, gotErr := outcome(fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload) VALUES ($1, 'respond', $2::text::jsonb) RETURNING payload::text`, s.Schema()), appID, string(body))
		require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(gotErr), "payload %d: %s", i, body)
		require.Equal(t, want, got, "payload %d: %s", i, body)
		plain, err := outcome(fmt.Sprintf(`SELECT coalesce(%s.payload_respond_plain($1::text::jsonb), false)::text`, s.Schema()), string(body))
		require.NoError(t, err)
		switch {
		case plain == "true":
			fast++
		case wantErr == nil:
			full++
		default:
			refused++
		}
	}
	t.Logf("%d payloads: %d by the fast path, %d accepted by the full check only, %d refused", len(payloads), fast, full, refused)
	require.Greater(t, fast, 50, "payloads the fast path accepts")
	require.Greater(t, full, 20, "payloads only the full check accepts")
	require.Greater(t, refused, 50, "refused payloads")
}

// An action enqueued without a key gets a fresh random key and is not
// looked up: a fresh key cannot be taken, and the lookup is a large part of
// an INSERT. A key the bot gives is still looked up, a
// known one is skipped without an error, and a NULL key is still refused.
func TestKeylessInsertsAreNotLookedUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.Store(t)
	tx := storetest.Tx(t)
	appID := storetest.App(ctx, t, s, tx, nil)
	_, err := tx.Exec(ctx, `SET LOCAL track_functions = 'all'`)
	require.NoError(t, err)
	lookups := func() (n int64) {
		require.NoError(t, tx.QueryRow(ctx, `SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
			WHERE schemaname = $1 AND funcname = 'action_key_holder'`, s.Schema()).Scan(&n))
		return n
	}
	payload := `{` + conv + `,"text":"hi"}`
	insert := func(sql string, args ...any) []string {
		rows, err := tx.Query(ctx, fmt.Sprintf(sql, s.Schema()), args...)
		require.NoError(t, err)
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return keys
	}

	omitted := insert(`INSERT INTO %s.action (app_id, kind, payload) VALUES ($1, 'respond', $2) RETURNING idempotency_key`, appID, payload)
	omitted = append(omitted, insert(`INSERT INTO %s.action (app_id, kind, payload) VALUES ($1, 'respond', $2), ($1, 'respond', $2) RETURNING idempotency_key`, appID, payload)...)
	var n int
	require.NoError(t, tx.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.enqueue_many(ARRAY[$1, $1], ARRAY['respond', 'respond'], ARRAY[$2::jsonb, $2::jsonb], ARRAY[NULL, ''])`, s.Schema()),
		appID, payload).Scan(&n))
	require.Equal(t, 2, n)
	require.Zero(t, lookups(), "keyless inserts looked a key up")
	keys := omitted
	require.Len(t, keys, 3)
	for _, k := range keys {
		require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, k)
	}
	require.NotEqual(t, keys[1], keys[2])

	sp, err := tx.Begin(ctx)
	require.NoError(t, err)
	_, err = sp.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload, idempotency_key) VALUES ($1, 'respond', $2, NULL)`, s.Schema()), appID, payload)
	require.NoError(t, sp.Rollback(ctx))
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "a NULL key is refused, got %v", err)
	require.Equal(t, "23502", pgErr.Code)
	require.Equal(t, "idempotency_key", pgErr.ColumnName)

	given := insert(`INSERT INTO %s.action (app_id, kind, payload, idempotency_key) VALUES ($1, 'respond', $2, 'bot-key') RETURNING idempotency_key`, appID, payload)
	require.Equal(t, []string{"bot-key"}, given)
	require.Empty(t, insert(`INSERT INTO %s.action (app_id, kind, payload, idempotency_key) VALUES ($1, 'respond', $2, 'bot-key') RETURNING idempotency_key`, appID, payload),
		"a known key is skipped")
	require.Equal(t, int64(2), lookups(), "a given key is looked up")
}

// An SQL insert wakes River's producers: the enqueue trigger sends River's
// insert notification when the current 10 ms bucket has not had one (the
// check, notify_due, comes before any query). Were the check wrong, no
// insert would ever notify and pickup would wait for River's poll.
func TestSQLInsertNotifiesRiver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, s := storetest.NewStore(t, 4)
	appID := storetest.App(ctx, t, s, pool, nil)
	listener, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer listener.Release()
	_, err = listener.Exec(ctx, `LISTEN `+pgx.Identifier{schema + ".river_insert"}.Sanitize())
	require.NoError(t, err)

	for i := range 3 {
		time.Sleep(20 * time.Millisecond) // a bucket of its own
		_, err := pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.action (app_id, kind, payload) VALUES ($1, 'respond', $2)`, schema),
			appID, fmt.Sprintf(`{"coordinate":{"companyKey":"acme","networkKey":"facebook","externalId":"p1"},"author":{"id":"notify-%d"},"text":"hi"}`, i))
		require.NoError(t, err)
		wait, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := listener.Conn().WaitForNotification(wait)
		cancel()
		require.NoError(t, err, "insert %d sent no notification", i)
		require.JSONEq(t, `{"queue": "botq"}`, n.Payload)
	}
}
