package output

import (
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/internal/priority"
	"github.com/sdhub/sdhub/manager"
)

// Two stages in one process (two hubs) share nothing: the label names one
// meets stay out of the other's table, each numbers its own snapshots, and
// work held back on one's gate does not delay the other's writing.
func TestStagesShareNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gates := [2]*priority.Gate{{}, {}}
		var stages [2]*Stage
		for i := range stages {
			s, err := New(t.TempDir(), Options{Registerer: prometheus.NewRegistry(), Priority: gates[i]})
			if err != nil {
				t.Fatal(err)
			}
			stages[i] = s
		}
		a, b := stages[0], stages[1]
		job := func(name model.LabelName, addr model.LabelValue) manager.Update {
			g := &targetgroup.Group{Source: "s", Labels: model.LabelSet{name: "x"},
				Targets: []model.LabelSet{{model.AddressLabel: addr}}}
			return manager.Update{"node": managertest.NewJob(true, managertest.NewGroup("p", g))}
		}
		// a's gate holds background work: b writes regardless.
		release := make(chan struct{})
		go gates[0].Background(func() { <-release })
		synctest.Wait()
		for _, addr := range []model.LabelValue{"a:1", "a:2", "a:3"} {
			if err := b.Apply(job("__meta_only_b", addr)); err != nil {
				t.Fatal(err)
			}
		}
		applied := make(chan error, 1)
		go func() { applied <- a.Apply(job("__meta_only_a", "a:1")) }()
		synctest.Wait()
		select {
		case <-applied:
			t.Fatal("a's Apply ran while background work held its gate")
		default:
		}
		close(release)
		if err := <-applied; err != nil {
			t.Fatal(err)
		}
		if got := a.Job("node").Gen; got != 1 {
			t.Errorf("a's first snapshot has Gen %d after b's three, want 1", got)
		}
		if got := b.Job("node").Gen; got != 3 {
			t.Errorf("b's third snapshot has Gen %d, want 3", got)
		}
		for _, c := range []struct {
			s          *Stage
			has, hasnt string
		}{{a, "__meta_only_a", "__meta_only_b"}, {b, "__meta_only_b", "__meta_only_a"}} {
			c.s.names.mu.Lock()
			_, has := c.s.names.ids[c.has]
			_, hasnt := c.s.names.ids[c.hasnt]
			c.s.names.mu.Unlock()
			if !has || hasnt {
				t.Errorf("a stage's label names hold its own %s: %v, the other's %s: %v; want true, false", c.has, has, c.hasnt, hasnt)
			}
		}
	})
}
