package reliability

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/sdhub/sdhub/internal/consulagent"
)

// consulBackoffCap is discovery/consul's longest retry delay.
const consulBackoffCap = 15 * time.Second

// ConsulOptions configure the Consul outage scenario.
type ConsulOptions struct {
	Bin       string
	Dir       string
	ConsulBin string // the consul binary (consulagent.Binary)
	Services  int    // services registered, 5 instances each
}

// ConsulOutage runs sdhub on a real Consul agent and takes the agent away
// twice. Mid-run: while it is down the job's file keeps every target (a
// watcher reads every version of the file), the failure shows in
// /metrics and on the status page, and after the restart a new instance
// reaches the file within the backoff cap. At start: sdhub restarted while
// Consul is down leaves the existing file byte for byte and is not ready
// until Consul answers; then it is ready with the same targets.
func ConsulOutage(ctx context.Context, o ConsulOptions) (r Result) {
	r = Result{Scenario: "consul outage"}
	defer r.timed(time.Now())

	agent, err := consulagent.Start(ctx, o.ConsulBin, consulagent.Options{})
	if err != nil {
		r.Fail("starting consul: %v", err)
		return r
	}
	defer agent.Close()
	cl, err := api.NewClient(&api.Config{Address: agent.Addr()})
	if r.failOn(err) {
		return r
	}
	register := func(svc, node string, i int) error {
		_, err := cl.Catalog().Register(&api.CatalogRegistration{
			Node: node, Address: "10.1.0." + fmt.Sprint(i%250+1), SkipNodeUpdate: true,
			// rack-id and rack_id sanitise to the same label name: the
			// last in sorted order (rack_id) must win, every time.
			Service: &api.AgentService{ID: fmt.Sprintf("%s-%d", svc, i), Service: svc, Port: 9000 + i, Meta: map[string]string{"rack-id": "dash", "rack_id": "under"}},
		}, nil)
		return err
	}
	total := 0
	for s := 0; s < o.Services; s++ {
		for i := 0; i < 5; i++ {
			if err := register(fmt.Sprintf("svc%d", s), fmt.Sprintf("node%d", i), s*5+i); err != nil {
				r.Fail("register: %v", err)
				return r
			}
			total++
		}
	}

	ps := newPaths(o.Dir)
	// Only the scenario's services: the agent's own "consul" service
	// changes health while the agent restarts.
	var names []string
	for s := 0; s < o.Services; s++ {
		names = append(names, fmt.Sprintf("%q", fmt.Sprintf("svc%d", s)))
	}
	if r.failOn(ps.writeConfig(fmt.Sprintf("scrape_configs:\n  - job_name: svc\n    consul_sd_configs:\n      - server: %q\n        refresh_interval: 1s\n        services: [%s]\n  - job_name: static\n    static_configs:\n      - targets: [\"s:1\"]\n", agent.Addr(), strings.Join(names, ", ")))) {
		return r
	}
	svcPath := filepath.Join(ps.out, "svc.json")
	count := func() int {
		b, err := os.ReadFile(svcPath)
		if err != nil {
			return -1
		}
		es, err := ParseFileSD(b)
		if err != nil {
			return -2
		}
		n := 0
		for _, e := range es {
			if e.Labels["__meta_consul_service_metadata_rack_id"] != "under" {
				return -3 // colliding metadata keys resolved the wrong way
			}
			n += len(e.Targets)
		}
		return n
	}
	p, err := ps.start(o.Bin, fastFlush)
	if r.failOn(err) {
		return r
	}
	stopP := sync.OnceValue(p.Stop)
	defer func() { _ = stopP() }()
	if err := Eventually(fmt.Sprintf("%d consul targets written", total), func() bool { return count() == total && jobHealthy(p, "svc") }); err != nil {
		r.Fail("%v (%d)", err, count())
		return r
	}

	// Mid-run outage. The watcher reads every version of the file.
	r.Runs++
	w, err := WatchDir(ps.out)
	if r.failOn(err) {
		return r
	}
	defer w.Close()
	minSeen := total
	var watchMu sync.Mutex
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-wctx.Done():
				return
			case ev := <-w.Events:
				if ev.Name == svcPath {
					n := count()
					watchMu.Lock()
					minSeen = min(minSeen, n)
					watchMu.Unlock()
				}
			case <-w.Errors:
			}
		}
	}()
	failures := func() float64 { v, _ := p.MetricSum("prometheus_sd_consul_rpc_failures_total"); return v }
	before := failures()
	agent.Stop()
	// Down long enough for several backoff doublings (250 ms, 500 ms, 1 s, 2 s).
	if err := Eventually("consul rpc failures counted", func() bool { return failures() >= before+4 }); err != nil {
		r.Fail("%v", err)
	}
	// The first errors may be the agent closing the connections of
	// queries in flight (EOF); the retries' are refused dials.
	if err := Eventually("the status page shows the consul failure", func() bool {
		_, page, _ := p.Do(http.MethodGet, "/")
		return bytes.Contains([]byte(page), []byte("connection refused"))
	}); err != nil {
		r.Fail("the status page does not show the consul failure")
	}
	if n := count(); n != total {
		r.Fail("during the outage svc.json holds %d targets, want %d", n, total)
	}
	if err := agent.Restart(ctx); err != nil {
		r.Fail("restarting consul: %v", err)
		return r
	}
	back := time.Now()
	if err := register("svc0", "node0", 999); err != nil {
		r.Fail("register after restart: %v", err)
	}
	total++
	if err := Eventually("the new instance in svc.json", func() bool { return count() == total }); err != nil {
		r.Fail("%v", err)
	}
	recovery := time.Since(back)
	if recovery > consulBackoffCap+5*time.Second {
		r.Fail("recovery took %s, more than the backoff cap %s (+5 s)", recovery, consulBackoffCap)
	}
	stopWatch()
	<-watchDone
	if minSeen < total-1 {
		r.Fail("svc.json dropped to %d targets during the outage (want %d)", minSeen, total-1)
	}
	r.Fig("mid-run: targets %d, fewest in any version %d, failure on /metrics and the status page, recovery %.1f s (cap %s)", total-1, minSeen, recovery.Seconds(), consulBackoffCap)
	midRun := consulErrorLevels(p.Log())

	// Unreachable at start, with the file in place.
	r.Runs++
	if err := stopP(); err != nil {
		r.Fail("%v", err)
	}
	old, err := os.ReadFile(svcPath)
	if r.failOn(err) {
		return r
	}
	agent.Stop()
	p2, err := ps.start(o.Bin, fastFlush)
	if r.failOn(err) {
		return r
	}
	defer func() { _ = p2.Stop() }()
	if err := Eventually("consul rpc failures after the restart", func() bool { v, _ := p2.MetricSum("prometheus_sd_consul_rpc_failures_total"); return v >= 2 }); err != nil {
		r.Fail("%v", err)
	}
	if now, err := os.ReadFile(svcPath); err != nil || !bytes.Equal(now, old) {
		r.Fail("svc.json changed while Consul was unreachable at start (err %v)", err)
	}
	if jobHealthy(p2, "svc") || jobServed(p2, "svc") {
		r.Fail("job svc is healthy or served over http_sd while Consul is unreachable")
	}
	if !readyOK(p2) {
		r.Fail("/-/ready is not 200: sdhub serves every job by its own state")
	}
	if err := agent.Restart(ctx); err != nil {
		r.Fail("restarting consul: %v", err)
		return r
	}
	if err := Eventually("job svc healthy and served once Consul answers", func() bool { return jobHealthy(p2, "svc") && jobServed(p2, "svc") }); err != nil {
		r.Fail("%v", err)
	}
	if now, err := os.ReadFile(svcPath); err != nil || !bytes.Equal(now, old) {
		r.Fail("svc.json differs after Consul came back with the same catalog (err %v): %s", err, targetDiff(old, now))
	}
	atStart := consulErrorLevels(p2.Log())
	if len(midRun) == 0 || !maps.Equal(midRun, atStart) {
		r.Fail("failing to reach Consul is logged at levels %v mid-run and %v at start, want the same one", slices.Sorted(maps.Keys(midRun)), slices.Sorted(maps.Keys(atStart)))
	}
	r.Fig("at start: file untouched while down, job unhealthy and not served, then healthy with the same %d targets once Consul answered; Consul's errors logged at %v, as mid-run", total, slices.Sorted(maps.Keys(atStart)))
	return r
}

// consulErrorRE matches the log lines of sdhub's consul discoverer about
// failing to reach Consul, capturing their level.
var consulErrorRE = regexp.MustCompile(`(?m)^time=\S+ level=(\w+) .*msg="Error (?:watching|reading|retrieving|probing)`)

// consulErrorLevels are the levels of log's lines about failing to reach
// Consul.
func consulErrorLevels(log string) map[string]bool {
	levels := map[string]bool{}
	for _, m := range consulErrorRE.FindAllStringSubmatch(log, -1) {
		// Details at debug level do not count: with a stream per
		// service, the first failing stream warns and the others, the
		// same failure, go to debug.
		if m[1] != "DEBUG" {
			levels[m[1]] = true
		}
	}
	return levels
}

// targetDiff summarises how two file_sd files' targets differ: their
// counts and the targets only one of them has.
func targetDiff(before, after []byte) string {
	set := func(b []byte) map[string]bool {
		m := map[string]bool{}
		es, _ := ParseFileSD(b)
		for _, e := range es {
			for _, t := range e.Targets {
				m[t] = true
			}
		}
		return m
	}
	b, a := set(before), set(after)
	var gone, added []string
	for t := range b {
		if !a[t] {
			gone = append(gone, t)
		}
	}
	for t := range a {
		if !b[t] {
			added = append(added, t)
		}
	}
	slices.Sort(gone)
	slices.Sort(added)
	if len(gone) == 0 && len(added) == 0 {
		return fmt.Sprintf("the same %d targets, with other labels or bytes", len(b))
	}
	return fmt.Sprintf("%d targets before, %d after; gone %v; added %v", len(b), len(a), gone, added)
}
