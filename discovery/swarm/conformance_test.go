package swarm

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/prometheus/client_golang/prometheus"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/moby"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/poll"
	"github.com/sdhub/sdhub/internal/swarmtest"
)

// scenario creates services that exercise every rule of the three roles:
// replicated and global services, ingress- and host-published TCP ports, UDP
// ports, no ports, several overlay networks (one internal, labelled), a dnsrr
// service, service, container and node labels with keys that need
// sanitising, a task that has exited, and old tasks left by an update.
func scenario(t *testing.T, e *swarmtest.Engine) {
	t.Helper()
	e.CreateNetwork(t, "front", "--label", "com.example/tier=front", "--label", "plain=1")
	e.CreateNetwork(t, "back", "--internal")
	nodeLabel := "sdhub.test/" + strings.TrimSuffix(e.Prefix, "-")
	e.Docker(t, "node", "update", "--label-add", nodeLabel+"=yes", e.NodeID)
	t.Cleanup(func() { _, _ = e.Try("node", "update", "--label-rm", nodeLabel, e.NodeID) })

	e.CreateService(t, "web", []string{"--replicas", "2",
		"--publish", "80", "--publish", "published=0,target=81,protocol=udp",
		"--network", e.Name("front"), "--network", e.Name("back"),
		"--label", "prometheus.io/scrape=true", "--label", "a-b.c=x y",
		"--container-label", "com.example.role=web", "--hostname", "web-{{.Task.Slot}}"})
	e.CreateService(t, "hostport", []string{"--mode", "global",
		"--publish", "mode=host,target=9090", "--publish", "mode=host,target=9091,protocol=udp",
		"--network", e.Name("front")})
	e.CreateService(t, "udponly", []string{"--replicas", "1", "--publish", "published=0,target=53,protocol=udp"})
	e.CreateService(t, "noports", []string{"--replicas", "1", "--network", e.Name("back")})
	e.CreateService(t, "dnsrr", []string{"--replicas", "1", "--endpoint-mode", "dnsrr",
		"--network", e.Name("front"), "--label", "kind=dnsrr"})
	e.CreateService(t, "exited", []string{"--replicas", "1", "--restart-condition", "none",
		"--network", e.Name("front")}, "-exit", "0")
	e.CreateService(t, "updating", []string{"--replicas", "2", "--update-delay", "1h", "--update-parallelism", "1", "--network", e.Name("front")})

	within := 90 * time.Second
	e.WaitRunning(t, "web", 2, within)
	e.WaitRunning(t, "hostport", 1, within)
	e.WaitRunning(t, "udponly", 1, within)
	e.WaitRunning(t, "noports", 1, within)
	e.WaitRunning(t, "dnsrr", 1, within)
	e.WaitTaskState(t, "exited", swarm.TaskStateComplete, 1, within)
	e.WaitRunning(t, "updating", 2, within)
	// One task is replaced, then the update waits an hour: it stays "updating".
	e.Update(t, "updating", "--env-add", "V=2")
	waitUpdating(t, e, "updating", within)
	// An update replaces the task: the old one stays, desired state shutdown.
	e.Update(t, "noports", "--force")
	e.WaitTaskState(t, "noports", swarm.TaskStateShutdown, 1, within)
	e.WaitRunning(t, "noports", 1, within)
}

func waitUpdating(t *testing.T, e *swarmtest.Engine, short string, within time.Duration) {
	t.Helper()
	var state string
	var err error
	if poll.Until(within, 100*time.Millisecond, "updating", func() bool {
		state, err = e.Try("service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", e.Name(short))
		return err == nil && state == string(swarm.UpdateStateUpdating)
	}) != nil {
		t.Fatalf("service %s: update state %q (err %v), want updating", e.Name(short), state, err)
	}
}

// TestConformance runs Prometheus's own dockerswarm discoverer and sdhub's
// against the same real swarm, for every role, and requires identical
// target label sets. The node is drained at the end and compared again.
func TestConformance(t *testing.T) {
	e := swarmtest.New(t)
	scenario(t, e)

	roles := []string{"services", "tasks", "nodes"}
	for _, role := range roles {
		t.Run(role, func(t *testing.T) {
			got := compare(t, e, role, scenarioFilters(e, role))
			checkCoverage(t, e, role, got, false)
		})
	}

	e.Docker(t, "node", "update", "--availability", "drain", e.NodeID)
	t.Cleanup(func() { _, _ = e.Try("node", "update", "--availability", "active", e.NodeID) })
	e.WaitRunning(t, "web", 0, 90*time.Second)
	for _, role := range []string{"tasks", "nodes"} {
		t.Run("drained/"+role, func(t *testing.T) {
			got := compare(t, e, role, scenarioFilters(e, role))
			checkCoverage(t, e, role, got, true)
		})
	}
	e.Docker(t, "node", "update", "--availability", "active", e.NodeID)
}

// scenarioFilters limits the services and tasks roles to the scenario's own
// services, so other tests using the same engine do not disturb the
// comparison; it also checks that both apply filters to the main list only.
func scenarioFilters(e *swarmtest.Engine, role string) []Filter {
	switch role {
	case "services":
		return []Filter{{Name: "label", Values: []string{swarmtest.LabelRun + "=" + e.Prefix}}}
	case "tasks":
		f := Filter{Name: "service"}
		for _, s := range []string{"web", "hostport", "udponly", "noports", "dnsrr", "exited", "updating"} {
			f.Values = append(f.Values, e.Name(s))
		}
		return []Filter{f}
	}
	return nil
}

// compare takes stable snapshots of both discoverers for role and requires
// them to be equal; it returns sdhub's flattened targets.
func compare(t *testing.T, e *swarmtest.Engine, role string, filters []Filter) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := newTestDiscovery(t, e.Host, role, filters)
	var last string
	for attempt := 0; attempt < 10; attempt++ {
		before := flatten(t, mustRefresh(t, ctx, d))
		theirs := flatten(t, prometheusRefresh(t, ctx, e.Host, role, filters))
		after := flatten(t, mustRefresh(t, ctx, d))
		if !slices.Equal(before, after) {
			last = "swarm changed during the comparison"
			continue
		}
		if slices.Equal(after, theirs) {
			t.Logf("role %s: %d identical targets", role, len(after))
			return after
		}
		last = diff(after, theirs)
	}
	t.Fatalf("role %s: sdhub and Prometheus differ:\n%s", role, last)
	return nil
}

func newTestDiscovery(t *testing.T, host, role string, filters []Filter) *Discovery {
	t.Helper()
	c := DefaultSDConfig
	c.Host, c.Role = host, role
	if filters != nil {
		c.Filters = filters
	}
	d, err := NewDiscovery(&c, discovery.Options{SetName: "conformance"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.client.Close() })
	return d
}

func mustRefresh(t *testing.T, ctx context.Context, d *Discovery) []*targetgroup.Group {
	t.Helper()
	tgs, err := d.refresh(ctx)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return tgs
}

// prometheusRefresh runs Prometheus's discoverer until its first send,
// with its metrics on a private registry.
func prometheusRefresh(t *testing.T, ctx context.Context, host, role string, filters []Filter) []*targetgroup.Group {
	t.Helper()
	cfg := moby.DefaultDockerSwarmSDConfig
	cfg.Host, cfg.Role = host, role
	for _, f := range filters {
		cfg.Filters = append(cfg.Filters, moby.Filter{Name: f.Name, Values: f.Values})
	}
	rm := promdiscovery.NewRefreshMetrics(prometheus.NewRegistry())
	metrics := cfg.NewDiscovererMetrics(prometheus.NewRegistry(), rm)
	d, err := cfg.NewDiscoverer(promdiscovery.DiscovererOptions{
		Logger:  slog.New(slog.DiscardHandler),
		Metrics: metrics,
		SetName: "conformance",
	})
	if err != nil {
		t.Fatalf("prometheus discoverer: %v", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan []*targetgroup.Group)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(rctx, ch)
	}()
	defer func() { cancel(); <-done }()
	select {
	case tgs := <-ch:
		return tgs
	case <-ctx.Done():
		t.Fatalf("prometheus discoverer sent nothing: %v", ctx.Err())
		return nil
	}
}

// flatten returns one string per target: its labels merged over the group
// labels, as a consumer sees them, sorted. Groups must have Source DockerSwarm.
func flatten(t *testing.T, tgs []*targetgroup.Group) []string {
	t.Helper()
	var out []string
	if len(tgs) != 1 || tgs[0].Source != "DockerSwarm" {
		t.Fatalf("want one group with Source DockerSwarm, got %d groups", len(tgs))
	}
	for _, tg := range tgs {
		for _, tl := range tg.Targets {
			out = append(out, tg.Labels.Merge(tl).String())
		}
	}
	slices.Sort(out)
	return out
}

func diff(ours, theirs []string) string {
	var b strings.Builder
	for _, s := range ours {
		if !slices.Contains(theirs, s) {
			fmt.Fprintf(&b, "only sdhub:      %s\n", s)
		}
	}
	for _, s := range theirs {
		if !slices.Contains(ours, s) {
			fmt.Fprintf(&b, "only prometheus: %s\n", s)
		}
	}
	if b.Len() == 0 {
		fmt.Fprintf(&b, "same targets, different multiplicity: %d vs %d", len(ours), len(theirs))
	}
	return b.String()
}

// checkCoverage makes sure the comparison exercised the rules it is meant
// to: a rule the scenario no longer triggers would make equality vacuous.
func checkCoverage(t *testing.T, e *swarmtest.Engine, role string, flat []string, drained bool) {
	t.Helper()
	has := func(subs ...string) bool {
		return slices.ContainsFunc(flat, func(s string) bool {
			for _, sub := range subs {
				if !strings.Contains(s, sub) {
					return false
				}
			}
			return true
		})
	}
	svc := func(short string) string { return fmt.Sprintf(`__meta_dockerswarm_service_name="%s"`, e.Name(short)) }
	nodeLabel := `__meta_dockerswarm_node_label_sdhub_test_` + strings.ReplaceAll(strings.TrimSuffix(e.Prefix, "-"), "-", "_") + `="yes"`
	var want map[string]bool
	switch {
	case role == "services":
		want = map[string]bool{
			"ingress port":          has(svc("web"), `service_endpoint_port_publish_mode="ingress"`, `network_ingress="true"`),
			"host port":             has(svc("hostport"), `service_endpoint_port_publish_mode="host"`),
			"udp only falls back":   has(svc("udponly"), `__address__="`, `:80"`),
			"no ports falls back":   has(svc("noports"), `:80"`, `network_internal="true"`),
			"dnsrr gives none":      !has(svc("dnsrr")),
			"service label":         has(`__meta_dockerswarm_service_label_prometheus_io_scrape="true"`, `__meta_dockerswarm_service_label_a_b_c="x y"`),
			"network label":         has(`__meta_dockerswarm_network_label_com_example_tier="front"`),
			"global mode":           has(svc("hostport"), `service_mode="global"`),
			"hostname template":     has(svc("web"), `service_task_container_hostname="web-{{.Task.Slot}}"`),
			"several networks":      count(flat, svc("web")) >= 3,
			"no udp port targets":   !has(svc("udponly"), `endpoint_port_publish_mode`),
			"image label":           has(`service_task_container_image="sdhub-swarmtest:latest"`),
			"updating status label": has(svc("updating"), `service_updating_status="updating"`),
		}
	case role == "tasks" && !drained:
		want = map[string]bool{
			"host port on node":  has(svc("hostport"), `task_port_publish_mode="host"`, `__address__="127.0.0.1:`),
			"attachment address": has(svc("web"), `task_port_publish_mode="ingress"`, `network_name="`+e.Name("back")+`"`),
			"container label":    has(`__meta_dockerswarm_container_label_com_example_role="web"`),
			"exited task":        has(svc("exited"), `task_state="complete"`),
			"old task":           has(svc("noports"), `task_desired_state="shutdown"`),
			"dnsrr task":         has(svc("dnsrr"), `:80"`),
			"node label on task": has(svc("web"), nodeLabel),
			"global slot 0":      has(svc("hostport"), `task_slot="0"`),
			"container id":       has(svc("web"), `task_container_id="`),
		}
	case role == "tasks":
		want = map[string]bool{"drained node": has(`node_availability="drain"`, `task_desired_state="shutdown"`)}
	case role == "nodes":
		want = map[string]bool{
			"manager labels": has(`node_manager_leader="true"`, `node_manager_reachability="reachable"`),
			"node label":     has(nodeLabel),
			"availability":   has(fmt.Sprintf(`node_availability="%s"`, map[bool]string{true: "drain", false: "active"}[drained])),
			"port 80":        has(`__address__="127.0.0.1:80"`),
		}
	}
	for rule, ok := range want {
		if !ok {
			t.Errorf("role %s: scenario does not exercise %q", role, rule)
		}
	}
	if t.Failed() {
		t.Logf("targets:\n%s", strings.Join(flat, "\n"))
	}
}

func count(flat []string, sub string) int {
	n := 0
	for _, s := range flat {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}
