package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/botq/botq/api"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/server"
	"github.com/botq/botq/store"
)

func newEnqueueCmd(env *cliEnv) *cobra.Command {
	var (
		f    writeFlags
		file string
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "enqueue",
		Short: "Enqueue actions from JSON (a file or stdin): one object or an array",
		Long: `Reads one action, or a JSON array of actions, each
  {"app_id": "...", "kind": "respond", "payload": {...}, "idempotency_key": "...", "lane": "..."}
and enqueues them in one transaction: if one is refused, none is enqueued, and the error
names the action and its offending field. idempotency_key and lane are optional. An action
whose idempotency key the app used already is not enqueued again; the existing one is shown.`,
		Example: `  echo '{"app_id":"my-app","kind":"tag","payload":{...},"idempotency_key":"t-1"}' | botq enqueue
  botq enqueue --file actions.json --wait 30s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := env.readInput(file, "actions", 64<<20)
			if err != nil {
				return err
			}
			reqs, err := decodeActions(raw)
			if err != nil {
				return err
			}
			return env.withDB(cmd.Context(), func(db *server.Conn) error {
				ps := make([]store.ActionInsertParams, len(reqs))
				for i, q := range reqs {
					ps[i] = store.ActionInsertParams{AppID: q.AppID, Kind: q.Kind, Payload: q.Payload,
						IdempotencyKey: q.IdempotencyKey, Lane: q.Lane, CreatedBy: actorOr(env, f.actor)}
				}
				res, err := enqueue(cmd.Context(), db, ps, wait)
				if err != nil {
					return err
				}
				outRes := make([]api.EnqueueResponse, len(res))
				for i, r := range res {
					outRes[i] = api.EnqueueResponse{Action: api.NewAction(r.Action), Existed: r.Existed}
				}
				return writeList(env.stdout, f.out, outRes, []string{"ID", "APP", "KIND", "STATE", "EXISTED", "IDEMPOTENCY KEY"}, res, func(r store.ActionInsertResult) []any {
					return []any{r.Action.ID, r.Action.AppID, r.Action.Kind, string(r.Action.State), r.Existed, r.Action.IdempotencyKey}
				})
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "read the JSON from this file (default: stdin)")
	durationVar(cmd.Flags(), &wait, "wait", 0, "wait up to this long for the actions to be sent or finished")
	f.add(cmd, "")
	return cmd
}

// decodeActions decodes one action object or an array of them, strictly.
func decodeActions(raw []byte) ([]api.EnqueueRequest, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, usagef("no JSON on stdin (or in --file): give an action object or an array of them")
	}
	var reqs []api.EnqueueRequest
	var err error
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if raw[0] == '[' {
		err = dec.Decode(&reqs)
	} else {
		var one api.EnqueueRequest
		err = dec.Decode(&one)
		reqs = []api.EnqueueRequest{one}
	}
	if err != nil {
		return nil, usagef("actions JSON: %v", err)
	}
	if len(reqs) == 0 {
		return nil, usagef("actions JSON: the array is empty")
	}
	for i, q := range reqs {
		where := ""
		if len(reqs) > 1 {
			where = fmt.Sprintf("action %d: ", i)
		}
		switch {
		case q.AppID == "":
			return nil, usagef("%sapp_id is required", where)
		case q.Kind == "":
			return nil, usagef("%skind is required", where)
		case len(q.Payload) == 0:
			return nil, usagef("%spayload is required (a JSON object; {} for kinds without a body)", where)
		}
		if err := api.CheckKind(q.Kind, jobs.Kinds()); err != nil {
			return nil, usagef("%skind: %v", where, err)
		}
	}
	return reqs, nil
}

// errWaitTimeout is returned when actions are not done in time.
var errWaitTimeout = errors.New("timed out waiting")

// enqueue enqueues ps in one transaction and, with wait, waits until every
// action is sent or finished; it returns the actions as they are then.
func enqueue(ctx context.Context, db *server.Conn, ps []store.ActionInsertParams, wait time.Duration) ([]store.ActionInsertResult, error) {
	res, err := db.Store.ActionInsertMany(ctx, db.Pool, ps)
	if err != nil || wait <= 0 {
		return res, explain(err)
	}
	deadline := time.Now().Add(wait)
	for {
		pending := 0
		for i := range res {
			if res[i].Action, err = db.Store.ActionGet(ctx, db.Pool, res[i].Action.ID); err != nil {
				return nil, err
			}
			if st := res[i].Action.State; !st.Final() && st != store.ActionSent {
				pending++
			}
		}
		if pending == 0 {
			return res, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %d of %s still not sent or finished after %s (is botq serve running?)", errWaitTimeout, pending, plural(int64(len(res)), "action"), wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
