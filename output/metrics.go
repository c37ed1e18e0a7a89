package output

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/discovery"
)

// metrics are the writer's metrics. Per-job series are deleted when the job
// leaves the config.
type metrics struct {
	writes     *prometheus.CounterVec
	failures   *prometheus.CounterVec
	unchanged  *prometheus.CounterVec
	lastWrite  *prometheus.GaugeVec
	targets    *prometheus.GaugeVec
	waiting    prometheus.Gauge
	removed    prometheus.Counter
	ready      prometheus.Gauge
	dropped    *droppedTargets // validate.go
	perJobVecs []interface{ DeleteLabelValues(...string) bool }
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sdhub_output_writes_total",
			Help: "Number of times a job's targets file was written because its content changed.",
		}, []string{"job"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sdhub_output_write_failures_total",
			Help: "Number of failed attempts to render or write a job's targets file.",
		}, []string{"job"}),
		unchanged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sdhub_output_unchanged_total",
			Help: "Number of updates of a job whose targets file already held the same bytes, so was not rewritten.",
		}, []string{"job"}),
		lastWrite: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sdhub_output_last_write_timestamp_seconds",
			Help: "Time a job's targets file was last written by this process.",
		}, []string{"job"}),
		targets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sdhub_output_targets",
			Help: "Number of targets in a job's targets file as last rendered.",
		}, []string{"job"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sdhub_output_waiting_jobs",
			Help: "Number of jobs not written because a provider has not delivered its first full set or a config failed to start; their previous file, if any, stays.",
		}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sdhub_output_files_removed_total",
			Help: "Number of targets files removed because their job left the config.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sdhub_output_ready",
			Help: "1 when every configured job's targets file is up to date since this process started, else 0.",
		}),
	}
	m.dropped = newDroppedTargets()
	m.perJobVecs = []interface{ DeleteLabelValues(...string) bool }{m.writes, m.failures, m.unchanged, m.lastWrite, m.targets, m.dropped}
	if reg != nil {
		if err := discovery.RegisterAll(reg, m.writes, m.failures, m.unchanged, m.lastWrite, m.targets,
			m.waiting, m.removed, m.ready, m.dropped.gauge); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) deleteJob(job string) {
	for _, v := range m.perJobVecs {
		v.DeleteLabelValues(job)
	}
}
