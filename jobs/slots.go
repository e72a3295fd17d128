package jobs

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// slotLease is one of an app's concurrency slots. holder is the job that
// leased it in the database; a lease handed to another job of this process
// keeps it, and until is when the database lets another process take it.
type slotLease struct {
	appID  string
	slot   int
	holder int64
	until  time.Time
}

// slotWaiters wakes the workers of this process that wait for a slot of an
// app when another of its workers frees one; slots freed by other
// processes are found by polling.
type slotWaiters struct {
	mu      sync.Mutex
	freed   map[string]chan struct{}
	waiting map[string]int
	// take hands a lease from a worker whose call is over to one waiting
	// for the app, without the release and acquire statements in between.
	take map[string]chan *slotLease
}

// takeChan is app's channel of handed-over leases.
func (w *slotWaiters) takeChan(app string) chan *slotLease {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.take == nil {
		w.take = map[string]chan *slotLease{}
	}
	ch, ok := w.take[app]
	if !ok {
		ch = make(chan *slotLease)
		w.take[app] = ch
	}
	return ch
}

// handOver gives l to a worker of this process blocked waiting for its
// app, if there is one.
func (w *slotWaiters) handOver(l *slotLease) bool {
	select {
	case w.takeChan(l.appID) <- l:
		return true
	default:
		return false
	}
}

// join counts a waiter for app unless max already wait; waiters hold River
// worker slots, and too many would starve other apps' jobs.
func (w *slotWaiters) join(app string, max int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting == nil {
		w.waiting = map[string]int{}
	}
	if w.waiting[app] >= max {
		return false
	}
	w.waiting[app]++
	return true
}

// count is how many workers of this process wait for a slot of app.
func (w *slotWaiters) count(app string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiting[app]
}

func (w *slotWaiters) leave(app string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiting[app]--
}

// wait returns a channel closed the next time a slot of app is freed here.
func (w *slotWaiters) wait(app string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.freed == nil {
		w.freed = map[string]chan struct{}{}
	}
	ch, ok := w.freed[app]
	if !ok {
		ch = make(chan struct{})
		w.freed[app] = ch
	}
	return ch
}

func (w *slotWaiters) signal(app string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.freed[app]; ok {
		close(ch)
		delete(w.freed, app)
	}
}

// slotBuffer is how many of an app's jobs a release tries to keep waiting
// in process: a parked job takes a fetch and a load to come back, and a slot
// freed with nobody waiting here stands idle that long.
const slotBuffer = 2

// slotPark is how long a parked job waits at most: nothing is lost if a
// wake-up is.
const slotPark = time.Minute

// slotPoll is how often a waiting worker looks for a slot another process
// freed.
const slotPoll = 25 * time.Millisecond

// acquireSlot leases one of the app's concurrency slots. When all are taken
// it waits up to SlotMaxWait, given at once a slot this process frees (or
// woken to look for one), because a job parked in the database would wait
// for its next fetch while the slot stood idle. It returns nil when none
// came free, when enough workers of this process wait for the app already,
// or when the slot it was given is no longer the app's (below).
func (e *Executor) acquireSlot(ctx context.Context, appID string, limit int, holder int64) (*slotLease, error) {
	deadline := time.Now().Add(e.cfg.SlotMaxWait)
	waiting := false
	defer func() {
		if waiting {
			e.slots.leave(appID)
		}
	}()
	take := e.slots.takeChan(appID)
	for {
		freed := e.slots.wait(appID)
		started := time.Now()
		slot, ok, err := e.cfg.Store.AppSlotAcquire(ctx, e.cfg.Pool, appID, holder, e.cfg.SlotLease)
		if err != nil {
			return nil, err
		}
		if ok {
			return &slotLease{appID: appID, slot: slot, holder: holder, until: started.Add(e.cfg.SlotLease)}, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		// Half the limit may wait per process: enough to take freed
		// slots at once, few enough to leave workers to other apps.
		if !waiting {
			if waiting = e.slots.join(appID, max(2, limit/2)); !waiting {
				return nil, nil
			}
		}
		t := time.NewTimer(min(left, slotPoll+jitter(slotPoll)))
		select {
		case l := <-take:
			t.Stop()
			return e.takeSlot(ctx, l, limit)
		case <-freed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

// slotLeaseMargin is how long a handed-over lease must outlast the longest
// hold of the job taking it (its deadline) to be used without renewal.
const slotLeaseMargin = 5 * time.Second

// takeSlot checks a lease handed over by another worker. A slot above the
// app's limit (the limit shrank and the slot's row is gone) goes back to
// the database. A lease that might run out before this job's deadline is
// renewed first: otherwise another process could take the slot in the
// middle of the call. A lease lost meanwhile (it ran out and another
// holder took the slot) is no lease, and one that could not be renewed is
// returned to the database.
func (e *Executor) takeSlot(ctx context.Context, l *slotLease, limit int) (*slotLease, error) {
	dbCtx := context.WithoutCancel(ctx)
	if l.slot > limit {
		return nil, e.cfg.Store.AppSlotRelease(dbCtx, e.cfg.Pool, l.appID, l.slot, l.holder, 0)
	}
	// A job without a deadline may hold the slot for ever: renew each time.
	need := time.Now().Add(e.cfg.SlotLease)
	if d, ok := ctx.Deadline(); ok {
		need = d.Add(slotLeaseMargin)
	}
	if l.until.After(need) {
		return l, nil
	}
	started := time.Now()
	ok, err := e.cfg.Store.AppSlotRenew(dbCtx, e.cfg.Pool, l.appID, l.slot, l.holder, e.cfg.SlotLease)
	if err != nil {
		e.returnSlot(dbCtx, l, 0)
		return nil, err
	}
	if !ok {
		return nil, nil
	}
	l.until = started.Add(e.cfg.SlotLease)
	return l, nil
}

// releaseSlot frees a leased slot (nil: nothing to do): it hands it to a
// worker of this process waiting for the app if one is, or else returns it
// to the database and wakes this process's waiters (the first to ask takes
// it). Either way it makes enough of the oldest jobs parked in the database
// available to keep slotBuffer of the app's jobs waiting here. The release
// survives the job's context ending: a slot left taken would stay so until
// its lease ran out.
func (e *Executor) releaseSlot(ctx context.Context, l *slotLease) {
	if l == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	handed := e.slots.handOver(l)
	wake := max(0, slotBuffer+1-e.slots.count(l.appID))
	if !handed {
		e.returnSlot(ctx, l, wake)
		return
	}
	if wake > 0 {
		// The next call already runs; the waiters behind it are refilled.
		if err := e.cfg.Store.AppSlotWake(ctx, e.cfg.Pool, l.appID, wake); err != nil {
			e.cfg.Logger.Warn().Err(err).Str("app_id", l.appID).Msg("jobs: Waking jobs parked for a concurrency slot failed; the sweep wakes them")
		}
	}
}

// returnSlot gives a lease back to the database, waking up to wake parked
// jobs, and wakes this process's waiters to look for the freed slot.
func (e *Executor) returnSlot(ctx context.Context, l *slotLease, wake int) {
	if err := e.cfg.Store.AppSlotRelease(ctx, e.cfg.Pool, l.appID, l.slot, l.holder, wake); err != nil {
		e.cfg.Logger.Warn().Err(err).Str("app_id", l.appID).Msg("jobs: Releasing a concurrency slot failed; its lease will expire")
	}
	e.slots.signal(l.appID)
}

// waitForSlot parks a job that got no slot (AppSlotWait); the worker then
// snoozes it for slotPark: a release makes it available again at its old
// place in the queue, where a plain snooze would put it behind every job
// queued before it. The snooze is River's, so the attempt is given back, and
// a job nothing woke (its app idle, every process gone) looks again when it
// ends.
//
// Parking wakes nobody. It used to wake as many parked jobs as the app had
// free slots, in case one was freed meanwhile; but the app's slots are
// briefly free between every release and the next acquire, and a job woken
// then returns to the head of the queue, finds the slots taken by this
// process's waiters, parks and wakes another: the limited app's jobs took
// River's fetches and workers from every other app (an app limited to 50
// beside one limited to 20 ran 183-202 calls/s; without the wake, 332-367).
// A slot freed in that moment is found by the next release or the
// once-a-second sweep.
func (e *Executor) waitForSlot(ctx context.Context, appID string, jobID int64) error {
	ok, err := e.cfg.Store.AppSlotWait(ctx, e.cfg.Pool, appID, jobID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("job %d is no longer running; not parked", jobID)
	}
	return nil
}
