package botapi_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
)

// Every error body shape of reference §6.1, plus what a proxy may send.
func TestDecodeError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		giveStatus   int
		giveBody     string
		wantMessages []string
		wantMessage  string
		wantID       string
		wantIs       error
	}{
		{"error.messages (400)", 400, `{"error":{"messages":["Invalid networkKey farcebook"]}}`,
			[]string{"Invalid networkKey farcebook"}, "Invalid networkKey farcebook", "", botapi.ErrBadRequest},
		{"error.messages + requestId (403)", 403, `{"error":{"messages":["This bot doesn't own the conversation <c>"]},"requestId":"some id"}`,
			[]string{"This bot doesn't own the conversation <c>"}, "This bot doesn't own the conversation <c>", "some id", botapi.ErrForbidden},
		{"requestId first (409)", 409, `{"requestId":"requestId","error":{"messages":["A (possibly transient) conflict occurred. No change was made. This request may be retried."]}}`,
			[]string{"A (possibly transient) conflict occurred. No change was made. This request may be retried."}, "A (possibly transient) conflict occurred. No change was made. This request may be retried.", "requestId", botapi.ErrConflict},
		{"error.message + error.requestId (401)", 401, `{ "error": { "message": "Unauthorized", "requestId": "e9ea518b-c84e-4c22-8f64-a01e04bd28cb" }}`,
			[]string{"Unauthorized"}, "Unauthorized", "e9ea518b-c84e-4c22-8f64-a01e04bd28cb", botapi.ErrUnauthorized},
		{"error.message (404)", 404, `{"error":{"message":"No bot registration found"}}`,
			[]string{"No bot registration found"}, "No bot registration found", "", botapi.ErrNotFound},
		{"errors (422)", 422, `{"errors":["callbackUrl may not be empty","credentials.secret may not be empty"]}`,
			[]string{"callbackUrl may not be empty", "credentials.secret may not be empty"}, "callbackUrl may not be empty; credentials.secret may not be empty", "", botapi.ErrUnprocessable},
		{"errors (500)", 500, `{"errors":["Unable to delete registration"]}`,
			[]string{"Unable to delete registration"}, "Unable to delete registration", "", botapi.ErrServer},
		{"care v2 fail (409)", 409, `{"status":"fail","message":"A token at this path already exists."}`,
			[]string{"A token at this path already exists."}, "A token at this path already exists.", "", botapi.ErrConflict},
		{"empty object (400)", 400, `{}`, nil, "Bad Request", "", botapi.ErrBadRequest},
		{"gateway (403)", 403, `{"message":"Forbidden"}`, []string{"Forbidden"}, "Forbidden", "", botapi.ErrForbidden},
		{"rate limited", 429, `{"message":"Too Many Requests"}`, []string{"Too Many Requests"}, "Too Many Requests", "", botapi.ErrRateLimited},
		{"html", 502, "<html><body>502 Bad Gateway</body></html>", nil, "Bad Gateway", "", botapi.ErrServer},
		{"plain text", 503, "upstream connect error\nreset", []string{"upstream connect error"}, "upstream connect error", "", botapi.ErrServer},
		{"empty body", 504, "", nil, "Gateway Timeout", "", botapi.ErrServer},
		{"truncated json", 500, `{"error":{"messages":["x"`, nil, "Internal Server Error", "", botapi.ErrServer},
		{"error as string", 400, `{"error":"bad thing"}`, []string{"bad thing"}, "bad thing", "", botapi.ErrBadRequest},
		{"errors of objects", 400, `{"errors":[{"message":"a"},"b"]}`, []string{"a", "b"}, "a; b", "", botapi.ErrBadRequest},
		{"numeric requestId", 400, `{"error":{"messages":["m"]},"requestId":123}`, []string{"m"}, "m", "123", botapi.ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := botapi.DecodeError(tt.giveStatus, []byte(tt.giveBody))
			require.Equal(t, tt.wantMessages, e.Messages)
			require.Equal(t, tt.wantMessage, e.Message)
			require.Equal(t, tt.wantID, e.RequestID)
			require.ErrorIs(t, e, tt.wantIs)
			require.Equal(t, tt.giveStatus, e.StatusCode)
			require.Contains(t, e.Error(), fmt.Sprint(tt.giveStatus))
		})
	}
}

// Application tells Bot v3's own error bodies, which may come with a
// request record, from the gateway's, which never do.
func TestDecodeErrorApplication(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]bool{
		`{"error":{"messages":["Invalid networkKey farcebook"]}}`: true,
		`{"error":{"message":"Unauthorized","requestId":"r"}}`:    true,
		`{"errors":["callbackUrl may not be empty"]}`:             true,
		`{"error":"bad thing"}`:                                   true,
		`{"message":"Too Many Requests"}`:                         false,
		`{"status":"fail","message":"Unauthorized"}`:              false,
		`{}`:                           false,
		`<html>502 Bad Gateway</html>`: false,
		``:                             false,
	} {
		require.Equal(t, want, botapi.DecodeError(400, []byte(body)).Application, "body %q", body)
	}
}

func TestDecodeErrorBoundsBody(t *testing.T) {
	t.Parallel()
	e := botapi.DecodeError(500, []byte(strings.Repeat("x", 10*botapi.MaxErrorBody)))
	require.Len(t, e.Body, botapi.MaxErrorBody)
	require.LessOrEqual(t, len(e.Message), 200)
}

func TestErrorIsOnlyItsStatus(t *testing.T) {
	t.Parallel()
	e := botapi.DecodeError(404, nil)
	for _, s := range []error{botapi.ErrBadRequest, botapi.ErrUnauthorized, botapi.ErrForbidden, botapi.ErrConflict, botapi.ErrUnprocessable, botapi.ErrRateLimited, botapi.ErrServer} {
		require.NotErrorIs(t, e, s)
	}
	require.ErrorIs(t, fmt.Errorf("wrapped: %w", e), botapi.ErrNotFound)
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	withRetryAfter := botapi.DecodeError(400, nil)
	withRetryAfter.HasRetryAfter = true
	tests := []struct {
		name       string
		give       error
		want       bool
		wantReason string
	}{
		{"nil", nil, false, "no error"},
		{"500", botapi.DecodeError(500, nil), true, "server error (500)"},
		{"503 wrapped", fmt.Errorf("x: %w", botapi.DecodeError(503, nil)), true, "server error (503)"},
		{"429", botapi.DecodeError(429, nil), true, "rate limited (429)"},
		{"409 may be retried", botapi.DecodeError(409, []byte(`{"error":{"messages":["A (possibly transient) conflict occurred. No change was made. This request may be retried."]}}`)), true, "transient conflict (409)"},
		{"409 exists", botapi.DecodeError(409, []byte(`{"errors":["already exists"]}`)), false, "client error (409)"},
		{"400", botapi.DecodeError(400, nil), false, "client error (400)"},
		{"400 with Retry-After", withRetryAfter, true, "status 400 with Retry-After"},
		{"not sent", &botapi.TransportError{Op: "POST /x", Sent: false, Err: &url.Error{Op: "Post", URL: "u", Err: errors.New("refused")}}, true, "not sent: connection error"},
		{"sent", &botapi.TransportError{Op: "POST /x", Sent: true, Err: errors.New("EOF")}, false, "sent without response: outcome unknown"},
		{"other", errors.New("boom"), false, "not an HTTP outcome"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := botapi.Retryable(tt.give)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.wantReason, reason)
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		give   string
		want   time.Duration
		wantOK bool
	}{
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"99999999999999999999", 0, false},
		{"31536001", 365 * 24 * time.Hour, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Sunday, 01-Mar-26 12:01:00 GMT", time.Minute, true},
		{"Sun Mar  1 12:00:10 2026", 10 * time.Second, true},
		{"Sun, 01 Mar 2026 11:00:00 GMT", 0, true},
		{"soon", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := botapi.ParseRetryAfter(tt.give, now)
		require.Equal(t, tt.wantOK, ok, tt.give)
		require.Equal(t, tt.want, got, tt.give)
	}
}

func TestRetryAfterFromResponse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := b.clock.Now()
	require.NoError(t, b.sim.SetFault("tag", simFault429(now.Add(42*time.Second).Format(http.TimeFormat))))
	c, err := botapi.New(botapi.Config{BaseURL: b.srv.URL, Tokens: botapi.StaticToken(b.token), Now: b.clock.Now})
	require.NoError(t, err)
	res, err := c.Tag(t.Context(), &botapi.TagRequest{Coordinate: coord(), Author: author(), TagIDs: []int64{1}})
	require.ErrorIs(t, err, botapi.ErrRateLimited)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	d, ok := botapi.RetryAfter(err)
	require.True(t, ok)
	require.Equal(t, 42*time.Second, d)
	_, ok = botapi.RetryAfter(errors.New("x"))
	require.False(t, ok)
}
