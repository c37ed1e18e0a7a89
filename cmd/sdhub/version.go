package main

import (
	"runtime/debug"

	"github.com/prometheus/common/version"
)

// Release builds set version.Version, Revision, Branch, BuildUser and
// BuildDate with -ldflags, as Prometheus's builds do (prometheus/common's
// version package finds the VCS revision Go recorded by itself). Without
// them the version is the module version Go recorded: v1.2.3 for
// `go install github.com/sdhub/sdhub/cmd/sdhub@v1.2.3`, "(devel)" for a
// build in a checkout.
func init() {
	if info, ok := debug.ReadBuildInfo(); ok && version.Version == "" {
		version.Version = info.Main.Version
	}
}
