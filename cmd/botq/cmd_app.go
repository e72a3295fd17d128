package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/botq/botq/api"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

func newAppCmd(env *cliEnv) *cobra.Command {
	return group("app", "Create and change apps, show them with their token, health and queue; pause and resume their calls",
		newAppListCmd(env), newAppSetCmd(env), newAppPauseCmd(env), newAppResumeCmd(env))
}

func newAppListCmd(env *cliEnv) *cobra.Command {
	var out outputOpts
	cmd := &cobra.Command{
		Use:     "list [app-id]",
		Aliases: []string{"show"},
		Short:   "List apps (or one) with token expiry, health, pause and queue depth",
		Args:    cobra.MaximumNArgs(1),
		RunE: env.runDB(func(cmd *cobra.Command, args []string, db *server.Conn) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			apps, err := api.LoadApps(cmd.Context(), db.Store, db.Pool, id, db.Apps.External, time.Now())
			if err != nil {
				return err
			}
			return writeList(env.stdout, out, api.AppList{Apps: apps}, []string{"APP", "REGION", "TOKEN", "EXPIRES", "HEALTH", "PAUSED UNTIL", "QUEUE", "OLDEST (s)", "PENDING REQ"}, apps, appCols)
		}),
	}
	addOutputFlag(cmd, &out)
	return cmd
}

// appsNamed returns the apps of ids, or every app when ids is empty.
func appsNamed(ctx context.Context, db *server.Conn, ids []string) ([]*store.App, error) {
	if len(ids) == 0 {
		return db.Store.AppList(ctx, db.Pool)
	}
	apps := make([]*store.App, 0, len(ids))
	for _, id := range ids {
		a, err := db.Store.AppGet(ctx, db.Pool, id)
		if err != nil {
			return nil, err
		}
		apps = append(apps, a)
	}
	return apps, nil
}

// report ends a command that changed an app: its sentences, or with --output json the app
// as `botq app list` shows it.
func (f *writeFlags) report(ctx context.Context, env *cliEnv, db *server.Conn, appID string, lines ...string) error {
	if !f.out.json() {
		for _, l := range lines {
			fmt.Fprintln(env.stdout, l)
		}
		return nil
	}
	apps, err := api.LoadApps(ctx, db.Store, db.Pool, appID, db.Apps.External, time.Now())
	if err != nil {
		return err
	}
	return writeJSONOut(env.stdout, apps[0])
}

func appCols(a api.App) []any {
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
	return []any{a.ID, a.Region, a.Token.Source, a.Token.ExpiresAt, a.Health.Status, paused, a.Queue.Depth, oldest, a.Queue.PendingRequests}
}

func newAppPauseCmd(env *cliEnv) *cobra.Command {
	var (
		f      writeFlags
		until  string
		forDur time.Duration
	)
	cmd := &cobra.Command{
		Use:   "pause <app-id>",
		Short: "Stop calls to Khoros for an app (until resumed, --until a time, or --for a while)",
		Long: `Workers stop calling Khoros for the app; its actions wait (snoozed, no attempt used) and
run when the app is resumed. Records a pause event.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.reason == "" {
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
				a, err := db.Store.AppPauseAudited(cmd.Context(), db.Pool, args[0], end, actorOr(env, f.actor), f.reason)
				if err != nil {
					return err
				}
				line := fmt.Sprintf("paused app %s until %s", a.ID, end.UTC().Format(time.RFC3339))
				if end.Equal(store.Forever) {
					line = fmt.Sprintf("paused app %s until resumed (botq app resume %s)", a.ID, a.ID)
				}
				return f.report(cmd.Context(), env, db, a.ID, line)
			})
		},
	}
	cmd.Flags().StringVar(&until, "until", "", "resume by itself at this time (RFC 3339)")
	durationVar(cmd.Flags(), &forDur, "for", 0, "resume by itself after this long (30m, 2h, 1d)")
	f.add(cmd, "why (required; recorded in the pause event)")
	return cmd
}

func newAppResumeCmd(env *cliEnv) *cobra.Command {
	var f writeFlags
	cmd := &cobra.Command{
		Use:   "resume <app-id>",
		Short: "Resume an app's calls (and clear a Khoros throttle); waiting actions run at once",
		Args:  cobra.ExactArgs(1),
		RunE: env.runDB(func(cmd *cobra.Command, args []string, db *server.Conn) error {
			a, err := db.Store.AppResumeAudited(cmd.Context(), db.Pool, args[0], actorOr(env, f.actor), f.reason)
			if err != nil {
				return err
			}
			return f.report(cmd.Context(), env, db, a.ID, fmt.Sprintf("resumed app %s", a.ID))
		}),
	}
	f.add(cmd, "why (recorded in the resume event)")
	return cmd
}

func newAppSetCmd(env *cliEnv) *cobra.Command {
	var (
		a server.AppConfig
		f writeFlags
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
			a.ID = args[0]
			check := server.Config{Apps: []server.AppConfig{a}}
			for _, problem := range check.ValidateApps() {
				// The problem names the config key (apps[0].lane_on_failure):
				// say the flag's name instead.
				key, rest, _ := strings.Cut(strings.Replace(problem, "apps[0].", "--", 1), ":")
				return usagef("%s:%s", strings.ReplaceAll(key, "_", "-"), rest)
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				app, err := db.Store.AppUpsertAudited(cmd.Context(), db.Pool, a.UpsertParams(), actorOr(env, f.actor))
				if err != nil {
					return err
				}
				return f.report(cmd.Context(), env, db, app.ID, fmt.Sprintf("app %s set (region %s)", app.ID, app.Region))
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&a.Region, "region", "US", "US, EMEA, APAC, or CUSTOM with --base-url")
	fs.StringVar(&a.BaseURL, "base-url", "", "gateway for region CUSTOM: https, or http to a loopback address (the simulator)")
	fs.StringVar(&a.CompanyKey, "company-key", "", "the app's Care company key")
	fs.Float64Var(&a.RateLimit, "rate-limit", 0, "calls per second for the whole fleet (0: none)")
	fs.IntVar(&a.RateBurst, "rate-burst", 1, "calls allowed at once above the rate")
	fs.IntVar(&a.Concurrency, "concurrency", 0, "calls in flight for the whole fleet (0: none)")
	fs.StringVar(&a.LaneOnFailure, "lane-on-failure", "continue", "continue, or block: a failed action holds its lane's later ones")
	f.add(cmd, "")
	return cmd
}
