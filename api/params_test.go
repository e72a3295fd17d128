package api_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

// One duration syntax everywhere: Go's, with days.
func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give string
		want time.Duration
	}{
		{"30s", 30 * time.Second},
		{"2h45m", 2*time.Hour + 45*time.Minute},
		{"1d", 24 * time.Hour},
		{"7d", 7 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"400d", 400 * 24 * time.Hour},
		{"0s", 0},
	}
	for _, tt := range tests {
		got, err := api.ParseDuration(tt.give)
		require.NoError(t, err, tt.give)
		require.Equal(t, tt.want, got, tt.give)
	}
	for _, bad := range []string{"", "d", "1.5d", "-1d", "1dd", "1d-1h", "banana", "30", "1w", "106752d", "106751d24h"} {
		_, err := api.ParseDuration(bad)
		require.Error(t, err, "%q", bad)
		require.Contains(t, err.Error(), "7d", "the error shows the syntax")
	}
}

// States are accepted in either case, for actions as for requests.
func TestParseStatesAnyCase(t *testing.T) {
	t.Parallel()
	as, err := api.ParseActionStates([]string{"FAILED", "Succeeded", "queued"})
	require.NoError(t, err)
	require.Equal(t, []store.ActionState{"failed", "succeeded", "queued"}, as)
	rs, err := api.ParseRequestStates([]string{"error", "Success"})
	require.NoError(t, err)
	require.Equal(t, []store.RequestState{"ERROR", "SUCCESS"}, rs)
	_, err = api.ParseActionStates([]string{"done"})
	require.ErrorContains(t, err, `"done" is not an action state`)
}
