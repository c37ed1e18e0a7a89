package consul

import (
	"fmt"
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
		ls := newNameCache().instanceLabels(e, ",")
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

// TestWithNode: the labels a node change patches in are those a read of
// the instance with the new node gives, whether the service has an address
// of its own or not, with metadata and tagged addresses added, changed and
// removed; targets on other nodes are left as they are.
func TestWithNode(t *testing.T) {
	v1 := entryNode{Node: "n1", Address: "10.0.0.1", Meta: map[string]string{"rack": "r1", "gone": "x"}, TaggedAddresses: map[string]string{"lan": "10.0.0.1", "wan": "192.0.2.1"}}
	v2 := entryNode{Node: "n1", Address: "10.0.0.9", Meta: map[string]string{"rack": "r2", "new-key": "y"}, TaggedAddresses: map[string]string{"lan": "10.0.0.9"}}
	other := entryNode{Node: "n2", Address: "10.0.0.2", Meta: map[string]string{"rack": "r3"}}
	entries := func(n entryNode) []serviceEntry {
		var es []serviceEntry
		for i, svcAddr := range []string{"", "10.1.0.1"} {
			e := serviceEntry{Node: n}
			e.Service.ID, e.Service.Service, e.Service.Port, e.Service.Address = fmt.Sprint("web-", i), "web", 80+i, svcAddr
			e.Service.Meta = map[string]string{"rack": "service-level"}
			e.Checks = []entryCheck{{CheckID: "c", Status: "passing"}}
			es = append(es, e)
		}
		o := es[0]
		o.Node, o.Service.ID = other, "web-other"
		return append(es, o)
	}
	before := newNameCache().serviceGroup("web", "dc1", ",", entries(v1))
	got := newNameCache().withNode(before, &v2)
	want := newNameCache().serviceGroup("web", "dc1", ",", entries(v2))
	if !groupsEqual(got, want) {
		t.Fatalf("patched:\n%v\nread:\n%v", got.Targets, want.Targets)
	}
	if got.Targets[2]["__meta_consul_node"] != "n2" || !got.Targets[2].Equal(before.Targets[2]) {
		t.Fatalf("a target on another node changed: %v", got.Targets[2])
	}
	if !before.Targets[0].Equal(newNameCache().serviceGroup("web", "dc1", ",", entries(v1)).Targets[0]) {
		t.Fatal("withNode modified the group it was given")
	}
	if g := newNameCache().withNode(before, &entryNode{Node: "n3"}); g != before {
		t.Fatal("a group without targets on the node was copied")
	}
}
