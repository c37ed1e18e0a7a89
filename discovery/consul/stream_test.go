package consul

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sdhub/sdhub/internal/consulagent"
)

// TestStreamsStartFromTheView: with a stream per service, the first query
// of each service is answered by Consul's streaming backend, from the view
// the stream then blocks on, so that at start the agent answers each
// service once, not a plain read and then the view (streamIndex). A proxy
// in front of a real agent records each answer's X-Consul-Query-Backend.
func TestStreamsStartFromTheView(t *testing.T) {
	m := watchModes[1] // http-streams
	a := consulagent.StartT(t, consulagent.Options{})
	w := newWriter(t, a)
	const services, nodes = 30, 5
	var ins []instance
	ns := make([]node, nodes)
	for i := range ns {
		ns[i] = node{name: fmt.Sprintf("node-%d", i), addr: fmt.Sprintf("10.9.1.%d", i+1)}
		w.registerNode(ns[i])
	}
	for i := range services {
		id := fmt.Sprintf("svc-%d", i)
		ins = append(ins, instance{node: ns[i%nodes], id: id, name: id, port: 80,
			checks: map[string]string{id + "-http": "passing"}})
	}
	w.registerMany(ins)

	type answer struct{ service, index, backend string }
	var (
		mu      sync.Mutex
		answers []answer
	)
	agent, err := url.Parse("http://" + a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(agent)
	proxy.ModifyResponse = func(r *http.Response) error {
		if svc, ok := strings.CutPrefix(r.Request.URL.Path, "/v1/health/service/"); ok {
			mu.Lock()
			answers = append(answers, answer{svc, r.Request.URL.Query().Get("index"), r.Header.Get("X-Consul-Query-Backend")})
			mu.Unlock()
		}
		return nil
	}
	// The streams' queries end with the test: no log line for each.
	proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	srv := httptest.NewServer(proxy)
	defer srv.Close()

	d := newTestDiscovery(t, "server: "+strings.TrimPrefix(srv.URL, "http://")+"\n"+m.yml+noAgent)
	ctx, cancel := context.WithCancel(context.Background())
	col := collect(ctx, d)
	defer func() { cancel(); <-col.done }()
	col.waitFor(t, 20*time.Second, "every service", func(s []string) bool { return len(s) == services })
	m.check(t, d)

	mu.Lock()
	first := map[string]answer{}
	for _, an := range answers {
		if _, ok := first[an.service]; !ok {
			first[an.service] = an
		}
	}
	mu.Unlock()
	if len(first) != services {
		t.Fatalf("%d services answered, want %d", len(first), services)
	}
	for svc, an := range first {
		if an.index != "1" || an.backend != "streaming" {
			t.Errorf("%s: first answered query from index %q by Consul's %q backend, want index 1 and the streaming backend", svc, an.index, an.backend)
		}
	}

	// The streams block from the view's index: a change comes through.
	in := ins[0]
	in.tags = []string{"new"}
	w.register(in)
	col.waitFor(t, 5*time.Second, "svc-0's new tag", hasTarget(label(labelServiceID, "svc-0"), label(labelTags, ",new,")))
}

// TestNewServiceWithinRefreshInterval: with a stream per service, the
// service list is asked at most once per refresh_interval after an answer
// with news (listPace): a service registered after a quiet spell is seen
// at once, one registered right after another within refresh_interval,
// and not sooner. On a real agent, over HTTP and HTTPS.
func TestNewServiceWithinRefreshInterval(t *testing.T) {
	for _, m := range watchModes[1:] {
		t.Run(m.name, func(t *testing.T) {
			a := consulagent.StartT(t, consulagent.Options{TLS: m.https})
			w := newWriter(t, a)
			n := node{name: "node-a", addr: "10.9.2.1"}
			w.register(instance{node: n, id: "web-1", name: "web", port: 80})
			const refresh = 2 * time.Second
			d := newTestDiscovery(t, sdConfig(a, m.https)+fmt.Sprintf("refresh_interval: %v\n", refresh)+m.yml+noAgent)
			ctx, cancel := context.WithCancel(context.Background())
			col := collect(ctx, d)
			defer func() { cancel(); <-col.done }()
			col.waitFor(t, 20*time.Second, "web", hasTarget(label(labelService, "web")))
			m.check(t, d)

			start := time.Now()
			w.register(instance{node: n, id: "api-1", name: "api", port: 81})
			col.waitFor(t, 5*time.Second, "api", hasTarget(label(labelService, "api")))
			first := time.Since(start)
			if first > time.Second {
				t.Errorf("a new service after a quiet spell seen after %v, want under 1s", first)
			}
			start = time.Now()
			w.register(instance{node: n, id: "db-1", name: "db", port: 82})
			col.waitFor(t, refresh+5*time.Second, "db", hasTarget(label(labelService, "db")))
			second := time.Since(start)
			if second > refresh+time.Second || second < refresh-first-500*time.Millisecond {
				t.Errorf("a new service right after another seen after %v, want about refresh_interval (%v) after the first's answer (%v after it was registered)", second, refresh, first)
			}
		})
	}
}
