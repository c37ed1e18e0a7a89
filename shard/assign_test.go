package shard

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestParseStrategy(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Strategy
		err  string
	}{
		{"", Rendezvous, ""},
		{"rendezvous", Rendezvous, ""},
		{"bounded-load", BoundedLoad, ""},
		{"Bounded-Load", "", `invalid strategy "Bounded-Load" (one of: rendezvous, bounded-load)`},
		{"least-weighted", "", `invalid strategy "least-weighted" (one of: rendezvous, bounded-load)`},
	} {
		got, err := ParseStrategy(c.in)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if got != c.want || msg != c.err {
			t.Errorf("ParseStrategy(%q) = %q, %q; want %q, %q", c.in, got, msg, c.want, c.err)
		}
	}
}

func TestValidateReplicas(t *testing.T) {
	for _, c := range []struct {
		replicas, shards int
		want             string
	}{
		{1, 1, ""},
		{2, 3, ""},
		{3, 3, ""},
		{1, 0, "invalid shards 0 (must be at least 1)"},
		{0, 3, "invalid replicas 0 (must be from 1 to shards = 3)"},
		{4, 3, "invalid replicas 4 (must be from 1 to shards = 3)"},
	} {
		err := ValidateReplicas(c.replicas, c.shards)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("ValidateReplicas(%d, %d) = %q, want %q", c.replicas, c.shards, got, c.want)
		}
	}
}

// TestTop checks Top against the weights of the package comment: the r
// highest, highest first, the lower shard first on a tie, and its first
// shard is Of's.
func TestTop(t *testing.T) {
	for _, addr := range addresses(300) {
		for n := 1; n <= 16; n++ {
			w := make([]uint64, n)
			for i := range w {
				w[i] = xxhash.Sum64String("web\x00" + addr + "\x00" + fmt.Sprint(i))
			}
			all := Top("web", addr, n, n)
			for j := 1; j < n; j++ {
				if a, b := all[j-1], all[j]; w[a] < w[b] || w[a] == w[b] && a > b {
					t.Fatalf("Top(web, %s, %d, %d) = %v: shard %d before %d", addr, n, n, all, a, b)
				}
			}
			for r := 1; r <= n; r++ {
				if got := Top("web", addr, n, r); !slices.Equal(got, all[:r]) {
					t.Fatalf("Top(web, %s, %d, %d) = %v, want %v", addr, n, r, got, all[:r])
				}
			}
			if got, want := all[0], Of("web", addr, n); got != want {
				t.Fatalf("Top(web, %s, %d, 1)[0] = %d, Of = %d", addr, n, got, want)
			}
		}
	}
}

// randomJob is k distinct random addresses, and random weights from 1 to
// hi (nil when hi is 0).
func randomJob(rng *rand.Rand, k int, hi float64) ([]string, []float64) {
	seen := make(map[string]bool, k)
	keys := make([]string, 0, k)
	for len(keys) < k {
		v := rng.Uint32()
		a := fmt.Sprintf("10.%d.%d.%d:%d", v>>24, v>>16&0xff, v>>8&0xff, 9100+v&3)
		if !seen[a] {
			seen[a] = true
			keys = append(keys, a)
		}
	}
	if hi == 0 {
		return keys, nil
	}
	w := make([]float64, k)
	for i := range w {
		w[i] = 1 + rng.Float64()*(hi-1)
	}
	return keys, w
}

var strategies = []Strategy{Rendezvous, BoundedLoad}

// TestAssignReplicas checks that every key is in exactly r distinct
// shards, listed in increasing order, and that the rendezvous split is Top
// (Of for r = 1).
func TestAssignReplicas(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, k := range []int{1, 7, 150} {
		for _, hi := range []float64{0, 10} {
			keys, w := randomJob(rng, k, hi)
			for n := 1; n <= 16; n++ {
				for r := 1; r <= n; r++ {
					for _, s := range strategies {
						got := Assign("web", keys, w, n, r, s)
						if len(got) != k {
							t.Fatalf("%s n=%d r=%d: %d results for %d keys", s, n, r, len(got), k)
						}
						for i, sh := range got {
							if len(sh) != r || !slices.IsSorted(sh) || len(slices.Compact(slices.Clone(sh))) != r || sh[0] < 0 || sh[r-1] >= n {
								t.Fatalf("%s n=%d r=%d: key %s in shards %v, want %d distinct shards of [0, %d) in increasing order", s, n, r, keys[i], sh, r, n)
							}
							if s != Rendezvous {
								continue
							}
							want := slices.Sorted(slices.Values(Top("web", keys[i], n, r)))
							if !slices.Equal(sh, want) {
								t.Fatalf("rendezvous n=%d r=%d: key %s in %v, want Top's %v", n, r, keys[i], sh, want)
							}
							if r == 1 && sh[0] != Of("web", keys[i], n) {
								t.Fatalf("rendezvous n=%d r=1: key %s in %v, Of = %d", n, keys[i], sh, Of("web", keys[i], n))
							}
						}
					}
				}
			}
		}
	}
}

// TestAssignOrder checks that the split depends on the set of (key,
// weight) pairs, not on their order.
func TestAssignOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, hi := range []float64{0, 10} {
		keys, w := randomJob(rng, 300, hi)
		for _, n := range []int{2, 5, 16} {
			for r := 1; r <= 2; r++ {
				for _, s := range strategies {
					want := Assign("web", keys, w, n, r, s)
					perm := rng.Perm(len(keys))
					k2 := make([]string, len(keys))
					var w2 []float64
					if w != nil {
						w2 = make([]float64, len(keys))
					}
					for i, p := range perm {
						k2[i] = keys[p]
						if w != nil {
							w2[i] = w[p]
						}
					}
					got := Assign("web", k2, w2, n, r, s)
					for i, p := range perm {
						if !slices.Equal(got[i], want[p]) {
							t.Fatalf("%s n=%d r=%d weights=%v: key %s in %v shuffled, %v in order", s, n, r, w != nil, keys[p], got[i], want[p])
						}
					}
				}
			}
		}
	}
}

// loads are the shards' total weights.
func loads(split [][]int, w []float64, n int) []float64 {
	l := make([]float64, n)
	for i, sh := range split {
		for _, s := range sh {
			l[s] += weightOf(w, i)
		}
	}
	return l
}

// TestBoundedLoadBalance checks the bound of bounded-load: every shard's
// weight at most max(1.1 × mean, ⌈mean⌉) (for counts: ⌊1.1 × mean⌋, or
// ⌈mean⌉ when more), for jobs of 100 targets or more on 2 to 16 shards,
// with and without weights. With r = 2 of 3 shards the last keys may find
// one shard with room only (Assign's comment): that case is left out.
func TestBoundedLoadBalance(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 3))
	worst := 0.0
	for trial := range 8 {
		for _, k := range []int{100, 120, 333, 1000} {
			for _, hi := range []float64{0, 2, 10} {
				keys, w := randomJob(rng, k, hi)
				total := 0.0
				for i := range keys {
					total += weightOf(w, i)
				}
				for n := 2; n <= 16; n++ {
					for r := 1; r <= 2; r++ {
						if r == 2 && n == 3 {
							continue
						}
						mean := float64(r) * total / float64(n)
						bound := max(Balance*mean, math.Ceil(mean)) * (1 + 1e-9)
						l := loads(Assign("web", keys, w, n, r, BoundedLoad), w, n)
						top := slices.Max(l)
						worst = max(worst, top/mean)
						if top > bound {
							t.Fatalf("trial %d, %d keys (weights up to %v), n=%d r=%d: largest shard %.2f, mean %.2f, want at most %.2f", trial, k, hi, n, r, top, mean, bound)
						}
					}
				}
			}
		}
	}
	t.Logf("largest / mean: %.3f at worst", worst)
}

// TestGrowMoves measures the replicas moved from N to N+1 shards against
// the least a perfectly balanced split moves, K·R/(N+1). Rendezvous moves
// only to the new shard, and about the least; bounded-load, summed over N
// = 2 to 15 and 4 random jobs of 1,000 keys, at most 1.25 times the least.
func TestGrowMoves(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 4))
	for _, s := range strategies {
		for r := 1; r <= 2; r++ {
			var sum, least float64
			for range 4 {
				keys, _ := randomJob(rng, 1000, 0)
				before := Assign("web", keys, nil, 2, r, s)
				for n := 2; n <= 15; n++ {
					after := Assign("web", keys, nil, n+1, r, s)
					if s == Rendezvous {
						for i := range keys {
							for _, sh := range after[i] {
								if !slices.Contains(before[i], sh) && sh != n {
									t.Fatalf("rendezvous r=%d %d -> %d: %s moved to shard %d, want only moves to %d", r, n, n+1, keys[i], sh, n)
								}
							}
						}
					}
					sum += float64(Moved(before, after))
					least += float64(len(keys)*r) / float64(n+1)
					before = after
				}
			}
			ratio := sum / least
			t.Logf("%s r=%d: N -> N+1 moved %.3f times the least", s, r, ratio)
			if ratio > 1.25 || s == Rendezvous && ratio > 1.05 {
				t.Errorf("%s r=%d: N -> N+1 moved %.3f times the least, want at most %v", s, r, ratio, map[Strategy]float64{Rendezvous: 1.05, BoundedLoad: 1.25}[s])
			}
		}
	}
}

// TestOneKeyMoves adds keys one at a time to a job of about 1,000 and
// measures the replicas moved, the new key's r included, against r (the
// least). Removing a key is the same change in reverse, since the split
// depends only on the set. Rendezvous moves nothing else. Bounded-load
// moves more (its capacity rises with the job: keys it held back return to
// their first shards): 1.22 times the least for r = 1 on this job, on
// average over N = 2 to 16, 1.28 on bench/shards' job of 1,000, more on
// smaller jobs (docs/fleets.md has the figures). The bound tested, 1.4, is
// above the aim of 1.25, which r = 1 does not meet on every job.
func TestOneKeyMoves(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 5))
	keys, _ := randomJob(rng, 1040, 0)
	for _, s := range strategies {
		for r := 1; r <= 2; r++ {
			var sum float64
			adds := 0
			for n := max(2, r); n <= 16; n++ {
				before := Assign("web", keys[:1000], nil, n, r, s)
				for k := 1000; k < len(keys); k++ {
					after := Assign("web", keys[:k+1], nil, n, r, s)
					m := Moved(before, after[:k])
					if s == Rendezvous && m != 0 {
						t.Fatalf("rendezvous n=%d r=%d: adding %s moved %d other replicas", n, r, keys[k], m)
					}
					sum += float64(m+r) / float64(r)
					adds++
					before = after
				}
			}
			ratio := sum / float64(adds)
			t.Logf("%s r=%d: one key added moved %.3f times the least, on average", s, r, ratio)
			if ratio > 1.4 {
				t.Errorf("%s r=%d: one key added moved %.3f times the least on average, want at most 1.4", s, r, ratio)
			}
		}
	}
}

// BenchmarkAssign is one split of a job of 100,000 targets over 16 shards.
func BenchmarkAssign(b *testing.B) {
	keys, _ := randomJob(rand.New(rand.NewPCG(1, 6)), 100_000, 0)
	for _, s := range strategies {
		b.Run(string(s), func(b *testing.B) {
			for b.Loop() {
				Assign("web", keys, nil, 16, 2, s)
			}
		})
	}
}
