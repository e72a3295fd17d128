package appclient_test

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/appclient"
	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// Health reads each app's health from Khoros with the app's token, and
// says why for an app it could not read; stored only, it calls nothing.
func TestHealth(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, pool, s := storetest.NewStore(t, 2)
	simSrv := sim.New(sim.Options{Seed: 1})
	hs := httptest.NewServer(simSrv)
	t.Cleanup(func() {
		_ = simSrv.Close()
		hs.Close()
	})
	withToken := storetest.App(ctx, t, s, pool, &storetest.AppOpts{Region: "CUSTOM", BaseURL: hs.URL})
	noToken := storetest.App(ctx, t, s, pool, &storetest.AppOpts{Region: "CUSTOM", BaseURL: hs.URL})
	tok, err := simSrv.MintToken(withToken, sim.MintOptions{})
	require.NoError(t, err)
	require.NoError(t, simSrv.SetHealth(withToken, []botapi.Health{{Status: botapi.HealthDegraded, FailureCount: 3, SuccessCount: 7}}))
	reg := appclient.New(appclient.Config{Pool: pool, Store: s,
		External: map[string]botapi.TokenSource{withToken: botapi.StaticToken(tok.Token)}})
	var apps []*store.App
	for _, id := range []string{withToken, noToken} {
		a, err := s.AppGet(ctx, pool, id)
		require.NoError(t, err)
		apps = append(apps, a)
	}

	reps, failed := reg.Health(ctx, apps, true)
	require.Equal(t, 1, failed)
	require.Len(t, reps, 2)
	require.Equal(t, withToken, reps[0].AppID)
	require.Empty(t, reps[0].LiveError)
	require.Equal(t, []botapi.Health{{Status: botapi.HealthDegraded, FailureCount: 3, SuccessCount: 7}}, reps[0].Live)
	require.Equal(t, noToken, reps[1].AppID)
	require.NotEmpty(t, reps[1].LiveError)
	require.Empty(t, reps[1].Live)

	reps, failed = reg.Health(ctx, apps, false)
	require.Zero(t, failed)
	require.Len(t, reps, 2)
	require.Empty(t, reps[0].Live)
	require.Empty(t, reps[0].LiveError)
}
