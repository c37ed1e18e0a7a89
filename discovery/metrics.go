package discovery

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RefreshMetrics are the metrics of mechanisms that refresh by polling, with
// the names and labels Prometheus gives them. One set per process.
type RefreshMetrics struct {
	failures     *prometheus.CounterVec
	duration     *prometheus.SummaryVec
	durationHist *prometheus.HistogramVec
}

// NewRefreshMetrics makes the refresh metrics and registers them with reg
// (nil: not registered). They are vectors, so a series appears only once used.
func NewRefreshMetrics(reg prometheus.Registerer) (*RefreshMetrics, error) {
	m := &RefreshMetrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prometheus_sd_refresh_failures_total",
			Help: "Number of refresh failures for the given SD mechanism.",
		}, []string{"mechanism", "config"}),
		duration: prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name:       "prometheus_sd_refresh_duration_seconds",
			Help:       "The duration of a refresh in seconds for the given SD mechanism.",
			Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
		}, []string{"mechanism", "config"}),
		durationHist: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "prometheus_sd_refresh_duration_histogram_seconds",
			Help:                            "The duration of a refresh for the given SD mechanism.",
			Buckets:                         []float64{.01, .1, 1, 10},
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"mechanism"}),
	}
	if reg != nil {
		if err := RegisterAll(reg, m.failures, m.duration, m.durationHist); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Refresh is the refresh metric set of one mechanism and job.
type Refresh struct {
	Failures          prometheus.Counter
	Duration          prometheus.Observer
	DurationHistogram prometheus.Observer
}

// Instantiate returns the series for one mechanism and job (config label).
func (m *RefreshMetrics) Instantiate(mechanism, config string) *Refresh {
	return &Refresh{
		Failures:          m.failures.WithLabelValues(mechanism, config),
		Duration:          m.duration.WithLabelValues(mechanism, config),
		DurationHistogram: m.durationHist.WithLabelValues(mechanism),
	}
}

// Observe records one refresh that started at start.
func (r *Refresh) Observe(start time.Time, err error) {
	d := time.Since(start).Seconds()
	r.Duration.Observe(d)
	r.DurationHistogram.Observe(d)
	if err != nil {
		r.Failures.Inc()
	}
}

// Delete removes the series of one mechanism and job, when the job goes away.
func (m *RefreshMetrics) Delete(mechanism, config string) {
	m.failures.DeleteLabelValues(mechanism, config)
	m.duration.DeleteLabelValues(mechanism, config)
}

// RegisterAll registers every collector, or none: on a failure it
// unregisters the ones it had registered and returns the error.
func RegisterAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// UnregisterAll unregisters every collector.
func UnregisterAll(reg prometheus.Registerer, cs ...prometheus.Collector) {
	for _, c := range cs {
		reg.Unregister(c)
	}
}
