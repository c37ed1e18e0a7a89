package consul

import (
	"slices"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/common/model"
)

// TestCollidingMetaKeysAreDeterministic: metadata keys that sanitise to
// the same label name give the same value every time (the last key in
// sorted order), so the job's file does not change from one refresh to
// the next.
func TestCollidingMetaKeysAreDeterministic(t *testing.T) {
	e := &serviceEntry{}
	e.Node.Node, e.Node.Address = "n", "10.0.0.1"
	e.Node.Meta = map[string]string{"a-b": "dash", "a_b": "under", "a.b": "dot"}
	e.Node.TaggedAddresses = map[string]string{"lan-ipv4": "1", "lan_ipv4": "2"}
	e.Service.ID, e.Service.Service, e.Service.Port = "s", "s", 1
	e.Service.Meta = map[string]string{"x-y": "1", "x.y": "2", "x_y": "3", "x/y": "4"}
	for i := 0; i < 100; i++ {
		ls := instanceLabels(e, ",")
		for name, want := range map[model.LabelName]model.LabelValue{
			labelNodeMeta + "a_b":           "under", // sorted: a-b, a.b, a_b
			labelServiceMeta + "x_y":        "3",     // sorted: x-y, x.y, x/y, x_y
			labelTaggedAddress + "lan_ipv4": "2",
		} {
			if got := ls[name]; got != want {
				t.Fatalf("run %d: %s = %q, want %q", i, name, got, want)
			}
		}
	}
}

// TestAggregatedStatus: the status without the api types is the api
// library's, for every sequence of up to three checks drawn from plain,
// node-maintenance and service-maintenance checks in every status,
// including an unknown one.
func TestAggregatedStatus(t *testing.T) {
	var kinds []entryCheck
	for _, id := range []string{"web-http", api.NodeMaint, api.ServiceMaintPrefix + "web-1"} {
		for _, st := range []string{api.HealthPassing, api.HealthWarning, api.HealthCritical, "bogus"} {
			kinds = append(kinds, entryCheck{CheckID: id, Status: st})
		}
	}
	var seqs [][]entryCheck
	var grow func(prefix []entryCheck)
	grow = func(prefix []entryCheck) {
		seqs = append(seqs, prefix)
		if len(prefix) == 3 {
			return
		}
		for _, k := range kinds {
			grow(append(slices.Clone(prefix), k))
		}
	}
	grow(nil)
	seen := map[string]bool{}
	for _, seq := range seqs {
		hc := make(api.HealthChecks, len(seq))
		for i, c := range seq {
			hc[i] = &api.HealthCheck{CheckID: c.CheckID, Status: c.Status}
		}
		want := hc.AggregatedStatus()
		if got := aggregatedStatus(seq); got != want {
			t.Fatalf("checks %v: %q, api says %q", seq, got, want)
		}
		seen[want] = true
	}
	if len(seen) != 5 {
		t.Fatalf("the sequences cover the statuses %v, want all five (with \"\")", seen)
	}
}
