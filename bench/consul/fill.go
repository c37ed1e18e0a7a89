package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/consul/api"
)

// catalog writes the benchmark's catalog through Consul's transaction
// endpoint: n services of m instances each, spread over nodes external
// nodes (50 by default, a catalog-sync shape; 2,500 is a VM fleet's).
// Every instance has one check, except those of every tenth service
// (services 9, 19, ...), which have none, as catalog-registered external
// services and consul-k8s's synced services have none. The check passes,
// except on instance 0 of every hundredth service, where it is critical.
type catalog struct {
	c           *api.Client
	n, m, nodes int
}

func newCatalog(addr string, n, m, nodes int) (*catalog, error) {
	c, err := api.NewClient(&api.Config{Address: addr, Scheme: "http"})
	if err != nil {
		return nil, err
	}
	return &catalog{c: c, n: n, m: m, nodes: nodes}, nil
}

func nodeName(i int) string           { return fmt.Sprintf("bench-node-%02d", i) }
func nodeAddr(i, gen int) string      { return fmt.Sprintf("10.%d.%d.%d", 77+gen, i/250, i%250+1) }
func serviceName(i int) string        { return fmt.Sprintf("svc-%05d", i) }
func instanceID(svc, inst int) string { return fmt.Sprintf("svc-%05d-%02d", svc, inst) }
func checkless(svc int) bool          { return svc%10 == 9 }

func fillStatus(svc, inst int) string {
	if svc%100 == 0 && inst == 0 {
		return api.HealthCritical
	}
	return api.HealthPassing
}

func (c *catalog) instanceNode(svc, inst int) int { return (svc*c.m + inst) % c.nodes }

func checkOp(node, id, svc, status string) *api.TxnOp {
	return &api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{
		Node: node, CheckID: id + "-tcp", Name: "tcp", Status: status, ServiceID: id, ServiceName: svc,
	}}}
}

// fill registers everything, 64 operations per transaction, 4 at a time.
func (c *catalog) fill(ctx context.Context) error {
	var ops api.TxnOps
	for i := range c.nodes {
		ops = append(ops, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{
			Node: nodeName(i), Address: nodeAddr(i, 0), Meta: map[string]string{"rack": fmt.Sprintf("r%d", i%5)},
		}}})
		if len(ops) == 64 || i == c.nodes-1 {
			if err := c.txn(ctx, ops); err != nil {
				return err
			}
			ops = nil
		}
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
			node := nodeName(c.instanceNode(s, i))
			ops = append(ops, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node,
				Service: api.AgentService{ID: instanceID(s, i), Service: serviceName(s), Port: 10000 + i,
					Tags: []string{"bench", fmt.Sprintf("shard-%d", s%10)}, Meta: map[string]string{"instance": fmt.Sprint(i)}}}})
			if !checkless(s) {
				ops = append(ops, checkOp(node, instanceID(s, i), serviceName(s), fillStatus(s, i)))
			}
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
