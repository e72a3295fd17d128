// Package migrations holds botq's database schema as goose migrations, embedded
// in the binary, and installs River's own tables in the same schema.
//
// River's tables are installed by a goose Go migration (version 1) that calls
// rivermigrate, rather than by copying River's SQL into goose files. River keeps
// its own ledger (river_migration) and needs one transaction per River version
// (its v4 adds an enum value that v6 uses), which rivermigrate already does;
// copied SQL would leave River unaware of what was applied and break
// `river migrate-up` for anyone who uses River's own tooling on the same
// schema. The migration pins the River version it installs, so upgrading River
// to a release with new migrations means adding a new goose version that
// migrates River to the new target; down migrations stay symmetric.
//
// Every object is created unqualified inside the schema chosen at run time
// (goose runs with search_path set to it), so one database can hold several
// botq schemas; tests use one schema per package. Trigger functions that
// read or write tables capture that schema with `SET search_path FROM
// CURRENT` and run as their owner (SECURITY DEFINER), so an INSERT from any
// session and any role with the right grants behaves the same; those that
// touch no table (the update checks and timestamps of action) need neither.
//
// Versions 2 to 5 are botq's baseline: its tables, then its functions and
// triggers, its views, and its roles' grants. They replaced, before any
// release, the migrations that built the schema step by step; a schema those
// migrated is refused (ErrPreBaseline) and made again. Versions 6 to 10,
// written after the first squash and before any release, were folded into
// the baseline too: a schema at version 10 holds exactly the baseline's
// objects, so it needs nothing, and the migrations after the baseline start
// at 11, which both kinds of schema apply.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path"
	"regexp"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed *.sql
var sqlFS embed.FS

// riverTargetVersion is the River migration version that goose version 1
// installs (River v0.51's latest).
const riverTargetVersion = 8

// DefaultSchema is the schema botq uses unless configured otherwise.
const DefaultSchema = "botq"

var schemaRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateSchema reports whether name can be used as botq's schema: a plain
// lower-case identifier, so it never needs quoting in SQL or in River's NOTIFY
// channel name.
func ValidateSchema(name string) error {
	if !schemaRe.MatchString(name) {
		return fmt.Errorf("schema %q is not a lower-case identifier (letters, digits, underscore; at most 63)", name)
	}
	return nil
}

// NewProvider returns a goose provider that migrates schema through db. Every
// connection of db must already have search_path set to schema (see
// OpenDB); the schema itself must exist.
func NewProvider(db *sql.DB, schema string, logger *slog.Logger) (*goose.Provider, error) {
	return newProvider(db, schema, logger, sqlFS)
}

// newProvider is NewProvider over the goose files in fsys; tests pass the
// migrations that preceded the baseline.
func newProvider(db *sql.DB, schema string, logger *slog.Logger, fsys fs.FS) (*goose.Provider, error) {
	if err := ValidateSchema(schema); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// One advisory lock per schema: several processes (or test packages) may
	// migrate at once, but never the same schema concurrently.
	h := fnv.New64a()
	_, _ = h.Write([]byte("botq-migrate:" + schema))
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64() >> 1)))
	if err != nil {
		return nil, fmt.Errorf("new migration locker: %w", err)
	}
	riverMigrator := func(db *sql.DB) (*rivermigrate.Migrator[*sql.Tx], error) {
		return rivermigrate.New(riverdatabasesql.New(db), &rivermigrate.Config{Schema: schema, Logger: logger})
	}
	river := goose.NewGoMigration(1,
		&goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error {
			m, err := riverMigrator(db)
			if err != nil {
				return err
			}
			_, err = m.Migrate(ctx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{TargetVersion: riverTargetVersion})
			return err
		}},
		&goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error {
			m, err := riverMigrator(db)
			if err != nil {
				return err
			}
			_, err = m.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: -1})
			return err
		}},
	)
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithGoMigrations(river),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSessionLocker(locker),
		goose.WithSlog(logger),
	)
	if err != nil {
		return nil, fmt.Errorf("new goose provider: %w", err)
	}
	return p, nil
}

// ErrBehind is returned by CheckCurrent when migrations are pending.
var ErrBehind = errors.New("database schema is behind")

// CheckCurrent returns an error wrapping ErrBehind, saying which versions
// differ, when schema has pending migrations.
func CheckCurrent(ctx context.Context, p *goose.Provider) error {
	current, target, err := p.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if current < target {
		return fmt.Errorf("%w: at version %d, this botq needs %d", ErrBehind, current, target)
	}
	if current > target {
		return fmt.Errorf("database schema is ahead: at version %d, this botq knows up to %d (an older binary?)", current, target)
	}
	return nil
}

// Migrated reports whether schema was ever migrated (goose's version table
// exists), creating nothing. A schema migrated before the baseline is an
// error (ErrPreBaseline).
func Migrated(ctx context.Context, pool *pgxpool.Pool, schema string) (bool, error) {
	var ok bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", schema+".goose_db_version").Scan(&ok); err != nil {
		return false, fmt.Errorf("check schema %s: %w", schema, err)
	}
	if ok {
		if err := checkNotPreBaseline(ctx, pool, schema); err != nil {
			return true, err
		}
	}
	return ok, nil
}

// Open returns a goose provider over pool for schema, creating the schema if
// it is missing. pool's connections must have search_path set to schema (as
// store.NewPool does). Close the provider when done; that leaves pool open.
func Open(ctx context.Context, pool *pgxpool.Pool, schema string, logger *slog.Logger) (*goose.Provider, error) {
	if err := ValidateSchema(schema); err != nil {
		return nil, err
	}
	// Only when missing: CREATE SCHEMA IF NOT EXISTS needs the right to
	// create schemas even when it exists, which botq's runtime role (which
	// only reads the version) has not.
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look up schema %s: %w", schema, err)
	}
	if !exists {
		if _, err := pool.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return nil, fmt.Errorf("create schema %s: %w", schema, err)
		}
	}
	if err := checkNotPreBaseline(ctx, pool, schema); err != nil {
		return nil, err
	}
	return NewProvider(stdlib.OpenDBFromPool(pool), schema, logger)
}

// ErrPreBaseline is returned by Open (and so by Up) and Migrated for a
// schema that botq's migrations from before the baseline migrated.
var ErrPreBaseline = errors.New("migrated before botq's migrations were squashed into a baseline")

// checkNotPreBaseline refuses a schema that the migrations the baseline
// replaced (versions 2 to 17, squashed before any release) migrated. goose
// cannot tell: at version 17 it finds no file above it and applies nothing;
// below, it would apply baseline files on top of the old objects. Such a
// schema has the function action_lane_advance(), which every old version from
// 2 on created and the baseline never does. Nothing released used those
// migrations, so there is no upgrade path: the schema is made again.
func checkNotPreBaseline(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	var old bool
	if err := pool.QueryRow(ctx, "SELECT to_regprocedure($1) IS NOT NULL", schema+".action_lane_advance()").Scan(&old); err != nil {
		return fmt.Errorf("check schema %s: %w", schema, err)
	}
	if old {
		return fmt.Errorf("schema %s: %w, and cannot be upgraded: it holds development data only, so make it again: "+
			"DROP SCHEMA %s CASCADE (River's jobs in it go too), then `botq migrate up`", schema, ErrPreBaseline, schema)
	}
	return nil
}

// Up migrates schema to the latest version.
func Up(ctx context.Context, pool *pgxpool.Pool, schema string, logger *slog.Logger) ([]*goose.MigrationResult, error) {
	p, err := Open(ctx, pool, schema, logger)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	res, err := p.Up(ctx)
	if err != nil {
		return res, fmt.Errorf("migrate %s up: %w", schema, err)
	}
	return res, nil
}

// Down undoes the last migration of schema or, when to is 0 or more, every
// migration above version to (0 removes everything, River's tables
// included).
func Down(ctx context.Context, pool *pgxpool.Pool, schema string, to int64) ([]*goose.MigrationResult, error) {
	p, err := Open(ctx, pool, schema, nil)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if to < 0 {
		res, err := p.Down(ctx)
		if err != nil {
			return nil, fmt.Errorf("migrate down: %w", err)
		}
		return []*goose.MigrationResult{res}, nil
	}
	res, err := p.DownTo(ctx, to)
	if err != nil {
		return res, fmt.Errorf("migrate down to %d: %w", to, err)
	}
	return res, nil
}

// Status lists every migration of schema and whether it is applied. It
// writes nothing: where goose would create the schema and its version
// table, a schema never migrated (migrated false) lists every migration as
// pending.
func Status(ctx context.Context, pool *pgxpool.Pool, schema string) (st []*goose.MigrationStatus, migrated bool, err error) {
	if err := ValidateSchema(schema); err != nil {
		return nil, false, err
	}
	if migrated, err = Migrated(ctx, pool, schema); err != nil {
		return nil, false, fmt.Errorf("migration status: %w", err)
	}
	p, err := NewProvider(stdlib.OpenDBFromPool(pool), schema, nil)
	if err != nil {
		return nil, migrated, err
	}
	defer p.Close()
	if !migrated {
		for _, src := range p.ListSources() {
			st = append(st, &goose.MigrationStatus{Source: src, State: goose.StatePending})
		}
		return st, false, nil
	}
	if st, err = p.Status(ctx); err != nil {
		return nil, true, fmt.Errorf("migration status: %w", err)
	}
	return st, true, nil
}

// SourceName names a migration for people: its file, or "River's tables"
// for version 1, which runs River's own migrations and has no file.
func SourceName(s *goose.Source) string {
	if s.Path == "" {
		return "River's tables"
	}
	return path.Base(s.Path)
}
