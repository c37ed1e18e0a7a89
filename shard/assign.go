package shard

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// Strategy is how a job's targets are split.
type Strategy string

const (
	// Rendezvous puts each target, on its own, in the shards of its
	// highest weights (Top). It is the default: "" means Rendezvous.
	Rendezvous Strategy = "rendezvous"
	// BoundedLoad keeps every shard's total weight at most 1.1 times the
	// mean (see Assign), at the cost of moving a few more targets on a
	// change.
	BoundedLoad Strategy = "bounded-load"
)

// Balance is the bound of BoundedLoad: the largest shard at most Balance
// times the mean.
const Balance = 1.1

// ParseStrategy returns the strategy named s ("" is Rendezvous) or an error
// naming the allowed values.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case "", Rendezvous:
		return Rendezvous, nil
	case BoundedLoad:
		return BoundedLoad, nil
	}
	return "", fmt.Errorf("invalid strategy %q (one of: %s, %s)", s, Rendezvous, BoundedLoad)
}

// ValidateReplicas checks a number of replicas (the shards each target is
// in) and a shard count as a user gives them.
func ValidateReplicas(replicas, shards int) error {
	if shards < 1 {
		return fmt.Errorf("invalid shards %d (must be at least 1)", shards)
	}
	if replicas < 1 || replicas > shards {
		return fmt.Errorf("invalid replicas %d (must be from 1 to shards = %d)", replicas, shards)
	}
	return nil
}

// shardWeights appends to dst the rendezvous weights of address in job for the
// shards 0 to n-1, as Of computes them.
func shardWeights(dst []uint64, job, address string, n int) []uint64 {
	var stack [128]byte
	buf := append(stack[:0], job...)
	buf = append(buf, 0)
	buf = append(buf, address...)
	buf = append(buf, 0)
	prefix := len(buf)
	for i := range n {
		buf = strconv.AppendInt(buf[:prefix], int64(i), 10)
		dst = append(dst, xxhash.Sum64(buf))
	}
	return dst
}

// before reports whether shard a ranks before shard b for the weights w:
// a higher weight, or the lower shard on a tie.
func before(w []uint64, a, b int) bool {
	return w[a] > w[b] || w[a] == w[b] && a < b
}

// next returns the shard of the highest rank for the weights w among those
// not yet seen, and marks it seen; -1 when every shard has been seen.
func next(w []uint64, seen []bool) int {
	best := -1
	for s := range w {
		if !seen[s] && (best < 0 || before(w, s, best)) {
			best = s
		}
	}
	if best >= 0 {
		seen[best] = true
	}
	return best
}

// Top returns the r shards of n (1 <= r <= n) with the highest rendezvous
// weights for address in job, highest first, with the same weights as Of
// (so Top(job, a, n, 1)[0] == Of(job, a, n)). It panics when r or n is out
// of range (ValidateReplicas checks them).
func Top(job, address string, n, r int) []int {
	mustValid(n, r)
	w := shardWeights(nil, job, address, n)
	seen := make([]bool, n)
	top := make([]int, r)
	for j := range top {
		top[j] = next(w, seen)
	}
	return top
}

func mustValid(n, r int) {
	if err := ValidateReplicas(r, n); err != nil {
		panic("shard: " + err.Error())
	}
}

// Assign splits keys (distinct target addresses of one job) over n shards,
// each key in exactly r distinct shards (1 <= r <= n), by strategy s.
// weights[i] is key i's weight (nil: all 1; a weight <= 0, NaN or +Inf
// counts as 1). It returns, for each key index, its shards in increasing
// order. The result depends only on job, the set of (key, weight) pairs, n,
// r and s: never on the order of keys. It panics when r or n is out of
// range, when weights is neither nil nor as long as keys, or on an unknown
// strategy.
//
// Rendezvous: a key's r shards are Top(job, key, n, r).
//
// BoundedLoad: each shard has a capacity, C = max(1.1 × mean, ⌈mean⌉)
// where mean = r × (sum of the weights) / n. The keys are placed one after
// the other in the order of the XXH64 hash of job + "\x00" + key (then of
// key on equal hashes), each in its r highest-ranked rendezvous shards
// whose load plus the key's weight stays within C. A key that finds fewer
// than r such shards takes, for each missing replica, the least loaded
// shard it is not in yet (the higher-ranked on a tie); that only happens
// when weights are uneven (one heavy key late in the order) or the
// capacity is tight (r close to n). With all weights 1 it never happens
// for r = 1, so every shard then holds at most max(⌊1.1 × mean⌋, ⌈mean⌉)
// keys: 1.1 × mean, or the least any split can do when ⌈mean⌉ is more.
func Assign(job string, keys []string, weights []float64, n, r int, s Strategy) [][]int {
	mustValid(n, r)
	if weights != nil && len(weights) != len(keys) {
		panic(fmt.Sprintf("shard: %d weights for %d keys", len(weights), len(keys)))
	}
	out := make([][]int, len(keys))
	// One backing array for every key's weights, and one for the result.
	w := make([]uint64, 0, len(keys)*n)
	for _, k := range keys {
		w = shardWeights(w, job, k, n)
	}
	weightsOf := func(i int) []uint64 { return w[i*n : (i+1)*n] }
	res := make([]int, len(keys)*r)
	switch s {
	case "", Rendezvous:
		seen := make([]bool, n)
		for i := range keys {
			clear(seen)
			o := res[i*r : (i+1)*r : (i+1)*r]
			for j := range o {
				o[j] = next(weightsOf(i), seen)
			}
			slices.Sort(o)
			out[i] = o
		}
	case BoundedLoad:
		boundedLoad(job, keys, weights, n, r, weightsOf, res, out)
	default:
		panic(fmt.Sprintf("shard: unknown strategy %q", s))
	}
	return out
}

// weightOf is the weight Assign counts for key i.
func weightOf(weights []float64, i int) float64 {
	if weights == nil || !(weights[i] > 0) || math.IsInf(weights[i], 1) {
		return 1
	}
	return weights[i]
}

func boundedLoad(job string, keys []string, weights []float64, n, r int, weightsOf func(int) []uint64, res []int, out [][]int) {
	order := make([]int, len(keys))
	hash := make([]uint64, len(keys))
	for i, k := range keys {
		order[i] = i
		hash[i] = xxhash.Sum64String(job + "\x00" + k)
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(hash[a], hash[b]); c != 0 {
			return c
		}
		return cmp.Compare(keys[a], keys[b])
	})
	// Summed in the placement order, as the loads are, so that rounding
	// does not depend on the order of keys either.
	total := 0.0
	for _, i := range order {
		total += weightOf(weights, i)
	}
	mean := float64(r) * total / float64(n)
	capacity := max(Balance*mean, math.Ceil(mean))
	// The slack keeps a load that equals the capacity but for rounding
	// within it.
	limit := capacity * (1 + 1e-12)
	load := make([]float64, n)
	seen := make([]bool, n)
	for _, i := range order {
		wi := weightOf(weights, i)
		w := weightsOf(i)
		o := res[i*r : i*r : (i+1)*r]
		clear(seen)
		for len(o) < r {
			sh := next(w, seen)
			if sh < 0 {
				break
			}
			if load[sh]+wi <= limit {
				o = append(o, sh)
				load[sh] += wi
			}
		}
		for len(o) < r {
			best := -1
			for sh := range n {
				if slices.Contains(o, sh) {
					continue
				}
				if best < 0 || load[sh] < load[best] || load[sh] == load[best] && before(w, sh, best) {
					best = sh
				}
			}
			o = append(o, best)
			load[best] += wi
		}
		slices.Sort(o)
		out[i] = o
	}
}

// Moved counts the target-replicas that two splits of the same keys (as
// Assign returns them, index for index) place differently: the shards a
// key is in after and was not in before, summed over the keys.
func Moved(before, after [][]int) int {
	m := 0
	for i := range before {
		for _, s := range after[i] {
			if !slices.Contains(before[i], s) {
				m++
			}
		}
	}
	return m
}
