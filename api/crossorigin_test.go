package api_test

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/api"
)

// The guard's verdict on each kind of request: browsers' unsafe requests
// from other origins are refused, with the header that showed it; safe
// methods, botq's own pages, trusted origins and clients that are not
// browsers pass.
func TestCrossOriginGuard(t *testing.T) {
	t.Parallel()
	g, err := api.NewCrossOriginGuard([]string{"https://console.example.com"})
	require.NoError(t, err)
	tests := []struct {
		give       string
		giveMethod string
		giveSite   string
		giveOrigin string
		wantField  string // "" when the request passes
	}{
		{"no browser headers", "POST", "", "", ""},
		{"same-origin", "POST", "same-origin", "http://botq.internal:8080", ""},
		{"typed by the user", "DELETE", "none", "", ""},
		{"cross-site", "POST", "cross-site", "https://evil.example", "Sec-Fetch-Site"},
		{"same-site", "PUT", "same-site", "https://other.botq.internal", "Sec-Fetch-Site"},
		{"cross-site PATCH", "PATCH", "cross-site", "", "Sec-Fetch-Site"},
		{"cross-site GET", "GET", "cross-site", "https://evil.example", ""},
		{"own origin, no Sec-Fetch-Site", "POST", "", "http://botq.internal:8080", ""},
		{"foreign origin", "POST", "", "https://evil.example", "Origin"},
		{"same host, other port", "POST", "", "http://botq.internal:9090", "Origin"},
		{"Origin null", "POST", "", "null", "Origin"},
		{"trusted origin", "POST", "", "https://console.example.com", ""},
		{"trusted origin, cross-site", "POST", "cross-site", "https://console.example.com", ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.giveMethod, "http://botq.internal:8080/v1/actions", nil)
		if tt.giveSite != "" {
			r.Header.Set("Sec-Fetch-Site", tt.giveSite)
		}
		if tt.giveOrigin != "" {
			r.Header.Set("Origin", tt.giveOrigin)
		}
		e := g.Check(r)
		if tt.wantField == "" {
			require.Nil(t, e, tt.give)
			continue
		}
		require.NotNil(t, e, tt.give)
		require.Equal(t, 403, e.Status, tt.give)
		require.Equal(t, "cross_origin", e.Code, tt.give)
		require.Equal(t, tt.wantField, e.Field, tt.give)
	}

	for _, bad := range []string{"evil.example", "https://evil.example/", "ftp://evil.example", "https://"} {
		_, err := api.NewCrossOriginGuard([]string{bad})
		require.Error(t, err, bad)
	}
}
