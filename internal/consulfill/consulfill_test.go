package consulfill

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/internal/consulagent"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFill fills a real agent with units of three operations (a service and
// two checks), which OpsPerTxn does not divide, then checks the catalog;
// and a Fill whose units fail (services on a node that does not exist)
// returns the agent's error.
func TestFill(t *testing.T) {
	a := consulagent.StartT(t, consulagent.Options{})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c, err := api.NewClient(&api.Config{Address: a.Addr(), Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Fill(ctx, c, func(yield func(api.TxnOps) bool) {
		yield(api.TxnOps{{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: "n", Address: "127.0.0.2"}}}})
	}); err != nil {
		t.Fatal(err)
	}
	const services = 150
	units := func(node string) func(func(api.TxnOps) bool) {
		return func(yield func(api.TxnOps) bool) {
			for s := range services {
				id := fmt.Sprintf("svc-%03d", s)
				ops := api.TxnOps{{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: api.AgentService{ID: id, Service: id, Port: 1000 + s}}}}
				for _, k := range []string{"a", "b"} {
					ops = append(ops, &api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{
						Node: node, CheckID: id + ":" + k, Name: k, Status: api.HealthPassing, ServiceID: id, ServiceName: id}}})
				}
				if !yield(ops) {
					return
				}
			}
		}
	}
	if err := Fill(ctx, c, units("n")); err != nil {
		t.Fatal(err)
	}
	got, _, err := c.Catalog().Services((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != services+1 { // and consul
		t.Errorf("%d services in the catalog, want %d and consul", len(got), services)
	}
	checks, _, err := c.Health().Node("n", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 2*services {
		t.Errorf("%d checks on node n, want %d", len(checks), 2*services)
	}

	err = Fill(ctx, c, units("missing"))
	if err == nil || !strings.Contains(err.Error(), "transaction failed") {
		t.Errorf("Fill on a missing node: %v, want a failed transaction", err)
	}
}
