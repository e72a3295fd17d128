package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

// Tokens never travel in flags or arguments, which land in shell history
// and process listings: they come from stdin or a file, and credentials for
// a bootstrap from the environment or stdin.

func newTokenCmd(env *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Set, bootstrap, refresh, revoke and inspect apps' Bot v3 tokens (stored encrypted)",
	}
	cmd.AddCommand(newTokenSetCmd(env), newTokenBootstrapCmd(env), newTokenRefreshCmd(env),
		newTokenRevokeCmd(env), newTokenStatusCmd(env))
	return cmd
}

// storeToken seals and stores a token, records the event, and resumes an
// app that was paused for its token.
func storeToken(cmd *cobra.Command, env *cliEnv, db *cliDB, out *outputOpts, appID, token, actor, reason string) error {
	if _, ok := server.ExternalTokens(db.cfg, env.lookupEnv)[appID]; ok {
		return fmt.Errorf("app %s takes its token from the config (token_env or token_file), so a stored token would never be used", appID)
	}
	kr, err := db.keyring()
	if err != nil {
		return err
	}
	var exp *time.Time
	if t, err := botapi.TokenExpiry(token); err == nil {
		exp = &t
	}
	app, resumed, err := db.store.AppSetTokenAudited(cmd.Context(), db.pool, appID, kr.Seal(appID, token), kr.ID(), exp, actor, reason)
	if err != nil {
		return err
	}
	expires := "unknown (not a JWT with exp)"
	if exp != nil {
		expires = exp.UTC().Format(time.RFC3339)
	}
	lines := []string{fmt.Sprintf("stored token version %d for app %s; expires %s", app.TokenVersion, appID, expires)}
	if resumed {
		lines = append(lines, fmt.Sprintf("app %s was paused for its token and is resumed", appID))
	}
	return reportApp(cmd.Context(), env, db, out, appID, lines...)
}

func readSecret(r io.Reader, what string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", usagef("no %s on stdin (pipe it in, or use --file)", what)
	}
	return s, nil
}

func newTokenSetCmd(env *cliEnv) *cobra.Command {
	var file, actor, reason string
	var out outputOpts
	cmd := &cobra.Command{
		Use:   "set <app-id>",
		Short: "Store a token for an app, read from stdin or --file (never from a flag)",
		Example: `  botq token set my-app < token.txt
  botq token set my-app --file /run/secrets/khoros-token`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var token string
			var err error
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return fmt.Errorf("--file: %w", err)
				}
				if token = strings.TrimSpace(string(b)); token == "" {
					return usagef("--file %s is empty", file)
				}
			} else if token, err = readSecret(env.stdin, "token"); err != nil {
				return err
			}
			db, err := env.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.close()
			return storeToken(cmd, env, db, &out, args[0], token, actorOr(env, actor), reason)
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "read the token from this file (default: stdin)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the token_set event)")
	addActorFlag(cmd, &actor)
	addOutputFlag(cmd, &out)
	return cmd
}

func newTokenBootstrapCmd(env *cliEnv) *cobra.Command {
	var actor string
	var out outputOpts
	var existing bool
	cmd := &cobra.Command{
		Use:   "bootstrap <app-id>",
		Short: "Get an app's first token from Khoros Care (v2 token endpoint, Basic auth) and store it",
		Long: `Calls POST <khoros.care_base_url>/api/v2/tokens/khorosapi/ownerId/<app-id> with the Basic
credentials of a Care user who has the Bot API role, and stores the token encrypted. The
credentials come from BOTQ_CARE_USERNAME and BOTQ_CARE_PASSWORD, or from stdin (the user name
on the first line, the password on the second). With --existing, fetches the token that
already exists instead of creating one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			appID := args[0]
			db, err := env.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.close()
			if db.cfg.Khoros.CareBaseURL == "" {
				return errors.New("khoros.care_base_url is not set (https://<instance>.response.lithium.com)")
			}
			if _, err := db.store.AppGet(cmd.Context(), db.pool, appID); err != nil {
				return err
			}
			user, _ := env.lookupEnv("BOTQ_CARE_USERNAME")
			pass, _ := env.lookupEnv("BOTQ_CARE_PASSWORD")
			if user == "" || pass == "" {
				sc := bufio.NewScanner(env.stdin)
				lines := []string{}
				for len(lines) < 2 && sc.Scan() {
					lines = append(lines, strings.TrimSpace(sc.Text()))
				}
				if len(lines) < 2 || lines[0] == "" || lines[1] == "" {
					return usagef("Care credentials: set BOTQ_CARE_USERNAME and BOTQ_CARE_PASSWORD, or give the user name and password on two lines of stdin")
				}
				user, pass = lines[0], lines[1]
			}
			b, err := botapi.NewBootstrap(botapi.BootstrapConfig{BaseURL: db.cfg.Khoros.CareBaseURL, Username: user, Password: pass,
				HTTPClient: nil})
			if err != nil {
				return err
			}
			call, reason := b.CreateToken, "bootstrapped from Khoros Care"
			if existing {
				call, reason = b.GetToken, "fetched the existing token from Khoros Care"
			}
			issued, _, err := call(cmd.Context(), appID)
			if errors.Is(err, botapi.ErrConflict) {
				return fmt.Errorf("%w: the app has a token already; use --existing to fetch it, or botq token refresh", err)
			}
			if err != nil {
				return fmt.Errorf("bootstrap token of app %s: %w", appID, err)
			}
			return storeToken(cmd, env, db, &out, appID, issued.Token, actorOr(env, actor), reason)
		},
	}
	cmd.Flags().BoolVar(&existing, "existing", false, "fetch the app's existing token instead of creating one")
	addActorFlag(cmd, &actor)
	addOutputFlag(cmd, &out)
	return cmd
}

func newTokenRefreshCmd(env *cliEnv) *cobra.Command {
	var actor, reason string
	var out outputOpts
	cmd := &cobra.Command{
		Use:   "refresh <app-id>",
		Short: "Exchange an app's stored token for a new one now (the old one keeps working 10 minutes)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := env.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.close()
			app, err := db.store.AppGet(cmd.Context(), db.pool, args[0])
			if err != nil {
				return err
			}
			if reason == "" {
				reason = "refreshed by an operator"
			}
			res, err := db.registry(env).Refresh(cmd.Context(), app.ID, app.TokenVersion, actorOr(env, actor), reason)
			if err != nil {
				return err
			}
			if !res.Refreshed {
				return reportApp(cmd.Context(), env, db, &out, app.ID, fmt.Sprintf("app %s's token changed meanwhile (now version %d); nothing refreshed", app.ID, res.App.TokenVersion))
			}
			return reportApp(cmd.Context(), env, db, &out, app.ID, fmt.Sprintf("refreshed token of app %s: version %d, expires %s", app.ID, res.App.TokenVersion, cell(res.App.TokenExpiresAt)))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the token_refresh event)")
	addActorFlag(cmd, &actor)
	addOutputFlag(cmd, &out)
	return cmd
}

func newTokenRevokeCmd(env *cliEnv) *cobra.Command {
	var actor, reason string
	var out outputOpts
	cmd := &cobra.Command{
		Use:   "revoke <app-id>",
		Short: "Revoke every token of an app at Khoros, forget the stored one and pause the app",
		Long: `Calls DELETE /bots/v3/tokens/appId/<app-id>: every token of the app stops working at once,
with no grace period. botq forgets the stored token and pauses the app until a new token is
set (botq token set or bootstrap), which resumes it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("--reason is required: say why the tokens are revoked")
			}
			db, err := env.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.close()
			app, err := db.store.AppGet(cmd.Context(), db.pool, args[0])
			if err != nil {
				return err
			}
			c, err := db.registry(env).Client(app)
			if err != nil {
				return err
			}
			if _, err := c.RevokeTokens(cmd.Context(), app.ID); err != nil {
				return fmt.Errorf("revoke tokens of app %s: %w", app.ID, err)
			}
			if _, err := db.store.AppRevokeTokenAudited(cmd.Context(), db.pool, app.ID, actorOr(env, actor), reason); err != nil {
				return fmt.Errorf("record revoke (the tokens ARE revoked at Khoros): %w", err)
			}
			return reportApp(cmd.Context(), env, db, &out, app.ID, fmt.Sprintf("revoked every token of app %s; the app is paused until a new token is set", app.ID))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the token_revoke event)")
	addActorFlag(cmd, &actor)
	addOutputFlag(cmd, &out)
	return cmd
}

// TokenStatus describes an app's token, never the token itself.
type TokenStatus struct {
	AppID       string     `json:"app_id"`
	Source      string     `json:"source"`
	Version     int        `json:"version"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RefreshedAt *time.Time `json:"refreshed_at,omitempty"`
	// KeyOK says whether the configured encryption key opens the stored
	// token (null when there is none to open, or no key).
	KeyOK       *bool      `json:"key_ok,omitempty"`
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	PauseReason string     `json:"pause_reason,omitempty"`
}

func newTokenStatusCmd(env *cliEnv) *cobra.Command {
	var out outputOpts
	cmd := &cobra.Command{
		Use:   "status [app-id]",
		Short: "Show where each app's token comes from, its version and expiry (never the token)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := env.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.close()
			apps, err := db.store.AppList(cmd.Context(), db.pool)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				a, err := db.store.AppGet(cmd.Context(), db.pool, args[0])
				if err != nil {
					return err
				}
				apps = []*store.App{a}
			}
			kr, _ := db.keyring()
			ext := server.ExternalTokens(db.cfg, env.lookupEnv)
			var res []TokenStatus
			for _, a := range apps {
				st := TokenStatus{AppID: a.ID, Source: "none", Version: a.TokenVersion, ExpiresAt: a.TokenExpiresAt,
					RefreshedAt: a.TokenRefreshedAt, PausedUntil: a.PausedUntil, PauseReason: a.PauseReason}
				switch _, external := ext[a.ID]; {
				case external:
					st.Source = "external"
				case len(a.TokenCiphertext) > 0:
					st.Source = "stored"
					if kr != nil {
						_, err := kr.Open(a.ID, a.TokenKeyID, a.TokenCiphertext)
						ok := err == nil
						st.KeyOK = &ok
					}
				}
				res = append(res, st)
			}
			if out.json() {
				return writeJSONOut(env.stdout, res)
			}
			tw := newTable(env.stdout, "APP", "SOURCE", "VERSION", "EXPIRES", "REFRESHED", "KEY OK", "PAUSED UNTIL")
			for _, st := range res {
				keyOK := any(nil)
				if st.KeyOK != nil {
					keyOK = *st.KeyOK
				}
				row(tw, st.AppID, st.Source, st.Version, st.ExpiresAt, st.RefreshedAt, keyOK, st.PausedUntil)
			}
			return tw.Flush()
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}
