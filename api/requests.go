package api

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/botq/botq/store"
)

// RequestList answers GET /v1/requests.
type RequestList struct {
	Requests   []Request `json:"requests"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

func (s *Server) listRequests(w http.ResponseWriter, r *http.Request, _ Principal) error {
	q, err := newQuery(r, append(requestFilterParams, "limit", "cursor")...)
	if err != nil {
		return err
	}
	f, err := s.requestFilter(q)
	if err != nil {
		return err
	}
	limit, err := q.limit()
	if err != nil {
		return err
	}
	c, err := q.cursor("requests")
	if err != nil {
		return err
	}
	lp := store.RequestListParams{Filter: f, Limit: limit}
	if c != nil {
		lp.After = &store.RequestCursor{FirstSeenAt: *c.At, RequestID: c.RequestID}
	}
	items, more, err := s.cfg.Store.RequestList(r.Context(), s.cfg.DB, lp)
	if err != nil {
		return err
	}
	out := RequestList{Requests: NewRequests(items)}
	if more {
		last := items[len(items)-1]
		at := last.FirstSeenAt
		out.NextCursor = encodeCursor(cursor{Listing: "requests", At: &at, RequestID: last.RequestID})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getRequest(w http.ResponseWriter, r *http.Request, _ Principal) error {
	it, err := s.cfg.Store.RequestView(r.Context(), s.cfg.DB, r.PathValue("request_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Request Request `json:"request"`
	}{NewRequest(&it.Request, it.Kind)})
	return nil
}

func (s *Server) exportRequests(w http.ResponseWriter, r *http.Request, _ Principal) error {
	q, err := newQuery(r, append(requestFilterParams, "format")...)
	if err != nil {
		return err
	}
	f, err := s.requestFilter(q)
	if err != nil {
		return err
	}
	format := q.str("format")
	if format == "" {
		format = "csv"
	}
	if format != "csv" && format != "json" {
		return badFilter("format", "must be csv or json, not %q", format)
	}
	ctype := map[string]string{"csv": "text/csv; charset=utf-8", "json": "application/json"}[format]
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="botq-requests-%s.%s"`, s.cfg.Now().UTC().Format("20060102T150405Z"), format))
	w.Header().Set("Cache-Control", "no-store")
	if _, err := ExportRequests(r.Context(), s.cfg.Store, s.cfg.DB, f, format, &FlushWriter{W: w}, nil); err != nil {
		if r.Context().Err() == nil {
			s.cfg.Logger.Error().Err(err).Msg("api: Export failed midway")
		}
		// The status is sent; cutting the connection is the only way left to
		// tell the client its file is incomplete.
		panic(http.ErrAbortHandler)
	}
	return nil
}

// ExportRequests writes the request records of f to w as format (csv, or
// one JSON array), oldest first, streamed with flat memory: the exports of
// the API, the console and botq requests export. progress, if set, is told
// the count every 1000 records. It returns how many it wrote.
func ExportRequests(ctx context.Context, s *store.Store, db store.DBTX, f store.RequestFilter, format string, w io.Writer, progress func(n int64)) (int64, error) {
	rw, err := NewRequestWriter(w, format)
	if err != nil {
		return 0, err
	}
	n, err := s.RequestExport(ctx, db, f, func(it *store.RequestItem) error {
		if err := rw.Write(it); err != nil {
			return fmt.Errorf("write export: %w", err)
		}
		if progress != nil && rw.Count()%1000 == 0 {
			progress(rw.Count())
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if err := rw.Close(); err != nil {
		return n, fmt.Errorf("write export: %w", err)
	}
	return n, nil
}

// FlushWriter writes to a response and flushes it after every write, so an
// export reaches the client while it is produced. Put a buffer in front of
// it: each of its writes is sent at once.
type FlushWriter struct {
	W http.ResponseWriter
}

func (f *FlushWriter) Write(p []byte) (int, error) {
	n, err := f.W.Write(p)
	if fl, ok := f.W.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// RequestWriter writes request records as CSV or as one JSON array,
// buffered, without holding more than one record.
type RequestWriter struct {
	bw     *bufio.Writer
	csv    *csv.Writer
	json   *json.Encoder
	n      int64
	row    []string
	closed bool
}

// CSVHeader is the first line of a CSV export.
var CSVHeader = []string{"request_id", "app_id", "action_id", "kind", "origin", "state", "http_status", "details", "payload",
	"khoros_created_at", "khoros_completed_at", "khoros_updated_at", "first_seen_at", "last_checked_at", "check_count", "finalized_at"}

// NewRequestWriter returns a writer of format "csv" or "json" on w.
func NewRequestWriter(w io.Writer, format string) (*RequestWriter, error) {
	rw := &RequestWriter{bw: bufio.NewWriterSize(w, 64<<10)}
	switch format {
	case "csv":
		rw.csv = csv.NewWriter(rw.bw)
		rw.row = make([]string, len(CSVHeader))
		if err := rw.csv.Write(CSVHeader); err != nil {
			return nil, err
		}
	case "json":
		rw.json = json.NewEncoder(rw.bw)
		rw.json.SetEscapeHTML(false)
		if _, err := rw.bw.WriteString("[\n"); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("format must be csv or json, not %q", format)
	}
	return rw, nil
}

func timeText(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Write writes one record.
func (rw *RequestWriter) Write(it *store.RequestItem) error {
	r := &it.Request
	rw.n++
	if rw.json != nil {
		if rw.n > 1 {
			if _, err := rw.bw.WriteString(","); err != nil {
				return err
			}
		}
		return rw.json.Encode(NewRequest(r, it.Kind))
	}
	row := rw.row
	row[0], row[1], row[3], row[4], row[5] = r.RequestID, r.AppID, it.Kind, r.Origin, string(r.State)
	row[2], row[6] = "", ""
	if r.ActionID != nil {
		row[2] = strconv.FormatInt(*r.ActionID, 10)
	}
	if r.HTTPStatus != 0 {
		row[6] = strconv.Itoa(r.HTTPStatus)
	}
	row[7], row[8] = string(r.Details), string(r.Payload)
	row[9], row[10], row[11] = timeText(r.KhorosCreatedAt), timeText(r.KhorosCompletedAt), timeText(r.KhorosUpdatedAt)
	row[12], row[13] = timeText(&r.FirstSeenAt), timeText(r.LastCheckedAt)
	row[14], row[15] = strconv.Itoa(r.CheckCount), timeText(r.FinalizedAt)
	return rw.csv.Write(row)
}

// Count returns the records written.
func (rw *RequestWriter) Count() int64 { return rw.n }

// Close ends the output (the JSON array) and flushes it.
func (rw *RequestWriter) Close() error {
	if rw.closed {
		return nil
	}
	rw.closed = true
	if rw.csv != nil {
		rw.csv.Flush()
		if err := rw.csv.Error(); err != nil {
			return err
		}
	} else if _, err := rw.bw.WriteString("]\n"); err != nil {
		return err
	}
	return rw.bw.Flush()
}
