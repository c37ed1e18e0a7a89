package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/consul/api"
)

const benchNodes = 50

// catalog writes the benchmark's services through Consul's transaction
// endpoint: n services of m instances each, spread over 50 external nodes,
// every instance with one passing check.
type catalog struct {
	c    *api.Client
	n, m int
}

func newCatalog(addr string, n, m int) (*catalog, error) {
	c, err := api.NewClient(&api.Config{Address: addr, Scheme: "http"})
	if err != nil {
		return nil, err
	}
	return &catalog{c: c, n: n, m: m}, nil
}

func nodeName(i int) string           { return fmt.Sprintf("bench-node-%02d", i) }
func serviceName(i int) string        { return fmt.Sprintf("svc-%05d", i) }
func instanceID(svc, inst int) string { return fmt.Sprintf("svc-%05d-%02d", svc, inst) }

func (c *catalog) instanceNode(svc, inst int) string { return nodeName((svc*c.m + inst) % benchNodes) }

func (c *catalog) check(svc, inst int, status string) *api.TxnOp {
	return &api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{
		Node: c.instanceNode(svc, inst), CheckID: instanceID(svc, inst) + "-tcp", Name: "tcp",
		Status: status, ServiceID: instanceID(svc, inst), ServiceName: serviceName(svc),
	}}}
}

// fill registers everything, 64 operations per transaction, 4 at a time.
func (c *catalog) fill(ctx context.Context) error {
	var ops api.TxnOps
	for i := range benchNodes {
		ops = append(ops, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{
			Node: nodeName(i), Address: fmt.Sprintf("10.77.%d.%d", i/250, i%250+1),
			Meta: map[string]string{"rack": fmt.Sprintf("r%d", i%5)},
		}}})
	}
	if err := c.txn(ctx, ops); err != nil {
		return err
	}
	batches := make(chan api.TxnOps)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for b := range batches {
				if err := c.txn(ctx, b); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	ops = nil
	var err error
loop:
	for s := range c.n {
		for i := range c.m {
			ops = append(ops, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: c.instanceNode(s, i),
				Service: api.AgentService{ID: instanceID(s, i), Service: serviceName(s), Port: 10000 + i,
					Tags: []string{"bench", fmt.Sprintf("shard-%d", s%10)}, Meta: map[string]string{"instance": fmt.Sprint(i)}}}},
				c.check(s, i, api.HealthPassing))
			if len(ops) >= 64 {
				select {
				case batches <- ops:
				case err = <-errs:
					break loop
				}
				ops = nil
			}
		}
	}
	if err == nil && len(ops) > 0 {
		select {
		case batches <- ops:
		case err = <-errs:
		}
	}
	close(batches)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errs:
		return err
	default:
		return nil
	}
}

// setHealth sets one instance's check status.
func (c *catalog) setHealth(ctx context.Context, svc, inst int, status string) error {
	return c.txn(ctx, api.TxnOps{c.check(svc, inst, status)})
}

func (c *catalog) txn(ctx context.Context, ops api.TxnOps) error {
	ok, resp, _, err := c.c.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("transaction failed: %v", resp.Errors[0].What)
	}
	return nil
}
