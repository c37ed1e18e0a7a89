// Package web serves sdhub's HTTP endpoints: /metrics, the health and
// readiness probes and the lifecycle endpoint /-/reload, as Prometheus names
// them; the http_sd endpoint /api/v1/sd/{job} for Prometheus servers that
// read sdhub over the network; the status page at / and a page per job at
// /job/{job}; all under a route prefix, as Prometheus serves its own.
package web

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

// Options configure the handler.
type Options struct {
	Logger *slog.Logger
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// Reload reloads the configuration and returns its error.
	Reload func() error
	// EnableLifecycle allows /-/reload.
	EnableLifecycle bool

	// ExternalURL is the URL under which sdhub is reachable
	// (--web.external-url): the pages give each job's http_sd URL under it.
	// Nil: they give the path only.
	ExternalURL *url.URL
	// RoutePrefix is the path under which every endpoint is served
	// (--web.route-prefix, "/" or "" for none): a request for "/" is
	// redirected to it, one for the prefix without its slash to the
	// external URL's path with one. The pages link relatively, so they
	// work under any path a reverse proxy maps to the prefix.
	RoutePrefix string

	// Outputs holds every job's output (output.Stage). It serves
	// /api/v1/sd/{job}, the status page's target lists and /-/ready; nil
	// leaves the http_sd endpoint out and /-/ready always ready.
	Outputs Outputs
	// Providers describes the discovery providers (manager.Manager.Providers).
	Providers func() []manager.ProviderStatus
	// Jobs describes every job's discovery state (manager.Manager.Jobs).
	Jobs func() map[string]manager.JobStatus
	// Config returns the running configuration, shown with its secrets
	// redacted.
	Config func() *config.Config
	// LastReload returns the outcome of the last load of the configuration
	// file, at start or on a reload; nil leaves it off the status page.
	LastReload func() ReloadStatus
	// Relabel returns the relabel_configs of the consuming Prometheus's job,
	// validated as Prometheus's config loader leaves them: the pages count
	// the targets the job keeps and drops (Populate). Nil leaves the counts
	// off the pages.
	Relabel func(job string) []*relabel.Config
	// HubFilter says whether a job's output is filtered at the hub, and why
	// not (output.PlanFilter); nil: filtering is not set up.
	HubFilter func(job string) output.FilterPlan
	// Scrape returns the consuming job's scrape settings that Prometheus
	// sets as labels before relabelling; nil means Prometheus's defaults.
	Scrape func(job string) ScrapeSettings
	// Version is the build the status page shows; nil: none.
	Version *Version
	// Started is when sdhub started, for the uptime; zero: not shown.
	Started time.Time
	// Now is the status page's clock; nil means time.Now.
	Now func() time.Time
	// Registerer registers the handler's metrics; nil leaves them
	// unregistered.
	Registerer prometheus.Registerer
}

// ReloadStatus is the outcome of the last load of the configuration file.
type ReloadStatus struct {
	// Time is when the file was last loaded, at start or on a reload,
	// successfully or not; Err is that load's error, nil if it succeeded.
	Time time.Time
	Err  error
	// Loaded is when the running configuration was loaded.
	Loaded time.Time
}

// Version is the build of sdhub, as prometheus/common/version has it.
type Version struct {
	Version, Revision, Branch, BuildUser, BuildDate, GoVersion string
}

// Outputs is what the handler reads of the output stage: the snapshot of
// every configured job, and whether any update was applied yet.
type Outputs interface {
	Snapshots() (jobs map[string]*output.Snapshot, applied bool)
}

type handler struct {
	o         Options
	counts    countsCache
	consumers *consumers
}

// NewHandler returns the HTTP handler for o.
func NewHandler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &handler{o: o, consumers: newConsumers(o.Outputs)}
	if o.Registerer != nil {
		if err := o.Registerer.Register(h.consumers); err != nil {
			o.Logger.Error("cannot register the http_sd metrics", "err", err)
		}
	}
	mux := &routeMux{ServeMux: http.NewServeMux()}
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelError)}))
	mux.HandleFunc("/-/healthy", h.healthy)
	mux.HandleFunc("/-/ready", h.ready)
	mux.HandleFunc("/-/reload", h.reload)
	if o.Outputs != nil {
		mux.HandleFunc("GET "+SDPath, h.serveSD)
	}
	// Go's profiles, as Prometheus serves them.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", h.status)
	mux.HandleFunc("GET /job/{job}", h.jobPage)
	prefix := RoutePrefix(o.RoutePrefix)
	if prefix == "/" {
		return mux
	}
	home := prefix + "/"
	if o.ExternalURL != nil && o.ExternalURL.Path != "" {
		home = strings.TrimSuffix(o.ExternalURL.Path, "/") + "/"
	}
	return &prefixed{prefix: prefix, home: home, next: http.StripPrefix(prefix, mux)}
}

// routeMux is a ServeMux that keeps the patterns it was given: the test
// that holds docs/reference/endpoints.md to the endpoints reads them.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// RoutePrefix returns p as a route prefix, as Prometheus makes it: one
// leading slash, no trailing one, "/" for none.
func RoutePrefix(p string) string { return "/" + strings.Trim(p, "/") }

// prefixed serves every endpoint under a route prefix, as Prometheus does:
// "/" is redirected to the prefix, the prefix to the status page (home:
// under the external URL's path, where a proxy that maps another path to
// the prefix takes it), and nothing else outside it is served.
type prefixed struct {
	prefix, home string
	next         http.Handler
}

func (p *prefixed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch path := r.URL.Path; {
	case strings.HasPrefix(path, p.prefix+"/"):
		p.next.ServeHTTP(w, r)
	case path == p.prefix:
		http.Redirect(w, r, p.home, http.StatusFound)
	case path == "/":
		http.Redirect(w, r, p.prefix+"/", http.StatusFound)
	default:
		http.NotFound(w, r)
	}
}

func (h *handler) healthy(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("sdhub is Healthy.\n"))
}

func (h *handler) ready(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.o.Outputs != nil {
		if _, applied := h.o.Outputs.Snapshots(); !applied {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("sdhub is not ready: starting.\n"))
			return
		}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("sdhub is Ready.\n"))
}

func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		http.Error(w, "This endpoint requires a POST or PUT request.", http.StatusMethodNotAllowed)
		return
	}
	if !h.o.EnableLifecycle || h.o.Reload == nil {
		http.Error(w, "Lifecycle API is not enabled.", http.StatusForbidden)
		return
	}
	if err := h.o.Reload(); err != nil {
		http.Error(w, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}
