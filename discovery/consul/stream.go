package consul

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"time"
)

// Over HTTP/2, every watched service has a stream: a blocking query on its
// instances (GET /v1/health/service/<name>?index=...), as Prometheus holds
// one, but multiplexed with up to 250 others on one connection of the
// streams pool. Consul returns such a query as soon as anything in the
// service's answer changes: an instance, a check, the node of an instance.
// The answer is the service's new state, so no other read is needed.
//
// When every connection of the pool carries as many streams as the agent
// allows, a stream's query is refused before it is sent (errConnLimit), or
// by the agent (429, its limit per client): the plain watch then covers
// that service, and the stream keeps trying with backoff until a
// connection has room again.

// tooManyConns reports whether the agent refused a connection for its
// limit per client (429). Over HTTP/1.1 other clients on the same address,
// or other consul_sd_configs entries of this hub, may hold what the slots
// counted on: the stream is refused as when the pool is full, and the
// plain watch covers the service meanwhile.
func tooManyConns(err error) bool {
	var st *errStatus
	return errors.As(err, &st) && st.code == http.StatusTooManyRequests
}

// streamResult is a stream's news.
type streamResult struct {
	name    string
	read    serviceRead // read.same: no new state, only a recovery
	err     error
	refused bool
}

func (w *watcher) startStream(ctx context.Context, name string) {
	ctx, cancel := context.WithCancel(ctx)
	w.streams[name] = cancel
	w.wg.Go(func() { w.d.stream(ctx, w.dc, name, w.firstReads, w.started, w.streamed) })
}

// firstReads bounds the streams' first reads in flight at once (the only
// reads that do not block): thousands of streams starting together would
// otherwise ask Consul for every service at the same moment. (On the
// benchmark's 5,000 services, 64 took 7.3 s to complete, 256 6.2 s, 1,024
// 6.0 s: the agent's CPU is the limit past 256.)
const firstReads = 256

// stream runs one service's stream until ctx ends. Its first query (from
// index 1, or a plain read while the client catches up: streamIndex) takes
// a slot of first. Its blocking queries wait for started, so that at start
// every service's first answer goes before them and the watch is complete
// sooner; after a plain read the first blocking query is what makes Consul
// build the service's view, which costs the agent about what a read does
// (a change meanwhile is not missed: the blocking query asks from the first
// answer's index). A service that cannot be read must not hold back the
// others' changes for long: started is also closed after d.startGrace.
func (d *Discovery) stream(ctx context.Context, dc, name string, first chan struct{}, started <-chan struct{}, out chan<- streamResult) {
	send := func(r streamResult) bool {
		r.name = name
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var (
		index, hash     uint64
		budget          changeBudget
		failing, refuse bool
		wait            time.Duration // before the next query
	)
	bo := d.newBackoff()
	for {
		if !sleepCtx(ctx, wait) {
			return
		}
		if index > 0 && started != nil {
			select {
			case <-started:
				started = nil
			case <-ctx.Done():
				return
			}
		}
		if index == 0 {
			select {
			case first <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		start := time.Now()
		d.metrics.watches.Inc()
		r, err := d.readService(ctx, d.client.streams, dc, name, d.streamIndex(index), hash)
		d.metrics.watches.Dec()
		if index == 0 {
			<-first
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			refused := errors.Is(err, errConnLimit) || tooManyConns(err)
			// Each error is reported; a refusal only when it begins (it
			// is no fault of Consul's, and costs no request).
			if (!refused || !refuse) && !send(streamResult{err: err, refused: refused}) {
				return
			}
			failing, refuse = !refused, refused
			if refused {
				hash = 0 // the plain watch may have read another state meanwhile
			}
			wait = bo.NextBackOff()
			continue
		}
		bo.Reset()
		recovered := failing || refuse
		failing, refuse = false, false
		if r.index == index {
			wait = time.Until(start.Add(d.floor)) // the wait ended with no change
			if recovered && !send(streamResult{read: serviceRead{same: true}}) {
				return
			}
			continue
		}
		index = r.index
		now := time.Now()
		budget.take(now, d.floor)
		wait = budget.due(now, d.detectFloor, d.floor).Sub(now)
		if r.same && !recovered {
			continue
		}
		hash = r.hash
		if !send(streamResult{read: r}) {
			return
		}
	}
}

// streamIndex is the index a stream's query asks from. Consul answers a
// blocking query on a service's instances from its streaming backend, which
// builds a view of the service first; a plain read (no index) is answered
// from the state store instead, so a stream that began with a plain read
// cost the agent a read and then, at its first blocking query, the view.
// The first query asks from index 1, which the view answers at once with
// its own index, and the stream blocks from there: one answer per service
// at start (TestStreamsStartFromTheView). A plain read stays first while
// the client is catching up with a restarted server (client.get): only a
// read without an index catches up, and a blocking query from index 1
// would take a server's state before it has applied its log.
func (d *Discovery) streamIndex(index uint64) uint64 {
	if index == 0 && !d.client.catchUp.Load() {
		return 1
	}
	return index
}

func (w *watcher) onStream(ctx context.Context, r streamResult) {
	name := r.name
	if !w.watched[name] || w.streams[name] == nil {
		return // forgotten meanwhile
	}
	switch {
	case r.refused && w.slots > 0 && tooManyConns(r.err):
		w.dropStreams(ctx)
	case r.refused:
		if !w.refused[name] {
			w.refused[name] = true
			w.d.logger.Debug("No connection left for a stream of this service, watching it with the catalog", "service", name)
			w.needRead(ctx, name)
		}
	case r.err != nil:
		w.d.failed(r.err)
		if len(w.failing) == 0 {
			w.d.logger.Warn("Error watching service", "service", name, "err", r.err)
		} else {
			w.d.logger.Debug("Error watching service", "service", name, "err", r.err)
		}
		w.failing[name] = true
	default:
		delete(w.failing, name)
		if w.refused[name] {
			delete(w.refused, name)
			delete(w.awaiting, name)
			j := job{jobService, name}
			delete(w.queued, j)
			delete(w.scheduled, j)
			delete(w.failures, j)
			delete(w.redo, name)
			if w.inflight[j] {
				w.ignore[name] = true
			}
		}
		if !r.read.same {
			w.hashes[name] = r.read.hash
			w.setGroup(name, w.withNewerNodes(r.read.group, r.read.index))
		}
	}
}

// dropStreams ends every stream and hands their services to the plain
// watch, for good. Over HTTP/1.1 the agent refused a stream's connection
// (429): other clients on the address hold what the slots counted on, and
// streams holding connections would starve the plain watch's detectors and
// reads, whose connections the agent refuses too. The plain watch alone
// keeps within max_connections, as it did before the slots.
func (w *watcher) dropStreams(ctx context.Context) {
	w.d.logger.Warn("The Consul agent refused a connection for its limit per client (429): every service is watched with the catalog-wide watch from now on", "streams", len(w.streams))
	names := slices.Sorted(maps.Keys(w.streams))
	for _, name := range names {
		w.streams[name]()
		delete(w.streams, name)
		delete(w.failing, name)
	}
	w.streaming, w.slots = false, 0
	w.d.client.streams.http.CloseIdleConnections()
	for _, name := range names {
		if w.refused[name] {
			delete(w.refused, name) // covered already
			continue
		}
		w.needRead(ctx, name)
	}
}
