package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spf13/cobra"

	"github.com/botq/botq/api"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

func newAppCmd(env *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Create and change apps, show them with their token, health and queue; pause and resume their calls",
	}
	cmd.AddCommand(newAppListCmd(env), newAppSetCmd(env), newAppPauseCmd(env), newAppResumeCmd(env))
	return cmd
}

func newAppListCmd(env *cliEnv) *cobra.Command {
	var out outputOpts
	cmd := &cobra.Command{
		Use:     "list [app-id]",
		Aliases: []string{"show"},
		Short:   "List apps (or one) with token expiry, health, pause and queue depth",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				id := ""
				if len(args) == 1 {
					id = args[0]
				}
				apps, err := appViews(cmd.Context(), env, db, id)
				if err != nil {
					return err
				}
				res := api.AppList{Apps: apps}
				if out.json() {
					return writeJSONOut(env.stdout, res)
				}
				printApps(env, res.Apps)
				return nil
			})
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

// reportApp ends a command that changed an app: its sentences, or with
// --output json the app as `botq app list` shows it.
func reportApp(ctx context.Context, env *cliEnv, db *server.Conn, out *outputOpts, appID string, lines ...string) error {
	if !out.json() {
		for _, l := range lines {
			fmt.Fprintln(env.stdout, l)
		}
		return nil
	}
	apps, err := appViews(ctx, env, db, appID)
	if err != nil {
		return err
	}
	if len(apps) != 1 {
		return fmt.Errorf("app %s: %w", appID, store.ErrNotFound)
	}
	return writeJSONOut(env.stdout, apps[0])
}

// appViews returns the apps (or the one, appID "" for all) as the API and
// `app list` show them.
func appViews(ctx context.Context, env *cliEnv, db *server.Conn, appID string) ([]api.App, error) {
	sts, err := db.Store.AppStatusList(ctx, db.Pool, appID)
	if err != nil {
		return nil, err
	}
	ext := server.ExternalTokens(db.Config, env.lookupEnv)
	now := time.Now()
	apps := make([]api.App, len(sts))
	for i, st := range sts {
		_, external := ext[st.ID]
		apps[i] = api.NewApp(st, external, now)
	}
	return apps, nil
}

func printApps(env *cliEnv, apps []api.App) {
	tw := newTable(env.stdout, "APP", "REGION", "TOKEN", "EXPIRES", "HEALTH", "PAUSED UNTIL", "QUEUE", "OLDEST (s)", "PENDING REQ")
	for _, a := range apps {
		paused := any(nil)
		if a.Paused {
			paused = a.PausedUntil
			if a.PausedUntil != nil && a.PausedUntil.Equal(store.Forever) {
				paused = "until resumed"
			}
		}
		oldest := any(nil)
		if a.Queue.OldestAgeSeconds != nil {
			oldest = fmt.Sprintf("%.0f", *a.Queue.OldestAgeSeconds)
		}
		row(tw, a.ID, a.Region, a.Token.Source, a.Token.ExpiresAt, a.Health.Status, paused, a.Queue.Depth, oldest, a.Queue.PendingRequests)
	}
	_ = tw.Flush()
}

func newAppPauseCmd(env *cliEnv) *cobra.Command {
	var (
		reason, until string
		forDur        time.Duration
		actor         string
		out           outputOpts
	)
	cmd := &cobra.Command{
		Use:   "pause <app-id>",
		Short: "Stop calls to Khoros for an app (until resumed, --until a time, or --for a while)",
		Long: `Workers stop calling Khoros for the app; its actions wait (snoozed, no attempt used) and
run when the app is resumed. Records a pause event.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("--reason is required: say why the app is paused")
			}
			end := store.Forever
			switch {
			case until != "" && forDur != 0:
				return usagef("give --until or --for, not both")
			case until != "":
				t, err := api.ParseTime(until)
				if err != nil {
					return usagef("--until: %v", err)
				}
				if !t.After(time.Now()) {
					return usagef("--until %s is in the past", until)
				}
				end = t
			case forDur < 0:
				return usagef("--for must be positive, not %s", forDur)
			case forDur > 0:
				end = time.Now().Add(forDur)
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				a, err := db.Store.AppPauseAudited(cmd.Context(), db.Pool, args[0], end, actorOr(env, actor), reason)
				if err != nil {
					return err
				}
				line := fmt.Sprintf("paused app %s until %s", a.ID, end.UTC().Format(time.RFC3339))
				if end.Equal(store.Forever) {
					line = fmt.Sprintf("paused app %s until resumed (botq app resume %s)", a.ID, a.ID)
				}
				return reportApp(cmd.Context(), env, db, &out, a.ID, line)
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the pause event)")
	cmd.Flags().StringVar(&until, "until", "", "resume by itself at this time (RFC 3339)")
	durationVar(cmd.Flags(), &forDur, "for", 0, "resume by itself after this long (30m, 2h, 1d)")
	addActorFlag(cmd, &actor)
	addOutputFlag(cmd, &out)
	return cmd
}

func newAppResumeCmd(env *cliEnv) *cobra.Command {
	var reason, actor string
	var out outputOpts
	cmd := &cobra.Command{
		Use:   "resume <app-id>",
		Short: "Resume an app's calls (and clear a Khoros throttle); waiting actions run at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				a, err := db.Store.AppResumeAudited(cmd.Context(), db.Pool, args[0], actorOr(env, actor), reason)
				if err != nil {
					return err
				}
				return reportApp(cmd.Context(), env, db, &out, a.ID, fmt.Sprintf("resumed app %s", a.ID))
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the resume event)")
	addActorFlag(cmd, &actor)
	addOutputFlag(cmd, &out)
	return cmd
}

func newAppSetCmd(env *cliEnv) *cobra.Command {
	var (
		p     store.AppUpsertParams
		actor string
		rate  float64
		conc  int
		out   outputOpts
	)
	cmd := &cobra.Command{
		Use:   "set <app-id>",
		Short: "Create an app, or change its region, gateway, company key, limits and lane policy",
		Long: `Creates the app or replaces its settings (unset flags take their defaults), and records an
app_upsert event. Apps listed under apps: in the config file are set like this by every
botq serve at start, so change those in the file instead. Set the app's token with botq token set.`,
		Example: `  botq app set my-bot --region US --company-key mycompany --rate-limit 10 --concurrency 20
  botq app set test-bot --region CUSTOM --base-url http://127.0.0.1:8089 --company-key acme`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.ID = args[0]
			cfg := server.AppConfig{ID: p.ID, Region: p.Region, BaseURL: p.BaseURL, CompanyKey: p.CompanyKey, RateLimit: rate,
				RateBurst: p.RateBurst, Concurrency: conc, LaneOnFailure: p.LaneOnFailure}
			check := server.Config{Apps: []server.AppConfig{cfg}}
			for _, problem := range check.ValidateApps() {
				return usagef("%s", strings.Replace(strings.Replace(problem, "apps[0].", "--", 1), "_", "-", 1))
			}
			p.Region = server.AppRegion(cfg)
			if rate > 0 {
				p.RateLimit = &rate
			}
			if conc > 0 {
				p.ConcurrencyLimit = &conc
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				ctx := cmd.Context()
				var a *store.App
				var err error
				err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
					if a, err = db.Store.AppUpsert(ctx, tx, p); err != nil {
						return err
					}
					_, err = db.Store.EventInsert(ctx, tx, store.EventInsertParams{AppID: a.ID, Kind: "app_upsert", Actor: actorOr(env, actor),
						After: map[string]any{"region": a.Region, "base_url": a.BaseURL, "company_key": a.CompanyKey, "rate_limit": a.RateLimit,
							"rate_burst": a.RateBurst, "concurrency_limit": a.ConcurrencyLimit, "lane_on_failure": a.LaneOnFailure}})
					return err
				})
				if err != nil {
					return err
				}
				return reportApp(ctx, env, db, &out, a.ID, fmt.Sprintf("app %s set (region %s)", a.ID, a.Region))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.Region, "region", "US", "US, EMEA, APAC, or CUSTOM with --base-url")
	f.StringVar(&p.BaseURL, "base-url", "", "gateway for region CUSTOM: https, or http to a loopback address (the simulator)")
	f.StringVar(&p.CompanyKey, "company-key", "", "the app's Care company key")
	f.Float64Var(&rate, "rate-limit", 0, "calls per second for the whole fleet (0: none)")
	f.IntVar(&p.RateBurst, "rate-burst", 1, "calls allowed at once above the rate")
	f.IntVar(&conc, "concurrency", 0, "calls in flight for the whole fleet (0: none)")
	f.StringVar(&p.LaneOnFailure, "lane-on-failure", "continue", "continue, or block: a failed action holds its lane's later ones")
	addActorFlag(cmd, &actor)
	addOutputFlag(cmd, &out)
	return cmd
}
