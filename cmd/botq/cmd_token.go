package main

import (
	"bufio"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/botq/botq/botapi/appclient"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

// Tokens never travel in flags or arguments, which land in shell history
// and process listings: they come from stdin or a file, and credentials for
// a bootstrap from the environment or stdin.

func newTokenCmd(env *cliEnv) *cobra.Command {
	return group("token", "Set, bootstrap, refresh, revoke and inspect apps' Bot v3 tokens (stored encrypted)",
		newTokenSetCmd(env), newTokenBootstrapCmd(env), newTokenRefreshCmd(env), newTokenRevokeCmd(env), newTokenStatusCmd(env))
}

// reportToken ends a command that stored an app's token.
func reportToken(cmd *cobra.Command, env *cliEnv, db *server.Conn, f *writeFlags, app *store.App, resumed bool, err error) error {
	if err != nil {
		return err
	}
	lines := []string{fmt.Sprintf("stored token version %d for app %s; expires %s", app.TokenVersion, app.ID, expiry(app.TokenExpiresAt))}
	if resumed {
		lines = append(lines, fmt.Sprintf("app %s was paused for its token and is resumed", app.ID))
	}
	return f.report(cmd.Context(), env, db, app.ID, lines...)
}

func expiry(t *time.Time) string {
	if t == nil {
		return "unknown (not a JWT with exp)"
	}
	return t.UTC().Format(time.RFC3339)
}

func newTokenSetCmd(env *cliEnv) *cobra.Command {
	var file string
	var f writeFlags
	cmd := &cobra.Command{
		Use:   "set <app-id>",
		Short: "Store a token for an app, read from stdin or --file (never from a flag)",
		Example: `  botq token set my-app < token.txt
  botq token set my-app --file /run/secrets/khoros-token`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := env.readInput(file, "token", 64<<10)
			token := strings.TrimSpace(string(b))
			switch {
			case err != nil:
				return err
			case token == "" && file != "":
				return usagef("--file %s is empty", file)
			case token == "":
				return usagef("no token on stdin (pipe it in, or use --file)")
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				app, resumed, err := db.Apps.StoreToken(cmd.Context(), args[0], token, actorOr(env, f.actor), f.reason)
				return reportToken(cmd, env, db, &f, app, resumed, err)
			})
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "read the token from this file (default: stdin)")
	f.add(cmd, "why (recorded in the token_set event)")
	return cmd
}

func newTokenBootstrapCmd(env *cliEnv) *cobra.Command {
	var f writeFlags
	var existing bool
	cmd := &cobra.Command{
		Use:   "bootstrap <app-id>",
		Short: "Get an app's first token from Khoros Care (v2 token endpoint, Basic auth) and store it",
		Long: `Calls POST <khoros.care_base_url>/api/v2/tokens/khorosapi/ownerId/<app-id> with the Basic
credentials of a Care user who has the Bot API role, and stores the token encrypted. The
credentials come from BOTQ_CARE_USERNAME and BOTQ_CARE_PASSWORD, or from stdin (the user name
on the first line, the password on the second).`,
		Args: cobra.ExactArgs(1),
		RunE: env.runDB(func(cmd *cobra.Command, args []string, db *server.Conn) error {
			user, pass, err := careCredentials(env)
			if err != nil {
				return err
			}
			app, resumed, err := db.Apps.Bootstrap(cmd.Context(), db.Config.Khoros.CareBaseURL, user, pass, args[0], existing, actorOr(env, f.actor))
			return reportToken(cmd, env, db, &f, app, resumed, err)
		}),
	}
	cmd.Flags().BoolVar(&existing, "existing", false, "fetch the app's existing token instead of creating one")
	f.add(cmd, "")
	return cmd
}

func newTokenRefreshCmd(env *cliEnv) *cobra.Command {
	var f writeFlags
	cmd := &cobra.Command{
		Use:   "refresh <app-id>",
		Short: "Exchange an app's stored token for a new one now (the old one keeps working 10 minutes)",
		Args:  cobra.ExactArgs(1),
		RunE: env.runDB(func(cmd *cobra.Command, args []string, db *server.Conn) error {
			app, err := db.Store.AppGet(cmd.Context(), db.Pool, args[0])
			if err != nil {
				return err
			}
			if f.reason == "" {
				f.reason = "refreshed by an operator"
			}
			res, err := db.Apps.Refresh(cmd.Context(), app.ID, app.TokenVersion, actorOr(env, f.actor), f.reason)
			if err != nil {
				return err
			}
			if !res.Refreshed {
				return f.report(cmd.Context(), env, db, app.ID, fmt.Sprintf("app %s's token changed meanwhile (now version %d); nothing refreshed", app.ID, res.App.TokenVersion))
			}
			return f.report(cmd.Context(), env, db, app.ID, fmt.Sprintf("refreshed token of app %s: version %d, expires %s", app.ID, res.App.TokenVersion, cell(res.App.TokenExpiresAt)))
		}),
	}
	f.add(cmd, "why (recorded in the token_refresh event)")
	return cmd
}

func newTokenRevokeCmd(env *cliEnv) *cobra.Command {
	var f writeFlags
	cmd := &cobra.Command{
		Use:   "revoke <app-id>",
		Short: "Revoke every token of an app at Khoros, forget the stored one and pause the app",
		Long: `Calls DELETE /bots/v3/tokens/appId/<app-id>: every token of the app stops working at once,
with no grace period. botq forgets the stored token and pauses the app until a new token is
set (botq token set or bootstrap), which resumes it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.reason == "" {
				return usagef("--reason is required: say why the tokens are revoked")
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				app, err := db.Apps.Revoke(cmd.Context(), args[0], actorOr(env, f.actor), f.reason)
				if err != nil {
					return err
				}
				return f.report(cmd.Context(), env, db, app.ID, fmt.Sprintf("revoked every token of app %s; the app is paused until a new token is set", app.ID))
			})
		},
	}
	f.add(cmd, "why (required; recorded in the token_revoke event)")
	return cmd
}

func newTokenStatusCmd(env *cliEnv) *cobra.Command {
	var out outputOpts
	cmd := &cobra.Command{
		Use:   "status [app-id]",
		Short: "Show where each app's token comes from, its version and expiry (never the token)",
		Args:  cobra.MaximumNArgs(1),
		RunE: env.runDB(func(cmd *cobra.Command, args []string, db *server.Conn) error {
			apps, err := appsNamed(cmd.Context(), db, args)
			if err != nil {
				return err
			}
			res := db.Apps.TokenStatuses(apps)
			return writeList(env.stdout, out, res, []string{"APP", "SOURCE", "VERSION", "EXPIRES", "REFRESHED", "KEY OK", "PAUSED UNTIL"}, res, func(st appclient.TokenStatus) []any {
				keyOK := any(nil)
				if st.KeyOK != nil {
					keyOK = *st.KeyOK
				}
				return []any{st.AppID, st.Source, st.Version, st.ExpiresAt, st.RefreshedAt, keyOK, st.PausedUntil}
			})
		}),
	}
	addOutputFlag(cmd, &out)
	return cmd
}

// careCredentials are a Care user's name and password, from
// BOTQ_CARE_USERNAME and BOTQ_CARE_PASSWORD or two lines of stdin.
func careCredentials(env *cliEnv) (user, pass string, err error) {
	user, _ = env.lookupEnv("BOTQ_CARE_USERNAME")
	pass, _ = env.lookupEnv("BOTQ_CARE_PASSWORD")
	if user != "" && pass != "" {
		return user, pass, nil
	}
	sc := bufio.NewScanner(env.stdin)
	var lines []string
	for len(lines) < 2 && sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	if len(lines) < 2 || lines[0] == "" || lines[1] == "" {
		return "", "", usagef("Care credentials: set BOTQ_CARE_USERNAME and BOTQ_CARE_PASSWORD, or give the user name and password on two lines of stdin")
	}
	return lines[0], lines[1], nil
}
