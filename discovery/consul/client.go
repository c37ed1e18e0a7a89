package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
)

// client speaks the few Consul HTTP endpoints sdhub needs. It is built from
// the config file alone: unlike the consul api library's NewClient, it reads
// no CONSUL_HTTP_* environment variables.
type client struct {
	http      *http.Client
	ep        endpoint
	token     string
	dc        string // configured datacenter; "" lets the agent pick its own
	namespace string
	partition string
	stale     bool
	gate      *connGate
}

func newClient(c *SDConfig, gauge prometheus.Gauge) (*client, error) {
	ep, err := parseServer(c.Server, c.Scheme, c.PathPrefix)
	if err != nil {
		return nil, err
	}
	gate := newConnGate(c.MaxConnections, gauge, ep.unixSocket)
	hc, err := config.NewClientFromConfig(c.HTTPClientConfig, "consul_sd",
		config.WithDialContextFunc(gate.dial), config.WithIdleConnTimeout(2*defaultWait))
	if err != nil {
		return nil, err
	}
	return &client{
		http:      hc,
		ep:        ep,
		token:     string(c.Token),
		dc:        c.Datacenter,
		namespace: c.Namespace,
		partition: c.Partition,
		stale:     c.AllowStale,
		gate:      gate,
	}, nil
}

// query is one GET. index > 0 makes it a blocking query waiting up to wait.
type query struct {
	path    string
	params  url.Values
	index   uint64
	wait    time.Duration
	timeout time.Duration // whole request, including the wait
}

// errStatus is a non-200 answer from Consul.
type errStatus struct {
	code int
	body string
}

func (e *errStatus) Error() string {
	return fmt.Sprintf("unexpected response code %d (%s)", e.code, e.body)
}

// get runs q and decodes the JSON body into out. It returns Consul's
// X-Consul-Index, never 0 (consul-template's rule: 0 would make the next
// blocking query return at once, forever).
func (c *client) get(ctx context.Context, q query, out any) (uint64, error) {
	params := url.Values{}
	for k, v := range q.params {
		params[k] = v
	}
	if c.dc != "" {
		params.Set("dc", c.dc)
	}
	if c.stale {
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	if c.token != "" {
		req.Header.Set("X-Consul-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return 0, &errStatus{code: resp.StatusCode, body: string(b)}
	}
	idx, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid X-Consul-Index %q from %s", resp.Header.Get("X-Consul-Index"), q.path)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return 0, fmt.Errorf("decoding %s response: %w", q.path, err)
	}
	return max(idx, 1), nil
}

// datacenter asks the agent for its datacenter (GET /v1/agent/self).
func (c *client) datacenter(ctx context.Context, timeout time.Duration) (string, error) {
	u := url.URL{Scheme: c.ep.scheme, Host: c.ep.host, Path: c.ep.pathPrefix + "/v1/agent/self"}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	if c.token != "" {
		req.Header.Set("X-Consul-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return "", &errStatus{code: resp.StatusCode, body: string(b)}
	}
	var self struct {
		Config struct{ Datacenter string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&self); err != nil {
		return "", fmt.Errorf("decoding /v1/agent/self response: %w", err)
	}
	if self.Config.Datacenter == "" {
		return "", errors.New("agent reported no datacenter in /v1/agent/self")
	}
	return self.Config.Datacenter, nil
}

func (c *client) close() { c.http.CloseIdleConnections() }

// connGate bounds the open TCP connections of one client: a dial waits for
// a free slot (or its context) and a slot is freed when the connection
// closes. The http.Transport reuses idle connections, so requests queue
// behind the bound instead of failing.
type connGate struct {
	slots  chan struct{}
	open   atomic.Int64
	peak   atomic.Int64 // most connections open at once
	gauge  prometheus.Gauge
	dialer net.Dialer
	unix   string
}

func newConnGate(n int, gauge prometheus.Gauge, unixSocket string) *connGate {
	return &connGate{
		slots:  make(chan struct{}, n),
		gauge:  gauge,
		dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
		unix:   unixSocket,
	}
}

func (g *connGate) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if g.unix != "" {
		network, addr = "unix", g.unix
	}
	conn, err := g.dialer.DialContext(ctx, network, addr)
	if err != nil {
		<-g.slots
		return nil, err
	}
	if n := g.open.Add(1); n > g.peak.Load() {
		g.peak.Store(n) // only grows; a lost race under-counts by one at most briefly
	}
	g.gauge.Inc()
	return &gatedConn{Conn: conn, gate: g}, nil
}

type gatedConn struct {
	net.Conn
	gate *connGate
	once sync.Once
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.gate.open.Add(-1)
		c.gate.gauge.Dec()
		<-c.gate.slots
	})
	return err
}
