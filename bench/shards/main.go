// Command shards prints the figures of package shard's strategies, for
// jobs of -sizes targets (addresses 10.x.y.z:9100 from a seeded random
// generator), N = 2 to 16 shards and R = 1 and 2 replicas: rendezvous
// against bounded-load.
//
// For each N it prints the largest shard over the mean (targets, all of
// weight 1), and the target-replicas that move on N -> N+1 and on N -> N-1
// shards, as a fraction of the job's K·R target-replicas and, in brackets,
// as a ratio to the least a perfectly balanced split must move: K·R/(N+1) on
// N -> N+1 (the new shard's share) and K·R/N on N -> N-1 (the removed
// shard's share). A target-replica moves when a target is in a shard after
// and was not before. For one target added to the job (or removed: the
// split depends only on the set of targets, so a removal is an addition in
// reverse and moves the same), the target-replicas that move, the target's
// own R included, over R (the least: 1.00 means no other target moved), as
// the mean over the last -trials targets added one at a time and the worst
// of them. A summary table ends the output, with a row per size for the
// manual sharding a Prometheus fleet does without sdhub (hashmod of
// __address__ in each server's relabel_configs, Prometheus's own code).
//
//	go run ./bench/shards
//	go run ./bench/shards -sizes 1000 -trials 200
package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/internal/benchreport"
	"github.com/sdhub/sdhub/shard"
)

type config struct {
	sizes      []int
	trials     int // per N and R, for sizes up to bigSize
	bigTrials  int // per N and R, for sizes above bigSize
	minN, maxN int
	replicas   []int
	seed       uint64
}

const bigSize = 10_000

func main() {
	cfg := config{minN: 2, maxN: 16, replicas: []int{1, 2}}
	var sizes string
	flag.StringVar(&sizes, "sizes", "120,1000,100000", "targets per job, comma separated")
	flag.IntVar(&cfg.trials, "trials", 50, "targets added and removed, each, per N and R (jobs up to 10,000 targets)")
	flag.IntVar(&cfg.bigTrials, "big-trials", 3, "the same for jobs of more than 10,000 targets")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the addresses")
	flag.Parse()
	for _, f := range strings.Split(sizes, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 2 {
			fmt.Fprintf(os.Stderr, "invalid -sizes %q\n", sizes)
			os.Exit(2)
		}
		cfg.sizes = append(cfg.sizes, v)
	}
	if err := run(cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

const job = "node"

// addresses returns k distinct random addresses.
func addresses(rng *rand.Rand, k int) []string {
	seen := make(map[string]bool, k)
	var all []string
	for len(all) < k {
		v := rng.Uint32() & 0xffffff
		a := fmt.Sprintf("10.%d.%d.%d:9100", v>>16, v>>8&0xff, v&0xff)
		if !seen[a] {
			seen[a] = true
			all = append(all, a)
		}
	}
	return all
}

func run(cfg config, w io.Writer) error {
	if err := benchreport.New("bench/shards").Write(w); err != nil {
		return err
	}
	var b, sum strings.Builder
	sum.WriteString("### Summary\n\n")
	sum.WriteString("Over N = 2 to 16 per row: the largest shard / mean at worst; moved replicas over the least, summed over every N (and the worst N); one target added or removed: the mean over N of the mean ratio, and the worst single change.\n\n")
	sum.WriteString("| targets | R | strategy | largest / mean, worst | N → N+1: all N (worst N) | N → N−1: all N (worst N) | one target: mean (worst) |\n")
	sum.WriteString("|---|---|---|---|---|---|---|\n")
	for _, k := range cfg.sizes {
		trials := cfg.trials
		if k > bigSize {
			trials = cfg.bigTrials
		}
		rng := rand.New(rand.NewPCG(cfg.seed, uint64(k)))
		keys := addresses(rng, k)
		hashmodRow(&sum, keys, min(trials, k-1), cfg.minN, cfg.maxN)
		for _, r := range cfg.replicas {
			table(&b, &sum, keys, min(trials, k-1), r, cfg.minN, cfg.maxN)
		}
	}
	b.WriteString(sum.String())
	_, err := io.WriteString(w, b.String())
	return err
}

// cell is the figures of one strategy for one N.
type cell struct {
	balance            float64
	grow, shrink       float64 // moved fraction of the target-replicas; -1: no such N
	growMin, shrinkMin float64
	churn, churnWorst  float64 // one target added or removed: mean and worst ratio to R
}

// splitFunc splits keys over n shards, each key in r of them.
type splitFunc func(keys []string, n, r int) [][]int

func assign(s shard.Strategy) splitFunc {
	return func(keys []string, n, r int) [][]int { return shard.Assign(job, keys, nil, n, r, s) }
}

// cellsFor computes the figures of split for every N from minN to maxN.
func cellsFor(split splitFunc, keys []string, trials, r, minN, maxN int) []cell {
	// The split for every N from minN-1 to maxN+1.
	splits := make(map[int][][]int)
	for n := max(minN-1, r); n <= maxN+1; n++ {
		splits[n] = split(keys, n, r)
	}
	var cells []cell
	for n := minN; n <= maxN; n++ {
		if n < r {
			cells = append(cells, cell{balance: -1})
			continue
		}
		c := cell{balance: balance(splits[n], n, r), grow: -1, shrink: -1}
		total := float64(len(keys) * r)
		c.grow = float64(shard.Moved(splits[n], splits[n+1])) / total
		c.growMin = 1 / float64(n+1)
		if old, ok := splits[n-1]; ok {
			c.shrink = float64(shard.Moved(splits[n], old)) / total
			c.shrinkMin = 1 / float64(n)
		}
		c.churn, c.churnWorst = churn(split, keys, trials, n, r)
		cells = append(cells, c)
	}
	return cells
}

func table(b, sum *strings.Builder, keys []string, trials, r, minN, maxN int) {
	strategies := []shard.Strategy{shard.Rendezvous, shard.BoundedLoad}
	cells := make([][]cell, len(strategies))
	for si, s := range strategies {
		cells[si] = cellsFor(assign(s), keys, trials, r, minN, maxN)
	}
	fmt.Fprintf(b, "### %d targets, R = %d\n\n", len(keys), r)
	b.WriteString("| N | largest / mean, rendezvous | largest / mean, bounded-load | N → N+1 moved, rendezvous | N → N+1 moved, bounded-load | N → N−1 moved, rendezvous | N → N−1 moved, bounded-load | one target added or removed, bounded-load: mean (worst) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for i := range maxN - minN + 1 {
		rv, bl := cells[0][i], cells[1][i]
		fmt.Fprintf(b, "| %d | %.3f | %.3f | %s | %s | %s | %s | %.2f (%.2f) |\n", minN+i,
			rv.balance, bl.balance, frac(rv.grow, rv.growMin), frac(bl.grow, bl.growMin),
			frac(rv.shrink, rv.shrinkMin), frac(bl.shrink, bl.shrinkMin),
			bl.churn, bl.churnWorst)
	}
	b.WriteString("\n")
	for si, s := range strategies {
		summaryRow(sum, len(keys), r, string(s), cells[si])
	}
}

// summaryRow adds the summary of one strategy's cells over N.
func summaryRow(sum *strings.Builder, k, r int, name string, cells []cell) {
	var st stats
	for _, c := range cells {
		st.add(c)
	}
	fmt.Fprintf(sum, "| %d | %d | %s | %.3f | %.2f (%.2f) | %.2f (%.2f) | %.2f (%.2f) |\n", k, r, name,
		st.balance, st.grow/st.growMin, st.growWorst, st.shrink/st.shrinkMin, st.shrinkWorst,
		st.churn/float64(st.n), st.churnWorst)
}

// stats sums the cells of one strategy over N.
type stats struct {
	balance                        float64
	grow, growMin, growWorst       float64
	shrink, shrinkMin, shrinkWorst float64
	churn, churnWorst              float64
	n                              int
}

func (st *stats) add(c cell) {
	if c.balance < 0 {
		return
	}
	st.n++
	st.balance = max(st.balance, c.balance)
	st.grow += c.grow
	st.growMin += c.growMin
	st.growWorst = max(st.growWorst, c.grow/c.growMin)
	if c.shrink >= 0 {
		st.shrink += c.shrink
		st.shrinkMin += c.shrinkMin
		st.shrinkWorst = max(st.shrinkWorst, c.shrink/c.shrinkMin)
	}
	st.churn += c.churn
	st.churnWorst = max(st.churnWorst, c.churnWorst)
}

func frac(f, min float64) string {
	if f < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f %% (%.2f)", 100*f, f/min)
}

// balance is the largest shard's count of target-replicas over the mean.
func balance(split [][]int, n, r int) float64 {
	load := make([]int, n)
	for _, s := range split {
		for _, i := range s {
			load[i]++
		}
	}
	return float64(slices.Max(load)) / (float64(len(split)*r) / float64(n))
}

// churn assigns the first len(keys)-trials keys, then each of the next
// trials keys added one at a time, and returns the mean and worst, over
// those additions, of the replicas moved, the added target's own R
// included, over R. The split depends only on the set of targets, so
// removing a target from a set is the same change in reverse, and moves
// the same replicas.
func churn(split splitFunc, keys []string, trials, n, r int) (mean, worst float64) {
	if trials == 0 {
		return 0, 0
	}
	k := len(keys) - trials
	before := split(keys[:k], n, r)
	sum := 0.0
	for ; k < len(keys); k++ {
		after := split(keys[:k+1], n, r)
		x := float64(shard.Moved(before, after[:k])+r) / float64(r)
		sum += x
		worst = max(worst, x)
		before = after
	}
	return sum / float64(trials), worst
}

// hashmodRow adds the summary row of the manual sharding a Prometheus
// fleet does without sdhub: each server's job keeps the targets whose
// hashmod of __address__ over N is its own number, with Prometheus's own
// relabel package (R = 1: hashmod has no replicas).
func hashmodRow(sum *strings.Builder, keys []string, trials, minN, maxN int) {
	split := func(keys []string, n, _ int) [][]int { return hashmodSplit(keys, n) }
	summaryRow(sum, len(keys), 1, "hashmod (Prometheus relabel_configs)", cellsFor(split, keys, trials, 1, minN, maxN))
}

// hashmodSplit is the shard of each key under `action: hashmod` with
// modulus n on __address__, run by Prometheus's relabel package.
func hashmodSplit(keys []string, n int) [][]int {
	rule := &relabel.Config{
		SourceLabels: model.LabelNames{model.AddressLabel}, Separator: ";", Modulus: uint64(n),
		TargetLabel: "__tmp_hash", Action: relabel.HashMod, Regex: relabel.DefaultRelabelConfig.Regex,
		Replacement: "$1", NameValidationScheme: model.UTF8Validation,
	}
	out := make([][]int, len(keys))
	lb := labels.NewBuilder(labels.EmptyLabels())
	for i, k := range keys {
		lb.Reset(labels.FromStrings(model.AddressLabel, k))
		relabel.ProcessBuilder(lb, rule)
		v, err := strconv.Atoi(lb.Get("__tmp_hash"))
		if err != nil {
			panic(fmt.Sprintf("hashmod of %s gave %q: %v", k, lb.Get("__tmp_hash"), err))
		}
		out[i] = []int{v}
	}
	return out
}
