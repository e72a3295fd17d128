package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
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
			return withMigrator(cmd.Context(), env, func(ctx context.Context, cfg server.Config, pool *pgxpool.Pool) error {
				p, err := migrations.Open(ctx, pool, cfg.Database.Schema, nil)
				if err != nil {
					return err
				}
				defer p.Close()
				if !cmd.Flags().Changed("to") {
					res, err := p.Down(ctx)
					if err != nil {
						return fmt.Errorf("migrate down: %w", err)
					}
					fmt.Fprintf(env.stdout, "undid version %d (%s)\n", res.Source.Version, baseName(res.Source.Path))
					return nil
				}
				if to < 0 {
					return usagef("--to must be 0 or more, not %d", to)
				}
				res, err := p.DownTo(ctx, to)
				if err != nil {
					return fmt.Errorf("migrate down to %d: %w", to, err)
				}
				for _, r := range res {
					fmt.Fprintf(env.stdout, "undid version %d (%s)\n", r.Source.Version, baseName(r.Source.Path))
				}
				fmt.Fprintf(env.stdout, "schema %s is at version %d\n", cfg.Database.Schema, to)
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
						fmt.Fprintf(env.stdout, "applied version %d (%s) in %s\n", r.Source.Version, baseName(r.Source.Path), r.Duration.Round(1e6))
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
					schema := cfg.Database.Schema
					if err := migrations.ValidateSchema(schema); err != nil {
						return err
					}
					// Looking must not write: goose would create the schema and
					// its version table.
					migrated, err := migrations.Migrated(ctx, pool, schema)
					if err != nil {
						return fmt.Errorf("migration status: %w", err)
					}
					p, err := migrations.NewProvider(stdlib.OpenDBFromPool(pool), schema, nil)
					if err != nil {
						return err
					}
					defer p.Close()
					var st []*goose.MigrationStatus
					if migrated {
						if st, err = p.Status(ctx); err != nil {
							return fmt.Errorf("migration status: %w", err)
						}
					} else {
						fmt.Fprintf(env.stdout, "schema %s was never migrated (botq migrate up)\n", schema)
						for _, src := range p.ListSources() {
							st = append(st, &goose.MigrationStatus{Source: src, State: goose.StatePending})
						}
					}
					tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tSOURCE")
					for _, s := range st {
						applied := "-"
						if !s.AppliedAt.IsZero() {
							applied = s.AppliedAt.Format("2006-01-02 15:04:05Z07:00")
						}
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Source.Version, s.State, applied, baseName(s.Source.Path))
					}
					return tw.Flush()
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

func baseName(p string) string {
	if p == "" {
		return "River's tables"
	}
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}
