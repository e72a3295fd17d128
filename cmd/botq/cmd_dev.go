package main

import (
	"github.com/spf13/cobra"

	"github.com/botq/botq/server"
)

func newDevCmd(env *cliEnv) *cobra.Command {
	var dir, simListen string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything locally: Postgres, the Bot v3 simulator, botq, and sample actions (make run)",
		Long: `Runs botq's main job on embedded defaults, with nothing to set up:

  - Postgres: DATABASE_URL if set, else Postgres on 127.0.0.1:5432 (database botq_dev), else a
    throwaway cluster under --dir started with this machine's initdb and pg_ctl;
  - migrates the schema, starts the Bot v3 simulator with a demo app and its token;
  - starts botq serve (API, workers, reconciler) and enqueues sample actions through SQL, Go and HTTP;
  - writes <dir>/env, the settings of the run for another shell (source .botq/env: DATABASE_URL,
    the dev encryption key, BOTQ_URL and BOTQ_API_KEY, the simulator's URL, this botq on PATH),
    in which every example of the README and docs/operations-api.md works as written;
  - prints the URLs and the commands to try next.

Ctrl-C stops everything it started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := env.config()
			if err != nil {
				return err
			}
			return server.RunDev(cmd.Context(), server.DevOptions{
				Config: cfg, LookupEnv: env.lookupEnv, Dir: dir, SimListen: simListen, Stdout: env.stdout, Stderr: env.stderr,
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".botq", "directory for the throwaway cluster, the dev encryption key and the env file")
	cmd.Flags().StringVar(&simListen, "sim-listen", "127.0.0.1:8089", "simulator address (a free port is used if it is taken)")
	return cmd
}
