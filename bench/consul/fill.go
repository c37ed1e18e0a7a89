package main

import (
	"context"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/sdhub/sdhub/internal/consulfill"
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

// fill registers everything through consulfill: the nodes, then the
// services, each instance with its check in one unit.
func (c *catalog) fill(ctx context.Context) error {
	err := consulfill.Fill(ctx, c.c, func(yield func(api.TxnOps) bool) {
		for i := range c.nodes {
			if !yield(api.TxnOps{{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{
				Node: nodeName(i), Address: nodeAddr(i, 0), Meta: map[string]string{"rack": fmt.Sprintf("r%d", i%5)},
			}}}}) {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return consulfill.Fill(ctx, c.c, func(yield func(api.TxnOps) bool) {
		for s := range c.n {
			for i := range c.m {
				node := nodeName(c.instanceNode(s, i))
				ops := api.TxnOps{{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node,
					Service: api.AgentService{ID: instanceID(s, i), Service: serviceName(s), Port: 10000 + i,
						Tags: []string{"bench", fmt.Sprintf("shard-%d", s%10)}, Meta: map[string]string{"instance": fmt.Sprint(i)}}}}}
				if !checkless(s) {
					ops = append(ops, checkOp(node, instanceID(s, i), serviceName(s), fillStatus(s, i)))
				}
				if !yield(ops) {
					return
				}
			}
		}
	})
}

func (c *catalog) txn(ctx context.Context, ops api.TxnOps) error {
	return consulfill.Txn(ctx, c.c, ops)
}
