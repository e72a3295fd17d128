package main

import (
	"github.com/spf13/cobra"

	"github.com/botq/botq/server"
)

func newServeCmd(env *cliEnv) *cobra.Command {
	var noAPI, noWorkers, noReconciler bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run botq: the HTTP API, the workers that execute actions, and the reconciler",
		Long: `Runs botq until SIGINT or SIGTERM, then stops gracefully: no new jobs are taken, running
calls finish and their results are written. Each role can be switched off (flags or roles: in the
config) to scale out: run as many processes as you like against one database.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := env.config()
			if err != nil {
				return err
			}
			cfg.Roles.API = cfg.Roles.API && !noAPI
			cfg.Roles.Workers = cfg.Roles.Workers && !noWorkers
			cfg.Roles.Reconciler = cfg.Roles.Reconciler && !noReconciler
			m := server.NewMain(cfg, server.NewLogger(cfg.Log, env.stderr))
			m.LookupEnv = env.lookupEnv
			return m.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&noAPI, "no-api", false, "do not serve the HTTP API (health and metrics are still served)")
	cmd.Flags().BoolVar(&noWorkers, "no-workers", false, "do not execute actions")
	cmd.Flags().BoolVar(&noReconciler, "no-reconciler", false, "do not run the reconciler")
	return cmd
}
