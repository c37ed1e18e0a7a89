package manager

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/discovery"
)

// managerName is the value of the const label `name` on every manager
// metric. Prometheus labels its scrape discovery manager the same way, so
// dashboards and alerts written for prometheus_sd_*{name="scrape"} work
// unchanged on sdhub.
const managerName = "scrape"

// metrics are the discovery manager's metrics, with Prometheus's names, help
// texts and labels (discovery/metrics.go).
type metrics struct {
	failedConfigs     prometheus.Gauge
	discoveredTargets *prometheus.GaugeVec
	lastUpdate        *prometheus.GaugeVec
	receivedUpdates   prometheus.Counter
	delayedUpdates    prometheus.Counter
	sentUpdates       prometheus.Counter
	// sdhub's own: discoverers' reported errors per job and provider.
	failures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, mgr *Manager) (*metrics, error) {
	constLabels := prometheus.Labels{"name": managerName}
	m := &metrics{
		failedConfigs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "prometheus_sd_failed_configs",
			Help:        "Current number of service discovery configurations that failed to load.",
			ConstLabels: constLabels,
		}),
		discoveredTargets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name:        "prometheus_sd_discovered_targets",
			Help:        "Current number of discovered targets.",
			ConstLabels: constLabels,
		}, []string{"config"}),
		lastUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name:        "prometheus_sd_last_update_timestamp_seconds",
			Help:        "Timestamp of the last update sent to the SD consumers.",
			ConstLabels: constLabels,
		}, []string{"config"}),
		receivedUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "prometheus_sd_received_updates_total",
			Help:        "Total number of update events received from the SD providers.",
			ConstLabels: constLabels,
		}),
		delayedUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "prometheus_sd_updates_delayed_total",
			Help:        "Total number of update events that couldn't be sent immediately.",
			ConstLabels: constLabels,
		}),
		sentUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "prometheus_sd_updates_total",
			Help:        "Total number of update events sent to the SD consumers.",
			ConstLabels: constLabels,
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sdhub_sd_failures_total",
			Help: "Number of errors a provider's discoverer reported while serving a job; its targets are kept meanwhile.",
		}, []string{"job", "mechanism", "provider"}),
	}
	if reg != nil {
		if err := discovery.RegisterAll(reg, m.failedConfigs, m.discoveredTargets, m.lastUpdate,
			m.receivedUpdates, m.delayedUpdates, m.sentUpdates, m.failures, newJobCollector(mgr)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// deleteJob removes the per-job series of a job that left the config.
func (m *metrics) deleteJob(job string) {
	m.discoveredTargets.DeleteLabelValues(job)
	m.lastUpdate.DeleteLabelValues(job)
}
