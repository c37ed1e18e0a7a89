package output

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/shard"
)

// TestIncrementalMatchesRender changes, adds and removes groups at random,
// one to many at a time, and checks after each step that the incremental
// output has the bytes of a render from scratch of the same groups. The
// groups share addresses and label sets (entries fed by several groups,
// the same address with other labels, ties broken by labels), hold targets
// Prometheus would reject, and come from two providers with the same
// Sources.
func TestIncrementalMatchesRender(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	values := []string{"", "a", "b", "a!", "a\"", "x\\y", "\xff", "é"}
	randomGroup := func(source string) *targetgroup.Group {
		g := &targetgroup.Group{Source: source, Labels: model.LabelSet{}}
		for range rng.IntN(3) {
			g.Labels[model.LabelName(fmt.Sprintf("g%d", rng.IntN(3)))] = model.LabelValue(values[rng.IntN(len(values))])
		}
		for range rng.IntN(6) {
			tg := model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d:1", rng.IntN(8)))}
			for range rng.IntN(3) {
				tg[model.LabelName(fmt.Sprintf("g%d", rng.IntN(4)))] = model.LabelValue(values[rng.IntN(len(values))])
			}
			if rng.IntN(20) == 0 {
				tg["bad.name"] = "x"
			}
			g.Targets = append(g.Targets, tg)
		}
		return g
	}
	for run := range 50 {
		r := newJobRender("job", newLabelNames(), nil)
		current := map[groupKey]manager.Group{}
		for step := range 40 {
			changes := 1 + rng.IntN(3)
			if rng.IntN(5) == 0 {
				changes = 1 + rng.IntN(30)
			}
			for range changes {
				k := groupKey{fmt.Sprintf("p%d", rng.IntN(2)), fmt.Sprintf("s%d", rng.IntN(12))}
				if rng.IntN(4) == 0 {
					delete(current, k)
					continue
				}
				if cur, ok := current[k]; ok && cur.Group != nil && rng.IntN(2) == 0 {
					// Another group sharing most of the last one's label
					// sets, as a Consul node's change makes: one target
					// replaced, added or removed.
					g := &targetgroup.Group{Source: k.source, Labels: cur.Labels, Targets: slices.Clone(cur.Targets)}
					other := randomGroup(k.source)
					switch i := rng.IntN(len(g.Targets) + 1); {
					case i == len(g.Targets) || len(other.Targets) == 0:
						g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d:1", rng.IntN(8)))})
					case rng.IntN(3) == 0:
						g.Targets = slices.Delete(g.Targets, i, i+1)
					default:
						g.Targets[i] = other.Targets[0]
					}
					current[k] = managertest.NewGroup(k.provider, g)
					continue
				}
				current[k] = managertest.NewGroup(k.provider, randomGroup(k.source))
			}
			gs := slices.Collect(mapValues(current))
			rng.Shuffle(len(gs), func(i, j int) { gs[i], gs[j] = gs[j], gs[i] })
			r.apply(gs)
			got := (&Snapshot{entries: r.all.order, names: r.names}).withCount().Bytes()
			var plain []*targetgroup.Group
			for _, g := range gs {
				plain = append(plain, g.Group)
			}
			want := Render(plain)
			dropped := 0
			for _, g := range plain {
				bad := invalidLabels(g.Labels)
				for _, tg := range g.Targets {
					if targetProblem(tg, g.Labels, bad) != "" {
						dropped++
					}
				}
			}
			if r.dropped != dropped {
				t.Fatalf("run %d, step %d: %d targets dropped, want %d", run, step, r.dropped, dropped)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("run %d, step %d: incremental output differs from a full render:\n%s\nwant\n%s", run, step, got, want)
			}
			if !slices.IsSortedFunc(r.all.order, r.names.compareEntries) {
				t.Fatalf("run %d, step %d: entries out of order", run, step)
			}
		}
	}
}

func mapValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

func (s *Snapshot) withCount() *Snapshot {
	s.count()
	return s
}

// Shards split the output's targets, keep each entry's labels, and stay
// sorted although a shard may take an entry's first target away.
func TestSnapshotShards(t *testing.T) {
	var groups []*targetgroup.Group
	for i := range 200 {
		groups = append(groups, &targetgroup.Group{Source: fmt.Sprint(i), Labels: model.LabelSet{"svc": model.LabelValue(fmt.Sprint(i % 7))},
			Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d:%d", i%13, i%3))}}})
	}
	r := newJobRender("job", newLabelNames(), nil)
	r.apply(wrap(groups))
	s := (&Snapshot{Job: "job", Gen: 1, entries: r.all.order, names: r.names, shards: &shardCache{}}).withCount()
	for _, n := range []int{1, 2, 3, 5} {
		total := 0
		for i := range n {
			part := s.Shard(ShardSpec{Shard: i, Shards: n})
			if part != s.Shard(ShardSpec{Shard: i, Shards: n}) {
				t.Errorf("shard %d/%d computed twice", i, n)
			}
			b := part.Bytes()
			if len(b) != part.Size {
				t.Errorf("shard %d/%d: Size %d, bytes %d", i, n, part.Size, len(b))
			}
			if !slices.IsSortedFunc(part.entries, r.names.compareEntries) {
				t.Errorf("shard %d/%d out of order", i, n)
			}
			for _, e := range part.Entries() {
				for _, addr := range e.Targets {
					if got := shardOf(t, "job", addr, n); got != i {
						t.Errorf("target %s in shard %d/%d, belongs to %d", addr, i, n, got)
					}
				}
			}
			total += part.Targets
		}
		if total != s.Targets {
			t.Errorf("shards of %d hold %d targets, want %d", n, total, s.Targets)
		}
	}
}

func shardOf(t *testing.T, job, addr string, n int) int {
	t.Helper()
	return shard.Of(job, addr, n)
}

// Every target is in exactly Replicas of the shards of a spec, the shards
// together hold the job, and a bounded-load split by weight balances the
// weight the label gives (one target listed twice counts once, at the
// larger weight).
func TestSnapshotShardReplicas(t *testing.T) {
	var groups []*targetgroup.Group
	for i := range 300 {
		groups = append(groups, &targetgroup.Group{Source: fmt.Sprint(i),
			Labels:  model.LabelSet{"series": model.LabelValue(fmt.Sprint(1 + i%10))},
			Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.0.%d.%d:9100", i/250, i%250))}}})
	}
	// The same address again, lighter: it weighs 10 (group 9's label).
	groups = append(groups, &targetgroup.Group{Source: "again", Labels: model.LabelSet{"series": "1"},
		Targets: []model.LabelSet{{model.AddressLabel: "10.0.0.9:9100"}}})
	r := newJobRender("job", newLabelNames(), nil)
	r.apply(wrap(groups))
	s := (&Snapshot{Job: "job", Gen: 1, entries: r.all.order, names: r.names, shards: &shardCache{}}).withCount()
	weightOf := func(e Entry) float64 {
		for _, l := range e.Labels {
			if l.Name == "series" {
				v, _ := strconv.ParseFloat(l.Value, 64)
				return v
			}
		}
		return 1
	}
	for _, sp := range []ShardSpec{
		{Shards: 4, Replicas: 2},
		{Shards: 5, Replicas: 3},
		{Shards: 4, Replicas: 2, Strategy: shard.BoundedLoad},
		{Shards: 6, Replicas: 1, Strategy: shard.BoundedLoad, WeightLabel: "series"},
	} {
		in := map[string]int{}
		loads := make([]float64, sp.Shards)
		for i := range sp.Shards {
			sp := sp
			sp.Shard = i
			part := s.Shard(sp)
			if len(part.Bytes()) != part.Size {
				t.Errorf("%+v: Size %d, bytes %d", sp, part.Size, len(part.Bytes()))
			}
			weight := map[string]float64{}
			for _, e := range part.Entries() {
				for _, addr := range e.Targets {
					weight[addr] = max(weight[addr], weightOf(e))
				}
			}
			for addr, w := range weight {
				in[addr]++
				if sp.WeightLabel != "" {
					loads[i] += w
				} else {
					loads[i]++
				}
			}
		}
		if len(in) != 300 {
			t.Errorf("%+v: the shards hold %d distinct targets, want 300", sp, len(in))
		}
		for addr, k := range in {
			if k != sp.Replicas {
				t.Errorf("%+v: target %s in %d shards, want %d", sp, addr, k, sp.Replicas)
			}
		}
		if sp.Strategy == shard.BoundedLoad {
			total := 0.0
			for _, l := range loads {
				total += l
			}
			mean := total / float64(sp.Shards)
			if top := slices.Max(loads); top > 1.1*mean+10 { // + one target's largest weight
				t.Errorf("%+v: largest shard %v, mean %v: over 1.1x", sp, top, mean)
			}
		}
		t.Logf("%+v: loads %v", sp, loads)
	}
}
