package server

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/botq/botq/jobs"
	"github.com/botq/botq/reconciler"
	"github.com/botq/botq/store"
)

// Metrics is botq's Prometheus registry. Counters and histograms come from
// what this process measures (jobs.Observer, reconciler.Observer); gauges
// of the queue (actions by state, depth and age per app, pending requests,
// token expiry, health) are read from Postgres at scrape time, so every
// process reports the fleet's state, cached for a few seconds so that
// frequent scrapes cost one query set.
type Metrics struct {
	reg *prometheus.Registry

	attempts        *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	phases          *prometheus.HistogramVec
	reconcilerCalls *prometheus.CounterVec
	fetched         *prometheus.CounterVec
	settled         *prometheus.CounterVec
	settleLag       prometheus.Histogram
	taskFailures    *prometheus.CounterVec
}

var (
	_ jobs.Observer       = (*Metrics)(nil)
	_ reconciler.Observer = (*Metrics)(nil)
)

// metricsCacheTTL is how long the database gauges are reused between
// scrapes.
const metricsCacheTTL = 10 * time.Second

// NewMetrics returns the registry; db and s serve the database gauges.
func NewMetrics(db store.DBTX, s *store.Store, logger zerolog.Logger) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "botq_attempts_total",
			Help: "Bot v3 calls made for actions, by app, kind, outcome (ok, retry, snooze, cancel, unknown) and HTTP status (none: no answer).",
		}, []string{"app", "kind", "outcome", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "botq_botapi_request_duration_seconds",
			Help:    "Latency of Bot v3 calls, by caller (worker, reconciler) and operation (action kind or reconciler op).",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
		}, []string{"source", "op"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "botq_job_phase_seconds",
			Help:    "Time a job execution holds its River worker besides its Bot v3 call, by phase: pickup (River's fetch to the worker starting), load (the action and app), result (the result written: the job's new state, or the commit when River moves the job).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"phase"}),
		reconcilerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "botq_reconciler_calls_total",
			Help: "Bot v3 calls the reconciler made, by app, operation (list, get, health, token_refresh) and HTTP status.",
		}, []string{"app", "op", "status"}),
		fetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "botq_reconciler_records_fetched_total",
			Help: "Request records the reconciler's Bot v3 calls returned, by app and operation (list: every record of a listing's window; list_khoros: KHOROS-origin records; get).",
		}, []string{"app", "op"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "botq_requests_settled_total",
			Help: "Request records that reached a final state (SUCCESS, ERROR, EXPIRED), by app.",
		}, []string{"app", "state"}),
		settleLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "botq_request_settle_lag_seconds",
			Help:    "Time between Khoros settling a request record and botq recording it.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 14),
		}),
		taskFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "botq_maintenance_failures_total",
			Help: "Maintenance runs (reconcile, tokens, health, inbound, retention) that failed, by task; counted by the process that ran them.",
		}, []string{"task"}),
	}
	// Every task's series exists from the start, so that an alert on its
	// increase sees the first failure.
	for _, task := range []string{reconciler.TaskReconcile, reconciler.TaskTokens, reconciler.TaskHealth, reconciler.TaskInbound, taskRetention} {
		m.taskFailures.WithLabelValues(task)
	}
	m.reg.MustRegister(m.attempts, m.latency, m.phases, m.reconcilerCalls, m.fetched, m.settled, m.settleLag, m.taskFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&dbCollector{db: db, s: s, logger: logger, ttl: metricsCacheTTL})
	return m
}

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func statusLabel(status int) string {
	if status == 0 {
		return "none"
	}
	return strconv.Itoa(status)
}

// CallDone implements jobs.Observer.
func (m *Metrics) CallDone(appID, kind string, outcome store.AttemptOutcome, status int, d time.Duration) {
	m.attempts.WithLabelValues(appID, kind, string(outcome), statusLabel(status)).Inc()
	m.latency.WithLabelValues("worker", kind).Observe(d.Seconds())
}

// PhaseDone implements jobs.Observer.
func (m *Metrics) PhaseDone(phase jobs.Phase, d time.Duration) {
	m.phases.WithLabelValues(string(phase)).Observe(d.Seconds())
}

// Call implements reconciler.Observer.
func (m *Metrics) Call(appID, op string, status int, d time.Duration) {
	m.reconcilerCalls.WithLabelValues(appID, op, statusLabel(status)).Inc()
	m.latency.WithLabelValues("reconciler", op).Observe(d.Seconds())
}

// Fetched implements reconciler.Observer.
func (m *Metrics) Fetched(appID, op string, records int) {
	m.fetched.WithLabelValues(appID, op).Add(float64(records))
}

// Settled implements reconciler.Observer.
func (m *Metrics) Settled(appID, state string, lag time.Duration) {
	m.settled.WithLabelValues(appID, state).Inc()
	if lag > 0 {
		m.settleLag.Observe(lag.Seconds())
	}
}

// TokenExpiry implements reconciler.Observer. Token expiry is read from the
// database at scrape time instead, so that every process reports it, not
// only the leader.
func (m *Metrics) TokenExpiry(string, time.Time) {}

// Health implements reconciler.Observer; like TokenExpiry, health is read
// from the database at scrape time.
func (m *Metrics) Health(string, string) {}

// TaskFailed implements reconciler.Observer.
func (m *Metrics) TaskFailed(task string) {
	m.taskFailures.WithLabelValues(task).Inc()
}

var (
	descActions = prometheus.NewDesc("botq_actions",
		"Actions by app, kind and state (stored states; running ones are queued or retrying with a running River job).", []string{"app", "kind", "state"}, nil)
	descDepth = prometheus.NewDesc("botq_queue_depth",
		"Actions not yet executed (queued, retrying, unknown), by app.", []string{"app"}, nil)
	descOldest = prometheus.NewDesc("botq_queue_oldest_age_seconds",
		"Age of the oldest action not yet executed, by app (0 when none).", []string{"app"}, nil)
	descPending = prometheus.NewDesc("botq_requests_pending",
		"Request records still PENDING at Khoros, by app.", []string{"app"}, nil)
	descPendingAge = prometheus.NewDesc("botq_requests_pending_oldest_age_seconds",
		"Age of the oldest PENDING request record, by app (0 when none).", []string{"app"}, nil)
	descTokenExpiry = prometheus.NewDesc("botq_token_expiry_timestamp_seconds",
		"When the app's stored token expires (Unix time); absent when unknown.", []string{"app"}, nil)
	descHealth = prometheus.NewDesc("botq_app_health",
		"The app's health as last polled: 1 for its current status.", []string{"app", "status"}, nil)
	descPaused = prometheus.NewDesc("botq_app_paused",
		"1 when the app's calls are paused.", []string{"app"}, nil)
	descDBUp = prometheus.NewDesc("botq_metrics_db_up",
		"1 when the database gauges were read at the last attempt, 0 when they are stale.", nil, nil)
)

// dbCollector reads the queue gauges from Postgres, at most once per ttl.
type dbCollector struct {
	db     store.DBTX
	s      *store.Store
	logger zerolog.Logger
	ttl    time.Duration

	mu     sync.Mutex
	readAt time.Time
	ok     bool
	counts []store.ActionCount
	apps   []*store.AppStatus
}

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActions, descDepth, descOldest, descPending, descPendingAge, descTokenExpiry, descHealth, descPaused, descDBUp} {
		ch <- d
	}
}

func (c *dbCollector) refresh() {
	if time.Since(c.readAt) < c.ttl {
		return
	}
	c.readAt = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.s.ActionCounts(ctx, c.db)
	if err == nil {
		var apps []*store.AppStatus
		if apps, err = c.s.AppStatusList(ctx, c.db, ""); err == nil {
			c.counts, c.apps = counts, apps
		}
	}
	if err != nil && c.ok {
		c.logger.Warn().Err(err).Msg("metrics: Reading queue gauges failed; serving the last values")
	}
	c.ok = err == nil
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refresh()
	up := 0.0
	if c.ok {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descDBUp, prometheus.GaugeValue, up)
	for _, n := range c.counts {
		ch <- prometheus.MustNewConstMetric(descActions, prometheus.GaugeValue, float64(n.Count), n.AppID, n.Kind, string(n.State))
	}
	now := time.Now()
	age := func(t *time.Time) float64 {
		if t == nil {
			return 0
		}
		return now.Sub(*t).Seconds()
	}
	for _, a := range c.apps {
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(a.QueueDepth), a.ID)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age(a.OldestQueued), a.ID)
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(a.PendingRequests), a.ID)
		ch <- prometheus.MustNewConstMetric(descPendingAge, prometheus.GaugeValue, age(a.OldestPending), a.ID)
		if a.TokenExpiresAt != nil {
			ch <- prometheus.MustNewConstMetric(descTokenExpiry, prometheus.GaugeValue, float64(a.TokenExpiresAt.Unix()), a.ID)
		}
		if a.HealthStatus != "" {
			ch <- prometheus.MustNewConstMetric(descHealth, prometheus.GaugeValue, 1, a.ID, a.HealthStatus)
		}
		paused := 0.0
		if a.PausedUntil != nil && a.PausedUntil.After(now) {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, paused, a.ID)
	}
}

// PhaseMeans returns the mean time per job execution of each jobs.Phase
// that m recorded, in ms, since the process started (warm-up included).
func (m *Metrics) PhaseMeans() map[string]float64 {
	out := map[string]float64{}
	for _, p := range []jobs.Phase{jobs.PhasePickup, jobs.PhaseLoad, jobs.PhaseResult} {
		var d dto.Metric
		if err := m.phases.WithLabelValues(string(p)).(prometheus.Metric).Write(&d); err != nil {
			continue
		}
		if h := d.GetHistogram(); h.GetSampleCount() > 0 {
			out[string(p)] = h.GetSampleSum() / float64(h.GetSampleCount()) * 1000
		}
	}
	return out
}
