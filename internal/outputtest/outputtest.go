// Package outputtest builds output snapshots by hand, for the tests of the
// output's readers (http_sd, the pages): through a real output.Stage, so
// that what they read is what the stage publishes.
package outputtest

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

var (
	mu    sync.Mutex
	stage *output.Stage // writes no files; numbers the snapshots it makes
)

// NewSnapshot returns the snapshot a stage publishes for a job whose
// complete state is groups, without a file. Snapshots of a job with other
// content have other Gens.
func NewSnapshot(job string, groups []*targetgroup.Group) *output.Snapshot {
	mu.Lock()
	defer mu.Unlock()
	if stage == nil {
		s, err := output.New("", output.Options{})
		if err != nil {
			panic(fmt.Sprintf("outputtest: %v", err))
		}
		stage = s
	}
	gs := make([]manager.Group, 0, len(groups))
	for i, g := range groups {
		if g != nil {
			// Distinct keys, whatever the groups' Sources.
			gs = append(gs, managertest.NewGroup(strconv.Itoa(i), g))
		}
	}
	if err := stage.Apply(manager.Update{job: managertest.NewJob(true, gs...)}); err != nil {
		panic(fmt.Sprintf("outputtest: %v", err))
	}
	return stage.Job(job)
}

// Render returns the output of groups as the stage writes it for a job.
func Render(groups []*targetgroup.Group) []byte {
	return NewSnapshot("", groups).Bytes()
}
