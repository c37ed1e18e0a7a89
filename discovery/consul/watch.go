package consul

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// The watch: three detectors hold one blocking query each (catalog
// services, health checks, nodes) and tell the coordinator what changed;
// a fixed pool of workers re-reads the services the coordinator picks.
// Only the coordinator goroutine touches the state.

type eventKind int

const (
	evCatalog eventKind = iota
	evChecks
	evNodes
)

type event struct {
	kind    eventKind
	index   uint64
	reset   bool // the index went backwards
	catalog map[string][]string
	checks  []check
	nodes   []*api.Node
}

type result struct {
	name   string
	group  *targetgroup.Group
	checks []check // for scanChecks
	err    error
}

// scanChecks is the worker job that lists every check, to find the
// services whose instances (with checks) were registered or removed.
const scanChecks = "\x00checks"

type watcher struct {
	d  *Discovery
	st *state

	events  chan event
	jobs    chan string
	results chan result

	prio, sweepQ []string        // queued reads; a name is live while queued[name]
	queued       map[string]bool // names waiting in prio or sweepQ
	scheduled    map[string]time.Time
	lastChange   map[string]time.Time // last change-driven read of a service
	failures     map[string]int
	inflight     map[string]bool
	redo         map[string]bool // changed again while being read

	sweepAt   time.Time // zero: no sweep pending
	lastSweep time.Time

	scanning, rescan bool // a scanChecks job is queued or running; run another after it

	svcNodes map[string][]string
	nodeSvcs map[string]map[string]bool

	// batch holds the groups not yet sent, at most one per Source
	// (pending is its index), in the order they changed.
	batch   []*targetgroup.Group
	pending map[string]int
}

func newWatcher(d *Discovery, st *state) *watcher {
	w := &watcher{
		d: d, st: st,
		events:     make(chan event),
		jobs:       make(chan string),
		results:    make(chan result),
		queued:     map[string]bool{},
		scheduled:  map[string]time.Time{},
		lastChange: map[string]time.Time{},
		failures:   map[string]int{},
		inflight:   map[string]bool{},
		redo:       map[string]bool{},
		svcNodes:   map[string][]string{},
		nodeSvcs:   map[string]map[string]bool{},
		pending:    map[string]int{},
	}
	for name, g := range st.groups {
		w.indexNodes(name, g)
	}
	return w
}

func (w *watcher) run(ctx context.Context, up chan<- []*targetgroup.Group) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	d := w.d
	wg.Go(func() {
		d.detect(ctx, w.events, evCatalog, w.st.catalogIndex, func(ctx context.Context, idx uint64) (event, uint64, error) {
			c, i, err := d.readCatalog(ctx, idx)
			return event{catalog: c}, i, err
		})
	})
	wg.Go(func() {
		d.detect(ctx, w.events, evChecks, w.st.checksIndex, func(ctx context.Context, idx uint64) (event, uint64, error) {
			c, i, err := d.readChecks(ctx, idx, notPassing)
			return event{checks: c}, i, err
		})
	})
	wg.Go(func() {
		d.detect(ctx, w.events, evNodes, w.st.nodesIndex, func(ctx context.Context, idx uint64) (event, uint64, error) {
			n, i, err := d.readNodes(ctx, idx)
			return event{nodes: n}, i, err
		})
	})
	for range d.workers {
		wg.Go(func() {
			for {
				var name string
				select {
				case name = <-w.jobs:
				case <-ctx.Done():
					return
				}
				r := result{name: name}
				if name == scanChecks {
					r.checks, _, r.err = d.readChecks(ctx, 0, "")
					if r.err != nil {
						d.metrics.rpcFailures.Inc()
					}
				} else {
					r.group, r.err = d.readService(ctx, w.st.dc, name)
				}
				select {
				case w.results <- r:
				case <-ctx.Done():
					return
				}
			}
		})
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var (
			jobs   chan string
			next   string
			sendCh chan<- []*targetgroup.Group
		)
		if n, ok := w.peek(); ok {
			jobs, next = w.jobs, n
		}
		if len(w.batch) > 0 {
			sendCh = up
		}
		timer.Reset(w.untilDue(time.Now()))
		select {
		case <-ctx.Done():
			return
		case ev := <-w.events:
			w.onEvent(ev)
		case r := <-w.results:
			w.onResult(r)
		case jobs <- next:
			w.dispatched(next)
		case sendCh <- w.batch:
			w.pending, w.batch = map[string]int{}, nil
		case <-timer.C:
			w.promoteDue(time.Now())
		}
	}
}

// detect runs one detector: a blocking query re-issued whenever it
// returns, at most once per detectFloor, with backoff on errors.
func (d *Discovery) detect(ctx context.Context, events chan<- event, kind eventKind, index uint64,
	fetch func(context.Context, uint64) (event, uint64, error),
) {
	var lastStart time.Time
	for failures := 0; ; {
		if !sleepCtx(ctx, time.Until(lastStart.Add(d.detectFloor))) {
			return
		}
		lastStart = time.Now()
		d.metrics.watches.Inc()
		ev, idx, err := fetch(ctx, index)
		d.metrics.watches.Dec()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.metrics.rpcFailures.Inc()
			d.logger.Warn("Error watching Consul", "detector", kindName(kind), "err", err)
			d.health.Failed(err)
			if !d.backoff(ctx, failures) {
				return
			}
			failures++
			continue
		}
		failures = 0
		d.health.Synced()
		if idx == index {
			continue // the wait ended with no change
		}
		ev.kind, ev.index, ev.reset = kind, idx, idx < index
		index = idx
		select {
		case events <- ev:
		case <-ctx.Done():
			return
		}
	}
}

func kindName(k eventKind) string {
	return [...]string{"catalog", "checks", "nodes"}[k]
}

func (w *watcher) onEvent(ev event) {
	if ev.reset {
		w.d.logger.Info("Consul index went backwards, resyncing", "detector", kindName(ev.kind))
		w.sweepAt = time.Now()
	}
	switch ev.kind {
	case evCatalog:
		w.onCatalog(ev.catalog)
		w.st.catalogIndex = ev.index
	case evChecks:
		table := checkTable(ev.checks)
		for k, old := range w.st.checks {
			if cur, ok := table[k]; !ok || cur.modify != old.modify {
				w.checkChanged(k.node, old.service)
			}
		}
		for k, cur := range table {
			if _, ok := w.st.checks[k]; !ok {
				w.checkChanged(k.node, cur.service)
			}
		}
		w.st.checks, w.st.checksIndex = table, ev.index
	case evNodes:
		table := nodeTable(ev.nodes)
		for n, old := range w.st.nodes {
			if cur, ok := table[n]; !ok || cur != old {
				for s := range w.nodeSvcs[n] {
					w.markDirty(s)
				}
			}
		}
		w.st.nodes, w.st.nodesIndex = table, ev.index
	}
}

// onCatalog applies a new service list: new and re-tagged services are
// read at once, gone ones are sent as empty groups, and since the list
// cannot say which existing service gained or lost instances, a sweep is
// requested (at most one per refresh_interval).
func (w *watcher) onCatalog(cat map[string][]string) {
	for name, tags := range cat {
		if !w.d.shouldWatch(name, tags) {
			continue
		}
		if !w.st.watched[name] || !slices.Equal(sortedStrings(w.st.catalog[name]), sortedStrings(tags)) {
			w.st.watched[name] = true
			w.markDirty(name)
		}
	}
	for name := range w.st.watched {
		if tags, ok := cat[name]; !ok || !w.d.shouldWatch(name, tags) {
			w.forget(name)
		}
	}
	w.st.catalog = cat
	w.requestScan()
	w.requestSweep()
}

// requestScan queues a listing of every check: the services table changed,
// and checks that appeared or vanished name the services that did.
func (w *watcher) requestScan() {
	if w.scanning {
		w.rescan = true
		return
	}
	w.scanning = true
	w.queued[scanChecks] = true
	w.prio = append(w.prio, scanChecks)
}

func (w *watcher) onScan(r result) {
	w.scanning = false
	if r.err != nil {
		w.d.logger.Warn("Error listing health checks", "err", r.err)
		w.d.health.Failed(r.err)
		return // the sweep requested with the scan covers it
	}
	table := allCheckTable(r.checks)
	for k, svc := range table {
		if _, ok := w.st.allChecks[k]; !ok {
			w.checkChanged(k.node, svc)
		}
	}
	for k, svc := range w.st.allChecks {
		if _, ok := table[k]; !ok {
			w.checkChanged(k.node, svc)
		}
	}
	w.st.allChecks = table
	if w.rescan {
		w.rescan = false
		w.requestScan()
	}
}

func (w *watcher) checkChanged(node, service string) {
	if service != "" {
		w.markDirty(service)
		return
	}
	for s := range w.nodeSvcs[node] { // a node check: every service on the node
		w.markDirty(s)
	}
}

func (w *watcher) forget(name string) {
	delete(w.st.watched, name)
	delete(w.st.groups, name)
	delete(w.queued, name)
	delete(w.scheduled, name)
	delete(w.lastChange, name)
	delete(w.failures, name)
	delete(w.redo, name)
	w.indexNodes(name, nil)
	w.queueSend(&targetgroup.Group{Source: name})
}

// markDirty queues a change-driven read of a watched service, at once
// unless it was read for a change less than refresh_interval ago.
func (w *watcher) markDirty(name string) {
	if !w.st.watched[name] {
		return
	}
	if w.inflight[name] {
		w.redo[name] = true
		return
	}
	due := w.lastChange[name].Add(w.d.floor)
	if now := time.Now(); due.After(now) {
		if at, ok := w.scheduled[name]; !ok || due.Before(at) {
			w.scheduled[name] = due
		}
		return
	}
	delete(w.scheduled, name)
	w.queued[name] = true
	w.prio = append(w.prio, name)
}

// requestSweep asks for every watched service to be re-read, no sooner
// than refresh_interval after the last sweep started.
func (w *watcher) requestSweep() {
	at := w.lastSweep.Add(w.d.floor)
	if now := time.Now(); at.Before(now) {
		at = now
	}
	if w.sweepAt.IsZero() || at.Before(w.sweepAt) {
		w.sweepAt = at
	}
}

func (w *watcher) startSweep(now time.Time) {
	w.sweepAt, w.lastSweep = time.Time{}, now
	for _, name := range slices.Sorted(maps.Keys(w.st.watched)) {
		if !w.queued[name] && !w.inflight[name] {
			w.queued[name] = true
			w.sweepQ = append(w.sweepQ, name)
		}
	}
}

// peek returns the next queued read: change-driven ones before the sweep.
func (w *watcher) peek() (string, bool) {
	for len(w.prio) > 0 && !w.queued[w.prio[0]] {
		w.prio = w.prio[1:]
	}
	if len(w.prio) > 0 {
		return w.prio[0], true
	}
	for len(w.sweepQ) > 0 && !w.queued[w.sweepQ[0]] {
		w.sweepQ = w.sweepQ[1:]
	}
	if len(w.sweepQ) > 0 {
		return w.sweepQ[0], true
	}
	return "", false
}

func (w *watcher) dispatched(name string) {
	if len(w.prio) > 0 && w.prio[0] == name {
		w.prio = w.prio[1:]
		w.lastChange[name] = time.Now()
	} else {
		w.sweepQ = w.sweepQ[1:]
	}
	delete(w.queued, name)
	w.inflight[name] = true
}

func (w *watcher) onResult(r result) {
	delete(w.inflight, r.name)
	if r.name == scanChecks {
		w.onScan(r)
		return
	}
	if !w.st.watched[r.name] {
		return // removed while it was being read
	}
	if r.err != nil {
		w.failures[r.name]++
		w.d.logger.Warn("Error refreshing service", "service", r.name, "err", r.err)
		w.d.health.Failed(r.err)
		w.scheduled[r.name] = time.Now().Add(w.d.backoffDelay(w.failures[r.name] - 1))
		return
	}
	delete(w.failures, r.name)
	if old := w.st.groups[r.name]; old == nil || !reflect.DeepEqual(old, r.group) {
		w.st.groups[r.name] = r.group
		w.indexNodes(r.name, r.group)
		w.queueSend(r.group)
	}
	if w.redo[r.name] {
		delete(w.redo, r.name)
		w.markDirty(r.name)
	}
}

// untilDue is how long until the next scheduled read or sweep.
func (w *watcher) untilDue(now time.Time) time.Duration {
	next := time.Hour
	if !w.sweepAt.IsZero() {
		next = min(next, w.sweepAt.Sub(now))
	}
	for _, at := range w.scheduled {
		next = min(next, at.Sub(now))
	}
	return max(next, 0)
}

func (w *watcher) promoteDue(now time.Time) {
	if !w.sweepAt.IsZero() && !w.sweepAt.After(now) {
		w.startSweep(now)
	}
	for name, at := range w.scheduled {
		if !at.After(now) {
			delete(w.scheduled, name)
			if w.st.watched[name] && !w.inflight[name] {
				w.queued[name] = true
				w.prio = append(w.prio, name)
			}
		}
	}
}

// indexNodes records which nodes a service has instances on, so that a
// node or node-check change re-reads exactly those services.
func (w *watcher) indexNodes(name string, g *targetgroup.Group) {
	for _, n := range w.svcNodes[name] {
		delete(w.nodeSvcs[n], name)
		if len(w.nodeSvcs[n]) == 0 {
			delete(w.nodeSvcs, n)
		}
	}
	delete(w.svcNodes, name)
	if g == nil {
		return
	}
	seen := map[string]bool{}
	for _, t := range g.Targets {
		n := string(t[model.LabelName(labelNode)])
		if seen[n] {
			continue
		}
		seen[n] = true
		w.svcNodes[name] = append(w.svcNodes[name], n)
		if w.nodeSvcs[n] == nil {
			w.nodeSvcs[n] = map[string]bool{}
		}
		w.nodeSvcs[n][name] = true
	}
}

// queueSend adds g to the next message, replacing an unsent group of the
// same Source.
func (w *watcher) queueSend(g *targetgroup.Group) {
	if i, ok := w.pending[g.Source]; ok {
		w.batch[i] = g
		return
	}
	w.pending[g.Source] = len(w.batch)
	w.batch = append(w.batch, g)
}
