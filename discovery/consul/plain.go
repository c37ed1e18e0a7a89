package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// The plain watch covers the services that have no stream of its own: all
// of them over HTTP/1.1, where each blocking query holds a connection.
//
//   - The checks detectors, blocking queries on the critical checks and on
//     the warning ones, name the services whose health changed. Consul
//     indexes checks by status, so each answer costs it the few checks in
//     that state, not every check (as a filter on all checks would).
//   - The nodes detector (which runs over HTTP/2 too) gives a node's new
//     address, metadata and tagged addresses, which are patched into the
//     groups of the services on it without reading them.
//   - The catalog detector, whose blocking query on the service list
//     returns on every write to the services table, starts a probe round
//     each time it returns, as does the nodes detector.
//   - A probe round reads each node's own index with a query that returns
//     no instances (GET /v1/catalog/node-services/<node> with a filter
//     nothing matches). Consul moves a node's index whenever the node or
//     one of its service instances is written, but not on check changes.
//     For each node whose index moved, one read of its instances, compared
//     with the ModifyIndex of each instance seen before, names exactly the
//     services that gained, lost or re-registered an instance, with or
//     without checks.
//
// The workers then re-read the named services.

type eventKind int

const (
	evCatalog eventKind = iota
	evCritical
	evWarning
	evNodes
)

func kindName(k eventKind) string {
	return [...]string{"catalog", "critical checks", "warning checks", "nodes"}[k]
}

// checkStates are the states the checks detectors watch, by detector.
var checkStates = map[eventKind]string{evCritical: api.HealthCritical, evWarning: api.HealthWarning}

// event is a detector's news: a new answer, an error, or its recovery.
type event struct {
	kind      eventKind
	index     uint64
	baseline  bool // the first answer of a detector started without an index
	reset     bool // the index went backwards
	err       error
	recovered bool
	catalog   map[string][]string
	checks    []check
	nodes     []nodeRow
}

// check is the part of a health check the watch uses.
type check struct {
	Node, CheckID, ServiceName, Status string
	ModifyIndex                        uint64
}

type checkKey struct{ node, id string }

type checkInfo struct {
	modify  uint64
	service string
}

// nodeRow is the part of a node the watch uses.
type nodeRow struct {
	entryNode
	ModifyIndex uint64
}

// notPassing selects the checks that are not passing: few, in a healthy
// catalog, so the checks detector's answers stay small however many checks
// there are.
const notPassing = `Status != "passing"`

// matchNothing is a node-services filter no instance matches: the answer
// carries only the node and its index.
const matchNothing = `ID == "" and ID != ""`

// readChecks lists the checks in a state (GET /v1/health/state/<state>).
// Its index is the whole checks table's; its blocking query wakes when a
// check enters, leaves or changes in that state.
func (d *Discovery) readChecks(ctx context.Context, state string, index uint64) ([]check, uint64, error) {
	var out []check
	start := time.Now()
	idx, err := d.client.get(ctx, d.client.reads, query{path: "/v1/health/state/" + state, params: d.nodeMetaParams(url.Values{}), index: index, wait: d.wait, timeout: d.timeout(index)},
		func(b []byte) error { return json.Unmarshal(b, &out) })
	d.metrics.detectDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s health checks: %w", state, err)
	}
	return out, idx, nil
}

// readNodes lists the nodes (GET /v1/catalog/nodes).
func (d *Discovery) readNodes(ctx context.Context, index uint64) ([]nodeRow, uint64, error) {
	var out []nodeRow
	start := time.Now()
	idx, err := d.client.get(ctx, d.client.reads, query{path: "/v1/catalog/nodes", params: d.nodeMetaParams(url.Values{}), index: index, wait: d.wait, timeout: d.timeout(index)},
		func(b []byte) error { return json.Unmarshal(b, &out) })
	d.metrics.nodesDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, 0, fmt.Errorf("reading nodes: %w", err)
	}
	return out, idx, nil
}

// probeNode reads a node's index (GET /v1/catalog/node-services/<node>
// with a filter that matches nothing).
func (d *Discovery) probeNode(ctx context.Context, node string) (uint64, error) {
	start := time.Now()
	idx, err := d.client.get(ctx, d.client.reads, query{path: "/v1/catalog/node-services/" + url.PathEscape(node),
		params: url.Values{"filter": {matchNothing}}, timeout: d.readTimeout}, nil)
	d.metrics.nodeDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return 0, fmt.Errorf("probing node %q: %w", node, err)
	}
	return idx, nil
}

// readNode lists a node's service instances (GET
// /v1/catalog/node-services/<node>): service, ID and ModifyIndex.
func (d *Discovery) readNode(ctx context.Context, node string) ([]instRef, uint64, error) {
	var out struct {
		Services []struct {
			ID, Service string
			ModifyIndex uint64
		}
	}
	start := time.Now()
	idx, err := d.client.get(ctx, d.client.reads, query{path: "/v1/catalog/node-services/" + url.PathEscape(node), timeout: d.readTimeout},
		func(b []byte) error { return json.Unmarshal(b, &out) })
	d.metrics.nodeDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, 0, fmt.Errorf("reading node %q: %w", node, err)
	}
	insts := make([]instRef, len(out.Services))
	for i, s := range out.Services {
		insts[i] = instRef{node: node, id: s.ID, service: s.Service, modify: s.ModifyIndex}
	}
	return insts, idx, nil
}

// startDetector runs one detector in its own goroutine: a blocking query
// re-issued whenever it returns, at most once per detectFloor after a
// change and once per refresh_interval after an answer without one, with
// backoff on errors. Index 0 makes its first answer a baseline.
func (w *watcher) startDetector(ctx context.Context, kind eventKind, index uint64) {
	d := w.d
	fetch := map[eventKind]func(context.Context, uint64) (event, uint64, error){
		evCatalog: func(ctx context.Context, idx uint64) (event, uint64, error) {
			c, i, err := d.readCatalog(ctx, idx)
			return event{catalog: c}, i, err
		},
		evCritical: func(ctx context.Context, idx uint64) (event, uint64, error) {
			c, i, err := d.readChecks(ctx, api.HealthCritical, idx)
			return event{checks: c}, i, err
		},
		evWarning: func(ctx context.Context, idx uint64) (event, uint64, error) {
			c, i, err := d.readChecks(ctx, api.HealthWarning, idx)
			return event{checks: c}, i, err
		},
		evNodes: func(ctx context.Context, idx uint64) (event, uint64, error) {
			n, i, err := d.readNodes(ctx, idx)
			return event{nodes: n}, i, err
		},
	}[kind]
	pace := func() time.Duration { return 0 }
	if kind == evCatalog {
		pace = func() time.Duration { return time.Duration(w.catalogPace.Load()) }
	}
	w.wg.Go(func() { d.detect(ctx, w.events, kind, index, fetch, pace) })
}

// detect runs one detector. After an answer with news it waits
// d.detectFloor, or pace() if longer, before it asks again.
func (d *Discovery) detect(ctx context.Context, events chan<- event, kind eventKind, index uint64,
	fetch func(context.Context, uint64) (event, uint64, error), pace func() time.Duration,
) {
	send := func(ev event) bool {
		ev.kind = kind
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	bo := d.newBackoff()
	var next time.Time // no query before
	failing := false
	for {
		if !sleepCtx(ctx, time.Until(next)) {
			return
		}
		start := time.Now()
		d.metrics.watches.Inc()
		ev, idx, err := fetch(ctx, index)
		d.metrics.watches.Dec()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failing = true
			if !send(event{err: err}) {
				return
			}
			next = time.Now().Add(bo.NextBackOff())
			continue
		}
		bo.Reset()
		if idx == index {
			next = start.Add(d.floor) // the wait ended with no change
			if failing && !send(event{recovered: true}) {
				return
			}
			failing = false
			continue
		}
		ev.index, ev.baseline, ev.reset, ev.recovered = idx, index == 0, idx < index, failing
		failing = false
		index = idx
		if !send(ev) {
			return
		}
		next = time.Now().Add(max(d.detectFloor, pace()))
	}
}

func (w *watcher) onEvent(ctx context.Context, ev event) {
	if ev.err != nil {
		w.d.failed(ev.err)
		if !w.detectorsFailing[ev.kind] {
			w.d.logger.Warn("Error watching Consul", "detector", kindName(ev.kind), "err", ev.err)
		}
		w.detectorsFailing[ev.kind] = true
		return
	}
	if ev.recovered {
		delete(w.detectorsFailing, ev.kind)
	}
	if ev.index == 0 {
		return // a recovery without news
	}
	if ev.reset {
		w.d.logger.Info("Consul index went backwards, resyncing", "detector", kindName(ev.kind))
		if w.plain != nil {
			w.plain.nodeIdx, w.plain.baseIdx = map[string]uint64{}, 0
		}
		w.sweep()
	}
	switch ev.kind {
	case evCatalog:
		w.onCatalog(ctx, ev.catalog)
	case evCritical, evWarning:
		w.onChecks(ev)
	case evNodes:
		w.onNodes(ev)
	}
}

// plainWatch is the state of the plain watch.
type plainWatch struct {
	ready bool

	checks map[eventKind]map[checkKey]checkInfo // by detector: the checks in its state; nil before its baseline

	// nodeIdx is each node's index as of its last read; a node not in it
	// has not changed unless its index passed baseIdx, the node list's
	// index before the plain watch read any service.
	nodeIdx map[string]uint64
	baseIdx uint64
	// insts is what the watch knows of each node's instances: from its
	// last read, and from the services read since.
	insts map[string]map[string]instRef

	round struct {
		active, again bool
		at            time.Time // a round is due then; zero when none is
		last          time.Time // the last round started then
		pending       map[string]bool
		probed        map[string]uint64 // a node that changed -> its probed index
	}
}

func (p *plainWatch) caughtUp() bool {
	return p.ready && !p.round.active && !p.round.again && p.round.at.IsZero()
}

// enablePlain starts the plain watch: its checks detectors, whose first
// answers are its baseline with the nodes detector's. Services wait in
// awaiting until then.
func (w *watcher) enablePlain(ctx context.Context) {
	if w.plain != nil {
		return
	}
	w.plain = &plainWatch{checks: map[eventKind]map[checkKey]checkInfo{}, nodeIdx: map[string]uint64{}, insts: map[string]map[string]instRef{}}
	// The list's answers start the plain watch's probe rounds.
	w.catalogPace.Store(0)
	w.startDetector(ctx, evCritical, 0)
	w.startDetector(ctx, evWarning, 0)
}

func (w *watcher) maybeReady() {
	p := w.plain
	if p == nil || p.ready || len(p.checks) < len(checkStates) || !w.nodesReady {
		return
	}
	p.ready, p.baseIdx = true, w.nodesIndex
	for _, name := range slices.Sorted(maps.Keys(w.awaiting)) {
		delete(w.awaiting, name)
		if w.watched[name] && !w.isStreamed(name) {
			w.enqueue(job{jobService, name}, false)
		}
	}
}

func checkTable(cs []check) map[checkKey]checkInfo {
	t := make(map[checkKey]checkInfo, len(cs))
	for _, c := range cs {
		t[checkKey{c.Node, c.CheckID}] = checkInfo{modify: c.ModifyIndex, service: c.ServiceName}
	}
	return t
}

// onChecks diffs the checks in a detector's state: a check that appeared,
// vanished or changed names its service, or for a node check every
// service on the node.
func (w *watcher) onChecks(ev event) {
	p := w.plain
	table := checkTable(ev.checks)
	old, ok := p.checks[ev.kind]
	p.checks[ev.kind] = table
	if ev.baseline || !ok {
		w.maybeReady()
		return
	}
	for k, was := range old {
		if cur, ok := table[k]; !ok || cur.modify != was.modify {
			w.checkChanged(k.node, was.service)
		}
	}
	for k, cur := range table {
		if _, ok := old[k]; !ok {
			w.checkChanged(k.node, cur.service)
		}
	}
}

func (w *watcher) checkChanged(node, service string) {
	if service != "" {
		w.markDirty(service)
		return
	}
	for s := range w.nodeSvcs[node] {
		w.markDirty(s)
	}
}

// onNodes diffs the node list. The services on a node whose address,
// metadata or tagged addresses changed get their labels from the node's
// new row at once, without a read (unless health_filter, which may test
// the node, is set: then the plain watch reads them, and streams return
// anyway). The plain watch reads the services on a node that is gone (or
// no longer matches node_meta), and a probe round finds the instances of a
// new node.
func (w *watcher) onNodes(ev event) {
	table := make(map[string]nodeRow, len(ev.nodes))
	for _, n := range ev.nodes {
		table[n.Node] = n
	}
	if ev.baseline || !w.nodesReady {
		w.nodes, w.nodesIndex, w.nodesReady = table, ev.index, true
		w.maybeReady()
		return
	}
	for n, old := range w.nodes {
		cur, ok := table[n]
		if ok && cur.ModifyIndex == old.ModifyIndex {
			continue
		}
		for _, s := range slices.Sorted(maps.Keys(w.nodeSvcs[n])) {
			switch {
			case !ok || w.d.healthFilter != "":
				w.markDirty(s)
			case w.watched[s] && w.groups[s] != nil:
				w.setGroup(s, w.d.names.withNode(w.groups[s], &cur.entryNode))
			}
		}
		if !ok && w.plain != nil {
			delete(w.plain.nodeIdx, n)
			delete(w.plain.insts, n)
		}
	}
	w.nodes = table
	if w.plain != nil {
		w.requestRound()
	}
}

// withNewerNodes patches into g, read at index, the nodes the nodes
// detector has seen change since: an answer that started before a node
// changed must not undo the patch.
func (w *watcher) withNewerNodes(g *targetgroup.Group, index uint64) *targetgroup.Group {
	if w.d.healthFilter != "" {
		return g
	}
	var seen []string
	for _, t := range g.Targets {
		n := string(t[labelNode])
		if slices.Contains(seen, n) {
			continue
		}
		seen = append(seen, n)
		if row, ok := w.nodes[n]; ok && row.ModifyIndex > index {
			g = w.d.names.withNode(g, &row.entryNode)
		}
	}
	return g
}

// requestRound asks for a probe round: at once if none ran within
// detectFloor and the probe rate allows, else when they do; a round
// requested while one runs follows it.
func (w *watcher) requestRound() {
	p := w.plain
	if !p.ready {
		return // the baseline reads cover it
	}
	if p.round.active {
		p.round.again = true
		return
	}
	gap := max(w.d.detectFloor, time.Duration(float64(len(w.nodes))/w.d.probeRate*float64(time.Second)))
	at := p.round.last.Add(gap)
	if now := time.Now(); at.Before(now) {
		at = now
	}
	if p.round.at.IsZero() || at.Before(p.round.at) {
		p.round.at = at
	}
}

func (w *watcher) startRound() {
	p := w.plain
	p.round.at, p.round.last, p.round.active = time.Time{}, time.Now(), true
	p.round.pending, p.round.probed = map[string]bool{}, map[string]uint64{}
	for _, n := range slices.Sorted(maps.Keys(w.nodes)) {
		p.round.pending[n] = true
		w.enqueue(job{jobProbe, n}, false)
	}
	w.finishRound()
}

// finishRound ends the round once every probe and node read is done.
func (w *watcher) finishRound() {
	p := w.plain
	if !p.round.active || len(p.round.pending) > 0 {
		return
	}
	p.round.active = false
	if p.round.again {
		p.round.again = false
		w.requestRound()
	}
}

func (w *watcher) onProbe(r result) {
	p := w.plain
	if !p.round.pending[r.name] {
		return
	}
	if r.err != nil {
		w.fail(r.job, r.err, "Error probing node", "node", r.name)
		return
	}
	delete(w.failures, r.job)
	known, ok := p.nodeIdx[r.name]
	if ok && r.index != known || !ok && r.index > p.baseIdx {
		p.round.probed[r.name] = r.index
		w.enqueue(job{jobNode, r.name}, false)
		return
	}
	delete(p.round.pending, r.name)
	w.finishRound()
}

// onNodeRead compares a node's instances with what the watch knew of them:
// an instance that is new, gone or modified names its service.
func (w *watcher) onNodeRead(r result) {
	p := w.plain
	if !p.round.pending[r.name] {
		return
	}
	if r.err != nil {
		w.fail(r.job, r.err, "Error reading node", "node", r.name)
		return
	}
	delete(w.failures, r.job)
	known := p.insts[r.name]
	cur := make(map[string]instRef, len(r.insts))
	for _, in := range r.insts {
		cur[in.id] = in
		if old, ok := known[in.id]; !ok || old.modify != in.modify || old.service != in.service {
			w.markDirty(in.service)
			if ok && old.service != in.service {
				w.markDirty(old.service)
			}
		}
	}
	for id, old := range known {
		if _, ok := cur[id]; !ok {
			w.markDirty(old.service)
		}
	}
	p.insts[r.name] = cur
	p.nodeIdx[r.name] = max(r.index, p.round.probed[r.name])
	delete(p.round.pending, r.name)
	w.finishRound()
}

// learn records the instances a service read found, for the node reads to
// compare with.
func (w *watcher) learn(insts []instRef) {
	if w.plain == nil {
		return
	}
	for _, in := range insts {
		m := w.plain.insts[in.node]
		if m == nil {
			m = map[string]instRef{}
			w.plain.insts[in.node] = m
		}
		if old, ok := m[in.id]; !ok || old.modify < in.modify {
			m[in.id] = in
		}
	}
}
