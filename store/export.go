package store

import (
	"context"
	"fmt"
)

// RequestExport streams every request record matching f, oldest first, to
// fn, and returns how many it sent. Rows are read from the connection as fn
// consumes them and one RequestItem is reused for every row, so memory stays
// flat however many records there are: fn must not keep the item (or its
// json.RawMessage fields) after it returns. An error from fn stops the
// export and is returned as is.
func (s *Store) RequestExport(ctx context.Context, db DBTX, f RequestFilter, fn func(*RequestItem) error) (int64, error) {
	var w sqlWhere
	f.apply(&w)
	rows, err := db.Query(ctx, s.q(`
		SELECT `+requestItemColumns+`
		FROM botq.request r
		LEFT JOIN botq.action a ON a.id = r.action_id
		WHERE `+w.String()+`
		ORDER BY r.first_seen_at, r.request_id`), w.args...)
	if err != nil {
		return 0, fmt.Errorf("export requests: %w", mapError(err))
	}
	defer rows.Close()
	var n int64
	var it RequestItem
	for rows.Next() {
		it = RequestItem{}
		if err := scanRequestItem(rows, &it); err != nil {
			return n, fmt.Errorf("export requests: %w", err)
		}
		if err := fn(&it); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("export requests: %w", mapError(err))
	}
	return n, nil
}
