package botapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
)

func listServer(t *testing.T, h http.HandlerFunc) *botapi.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := botapi.New(botapi.Config{BaseURL: srv.URL, Tokens: botapi.StaticToken("t")})
	require.NoError(t, err)
	return c
}

func listRecord(i int) string {
	return fmt.Sprintf(`{"id":"r%d","appId":"a","origin":"BOT","state":"SUCCESS","createdEpochMillis":%d,"payload":"{\"text\":\"m%d\"}"}`, i, 1000+i, i)
}

// A listing is decoded one record at a time, in Khoros' order, whatever
// else the answer holds.
func TestListRequestsEachStreams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give    string
		wantIDs []string
	}{
		{`{"meta":{"x":[1,2]},"data":[` + listRecord(1) + `,` + listRecord(2) + `,` + listRecord(3) + `],"more":null}`, []string{"r1", "r2", "r3"}},
		{`{"data":[]}`, nil},
		{`{"data":null}`, nil},
		{``, nil},
	}
	for _, tt := range tests {
		c := listServer(t, func(w http.ResponseWriter, r *http.Request) {
			require.Equal(t, "/bots/v3/request/appId/a", r.URL.Path)
			require.Equal(t, "2m", r.URL.Query().Get("from"))
			_, _ = w.Write([]byte(tt.give))
		})
		var ids []string
		res, err := c.ListRequestsEach(context.Background(), "a", &botapi.ListRequestsOptions{From: 2 * 60e9}, func(r *botapi.RequestRecord) error {
			ids = append(ids, r.ID)
			require.JSONEq(t, fmt.Sprintf(`{"text":"m%s"}`, strings.TrimPrefix(r.ID, "r")), string(r.Payload), "the payload string is decoded")
			return nil
		})
		require.NoError(t, err, tt.give)
		require.Equal(t, 200, res.StatusCode)
		require.Equal(t, tt.wantIDs, ids, tt.give)
	}
}

func TestListRequestsEachFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// The caller stops the listing.
	c := listServer(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"data":[` + listRecord(1) + `,` + listRecord(2) + `]}`))
	})
	stop := errors.New("enough")
	n := 0
	_, err := c.ListRequestsEach(ctx, "a", nil, func(*botapi.RequestRecord) error { n++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, n)

	// Not a listing.
	c = listServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`[1,2]`)) })
	_, err = c.ListRequestsEach(ctx, "a", nil, func(*botapi.RequestRecord) error { return nil })
	require.ErrorContains(t, err, "want a JSON object")
	c = listServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"data":{"id":"x"}}`)) })
	_, err = c.ListRequestsEach(ctx, "a", nil, func(*botapi.RequestRecord) error { return nil })
	require.ErrorContains(t, err, `want "data" to be an array`)

	// An error answer is mapped as for any call.
	c = listServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("x-amzn-RequestId", "req-1")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":{"messages":["Incorrect syntax in \"from\""]}}`))
	})
	res, err := c.ListRequestsEach(ctx, "a", nil, func(*botapi.RequestRecord) error { return nil })
	require.ErrorIs(t, err, botapi.ErrBadRequest)
	require.Equal(t, "req-1", res.RequestID)

	// A listing cut off midway is a transport failure, after the records
	// that arrived whole.
	c = listServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100000")
		_, _ = w.Write([]byte(`{"data":[` + listRecord(1) + `,` + listRecord(2)[:20]))
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})
	var ids []string
	_, err = c.ListRequestsEach(ctx, "a", nil, func(r *botapi.RequestRecord) error { ids = append(ids, r.ID); return nil })
	var te *botapi.TransportError
	require.ErrorAs(t, err, &te)
	require.True(t, te.Sent)
	require.Equal(t, []string{"r1"}, ids)
}
