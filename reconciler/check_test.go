package reconciler_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/jobs/jobstest"
	"github.com/botq/botq/reconciler"
	"github.com/botq/botq/store"
)

// Before an unknown action is cancelled, Khoros is asked about its send. A
// send it applied (the answer was dropped) is found once listings work, and
// settles the action; while listings fail the check says Khoros could not
// answer. Nothing is ever released by the check.
func TestCheckSendFindsADroppedSend(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 21, Now: c.Now, SettleDelayMax: -1}})
	require.NoError(t, env.Sim.SetFault("respond", sim.Fault{DropRate: 1, Times: 1}))
	require.NoError(t, env.Sim.SetFault("request_list", sim.Fault{ErrorRate: 1}))
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("dropped", "Your refund is on its way")})
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionUnknown)
	r := newReconciler(t, env, c, func(cfg *reconciler.Config) { cfg.AmbiguousGrace = time.Minute })

	c.Advance(2 * time.Minute) // past the grace: only the failing listing keeps it from being released
	check, err := r.CheckSend(env.Ctx, id)
	require.NoError(t, err)
	require.NotNil(t, check)
	require.False(t, check.NotSent)
	require.Contains(t, check.Note, "Khoros could not be asked")
	require.Contains(t, check.Note, "503")
	require.Equal(t, store.ActionUnknown, env.Action(t, id).State)

	env.Sim.ClearFaults("request_list")
	_, err = r.CheckSend(env.Ctx, id)
	require.ErrorIs(t, err, store.ErrConflict)
	require.Contains(t, err.Error(), "it reached Khoros: request ")
	a := env.Action(t, id)
	require.Equal(t, store.ActionSucceeded, a.State, "settled by its record")
	require.Contains(t, err.Error(), a.RequestID)
	require.Len(t, env.Sim.Calls(sim.CallFilter{Endpoint: "respond"}), 1, "sent once")

	check, err = r.CheckSend(env.Ctx, id)
	require.NoError(t, err)
	require.Nil(t, check, "nothing to check of an action that is not unknown")
}

// A send that never arrived (the call hung unapplied) waits out its grace
// period: within it the check cannot tell, after it the check says the send
// never arrived, and the action is left unknown for the cancel, not
// released into a second send.
func TestCheckSendOfASendThatNeverArrived(t *testing.T) {
	t.Parallel()
	c := &clock{}
	env := jobstest.Start(t, jobstest.Options{Sim: sim.Options{Seed: 22, Now: c.Now, SettleDelayMax: -1}, HTTPTimeout: 500 * time.Millisecond})
	require.NoError(t, env.Sim.SetFault("respond", sim.Fault{HangRate: 1, Times: 1}))
	id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("hung", "Still there?")})
	env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionUnknown)
	r := newReconciler(t, env, c, func(cfg *reconciler.Config) { cfg.AmbiguousGrace = time.Minute })

	check, err := r.CheckSend(env.Ctx, id)
	require.NoError(t, err)
	require.False(t, check.NotSent)
	require.Contains(t, check.Note, "may still appear")

	c.Advance(2 * time.Minute)
	check, err = r.CheckSend(env.Ctx, id)
	require.NoError(t, err)
	require.True(t, check.NotSent, check.Note)
	require.Contains(t, check.Note, "never reached Khoros")
	require.Equal(t, 0, check.ReleaseCount)
	a := env.Action(t, id)
	require.Equal(t, store.ActionUnknown, a.State, "not released")

	got, _, err := env.Store.ActionCancelChecked(env.Ctx, env.Pool, id, "test", "customer left", check)
	require.NoError(t, err)
	require.Equal(t, store.ActionCancelled, got.State)
	require.False(t, got.PossiblySent)
	time.Sleep(200 * time.Millisecond)
	require.Len(t, env.Sim.Calls(sim.CallFilter{Endpoint: "respond"}), 1, "only the hung call")

	// A paused app is not called: Khoros cannot answer.
	id2 := func() int64 {
		require.NoError(t, env.Sim.SetFault("respond", sim.Fault{HangRate: 1, Times: 1}))
		id := env.Enqueue(t, jobs.Action{AppID: "app-1", Kind: jobs.KindRespond, Payload: respond("hung-2", "Hello?")})
		env.WaitStates(t, []int64{id}, 10*time.Second, store.ActionUnknown)
		return id
	}()
	_, err = env.Store.AppPause(env.Ctx, env.Pool, "app-1", store.Forever, "maintenance")
	require.NoError(t, err)
	c.Advance(2 * time.Minute)
	lists := env.Sim.CallCount(sim.CallFilter{Endpoint: "request_list"})
	check, err = r.CheckSend(env.Ctx, id2)
	require.NoError(t, err)
	require.False(t, check.NotSent)
	require.Contains(t, check.Note, "paused")
	require.Equal(t, lists, env.Sim.CallCount(sim.CallFilter{Endpoint: "request_list"}), "no call for a paused app")
}
