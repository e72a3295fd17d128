package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/botq/botq/api"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

// replayFlags are the CLI names of the options that lift a refusal.
var replayFlags = map[string]string{
	store.ReplayOptionReplayOfReplay: "--allow-replay-of-replay",
	store.ReplayOptionSucceeded:      "--allow-succeeded",
	store.ReplayOptionReplayed:       "--allow-replayed",
	store.ReplayOptionPossiblySent:   "--possibly-sent",
	"unfinished":                     "(none: cancel them or let them finish)",
}

// replayRun is one `botq replay`: its flags, then what it replays.
type replayRun struct {
	env *cliEnv
	writeFlags
	filter    actionFilterFlags
	opts      store.ReplayOptions
	dryRun    bool
	batchSize int
	sample    int
	bar       bool
}

func newReplayCmd(env *cliEnv) *cobra.Command {
	r := &replayRun{env: env}
	cmd := &cobra.Command{
		Use:   "replay [action-id...]",
		Short: "Replay actions: one or more by id, or every action matching a filter",
		Long: `A replay is a NEW action with the original's app, kind, payload and lane, linked to it
(replay_of) and created by you; the original and its history never change. Each replay
records a replay event with you as actor and --reason.

Only finished actions are replayed (failed or cancelled); one that succeeded, is a replay,
was replayed already or was cancelled "possibly sent" (while its send's fate was unknown)
needs the flag that allows it. A bulk replay (by filter) skips the others and says how many
and why. It runs in batches, each its own transaction, with a progress bar.`,
		Example: `  botq replay 1234 --reason "Khoros 500s"
  botq replay --app my-app --state failed --since 24h --dry-run --reason "outage 31 Jan"
  botq replay --app my-app --state failed --since 24h --reason "outage 31 Jan"`,
		RunE: r.run,
	}
	r.filter.add(cmd)
	f := cmd.Flags()
	f.BoolVar(&r.dryRun, "dry-run", false, "show what would be replayed; change nothing")
	f.BoolVar(&r.opts.AllowSucceeded, "allow-succeeded", false, "also replay actions that succeeded (sends them again)")
	f.BoolVar(&r.opts.AllowReplayOfReplay, "allow-replay-of-replay", false, "also replay actions that are themselves replays")
	f.BoolVar(&r.opts.AllowReplayed, "allow-replayed", false, "also replay actions that were replayed already")
	f.BoolVar(&r.opts.AllowPossiblySent, "possibly-sent", false, "also replay actions cancelled possibly sent (their message may have reached the customer: it may arrive twice)")
	f.IntVar(&r.batchSize, "batch-size", 500, "actions replayed per transaction")
	f.IntVar(&r.sample, "sample", 20, "with --dry-run, how many of the actions to list")
	f.BoolVar(&r.bar, "progress", false, "show a progress bar even when stderr is not a terminal")
	r.add(cmd, "why (required; recorded in each replay's event)")
	return cmd
}

func (r *replayRun) run(cmd *cobra.Command, args []string) error {
	f, err := r.target(args)
	if err != nil {
		return err
	}
	r.opts.Actor, r.opts.Reason = actorOr(r.env, r.actor), r.reason
	return r.env.withDB(cmd.Context(), func(db *server.Conn) error {
		switch {
		case len(f.IDs) == 1 && !r.dryRun:
			return r.one(cmd.Context(), db, f.IDs[0])
		case r.dryRun:
			return r.plan(cmd.Context(), db, f)
		}
		return r.bulk(cmd.Context(), db, f, len(args) > 0)
	})
}

// target checks the flags and returns what to replay: the actions named,
// or those matching the filter.
func (r *replayRun) target(args []string) (store.ActionFilter, error) {
	if strings.TrimSpace(r.reason) == "" {
		return store.ActionFilter{}, usagef("--reason is required: say why these actions are replayed")
	}
	if r.batchSize < 1 || r.batchSize > 10000 {
		return store.ActionFilter{}, usagef("--batch-size must be from 1 to 10000, not %d", r.batchSize)
	}
	f, err := r.filter.filter(time.Now())
	if err != nil {
		return f, err
	}
	switch {
	case len(args) > 0 && !r.filter.empty():
		return f, usagef("give action ids or filter flags (--app, --kind, --state, --lane, --from, --to), not both")
	case len(args) == 0 && r.filter.empty():
		return f, usagef("say what to replay: action ids, or filter flags (--app, --kind, --state, --lane, --from, --to)")
	}
	for _, a := range args {
		id, err := parseID("action id", a)
		if err != nil {
			return f, err
		}
		f.IDs = append(f.IDs, id)
	}
	return f, nil
}

// one replays one action.
func (r *replayRun) one(ctx context.Context, db *server.Conn, id int64) error {
	res, err := db.Store.ActionReplay(ctx, db.Pool, id, r.opts)
	if refused, ok := store.IsReplayRefused(err); ok {
		return refusalError(refused)
	}
	if err != nil {
		return err
	}
	if r.out.json() {
		return writeJSONOut(r.env.stdout, map[string]any{"original_id": res.OriginalID, "action_id": res.ActionID, "event_id": res.EventID})
	}
	fmt.Fprintf(r.env.stdout, "replayed action %d as action %d\n", res.OriginalID, res.ActionID)
	return nil
}

// plan shows what a replay of f would do (--dry-run).
func (r *replayRun) plan(ctx context.Context, db *server.Conn, f store.ActionFilter) error {
	plan, err := db.Store.ActionReplayPlan(ctx, db.Pool, f, r.opts, r.sample)
	if err != nil {
		return err
	}
	res := api.NewReplayPlan(plan)
	if r.out.json() {
		return writeJSONOut(r.env.stdout, res)
	}
	fmt.Fprintf(r.env.stdout, "dry run: %s matched, %d would be replayed\n", plural(plan.Matched, "action"), plan.Eligible)
	printSkipped(r.env, plan.Skipped)
	if len(res.Sample) == 0 {
		return nil
	}
	fmt.Fprintf(r.env.stdout, "\nthe first %d:\n", len(res.Sample))
	return writeTable(r.env.stdout, maxCell, []string{"ID", "APP", "KIND", "STATE", "CREATED", "LAST ERROR"}, res.Sample, func(a api.Action) []any {
		return []any{a.ID, a.AppID, a.Kind, a.State, a.CreatedAt, a.LastError}
	})
}

// bulk replays the actions of f in batches; named says they were named by
// id, so one left out is an error.
func (r *replayRun) bulk(ctx context.Context, db *server.Conn, f store.ActionFilter, named bool) error {
	var p *progressbar.ProgressBar
	res, err := db.Store.ActionReplayBulk(ctx, db.Pool, store.ReplayBulkParams{
		Filter: f, Options: r.opts, BatchSize: r.batchSize,
		Progress: func(done, total int64) {
			if p == nil {
				p = newProgress(r.env, r.bar, total, "replaying")
			}
			_ = p.Set64(done)
		},
	})
	if p != nil {
		_ = p.Finish()
	}
	if err != nil {
		if res != nil && res.Replayed > 0 {
			return fmt.Errorf("%w (the %s made before it are committed)", err, plural(res.Replayed, "replay"))
		}
		return err
	}
	out := api.NewReplayResult(res)
	if r.out.json() {
		if err := writeJSONOut(r.env.stdout, out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(r.env.stdout, "replayed %d of %s matched\n", out.Replayed, plural(out.Matched, "action"))
		printSkipped(r.env, out.Skipped)
		if len(out.FirstActionIDs) > 0 {
			fmt.Fprintf(r.env.stdout, "new actions: %s; see one with: botq actions show %d\n", idList(out.FirstActionIDs, out.Replayed), out.FirstActionIDs[0])
		}
	}
	if named && len(out.Skipped) > 0 {
		return fmt.Errorf("%d of the actions named were not replayed (see above)", out.Matched-out.Replayed)
	}
	return nil
}

// idList writes up to 10 of ids, and how many of total it leaves out.
func idList(ids []int64, total int64) string {
	parts := make([]string, 0, 10)
	for _, id := range ids[:min(len(ids), 10)] {
		parts = append(parts, strconv.FormatInt(id, 10))
	}
	s := strings.Join(parts, ", ")
	if more := total - int64(len(parts)); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

func refusalError(r *store.ReplayRefusedError) error {
	if flag, ok := replayFlags[r.Option]; ok && r.Option != "" {
		return fmt.Errorf("%s; pass %s to replay it anyway", r.Error(), flag)
	}
	return r
}

func printSkipped(env *cliEnv, skipped map[string]int64) {
	for _, k := range slices.Sorted(maps.Keys(skipped)) {
		how := replayFlags[k]
		if how == "" {
			how = "(they changed while the replay ran)"
		}
		fmt.Fprintf(env.stdout, "skipped %d: %s %s\n", skipped[k], strings.ReplaceAll(strings.TrimPrefix(k, "allow_"), "_", " "), how)
	}
}
