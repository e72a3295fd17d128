package botapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
)

func jwtWithExp(t *testing.T, exp time.Time, salt string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"exp": exp.Unix(), "companyKey": "c", "salt": salt}).SignedString([]byte("k"))
	require.NoError(t, err)
	return s
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	exp := time.Unix(1542577890, 0)
	got, err := botapi.TokenExpiry(jwtWithExp(t, exp, ""))
	require.NoError(t, err)
	require.True(t, exp.Equal(got))

	// The documented sample token's payload, with a signature we cannot check.
	sample := "eyJhbGciOiJIUzUxMiJ9.eyJjb21wYW55S2V5Ijoic2NvdHRpc2hwb3dlcmRldiIsInVzZXJOYW1lIjoiQVBJIFN5c3RlbSBVc2VyIiwiYXdzUmVnaW9uIjoidXMtd2VzdC0yIiwiZXhwIjoxNTQyNTc3ODkwfQ.c2lnbmF0dXJl"
	got, err = botapi.TokenExpiry(sample)
	require.NoError(t, err)
	require.Equal(t, int64(1542577890), got.Unix())

	for _, bad := range []string{"", "not-a-jwt-secretvalue", "a.b.c", "eyJhbGciOiJIUzUxMiJ9.eyJ4IjoxfQ.c2ln"} {
		_, err := botapi.TokenExpiry(bad)
		require.ErrorIs(t, err, botapi.ErrNoExpiry)
		if bad != "" {
			require.NotContains(t, err.Error(), bad)
		}
	}
}

func TestStaticAndFileToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	got, err := botapi.StaticToken("abc").Token(ctx)
	require.NoError(t, err)
	require.Equal(t, "abc", got)
	_, err = botapi.StaticToken("").Token(ctx)
	require.ErrorIs(t, err, botapi.ErrNoToken)

	path := filepath.Join(t.TempDir(), "token")
	src := botapi.FileToken(path)
	_, err = src.Token(ctx)
	require.Error(t, err)
	require.NoError(t, os.WriteFile(path, []byte("first-token\n"), 0o600))
	got, err = src.Token(ctx)
	require.NoError(t, err)
	require.Equal(t, "first-token", got)
	require.NoError(t, os.WriteFile(path, []byte("  the-second-token "), 0o600))
	got, err = src.Token(ctx)
	require.NoError(t, err)
	require.Equal(t, "the-second-token", got, "a changed file is re-read")
	require.NoError(t, os.WriteFile(path, []byte(" "), 0o600))
	_, err = src.Token(ctx)
	require.ErrorIs(t, err, botapi.ErrNoToken)
}

// A token must not leak through any formatting verb, JSON or error.
func TestTokenNeverFormatted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := b.token
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte(tok), 0o600))
	fileSrc := botapi.FileToken(path)
	_, err := fileSrc.Token(context.Background())
	require.NoError(t, err)
	refreshing, err := botapi.NewRefreshingToken(botapi.RefreshingTokenConfig{Initial: tok,
		Refresh: func(context.Context, string) (botapi.IssuedToken, error) { return botapi.IssuedToken{}, nil }})
	require.NoError(t, err)
	boot, err := botapi.NewBootstrap(botapi.BootstrapConfig{BaseURL: b.srv.URL, Username: "u", Password: tok})
	require.NoError(t, err)
	cfg := botapi.Config{BaseURL: b.srv.URL, Tokens: botapi.StaticToken(tok)}
	values := []any{
		botapi.StaticToken(tok), fileSrc, refreshing, botapi.IssuedToken{Token: tok, ExpiresAtMillis: 1},
		&botapi.IssuedToken{Token: tok}, cfg, &cfg, b.client, *b.client, boot,
		botapi.BootstrapConfig{Password: tok}, botapi.RefreshingTokenConfig{Initial: tok},
		struct{ S botapi.TokenSource }{botapi.StaticToken(tok)}, []any{botapi.StaticToken(tok)},
		botapi.Credentials{Secret: tok},
	}
	for i, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
			out := fmt.Sprintf(verb, v)
			require.NotContains(t, out, tok, "value %d with %s", i, verb)
			require.NotContains(t, out, tok[:20], "value %d with %s", i, verb)
		}
	}
	j, err := json.Marshal(botapi.IssuedToken{Token: tok})
	require.NoError(t, err)
	require.NotContains(t, string(j), tok)

	// Errors of failed calls carry no token either.
	b.sim.ExpireTokens(testApp)
	_, _, err = b.client.GetHealth(context.Background(), testApp)
	require.ErrorIs(t, err, botapi.ErrUnauthorized)
	require.NotContains(t, err.Error(), tok)
	require.NotContains(t, fmt.Sprintf("%+v", err), tok)
	_, _, err = b.client.RefreshToken(context.Background(), testApp)
	require.NotContains(t, err.Error(), tok)
	_, err = botapi.NewRefreshingToken(botapi.RefreshingTokenConfig{Initial: "x" + tok, Refresh: func(context.Context, string) (botapi.IssuedToken, error) {
		return botapi.IssuedToken{}, nil
	}})
	require.NotContains(t, err.Error(), tok[:20])
}

func TestRefreshingTokenSingleFlight(t *testing.T) {
	t.Parallel()
	clk := newClock()
	start := clk.Now()
	first := jwtWithExp(t, start.Add(time.Hour), "1")
	second := jwtWithExp(t, start.Add(2*time.Hour), "2")
	var calls atomic.Int32
	started := make(chan struct{})
	release := make(chan struct{})
	var refreshed atomic.Int32
	src, err := botapi.NewRefreshingToken(botapi.RefreshingTokenConfig{
		Initial: first, Lead: 10 * time.Minute, Now: clk.Now,
		Refresh: func(_ context.Context, cur string) (botapi.IssuedToken, error) {
			require.Equal(t, first, cur)
			if calls.Add(1) == 1 {
				close(started)
			}
			<-release
			return botapi.IssuedToken{Token: second}, nil
		},
		OnRefresh: func(botapi.IssuedToken) { refreshed.Add(1) },
	})
	require.NoError(t, err)

	got, err := src.Token(context.Background())
	require.NoError(t, err)
	require.Equal(t, first, got)
	require.Zero(t, calls.Load(), "no refresh while far from expiry")

	clk.Add(51 * time.Minute) // inside the 10-minute lead
	const n = 32
	var wg sync.WaitGroup
	results := make([]string, n)
	for i := range n {
		wg.Go(func() {
			tok, err := src.Token(context.Background())
			require.NoError(t, err)
			results[i] = tok
		})
	}
	<-started
	close(release)
	wg.Wait()
	require.Equal(t, int32(1), calls.Load(), "concurrent callers share one refresh")
	require.Equal(t, int32(1), refreshed.Load())
	for _, r := range results {
		require.Equal(t, second, r)
	}
	require.True(t, start.Add(2*time.Hour).Equal(src.Expiry()))
}

func TestRefreshingTokenFailure(t *testing.T) {
	t.Parallel()
	clk := newClock()
	tok := jwtWithExp(t, clk.Now().Add(time.Hour), "1")
	var calls atomic.Int32
	boom := errors.New("gateway down")
	src, err := botapi.NewRefreshingToken(botapi.RefreshingTokenConfig{
		Initial: tok, Lead: 30 * time.Minute, RetryInterval: time.Minute, Now: clk.Now,
		Refresh: func(context.Context, string) (botapi.IssuedToken, error) {
			calls.Add(1)
			return botapi.IssuedToken{}, boom
		},
	})
	require.NoError(t, err)
	clk.Add(45 * time.Minute)
	got, err := src.Token(context.Background())
	require.NoError(t, err, "a still-valid token is returned when the refresh fails")
	require.Equal(t, tok, got)
	_, err = src.Token(context.Background())
	require.NoError(t, err)
	require.Equal(t, int32(1), calls.Load(), "no retry within RetryInterval")
	clk.Add(time.Minute)
	_, err = src.Token(context.Background())
	require.NoError(t, err)
	require.Equal(t, int32(2), calls.Load())
	clk.Add(20 * time.Minute) // past exp
	_, err = src.Token(context.Background())
	require.ErrorIs(t, err, boom)
	require.NotContains(t, err.Error(), tok)

	_, err = botapi.NewRefreshingToken(botapi.RefreshingTokenConfig{Initial: tok})
	require.ErrorContains(t, err, "Refresh is required")
}

func TestRefreshingTokenWaiterContext(t *testing.T) {
	t.Parallel()
	clk := newClock()
	tok := jwtWithExp(t, clk.Now().Add(time.Minute), "1")
	release := make(chan struct{})
	src, err := botapi.NewRefreshingToken(botapi.RefreshingTokenConfig{
		Initial: tok, Lead: time.Hour, Now: clk.Now,
		Refresh: func(context.Context, string) (botapi.IssuedToken, error) {
			<-release
			return botapi.IssuedToken{Token: jwtWithExp(t, clk.Now().Add(3*time.Hour), "2")}, nil
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = src.Token(ctx)
	require.ErrorIs(t, err, context.Canceled)
	close(release)
	got, err := src.Token(context.Background())
	require.NoError(t, err)
	require.NotEqual(t, tok, got, "the refresh started by the cancelled caller completed")
}
