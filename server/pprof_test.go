package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPprofOffByDefault(t *testing.T) {
	t.Parallel()
	_, base := startAPIMain(t, nil)
	resp, _ := send(t, "GET", base+"/debug/pprof/heap", bearerKey(testKeyOperator), "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestPprofForOperatorsOnly(t *testing.T) {
	t.Parallel()
	_, base := startAPIMain(t, func(c *Config) { c.HTTP.Pprof = true })
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		resp, _ := send(t, "GET", base+path, noAuth, "")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
		resp, _ = send(t, "GET", base+path, bearerKey(testKeyAuditor), "")
		require.Equal(t, http.StatusForbidden, resp.StatusCode, path)
		resp, _ = send(t, "GET", base+path, bearerKey(testKeyEnqueuer), "")
		require.Equal(t, http.StatusForbidden, resp.StatusCode, path)
	}
	resp, body := send(t, "GET", base+"/debug/pprof/heap", bearerKey(testKeyOperator), "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(body, "\x1f\x8b"), "a heap profile is gzipped protobuf")
	resp, body = send(t, "GET", base+"/debug/pprof/goroutine?debug=1", bearerKey(testKeyOperator), "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "goroutine profile:")
	resp, body = send(t, "GET", base+"/debug/pprof/profile?seconds=1", bearerKey(testKeyOperator), "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	// The rest of the surfaces are where they were.
	resp, _ = send(t, "GET", base+"/metrics", bearerKey(testKeyAuditor), "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
