package main

import (
	"github.com/riverqueue/river"
)

// registerMaintenance registers the reconciler's workers.
func (m *Main) registerMaintenance(workers *river.Workers) error {
	return nil
}

// periodicJobs are the reconciler's periodic jobs. Every process registers
// them, because whichever process River elects leader enqueues them.
func (m *Main) periodicJobs() []*river.PeriodicJob {
	return nil
}
