package jobs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/jobs/jobstest"
	"github.com/botq/botq/store"
)

// River's JobCancel of a running job (another River client, SQL with
// River's NOTIFY) cuts the worker's call. An idempotent kind's cut call
// would be retried, and River cancels the job when its worker returns: the
// action was left retrying for good, with a cancelled job. The action is
// cancelled with its job now.
func TestRiverCancelOfRunningJobCancelsItsAction(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 21}, Retry: fastRetry, HTTPTimeout: 30 * time.Second})
	require.NoError(t, env.Sim.SetFault("tag", sim.Fault{HangRate: 1, Times: 1}))
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindTag, Payload: jobstest.Payload(jobs.KindTag, "cut")})
	require.Eventually(t, func() bool { return len(env.Sim.Faults()) == 0 }, 10*time.Second, 5*time.Millisecond, "the call hangs at Khoros")

	_, err := env.River.JobCancel(env.Ctx, env.Action(t, id).RiverJobID)
	require.NoError(t, err)
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionCancelled)
	state, finalized, _ := riverJob(t, env, env.Action(t, id).RiverJobID)
	require.Equal(t, "cancelled", state)
	require.True(t, finalized)
	events, err := env.Store.EventList(env.Ctx, env.Pool, store.EventListParams{ActionID: &id, Kind: "cancel"})
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, "river", events[0].Actor)
	require.Contains(t, events[0].Reason, "JobCancel")
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 1, env.Sim.CallCount(sim.CallFilter{Endpoint: "tag"}), "only the cut call: not sent again")
}

// River's JobRetry of a failed action's job (River UI's Retry did it) runs
// the job again: nothing is sent, and the job is cancelled with the reason,
// not completed (River UI showed a failed action as completed).
func TestJobRunAgainForFailedActionIsNotCompleted(t *testing.T) {
	t.Parallel()
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 22}, Retry: fastRetry})
	_, err := env.Sim.SetOwner(sim.Conversation{CompanyKey: "acme", NetworkKey: "facebook", ExternalID: "page-1", AuthorID: "agent-owned"},
		ownerAgent())
	require.NoError(t, err)
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: jobstest.Payload(jobs.KindRespond, "agent-owned")})
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionFailed)
	jobID := env.Action(t, id).RiverJobID

	_, err = env.River.JobRetry(env.Ctx, jobID)
	require.NoError(t, err)
	var state string
	var errs []string
	require.Eventually(t, func() bool {
		state, _, errs = riverJob(t, env, jobID)
		return state != "available" && state != "running" && len(errs) > 1
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "cancelled", state)
	require.Contains(t, errs[len(errs)-1], "ran again outside botq")
	require.True(t, strings.Contains(errs[len(errs)-1], "botq replay"), errs)
	require.Equal(t, store.ActionFailed, env.Action(t, id).State)
	require.Equal(t, 1, env.Sim.CallCount(sim.CallFilter{Endpoint: "respond"}), "nothing sent again")
}
