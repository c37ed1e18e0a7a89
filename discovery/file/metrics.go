package file

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/discovery"
)

// Metrics are the file SD metrics, with Prometheus's names and help texts.
// One set per process, shared by every file discoverer; none has a job label.
type Metrics struct {
	readErrors    prometheus.Counter
	scanDuration  prometheus.Summary
	watcherErrors prometheus.Counter
	mtime         *mtimeCollector

	reg prometheus.Registerer
}

var _ discovery.Metrics = (*Metrics)(nil)

// NewMetrics makes the file SD metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prometheus_sd_file_read_errors_total",
			Help: "The number of File-SD read errors.",
		}),
		scanDuration: prometheus.NewSummary(prometheus.SummaryOpts{
			Name:       "prometheus_sd_file_scan_duration_seconds",
			Help:       "The duration of the File-SD scan in seconds.",
			Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
		}),
		watcherErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prometheus_sd_file_watcher_errors_total",
			Help: "The number of File-SD errors caused by filesystem watch failures.",
		}),
		mtime: &mtimeCollector{
			desc: prometheus.NewDesc(
				"prometheus_sd_file_mtime_seconds",
				"Timestamp (mtime) of files read by FileSD. Timestamp is set at read time.",
				[]string{"filename"}, nil,
			),
			discs: map[*Discovery]struct{}{},
		},
	}
	if reg != nil {
		if err := discovery.RegisterAll(reg, m.collectors()...); err != nil {
			return nil, err
		}
		m.reg = reg
	}
	return m, nil
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.readErrors, m.scanDuration, m.watcherErrors, m.mtime}
}

// Unregister removes the metrics from the registerer they were registered with.
func (m *Metrics) Unregister() {
	if m.reg != nil {
		discovery.UnregisterAll(m.reg, m.collectors()...)
	}
}

// mtimeCollector reports the mtime of every file the running discoverers
// last read, once per file name.
type mtimeCollector struct {
	desc *prometheus.Desc

	mu    sync.Mutex
	discs map[*Discovery]struct{}
}

func (c *mtimeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *mtimeCollector) Collect(ch chan<- prometheus.Metric) {
	files := map[string]float64{}
	c.mu.Lock()
	for d := range c.discs {
		d.copyMtimes(files)
	}
	c.mu.Unlock()
	for name, ts := range files {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, ts, name)
	}
}

func (c *mtimeCollector) add(d *Discovery) {
	c.mu.Lock()
	c.discs[d] = struct{}{}
	c.mu.Unlock()
}

func (c *mtimeCollector) remove(d *Discovery) {
	c.mu.Lock()
	delete(c.discs, d)
	c.mu.Unlock()
}
