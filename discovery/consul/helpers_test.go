package consul

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/consulagent"
	"github.com/sdhub/sdhub/internal/consulfill"
)

// writer registers catalog entries on a real agent. It is the consul api
// client with an explicit address, used only to write test fixtures.
type writer struct {
	t  testing.TB
	c  *api.Client
	tr *http.Transport
}

func newWriter(t testing.TB, a *consulagent.Agent) *writer {
	t.Helper()
	tr := &http.Transport{}
	c, err := api.NewClient(&api.Config{Address: a.Addr(), Scheme: "http", Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return &writer{t: t, c: c, tr: tr}
}

// closeIdle closes the writer's idle connections, so that the agent's
// HTTP port counts only the discoverer's.
func (w *writer) closeIdle() { w.tr.CloseIdleConnections() }

// node describes an external node of the fixture catalog.
type node struct {
	name, addr string
	meta       map[string]string
	tagged     map[string]string
}

// instance is one service instance on a node, with its checks' statuses.
type instance struct {
	node           node
	id, name, addr string
	port           int
	tags           []string
	meta           map[string]string
	checks         map[string]string // check id -> status
}

func (w *writer) register(in instance) {
	w.t.Helper()
	reg := &api.CatalogRegistration{
		Node: in.node.name, Address: in.node.addr, NodeMeta: in.node.meta, TaggedAddresses: in.node.tagged,
		Service: &api.AgentService{ID: in.id, Service: in.name, Address: in.addr, Port: in.port, Tags: in.tags, Meta: in.meta},
	}
	for _, id := range slices.Sorted(maps.Keys(in.checks)) {
		c := &api.HealthCheck{Node: in.node.name, CheckID: id, Name: id, Status: in.checks[id]}
		if !strings.HasPrefix(id, "node:") {
			c.ServiceID = in.id
		} else {
			c.CheckID = strings.TrimPrefix(id, "node:")
		}
		reg.Checks = append(reg.Checks, c)
	}
	if _, err := w.c.Catalog().Register(reg, nil); err != nil {
		w.t.Fatalf("registering %s: %v", in.id, err)
	}
}

// registerNode writes a node's address and metadata alone.
func (w *writer) registerNode(n node) {
	w.t.Helper()
	if _, err := w.c.Catalog().Register(&api.CatalogRegistration{Node: n.name, Address: n.addr, NodeMeta: n.meta, TaggedAddresses: n.tagged}, nil); err != nil {
		w.t.Fatalf("registering node %s: %v", n.name, err)
	}
}

// registerMany writes instances on existing nodes through Consul's
// transaction endpoint (internal/consulfill); each instance has at most its
// service checks.
func (w *writer) registerMany(ins []instance) {
	w.t.Helper()
	units := func(yield func(api.TxnOps) bool) {
		for _, in := range ins {
			ops := api.TxnOps{&api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: in.node.name,
				Service: api.AgentService{ID: in.id, Service: in.name, Address: in.addr, Port: in.port, Tags: in.tags, Meta: in.meta}}}}
			for _, id := range slices.Sorted(maps.Keys(in.checks)) {
				ops = append(ops, &api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{
					Node: in.node.name, CheckID: id, Name: id, Status: in.checks[id], ServiceID: in.id, ServiceName: in.name}}})
			}
			if !yield(ops) {
				return
			}
		}
	}
	if err := consulfill.Fill(context.Background(), w.c, units); err != nil {
		w.t.Fatalf("registering %d instances: %v", len(ins), err)
	}
}

func (w *writer) deregister(nodeName, serviceID string) {
	w.t.Helper()
	if _, err := w.c.Catalog().Deregister(&api.CatalogDeregistration{Node: nodeName, ServiceID: serviceID}, nil); err != nil {
		w.t.Fatalf("deregistering %s: %v", serviceID, err)
	}
}

// flatten turns groups into sorted "target label sets" strings: group
// labels merged under target labels, one line per target. Groups without
// targets vanish, as they do in Prometheus's manager.
func flatten(groups map[string]*targetgroup.Group) []string {
	var out []string
	for _, g := range groups {
		if g == nil {
			continue
		}
		for _, t := range g.Targets {
			ls := g.Labels.Merge(t)
			out = append(out, ls.String())
		}
	}
	sort.Strings(out)
	return out
}

func groupMap(groups []*targetgroup.Group) map[string]*targetgroup.Group {
	m := map[string]*targetgroup.Group{}
	for _, g := range groups {
		m[g.Source] = g
	}
	return m
}

// collector runs a discoverer and keeps its groups by Source, as the
// manager does.
type collector struct {
	mu     sync.Mutex
	groups map[string]*targetgroup.Group
	msgs   int
	sizes  []int // the number of targets after each message
	first  []*targetgroup.Group
	notify chan struct{}
	done   chan struct{}
}

func collect(ctx context.Context, d discovery.Discoverer) *collector {
	c := &collector{groups: map[string]*targetgroup.Group{}, notify: make(chan struct{}, 1), done: make(chan struct{})}
	up := make(chan []*targetgroup.Group)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		d.Run(ctx, up)
	}()
	go func() {
		defer func() { <-runDone; close(c.done) }()
		for {
			select {
			case <-ctx.Done():
				return
			case tgs := <-up:
				c.mu.Lock()
				if c.msgs == 0 {
					c.first = tgs
				}
				c.msgs++
				for _, g := range tgs {
					if g == nil {
						continue
					}
					if len(g.Targets) == 0 {
						delete(c.groups, g.Source)
					} else {
						c.groups[g.Source] = g
					}
				}
				c.sizes = append(c.sizes, len(flatten(c.groups)))
				c.mu.Unlock()
				select {
				case c.notify <- struct{}{}:
				default:
				}
			}
		}
	}()
	return c
}

// fewest is the fewest targets held after any message, -1 before the
// first.
func (c *collector) fewest() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sizes) == 0 {
		return -1
	}
	return slices.Min(c.sizes)
}

func (c *collector) firstFlat() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return flatten(groupMap(c.first))
}

func (c *collector) messages() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs
}

func (c *collector) flat() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return flatten(c.groups)
}

// waitFor waits until cond holds for the flattened state, at most limit.
func (c *collector) waitFor(t *testing.T, limit time.Duration, what string, cond func([]string) bool) []string {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		got := c.flat()
		if cond(got) {
			return got
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			t.Fatalf("%s: not reached within %v after %d messages; state:\n%s", what, limit, c.messages(), strings.Join(got, "\n"))
		}
	}
}

// waitEqual waits until the flattened state is want, at most limit, and
// reports the difference if it is not.
func (c *collector) waitEqual(t *testing.T, limit time.Duration, what string, want []string) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		got := c.flat()
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			var missing, extra []string
			for _, w := range want {
				if !slices.Contains(got, w) {
					missing = append(missing, w)
				}
			}
			for _, g := range got {
				if !slices.Contains(want, g) {
					extra = append(extra, g)
				}
			}
			t.Fatalf("%s: not reached within %v after %d messages; missing:\n%s\nextra:\n%s", what, limit, c.messages(),
				strings.Join(missing, "\n"), strings.Join(extra, "\n"))
		}
	}
}

func hasTarget(substr ...string) func([]string) bool {
	return func(flat []string) bool {
	next:
		for _, f := range flat {
			for _, s := range substr {
				if !strings.Contains(f, s) {
					continue next
				}
			}
			return true
		}
		return false
	}
}

func not(f func([]string) bool) func([]string) bool { return func(s []string) bool { return !f(s) } }

func label(name, value string) string { return fmt.Sprintf("%s=%q", name, value) }

func addr(a string) string { return label(string(model.AddressLabel), a) }

// newTestDiscovery builds sdhub's discoverer for a config against a.
func newTestDiscovery(t testing.TB, yml string) *Discovery {
	t.Helper()
	c, err := decodeConfig(t, []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDiscovery(c, discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// watchMode is one of the ways the watch runs (docs/mechanisms/consul.md):
// over HTTP/1.1 with the plain watch (max_connections set to the default,
// which leaves no connection for streams) or with a stream per service
// (max_connections left to its default, the agent allowing 200 per
// client), and over HTTP/2 with a stream per service.
type watchMode struct {
	name    string
	https   bool
	streams bool
	yml     string // more config lines
}

var watchModes = []watchMode{
	{name: "http", yml: "\nmax_connections: 16\n"},
	{name: "http-streams", streams: true},
	{name: "https", https: true, streams: true},
}

// check fails t unless d runs in m's mode; call it once d has sent.
func (m watchMode) check(t *testing.T, d *Discovery) {
	t.Helper()
	if got := d.client.http2.Load(); got != m.https {
		t.Errorf("HTTP/2 in use: %v, want %v", got, m.https)
	}
	if got := d.client.streams != nil && d.client.streams.gate.limitNow() > 0; got != m.streams {
		t.Errorf("streams in use: %v, want %v", got, m.streams)
	}
}
