package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/priority"
)

const (
	// defaultWait is the blocking-query wait. Prometheus waits 2 minutes;
	// a longer wait makes an idle watch cheaper for Consul (each blocking
	// query costs a request per wait), and HTTP/2 pings and TCP keepalives
	// find a dead connection long before it ends.
	defaultWait = 5 * time.Minute
	// detectors is the number of change detectors of the catalog-wide
	// watch, each holding one blocking query: catalog services, critical
	// checks, warning checks, nodes.
	detectors = 4
)

// Discovery discovers Consul services; see docs/mechanisms/consul.md. Over HTTP/2 it
// watches every service with a blocking query of its own; otherwise, and
// for the services that do not fit, it watches the whole catalog with a
// fixed number of blocking queries and re-reads what changed.
type Discovery struct {
	client       *client
	logger       *slog.Logger
	health       discovery.Health
	priority     *priority.Gate // nil: decode at once
	names        *nameCache
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
	waitSlack   time.Duration // a blocking query's timeout beyond wait and Consul's jitter
	readTimeout time.Duration // timeout of a non-blocking request
	backoffMin  time.Duration
	backoffMax  time.Duration // the backoff waits up to 1.5 times this
	detectFloor time.Duration // least time between two change-driven queries of one watch
	probeRate   float64       // node probes per second, at most, over probe rounds (a round may be faster, not more frequent)
	startGrace  time.Duration // see stream
	// listInterval: the catalog detector's pace while streams cover every
	// service (--consul.service-list-interval); 0: see listPace.
	listInterval time.Duration
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
	maxConns := c.maxConnections()
	cl, err := newClient(c, maxConns, m.connections)
	if err != nil {
		return nil, err
	}
	return &Discovery{
		client:       cl,
		logger:       discard(opts.Logger),
		health:       discovery.HealthOf(opts),
		priority:     opts.Priority,
		listInterval: opts.Tuning.ConsulServiceListInterval,
		names:        newNameCache(),
		metrics:      m,
		tagSeparator: c.TagSeparator,
		services:     slices.Clone(c.Services),
		tags:         slices.Clone(c.ServiceTags),
		nodeMeta:     maps.Clone(c.NodeMeta),
		filter:       c.Filter,
		healthFilter: c.HealthFilter,
		floor:        time.Duration(c.RefreshInterval),
		workers:      max(1, maxConns-detectors),
		wait:         min(max(defaultWait, time.Duration(c.RefreshInterval)), maxWait),
		waitSlack:    15 * time.Second,
		readTimeout:  30 * time.Second,
		backoffMin:   250 * time.Millisecond,
		backoffMax:   10 * time.Second,
		detectFloor:  min(250*time.Millisecond, time.Duration(c.RefreshInterval)),
		probeRate:    200,
		startGrace:   10 * time.Second,
	}, nil
}

// maxWait is the longest wait Consul grants a blocking query.
const maxWait = 10 * time.Minute

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

func (d *Discovery) timeout(index uint64) time.Duration {
	if index > 0 {
		// Consul adds up to wait/16 of jitter to a blocking query.
		return d.wait + d.wait/16 + d.waitSlack
	}
	return d.readTimeout
}

func (d *Discovery) newBackoff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     d.backoffMin,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         d.backoffMax,
	}
}

// failed counts and reports a failed request.
func (d *Discovery) failed(err error) error {
	d.metrics.rpcFailures.Inc()
	d.health.Failed(err)
	return err
}

// readCatalog lists the services (GET /v1/catalog/services).
func (d *Discovery) readCatalog(ctx context.Context, index uint64) (map[string][]string, uint64, error) {
	v := d.nodeMetaParams(url.Values{})
	if d.filter != "" {
		v.Set("filter", d.filter)
	}
	var out map[string][]string
	start := time.Now()
	idx, err := d.client.get(ctx, d.client.reads, query{path: "/v1/catalog/services", params: v, index: index, wait: d.wait, timeout: d.timeout(index)},
		func(b []byte) error { return json.Unmarshal(b, &out) })
	d.metrics.servicesDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, 0, fmt.Errorf("reading service list: %w", err)
	}
	return out, idx, nil
}

// serviceRead is one read of a service's instances.
type serviceRead struct {
	group *targetgroup.Group // nil when same
	insts []instRef          // the instances, for node reads to compare with
	hash  uint64             // of the body
	index uint64
	same  bool // the body hashed to the hash asked about: not decoded
}

// readService reads one service's instances (GET /v1/health/service/<name>)
// on pool p, with the same filters Prometheus sends; index > 0 makes it a
// blocking query. A body that hashes to same is not decoded.
func (d *Discovery) readService(ctx context.Context, p *pool, dc, name string, index, same uint64) (serviceRead, error) {
	v := d.nodeMetaParams(url.Values{})
	for _, t := range d.tags {
		v.Add("tag", t)
	}
	if d.healthFilter != "" {
		v.Set("filter", d.healthFilter)
	}
	var r serviceRead
	start := time.Now()
	idx, err := d.client.get(ctx, p, query{path: "/v1/health/service/" + url.PathEscape(name), params: v, index: index, wait: d.wait, timeout: d.timeout(index), streamed: true},
		func(b []byte) (err error) {
			if r.hash = xxhash.Sum64(b); r.hash == same && same != 0 {
				r.same = true
				return nil
			}
			// A change already known goes to the output first: an answer
			// is decoded after the output work under way (see priority).
			d.priority.Background(func() { err = r.decode(d.names, b, name, dc, d.tagSeparator) })
			return err
		})
	d.metrics.serviceDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return r, fmt.Errorf("reading service %q: %w", name, err)
	}
	r.index = idx
	return r, nil
}

// decode makes r's group and instances of a service's answer b, its label
// names through names.
func (r *serviceRead) decode(names *nameCache, b []byte, name, dc, tagSeparator string) error {
	var entries []serviceEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return err
	}
	r.group = names.serviceGroup(name, dc, tagSeparator, entries)
	r.insts = make([]instRef, len(entries))
	for i := range entries {
		r.insts[i] = instRef{node: entries[i].Node.Node, id: entries[i].Service.ID, service: name, modify: entries[i].Service.ModifyIndex}
	}
	return nil
}

// instRef is a service instance as a node read lists it.
type instRef struct {
	node, id, service string
	modify            uint64
}

// datacenter is the configured datacenter, else the agent's.
func (d *Discovery) datacenter(ctx context.Context) (string, error) {
	dc, _, err := d.agent(ctx)
	return dc, err
}

// agent returns the datacenter (the configured one, or the agent's) and
// the agent's connection limit per client, 0 when unknown. With a
// datacenter configured, a failure to read the agent only leaves the limit
// unknown.
func (d *Discovery) agent(ctx context.Context) (dc string, limit int, err error) {
	self, err := d.client.self(ctx, d.readTimeout)
	if d.client.dc != "" {
		if err != nil {
			d.logger.Debug("Could not read the agent's connection limit per client", "err", err)
		}
		return d.client.dc, self.DebugConfig.HTTPMaxConnsPerClient, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("retrieving datacenter name: %w", err)
	}
	if self.Config.Datacenter == "" {
		return "", 0, errors.New("retrieving datacenter name: agent reported no datacenter in /v1/agent/self")
	}
	return self.Config.Datacenter, self.DebugConfig.HTTPMaxConnsPerClient, nil
}

// refresh reads the whole state once: every watched service's group,
// sorted by Source. Any failed read fails the whole refresh.
func (d *Discovery) refresh(ctx context.Context) ([]*targetgroup.Group, error) {
	dc, err := d.datacenter(ctx)
	if err != nil {
		return nil, d.failed(err)
	}
	cat, _, err := d.readCatalog(ctx, 0)
	if err != nil {
		return nil, d.failed(err)
	}
	var names []string
	for name, tags := range cat {
		if d.shouldWatch(name, tags) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	groups := make([]*targetgroup.Group, len(names))
	errs := make([]error, len(names))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(d.workers, len(names)) {
		wg.Go(func() {
			for i := range next {
				r, err := d.readService(ctx, d.client.reads, dc, names[i], 0, 0)
				groups[i], errs[i] = r.group, err
			}
		})
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, d.failed(err)
		}
	}
	return groups, nil
}

// Run sends the complete state once every watched service has been read,
// then the groups that change. It never sends a partial state: failed
// reads keep the last good groups and are retried with backoff.
//
// Every failure to reach Consul is logged at warning level, at start as
// mid-run; the manager logs the spell of failures once, at its start and
// at its end.
func (d *Discovery) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	defer d.client.close()
	bo := d.newBackoff()
	var (
		dc    string
		limit int
	)
	for {
		var err error
		if dc, limit, err = d.agent(ctx); err == nil {
			break
		}
		d.logger.Warn("Error retrieving datacenter name", "err", d.failed(err))
		if !sleepCtx(ctx, bo.NextBackOff()) {
			return
		}
	}
	bo.Reset()
	var (
		cat   map[string][]string
		index uint64
	)
	for {
		var err error
		if cat, index, err = d.readCatalog(ctx, 0); err == nil {
			break
		}
		d.logger.Warn("Error reading the Consul catalog", "err", d.failed(err))
		if !sleepCtx(ctx, bo.NextBackOff()) {
			return
		}
	}
	streams, slots := d.client.useStreams(limit)
	switch {
	case streams && slots == 0:
		d.logger.Debug("Consul speaks HTTP/2: one blocking query per service")
	case streams:
		d.logger.Debug("A blocking query per service, one connection each, up to the slots the agent's connection limit leaves", "slots", slots, "http_max_conns_per_client", limit)
	}
	w := newWatcher(d, dc, cat, index, streams)
	w.slots = slots
	if streams {
		w.catalogPace.Store(int64(d.listPace()))
	}
	w.run(ctx, up)
}

// listPace is the least time between two answers of the catalog detector
// while streams cover every service: --consul.service-list-interval when
// set, else the entry's refresh_interval, which is what the interval means
// to Prometheus's consul SD ("the time after which the provided names are
// refreshed"). There the list only names new services (a stream sees its
// service's tags change and its last instance go), but Consul wakes its
// blocking query on every write to the services table and builds the whole
// list again for each answer: 39-56 ms of the agent's CPU on 5,000
// services of 10 instances, and under 2 changes/s on 2,500 nodes 48% of
// the agent's CPU when paced at 1.5 s (bench/consul -profile). The pace
// follows an answer with news only: a service registered after a quiet
// spell is seen at once, one registered while the catalog changes within
// the pace.
func (d *Discovery) listPace() time.Duration {
	if d.listInterval > 0 {
		return d.listInterval
	}
	return d.floor
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
