package swarm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/swarmtest"
)

// runner runs a Discovery and keeps what it sends.
type runner struct {
	up     chan []*targetgroup.Group
	cancel context.CancelFunc
	done   chan struct{}
}

func startRun(t *testing.T, d *Discovery) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{up: make(chan []*targetgroup.Group), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		d.Run(ctx, r.up)
	}()
	t.Cleanup(r.stop)
	return r
}

// watching runs role's discovery on e with ten times the default refresh
// interval, so that what follows comes from the watch, and waits for its
// initial state.
func watching(t *testing.T, e *swarmtest.Engine, role string) (*Discovery, *runner) {
	t.Helper()
	c := DefaultSDConfig
	c.Host, c.Role = e.Host, role
	c.RefreshInterval = c.RefreshInterval * 10
	d, err := NewDiscovery(&c, discoveryOptions())
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(t, d)
	r.waitFor(t, time.Minute, "initial state", func([]string) bool { return true })
	return d, r
}

func (r *runner) stop() {
	r.cancel()
	<-r.done
}

// waitFor receives until the flattened state satisfies pred and returns the
// time it took; it fails the test after within.
func (r *runner) waitFor(t *testing.T, within time.Duration, what string, pred func(flat []string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	timeout := time.After(within)
	var last []string
	for {
		select {
		case tgs := <-r.up:
			last = flatten(t, tgs)
			if pred(last) {
				return time.Since(start)
			}
		case <-timeout:
			t.Fatalf("%s: not seen within %v; last state:\n%s", what, within, strings.Join(last, "\n"))
		}
	}
}

// countWith counts targets containing every sub.
func countWith(flat []string, subs ...string) int {
	n := 0
	for _, s := range flat {
		if !slices.ContainsFunc(subs, func(sub string) bool { return !strings.Contains(s, sub) }) {
			n++
		}
	}
	return n
}

var (
	latencyMu sync.Mutex
	latencies []time.Duration
)

func record(t *testing.T, step string, d time.Duration) {
	t.Logf("%-28s %v", step, d.Round(time.Millisecond))
	latencyMu.Lock()
	latencies = append(latencies, d)
	latencyMu.Unlock()
}

// TestWatchFollowsSwarm scales, updates and removes a service and measures
// how long after the docker command returns the discoverer sends the
// changed state. refresh_interval is 10 minutes, so only the events
// stream can make the output follow within the bound.
func TestWatchFollowsSwarm(t *testing.T) {
	e := swarmtest.New(t)
	e.CreateNetwork(t, "net")
	d, r := watching(t, e, "tasks")

	svc := fmt.Sprintf(`__meta_dockerswarm_service_name="%s"`, e.Name("w"))
	running := func(n int) func([]string) bool {
		return func(flat []string) bool {
			return countWith(flat, svc, `task_desired_state="running"`, `task_state="running"`) == n &&
				countWith(flat, svc, `task_desired_state="running"`) == n
		}
	}
	const bound = 15 * time.Second

	e.CreateService(t, "w", []string{"--replicas", "1", "--network", e.Name("net")})
	record(t, "create, 1 running", r.waitFor(t, time.Minute, "created", running(1)))
	for round := range 3 {
		e.Scale(t, "w", 3)
		record(t, fmt.Sprintf("scale 1->3 (round %d)", round), r.waitFor(t, bound, "scaled up", running(3)))
		e.Scale(t, "w", 1)
		record(t, fmt.Sprintf("scale 3->1 (round %d)", round), r.waitFor(t, bound, "scaled down", running(1)))
		label := fmt.Sprintf("round=%d", round)
		e.Update(t, "w", "--label-add", label)
		record(t, fmt.Sprintf("update label (round %d)", round), r.waitFor(t, bound, "updated",
			func(flat []string) bool {
				return countWith(flat, svc, fmt.Sprintf(`__meta_dockerswarm_service_label_round="%d"`, round)) > 0
			}))
	}
	e.RemoveService(t, "w")
	record(t, "remove", r.waitFor(t, bound, "removed", func(flat []string) bool { return countWith(flat, svc) == 0 }))

	latencyMu.Lock()
	defer latencyMu.Unlock()
	s := slices.Clone(latencies)
	slices.Sort(s)
	t.Logf("latency from docker command return to changed state sent: n=%d p50=%v max=%v",
		len(s), s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
	if got := testutilCount(d.metrics.events); got == 0 {
		t.Errorf("no Docker events were counted")
	}
}

// TestWatchNodes: a node label change reaches the nodes role within seconds.
func TestWatchNodes(t *testing.T) {
	e := swarmtest.New(t)
	_, r := watching(t, e, "nodes")
	key := "sdhub_watch_" + strings.ReplaceAll(strings.TrimSuffix(e.Prefix, "-"), "-", "_")
	e.Docker(t, "node", "update", "--label-add", key+"=1", e.NodeID)
	t.Cleanup(func() { _, _ = e.Try("node", "update", "--label-rm", key, e.NodeID) })
	record(t, "node label", r.waitFor(t, 15*time.Second, "node label", func(flat []string) bool {
		return countWith(flat, `__meta_dockerswarm_node_label_`+key+`="1"`) == 1
	}))
}
