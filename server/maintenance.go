package server

import (
	"context"
	"time"

	"github.com/riverqueue/river"

	"github.com/botq/botq/reconciler"
)

// registerMaintenance builds the reconciler, registers its worker and
// returns the periodic jobs. Every process registers them, because
// whichever process River elects leader enqueues them; only processes with
// the reconciler role work the maintenance queue.
func (m *Main) registerMaintenance(workers *river.Workers) ([]*river.PeriodicJob, error) {
	cfg := m.Config.Reconciler
	r, err := m.newReconciler()
	if err != nil {
		return nil, err
	}
	m.Reconciler = r
	sch := reconciler.Schedule{
		Reconcile: cfg.Interval,
		Tokens:    time.Minute,
		Health:    cfg.HealthInterval,
		Extra:     m.extraMaintenance(),
	}
	if cfg.RecordKhorosOrigin {
		sch.Inbound = 30 * time.Second
	}
	return r.Periodic(workers, sch)
}

// newReconciler builds the reconciler of the configured settings. A process
// without the workers and reconciler roles builds one too, for the cancel of
// an unknown action, which asks Khoros about its send first (api.Config's
// CheckSend, River UI's Cancel).
func (m *Main) newReconciler() (*reconciler.Reconciler, error) {
	rc := reconcilerConfig(m.Config, m.Pool, m.Store, m.Apps, m.Logger)
	rc.Observer = m.reconcilerObserver()
	return reconciler.New(rc)
}

// taskRetention is the maintenance task of the retention purge.
const taskRetention = "retention"

// extraMaintenance is leader-run periodic work other than reconciliation:
// the retention purge of audit rows. A purge that failed in part returns
// the failure (the maintenance worker logs it at error level and counts
// it); what it deleted is logged here and recorded in its event either way.
func (m *Main) extraMaintenance() []reconciler.ExtraTask {
	ret := m.Config.Retention
	return []reconciler.ExtraTask{{
		Task:     taskRetention,
		Interval: ret.Interval,
		Run: func(ctx context.Context) error {
			res, err := m.Store.RetentionPurge(ctx, m.Pool, time.Now().Add(-ret.Period), ret.BatchSize)
			m.Logger.Info().Time("cutoff", res.Cutoff).Int64("actions", res.Actions).Int64("attempts", res.Attempts).
				Int64("requests", res.Requests).Int64("events", res.Events).Int("failed_parts", len(res.Failed)).
				Int64("event_id", res.EventID).Msg("retention: Purged audit rows older than the retention period")
			return err
		},
	}}
}

// reconcilerObserver receives the reconciler's measurements (metrics).
func (m *Main) reconcilerObserver() reconciler.Observer {
	if m.Metrics == nil {
		return nil
	}
	return m.Metrics
}
