package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botq/botq/migrations"
)

// PoolOptions tune NewPool.
type PoolOptions struct {
	MaxConns int32 // 0 keeps pgxpool's default
	MinConns int32
	// AppName is reported to Postgres as application_name.
	AppName string
	// Role, when set, is the role every connection acts as (the startup
	// parameter role, as SET ROLE): the login user must be a member.
	Role string
}

// NewPool connects to url with every connection's search_path set to schema,
// so River, goose and ad-hoc SQL in botq's sessions all see botq's tables.
// It pings the database so that a wrong URL fails here, with a message that
// says what to check.
func NewPool(ctx context.Context, url, schema string, opts PoolOptions) (*pgxpool.Pool, error) {
	if schema == "" {
		schema = migrations.DefaultSchema
	}
	if err := migrations.ValidateSchema(schema); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %s", redactParseError(err))
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema + ", pg_temp"
	if opts.AppName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = opts.AppName
	}
	if opts.Role != "" {
		cfg.ConnConfig.RuntimeParams["role"] = opts.Role
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.MinConns > 0 {
		cfg.MinConns = opts.MinConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to Postgres at %s: %w", DescribeConn(cfg.ConnConfig.Config), ExplainConnectError(err))
	}
	return pool, nil
}

// DescribeConn names a connection target without its password.
func DescribeConn(c pgconn.Config) string {
	return fmt.Sprintf("%s:%d (database %q, user %q)", c.Host, c.Port, c.Database, c.User)
}

// ErrUnreachable marks a database that could not be reached at all.
var ErrUnreachable = errors.New("database unreachable")

// ExplainConnectError adds what to do to the common ways a connection fails.
func ExplainConnectError(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "3D000":
		return fmt.Errorf("%s: create the database (createdb) or fix DATABASE_URL", pgErr.Message)
	case errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000"):
		return fmt.Errorf("%s: check the user and password in DATABASE_URL", pgErr.Message)
	case errors.As(err, &pgErr) && (pgErr.Code == "22023" || pgErr.Code == "42501") && strings.Contains(pgErr.Message, "role"):
		return fmt.Errorf("%s: botq runs as database.role; `botq migrate up` creates botq_runtime and grants it (or a DBA does: GRANT botq_runtime TO <user>), or set database.role to \"\" to run as the login user", pgErr.Message)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fmt.Errorf("%w (%v); is Postgres running and is DATABASE_URL right?", ErrUnreachable, opErr.Err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return fmt.Errorf("%w (timed out); is Postgres running and is DATABASE_URL right?", ErrUnreachable)
	}
	return err
}

func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// redactParseError keeps a malformed URL's password out of the message.
func redactParseError(err error) string {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return "invalid connection string (" + innermost(pe).Error() + ")"
	}
	return msg
}
