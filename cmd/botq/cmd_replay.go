package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/botq/botq/api"
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

func newReplayCmd(env *cliEnv) *cobra.Command {
	var (
		out       outputOpts
		filter    actionFilterFlags
		opts      store.ReplayOptions
		actor     string
		dryRun    bool
		batchSize int
		sample    int
		bar       bool
	)
	cmd := &cobra.Command{
		Use:   "replay [action-id...]",
		Short: "Replay actions: one or more by id, or every action matching a filter",
		Long: `A replay is a NEW action with the original's app, kind, payload and lane, linked to it
(replay_of) and created by you; the original and its history never change. Each replay
records a replay event with you as actor and --reason.

Only finished actions are replayed (failed or cancelled). Replaying one that succeeded
needs --allow-succeeded, replaying a replay --allow-replay-of-replay, replaying one
that was replayed already --allow-replayed, and replaying one cancelled "possibly sent"
(cancelled while its send's fate was unknown: its message may have reached the customer)
--possibly-sent. A bulk replay (by filter) skips the others and
says how many and why. It runs in batches, each its own transaction, with a progress bar;
--dry-run shows what would be replayed.`,
		Example: `  botq replay 1234 --reason "Khoros 500s"
  botq replay --app my-app --state failed --since 24h --dry-run --reason "outage 31 Jan"
  botq replay --app my-app --state failed --since 24h --reason "outage 31 Jan"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(opts.Reason) == "" {
				return usagef("--reason is required: say why these actions are replayed")
			}
			if batchSize < 1 || batchSize > 10000 {
				return usagef("--batch-size must be from 1 to 10000, not %d", batchSize)
			}
			f, err := filter.filter(time.Now())
			if err != nil {
				return err
			}
			switch {
			case len(args) > 0 && !filter.empty():
				return usagef("give action ids or filter flags (--app, --kind, --state, --lane, --from, --to), not both")
			case len(args) == 0 && filter.empty():
				return usagef("say what to replay: action ids, or filter flags (--app, --kind, --state, --lane, --from, --to)")
			}
			for _, a := range args {
				id, err := parseID("action id", a)
				if err != nil {
					return err
				}
				f.IDs = append(f.IDs, id)
			}
			opts.Actor = actorOr(env, actor)
			db, err := env.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.close()
			ctx := cmd.Context()

			if len(f.IDs) == 1 && !dryRun {
				r, err := db.store.ActionReplay(ctx, db.pool, f.IDs[0], opts)
				if refused, ok := store.IsReplayRefused(err); ok {
					return refusalError(refused)
				}
				if err != nil {
					return err
				}
				if out.json() {
					return writeJSONOut(env.stdout, map[string]any{"original_id": r.OriginalID, "action_id": r.ActionID, "event_id": r.EventID})
				}
				fmt.Fprintf(env.stdout, "replayed action %d as action %d\n", r.OriginalID, r.ActionID)
				return nil
			}

			if dryRun {
				plan, err := db.store.ActionReplayPlan(ctx, db.pool, f, opts, sample)
				if err != nil {
					return err
				}
				res := api.BulkReplayResponse{DryRun: true, Matched: plan.Matched, Eligible: plan.Eligible, Skipped: plan.Skipped, Sample: []api.Action{}}
				for _, a := range plan.Sample {
					res.Sample = append(res.Sample, api.NewAction(a))
				}
				if out.json() {
					return writeJSONOut(env.stdout, res)
				}
				fmt.Fprintf(env.stdout, "dry run: %d actions match, %d would be replayed\n", plan.Matched, plan.Eligible)
				printSkipped(env, plan.Skipped)
				if len(res.Sample) > 0 {
					fmt.Fprintf(env.stdout, "\nthe first %d:\n", len(res.Sample))
					tw := newTable(env.stdout, "ID", "APP", "KIND", "STATE", "CREATED", "LAST ERROR")
					for _, a := range res.Sample {
						row(tw, a.ID, a.AppID, a.Kind, a.State, a.CreatedAt, a.LastError)
					}
					return tw.Flush()
				}
				return nil
			}

			var p *progress
			res, err := db.store.ActionReplayBulk(ctx, db.pool, store.ReplayBulkParams{
				Filter: f, Options: opts, BatchSize: batchSize,
				Progress: func(done, total int64) {
					if p == nil {
						p = newProgress(env, bar, total, "replaying")
					}
					p.set(done)
				},
			})
			if p != nil {
				p.done()
			}
			if err != nil {
				if res != nil && res.Replayed > 0 {
					return fmt.Errorf("%w (the %d replays made before it are committed)", err, res.Replayed)
				}
				return err
			}
			skipped := res.Plan.Skipped
			if res.Skipped > 0 {
				skipped["changed_meanwhile"] = res.Skipped
			}
			if out.json() {
				if err := writeJSONOut(env.stdout, api.BulkReplayResponse{Matched: res.Plan.Matched, Eligible: res.Plan.Eligible,
					Skipped: skipped, Replayed: res.Replayed, FirstActionIDs: res.FirstIDs}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(env.stdout, "replayed %d of %d matching actions\n", res.Replayed, res.Plan.Matched)
				printSkipped(env, skipped)
				if len(res.FirstIDs) > 0 {
					fmt.Fprintf(env.stdout, "new actions: %d ... (botq actions list --state queued --app ...)\n", res.FirstIDs[0])
				}
			}
			if len(args) > 0 && len(skipped) > 0 {
				return fmt.Errorf("%d of the actions named were not replayed (see above)", res.Plan.Matched-res.Replayed)
			}
			return nil
		},
	}
	filter.add(cmd)
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "why (required; recorded in each replay's event)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be replayed; change nothing")
	cmd.Flags().BoolVar(&opts.AllowSucceeded, "allow-succeeded", false, "also replay actions that succeeded (sends them again)")
	cmd.Flags().BoolVar(&opts.AllowReplayOfReplay, "allow-replay-of-replay", false, "also replay actions that are themselves replays")
	cmd.Flags().BoolVar(&opts.AllowReplayed, "allow-replayed", false, "also replay actions that were replayed already")
	cmd.Flags().BoolVar(&opts.AllowPossiblySent, "possibly-sent", false, "also replay actions cancelled possibly sent (their message may have reached the customer: it may arrive twice)")
	cmd.Flags().IntVar(&batchSize, "batch-size", 500, "actions replayed per transaction")
	cmd.Flags().IntVar(&sample, "sample", 20, "with --dry-run, how many of the actions to list")
	cmd.Flags().BoolVar(&bar, "progress", false, "show a progress bar even when stderr is not a terminal")
	addActorFlag(cmd, &actor)
	addOutputFlag(cmd, &out)
	return cmd
}

func refusalError(r *store.ReplayRefusedError) error {
	if flag, ok := replayFlags[r.Option]; ok && r.Option != "" {
		return fmt.Errorf("%s; pass %s to replay it anyway", r.Error(), flag)
	}
	return r
}

func printSkipped(env *cliEnv, skipped map[string]int64) {
	keys := make([]string, 0, len(skipped))
	for k := range skipped {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		how := replayFlags[k]
		if how == "" {
			how = "(they changed while the replay ran)"
		}
		fmt.Fprintf(env.stdout, "skipped %d: %s %s\n", skipped[k], strings.ReplaceAll(strings.TrimPrefix(k, "allow_"), "_", " "), how)
	}
}
