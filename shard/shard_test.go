package shard

import (
	"fmt"
	"math"
	"testing"

	"github.com/cespare/xxhash/v2"
)

const nTargets = 10000

func addresses(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.%d.%d.%d:9100", i>>16&0xff, i>>8&0xff, i&0xff)
	}
	return out
}

// TestDocumentedFunction recomputes the split from the package comment's
// definition, so the documentation and the code cannot drift apart.
func TestDocumentedFunction(t *testing.T) {
	for _, addr := range addresses(500) {
		for n := 1; n <= 7; n++ {
			want, top := 0, uint64(0)
			for i := range n {
				w := xxhash.Sum64String("web\x00" + addr + "\x00" + fmt.Sprint(i))
				if i == 0 || w > top {
					want, top = i, w
				}
			}
			if got := Of("web", addr, n); got != want {
				t.Fatalf("Of(web, %s, %d) = %d, want %d", addr, n, got, want)
			}
		}
	}
	// Known values pin the function: changing it would move users' targets
	// between their Prometheus shards on an upgrade.
	for _, c := range []struct {
		job, addr string
		n, want   int
	}{
		{"node", "127.0.0.1:9100", 2, 1},
		{"node", "10.0.0.1:80", 2, 0},
		{"node", "[::1]:9090", 3, 1},
		{"web", "[::1]:9090", 5, 3},
		{"web", "host.example:443", 5, 2},
		{"web", "host.example:443", 1, 0},
	} {
		if got := Of(c.job, c.addr, c.n); got != c.want {
			t.Errorf("Of(%q, %q, %d) = %d, want %d", c.job, c.addr, c.n, got, c.want)
		}
	}
}

// TestEveryTargetInOneShard checks that the shards of a job partition its
// targets: their union is the job and no target is in two shards, and that
// each shard gets about 1/N of them. (output's TestSnapshotShards checks
// the http_sd answers built on Of.)
func TestEveryTargetInOneShard(t *testing.T) {
	addrs := addresses(nTargets)
	for n := 1; n <= 10; n++ {
		t.Run(fmt.Sprintf("shards=%d", n), func(t *testing.T) {
			seen := make(map[string]int, nTargets)
			for s := range n {
				count := 0
				for _, a := range addrs {
					if Of("web", a, n) != s {
						continue
					}
					if prev, ok := seen[a]; ok {
						t.Fatalf("%s in shards %d and %d", a, prev, s)
					}
					seen[a] = s
					count++
				}
				// Binomial(10000, 1/n): 5 standard deviations at most.
				mean := float64(nTargets) / float64(n)
				sd := math.Sqrt(mean * (1 - 1/float64(n)))
				if math.Abs(float64(count)-mean) > 5*sd {
					t.Errorf("shard %d/%d has %d targets, want about %.0f (±%.0f)", s, n, count, mean, 5*sd)
				}
			}
			if len(seen) != nTargets {
				t.Fatalf("the shards hold %d targets, want %d", len(seen), nTargets)
			}
		})
	}
}

// TestGrowingMovesAFraction measures the fraction of targets that move when
// N shards become N+1: about 1/(N+1), all to the new shard.
func TestGrowingMovesAFraction(t *testing.T) {
	addrs := addresses(nTargets)
	for n := 2; n <= 10; n++ {
		moved := 0
		for _, a := range addrs {
			before, after := Of("web", a, n), Of("web", a, n+1)
			if before == after {
				continue
			}
			if after != n {
				t.Fatalf("%s moved from shard %d to %d when growing to %d shards, want only moves to the new shard", a, before, after, n+1)
			}
			moved++
		}
		frac, want := float64(moved)/nTargets, 1/float64(n+1)
		sd := math.Sqrt(want * (1 - want) / nTargets)
		t.Logf("%2d -> %2d shards: %.4f of %d targets moved (1/(N+1) = %.4f)", n, n+1, frac, nTargets, want)
		if math.Abs(frac-want) > 5*sd {
			t.Errorf("%d -> %d shards moved %.4f of the targets, want %.4f ± %.4f", n, n+1, frac, want, 5*sd)
		}
	}
}

// TestJobMatters checks that the job is part of the key: the same addresses
// split differently in two jobs, so two jobs do not load the same shard.
func TestJobMatters(t *testing.T) {
	same := 0
	addrs := addresses(1000)
	for _, a := range addrs {
		if Of("a", a, 4) == Of("b", a, 4) {
			same++
		}
	}
	if same > 350 { // 250 expected by chance
		t.Errorf("%d of %d addresses in the same shard for two jobs, want about a quarter", same, len(addrs))
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		shard, shards int
		want          string
	}{
		{0, 1, ""},
		{2, 3, ""},
		{0, 0, "invalid shards 0 (must be at least 1)"},
		{3, 3, "invalid shard 3 (must be from 0 to shards-1 = 2)"},
		{-1, 3, "invalid shard -1 (must be from 0 to shards-1 = 2)"},
	} {
		t.Run(fmt.Sprintf("%d/%d", c.shard, c.shards), func(t *testing.T) {
			err := Validate(c.shard, c.shards)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != c.want {
				t.Errorf("Validate(%d, %d) = %q, want %q", c.shard, c.shards, got, c.want)
			}
		})
	}
}
