package consul

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// The watch. One coordinator goroutine owns the state; around it:
//
//   - the catalog detector, a blocking query on the service list, which
//     names services that appear, go or change tags;
//   - the nodes detector, a blocking query on the node list, whose
//     changes are patched into the groups of the services on the node
//     (plain.go);
//   - over HTTP/2, one stream per service (stream.go), a blocking query on
//     the service's instances that returns with its new state;
//   - for the services without a stream of their own (all of them over
//     HTTP/1.1), the plain watch (plain.go): two more detectors and probe
//     rounds name the services that changed, and a fixed pool of workers
//     re-reads them.
//
// Nothing is sent before every watched service has been read once; after
// that, only groups that changed.

// jobKind is what a worker does.
type jobKind uint8

const (
	jobService jobKind = iota // read a service's instances
	jobProbe                  // read a node's index (plain.go)
	jobNode                   // read a node's service instances (plain.go)
)

type job struct {
	kind jobKind
	name string // service or node
}

// task is a job handed to a worker, with the hash of the service's last
// body: an unchanged body is not decoded again.
type task struct {
	job
	hash uint64
}

type result struct {
	job
	read  serviceRead // jobService
	index uint64      // jobProbe, jobNode
	insts []instRef   // jobNode
	err   error
}

type watcher struct {
	d  *Discovery
	dc string
	wg sync.WaitGroup // every goroutine the watch starts

	events   chan event
	results  chan result
	streamed chan streamResult
	jobs     chan task

	catalog      map[string][]string // every listed service and its tags
	catalogIndex uint64              // of the list the watch started from
	watched      map[string]bool
	groups       map[string]*targetgroup.Group // the state sent, by service
	hashes       map[string]uint64             // hash of the body each group was decoded from
	complete     bool                          // the full state was sent

	streaming bool // a stream per service, as far as slots allow
	slots     int  // HTTP/1.1: the most streams at once; 0: no count (HTTP/2)
	// catalogPace: the least time between the catalog detector's answers
	// while the plain watch does not run (see listPace); 0 once it does.
	catalogPace atomic.Int64
	streams     map[string]context.CancelFunc // running streams
	firstReads  chan struct{}                 // see firstReads
	// started is closed once the watch was first complete (or
	// d.startGrace after it began): the streams' blocking queries wait for
	// it. See stream.
	started     chan struct{}
	markStarted func()
	refused     map[string]bool // streams without a connection: the plain watch covers them
	failing     map[string]bool // streams whose last query failed
	ignore      map[string]bool // a worker's read to drop: the stream is newer

	plain    *plainWatch     // nil while every service has a stream
	awaiting map[string]bool // services to read once the plain watch is ready

	nodes      map[string]nodeRow // the node list, from the nodes detector
	nodesIndex uint64             // its index at the baseline
	nodesReady bool

	// The read queue: change-driven jobs before sweeps.
	prio, low []job
	queued    map[job]bool
	inflight  map[job]bool
	redo      map[string]bool // changed again while being read
	scheduled map[job]time.Time
	nextDue   time.Time // earliest of scheduled; zero when none
	failures  map[job]*backoff.ExponentialBackOff
	budgets   map[string]*changeBudget
	lastSweep time.Time

	svcNodes map[string][]string
	nodeSvcs map[string]map[string]bool

	detectorsFailing map[eventKind]bool

	// batch holds the groups not yet sent, at most one per Source
	// (pending is its index), in the order they changed.
	batch   []*targetgroup.Group
	pending map[string]int
	synced  bool
}

func newWatcher(d *Discovery, dc string, cat map[string][]string, catIndex uint64, streaming bool) *watcher {
	w := &watcher{
		d: d, dc: dc,
		events:           make(chan event),
		results:          make(chan result),
		streamed:         make(chan streamResult),
		jobs:             make(chan task),
		catalog:          cat,
		watched:          map[string]bool{},
		groups:           map[string]*targetgroup.Group{},
		hashes:           map[string]uint64{},
		streaming:        streaming,
		streams:          map[string]context.CancelFunc{},
		firstReads:       make(chan struct{}, firstReads),
		started:          make(chan struct{}),
		refused:          map[string]bool{},
		failing:          map[string]bool{},
		ignore:           map[string]bool{},
		awaiting:         map[string]bool{},
		queued:           map[job]bool{},
		inflight:         map[job]bool{},
		redo:             map[string]bool{},
		scheduled:        map[job]time.Time{},
		failures:         map[job]*backoff.ExponentialBackOff{},
		budgets:          map[string]*changeBudget{},
		svcNodes:         map[string][]string{},
		nodeSvcs:         map[string]map[string]bool{},
		detectorsFailing: map[eventKind]bool{},
		pending:          map[string]int{},
	}
	for name, tags := range cat {
		if d.shouldWatch(name, tags) {
			w.watched[name] = true
		}
	}
	w.catalogIndex = catIndex
	w.markStarted = sync.OnceFunc(func() { close(w.started) })
	return w
}

func (w *watcher) run(ctx context.Context, up chan<- []*targetgroup.Group) {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		w.wg.Wait()
	}()
	d := w.d
	grace := time.AfterFunc(d.startGrace, w.markStarted)
	defer grace.Stop()
	w.startDetector(ctx, evCatalog, w.catalogIndex)
	w.startDetector(ctx, evNodes, 0)
	for range d.workers {
		w.wg.Go(func() { w.work(ctx) })
	}
	for _, name := range slices.Sorted(maps.Keys(w.watched)) {
		w.watch(ctx, name)
	}
	w.checkComplete()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var (
			jobs   chan task
			next   task
			sendCh chan<- []*targetgroup.Group
		)
		if j, ok := w.peek(); ok {
			jobs, next = w.jobs, task{job: j, hash: w.hashes[j.name]}
			if j.kind != jobService {
				next.hash = 0
			}
		}
		if len(w.batch) > 0 {
			sendCh = up
		}
		w.reportHealth()
		timer.Reset(w.untilDue(time.Now()))
		select {
		case <-ctx.Done():
			return
		case ev := <-w.events:
			w.onEvent(ctx, ev)
		case r := <-w.results:
			w.onResult(r)
		case r := <-w.streamed:
			w.onStream(ctx, r)
		case jobs <- next:
			w.dispatched(next.job)
		case sendCh <- w.batch:
			w.pending, w.batch = map[string]int{}, nil
		case <-timer.C:
			w.promoteDue(time.Now())
		}
	}
}

// work is a worker: it runs the jobs the coordinator hands it.
func (w *watcher) work(ctx context.Context) {
	d := w.d
	for {
		var t task
		select {
		case t = <-w.jobs:
		case <-ctx.Done():
			return
		}
		r := result{job: t.job}
		switch t.kind {
		case jobService:
			r.read, r.err = d.readService(ctx, d.client.reads, w.dc, t.name, 0, t.hash)
		case jobProbe:
			r.index, r.err = d.probeNode(ctx, t.name)
		case jobNode:
			r.insts, r.index, r.err = d.readNode(ctx, t.name)
		}
		select {
		case w.results <- r:
		case <-ctx.Done():
			return
		}
	}
}

// watch starts watching a service that is new to the watch.
func (w *watcher) watch(ctx context.Context, name string) {
	if w.streaming && (w.slots == 0 || len(w.streams) < w.slots) {
		w.startStream(ctx, name)
		return
	}
	w.needRead(ctx, name)
}

// needRead has the plain watch read and then cover a service that has no
// stream of its own.
func (w *watcher) needRead(ctx context.Context, name string) {
	w.enablePlain(ctx)
	if !w.plain.ready {
		w.awaiting[name] = true
		return
	}
	w.enqueue(job{jobService, name}, false)
}

// streamed reports whether a stream of its own covers the service.
func (w *watcher) isStreamed(name string) bool {
	return w.streams[name] != nil && !w.refused[name]
}

// checkComplete sends the full state once every watched service has been
// read.
func (w *watcher) checkComplete() {
	if w.complete || len(w.groups) < len(w.watched) {
		return
	}
	w.complete = true
	w.markStarted()
	full := make([]*targetgroup.Group, 0, len(w.groups))
	for _, name := range slices.Sorted(maps.Keys(w.groups)) {
		full = append(full, w.groups[name])
	}
	if len(full) == 0 {
		full = []*targetgroup.Group{{}}
	}
	w.batch, w.pending = full, map[string]int{}
}

// onCatalog applies a new service list: new services are watched, gone
// ones are sent as empty groups, and a service whose tags changed is read
// again (a stream sees that by itself).
func (w *watcher) onCatalog(ctx context.Context, cat map[string][]string) {
	for name, tags := range cat {
		if !w.d.shouldWatch(name, tags) {
			continue
		}
		if !w.watched[name] {
			w.watched[name] = true
			w.watch(ctx, name)
		} else if !slices.Equal(sortedStrings(w.catalog[name]), sortedStrings(tags)) {
			w.markDirty(name)
		}
	}
	for name := range w.watched {
		if tags, ok := cat[name]; !ok || !w.d.shouldWatch(name, tags) {
			w.forget(name)
		}
	}
	w.catalog = cat
	w.checkComplete()
	if w.plain != nil {
		// The list's blocking query returns on every write to the
		// services table, which the probes then locate.
		w.requestRound()
	}
}

func (w *watcher) forget(name string) {
	if cancel := w.streams[name]; cancel != nil {
		cancel()
	}
	delete(w.streams, name)
	delete(w.refused, name)
	delete(w.failing, name)
	delete(w.awaiting, name)
	delete(w.watched, name)
	delete(w.groups, name)
	delete(w.hashes, name)
	delete(w.budgets, name)
	delete(w.redo, name)
	j := job{jobService, name}
	delete(w.queued, j)
	delete(w.scheduled, j)
	delete(w.failures, j)
	w.indexNodes(name, nil)
	if w.complete {
		w.queueSend(&targetgroup.Group{Source: name})
	}
}

// setGroup records a service's new group and queues it for sending if it
// differs from the last one.
func (w *watcher) setGroup(name string, g *targetgroup.Group) {
	if old := w.groups[name]; old != nil && groupsEqual(old, g) {
		return
	}
	w.groups[name] = g
	w.indexNodes(name, g)
	if w.complete {
		w.queueSend(g)
		return
	}
	w.checkComplete()
}

func (w *watcher) onResult(r result) {
	delete(w.inflight, r.job)
	switch r.kind {
	case jobService:
		w.onRead(r)
	case jobProbe:
		w.onProbe(r)
	case jobNode:
		w.onNodeRead(r)
	}
}

func (w *watcher) onRead(r result) {
	name := r.name
	if w.ignore[name] {
		delete(w.ignore, name)
		return // the service's stream delivered since
	}
	if !w.watched[name] {
		return // removed while it was being read
	}
	if r.err != nil {
		w.fail(r.job, r.err, "Error reading service", "service", name)
		return
	}
	delete(w.failures, r.job)
	if !r.read.same {
		w.hashes[name] = r.read.hash
		w.setGroup(name, w.withNewerNodes(r.read.group, r.read.index))
		w.learn(r.read.insts)
	}
	if w.redo[name] {
		delete(w.redo, name)
		w.markDirty(name)
	}
}

// caughtUp reports whether everything sent reflects Consul as of now, as
// far as the watch knows.
func (w *watcher) caughtUp() bool {
	return w.complete && len(w.batch) == 0 && len(w.queued) == 0 && len(w.inflight) == 0 &&
		len(w.scheduled) == 0 && len(w.failures) == 0 && len(w.failing) == 0 &&
		len(w.detectorsFailing) == 0 && len(w.awaiting) == 0 && (w.plain == nil || w.plain.caughtUp())
}

// reportHealth tells the manager each time the watch catches up.
func (w *watcher) reportHealth() {
	if !w.caughtUp() {
		w.synced = false
		return
	}
	if !w.synced {
		w.synced = true
		w.d.health.Synced()
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
	var nodes []string
	for _, t := range g.Targets {
		n := string(t[model.LabelName(labelNode)])
		if slices.Contains(nodes, n) {
			continue
		}
		nodes = append(nodes, n)
		if w.nodeSvcs[n] == nil {
			w.nodeSvcs[n] = map[string]bool{}
		}
		w.nodeSvcs[n][name] = true
	}
	if len(nodes) > 0 {
		w.svcNodes[name] = nodes
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

// groupsEqual compares two groups of one service: the same labels and the
// same targets in the same order (Consul lists instances in a stable
// order).
func groupsEqual(a, b *targetgroup.Group) bool {
	if a.Source != b.Source || !a.Labels.Equal(b.Labels) || len(a.Targets) != len(b.Targets) {
		return false
	}
	for i := range a.Targets {
		if !a.Targets[i].Equal(b.Targets[i]) {
			return false
		}
	}
	return true
}

func sortedStrings(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
