package consul

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/poll"
)

func testutilCounter(c prometheus.Counter) float64 { return testutil.ToFloat64(c) }

// fakeConsul answers the endpoints sdhub uses, for the faults a real agent
// will not produce on demand. Blocking queries block until the index moves
// or the request ends.
type fakeConsul struct {
	mu      sync.Mutex
	index   uint64
	health  string // web's status
	port    int    // web's port
	portIdx uint64 // the index web's port was set at
	changed chan struct{}
	fault   func(path string) (status int, body string, hang bool)
	reqs    []seenRequest
	// extra services, each with one passing instance like web's
	extra []string
	// catchingUp: the fake is a restarted server that won its election but
	// has not applied its log: consistent reads are refused as Consul
	// refuses them, blocking queries are held (the server is behind their
	// index) until caughtUp is closed, other reads answer without web.
	catchingUp bool
	caughtUp   chan struct{}
	asked      int // requests that arrived while catching up
}

func (f *fakeConsul) setCatchingUp(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case v && !f.catchingUp:
		f.caughtUp = make(chan struct{})
	case !v && f.catchingUp:
		close(f.caughtUp)
	}
	f.catchingUp = v
}

func (f *fakeConsul) askedWhileCatchingUp() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}

// noKnownLeader, as a fault's status, makes the fake answer as usual but
// with X-Consul-KnownLeader: false, as a restarting server does before its
// election.
const noKnownLeader = -1

type seenRequest struct {
	path, token string
	query       url.Values
}

func newFake(t *testing.T) (*fakeConsul, string) {
	f := &fakeConsul{index: 10, health: "passing", port: 80, changed: make(chan struct{})}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, strings.TrimPrefix(srv.URL, "http://")
}

// newFakeTLS serves the fake over HTTPS with HTTP/2, as Consul's HTTPS
// listener does, and returns the config lines that reach it.
func newFakeTLS(t *testing.T) (*fakeConsul, string) {
	f := &fakeConsul{index: 10, health: "passing", port: 80, changed: make(chan struct{})}
	srv := httptest.NewUnstartedServer(f)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, fmt.Sprintf("%s\nscheme: https\ntls_config:\n  ca_file: %s", strings.TrimPrefix(srv.URL, "https://"), ca)
}

func (f *fakeConsul) seen() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.reqs...)
}

func recordingServer(t *testing.T) (string, func() []seenRequest) {
	f, addr := newFake(t)
	return addr, f.seen
}

func (f *fakeConsul) setFault(fn func(string) (int, string, bool)) {
	f.mu.Lock()
	f.fault = fn
	f.mu.Unlock()
}

// faultWhile sets a fault on path ("" for every path) that holds while it
// is on, and returns its switch; it starts on.
func (f *fakeConsul) faultWhile(path string, status int, body string, hang bool) func(on bool) {
	var on atomic.Bool
	on.Store(true)
	f.setFault(func(p string) (int, string, bool) {
		if on.Load() && (path == "" || p == path) {
			return status, body, hang
		}
		return 0, "", false
	})
	return on.Store
}

// setHealth changes web's check status and bumps the index.
func (f *fakeConsul) setHealth(s string) {
	f.mu.Lock()
	f.health = s
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// move sets web's port and moves the index by delta, which may be
// negative: Consul's index going backwards.
func (f *fakeConsul) move(delta int, port int) {
	f.mu.Lock()
	f.index = uint64(int(f.index) + delta)
	f.port, f.portIdx = port, f.index
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// requests counts the requests seen per path.
func (f *fakeConsul) requests() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := map[string]int{}
	for _, r := range f.reqs {
		n[r.path]++
	}
	return n
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, seenRequest{path: r.URL.Path, token: r.Header.Get("X-Consul-Token"), query: r.URL.Query()})
	fault := f.fault
	f.mu.Unlock()
	leaderless := false
	if fault != nil {
		if status, body, hang := fault(r.URL.Path); hang {
			<-r.Context().Done()
			return
		} else if status == noKnownLeader {
			leaderless = true
		} else if status != 0 {
			w.Header().Set("X-Consul-Index", "10")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
			return
		}
	}
	if r.URL.Path == "/v1/agent/self" {
		// As a real agent says it, with Consul's default limit.
		_, _ = w.Write([]byte(`{"Config":{"Datacenter":"dc1"},"DebugConfig":{"HTTPMaxConnsPerClient":200}}`))
		return
	}
	f.mu.Lock()
	catching, caughtUp := f.catchingUp, f.caughtUp
	if catching {
		f.asked++
	}
	f.mu.Unlock()
	if catching && r.URL.Query().Has("index") {
		select {
		case <-caughtUp:
		case <-r.Context().Done():
			return
		}
	}
	f.mu.Lock()
	noWeb := f.catchingUp
	f.mu.Unlock()
	if noWeb && r.URL.Query().Has("consistent") {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("rpc error making call: Not ready to serve consistent reads"))
		return
	}
	if idx, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64); err == nil {
		f.mu.Lock()
		cur, ch := f.index, f.changed
		f.mu.Unlock()
		if idx == cur { // a request ahead of the index (it went backwards) returns at once
			wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
			if err != nil {
				wait = time.Hour
			}
			timer := time.NewTimer(wait)
			defer timer.Stop()
			select {
			case <-ch:
			case <-timer.C: // Consul's answer when the wait ends: the same index
			case <-r.Context().Done():
				return
			}
		}
	}
	f.mu.Lock()
	idx, health, port, portIdx := f.index, f.health, f.port, f.portIdx
	f.mu.Unlock()
	w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	w.Header().Set("X-Consul-KnownLeader", strconv.FormatBool(!leaderless))
	var body any
	switch r.URL.Path {
	case "/v1/catalog/services":
		svcs := map[string][]string{"web": {"a"}}
		if noWeb {
			delete(svcs, "web")
		}
		for _, x := range f.extra {
			svcs[x] = []string{}
		}
		body = svcs
	case "/v1/catalog/nodes":
		body = []map[string]any{{"Node": "n1", "Address": "10.0.0.1", "ModifyIndex": 5}}
	case "/v1/health/state/critical", "/v1/health/state/warning":
		body = []map[string]any{}
		if strings.HasSuffix(r.URL.Path, "/"+health) && !noWeb {
			body = []map[string]any{{"Node": "n1", "CheckID": "web-1", "ServiceName": "web", "Status": health, "ModifyIndex": idx}}
		}
	case "/v1/catalog/node-services/n1":
		svcs := []map[string]any{{"ID": "web-1", "Service": "web", "Port": port, "ModifyIndex": portIdx}}
		if r.URL.Query().Has("filter") || noWeb {
			svcs = nil
		}
		body = map[string]any{"Node": map[string]any{"Node": "n1", "Address": "10.0.0.1"}, "Services": svcs}
	case "/v1/health/service/web":
		if noWeb {
			body = []map[string]any{}
			break
		}
		body = []map[string]any{{
			"Node":    map[string]any{"Node": "n1", "Address": "10.0.0.1"},
			"Service": map[string]any{"ID": "web-1", "Service": "web", "Port": port, "Tags": []string{"a"}, "ModifyIndex": portIdx},
			"Checks":  []map[string]any{{"Node": "n1", "CheckID": "web-1", "Status": health}},
		}}
	default:
		x, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
		if !ok || !slices.Contains(f.extra, x) {
			http.NotFound(w, r)
			return
		}
		body = []map[string]any{{
			"Node":    map[string]any{"Node": "n1", "Address": "10.0.0.1"},
			"Service": map[string]any{"ID": x + "-1", "Service": x, "Port": 90},
			"Checks":  []map[string]any{},
		}}
	}
	_ = json.NewEncoder(w).Encode(body)
}

func fastDiscovery(t *testing.T, server string) *Discovery {
	d := newTestDiscovery(t, "server: "+server+"\nrefresh_interval: 100ms\n")
	d.readTimeout = 300 * time.Millisecond
	d.wait, d.waitSlack = time.Second, 300*time.Millisecond
	d.backoffMin, d.backoffMax = 20*time.Millisecond, 100*time.Millisecond
	return d
}

// TestRefreshFaults: each fault makes the one-shot refresh fail with a
// clear error rather than return a partial state.
func TestRefreshFaults(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		status     int
		body       string
		hang       bool
		want       string
	}{
		{name: "429 on a service", path: "/v1/health/service/web", status: 429, body: "Your IP is issuing too many concurrent connections, please rate limit your calls",
			want: `reading service "web": unexpected response code 429 (Your IP is issuing too many concurrent connections, please rate limit your calls)`},
		{name: "500 on the catalog", path: "/v1/catalog/services", status: 500, body: "rpc error",
			want: "reading service list: unexpected response code 500 (rpc error)"},
		{name: "garbage service body", path: "/v1/health/service/web", status: 200, body: "<html>proxy</html>",
			want: `reading service "web": decoding /v1/health/service/web response: invalid character '<' looking for beginning of value`},
		{name: "garbage catalog body", path: "/v1/catalog/services", status: 200, body: `{"truncated":`,
			want: "reading service list: decoding /v1/catalog/services response: unexpected end of JSON input"},
		{name: "hang", path: "/v1/health/service/web", hang: true,
			want: `reading service "web": Get "http://SERVER/v1/health/service/web?stale=": context deadline exceeded`},
		{name: "agent self 403", path: "/v1/agent/self", status: 403, body: "Permission denied",
			want: "retrieving datacenter name: unexpected response code 403 (Permission denied)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, server := newFake(t)
			f.setFault(func(p string) (int, string, bool) {
				if p == tc.path {
					return tc.status, tc.body, tc.hang
				}
				return 0, "", false
			})
			d := fastDiscovery(t, server)
			_, err := d.refresh(context.Background())
			want := strings.ReplaceAll(tc.want, "SERVER", server)
			if err == nil || err.Error() != want {
				t.Fatalf("error = %v\nwant    %s", err, want)
			}
			if testutilCounter(d.metrics.rpcFailures) == 0 {
				t.Fatal("no rpc failure counted")
			}
		})
	}
}

// TestRunStaleOverIncomplete: Run sends nothing until every service was
// read; once running, failing reads keep the last targets; recovery then
// propagates the change. Over HTTP the faults hit the workers' reads, over
// HTTPS the service's stream.
func TestRunStaleOverIncomplete(t *testing.T) {
	for _, m := range watchModes {
		t.Run(m.name, func(t *testing.T) { testRunStaleOverIncomplete(t, m) })
	}
}

func testRunStaleOverIncomplete(t *testing.T, m watchMode) {
	https := m.https
	for _, fault := range []struct {
		name   string
		status int
		body   string
		hang   bool
	}{
		{name: "429", status: 429, body: "too many concurrent connections"},
		{name: "500", status: 500, body: "boom"},
		{name: "garbage", status: 200, body: "garbage"},
		{name: "hang", hang: true},
		{name: "no known leader", status: noKnownLeader},
	} {
		t.Run(fault.name, func(t *testing.T) {
			f, server := newFake(t)
			if https {
				f, server = newFakeTLS(t)
			}
			setFailing := f.faultWhile("/v1/health/service/web", fault.status, fault.body, fault.hang)

			d := fastDiscovery(t, server+m.yml)
			ctx, cancel := context.WithCancel(context.Background())
			col := collect(ctx, d)
			defer func() { cancel(); <-col.done }()
			defer m.check(t, d)

			if m.streams && fault.status == noKnownLeader {
				// A stream asks from index 1 once the client has caught up
				// (streamIndex), and Consul's streaming backend answers
				// such a query with X-Consul-KnownLeader: false whatever
				// the leader: no stream's read is held to it. What guards
				// the start is the catch-up (TestServerCatchingUp).
				col.waitFor(t, 5*time.Second, "complete state", hasTarget(label(labelHealth, "passing")))
				if n := testutilCounter(d.metrics.rpcFailures); n != 0 {
					t.Fatalf("%v failures counted for a stream's answers without a known leader", n)
				}
				return
			}
			// Start-up with a failing service: nothing is sent.
			waitCounter(t, d.metrics.rpcFailures, 2)
			if got := col.firstFlat(); col.flat() != nil || got != nil {
				t.Fatalf("a partial state was sent: %v", got)
			}
			setFailing(false)
			col.waitFor(t, 5*time.Second, "complete state", hasTarget(label(labelHealth, "passing")))

			// A change whose re-read fails: the old target stays.
			setFailing(true)
			before := testutilCounter(d.metrics.rpcFailures)
			f.setHealth("critical")
			waitCounter(t, d.metrics.rpcFailures, before+2)
			if got := col.flat(); len(got) != 1 || !hasTarget(label(labelHealth, "passing"))(got) {
				t.Fatalf("targets changed while reads failed: %v", got)
			}
			setFailing(false)
			col.waitFor(t, 5*time.Second, "change after recovery", hasTarget(label(labelHealth, "critical")))
		})
	}
}

// TestServerCatchingUp: a Consul server that restarted and won its
// election answers stale reads from a state store that has not applied its
// log yet (here: without web) and refuses consistent reads until it has.
// Neither at start nor after an outage does sdhub take that state: it reads
// consistently until answered.
func TestServerCatchingUp(t *testing.T) {
	for _, m := range watchModes {
		t.Run(m.name, func(t *testing.T) { testServerCatchingUp(t, m) })
	}
}

func testServerCatchingUp(t *testing.T, m watchMode) {
	f, server := newFake(t)
	if m.https {
		f, server = newFakeTLS(t)
	}
	f.setCatchingUp(true)
	setDown := f.faultWhile("", http.StatusBadGateway, "gone", false)
	setDown(false)

	d := fastDiscovery(t, server+m.yml)
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	defer m.check(t, d)

	// At start: the refused consistent reads are failures, nothing is sent.
	waitCounter(t, d.metrics.rpcFailures, 3)
	if col.messages() != 0 {
		t.Fatalf("sent while the server was catching up: %v", col.flat())
	}
	f.setCatchingUp(false)
	col.waitFor(t, 5*time.Second, "web once the server caught up", hasTarget(label(labelHealth, "passing")))

	// Mid-run: the server goes away, comes back catching up, then has
	// caught up; web's health changed meanwhile.
	setDown(true)
	waitCounter(t, d.metrics.rpcFailures, testutilCounter(d.metrics.rpcFailures)+2)
	f.setCatchingUp(true)
	setDown(false)
	f.setHealth("critical")
	poll.Fatal(t, 10*time.Second, 10*time.Millisecond, "requests while the server caught up", func() bool { return f.askedWhileCatchingUp() >= 3 })
	f.setCatchingUp(false)
	col.waitFor(t, 5*time.Second, "web's change once the server caught up", hasTarget(label(labelHealth, "critical")))
	if n := col.fewest(); n != 1 {
		t.Fatalf("web was dropped: %d targets after some message", n)
	}
	// Catch-up reads have no index; once one is answered, reads are stale
	// again (allow_stale's default).
	col.waitFor(t, 5*time.Second, "", hasTarget(label(labelHealth, "critical")))
	f.setHealth("passing")
	col.waitFor(t, 5*time.Second, "a change after the catch-up", hasTarget(label(labelHealth, "passing")))
	seen := f.seen()
	last := -1
	for i, r := range seen {
		if r.query.Has("consistent") {
			last = i
			if r.query.Has("index") || r.query.Has("stale") {
				t.Fatalf("catch-up read %s?%s has an index or is stale", r.path, r.query.Encode())
			}
		}
	}
	if last < 0 || !slices.ContainsFunc(seen[last+1:], func(r seenRequest) bool { return r.query.Has("stale") && r.query.Has("index") }) {
		t.Fatalf("no stale blocking read after the last catch-up read (%d of %d)", last, len(seen))
	}
}

// TestStreamsBlockOnceStarted: over HTTP/2 the streams' blocking queries
// wait until every service was answered once, so that at start Consul
// answers every service's first query before the blocking ones; a service
// that cannot be read holds them back for startGrace at most.
func TestStreamsBlockOnceStarted(t *testing.T) {
	// A stream's first query asks from index 1 (streamIndex): Consul
	// answers it at once.
	blocking := func(f *fakeConsul, svc string) bool {
		return slices.ContainsFunc(f.seen(), func(r seenRequest) bool {
			return r.path == "/v1/health/service/"+svc && r.query.Has("index") && r.query.Get("index") != "1"
		})
	}
	waitBlocking := func(f *fakeConsul, svc ...string) {
		t.Helper()
		poll.Fatal(t, 5*time.Second, 10*time.Millisecond, fmt.Sprintf("a blocking query of %v", svc), func() bool {
			return blocking(f, svc[0]) && (len(svc) == 1 || blocking(f, svc[1]))
		})
	}

	f, server := newFakeTLS(t)
	f.extra = []string{"api"}
	setFailing := f.faultWhile("/v1/health/service/api", http.StatusInternalServerError, "boom", false)
	d := fastDiscovery(t, server)
	d.startGrace = time.Hour
	d.floor, d.detectFloor = time.Millisecond, time.Millisecond // a stream would block at once
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	// web was read, api keeps failing: web's stream does not block yet.
	waitCounter(t, d.metrics.rpcFailures, 5)
	if !slices.ContainsFunc(f.seen(), func(r seenRequest) bool { return r.path == "/v1/health/service/web" }) {
		t.Fatal("web was not read")
	}
	if blocking(f, "web") {
		t.Fatal("web's stream blocked before every service was read once")
	}
	setFailing(false)
	col.waitFor(t, 5*time.Second, "both services", func(s []string) bool { return len(s) == 2 })
	waitBlocking(f, "web", "api")

	// With api failing for good, startGrace lets web's stream block.
	f2, server2 := newFakeTLS(t)
	f2.extra = []string{"api"}
	f2.faultWhile("/v1/health/service/api", http.StatusInternalServerError, "boom", false)
	d2 := fastDiscovery(t, server2)
	d2.startGrace = 300 * time.Millisecond
	ctx2, cancel2 := context.WithCancel(context.Background())
	col2 := collect(ctx2, d2)
	defer func() { cancel2(); <-col2.done }()
	waitBlocking(f2, "web")
}

// TestIndexBackwards: when Consul's index goes backwards (a restart that
// lost its state) the watch re-reads everything at once, although
// refresh_interval is an hour. An ordinary re-registration before it is
// found by a probe round.
func TestIndexBackwards(t *testing.T) {
	f, server := newFake(t)
	d := newTestDiscovery(t, "server: "+server+"\nrefresh_interval: 1h\n")
	d.detectFloor = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	col.waitFor(t, 5*time.Second, "initial", hasTarget(addr("10.0.0.1:80")))

	f.move(+1, 81) // a re-registration with another port
	col.waitFor(t, 5*time.Second, "re-registration", hasTarget(addr("10.0.0.1:81")))
	f.move(-5, 82) // backwards, and the node's index with it
	col.waitFor(t, 5*time.Second, "resync after the index went backwards", hasTarget(addr("10.0.0.1:82")))
}

func waitCounter(t *testing.T, c prometheus.Counter, atLeast float64) {
	t.Helper()
	if err := poll.Until(10*time.Second, 10*time.Millisecond, "the counter", func() bool { return testutilCounter(c) >= atLeast }); err != nil {
		t.Fatalf("counter at %v, want at least %v (%v)", testutilCounter(c), atLeast, err)
	}
}

// TestBackoff: a detector's errors back off exponentially with jitter, up
// to a cap, each reported to the watch.
func TestBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := backoffDiscovery(t, 100*time.Millisecond, 2*time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		var calls []time.Time
		events := make(chan event)
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.detect(ctx, events, evCatalog, 1, func(context.Context, uint64) (event, uint64, error) {
				calls = append(calls, time.Now())
				if len(calls) == 12 {
					cancel()
				}
				return event{}, 0, errors.New("down")
			}, func() time.Duration { return 0 })
		}()
		reported := 0
	loop:
		for {
			select {
			case ev := <-events:
				if ev.err == nil || ev.kind != evCatalog {
					t.Fatalf("event %+v, want a catalog error", ev)
				}
				reported++
			case <-done:
				break loop
			}
		}
		if len(calls) != 12 || reported != 11 {
			t.Fatalf("%d calls, %d errors reported; want 12 and 11", len(calls), reported)
		}
		for i := 1; i < len(calls); i++ {
			gap := calls[i].Sub(calls[i-1])
			base := min(100*time.Millisecond<<(i-1), 2*time.Second)
			if gap < base/2 || gap > base*3/2 {
				t.Errorf("wait %d = %v, want in [%v, %v]", i, gap, base/2, base*3/2)
			}
		}
	})
}

// TestCatalogPace: an answer with news is followed by the detector's
// floor, or by its pace when longer; the pace is refresh_interval, or
// --consul.service-list-interval (through discovery.Options) when set.
func TestCatalogPace(t *testing.T) {
	for _, tc := range []struct {
		refresh, interval, want time.Duration
	}{
		{0, 0, 30 * time.Second}, // refresh_interval's default
		{0, 1500 * time.Millisecond, 1500 * time.Millisecond},
		{time.Minute, 0, time.Minute},
		{time.Minute, 5 * time.Second, 5 * time.Second},
	} {
		yml := "server: localhost:8500\n"
		if tc.refresh > 0 {
			yml += fmt.Sprintf("refresh_interval: %v\n", tc.refresh)
		}
		c, err := decodeConfig(t, []byte(yml))
		if err != nil {
			t.Fatal(err)
		}
		d, err := NewDiscovery(c, discovery.Options{Tuning: discovery.Tuning{ConsulServiceListInterval: tc.interval}})
		if err != nil {
			t.Fatal(err)
		}
		if got := d.listPace(); got != tc.want {
			t.Errorf("refresh_interval %v, interval %v: listPace() = %v, want %v", tc.refresh, tc.interval, got, tc.want)
		}
	}
	for _, pace := range []time.Duration{0, time.Second} {
		synctest.Test(t, func(t *testing.T) {
			d := backoffDiscovery(t, 100*time.Millisecond, 2*time.Second)
			ctx, cancel := context.WithCancel(context.Background())
			var calls []time.Time
			events := make(chan event)
			done := make(chan struct{})
			go func() {
				defer close(done)
				d.detect(ctx, events, evCatalog, 1, func(_ context.Context, idx uint64) (event, uint64, error) {
					calls = append(calls, time.Now())
					if len(calls) == 5 {
						cancel()
					}
					return event{}, idx + 1, nil // news every time
				}, func() time.Duration { return pace })
			}()
			for {
				select {
				case <-events:
					continue
				case <-done:
				}
				break
			}
			want := max(d.detectFloor, pace)
			for i := 1; i < len(calls); i++ {
				if gap := calls[i].Sub(calls[i-1]); gap != want {
					t.Errorf("pace %v: wait %d = %v, want %v", pace, i, gap, want)
				}
			}
		})
	}
}

// TestBackoffCancellable: a long backoff ends as soon as ctx does.
func TestBackoffCancellable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := backoffDiscovery(t, time.Hour, time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		start := time.Now()
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		events := make(chan event, 1)
		d.detect(ctx, events, evCatalog, 1, func(context.Context, uint64) (event, uint64, error) {
			return event{}, 0, errors.New("down")
		}, func() time.Duration { return 0 })
		if waited := time.Since(start); waited != time.Second {
			t.Fatalf("detect returned after %v, want 1s", waited)
		}
	})
}

// backoffDiscovery is a Discovery with only what detect needs: its backoff
// bounds, metrics, a logger and a health sink that discards.
func backoffDiscovery(t *testing.T, lo, hi time.Duration) *Discovery {
	return &Discovery{backoffMin: lo, backoffMax: hi, metrics: mustMetrics(t), logger: discard(nil), health: discovery.HealthOf(discovery.Options{})}
}

func mustMetrics(t *testing.T) *Metrics {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestUnixSocket: a server of the form unix:///path dials that socket, as
// the consul api client does.
func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "consul.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(&fakeConsul{index: 10, health: "passing", port: 80, changed: make(chan struct{})})
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	groups, err := newTestDiscovery(t, "server: unix://"+sock+"\n").refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := flatten(groupMap(groups)); len(got) != 1 || !hasTarget(addr("10.0.0.1:80"))(got) {
		t.Fatalf("targets %v", got)
	}
}

// healthLog records what a discoverer reports through discovery.Health.
type healthLog struct {
	mu     sync.Mutex
	events []string // "failed: <err>" or "synced"
	notify chan struct{}
}

func newHealthLog() *healthLog { return &healthLog{notify: make(chan struct{}, 1)} }

func (h *healthLog) Failed(err error) { h.add("failed: " + err.Error()) }
func (h *healthLog) Synced()          { h.add("synced") }

func (h *healthLog) add(e string) {
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

// waitFor waits until an event after the first from satisfies cond and
// returns the index after it.
func (h *healthLog) waitFor(t *testing.T, from int, what string, cond func(string) bool) int {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		events := slices.Clone(h.events)
		h.mu.Unlock()
		for i := from; i < len(events); i++ {
			if cond(events[i]) {
				return i + 1
			}
		}
		select {
		case <-h.notify:
		case <-deadline.C:
			t.Fatalf("no %s after event %d: %q", what, from, events)
		}
	}
}

// TestHealth: the discoverer reports each failed read through
// discovery.Health, and Synced once it has caught up: after the complete
// state, and again after a change that failed to read is read.
func TestHealth(t *testing.T) {
	f, server := newFake(t)
	var mu sync.Mutex
	failing := true
	f.setFault(func(p string) (int, string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if failing && p == "/v1/health/service/web" {
			return 500, "boom", false
		}
		return 0, "", false
	})
	setFailing := func(v bool) { mu.Lock(); failing = v; mu.Unlock() }

	c, err := decodeConfig(t, []byte("server: "+server+"\nrefresh_interval: 100ms\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := newHealthLog()
	d, err := NewDiscovery(c, discovery.Options{Health: h})
	if err != nil {
		t.Fatal(err)
	}
	d.backoffMin, d.backoffMax = 20*time.Millisecond, 100*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()

	isFailure := func(e string) bool { return e == `failed: reading service "web": unexpected response code 500 (boom)` }
	isSynced := func(e string) bool { return e == "synced" }
	i := h.waitFor(t, 0, "failure at start", isFailure)
	setFailing(false)
	i = h.waitFor(t, i, "sync once complete", isSynced)
	// Synced follows the send; the collector stores what it received
	// right after.
	col.waitFor(t, time.Second, "the complete state, received before the sync", func(s []string) bool { return len(s) == 1 })
	setFailing(true)
	f.setHealth("critical")
	i = h.waitFor(t, i, "failure of the change's read", isFailure)
	setFailing(false)
	h.waitFor(t, i, "sync after the change was read", isSynced)
	col.waitFor(t, 5*time.Second, "change", hasTarget(label(labelHealth, "critical")))
}
