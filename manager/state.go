// The state the manager sends: every job's JobTargets, built from its
// providers.

package manager

import (
	"sync/atomic"

	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// Update is the state of every configured job, including jobs with no
// targets and jobs whose providers have not delivered yet. It is never a
// delta: a job missing from an Update is no longer configured. A job whose
// state did not change since the previous Update has the same *JobTargets
// (and Gen) in both, so a consumer skips it in O(1).
type Update map[string]*JobTargets

// JobTargets is the state of one job. It is immutable: the manager builds a
// new one when anything in it changes.
type JobTargets struct {
	// Groups are the groups of every provider of the job, in no particular
	// order, never nil. The groups are shared with the manager and must not
	// be modified.
	Groups []Group
	// Gen identifies this state: a JobTargets with another Gen differs in
	// its groups, Complete or FailedConfigs. Gens are unique in the manager.
	Gen uint64
	// Complete is true when every provider of the job has delivered its first
	// full set since it was started and none of the job's configs failed to
	// instantiate. A consumer should not replace its last output of a job
	// with an incomplete state.
	Complete bool
	// FailedConfigs is how many of the job's configs failed to instantiate at
	// the last ApplyConfig.
	FailedConfigs int
}

// Group is one target group of a provider. Provider and Source identify it
// across updates; Gen changes whenever its content does, so a consumer that
// keeps something derived from a group redoes it only for a new Gen.
type Group struct {
	*targetgroup.Group
	Provider string
	Gen      uint64
}

// gens numbers a manager's groups and job states: each number is new.
type gens struct{ last atomic.Uint64 }

func (g *gens) next() uint64 { return g.last.Add(1) }

// Targets is the number of targets in the job's groups.
func (jt *JobTargets) Targets() int {
	n := 0
	for _, g := range jt.Groups {
		n += len(g.Targets)
	}
	return n
}

// jobState is what the manager keeps of a configured job.
type jobState struct {
	failed    int
	errs      []string
	last      *JobTargets
	lastProvs []*provider // the providers last built from, with their gens
	lastGens  []uint64
}

// state is the state of every configured job. A job whose providers and
// failed configs did not change keeps its last *JobTargets, so building an
// update costs O(jobs + providers) plus the groups of the jobs that changed.
// It also sets the per-job gauges, under the lock, so a removed job's series
// stay deleted.
func (m *Manager) state() Update {
	m.mu.Lock()
	defer m.mu.Unlock()
	provs := m.jobProviders()
	now := float64(m.now().UnixNano()) / 1e9
	u := make(Update, len(m.jobs))
	for job, st := range m.jobs {
		ps := provs[job]
		if st.last == nil || st.last.FailedConfigs != st.failed || !sameProviders(st, ps) {
			st.build(ps, m.gens.next())
			m.metrics.discoveredTargets.WithLabelValues(job).Set(float64(st.last.Targets()))
		}
		u[job] = st.last
		m.metrics.lastUpdate.WithLabelValues(job).Set(now)
	}
	return u
}

// jobProviders lists the providers of every job, in provider order. Called
// with m.mu held.
func (m *Manager) jobProviders() map[string][]*provider {
	out := make(map[string][]*provider, len(m.jobs))
	for _, p := range m.providers {
		for job := range p.subs {
			out[job] = append(out[job], p)
		}
	}
	return out
}

// sameProviders reports whether ps are the providers st was last built
// from, unchanged since.
func sameProviders(st *jobState, ps []*provider) bool {
	if len(ps) != len(st.lastProvs) {
		return false
	}
	for i, p := range ps {
		if p != st.lastProvs[i] || p.gen != st.lastGens[i] {
			return false
		}
	}
	return true
}

// build makes the job's state, numbered gen, from its providers. Called
// with Manager.mu held.
func (st *jobState) build(ps []*provider, gen uint64) {
	n := 0
	for _, p := range ps {
		n += len(p.groups)
	}
	jt := &JobTargets{Groups: make([]Group, 0, n), Gen: gen, Complete: st.failed == 0, FailedConfigs: st.failed}
	st.lastProvs, st.lastGens = st.lastProvs[:0], st.lastGens[:0]
	for _, p := range ps {
		jt.Groups = append(jt.Groups, p.groups...)
		jt.Complete = jt.Complete && p.delivered
		st.lastProvs = append(st.lastProvs, p)
		st.lastGens = append(st.lastGens, p.gen)
	}
	st.last = jt
}
