package web

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// DiscoveryErrors keeps the last error logged by each provider of the
// discovery manager, and the manager's own last error for each job, read
// off their log records: a warning or an error with an "err" attribute,
// from a logger that carries the job as "config", the mechanism as
// "discovery" and the provider as "provider", as the manager hands every
// discoverer. The manager's own errors (an SD config that cannot start)
// have no mechanism and no provider. A provider shared by several jobs
// logs under the job it was created for; Errors finds its errors for every
// job it serves.
type DiscoveryErrors struct {
	now func() time.Time

	mu   sync.Mutex
	last map[errorKey]DiscoveryError
}

// errorKey is the provider of a discoverer's error; without one (the
// manager's own errors), the job and mechanism.
type errorKey struct{ provider, job, mechanism string }

// DiscoveryError is one logged error.
type DiscoveryError struct {
	Job       string
	Mechanism string // "" for the manager's own
	Provider  string // "<mechanism>/<n>"; "" for the manager's own
	Message   string // the log message
	Err       string
	Time      time.Time
}

// String is "provider: message: err", with the mechanism when there is no
// provider, and neither for the manager's own.
func (e DiscoveryError) String() string {
	s := e.Message + ": " + e.Err
	switch {
	case e.Provider != "":
		s = e.Provider + ": " + s
	case e.Mechanism != "":
		s = e.Mechanism + ": " + s
	}
	return s
}

func (e DiscoveryError) key() errorKey {
	if e.Provider != "" {
		return errorKey{provider: e.Provider}
	}
	return errorKey{job: e.Job, mechanism: e.Mechanism}
}

// NewDiscoveryErrors returns an empty set.
func NewDiscoveryErrors() *DiscoveryErrors {
	return &DiscoveryErrors{now: time.Now, last: map[errorKey]DiscoveryError{}}
}

// Handler returns a handler that records errors and passes every record on
// to next: the handler of the discovery manager's logger.
func (e *DiscoveryErrors) Handler(next slog.Handler) slog.Handler {
	return &errorHandler{next: next, errs: e}
}

// Job returns the last errors logged under job, the manager's own first,
// then by provider.
func (e *DiscoveryErrors) Job(job string) []DiscoveryError {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []DiscoveryError
	for _, v := range e.last {
		if v.Job == job {
			out = append(out, v)
		}
	}
	sortErrors(out)
	return out
}

// Errors returns the manager's own last error for job and the last error
// of each of providers (the job's, as the manager lists them), the
// manager's first, then by provider.
func (e *DiscoveryErrors) Errors(job string, providers []string) []DiscoveryError {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []DiscoveryError
	for _, v := range e.last {
		if v.Provider == "" && v.Job == job || v.Provider != "" && slices.Contains(providers, v.Provider) {
			out = append(out, v)
		}
	}
	sortErrors(out)
	return out
}

// Applied is called after the manager applied a config, which it started
// to do at start, and providers are the manager's providers now: it drops
// the errors of the providers that are gone, and the manager's own errors
// from before start (a config that failed to start then and did not fail
// again).
func (e *DiscoveryErrors) Applied(start time.Time, providers []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, v := range e.last {
		if k.provider != "" && !slices.Contains(providers, k.provider) || k.provider == "" && v.Time.Before(start) {
			delete(e.last, k)
		}
	}
}

func sortErrors(errs []DiscoveryError) {
	slices.SortFunc(errs, func(a, b DiscoveryError) int {
		if c := strings.Compare(a.Provider, b.Provider); c != 0 {
			return c
		}
		return strings.Compare(a.Mechanism, b.Mechanism)
	})
}

func (e *DiscoveryErrors) record(r slog.Record, attrs []slog.Attr) {
	var de DiscoveryError
	find := func(a slog.Attr) bool {
		switch a.Key {
		case "err":
			de.Err = a.Value.String()
		case "config":
			de.Job = a.Value.String()
		case "discovery":
			de.Mechanism = a.Value.String()
		case "provider":
			de.Provider = a.Value.String()
		}
		return true
	}
	for _, a := range attrs {
		find(a)
	}
	r.Attrs(find)
	if de.Err == "" || de.Job == "" {
		return
	}
	de.Message, de.Time = r.Message, e.now()
	e.mu.Lock()
	e.last[de.key()] = de
	e.mu.Unlock()
}

// errorHandler records the errors of its records and passes them on.
type errorHandler struct {
	next    slog.Handler
	errs    *DiscoveryErrors
	attrs   []slog.Attr
	grouped bool // the records' attributes are in a group: not read
}

func (h *errorHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *errorHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && !h.grouped {
		h.errs.record(r, h.attrs)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *errorHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	if !h.grouped {
		c.attrs = append(slices.Clip(h.attrs), as...)
	}
	return &c
}

func (h *errorHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next, c.grouped = h.next.WithGroup(name), true
	return &c
}

var _ slog.Handler = (*errorHandler)(nil)
