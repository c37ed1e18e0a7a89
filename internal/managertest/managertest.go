// Package managertest builds the manager's updates by hand, for the tests
// and benchmarks of its consumers.
package managertest

import (
	"sync/atomic"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/manager"
)

// lastGen numbers what this package builds. A consumer compares the Gens of
// one source only, so these need only be new among themselves.
var lastGen atomic.Uint64

// NewGroup wraps g as a group of provider with a new generation.
func NewGroup(provider string, g *targetgroup.Group) manager.Group {
	return manager.Group{Group: g, Provider: provider, Gen: lastGen.Add(1)}
}

// NewJob returns a job state with a new generation.
func NewJob(complete bool, groups ...manager.Group) *manager.JobTargets {
	if groups == nil {
		groups = []manager.Group{}
	}
	return &manager.JobTargets{Groups: groups, Gen: lastGen.Add(1), Complete: complete}
}
