// Package consulfill writes a catalog into a Consul agent through its
// transaction endpoint (/v1/txn), for the benchmarks that fill one: many
// operations to a transaction, a few transactions at a time, which fills
// 50,000 instances in seconds where one registration per request would
// take minutes.
package consulfill

import (
	"context"
	"fmt"
	"iter"
	"sync"

	"github.com/hashicorp/consul/api"
)

// OpsPerTxn is the least number of operations Fill puts in a transaction
// (but the last): a unit is never split, so one may hold a few more.
// Consul allows 128.
const OpsPerTxn = 64

// Parallel is the number of transactions Fill has in flight at once.
const Parallel = 4

// Txn applies ops in one transaction.
func Txn(ctx context.Context, c *api.Client, ops api.TxnOps) error {
	ok, resp, _, err := c.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	if !ok {
		if resp != nil && len(resp.Errors) > 0 {
			return fmt.Errorf("transaction failed: %v", resp.Errors[0].What)
		}
		return fmt.Errorf("transaction failed")
	}
	return nil
}

// Fill applies the units of operations units yields, each unit whole in
// one transaction (a service and its check, say), units in order within a
// transaction, OpsPerTxn operations or more to a transaction, Parallel
// transactions at a time. A unit must not depend on another unit of the
// same Fill (register the nodes in a Fill before the services on them).
// It returns the first error, once every transaction in flight is done.
func Fill(ctx context.Context, c *api.Client, units iter.Seq[api.TxnOps]) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan api.TxnOps)
	errs := make(chan error, Parallel)
	var wg sync.WaitGroup
	for range Parallel {
		wg.Go(func() {
			for b := range batches {
				if err := Txn(ctx, c, b); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
	send := func(b api.TxnOps) bool {
		select {
		case batches <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var ops api.TxnOps
	for u := range units {
		ops = append(ops, u...)
		if len(ops) >= OpsPerTxn {
			if !send(ops) {
				break
			}
			ops = nil
		}
	}
	if len(ops) > 0 && ctx.Err() == nil {
		send(ops)
	}
	close(batches)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}
