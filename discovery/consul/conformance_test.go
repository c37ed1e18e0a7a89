package consul

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promconsul "github.com/prometheus/prometheus/discovery/consul"

	"github.com/sdhub/sdhub/internal/consulagent"
)

// fixture fills a real agent with a catalog that exercises every label:
// service address set and unset, node and service metadata whose keys need
// sanitising, tagged addresses, several tags, every health state, several
// services per node and an IPv6 address.
func fixture(w *writer) {
	n1 := node{name: "node-1", addr: "10.0.0.1", meta: map[string]string{"rack-id": "r1", "team-name": "core"},
		tagged: map[string]string{"lan": "10.0.0.1", "wan": "192.0.2.1", "lan_ipv4": "10.0.0.1"}}
	n2 := node{name: "node-2", addr: "10.0.0.2", meta: map[string]string{"rack-id": "r2"}}
	n3 := node{name: "node-3", addr: "2001:db8::3"}
	for _, in := range []instance{
		{node: n1, id: "web-1", name: "web", port: 8080, tags: []string{"prod", "v2", "http"},
			meta: map[string]string{"version-tag": "2.1", "owner": "a"}, checks: map[string]string{"web-1-http": "passing"}},
		{node: n2, id: "web-2", name: "web", addr: "10.1.0.2", port: 8080, tags: []string{"prod", "v1"},
			checks: map[string]string{"web-2-http": "warning"}},
		{node: n3, id: "web-3", name: "web", port: 8081, tags: []string{"canary"},
			checks: map[string]string{"web-3-http": "critical", "web-3-disk": "passing"}},
		{node: n1, id: "db-1", name: "db", addr: "10.2.0.1", port: 5432, tags: []string{"prod"},
			meta:   map[string]string{"role": "primary"},
			checks: map[string]string{"db-1-tcp": "passing", "_service_maintenance:db-1": "critical"}},
		{node: n2, id: "db-2", name: "db", port: 5432, tags: []string{"prod", "replica"},
			checks: map[string]string{"node:serfHealth": "critical"}},
		{node: n1, id: "cache-1", name: "cache", port: 6379, checks: map[string]string{"cache-1-tcp": "warning"}},
		{node: n2, id: "cache-2", name: "cache", port: 6379, tags: []string{"v2"},
			checks: map[string]string{"node:_node_maintenance": "critical"}},
		{node: n3, id: "queue-1", name: "queue", addr: "2001:db8::30", port: 5672, tags: []string{"prod", "v2"},
			meta: map[string]string{"a-b-c": "x"}},
	} {
		w.register(in)
	}
}

// conformanceCases are consul_sd_configs bodies; "SERVER" is replaced
// with the agent's HTTP address, "TLSSERVER" with its HTTPS one and
// "CAFILE" with the CA that signed its certificate.
var conformanceCases = []struct {
	name, yml string
	subset    bool // a selection: fewer targets than all services
}{
	{"all services", "server: SERVER\n", false},
	{"services", "server: SERVER\nservices: [web, db, absent]\n", true},
	{"one tag", "server: SERVER\ntags: [prod]\n", true},
	{"two tags", "server: SERVER\ntags: [prod, v2]\n", true},
	{"services and tags", "server: SERVER\nservices: [web]\ntags: [prod]\n", true},
	{"node_meta", "server: SERVER\nnode_meta:\n  rack-id: r1\n", true},
	{"services and node_meta", "server: SERVER\nservices: [web, cache]\nnode_meta:\n  rack-id: r2\n", true},
	{"filter", "server: SERVER\nfilter: 'ServiceName != \"db\"'\n", true},
	{"filter on tags", "server: SERVER\nfilter: 'ServiceTags contains \"v2\"'\n", true},
	{"health_filter", "server: SERVER\nhealth_filter: 'Service.Port == 8080'\n", true},
	{"filter and health_filter", "server: SERVER\nfilter: 'ServiceName == \"web\"'\nhealth_filter: 'Node.Node != \"node-2\"'\n", true},
	{"tag_separator", "server: SERVER\ntag_separator: ';'\n", false},
	{"datacenter", "server: SERVER\ndatacenter: dc1\n", false},
	{"not stale", "server: SERVER\nallow_stale: false\n", false},
	{"http prefix", "server: http://SERVER\n", false},
	{"https", "server: TLSSERVER\nscheme: https\ntls_config:\n  ca_file: CAFILE\n", false},
	{"https prefix", "server: https://TLSSERVER\ntls_config:\n  ca_file: CAFILE\n", false},
}

// TestConformance runs Prometheus's own consul discoverer and sdhub's
// against the same agent and catalog and requires the same flattened
// label sets.
func TestConformance(t *testing.T) {
	a := consulagent.StartT(t, consulagent.Options{TLS: true})
	fixture(newWriter(t, a))
	all, err := newTestDiscovery(t, "server: "+a.Addr()+"\n").refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	allTargets := len(flatten(groupMap(all)))

	for _, tc := range conformanceCases {
		t.Run(tc.name, func(t *testing.T) {
			yml := strings.NewReplacer("TLSSERVER", a.HTTPSAddr(), "SERVER", a.Addr(), "CAFILE", a.CAFile()).Replace(tc.yml)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			mine, err := newTestDiscovery(t, yml).refresh(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := flatten(groupMap(mine))
			if len(want) == 0 {
				t.Fatal("sdhub found no targets: the case tests nothing")
			}
			if tc.subset && len(want) >= allTargets {
				t.Fatalf("selection kept %d of %d targets: it selects nothing", len(want), allTargets)
			}

			prom := runPrometheus(ctx, t, yml)
			prom.waitEqual(t, 15*time.Second, "prometheus state equal to sdhub's", want)

			// Run's first message is the same complete state.
			run := collect(ctx, newTestDiscovery(t, yml))
			defer func() { cancel(); <-run.done }()
			run.waitEqual(t, 15*time.Second, "sdhub Run state equal to refresh", want)
			if first := run.firstFlat(); len(first) != len(want) {
				t.Fatalf("first message has %d targets, want the complete %d", len(first), len(want))
			}
		})
	}
}

// TestConformanceCoversEveryLabel guards the fixture: the all-services
// case must produce every label Prometheus's consul SD can set.
func TestConformanceCoversEveryLabel(t *testing.T) {
	a := consulagent.StartT(t, consulagent.Options{})
	fixture(newWriter(t, a))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	groups, err := newTestDiscovery(t, "server: "+a.Addr()+"\n").refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(flatten(groupMap(groups)), "\n")
	for _, want := range []string{
		addr("10.0.0.1:8080"), addr("10.1.0.2:8080"), addr("[2001:db8::3]:8081"), addr("[2001:db8::30]:5672"),
		label(labelServiceAddress, ""), label(labelServiceAddress, "10.1.0.2"),
		label(labelNodeMeta+"rack_id", "r1"), label(labelNodeMeta+"team_name", "core"),
		label(labelServiceMeta+"version_tag", "2.1"), label(labelServiceMeta+"a_b_c", "x"),
		label(labelTaggedAddress+"wan", "192.0.2.1"), label(labelTaggedAddress+"lan_ipv4", "10.0.0.1"),
		label(labelTags, ",prod,v2,http,"), label(labelTags, ",,"),
		label(labelHealth, "passing"), label(labelHealth, "warning"), label(labelHealth, "critical"), label(labelHealth, "maintenance"),
		label(labelDatacenter, "dc1"), label(labelNode, "node-3"), label(labelServiceID, "db-2"),
		label(labelServicePort, "5432"), label(labelAddress, "10.0.0.2"), label(labelNamespace, ""), label(labelPartition, ""),
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no target has %s", want)
		}
	}
}

// runPrometheus runs Prometheus's consul discoverer with its metrics on a
// private registry.
func runPrometheus(ctx context.Context, t testing.TB, yml string) *collector {
	t.Helper()
	c, err := decodeConfig(t, []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	pc := toPrometheus(c)
	// Prometheus's catalog loop waits for its refresh_interval ticker
	// without watching ctx; a short interval lets it stop soon after the
	// test. It changes when Prometheus re-queries, not what it finds.
	pc.RefreshInterval = model.Duration(time.Second)
	m := pc.NewDiscovererMetrics(prometheus.NewRegistry(), nil)
	d, err := promconsul.NewDiscovery(pc, nil, m)
	if err != nil {
		t.Fatal(fmt.Errorf("prometheus discoverer: %w", err))
	}
	col := collect(ctx, d)
	t.Cleanup(func() { <-col.done })
	return col
}
