package consul

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sdhub/sdhub/internal/consulagent"
)

// changeBound is how soon the tests require every kind of change in the
// discoverer's output, with Prometheus's default refresh_interval (30 s).
// The design aims at well under a second; the bound leaves room for a
// loaded test machine.
const changeBound = 3 * time.Second

// tlsConfig is a consul_sd_configs body for a's HTTPS listener, or for
// its HTTP one.
func sdConfig(a *consulagent.Agent, https bool) string {
	if !https {
		return "server: " + a.Addr() + "\n"
	}
	return fmt.Sprintf("server: %s\nscheme: https\ntls_config:\n  ca_file: %s\n", a.HTTPSAddr(), a.CAFile())
}

// TestEveryKindOfChange makes each kind of change on a real agent, in each
// of the watch's modes (watchModes), and requires the discoverer's groups to follow within
// changeBound, at the default refresh_interval. Each change comes right
// after the previous one was seen, several on one service or node, so the
// first-change-after-a-quiet-spell case is not the only one. Afterwards
// Prometheus's own consul discoverer, on the same agent and config, must
// find the same targets, label for label.
func TestEveryKindOfChange(t *testing.T) {
	for _, m := range watchModes {
		t.Run(m.name, func(t *testing.T) { testEveryKindOfChange(t, m) })
	}
}

func testEveryKindOfChange(t *testing.T, m watchMode) {
	https := m.https
	a := consulagent.StartT(t, consulagent.Options{TLS: https})
	w := newWriter(t, a)
	var (
		nA = node{name: "node-a", addr: "10.9.0.1", meta: map[string]string{"zone": "z1"}}
		nB = node{name: "node-b", addr: "10.9.0.2"}
		nC = node{name: "node-c", addr: "10.9.0.3"}
		nD = node{name: "node-d", addr: "10.9.0.4"}
	)
	webAt := func(id string, n node, port int, tags ...string) instance {
		return instance{node: n, id: id, name: "web", port: port, tags: tags, checks: map[string]string{id + "-http": "passing"}}
	}
	api1 := instance{node: nA, id: "api-1", name: "api", port: 81}
	w.register(webAt("web-1", nA, 80, "a"))
	w.register(webAt("web-2", nB, 80, "a"))
	w.register(api1)
	w.register(instance{node: nB, id: "db-1", name: "db", port: 5432, checks: map[string]string{"db-1-tcp": "passing"}})
	w.register(instance{node: nB, id: "cache-1", name: "cache", port: 6379})

	yml := sdConfig(a, https) + m.yml + noAgent
	d := newTestDiscovery(t, yml)
	// With streams, a service registered while the catalog changes is
	// seen within the service list's pace: refresh_interval by default
	// (TestNewServiceWithinRefreshInterval), here as with
	// --consul.service-list-interval=250ms.
	d.listInterval = 250 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	col.waitFor(t, 20*time.Second, "initial", func(s []string) bool { return len(s) == 5 })
	m.check(t, d)

	health := func(id, status string) func([]string) bool {
		return hasTarget(label(labelServiceID, id), label(labelHealth, status))
	}
	withLabel := func(id, name, value string) func([]string) bool {
		return hasTarget(label(labelServiceID, id), label(name, value))
	}
	allOnNode := func(n, name, value string) func([]string) bool {
		return func(s []string) bool {
			seen := false
			for _, t := range s {
				if strings.Contains(t, label(labelNode, n)) {
					if !strings.Contains(t, label(name, value)) {
						return false
					}
					seen = true
				}
			}
			return seen
		}
	}
	api1Moved := api1
	for _, step := range []struct {
		kind   string
		change func()
		cond   func([]string) bool
	}{
		{"new instance with checks on a new node", func() { w.register(webAt("web-3", nC, 80)) }, hasTarget(label(labelServiceID, "web-3"))},
		{"new instance with checks on an existing node", func() { w.register(webAt("web-4", nA, 8080, "a", "b")) }, hasTarget(label(labelServiceID, "web-4"))},
		{"new instance without checks on a new node", func() { w.register(instance{node: nD, id: "api-2", name: "api", port: 81}) }, hasTarget(label(labelServiceID, "api-2"))},
		{"new instance without checks on an existing node", func() { w.register(instance{node: nA, id: "api-3", name: "api", port: 82}) }, hasTarget(label(labelServiceID, "api-3"))},
		{"another one on the same node", func() { w.register(instance{node: nA, id: "api-4", name: "api", port: 83}) }, hasTarget(label(labelServiceID, "api-4"))},
		{"deregistration with checks", func() { w.deregister("node-b", "web-2") }, not(hasTarget(label(labelServiceID, "web-2")))},
		{"deregistration without checks", func() { w.deregister("node-a", "api-3") }, not(hasTarget(label(labelServiceID, "api-3")))},
		{"re-registration with another port", func() { api1Moved.port = 91; w.register(api1Moved) }, withLabel("api-1", labelServicePort, "91")},
		{"re-registration with another address", func() { api1Moved.addr = "10.8.0.1"; w.register(api1Moved) }, hasTarget(addr("10.8.0.1:91"))},
		{"re-registration with other tags (the service's tags unchanged)", func() { w.register(webAt("web-1", nA, 80, "a", "b")) }, withLabel("web-1", labelTags, ",a,b,")},
		{"re-registration with other service metadata", func() {
			api1Moved.meta = map[string]string{"version": "2"}
			w.register(api1Moved)
		}, withLabel("api-1", labelServiceMeta+"version", "2")},
		{"node address", func() { nB.addr = "10.9.0.22"; w.registerNode(nB) }, allOnNode("node-b", labelAddress, "10.9.0.22")},
		{"node metadata", func() { nA.meta = map[string]string{"zone": "z2"}; w.registerNode(nA) }, allOnNode("node-a", labelNodeMeta+"zone", "z2")},
		{"health critical", func() {
			w.register(instance{node: nA, id: "web-1", name: "web", port: 80, tags: []string{"a", "b"}, checks: map[string]string{"web-1-http": "critical"}})
		}, health("web-1", "critical")},
		{"health warning", func() {
			w.register(instance{node: nA, id: "web-1", name: "web", port: 80, tags: []string{"a", "b"}, checks: map[string]string{"web-1-http": "warning"}})
		}, health("web-1", "warning")},
		{"health passing", func() { w.register(webAt("web-1", nA, 80, "a", "b")) }, health("web-1", "passing")},
		{"service maintenance", func() {
			w.register(instance{node: nB, id: "db-1", name: "db", port: 5432, checks: map[string]string{"db-1-tcp": "passing", "_service_maintenance:db-1": "critical"}})
		}, health("db-1", "maintenance")},
		{"node maintenance", func() {
			w.register(instance{node: nB, id: "cache-1", name: "cache", port: 6379, checks: map[string]string{"node:_node_maintenance": "critical"}})
		}, allOnNode("node-b", labelHealth, "maintenance")},
		{"new service", func() { w.register(instance{node: nC, id: "queue-1", name: "queue", port: 5672}) }, hasTarget(label(labelService, "queue"))},
		{"removed service", func() { w.deregister("node-b", "db-1") }, not(hasTarget(label(labelService, "db")))},
	} {
		start := time.Now()
		step.change()
		col.waitFor(t, 20*time.Second, step.kind, step.cond)
		took := time.Since(start)
		t.Logf("%-66s seen after %v", step.kind, took.Round(time.Millisecond))
		if took > changeBound {
			t.Errorf("%s seen after %v, want under %v", step.kind, took.Round(time.Millisecond), changeBound)
		}
	}

	// Prometheus's own discoverer on the same catalog and config.
	mine := col.flat()
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	runPrometheus(pctx, t, yml).waitEqual(t, 20*time.Second, "prometheus's targets equal to sdhub's after the changes", mine)
	if want := 8; len(mine) != want || !slices.ContainsFunc(mine, func(s string) bool { return strings.Contains(s, label(labelService, "queue")) }) {
		t.Fatalf("%d targets after the changes, want %d:\n%s", len(mine), want, strings.Join(mine, "\n"))
	}
}
