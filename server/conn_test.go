package server

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/store/storetest"
)

// A Conn's apps take their tokens as Main's do: from the environment for
// an app with token_env, else stored and opened with the configured key.
// Only an unknown action's send is checked with Khoros before a cancel.
func TestConnect(t *testing.T) {
	t.Parallel()
	storetest.Conns(t, 2+4)
	schema, owner := storetest.NewSchema(t, 2)
	cfg := DefaultConfig()
	cfg.Database.URL = storetest.DatabaseURL(t)
	cfg.Database.Schema = schema
	cfg.Encryption.Key = base64.StdEncoding.EncodeToString(make([]byte, 32))
	cfg.Apps = []AppConfig{{ID: "env-app", TokenEnv: "ENV_APP_TOKEN"}}
	env := func(k string) (string, bool) { return "token", k == "ENV_APP_TOKEN" }

	c, err := Connect(t.Context(), cfg, env, "botq-conn-test")
	require.NoError(t, err)
	require.True(t, c.Apps.External("env-app"))
	require.False(t, c.Apps.External("other-app"))
	require.NotNil(t, c.Apps.Keyring())

	app := storetest.App(t.Context(), t, c.Store, owner, nil)
	res, err := c.Store.ActionInsert(t.Context(), owner, actionParams(app, "queued"))
	require.NoError(t, err)
	check, err := c.CheckSend(t.Context(), res.Action.ID)
	require.NoError(t, err)
	require.Nil(t, check, "a queued action's send is not checked")
	c.Close()

	cfg.Encryption.Key = ""
	c2, err := Connect(t.Context(), cfg, env, "botq-conn-test")
	require.NoError(t, err)
	defer c2.Close()
	require.Nil(t, c2.Apps.Keyring(), "without a key, only external tokens")
}
