package jobs_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/jobs/jobstest"
	"github.com/botq/botq/store"
)

// A worker goes before its result commits. If that commit then fails, the
// job must not be completed by River (the call's attempt and the action's
// state would be lost for good): it runs again, finds no attempt row for
// the execution before, and, a respond being unsafe to send twice, parks
// for the reconciler without a second call.
func TestResultLostAfterHandoffIsNotCompleted(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 11}, ResultRetry: 3 * time.Second})
	// Every write of a successful attempt of the "lose-result" conversation
	// fails, in the batch and when the writer retries it alone.
	_, err := env.Pool.Exec(env.Ctx, fmt.Sprintf(`
CREATE FUNCTION %[1]s.lose_result() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.outcome = 'ok' AND EXISTS (SELECT 1 FROM %[1]s.action a
	    WHERE a.id = NEW.action_id AND a.payload::text LIKE '%%lose-result%%') THEN
		RAISE EXCEPTION 'injected: this result is lost';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER lose_result BEFORE INSERT ON %[1]s.attempt FOR EACH ROW EXECUTE FUNCTION %[1]s.lose_result()`, env.Schema))
	require.NoError(t, err)

	lost := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: jobstest.Payload(jobs.KindRespond, "lose-result")})
	kept := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: jobstest.Payload(jobs.KindRespond, "keep-result")})

	env.WaitStates(t, []int64{kept}, 10*time.Second, store.ActionSent, store.ActionSucceeded)
	state, finalized, errs := riverJob(t, env, env.Action(t, kept).RiverJobID)
	require.Equal(t, "completed", state)
	require.True(t, finalized)
	require.Empty(t, errs, "River recorded no error for a handed-off job whose result committed")

	env.WaitStates(t, []int64{lost}, 15*time.Second, store.ActionUnknown)
	a := env.Action(t, lost)
	state, finalized, _ = riverJob(t, env, a.RiverJobID)
	require.Equal(t, "pending", state, "the job waits for the reconciler")
	require.False(t, finalized)
	attempts, err := env.Store.AttemptList(env.Ctx, env.Pool, lost)
	require.NoError(t, err)
	require.Len(t, attempts, 1)
	require.Equal(t, store.OutcomeUnknown, attempts[0].Outcome)
	require.Equal(t, 2, attempts[0].JobAttempt, "the lost execution was attempt 1")
	require.Equal(t, 2, env.Sim.CallCount(sim.CallFilter{Endpoint: "respond"}), "one call per action: no blind resend")
}
