// Package web serves sdhub's HTTP endpoints: /metrics, the health and
// readiness probes and the lifecycle endpoint /-/reload, as Prometheus names
// them; the http_sd endpoint /api/v1/sd/{job} for Prometheus servers that
// read sdhub over the network; and the status page at /.
package web

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	// Now is the status page's clock; nil means time.Now.
	Now func() time.Time
}

// Outputs is what the handler reads of the output stage: the snapshot of
// every configured job, and whether any update was applied yet.
type Outputs interface {
	Snapshots() (jobs map[string]*output.Snapshot, applied bool)
}

type handler struct {
	o Options
}

// NewHandler returns the HTTP handler for o.
func NewHandler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &handler{o: o}
	mux := http.NewServeMux()
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
	return mux
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
