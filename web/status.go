package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"ago":    ago,
	"sdpath": func(job string) string { return strings.Replace(SDPath, "{job}", url.PathEscape(job), 1) },
	"jobref": func(job string) string { return "/job/" + url.PathEscape(job) },
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
	// Targets is the number of targets in the last complete state, -1 when
	// unknown.
	Targets    int
	LastUpdate time.Time // when the job's targets last changed
	LastWrite  time.Time
	Path       string
	WriteError string
	Waiting    bool
	Failed     int // SD configs that failed to start
	// RefreshFailures counts the failed refreshes of the job's
	// discoverers by mechanism, from prometheus_sd_refresh_failures_total.
	RefreshFailures []string
	// Errors are the last errors logged for the job, by mechanism.
	Errors []DiscoveryError
}

type providerRow struct {
	Name, Mechanism, State string
	Shared                 []string // the other jobs it serves
}

// status serves the status page.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	page := h.collect()
	h.render(w, http.StatusOK, "status.html", page)
}

// collect gathers the status page's data from the writer, the manager, the
// target store, the metrics and the config.
func (h *handler) collect() *statusPage {
	page := &statusPage{Now: h.o.Now(), Ready: h.o.Ready == nil || h.o.Ready(), Lifecycle: h.o.EnableLifecycle, HTTPSD: h.o.Targets != nil}
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
	if h.o.Jobs != nil {
		for _, js := range h.o.Jobs() {
			r := row(js.Job)
			r.Targets, r.LastWrite, r.Path, r.Waiting, r.Failed = js.Targets, js.LastWrite, js.Path, js.Waiting, js.FailedConfigs
			if js.LastError != nil {
				r.WriteError = js.LastError.Error()
			}
			if !js.UpToDate && js.Waiting {
				r.Targets = -1
			}
		}
	}
	if h.o.Targets != nil {
		for job, st := range h.o.Targets.snapshot() {
			r := row(job)
			r.LastUpdate = st.updated
			r.Waiting = r.Waiting || st.waiting
		}
	}
	if h.o.Providers != nil {
		for _, p := range h.o.Providers() {
			state := "stopped"
			switch {
			case p.Started && p.Delivered:
				state = "running"
			case p.Started:
				state = "running, waiting for its first full set"
			}
			for _, job := range p.Jobs {
				r := row(job)
				r.Providers = append(r.Providers, providerRow{
					Name: p.Name, Mechanism: p.Mechanism, State: state,
					Shared: slices.DeleteFunc(slices.Clone(p.Jobs), func(j string) bool { return j == job }),
				})
			}
		}
	}
	for job, fails := range h.refreshFailures() {
		if r := rows[job]; r != nil {
			r.RefreshFailures = fails
		}
	}
	for _, r := range rows {
		if h.o.DiscoveryErrors != nil {
			var names []string
			for _, p := range r.Providers {
				names = append(names, p.Name)
			}
			r.Errors = h.o.DiscoveryErrors.Errors(r.Name, names)
		}
		page.Jobs = append(page.Jobs, *r)
	}
	slices.SortFunc(page.Jobs, func(a, b jobRow) int { return strings.Compare(a.Name, b.Name) })
	return page
}

// refreshFailures reads prometheus_sd_refresh_failures_total: per job, the
// non-zero counts as "mechanism: n".
func (h *handler) refreshFailures() map[string][]string {
	if h.o.Gatherer == nil {
		return nil
	}
	mfs, err := h.o.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return nil
	}
	out := map[string][]string{}
	for _, mf := range mfs {
		if mf.GetName() != "prometheus_sd_refresh_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			if v == 0 {
				continue
			}
			var mech, job string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "mechanism":
					mech = l.GetValue()
				case "config":
					job = l.GetValue()
				}
			}
			out[job] = append(out[job], fmt.Sprintf("%s: %.0f", mech, v))
		}
	}
	for _, f := range out {
		slices.Sort(f)
	}
	return out
}

// jobPage is one job's drill-down: its status and its targets as written.
type jobPage struct {
	statusPage
	Job     jobRow
	Known   bool
	Entries []fileEntry
	Count   int
	Note    string
}

type fileEntry struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
	Sorted  []labelPair       `json:"-"`
}

type labelPair struct{ Name, Value string }

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
	if h.o.Targets == nil {
		page.Note = "targets are not tracked by this handler"
	} else {
		switch state, st := h.o.Targets.job(job); state {
		case stateReady:
			if st.err != nil {
				page.Note = "cannot render the targets: " + st.err.Error()
				break
			}
			if err := json.Unmarshal(st.data, &page.Entries); err != nil {
				page.Note = "cannot read the rendered targets: " + err.Error()
			}
		default:
			page.Note = "waiting for the first full set of targets of every provider"
		}
	}
	for i := range page.Entries {
		e := &page.Entries[i]
		page.Count += len(e.Targets)
		for k, v := range e.Labels {
			e.Sorted = append(e.Sorted, labelPair{k, v})
		}
		slices.SortFunc(e.Sorted, func(a, b labelPair) int { return strings.Compare(a.Name, b.Name) })
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
