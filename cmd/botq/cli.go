package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/botq/botq/api"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

// The operator commands (actions, requests, replay, app, token,
// registration, mode, health, enqueue, events) work on the database named
// by the configuration, like `botq serve`, and record the operator as
// "cli:<os user>" unless --actor says otherwise. They print tables by
// default and JSON with --output json.

// withDB runs fn on a connection to botq's schema, opened after the
// command's own checks so that a usage error needs no database.
func (e *cliEnv) withDB(ctx context.Context, fn func(*server.Conn) error) error {
	cfg, err := e.config()
	if err != nil {
		return err
	}
	db, err := server.Connect(ctx, cfg, e.lookupEnv, "botq-cli")
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db)
}

// runDB is the RunE of a command that has nothing to check before it
// needs the database.
func (e *cliEnv) runDB(fn func(cmd *cobra.Command, args []string, db *server.Conn) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return e.withDB(cmd.Context(), func(db *server.Conn) error { return fn(cmd, args, db) })
	}
}

// group is a command that holds subcommands (app, token, ...).
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short}
	cmd.AddCommand(subs...)
	return cmd
}

// readInput reads --file, or stdin without it (or with "-"), up to max
// bytes.
func (e *cliEnv) readInput(file, what string, max int64) ([]byte, error) {
	r := e.stdin
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, max))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return b, nil
}

// outputOpts are the flags every reading command has.
type outputOpts struct {
	format string
}

// addOutputFlag adds --output and refuses a bad value before the command
// runs.
func addOutputFlag(cmd *cobra.Command, o *outputOpts) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "table", "output format: table or json")
	cmd.PreRunE = func(*cobra.Command, []string) error { return o.check() }
}

func (o *outputOpts) check() error {
	if o.format != "table" && o.format != "json" {
		return usagef("--output must be table or json, not %q", o.format)
	}
	return nil
}

func (o *outputOpts) json() bool { return o.format == "json" }

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeList ends a listing: v as JSON with --output json, else items as a
// table whose long cells are cut to keep one line per item (`show` and
// the JSON output have them whole).
func writeList[T any](w io.Writer, o outputOpts, v any, header []string, items []T, cols func(T) []any) error {
	if o.json() {
		return writeJSONOut(w, v)
	}
	return writeTable(w, maxCell, header, items, cols)
}

// writeTable writes items as a table of header, a row an item, its cells
// cut to cut bytes (0: never cut).
func writeTable[T any](w io.Writer, cut int, header []string, items []T, cols func(T) []any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, it := range items {
		parts := make([]string, 0, len(header))
		for _, c := range cols(it) {
			s := cell(c)
			if cut > 0 && len(s) > cut {
				s = s[:cut-3] + "..."
			}
			parts = append(parts, s)
		}
		fmt.Fprintln(tw, strings.Join(parts, "\t"))
	}
	return tw.Flush()
}

// writeFields writes a FIELD/VALUE table (the `show` commands), whole.
func writeFields(w io.Writer, fields [][2]any) error {
	return writeTable(w, 0, []string{"FIELD", "VALUE"}, fields, func(kv [2]any) []any { return kv[:] })
}

// writeSection writes a titled table of items, whole, if there are any.
func writeSection[T any](w io.Writer, title string, header []string, items []T, cols func(T) []any) error {
	if len(items) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	return writeTable(w, 0, header, items, cols)
}

// maxCell is the widest cell of a listing.
const maxCell = 60

// cell formats one table cell: times in UTC to the second, nothing as "-",
// and no tabs or newlines that would break the table.
func cell(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		s = x
	case time.Time:
		s = x.UTC().Format("2006-01-02 15:04:05")
	case *time.Time:
		if x == nil {
			return "-"
		}
		return cell(*x)
	case *int64:
		if x == nil {
			return "-"
		}
		return cell(*x)
	default:
		s = fmt.Sprint(x)
	}
	if s == "" {
		return "-"
	}
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

// plural writes n and noun, in the plural unless n is 1: "1 action",
// "2 actions".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.FormatInt(n, 10) + " " + noun + "s"
}

// writeFlags are the flags of a command that changes something: --actor,
// --reason and --output.
type writeFlags struct {
	out    outputOpts
	actor  string
	reason string
}

// add adds the flags; --reason only with its usage.
func (f *writeFlags) add(cmd *cobra.Command, reasonUsage string) {
	if reasonUsage != "" {
		cmd.Flags().StringVar(&f.reason, "reason", "", reasonUsage)
	}
	addActorFlag(cmd, &f.actor)
	addOutputFlag(cmd, &f.out)
}

func addActorFlag(cmd *cobra.Command, actor *string) {
	cmd.Flags().StringVar(actor, "actor", "", `who is recorded as doing this (default "cli:<os user>", or $BOTQ_ACTOR)`)
}

// actorOr is who the CLI records: actor (--actor), else $BOTQ_ACTOR, else
// the operating-system user.
func actorOr(env *cliEnv, actor string) string {
	if actor != "" {
		return actor
	}
	if v, ok := env.lookupEnv("BOTQ_ACTOR"); ok && v != "" {
		return v
	}
	name, _ := env.lookupEnv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	return "cli:" + name
}

// durationValue is a duration flag in botq's one syntax (api.ParseDuration:
// 30s, 2h45m, 7d), where pflag's own knows no days.
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil || *v.d == 0 {
		return "0" // what pflag takes for "no default"
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := api.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (durationValue) Type() string { return "duration" }

// durationVar defines a duration flag that takes days as well.
func durationVar(fs *pflag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var(durationValue{p}, name, usage)
}

// parseWhen reads a time flag: RFC 3339, a date, or a duration meaning that
// long ago ("24h", "7d", "1d12h").
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := api.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	t, err := api.ParseTime(s)
	if err != nil {
		return t, usagef("--%s: %v, or a duration ago like 24h or 7d", flag, err)
	}
	return t, nil
}

// timeRangeFlags are --from, --to and --since.
type timeRangeFlags struct {
	from, to, since string
}

func (f *timeRangeFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&f.from, "from", "", what+" at or after this time (RFC 3339, a date, or a duration ago: 24h, 7d)")
	cmd.Flags().StringVar(&f.to, "to", "", what+" before this time")
	cmd.Flags().StringVar(&f.since, "since", "", "same as --from")
}

func (f *timeRangeFlags) parse(now time.Time) (from, to time.Time, err error) {
	if f.since != "" && f.from != "" {
		return from, to, usagef("--since and --from say the same thing; give one")
	}
	name, s := "from", f.from
	if f.since != "" {
		name, s = "since", f.since
	}
	if from, err = parseWhen(name, s, now); err != nil {
		return from, to, err
	}
	if to, err = parseWhen("to", f.to, now); err != nil {
		return from, to, err
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return from, to, usagef("--to (%s) must be after --%s (%s)", to.Format(time.RFC3339), name, from.Format(time.RFC3339))
	}
	return from, to, nil
}

// actionFilterFlags select actions.
type actionFilterFlags struct {
	app, kind, lane string
	states          []string
	times           timeRangeFlags
}

func (f *actionFilterFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.app, "app", "", "only this app")
	cmd.Flags().StringVar(&f.kind, "kind", "", "only this action kind ("+strings.Join(jobs.Kinds(), ", ")+")")
	cmd.Flags().StringSliceVar(&f.states, "state", nil, "only these states (repeat or comma-separate: queued, running, retrying, sent, unknown, succeeded, failed, cancelled)")
	cmd.Flags().StringVar(&f.lane, "lane", "", "only this lane")
	f.times.add(cmd, "actions created")
}

func (f *actionFilterFlags) filter(now time.Time) (store.ActionFilter, error) {
	out := store.ActionFilter{AppID: f.app, Kind: f.kind, Lane: f.lane}
	if err := api.CheckKind(f.kind, jobs.Kinds()); err != nil {
		return out, usagef("--kind: %v", err)
	}
	states, err := api.ParseActionStates(f.states)
	if err != nil {
		return out, usagef("--state: %v", err)
	}
	out.States = states
	out.From, out.To, err = f.times.parse(now)
	return out, err
}

func (f *actionFilterFlags) empty() bool {
	return f.app == "" && f.kind == "" && f.lane == "" && len(f.states) == 0 && f.times == (timeRangeFlags{})
}

// newProgress is a bar on stderr when it is a terminal (or when forced), and
// an invisible one otherwise, so scripts and logs get no control characters.
func newProgress(env *cliEnv, force bool, total int64, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetVisibility((force || isTerminal(env.stderr)) && total > 0),
		progressbar.OptionSetWriter(env.stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// parseID reads an action id argument.
func parseID(what, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("%s must be a positive integer, not %q", what, s)
	}
	return id, nil
}

// explain adds what to do to the store errors an operator meets.
func explain(err error) error {
	switch {
	case errors.Is(err, store.ErrInFlight):
		return fmt.Errorf("%w (its call to Khoros is being made now)", err)
	case errors.Is(err, store.ErrNotFound):
		return err
	}
	var ve *store.ValidationError
	if errors.As(err, &ve) {
		return fmt.Errorf("%s: %s", ve.Field, strings.TrimPrefix(ve.Error(), "botq: "))
	}
	return err
}
