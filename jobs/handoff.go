package jobs

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/botq/botq/store"
)

// errHandedOff is what a worker returns once its result's transaction has
// written the job's new state, before that transaction commits. Returning
// nil would let River's completer complete the job; if the result's commit
// then failed, or the process died, the job would be completed with its
// call's attempt and the action's state lost for good. An error makes River
// mark the job retryable instead, in ResultRetry (NextRetry). Either way
// River's update waits for the result's transaction, which holds the job's
// row:
//
//   - it commits: the job has left `running`, and River's update, which only
//     changes a running job, does nothing;
//   - it rolls back: River makes the job retryable. The writer then writes
//     the result again alone; that write accepts the job in `retryable` (or
//     `available`) at the same attempt and removes River's error, and fails
//     if River already ran the job again. If it fails, the job runs again
//     later as a new attempt, which finds no attempt row for the one before
//     and treats it as a call that may have reached Khoros.
//
// So a worker is free as soon as its job's row is written, not after the
// rest of its batch (the action, the attempt, the request, the lanes) and
// the commit: in a backlog drain that wait was about half a job's time.
//
// This file is the one place that explains the hand-off; its three parts
// live where River lets botq act:
//
//   - the worker (Executor.finish) records the job as handed off, and
//     NextRetry gives such a job ResultRetry instead of its kind's backoff,
//     so a lost result is retried soon;
//   - the result's write (store.JobsEnd) sets the job's state in the
//     result's transaction and, when River got there first after a rollback
//     (retryable or available with this error last), takes the error out of
//     the job's errors: the job did not fail;
//   - RiverLogHandler drops River's "Job errored" line for it: nothing
//     failed.
//
// A job on its last attempt, and a result that leaves its job to River (a
// retry, a snooze), still wait for the commit: River would discard the
// first on an error, and a job made available by botq's transaction could
// be fetched again before River's completer ran for the second.
var errHandedOff = errors.New(store.HandoffError)

// RiverLogHandler wraps the handler River logs to: River logs every job
// whose worker returned an error at info level, and a handed-off job
// (errHandedOff) is not one that failed.
func RiverLogHandler(h slog.Handler) slog.Handler { return riverLogHandler{h} }

type riverLogHandler struct{ slog.Handler }

func (h riverLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo && strings.HasSuffix(r.Message, "Job errored; retrying") {
		handedOff := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" && a.Value.String() == errHandedOff.Error() {
				handedOff = true
				return false
			}
			return true
		})
		if handedOff {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h riverLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return riverLogHandler{h.Handler.WithAttrs(attrs)}
}

func (h riverLogHandler) WithGroup(name string) slog.Handler {
	return riverLogHandler{h.Handler.WithGroup(name)}
}
