// Package shard splits the targets of a job between N consumers, such as N
// Prometheus servers that each scrape a part of the job, with rendezvous
// (highest random weight) hashing.
//
// A target is identified by its job and its `__address__`. Its weight for
// shard i (0 ≤ i < N) is the 64-bit XXH64 hash, with seed 0, of the bytes
//
//	job + "\x00" + address + "\x00" + decimal(i)
//
// and the target belongs to the shard with the highest weight (the lowest i
// on a tie). So:
//
//   - every target is in exactly one shard, whatever N;
//   - the split depends only on the job, the address and N: every sdhub
//     computes the same split, and two targets with the same address in one
//     job (an address listed with two label sets) stay together;
//   - going from N to N+1 shards moves only the targets whose new weight for
//     shard N is the highest, about 1/(N+1) of them, and all of them to the
//     new shard N; the others keep their shard. Going from N+1 back to N
//     moves exactly those back.
//
// With replicas (Top, Assign), a target is in the R shards of its R highest
// weights; the bounded-load strategy (Assign) also caps every shard at
// about 1.1 times the mean, at the cost of a few more moves.
package shard

import (
	"fmt"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// Of returns the shard, in [0, n), that the target at address of job belongs
// to. n must be at least 1.
func Of(job, address string, n int) int {
	if n <= 1 {
		return 0
	}
	var (
		d    xxhash.Digest
		num  [20]byte
		best int
		top  uint64
	)
	for i := range n {
		d.Reset()
		_, _ = d.WriteString(job)
		_, _ = d.Write([]byte{0})
		_, _ = d.WriteString(address)
		_, _ = d.Write([]byte{0})
		_, _ = d.Write(strconv.AppendInt(num[:0], int64(i), 10))
		if w := d.Sum64(); i == 0 || w > top {
			best, top = i, w
		}
	}
	return best
}

// Validate checks a shard index and a shard count as a user gives them.
func Validate(shard, shards int) error {
	if shards < 1 {
		return fmt.Errorf("invalid shards %d (must be at least 1)", shards)
	}
	if shard < 0 || shard >= shards {
		return fmt.Errorf("invalid shard %d (must be from 0 to shards-1 = %d)", shard, shards-1)
	}
	return nil
}
