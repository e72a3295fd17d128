package main

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"
	"github.com/spf13/cobra"

	"github.com/botq/botq/migrations"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

func newMigrateCmd(env *cliEnv) *cobra.Command {
	var to int64
	down := migrateCmd(env, "down", "Undo the last migration, or every migration after --to", func(cmd *cobra.Command, cfg server.Config, pool *pgxpool.Pool) error {
		target := int64(-1) // without --to, the last migration only
		if cmd.Flags().Changed("to") {
			target = to
		}
		res, err := migrations.Down(cmd.Context(), pool, cfg.Database.Schema, target)
		if err != nil {
			return err
		}
		for _, r := range res {
			fmt.Fprintf(env.stdout, "undid version %d (%s)\n", r.Source.Version, migrations.SourceName(r.Source))
		}
		if target >= 0 {
			fmt.Fprintf(env.stdout, "schema %s is at version %d\n", cfg.Database.Schema, to)
		}
		return nil
	})
	down.PreRunE = func(*cobra.Command, []string) error {
		if to < 0 {
			return usagef("--to must be 0 or more, not %d", to)
		}
		return nil
	}
	down.Flags().Int64Var(&to, "to", 0, "undo every migration above this version (0 removes everything, River's tables included)")
	return group("migrate", "Migrate botq's schema (botq's tables and River's, in one schema)",
		migrateCmd(env, "up", "Apply every pending migration (running it again is a no-op)", func(cmd *cobra.Command, cfg server.Config, pool *pgxpool.Pool) error {
			res, err := migrations.Up(cmd.Context(), pool, cfg.Database.Schema, nil)
			if err != nil {
				return err
			}
			for _, r := range res {
				fmt.Fprintf(env.stdout, "applied version %d (%s) in %s\n", r.Source.Version, migrations.SourceName(r.Source), r.Duration.Round(1e6))
			}
			if err := server.SetupRoles(cmd.Context(), env.stdout, pool, cfg.Database.Schema); err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "schema %s is up to date\n", cfg.Database.Schema)
			return nil
		}),
		down,
		migrateCmd(env, "status", "List migrations and whether each is applied", func(cmd *cobra.Command, cfg server.Config, pool *pgxpool.Pool) error {
			st, migrated, err := migrations.Status(cmd.Context(), pool, cfg.Database.Schema)
			if err != nil {
				return err
			}
			if !migrated {
				fmt.Fprintf(env.stdout, "schema %s was never migrated (botq migrate up)\n", cfg.Database.Schema)
			}
			return writeTable(env.stdout, 0, []string{"VERSION", "STATE", "APPLIED AT", "SOURCE"}, st, func(s *goose.MigrationStatus) []any {
				applied := "-"
				if !s.AppliedAt.IsZero() {
					applied = s.AppliedAt.Format("2006-01-02 15:04:05Z07:00")
				}
				return []any{s.Source.Version, s.State, applied, migrations.SourceName(s.Source)}
			})
		}),
	)
}

// migrateCmd is a migration command: fn runs with the configuration and a
// pool of its own.
func migrateCmd(env *cliEnv, use, short string, fn func(*cobra.Command, server.Config, *pgxpool.Pool) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := env.config()
			if err != nil {
				return err
			}
			pool, err := store.NewPool(cmd.Context(), cfg.Database.URL, cfg.Database.Schema, store.PoolOptions{MaxConns: 4, AppName: "botq-migrate"})
			if err != nil {
				return err
			}
			defer pool.Close()
			return fn(cmd, cfg, pool)
		},
	}
}
