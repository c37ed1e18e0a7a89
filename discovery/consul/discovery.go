package consul

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
)

const (
	// defaultWait is the blocking-query wait, Prometheus's watchTimeout.
	defaultWait = 2 * time.Minute
	// detectors is the number of change detectors, each holding one
	// connection in a blocking query (catalog services, checks, nodes).
	detectors = 3
)

// Discovery discovers Consul services. Run watches the catalog with a fixed
// number of blocking queries and re-reads only the services that changed;
// see docs/consul.md.
type Discovery struct {
	client       *client
	logger       *slog.Logger
	health       discovery.Health
	metrics      *Metrics
	tagSeparator string
	services     []string
	tags         []string
	nodeMeta     map[string]string
	filter       string
	healthFilter string
	floor        time.Duration // refresh_interval
	workers      int

	// Timings; tests shorten them.
	wait        time.Duration // blocking-query wait
	readTimeout time.Duration // timeout of a non-blocking request
	backoffMin  time.Duration
	backoffMax  time.Duration
	detectFloor time.Duration // least time between two queries of one detector
}

// NewDiscovery returns a Discovery for c. A nil opts.Metrics gets a fresh
// unregistered metric set; a nil opts.Logger discards.
func NewDiscovery(c *SDConfig, opts discovery.Options) (*Discovery, error) {
	var m *Metrics
	switch om := opts.Metrics.(type) {
	case nil:
		m, _ = NewMetrics(nil)
	case *Metrics:
		m = om
	default:
		return nil, errInvalidMetrics
	}
	maxConns := c.MaxConnections
	if maxConns == 0 {
		maxConns = DefaultMaxConnections
	}
	cc := *c
	cc.MaxConnections = maxConns
	cl, err := newClient(&cc, m.connections)
	if err != nil {
		return nil, err
	}
	return &Discovery{
		client:       cl,
		logger:       discard(opts.Logger),
		health:       discovery.HealthOf(opts),
		metrics:      m,
		tagSeparator: c.TagSeparator,
		services:     slices.Clone(c.Services),
		tags:         slices.Clone(c.ServiceTags),
		nodeMeta:     maps.Clone(c.NodeMeta),
		filter:       c.Filter,
		healthFilter: c.HealthFilter,
		floor:        time.Duration(c.RefreshInterval),
		workers:      max(1, maxConns-detectors),
		wait:         defaultWait,
		readTimeout:  30 * time.Second,
		backoffMin:   250 * time.Millisecond,
		backoffMax:   15 * time.Second,
		detectFloor:  min(250*time.Millisecond, time.Duration(c.RefreshInterval)),
	}, nil
}

// shouldWatch reports whether a catalog service is discovered: its name is
// in services (or services is empty) and its tags include every tag.
func (d *Discovery) shouldWatch(name string, tags []string) bool {
	if len(d.services) > 0 && !slices.Contains(d.services, name) {
		return false
	}
	for _, t := range d.tags {
		if !slices.Contains(tags, t) {
			return false
		}
	}
	return true
}

func (d *Discovery) nodeMetaParams(v url.Values) url.Values {
	for _, k := range slices.Sorted(maps.Keys(d.nodeMeta)) {
		v.Add("node-meta", k+":"+d.nodeMeta[k])
	}
	return v
}

func (d *Discovery) blockingTimeout() time.Duration {
	// Consul adds up to wait/16 of jitter to a blocking query.
	return d.wait + d.wait/16 + 15*time.Second
}

// readCatalog lists the services (GET /v1/catalog/services).
func (d *Discovery) readCatalog(ctx context.Context, index uint64) (map[string][]string, uint64, error) {
	v := d.nodeMetaParams(url.Values{})
	if d.filter != "" {
		v.Set("filter", d.filter)
	}
	var out map[string][]string
	start := time.Now()
	idx, err := d.client.get(ctx, query{path: "/v1/catalog/services", params: v, index: index, wait: d.wait, timeout: d.timeout(index)}, &out)
	d.metrics.servicesDuration.Observe(time.Since(start).Seconds())
	return out, idx, err
}

// notPassing selects the checks that are not passing: few, in a healthy
// catalog, so the health detector's answers stay small however many
// checks there are.
const notPassing = `Status != "passing"`

// check is the part of a health check the watch uses.
type check struct {
	Node, CheckID, ServiceName, Status string
	ModifyIndex                        uint64
}

// readChecks lists health checks (GET /v1/health/state/any), every check
// or only those matching filter. The index is the whole checks table's.
func (d *Discovery) readChecks(ctx context.Context, index uint64, filter string) ([]check, uint64, error) {
	var out []check
	v := d.nodeMetaParams(url.Values{})
	if filter != "" {
		v.Set("filter", filter)
	}
	start := time.Now()
	idx, err := d.client.get(ctx, query{path: "/v1/health/state/any", params: v, index: index, wait: d.wait, timeout: d.timeout(index)}, &out)
	d.metrics.detectDuration.Observe(time.Since(start).Seconds())
	return out, idx, err
}

// readNodes lists the nodes (GET /v1/catalog/nodes).
func (d *Discovery) readNodes(ctx context.Context, index uint64) ([]*api.Node, uint64, error) {
	var out []*api.Node
	start := time.Now()
	idx, err := d.client.get(ctx, query{path: "/v1/catalog/nodes", params: d.nodeMetaParams(url.Values{}), index: index, wait: d.wait, timeout: d.timeout(index)}, &out)
	d.metrics.nodesDuration.Observe(time.Since(start).Seconds())
	return out, idx, err
}

// readService reads one service's instances (GET /v1/health/service/<name>),
// with the same filters Prometheus sends.
func (d *Discovery) readService(ctx context.Context, dc, name string) (*targetgroup.Group, error) {
	v := d.nodeMetaParams(url.Values{})
	for _, t := range d.tags {
		v.Add("tag", t)
	}
	if d.healthFilter != "" {
		v.Set("filter", d.healthFilter)
	}
	var out []serviceEntry
	start := time.Now()
	_, err := d.client.get(ctx, query{path: "/v1/health/service/" + url.PathEscape(name), params: v, timeout: d.readTimeout}, &out)
	d.metrics.serviceDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		d.metrics.rpcFailures.Inc()
		return nil, fmt.Errorf("reading service %q: %w", name, err)
	}
	return serviceGroup(name, dc, d.tagSeparator, out), nil
}

func (d *Discovery) timeout(index uint64) time.Duration {
	if index > 0 {
		return d.blockingTimeout()
	}
	return d.readTimeout
}

// datacenter is the configured datacenter, else the agent's.
func (d *Discovery) datacenter(ctx context.Context) (string, error) {
	if d.client.dc != "" {
		return d.client.dc, nil
	}
	dc, err := d.client.datacenter(ctx, d.readTimeout)
	if err != nil {
		d.metrics.rpcFailures.Inc()
		return "", fmt.Errorf("retrieving datacenter name: %w", err)
	}
	return dc, nil
}

// state is what the watch knows of the catalog.
type state struct {
	dc           string
	catalogIndex uint64
	catalog      map[string][]string // every listed service and its tags
	watched      map[string]bool
	groups       map[string]*targetgroup.Group
	checksIndex  uint64
	checks       map[checkKey]checkInfo // the checks that are not passing
	allChecks    map[checkKey]string    // every check -> its service
	nodesIndex   uint64
	nodes        map[string]uint64 // node name -> ModifyIndex
}

type checkKey struct{ node, id string }

type checkInfo struct {
	modify  uint64
	service string
}

// checkTable indexes the checks that are not passing.
func checkTable(cs []check) map[checkKey]checkInfo {
	t := map[checkKey]checkInfo{}
	for _, c := range cs {
		if c.Status != api.HealthPassing {
			t[checkKey{c.Node, c.CheckID}] = checkInfo{modify: c.ModifyIndex, service: c.ServiceName}
		}
	}
	return t
}

// allCheckTable maps every check to its service.
func allCheckTable(cs []check) map[checkKey]string {
	t := make(map[checkKey]string, len(cs))
	for _, c := range cs {
		t[checkKey{c.Node, c.CheckID}] = c.ServiceName
	}
	return t
}

func nodeTable(ns []*api.Node) map[string]uint64 {
	t := make(map[string]uint64, len(ns))
	for _, n := range ns {
		if n != nil {
			t[n.Node] = n.ModifyIndex
		}
	}
	return t
}

// baseline reads the detectors' starting points and the catalog. The
// checks and nodes are read first, so that a change made while the
// services are being read is seen by a detector.
func (d *Discovery) baseline(ctx context.Context, dc string) (*state, error) {
	st := &state{dc: dc, watched: map[string]bool{}, groups: map[string]*targetgroup.Group{}}
	checks, idx, err := d.readChecks(ctx, 0, "")
	if err != nil {
		d.metrics.rpcFailures.Inc()
		return nil, fmt.Errorf("reading health checks: %w", err)
	}
	st.checks, st.allChecks, st.checksIndex = checkTable(checks), allCheckTable(checks), idx
	nodes, idx, err := d.readNodes(ctx, 0)
	if err != nil {
		d.metrics.rpcFailures.Inc()
		return nil, fmt.Errorf("reading nodes: %w", err)
	}
	st.nodes, st.nodesIndex = nodeTable(nodes), idx
	cat, idx, err := d.readCatalog(ctx, 0)
	if err != nil {
		d.metrics.rpcFailures.Inc()
		return nil, fmt.Errorf("reading service list: %w", err)
	}
	st.catalog, st.catalogIndex = cat, idx
	for name, tags := range cat {
		if d.shouldWatch(name, tags) {
			st.watched[name] = true
		}
	}
	return st, nil
}

// readServices reads names with at most d.workers requests in flight.
func (d *Discovery) readServices(ctx context.Context, dc string, names []string) (map[string]*targetgroup.Group, map[string]error) {
	var (
		mu     sync.Mutex
		groups = make(map[string]*targetgroup.Group, len(names))
		errs   = map[string]error{}
		wg     sync.WaitGroup
		next   = make(chan string)
	)
	for range min(d.workers, len(names)) {
		wg.Go(func() {
			for name := range next {
				g, err := d.readService(ctx, dc, name)
				mu.Lock()
				if err != nil {
					errs[name] = err
				} else {
					groups[name] = g
				}
				mu.Unlock()
			}
		})
	}
	for _, name := range names {
		next <- name
	}
	close(next)
	wg.Wait()
	return groups, errs
}

// refresh reads the whole state once: every watched service's group,
// sorted by Source. Any failed read fails the whole refresh.
func (d *Discovery) refresh(ctx context.Context) ([]*targetgroup.Group, error) {
	dc, err := d.datacenter(ctx)
	if err != nil {
		return nil, err
	}
	st, err := d.baseline(ctx, dc)
	if err != nil {
		return nil, err
	}
	groups, errs := d.readServices(ctx, dc, slices.Sorted(maps.Keys(st.watched)))
	for _, name := range slices.Sorted(maps.Keys(errs)) {
		return nil, errs[name]
	}
	st.groups = groups
	return st.sortedGroups(), nil
}

func (st *state) sortedGroups() []*targetgroup.Group {
	out := make([]*targetgroup.Group, 0, len(st.groups))
	for _, name := range slices.Sorted(maps.Keys(st.groups)) {
		out = append(out, st.groups[name])
	}
	return out
}

// Run sends the complete state once every watched service has been read,
// then the groups that change. It never sends a partial state: failed
// reads keep the last good groups and are retried with backoff.
func (d *Discovery) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	defer d.client.close()
	var dc string
	for attempt := 0; ; attempt++ {
		var err error
		if dc, err = d.datacenter(ctx); err == nil {
			break
		}
		d.logger.Error("Error retrieving datacenter name", "err", err)
		d.health.Failed(err)
		if !d.backoff(ctx, attempt) {
			return
		}
	}
	st := d.initial(ctx, dc)
	if st == nil {
		return
	}
	full := st.sortedGroups()
	if len(full) == 0 {
		full = []*targetgroup.Group{{}}
	}
	select {
	case up <- full:
	case <-ctx.Done():
		return
	}
	newWatcher(d, st).run(ctx, up)
}

// initial builds the first complete state, retrying only what failed.
func (d *Discovery) initial(ctx context.Context, dc string) *state {
	var (
		st      *state
		pending []string
	)
	for attempt := 0; ; attempt++ {
		var err error
		if st == nil {
			if st, err = d.baseline(ctx, dc); err == nil {
				pending = slices.Sorted(maps.Keys(st.watched))
			}
		}
		if st != nil {
			groups, errs := d.readServices(ctx, dc, pending)
			maps.Copy(st.groups, groups)
			pending = slices.Sorted(maps.Keys(errs))
			if len(pending) == 0 {
				return st
			}
			err = fmt.Errorf("%d of %d services failed, first: %w", len(pending), len(st.watched), errs[pending[0]])
		}
		if ctx.Err() != nil {
			return nil
		}
		d.logger.Error("Error reading the initial Consul state", "err", err)
		d.health.Failed(err)
		if !d.backoff(ctx, attempt) {
			return nil
		}
	}
}

// backoff waits before retry number attempt (0-based): exponential from
// backoffMin, capped at backoffMax, with jitter in [d/2, d). It reports
// false when ctx ended first.
func (d *Discovery) backoff(ctx context.Context, attempt int) bool {
	return sleepCtx(ctx, d.backoffDelay(attempt))
}

func (d *Discovery) backoffDelay(attempt int) time.Duration {
	b := d.backoffMin
	for i := 0; i < attempt && b < d.backoffMax; i++ {
		b *= 2
	}
	b = min(b, d.backoffMax)
	return b/2 + rand.N(b/2+1)
}

// sleepCtx waits for dur or ctx, reporting whether dur elapsed.
func sleepCtx(ctx context.Context, dur time.Duration) bool {
	if dur <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func sortedStrings(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}
