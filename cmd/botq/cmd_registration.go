package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/botq/botq/api"
	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/appclient"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

// Registration changes and mode switches are actions (queued, retried and
// audited like any other); reads call Bot v3 directly.

func newRegistrationCmd(env *cliEnv) *cobra.Command {
	return group("registration", "Register bots on network pages (create, update, delete are queued actions; get, list read Khoros)",
		newRegistrationWriteCmd(env, "create", jobs.KindRegistrationCreate, "Register the bot on a page (POST /bots/v3/registrations)"),
		newRegistrationWriteCmd(env, "update", jobs.KindRegistrationUpdate, "Create or replace a registration (PUT /bots/v3/registrations)"),
		newRegistrationDeleteCmd(env),
		newRegistrationReadCmd(env, "get <app-id> --network <key> --external-id <id>",
			"Show the app's registration on a page (GET from Khoros)", true,
			func(ctx context.Context, c *botapi.Client, page pageFlags, appID string) ([]botapi.Registration, error) {
				reg, _, err := c.GetRegistration(ctx, page.network, page.externalID, appID)
				if err != nil {
					return nil, fmt.Errorf("get registration: %w", err)
				}
				return []botapi.Registration{*reg}, nil
			}),
		newRegistrationReadCmd(env, "list <app-id> [--network <key> --external-id <id>]",
			"List the registrations the app's token sees, or those of one page (GET from Khoros)", false,
			func(ctx context.Context, c *botapi.Client, page pageFlags, _ string) (regs []botapi.Registration, err error) {
				if page.network != "" {
					regs, _, err = c.ListPageRegistrations(ctx, page.network, page.externalID)
				} else {
					regs, _, err = c.ListRegistrations(ctx)
				}
				if err != nil {
					return nil, fmt.Errorf("list registrations: %w", err)
				}
				return regs, nil
			}),
	)
}

// actionWriteFlags are the flags of commands that enqueue one action.
type actionWriteFlags struct {
	writeFlags
	key  string
	wait time.Duration
}

func (f *actionWriteFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.key, "idempotency-key", "", "enqueue at most once per app with this key (default: a random one)")
	durationVar(cmd.Flags(), &f.wait, "wait", 0, "wait up to this long for Khoros to accept it")
	f.writeFlags.add(cmd, "")
}

// enqueueOne enqueues an action and prints its id (and, with --wait, its
// outcome).
func enqueueOne(cmd *cobra.Command, env *cliEnv, f *actionWriteFlags, appID, kind string, payload []byte) error {
	return env.withDB(cmd.Context(), func(db *server.Conn) error {
		res, err := enqueue(cmd.Context(), db, []store.ActionInsertParams{{
			AppID: appID, Kind: kind, Payload: payload, IdempotencyKey: f.key, CreatedBy: actorOr(env, f.actor),
		}}, f.wait)
		if err != nil {
			return err
		}
		a := res[0].Action
		if f.out.json() {
			return writeJSONOut(env.stdout, api.EnqueueResponse{Action: api.NewAction(a), Existed: res[0].Existed})
		}
		switch {
		case res[0].Existed:
			fmt.Fprintf(env.stdout, "action %d (enqueued before with this idempotency key) is %s\n", a.ID, a.State)
		case f.wait > 0:
			fmt.Fprintf(env.stdout, "action %d is %s", a.ID, a.State)
			if a.LastError != "" {
				fmt.Fprintf(env.stdout, ": %s", a.LastError)
			}
			fmt.Fprintln(env.stdout)
		default:
			fmt.Fprintf(env.stdout, "enqueued action %d (botq actions show %d)\n", a.ID, a.ID)
		}
		if a.State == store.ActionFailed {
			return fmt.Errorf("action %d failed", a.ID)
		}
		return nil
	})
}

func newRegistrationWriteCmd(env *cliEnv, verb, kind, short string) *cobra.Command {
	var f actionWriteFlags
	var file string
	cmd := &cobra.Command{
		Use:   verb + " <app-id>",
		Short: short,
		Long: short + `, as a queued action. The registration JSON (Bot v3's full payload:
companyKey, platform, networkKey, externalId, name, callbackUrl, mode, credentials...) comes
from --file or stdin; its appId is the app's.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := env.readInput(file, "registration", 256<<10)
			if err != nil {
				return err
			}
			if !json.Valid(payload) {
				return usagef("the registration is not valid JSON (from --file or stdin)")
			}
			return enqueueOne(cmd, env, &f, args[0], kind, payload)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "read the registration JSON from this file (default: stdin)")
	f.add(cmd)
	return cmd
}

// pageFlags name a network page.
type pageFlags struct {
	network, externalID string
}

func (p *pageFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&p.network, "network", "", "the page's network key (facebook, twitter, ...)")
	cmd.Flags().StringVar(&p.externalID, "external-id", "", "the page's external id")
}

// check requires both flags (or, unless required, allows neither).
func (p *pageFlags) check(required bool) error {
	switch {
	case required && p.network == "":
		return usagef("--network is required")
	case required && p.externalID == "":
		return usagef("--external-id is required")
	case (p.network == "") != (p.externalID == ""):
		return usagef("give both --network and --external-id, or neither")
	}
	return nil
}

func (p *pageFlags) payload(extra map[string]string) []byte {
	m := map[string]string{"networkKey": p.network, "externalId": p.externalID}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func newRegistrationDeleteCmd(env *cliEnv) *cobra.Command {
	var f actionWriteFlags
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "delete <app-id> --network <key> --external-id <id>",
		Short: "Delete a registration (queued action); its conversations go to agents",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := page.check(true); err != nil {
				return err
			}
			return enqueueOne(cmd, env, &f, args[0], jobs.KindRegistrationDelete, page.payload(nil))
		},
	}
	page.add(cmd)
	f.add(cmd)
	return cmd
}

func newModeCmd(env *cliEnv) *cobra.Command {
	var f actionWriteFlags
	var page pageFlags
	cmd := &cobra.Command{
		Use:       "mode <app-id> LIVE|MAINTENANCE|MONITORING --network <key> --external-id <id>",
		Short:     "Switch a registration's mode (queued action)",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"LIVE", "MAINTENANCE", "MONITORING"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := page.check(true); err != nil {
				return err
			}
			mode := strings.ToUpper(args[1])
			if mode != "LIVE" && mode != "MAINTENANCE" && mode != "MONITORING" {
				return usagef("mode must be LIVE, MAINTENANCE or MONITORING, not %q", args[1])
			}
			return enqueueOne(cmd, env, &f, args[0], jobs.KindMode, page.payload(map[string]string{"mode": mode}))
		},
	}
	page.add(cmd)
	f.add(cmd)
	return cmd
}

// newRegistrationReadCmd is a command that reads an app's registrations
// from Khoros with read; pageRequired says whether it needs a page named.
// Credentials' secrets are never shown.
func newRegistrationReadCmd(env *cliEnv, use, short string, pageRequired bool,
	read func(ctx context.Context, c *botapi.Client, page pageFlags, appID string) ([]botapi.Registration, error)) *cobra.Command {
	var out outputOpts
	var page pageFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := page.check(pageRequired); err != nil {
				return err
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				app, err := db.Store.AppGet(cmd.Context(), db.Pool, args[0])
				if err != nil {
					return err
				}
				c, err := db.Apps.Client(app)
				if err != nil {
					return err
				}
				regs, err := read(cmd.Context(), c, page, app.ID)
				if err != nil {
					return err
				}
				for i := range regs {
					if c := regs[i].Credentials; c != nil && c.Secret != "" {
						c.Secret = "[redacted]"
					}
				}
				return writeList(env.stdout, out, regs, []string{"NETWORK", "EXTERNAL ID", "APP", "NAME", "MODE", "PLATFORM", "CALLBACK"}, regs, func(r botapi.Registration) []any {
					return []any{r.NetworkKey, r.ExternalID, r.AppID, r.Name, r.Mode, r.Platform, r.CallbackURL}
				})
			})
		},
	}
	page.add(cmd)
	addOutputFlag(cmd, &out)
	return cmd
}

func newHealthCmd(env *cliEnv) *cobra.Command {
	var out outputOpts
	var stored bool
	cmd := &cobra.Command{
		Use:   "health [app-id...]",
		Short: "Show apps' webhook health: live from Khoros (GET /bots/v3/health) and as last recorded",
		Args:  cobra.ArbitraryArgs,
		RunE: env.runDB(func(cmd *cobra.Command, args []string, db *server.Conn) error {
			apps, err := appsNamed(cmd.Context(), db, args)
			if err != nil {
				return err
			}
			res, failed := db.Apps.Health(cmd.Context(), apps, !stored)
			err = writeList(env.stdout, out, res, []string{"APP", "LIVE", "FAILURES", "SUCCESSES", "STORED", "CHECKED"}, res, func(r appclient.HealthReport) []any {
				live, fails, oks := any(r.LiveError), any(nil), any(nil)
				if len(r.Live) > 0 {
					live, fails, oks = r.Live[0].Status, r.Live[0].FailureCount, r.Live[0].SuccessCount
				} else if r.LiveError == "" && !stored {
					live = "no data"
				}
				return []any{r.AppID, live, fails, oks, r.Stored, r.CheckedAt}
			})
			if err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("health of %d of %s could not be read from Khoros", failed, plural(int64(len(res)), "app"))
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&stored, "stored", false, "show only what the reconciler recorded; call nothing")
	addOutputFlag(cmd, &out)
	return cmd
}
