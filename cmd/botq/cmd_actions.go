package main

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/botq/botq/api"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

func newActionsCmd(env *cliEnv) *cobra.Command {
	return group("actions", "List, inspect and cancel actions",
		newActionsListCmd(env), newActionsShowCmd(env), newActionsCancelCmd(env))
}

func newActionsListCmd(env *cliEnv) *cobra.Command {
	var (
		out     outputOpts
		filter  actionFilterFlags
		limit   int
		after   int64
		replays int64
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List actions, newest first",
		Example: `  botq actions list --app my-app --state failed --since 24h
  botq actions list --kind respond --from 2025-01-01 --to 2025-02-01 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := filter.filter(time.Now())
			if err != nil {
				return err
			}
			if limit < 1 || limit > api.MaxLimit {
				return usagef("--limit must be from 1 to %d, not %d", api.MaxLimit, limit)
			}
			if cmd.Flags().Changed("replays-of") {
				f.ReplayOf = &replays
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				actions, more, err := db.Store.ActionList(cmd.Context(), db.Pool, store.ActionListParams{Filter: f, AfterID: after, Limit: limit})
				if err != nil {
					return err
				}
				err = writeList(env.stdout, out, api.ActionList{Actions: api.NewActions(actions)},
					[]string{"ID", "APP", "KIND", "STATE", "ATTEMPTS", "CREATED", "REPLAY OF", "LAST ERROR"}, actions, func(a *store.Action) []any {
						return []any{a.ID, a.AppID, a.Kind, string(a.State), a.AttemptCount, a.CreatedAt, a.ReplayOf, a.LastError}
					})
				if err != nil || out.json() {
					return err
				}
				if more {
					fmt.Fprintf(env.stderr, "more: --after %d\n", actions[len(actions)-1].ID)
				}
				return nil
			})
		},
	}
	filter.add(cmd)
	addOutputFlag(cmd, &out)
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many actions")
	cmd.Flags().Int64Var(&after, "after", 0, "continue after this action id (the previous page's last)")
	cmd.Flags().Int64Var(&replays, "replays-of", 0, "only the replays of this action")
	return cmd
}

func newActionsShowCmd(env *cliEnv) *cobra.Command {
	var out outputOpts
	cmd := &cobra.Command{
		Use:   "show <action-id>",
		Short: "Show an action with its attempts, request records, events and replays",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("action id", args[0])
			if err != nil {
				return err
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				a, err := db.Store.ActionView(cmd.Context(), db.Pool, id)
				if err != nil {
					return err
				}
				d, err := api.LoadActionDetail(cmd.Context(), db.Store, db.Pool, a)
				if err != nil {
					return err
				}
				if out.json() {
					return writeJSONOut(env.stdout, d)
				}
				return printActionDetail(env, d)
			})
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

func printActionDetail(env *cliEnv, d *api.ActionDetail) error {
	a, w := d.Action, env.stdout
	err := writeFields(w, [][2]any{
		{"id", a.ID}, {"app", a.AppID}, {"kind", a.Kind}, {"state", a.State}, {"idempotency key", a.IdempotencyKey},
		{"lane", a.Lane}, {"river job", a.RiverJobID}, {"replay of", a.ReplayOf}, {"attempts", a.AttemptCount},
		{"request id", a.RequestID}, {"last error", a.LastError}, {"created", a.CreatedAt}, {"created by", a.CreatedBy},
		{"updated", a.UpdatedAt}, {"finished", a.FinishedAt}, {"possibly sent", possiblySentCell(a)},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\npayload: %s\n", a.Payload)
	return errors.Join(
		writeSection(w, "attempts", []string{"#", "STARTED", "MS", "SENT", "STATUS", "OUTCOME", "REQUEST ID", "ERROR"}, d.Attempts, func(t api.Attempt) []any {
			return []any{t.Number, t.StartedAt, fmt.Sprintf("%.0f", t.DurationMS), t.WireSent, t.HTTPStatus, t.Outcome, t.RequestID, t.Error}
		}),
		writeSection(w, "request records", []string{"REQUEST ID", "STATE", "FIRST SEEN", "FINALIZED", "DETAILS"}, d.Requests, func(r api.Request) []any {
			return []any{r.RequestID, r.State, r.FirstSeenAt, r.FinalizedAt, string(r.Details)}
		}),
		writeSection(w, "events", eventHeader, d.Events, eventCols),
		writeSection(w, "replays", []string{"ID", "STATE", "CREATED", "CREATED BY"}, d.Replays, func(r api.Action) []any {
			return []any{r.ID, r.State, r.CreatedAt, r.CreatedBy}
		}),
	)
}

// possiblySentCell shows the flag of an action cancelled possibly sent.
func possiblySentCell(a api.Action) string {
	if !a.PossiblySent {
		return "no"
	}
	return "YES: cancelled while its send's fate was unknown; replaying it needs --possibly-sent"
}

var eventHeader = []string{"ID", "AT", "KIND", "APP", "ACTION", "ACTOR", "REASON", "AFTER"}

func eventCols(e api.Event) []any {
	return []any{e.ID, e.At, e.Kind, e.AppID, e.ActionID, e.Actor, e.Reason, string(e.After)}
}

func newActionsCancelCmd(env *cliEnv) *cobra.Command {
	var f writeFlags
	cmd := &cobra.Command{
		Use:   "cancel <action-id>",
		Short: "Cancel an action that is not in flight (queued, retrying or unknown)",
		Long: `Cancels the action and its River job in one transaction and records a cancel event.
An action whose call to Khoros is being made right now is refused: try again when it is not.

An unknown action (its call reached Khoros with no answer) is checked first: one listing of
its app's request records at Khoros. A record of the send settles the action by it and the
cancel is refused (the message reached Khoros). No record once reconciler.ambiguous_grace is
over: the send never arrived, and the cancel is clean. Otherwise (Khoros cannot answer: the
listing fails, no usable token, the app is paused; or the grace period is not over) the action
is cancelled "possibly sent", and replaying it needs --possibly-sent.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("action id", args[0])
			if err != nil {
				return err
			}
			if f.reason == "" {
				return usagef("--reason is required: say why the action is cancelled")
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				check, err := db.CheckSend(cmd.Context(), id)
				if err != nil {
					return explain(err)
				}
				a, note, err := db.Store.ActionCancelChecked(cmd.Context(), db.Pool, id, actorOr(env, f.actor), f.reason, check)
				if err != nil {
					return explain(err)
				}
				warning := api.PossiblySentWarning(a, note, replayFlags[store.ReplayOptionPossiblySent])
				if f.out.json() {
					return writeJSONOut(env.stdout, api.CancelResponse{Action: api.NewAction(a), Warning: warning})
				}
				fmt.Fprintf(env.stdout, "cancelled action %d\n", a.ID)
				if warning != "" {
					fmt.Fprintf(env.stderr, "warning: action %d %s\n", a.ID, warning)
				}
				return nil
			})
		},
	}
	f.add(cmd, "why (required; recorded in the cancel event)")
	return cmd
}

func newEventsCmd(env *cliEnv) *cobra.Command {
	var (
		out           outputOpts
		app, kind, by string
		action        int64
		times         timeRangeFlags
		limit         int
		after         int64
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List operator and system events (replays, cancels, pauses, token changes...), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := store.EventFilter{AppID: app, Kind: kind, Actor: by}
			if kind != "" && !slices.Contains(api.EventKinds, kind) {
				return usagef("--kind: %q is not an event kind (one of %v)", kind, api.EventKinds)
			}
			if cmd.Flags().Changed("action") {
				f.ActionID = &action
			}
			var err error
			if f.From, f.To, err = times.parse(time.Now()); err != nil {
				return err
			}
			if limit < 1 || limit > api.MaxLimit {
				return usagef("--limit must be from 1 to %d, not %d", api.MaxLimit, limit)
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				evs, more, err := db.Store.EventQuery(cmd.Context(), db.Pool, store.EventQueryParams{Filter: f, AfterID: after, Limit: limit})
				if err != nil {
					return err
				}
				res := api.EventList{Events: api.NewEvents(evs)}
				if err := writeList(env.stdout, out, res, eventHeader, res.Events, eventCols); err != nil || out.json() {
					return err
				}
				if more {
					fmt.Fprintf(env.stderr, "more: --after %d\n", evs[len(evs)-1].ID)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&app, "app", "", "only this app")
	cmd.Flags().StringVar(&kind, "kind", "", "only this event kind")
	cmd.Flags().StringVar(&by, "actor", "", "only events by this actor")
	cmd.Flags().Int64Var(&action, "action", 0, "only events of this action")
	times.add(cmd, "events")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many events")
	cmd.Flags().Int64Var(&after, "after", 0, "continue after this event id")
	addOutputFlag(cmd, &out)
	return cmd
}
