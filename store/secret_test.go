package store_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store"
)

func newKeyring(t *testing.T) *store.Keyring {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	k, err := store.NewKeyring(key)
	require.NoError(t, err)
	return k
}

// A stored token is ciphertext that opens only with the key that sealed it
// and only for the app it was sealed for; a wrong key is reported as such.
func TestKeyringSealsTokensPerAppAndKey(t *testing.T) {
	t.Parallel()
	k, other := newKeyring(t), newKeyring(t)
	const token = "eyJhbGciOiJIUzI1NiJ9.secret-token"
	sealed := k.Seal("app-a", token)
	require.False(t, bytes.Contains(sealed, []byte("secret-token")), "the token is not stored in clear")
	require.NotEqual(t, sealed, k.Seal("app-a", token), "a fresh nonce for every seal")

	got, err := k.Open("app-a", k.ID(), sealed)
	require.NoError(t, err)
	require.Equal(t, token, got)

	_, err = k.Open("app-b", k.ID(), sealed)
	require.ErrorIs(t, err, store.ErrWrongKey, "copied to another app, it does not open")
	_, err = other.Open("app-a", k.ID(), sealed)
	require.True(t, errors.Is(err, store.ErrWrongKey), "another key is named as the problem")
	_, err = other.Open("app-a", "", sealed)
	require.ErrorIs(t, err, store.ErrWrongKey)
	require.NotContains(t, k.String(), token)
}
