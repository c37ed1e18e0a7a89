// What the manager reports of its providers and jobs, for the status pages
// and sdhub_job_healthy.

package manager

import (
	"slices"
	"time"
)

// ProviderStatus describes one provider, for a status page.
type ProviderStatus struct {
	Name      string   // "<mechanism>/<n>"
	Mechanism string   // the config's Name()
	Jobs      []string // the jobs it serves, sorted
	Started   bool     // running: started and not cancelled
	Delivered bool     // it has delivered its first full set
	Health
}

// JobStatus is one job's discovery state.
type JobStatus struct {
	Job       string
	Providers []string // the names of its providers, in the order they were created
	// FailedConfigs is how many of the job's SD configs failed to start at
	// the last ApplyConfig, and ConfigErrors why.
	FailedConfigs int
	ConfigErrors  []string
	// Delivered is true when every provider delivered its first full set.
	Delivered bool
	// Healthy is true when the job is Delivered, no config failed to start
	// and no provider's latest report is a failure.
	Healthy bool
	// LastSync is the oldest of its providers' last syncs: until then,
	// everything the job's sources held is in its state. Zero until every
	// provider synced once.
	LastSync time.Time
}

// Providers describes the current providers in the order they were created.
func (m *Manager) Providers() []ProviderStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ProviderStatus, 0, len(m.providers))
	for _, p := range m.providers {
		out = append(out, ProviderStatus{
			Name:      p.name,
			Mechanism: p.mechanism,
			Jobs:      sortedKeys(p.subs),
			Started:   p.cancel != nil && !p.cancelled,
			Delivered: p.delivered,
			Health:    p.health.get(),
		})
	}
	return out
}

// Jobs describes the discovery state of every configured job.
func (m *Manager) Jobs() map[string]JobStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	provs := m.jobProviders()
	out := make(map[string]JobStatus, len(m.jobs))
	for job, st := range m.jobs {
		js := JobStatus{Job: job, FailedConfigs: st.failed, ConfigErrors: st.errs, Delivered: true}
		failing, synced := false, true
		for _, p := range provs[job] {
			h := p.health.get()
			js.Providers = append(js.Providers, p.name)
			js.Delivered = js.Delivered && p.delivered
			failing = failing || h.Failing
			switch {
			case h.LastSync.IsZero():
				synced = false
			case js.LastSync.IsZero() || h.LastSync.Before(js.LastSync):
				js.LastSync = h.LastSync
			}
		}
		if !synced {
			js.LastSync = time.Time{}
		}
		js.Healthy = js.Delivered && st.failed == 0 && !failing
		out[job] = js
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
