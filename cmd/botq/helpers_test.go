package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

type authHow func(*http.Request)

func bearerKey(k string) authHow {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+k) }
}

func send(t *testing.T, method, url string, auth authHow, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	auth(req)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

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

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// envOf is an environment of the given name, value pairs only.
func envOf(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func actionParams(appID, key string) store.ActionInsertParams {
	return store.ActionInsertParams{AppID: appID, Kind: "respond", IdempotencyKey: key,
		Payload: storetest.RespondPayload("author-"+key, "hello")}
}
