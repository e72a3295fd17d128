package main

import (
	"github.com/spf13/cobra"
)

func newConfigCmd(env *cliEnv) *cobra.Command {
	return group("config", "Inspect botq's configuration", &cobra.Command{
		Use:   "check",
		Short: "Print the resolved configuration without secrets, or every problem found",
		Long: `Resolves the configuration (defaults, then --config, then the environment), validates it
and prints it as YAML. Secrets (the database password, the encryption key, API keys, tokens)
are never printed. With problems, every one is listed and the exit status is 1.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := env.config()
			if err != nil {
				return err
			}
			out, err := cfg.Dump()
			if err != nil {
				return err
			}
			_, err = env.stdout.Write(out)
			return err
		},
	})
}
