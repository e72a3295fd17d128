package console

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

// Exports stream the rows of a listing's filter, its whole range, as CSV
// or as one JSON array: what the page shows 50 at a time. They read a page
// of rows at a time, so memory stays flat.

// exportPage is how many rows an export reads per statement.
const exportPage = 1000

func exportFormat(r *http.Request) (string, error) {
	f := r.URL.Query().Get("format")
	switch f {
	case "", "csv":
		return "csv", nil
	case "json":
		return "json", nil
	}
	return "", badRequest("Format: must be csv or json, not %q", f)
}

func (c *Console) startExport(w http.ResponseWriter, what, format string) {
	ctype := map[string]string{"csv": "text/csv; charset=utf-8", "json": "application/json"}[format]
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="botq-%s-%s.%s"`, what, c.cfg.Now().UTC().Format("20060102T150405Z"), format))
	h.Set("Cache-Control", "no-store")
}

// abortExport ends an export that failed midway: the status is sent, so
// cutting the connection is the only way left to tell the browser its file
// is incomplete.
func (c *Console) abortExport(r *http.Request, err error) {
	if r.Context().Err() == nil {
		c.cfg.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("console: Export failed midway")
	}
	panic(http.ErrAbortHandler)
}

// actionCSVHeader is the first line of an actions export.
var actionCSVHeader = []string{"id", "app_id", "kind", "state", "lane", "created_at", "created_by", "updated_at", "finished_at",
	"attempt_count", "request_id", "last_error", "replay_of", "possibly_sent", "idempotency_key", "river_job_id", "payload"}

func (c *Console) exportActions(w http.ResponseWriter, r *http.Request, _ *user) error {
	format, err := exportFormat(r)
	if err != nil {
		return err
	}
	q, err := c.readActionQuery(r.URL.Query())
	if err != nil {
		return err
	}
	c.startExport(w, "actions", format)
	bw := bufio.NewWriterSize(&api.FlushWriter{W: w}, 64<<10)
	write := actionWriter(bw, format)
	var before *store.ActionCursor
	for n := 0; ; n++ {
		list, more, err := c.cfg.Store.ActionPage(r.Context(), c.cfg.DB, store.ActionPageParams{Filter: q.filter, Before: before, Limit: exportPage})
		if err != nil {
			c.abortExport(r, err)
		}
		for i, a := range list {
			if err := write(api.NewAction(a), n == 0 && i == 0); err != nil {
				c.abortExport(r, err)
			}
		}
		if !more {
			break
		}
		last := list[len(list)-1]
		before = &store.ActionCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	if err := write(api.Action{}, false); err != nil {
		c.abortExport(r, err)
	}
	if err := bw.Flush(); err != nil {
		c.abortExport(r, err)
	}
	return nil
}

// actionWriter returns the writer of one action in format; called with
// the zero Action, it ends the output.
func actionWriter(bw *bufio.Writer, format string) func(a api.Action, first bool) error {
	if format == "json" {
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		started := false
		return func(a api.Action, first bool) error {
			switch {
			case a.ID == 0 && !started:
				_, err := bw.WriteString("[]\n")
				return err
			case a.ID == 0:
				_, err := bw.WriteString("]\n")
				return err
			case first:
				started = true
				if _, err := bw.WriteString("[\n"); err != nil {
					return err
				}
			default:
				if _, err := bw.WriteString(","); err != nil {
					return err
				}
			}
			return enc.Encode(a)
		}
	}
	cw := csv.NewWriter(bw)
	header := false
	return func(a api.Action, _ bool) error {
		if !header {
			header = true
			if err := cw.Write(actionCSVHeader); err != nil {
				return err
			}
		}
		if a.ID == 0 {
			cw.Flush()
			return cw.Error()
		}
		return cw.Write(actionRow(a))
	}
}

func actionRow(a api.Action) []string {
	const t = time.RFC3339Nano
	replayOf, finished := "", ""
	if a.ReplayOf != nil {
		replayOf = strconv.FormatInt(*a.ReplayOf, 10)
	}
	if a.FinishedAt != nil {
		finished = a.FinishedAt.Format(t)
	}
	return []string{strconv.FormatInt(a.ID, 10), a.AppID, a.Kind, a.State, a.Lane, a.CreatedAt.Format(t), a.CreatedBy,
		a.UpdatedAt.Format(t), finished, strconv.Itoa(a.AttemptCount), a.RequestID, a.LastError, replayOf,
		strconv.FormatBool(a.PossiblySent), a.IdempotencyKey, strconv.FormatInt(a.RiverJobID, 10), string(a.Payload)}
}

func (c *Console) exportRequests(w http.ResponseWriter, r *http.Request, _ *user) error {
	format, err := exportFormat(r)
	if err != nil {
		return err
	}
	q, err := c.readRequestQuery(r.URL.Query())
	if err != nil {
		return err
	}
	c.startExport(w, "requests", format)
	if _, err := api.ExportRequests(r.Context(), c.cfg.Store, c.cfg.DB, q.filter, format, &api.FlushWriter{W: w}, nil); err != nil {
		c.abortExport(r, err)
	}
	return nil
}
