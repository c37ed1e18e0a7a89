package swarm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/poll"
	"github.com/sdhub/sdhub/internal/swarmtest"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

type fileGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// TestOutputFileFollowsSwarm runs the discoverer behind sdhub's manager and
// file writer and measures the time from a docker command returning to the
// job's output file showing the change. refresh_interval is 10 minutes.
func TestOutputFileFollowsSwarm(t *testing.T) {
	e := swarmtest.New(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	m, err := manager.New(manager.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := output.New(dir, output.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := DefaultSDConfig
	c.Host, c.Role = e.Host, "tasks"
	c.RefreshInterval *= 10
	if err := m.ApplyConfig(map[string]discovery.Configs{"swarm": {&c}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = m.Run(ctx); done <- struct{}{} }()
	go func() { _ = w.Run(ctx, m.SyncCh()); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()

	path := output.Path(dir, "swarm")
	// A task filter naming a service that does not exist yet is an error
	// (as in Prometheus), so the job is unfiltered and the test looks at its
	// own service only.
	svc := e.Name("f")
	mine := func(g fileGroup) bool { return g.Labels["__meta_dockerswarm_service_name"] == svc }
	running := func(n int) func([]fileGroup) bool {
		return func(gs []fileGroup) bool {
			got := 0
			for _, g := range gs {
				if mine(g) && g.Labels["__meta_dockerswarm_task_desired_state"] == "running" {
					if g.Labels["__meta_dockerswarm_task_state"] != "running" {
						return false
					}
					got += len(g.Targets)
				}
			}
			return got == n
		}
	}
	waitFile(t, path, time.Minute, "first job file", func(gs []fileGroup) bool { return true })

	var lat []time.Duration
	// A task gives targets only through network attachments or host ports.
	e.CreateNetwork(t, "fnet")
	e.CreateService(t, "f", []string{"--replicas", "1", "--network", e.Name("fnet")})
	lat = append(lat, waitFile(t, path, 20*time.Second, "created", running(1)))
	for round := range 3 {
		e.Scale(t, "f", 3)
		lat = append(lat, waitFile(t, path, 15*time.Second, fmt.Sprintf("scale up %d", round), running(3)))
		e.Scale(t, "f", 1)
		lat = append(lat, waitFile(t, path, 15*time.Second, fmt.Sprintf("scale down %d", round), running(1)))
	}
	e.RemoveService(t, "f")
	lat = append(lat, waitFile(t, path, 15*time.Second, "removed", func(gs []fileGroup) bool {
		return !slices.ContainsFunc(gs, mine)
	}))

	s := slices.Clone(lat)
	slices.Sort(s)
	t.Logf("latency from docker command return to output file change: n=%d p50=%v max=%v (all: %v)",
		len(s), s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), roundAll(lat))
}

// waitFile polls the output file every 10ms until pred holds; it returns
// how long that took and fails the test after within.
func waitFile(t *testing.T, path string, within time.Duration, what string, pred func([]fileGroup) bool) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	if poll.Until(within, 10*time.Millisecond, what, func() bool {
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		var gs []fileGroup
		if err := json.Unmarshal(b, &gs); err != nil {
			t.Fatalf("%s: output file is not file_sd JSON: %v\n%s", what, err, b)
		}
		last = string(b)
		return pred(gs)
	}) != nil {
		t.Fatalf("%s: output file did not follow within %v; last content:\n%s", what, within, last)
	}
	return time.Since(start)
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
