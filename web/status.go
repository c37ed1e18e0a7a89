package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"ago":    ago,
	"sdpath": func(job string) string { return strings.Replace(SDPath, "{job}", url.PathEscape(job), 1) },
	"jobref": func(job string) string { return "/job/" + url.PathEscape(job) },
	// errs hands a job row to the "errors" template with the page's clock.
	"errs": func(now time.Time, r jobRow) any {
		return struct {
			Now time.Time
			Row jobRow
		}{now, r}
	},
	"failures": func(ps []providerRow) bool {
		return slices.ContainsFunc(ps, func(p providerRow) bool { return p.LastError != "" })
	},
}).ParseFS(templateFS, "templates/*.html"))

// statusPage is what the status page shows.
type statusPage struct {
	Now        time.Time
	Ready      bool
	ConfigFile string
	Jobs       []jobRow
	Warnings   []string
	Config     string // redacted YAML
	ConfigErr  string
	Lifecycle  bool
	HTTPSD     bool
}

// jobRow is one job on the status page.
type jobRow struct {
	Name       string
	Mechanisms []string // "consul ×2", "static"
	Providers  []providerRow
	// Targets is the number of targets in the job's output, -1 when it has
	// none yet; Dropped those left out because Prometheus would reject them.
	Targets, Dropped int
	LastUpdate       time.Time // when the job's output last changed
	LastWrite        time.Time
	Path             string
	WriteError       string
	WriteErrorTime   time.Time
	// Pending is true when the job's file does not hold its current output
	// (not written yet, or the last write failed).
	Pending bool
	Waiting bool
	Failed  int // SD configs that failed to start
	// ConfigErrors say why SD configs failed to start.
	ConfigErrors []string
	Healthy      bool
}

type providerRow struct {
	Name, Mechanism, State string
	Shared                 []string // the other jobs it serves
	manager.Health
}

// status serves the status page.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	page := h.collect()
	h.render(w, http.StatusOK, "status.html", page)
}

// collect gathers the status page's data from the output stage, the
// manager and the config.
func (h *handler) collect() *statusPage {
	page := &statusPage{Now: h.o.Now(), Ready: true, Lifecycle: h.o.EnableLifecycle, HTTPSD: h.o.Outputs != nil}
	rows := map[string]*jobRow{}
	row := func(job string) *jobRow {
		if r := rows[job]; r != nil {
			return r
		}
		r := &jobRow{Name: job, Targets: -1}
		rows[job] = r
		return r
	}
	if h.o.Config != nil {
		if cfg := h.o.Config(); cfg != nil {
			page.ConfigFile = cfg.Filename
			page.Warnings = cfg.Warnings
			for _, sc := range cfg.ScrapeConfigs {
				r := row(sc.JobName)
				count := map[string]int{}
				var names []string
				for _, c := range sc.ServiceDiscoveryConfigs {
					if count[c.Name()] == 0 {
						names = append(names, c.Name())
					}
					count[c.Name()]++
				}
				for _, n := range names {
					if count[n] > 1 {
						n = fmt.Sprintf("%s ×%d", n, count[n])
					}
					r.Mechanisms = append(r.Mechanisms, n)
				}
			}
			if s, err := redactedConfig(cfg); err != nil {
				page.ConfigErr = err.Error()
			} else {
				page.Config = s
			}
		}
	}
	if h.o.Outputs != nil {
		jobs, applied := h.o.Outputs.Snapshots()
		page.Ready = applied
		for job, snap := range jobs {
			r := row(job)
			r.Waiting, r.Failed, r.Path = snap.Waiting || !snap.Serving(), snap.FailedConfigs, snap.File.Path
			r.LastUpdate, r.LastWrite = snap.Changed, snap.File.Written
			if snap.Serving() {
				r.Targets, r.Dropped = snap.Targets, snap.Dropped
				r.Pending = !snap.OnDisk()
			}
			if snap.File.Err != nil {
				r.WriteError, r.WriteErrorTime = snap.File.Err.Error(), snap.File.ErrTime
			}
		}
	}
	if h.o.Jobs != nil {
		for job, js := range h.o.Jobs() {
			r := row(job)
			r.ConfigErrors = js.ConfigErrors
			r.Healthy = js.Healthy && !r.Waiting && !r.Pending
		}
	}
	if h.o.Providers != nil {
		for _, p := range h.o.Providers() {
			state := "stopped"
			switch {
			case p.Started && p.Failing:
				state = "failing"
			case p.Started && p.Delivered:
				state = "running"
			case p.Started:
				state = "running, waiting for its first full set"
			}
			for _, job := range p.Jobs {
				r := row(job)
				r.Providers = append(r.Providers, providerRow{
					Name: p.Name, Mechanism: p.Mechanism, State: state, Health: p.Health,
					Shared: slices.DeleteFunc(slices.Clone(p.Jobs), func(j string) bool { return j == job }),
				})
			}
		}
	}
	for _, r := range rows {
		page.Jobs = append(page.Jobs, *r)
	}
	slices.SortFunc(page.Jobs, func(a, b jobRow) int { return strings.Compare(a.Name, b.Name) })
	return page
}

// jobPage is one job's drill-down: its status and its targets as written.
type jobPage struct {
	statusPage
	Job     jobRow
	Known   bool
	Entries []output.Entry
	Count   int
	Note    string
}

func (h *handler) jobPage(w http.ResponseWriter, r *http.Request) {
	job := r.PathValue("job")
	page := &jobPage{statusPage: *h.collect()}
	for _, j := range page.Jobs {
		if j.Name == job {
			page.Job, page.Known = j, true
		}
	}
	if !page.Known {
		page.Job.Name = job
		h.render(w, http.StatusNotFound, "job.html", page)
		return
	}
	var snap *output.Snapshot
	if h.o.Outputs != nil {
		jobs, _ := h.o.Outputs.Snapshots()
		snap = jobs[job]
	}
	switch {
	case h.o.Outputs == nil:
		page.Note = "targets are not tracked by this handler"
	case snap == nil || !snap.Serving():
		page.Note = "waiting for the first full set of targets of every provider"
	default:
		page.Entries, page.Count = snap.Entries(), snap.Targets
	}
	h.render(w, http.StatusOK, "job.html", page)
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

// ago renders t relative to now: "never", "12s ago", or the time itself
// when in the future or older than a day.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0 || d > 24*time.Hour:
		return t.UTC().Format(time.RFC3339)
	case d < time.Second:
		return "just now"
	}
	return d.Truncate(time.Second).String() + " ago"
}
