package swarm

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/sdhub/sdhub/discovery"
)

// fakeEngine is a Docker engine API for the faults a real engine does not
// produce on demand: errors, hangs, "not a swarm manager", broken events
// streams. It serves a node in good mode, and with lists set the
// services, tasks and networks lists too (empty), failing the one at fail.
type fakeEngine struct {
	mu     sync.Mutex
	mode   string // good, error, hang, notmanager
	addr   string // the node address served in good mode
	events string // events mode: hold (keep open), break (one event, then close), error, hang (no headers)
	lists  bool   // serve /services, /tasks and /networks
	fail   string // with lists: the one path that answers 500

	eventsRequests atomic.Int32
	nodesRequests  atomic.Int32
	// push, when set, sends an event on the open stream per value received.
	push chan struct{}
}

func (f *fakeEngine) set(mode, addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode, f.addr = mode, addr
}

func (f *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	mode, addr, events, lists, fail := f.mode, f.addr, f.events, f.lists, f.fail
	f.mu.Unlock()
	path := r.URL.Path
	if i := strings.Index(path[1:], "/"); strings.HasPrefix(path, "/v1.") && i > 0 {
		path = path[i+1:]
	}
	if lists && path == fail {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"message":"%s exploded"}`, path)
		return
	}
	if lists && (path == "/services" || path == "/tasks" || path == "/networks") {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[]`)
		return
	}
	switch path {
	case "/_ping":
		w.Header().Set("API-Version", "1.41")
		fmt.Fprint(w, "OK")
		return
	case "/events":
		f.eventsRequests.Add(1)
		switch events {
		case "error":
			http.Error(w, `{"message":"events broken"}`, http.StatusInternalServerError)
			return
		case "hang":
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		if events == "break" {
			fmt.Fprintln(w, `{"Type":"node","Action":"update","Actor":{"ID":"n1"},"time":1}`)
			return
		}
		for {
			select {
			case <-f.push:
				fmt.Fprintln(w, `{"Type":"node","Action":"update","Actor":{"ID":"n1"},"time":1}`)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	case "/nodes":
		f.nodesRequests.Add(1)
	default:
		http.Error(w, `{"message":"unexpected path"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch mode {
	case "error":
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"message":"engine exploded"}`)
	case "notmanager":
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"message":"This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."}`)
	case "hang":
		<-r.Context().Done()
	default:
		fmt.Fprintf(w, `[{"ID":"n1","Spec":{"Role":"manager","Availability":"active"},"Description":{"Hostname":"h1"},"Status":{"State":"ready","Addr":%q}}]`, addr)
	}
}

func newFakeDiscovery(t *testing.T, f *fakeEngine, interval time.Duration) *Discovery {
	t.Helper()
	return newFakeDiscoveryOpts(t, f, interval, discoveryOptions())
}

func newFakeDiscoveryOpts(t *testing.T, f *fakeEngine, interval time.Duration, opts discovery.Options) *Discovery {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c := DefaultSDConfig
	c.Host, c.Role = srv.URL, "nodes"
	c.RefreshInterval = model.Duration(interval)
	d, err := NewDiscovery(&c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.client.Close() })
	return d
}

// TestRefreshFaultsEveryCall fails each engine call of each role in turn:
// the refresh fails with Prometheus's error for that call, returns no
// groups and counts a failure.
func TestRefreshFaultsEveryCall(t *testing.T) {
	for _, tc := range []struct {
		role, fail, err string
	}{
		{"services", "/services", "error while listing swarm services: Error response from daemon: /services exploded"},
		{"services", "/networks", "error while computing swarm network labels: Error response from daemon: /networks exploded"},
		{"tasks", "/tasks", "error while listing swarm tasks: Error response from daemon: /tasks exploded"},
		{"tasks", "/services", "error while computing services labels and ports: Error response from daemon: /services exploded"},
		{"tasks", "/nodes", "error while computing nodes labels and ports: error while listing swarm nodes: Error response from daemon: /nodes exploded"},
		{"tasks", "/networks", "error while computing swarm network labels: Error response from daemon: /networks exploded"},
		{"nodes", "/nodes", "error while listing swarm nodes: Error response from daemon: /nodes exploded"},
	} {
		t.Run(tc.role+tc.fail, func(t *testing.T) {
			f := &fakeEngine{lists: true, fail: tc.fail}
			f.set("good", "10.0.0.1")
			d := newFakeDiscovery(t, f, time.Second)
			d.role = tc.role
			tgs, err := d.instrumentedRefresh(context.Background())
			if err == nil || err.Error() != tc.err {
				t.Fatalf("error = %v, want %q", err, tc.err)
			}
			if tgs != nil {
				t.Errorf("groups returned with the error: %v", tgs)
			}
			if got := testutilCount(d.refreshM.Failures); got != 1 {
				t.Errorf("failures = %v, want 1", got)
			}
			// The same engine without the fault: the refresh succeeds.
			f.mu.Lock()
			f.fail = ""
			f.mu.Unlock()
			if _, err := d.instrumentedRefresh(context.Background()); err != nil {
				t.Fatalf("refresh without the fault: %v", err)
			}
		})
	}
}

func TestRefreshFaults(t *testing.T) {
	for _, tc := range []struct {
		mode, err string
	}{
		{mode: "error", err: "error while listing swarm nodes: Error response from daemon: engine exploded"},
		{mode: "notmanager", err: `error while listing swarm nodes: Error response from daemon: This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`},
		{mode: "hang", err: "context deadline exceeded"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			f := &fakeEngine{}
			f.set(tc.mode, "10.0.0.1")
			d := newFakeDiscovery(t, f, 300*time.Millisecond)
			start := time.Now()
			tgs, err := d.instrumentedRefresh(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.err) || (tc.mode != "hang" && err.Error() != tc.err) {
				t.Fatalf("error = %v, want %q", err, tc.err)
			}
			if tgs != nil {
				t.Errorf("groups returned with the error: %v", tgs)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("refresh took %v; refresh_interval (300ms) bounds it", took)
			}
			if got := testutilCount(d.refreshM.Failures); got != 1 {
				t.Errorf("failures = %v, want 1", got)
			}
		})
	}
}

// TestRunKeepsLastGood: once the engine fails, Run sends nothing (the last
// good targets stay) and counts failures; when it recovers the new state is
// sent.
func TestRunKeepsLastGood(t *testing.T) {
	for _, mode := range []string{"error", "hang", "notmanager"} {
		t.Run(mode, func(t *testing.T) {
			f := &fakeEngine{events: "hold"}
			f.set("good", "10.0.0.1")
			d := newFakeDiscovery(t, f, 200*time.Millisecond)
			r := startRun(t, d)
			r.waitFor(t, 10*time.Second, "first state", func(flat []string) bool {
				return countWith(flat, `__address__="10.0.0.1:80"`) == 1
			})

			f.set(mode, "10.0.0.1")
			deadline := time.Now().Add(10 * time.Second)
			for testutilCount(d.refreshM.Failures) < 2 {
				select {
				case tgs := <-r.up:
					t.Fatalf("sent during a %s fault: %v", mode, tgs)
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("failures did not reach 2 within 10s")
				}
			}

			f.set("good", "10.0.0.2")
			r.waitFor(t, 10*time.Second, "recovered state", func(flat []string) bool {
				return countWith(flat, `__address__="10.0.0.2:80"`) == 1 && len(flat) == 1
			})
		})
	}
}

// TestEventsReconnect: a stream that breaks is reopened with backoff, each
// reopening triggers a refresh, and the ticker keeps polling meanwhile.
func TestEventsReconnect(t *testing.T) {
	f := &fakeEngine{events: "break"}
	f.set("good", "10.0.0.1")
	d := newFakeDiscovery(t, f, time.Hour)
	d.watch.backoffMin, d.watch.backoffMax = 10*time.Millisecond, 40*time.Millisecond
	r := startRun(t, d)
	r.waitFor(t, 10*time.Second, "first state", func([]string) bool { return true })
	f.set("good", "10.0.0.2")
	r.waitFor(t, 10*time.Second, "state after a reconnect", func(flat []string) bool {
		return countWith(flat, `__address__="10.0.0.2:80"`) == 1
	})
	deadline := time.Now().Add(10 * time.Second)
	for f.eventsRequests.Load() < 4 || testutilCount(d.metrics.streamErrors) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("events requests %d, stream errors %v: want reconnections",
				f.eventsRequests.Load(), testutilCount(d.metrics.streamErrors))
		}
		select {
		case <-r.up:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestEventsStreamDownPollingContinues: with no events stream at all (the
// engine errors on /events, or never answers it), the periodic refresh
// still follows changes and the stream keeps being retried.
func TestEventsStreamDownPollingContinues(t *testing.T) {
	for _, mode := range []string{"error", "hang"} {
		t.Run(mode, func(t *testing.T) {
			f := &fakeEngine{events: mode}
			f.set("good", "10.0.0.1")
			d := newFakeDiscovery(t, f, 100*time.Millisecond)
			d.watch.backoffMin, d.watch.backoffMax = 10*time.Millisecond, 20*time.Millisecond
			r := startRun(t, d)
			r.waitFor(t, 10*time.Second, "first state", func([]string) bool { return true })
			f.set("good", "10.0.0.3")
			r.waitFor(t, 10*time.Second, "polled state", func(flat []string) bool {
				return countWith(flat, `__address__="10.0.0.3:80"`) == 1
			})
			deadline := time.Now().Add(10 * time.Second)
			for f.eventsRequests.Load() < 2 || testutilCount(d.metrics.streamErrors) < 1 {
				if time.Now().After(deadline) {
					t.Fatalf("events requests %d, stream errors %v: want retries",
						f.eventsRequests.Load(), testutilCount(d.metrics.streamErrors))
				}
				select {
				case <-r.up:
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
	}
}

// TestSettleRefreshes: after an event-driven refresh, follow-up refreshes
// pick up changes that come without an event of their own.
func TestSettleRefreshes(t *testing.T) {
	f := &fakeEngine{events: "hold", push: make(chan struct{})}
	f.set("good", "10.0.0.1")
	d := newFakeDiscovery(t, f, time.Hour)
	d.watch.quiet, d.watch.maxDelay = 10*time.Millisecond, 50*time.Millisecond
	d.watch.settle = []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}
	r := startRun(t, d)
	r.waitFor(t, 10*time.Second, "first state", func([]string) bool { return true })

	// The event-driven refresh sees 10.0.0.2; the change to 10.0.0.3 comes
	// with no event and must arrive through a settle refresh.
	f.set("good", "10.0.0.2")
	select {
	case f.push <- struct{}{}:
	case <-time.After(10 * time.Second):
		t.Fatal("events stream not open")
	}
	r.waitFor(t, 10*time.Second, "event-driven state", func(flat []string) bool {
		return countWith(flat, `__address__="10.0.0.2:80"`) == 1
	})
	f.set("good", "10.0.0.3")
	took := r.waitFor(t, 10*time.Second, "settled state", func(flat []string) bool {
		return countWith(flat, `__address__="10.0.0.3:80"`) == 1
	})
	if took > 5*time.Second {
		t.Errorf("settled state after %v; settle refreshes are at 100ms and 300ms", took)
	}
}
