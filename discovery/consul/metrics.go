package consul

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/discovery"
)

// Metrics are the consul metrics: Prometheus's two, with its names, labels
// and help, plus sdhub's gauges of open watches and connections. One set
// per process; the gauges are summed over every consul discoverer.
type Metrics struct {
	reg prometheus.Registerer

	rpcFailures prometheus.Counter
	rpcDuration *prometheus.SummaryVec
	watches     prometheus.Gauge
	connections prometheus.Gauge

	servicesDuration prometheus.Observer // catalog list
	serviceDuration  prometheus.Observer // one service's health entries
	detectDuration   prometheus.Observer // the checks detector and scan
	nodesDuration    prometheus.Observer // the nodes detector
	nodeDuration     prometheus.Observer // one node's probe or read
}

var _ discovery.Metrics = (*Metrics)(nil)

// NewMetrics makes the consul metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reg: reg,
		rpcFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prometheus_sd_consul_rpc_failures_total",
			Help: "The number of Consul RPC call failures.",
		}),
		rpcDuration: prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name:       "prometheus_sd_consul_rpc_duration_seconds",
			Help:       "The duration of a Consul RPC call in seconds.",
			Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
		}, []string{"endpoint", "call"}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sdhub_sd_consul_watches",
			Help: "Number of Consul blocking queries in flight: the detectors and one per watched service over HTTP/2.",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sdhub_sd_consul_connections",
			Help: "Number of open TCP connections to Consul agents.",
		}),
	}
	m.servicesDuration = m.rpcDuration.WithLabelValues("catalog", "services")
	m.serviceDuration = m.rpcDuration.WithLabelValues("catalog", "service")
	m.detectDuration = m.rpcDuration.WithLabelValues("health", "state")
	m.nodesDuration = m.rpcDuration.WithLabelValues("catalog", "nodes")
	m.nodeDuration = m.rpcDuration.WithLabelValues("catalog", "node")
	if reg != nil {
		if err := discovery.RegisterAll(reg, m.collectors()...); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.rpcFailures, m.rpcDuration, m.watches, m.connections}
}

// Unregister removes the metrics from the registerer they were registered with.
func (m *Metrics) Unregister() {
	if m.reg != nil {
		discovery.UnregisterAll(m.reg, m.collectors()...)
	}
}
