package web

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

// Targets keeps, per job, the last complete state the discovery manager sent
// and its file_sd rendering: what the http_sd endpoint serves and the status
// page lists. Like the writer, it keeps a job's last complete state while the
// job waits for a provider's first full set (after a reload), so the endpoint
// and the job's file agree.
type Targets struct {
	now func() time.Time

	applyMu sync.Mutex // serialises Apply

	mu      sync.RWMutex
	applied bool // at least one update arrived
	jobs    map[string]*jobTargets
}

// jobTargets is one job's state. The fields of a published jobTargets are
// never modified: Apply replaces it.
type jobTargets struct {
	groups   []*targetgroup.Group // the last complete state; nil before the first
	data     []byte               // output.Render(groups)
	err      error                // output.Render's error
	complete bool                 // a complete state arrived
	waiting  bool                 // the last update was incomplete
	failed   int                  // configs that failed to start
	updated  time.Time            // when data last changed
}

// NewTargets returns an empty store: every job answers "no state yet" until
// the first Apply.
func NewTargets() *Targets {
	return &Targets{now: time.Now, jobs: map[string]*jobTargets{}}
}

// Apply records u, the complete state of every configured job. Jobs missing
// from u are forgotten.
func (t *Targets) Apply(u manager.Update) {
	t.applyMu.Lock()
	defer t.applyMu.Unlock()
	t.mu.RLock()
	prev := t.jobs
	t.mu.RUnlock()

	now := t.now()
	jobs := make(map[string]*jobTargets, len(u))
	for job, jt := range u {
		old := prev[job]
		st := &jobTargets{waiting: !jt.Complete, failed: jt.FailedConfigs}
		if old != nil {
			st.groups, st.data, st.err, st.complete, st.updated = old.groups, old.data, old.err, old.complete, old.updated
		}
		if jt.Complete && (old == nil || !old.complete || !sameGroups(old.groups, jt.Groups)) {
			data, err := output.RenderValid(jt.Groups) // the file's bytes: without targets Prometheus would reject
			if old == nil || !old.complete || !slices.Equal(data, old.data) || (err == nil) != (old.err == nil) {
				st.updated = now
			}
			st.groups, st.data, st.err, st.complete = jt.Groups, data, err, true
		}
		jobs[job] = st
	}
	t.mu.Lock()
	t.jobs, t.applied = jobs, true
	t.mu.Unlock()
}

// sameGroups reports whether a and b hold the same group pointers: the
// manager shares a provider's groups between updates until they change.
func sameGroups(a, b []*targetgroup.Group) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Run records every update from in with Apply and passes it on to out, for
// the writer, until ctx ends or in is closed. It never makes the manager wait
// for the writer: while out is busy, a newer update replaces the one waiting
// to go out, as every update is the complete state.
func (t *Targets) Run(ctx context.Context, in <-chan manager.Update, out chan<- manager.Update) error {
	var (
		pending manager.Update
		send    chan<- manager.Update // out while pending is set, else nil
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-in:
			if !ok {
				return nil
			}
			t.Apply(u)
			pending, send = u, out
		case send <- pending:
			pending, send = nil, nil
		}
	}
}

// jobState is what the store knows of one job.
type jobState int

const (
	stateNoUpdate jobState = iota // no update arrived yet
	stateUnknown                  // not a configured job
	stateWaiting                  // configured, no complete state yet
	stateReady                    // a complete state is there
)

// job returns the state of job and, when ready, its last complete state.
func (t *Targets) job(job string) (jobState, *jobTargets) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if !t.applied {
		return stateNoUpdate, nil
	}
	st, ok := t.jobs[job]
	switch {
	case !ok:
		return stateUnknown, nil
	case !st.complete:
		return stateWaiting, st
	}
	return stateReady, st
}

// snapshot returns every job's state.
func (t *Targets) snapshot() map[string]*jobTargets {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.jobs
}
