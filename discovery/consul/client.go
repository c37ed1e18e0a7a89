package consul

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"

	"github.com/sdhub/sdhub/internal/filesecret"
)

// client speaks the few Consul HTTP endpoints sdhub needs. It is built from
// the config file alone: unlike the consul api library's NewClient, it reads
// no CONSUL_HTTP_* environment variables.
//
// It has two pools of connections, each an http.Client of its own with the
// file's HTTP settings, dialling through a gate that bounds its connections.
// reads carries the detectors, the reads and the probes. streams carries
// one blocking query per service, and is used only when useStreams says
// so: over HTTP/2 (Consul's HTTPS listener negotiates it) reads then keeps
// one connection and streams the rest; over HTTP/1.1, where a blocking
// query holds a connection, only when the agent allows enough connections
// per client for them (see streamSlots).
type client struct {
	reads, streams *pool
	conns          *connCount
	max            int  // max_connections, or its default
	auto           bool // max_connections was left to its default
	ep             endpoint
	token          string
	dc             string // configured datacenter; "" lets the agent pick its own
	namespace      string
	partition      string
	stale          bool
	http2          atomic.Bool // the agent answered over HTTP/2
	// catchUp: reads without an index are made consistent until one is
	// answered (at start, and after any failure that may be a server going
	// away). See get.
	catchUp     atomic.Bool
	catchUpGate chan struct{} // one catch-up read at a time
}

func newClient(c *SDConfig, maxConns int, gauge prometheus.Gauge) (*client, error) {
	ep, err := parseServer(c.Server, c.Scheme, c.PathPrefix)
	if err != nil {
		return nil, err
	}
	conns := &connCount{gauge: gauge}
	reads, err := newPool(c.HTTPClientConfig, newConnGate(maxConns, false, conns, ep.unixSocket))
	if err != nil {
		return nil, err
	}
	cl := &client{
		reads:     reads,
		conns:     conns,
		max:       maxConns,
		auto:      c.MaxConnections == 0,
		ep:        ep,
		token:     string(c.Token),
		dc:        c.Datacenter,
		namespace: c.Namespace,
		partition: c.Partition,
		stale:     c.AllowStale,
	}
	cl.catchUpGate = make(chan struct{}, 1)
	cl.catchUp.Store(true)
	if ep.unixSocket == "" {
		// Refuses to dial until useStreams.
		if cl.streams, err = newPool(c.HTTPClientConfig, newConnGate(0, true, conns, "")); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

// useStreams reports whether services get a stream of their own, and if
// so sets the pools up for them. Call it once, after the first request,
// before any request on streams. Over HTTP/2 it hands every connection but
// one to the streams pool, whose connections each carry up to 250 streams
// (slots is 0: a stream that finds no room is refused and retries). Over
// HTTP/1.1 slots is the number of streams, one connection each, that
// streamSlots allows; 0 streams means none.
func (c *client) useStreams(agentLimit int) (streams bool, slots int) {
	if c.streams == nil {
		return false, 0
	}
	if c.http2.Load() {
		c.reads.serial = make(chan struct{}, 1)
		c.streams.serial = make(chan struct{}, 1)
		open := c.reads.gate.setLimit(1)
		c.streams.gate.setLimit(c.max - max(open, 1))
		return true, 0
	}
	reads, slots := streamSlots(c.max, c.auto, agentLimit)
	if slots == 0 {
		return false, 0
	}
	c.reads.gate.setLimit(reads)
	c.streams.gate.setLimit(slots)
	return true, slots
}

// streamSlots divides the connections of an HTTP/1.1 discoverer between
// reads (the detectors, the reads and probes of the plain watch) and
// streams. With max_connections set, it is the bound of both together:
// reads keep up to DefaultMaxConnections and streams get the rest. Left
// to its default, the bound is half of what the agent allows one client
// (http_max_conns_per_client, 200 by default), so that other clients on
// the same address (a Prometheus still on its own consul SD, an exporter)
// keep the other half; an agent that does not say (an ACL token without
// agent:read) gets today's bound and no streams. Services beyond the
// slots are covered by the plain watch.
func streamSlots(maxConns int, auto bool, agentLimit int) (reads, slots int) {
	bound := maxConns
	if auto {
		if agentLimit <= 0 {
			return maxConns, 0
		}
		bound = agentLimit / 2
	}
	reads = min(maxConns, DefaultMaxConnections)
	return reads, max(0, bound-reads)
}

// pool is one http.Client and the gate its connections are dialled through.
type pool struct {
	http *http.Client
	gate *connGate
	// serial, when set (HTTP/2), lets one request at a time pick its
	// connection: it is held from the request's start until the transport
	// has reserved a stream on a connection (httptrace GotConn). Without
	// it, requests that find every connection full each dial one at the
	// same time, and all but one of those connections are closed again.
	serial chan struct{}
}

// newPool builds the pool's client. Its secret files (a TLS CA, a
// credentials file, ...) are read at most every filesecret.MaxAge, not on
// every request as prometheus/common would.
func newPool(hc config.HTTPClientConfig, gate *connGate) (*pool, error) {
	hc, secrets := filesecret.Config(hc)
	c, err := config.NewClientFromConfig(hc, "consul_sd",
		config.WithDialContextFunc(gate.dial), config.WithIdleConnTimeout(2*defaultWait), secrets)
	if err != nil {
		return nil, err
	}
	return &pool{http: c, gate: gate}, nil
}

// query is one GET. index > 0 makes it a blocking query waiting up to wait.
type query struct {
	path    string
	params  url.Values
	index   uint64
	wait    time.Duration
	timeout time.Duration // whole request, including the wait
	// streamed: a blocking query of this kind may be answered by Consul's
	// streaming backend, whose answers say X-Consul-KnownLeader: false
	// whatever the leader (Consul 1.20.6's /v1/health/service/<name>).
	streamed bool
}

// errStatus is a non-200 answer from Consul.
type errStatus struct {
	code int
	body string
}

func (e *errStatus) Error() string {
	return fmt.Sprintf("unexpected response code %d (%s)", e.code, e.body)
}

// errNoLeader is the error of an answer from a Consul server that knows no
// leader.
var errNoLeader = errors.New("the Consul server knows no leader (X-Consul-KnownLeader: false): its answer may miss what it has not restored yet")

// bodies are reused response buffers.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// get runs q on p and hands the body to use, valid only during the call
// (nil use discards it). It returns Consul's X-Consul-Index, never 0
// (consul-template's rule: 0 would make the next blocking query return at
// once, forever).
//
// A Consul server that has just restarted and won its election answers
// stale and default reads from its state store before it has applied the
// log it restored, with X-Consul-KnownLeader: true: a catalog that can miss
// any service registered since its last snapshot (the reliability suite's
// consul outage saw 8 of 20 services so under load, past the known-leader
// check below). Consul refuses consistent reads ("Not ready to serve
// consistent reads") until its leader has applied everything committed.
// So at start, and after a failure that may be the server going away,
// reads without an index catch up: one at a time, each consistent
// (`?consistent`, Consul's leader-verified mode), until one is answered;
// then the reads waiting behind it, and every later one, run in the
// configured mode (allow_stale). A recovery costs one leader-verified read.
// A blocking query needs none of this: a server behind its index holds it
// until it has caught up past that index.
func (c *client) get(ctx context.Context, p *pool, q query, use func(body []byte) error) (_ uint64, err error) {
	consistent := false
	if q.index == 0 && q.path != selfPath && c.catchUp.Load() {
		select {
		case c.catchUpGate <- struct{}{}:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		consistent = c.catchUp.Load()
		defer func() {
			if consistent && err == nil {
				c.catchUp.Store(false)
			}
			<-c.catchUpGate
		}()
	}
	defer func() {
		if err != nil && q.path != selfPath && serverFault(ctx, err) {
			c.catchUp.Store(true)
		}
	}()
	params := make(url.Values, len(q.params)+6)
	for k, v := range q.params {
		params[k] = v
	}
	if c.dc != "" {
		params.Set("dc", c.dc)
	}
	if consistent {
		params.Set("consistent", "")
	} else if c.stale {
		params.Set("stale", "")
	}
	if c.namespace != "" {
		params.Set("ns", c.namespace)
	}
	if c.partition != "" {
		params.Set("partition", c.partition)
	}
	if q.index > 0 {
		params.Set("index", strconv.FormatUint(q.index, 10))
		params.Set("wait", strconv.FormatInt(q.wait.Milliseconds(), 10)+"ms")
	}
	u := url.URL{Scheme: c.ep.scheme, Host: c.ep.host, Path: c.ep.pathPrefix + q.path, RawQuery: params.Encode()}

	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	if p.serial != nil {
		select {
		case p.serial <- struct{}{}:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		var once sync.Once
		release := func() { once.Do(func() { <-p.serial }) }
		defer release()
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { release() }})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	if c.token != "" {
		req.Header.Set("X-Consul-Token", c.token)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.ProtoMajor == 2 {
		c.http2.Store(true)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return 0, &errStatus{code: resp.StatusCode, body: string(b)}
	}
	// A server that knows no leader (one restarting, before its election)
	// answers stale reads from whatever state it has restored so far: a
	// catalog that can miss most of its services. Such an answer is an
	// error, so that the last complete targets stay. (Every watched
	// service's first read and the catalog's are checked so.)
	if resp.Header.Get("X-Consul-KnownLeader") == "false" && (!q.streamed || q.index == 0) {
		return 0, errNoLeader
	}
	idx, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	if err != nil && q.path != selfPath {
		return 0, fmt.Errorf("invalid X-Consul-Index %q from %s", resp.Header.Get("X-Consul-Index"), q.path)
	}
	buf := bodies.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 {
			buf.Reset()
			bodies.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return 0, fmt.Errorf("reading %s response: %w", q.path, err)
	}
	if use != nil {
		if err := use(buf.Bytes()); err != nil {
			return 0, fmt.Errorf("decoding %s response: %w", q.path, err)
		}
	}
	return max(idx, 1), nil
}

// serverFault reports whether err, a failed read, may come from the
// server going away or not being ready: anything but the caller's own
// cancellation, sdhub's own connection limit and a 4xx answer (a denied
// token, an unknown datacenter, a rate limit), which a restart does not
// cause.
func serverFault(ctx context.Context, err error) bool {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) || errors.Is(err, errConnLimit) || errors.Is(err, errGateClosed) {
		return false
	}
	var st *errStatus
	return !errors.As(err, &st) || st.code >= 500
}

// selfPath answers without an X-Consul-Index.
const selfPath = "/v1/agent/self"

// agentSelf is what sdhub reads of GET /v1/agent/self.
type agentSelf struct {
	Config struct{ Datacenter string }
	// DebugConfig.HTTPMaxConnsPerClient is the agent's
	// http_max_conns_per_client (limits.http_max_conns_per_client).
	DebugConfig struct{ HTTPMaxConnsPerClient int }
}

// self asks the agent for its datacenter and its connection limit per
// client (GET /v1/agent/self, which needs agent:read).
func (c *client) self(ctx context.Context, timeout time.Duration) (agentSelf, error) {
	var self agentSelf
	_, err := c.get(ctx, c.reads, query{path: selfPath, timeout: timeout}, func(b []byte) error {
		return json.Unmarshal(b, &self)
	})
	return self, err
}

// close closes every connection, idle or not, and any that a dial still
// under way opens: the transport finishes a dial whose request ended and
// keeps the connection for later.
func (c *client) close() {
	for _, p := range []*pool{c.reads, c.streams} {
		if p != nil {
			p.http.CloseIdleConnections()
			p.gate.shutdown()
		}
	}
}

// errConnLimit is the dial error of a full gate that does not wait: every
// connection the streams pool may hold carries as many requests as the
// agent allows on one (HTTP/2's concurrent streams, 250 on Consul).
var errConnLimit = errors.New("no connection left within max_connections for another blocking query")

// connCount counts the open connections of one client over its gates.
type connCount struct {
	open, peak atomic.Int64
	gauge      prometheus.Gauge
}

func (n *connCount) add(d int64) {
	v := n.open.Add(d)
	for p := n.peak.Load(); v > p && !n.peak.CompareAndSwap(p, v); p = n.peak.Load() {
	}
	n.gauge.Add(float64(d))
}

// connGate bounds the open TCP connections of one pool: a dial waits for a
// free slot (or its context), or with failFast fails at once with
// errConnLimit, and a slot is freed when the connection closes. The
// http.Transport reuses open connections, so requests queue behind the
// bound instead of failing.
type connGate struct {
	mu       sync.Mutex
	open     int
	limit    int
	free     chan struct{} // closed and replaced when a slot frees
	conns    map[*gatedConn]struct{}
	closed   bool // shut down: no more connections
	failFast bool
	count    *connCount
	dialer   net.Dialer
	unix     string
}

func newConnGate(limit int, failFast bool, conns *connCount, unixSocket string) *connGate {
	return &connGate{
		limit:    limit,
		free:     make(chan struct{}),
		conns:    map[*gatedConn]struct{}{},
		failFast: failFast,
		count:    conns,
		dialer:   net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
		unix:     unixSocket,
	}
}

// setLimit changes the bound and returns the connections open now.
func (g *connGate) setLimit(n int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limit = n
	close(g.free)
	g.free = make(chan struct{})
	return g.open
}

func (g *connGate) limitNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.limit
}

func (g *connGate) acquire(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			return errGateClosed
		}
		if g.open < g.limit {
			g.open++
			g.mu.Unlock()
			return nil
		}
		free := g.free
		g.mu.Unlock()
		if g.failFast {
			return errConnLimit
		}
		select {
		case <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *connGate) release() {
	g.mu.Lock()
	g.open--
	close(g.free)
	g.free = make(chan struct{})
	g.mu.Unlock()
}

func (g *connGate) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := g.acquire(ctx); err != nil {
		return nil, err
	}
	if g.unix != "" {
		network, addr = "unix", g.unix
	}
	conn, err := g.dialer.DialContext(ctx, network, addr)
	if err != nil {
		g.release()
		return nil, err
	}
	g.count.add(1)
	gc := &gatedConn{Conn: conn, gate: g}
	g.mu.Lock()
	closed := g.closed
	if !closed {
		g.conns[gc] = struct{}{}
	}
	g.mu.Unlock()
	if closed {
		_ = gc.Close()
		return nil, errGateClosed
	}
	return gc, nil
}

// errGateClosed is the dial error once the discoverer stopped.
var errGateClosed = errors.New("consul discovery stopped")

// shutdown closes every connection and refuses new ones.
func (g *connGate) shutdown() {
	g.mu.Lock()
	g.closed = true
	conns := make([]*gatedConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type gatedConn struct {
	net.Conn
	gate *connGate
	once sync.Once
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.gate.count.add(-1)
		c.gate.mu.Lock()
		delete(c.gate.conns, c)
		c.gate.mu.Unlock()
		c.gate.release()
	})
	return err
}
