// Package promsd runs Prometheus's own service-discovery mechanisms inside
// sdhub: every `<name>_sd_configs` registered in Prometheus's discovery
// registry (the packages a binary links, see
// github.com/prometheus/prometheus/plugins) becomes a discovery.Mechanism.
// Configs are Prometheus's own types, decoded, defaulted and validated by
// Prometheus's config package; discoverers are Prometheus's own. The adapter
// only bridges the two contracts:
//
//   - options: sdhub's Options become Prometheus's DiscovererOptions;
//   - metrics: each mechanism's metrics are made and registered once per
//     process, with Prometheus's names; the refresh metrics they use are
//     sdhub's own (discovery.RefreshMetrics), registered once;
//   - SetDirectory: relative file paths resolve against the config file's
//     directory, as Prometheus's loader resolves them;
//   - secrets: configs marshal as Prometheus's types do, so config.Secret
//     fields show as "<secret>";
//   - completeness: the first update a Discovery sends is the discoverer's
//     full set (sdhub's manager takes a provider's first update as its full
//     set), by a rule per mechanism, below;
//   - health: see Discovery.
//
// When the first full set is in, by mechanism, read from what the
// discoverer does (its metrics, registered through the registerer sdhub
// hands it), never from its log text:
//
//	mechanism           first full set
//	refresh-based       the first update (one per refresh; a failed refresh
//	(aws, azure, dns,   sends nothing and counts
//	http, docker, ...)  prometheus_sd_refresh_failures_total)
//	kubernetes          once the informers synced (nothing comes before),
//	                    when the distinct Sources received reach the objects
//	                    of the role added minus deleted since the start
//	                    (prometheus_sd_kubernetes_events_total), plus 100 ms
//	                    for lagging handlers; 1 s without an update if the
//	                    counts never meet (another kubernetes discoverer of
//	                    the role counts into the same series); the empty
//	                    set, 100 ms after a LIST of the role's objects found
//	                    none, if none was counted (it sends nothing then)
//	kuma                the first update (one group, the full set per xDS
//	                    response)
//	serverset, nerve,   quiet for 100 ms, at most 2 s after the first
//	any other           message: nothing better is observable
//
// Only the completeness rules name mechanisms: a Prometheus upgrade that
// adds one adds it to sdhub, under the quiet rule unless it refreshes.
package promsd

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commonconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/promslog"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/debounce"
)

// Registered maps the name of every SD mechanism in Prometheus's registry
// (static excluded) to its config type, a pointer to a struct. The registry
// is read through its exported marshalling of Configs, whose struct has one
// `<name>_sd_configs` field per registered type.
func Registered() map[string]reflect.Type {
	v, err := promdiscovery.Configs(nil).MarshalYAML()
	if err != nil {
		panic(fmt.Sprintf("promsd: reading Prometheus's SD registry: %v", err))
	}
	t := reflect.TypeOf(v).Elem()
	out := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		name, ok := strings.CutSuffix(key, "_sd_configs")
		elem := f.Type.Elem()
		if !ok || f.Type.Kind() != reflect.Slice || elem.Kind() != reflect.Pointer || elem.Elem().Kind() != reflect.Struct ||
			!elem.Implements(reflect.TypeFor[promdiscovery.Config]()) {
			continue // static_configs
		}
		out[name] = elem
	}
	return out
}

// Mechanisms returns a mechanism for every SD config type in Prometheus's
// registry except those named in skip (the ones sdhub implements itself),
// sorted by name.
func Mechanisms(skip ...string) []discovery.Mechanism {
	reg := Registered()
	names := make([]string, 0, len(reg))
	for name := range reg {
		if !slices.Contains(skip, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := make([]discovery.Mechanism, 0, len(names))
	for _, name := range names {
		out = append(out, mechanism(name, reg[name]))
	}
	return out
}

func mechanism(name string, typ reflect.Type) discovery.Mechanism {
	zero := func() promdiscovery.Config { return reflect.New(typ.Elem()).Interface().(promdiscovery.Config) }
	return discovery.Mechanism{
		Name:      name,
		NewConfig: func() discovery.Config { return &SDConfig{Config: zero()} },
		NewMetrics: func(reg prometheus.Registerer, refresh *discovery.RefreshMetrics) (discovery.Metrics, error) {
			h, c := &hooks{}, newCapture(reg)
			m := zero().NewDiscovererMetrics(c, instantiator{refresh: refresh, hooks: h})
			if err := m.Register(); err != nil {
				return nil, fmt.Errorf("registering the metrics of %s_sd_configs: %w", name, err)
			}
			return &Metrics{name: name, m: m, hooks: h, gather: c.mine}, nil
		},
	}
}

// Metrics is the metric set of one Prometheus mechanism, as its own
// NewDiscovererMetrics makes it.
type Metrics struct {
	name   string
	m      promdiscovery.DiscovererMetrics
	hooks  *hooks              // for the discoverers being built
	gather prometheus.Gatherer // what m registered, for the completeness rules
}

var _ discovery.Metrics = (*Metrics)(nil)

// Unregister unregisters the set.
func (m *Metrics) Unregister() { m.m.Unregister() }

// instantiator gives Prometheus's refresh package sdhub's refresh metrics:
// one prometheus_sd_refresh_* family per process, whoever refreshes. The
// failure counter of a discoverer built under hooks reports each failure to
// its Health.
type instantiator struct {
	refresh *discovery.RefreshMetrics
	hooks   *hooks
}

func (i instantiator) Instantiate(mech, setName string) *promdiscovery.RefreshMetrics {
	refresh := i.refresh
	if refresh == nil {
		refresh, _ = discovery.NewRefreshMetrics(nil) // unregistered: cannot fail
	}
	r := refresh.Instantiate(mech, setName)
	out := &promdiscovery.RefreshMetrics{Failures: r.Failures, Duration: r.Duration, DurationHistogram: r.DurationHistogram}
	if i.hooks != nil && i.hooks.pending != nil { // i.hooks.mu is held by build
		i.hooks.pending.instantiated = true
		out.Failures = failures{Counter: r.Failures, health: i.hooks.pending.health, mech: mech, as: setName}
	}
	return out
}

// SDConfig is one element of a `<name>_sd_configs` list that sdhub runs with
// Prometheus's code: Config is Prometheus's own config value (e.g.
// *dns.SDConfig). It compares with reflect.DeepEqual as Prometheus's configs
// do, so the manager shares and keeps providers as Prometheus's does.
type SDConfig struct {
	Config promdiscovery.Config
}

// Interface guard.
var _ discovery.Config = (*SDConfig)(nil)

// Wrap returns c as an sdhub config.
func Wrap(c promdiscovery.Config) *SDConfig { return &SDConfig{Config: c} }

// Name returns the mechanism's name, e.g. "dns".
func (c *SDConfig) Name() string { return c.Config.Name() }

// SetDirectory resolves relative file paths against dir, as Prometheus's
// loader does for the configs that hold any.
func (c *SDConfig) SetDirectory(dir string) {
	if d, ok := c.Config.(commonconfig.DirectorySetter); ok {
		d.SetDirectory(dir)
	}
}

// UnmarshalYAML decodes a block into a fresh value of the config's type
// with Prometheus's own UnmarshalYAML: defaults, keys, validation and error
// text are Prometheus's. c.Config must hold a value of the type (as the
// mechanism's NewConfig returns).
func (c *SDConfig) UnmarshalYAML(unmarshal func(any) error) error {
	if c.Config == nil {
		return errors.New("promsd: decoding into an SDConfig of no type")
	}
	v := reflect.New(reflect.TypeOf(c.Config).Elem())
	if err := unmarshal(v.Interface()); err != nil {
		return err
	}
	c.Config = v.Interface().(promdiscovery.Config)
	return nil
}

// MarshalYAML marshals the config as Prometheus's type marshals itself:
// secrets as "<secret>".
func (c *SDConfig) MarshalYAML() (any, error) { return c.Config, nil }

// NewDiscoverer builds Prometheus's discoverer for the config.
func (c *SDConfig) NewDiscoverer(o discovery.Options) (discovery.Discoverer, error) {
	health := discovery.HealthOf(o)
	mm, ok := o.Metrics.(*Metrics)
	if !ok || mm.name != c.Name() {
		// Tests: a set of its own, registered only where the rules read it.
		h, reg := &hooks{}, prometheus.NewRegistry()
		mm = &Metrics{name: c.Name(), m: c.Config.NewDiscovererMetrics(reg, instantiator{hooks: h}), hooks: h, gather: reg}
		if err := mm.m.Register(); err != nil {
			return nil, fmt.Errorf("registering the metrics of %s_sd_configs: %w", c.Name(), err)
		}
	}
	logger := o.Logger
	if logger == nil {
		logger = promslog.NewNopLogger()
	}
	var d promdiscovery.Discoverer
	refresh, err := mm.hooks.build(health, func() (err error) {
		d, err = c.Config.NewDiscoverer(promdiscovery.DiscovererOptions{Logger: logger, Metrics: mm.m, SetName: o.SetName})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Discovery{inner: d, health: health, rule: ruleFor(c.Config, refresh, mm.gather, health, logger)}, nil
}

// Under the quiet rule (see complete.go), the first update of a discoverer
// is what it found until it was quiet for settleQuiet, and at the latest
// settleMax after its first message.
const (
	settleQuiet = 100 * time.Millisecond
	settleMax   = 2 * time.Second
)

// Discovery runs a Prometheus discoverer under sdhub's contract.
//
// Health: Synced after every update the wrapped discoverer sends (a refresh
// that succeeded, a watch that delivered). Failed for every failed refresh
// of a refresh-based discoverer, as Prometheus's refresh package counts it
// in prometheus_sd_refresh_failures_total (it keeps the last targets and
// sends nothing); for every failed LIST of a kubernetes discoverer's role
// before its first update (kubeEmpty). Its log records are only logged.
type Discovery struct {
	inner  promdiscovery.Discoverer
	health discovery.Health
	rule   rule
}

// Run runs the wrapped discoverer until ctx ends and forwards its updates,
// the first one the full set (see rule). It returns once the wrapped
// discoverer has returned.
func (d *Discovery) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	var base float64
	if d.rule.live != nil {
		base = d.rule.live()
	}
	in := make(chan []*targetgroup.Group)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.inner.Run(ctx, in)
	}()
	defer func() {
		for {
			select {
			case _, ok := <-in:
				if !ok {
					in = nil // closed by a discoverer that should not have: wait for done
				}
			case <-done:
				return
			}
		}
	}()

	first, ok := d.rule.first(ctx, in, base)
	if !ok {
		return
	}
	for tgs := first; ; {
		select {
		case up <- tgs:
			d.health.Synced()
		case <-ctx.Done():
			return
		}
		if tgs, ok = receive(ctx, in); !ok {
			return
		}
	}
}

// settle receives the first update and what follows it until in is quiet
// for settleQuiet or settleMax has passed, merged by Source (a later group
// replaces an earlier one of the same Source).
func settle(ctx context.Context, in <-chan []*targetgroup.Group) ([]*targetgroup.Group, bool) {
	var m merger
	tgs, ok := receive(ctx, in)
	if !ok {
		return nil, false
	}
	m.add(tgs)
	burst := debounce.New(settleQuiet, settleMax)
	defer burst.Stop()
	burst.Event()
	for {
		select {
		case tgs, ok := <-in:
			if !ok {
				return m.groups, true
			}
			m.add(tgs)
			burst.Event()
		case <-burst.C():
			return m.groups, true
		case <-ctx.Done():
			return nil, false
		}
	}
}
