package promsd

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
)

// When a Prometheus discoverer's first full set is in. sdhub's manager takes
// a provider's first update as its full set, while a Prometheus discoverer
// may send its initial state in several messages. Each rule reads what the
// discoverer itself does, through the metrics it registers on the registerer
// sdhub hands it; no log text is read.
//
//	mechanism                         rule
//	refresh-based (every mechanism    the first update: Prometheus's refresh
//	whose constructor takes refresh   package sends each refresh's result as
//	metrics: aws, azure, dns, http,   one message, and a failed refresh sends
//	docker, eureka, gce, ...)         nothing (it counts
//	                                  prometheus_sd_refresh_failures_total)
//	kubernetes                        after the informers' caches synced (the
//	                                  discoverer sends nothing before), once
//	                                  the distinct Sources received reach the
//	                                  objects of the config's role added minus
//	                                  deleted since the discoverer started
//	                                  (prometheus_sd_kubernetes_events_total),
//	                                  plus settleQuiet for handlers that lag
//	                                  the count; if the counts never meet
//	                                  (another kubernetes discoverer of the
//	                                  role counts into the same series),
//	                                  kubeQuiet without an update. A role
//	                                  with no object sends nothing: when a
//	                                  LIST of the role's objects, as the
//	                                  informers list them, finds none and
//	                                  none was counted, the empty set after
//	                                  settleQuiet without a message
//	kuma                              the first update: one group holding the
//	                                  full set per xDS response
//	any other (serverset, nerve)      nothing better is observable: quiet for
//	                                  settleQuiet, at most settleMax
const kubeQuiet = time.Second

// rule is how a Discovery knows its first update is the full set.
type rule struct {
	// one: the first message is the full set.
	one bool
	// live, when set, counts the objects the discoverer has listed and
	// watched so far, for all discoverers counting into the same series.
	live func() float64
	// empty, when set, asks the source whether it holds no object at all
	// (a counted discoverer sends nothing then); failed hears its error.
	empty  func(context.Context) (bool, error)
	failed func(error)
	// logger, when set, hears at debug how the first set of a counted
	// discoverer came in.
	logger *slog.Logger
}

// first receives the discoverer's first full set from in, merged by Source.
// base is live() before the discoverer started.
func (r rule) first(ctx context.Context, in <-chan []*targetgroup.Group, base float64) ([]*targetgroup.Group, bool) {
	switch {
	case r.one:
		return receive(ctx, in)
	case r.live != nil:
		return r.listed(ctx, in, base)
	default:
		return settle(ctx, in)
	}
}

// listed is the kubernetes rule (see kubeQuiet).
func (r rule) listed(ctx context.Context, in <-chan []*targetgroup.Group, base float64) ([]*targetgroup.Group, bool) {
	var m merger
	start := time.Now()
	done := func(why string) ([]*targetgroup.Group, bool) {
		if r.logger != nil {
			r.logger.Debug("First full set received", "by", why, "sources", len(m.index), "listed", r.live()-base, "burst", time.Since(start))
		}
		return m.groups, true
	}
	tgs, ok := r.firstOrEmpty(ctx, in, base)
	switch {
	case !ok:
		return nil, false
	case tgs == nil:
		m.groups = []*targetgroup.Group{}
		return done("empty")
	}
	m.add(tgs)
	quiet := time.NewTimer(kubeQuiet)
	defer quiet.Stop()
	var confirm *time.Timer
	var confirmed <-chan time.Time
	defer func() {
		if confirm != nil {
			confirm.Stop()
		}
	}()
	want := r.live() - base
	for {
		// The count is read again only when it has been reached, and while
		// it holds: it must hold for settleQuiet (handlers may lag the
		// informer's sync, so the count may still grow).
		if float64(len(m.index)) >= want {
			want = r.live() - base
			switch met := float64(len(m.index)) >= want; {
			case met && confirm == nil:
				confirm = time.NewTimer(settleQuiet)
				confirmed = confirm.C
			case !met && confirm != nil:
				confirm.Stop()
				confirm, confirmed = nil, nil
			}
		}
		select {
		case tgs, ok := <-in:
			if !ok {
				return done("channel closed")
			}
			m.add(tgs)
			quiet.Reset(kubeQuiet)
		case <-confirmed:
			return done("count")
		case <-quiet.C:
			return done("quiet")
		case <-ctx.Done():
			return nil, false
		}
	}
}

// firstOrEmpty receives the discoverer's first message; or, once r.empty
// says the source holds no object and none was counted since base, nil
// after settleQuiet without a message. A failed r.empty goes to r.failed
// and is asked again after a backoff; every r.empty has returned when
// firstOrEmpty does.
func (r rule) firstOrEmpty(ctx context.Context, in <-chan []*targetgroup.Group, base float64) ([]*targetgroup.Group, bool) {
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	type answer struct {
		empty bool
		err   error
	}
	var probed chan answer // nil: no question out
	ask := func() {
		probed = make(chan answer, 1)
		wg.Add(1)
		go func(ch chan<- answer) {
			defer wg.Done()
			empty, err := r.empty(pctx)
			ch <- answer{empty, err}
		}(probed)
	}
	if r.empty != nil {
		ask()
	}
	retry := &backoff.ExponentialBackOff{InitialInterval: time.Second, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 30 * time.Second}
	var again, quiet <-chan time.Time
	for {
		select {
		case tgs, ok := <-in:
			if !ok {
				<-ctx.Done()
				return nil, false
			}
			return tgs, true
		case a := <-probed:
			probed = nil
			switch {
			case a.err != nil:
				if r.failed != nil {
					r.failed(a.err)
				}
				again = time.After(retry.NextBackOff())
			case a.empty && r.live()-base == 0:
				quiet = time.After(settleQuiet)
			}
		case <-again:
			again = nil
			ask()
		case <-quiet:
			if r.live()-base == 0 {
				return nil, true
			}
			quiet = nil // counted meanwhile: its message is on the way
		case <-ctx.Done():
			return nil, false
		}
	}
}

// receive takes the discoverer's next message from in; ok is false once ctx
// has ended. A closed in (a discoverer must not close it) waits for ctx.
func receive(ctx context.Context, in <-chan []*targetgroup.Group) (tgs []*targetgroup.Group, ok bool) {
	select {
	case tgs, ok = <-in:
		if !ok {
			<-ctx.Done()
		}
		return tgs, ok
	case <-ctx.Done():
		return nil, false
	}
}

// merger merges updates by Source: a later group replaces an earlier one of
// the same Source.
type merger struct {
	groups []*targetgroup.Group
	index  map[string]int
}

func (m *merger) add(tgs []*targetgroup.Group) {
	if m.index == nil {
		m.index = map[string]int{}
	}
	for _, tg := range tgs {
		if tg == nil {
			continue
		}
		if i, ok := m.index[tg.Source]; ok && tg.Source != "" {
			m.groups[i] = tg
			continue
		}
		m.index[tg.Source] = len(m.groups)
		m.groups = append(m.groups, tg)
	}
}

// ruleFor is the rule of a discoverer built from c whose constructor did
// (refresh) or did not take refresh metrics, whose metrics read from g,
// reporting to health.
func ruleFor(c promdiscovery.Config, refresh bool, g prometheus.Gatherer, health discovery.Health, logger *slog.Logger) rule {
	if refresh {
		return rule{one: true}
	}
	if live := liveRules[c.Name()]; live != nil {
		if f := live(c, g); f != nil {
			r := rule{logger: logger, live: f}
			if probe := emptyProbes[c.Name()]; probe != nil {
				r.empty, r.failed = probe(c), health.Failed
			}
			return r
		}
	}
	if c.Name() == "kuma" {
		return rule{one: true}
	}
	return rule{}
}

// liveRules are the rules of mechanisms whose first full set is known from
// the live objects their metrics count, by mechanism name; each returns the
// count's reader for its config, nil if the config is not one it knows. The
// mechanisms' files fill it, under the build tags that keep the mechanism
// in a build (a trimmed build, -tags remove_all_sd, has none of them).
var liveRules = map[string]func(promdiscovery.Config, prometheus.Gatherer) func() float64{}

// emptyProbes ask the source of a mechanism in liveRules whether it holds
// no object at all, by mechanism name, filled alongside liveRules; each
// returns the probe for its config, nil if the config is not one it knows.
var emptyProbes = map[string]func(promdiscovery.Config) func(context.Context) (bool, error){}

// counterValue is the value of name{role=role, event=event} in g, 0 if g
// has no such series.
func counterValue(g prometheus.Gatherer, name, role, event string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "role") == role && label(m, "event") == event {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// hooks hands a discoverer under construction its refresh-failure hook.
// Prometheus's refresh package takes its metrics from the mechanism's
// instantiator in its constructor; the instantiator is made once per
// mechanism, so NewDiscoverer holds mu around the constructor and sets
// pending to the Health of the discoverer being built.
type hooks struct {
	mu      sync.Mutex
	pending *pendingHook
}

type pendingHook struct {
	health       discovery.Health
	instantiated bool // the constructor took refresh metrics
}

// build runs newDiscoverer with health as the pending hook and returns
// whether the constructor took refresh metrics.
func (h *hooks) build(health discovery.Health, newDiscoverer func() error) (refresh bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := &pendingHook{health: health}
	h.pending = p
	defer func() { h.pending = nil }()
	err = newDiscoverer()
	return p.instantiated, err
}

// failures is a refresh-failure counter that reports each failure to the
// discoverer's Health: Prometheus's refresh package counts a failed refresh
// here (prometheus_sd_refresh_failures_total) and sends nothing.
type failures struct {
	prometheus.Counter
	health   discovery.Health
	mech, as string
}

func (f failures) Inc() { f.Add(1) }

func (f failures) Add(v float64) {
	f.Counter.Add(v)
	if v > 0 {
		f.health.Failed(fmt.Errorf("refresh of %s_sd_configs failed (prometheus_sd_refresh_failures_total{mechanism=%q,config=%q}); its last targets are kept", f.mech, f.mech, f.as))
	}
}

// capture registers collectors with reg and also with its own registry,
// from which the rules read the mechanism's metrics: what was registered
// through it, not the process's /metrics.
type capture struct {
	reg  prometheus.Registerer
	mine *prometheus.Registry
}

func newCapture(reg prometheus.Registerer) *capture {
	return &capture{reg: reg, mine: prometheus.NewRegistry()}
}

func (c *capture) Register(col prometheus.Collector) error {
	if c.reg != nil {
		if err := c.reg.Register(col); err != nil {
			return err
		}
	}
	if err := c.mine.Register(col); err != nil {
		if c.reg != nil {
			c.reg.Unregister(col)
		}
		return err
	}
	return nil
}

func (c *capture) MustRegister(cols ...prometheus.Collector) {
	for _, col := range cols {
		if err := c.Register(col); err != nil {
			panic(err)
		}
	}
}

func (c *capture) Unregister(col prometheus.Collector) bool {
	c.mine.Unregister(col)
	if c.reg != nil {
		return c.reg.Unregister(col)
	}
	return true
}
