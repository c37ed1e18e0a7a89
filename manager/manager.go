// Package manager runs the service-discovery providers of every configured
// job and hands the complete target state of every job to one consumer.
//
// It follows Prometheus's discovery manager (discovery/manager.go): a
// provider is one running discoverer, named "<mechanism>/<n>" with n counting
// over the manager's lifetime; jobs whose configs are deeply equal share one
// provider; a reload keeps providers whose config is unchanged running and
// cancels the others. Unlike Prometheus it also says, per job, whether the
// state is complete (every provider delivered its first full set and no
// config failed to start), so that the writer can keep a job's last file
// instead of replacing it with partial data.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/priority"
)

// DefaultFlushInterval is the least time between two updates the sender
// hands on. A change after a quiet spell goes out after settleDelay; changes
// that follow within the interval are gathered into the next update, so a
// burst becomes one update per interval. Prometheus's own sender spaces its
// updates 100 ms to 7.5 s apart. The output stage renders only what
// changed, so 100 ms costs little; it bounds the stage to ten rounds of
// file writes per second however busy the discoverers are, and a stage that
// takes longer to write a large file gets the newest state when it is done
// (the updates in between are folded).
const DefaultFlushInterval = 100 * time.Millisecond

// settleDelay is how long the sender waits after a change that follows a
// quiet spell, so that the updates one event causes in several providers
// go out together.
const settleDelay = 20 * time.Millisecond

// errStopped is returned by ApplyConfig once Run has returned.
var errStopped = errors.New("discovery manager is stopped")

// Options configure a Manager.
type Options struct {
	// Logger receives the manager's logs; nil discards them.
	Logger *slog.Logger
	// Registerer registers the manager's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// FlushInterval is the sender's coalescing interval; 0 means DefaultFlushInterval.
	FlushInterval time.Duration
	// Metrics holds each mechanism's metric set by mechanism name, as made by
	// Mechanism.NewMetrics; a missing entry gives the discoverer nil metrics.
	Metrics map[string]discovery.Metrics
	// RefreshMetrics, if set, has a job's refresh series deleted when the job
	// no longer uses that mechanism.
	RefreshMetrics *discovery.RefreshMetrics
	// Priority is handed to every discoverer (discovery.Options.Priority);
	// nil orders nothing.
	Priority *priority.Gate
	// Tuning is handed to every discoverer (discovery.Options.Tuning).
	Tuning discovery.Tuning
}

// provider is one running discoverer and the jobs it serves.
type provider struct {
	name      string
	mechanism string
	cfg       discovery.Config
	d         discovery.Discoverer
	health    *providerHealth
	gens      *gens // the manager's

	cancel context.CancelFunc // nil until started
	wg     sync.WaitGroup     // the discoverer's and the updater's goroutines

	// Guarded by Manager.mu.
	subs      map[string]struct{}
	groups    []Group        // in no particular order
	index     map[string]int // Source -> position in groups
	gen       uint64         // changes with groups and delivered
	delivered bool
	cancelled bool
}

// set stores g in place of the group with its Source; a group without
// targets removes it. Called with Manager.mu held.
func (p *provider) set(g *targetgroup.Group) {
	i, ok := p.index[g.Source]
	switch {
	case len(g.Targets) > 0 && ok:
		p.groups[i] = Group{Group: g, Provider: p.name, Gen: p.gens.next()}
	case len(g.Targets) > 0:
		p.index[g.Source] = len(p.groups)
		p.groups = append(p.groups, Group{Group: g, Provider: p.name, Gen: p.gens.next()})
	case ok:
		last := len(p.groups) - 1
		p.groups[i] = p.groups[last]
		p.index[p.groups[i].Source] = i
		p.groups[last] = Group{}
		p.groups = p.groups[:last]
		delete(p.index, g.Source)
	default:
		return
	}
	p.gen = p.gens.next()
}

// Manager maintains the providers of every job and sends the state of every
// job on SyncCh.
type Manager struct {
	logger      *slog.Logger
	flush       time.Duration
	mechMetrics map[string]discovery.Metrics
	refresh     *discovery.RefreshMetrics
	priority    *priority.Gate
	tuning      discovery.Tuning
	metrics     *metrics
	syncCh      chan Update
	trigger     chan struct{} // buffer 1: a pending "state changed"
	now         func() time.Time

	applyMu sync.Mutex // serialises ApplyConfig

	mu           sync.Mutex
	providers    []*provider
	jobs         map[string]*jobState // by configured job
	lastProvider uint
	gens         gens
	running      bool
	stopped      bool
}

// New makes a manager. Call Run to start sending; ApplyConfig may come before
// or after Run starts, and starts providers at once.
func New(o Options) (*Manager, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	flush := o.FlushInterval
	if flush < 0 {
		return nil, fmt.Errorf("invalid flush interval %s (must be 0 for the default, or positive)", flush)
	}
	if flush == 0 {
		flush = DefaultFlushInterval
	}
	m := &Manager{
		logger:      logger,
		flush:       flush,
		mechMetrics: o.Metrics,
		refresh:     o.RefreshMetrics,
		priority:    o.Priority,
		tuning:      o.Tuning,
		syncCh:      make(chan Update),
		trigger:     make(chan struct{}, 1),
		now:         time.Now,
		jobs:        map[string]*jobState{},
	}
	met, err := newMetrics(o.Registerer, m)
	if err != nil {
		return nil, fmt.Errorf("registering discovery manager metrics: %w", err)
	}
	m.metrics = met
	return m, nil
}

// SyncCh is the channel the state of every job is sent on. It is unbuffered
// and closed when Run returns.
func (m *Manager) SyncCh() <-chan Update { return m.syncCh }

// Run sends updates on SyncCh until ctx ends, then cancels every provider,
// waits for them to return and closes SyncCh. It returns nil on a normal
// shutdown; it may run only once.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running || m.stopped {
		m.mu.Unlock()
		return errors.New("discovery manager already ran")
	}
	m.running = true
	m.mu.Unlock()

	m.send(ctx)
	m.shutdown()
	return nil
}

// send is the sender. A trigger after a quiet spell is handed on after
// settleDelay; a trigger within the flush interval of the last update waits
// for the rest of the interval, gathering everything that comes meanwhile.
// When the receiver is busy it keeps the newest state and hands that over as
// soon as the receiver is ready; a newer state replaces one that is still
// waiting, so the receiver never gets a stale state after a newer one.
func (m *Manager) send(ctx context.Context) {
	var (
		flush    <-chan time.Time
		pending  Update
		out      chan<- Update // m.syncCh while pending is set, else nil
		lastSent time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.trigger:
			if flush == nil {
				flush = time.After(max(settleDelay, m.flush-time.Since(lastSent)))
			}
		case <-flush:
			flush = nil
			u := m.state()
			m.metrics.sentUpdates.Inc()
			lastSent = time.Now()
			select {
			case m.syncCh <- u:
				pending, out = nil, nil
				continue
			default:
			}
			m.metrics.delayedUpdates.Inc()
			m.logger.Debug("discovery receiver is busy, the newest state goes out when it is ready")
			pending, out = u, m.syncCh
		case out <- pending:
			pending, out = nil, nil
			lastSent = time.Now()
		}
	}
}

// shutdown cancels every provider and waits for them, then closes SyncCh.
func (m *Manager) shutdown() {
	m.mu.Lock()
	m.stopped = true
	provs := slices.Clone(m.providers)
	for _, p := range provs {
		m.stop(p)
	}
	m.mu.Unlock()
	for _, p := range provs {
		p.wg.Wait()
	}
	close(m.syncCh)
}

// notify marks the state as changed; it never blocks.
func (m *Manager) notify() {
	select {
	case m.trigger <- struct{}{}:
	default:
	}
}

// ApplyConfig makes the running providers match cfg, a job's SD configs by
// job name. Providers whose config is unchanged keep running (their
// discoverer is not restarted) and serve the jobs that now use that config;
// obsolete providers are cancelled and waited for; new ones are started. A
// config whose discoverer cannot be built is logged, counted in
// prometheus_sd_failed_configs and kept in the job's status, and leaves its
// job incomplete; the next ApplyConfig tries it again. The only error is
// calling it after Run returned.
func (m *Manager) ApplyConfig(cfg map[string]discovery.Configs) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()

	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return errStopped
	}
	before := m.mechanismJobs()

	jobs := make(map[string]*jobState, len(cfg))
	newSubs := map[*provider]map[string]struct{}{}
	var fresh []*provider
	failed := 0
	// Sorted, so that provider numbers do not depend on map order.
	for _, job := range sortedKeys(cfg) {
		st := &jobState{}
		if old := m.jobs[job]; old != nil {
			st.last, st.lastProvs, st.lastGens = old.last, old.lastProvs, old.lastGens
		}
		jobs[job] = st
		for _, c := range cfg[job] {
			p, err := m.providerFor(c, job, fresh)
			if err != nil {
				m.logger.Error("Cannot create service discovery", "err", err, "config", job)
				st.failed++
				st.errs = append(st.errs, err.Error())
				failed++
				continue
			}
			if p.cancel == nil && !slices.Contains(fresh, p) {
				fresh = append(fresh, p)
			}
			if newSubs[p] == nil {
				newSubs[p] = map[string]struct{}{}
			}
			newSubs[p][job] = struct{}{}
		}
	}
	m.metrics.failedConfigs.Set(float64(failed))

	var kept, obsolete []*provider
	for _, p := range append(m.providers, fresh...) {
		subs := newSubs[p]
		if len(subs) == 0 {
			m.stop(p)
			p.health.setJobs(nil)
			obsolete = append(obsolete, p)
			continue
		}
		p.subs = subs
		p.health.setJobs(sortedKeys(subs))
		kept = append(kept, p)
	}
	m.providers = kept

	for job := range m.jobs {
		if _, ok := jobs[job]; !ok {
			m.metrics.deleteJob(job)
		}
	}
	for job := range jobs {
		if _, ok := m.jobs[job]; !ok {
			m.metrics.discoveredTargets.WithLabelValues(job).Set(0)
		}
	}
	m.jobs = jobs
	if m.refresh != nil {
		after := m.mechanismJobs()
		for k := range before {
			if _, ok := after[k]; !ok {
				m.refresh.Delete(k.mechanism, k.job)
			}
		}
	}
	for _, p := range fresh {
		m.start(p)
	}
	m.mu.Unlock()

	// The consumer gets the new job set (removed jobs gone, new jobs present,
	// shared providers' targets copied) without waiting for a discoverer.
	m.notify()
	for _, p := range obsolete {
		p.wg.Wait()
	}
	return nil
}

// providerFor returns the running or fresh provider whose config deeply
// equals c, or builds a new, not yet started one. Called with m.mu held.
func (m *Manager) providerFor(c discovery.Config, job string, fresh []*provider) (*provider, error) {
	if c == nil {
		return nil, errors.New("nil service discovery config")
	}
	for _, p := range m.providers {
		if reflect.DeepEqual(c, p.cfg) {
			return p, nil
		}
	}
	for _, p := range fresh {
		if reflect.DeepEqual(c, p.cfg) {
			return p, nil
		}
	}
	mech := c.Name()
	name := fmt.Sprintf("%s/%d", mech, m.lastProvider)
	logger := m.logger.With("discovery", mech, "config", job, "provider", name)
	h := newProviderHealth(name, mech, m.metrics.failures, m.now, logger)
	d, err := c.NewDiscoverer(discovery.Options{
		Logger:   logger,
		SetName:  job,
		Metrics:  m.mechMetrics[mech],
		Health:   h,
		Priority: m.priority,
		Tuning:   m.tuning,
	})
	if err != nil {
		return nil, fmt.Errorf("%s_sd_configs: %w", mech, err)
	}
	p := &provider{
		name:      name,
		mechanism: mech,
		cfg:       c,
		d:         d,
		health:    h,
		index:     map[string]int{},
		gens:      &m.gens,
		gen:       m.gens.next(),
	}
	m.lastProvider++
	return p, nil
}

type mechanismJob struct{ mechanism, job string }

// mechanismJobs lists which job uses which mechanism. Called with m.mu held.
func (m *Manager) mechanismJobs() map[mechanismJob]struct{} {
	out := map[mechanismJob]struct{}{}
	for _, p := range m.providers {
		for job := range p.subs {
			out[mechanismJob{p.mechanism, job}] = struct{}{}
		}
	}
	return out
}

// start runs the provider's discoverer and updater. Called with m.mu held.
// The provider's context is its own: it ends when the provider is stopped,
// by a reload that drops it or by Run's shutdown.
func (m *Manager) start(p *provider) {
	m.logger.Debug("starting provider", "provider", p.name, "jobs", sortedKeys(p.subs))
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	up := make(chan []*targetgroup.Group)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		p.d.Run(ctx, up)
		if ctx.Err() == nil {
			m.logger.Warn("discoverer returned before it was cancelled, its targets are kept", "provider", p.name)
		}
	}()
	go func() {
		defer p.wg.Done()
		m.updater(ctx, p, up)
	}()
}

// stop cancels a provider. Called with m.mu held; the caller waits on p.wg
// after releasing it.
func (m *Manager) stop(p *provider) {
	p.cancelled = true
	if p.cancel != nil {
		p.cancel()
	}
}

// updater folds a provider's updates into its groups until the provider is
// cancelled. A group with targets replaces the group with the same Source; a
// group without targets deletes it. A discoverer that closes its channel
// keeps its targets until the provider is cancelled, and is in sync from
// then on: it has nothing more to watch.
func (m *Manager) updater(ctx context.Context, p *provider, up <-chan []*targetgroup.Group) {
	for {
		select {
		case <-ctx.Done():
			return
		case tgs, ok := <-up:
			m.metrics.receivedUpdates.Inc()
			if !ok {
				m.logger.Debug("discoverer channel closed", "provider", p.name)
				p.health.done()
				<-ctx.Done()
				return
			}
			m.mu.Lock()
			if p.cancelled {
				m.mu.Unlock()
				return
			}
			for _, tg := range tgs {
				if tg != nil {
					p.set(tg)
				}
			}
			first := !p.delivered
			if first {
				p.delivered = true
				p.gen = m.gens.next()
			}
			m.mu.Unlock()
			if first {
				// The first full set reflects the source as it is now.
				p.health.Synced()
				m.logger.Debug("provider delivered its first set", "provider", p.name)
			}
			m.notify()
		}
	}
}
