package console

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
)

// After sign-in the browser goes to a path of the console only.
func TestLocalPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ give, want string }{
		{"/actions?app=a", "/actions?app=a"},
		{"", "/"},
		{"https://evil.example/", "/"},
		{"//evil.example/x", "/"},
		{"/\\evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"/ok\r\nSet-Cookie: x=1", "/"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, localPath(tt.give), tt.give)
	}
}

func TestReadWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		give             string
		wantFrom, wantTo time.Time
		wantSpan         string
		wantErr          string
	}{
		{give: "", wantFrom: now.Add(-24 * time.Hour), wantTo: now, wantSpan: "1d"},
		{give: "span=24h", wantFrom: now.Add(-24 * time.Hour), wantTo: now, wantSpan: "1d"},
		{give: "span=1h", wantFrom: now.Add(-time.Hour), wantTo: now, wantSpan: "1h"},
		{give: "span=7d&to=2026-12-01T00:00", wantFrom: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), wantTo: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), wantSpan: "7d"},
		{give: "from=2026-12-01T10:30&span=1h", wantFrom: time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC), wantTo: now},
		{give: "from=2026-12-01T10:30:00Z&to=2026-12-02", wantFrom: time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC), wantTo: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)},
		{give: "from=2026-12-02&to=2026-12-01", wantErr: "must end after it starts"},
		{give: "from=yesterday", wantErr: "From:"},
		{give: "span=forever", wantErr: "Range:"},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.give)
		require.NoError(t, err)
		w, err := readWindow(q, now, 24*time.Hour)
		if tt.wantErr != "" {
			require.ErrorContains(t, err, tt.wantErr, tt.give)
			continue
		}
		require.NoError(t, err, tt.give)
		require.Equal(t, tt.wantFrom, w.from, tt.give)
		require.Equal(t, tt.wantTo, w.to, tt.give)
		require.Equal(t, tt.wantSpan, w.Span, tt.give)
	}
}

func TestCursorsRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 12, 0, 0, 123456789, time.UTC)
	c, err := parseActionCursor(actionCursorText(store.ActionCursor{CreatedAt: at, ID: 42}))
	require.NoError(t, err)
	require.True(t, c.CreatedAt.Equal(at))
	require.EqualValues(t, 42, c.ID)
	for _, bad := range []string{"x", "1.x", "1.0", "1"} {
		_, err := parseActionCursor(bad)
		require.Error(t, err, bad)
	}
	r, err := parseRequestCursor("1765108800000000000.req.with.dots")
	require.NoError(t, err)
	require.Equal(t, "req.with.dots", r.RequestID)
}
