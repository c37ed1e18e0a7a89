package swarm

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/discovery"
)

// Metrics is the dockerswarm metric set: the shared refresh metrics
// (prometheus_sd_refresh_*{mechanism="dockerswarm"}) and the events stream's
// own counters. One set per process.
type Metrics struct {
	refresh *discovery.RefreshMetrics
	reg     prometheus.Registerer

	// events counts events received from the engines' events streams.
	events prometheus.Counter
	// streamErrors counts events streams that broke or could not be opened.
	streamErrors prometheus.Counter
}

// NewMetrics makes the dockerswarm metrics and registers them with reg
// (nil: not registered); refresh is the process's refresh metric set.
func NewMetrics(reg prometheus.Registerer, refresh *discovery.RefreshMetrics) (discovery.Metrics, error) {
	return newMetrics(reg, refresh)
}

func newMetrics(reg prometheus.Registerer, refresh *discovery.RefreshMetrics) (*Metrics, error) {
	if refresh == nil {
		var err error
		if refresh, err = discovery.NewRefreshMetrics(nil); err != nil {
			return nil, err
		}
	}
	m := &Metrics{
		refresh: refresh,
		reg:     reg,
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sdhub_sd_dockerswarm_events_total",
			Help: "Number of Docker events received by dockerswarm discoverers.",
		}),
		streamErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sdhub_sd_dockerswarm_event_stream_errors_total",
			Help: "Number of Docker events streams that failed to open or broke.",
		}),
	}
	if reg != nil {
		if err := discovery.RegisterAll(reg, m.collectors()...); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.events, m.streamErrors}
}

// Unregister removes the set's own collectors from its registerer.
func (m *Metrics) Unregister() {
	if m.reg != nil {
		discovery.UnregisterAll(m.reg, m.collectors()...)
	}
}

// metricsFrom returns the discoverer's metric set: the one given, or a fresh
// unregistered set when none is.
func metricsFrom(dm discovery.Metrics) (*Metrics, error) {
	if dm == nil {
		return newMetrics(nil, nil)
	}
	m, ok := dm.(*Metrics)
	if !ok {
		return nil, fmt.Errorf("dockerswarm_sd_configs: metrics of type %T, want *swarm.Metrics", dm)
	}
	return m, nil
}

var _ discovery.Metrics = (*Metrics)(nil)
