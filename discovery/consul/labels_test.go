package consul

import (
	"testing"

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
