package web

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/output"
)

// What the http_sd endpoint served: the job's kept view (the consumer named
// the digest of the job's rules), its whole output (the consumer named no
// digest), or its whole output because the consumer named another digest
// than the job's: its rules differ from sdhub's copy (or the job is not
// filtered at the hub) and it must not lose targets.
const (
	viewKept     = "kept"
	viewWhole    = "whole"
	viewMismatch = "mismatch"
)

// consumers records what each job's http_sd consumers asked for: the status
// page shows it and sdhub_http_sd_requests_total counts it. Series are
// those of the jobs configured when collected.
type consumers struct {
	mu   sync.Mutex
	jobs map[string]*consumerStats
	desc *prometheus.Desc
	// outputs lists the jobs configured: the series of the others are
	// dropped when collected. Nil: every job seen is collected.
	outputs Outputs
}

// consumerStats are one job's http_sd requests.
type consumerStats struct {
	counts map[string]float64 // by view
	// The last request that named another digest than the job's.
	mismatchAt              time.Time
	mismatchGot, mismatchOf string
	// The last request that named the job's digest.
	keptAt time.Time
}

const requestsHelp = "Number of a job's http_sd requests answered, by what was served: kept (the consumer named the digest of the job's relabel rules: the targets they keep), " +
	"whole (the consumer named no digest: every target), mismatch (the consumer named another digest: every target, and its rules differ from sdhub's copy)."

func newConsumers(outputs Outputs) *consumers {
	return &consumers{
		jobs:    map[string]*consumerStats{},
		outputs: outputs,
		desc:    prometheus.NewDesc("sdhub_http_sd_requests_total", requestsHelp, []string{"job", "view"}, nil),
	}
}

func (c *consumers) help() string { return requestsHelp }

// view returns the snapshot to serve to a consumer that names digest
// rules ("" for none), and records the request.
func (c *consumers) view(snap *output.Snapshot, rules string, now time.Time) *output.Snapshot {
	view, served := viewWhole, snap.Whole()
	var want string
	if snap.Filter != nil {
		want = snap.Filter.Digest
	}
	switch {
	case rules == "":
	case rules == want:
		view, served = viewKept, snap.Kept()
	default:
		view = viewMismatch
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.jobs[snap.Job]
	if st == nil {
		st = &consumerStats{counts: map[string]float64{}}
		c.jobs[snap.Job] = st
	}
	st.counts[view]++
	switch view {
	case viewMismatch:
		st.mismatchAt, st.mismatchGot, st.mismatchOf = now, rules, want
	case viewKept:
		st.keptAt = now
	}
	return served
}

// stats returns a copy of job's stats; ok is false when none were recorded.
func (c *consumers) stats(job string) (consumerStats, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.jobs[job]
	if st == nil {
		return consumerStats{}, false
	}
	cp := *st
	cp.counts = map[string]float64{}
	for k, v := range st.counts {
		cp.counts[k] = v
	}
	return cp, true
}

func (c *consumers) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *consumers) Collect(ch chan<- prometheus.Metric) {
	var jobs map[string]*output.Snapshot
	applied := false
	if c.outputs != nil {
		jobs, applied = c.outputs.Snapshots()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for job, st := range c.jobs {
		if applied && jobs[job] == nil {
			delete(c.jobs, job) // the job left the config
			continue
		}
		for _, v := range []string{viewKept, viewWhole, viewMismatch} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, st.counts[v], job, v)
		}
	}
}
