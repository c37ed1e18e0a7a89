package main

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
)

// The kinds of change the benchmark makes, in turn: each is a Consul
// transaction, the same on every agent, and a predicate on a side's
// targets that holds once the side has the change (and not before).
var kinds = []string{
	"new instance with checks, new node",
	"new instance with checks, existing node",
	"new instance without checks, new node",
	"new instance without checks, existing node",
	"deregistration with checks",
	"deregistration without checks",
	"re-registration: port, address, tags or service meta",
	"node address",
	"node meta",
	"health: critical, warning, maintenance, passing",
	"new service",
	"removed service",
}

// change is one change: its transaction and the predicate, a line of
// words the sides evaluate (see pred in side.go).
type change struct {
	id      int
	kind    int
	variant string
	ops     api.TxnOps
	expect  string
}

// benchInstance is the model's view of one instance.
type benchInstance struct {
	id, svc, node string
	port          int
	checked       bool
	status        string
}

// catalogModel tracks the catalog the changes are made to, so that each change
// is valid (it deregisters what exists, and so on) and touches a service
// or node no earlier change of the run touched: a later change can then
// not undo what an earlier one's predicate waits for.
type catalogModel struct {
	rng      *rand.Rand
	cat      *catalog
	services map[string][]*benchInstance
	nodes    map[string]string // fill node -> address
	touched  map[string]bool   // services and nodes changed already
	seq      int
	n        int // changes made
}

func newCatalogModel(cat *catalog, seed uint64) *catalogModel {
	m := &catalogModel{rng: rand.New(rand.NewPCG(seed, 1)), cat: cat, services: map[string][]*benchInstance{},
		nodes: map[string]string{}, touched: map[string]bool{}}
	for i := range cat.nodes {
		m.nodes[nodeName(i)] = nodeAddr(i, 0)
	}
	for s := range cat.n {
		for i := range cat.m {
			m.services[serviceName(s)] = append(m.services[serviceName(s)], &benchInstance{
				id: instanceID(s, i), svc: serviceName(s), node: nodeName(cat.instanceNode(s, i)),
				port: 10000 + i, checked: !checkless(s), status: fillStatus(s, i),
			})
		}
	}
	return m
}

// newRun starts a side's run of changes: what earlier runs touched may be
// touched again, as their sides no longer watch.
func (m *catalogModel) newRun() { m.touched = map[string]bool{} }

// instances is how many instances the catalog has now, without the
// agent's own.
func (m *catalogModel) instances() int {
	n := 0
	for _, ins := range m.services {
		n += len(ins)
	}
	return n
}

// pick returns a random service not touched yet whose instances satisfy
// ok, and marks it touched.
func (m *catalogModel) pick(ok func(*benchInstance) bool) (string, *benchInstance) {
	names := slices.Sorted(maps.Keys(m.services))
	for range 10000 {
		svc := names[m.rng.IntN(len(names))]
		if m.touched[svc] || len(m.services[svc]) < 2 {
			continue
		}
		var fits []*benchInstance
		for _, in := range m.services[svc] {
			if ok(in) {
				fits = append(fits, in)
			}
		}
		if len(fits) == 0 {
			continue
		}
		m.touched[svc] = true
		return svc, fits[m.rng.IntN(len(fits))]
	}
	panic("no service left to change")
}

func (m *catalogModel) pickNode() string {
	names := slices.Sorted(maps.Keys(m.nodes))
	for range 10000 {
		n := names[m.rng.IntN(len(names))]
		if !m.touched[n] {
			m.touched[n] = true
			return n
		}
	}
	panic("no node left to change")
}

func serviceSet(in *benchInstance, addr string, tags []string, meta map[string]string) *api.TxnOp {
	return &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: in.node,
		Service: api.AgentService{ID: in.id, Service: in.svc, Port: in.port, Address: addr, Tags: tags, Meta: meta}}}
}

func defaultTags(svc string) []string {
	var s int
	_, _ = fmt.Sscanf(svc, "svc-%d", &s)
	return []string{"bench", fmt.Sprintf("shard-%d", s%10)}
}

// next makes the next change, of the next kind in turn.
func (m *catalogModel) next() change {
	c := change{id: m.n, kind: m.n % len(kinds)}
	m.n++
	m.seq++
	any := func(*benchInstance) bool { return true }
	switch c.kind {
	case 0, 1, 2, 3: // a new instance of an existing service
		checked := c.kind < 2
		svc, _ := m.pick(any)
		in := &benchInstance{id: fmt.Sprintf("%s-x%d", svc, m.seq), svc: svc, port: 20000 + m.seq, checked: checked, status: api.HealthPassing}
		if c.kind%2 == 0 {
			in.node = fmt.Sprintf("bench-extra-%03d", m.seq)
			c.ops = append(c.ops, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: in.node, Address: fmt.Sprintf("10.99.%d.%d", m.seq/250, m.seq%250+1)}}})
		} else {
			in.node = nodeName(m.rng.IntN(m.cat.nodes))
		}
		c.ops = append(c.ops, serviceSet(in, "", defaultTags(svc), nil))
		if checked {
			c.ops = append(c.ops, checkOp(in.node, in.id, svc, api.HealthPassing))
		}
		m.services[svc] = append(m.services[svc], in)
		c.expect = fmt.Sprintf("id %s %s", svc, in.id)
	case 4, 5: // deregistration
		checked := c.kind == 4
		svc, in := m.pick(func(in *benchInstance) bool { return in.checked == checked })
		c.ops = api.TxnOps{{Service: &api.ServiceTxnOp{Verb: api.ServiceDelete, Node: in.node, Service: api.AgentService{ID: in.id, Service: svc}}}}
		m.services[svc] = slices.DeleteFunc(m.services[svc], func(x *benchInstance) bool { return x == in })
		c.expect = fmt.Sprintf("noid %s %s", svc, in.id)
	case 6: // re-registration
		svc, in := m.pick(any)
		tags, addr, meta := defaultTags(svc), "", map[string]string(nil)
		switch v := (m.n / len(kinds)) % 4; v {
		case 0:
			c.variant = "port"
			in.port += 1000
			c.expect = fmt.Sprintf("id %s %s __meta_consul_service_port=%d", svc, in.id, in.port)
		case 1:
			c.variant = "address"
			addr = fmt.Sprintf("10.98.%d.%d", m.seq/250, m.seq%250+1)
			c.expect = fmt.Sprintf("id %s %s __meta_consul_service_address=%s", svc, in.id, addr)
		case 2:
			c.variant = "tags"
			tags = append(tags, fmt.Sprintf("v%d", m.seq))
			c.expect = fmt.Sprintf("id %s %s __meta_consul_tags=,%s,", svc, in.id, strings.Join(tags, ","))
		case 3:
			c.variant = "service meta"
			meta = map[string]string{"version": fmt.Sprint(m.seq)}
			c.expect = fmt.Sprintf("id %s %s __meta_consul_service_metadata_version=%d", svc, in.id, m.seq)
		}
		c.ops = api.TxnOps{serviceSet(in, addr, tags, meta)}
	case 7, 8: // a node's address or metadata
		n := m.pickNode()
		node := api.Node{Node: n, Address: m.nodes[n], Meta: map[string]string{"rack": fmt.Sprintf("r%d", 5+m.seq)}}
		if c.kind == 7 {
			node.Address = strings.Replace(node.Address, "10.77.", "10.88.", 1)
			node.Meta = nil // replaced below with the node's own
			c.expect = fmt.Sprintf("node %s __meta_consul_address=%s", n, node.Address)
		} else {
			c.expect = fmt.Sprintf("node %s __meta_consul_metadata_rack=%s", n, node.Meta["rack"])
		}
		if node.Meta == nil {
			var i int
			_, _ = fmt.Sscanf(n, "bench-node-%d", &i)
			node.Meta = map[string]string{"rack": fmt.Sprintf("r%d", i%5)}
		}
		m.nodes[n] = node.Address
		c.ops = api.TxnOps{{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: node}}}
	case 9: // health
		v := (m.n / len(kinds)) % 4
		if v == 3 { // one of the instances the fill left critical recovers
			c.variant = "passing"
			svc, in := m.pick(func(in *benchInstance) bool { return in.status == api.HealthCritical })
			in.status = api.HealthPassing
			c.ops = api.TxnOps{checkOp(in.node, in.id, svc, api.HealthPassing)}
			c.expect = fmt.Sprintf("id %s %s __meta_consul_health=passing", svc, in.id)
			break
		}
		svc, in := m.pick(func(in *benchInstance) bool { return in.checked && in.status == api.HealthPassing })
		status := []string{api.HealthCritical, api.HealthWarning, api.HealthMaint}[v]
		c.variant = status
		if status == api.HealthMaint {
			c.ops = api.TxnOps{{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{
				Node: in.node, CheckID: "_service_maintenance:" + in.id, Name: "maintenance", Status: api.HealthCritical, ServiceID: in.id, ServiceName: svc,
			}}}}
		} else {
			c.ops = api.TxnOps{checkOp(in.node, in.id, svc, status)}
		}
		in.status = status
		c.expect = fmt.Sprintf("id %s %s __meta_consul_health=%s", svc, in.id, status)
	case 10: // a new service
		svc := fmt.Sprintf("new-%05d", m.seq)
		in := &benchInstance{id: svc + "-00", svc: svc, node: nodeName(m.rng.IntN(m.cat.nodes)), port: 30000 + m.seq, checked: true, status: api.HealthPassing}
		c.ops = api.TxnOps{serviceSet(in, "", []string{"bench"}, nil), checkOp(in.node, in.id, svc, api.HealthPassing)}
		m.services[svc] = []*benchInstance{in}
		m.touched[svc] = true
		c.expect = "svc " + svc
	case 11: // a removed service
		svc, _ := m.pick(any)
		for _, in := range m.services[svc] {
			c.ops = append(c.ops, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceDelete, Node: in.node, Service: api.AgentService{ID: in.id, Service: svc}}})
		}
		delete(m.services, svc)
		c.expect = "nosvc " + svc
	}
	return c
}
