package consul

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sdhub/sdhub/internal/consulagent"
	"github.com/sdhub/sdhub/internal/poll"
)

var (
	nodeA = node{name: "node-a", addr: "10.9.0.1"}
	nodeB = node{name: "node-b", addr: "10.9.0.2"}
)

func web(id string, n node, port int, status string) instance {
	return instance{node: n, id: id, name: "web", port: port, checks: map[string]string{id + "-http": status}}
}

// noAgent leaves the agent's own "consul" service out of a test's targets.
const noAgent = "filter: 'ServiceName != \"consul\"'\n"

// TestWatchLifecycle follows one discoverer through registration, health
// changes, deregistration and removal of a whole service. The same service
// changes several times, so refresh_interval is short here.
func TestWatchLifecycle(t *testing.T) {
	a := consulagent.StartT(t, consulagent.Options{})
	w := newWriter(t, a)
	w.register(web("web-1", nodeA, 80, "passing"))

	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, newTestDiscovery(t, "server: "+a.Addr()+"\nrefresh_interval: 500ms\n"+noAgent))
	defer func() { cancel(); <-col.done }()
	col.waitFor(t, 10*time.Second, "initial", hasTarget(addr("10.9.0.1:80"), label(labelHealth, "passing")))

	steps := []struct {
		name   string
		change func()
		cond   func([]string) bool
	}{
		{"register an instance", func() { w.register(web("web-2", nodeB, 81, "passing")) },
			hasTarget(addr("10.9.0.2:81"), label(labelServiceID, "web-2"))},
		{"health change", func() { w.register(web("web-1", nodeA, 80, "critical")) },
			hasTarget(addr("10.9.0.1:80"), label(labelHealth, "critical"))},
		{"new service", func() {
			w.register(instance{node: nodeA, id: "db-1", name: "db", port: 5432, tags: []string{"x"}})
		}, hasTarget(addr("10.9.0.1:5432"), label(labelTags, ",x,"))},
		{"deregister an instance", func() { w.deregister("node-b", "web-2") }, not(hasTarget(addr("10.9.0.2:81")))},
		{"node metadata change", func() {
			n := nodeA
			n.meta = map[string]string{"zone": "z1"}
			w.register(instance{node: n, id: "db-1", name: "db", port: 5432, tags: []string{"x"}})
		}, hasTarget(addr("10.9.0.1:80"), label(labelNodeMeta+"zone", "z1"))},
		{"remove a service", func() { w.deregister("node-a", "db-1") }, not(hasTarget(label(labelService, "db")))},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			start := time.Now()
			s.change()
			col.waitFor(t, 5*time.Second, s.name, s.cond)
			t.Logf("%s seen after %v", s.name, time.Since(start).Round(time.Millisecond))
		})
	}
	if got := col.flat(); len(got) != 1 || !hasTarget(addr("10.9.0.1:80"))(got) {
		t.Fatalf("final state %v, want web-1 only", got)
	}
}

// TestFirstChangeNotDelayed: with Prometheus's default refresh_interval
// (30s), changes made right after start-up are seen at once, not after the
// interval as with Prometheus's own watchers. Each step changes another
// service, since one service is re-read at most once per interval. After
// the first catalog change the sweep is held back for the interval, so the
// later registrations and the deregistration are found by listing checks.
func TestFirstChangeNotDelayed(t *testing.T) {
	a := consulagent.StartT(t, consulagent.Options{})
	w := newWriter(t, a)
	svc := func(name, id string, n node, port int) instance {
		return instance{node: n, id: id, name: name, port: port, checks: map[string]string{id + "-tcp": "passing"}}
	}
	w.register(web("web-1", nodeA, 80, "passing"))
	w.register(svc("db", "db-1", nodeB, 5432))
	w.register(svc("cache", "cache-1", nodeB, 6379))
	w.register(svc("queue", "queue-1", nodeA, 5672))
	w.register(svc("queue", "queue-2", nodeB, 5672))

	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, newTestDiscovery(t, "server: "+a.Addr()+"\n"+noAgent))
	defer func() { cancel(); <-col.done }()
	col.waitFor(t, 10*time.Second, "initial", func(s []string) bool { return len(s) == 5 })

	for _, step := range []struct {
		name   string
		change func()
		cond   func([]string) bool
	}{
		{"health change", func() { w.register(web("web-1", nodeA, 80, "critical")) }, hasTarget(addr("10.9.0.1:80"), label(labelHealth, "critical"))},
		{"new instance", func() { w.register(svc("db", "db-2", nodeA, 5433)) }, hasTarget(addr("10.9.0.1:5433"))},
		{"another new instance", func() { w.register(svc("cache", "cache-2", nodeA, 6380)) }, hasTarget(addr("10.9.0.1:6380"))},
		{"deregistration", func() { w.deregister("node-b", "queue-2") }, not(hasTarget(label(labelServiceID, "queue-2")))},
	} {
		start := time.Now()
		step.change()
		col.waitFor(t, 5*time.Second, step.name, step.cond)
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s seen after %v, want under 1s", step.name, took)
		}
	}
}

// TestChecklessChangeNotDelayed: an instance without checks, or a change of
// an instance's metadata, leaves no trace in the checks; the sweep a catalog
// change requests finds it, at once after a quiet spell, with the default
// 30 s refresh_interval.
func TestChecklessChangeNotDelayed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change instance
		cond   func([]string) bool
	}{
		{"instance without checks", instance{node: nodeB, id: "web-2", name: "web", port: 81}, hasTarget(addr("10.9.0.2:81"))},
		{"metadata of an instance", instance{node: nodeA, id: "web-1", name: "web", port: 80, meta: map[string]string{"version": "2"},
			checks: map[string]string{"web-1-http": "passing"}}, hasTarget(addr("10.9.0.1:80"), label("__meta_consul_service_metadata_version", "2"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := consulagent.StartT(t, consulagent.Options{})
			w := newWriter(t, a)
			w.register(web("web-1", nodeA, 80, "passing"))
			ctx, cancel := context.WithCancel(context.Background())
			col := collect(ctx, newTestDiscovery(t, "server: "+a.Addr()+"\n"+noAgent))
			defer func() { cancel(); <-col.done }()
			col.waitFor(t, 10*time.Second, "initial", func(s []string) bool { return len(s) == 1 })
			start := time.Now()
			w.register(tc.change)
			col.waitFor(t, 10*time.Second, tc.name, tc.cond)
			if took := time.Since(start); took > time.Second {
				t.Errorf("%s seen after %v, want under 1s", tc.name, took)
			}
		})
	}
}

// TestPeriodicReadsFloor: refresh_interval is a floor on periodic
// re-reads: a blocking query whose wait ends without a change is not
// issued again sooner than refresh_interval after it started, however
// short Consul's wait. A change is still seen at once.
func TestPeriodicReadsFloor(t *testing.T) {
	for _, m := range watchModes[:2] {
		t.Run(m.name, func(t *testing.T) { testPeriodicReadsFloor(t, m) })
	}
}

func testPeriodicReadsFloor(t *testing.T, m watchMode) {
	f, server := newFake(t)
	const floor = 500 * time.Millisecond
	d := newTestDiscovery(t, fmt.Sprintf("server: %s\nrefresh_interval: %v\n", server, floor)+m.yml)
	d.wait = 20 * time.Millisecond // Consul answers every 20 ms that nothing changed
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	col.waitFor(t, 5*time.Second, "initial", hasTarget(label(labelHealth, "passing")))

	before := f.requests()
	const window = 2 * time.Second
	<-time.After(window) // the window being measured, not a synchronisation
	after := f.requests()
	m.check(t, d)
	// The detectors, and with streams web's own.
	paths := []string{"/v1/catalog/services", "/v1/health/state/critical", "/v1/health/state/warning", "/v1/catalog/nodes"}
	if m.streams {
		paths = []string{"/v1/catalog/services", "/v1/catalog/nodes", "/v1/health/service/web"}
	}
	for _, path := range paths {
		n := after[path] - before[path]
		if most := int(window/floor) + 1; n > most || n == 0 {
			t.Errorf("%s: %d requests in %v, want 1 to %d (refresh_interval %v)", path, n, window, most, floor)
		}
	}
	start := time.Now()
	f.setHealth("critical")
	col.waitFor(t, 5*time.Second, "change", hasTarget(label(labelHealth, "critical")))
	if took := time.Since(start); took > time.Second {
		t.Errorf("change seen after %v, want under 1s", took)
	}
}

// TestChangeBudget: changes to one service that keep coming are read at
// once, a spacing apart, for a burst of changeBurst reads; then
// refresh_interval paces them at changeBurst per interval, until a quiet
// spell refills the budget.
func TestChangeBudget(t *testing.T) {
	const spacing, interval = 250 * time.Millisecond, 30 * time.Second
	var b changeBudget
	now := time.Unix(1000, 0)
	var gaps []time.Duration
	var last time.Time
	for range 3 * changeBurst {
		due := b.due(now, spacing, interval) // a change is waiting at now
		b.take(due, interval)
		if !last.IsZero() {
			gaps = append(gaps, due.Sub(last))
		}
		last, now = due, due.Add(time.Millisecond)
	}
	for i, g := range gaps[:changeBurst-1] {
		if g != spacing {
			t.Fatalf("read %d of the burst came %v after the previous one, want %v", i+2, g, spacing)
		}
	}
	for i, g := range gaps[2*changeBurst:] {
		if paced := interval / changeBurst; g < paced-time.Millisecond || g > paced+time.Millisecond {
			t.Fatalf("read %d came %v after the previous one, want %v once the burst is spent", 2*changeBurst+i+2, g, paced)
		}
	}
	now = last.Add(interval) // a quiet spell
	if due := b.due(now, spacing, interval); !due.Equal(now) {
		t.Fatalf("after a quiet spell the change is due %v later, want at once", due.Sub(now))
	}
}

// TestAgentRestart stops Consul in the middle of a watch: the targets stay
// while it is down, and changes flow again once it is back; over HTTP and
// over HTTPS, where every service's stream fails and reconnects.
func TestAgentRestart(t *testing.T) {
	for _, m := range watchModes {
		t.Run(m.name, func(t *testing.T) { testAgentRestart(t, m) })
	}
}

func testAgentRestart(t *testing.T, m watchMode) {
	a := consulagent.StartT(t, consulagent.Options{TLS: m.https})
	w := newWriter(t, a)
	w.register(web("web-1", nodeA, 80, "passing"))
	w.register(web("web-2", nodeB, 81, "passing"))

	d := newTestDiscovery(t, sdConfig(a, m.https)+m.yml+"refresh_interval: 1s\n"+noAgent)
	defer m.check(t, d)
	d.backoffMax = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	before := col.waitFor(t, 10*time.Second, "initial", func(s []string) bool { return len(s) == 2 })

	a.Stop()
	// While the agent is down every query fails; wait for failures to be
	// counted, then check nothing was dropped.
	poll.Fatal(t, 10*time.Second, 20*time.Millisecond, "failures counted while consul was down", func() bool { return testutilCounter(d.metrics.rpcFailures) >= 3 })
	if got := col.flat(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("targets changed while consul was down:\n%v\nwant\n%v", got, before)
	}

	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	if err := a.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	w = newWriter(t, a)
	w.register(web("web-3", nodeB, 82, "passing"))
	col.waitFor(t, 15*time.Second, "change after restart", hasTarget(addr("10.9.0.2:82")))
	w.register(web("web-1", nodeA, 80, "critical"))
	col.waitFor(t, 15*time.Second, "health change after restart", hasTarget(addr("10.9.0.1:80"), label(labelHealth, "critical")))
	if got := col.flat(); len(got) != 3 {
		t.Fatalf("after restart %d targets, want 3: %v", len(got), got)
	}
}

// TestEnvironmentIgnored: the consul api library would send
// CONSUL_HTTP_TOKEN; sdhub must not. An agent with ACLs would reject the
// token, so check the request itself.
func TestEnvironmentIgnored(t *testing.T) {
	t.Setenv("CONSUL_HTTP_TOKEN", "from-env")
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
	t.Setenv("CONSUL_NAMESPACE", "from-env")
	srv, seen := recordingServer(t)
	d := newTestDiscovery(t, "server: "+srv+"\n")
	if _, err := d.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range seen() {
		if r.token != "" || r.query.Has("ns") {
			t.Fatalf("request %s carried environment settings: token %q, query %q", r.path, r.token, r.query.Encode())
		}
	}
	if len(seen()) == 0 {
		t.Fatal("no requests seen")
	}

	d = newTestDiscovery(t, "server: "+srv+"\ntoken: from-file\n")
	if _, err := d.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs := seen()
	if last := rs[len(rs)-1]; last.token != "from-file" {
		t.Fatalf("token = %q, want the configured one", last.token)
	}
}

// TestBoundedConnections: with thirty times more services than the agent
// lets one client hold connections (10 here; the test's own clients use one
// or two of them), the watch discovers every target and propagates a
// change without a single refused request, never opening more than
// max_connections; its gauges show the four watches and its connections,
// and fall to zero when it stops.
func TestBoundedConnections(t *testing.T) {
	a := consulagent.StartT(t, consulagent.Options{MaxConnsPerClient: 10})
	w := newWriter(t, a)
	const services = 300
	for i := range services {
		w.register(instance{node: nodeA, id: fmt.Sprintf("svc-%d-1", i), name: fmt.Sprintf("svc-%d", i), port: 1000 + i,
			checks: map[string]string{fmt.Sprintf("svc-%d-1-tcp", i): "passing"}})
	}
	d := newTestDiscovery(t, "server: "+a.Addr()+"\nmax_connections: 6\n"+noAgent)
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	col.waitFor(t, 20*time.Second, "complete", func(s []string) bool { return len(s) == services })

	w.register(instance{node: nodeA, id: "svc-77-1", name: "svc-77", port: 1077, checks: map[string]string{"svc-77-1-tcp": "critical"}})
	col.waitFor(t, 5*time.Second, "change", hasTarget(addr("10.9.0.1:1077"), label(labelHealth, "critical")))
	if peak := d.client.conns.peak.Load(); peak > 6 || peak < 3 {
		t.Fatalf("peak connections %d, want 3..6", peak)
	}
	if f := testutilCounter(d.metrics.rpcFailures); f != 0 {
		t.Fatalf("%v rpc failures", f)
	}
	if c := testutil.ToFloat64(d.metrics.connections); c < 1 || c > 6 {
		t.Errorf("sdhub_sd_consul_connections = %v while watching, want 1..6", c)
	}
	if n := testutil.ToFloat64(d.metrics.watches); n < 1 || n > 4 {
		t.Errorf("sdhub_sd_consul_watches = %v while watching, want 1..4", n)
	}
	cancel()
	<-col.done
	if n := testutil.ToFloat64(d.metrics.watches); n != 0 {
		t.Errorf("sdhub_sd_consul_watches = %v after Run returned, want 0", n)
	}
	if c := testutil.ToFloat64(d.metrics.connections); c != 0 {
		t.Errorf("sdhub_sd_consul_connections = %v after Run returned, want 0", c)
	}
}
