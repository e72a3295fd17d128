package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/botq/botq/api"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

func newRequestsCmd(env *cliEnv) *cobra.Command {
	return group("requests", "List, inspect and export Khoros request records (what Khoros said about each call)",
		newRequestsListCmd(env), newRequestsShowCmd(env), newRequestsExportCmd(env))
}

// requestFilterFlags select request records.
type requestFilterFlags struct {
	app, kind, lane, origin string
	states                  []string
	action                  int64
	times                   timeRangeFlags
}

func (f *requestFilterFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.app, "app", "", "only this app")
	cmd.Flags().StringVar(&f.kind, "kind", "", "only requests of actions of this kind")
	cmd.Flags().StringSliceVar(&f.states, "state", nil, "only these states (PENDING, SUCCESS, ERROR, EXPIRED, ABSENT)")
	cmd.Flags().StringVar(&f.lane, "lane", "", "only requests of actions in this lane")
	cmd.Flags().StringVar(&f.origin, "origin", "", "only BOT or KHOROS records")
	cmd.Flags().Int64Var(&f.action, "action", 0, "only the records of this action")
	f.times.add(cmd, "records first seen")
}

func (f *requestFilterFlags) filter(cmd *cobra.Command, now time.Time) (store.RequestFilter, error) {
	out := store.RequestFilter{AppID: f.app, Kind: f.kind, Lane: f.lane, Origin: strings.ToUpper(f.origin)}
	if err := api.CheckKind(f.kind, jobs.Kinds()); err != nil {
		return out, usagef("--kind: %v", err)
	}
	if out.Origin != "" && out.Origin != "BOT" && out.Origin != "KHOROS" {
		return out, usagef("--origin must be BOT or KHOROS, not %q", f.origin)
	}
	states, err := api.ParseRequestStates(f.states)
	if err != nil {
		return out, usagef("--state: %v", err)
	}
	out.States = states
	if cmd.Flags().Changed("action") {
		out.ActionID = &f.action
	}
	out.From, out.To, err = f.times.parse(now)
	return out, err
}

func newRequestsListCmd(env *cliEnv) *cobra.Command {
	var (
		out    outputOpts
		filter requestFilterFlags
		limit  int
		after  string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List request records, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := filter.filter(cmd, time.Now())
			if err != nil {
				return err
			}
			if limit < 1 || limit > api.MaxLimit {
				return usagef("--limit must be from 1 to %d, not %d", api.MaxLimit, limit)
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				p := store.RequestListParams{Filter: f, Limit: limit}
				if after != "" {
					last, err := db.Store.RequestGet(cmd.Context(), db.Pool, after)
					if errors.Is(err, store.ErrNotFound) {
						return usagef("--after: no request record %q", after)
					}
					if err != nil {
						return err
					}
					p.After = &store.RequestCursor{FirstSeenAt: last.FirstSeenAt, RequestID: last.RequestID}
				}
				items, more, err := db.Store.RequestList(cmd.Context(), db.Pool, p)
				if err != nil {
					return err
				}
				res := api.RequestList{Requests: api.NewRequests(items)}
				if more && len(items) > 0 {
					defer fmt.Fprintf(env.stderr, "more: --after %s for the next page, or botq requests export\n", items[len(items)-1].RequestID)
				}
				return writeList(env.stdout, out, res, []string{"REQUEST ID", "APP", "ACTION", "KIND", "ORIGIN", "STATE", "FIRST SEEN", "FINALIZED", "DETAILS"}, res.Requests, func(r api.Request) []any {
					return []any{r.RequestID, r.AppID, r.ActionID, r.Kind, r.Origin, r.State, r.FirstSeenAt, r.FinalizedAt, string(r.Details)}
				})
			})
		},
	}
	filter.add(cmd)
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many records")
	cmd.Flags().StringVar(&after, "after", "", "continue after this request id (the previous page's last)")
	addOutputFlag(cmd, &out)
	return cmd
}

func newRequestsShowCmd(env *cliEnv) *cobra.Command {
	var out outputOpts
	cmd := &cobra.Command{
		Use:   "show <request-id>",
		Short: "Show one request record",
		Args:  cobra.ExactArgs(1),
		RunE: env.runDB(func(cmd *cobra.Command, args []string, db *server.Conn) error {
			it, err := db.Store.RequestView(cmd.Context(), db.Pool, args[0])
			if err != nil {
				return err
			}
			r := api.NewRequest(&it.Request, it.Kind)
			if out.json() {
				return writeJSONOut(env.stdout, r)
			}
			err = writeFields(env.stdout, [][2]any{
				{"request id", r.RequestID}, {"app", r.AppID}, {"action", r.ActionID}, {"kind", r.Kind}, {"origin", r.Origin},
				{"state", r.State}, {"http status", r.HTTPStatus}, {"khoros created", r.KhorosCreatedAt},
				{"khoros completed", r.KhorosCompletedAt}, {"first seen", r.FirstSeenAt}, {"last checked", r.LastCheckedAt},
				{"checks", r.CheckCount}, {"finalized", r.FinalizedAt}, {"reason", r.Reason},
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "\ndetails: %s\n", r.Details)
			if len(r.Payload) > 0 {
				fmt.Fprintf(env.stdout, "payload: %s\n", r.Payload)
			}
			return nil
		}),
	}
	addOutputFlag(cmd, &out)
	return cmd
}

func newRequestsExportCmd(env *cliEnv) *cobra.Command {
	var (
		filter  requestFilterFlags
		format  string
		outPath string
		bar     bool
	)
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export request records as CSV or JSON, streamed with flat memory",
		Long: `Writes every request record matching the filters, oldest first, to stdout or --out.
Rows stream from Postgres as they are written, so memory stays flat for any number of records.
A progress bar shows on a terminal (or with --progress).`,
		Example: `  botq requests export --app my-app --since 30d --format csv --out requests.csv`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "csv" && format != "json" {
				return usagef("--format must be csv or json, not %q", format)
			}
			f, err := filter.filter(cmd, time.Now())
			if err != nil {
				return err
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				var w io.Writer = env.stdout
				var file *os.File
				if outPath != "" && outPath != "-" {
					if file, err = os.Create(outPath); err != nil {
						return fmt.Errorf("--out: %w", err)
					}
					defer file.Close()
					w = file
				}
				n, err := exportRequests(cmd.Context(), env, db, f, format, w, bar)
				if err != nil {
					return err
				}
				if file != nil {
					if err := file.Close(); err != nil {
						return fmt.Errorf("--out: %w", err)
					}
					fmt.Fprintf(env.stderr, "exported %s to %s\n", plural(n, "request record"), outPath)
				}
				return nil
			})
		},
	}
	filter.add(cmd)
	cmd.Flags().StringVar(&format, "format", "csv", "csv or json (one JSON array)")
	cmd.Flags().StringVar(&outPath, "out", "", "write to this file instead of stdout")
	cmd.Flags().BoolVar(&bar, "progress", false, "show a progress bar even when stderr is not a terminal")
	return cmd
}

// exportRequests streams the records to w, with a progress bar, and
// returns how many it wrote.
func exportRequests(ctx context.Context, env *cliEnv, db *server.Conn, f store.RequestFilter, format string, w io.Writer, forceBar bool) (int64, error) {
	var total int64
	if forceBar || isTerminal(env.stderr) {
		var err error
		if total, err = db.Store.RequestCount(ctx, db.Pool, f); err != nil {
			return 0, err
		}
	}
	p := newProgress(env, forceBar, total, "exporting")
	n, err := api.ExportRequests(ctx, db.Store, db.Pool, f, format, w, func(n int64) { _ = p.Set64(n) })
	if err != nil {
		return n, err
	}
	_ = p.Set64(n)
	_ = p.Finish()
	return n, nil
}
