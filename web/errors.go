package web

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// DiscoveryErrors keeps the last error logged for each job and mechanism by
// the discovery manager and its discoverers, read off their log records:
// a warning or an error with an "err" attribute, from a logger that carries
// the job as "config" and the mechanism as "discovery", as the manager
// hands every discoverer. The manager's own errors (an SD config that cannot
// start) have no mechanism. A provider shared by several jobs logs under
// the job it was created for.
type DiscoveryErrors struct {
	now func() time.Time

	mu   sync.Mutex
	last map[errorKey]DiscoveryError
}

type errorKey struct{ job, mechanism string }

// DiscoveryError is one logged error.
type DiscoveryError struct {
	Job       string
	Mechanism string // "" for the manager's own
	Message   string // the log message
	Err       string
	Time      time.Time
}

// String is "mechanism: message: err", without the mechanism when empty.
func (e DiscoveryError) String() string {
	s := e.Message + ": " + e.Err
	if e.Mechanism != "" {
		s = e.Mechanism + ": " + s
	}
	return s
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

// Job returns the last errors logged for job, by mechanism, the manager's
// own first.
func (e *DiscoveryErrors) Job(job string) []DiscoveryError {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []DiscoveryError
	for k, v := range e.last {
		if k.job == job {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b DiscoveryError) int { return strings.Compare(a.Mechanism, b.Mechanism) })
	return out
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
	e.last[errorKey{de.Job, de.Mechanism}] = de
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
