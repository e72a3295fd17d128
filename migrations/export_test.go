package migrations

import (
	"database/sql"
	"io/fs"
	"log/slog"

	"github.com/pressly/goose/v3"
)

// NewProviderFS is NewProvider over the goose files in fsys.
func NewProviderFS(db *sql.DB, schema string, logger *slog.Logger, fsys fs.FS) (*goose.Provider, error) {
	return newProvider(db, schema, logger, fsys)
}
