package output

import (
	"strconv"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/manager"
)

// Render returns groups' output as the stage writes it for a job, rendered
// from scratch (render.go describes the format).
func Render(groups []*targetgroup.Group) []byte {
	return render(groups, newLabelNames())
}

// render is Render with the label names in names.
func render(groups []*targetgroup.Group, names *labelNames) []byte {
	s := &Snapshot{entries: renderOrder(groups, names), names: names}
	s.count()
	return s.Bytes()
}

// newSnapshot returns the snapshot of a job whose complete state is
// groups, without a file, with the label names in names.
func newSnapshot(job string, groups []*targetgroup.Group, names *labelNames) *Snapshot {
	s := &Snapshot{Job: job, Gen: 1, names: names, shards: &shardCache{}}
	s.entries = renderOrder(groups, names)
	s.count()
	return s
}

// renderOrder renders groups from scratch into sorted entries, whose labels
// bodies use names.
func renderOrder(groups []*targetgroup.Group, names *labelNames) []*entry {
	r := newJobRender("", names, nil)
	gs := make([]manager.Group, 0, len(groups))
	for i, g := range groups {
		if g != nil {
			// Distinct keys, whatever the groups' Sources.
			gs = append(gs, manager.Group{Group: g, Provider: strconv.Itoa(i), Gen: 1})
		}
	}
	r.apply(gs)
	return r.all.order
}
