package output

import (
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/manager"
)

// fileLike returns n targets shaped like a file_sd job's: one group per
// target, 12 labels each.
func fileLike(n int) []*targetgroup.Group {
	groups := make([]*targetgroup.Group, n)
	for i := range groups {
		ls := model.LabelSet{"__meta_filepath": "/etc/prometheus/targets/big.json"}
		for l := range 11 {
			ls[model.LabelName(fmt.Sprintf("label_%02d", l))] = model.LabelValue(fmt.Sprintf("value-%d-%d", l, i%(l*37+5)))
		}
		groups[i] = &targetgroup.Group{
			Source:  fmt.Sprintf("big.json:%d", i),
			Labels:  ls,
			Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(fmt.Sprintf("host-%06d.example:9100", i))}},
		}
	}
	return groups
}

func wrap(groups []*targetgroup.Group) []manager.Group {
	out := make([]manager.Group, len(groups))
	for i, g := range groups {
		out[i] = managertest.NewGroup("p", g)
	}
	return out
}

// changeOne returns gs with group i replaced by a changed copy under a new
// generation.
func changeOne(gs []manager.Group, i int, round int) []manager.Group {
	out := make([]manager.Group, len(gs))
	copy(out, gs)
	g := *gs[i].Group
	g.Targets = append([]model.LabelSet(nil), g.Targets...)
	t := g.Targets[0].Clone()
	t["__meta_round"] = model.LabelValue(fmt.Sprint(round))
	g.Targets[0] = t
	out[i] = managertest.NewGroup("p", &g)
	return out
}

// BenchmarkRenderJob compares, on jobs of 100,000 targets, rendering the
// whole job from scratch ("full") with the stage's incremental render of a
// change of one group ("one-group"): the job's new entries, ready to be
// served and written. Shapes: consul (groups of 50 targets) and file (one
// target per group, 12 labels).
func BenchmarkRenderJob(b *testing.B) {
	for _, shape := range []struct {
		name   string
		groups []*targetgroup.Group
	}{{"consul", consulLike(100_000)}, {"file", fileLike(100_000)}} {
		gs := wrap(shape.groups)
		names := newLabelNames()
		b.Run(shape.name+"/full", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := newJobRender("big", names, nil)
				r.apply(gs)
				s := &Snapshot{entries: r.all.order, names: names}
				s.count()
			}
		})
		b.Run(shape.name+"/one-group", func(b *testing.B) {
			r := newJobRender("big", names, nil)
			r.apply(gs)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if !r.apply(changeOne(gs, i%len(gs), i)) {
					b.Fatal("no change")
				}
				s := &Snapshot{entries: r.all.order, names: names}
				s.count()
			}
		})
	}
}

// BenchmarkApply measures a changed 100,000-target job end to end, render
// and file (temp file, fsync, rename, directory fsync): every group changed
// ("all-groups"), or one ("one-group").
func BenchmarkApply(b *testing.B) {
	groups := consulLike(100_000)
	b.Run("all-groups", func(b *testing.B) {
		w, err := New(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		other := consulLike(100_001)
		for _, g := range other { // every target differs from groups'
			for _, t := range g.Targets {
				t["__meta_round"] = "1"
			}
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g := groups
			if i%2 == 1 {
				g = other
			}
			i++
			if err := w.Apply(manager.Update{"big": managertest.NewJob(true, wrap(g)...)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-group", func(b *testing.B) { benchApplyOne(b, groups) })
}

// benchApplyOne changes one group of the job per update.
func benchApplyOne(b *testing.B, groups []*targetgroup.Group) {
	w, err := New(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	gs := wrap(groups)
	if err := w.Apply(manager.Update{"big": managertest.NewJob(true, gs...)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := w.Apply(manager.Update{"big": managertest.NewJob(true, changeOne(gs, i%len(gs), i)...)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyManyJobs applies updates to N jobs of 2,000 targets where
// one job changes each time, as the manager sends them: every job's state,
// the unchanged ones as they were. The cost per update should not grow with
// N. The changed job is always the same one ("same-job"), or each job in
// turn ("in-turn"), so that its own state (its render and its 1.4 MB file)
// was last touched N updates before and is colder in the CPU's caches and
// on disk.
func BenchmarkApplyManyJobs(b *testing.B) {
	for _, v := range []string{"same-job", "in-turn"} {
		for _, jobs := range []int{10, 50, 200} {
			b.Run(fmt.Sprintf("%s/jobs=%d", v, jobs), func(b *testing.B) {
				benchManyJobs(b, jobs, v == "in-turn")
			})
		}
	}
}

func benchManyJobs(b *testing.B, jobs int, inTurn bool) {
	w, err := New(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	u := manager.Update{}
	gs := wrap(consulLike(2000))
	for j := range jobs {
		u[fmt.Sprintf("job-%d", j)] = managertest.NewJob(true, gs...)
	}
	if err := w.Apply(u); err != nil {
		b.Fatal(err)
	}
	// The first Apply's garbage grows with the jobs; collect it here, or
	// its collection lands in the first updates timed.
	runtime.GC()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		next := make(manager.Update, len(u))
		for k, v := range u {
			next[k] = v
		}
		job := "job-0"
		if inTurn {
			job = fmt.Sprintf("job-%d", i%jobs)
		}
		next[job] = managertest.NewJob(true, changeOne(gs, i%len(gs), i)...)
		if err := w.Apply(next); err != nil {
			b.Fatal(err)
		}
		u = next
	}
}

// BenchmarkApplyNodeChange applies a Consul node's change to a job shaped
// like bench/consul's catalog: 5,000 services of 10 instances on 50 nodes,
// so the node's metadata changes in one target of 1,000 groups (a fifth
// of the job); render and file, as Stage.Run does.
func BenchmarkApplyNodeChange(b *testing.B) {
	const services, perService, nodes = 5000, 10, 50
	gs := make([]manager.Group, services)
	for s := range services {
		g := &targetgroup.Group{Source: fmt.Sprintf("svc-%d", s), Labels: model.LabelSet{"__meta_consul_service": model.LabelValue(fmt.Sprintf("svc-%d", s)), "__meta_consul_dc": "dc1"}}
		for i := range perService {
			n := s*perService + i
			addr := fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
			g.Targets = append(g.Targets, model.LabelSet{
				"__address__":                   model.LabelValue(addr + ":8080"),
				"__meta_consul_address":         model.LabelValue(addr),
				"__meta_consul_node":            model.LabelValue(fmt.Sprintf("node-%d", n%nodes)),
				"__meta_consul_metadata_rack":   "r0",
				"__meta_consul_service_address": model.LabelValue(addr),
				"__meta_consul_service_port":    "8080",
				"__meta_consul_service_id":      model.LabelValue(fmt.Sprintf("svc-%d-%d", s, i)),
				"__meta_consul_health":          "passing",
				"__meta_consul_tags":            ",prod,http,",
			})
		}
		gs[s] = managertest.NewGroup("p", g)
	}
	w, err := New(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Apply(manager.Update{"consul": managertest.NewJob(true, gs...)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	round := 0
	for b.Loop() {
		round++
		node := model.LabelValue(fmt.Sprintf("node-%d", round%nodes))
		changed := 0
		for s, g := range gs {
			var ts []model.LabelSet
			for i, t := range g.Targets {
				if t["__meta_consul_node"] != node {
					continue
				}
				if ts == nil {
					ts = slices.Clone(g.Targets)
				}
				t = t.Clone()
				t["__meta_consul_metadata_rack"] = model.LabelValue(fmt.Sprintf("r%d", round))
				ts[i] = t
			}
			if ts != nil {
				gs[s] = managertest.NewGroup("p", &targetgroup.Group{Source: g.Source, Labels: g.Labels, Targets: ts})
				changed++
			}
		}
		if changed != services*perService/nodes {
			b.Fatalf("%d groups changed", changed)
		}
		if err := w.Apply(manager.Update{"consul": managertest.NewJob(true, gs...)}); err != nil {
			b.Fatal(err)
		}
	}
}
