package output

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/manager"
)

// metrics are the stage's metrics. Per-job series start at zero when the job
// appears and are deleted when it leaves the config.
type metrics struct {
	writes     *prometheus.CounterVec
	failures   *prometheus.CounterVec
	unchanged  *prometheus.CounterVec
	repairs    *prometheus.CounterVec
	lastWrite  *prometheus.GaugeVec
	targets    *prometheus.GaugeVec
	dropped    *prometheus.GaugeVec
	hubDropped *prometheus.GaugeVec
	kept       *prometheus.GaugeVec
	waiting    prometheus.Gauge
	removed    prometheus.Counter
	ready      prometheus.Gauge
	perJobVecs []interface{ DeleteLabelValues(...string) bool }
	counters   []*prometheus.CounterVec // started at zero per job
}

func newMetrics(reg prometheus.Registerer, s *Stage, disc func() map[string]manager.JobStatus) (*metrics, error) {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sdhub_output_writes_total",
			Help: "Number of times a job's targets file was written because its content changed or it had to be put back.",
		}, []string{"job"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sdhub_output_write_failures_total",
			Help: "Number of failed attempts to write a job's targets file.",
		}, []string{"job"}),
		unchanged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sdhub_output_unchanged_total",
			Help: "Number of changes of a job's discovered targets that left its output the same, so its file was not rewritten.",
		}, []string{"job"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sdhub_output_repairs_total",
			Help: "Number of times a job's targets file was put back after someone else removed or changed it.",
		}, []string{"job"}),
		lastWrite: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sdhub_output_last_write_timestamp_seconds",
			Help: "Time a job's targets file was last written by this process.",
		}, []string{"job"}),
		targets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sdhub_output_targets",
			Help: "Number of targets in a job's output.",
		}, []string{"job"}),
		dropped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sdhub_output_dropped_targets",
			Help: "Number of targets left out of a job's output because Prometheus would reject them (a label name it does not accept, a label value that is not valid UTF-8).",
		}, []string{"job"}),
		hubDropped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sdhub_output_hub_dropped_targets",
			Help: "Number of a job's targets its relabel_configs drop, left out of the job's kept view, which the http_sd endpoint serves to a consumer that names the rules' digest (and the files hold with --output.hub-filter.files); 0 for a job not filtered at the hub.",
		}, []string{"job"}),
		kept: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sdhub_output_kept_targets",
			Help: "Number of a job's targets its relabel_configs keep: those of its kept view (filtering at the hub); sdhub_output_targets for a job not filtered at the hub.",
		}, []string{"job"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sdhub_output_waiting_jobs",
			Help: "Number of jobs whose output is not updated because a provider has not delivered its first full set or a config failed to start; their previous output, if any, stays.",
		}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sdhub_output_files_removed_total",
			Help: "Number of targets files removed because their job left the config.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sdhub_output_ready",
			Help: "1 when every configured job's targets file holds its current output, else 0.",
		}),
	}
	m.counters = []*prometheus.CounterVec{m.writes, m.failures, m.unchanged, m.repairs}
	m.perJobVecs = []interface{ DeleteLabelValues(...string) bool }{m.writes, m.failures, m.unchanged, m.repairs, m.lastWrite, m.targets, m.dropped, m.hubDropped, m.kept}
	if reg != nil {
		if err := discovery.RegisterAll(reg, m.writes, m.failures, m.unchanged, m.repairs, m.lastWrite, m.targets,
			m.dropped, m.hubDropped, m.kept, m.waiting, m.removed, m.ready, newHealthCollector(s, disc)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// initJob starts a new job's counters at zero, so that rate() and
// increase() see its first increment.
func (m *metrics) initJob(job string) {
	for _, c := range m.counters {
		c.WithLabelValues(job)
	}
}

func (m *metrics) deleteJob(job string) {
	for _, v := range m.perJobVecs {
		v.DeleteLabelValues(job)
	}
}

// setReady sets sdhub_output_ready from the snapshots.
func (m *metrics) setReady(jobs map[string]*Snapshot) {
	ready := 1.0
	for _, s := range jobs {
		if !s.Serving() || !s.OnDisk() {
			ready = 0
		}
	}
	m.ready.Set(ready)
}

// healthCollector exports, at scrape time, whether each job is healthy: its
// discovery is (every provider delivered, no config failed to start, no
// provider's latest report is an error) and its output is served and on
// disk.
type healthCollector struct {
	s    *Stage
	disc func() map[string]manager.JobStatus
	desc *prometheus.Desc
}

func newHealthCollector(s *Stage, disc func() map[string]manager.JobStatus) *healthCollector {
	return &healthCollector{s: s, disc: disc, desc: prometheus.NewDesc("sdhub_job_healthy",
		"1 when every provider of the job delivered and its latest read succeeded, no SD config failed to start, and the job's output is served and written; else 0.",
		[]string{"job"}, nil)}
}

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	jobs, _ := c.s.Snapshots()
	var disc map[string]manager.JobStatus
	if c.disc != nil {
		disc = c.disc()
	}
	for job, snap := range jobs {
		ok := snap.Serving() && !snap.Waiting && snap.OnDisk()
		if disc != nil {
			ok = ok && disc[job].Healthy
		}
		v := 0.0
		if ok {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, job)
	}
}
