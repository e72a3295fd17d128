package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/jobs"
	"github.com/botq/botq/store/storetest"
)

// Malformed input through the Go API: each is refused with an error naming
// the problem, and nothing is stored.
func TestGoAPIRefusesMalformedInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.Store(t)
	tx := storetest.Tx(t)
	appID := storetest.App(ctx, t, s, tx, nil)
	enq, err := jobs.NewEnqueuer(s.Schema())
	require.NoError(t, err)
	good := json.RawMessage(storetest.RespondPayload("a", "hi"))
	tests := []struct {
		name      string
		give      jobs.Action
		wantField string
	}{
		{name: "payload not JSON", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: json.RawMessage(`{"text":`)}, wantField: "payload"},
		{name: "payload cannot marshal", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: map[string]any{"f": func() {}}}, wantField: "payload"},
		{name: "payload invalid UTF-8", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: json.RawMessage("{\"text\":\"\xff\xfe\"}")}, wantField: "payload"},
		{name: "payload an array", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: []int{1}}, wantField: "payload"},
		{name: "payload 300 KB", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: json.RawMessage(strings.Replace(string(good), `"hi"`, `"`+strings.Repeat("x", 300<<10)+`"`, 1))}, wantField: "payload"},
		{name: "no app", give: jobs.Action{Kind: jobs.KindRespond, Payload: good}, wantField: "app_id"},
		{name: "hostile app id", give: jobs.Action{AppID: "x'); DROP TABLE action; --", Kind: jobs.KindRespond, Payload: good}, wantField: "app_id"},
		{name: "no kind", give: jobs.Action{AppID: appID, Payload: good}, wantField: "kind"},
		{name: "unknown kind", give: jobs.Action{AppID: appID, Kind: "teleport", Payload: good}, wantField: "kind"},
		{name: "key with NUL", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: good, IdempotencyKey: "a\x00b"}, wantField: "idempotency_key"},
		{name: "key too long", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: good, IdempotencyKey: strings.Repeat("k", 256)}, wantField: "idempotency_key"},
		{name: "lane with control characters", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: good, Lane: "a\tb"}, wantField: "lane"},
		{name: "lane invalid UTF-8", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: good, Lane: "\xc3"}, wantField: "lane"},
		{name: "created_by with NUL", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: good, CreatedBy: "bot\x00"}, wantField: "created_by"},
		{name: "payload with an escaped NUL", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: json.RawMessage(strings.Replace(string(good), `"hi"`, `"a\u0000b"`, 1))}, wantField: "payload"},
		{name: "text a number", give: jobs.Action{AppID: appID, Kind: jobs.KindRespond, Payload: json.RawMessage(`{"coordinate":{"companyKey":"c","networkKey":"n","externalId":"e"},"author":{"id":"a"},"text":1}`)}, wantField: "payload.text"},
	}
	count := func() (n int) {
		require.NoError(t, tx.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.action`, s.Schema())).Scan(&n))
		return n
	}
	before := count()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, err := tx.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = sp.Rollback(ctx) }()
			_, _, err = enq.Enqueue(ctx, sp, tt.give)
			var verr *jobs.ValidationError
			require.ErrorAs(t, err, &verr, "got %v", err)
			require.Equal(t, tt.wantField, verr.Field, verr.Message)
			require.Contains(t, verr.Error(), tt.wantField)
		})
	}
	// A batch with one bad action enqueues none of them.
	sp, err := tx.Begin(ctx)
	require.NoError(t, err)
	_, err = enq.EnqueueMany(ctx, sp, []jobs.Action{
		{AppID: appID, Kind: jobs.KindRespond, Payload: good},
		{AppID: appID, Kind: jobs.KindRespond, Payload: json.RawMessage(`{}`)},
	})
	require.Error(t, err)
	require.NoError(t, sp.Rollback(ctx))
	require.Equal(t, before, count(), "nothing was stored")
}
