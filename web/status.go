package web

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

// statusPage is what the status page shows, and the head of a job's page.
type statusPage struct {
	Now time.Time
	// Root is the relative path from the page to the root of sdhub's
	// endpoints: every link is relative, for reverse proxies.
	Root  string
	Ready bool
	// Problems say what is not right, the most serious first; none: all
	// green.
	Problems   []problem
	ConfigFile string
	Reload     *ReloadStatus
	Version    *Version
	Started    time.Time
	Jobs       []jobRow
	Unhealthy  int
	Warnings   []string
	Config     string // redacted YAML
	ConfigErr  string
	Lifecycle  bool
	HTTPSD     bool
	// Relabel is true when the pages show the consuming job's kept and
	// dropped targets.
	Relabel bool
}

// problem is one line of the status page's summary: Job, if set, names the
// job it is about (linked).
type problem struct {
	Class, Text, Job string
}

// jobRow is one job on the status page.
type jobRow struct {
	Name       string
	Mechanisms []string // "consul ×2", "static"
	Providers  []providerRow
	// Serving is true once the job had a complete state since sdhub
	// started: Targets and Dropped (the targets left out because
	// Prometheus would reject them) count its output.
	Serving          bool
	Targets, Dropped int
	Changed          time.Time // when the job's output last changed
	// Waiting is true while the job's discovery state is incomplete: a
	// serving job shows its last complete set.
	Waiting bool
	// Relabel counts the targets after the consuming job's relabelling;
	// nil when not known.
	Relabel *RelabelCounts
	File    fileView
	// ConfigErrors say why SD configs failed to start.
	ConfigErrors []string
	Healthy      bool
	// Why says why the job is not healthy.
	Why []string
	// SDURL is the job's http_sd URL, "" when sdhub serves no http_sd.
	SDURL string
	// Filter is the job's filtering at the hub; nil when not known.
	Filter *filterRow
}

// filterRow is what the pages show of a job's filtering at the hub and of
// the http_sd consumers that asked for it.
type filterRow struct {
	// Digest names the rules of a filtered job; "" when the job is not
	// filtered, and Reason says why.
	Digest, Reason string
	Files          bool
	// Kept and DroppedAtHub count the targets of a filtered job.
	Kept, DroppedAtHub int
	// Requests counts the job's http_sd requests by what was served.
	Requests map[string]float64
	// The last request that named another digest than the job's, and
	// whether it was recent (within mismatchRecent).
	MismatchAt              time.Time
	MismatchGot, MismatchOf string
	MismatchRecent          bool
}

// mismatchRecent is how long after a consumer named another digest than
// its job's the status page lists it as a problem: longer than any
// consumer's http_sd refresh_interval (1 m by default).
const mismatchRecent = 15 * time.Minute

// fileView is what the pages show of a job's file: what it holds against
// what is pending.
type fileView struct {
	Path    string
	Written time.Time
	// OnDisk is true when the file holds the job's current output.
	OnDisk bool
	// Known is true when the file holds an output of this process
	// (written, or found up to date): DiskTargets counts its targets.
	Known       bool
	DiskTargets int
	Err         string
	ErrTime     time.Time
	// Parts is the number of parts the job is written in, in PartsDir
	// (0: one file). The fields above are then the parts' together: OnDisk
	// when every part is, the last write, the first error.
	Parts    int
	PartsDir string
}

type providerRow struct {
	Name, Mechanism string
	Started         bool // running: started and not cancelled
	Delivered       bool // it delivered its first full set
	Shared          []string
	manager.Health
}

// status serves the status page.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	page := h.collect("./")
	h.render(w, http.StatusOK, "status.html", page)
}

// collect gathers the status page's data from the output stage, the
// manager, the reloader and the config; root is the page's Root.
func (h *handler) collect(root string) *statusPage {
	page := &statusPage{Now: h.o.Now(), Root: root, Ready: true, Lifecycle: h.o.EnableLifecycle, HTTPSD: h.o.Outputs != nil,
		Version: h.o.Version, Started: h.o.Started, Relabel: h.o.Relabel != nil}
	rows := map[string]*jobRow{}
	row := func(job string) *jobRow {
		if r := rows[job]; r != nil {
			return r
		}
		r := &jobRow{Name: job}
		if page.HTTPSD {
			r.SDURL = h.sdURL(root, job)
		}
		rows[job] = r
		return r
	}
	if h.o.LastReload != nil {
		rs := h.o.LastReload()
		page.Reload = &rs
	}
	if h.o.Config != nil {
		if cfg := h.o.Config(); cfg != nil {
			page.ConfigFile = cfg.Filename
			page.Warnings = cfg.Warnings
			for _, sc := range cfg.ScrapeConfigs {
				row(sc.JobName).Mechanisms = mechanisms(sc.ServiceDiscoveryConfigs)
			}
			if s, err := redactedConfig(cfg); err != nil {
				page.ConfigErr = err.Error()
			} else {
				page.Config = s
			}
		}
	}
	snaps := map[string]*output.Snapshot{}
	if h.o.Outputs != nil {
		snaps, page.Ready = h.o.Outputs.Snapshots()
		for job, snap := range snaps {
			r := row(job)
			r.Serving, r.Waiting, r.Changed = snap.Serving(), snap.Waiting, snap.Whole().Changed
			if r.Serving {
				r.Targets, r.Dropped = snap.Whole().Targets, snap.Dropped
			}
			f := snap.File
			r.File = fileView{Path: f.Path, Written: f.Written, OnDisk: r.Serving && snap.OnDisk(),
				Known: f.Gen != 0, DiskTargets: f.Targets, ErrTime: f.ErrTime}
			if f.Err != nil {
				r.File.Err = f.Err.Error()
			}
			if len(snap.Parts) > 0 {
				r.File = partsView(snap)
				r.File.OnDisk = r.Serving && snap.OnDisk() && r.File.Err == ""
			}
			if h.o.Relabel != nil && r.Serving {
				c := h.counts.get(job, snap, h.o.Relabel(job), h.scrape(job))
				r.Relabel = &c
			}
			r.Filter = h.filterRow(job, snap, page.Now)
		}
		h.counts.keep(snaps)
	}
	var jobs map[string]manager.JobStatus
	if h.o.Jobs != nil {
		jobs = h.o.Jobs()
		for job, js := range jobs {
			row(job).ConfigErrors = js.ConfigErrors
		}
	}
	if h.o.Providers != nil {
		for _, p := range h.o.Providers() {
			for _, job := range p.Jobs {
				r := row(job)
				r.Providers = append(r.Providers, providerRow{
					Name: p.Name, Mechanism: p.Mechanism, Started: p.Started, Delivered: p.Delivered, Health: p.Health,
					Shared: slices.DeleteFunc(slices.Clone(p.Jobs), func(j string) bool { return j == job }),
				})
			}
		}
	}
	for _, r := range rows {
		r.judge(jobs, h.o.Outputs != nil)
		page.Jobs = append(page.Jobs, *r)
	}
	slices.SortFunc(page.Jobs, func(a, b jobRow) int { return strings.Compare(a.Name, b.Name) })
	page.summarize()
	return page
}

// judge sets whether the job is healthy, and why not: every provider
// delivered and none is failing, every SD config started, and its output
// is served and on disk.
func (r *jobRow) judge(jobs map[string]manager.JobStatus, outputs bool) {
	r.Why = nil
	if js, ok := jobs[r.Name]; ok && js.FailedConfigs > 0 {
		r.Why = append(r.Why, fmt.Sprintf("%d of its SD configs failed to start", js.FailedConfigs))
	}
	var failing, waiting []string
	for _, p := range r.Providers {
		switch {
		case p.Failing:
			failing = append(failing, p.Name)
		case !p.Delivered:
			waiting = append(waiting, p.Name)
		}
	}
	if len(failing) > 0 {
		r.Why = append(r.Why, strings.Join(failing, ", ")+" failing")
	}
	if len(waiting) > 0 {
		r.Why = append(r.Why, strings.Join(waiting, ", ")+" waiting for a first full set")
	}
	switch {
	case !outputs:
	case !r.Serving:
		r.Why = append(r.Why, "no complete set of targets yet")
	case r.File.Err != "":
		r.Why = append(r.Why, "its file is not up to date: the last write failed")
	case !r.File.OnDisk:
		r.Why = append(r.Why, "its file is being written")
	}
	if js, ok := jobs[r.Name]; ok && !js.Healthy && len(r.Why) == 0 {
		r.Why = append(r.Why, "its discovery is not healthy") // a state this page does not name
	}
	r.Healthy = len(r.Why) == 0
}

// summarize lists the page's problems: readiness, the last reload, the
// unhealthy jobs.
func (p *statusPage) summarize() {
	if !p.Ready {
		p.Problems = append(p.Problems, problem{Class: "warn", Text: "not ready: starting, no discovery update applied yet"})
	}
	if p.Reload != nil && p.Reload.Err != nil {
		p.Problems = append(p.Problems, problem{Class: "err", Text: fmt.Sprintf(
			"the last reload of the configuration failed %s: %v; the configuration loaded %s keeps running",
			ago(p.Now, p.Reload.Time), p.Reload.Err, ago(p.Now, p.Reload.Loaded))})
	}
	for _, j := range p.Jobs {
		if f := j.Filter; f != nil && f.MismatchRecent {
			want := "none: the job is not filtered at the hub"
			if f.MismatchOf != "" {
				want = f.MismatchOf
			}
			p.Problems = append(p.Problems, problem{Class: "warn", Job: j.Name, Text: fmt.Sprintf(
				"an http_sd consumer asked %s for the targets of relabel rules %q, sdhub's digest is %s: its rules differ from sdhub's copy, so it is served every target; "+
					"regenerate its config (sdhub generate prometheus-config)", ago(p.Now, f.MismatchAt), f.MismatchGot, want)})
		}
		if !j.Healthy {
			p.Unhealthy++
			p.Problems = append(p.Problems, problem{Class: "err", Job: j.Name, Text: strings.Join(j.Why, "; ")})
		}
	}
}

// filterRow returns what the pages show of job's filtering at the hub.
func (h *handler) filterRow(job string, snap *output.Snapshot, now time.Time) *filterRow {
	f := &filterRow{}
	switch {
	case snap.Filter != nil:
		f.Digest, f.Files, f.Kept, f.DroppedAtHub = snap.Filter.Digest, snap.Filter.Files, snap.Filter.Kept, snap.Filter.DroppedAtHub
	case h.o.HubFilter != nil:
		f.Reason = h.o.HubFilter(job).Reason
	default:
		f.Reason = "filtering at the hub is not set up"
	}
	if st, ok := h.consumers.stats(job); ok {
		f.Requests = st.counts
		f.MismatchAt, f.MismatchGot, f.MismatchOf = st.mismatchAt, st.mismatchGot, st.mismatchOf
		f.MismatchRecent = !st.mismatchAt.IsZero() && now.Sub(st.mismatchAt) < mismatchRecent
	}
	return f
}

// scrape returns the consuming job's scrape settings.
func (h *handler) scrape(job string) ScrapeSettings {
	if h.o.Scrape == nil {
		return ScrapeSettings{}
	}
	return h.o.Scrape(job)
}

// sdURL returns job's http_sd URL: under the external URL when there is
// one, else relative to a page at root.
func (h *handler) sdURL(root, job string) string {
	p := sdPath(job)
	if u := h.o.ExternalURL; u != nil {
		return strings.TrimSuffix(u.String(), "/") + p
	}
	return root + strings.TrimPrefix(p, "/")
}

// mechanisms names the mechanisms of a job's SD configs: "consul ×2".
func mechanisms[C interface{ Name() string }](configs []C) []string {
	count := map[string]int{}
	var names []string
	for _, c := range configs {
		if count[c.Name()] == 0 {
			names = append(names, c.Name())
		}
		count[c.Name()]++
	}
	for i, n := range names {
		if count[n] > 1 {
			names[i] = fmt.Sprintf("%s ×%d", n, count[n])
		}
	}
	return names
}

// render executes a template into a buffer first, so that a failing
// template gives a 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, code int, name string, data any) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		h.o.Logger.Error("Rendering the status page", "template", name, "err", err)
		http.Error(w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// countsCache keeps each job's RelabelCounts for the snapshot and rules
// they were counted for: a page shown again costs no relabelling until the
// job's output or its rules change.
type countsCache struct {
	mu   sync.Mutex
	jobs map[string]countsEntry
}

type countsEntry struct {
	gen uint64
	// rules are held, so their pointers cannot be reused by other rules
	// while the entry lives: the same pointers are the same rules.
	rules    []*relabel.Config
	settings ScrapeSettings
	counts   RelabelCounts
}

func (c *countsCache) get(job string, snap *output.Snapshot, rules []*relabel.Config, settings ScrapeSettings) RelabelCounts {
	snap = snap.Whole() // in files filtered at the hub, snap is the kept view
	c.mu.Lock()
	e, ok := c.jobs[job]
	c.mu.Unlock()
	if ok && e.gen == snap.Gen && slices.Equal(e.rules, rules) && reflect.DeepEqual(e.settings, settings) {
		return e.counts
	}
	e = countsEntry{gen: snap.Gen, rules: rules, settings: settings, counts: CountRelabelled(job, settings, rules, snap.Entries())}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs == nil {
		c.jobs = map[string]countsEntry{}
	}
	c.jobs[job] = e
	return e.counts
}

// keep forgets the jobs that are gone.
func (c *countsCache) keep(jobs map[string]*output.Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for job := range c.jobs {
		if _, ok := jobs[job]; !ok {
			delete(c.jobs, job)
		}
	}
}

// partsView is the fileView of a job written in parts.
func partsView(snap *output.Snapshot) fileView {
	v := fileView{Path: snap.File.Path, Parts: len(snap.Parts), Known: true}
	for _, p := range snap.Parts {
		f := p.File
		v.PartsDir = filepath.Dir(filepath.Dir(f.Path))
		v.Known = v.Known && f.Gen != 0
		v.DiskTargets += f.Targets
		if f.Written.After(v.Written) {
			v.Written = f.Written
		}
		if f.Err != nil && v.Err == "" {
			v.Err, v.ErrTime = f.Err.Error(), f.ErrTime
		}
	}
	if f := snap.File; f.Err != nil && v.Err == "" {
		v.Err, v.ErrTime = "the whole job's file: "+f.Err.Error(), f.ErrTime
	}
	return v
}
