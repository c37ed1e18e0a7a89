package consul

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sdhub/sdhub/internal/consulagent"
	"github.com/sdhub/sdhub/internal/poll"
)

// manyServices registers n services of one instance each on node, with a
// passing check on every other one.
func manyServices(w *writer, n int, nd node, port int) []instance {
	w.registerNode(nd)
	var ins []instance
	for i := range n {
		in := instance{node: nd, id: fmt.Sprintf("svc-%04d-%s", i, nd.name), name: fmt.Sprintf("svc-%04d", i), port: port}
		if i%2 == 0 {
			in.checks = map[string]string{in.id + "-tcp": "passing"}
		}
		ins = append(ins, in)
	}
	w.registerMany(ins)
	return ins
}

// established counts this process's TCP connections to port, as the
// kernel sees them.
func established(t *testing.T, port int) int {
	t.Helper()
	n, err := consulagent.Established(os.Getpid(), port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHTTP2Multiplexes: over HTTPS the discoverer holds a blocking query
// per service, 602 at once here, on a handful of TCP connections: Consul
// negotiated HTTP/2 and the transport packs up to 250 queries on one
// connection. Counted by the kernel, not by the discoverer.
func TestHTTP2Multiplexes(t *testing.T) {
	a := consulagent.StartT(t, consulagent.Options{TLS: true})
	w := newWriter(t, a)
	const services = 600
	manyServices(w, services, nodeA, 80)

	d := newTestDiscovery(t, sdConfig(a, true)+noAgent)
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	col.waitFor(t, 30*time.Second, "complete", func(s []string) bool { return len(s) == services })
	waitGauge(t, d, services+2) // and the catalog and nodes detectors
	// The last queries may still be picking their connection: wait for
	// the third, and never see a sixth.
	n := 0
	err := poll.Until(10*time.Second, 20*time.Millisecond, "3 TCP connections", func() bool { n = established(t, a.HTTPSPort()); return n >= 3 })
	if err != nil || n > 5 {
		t.Fatalf("%d TCP connections for %v blocking queries, want 3 to 5 (250 streams per connection, and one for the detectors) (%v)",
			n, testutil.ToFloat64(d.metrics.watches), err)
	}
	if !d.client.http2.Load() {
		t.Fatal("the discoverer did not see HTTP/2")
	}
	start := time.Now()
	w.register(instance{node: nodeB, id: "svc-0007-b", name: "svc-0007", port: 81})
	col.waitFor(t, 10*time.Second, "new instance", hasTarget(label(labelServiceID, "svc-0007-b")))
	if took := time.Since(start); took > changeBound {
		t.Errorf("new instance seen after %v, want under %v", took, changeBound)
	}
	cancel()
	<-col.done
	if n := testutil.ToFloat64(d.metrics.watches); n != 0 {
		t.Errorf("after Run returned: %v blocking queries, want 0", n)
	}
	returned := time.Now()
	if err := poll.Until(5*time.Second, 10*time.Millisecond, "no connection", func() bool {
		return testutil.ToFloat64(d.metrics.connections) == 0 && established(t, a.HTTPSPort()) == 0
	}); err != nil {
		t.Fatalf("after Run returned: %v connections counted, %d established; want 0 (%v)", testutil.ToFloat64(d.metrics.connections), established(t, a.HTTPSPort()), err)
	}
	t.Logf("connections closed %v after Run returned", time.Since(returned))
}

// waitGauge waits until the discoverer holds want blocking queries.
func waitGauge(t *testing.T, d *Discovery, want int) {
	t.Helper()
	if err := poll.Until(20*time.Second, 20*time.Millisecond, "the blocking queries", func() bool { return testutil.ToFloat64(d.metrics.watches) == float64(want) }); err != nil {
		t.Fatalf("%v blocking queries in flight, want %d (%v)", testutil.ToFloat64(d.metrics.watches), want, err)
	}
}

// TestStreamOverflow: with more services than max_connections can carry
// streams for, the services without a stream are covered by the
// catalog-wide watch: every service follows a node change and a new
// instance without checks, and the discoverer never holds more than
// max_connections. Over HTTP/2, 5 connections: one for reads, four for
// 1,000 streams. Over HTTP/1.1, 24: 16 for reads, 8 for a stream each.
func TestStreamOverflow(t *testing.T) {
	t.Run("https", func(t *testing.T) { testStreamOverflow(t, true, 1100, 5, 4*250) })
	t.Run("http", func(t *testing.T) { testStreamOverflow(t, false, 60, 24, 8) })
}

func testStreamOverflow(t *testing.T, https bool, services, maxConns, streams int) {
	a := consulagent.StartT(t, consulagent.Options{TLS: https})
	w := newWriter(t, a)
	manyServices(w, services, nodeA, 80)

	d := newTestDiscovery(t, sdConfig(a, https)+fmt.Sprintf("max_connections: %d\n", maxConns)+noAgent)
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	col.waitFor(t, 60*time.Second, "complete", func(s []string) bool { return len(s) == services })
	// The streams and the four detectors.
	waitGauge(t, d, streams+4)

	every := func(cond func(string) bool) func([]string) bool {
		return func(s []string) bool {
			n := 0
			for _, t := range s {
				if cond(t) {
					n++
				}
			}
			return n == services
		}
	}
	start := time.Now()
	n := nodeA
	n.meta = map[string]string{"rack": "r2"}
	w.registerNode(n)
	col.waitFor(t, 20*time.Second, "node change on every service", every(func(s string) bool {
		return strings.Contains(s, label(labelNodeMeta+"rack", "r2"))
	}))
	t.Logf("node change on %d services seen after %v", services, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	var extra []instance
	for i := range services {
		extra = append(extra, instance{node: nodeB, id: fmt.Sprintf("svc-%04d-b", i), name: fmt.Sprintf("svc-%04d", i), port: 81})
	}
	w.registerNode(nodeB)
	w.registerMany(extra)
	col.waitFor(t, 20*time.Second, "a new instance without checks of every service", every(func(s string) bool {
		return strings.Contains(s, label(labelNode, "node-b"))
	}))
	t.Logf("new instances of %d services seen after %v", services, time.Since(start).Round(time.Millisecond))
	// Over HTTP the writer's own connection (one, once its idle ones are
	// closed) goes to the same port.
	w.closeIdle()
	port, others := a.HTTPPort(), 1
	if https {
		port, others = a.HTTPSPort(), 0
	}
	if n := established(t, port) - others; n > maxConns {
		t.Fatalf("%d TCP connections, want at most max_connections (%d)", n, maxConns)
	}
	if peak := d.client.conns.peak.Load(); peak > int64(maxConns) {
		t.Fatalf("peak %d connections, want at most %d", peak, maxConns)
	}
}

// TestStreamsMeetAgentLimit: over HTTP/1.1 the streams' slots are half
// of what the agent allows one client (40 here: 4 slots), but other
// clients on the same address may hold the rest. Here the test holds all
// but 6 of the agent's connections while the discoverer starts, so one of
// its streams is refused by the agent (429): the discoverer then ends its
// streams and watches every service with the catalog-wide watch alone,
// which completes within what is left; once the other clients let go,
// every service follows a node change and a new instance.
func TestStreamsMeetAgentLimit(t *testing.T) {
	const limit, services = 40, 10
	a := consulagent.StartT(t, consulagent.Options{MaxConnsPerClient: limit})
	w := newWriter(t, a)
	manyServices(w, services, nodeA, 80)
	w.closeIdle()
	var held []net.Conn
	release := func() {
		for _, c := range held {
			_ = c.Close()
		}
		held = nil
	}
	defer release()
	for range limit - 6 {
		c, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}

	d := newTestDiscovery(t, sdConfig(a, false)+noAgent)
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	col.waitFor(t, 30*time.Second, "complete", func(s []string) bool { return len(s) == services })
	// The plain watch's four detectors, no stream.
	waitGauge(t, d, 4)
	release()
	// The agent counts a closed connection out a moment later: until then
	// it refuses the writer's.
	poll.Fatal(t, 10*time.Second, 20*time.Millisecond, "the agent lets the writer in", func() bool {
		_, err := w.c.Status().Leader()
		if err != nil {
			w.closeIdle()
		}
		return err == nil
	})

	every := func(cond func(string) bool) func([]string) bool {
		return func(s []string) bool {
			n := 0
			for _, t := range s {
				if cond(t) {
					n++
				}
			}
			return n == services
		}
	}
	n := nodeA
	n.meta = map[string]string{"rack": "r3"}
	w.registerNode(n)
	col.waitFor(t, 20*time.Second, "node change on every service", every(func(s string) bool {
		return strings.Contains(s, label(labelNodeMeta+"rack", "r3"))
	}))
	var extra []instance
	for i := range services {
		extra = append(extra, instance{node: nodeB, id: fmt.Sprintf("svc-%04d-b", i), name: fmt.Sprintf("svc-%04d", i), port: 81})
	}
	w.registerNode(nodeB)
	w.registerMany(extra)
	col.waitFor(t, 20*time.Second, "a new instance of every service", every(func(s string) bool {
		return strings.Contains(s, label(labelNode, "node-b"))
	}))
}
