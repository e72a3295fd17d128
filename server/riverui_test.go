package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/reconciler"
	"github.com/botq/botq/store"
)

// riverUIIDsBody is River UI's job write body.
func riverUIIDsBody(ids ...int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Quote(strconv.FormatInt(id, 10))
	}
	return `{"ids":[` + strings.Join(s, ",") + `]}`
}

// riverUIMessage is the message of a River UI error answer, which River UI
// shows: it must be JSON with a message.
func riverUIMessage(t *testing.T, resp *http.Response, body string) string {
	t.Helper()
	require.Contains(t, resp.Header.Get("Content-Type"), "application/json", body)
	var e struct {
		Message string `json:"message"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &e), body)
	require.NotEmpty(t, e.Message, body)
	return e.Message
}

func jobState(t *testing.T, pool *pgxpool.Pool, schema string, id int64) string {
	t.Helper()
	var state string
	err := pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT state::text FROM %s.river_job WHERE id = $1`, schema), id).Scan(&state)
	require.NoError(t, err)
	return state
}

func riverUIEvents(t *testing.T, m *Main, actionID *int64) []*store.Event {
	t.Helper()
	evs, err := m.Store.EventList(context.Background(), m.Pool, store.EventListParams{Kind: "riverui", ActionID: actionID})
	require.NoError(t, err)
	return evs
}

// River UI's Cancel, Retry and Delete of a botq action's job go through
// botq's rules: Cancel is botq's cancel (the action is cancelled, with an
// event that names it), Retry is refused with what to use instead, Delete of
// an unfinished job is refused. A maintenance job is River UI's, as before.
func TestRiverUIJobWritesFollowBotqRules(t *testing.T) {
	t.Parallel()
	m, base := startAPIMain(t, func(c *Config) {
		c.Apps = []AppConfig{{ID: "ui-app", BaseURL: "http://127.0.0.1:1", CompanyKey: "acme"}}
	})
	ctx := context.Background()
	op := bearerKey(testKeyOperator)
	res, err := m.Store.ActionInsert(ctx, m.Pool, actionParams("ui-app", "ui-1"))
	require.NoError(t, err)
	a := res.Action
	schema := m.Config.Database.Schema

	for _, path := range []string{"retry", "delete"} {
		resp, body := send(t, "POST", base+"/riverui/api/jobs/"+path, op, riverUIIDsBody(a.RiverJobID))
		require.Equal(t, http.StatusConflict, resp.StatusCode, "%s: %s", path, body)
		msg := riverUIMessage(t, resp, body)
		require.Contains(t, msg, fmt.Sprintf("botq action %d (job %d) is queued", a.ID, a.RiverJobID))
		require.Contains(t, msg, fmt.Sprintf("botq actions cancel %d", a.ID), "says what to use instead")
		require.Equal(t, "available", jobState(t, m.Pool, schema, a.RiverJobID), "%s changed nothing", path)
	}
	require.Empty(t, riverUIEvents(t, m, nil), "a refused write is no event")

	// A maintenance job is River's to cancel, with River UI.
	client, err := river.NewClient(riverpgxv5.New(m.Pool), &river.Config{Schema: schema})
	require.NoError(t, err)
	task, err := client.Insert(ctx, reconciler.TaskArgs{Task: "test"}, &river.InsertOpts{Queue: reconciler.Queue, ScheduledAt: time.Now().Add(time.Hour)})
	require.NoError(t, err)

	// One Cancel for both: the action by botq's cancel, the other by River's.
	resp, body := send(t, "POST", base+"/riverui/api/jobs/cancel", op, riverUIIDsBody(a.RiverJobID, task.Job.ID))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	got, err := m.Store.ActionGet(ctx, m.Pool, a.ID)
	require.NoError(t, err)
	require.Equal(t, store.ActionCancelled, got.State, "River UI's Cancel cancelled the action, not only its job")
	require.Equal(t, "cancelled", jobState(t, m.Pool, schema, a.RiverJobID))
	require.Equal(t, "cancelled", jobState(t, m.Pool, schema, task.Job.ID))

	evs, err := m.Store.EventList(ctx, m.Pool, store.EventListParams{ActionID: &a.ID})
	require.NoError(t, err)
	kinds := map[string]*store.Event{}
	for _, e := range evs {
		kinds[e.Kind] = e
	}
	require.Contains(t, kinds, "cancel", "botq's cancel event")
	require.Equal(t, "api:ops", kinds["cancel"].Actor)
	ev := kinds["riverui"]
	require.NotNil(t, ev, "the River UI write, on the action it touched")
	require.Equal(t, "ui-app", ev.AppID)
	require.Contains(t, string(ev.After), fmt.Sprintf(`"job_id": %d`, a.RiverJobID))
	all := riverUIEvents(t, m, nil)
	require.Len(t, all, 2, "one for the action, one for the maintenance job")
	require.Nil(t, all[0].ActionID, "the maintenance job's has no action")

	// The action's job is finalized now: deleting it leaves nothing stuck.
	resp, body = send(t, "POST", base+"/riverui/api/jobs/retry", op, riverUIIDsBody(a.RiverJobID))
	require.Equal(t, http.StatusConflict, resp.StatusCode, body)
	require.Contains(t, riverUIMessage(t, resp, body), fmt.Sprintf("botq replay %d", a.ID))
	resp, body = send(t, "POST", base+"/riverui/api/jobs/delete", op, riverUIIDsBody(a.RiverJobID))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Len(t, riverUIEvents(t, m, &a.ID), 2, "the cancel and the delete")

	// A second Cancel of the action is refused, with the reason.
	res, err = m.Store.ActionInsert(ctx, m.Pool, actionParams("ui-app", "ui-2"))
	require.NoError(t, err)
	_, err = m.Store.ActionCancel(ctx, m.Pool, res.Action.ID, "test", "test")
	require.NoError(t, err)
	resp, body = send(t, "POST", base+"/riverui/api/jobs/cancel", op, riverUIIDsBody(res.Action.RiverJobID))
	require.Equal(t, http.StatusConflict, resp.StatusCode, body)
	require.Contains(t, riverUIMessage(t, resp, body), "already cancelled")

	resp, body = send(t, "POST", base+"/riverui/api/jobs/cancel", op, riverUIIDsBody(a.RiverJobID+1000))
	require.Equal(t, http.StatusNotFound, resp.StatusCode, body)
	resp, body = send(t, "POST", base+"/riverui/api/jobs/cancel", op, `{"ids":["x"]}`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
}
