package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"
	"github.com/spf13/cobra"

	"github.com/botq/botq/migrations"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

func newMigrateCmd(env *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Migrate botq's schema (botq's tables and River's, in one schema)",
	}
	var to int64
	down := &cobra.Command{
		Use:   "down",
		Short: "Undo the last migration, or every migration after --to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			target := int64(-1) // without --to, the last migration only
			if cmd.Flags().Changed("to") {
				if to < 0 {
					return usagef("--to must be 0 or more, not %d", to)
				}
				target = to
			}
			return withMigrator(cmd.Context(), env, func(ctx context.Context, cfg server.Config, pool *pgxpool.Pool) error {
				res, err := migrations.Down(ctx, pool, cfg.Database.Schema, target)
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
		},
	}
	down.Flags().Int64Var(&to, "to", 0, "undo every migration above this version (0 removes everything, River's tables included)")
	cmd.AddCommand(
		&cobra.Command{
			Use:   "up",
			Short: "Apply every pending migration (running it again is a no-op)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return withMigrator(cmd.Context(), env, func(ctx context.Context, cfg server.Config, pool *pgxpool.Pool) error {
					res, err := migrations.Up(ctx, pool, cfg.Database.Schema, nil)
					if err != nil {
						return err
					}
					for _, r := range res {
						fmt.Fprintf(env.stdout, "applied version %d (%s) in %s\n", r.Source.Version, migrations.SourceName(r.Source), r.Duration.Round(1e6))
					}
					if err := server.SetupRoles(ctx, env.stdout, pool, cfg.Database.Schema); err != nil {
						return err
					}
					fmt.Fprintf(env.stdout, "schema %s is up to date\n", cfg.Database.Schema)
					return nil
				})
			},
		},
		down,
		&cobra.Command{
			Use:   "status",
			Short: "List migrations and whether each is applied",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return withMigrator(cmd.Context(), env, func(ctx context.Context, cfg server.Config, pool *pgxpool.Pool) error {
					st, migrated, err := migrations.Status(ctx, pool, cfg.Database.Schema)
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
				})
			},
		},
	)
	return cmd
}

// withMigrator loads the configuration and connects for a migration command.
func withMigrator(ctx context.Context, env *cliEnv, fn func(context.Context, server.Config, *pgxpool.Pool) error) error {
	cfg, err := env.config()
	if err != nil {
		return err
	}
	pool, err := store.NewPool(ctx, cfg.Database.URL, cfg.Database.Schema, store.PoolOptions{MaxConns: 4, AppName: "botq-migrate"})
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(ctx, cfg, pool)
}
