package manager

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/discovery"
)

// Health is what a provider's discoverer last reported about its source.
type Health struct {
	// LastError is the discoverer's last reported error ("" if none since
	// the provider started) and LastErrorTime when it was reported. It is
	// history: Failing says whether it still holds.
	LastError     string
	LastErrorTime time.Time
	// Failures is how many errors the discoverer reported.
	Failures uint64
	// Failing is true when the latest report was an error: the provider's
	// targets may be stale.
	Failing bool
	// Since is when the provider entered its current state: while Failing,
	// its first error after its last sync; otherwise its first sync after
	// its last error (or ever). Zero while it has neither failed nor synced.
	Since time.Time
	// LastSync is when the discoverer last reported that everything it sent
	// reflected its source; zero before that. A discoverer that has nothing
	// more to watch (it closed its channel after its full set) is in sync at
	// any time: LastSync is then the time Health was read.
	LastSync time.Time
}

// providerHealth records what one provider's discoverer reports through
// discovery.Health. It has its own lock, so a discoverer may report from
// anywhere, its constructor included, whatever the manager holds.
type providerHealth struct {
	name, mechanism string
	failures        *prometheus.CounterVec // sdhub_sd_failures_total{job, mechanism, provider}
	now             func() time.Time
	logger          *slog.Logger

	mu       sync.Mutex
	h        Health
	finished bool     // the discoverer closed its channel: nothing more to watch
	jobs     []string // the jobs the provider serves, for the failure series
}

var _ discovery.Health = (*providerHealth)(nil)

func newProviderHealth(name, mechanism string, failures *prometheus.CounterVec, now func() time.Time, logger *slog.Logger) *providerHealth {
	return &providerHealth{name: name, mechanism: mechanism, failures: failures, now: now, logger: logger}
}

// Failed records an error of the discoverer.
func (ph *providerHealth) Failed(err error) {
	if err == nil {
		return
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	if !ph.h.Failing {
		// The first error of a spell, whenever it comes (at start or
		// mid-run), at one level; the discoverer logs every retry itself.
		ph.h.Since = ph.now()
		ph.logger.Warn("Service discovery is failing; its last targets are kept", "err", err, "jobs", ph.jobs)
	}
	ph.h.LastError, ph.h.LastErrorTime, ph.h.Failing = err.Error(), ph.now(), true
	ph.h.Failures++
	for _, job := range ph.jobs {
		ph.failures.WithLabelValues(job, ph.mechanism, ph.name).Inc()
	}
}

// Synced records that the discoverer's output reflects its source now.
func (ph *providerHealth) Synced() {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	ph.recover()
	ph.h.LastSync = ph.now()
}

// recover ends a spell of failures, or starts the first spell of health.
// Called with ph.mu held.
func (ph *providerHealth) recover() {
	if ph.h.Failing {
		ph.logger.Info("Service discovery recovered", "failed_for", ph.now().Sub(ph.h.Since).Round(time.Millisecond).String(),
			"failures", ph.h.Failures, "jobs", ph.jobs)
	}
	if ph.h.Failing || ph.h.Since.IsZero() {
		ph.h.Since = ph.now()
	}
	ph.h.Failing = false
}

// done records that the discoverer closed its channel after its full set.
func (ph *providerHealth) done() {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	ph.finished = true
	ph.recover()
}

func (ph *providerHealth) get() Health {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	h := ph.h
	if ph.finished {
		h.LastSync = ph.now()
	}
	return h
}

// setJobs sets the jobs the provider serves: their failure series start at
// zero, and the series of jobs it no longer serves are deleted. Nil deletes
// them all, for a provider that is stopped.
func (ph *providerHealth) setJobs(jobs []string) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	for _, job := range ph.jobs {
		if !slices.Contains(jobs, job) {
			ph.failures.DeleteLabelValues(job, ph.mechanism, ph.name)
		}
	}
	for _, job := range jobs {
		ph.failures.WithLabelValues(job, ph.mechanism, ph.name)
	}
	ph.jobs = jobs
}

// jobCollector exports, at scrape time, each job's last sync.
type jobCollector struct {
	m        *Manager
	lastSync *prometheus.Desc
}

func newJobCollector(m *Manager) *jobCollector {
	return &jobCollector{m: m, lastSync: prometheus.NewDesc("sdhub_job_last_sync_timestamp_seconds",
		"The oldest, over the job's providers, of the last time each reported that its output reflected its source; 0 until every provider has.",
		[]string{"job"}, nil)}
}

func (c *jobCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.lastSync }

func (c *jobCollector) Collect(ch chan<- prometheus.Metric) {
	for job, js := range c.m.Jobs() {
		v := 0.0
		if !js.LastSync.IsZero() {
			v = float64(js.LastSync.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(c.lastSync, prometheus.GaugeValue, v, job)
	}
}
