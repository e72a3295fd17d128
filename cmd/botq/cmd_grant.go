package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

// A principal enqueues for no app until granted one: a bot's database role
// by its name, an API key as api:<name>.

func newGrantCmd(env *cliEnv) *cobra.Command {
	return group("grant", "Grant principals (bots' database roles, api:<key name>) the apps they may enqueue for",
		newGrantAddCmd(env), newGrantRemoveCmd(env), newGrantListCmd(env))
}

func newGrantAddCmd(env *cliEnv) *cobra.Command {
	var allKinds bool
	var actor, reason string
	cmd := &cobra.Command{
		Use:   "add <principal> <app-id|*>",
		Short: "Let a principal enqueue for an app (* for every app)",
		Long: `A grant lets a principal enqueue the conversation kinds (respond, form, note, tag, ...) for
an app; --all-kinds adds the registration, mode and token kinds. A principal is a bot's database
role (its name) or an API key (api:<name>). Recorded as a grant event.`,
		Example: `  botq grant add bot_a my-bot
  botq grant add api:acme-bot my-bot --reason "acme's bot"
  botq grant add api:provisioner my-bot --all-kinds`,
		Args: cobra.ExactArgs(2),
		RunE: env.runDB(func(cmd *cobra.Command, args []string, db *server.Conn) error {
			scope := store.ScopeConversation
			if allKinds {
				scope = store.ScopeAll
			}
			g, err := db.Store.GrantAdd(cmd.Context(), db.Pool, args[0], args[1], scope, actorOr(env, actor), reason)
			if err != nil {
				return explain(err)
			}
			fmt.Fprintf(env.stdout, "granted %s app %s (%s kinds)\n", g.Principal, g.AppID, g.Scope)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&allKinds, "all-kinds", false, "also the registration, mode and token kinds")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the grant event)")
	addActorFlag(cmd, &actor)
	return cmd
}

func newGrantRemoveCmd(env *cliEnv) *cobra.Command {
	var actor, reason string
	cmd := &cobra.Command{
		Use:   "remove <principal> <app-id|*>",
		Short: "Take a principal's grant of an app away",
		Args:  cobra.ExactArgs(2),
		RunE: env.runDB(func(cmd *cobra.Command, args []string, db *server.Conn) error {
			if err := db.Store.GrantRemove(cmd.Context(), db.Pool, args[0], args[1], actorOr(env, actor), reason); err != nil {
				return explain(err)
			}
			fmt.Fprintf(env.stdout, "revoked %s app %s\n", args[0], args[1])
			return nil
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the grant_revoke event)")
	addActorFlag(cmd, &actor)
	return cmd
}

func newGrantListCmd(env *cliEnv) *cobra.Command {
	var out outputOpts
	cmd := &cobra.Command{
		Use:   "list [principal]",
		Short: "List grants (of one principal)",
		Args:  cobra.MaximumNArgs(1),
		RunE: env.runDB(func(cmd *cobra.Command, args []string, db *server.Conn) error {
			principal := ""
			if len(args) == 1 {
				principal = args[0]
			}
			grants, err := db.Store.GrantList(cmd.Context(), db.Pool, principal)
			if err != nil {
				return err
			}
			return writeList(env.stdout, out, map[string]any{"grants": grants}, []string{"PRINCIPAL", "APP", "KINDS", "GRANTED BY", "AT"}, grants, func(g store.Grant) []any {
				return []any{g.Principal, g.AppID, g.Scope, g.GrantedBy, g.GrantedAt}
			})
		}),
	}
	addOutputFlag(cmd, &out)
	return cmd
}
